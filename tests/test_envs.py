"""hfrl.envs: Gymnasium compliance, exact truth against Monte Carlo, logs, fitted simulators."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import hfrl.envs
from hfrl.data import validate_logs
from hfrl.envs import (
    AdPlacementEnv,
    RecommendationEnv,
    TabularMDPEnv,
    collect_logs,
    exact,
    fit_env,
    logging_policy,
)
from hfrl.errors import LogValidationError
from hfrl.policies import TabularPolicy

GAMMA = 0.9


def _check(env: gym.Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker warns about rendering only
        check_env(env, skip_render_check=True)


def _random_mdp(seed: int, n_states: int = 6, n_actions: int = 3) -> TabularMDPEnv:
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(0.0, 1.0, (n_states, n_actions))
    dense = rng.dirichlet(np.ones(n_states), size=n_states * n_actions)
    dense *= rng.uniform(0.5, 0.95, (n_states * n_actions, 1))  # 5-50% chance to end
    dense[dense < 0.3 / n_states] = 0.0
    return TabularMDPEnv(rewards, sp.csr_matrix(dense), rng.dirichlet(np.ones(n_states)),
                         reward_noise="bernoulli")


def _mc_returns(env: TabularMDPEnv, policy: TabularPolicy, gamma: float, n: int, seed: int,
                horizon: int = 400) -> np.ndarray:
    """Discounted returns of ``n`` episodes simulated with the batch API."""
    rng = np.random.default_rng(seed)
    states = env.reset_batch(n, rng)
    alive = np.ones(n, dtype=bool)
    returns = np.zeros(n)
    discount = 1.0
    for _ in range(horizon):
        actions, _ = policy.sample(states, random_state=rng)
        rewards, next_states, terminated = env.step_batch(states, actions, rng)
        returns += np.where(alive, discount * rewards, 0.0)
        alive &= ~terminated
        states = next_states
        discount *= gamma
        if not alive.any():
            break
    return returns


# ---------------------------------------------------------------------- Gymnasium compliance
@pytest.mark.parametrize("env_id", ["hfrl/Recommendation-v0", "hfrl/AdPlacement-v0"])
def test_registered_envs_pass_the_gymnasium_checker(env_id: str) -> None:
    env = gym.make(env_id)
    _check(env.unwrapped)
    assert env.unwrapped.observation_space == gym.spaces.Discrete(env.unwrapped.n_states)
    assert env.unwrapped.action_space == gym.spaces.Discrete(env.unwrapped.n_actions)


def test_module_prefixed_make_and_default_sizes() -> None:
    env = gym.make("hfrl.envs:hfrl/Recommendation-v0")
    assert (env.unwrapped.n_states, env.unwrapped.n_actions) == (20, 10)
    assert env.spec is not None and env.spec.max_episode_steps == hfrl.envs.RECOMMENDATION_MAX_STEPS
    sized = gym.make("hfrl/Recommendation-v0", n_segments=3, n_categories=2, n_items=7)
    assert (sized.unwrapped.n_states, sized.unwrapped.n_actions) == (9, 7)
    ads = gym.make("hfrl/AdPlacement-v0")
    assert (ads.unwrapped.n_states, ads.unwrapped.n_actions) == (20, 10)


def test_slate_budget_generic_and_fitted_envs_pass_the_checker() -> None:
    _check(RecommendationEnv(slate_size=3))
    _check(AdPlacementEnv(n_times=3, daily_budgets=np.full(10, 5.0)))
    _check(_random_mdp(0))
    truth = RecommendationEnv()
    logs = collect_logs(truth, logging_policy(truth, "uniform"), n=3000, seed=0)
    _check(fit_env(logs, n_states=truth.n_states, n_actions=truth.n_actions))
    _check(fit_env(logs.drop(columns=["next_state", "done"])))


def test_seeding_is_deterministic_for_step_and_batch() -> None:
    def rollout(seed: int) -> list[tuple[int, float, bool]]:
        env = gym.make("hfrl/Recommendation-v0")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trace = []
        for _ in range(50):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append((obs, reward, terminated))
            if terminated or truncated:
                obs, _ = env.reset()
        return trace

    assert rollout(7) == rollout(7)
    assert rollout(7) != rollout(8)
    env = RecommendationEnv()
    first = env.step_batch(env.reset_batch(500, 3), np.arange(500) % 10, 4)
    second = env.step_batch(env.reset_batch(500, 3), np.arange(500) % 10, 4)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_decode_and_encode_states() -> None:
    env = RecommendationEnv(n_segments=3, n_categories=4, n_items=6)
    assert env.decode_state(0) == {"segment": 0, "last_category": None}
    assert env.decode_state(env.encode_state(2, 3)) == {"segment": 2, "last_category": 3}
    ads = AdPlacementEnv(n_slots=2, n_segments=3, n_times=4)
    assert ads.decode_state(ads.encode_state(1, 2, 3)) == {"slot": 1, "segment": 2, "time_of_day": 3}
    with pytest.raises(ValueError, match="state id 15 .* outside"):
        env.decode_state(15)


# ---------------------------------------------------------------------- rewards and transitions
@pytest.mark.parametrize("make", [RecommendationEnv, AdPlacementEnv, lambda: _random_mdp(1)])
def test_sampled_rewards_match_expected_reward(make) -> None:
    env = make()
    rng = np.random.default_rng(0)
    per_pair = 4000
    states = np.repeat(np.arange(env.n_states), env.n_actions * per_pair)
    actions = np.tile(np.repeat(np.arange(env.n_actions), per_pair), env.n_states)
    rewards, _, _ = env.step_batch(states, actions, rng)
    cells = states * env.n_actions + actions
    mean = np.bincount(cells, rewards) / per_pair
    sq = np.bincount(cells, rewards**2) / per_pair
    se = np.sqrt(np.maximum(sq - mean**2, 1e-12) / per_pair)
    truth = env.expected_reward(states[::per_pair], actions[::per_pair])
    z = (mean - truth) / np.maximum(se, 1e-9)
    assert np.abs(z).max() < 5.0, f"worst z-score {np.abs(z).max():.2f}"
    np.testing.assert_allclose(env.reward_matrix().ravel(), truth)


def test_expected_reward_broadcasts_and_follows_the_model() -> None:
    env = RecommendationEnv()
    grid = env.expected_reward(np.arange(env.n_states)[:, None], np.arange(env.n_actions)[None, :])
    assert grid.shape == (env.n_states, env.n_actions)
    s = env.encode_state(1, 2)
    item = int(np.flatnonzero(env.item_categories == 2)[0])
    logit = env.affinity[1, item] + env.repeat_bonus
    assert env.expected_reward(s, item) == pytest.approx(env.prices[item] / (1.0 + np.exp(-logit)))
    assert isinstance(env.expected_reward(0, 0), float)
    ads = AdPlacementEnv()
    slot, segment, _ = 2, 3, 0
    expected = ads.position_effect[slot] * ads.quality[4] * ads.affinity[segment, 4] * ads.bids[4]
    assert ads.expected_reward(ads.encode_state(slot, segment), 4) == pytest.approx(expected)


def test_transition_matrix_is_substochastic_and_matches_the_model() -> None:
    env = RecommendationEnv()
    matrix = env.transition_matrix()
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.shape == (env.n_states * env.n_actions, env.n_states)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0 - env.churn_probability)
    s, item = env.encode_state(2, -1), 5
    row = matrix[s * env.n_actions + item].toarray().ravel()
    buy = env.purchase_probability(s, item)
    moved = env.encode_state(2, env.item_categories[item])
    assert row[moved] == pytest.approx(0.9 * buy)
    assert row[s] == pytest.approx(0.9 * (1.0 - buy))
    assert AdPlacementEnv().transition_matrix().nnz == 0


def test_batch_api_agrees_with_single_steps() -> None:
    env = RecommendationEnv()
    s, item, n = int(env.encode_state(1, 0)), 4, 4000
    env.reset(seed=11)
    single = []
    for _ in range(n):
        env._state = s  # pin the state to compare one (s, a) cell
        obs, reward, terminated, _, _ = env.step(item)
        single.append((reward, obs, terminated))
    rewards_1 = np.array([r for r, _, _ in single])
    next_1 = np.array([o for _, o, t in single if not t])
    term_1 = np.array([t for _, _, t in single])
    rewards_b, next_b, term_b = env.step_batch(np.full(n, s), np.full(n, item), 12)
    moved = int(env.encode_state(1, env.item_categories[item]))
    for a, b in [(rewards_1 > 0, rewards_b > 0), (term_1, term_b),
                 (next_1 == moved, next_b[~term_b] == moved)]:
        pooled = np.concatenate([a, b]).mean()
        se = np.sqrt(pooled * (1 - pooled) * (1 / a.size + 1 / b.size))
        assert abs(a.mean() - b.mean()) < 4.5 * se + 1e-12
    assert rewards_1.mean() == pytest.approx(env.expected_reward(s, item), rel=0.25)


@pytest.mark.parametrize("n_states", [5, 90])
def test_generic_transitions_sample_the_table(n_states: int) -> None:
    env = _random_mdp(3, n_states=n_states, n_actions=2)
    n = 40_000
    _, next_states, terminated = env.step_batch(np.full(n, 2), np.full(n, 1), 0)
    row = env.transition_matrix()[2 * 2 + 1].toarray().ravel()
    assert (row > 0).sum() > (1 if n_states == 5 else 8)  # several rounds of the row search
    freq = np.bincount(next_states[~terminated], minlength=n_states) / n
    se = np.sqrt(row * (1 - row) / n) + 1e-9
    assert np.abs((freq - row) / se).max() < 5
    end = 1.0 - row.sum()
    assert abs(terminated.mean() - end) < 5 * np.sqrt(end * (1 - end) / n) + 1e-9


# ---------------------------------------------------------------------- exact truth
@pytest.mark.parametrize("make", [RecommendationEnv, lambda: _random_mdp(2)])
def test_monte_carlo_return_matches_policy_value(make) -> None:
    env = make()
    policy = logging_policy(env, "random", random_state=5)
    returns = _mc_returns(env, policy, GAMMA, n=40_000, seed=1)
    se = returns.std(ddof=1) / np.sqrt(returns.size)
    exact = env.policy_value(policy, GAMMA)
    assert abs(returns.mean() - exact) < 4 * se, (returns.mean(), exact, se)


def test_policy_value_matches_bellman_and_accepts_arrays() -> None:
    env = RecommendationEnv()
    policy = logging_policy(env, "popularity")
    values = env.state_values(policy, GAMMA)
    q = env.q_values(policy, GAMMA)
    np.testing.assert_allclose((policy.table_ * q).sum(axis=1), values, rtol=1e-10)
    assert env.policy_value(policy.table_, GAMMA) == pytest.approx(env.initial_distribution() @ values)
    assert env.policy_value(policy, 0.0) == pytest.approx(
        env.initial_distribution() @ (policy.table_ * env.reward_matrix()).sum(axis=1)
    )
    with pytest.raises(ValueError, match="shape"):
        env.policy_value(TabularPolicy.uniform(3, 10), GAMMA)
    with pytest.raises(ValueError, match="gamma"):
        env.policy_value(policy, 1.5)


@pytest.mark.parametrize("make", [RecommendationEnv, AdPlacementEnv, lambda: _random_mdp(4)])
def test_optimal_policy_beats_random_policies_and_is_bellman_optimal(make) -> None:
    env = make()
    q = env.optimal_q(GAMMA)
    backup = env.reward_matrix() + GAMMA * (env.transition_matrix() @ q.max(axis=1)).reshape(q.shape)
    assert np.abs(backup - q).max() < 1e-8
    best = env.optimal_policy(GAMMA)
    best_value = env.policy_value(best, GAMMA)
    np.testing.assert_allclose(env.q_values(best, GAMMA), q, atol=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        other = TabularPolicy(rng.dirichlet(np.ones(env.n_actions) * 0.3, size=env.n_states))
        assert env.policy_value(other, GAMMA) <= best_value + 1e-9
    greedy_on_reward = TabularPolicy.from_q_values(env.reward_matrix(), "greedy")
    assert env.policy_value(greedy_on_reward, GAMMA) <= best_value + 1e-9


def test_recommendation_optimum_is_not_myopic_when_purchases_carry_over() -> None:
    env = RecommendationEnv(repeat_bonus=3.0, churn_probability=0.05)
    myopic = TabularPolicy.from_q_values(env.reward_matrix(), "greedy")
    assert env.optimal_value(0.95) > env.policy_value(myopic, 0.95) + 1e-6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), gamma=st.floats(0.0, 0.99))
def test_policy_value_equals_discounted_series(seed: int, gamma: float) -> None:
    env = _random_mdp(seed, n_states=4, n_actions=3)
    policy = logging_policy(env, "random", random_state=seed)
    r_pi, p_pi = exact.policy_kernel(env, policy.table_)
    values, term = np.zeros(env.n_states), r_pi.copy()
    for _ in range(2000):  # V = sum_t (gamma P_pi)^t r_pi
        values += term
        term = gamma * (p_pi @ term)
        if np.abs(term).max() < 1e-14:
            break
    assert env.policy_value(policy, gamma) == pytest.approx(env.initial_distribution() @ values, abs=1e-9)
    assert env.policy_value(policy, gamma) <= env.optimal_value(gamma) + 1e-9


def test_truncation_bound_is_tiny_at_the_registered_limit() -> None:
    env = RecommendationEnv()
    bound = env.truncation_error_bound(GAMMA, hfrl.envs.RECOMMENDATION_MAX_STEPS)
    assert 0.0 < bound < 1e-40
    assert env.truncation_error_bound(GAMMA, 1) > bound


def test_singular_bellman_system_gets_a_clear_error() -> None:
    stay = sp.csr_matrix(np.array([[1.0], [1.0]]))
    env = TabularMDPEnv(np.array([[1.0, 0.0]]), stay, [1.0])
    assert env.policy_value(TabularPolicy.uniform(1, 2), 0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="singular"):
        env.policy_value(TabularPolicy.uniform(1, 2), 1.0)


# ---------------------------------------------------------------------- collect_logs
def test_collect_logs_schema_propensities_and_sessions() -> None:
    env = gym.make("hfrl/Recommendation-v0")
    inner = env.unwrapped
    policy = logging_policy(inner, "epsilon_greedy", epsilon=0.3)
    logs = collect_logs(env, policy, n=30_000, seed=2)
    assert len(logs) == 30_000
    checked = validate_logs(logs, n_states=inner.n_states, n_actions=inner.n_actions,
                            required=["state", "action", "reward", "propensity", "timestamp",
                                      "session_id", "next_state", "done"])
    np.testing.assert_array_equal(checked["propensity"],
                                  policy.action_probabilities(logs["state"], logs["action"]))
    assert logs["timestamp"].is_monotonic_increasing and logs["timestamp"].is_unique
    # Within a session rows chain: next_state is the following row's state; done ends it.
    ordered = logs.reset_index().sort_values(["session_id", "index"])
    same = ordered["session_id"].to_numpy()[1:] == ordered["session_id"].to_numpy()[:-1]
    np.testing.assert_array_equal(ordered["next_state"].to_numpy()[:-1][same],
                                  ordered["state"].to_numpy()[1:][same])
    assert not ordered["done"].to_numpy()[:-1][same].any()
    first = ordered.groupby("session_id")["state"].first()
    assert (first % (inner.n_categories + 1) == 0).all()  # sessions start with no purchase
    assert logs["done"].mean() == pytest.approx(inner.churn_probability, abs=0.01)


def test_collect_logs_action_frequencies_match_the_logging_policy() -> None:
    env = RecommendationEnv()
    policy = logging_policy(env, "popularity")
    logs = collect_logs(env, policy, n=60_000, seed=3)
    counts = pd.crosstab(logs["state"], logs["action"]).reindex(columns=range(env.n_actions), fill_value=0)
    for state, row in counts.iterrows():
        n = row.sum()
        if n < 500:
            continue
        p = policy.table_[state]
        z = (row.to_numpy() / n - p) / np.sqrt(p * (1 - p) / n)
        assert np.abs(z).max() < 5, (state, np.abs(z).max())


def test_collect_logs_for_a_bandit_and_argument_errors() -> None:
    env = AdPlacementEnv()
    logs = collect_logs(env, logging_policy(env, "uniform"), n=500, seed=0)
    assert logs["done"].all() and logs["session_id"].is_unique
    with pytest.raises(ValueError, match="shape"):
        collect_logs(env, TabularPolicy.uniform(3, 3), n=10, seed=0)
    with pytest.raises(ValueError, match="n must be"):
        collect_logs(env, logging_policy(env, "uniform"), n=0, seed=0)
    with pytest.raises(ValueError, match="single-item"):
        slate = RecommendationEnv(slate_size=2)
        collect_logs(slate, TabularPolicy.uniform(slate.n_states, slate.n_actions), n=10, seed=0)
    with pytest.raises(ValueError, match="kind"):
        logging_policy(env, "greedy")


def test_collect_logs_respects_max_steps() -> None:
    env = RecommendationEnv(churn_probability=0.01)
    logs = collect_logs(env, logging_policy(env, "uniform"), n=5000, seed=1, max_steps=5)
    assert logs.groupby("session_id").size().max() <= 5


# ---------------------------------------------------------------------- fit_env
def test_fit_env_recovers_a_bandit_reward_table() -> None:
    truth = AdPlacementEnv(reward="click")
    logs = collect_logs(truth, logging_policy(truth, "uniform"), n=200_000, seed=4)
    replica = fit_env(logs.drop(columns=["next_state", "done"]), n_states=truth.n_states,
                      n_actions=truth.n_actions)
    assert replica.fitted_mode_ == "bandit" and replica._reward_noise == "bernoulli"
    se = np.sqrt(truth.reward_matrix() * (1 - truth.reward_matrix()) / replica.counts_)
    assert np.abs(replica.reward_matrix() - truth.reward_matrix()).max() < 5 * se.max()
    np.testing.assert_allclose(replica.initial_distribution(), truth.initial_distribution(), atol=0.01)
    assert replica.transition_matrix().nnz == 0
    best = truth.optimal_policy(0.0)
    assert truth.policy_value(replica.optimal_policy(0.0), 0.0) >= 0.95 * truth.policy_value(best, 0.0)


def test_fit_env_recovers_session_dynamics() -> None:
    truth = RecommendationEnv(reward="purchase")
    logs = collect_logs(truth, logging_policy(truth, "uniform"), n=200_000, seed=5)
    replica = fit_env(logs, n_states=truth.n_states, n_actions=truth.n_actions, prior_strength=1.0)
    assert replica.fitted_mode_ == "sessions"
    well_logged = replica.counts_ >= 400
    assert well_logged.mean() > 0.5
    error = np.abs(replica.reward_matrix() - truth.reward_matrix())[well_logged]
    assert error.max() < 0.1
    np.testing.assert_allclose(replica.termination_probability()[well_logged],
                               truth.termination_probability()[well_logged], atol=0.06)
    np.testing.assert_allclose(replica.initial_distribution(), truth.initial_distribution(), atol=0.02)
    assert replica.optimal_value(GAMMA) == pytest.approx(truth.optimal_value(GAMMA), rel=0.05)
    assert truth.policy_value(replica.optimal_policy(GAMMA), GAMMA) >= 0.95 * truth.optimal_value(GAMMA)


def test_fit_env_shrinks_unlogged_pairs_and_uses_gaussian_noise() -> None:
    logs = pd.DataFrame({"state": [0, 0, 0, 1], "action": [0, 0, 1, 0], "reward": [2.0, 4.0, 1.0, 10.0]})
    env = fit_env(logs, n_states=2, n_actions=3, prior_strength=1.0)
    global_mean = 17.0 / 4
    state0 = (7.0 + global_mean) / 4
    assert env.reward_matrix()[0, 0] == pytest.approx((6.0 + state0) / 3)
    assert env.reward_matrix()[0, 2] == pytest.approx(state0)  # unlogged pair -> state mean
    assert env._reward_noise == "gaussian" and env.fitted_mode_ == "bandit"
    np.testing.assert_allclose(env.initial_distribution(), [0.75, 0.25])


def test_fit_env_rejects_bad_input() -> None:
    logs = pd.DataFrame({"state": [0, 1], "action": [0, 5], "reward": [1.0, 0.0]})
    with pytest.raises(LogValidationError, match="action"):
        fit_env(logs, n_states=2, n_actions=3)
    with pytest.raises(ValueError, match="prior_strength"):
        fit_env(logs, prior_strength=0.0)


# ---------------------------------------------------------------------- slate, budgets, errors, size
def test_slate_mode_expected_reward_and_truth_scope() -> None:
    env = RecommendationEnv(slate_size=3)
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    slate = np.array([2, 5, 7])
    n = 60_000
    rewards, _, _ = env.step_batch(np.full(n, 4), np.tile(slate, (n, 1)), 0)
    exact = env.expected_slate_reward(4, slate)
    assert abs(rewards.mean() - exact) < 4.5 * rewards.std() / np.sqrt(n)
    with pytest.raises(NotImplementedError, match="single-item"):
        env.policy_value(TabularPolicy.uniform(env.n_states, env.n_actions), GAMMA)


def test_ad_budgets_pause_exhausted_ads() -> None:
    env = AdPlacementEnv(daily_budgets=np.full(10, 1e-9), impressions_per_day=1000)
    env.reset(seed=0)
    rewards, flags = [], []
    for _ in range(300):
        env.reset()
        _, reward, terminated, _, info = env.step(0)
        assert terminated
        rewards.append(reward)
        flags.append(info["budget_exhausted"])
    assert sum(r > 0 for r in rewards) == 1  # one click spends the whole budget
    assert flags[-1] and rewards[-1] == 0.0


def test_bad_ids_and_tables_get_clear_errors() -> None:
    env = RecommendationEnv()
    with pytest.raises(ValueError, match="action id 10 at position 1 is outside"):
        env.step_batch([0, 0], [1, 10])
    with pytest.raises(ValueError, match="differ in length"):
        env.step_batch([0, 0], [1])
    with pytest.raises(ValueError, match="not in"):
        env.reset(seed=0)
        env.step(99)
    with pytest.raises(ValueError, match=r"row 1 \(state 0, action 1\) sums to 1.5"):
        TabularMDPEnv(np.zeros((1, 2)), sp.csr_matrix([[0.5], [1.5]]), [1.0])
    with pytest.raises(ValueError, match="Bernoulli"):
        TabularMDPEnv(np.full((1, 2), 2.0), sp.csr_matrix((2, 1)), [1.0], reward_noise="bernoulli")
    with pytest.raises(ValueError, match="churn_probability"):
        RecommendationEnv(churn_probability=0.0)


def test_largest_size_constructs_and_steps_quickly() -> None:
    start = time.perf_counter()
    env = RecommendationEnv(n_segments=100, n_categories=99, n_items=10_000)
    assert (env.n_states, env.n_actions) == (10_000, 10_000)
    states = env.reset_batch(100_000, 0)
    actions = np.random.default_rng(0).integers(0, env.n_actions, states.size)
    for _ in range(5):
        rewards, states, terminated = env.step_batch(states, actions, 1)
    obs, _ = env.reset(seed=0)
    env.step(9_999)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"took {elapsed:.2f}s"
    assert env.expected_reward(9_999, 9_999) >= 0.0
    assert rewards.shape == states.shape == terminated.shape == (100_000,)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_rows=st.integers(1, 60),
    sessions=st.booleans(),
    prior=st.floats(0.1, 20.0),
)
def test_fit_env_always_yields_a_sound_model(seed: int, n_rows: int, sessions: bool, prior: float) -> None:
    rng = np.random.default_rng(seed)
    logs = pd.DataFrame({
        "state": rng.integers(0, 4, n_rows),
        "action": rng.integers(0, 3, n_rows),
        "reward": rng.normal(1.0, 2.0, n_rows),
    })
    if sessions:
        logs["next_state"] = rng.integers(0, 4, n_rows)
        logs["done"] = rng.random(n_rows) < 0.3
        logs["session_id"] = np.arange(n_rows) // 3
    env = fit_env(logs, n_states=4, n_actions=3, prior_strength=prior)
    rewards = env.reward_matrix()
    assert logs["reward"].min() - 1e-9 <= rewards.min() <= rewards.max() <= logs["reward"].max() + 1e-9
    mass = np.asarray(env.transition_matrix().sum(axis=1)).ravel()
    assert (mass <= 1 + 1e-9).all() and (env.transition_matrix().data >= 0).all()
    assert env.initial_distribution().sum() == pytest.approx(1.0)
    assert np.isfinite(env.optimal_value(GAMMA))


def test_render_ansi_describes_the_state() -> None:
    env = RecommendationEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(3)
    text = env.render()
    assert "segment" in text and "last action 3" in text
    assert RecommendationEnv().render() is None


def test_factor_path_for_large_sizes_agrees_with_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    import hfrl.envs.recommendation as recommendation

    monkeypatch.setattr(recommendation, "_DENSE_CELLS", 0)  # force the per-step factor formulas
    env = RecommendationEnv(n_segments=3, n_categories=3, n_items=8, repeat_bonus=2.0)
    assert env._purchase_table is None
    grid = env.expected_reward(np.arange(env.n_states)[:, None], np.arange(env.n_actions)[None, :])
    np.testing.assert_allclose(grid, env.reward_matrix(), rtol=1e-12)
    assert env._purchase_table is None
    returns = _mc_returns(env, TabularPolicy.uniform(env.n_states, env.n_actions), GAMMA, 20_000, seed=3)
    exact = env.policy_value(TabularPolicy.uniform(env.n_states, env.n_actions), GAMMA)
    assert abs(returns.mean() - exact) < 4 * returns.std(ddof=1) / np.sqrt(returns.size)


@pytest.mark.parametrize(
    "make", [RecommendationEnv, AdPlacementEnv, lambda: _random_mdp(6),
             lambda: TabularMDPEnv(np.arange(6.0).reshape(3, 2), sp.csr_matrix((6, 3)), [0.2, 0.3, 0.5],
                                   reward_noise="gaussian", reward_std=0.5)])
def test_single_step_draws_exactly_what_the_batch_draws(make) -> None:
    """step/reset (one user) and step_batch/reset_batch run one sampler: the same draws."""
    env = make()
    for seed in range(200):
        env.reset(seed=seed)
        first = env._state
        assert first == env.reset_batch(1, np.random.default_rng(seed))[0]
        action = seed % env.n_actions
        state = seed % env.n_states
        env._state = state
        env.np_random = np.random.default_rng(seed)
        _, reward, terminated, _, _ = env.step(action)
        rewards, next_states, ended = env.step_batch([state], [action], np.random.default_rng(seed))
        assert (reward, terminated) == (rewards[0], ended[0])
        if not terminated:
            assert env._state == next_states[0]


@pytest.mark.parametrize(
    "make", [RecommendationEnv, AdPlacementEnv, lambda: _random_mdp(7),
             lambda: TabularMDPEnv(np.ones((2, 2)), sp.csr_matrix((4, 2)), [0.5, 0.5])])
def test_step_batch_returns_fresh_arrays(make) -> None:
    """Callers overwrite ended users' next states in place; that must not touch their input."""
    env = make()
    states = env.reset_batch(50, 0)
    kept = states.copy()
    rewards, next_states, terminated = env.step_batch(states, np.zeros(50, dtype=np.int64), 1)
    next_states[:] = -1
    np.testing.assert_array_equal(states, kept)
    assert next_states.dtype == np.int64 and terminated.dtype == bool and rewards.dtype == np.float64


