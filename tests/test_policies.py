"""TabularPolicy: construction, sampling, top-k and the artifact format."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hfrl.errors import ArtifactError
from hfrl.policies import TabularPolicy, check_distribution_table


def random_table(rng: np.random.Generator, n_states: int, n_actions: int, zeros: bool = True) -> np.ndarray:
    table = rng.random((n_states, n_actions))
    if zeros:
        table[rng.random(table.shape) < 0.3] = 0.0
        table[np.arange(n_states), rng.integers(0, n_actions, n_states)] += 0.5
    return table / table.sum(axis=1, keepdims=True)


def test_sample_frequencies_match_probabilities():
    rng = np.random.default_rng(0)
    table = random_table(rng, 4, 6)
    policy = TabularPolicy(table)
    n = 200_000
    states = rng.integers(0, 4, n)
    actions, propensities = policy.sample(states, random_state=1)
    assert np.allclose(propensities, table[states, actions])
    assert (propensities > 0).all()
    for s in range(4):
        counts = np.bincount(actions[states == s], minlength=6) / (states == s).sum()
        n_s = (states == s).sum()
        tolerance = 5 * np.sqrt(table[s] * (1 - table[s]) / n_s) + 1e-12
        assert np.all(np.abs(counts - table[s]) <= tolerance)


def test_sample_never_draws_zero_probability_actions():
    table = np.zeros((3, 5))
    table[0, 4] = 1.0
    table[1, 0] = 1.0
    table[2, [1, 3]] = 0.5
    policy = TabularPolicy(table)
    states = np.repeat([0, 1, 2], 10_000)
    actions, _ = policy.sample(states, random_state=3)
    assert set(actions[states == 0]) == {4}
    assert set(actions[states == 1]) == {0}
    assert set(actions[states == 2]) == {1, 3}


def test_sample_is_deterministic_given_seed():
    policy = TabularPolicy(random_table(np.random.default_rng(5), 10, 7))
    states = np.arange(10).repeat(3)
    first = policy.sample(states, random_state=42)
    second = policy.sample(states, random_state=42)
    assert np.array_equal(first[0], second[0])


def test_top_k_orders_by_probability_then_id():
    table = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]])
    actions, probs = TabularPolicy(table).top_k([0, 1], k=3)
    assert actions.tolist() == [[1, 2, 0], [0, 1, 2]]
    assert np.allclose(probs, [[0.4, 0.4, 0.1], [0.7, 0.1, 0.1]])
    full, _ = TabularPolicy(table).top_k([1], k=4)
    assert full.tolist() == [[0, 1, 2, 3]]


def test_from_q_values_methods():
    q = np.array([[1.0, 2.0, 2.0], [0.0, -1.0, 5.0]])
    greedy = TabularPolicy.from_q_values(q)
    assert np.allclose(greedy.table_, [[0, 0.5, 0.5], [0, 0, 1]])
    eps = TabularPolicy.from_q_values(q, "epsilon_greedy", epsilon=0.3)
    assert np.allclose(eps.table_[1], [0.1, 0.1, 0.8])
    soft = TabularPolicy.from_q_values(q, "softmax", temperature=1.0)
    expected = np.exp(q[1]) / np.exp(q[1]).sum()
    assert np.allclose(soft.table_[1], expected)
    cold = TabularPolicy.from_q_values(q, "softmax", temperature=1e-3)
    assert cold.table_[1, 2] > 0.999


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.array([[0.5, 0.6]]), "row 0 sums to 1.1"),
        (np.array([[1.0, 0.0], [1.5, -0.5]]), "row 1 has a negative entry"),
        (np.array([[np.nan, 1.0]]), "row 0 has a NaN"),
        (np.zeros((0, 3)), "at least one state"),
    ],
)
def test_invalid_tables_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        TabularPolicy(table)


def test_invalid_queries_name_the_position():
    policy = TabularPolicy.uniform(3, 2)
    with pytest.raises(ValueError, match=r"state id 7 at position 1 is outside \[0, 3\)"):
        policy.probabilities([0, 7])
    with pytest.raises(ValueError, match="action id 2 at position 0"):
        policy.action_probabilities([0], [2])
    with pytest.raises(ValueError, match="k must be in"):
        policy.top_k([0], k=3)
    with pytest.raises(ValueError, match="integer ids"):
        policy.probabilities([0.5])
    with pytest.raises(ValueError, match="epsilon"):
        TabularPolicy.from_q_values(np.zeros((1, 2)), "epsilon_greedy", epsilon=2)
    with pytest.raises(ValueError, match="method"):
        TabularPolicy.from_q_values(np.zeros((1, 2)), "argmax")


def test_save_load_round_trip(tmp_path):
    table = random_table(np.random.default_rng(1), 6, 4)
    policy = TabularPolicy(table, metadata={"name": "pi", "state_encoder": {"columns": ["segment"]}})
    path = policy.save(tmp_path / "pi.hfrl")
    loaded = TabularPolicy.load(path)
    assert np.array_equal(loaded.table_, policy.table_)
    assert loaded.metadata == policy.metadata
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("metadata.json"))
    assert header["shape"] == [6, 4]
    assert header["hfrl_version"]


def _rewrite(path, target, *, metadata=None, table_bytes=None):
    with zipfile.ZipFile(path) as archive:
        header = archive.read("metadata.json")
        table = archive.read("probabilities.npy")
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("metadata.json", metadata if metadata is not None else header)
        archive.writestr("probabilities.npy", table_bytes if table_bytes is not None else table)


def test_load_refuses_corrupt_truncated_and_mismatched(tmp_path):
    path = TabularPolicy.uniform(3, 3).save(tmp_path / "ok.hfrl")
    raw = path.read_bytes()

    truncated = tmp_path / "truncated.hfrl"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="not a readable hfrl artifact"):
        TabularPolicy.load(truncated)

    with zipfile.ZipFile(path) as archive:
        table_bytes = bytearray(archive.read("probabilities.npy"))
        header = json.loads(archive.read("metadata.json"))
    table_bytes[-1] ^= 0xFF
    corrupt = tmp_path / "corrupt.hfrl"
    _rewrite(path, corrupt, table_bytes=bytes(table_bytes))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        TabularPolicy.load(corrupt)

    header["format_version"] = 99
    newer = tmp_path / "newer.hfrl"
    _rewrite(path, newer, metadata=json.dumps(header))
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        TabularPolicy.load(newer)

    header["format_version"] = 1
    header["shape"] = [9, 9]
    mismatched = tmp_path / "mismatched.hfrl"
    _rewrite(path, mismatched, metadata=json.dumps(header))
    with pytest.raises(ArtifactError, match="does not match metadata"):
        TabularPolicy.load(mismatched)

    with pytest.raises(ArtifactError, match="no such artifact"):
        TabularPolicy.load(tmp_path / "missing.hfrl")
    assert isinstance(ArtifactError("x"), ValueError)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(0, 10)),
    st.integers(0, 2**32 - 1),
)
def test_property_samples_have_positive_propensity_and_match_table(raw, seed):
    raw = raw + 1e-3  # rows must have some mass
    table = raw / raw.sum(axis=1, keepdims=True)
    policy = TabularPolicy(table)
    states = np.arange(table.shape[0]).repeat(5)
    actions, propensities = policy.sample(states, random_state=seed)
    assert (propensities > 0).all()
    assert np.allclose(propensities, policy.table_[states, actions])
    assert np.allclose(check_distribution_table(policy.table_).sum(axis=1), 1.0)
