"""Learners against exact truth: TD control, bandit regret, offline learning from simulated logs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import hfrl.envs
from hfrl.envs import TabularMDPEnv, collect_logs, logging_policy
from hfrl.errors import LogValidationError, NotFittedError
from hfrl.learners import (
    UCB1,
    BernoulliBandit,
    ConservativeLearner,
    DirectMethodLearner,
    EpsilonGreedy,
    ExpectedSarsa,
    FittedQIteration,
    IPSLearner,
    LinUCB,
    QLearning,
    Sarsa,
    ThompsonSampling,
)
from hfrl.learners._common import epsilon_schedule

GAMMA = 0.9


@pytest.fixture(scope="module")
def shop():
    """Recommendation-v0 at its default size (20 states x 10 items) and its exact optimum."""
    env = gym.make("hfrl/Recommendation-v0").unwrapped
    assert (env.n_states, env.n_actions) == (20, 10)
    return env, env.policy_value(env.optimal_policy(GAMMA), GAMMA)


def stop_or_stay_env() -> TabularMDPEnv:
    """One state: action 0 pays 1 and ends the episode; action 1 pays 0.5 and stays forever.

    With gamma 0.9: Q*(0, 0) = 1 (nothing after termination), Q*(0, 1) = 0.5 + 0.9 * 5 = 5.
    A learner that bootstraps past ``terminated`` would report Q(0, 0) = 1 + 0.9 * 5 = 5.5.
    """
    transitions = sp.csr_matrix(np.array([[0.0], [1.0]]))
    return TabularMDPEnv(np.array([[1.0, 0.5]]), transitions, [1.0])


# ---------------------------------------------------------------------------------------- TD control
@pytest.mark.parametrize("learner_class", [QLearning, Sarsa, ExpectedSarsa])
def test_td_learners_reach_95_percent_of_the_optimal_value(shop, learner_class):
    env, optimal = shop
    learner = learner_class(gamma=GAMMA, learning_rate=0.02, epsilon=0.5, epsilon_final=0.02,
                            n_envs=256, random_state=0).fit(env, n_steps=2_000_000)
    value = env.policy_value(learner.policy_, GAMMA)
    uniform = env.policy_value(logging_policy(env, "uniform"), GAMMA)
    assert value >= 0.95 * optimal
    assert value > uniform * 2  # and far from the random policy
    assert learner.q_values_.shape == (20, 10)


def test_one_step_gymnasium_loop_learns_through_wrappers(shop):
    env, optimal = shop
    wrapped = gym.make("hfrl/Recommendation-v0")  # TimeLimit + checker wrappers
    learner = QLearning(gamma=GAMMA, learning_rate=0.05, epsilon=0.5, epsilon_final=0.02,
                        random_state=0).fit(wrapped, n_steps=60_000)
    assert learner.n_steps_ == 60_000 and learner.n_episodes_ > 1000
    assert env.policy_value(learner.policy_, GAMMA) >= 0.85 * optimal  # uniform: 0.29


@pytest.mark.parametrize("learner_class", [QLearning, Sarsa, ExpectedSarsa])
@pytest.mark.parametrize("n_envs", [1, 16])
def test_no_bootstrap_past_termination(learner_class, n_envs):
    learner = learner_class(gamma=0.9, learning_rate=0.1, epsilon=0.3, n_envs=n_envs, random_state=1)
    learner.fit(stop_or_stay_env(), n_steps=20_000)
    q = learner.q_values_[0]
    assert q[0] == pytest.approx(1.0, abs=1e-6)
    expected_stay = 5.0 if learner_class is QLearning else None
    if expected_stay is not None:
        assert q[1] == pytest.approx(expected_stay, abs=0.05)
    assert q[1] > q[0]  # SARSA variants value the exploring policy, still clearly above 1


def test_truncation_still_bootstraps():
    """A time limit is not the end of the world: with episodes cut after 1 step, Q still sees gamma."""
    env = gym.wrappers.TimeLimit(stop_or_stay_env(), max_episode_steps=1)
    learner = QLearning(gamma=0.9, learning_rate=0.1, epsilon=0.3, random_state=2).fit(env, n_steps=20_000)
    assert learner.q_values_[0, 1] == pytest.approx(5.0, abs=0.05)


def test_frozen_lake_any_discrete_gymnasium_env():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    learner = QLearning(gamma=0.95, learning_rate=0.5, epsilon=1.0, epsilon_final=0.05,
                        random_state=0).fit(env, n_steps=20_000)
    state, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(20):  # follow the greedy policy
        state, reward, terminated, truncated, _ = env.step(int(learner.q_values_[state].argmax()))
        total += reward
        if terminated or truncated:
            break
    assert total == 1.0


def test_td_learning_is_deterministic_given_a_seed(shop):
    env, _ = shop
    first = QLearning(gamma=GAMMA, n_envs=32, random_state=7).fit(env, n_steps=20_000)
    again = QLearning(gamma=GAMMA, n_envs=32, random_state=7).fit(env, n_steps=20_000)
    other = QLearning(gamma=GAMMA, n_envs=32, random_state=8).fit(env, n_steps=20_000)
    np.testing.assert_array_equal(first.q_values_, again.q_values_)
    assert not np.array_equal(first.q_values_, other.q_values_)
    pd.testing.assert_frame_equal(first.learning_curve_, again.learning_curve_)


def test_learning_curve_windows_cover_every_step(shop):
    env, _ = shop
    learner = Sarsa(gamma=GAMMA, n_envs=64, random_state=0).fit(env, n_steps=64_000)
    curve = learner.learning_curve_
    assert list(curve.columns) == ["step", "mean_reward"]
    assert curve["step"].is_monotonic_increasing and curve["step"].iloc[-1] == learner.n_steps_
    assert 50 <= len(curve) <= 101
    # rewards are purchase x price >= 0 and the policy improves from random to learned
    assert (curve["mean_reward"] >= 0).all()
    assert curve["mean_reward"].tail(10).mean() > curve["mean_reward"].head(5).mean()


def test_duplicate_updates_in_a_batch_combine_as_successive_steps():
    """64 users pull the same arm: one batch moves Q by 1 - 0.9**64 of the way to the mean target."""
    env = BernoulliBandit([[1.0, 1.0]])
    learner = QLearning(gamma=0.0, learning_rate=0.1, epsilon=0.0, n_envs=64, random_state=0)
    learner.fit(env, n_steps=64)
    assert learner.q_values_[0, 0] == pytest.approx(1.0 - 0.9**64)
    assert learner.q_values_[0, 1] == 0.0


def test_epsilon_schedules():
    linear = epsilon_schedule(1.0, 0.1, "linear", 10, 0.5)
    assert linear[0] == 1.0 and linear[4:].tolist() == pytest.approx([0.1] * 6)
    assert linear[1] == pytest.approx(1.0 - 0.9 / 4)
    exponential = epsilon_schedule(1.0, 0.01, "exponential", 5, 1.0)
    assert exponential[2] == pytest.approx(0.1)
    assert (epsilon_schedule(0.2, None, "linear", 3, 0.5) == 0.2).all()
    with pytest.raises(ValueError, match="epsilon_decay"):
        epsilon_schedule(1.0, 0.1, "cosine", 3, 0.5)


@pytest.mark.parametrize("params, message", [
    ({"gamma": 1.5}, "gamma"), ({"learning_rate": 0.0}, "learning_rate"), ({"epsilon": -0.1}, "epsilon"),
    ({"n_envs": 0}, "n_envs"),
])
def test_td_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        QLearning(**params).fit(BernoulliBandit([0.5, 0.5]), n_steps=10)


def test_batch_mode_needs_the_batch_api():
    with pytest.raises(TypeError, match="reset_batch"):
        QLearning(n_envs=4).fit(gym.make("FrozenLake-v1"), n_steps=10)


# ---------------------------------------------------------------------------------------- bandits
MEANS = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.75])
HORIZON = 2000


def cumulative_regret(bandit, horizon: int, seed: int, context=None) -> np.ndarray:
    """Play ``bandit`` one decision at a time on MEANS; expected regret after each decision."""
    draws = np.random.default_rng(1000 + seed).random(horizon)
    gaps = MEANS.max() - MEANS
    regret = np.empty(horizon)
    total = 0.0
    for t in range(horizon):
        arm = bandit.select(context)
        bandit.update(arm, 1.0 if draws[t] < MEANS[arm] else 0.0, context)
        total += gaps[arm]
        regret[t] = total
    return regret


SUBLINEAR_BANDITS = {
    "epsilon_greedy_1/t": lambda seed: EpsilonGreedy(epsilon=1.0, decay_steps=30, n_actions=10,
                                                     random_state=seed),
    "ucb1": lambda seed: UCB1(n_actions=10, random_state=seed),
    "thompson_beta": lambda seed: ThompsonSampling(n_actions=10, random_state=seed),
    "thompson_gaussian": lambda seed: ThompsonSampling("gaussian", noise_std=0.5, n_actions=10,
                                                       random_state=seed),
    "linucb": lambda seed: LinUCB(alpha=2.0, n_actions=10, n_features=1, random_state=seed),
}


def regret_ratio(make, context=None) -> float:
    curves = np.mean([cumulative_regret(make(seed), 4 * HORIZON, seed, context) for seed in range(5)],
                     axis=0)
    return float(curves[-1] / curves[HORIZON - 1])


@pytest.mark.parametrize("name", sorted(SUBLINEAR_BANDITS))
def test_bandit_regret_grows_sublinearly(name):
    context = [1.0] if name == "linucb" else None
    ratio = regret_ratio(SUBLINEAR_BANDITS[name], context)
    assert ratio < 2.0  # linear regret would give 4


def test_the_regret_test_can_fail_constant_epsilon_is_linear():
    ratio = regret_ratio(lambda seed: EpsilonGreedy(epsilon=0.1, n_actions=10, random_state=seed))
    assert ratio > 2.0


@pytest.mark.parametrize("make", [
    lambda: EpsilonGreedy(epsilon=0.1, random_state=0),
    lambda: UCB1(random_state=0),
    lambda: ThompsonSampling(random_state=0),
    lambda: ThompsonSampling("gaussian", random_state=0),
])
def test_bandit_fit_on_env_records_regret(make):
    env = BernoulliBandit(MEANS)
    bandit = make().fit(env, n_steps=3000)
    curve = bandit.learning_curve_
    assert list(curve.columns) == ["step", "mean_reward", "cumulative_regret"]
    assert curve["step"].iloc[-1] == 3000
    assert curve["cumulative_regret"].is_monotonic_increasing
    assert bandit.regret_ == pytest.approx(curve["cumulative_regret"].iloc[-1])
    assert bandit.regret_ < 0.15 * 3000  # far below uniform play (0.33 per decision)
    assert int(np.argmax(bandit.policy_.table_[0])) == 9


def test_bandits_serve_many_users_per_round_and_per_state():
    env = BernoulliBandit([[0.9, 0.1], [0.1, 0.9]])
    bandit = ThompsonSampling(n_envs=32, random_state=0).fit(env, n_steps=4000)
    assert bandit.policy_.table_.argmax(axis=1).tolist() == [0, 1]
    assert bandit.counts_.sum() == 4000


def test_batch_fit_equals_one_at_a_time_updates():
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, 500)
    rewards = rng.random(500)
    states = rng.integers(0, 3, 500)
    batch = UCB1(n_actions=5, n_states=3).fit(actions, rewards, states)
    single = UCB1(n_actions=5, n_states=3)
    for a, r, s in zip(actions, rewards, states, strict=True):
        single.update(int(a), float(r), int(s))
    np.testing.assert_allclose(batch.means_, single.means_)
    np.testing.assert_array_equal(batch.counts_, single.counts_)
    np.testing.assert_array_equal(batch.decisions_, single.decisions_)


def test_bandit_inputs_are_checked():
    bandit = EpsilonGreedy(n_actions=3, n_states=2)
    with pytest.raises(ValueError, match="context"):
        bandit.select()
    with pytest.raises(ValueError, match=r"arm id in \[0, 3\)"):
        bandit.update(3, 1.0, 0)
    with pytest.raises(ValueError, match="finite"):
        bandit.update(0, float("nan"), 0)
    with pytest.raises(ValueError, match="row 1"):
        bandit.partial_fit([0, 7], [1.0, 1.0], [0, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ThompsonSampling(n_actions=2).update(0, 2.0)
    with pytest.raises(NotFittedError):
        UCB1().select()
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(epsilon=2.0, n_actions=2).select()


def test_linucb_beats_a_context_free_bandit_on_a_linear_problem():
    rng = np.random.default_rng(0)
    n_features, n_arms, horizon = 5, 6, 3000
    theta = rng.normal(size=(n_arms, n_features))
    contexts = rng.normal(size=(horizon, n_features)) / np.sqrt(n_features)
    means = contexts @ theta.T  # mean reward of each arm for each user
    noise = 0.3 * rng.standard_normal(horizon)
    linucb = LinUCB(alpha=0.5, n_actions=n_arms, n_features=n_features, random_state=0)
    ucb = UCB1(alpha=1.0, n_actions=n_arms, random_state=0)
    earned = {"linucb": 0.0, "ucb1": 0.0}
    for t in range(horizon):
        arm = linucb.select(contexts[t])
        linucb.update(arm, means[t, arm] + noise[t], contexts[t])
        earned["linucb"] += means[t, arm]
        arm = ucb.select()
        ucb.update(arm, means[t, arm] + noise[t])
        earned["ucb1"] += means[t, arm]
    best = means.max(axis=1).sum()
    assert earned["linucb"] > earned["ucb1"] + 0.2 * horizon
    assert best - earned["linucb"] < 0.1 * best
    np.testing.assert_allclose(linucb.theta_, theta, atol=0.3)


def test_linucb_on_an_env_with_state_features_and_batch_fit():
    env = BernoulliBandit([[0.9, 0.1], [0.1, 0.9]])
    features = np.eye(2)
    online = LinUCB(features=features, n_envs=16, random_state=0).fit(env, n_steps=2000)
    assert online.policy_.table_.argmax(axis=1).tolist() == [0, 1]
    assert online.learning_curve_["mean_reward"].iloc[-1] > 0.7
    rng = np.random.default_rng(0)
    states = rng.integers(0, 2, 4000)
    actions = rng.integers(0, 2, 4000)
    rewards = (rng.random(4000) < env.means[states, actions]).astype(float)
    logged = LinUCB(features=features).fit(actions, rewards, features[states])
    np.testing.assert_allclose(logged.theta_, env.means.T, atol=0.05)
    with pytest.raises(ValueError, match="feature vector"):
        logged.select([1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------- offline
@pytest.fixture(scope="module")
def uniform_logs(shop):
    env, _ = shop
    return collect_logs(env, logging_policy(env, "uniform"), 100_000, seed=0)


def test_fitted_q_iteration_on_uniform_logs_reaches_90_percent(shop, uniform_logs):
    env, optimal = shop
    fqi = FittedQIteration(gamma=GAMMA).fit(uniform_logs, n_states=20, n_actions=10)
    assert fqi.converged_
    assert env.policy_value(fqi.policy_, GAMMA) >= 0.9 * optimal
    # the Q-values themselves approach the exact optimal Q (rewards are price x Bernoulli: noisy)
    exact = env.optimal_q(GAMMA)
    assert np.abs(fqi.q_values_ - exact).mean() < 0.1 * np.abs(exact).mean()


def test_fitted_q_iteration_stops_at_done_and_at_missing_next_state():
    logs = pd.DataFrame({"state": [0, 0, 1], "action": [0, 1, 0], "reward": [1.0, 0.0, 2.0],
                         "next_state": [1, 1, None], "done": [True, False, False]})
    fqi = FittedQIteration(gamma=0.5, shrinkage=0.0).fit(logs, n_states=2, n_actions=2)
    assert fqi.q_values_[0, 0] == pytest.approx(1.0)  # done: no continuation
    assert fqi.q_values_[1, 0] == pytest.approx(2.0)  # no next_state: terminal
    assert fqi.q_values_[0, 1] == pytest.approx(0.0 + 0.5 * 2.0)


def test_pessimism_demotes_a_lucky_rarely_logged_action():
    logs = pd.DataFrame({"state": 0, "action": [0] * 100 + [1], "reward": [0.0, 1.0] * 50 + [1.0],
                         "done": True, "next_state": 0})
    plain = FittedQIteration(shrinkage=0.0).fit(logs)
    careful = FittedQIteration(shrinkage=0.0, pessimism=2.0).fit(logs)
    assert plain.policy_.table_[0].tolist() == [0.0, 1.0]
    assert careful.policy_.table_[0].tolist() == [1.0, 0.0]
    # 2 * sigma(s) / sqrt(n + 1) with sigma(s) = std of the 101 rewards
    sigma = np.array([0.0, 1.0] * 50 + [1.0]).std()
    assert careful.q_values_[0, 1] == pytest.approx(1.0 - 2.0 * sigma / np.sqrt(2.0))


def test_direct_method_and_ips_find_the_best_item_per_state(shop):
    env, _ = shop
    bandit_logs = collect_logs(env, logging_policy(env, "uniform"), 100_000, seed=1)
    best_myopic = env.reward_matrix().max(axis=1)
    for learner in (DirectMethodLearner(), IPSLearner()):
        policy = learner.fit(bandit_logs, n_states=20, n_actions=10).policy_
        achieved = (policy.table_ * env.reward_matrix()).sum(axis=1)
        visited = bandit_logs["state"].value_counts().index.to_numpy()
        assert (achieved[visited] >= 0.85 * best_myopic[visited]).mean() >= 0.9


def test_ips_values_estimate_expected_rewards_under_a_skewed_logging_policy():
    env = BernoulliBandit([0.2, 0.5, 0.7])
    logging = np.array([[0.7, 0.2, 0.1]])
    rng = np.random.default_rng(0)
    actions = rng.choice(3, size=200_000, p=logging[0])
    rewards = (rng.random(actions.size) < env.means[0, actions]).astype(float)
    logs = pd.DataFrame({"state": 0, "action": actions, "reward": rewards,
                         "propensity": logging[0, actions]})
    values = IPSLearner().fit(logs).action_values_[0]
    np.testing.assert_allclose(values, env.means[0], atol=0.02)
    capped = IPSLearner(max_weight=2.0).fit(logs).action_values_[0]
    assert capped[2] < 0.5 * values[2]  # capping weight 10 -> 2 biases the rare arm down


def test_conservative_learning_keeps_mass_on_logged_actions_only():
    # costs (negative rewards): IPS scores never-logged actions 0 > every logged action
    logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 1, 0, 0],
                         "reward": [-1.0, -0.5, -2.0, -2.0], "propensity": 0.25,
                         "next_state": [0, 0, 1, 1], "done": True})
    naive = IPSLearner().fit(logs, n_states=3, n_actions=4).policy_.table_
    assert naive[0, 2:].sum() == pytest.approx(1.0)
    for base in (IPSLearner(), DirectMethodLearner(), FittedQIteration()):
        table = ConservativeLearner(base).fit(logs, n_states=3, n_actions=4).policy_.table_
        assert table[0].tolist() == [0.0, 1.0, 0.0, 0.0]
        assert table[1].tolist() == [1.0, 0.0, 0.0, 0.0]
        assert table[2].tolist() == [0.25] * 4  # never logged: nothing to restrict to
    assert ConservativeLearner(IPSLearner()).learner is not None
    same = FittedQIteration(conservative=True).fit(logs, n_states=3, n_actions=4).policy_.table_
    np.testing.assert_array_equal(same[0], [0.0, 1.0, 0.0, 0.0])


def test_offline_learners_name_the_bad_column_and_row():
    logs = pd.DataFrame({"state": [0, 1], "action": [0, 5], "reward": [1.0, 0.0]})
    with pytest.raises(LogValidationError, match="next_state"):
        FittedQIteration().fit(logs)
    with pytest.raises(LogValidationError, match=r"column 'action': row 1"):
        DirectMethodLearner().fit(logs, n_states=2, n_actions=3)
    with pytest.raises(LogValidationError, match="propensity"):
        IPSLearner().fit(logs)
    with pytest.raises(ValueError, match="shrinkage"):
        DirectMethodLearner(shrinkage=-1).fit(logs)


def test_weights_scale_the_statistics():
    logs = pd.DataFrame({"state": [0, 0], "action": [0, 1], "reward": [1.0, 0.0], "weight": [3.0, 1.0]})
    learner = DirectMethodLearner(shrinkage=0.0).fit(logs)
    assert learner.counts_.tolist() == [[3.0, 1.0]]


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_bernoulli_bandit_passes_the_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    check_env(BernoulliBandit([[0.1, 0.5], [0.3, 0.2]]))
    env = BernoulliBandit([[0.1, 0.5], [0.3, 0.2]], state_distribution=[0.0, 1.0])
    assert env.reset(seed=0)[0] == 1 and env.optimal_value() == pytest.approx(0.3)


def test_bernoulli_bandit_checks_its_means():
    with pytest.raises(ValueError, match="probabilities"):
        BernoulliBandit([0.5, 1.5])
    assert hfrl.envs is not None


# ---------------------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(-10, 10)), min_size=1, max_size=40),
       st.floats(0.01, 1.0))
def test_batch_update_equals_k_successive_steps_toward_the_mean_target(pairs, learning_rate):
    learner = QLearning(learning_rate=learning_rate)
    learner._lr = learning_rate
    learner._init_tables(2, 3)
    learner.q_values_[:] = np.arange(6).reshape(2, 3) / 7.0
    before = learner.q_values_.copy().reshape(-1)
    learner._writer = np.zeros(6, dtype=np.intp)
    learner._positions = np.arange(len(pairs), dtype=np.intp)
    learner._step_for_count = 1.0 - (1.0 - learning_rate) ** np.arange(len(pairs) + 1)
    index = np.array([p[0] for p in pairs], dtype=np.intp)
    targets = np.array([p[1] for p in pairs])
    learner._update(index, targets)
    for i in range(6):
        mine = targets[index == i]
        expected = before[i]
        for _ in range(mine.size):  # k plain TD steps toward the mean target
            expected += learning_rate * (mine.mean() - expected) if mine.size else 0.0
        assert learner.q_values_.reshape(-1)[i] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.floats(-5, 5), st.booleans()),
                min_size=1, max_size=60))
def test_offline_policies_are_distributions_and_conservative_ones_stay_on_support(rows):
    logs = pd.DataFrame(rows, columns=["state", "action", "reward", "done"])
    logs["next_state"] = (logs["state"] + 1) % 4
    logs["propensity"] = 0.2
    support = np.zeros((4, 5), dtype=bool)
    support[logs["state"], logs["action"]] = True
    for learner in (FittedQIteration(), DirectMethodLearner(), IPSLearner()):
        table = learner.fit(logs, n_states=4, n_actions=5).policy_.table_
        np.testing.assert_allclose(table.sum(axis=1), 1.0)
        restricted = ConservativeLearner(learner).fit(logs, n_states=4, n_actions=5).policy_.table_
        logged_states = support.any(axis=1)
        assert (restricted[logged_states][~support[logged_states]] == 0).all()
        np.testing.assert_allclose(restricted[~logged_states], 0.2)
