"""Q-learning: off-policy TD control, bootstrapping on the best next action.

    Q(s, a) <- Q(s, a) + lr * (r + gamma * max_a' Q(s', a') * (1 - terminated) - Q(s, a))

Done right: the learning rate and the discount are separate parameters, actions are chosen
epsilon-greedily with a decaying schedule (never pure argmax while learning), and a terminated
transition (the user left) bootstraps nothing, while a truncated one (a time limit) does.
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._td import TabularTDLearner

__all__ = ["QLearning"]


class QLearning(TabularTDLearner):
    """Tabular Q-learning with epsilon-greedy exploration on a schedule.

    Parameters
    ----------
    gamma : float, default 0.95
        Discount factor in [0, 1].
    learning_rate : float, default 0.1
        Step size in (0, 1].
    epsilon : float, default 0.1
        Exploration rate at the start.
    epsilon_final : float, optional
        Exploration rate reached after ``decay_fraction`` of the steps; None keeps ``epsilon``.
    epsilon_decay : {"linear", "exponential", "constant"}, default "linear"
        Shape of the decay from ``epsilon`` to ``epsilon_final``.
    decay_fraction : float, default 0.5
        Fraction of the iterations over which epsilon decays.
    n_envs : int, default 1
        Parallel independent users. 1 runs the classic one-step Gymnasium loop; more steps them
        together through the env's batch API with one vectorised update per batch: k users
        updating one (s, a) in a batch count as k successive steps toward their mean target,
        ``Q += (1 - (1 - learning_rate)**k) * (mean_target - Q)``. Keeps two
        (n_states, n_actions) tables in memory (Q and an int index table).
    initial_q : float, default 0.0
        Initial Q-value of every pair (a high value explores optimistically). While learning,
        equal Q-values go to the lowest action id; ``policy_`` shares mass among exact ties.
    random_state : int, Generator or None
        Seed of every random choice (exploration, env resets and transitions).

    Attributes
    ----------
    q_values_ : ndarray of shape (n_states, n_actions)
    policy_ : TabularPolicy
        Greedy in ``q_values_`` (ties share the mass).
    learning_curve_ : DataFrame
        ``step`` (env steps so far) and ``mean_reward`` (mean reward in that window).
    n_steps_, n_episodes_ : int

    Examples
    --------
    >>> from hfrl.learners import BernoulliBandit, QLearning
    >>> env = BernoulliBandit([0.2, 0.8, 0.5])
    >>> learner = QLearning(gamma=0.0, epsilon=0.2, n_envs=64, random_state=0).fit(env, n_steps=20_000)
    >>> int(learner.policy_.greedy().top_k([0])[0][0, 0])
    1
    """

    def _target(self, rewards, next_states, terminated, next_actions, epsilon):  # type: ignore[override]
        bootstrap = self._best_value.take(next_states)
        return rewards + self._gamma * np.where(terminated, 0.0, bootstrap)

    def _target_one(self, reward, next_state, terminated, next_action, epsilon):  # type: ignore[override]
        if terminated:
            return reward
        return reward + self._gamma * float(self.q_values_[next_state].max())
