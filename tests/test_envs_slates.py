"""Tests of the slate simulator (hfrl.envs.slates): Gymnasium API, click models, catalog scale."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import hfrl.envs  # noqa: F401  (registers the envs)
from hfrl.envs.slates import SlateEnv, collect_slate_logs, slate_policy_value
from hfrl.policies import RankingPolicy, TabularPolicy


def test_passes_check_env_and_is_registered() -> None:
    check_env(SlateEnv(n_segments=3, n_items=8, k=3), skip_render_check=True)
    env = gym.make("hfrl/SlatePage-v0")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_click_models_match_their_formulas() -> None:
    attraction = np.array([[0.5, 0.2, 0.8, 0.1]])
    position = SlateEnv(n_segments=1, n_items=4, k=3, attraction=attraction, examination=[1.0, 0.5, 0.25])
    cascade = SlateEnv(n_segments=1, n_items=4, k=3, attraction=attraction, click_model="cascade")
    slate = [[2, 0, 1]]
    np.testing.assert_allclose(position.expected_position_rewards([0], slate), [[0.8, 0.25, 0.05]])
    np.testing.assert_allclose(cascade.expected_position_rewards([0], slate),
                               [[0.8, 0.2 * 0.5, 0.2 * 0.5 * 0.2]])
    clicks = cascade.sample_clicks(np.zeros(100_000, dtype=int), np.repeat(slate, 100_000, axis=0),
                                   np.random.default_rng(0))
    assert (clicks.sum(axis=1) <= 1).all()  # the cascade user stops at the first click
    np.testing.assert_allclose(clicks.mean(axis=0), [0.8, 0.1, 0.02], atol=0.005)


def test_a_repeated_item_shows_nothing() -> None:
    attraction = np.array([[0.5, 0.4, 0.3, 0.2]])
    env = SlateEnv(n_segments=1, n_items=4, k=3, attraction=attraction, click_model="cascade")
    np.testing.assert_allclose(env.expected_position_rewards([0], [[1, 1, 2]]), [[0.4, 0.0, 0.6 * 0.3]])
    clicks = env.sample_clicks(np.zeros(1000, dtype=int), np.tile([1, 1, 1], (1000, 1)),
                               np.random.default_rng(0))
    assert clicks[:, 1:].sum() == 0 and clicks[:, 0].sum() > 0


def test_a_million_item_catalog_is_cheap_per_slate() -> None:
    env = SlateEnv(n_segments=2, n_items=1_000_000, k=10, click_model="cascade")
    slates = np.random.default_rng(0).choice(1_000_000, size=(5, 10), replace=False)
    rewards = env.expected_position_rewards([0, 1, 0, 1, 0], slates)
    assert rewards.shape == (5, 10) and (rewards >= 0).all() and (rewards.sum(axis=1) <= 1).all()
    uniform = RankingPolicy.from_policy(TabularPolicy.uniform(2, 1_000_000), 10)
    logs = collect_slate_logs(env, uniform, 20, seed=0)  # ties make the exact marginals cheap
    np.testing.assert_allclose(logs["propensity"], 1e-6)


def test_exact_value_of_the_best_slate_policy_beats_uniform() -> None:
    env = SlateEnv(n_segments=2, n_items=5, k=2, click_model="cascade", model_seed=4)
    uniform = RankingPolicy.from_policy(TabularPolicy.uniform(2, 5), 2)
    best = np.argsort(-env.attraction_rows([0, 1]), axis=1)[:, :2]
    table = np.full((2, 5), 1e-9)
    table[np.arange(2)[:, None], best] = [0.9, 0.1]
    table /= table.sum(axis=1, keepdims=True)
    greedy = RankingPolicy.from_policy(TabularPolicy(table), 2)
    assert slate_policy_value(env, greedy) > slate_policy_value(env, uniform)
