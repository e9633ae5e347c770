"""Served policies that keep exploring: ``TabularPolicy.with_exploration`` and learners' ``policy=``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.learners import (
    UCB1,
    BernoulliBandit,
    EpsilonGreedy,
    ExpectedSarsa,
    LinUCB,
    QLearning,
    Sarsa,
    ThompsonSampling,
)
from hfrl.policies import TabularPolicy

# Mixing rounds in the last bits: the floor holds to within a few 1e-16.
ROUNDING = 1e-12


# ---------------------------------------------------------------------------------------- with_exploration
def test_a_greedy_policy_gets_the_floor_on_every_action_and_keeps_its_choice():
    greedy = TabularPolicy(np.eye(4)[[2, 0, 3]], metadata={"learner": "QLearning"})
    explored = greedy.with_exploration(0.05)
    # eps = 0.05 / (1/4) = 0.2: the greedy action keeps 0.8 + 0.05, every other action gets 0.05
    expected = np.full((3, 4), 0.05)
    expected[[0, 1, 2], [2, 0, 3]] = 0.85
    np.testing.assert_allclose(explored.table_, expected, rtol=0, atol=ROUNDING)
    assert explored.metadata["learner"] == "QLearning"
    assert explored.metadata["min_propensity"] == 0.05
    assert explored.metadata["exploration_epsilon"] == pytest.approx(0.2, abs=ROUNDING)
    assert greedy.metadata == {"learner": "QLearning"}  # the original is untouched
    _, propensities = explored.sample(np.repeat([0, 1, 2], 2_000), random_state=0)
    assert propensities.min() >= 0.05 - ROUNDING
    assert set(np.round(propensities, 9)) == {0.05, 0.85}


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_the_smallest_mix_with_uniform_that_reaches_the_floor(n_states, n_actions, share, seed):
    rng = np.random.default_rng(seed)
    table = rng.random((n_states, n_actions)) ** 3
    table[rng.random(table.shape) < 0.3] = 0.0
    table[:, 0] += 1e-3
    policy = TabularPolicy(table / table.sum(axis=1, keepdims=True))
    floor = share / n_actions
    explored = policy.with_exploration(floor)
    eps = explored.metadata["exploration_epsilon"]
    assert 0.0 <= eps <= 1.0
    np.testing.assert_allclose(explored.table_, (1 - eps) * policy.table_ + eps / n_actions,
                               rtol=0, atol=ROUNDING)
    assert explored.table_.min() >= floor - ROUNDING
    if policy.table_.min() >= floor:
        assert eps == 0.0
    else:  # smallest: the floor binds at the policy's smallest entry
        assert explored.table_.min() == pytest.approx(floor, abs=ROUNDING)


def test_zero_floor_returns_an_equal_copy_and_records_it():
    policy = TabularPolicy(np.array([[1.0, 0.0], [0.3, 0.7]]), metadata={"name": "p"})
    copy = policy.with_exploration(0.0)
    assert copy is not policy
    np.testing.assert_array_equal(copy.table_, policy.table_)
    assert copy.metadata == {"name": "p", "min_propensity": 0.0, "exploration_epsilon": 0.0}


def test_the_largest_floor_gives_the_uniform_policy():
    explored = TabularPolicy(np.eye(3)).with_exploration(1 / 3)
    np.testing.assert_allclose(explored.table_, np.full((3, 3), 1 / 3), rtol=0, atol=ROUNDING)
    assert explored.metadata["exploration_epsilon"] == 1.0


def test_repeated_exploration_records_the_total_mix_and_the_largest_floor():
    policy = TabularPolicy(np.eye(2)[[1, 0, 1]])
    twice = policy.with_exploration(0.1).with_exploration(0.25)
    eps = twice.metadata["exploration_epsilon"]
    np.testing.assert_allclose(twice.table_, (1 - eps) * policy.table_ + eps / 2, rtol=0, atol=ROUNDING)
    assert twice.table_.min() == pytest.approx(0.25, abs=ROUNDING)
    assert twice.metadata["min_propensity"] == 0.25
    lower_after = twice.with_exploration(0.1)  # already above 0.1: nothing more is mixed in
    assert lower_after.metadata == twice.metadata
    np.testing.assert_array_equal(lower_after.table_, twice.table_)


def test_exploration_survives_save_and_load(tmp_path):
    explored = TabularPolicy(np.eye(3)).with_exploration(0.1)
    loaded = TabularPolicy.load(explored.save(tmp_path / "explored.zip"))
    np.testing.assert_array_equal(loaded.table_, explored.table_)
    assert loaded.metadata == explored.metadata


@pytest.mark.parametrize("floor, message", [
    (0.3, r"min_propensity must be in \[0, 1 / n_actions\] = \[0, 0.25\] for 4 actions, got 0.3"),
    (-0.01, "min_propensity"), (float("nan"), "min_propensity"), ("a lot", "must be a number"),
])
def test_bad_floors_are_refused_with_the_allowed_range(floor, message):
    with pytest.raises(ValueError, match=message):
        TabularPolicy.uniform(2, 4).with_exploration(floor)


# ---------------------------------------------------------------------------------------- learners' policy=
def fitted_online_learners(**options):
    """Every online learner, fitted briefly on a 3-armed bandit with the served-policy ``options``."""
    env = BernoulliBandit([[0.2, 0.8, 0.5], [0.6, 0.1, 0.3]])
    td = dict(gamma=0.0, epsilon=0.3, n_envs=32, random_state=0, **options)
    bandits = dict(n_envs=8, random_state=0, **options)
    learners = [QLearning(**td), Sarsa(**td), ExpectedSarsa(**td), EpsilonGreedy(**bandits),
                UCB1(**bandits), ThompsonSampling(**bandits),
                LinUCB(features=np.eye(2), **bandits)]
    return [(learner.fit(env, n_steps=4_000), values_of(learner)) for learner in learners]


def values_of(learner) -> np.ndarray:
    """What the learner's policy_ is built from."""
    if isinstance(learner, (QLearning, Sarsa, ExpectedSarsa)):
        return learner.q_values_
    if isinstance(learner, LinUCB):
        return np.eye(2) @ learner.theta_.T
    return learner.means_


