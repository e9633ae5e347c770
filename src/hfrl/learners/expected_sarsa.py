"""Expected SARSA: bootstrap on the expectation of Q(s', .) under the epsilon-greedy policy.

    Q(s, a) <- Q(s, a) + lr * (r + gamma * E_pi[Q(s', A')] * (1 - terminated) - Q(s, a)),
    E_pi[Q(s', A')] = (1 - epsilon) * max_a' Q(s', a') + epsilon * mean_a' Q(s', a')

Same fixed point as SARSA with less variance (no sampled a').
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._td import TabularTDLearner

__all__ = ["ExpectedSarsa"]


class ExpectedSarsa(TabularTDLearner):
    """Tabular Expected SARSA.

    The parameters and attributes are those of ``QLearning``: a constant or visit-count step
    size (``learning_rate``, ``omega``), the epsilon schedule (``epsilon``, ``epsilon_final``,
    ``epsilon_decay``, ``decay_fraction``), ``n_envs``, ``initial_q``, the served ``policy``
    (``"greedy"``, ``"softmax"`` with ``policy_temperature``, ``"epsilon_greedy"`` with
    ``policy_epsilon``) and ``random_state``.

    Examples
    --------
    >>> from hfrl.learners import BernoulliBandit, ExpectedSarsa
    >>> env = BernoulliBandit([0.2, 0.8, 0.5])
    >>> learner = ExpectedSarsa(gamma=0.0, n_envs=64, random_state=0).fit(env, n_steps=20_000)
    >>> int(learner.q_values_.argmax())
    1
    """

    _needs_row_mean = True

    def _target(self, rewards, next_states, terminated, next_actions, epsilon):  # type: ignore[override]
        expected = ((1.0 - epsilon) * self._best_value.take(next_states)
                    + epsilon * self._row_mean.take(next_states))
        return rewards + self._gamma * np.where(terminated, 0.0, expected)

    def _target_one(self, reward, next_state, terminated, next_action, epsilon):  # type: ignore[override]
        if terminated:
            return reward
        row = self.q_values_[next_state]
        return reward + self._gamma * float((1.0 - epsilon) * row.max() + epsilon * row.mean())