def test_exact_functions_read_any_model_and_the_env_methods_delegate() -> None:
    wrapped = gym.make("hfrl/Recommendation-v0", n_segments=2, n_categories=2, n_items=4)
    env = wrapped.unwrapped
    policy = logging_policy(env, "random", random_state=0)
    assert exact.policy_value(wrapped, policy, GAMMA) == env.policy_value(policy, GAMMA)
    np.testing.assert_array_equal(exact.q_values(wrapped, policy, GAMMA), env.q_values(policy, GAMMA))
    np.testing.assert_array_equal(exact.optimal_q(env, GAMMA), env.optimal_q(GAMMA))
    np.testing.assert_array_equal(exact.termination_probability(env), env.termination_probability())
    # A replica built from the same tables has the same truth, whatever class holds them.
    tables = TabularMDPEnv(env.reward_matrix(), env.transition_matrix(), env.initial_distribution())
    assert exact.optimal_value(tables, GAMMA) == pytest.approx(env.optimal_value(GAMMA), rel=1e-12)
    np.testing.assert_allclose(exact.state_values(tables, policy, GAMMA), env.state_values(policy, GAMMA),
                               rtol=1e-12)
    assert exact.truncation_error_bound(tables, GAMMA, 10) == env.truncation_error_bound(GAMMA, 10)


def test_fit_env_weights_count_like_repeated_rows() -> None:
    rng = np.random.default_rng(9)
    logs = pd.DataFrame({
        "state": rng.integers(0, 3, 40), "action": rng.integers(0, 2, 40), "reward": rng.random(40),
        "next_state": rng.integers(0, 3, 40), "done": rng.random(40) < 0.4,
        "session_id": np.arange(40) // 4,
    })
    weighted = fit_env(logs.assign(weight=2.0).iloc[:20], n_states=3, n_actions=2)
    repeated = fit_env(pd.concat([logs.iloc[:20]] * 2, ignore_index=True).drop(columns="session_id"),
                       n_states=3, n_actions=2)
    np.testing.assert_allclose(weighted.reward_matrix(), repeated.reward_matrix())
    np.testing.assert_allclose(weighted.transition_matrix().toarray(), repeated.transition_matrix().toarray())
