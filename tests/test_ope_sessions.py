"""Tests of hfrl.ope.evaluate_sessions (per-decision importance sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hfrl.errors import LogValidationError
from hfrl.ope import evaluate, evaluate_sessions
from hfrl.policies import TabularPolicy

N_STATES, N_ACTIONS = 3, 2


def brute(logs, policy, gamma):
    """Loop over sessions and steps, written independently."""
    sessions = []
    for _, group in logs.groupby("session_id", sort=False):
        group = group.sort_values("timestamp") if "timestamp" in group else group
        rho, out = 1.0, []
        for s, a, r, p in group[["state", "action", "reward", "propensity"]].itertuples(index=False):
            rho *= policy[s, a] / p
            out.append((rho, r))
        sessions.append(out)
    pdis = np.mean([sum(gamma**t * rho * r for t, (rho, r) in enumerate(x)) for x in sessions])
    horizon = max(len(x) for x in sessions)
    wpdis = 0.0
    for t in range(horizon):
        num = sum(x[t][0] * x[t][1] for x in sessions if len(x) > t)
        den = sum(x[min(t, len(x) - 1)][0] for x in sessions)
        wpdis += gamma**t * num / den
    return pdis, wpdis


def test_matches_brute_force():
    logging = np.array([[0.5, 0.5], [0.7, 0.3], [0.4, 0.6]])
    target = np.array([[0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    logs = _unshuffled(300, 1, logging)
    logs["timestamp"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(logs)), "s")
    shuffled = logs.sample(frac=1.0, random_state=3).reset_index(drop=True)  # timestamps give the order
    for gamma in (1.0, 0.9):
        result = evaluate_sessions(shuffled, TabularPolicy(target), gamma=gamma)
        pdis, wpdis = brute(shuffled, target, gamma)
        assert result.loc["pdis", "estimate"] == pytest.approx(pdis, abs=1e-10)
        assert result.loc["wpdis", "estimate"] == pytest.approx(wpdis, abs=1e-10)


def _unshuffled(n_sessions, seed, logging):
    rng = np.random.default_rng(seed)
    rows = []
    for sid in range(n_sessions):
        s = 0
        for _ in range(int(rng.integers(1, 5))):
            a = int(rng.random() < logging[s, 1])
            r = float(rng.random() < 0.2 + 0.3 * a + 0.1 * s)
            rows.append((sid, s, a, r, logging[s, a]))
            s = (s + a + 1) % N_STATES
    return pd.DataFrame(rows, columns=["session_id", "state", "action", "reward", "propensity"])


def test_row_order_is_the_step_order_without_timestamps():
    logging = np.array([[0.5, 0.5], [0.7, 0.3], [0.4, 0.6]])
    target = np.array([[0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    logs = _unshuffled(200, 2, logging)
    result = evaluate_sessions(logs, TabularPolicy(target))
    pdis, wpdis = brute(logs, target, 1.0)
    assert result.loc["pdis", "estimate"] == pytest.approx(pdis, abs=1e-10)
    assert result.loc["wpdis", "estimate"] == pytest.approx(wpdis, abs=1e-10)


def test_logging_policy_value_is_the_mean_return():
    logging = np.array([[0.5, 0.5], [0.7, 0.3], [0.4, 0.6]])
    logs = _unshuffled(300, 3, logging)
    result = evaluate_sessions(logs, TabularPolicy(logging))
    mean_return = logs.groupby("session_id")["reward"].sum().mean()
    assert result.loc["pdis", "estimate"] == pytest.approx(mean_return, abs=1e-10)
    assert result.loc["wpdis", "estimate"] == pytest.approx(mean_return, abs=1e-10)
    assert result.loc["pdis", "ess"] == pytest.approx(300)


def test_one_step_sessions_reduce_to_ips_and_snips():
    rng = np.random.default_rng(4)
    n = 500
    a = rng.integers(0, 2, n)
    logs = pd.DataFrame({"session_id": np.arange(n), "state": rng.integers(0, 3, n), "action": a,
                         "reward": rng.random(n), "propensity": 0.5})
    target = TabularPolicy(np.array([[0.2, 0.8], [0.5, 0.5], [0.6, 0.4]]))
    sessions = evaluate_sessions(logs, target)
    bandit = evaluate(logs, target, ("ips", "snips"))
    assert sessions.loc["pdis", "estimate"] == pytest.approx(bandit.loc["ips", "estimate"], abs=1e-12)
    assert sessions.loc["pdis", "std_error"] == pytest.approx(bandit.loc["ips", "std_error"], rel=1e-9)
    assert sessions.loc["wpdis", "estimate"] == pytest.approx(bandit.loc["snips", "estimate"], abs=1e-12)
    assert sessions.loc["wpdis", "std_error"] == pytest.approx(bandit.loc["snips", "std_error"], rel=1e-9)


def test_bootstrap_and_coverage_of_wpdis():
    logging = np.array([[0.5, 0.5], [0.7, 0.3], [0.4, 0.6]])
    target = np.array([[0.3, 0.7], [0.5, 0.5], [0.6, 0.4]])
    # the truth by a large sample of on-policy sessions
    truth = _unshuffled(100_000, 99, target).groupby("session_id")["reward"].sum().mean()
    hits = 0
    for seed in range(30):
        result = evaluate_sessions(_unshuffled(400, seed, logging), TabularPolicy(target), "wpdis")
        hits += result.loc["wpdis", "ci_low"] <= truth <= result.loc["wpdis", "ci_high"]
    assert hits >= 24  # 95% intervals, 30 seeds: at least 80%
    boot = evaluate_sessions(_unshuffled(400, 0, logging), TabularPolicy(target), n_bootstrap=100,
                             random_state=0)
    ratio = boot["boot_std_error"] / boot["std_error"]
    assert ((ratio > 0.7) & (ratio < 1.4)).all()


def test_errors():
    logs = _unshuffled(10, 0, np.full((3, 2), 0.5))
    target = TabularPolicy(np.full((3, 2), 0.5))
    with pytest.raises(LogValidationError, match="session_id"):
        evaluate_sessions(logs.drop(columns="session_id"), target)
    with pytest.raises(LogValidationError, match="propensity"):
        evaluate_sessions(logs.drop(columns="propensity"), target)
    with pytest.raises(ValueError, match="gamma"):
        evaluate_sessions(logs, target, gamma=2.0)
    with pytest.raises(ValueError, match="unknown session estimator"):
        evaluate_sessions(logs, target, "ips")


def test_support_split_matches_evaluate():
    # state 0 logs only action 0 at propensity 1 (support known: action 1 is unsupported); state 1
    # logs only action 0 at 0.5 (action 1 unobserved, not unsupported)
    logs = pd.DataFrame({"session_id": [0, 0, 1, 1], "state": [0, 1, 0, 1], "action": [0, 0, 0, 0],
                         "reward": [1.0, 0.0, 0.0, 1.0], "propensity": [1.0, 0.5, 1.0, 0.5]})
    target = TabularPolicy(np.array([[0.6, 0.4], [0.8, 0.2]]))
    with pytest.warns(UserWarning, match="support violation"):
        sessions = evaluate_sessions(logs, target)
    with pytest.warns(UserWarning, match="support violation"):
        flat = evaluate(logs, target, ("ips",))
    for column in ("support_violation_share", "unobserved_share"):
        assert sessions[column].iloc[0] == pytest.approx(flat[column].iloc[0])
    assert sessions["support_violation_share"].iloc[0] == pytest.approx(0.2)
    assert sessions["unobserved_share"].iloc[0] == pytest.approx(0.1)
