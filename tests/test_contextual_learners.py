"""ContextualRecommendation-v0 (exact truth, logs with features) and the learners on features."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hfrl.envs  # noqa: F401  (registers the envs)
from hfrl.contextual import LinearPolicy, NeuralPolicy
from hfrl.envs import collect_logs
from hfrl.learners import DQN, LinearThompsonSampling, NeuralBandit, NeuralPolicyLearner

N_ITEMS, DIM = 12, 6


def make_env(**options):
    return gym.make("hfrl/ContextualRecommendation-v0", n_items=N_ITEMS, context_dim=DIM, bias_mean=-1.0,
                    **options)


def test_the_env_passes_check_env_and_is_seeded():
    env = make_env()
    check_env(env.unwrapped)
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (DIM,) and np.all(first[DIM - DIM // 4:] == 0.0)  # no session interest yet


def test_one_step_truth_matches_sampled_purchases():
    shop = make_env().unwrapped
    x = shop.sample_contexts(200_000, seed=1)
    policy = shop.logging_policy(seed=2)
    actions, propensities = policy.sample(x, random_state=3)
    np.testing.assert_allclose(propensities, policy.action_probabilities(x, actions))
    rewards, following, terminated = shop.step_batch(x, actions, np.random.default_rng(4))
    value = shop.policy_value(policy, x)
    assert abs(rewards.mean() - value) <= 4 * rewards.std() / np.sqrt(rewards.size)
    np.testing.assert_allclose(shop.expected_reward(x[:50], actions[:50]),
                               shop.expected_rewards(x[:50])[np.arange(50), actions[:50]])
    assert shop.policy_value(shop.optimal_policy(), x) == pytest.approx(shop.optimal_value(x), rel=1e-12)
    assert abs(terminated.mean() - shop.churn_probability) < 0.01
    moved = rewards == 1.0
    assert np.all(following[~moved] == x[~moved]) and np.all(following[moved, -1] != 0.0)


def test_collected_logs_hold_the_features_the_decisions_saw():
    env = make_env()
    shop = env.unwrapped
    policy = shop.logging_policy(seed=0)
    logs = collect_logs(env, policy, 3_000, seed=5)
    columns = logs.attrs["context_columns"]
    assert columns == shop.context_columns and set(columns) <= set(logs.columns)
    np.testing.assert_allclose(logs["propensity"], policy.action_probabilities(logs[columns], logs["action"]))
    again = collect_logs(env, policy, 3_000, seed=5)
    assert logs.equals(again)
    with pytest.raises(ValueError, match="drift_to"):
        collect_logs(env, policy, 10, seed=0, drift_to=env)
    with pytest.raises(ValueError, match="actions"):
        collect_logs(env, LinearPolicy.uniform(N_ITEMS + 1, DIM), 10, seed=0)


def test_linear_thompson_sampling_learns_on_the_simulator():
    shop = make_env().unwrapped
    x = shop.sample_contexts(20_000, seed=9)
    bandit = LinearThompsonSampling(scale=0.2, n_envs=64, random_state=0).fit(shop, n_steps=20_000)
    assert isinstance(bandit.policy_, LinearPolicy) and bandit.policy_.context_columns == shop.context_columns
    uniform, best = shop.policy_value(shop.uniform_policy(), x), shop.optimal_value(x)
    assert shop.policy_value(bandit.policy_, x) > uniform + 0.5 * (best - uniform)


def test_neural_learners_name_the_extra_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"hfrl\[torch\]"):
        NeuralBandit().fit(make_env(), n_steps=10)


torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and lose much on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_neural_policy_learner_beats_the_logging_policy():
    env = make_env()
    shop = env.unwrapped
    logging = shop.logging_policy(seed=0, epsilon=0.3)
    logs = collect_logs(env, logging, 20_000, seed=1)
    learner = NeuralPolicyLearner(hidden=(32,), n_epochs=8, batch_size=1024, learning_rate=0.02,
                                  random_state=0).fit(logs, context_columns=logs.attrs["context_columns"])
    assert isinstance(learner.policy_, NeuralPolicy)
    x = shop.sample_contexts(20_000, seed=2)
    assert shop.policy_value(learner.policy_, x) > shop.policy_value(logging, x) + 0.02
    again = NeuralPolicyLearner(hidden=(32,), n_epochs=8, batch_size=1024, learning_rate=0.02,
                                random_state=0).fit(logs, context_columns=logs.attrs["context_columns"])
    np.testing.assert_array_equal(again.policy_.probabilities(x[:100]),
                                  learner.policy_.probabilities(x[:100]))


def test_neural_bandit_beats_uniform():
    shop = make_env().unwrapped
    bandit = NeuralBandit(hidden=(32,), n_envs=64, random_state=0).fit(shop, n_steps=12_800)
    x = shop.sample_contexts(20_000, seed=3)
    uniform, best = shop.policy_value(shop.uniform_policy(), x), shop.optimal_value(x)
    assert shop.policy_value(bandit.policy_, x) > uniform + 0.5 * (best - uniform)


def test_dqn_session_return_beats_uniform():
    shop = make_env(churn_probability=0.3).unwrapped
    dqn = DQN(hidden=(32,), learning_starts=500, random_state=0).fit(shop, n_steps=8_000)
    learned = shop.policy_return(dqn.policy_, n_episodes=4_000, seed=4)
    uniform = shop.policy_return(shop.uniform_policy(), n_episodes=4_000, seed=4)
    assert learned.value - uniform.value > 4 * np.hypot(learned.std_error, uniform.std_error)
