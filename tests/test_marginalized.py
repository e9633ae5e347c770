"""Marginalised IPS over item embeddings (hfrl.ope.evaluate_embedded)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import hfrl.ope.marginalized as marginalized
from docs_examples import run_docs_example
from hfrl.contextual import LinearPolicy
from hfrl.ope import SupportWarning, evaluate, evaluate_embedded
from hfrl.ope.marginalized import ItemEmbedding
from hfrl.policies import TabularPolicy

N_STATES, N_ITEMS, N_CATEGORIES = 3, 2000, 20


def problem(seed: int = 0):
    """Items in categories; the reward depends on the item only through its category (no direct
    effect). A logging policy that shows every item, and a target concentrated on a few items."""
    rng = np.random.default_rng(seed)
    category = rng.integers(0, N_CATEGORIES, N_ITEMS)
    mean = rng.uniform(0.05, 0.6, (N_STATES, N_CATEGORIES))
    logging = 0.5 * rng.dirichlet(np.ones(N_ITEMS), N_STATES) + 0.5 / N_ITEMS
    scores = rng.normal(0.0, 3.0, (N_STATES, N_ITEMS))
    target = np.exp(scores - scores.max(axis=1, keepdims=True))
    target /= target.sum(axis=1, keepdims=True)
    truth = float(np.mean((target * mean[:, category]).sum(axis=1)))  # states drawn uniformly
    return category, mean, TabularPolicy(logging), TabularPolicy(target), truth


def collect(logging: TabularPolicy, mean: np.ndarray, category: np.ndarray, n: int, seed: int
            ) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    state = rng.integers(0, N_STATES, n)
    action, propensity = logging.sample(state, rng)
    reward = (rng.random(n) < mean[state, category[action]]).astype(np.float64)
    return pd.DataFrame({"state": state, "action": action, "reward": reward, "propensity": propensity})


def test_mips_is_close_to_the_truth_with_far_less_variance_than_ips():
    category, mean, logging, target, truth = problem(0)
    mips, ips = [], []
    for seed in range(5):
        logs = collect(logging, mean, category, 20_000, seed)
        result = evaluate_embedded(logs, target, category, logging, ("mips", "snmips", "ips"))
        for name in ("mips", "snmips"):
            row = result.loc[name]
            assert row["ci_low"] <= truth <= row["ci_high"], (seed, name, truth, row.to_dict())
            assert abs(row["estimate"] - truth) < 4 * row["std_error"]
        assert result.loc["mips", "ess"] > 20 * result.loc["ips", "ess"]
        assert result.loc["mips", "std_error"] < result.loc["ips", "std_error"] / 3
        assert result.loc["mips", "max_weight"] < result.loc["ips", "max_weight"]
        mips.append(result.loc["mips", "estimate"])
        ips.append(result.loc["ips", "estimate"])
    assert np.var(mips) < np.var(ips) / 5


@pytest.mark.filterwarnings("ignore::hfrl.ope.SupportWarning")  # most items are never logged: the point
def test_embeddings_equal_to_item_ids_give_ips_exactly():
    category, mean, logging, target, _ = problem(1)
    logs = collect(logging, mean, category, 5_000, 0)
    ids = evaluate_embedded(logs, target, np.arange(N_ITEMS), logging, ("mips", "snmips", "ips", "snips"))
    for embedded, items in (("mips", "ips"), ("snmips", "snips")):
        for column in ("estimate", "std_error", "ess", "max_weight"):
            assert ids.loc[embedded, column] == ids.loc[items, column], (embedded, column)
    # any one-to-one embedding (permuted ids, or a 2-d tuple that is unique per item) is the same
    relabelled = np.random.default_rng(0).permutation(N_ITEMS)
    tuples = np.column_stack([np.arange(N_ITEMS) // 7, np.arange(N_ITEMS) % 7])
    for embedding in (relabelled, tuples):
        again = evaluate_embedded(logs, target, embedding, logging, "mips")
        assert again.loc["mips", "estimate"] == ids.loc["mips", "estimate"]
    reference = evaluate(logs, target, "ips", interval="normal")
    assert ids.loc["mips", "estimate"] == pytest.approx(reference.loc["ips", "estimate"], rel=1e-12)
    assert ids.loc["mips", "std_error"] == pytest.approx(reference.loc["ips", "std_error"], rel=1e-9)


def marginal_weights(logs: pd.DataFrame, target: TabularPolicy, logging: TabularPolicy,
                     category: np.ndarray) -> np.ndarray:
    """The MIPS weight of each row, from per-state sums written out with a loop."""
    n_categories = int(category.max()) + 1
    state, action = logs["state"].to_numpy(), logs["action"].to_numpy()
    weight = np.empty(len(logs))
    for s in np.unique(state):
        pi = np.bincount(category, weights=target.probabilities([s])[0], minlength=n_categories)
        pi0 = np.bincount(category, weights=logging.probabilities([s])[0], minlength=n_categories)
        rows = state == s
        weight[rows] = pi[category[action[rows]]] / pi0[category[action[rows]]]
    return weight


def test_the_weights_and_the_self_normalised_estimate():
    category, mean, logging, target, _ = problem(2)
    logs = collect(logging, mean, category, 4_000, 0)
    result = evaluate_embedded(logs, target, category, logging, ("mips", "snmips"), interval="normal")
    weight = marginal_weights(logs, target, logging, category)
    reward = logs["reward"].to_numpy()
    assert result.loc["mips", "estimate"] == pytest.approx(np.mean(weight * reward), rel=1e-12)
    assert result.loc["snmips", "estimate"] == pytest.approx((weight @ reward) / weight.sum(), rel=1e-12)
    assert result.loc["mips", "ess"] == pytest.approx(weight.sum() ** 2 / (weight @ weight), rel=1e-12)
    assert result.loc["mips", "max_weight"] == pytest.approx(weight.max(), rel=1e-12)
    # self-normalised: a constant reward is returned exactly, whatever the weights; mips is not
    constant = logs.assign(reward=0.25)
    again = evaluate_embedded(constant, target, category, logging, ("mips", "snmips"), interval="normal",
                              reward_range=(0.0, 1.0))
    assert again.loc["snmips", "estimate"] == pytest.approx(0.25, rel=1e-12)
    assert again.loc["mips", "estimate"] == pytest.approx(0.25 * weight.mean(), rel=1e-12)
    assert again.loc["mips", "estimate"] != pytest.approx(0.25, rel=1e-6)


def test_a_direct_effect_biases_mips_as_its_docstring_says():
    """Items of one category differ in reward: MIPS converges to the truth plus
    ``E_x sum_e p(e|x, pi) (E_pi0[r|x, e] - E_pi[r|x, e])``, not to the truth."""
    category, _, logging, target, _ = problem(10)
    rng = np.random.default_rng(1)
    item_mean = rng.uniform(0.0, 0.8, (N_STATES, N_ITEMS))  # every item its own click rate
    pi, pi0 = target.probabilities(np.arange(N_STATES)), logging.probabilities(np.arange(N_STATES))
    truth = float(np.mean((pi * item_mean).sum(axis=1)))
    bias = 0.0
    for s in range(N_STATES):
        p_e = np.bincount(category, weights=pi[s], minlength=N_CATEGORIES)
        p0_e = np.bincount(category, weights=pi0[s], minlength=N_CATEGORIES)
        under_logging = np.bincount(category, weights=pi0[s] * item_mean[s], minlength=N_CATEGORIES) / p0_e
        under_target = np.bincount(category, weights=pi[s] * item_mean[s], minlength=N_CATEGORIES) / p_e
        bias += float(p_e @ (under_logging - under_target)) / N_STATES
    state = rng.integers(0, N_STATES, 200_000)
    action, propensity = logging.sample(state, rng)
    reward = (rng.random(state.size) < item_mean[state, action]).astype(np.float64)
    logs = pd.DataFrame({"state": state, "action": action, "reward": reward, "propensity": propensity})
    row = evaluate_embedded(logs, target, category, logging, "mips").loc["mips"]
    assert abs(row["estimate"] - (truth + bias)) < 4 * row["std_error"]
    assert abs(bias) > 5 * row["std_error"]  # the design makes the bias visible
    assert not row["ci_low"] <= truth <= row["ci_high"]


def test_logs_from_a_parquet_file(tmp_path):
    category, mean, logging, target, _ = problem(11)
    logs = collect(logging, mean, category, 2_000, 0)
    logs.to_parquet(tmp_path / "logs.parquet")
    in_memory = evaluate_embedded(logs, target, category, logging)
    from_file = evaluate_embedded(str(tmp_path / "logs.parquet"), target, category, logging)
    pd.testing.assert_frame_equal(in_memory, from_file)


def test_two_dimensional_embeddings_are_their_joint_category():
    category, mean, logging, target, _ = problem(3)
    logs = collect(logging, mean, category, 3_000, 0)
    brand = np.arange(N_ITEMS) % 3
    joint = evaluate_embedded(logs, target, np.column_stack([category, brand]), logging, "mips")
    single = evaluate_embedded(logs, target, category * 3 + brand, logging, "mips")
    assert joint.loc["mips", "estimate"] == single.loc["mips", "estimate"]
    assert joint.loc["mips", "n_embeddings"] == len(np.unique(category * 3 + brand))


def test_an_estimated_marginal_agrees_with_the_given_one_on_uniform_logs():
    category, mean, _, target, truth = problem(4)
    uniform = TabularPolicy.uniform(N_STATES, N_ITEMS)
    logs = collect(uniform, mean, category, 30_000, 0)
    given = evaluate_embedded(logs, target, category, uniform)
    estimated = evaluate_embedded(logs, target, category)
    assert set(given["propensity_source"]) == {"logging policy"}
    assert set(estimated["propensity_source"]) == {"estimated (embedding frequency per state)"}
    for name in ("mips", "snmips"):
        gap = abs(given.loc[name, "estimate"] - estimated.loc[name, "estimate"])
        assert gap < 2 * given.loc[name, "std_error"], (name, gap)
        assert estimated.loc[name, "ci_low"] <= truth <= estimated.loc[name, "ci_high"]
    assert np.isnan(estimated.loc["mips", "support_violation_share"])
    assert given.loc["mips", "support_violation_share"] == 0.0


def test_chunks_give_the_same_numbers(monkeypatch):
    category, mean, logging, target, _ = problem(5)
    logs = collect(logging, mean, category, 2_000, 0)
    whole = evaluate_embedded(logs, target, category, logging, ("mips", "ips"))
    whole_estimated = evaluate_embedded(logs, target, category)
    monkeypatch.setattr(marginalized, "CELL_BUDGET", N_ITEMS)  # one state (or row) at a time
    chunked = evaluate_embedded(logs, target, category, logging, ("mips", "ips"))
    chunked_estimated = evaluate_embedded(logs, target, category)
    pd.testing.assert_frame_equal(whole, chunked)
    pd.testing.assert_frame_equal(whole_estimated, chunked_estimated)


def one_hot_contexts(logs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    columns = [f"x{s}" for s in range(N_STATES)]
    features = pd.DataFrame(np.eye(N_STATES)[logs["state"].to_numpy()], columns=columns, index=logs.index)
    return pd.concat([logs, features], axis=1), columns


def as_linear(policy: TabularPolicy, columns: list[str]) -> LinearPolicy:
    """A contextual policy giving the table's rows for one-hot state features (softmax of log probs)."""
    return LinearPolicy(np.log(policy.probabilities(np.arange(N_STATES))).T, context_columns=columns)


