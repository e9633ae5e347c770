"""Tests of hfrl.tune: the closed-form alpha curve against brute force, choosing alpha, leakage, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hfrl.tune
from hfrl.backends.duckdb import DuckDBBackend
from hfrl.blending import blend
from hfrl.data import Logs
from hfrl.frequencies import HistoricalFrequency
from hfrl.ope import evaluate
from hfrl.policies import TabularPolicy
from hfrl.tune import LeakageWarning, alpha_curve, split_logs, tune_alpha

N_STATES, N_ACTIONS = 12, 4


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.6, (N_STATES, N_ACTIONS))
    logging = 0.7 * rng.dirichlet(np.ones(N_ACTIONS), N_STATES) + 0.3 / N_ACTIONS
    n = 6000
    s = rng.integers(0, N_STATES, n)
    a = np.minimum((rng.random(n)[:, None] > logging.cumsum(axis=1)[s]).sum(axis=1), N_ACTIONS - 1)
    r = (rng.random(n) < q[s, a]).astype(float)
    logs = pd.DataFrame({"state": s, "action": a, "reward": r, "propensity": logging[s, a],
                         "timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(n), "min")})
    pi = TabularPolicy(rng.dirichlet(np.ones(N_ACTIONS), N_STATES))
    hf = TabularPolicy(0.5 * logging + 0.5 * np.eye(N_ACTIONS)[q.argmax(axis=1)])
    return logs, pi, hf, q


@pytest.mark.parametrize("estimator", ["ips", "snips", "dm", "dr"])
def test_fast_curve_matches_brute_force(problem, estimator):
    logs, pi, hf, _ = problem
    alphas = np.linspace(0, 1, 21)
    fast = alpha_curve(pi, hf, logs, estimator, alphas)
    brute = alpha_curve(pi, hf, logs, estimator, alphas, fast=False)
    np.testing.assert_allclose(fast.to_numpy(), brute.to_numpy(), rtol=0, atol=1e-10)
    assert list(fast.columns) == ["alpha", "estimate", "std_error", "ci_low", "ci_high"]


@pytest.mark.parametrize(("estimator", "method"), [("clipped_ips", "linear"), ("switch_dr", "linear"),
                                                   ("snips", "geometric")])
def test_nonlinear_curves_match_brute_force(problem, estimator, method):
    logs, pi, hf, _ = problem
    alphas = [0.0, 0.3, 0.7, 1.0]
    fast = alpha_curve(pi, hf, logs, estimator, alphas, method=method, clip_threshold=2.0)
    brute = alpha_curve(pi, hf, logs, estimator, alphas, method=method, clip_threshold=2.0, fast=False)
    np.testing.assert_allclose(fast.to_numpy(), brute.to_numpy(), rtol=0, atol=1e-10)


def test_curve_with_estimated_propensities_and_duckdb(problem):
    logs, pi, hf, _ = problem
    memory = alpha_curve(pi, hf, logs.drop(columns="propensity"), "dr", [0, 0.5, 1], propensity="estimate")
    duck = alpha_curve(pi, hf, logs.drop(columns="propensity"), "dr", [0, 0.5, 1], propensity="estimate",
                       backend="duckdb")
    np.testing.assert_allclose(duck.to_numpy(), memory.to_numpy(), rtol=1e-9)


def test_tune_alpha_picks_the_best_estimate(problem):
    logs, pi, hf, _ = problem
    result = tune_alpha(pi, hf, logs, estimator="snips")
    assert len(result.curve) == 101
    best = result.curve["estimate"].idxmax()
    assert result.alpha == pytest.approx(result.curve["alpha"][best])
    np.testing.assert_allclose(result.policy.table_, blend(pi, hf, result.alpha).table_, atol=1e-12)
    best_value = result.curve["estimate"].max()
    assert result.evaluation.loc["snips", "estimate"] == pytest.approx(best_value, abs=1e-10)
    # HF leans on the best action, so it beats the random learned policy: alpha should be 1
    assert result.alpha == 1.0


def test_tune_alpha_lower_bound_is_refined(problem):
    logs, pi, hf, _ = problem
    result = tune_alpha(pi, hf, logs, estimator="dr", criterion="lower_bound")
    grid_best = result.curve["ci_low"].max()
    chosen = evaluate(logs, blend(pi, hf, result.alpha), "dr").loc["dr"]
    assert chosen["ci_low"] >= grid_best - 1e-12
    explicit = tune_alpha(pi, hf, logs, estimator="dr", alphas=[0.0, 0.5], criterion="lower_bound")
    assert explicit.alpha in (0.0, 0.5)


def test_leakage_refused_or_warned(problem):
    logs, pi, _, _ = problem
    train, validation, _ = split_logs(logs)
    leaky = HistoricalFrequency(count="rows").fit(validation, n_states=N_STATES, n_actions=N_ACTIONS)
    with pytest.raises(ValueError, match="Split first.*split_logs"):
        tune_alpha(pi, leaky, validation)
    with pytest.warns(LeakageWarning):
        tune_alpha(pi, leaky, validation, allow_leak=True)
    clean = HistoricalFrequency(count="rows").fit(train, n_states=N_STATES, n_actions=N_ACTIONS)
    assert 0.0 <= tune_alpha(pi, clean, validation).alpha <= 1.0


def test_split_logs_by_time_and_random(problem):
    logs, _, _, _ = problem
    shuffled = logs.sample(frac=1.0, random_state=0)
    train, validation, test = split_logs(shuffled, (0.5, 0.25, 0.25))
    assert [len(train), len(validation), len(test)] == [3000, 1500, 1500]
    assert train["timestamp"].max() < validation["timestamp"].min() <= validation["timestamp"].max() \
        < test["timestamp"].min()
    first = split_logs(logs, by="random", random_state=4)
    again = split_logs(logs, by="random", random_state=4)
    for x, y in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(x, y)
    rows = pd.concat(first)
    assert len(rows) == len(logs) and not rows.duplicated().any()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"fractions": (0.5, 0.5)}, "three"), ({"fractions": (0.6, 0.6, -0.2)}, "non-negative"),
     ({"by": "user"}, "by must be")],
)
def test_split_logs_errors(problem, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        split_logs(problem[0], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"alphas": [0.2, 1.5]}, r"\[0, 1\]"), ({"alphas": "many"}, "auto"), ({"criterion": "max"}, "criterion"),
     ({"estimator": "magic"}, "estimator"), ({"method": "cubic"}, "method")],
)
def test_tune_alpha_errors(problem, kwargs, pattern):
    logs, pi, hf, _ = problem
    with pytest.raises(ValueError, match=pattern):
        tune_alpha(pi, hf, logs, **kwargs)


def test_shapes_must_match(problem):
    logs, pi, _, _ = problem
    with pytest.raises(ValueError, match="same states and actions"):
        tune_alpha(pi, np.full((N_STATES, N_ACTIONS + 1), 1 / (N_ACTIONS + 1)), logs)


def test_compare_is_exported_from_tune():
    assert hfrl.tune.compare is hfrl.ope.compare


class CountingDuckDB(DuckDBBackend):
    """DuckDB that records every ``group_sums`` (each is one pass over the logs)."""

    def __init__(self):
        super().__init__()
        self.passes = []

    def group_sums(self, logs, keys, sums, *, where=None):
        self.passes.append(tuple(keys))
        return super().group_sums(logs, keys, sums, where=where)


@pytest.mark.parametrize("criterion", ["estimate", "lower_bound"])
def test_tune_alpha_reads_the_logs_once(tmp_path, problem, criterion):
    logs, pi, _, _ = problem
    path = str(tmp_path / "logs.parquet")
    logs.to_parquet(path)
    hf = HistoricalFrequency(half_life="1D", backend="duckdb").fit(
        path, n_states=N_STATES, n_actions=N_ACTIONS
    )
    engine = CountingDuckDB()
    with pytest.warns(LeakageWarning):  # the fingerprint from the shared statistics still sees the leak
        once = tune_alpha(pi, hf, path, "snips", criterion=criterion, backend=engine, allow_leak=True)
    # leakage check, curve, refinement and final evaluation share one group-by over (state, action)
    assert engine.passes == [("state", "action")]
    with pytest.warns(LeakageWarning):
        before = tune_alpha(pi, hf, logs, "snips", criterion=criterion, allow_leak=True)
    assert once.alpha == pytest.approx(before.alpha, abs=1e-9)
    np.testing.assert_allclose(once.curve.to_numpy(), before.curve.to_numpy(), rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(once.evaluation, before.evaluation, rtol=1e-9)


def test_one_validated_source_chains_evaluate_and_tune(problem):
    logs, pi, hf, _ = problem
    validated = Logs.open(logs)
    chained = tune_alpha(pi, hf, validated, "dr")
    plain = tune_alpha(pi, hf, logs, "dr")
    assert chained.alpha == plain.alpha
    pd.testing.assert_frame_equal(chained.curve, plain.curve)
    assert len(validated._statistics) == 1  # the curve and the final evaluation shared one pass
    pd.testing.assert_frame_equal(evaluate(validated, pi), evaluate(logs, pi))
    curve = alpha_curve(pi, hf, validated, "snips", [0, 0.5, 1], fast=False)
    np.testing.assert_allclose(curve.to_numpy(), alpha_curve(pi, hf, logs, "snips", [0, 0.5, 1]).to_numpy(),
                               atol=1e-12)


def _rare_clicks():
    """2,000 uniformly logged rows over 10 actions; 3 clicks, all on action 0, none on action 9."""
    action = np.tile(np.arange(10), 200)
    reward = np.zeros(2000)
    reward[np.flatnonzero(action == 0)[[5, 70, 150]]] = 1.0
    logs = pd.DataFrame({"state": 0, "action": action, "reward": reward, "propensity": 0.1})
    pi = np.zeros((1, 10))
    pi[0, 9] = 1.0  # all mass on a pair that never clicked: every SNIPS term is 0
    hf = np.zeros((1, 10))
    hf[0, 0] = 1.0  # all mass on the pair with the clicks
    return logs, pi, hf


def test_lower_bound_is_not_fooled_by_a_zero_variance_estimate():
    logs, pi, hf = _rare_clicks()
    # pi's weighted rows never clicked: every IPS/SNIPS term is 0, so a normal interval is [0, 0]
    # and its lower bound 0 beat every policy that saw a click (tune_alpha chose alpha = 0)
    zero = evaluate(logs, TabularPolicy(pi), ("ips", "snips", "dr"))
    assert zero.loc["ips", "estimate"] == 0 and zero.loc["snips", "estimate"] == 0
    normal = evaluate(logs, TabularPolicy(pi), ("ips", "snips"), interval="normal")
    assert (normal["ci_high"] == 0).all()
    # the default (empirical likelihood with an unseen row of weight up to 10 and reward up to 1)
    # leaves room for the click nobody saw: the upper bound is well above 0
    assert (zero.loc[["ips", "snips"], "ci_high"] > 1.0 / 2000).all()
    assert (zero["ci_high"] > zero["ci_low"]).all()
    result = tune_alpha(pi, hf, logs, "snips", criterion="lower_bound")
    assert result.alpha > 0.1
    alphas = np.linspace(0, 1, 21)
    fast = alpha_curve(pi, hf, logs, "snips", alphas)
    brute = alpha_curve(pi, hf, logs, "snips", alphas, fast=False)
    np.testing.assert_allclose(fast.to_numpy(), brute.to_numpy(), rtol=0, atol=1e-10)


def test_default_interval_is_close_to_normal_with_many_events():
    rng = np.random.default_rng(0)
    n = 20_000
    action = rng.integers(0, 4, n)
    logs = pd.DataFrame({"state": 0, "action": action, "propensity": 0.25,
                         "reward": (rng.random(n) < 0.3 + 0.1 * action) * 1.0})
    target = TabularPolicy(np.array([[0.1, 0.2, 0.3, 0.4]]))
    default = evaluate(logs, target, ("ips", "snips"))
    normal = evaluate(logs, target, ("ips", "snips"), interval="normal")
    width = (default["ci_high"] - default["ci_low"]) / (normal["ci_high"] - normal["ci_low"])
    # the likelihood uses E[w] = 1, as SNIPS does: SNIPS's normal width, narrower than IPS's here
    assert 0.97 < width["snips"] < 1.03
    assert 0.8 < width["ips"] < 0.9


def test_unseen_pairs_under_known_propensities_keep_the_interval_open():
    # action 9 is never logged, but the seen propensities (9 x 0.1) leave it 0.1 of the logging
    # mass: a row of it would weigh up to 1 / 0.1 = 10, so IPS's 0 is not certain
    logs, pi, hf = _rare_clicks()
    logs = logs[logs["action"] != 9].reset_index(drop=True)
    with pytest.warns(UserWarning, match="not a support violation"):
        zero = evaluate(logs, TabularPolicy(pi), ("ips",))
    assert zero.loc["ips", "estimate"] == 0 and zero.loc["ips", "unobserved_share"] == 1
    assert zero.loc["ips", "ci_high"] > 1.0 / len(logs)
    with pytest.warns(UserWarning):
        result = tune_alpha(pi, hf, logs, "ips", criterion="lower_bound")
    assert result.alpha > 0.1
    alphas = np.linspace(0, 1, 11)
    with pytest.warns(UserWarning):
        fast = alpha_curve(pi, hf, logs, "ips", alphas)
        brute = alpha_curve(pi, hf, logs, "ips", alphas, fast=False)
    np.testing.assert_allclose(fast.to_numpy(), brute.to_numpy(), rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------- the return
def patience_shop():
    """Three states in a row: in states 0 and 1, action 0 pays 1 and ends the session, action 1 pays 0
    and moves on; in state 2 action 0 pays 4 (action 1 pays 0), and the session ends. The myopic
    policy (action 0 everywhere) wins one step ahead; waiting for state 2 wins the return."""
    from scipy import sparse

    from hfrl.envs import TabularMDPEnv

    rewards = np.array([[1.0, 0.0], [1.0, 0.0], [4.0, 0.0]])
    moves = np.zeros((6, 3))
    moves[1, 1] = moves[3, 2] = 1.0
    return TabularMDPEnv(rewards, sparse.csr_matrix(moves), [1.0, 0.0, 0.0], reward_noise="gaussian")


@pytest.fixture(scope="module")
def shop_sessions():
    """The patience shop's uniform session logs in two halves (by session), the return-optimal
    policy (wait, then take the 4) and the myopic one (take 1 at once), known exactly."""
    from hfrl.envs import collect_logs, logging_policy

    env = patience_shop()
    logs = collect_logs(env, logging_policy(env, "uniform"), 20_000, seed=5)
    tuning, safety, _ = split_logs(logs, (0.5, 0.5, 0.0), by="session")
    optimal = env.optimal_policy(0.9)
    myopic = TabularPolicy(np.eye(env.n_actions)[env.reward_matrix().argmax(axis=1)])
    return env, tuning, safety, optimal, myopic


def test_the_return_objective_keeps_the_far_sighted_policy_the_reward_objective_drops(shop_sessions):
    env, tuning, _, optimal, myopic = shop_sessions
    # one step ahead the myopic policy wins; over the session the optimal one does (3.24 vs 1)
    assert (myopic.table_ * env.reward_matrix()).sum() > (optimal.table_ * env.reward_matrix()).sum()
    assert env.policy_value(optimal, 0.9) == pytest.approx(0.81 * 4) and env.policy_value(myopic, 0.9) == 1
    by_reward = tune_alpha(optimal, myopic, tuning, "snips", allow_leak=True)
    by_return = tune_alpha(optimal, myopic, tuning, objective="return", gamma=0.9, allow_leak=True)
    assert by_reward.alpha == 1.0 and by_reward.objective == "reward" and by_reward.gamma is None
    assert by_return.alpha < 0.5 and by_return.objective == "return" and by_return.gamma == 0.9
    assert by_return.estimator == "fqe" and "discounted return" in by_return.reason
    assert env.policy_value(by_return.policy, 0.9) > env.policy_value(by_reward.policy, 0.9)


def test_the_return_curve_is_fitted_q_evaluation_of_each_blend_and_covers_the_truth(shop_sessions):
    from hfrl.ope.returns import evaluate_return

    env, tuning, _, optimal, myopic = shop_sessions
    result = tune_alpha(optimal, myopic, tuning, alphas=[0.0, 0.5, 1.0], objective="return", gamma=0.9,
                        allow_leak=True)
    for index, alpha in enumerate([0.0, 0.5, 1.0]):
        row = result.curve.iloc[index]
        direct = evaluate_return(tuning, blend(optimal, myopic, alpha), 0.9).loc["fqe"]
        assert row["estimate"] == pytest.approx(direct["estimate"], rel=1e-12)
        assert row["ci_low"] == pytest.approx(direct["ci_low"], rel=1e-12)
        truth = env.policy_value(result.policy_at(index), 0.9)
        assert row["ci_low"] <= truth <= row["ci_high"], alpha


def test_safety_passes_a_clear_improvement_and_refuses_a_loss_with_the_advice(shop_sessions):
    env, tuning, safety, optimal, myopic = shop_sessions
    good = tune_alpha(optimal, myopic, tuning, objective="return", gamma=0.9, safety_logs=safety,
                      allow_leak=True)
    assert good.passed_safety is True and good.safety.ci_low > 0 and "passed" in good.safety_reason
    worst = TabularPolicy(np.eye(env.n_actions)[[1, 1, 1]])  # never takes a reward: return 0
    bad = tune_alpha(worst, worst, tuning, objective="return", gamma=0.9, safety_logs=safety,
                     allow_leak=True)
    assert bad.passed_safety is False and "Keep the policy that runs today" in bad.safety_reason
    np.testing.assert_array_equal(bad.policy.table_, worst.table_)  # still there, for inspection
    assert tune_alpha(optimal, myopic, tuning, objective="return", gamma=0.9,
                      allow_leak=True).passed_safety is None


def test_safety_on_the_one_step_reward_uses_the_paired_comparison(problem):
    logs, pi, hf, q = problem
    best = TabularPolicy(np.eye(N_ACTIONS)[q.argmax(axis=1)])
    head, tail = logs.iloc[:3000], logs.iloc[3000:]
    result = tune_alpha(best, hf, head, "snips", safety_logs=tail, allow_leak=True)
    assert result.passed_safety is True and result.safety.estimator == "snips"
    # the one-sided bound at 0.95 is the two-sided 0.90 interval's lower end
    assert result.safety.level == pytest.approx(0.90)


def test_per_state_alpha_keeps_more_hf_where_history_is_thin(problem):
    logs, pi, _, _ = problem
    counts = np.array([0.0, 1.0, 10.0, 1000.0])
    np.testing.assert_allclose(hfrl.tune.per_state_alpha(10.0, counts), [1.0, 10 / 11, 0.5, 10 / 1010])
    np.testing.assert_array_equal(hfrl.tune.per_state_alpha(0.0, counts), [1.0, 0.0, 0.0, 0.0])
    hf = HistoricalFrequency().fit(logs.iloc[:3000], n_states=N_STATES, n_actions=N_ACTIONS)
    result = tune_alpha(pi, hf, logs.iloc[3000:], "snips", per_state=True)
    history = hf.impressions_.sum(axis=1)
    np.testing.assert_allclose(result.alpha_per_state, hfrl.tune.per_state_alpha(result.kappa, history))
    np.testing.assert_allclose(result.policy.table_, blend(pi, hf, result.alpha_per_state).table_)
    assert "kappa" in result.curve.columns and result.curve["estimate"].notna().all()
    best = result.curve["estimate"].idxmax()
    assert result.kappa == result.curve["kappa"].iloc[best]
    with pytest.raises(ValueError, match="leave alphas='auto'"):
        tune_alpha(pi, hf, logs.iloc[3000:], "snips", alphas=[0.0, 1.0], per_state=True)


@pytest.mark.parametrize("options, message", [
    ({"objective": "value"}, "objective must be one of"),
    ({"objective": "return"}, "needs gamma"),
    ({"objective": "return", "gamma": 1.5}, "gamma must be a discount factor"),
    ({"objective": "return", "gamma": 0.9, "estimator": "dr"}, "the return objective is estimated by"),
    ({"per_state": "yes"}, "per_state must be True or False"),
])
def test_bad_tuning_options_are_named(shop_sessions, options, message):
    _, tuning, _, optimal, myopic = shop_sessions
    with pytest.raises(ValueError, match=message):
        tune_alpha(optimal, myopic, tuning, allow_leak=True, **options)


def test_split_by_session_keeps_sessions_whole_and_in_time_order(shop_sessions):
    _, tuning, _, _, _ = shop_sessions
    parts = split_logs(tuning, (0.5, 0.25, 0.25), by="session")
    ids = [set(p["session_id"]) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert sum(len(p) for p in parts) == len(tuning)
    assert parts[0]["timestamp"].min() <= parts[1]["timestamp"].min() <= parts[2]["timestamp"].min()
    with pytest.raises(ValueError, match="needs a 'session_id' column"):
        split_logs(tuning.drop(columns="session_id"), by="session")
