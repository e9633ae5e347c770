"""hfrl.envs.shift and collect_logs(drift_to=...): a real shop that differs from the simulator."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from hfrl import HistoricalFrequency
from hfrl.envs import (
    SHIFT_KINDS,
    AdPlacementEnv,
    RecommendationEnv,
    collect_logs,
    fit_env,
    logging_policy,
    shift,
)
from hfrl.policies import TabularPolicy

GAMMA = 0.9
MAKERS = {"recommendation": RecommendationEnv, "ad_placement": AdPlacementEnv}
CASES = [(name, kind) for name in MAKERS for kind in SHIFT_KINDS]


def _tables(env) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (env.reward_matrix(), env.transition_matrix().toarray(), env.initial_distribution(),
            env.popularity_matrix())


# ---------------------------------------------------------------------- the model
@pytest.mark.parametrize("name, kind", CASES)
def test_strength_zero_rebuilds_the_same_model_exactly(name: str, kind: str) -> None:
    env = MAKERS[name]()
    same = shift(env, 0.0, kind, seed=4)
    assert type(same) is type(env) and same.observation_space == env.observation_space
    assert same.action_space == env.action_space
    for shifted_table, table in zip(_tables(same), _tables(env), strict=True):
        np.testing.assert_array_equal(shifted_table, table)


@pytest.mark.parametrize("make", [
    lambda: RecommendationEnv(n_segments=3, n_categories=2, n_items=7, reward="purchase",
                              churn_probability=0.3, repeat_bonus=0.5, price_sensitivity=0.7, model_seed=5),
    lambda: RecommendationEnv(slate_size=3, model_seed=2),
    lambda: AdPlacementEnv(n_slots=2, n_segments=3, n_times=4, n_ads=6, reward="click", price_sensitivity=0.5,
                           daily_budgets=np.full(6, 3.0), impressions_per_day=50, model_seed=9),
])
def test_model_parameters_rebuild_the_env(make) -> None:
    env = make()
    copy = type(env)(**env.model_parameters())
    for name, value in env.model_parameters().items():
        np.testing.assert_array_equal(getattr(copy, name), value, err_msg=name)
    if getattr(env, "slate_size", None) is None:
        for copied, table in zip(_tables(copy), _tables(env), strict=True):
            np.testing.assert_array_equal(copied, table)
    else:
        np.testing.assert_array_equal(copy.purchase_probability(np.arange(env.n_states)[:, None],
                                                                np.arange(env.n_actions)[None, :]),
                                      env.purchase_probability(np.arange(env.n_states)[:, None],
                                                               np.arange(env.n_actions)[None, :]))


@pytest.mark.parametrize("name, kind", CASES)
def test_shift_is_deterministic_given_the_seed_and_changes_the_model(name: str, kind: str) -> None:
    env = MAKERS[name]()
    first, again = shift(env, 1.0, kind, seed=3), shift(env, 1.0, kind, seed=3)
    np.testing.assert_array_equal(first.reward_matrix(), again.reward_matrix())
    assert not np.array_equal(first.reward_matrix(), env.reward_matrix())
    if kind != "price":  # the price change has no random direction
        assert not np.array_equal(shift(env, 1.0, kind, seed=4).reward_matrix(), first.reward_matrix())
    assert first.shift_["kind"] == kind and first.shift_["strength"] == 1.0 and first.shift_["seed"] == 3


@pytest.mark.parametrize("kind", ["preferences", "trend"])
def test_strength_scales_one_direction(kind: str) -> None:
    env = RecommendationEnv()
    step = shift(env, 0.5, kind, seed=1).affinity - env.affinity
    np.testing.assert_allclose(shift(env, 1.5, kind, seed=1).affinity - env.affinity, 3 * step, atol=1e-12)


def test_trend_moves_the_rising_and_falling_items_and_nothing_else() -> None:
    for env in (RecommendationEnv(), AdPlacementEnv()):
        shop = shift(env, 1.5, "trend", seed=2)
        rising, falling = shop.shift_["rising"], shop.shift_["falling"]
        assert rising.size == falling.size == env.n_actions // 4 and not set(rising) & set(falling)
        change = shop.reward_matrix() - env.reward_matrix()
        assert (change[:, rising] > 0).all() and (change[:, falling] < 0).all()
        others = np.setdiff1d(np.arange(env.n_actions), np.concatenate([rising, falling]))
        np.testing.assert_array_equal(change[:, others], 0.0)


@pytest.mark.parametrize("name", list(MAKERS))
def test_more_price_sensitivity_lowers_every_reward_and_the_optimal_value(name: str) -> None:
    env = MAKERS[name]()
    shops = [shift(env, strength, "price", seed=0) for strength in (0.0, 0.5, 1.0, 2.0)]
    for before, after in zip(shops, shops[1:], strict=False):
        assert (after.reward_matrix() <= before.reward_matrix()).all()
        assert after.optimal_value(GAMMA) < before.optimal_value(GAMMA)
    dear = int(np.argmax(env.prices if name == "recommendation" else env.bids))
    cheap = int(np.argmin(env.prices if name == "recommendation" else env.bids))
    ratio = shops[-1].reward_matrix() / env.reward_matrix()
    assert (ratio[:, dear] < ratio[:, cheap]).all()  # dear items lose most


@pytest.mark.parametrize("name, kind", CASES)
def test_the_simulators_optimum_loses_value_in_the_shifted_shop(name: str, kind: str) -> None:
    env = MAKERS[name]()
    plan = env.optimal_policy(GAMMA)
    assert shift(env, 0.0, kind, seed=0).policy_value(plan, GAMMA) == pytest.approx(env.optimal_value(GAMMA))
    shop = shift(env, 2.0, kind, seed=0)
    regret = shop.optimal_value(GAMMA) - shop.policy_value(plan, GAMMA)
    assert regret > 1e-3 * abs(shop.optimal_value(GAMMA))


def test_exact_value_of_a_shifted_shop_matches_monte_carlo() -> None:
    shop = shift(RecommendationEnv(), 1.0, "preferences", seed=6)
    policy = logging_policy(shop, "random", random_state=2)
    rng = np.random.default_rng(8)
    n = 40_000
    states, alive, returns, discount = shop.reset_batch(n, rng), np.ones(n, dtype=bool), np.zeros(n), 1.0
    while alive.any() and discount > 1e-12:
        actions, _ = policy.sample(states, random_state=rng)
        rewards, states, terminated = shop.step_batch(states, actions, rng)
        returns += np.where(alive, discount * rewards, 0.0)
        alive &= ~terminated
        discount *= GAMMA
    se = returns.std(ddof=1) / np.sqrt(n)
    exact = shop.policy_value(policy, GAMMA)
    assert exact != pytest.approx(RecommendationEnv().policy_value(policy, GAMMA), abs=8 * se)
    assert abs(returns.mean() - exact) < 4 * se, (returns.mean(), exact, se)


# ---------------------------------------------------------------------- everything else still works
@pytest.mark.parametrize("name, kind", CASES)
def test_shifted_envs_pass_the_checker_and_log(name: str, kind: str) -> None:
    shop = shift(MAKERS[name](), 1.0, kind, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker warns about rendering only
        check_env(shop, skip_render_check=True)
    for policy_kind in ("uniform", "popularity", "epsilon_greedy", "random"):
        policy = logging_policy(shop, policy_kind, random_state=0)
        assert policy.table_.shape == (shop.n_states, shop.n_actions)
        np.testing.assert_allclose(policy.table_.sum(axis=1), 1.0)
    logs = collect_logs(shop, logging_policy(shop, "uniform"), n=2000, seed=1)
    assert len(logs) == 2000 and logs["timestamp"].is_monotonic_increasing
    assert fit_env(logs, n_states=shop.n_states, n_actions=shop.n_actions).n_logged_ == 2000


def test_a_gymnasium_made_env_comes_back_made_the_same_way() -> None:
    made = gym.make("hfrl/Recommendation-v0", n_items=8)
    shop = shift(made, 1.0, "trend", seed=0)
    assert isinstance(shop, gym.Wrapper) and shop.spec.max_episode_steps == made.spec.max_episode_steps
    assert shop.unwrapped.n_actions == 8 and shop.unwrapped.shift_["kind"] == "trend"
    np.testing.assert_array_equal(shop.unwrapped.reward_matrix(),
                                  shift(made.unwrapped, 1.0, "trend", seed=0).reward_matrix())
    logs = collect_logs(shop, logging_policy(shop, "uniform"), n=100, seed=0)
    assert logs.attrs["generator"]["max_steps"] == 1000
    assert not isinstance(shift(RecommendationEnv(), 1.0, seed=0), gym.Wrapper)


@pytest.mark.parametrize("strength", [-0.1, float("nan"), float("inf"), "strong", None])
def test_bad_strength_kind_or_env_get_clear_errors(strength) -> None:
    env = RecommendationEnv()
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        shift(env, strength)
    with pytest.raises(ValueError, match="kind must be one of .*preferences.*trend.*price"):
        shift(env, 1.0, "weather")
    replica = fit_env(collect_logs(env, logging_policy(env, "uniform"), n=500, seed=0))
    with pytest.raises(TypeError, match="RecommendationEnv or an AdPlacementEnv"):
        shift(replica, 1.0)


# ---------------------------------------------------------------------- drift
def test_drifting_logs_follow_the_mixture_of_the_two_shops_row_by_row() -> None:
    simulator = RecommendationEnv(reward="purchase")
    shop = shift(simulator, 2.0, "price", seed=0)
    n = 100_000
    logs = collect_logs(simulator, logging_policy(simulator, "uniform"), n=n, seed=1, drift_to=shop)
    assert logs["timestamp"].is_monotonic_increasing and logs["timestamp"].is_unique
    assert logs.attrs["generator"]["drift_to"] == "RecommendationEnv"
    states, actions, rewards = logs["state"].to_numpy(), logs["action"].to_numpy(), logs["reward"].to_numpy()
    progress = np.arange(n) / (n - 1)
    start, end = simulator.expected_reward(states, actions), shop.expected_reward(states, actions)
    mixture = (1 - progress) * start + progress * end

    def z_score(rows: np.ndarray, means: np.ndarray) -> float:
        spread = np.sqrt((means[rows] * (1 - means[rows])).sum())
        return float((rewards[rows].sum() - means[rows].sum()) / spread)

    blocks = np.array_split(np.arange(n), 5)  # in time order
    assert all(abs(z_score(rows, mixture)) < 4 for rows in blocks)
    assert abs(z_score(blocks[-1], start)) > 8  # late rows no longer follow the simulator ...
    assert abs(z_score(blocks[0], end)) > 8  # ... and early rows did not follow the shifted shop


def test_drift_makes_a_half_life_matter() -> None:
    simulator = AdPlacementEnv(reward="click")
    shop = shift(simulator, 2.0, "trend", seed=0)
    n = 200_000
    logs = collect_logs(simulator, logging_policy(simulator, "uniform"), n=n, seed=2, drift_to=shop)
    final = shop.reward_matrix() / shop.reward_matrix().sum(axis=1, keepdims=True)  # rates, as shares

    def distance_to_final(half_life: float | None) -> float:
        hf = HistoricalFrequency("rate", prior_strength=0, half_life=half_life)
        hf.fit(logs, n_states=simulator.n_states, n_actions=simulator.n_actions)
        return float(np.abs(hf.probabilities_ - final).sum(axis=1).mean())

    assert distance_to_final(n / 10) < 0.75 * distance_to_final(None)


def test_drift_needs_a_shop_of_the_same_spaces() -> None:
    env = RecommendationEnv()
    policy = TabularPolicy.uniform(env.n_states, env.n_actions)
    with pytest.raises(ValueError, match="drift_to has 20 states x 12 actions, the env has 20 x 10"):
        collect_logs(env, policy, n=10, seed=0, drift_to=RecommendationEnv(n_items=12))
    with pytest.raises(ValueError, match="single-item"):
        collect_logs(env, policy, n=10, seed=0, drift_to=RecommendationEnv(slate_size=2))
    with pytest.raises(TypeError, match="tabular environment"):
        collect_logs(env, policy, n=10, seed=0, drift_to="shop")


def test_without_drift_the_logs_are_unchanged_and_with_it_deterministic() -> None:
    env = RecommendationEnv()
    policy = logging_policy(env, "uniform")
    plain = collect_logs(env, policy, n=3000, seed=5)
    np.testing.assert_array_equal(collect_logs(env, policy, n=3000, seed=5, drift_to=None).to_numpy(),
                                  plain.to_numpy())
    shop = shift(env, 1.0, "preferences", seed=0)
    first = collect_logs(env, policy, n=3000, seed=5, drift_to=shop)
    np.testing.assert_array_equal(collect_logs(env, policy, n=3000, seed=5, drift_to=shop).to_numpy(),
                                  first.to_numpy())