@pytest.mark.parametrize("budget", [marginalized.CELL_BUDGET, 400 * N_ITEMS])
def test_contextual_policies_match_their_tables(monkeypatch, budget):
    monkeypatch.setattr(marginalized, "CELL_BUDGET", budget)
    category, mean, logging, target, _ = problem(6)
    logs, columns = one_hot_contexts(collect(logging, mean, category, 3_000, 0))
    names = ("mips", "snmips", "ips")
    tabular = evaluate_embedded(logs, target, category, logging, names, interval="normal")
    contextual_target = as_linear(target, columns)
    for logging_policy in (logging, as_linear(logging, columns)):
        result = evaluate_embedded(logs, contextual_target, category, logging_policy, names,
                                   interval="normal", context_columns=columns)
        np.testing.assert_allclose(result["estimate"], tabular["estimate"], rtol=1e-9)
        np.testing.assert_allclose(result["std_error"], tabular["std_error"], rtol=1e-9)
        assert result.loc["mips", "support_violation_share"] == 0.0
    estimated = evaluate_embedded(logs, contextual_target, category, context_columns=columns)
    estimated_tabular = evaluate_embedded(logs, target, category)
    np.testing.assert_allclose(estimated["estimate"], estimated_tabular["estimate"], rtol=1e-9)
    with pytest.raises(ValueError, match="context_columns"):
        evaluate_embedded(logs, contextual_target, category, logging)


