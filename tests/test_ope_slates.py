"""Tests of hfrl.ope.slates: each ranking estimator against a per-row brute force of its formula,
against the simulator's exact slate value, and its errors."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from hfrl.envs.slates import SlateEnv, collect_slate_logs, slate_policy_value
from hfrl.errors import LogValidationError
from hfrl.ope import evaluate_slates
from hfrl.policies import RankingPolicy, TabularPolicy

N_ITEMS, K, N_SEGMENTS = 5, 3, 2


def slate_probabilities(p: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    out = {}
    for slate in itertools.permutations(range(p.size), k):
        prob, left = 1.0, 1.0
        for item in slate:
            prob *= p[item] / left
            left -= p[item]
        out[slate] = prob
    return out


def prefix_probability(p: np.ndarray, prefix: tuple[int, ...]) -> float:
    prob, left = 1.0, 1.0
    for item in prefix:
        prob *= p[item] / left
        left -= p[item]
    return prob


def marginal(p: np.ndarray, k: int, j: int, item: int) -> float:
    return sum(prob for slate, prob in slate_probabilities(p, k).items() if slate[j] == item)


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(7)
    logging_table = 0.5 * rng.dirichlet(np.ones(N_ITEMS), N_SEGMENTS) + 0.5 / N_ITEMS
    target_table = rng.dirichlet(np.ones(N_ITEMS), N_SEGMENTS)
    logging = RankingPolicy.from_policy(TabularPolicy(logging_table), K)
    target = RankingPolicy.from_policy(TabularPolicy(target_table), K)
    env = SlateEnv(n_segments=N_SEGMENTS, n_items=N_ITEMS, k=K, bias=-0.5, model_seed=3)
    logs = collect_slate_logs(env, logging, 300, seed=1)
    return logging_table, target_table, logging, target, env, logs


def test_terms_equal_a_per_row_brute_force(setting) -> None:
    logging_table, target_table, logging, target, _, logs = setting
    q_table = np.random.default_rng(2).random((N_SEGMENTS, K, N_ITEMS))
    result = evaluate_slates(logs, target, logging_policy=logging, reward_model=q_table)
    expected = {name: [] for name in ("sips", "iips", "rips", "cascade_dr", "pseudo_inverse")}
    gamma = {}
    for s in range(N_SEGMENTS):
        g = np.zeros((K * N_ITEMS, K * N_ITEMS))
        for slate, prob in slate_probabilities(logging_table[s], K).items():
            index = [j * N_ITEMS + a for j, a in enumerate(slate)]
            g[np.ix_(index, index)] += prob
        gamma[s] = g
    for _, rows in logs.groupby("slate_id", sort=False):
        rows = rows.sort_values("position")
        s = int(rows["state"].iloc[0])
        items = rows["action"].tolist()
        r = rows["reward"].to_numpy()
        p, mu = target_table[s], logging_table[s]
        slate_w = prefix_probability(p, tuple(items)) / rows["slate_propensity"].iloc[0]
        expected["sips"].append(slate_w * r.sum())
        expected["iips"].append(sum(marginal(p, K, j, a) / rows["propensity"].iloc[j] * r[j]
                                    for j, a in enumerate(items)))
        cascade_w = [prefix_probability(p, tuple(items[: j + 1])) / rows["cascade_propensity"].iloc[j]
                     for j in range(K)]
        expected["rips"].append(sum(w * r[j] for j, w in enumerate(cascade_w)))
        total = 0.0
        for j in range(K):
            before = 1.0 if j == 0 else cascade_w[j - 1]
            left = 1.0 - sum(p[b] for b in items[:j])
            baseline = sum(p[a] / left * q_table[s, j, a] for a in range(N_ITEMS) if a not in items[:j])
            total += cascade_w[j] * (r[j] - q_table[s, j, items[j]]) + before * baseline
        expected["cascade_dr"].append(total)
        q_pi = np.array([marginal(p, K, j, a) for j in range(K) for a in range(N_ITEMS)])
        indicator = np.zeros(K * N_ITEMS)
        indicator[[j * N_ITEMS + a for j, a in enumerate(items)]] = 1.0
        expected["pseudo_inverse"].append(q_pi @ np.linalg.pinv(gamma[s]) @ indicator * r.sum())
        del mu
    for name, terms in expected.items():
        terms = np.asarray(terms)
        assert result.loc[name, "estimate"] == pytest.approx(terms.mean(), abs=1e-10), name
        std_error = terms.std(ddof=1) / np.sqrt(terms.size)
        assert result.loc[name, "std_error"] == pytest.approx(std_error, abs=1e-10)


def test_the_logging_policy_evaluated_on_its_own_logs_is_the_mean_reward(setting) -> None:
    _, _, logging, _, _, logs = setting
    result = evaluate_slates(logs, logging, ("sips", "iips", "rips"))
    mean = logs.groupby("slate_id")["reward"].sum().mean()
    np.testing.assert_allclose(result["estimate"], mean, rtol=1e-12)
    np.testing.assert_allclose(result["ess"], 300.0, rtol=1e-9)


@pytest.mark.parametrize("click_model, holding", [
    ("position", ("sips", "iips", "rips", "cascade_dr", "pseudo_inverse")),
    ("cascade", ("sips", "rips", "cascade_dr")),
])
def test_estimates_are_near_the_simulators_exact_value(click_model: str, holding: tuple[str, ...]) -> None:
    rng = np.random.default_rng(11)
    env = SlateEnv(n_segments=3, n_items=6, k=3, click_model=click_model, bias=-0.5, model_seed=5)
    logging = RankingPolicy.from_policy(TabularPolicy(0.5 * rng.dirichlet(np.ones(6), 3) + 0.5 / 6), 3)
    target = RankingPolicy.from_policy(TabularPolicy(rng.dirichlet(np.ones(6), 3)), 3)
    truth = slate_policy_value(env, target)
    logs = collect_slate_logs(env, logging, 40_000, seed=2)
    result = evaluate_slates(logs, target, holding, logging_policy=logging)
    for name in holding:
        row = result.loc[name]
        assert abs(row["estimate"] - truth) < 4 * row["std_error"], (name, row["estimate"], truth)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]


def test_exact_value_matches_a_monte_carlo_of_the_env() -> None:
    for click_model in ("position", "cascade"):
        env = SlateEnv(n_segments=2, n_items=4, k=2, click_model=click_model, model_seed=1)
        table = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4]])
        policy = RankingPolicy.from_policy(TabularPolicy(table), 2)
        logs = collect_slate_logs(env, policy, 200_000, seed=0)
        per_slate = logs.groupby("slate_id")["reward"].sum()
        truth = slate_policy_value(env, policy)
        assert abs(per_slate.mean() - truth) < 4 * per_slate.std() / np.sqrt(per_slate.size)


def test_intervals_bootstrap_and_diagnostics(setting) -> None:
    _, _, logging, target, _, logs = setting
    result = evaluate_slates(logs, target, ("sips", "rips"), interval="bernstein", n_bootstrap=50,
                             random_state=0)
    assert (result["interval"] == "bernstein").all()
    assert (result["ci_high"] - result["ci_low"] > 0).all()
    assert {"boot_ci_low", "boot_ci_high", "boot_std_error"} <= set(result.columns)
    likelihood = evaluate_slates(logs, target, "sips", interval="empirical_likelihood")
    row = likelihood.loc["sips"]
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert np.isnan(evaluate_slates(logs, target, "rips")["unobserved_share"]).all()
    assert 0.0 <= evaluate_slates(logs, target, "iips")["unobserved_share"].iloc[0] <= 1.0
    with pytest.raises(ValueError, match="not available for 'cascade_dr'"):
        evaluate_slates(logs, target, "cascade_dr", interval="bernstein")


def test_bad_logs_are_named(setting) -> None:
    _, _, _, target, _, logs = setting
    with pytest.raises(LogValidationError, match="slate_propensity"):
        evaluate_slates(logs.drop(columns="slate_propensity"), target, "sips")
    broken = logs.copy()
    broken.loc[1, "position"] = 0
    with pytest.raises(LogValidationError, match="slate 0 has positions \\[0, 0, 2\\]"):
        evaluate_slates(broken, target, "rips")
    short = logs[~((logs["slate_id"] == 4) & (logs["position"] == 2))]
    with pytest.raises(LogValidationError, match="slate 4 has 2 rows"):
        evaluate_slates(short, target, "rips")
    mixed = logs.copy()
    mixed.loc[0, "slate_propensity"] = 0.5
    with pytest.raises(LogValidationError, match="several values of 'slate_propensity'"):
        evaluate_slates(mixed, target, "sips")
    with pytest.raises(ValueError, match="ranks k=2"):
        evaluate_slates(logs, RankingPolicy.from_policy(TabularPolicy.uniform(2, N_ITEMS), 2), "sips")
    with pytest.raises(ValueError, match="unknown slate estimator"):
        evaluate_slates(logs, target, "dr")


def test_logs_without_state_are_one_context() -> None:
    env = SlateEnv(n_segments=1, n_items=4, k=2)
    uniform = RankingPolicy.from_policy(TabularPolicy.uniform(1, 4), 2)
    logs = collect_slate_logs(env, uniform, 500, seed=0).drop(columns="state")
    logs["slate_id"] = "s" + logs["slate_id"].astype(str)
    result = evaluate_slates(pd.DataFrame(logs), uniform, ("sips", "cascade_dr"))
    assert result.loc["sips", "estimate"] == pytest.approx(logs["reward"].sum() / 500)
