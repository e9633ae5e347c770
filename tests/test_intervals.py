"""Tests of the intervals a deployment rests on: reward domain, interval methods, sequences, tuning
output, censored sessions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import hfrl.envs  # noqa: F401 - registers the environments
from hfrl.data import Logs
from hfrl.envs import collect_logs, logging_policy
from hfrl.errors import LogValidationError
from hfrl.ope import compare, confidence_sequence, evaluate, evaluate_sessions
from hfrl.ope.inference import empirical_likelihood_interval, merge_rows, pool_rows
from hfrl.policies import TabularPolicy
from hfrl.tune import tune_alpha


def clicks(n: int, ctr: np.ndarray, logging: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    action = rng.choice(logging.size, n, p=logging)
    return pd.DataFrame({"state": 0, "action": action, "propensity": logging[action],
                         "reward": (rng.random(n) < ctr[action]).astype(np.int64)})


# ------------------------------------------------------------------------------ reward domain


def test_declared_reward_range_is_checked_and_used_by_the_bounds():
    logs = clicks(400, np.full(4, 0.3), np.full(4, 0.25), 0).assign(reward=lambda d: d["reward"] * 0.5)
    target = TabularPolicy(np.array([[0.7, 0.1, 0.1, 0.1]]))
    observed = evaluate(logs, target, ("ips",), interval="bernstein")
    declared = evaluate(logs, target, ("ips",), interval="bernstein", reward_range=(0.0, 5.0))
    assert Logs.open(logs).reward_range == (0.0, 0.5)  # not binary: the logged range
    # the guaranteed bound scales with the declared domain, not with the rewards that happened
    assert declared.loc["ips", "ci_high"] - declared.loc["ips", "estimate"] > \
        3 * (observed.loc["ips", "ci_high"] - observed.loc["ips", "estimate"])
    with pytest.raises(LogValidationError, match=r"'reward': row \d+ has 0.5, expected a reward in the "
                                                 r"declared reward_range \[0, 0.4\]"):
        evaluate(logs, target, ("ips",), reward_range=(0.0, 0.4))


def test_binary_rewards_are_recognised_whatever_their_type():
    ints = clicks(200, np.full(2, 0.3), np.full(2, 0.5), 1)
    floats = ints.astype({"reward": float})
    for frame in (ints, floats):
        logs = Logs.open(frame)
        assert logs.binary_reward and logs.reward_range == (0.0, 1.0)
    assert not Logs.open(floats.assign(reward=floats["reward"] * 2)).binary_reward


# ------------------------------------------------------------------------------ interval methods


def test_a_split_without_any_reward_never_gets_a_zero_width_interval():
    logs = clicks(1000, np.zeros(10), np.full(10, 0.1), 2)
    target = TabularPolicy(np.r_[0.5, np.full(9, 0.5 / 9)][None, :])
    result = evaluate(logs, target, ("ips", "snips", "dr"))
    assert (result["estimate"].abs() < 1e-12).all()
    assert (result["ci_high"] > 1e-3).all() and (result["ci_low"] == 0).all()
    assert set(result["interval"]) == {"empirical_likelihood"}
    verdict = compare(target, logs)
    assert verdict.ci_high > verdict.ci_low


def test_bernstein_is_wider_than_the_default_and_dm_says_variance_only():
    logs = clicks(3000, np.linspace(0.1, 0.4, 5), np.full(5, 0.2), 3)
    target = TabularPolicy(np.array([[0.1, 0.1, 0.2, 0.2, 0.4]]))
    default = evaluate(logs, target, ("ips", "snips", "dr", "dm"))
    guaranteed = evaluate(logs, target, ("ips", "snips", "dr"), interval="bernstein")
    for name in ("ips", "snips", "dr"):
        assert guaranteed.loc[name, "ci_low"] < default.loc[name, "ci_low"]
        assert guaranteed.loc[name, "ci_high"] > default.loc[name, "ci_high"]
        assert guaranteed.loc[name, "interval"] == "bernstein"
    assert default.loc["dm", "interval"] == "normal (variance only)"
    with pytest.raises(ValueError, match="interval must be 'auto' or one of"):
        evaluate(logs, target, ("ips",), interval="exact")


def test_likelihood_bounds_follow_the_skew_of_rare_events():
    # 3 clicks at weight 10 in 2,000 rows: the exact Poisson interval is [0.0031, 0.044]
    action = np.tile(np.arange(10), 200)
    reward = np.zeros(2000, dtype=np.int64)
    reward[np.flatnonzero(action == 0)[[5, 70, 150]]] = 1
    logs = pd.DataFrame({"state": 0, "action": action, "reward": reward, "propensity": 0.1})
    target = TabularPolicy(np.eye(10)[:1])
    row = evaluate(logs, target, ("ips",)).loc["ips"]
    assert 0.002 < row["ci_low"] < 0.005 and 0.03 < row["ci_high"] < 0.05
    normal = evaluate(logs, target, ("ips",), interval="normal").loc["ips"]
    assert normal["ci_low"] < 0 < row["ci_low"]  # the normal interval is symmetric and crosses 0


def test_pooling_rows_keeps_the_sums_and_the_bounds():
    rng = np.random.default_rng(0)
    n = 30_000
    weight = rng.gamma(2.0, 0.5, n)
    term = weight * (rng.random(n) < 0.1)
    count = np.ones(n)
    (w, t), c = pool_rows([weight, term], count)
    assert c.size < n
    np.testing.assert_allclose([c.sum(), c @ w, c @ t], [n, weight.sum(), term.sum()], rtol=1e-12)
    corners = (np.array([0.0, 0.0, 20.0, 20.0]), np.array([0.0, 0.0, 0.0, 20.0]))
    exact = empirical_likelihood_interval(weight, term, count, corners, 0.95, (0.0, 1.0))
    pooled = empirical_likelihood_interval(*merge_rows(weight, term, count), corners, 0.95, (0.0, 1.0))
    np.testing.assert_allclose(pooled, exact, rtol=1e-6)


# ------------------------------------------------------------------------------ sequences


def test_confidence_sequence_reports_prefixes_and_finds_a_real_difference():
    logs = clicks(6000, np.array([0.3, 0.45]), np.array([0.5, 0.5]), 4)
    better = TabularPolicy(np.array([[0.0, 1.0]]))
    sequence = confidence_sequence(logs, better, baseline="logging", n_points=10)
    assert sequence["n_rows"].tolist() == list(range(600, 6001, 600))
    assert (sequence["ci_high"] - sequence["ci_low"]).is_monotonic_decreasing
    assert sequence["ci_low"].iloc[-1] > 0
    value = confidence_sequence(logs, better, step=1000)
    assert value["n_rows"].tolist() == [1000, 2000, 3000, 4000, 5000, 6000]
    assert (value["ci_low"] <= value["estimate"]).all() and (value["estimate"] <= value["ci_high"]).all()


def test_confidence_sequence_holds_at_every_look_under_a_null():
    # both actions click at 30%: a candidate on action 0 is exactly as good as logging
    rng = np.random.default_rng(5)
    alarms = 0
    for seed in rng.integers(0, 10_000, 40):
        logs = clicks(4000, np.array([0.3, 0.3]), np.array([0.5, 0.5]), int(seed))
        sequence = confidence_sequence(logs, TabularPolicy(np.array([[1.0, 0.0]])), baseline="logging",
                                       step=100)
        alarms += int(((sequence["ci_low"] > 0) | (sequence["ci_high"] < 0)).any())
    assert alarms <= 2  # nominally 5%: at most 2 of 40 streams ever exclude the truth


# ------------------------------------------------------------------------------ tuning output


def test_tune_alpha_reports_its_value_on_test_rows_or_says_it_is_optimistic():
    ctr = np.array([0.2, 0.3, 0.25])
    validation = clicks(3000, ctr, np.full(3, 1 / 3), 6)
    test = clicks(3000, ctr, np.full(3, 1 / 3), 7)
    pi, hf = np.array([[0.6, 0.2, 0.2]]), np.array([[0.1, 0.8, 0.1]])
    selected = tune_alpha(pi, hf, validation, "snips")
    assert selected.optimistic and selected.evaluation["rows"].iloc[0] == "selection"
    honest = tune_alpha(pi, hf, validation, "snips", test_logs=test)
    assert not honest.optimistic and honest.evaluation["rows"].iloc[0] == "test"
    assert honest.alpha == selected.alpha
    expected = evaluate(test, honest.policy, ("snips",))
    assert honest.evaluation["estimate"].iloc[0] == pytest.approx(expected.loc["snips", "estimate"])


# ------------------------------------------------------------------------------ censored sessions


def test_censored_sessions_are_reweighted_and_match_the_exact_return():
    # collect_logs cuts the last session of each of its 2,000 lanes: treating those as complete
    # biases the return low; inverse probability of censoring weights remove that bias
    env = gym.make("hfrl/Recommendation-v0").unwrapped
    logging = logging_policy(env, "uniform")
    target = TabularPolicy(0.8 * logging.table_ + 0.2 * env.optimal_policy(0.9).table_)
    truth = env.policy_value(target, 0.9)
    reweighted, naive = [], []
    for seed in range(8):
        logs = collect_logs(env, logging, n=200_000, seed=seed, n_parallel=2000)
        result = evaluate_sessions(logs, target, ("pdis",), gamma=0.9)
        assert result.loc["pdis", "censored_sessions"] > 1000
        reweighted.append(result.loc["pdis", "estimate"])
        naive.append(evaluate_sessions(logs.assign(done=True), target, ("pdis",), gamma=0.9)
                     .loc["pdis", "estimate"])
    error, spread = np.mean(reweighted) - truth, np.std(reweighted, ddof=1) / np.sqrt(8)
    bias, naive_spread = np.mean(naive) - truth, np.std(naive, ddof=1) / np.sqrt(8)
    assert abs(error) < 3 * spread
    assert bias < -3 * naive_spread and abs(error) < 0.5 * abs(bias)
