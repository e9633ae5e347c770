"""Contextual policies: contexts by name or position, probabilities, sampling, top-k, artifacts."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hfrl.contextual as contextual
from hfrl.contextual import LinearPolicy, NeuralPolicy, load_policy
from hfrl.errors import ArtifactError
from hfrl.policies import Policy, TabularPolicy

COLUMNS = ["age", "spend", "visits"]


def linear(kind: str = "softmax", epsilon: float = 0.0, seed: int = 0, n_actions: int = 5) -> LinearPolicy:
    rng = np.random.default_rng(seed)
    return LinearPolicy(rng.normal(size=(n_actions, 3)), rng.normal(size=n_actions), context_columns=COLUMNS,
                        kind=kind, epsilon=epsilon, temperature=0.7)


def neural(seed: int = 0) -> NeuralPolicy:
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(size=(8, 3)), rng.normal(size=8)), (rng.normal(size=(6, 8)), rng.normal(size=6)),
              (rng.normal(size=(4, 6)), rng.normal(size=4))]
    return NeuralPolicy(layers, activation="tanh", input_shift=[1.0, 0.0, -1.0], input_scale=[2.0, 1.0, 0.5],
                        context_columns=COLUMNS, epsilon=0.05)


def contexts(n: int = 50, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


def test_linear_softmax_is_the_formula_with_a_uniform_share():
    policy = linear(epsilon=0.2)
    x = contexts()
    scores = x @ policy.weights_.T + policy.bias_
    softmax = np.exp(scores / 0.7) / np.exp(scores / 0.7).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(policy.probabilities(x), 0.8 * softmax + 0.2 / 5, rtol=1e-12)
    assert policy.probabilities(x).min() >= 0.2 / 5 - 1e-15


def test_greedy_shares_ties_and_epsilon_greedy_floors():
    policy = LinearPolicy(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), kind="greedy", epsilon=0.3)
    np.testing.assert_allclose(policy.probabilities([[2.0, 1.0], [0.0, 1.0]]),
                               [[0.45, 0.45, 0.1], [0.1, 0.1, 0.8]])


def test_neural_policy_is_the_numpy_forward_pass():
    policy = neural()
    x = contexts()
    h = np.tanh(((x - [1.0, 0.0, -1.0]) / [2.0, 1.0, 0.5]) @ policy.layers_[0][0].T + policy.layers_[0][1])
    h = np.tanh(h @ policy.layers_[1][0].T + policy.layers_[1][1])
    scores = h @ policy.layers_[2][0].T + policy.layers_[2][1]
    np.testing.assert_allclose(policy.scores(x), scores, rtol=1e-12)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = 0.95 * expected / expected.sum(axis=1, keepdims=True) + 0.05 / 4
    np.testing.assert_allclose(policy.probabilities(x), expected, rtol=1e-12)


@pytest.mark.parametrize("make", [linear, neural])
def test_contexts_by_name_position_or_mapping_agree(make):
    policy = make()
    x = contexts(5)
    frame = pd.DataFrame(x, columns=COLUMNS).assign(other="ignored")[["other", "visits", "age", "spend"]]
    expected = policy.probabilities(x)
    np.testing.assert_allclose(policy.probabilities(frame), expected)
    np.testing.assert_allclose(policy.probabilities(dict(zip(COLUMNS, x.T, strict=True))), expected)
    np.testing.assert_allclose(policy.probabilities({c: v for c, v in zip(COLUMNS, x[0], strict=True)}),
                               expected[:1])
    np.testing.assert_allclose(policy.probabilities(x[0]), expected[:1])
    assert isinstance(policy, Policy)


def test_bad_contexts_name_the_column_and_row():
    policy = linear()
    with pytest.raises(ValueError, match=r"lack the context columns \['visits'\]"):
        policy.probabilities(pd.DataFrame({"age": [1.0], "spend": [2.0]}))
    frame = pd.DataFrame(contexts(4), columns=COLUMNS)
    frame.loc[2, "spend"] = np.nan
    with pytest.raises(ValueError, match="'spend': row 2 has nan"):
        policy.probabilities(frame)
    with pytest.raises(ValueError, match="3 features per row"):
        policy.probabilities(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="no context_columns"):
        LinearPolicy(np.eye(2)).probabilities(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(ValueError, match="action id 5 at position 1"):
        policy.action_probabilities(contexts(2), [0, 5])


@pytest.mark.parametrize("make", [linear, neural])
def test_action_probabilities_and_top_k_agree_with_the_rows_in_chunks(make, monkeypatch):
    policy = make()
    x = contexts(200)
    rows = policy.probabilities(x)
    monkeypatch.setattr(contextual, "_CHUNK_CELLS", 37)  # many small chunks
    actions = np.random.default_rng(2).integers(0, policy.n_actions, 200)
    np.testing.assert_allclose(policy.action_probabilities(x, actions), rows[np.arange(200), actions])
    np.testing.assert_allclose(policy.probabilities(x), rows)
    top, top_p = policy.top_k(x, 2)
    np.testing.assert_array_equal(top[:, 0], rows.argmax(axis=1))
    np.testing.assert_allclose(top_p, np.take_along_axis(rows, top, axis=1))
    assert (top_p[:, 0] >= top_p[:, 1]).all()


def test_top_k_breaks_ties_by_lower_id():
    policy = LinearPolicy(np.zeros((4, 1)), kind="greedy")
    actions, probabilities = policy.top_k([[1.0]], 3)
    assert actions.tolist() == [[0, 1, 2]] and probabilities.tolist() == [[0.25, 0.25, 0.25]]


def test_sampling_follows_the_probabilities_with_their_propensities(monkeypatch):
    monkeypatch.setattr(contextual, "_CHUNK_CELLS", 1000)
    policy = linear(epsilon=0.1)
    x = np.repeat(contexts(1), 40_000, axis=0)
    actions, propensities = policy.sample(x, random_state=0)
    expected = policy.probabilities(x[:1])[0]
    observed = np.bincount(actions, minlength=5) / actions.size
    assert np.all(np.abs(observed - expected) <= 4 * np.sqrt(expected * (1 - expected) / actions.size))
    np.testing.assert_allclose(propensities, expected[actions])
    again, _ = policy.sample(x, random_state=0)
    np.testing.assert_array_equal(actions, again)
    greedy_actions, greedy_p = linear(kind="greedy").sample(contexts(30), random_state=1)
    np.testing.assert_array_equal(greedy_actions, linear(kind="greedy").scores(contexts(30)).argmax(axis=1))
    assert (greedy_p == 1.0).all()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.sampled_from(["softmax", "greedy"]),
       st.floats(0.05, 20.0))
def test_rows_are_distributions_with_the_epsilon_floor(seed, epsilon, kind, temperature):
    rng = np.random.default_rng(seed)
    policy = LinearPolicy(rng.normal(scale=30.0, size=(7, 3)), rng.normal(size=7), kind=kind,
                          epsilon=epsilon, temperature=temperature)
    rows = policy.probabilities(rng.normal(size=(20, 3)))
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)
    assert rows.min() >= epsilon / 7 - 1e-12


def test_with_exploration_lifts_every_propensity():
    policy = linear(kind="greedy")
    explored = policy.with_exploration(0.1)
    assert explored.probabilities(contexts()).min() == pytest.approx(0.1)
    assert explored.metadata["exploration_epsilon"] == pytest.approx(0.5)
    assert policy.with_exploration(0.0).epsilon == 0.0
    with pytest.raises(ValueError, match="min_propensity"):
        policy.with_exploration(0.3)


@pytest.mark.parametrize("make", [linear, neural])
def test_artifacts_round_trip_without_pickle(make, tmp_path):
    policy = make()
    policy.metadata["trained_on"] = "test"
    path = policy.save(tmp_path / "policy.zip")
    loaded = load_policy(path)
    assert type(loaded) is type(policy)
    assert loaded.context_columns == COLUMNS and loaded.metadata["trained_on"] == "test"
    np.testing.assert_array_equal(loaded.probabilities(contexts()), policy.probabilities(contexts()))
    assert type(policy).load(path).n_actions == policy.n_actions
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("metadata.json"))
        assert header["format"] == "hfrl.contextual_policy"
        assert all(name.endswith(".npy") for name in archive.namelist() if name != "metadata.json")
        for name in header["arrays"]:
            np.load(archive.open(f"arrays/{name}.npy"), allow_pickle=False)


def test_load_policy_reads_tabular_artifacts_too(tmp_path):
    table = TabularPolicy(np.array([[0.2, 0.8], [1.0, 0.0]]))
    loaded = load_policy(table.save(tmp_path / "tabular.zip"))
    assert isinstance(loaded, TabularPolicy)
    np.testing.assert_array_equal(loaded.table_, table.table_)
    assert TabularPolicy.load(tmp_path / "tabular.zip").n_states == 2
    with pytest.raises(ArtifactError, match="not a LinearPolicy"):
        LinearPolicy.load(tmp_path / "tabular.zip")


def rewrite(path, change):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


def test_unsound_artifacts_are_refused(tmp_path):
    path = linear().save(tmp_path / "p.zip")

    def corrupt(members):
        blob = bytearray(members["arrays/weights.npy"])
        blob[-1] ^= 0xFF
        members["arrays/weights.npy"] = bytes(blob)

    rewrite(path, corrupt)
    with pytest.raises(ArtifactError, match="checksum mismatch, array 'weights'"):
        load_policy(path)

    path = linear().save(tmp_path / "q.zip")

    def future(members):
        header = json.loads(members["metadata.json"])
        header["format_version"] = 99
        members["metadata.json"] = json.dumps(header).encode()

    rewrite(path, future)
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        load_policy(path)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable hfrl artifact"):
        load_policy(tmp_path / "junk.zip")
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_policy(tmp_path / "missing.zip")


def test_constructor_checks():
    with pytest.raises(ValueError, match="kind must be one of"):
        LinearPolicy(np.eye(2), kind="boltzmann")
    with pytest.raises(ValueError, match="context_columns names 1 columns"):
        LinearPolicy(np.eye(2), context_columns=["a"])
    with pytest.raises(ValueError, match="bias must be"):
        LinearPolicy(np.eye(2), bias=[1.0])
    with pytest.raises(ValueError, match="layer 1: weight"):
        NeuralPolicy([(np.ones((4, 2)), np.zeros(4)), (np.ones((3, 5)), np.zeros(3))])