def test_online_learners_serve_greedy_policies_by_default():
    for learner, values in fitted_online_learners():
        table = learner.policy_.table_
        assert set(np.unique(table)) <= {0.0, 1.0}, type(learner).__name__
        assert table.argmax(axis=1).tolist() == values.argmax(axis=1).tolist()
        assert learner.policy_.metadata == {"learner": type(learner).__name__}


def test_online_learners_serve_softmax_policies_on_request():
    for learner, values in fitted_online_learners(policy="softmax", policy_temperature=0.05):
        expected = np.exp((values - values.max(axis=1, keepdims=True)) / 0.05)
        expected /= expected.sum(axis=1, keepdims=True)
        name = type(learner).__name__
        np.testing.assert_allclose(learner.policy_.table_, expected, rtol=1e-12, atol=0, err_msg=name)
        assert learner.policy_.table_.min() > 0, name
        assert learner.policy_.metadata == {"learner": name, "policy": "softmax", "temperature": 0.05}


def test_online_learners_serve_epsilon_greedy_policies_on_request():
    for learner, values in fitted_online_learners(policy="epsilon_greedy", policy_epsilon=0.3):
        table = learner.policy_.table_
        name = type(learner).__name__
        best = values.argmax(axis=1)
        np.testing.assert_allclose(table[np.arange(2), best], 0.7 + 0.1, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(np.sort(table, axis=1)[:, :2], 0.1, rtol=1e-12, err_msg=name)
        assert learner.policy_.metadata == {"learner": name, "policy": "epsilon_greedy", "epsilon": 0.3}


@pytest.mark.parametrize("options, message", [
    ({"policy": "boltzmann"}, "policy must be one of"),
    ({"policy": "softmax", "policy_temperature": 0.0}, "policy_temperature"),
    ({"policy": "epsilon_greedy", "policy_epsilon": 1.5}, "policy_epsilon"),
])
@pytest.mark.parametrize("make", [
    lambda **o: QLearning(**o), lambda **o: EpsilonGreedy(**o), lambda **o: UCB1(**o),
    lambda **o: ThompsonSampling(**o), lambda **o: LinUCB(features=np.eye(1), **o),
], ids=["q_learning", "epsilon_greedy", "ucb1", "thompson", "linucb"])
def test_bad_policy_options_are_refused_before_learning(options, message, make):
    learner = make(**options)
    with pytest.raises(ValueError, match=message):
        learner.fit(BernoulliBandit([0.5, 0.5]), n_steps=10)
    assert getattr(learner, "q_values_", getattr(learner, "counts_", None)) is None  # nothing learned


# ---------------------------------------------------------------------------------------- offline learners
def offline_logs():
    """Two states x three actions; state 0 never logged action 2 (what a conservative learner avoids)."""
    import pandas as pd

    return pd.DataFrame({"state": [0, 0, 0, 0, 1, 1, 1], "action": [0, 0, 1, 1, 0, 1, 2],
                         "reward": [1.0, 1.0, 0.0, 0.0, 0.0, 0.5, 2.0], "propensity": 1 / 3,
                         "next_state": 0, "done": True})


@pytest.mark.parametrize("name", ["direct_method", "ips", "fitted_q"])
def test_offline_learners_serve_softmax_and_epsilon_greedy_on_request(name):
    from hfrl.learners import DirectMethodLearner, FittedQIteration, IPSLearner

    make = {"direct_method": DirectMethodLearner, "ips": IPSLearner,
            "fitted_q": lambda **o: FittedQIteration(gamma=0.0, **o)}[name]
    soft = make(policy="softmax", policy_temperature=0.5).fit(offline_logs(), n_states=2, n_actions=3)
    expected = np.exp((soft.action_values_ - soft.action_values_.max(axis=1, keepdims=True)) / 0.5)
    np.testing.assert_allclose(soft.policy_.table_, expected / expected.sum(axis=1, keepdims=True),
                               rtol=1e-12, atol=0)
    assert soft.policy_.metadata["policy"] == "softmax" and soft.get_params()["policy"] == "softmax"
    explore = make(policy="epsilon_greedy", policy_epsilon=0.3).fit(offline_logs(), n_states=2, n_actions=3)
    table = explore.policy_.table_
    best = explore.action_values_.argmax(axis=1)
    np.testing.assert_allclose(table[np.arange(2), best], 0.7 + 0.1, rtol=1e-12)
    assert table.min() == pytest.approx(0.1)
    greedy = make().fit(offline_logs(), n_states=2, n_actions=3)
    assert set(np.unique(greedy.policy_.table_)) <= {0.0, 1.0}


def test_a_conservative_offline_learner_explores_only_among_logged_actions():
    from hfrl.learners import DirectMethodLearner

    learner = DirectMethodLearner(conservative=True, policy="epsilon_greedy", policy_epsilon=0.2)
    table = learner.fit(offline_logs(), n_states=2, n_actions=3).policy_.table_
    assert table[0, 2] == 0.0  # never logged in state 0: kept out even by exploration
    np.testing.assert_allclose(table[0], [0.9, 0.1, 0.0], rtol=1e-12)
    assert table[1].min() > 0


@pytest.mark.parametrize("options, message", [
    ({"policy": "boltzmann"}, "policy must be one of"),
    ({"policy": "softmax", "policy_temperature": 0.0}, "policy_temperature"),
    ({"policy": "epsilon_greedy", "policy_epsilon": -0.1}, "policy_epsilon"),
])
def test_bad_policy_options_of_an_offline_learner_are_refused(options, message):
    from hfrl.learners import DirectMethodLearner

    with pytest.raises(ValueError, match=message):
        DirectMethodLearner(**options).fit(offline_logs(), n_states=2, n_actions=3)