def test_bootstrap_agrees_with_the_standard_error():
    category, mean, logging, target, _ = problem(7)
    logs = collect(logging, mean, category, 5_000, 0)
    result = evaluate_embedded(logs, target, category, logging, n_bootstrap=400, random_state=0)
    for name in ("mips", "snmips"):
        assert result.loc[name, "boot_std_error"] == pytest.approx(result.loc[name, "std_error"], rel=0.2)
        row = result.loc[name]
        assert row["boot_ci_low"] < row["estimate"] < row["boot_ci_high"]


def test_intervals_and_support_warnings():
    category, mean, logging, target, _ = problem(8)
    logs = collect(logging, mean, category, 3_000, 0)
    for method in ("normal", "empirical_likelihood", "bernstein"):
        row = evaluate_embedded(logs, target, category, logging, "mips", interval=method).loc["mips"]
        assert row["interval"] == method
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
    bernstein = evaluate_embedded(logs, target, category, logging, "mips", interval="bernstein")
    normal = evaluate_embedded(logs, target, category, logging, "mips", interval="normal")
    assert (bernstein["ci_high"] - bernstein["ci_low"]).item() > (normal["ci_high"] - normal["ci_low"]).item()
    with pytest.raises(ValueError, match="logging_policy"):
        evaluate_embedded(logs, target, category, interval="empirical_likelihood")
    # a logging policy that never shows category 0 while the target does: a proven violation
    blind = logging.probabilities(np.arange(N_STATES)) * (category != 0)
    blind = TabularPolicy(blind / blind.sum(axis=1, keepdims=True))
    shown = logs[category[logs["action"]] != 0]
    with pytest.warns(SupportWarning, match="support violation"):
        result = evaluate_embedded(shown, target, category, blind, "mips")
    expected = np.mean([target.probabilities([s])[0][category == 0].sum() for s in shown["state"]])
    assert result.loc["mips", "support_violation_share"] == pytest.approx(expected, rel=1e-9)


