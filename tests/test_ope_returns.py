"""The discounted return from session logs (fitted Q evaluation) against hand-computed and exact truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hfrl.envs import RecommendationEnv, collect_logs, logging_policy
from hfrl.errors import LogValidationError
from hfrl.ope.returns import ReturnModel, compare_return, evaluate_return

GAMMA = 0.9


def two_state_logs() -> pd.DataFrame:
    """Sessions 0 -> 1 -> end; state 0 has actions 0 (reward 1, continues) and 1 (reward 0, ends)."""
    return pd.DataFrame({"session_id": [0, 0, 1, 2, 2], "state": [0, 1, 0, 0, 1],
                         "action": [0, 1, 1, 0, 1], "reward": [1.0, 2.0, 0.0, 1.0, 4.0],
                         "next_state": [1, 1, 0, 1, 1], "done": [False, True, True, False, True]})


def test_without_shrinkage_the_model_is_the_logs_own_cells_solved_exactly():
    model = ReturnModel.from_logs(two_state_logs(), 2, 2, shrinkage=0.0)
    stay = np.array([[1.0, 0.0], [0.0, 1.0]])
    # V(1) = mean reward 3, V(0) = 1 + 0.5 * 3 under action 0; all three sessions start in state 0
    assert model.evaluate(stay, gamma=0.5).estimate == pytest.approx(2.5, rel=1e-12)
    leave = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert model.evaluate(leave, gamma=0.5).estimate == pytest.approx(0.0, abs=1e-12)
    # the empirical behaviour: 2/3 action 0, 1/3 action 1 in state 0 -> 2/3 * (1 + 0.5 * 3)
    assert model.logging_value(0.5).estimate == pytest.approx(2 / 3 * 2.5, rel=1e-12)


def test_the_interval_covers_the_exact_return_of_the_optimal_policy():
    env = RecommendationEnv()
    best = env.optimal_policy(GAMMA)
    truth = env.policy_value(best, GAMMA)
    uniform = logging_policy(env, "uniform")
    hits = 0
    for seed in range(20):
        row = evaluate_return(collect_logs(env, uniform, 20_000, seed=seed), best, GAMMA).loc["fqe"]
        assert row["unobserved_share"] == 0.0 and row["interval"] == "normal"
        hits += bool(row["ci_low"] <= truth <= row["ci_high"])
    assert hits >= 17  # the 5% quantile of Binomial(20, 0.95)


def test_paired_comparison_ships_the_optimum_and_finds_no_gain_in_the_logging_policy_itself():
    env = RecommendationEnv()
    uniform = logging_policy(env, "uniform")
    logs = collect_logs(env, uniform, 30_000, seed=3)
    best = compare_return(env.optimal_policy(GAMMA), logs, GAMMA)
    assert best.verdict == "ship" and best.estimator == "fqe"
    gain = env.policy_value(env.optimal_policy(GAMMA), GAMMA) - env.policy_value(uniform, GAMMA)
    assert best.ci_low <= gain <= best.ci_high
    itself = compare_return(uniform, logs, GAMMA)
    assert itself.ci_low <= 0.0 <= itself.ci_high
    # paired: the difference is far tighter than either value's own interval
    assert itself.std_error < 0.5 * (itself.candidate_ci[1] - itself.candidate_ci[0]) / 1.96


def test_a_policy_resting_on_unlogged_cells_gets_an_unreliable_verdict():
    logs = two_state_logs()
    never = np.array([[1.0, 0.0], [1.0, 0.0]])  # action 0 in state 1 was never logged
    result = compare_return(never, logs, 0.5, baseline=np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert result.verdict == "unreliable" and result.unobserved_share > 0.05
    assert "never saw" in result.reason


def test_bad_inputs_are_named():
    logs = two_state_logs()
    with pytest.raises(LogValidationError, match="next_state"):
        evaluate_return(logs.drop(columns="next_state"), np.full((2, 2), 0.5), GAMMA)
    with pytest.raises(ValueError, match="gamma must be a discount factor"):
        evaluate_return(logs, np.full((2, 2), 0.5), 1.5)
    with pytest.raises(ValueError, match="weight"):
        evaluate_return(logs.assign(weight=1.0), np.full((2, 2), 0.5), GAMMA)
    with pytest.raises(ValueError, match="same states and actions"):
        ReturnModel.from_logs(logs, 2, 2).evaluate(np.full((3, 2), 0.5), GAMMA)
