"""SARSA: on-policy TD control, bootstrapping on the next action actually taken.

    Q(s, a) <- Q(s, a) + lr * (r + gamma * Q(s', a') * (1 - terminated) - Q(s, a)),
    a' ~ epsilon-greedy(Q, s')

It learns the value of the exploring policy itself, so it is more cautious than Q-learning where
exploration is costly.
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._td import TabularTDLearner

__all__ = ["Sarsa"]


class Sarsa(TabularTDLearner):
    """Tabular SARSA.

    The parameters and attributes are those of ``QLearning``: a constant or visit-count step
    size (``learning_rate``, ``omega``), the epsilon schedule (``epsilon``, ``epsilon_final``,
    ``epsilon_decay``, ``decay_fraction``), ``n_envs``, ``initial_q``, the served ``policy``
    (``"greedy"``, ``"softmax"`` with ``policy_temperature``, ``"epsilon_greedy"`` with
    ``policy_epsilon``) and ``random_state``.

    Examples
    --------
    >>> from hfrl.learners import BernoulliBandit, Sarsa
    >>> env = BernoulliBandit([0.2, 0.8, 0.5])
    >>> learner = Sarsa(gamma=0.0, epsilon=0.2, n_envs=64, random_state=0).fit(env, n_steps=20_000)
    >>> int(learner.q_values_.argmax())
    1
    """

    _needs_next_action = True

    def _target(self, rewards, next_states, terminated, next_actions, epsilon):  # type: ignore[override]
        n_actions = self.q_values_.shape[1]
        bootstrap = self.q_values_.reshape(-1).take(next_states * n_actions + next_actions)
        return rewards + self._gamma * np.where(terminated, 0.0, bootstrap)

    def _target_one(self, reward, next_state, terminated, next_action, epsilon):  # type: ignore[override]
        if terminated:
            return reward
        return reward + self._gamma * float(self.q_values_[next_state, next_action])
