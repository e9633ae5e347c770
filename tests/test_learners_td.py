"""TD learners: visit-count step sizes converge to Q*, the epsilon schedule ends where it says."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.envs import TabularMDPEnv
from hfrl.learners import BernoulliBandit, ExpectedSarsa, QLearning, Sarsa

GAMMA = 0.9


def noisy_mdp() -> TabularMDPEnv:
    """6 states x 3 actions, Bernoulli rewards, random transitions, 10% chance to leave per step."""
    rng = np.random.default_rng(0)
    success = rng.uniform(0.1, 0.9, (6, 3))
    kernel = rng.dirichlet(np.ones(6), 6 * 3) * 0.9
    return TabularMDPEnv(success, sp.csr_matrix(kernel), np.full(6, 1 / 6), reward_noise="bernoulli")


def rewards_received(learner) -> float:
    """Sum of the rewards of the whole fit, from the learning curve's windows."""
    curve = learner.learning_curve_
    return float((curve["mean_reward"] * np.diff(curve["step"], prepend=0)).sum())


# ---------------------------------------------------------------------------------------- step sizes
def test_visits_step_size_drives_q_learning_to_q_star():
    """With 1 / N(s, a)**0.8 the sup error keeps shrinking; a constant step stalls at its noise floor.

    Uniform behaviour (epsilon 1, constant) visits every pair; Q-learning is off-policy, so its
    fixed point is Q* whatever the behaviour. Seeds 0-7 during development: the error at 2M
    steps was 0.012-0.026, 5-10 times smaller than at 200k (0.10-0.18); the constant step 0.1
    stayed between 0.36 and 0.76 at both budgets.
    """
    env = noisy_mdp()
    q_star = env.optimal_q(GAMMA)

    def error(learning_rate, n_steps: int) -> float:
        learner = QLearning(gamma=GAMMA, learning_rate=learning_rate, omega=0.8, epsilon=1.0,
                            epsilon_decay="constant", n_envs=1024, random_state=0)
        return float(np.abs(learner.fit(env, n_steps=n_steps).q_values_ - q_star).max())

    small, large = error("visits", 200_000), error("visits", 2_000_000)
    assert large < small / 2
    assert large < 0.05
    constant = error(0.1, 2_000_000)
    assert constant > 5 * large  # the failure mode the visits rate removes


@pytest.mark.parametrize("learner_class", [QLearning, Sarsa, ExpectedSarsa])
@pytest.mark.parametrize("n_envs", [1, 64])
def test_visits_rate_with_omega_1_makes_q_the_running_mean(learner_class, n_envs):
    """gamma 0 and no exploration: every step updates arm 0, and 1/N steps average its rewards.

    With 64 users per batch all on one pair, each batch counts as 64 visits, so the mean is exact
    in both loops.
    """
    env = BernoulliBandit([0.3, 0.9])
    learner = learner_class(gamma=0.0, learning_rate="visits", omega=1.0, epsilon=0.0,
                            n_envs=n_envs, random_state=3).fit(env, n_steps=6_400)
    assert learner.visit_counts_.tolist() == [[6_400.0, 0.0]]
    assert learner.q_values_[0, 0] == pytest.approx(rewards_received(learner) / 6_400, abs=1e-10)
    assert 0.25 < learner.q_values_[0, 0] < 0.35
    assert learner.q_values_[0, 1] == 0.0


@pytest.mark.parametrize("n_envs", [1, 50])
def test_a_first_visit_lands_on_its_target_whatever_the_initial_q(n_envs):
    """The first visit's step is 1 / 1**omega = 1, also when 50 users make it in one batch."""
    env = BernoulliBandit([[1.0, 1.0]])  # reward always 1
    learner = QLearning(gamma=0.0, learning_rate="visits", omega=0.6, epsilon=0.0, n_envs=n_envs,
                        initial_q=-1.0, random_state=0).fit(env, n_steps=100)
    assert learner.q_values_[0].tolist() == [1.0, -1.0]
    assert learner.visit_counts_[0].tolist() == [100.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(-10, 10)), min_size=1, max_size=40),
       st.lists(st.integers(0, 1000), min_size=6, max_size=6),
       st.floats(0.51, 1.0))
def test_batch_update_equals_k_successive_visit_steps_toward_the_mean_target(pairs, visits, omega):
    """k users on one (s, a) in a batch = k steps of 1/(n + j)**omega toward their mean target."""
    learner = QLearning(learning_rate="visits", omega=omega)
    learner._check_step_size()
    learner._init_tables(2, 3)
    learner.q_values_[:] = np.arange(6).reshape(2, 3) / 7.0
    learner.visit_counts_[:] = np.reshape(visits, (2, 3))
    before = learner.q_values_.copy().reshape(-1)
    learner._start_batches(len(pairs))
    index = np.array([p[0] for p in pairs], dtype=np.intp)
    targets = np.array([p[1] for p in pairs])
    learner._update(index, targets)
    for i in range(6):
        mine = targets[index == i]
        expected = before[i]
        for j in range(1, mine.size + 1):  # k plain TD steps with the visit-count step size
            expected += (visits[i] + j) ** -omega * (mine.mean() - expected)
        assert learner.q_values_.reshape(-1)[i] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert learner.visit_counts_.reshape(-1)[i] == visits[i] + mine.size


@pytest.mark.parametrize("params, message", [
    ({"learning_rate": "visit"}, "'visits'"), ({"learning_rate": 1.5}, "learning_rate"),
    ({"learning_rate": "visits", "omega": 0.5}, r"omega must be in \(0.5, 1.0\]"),
    ({"learning_rate": "visits", "omega": 1.2}, "omega"), ({"omega": "fast"}, "omega"),
    ({"epsilon_decay": "constant", "epsilon_final": 0.01}, "epsilon_final"),
    ({"epsilon_decay": "cosine"}, "epsilon_decay"),
])
def test_step_size_and_schedule_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        QLearning(**params).fit(BernoulliBandit([0.5, 0.5]), n_steps=10)


# ---------------------------------------------------------------------------------------- exploration
@pytest.mark.parametrize("schedule, mean_epsilon", [
    ({}, 0.5 * (0.5 + 0.05) / 2 + 0.5 * 0.05),  # default: linear to epsilon / 10 over half the run
    ({"epsilon_final": 0.2}, 0.5 * (0.5 + 0.2) / 2 + 0.5 * 0.2),
    ({"epsilon_decay": "constant"}, 0.5),
])
def test_epsilon_decays_as_documented(schedule, mean_epsilon):
    """Arm 0 always pays 1 and is greedy from the start; arm 1 is pulled only by exploring.

    An exploring step picks arm 1 with probability 1/2, so arm 1's visits are about
    ``n_steps * mean(epsilon) / 2``, with a standard deviation below its square root.
    """
    env = BernoulliBandit([1.0, 0.0])
    n_steps = 64_000
    learner = QLearning(gamma=0.0, epsilon=0.5, n_envs=64, random_state=0, **schedule)
    learner.fit(env, n_steps=n_steps)
    expected = n_steps * mean_epsilon / 2
    assert abs(learner.visit_counts_[0, 1] - expected) < 5 * np.sqrt(expected)