def test_bad_inputs_name_the_field():
    category, mean, logging, target, _ = problem(9)
    logs = collect(logging, mean, category, 500, 0)
    with pytest.raises(ValueError, match=r"item_embeddings must have shape .*n_actions=2000"):
        evaluate_embedded(logs, target, category[:-1], logging)
    with pytest.raises(ValueError, match=r"item_embeddings: item 3 has 0\.5"):
        evaluate_embedded(logs, target, np.where(np.arange(N_ITEMS) == 3, 0.5, 1.0), logging)
    with pytest.raises(ValueError, match=r"item_embeddings: item 0, dimension 1"):
        evaluate_embedded(logs, target, np.column_stack([category, np.full(N_ITEMS, np.nan)]), logging)
    with pytest.raises(ValueError, match="item_embeddings: item 0 has 'shoes'"):
        evaluate_embedded(logs, target, np.array(["shoes"] * N_ITEMS), logging)
    with pytest.raises(ValueError, match="item_embeddings must have shape"):
        evaluate_embedded(logs, target, category.reshape(N_ITEMS, 1, 1), logging)
    with pytest.raises(ValueError, match=r"logging_policy has n_actions=10 .* 2000"):
        evaluate_embedded(logs, target, category, TabularPolicy.uniform(N_STATES, 10))
    with pytest.raises(TypeError, match="logging_policy must be a hfrl.policies.Policy"):
        evaluate_embedded(logs, target, category, logging.probabilities(np.arange(N_STATES)))
    never_category_0 = logging.probabilities(np.arange(N_STATES)) * (category != 0)
    never_category_0 = TabularPolicy(never_category_0 / never_category_0.sum(axis=1, keepdims=True))
    first = int(np.flatnonzero(category[logs["action"]] == 0)[0])
    with pytest.raises(ValueError, match=f"probability 0 to the embedding of logged row {first} "):
        evaluate_embedded(logs, target, category, never_category_0)
    with pytest.raises(ValueError, match="unknown embedded estimator"):
        evaluate_embedded(logs, target, category, logging, "dr")
    with pytest.raises(Exception, match="propensity"):
        evaluate_embedded(logs.drop(columns="propensity"), target, category, estimators="ips")
    # mips never reads the propensity column
    no_propensity = evaluate_embedded(logs.drop(columns="propensity"), target, category, logging, "mips")
    assert no_propensity.loc["mips", "estimate"] == evaluate_embedded(logs, target, category, logging,
                                                                      "mips").loc["mips", "estimate"]


def test_item_embedding_numbers_its_values():
    embedding = ItemEmbedding.of(np.array([[1, 0], [0, 5], [1, 0], [2, 2]]), 4)
    assert embedding.ids.tolist() == [1, 0, 1, 2]
    rows = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(embedding.marginals(rows), [[0.2, 0.4, 0.4], [0.25, 0.5, 0.25]])
    assert ItemEmbedding.of(np.array([2.0, 2.0, 7.0]), 3).ids.tolist() == [0, 0, 1]


def test_the_docs_example_runs(capsys):
    run_docs_example("rankings.md", "Large catalogs")
    printed = capsys.readouterr().out
    estimates = dict(re.findall(r"^(mips|ips)\s+([0-9.]+)", printed, flags=re.MULTILINE))
    exact = float(re.search(r"exact: ([0-9.]+)", printed).group(1))
    assert abs(float(estimates["mips"]) - exact) < 0.01
