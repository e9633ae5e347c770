"""UCB1 (Auer et al., 2002): optimism in the face of uncertainty.

    a_t = argmax_a mean(s, a) + alpha * sqrt(2 * ln(t) / n(s, a)),  every arm tried once first

with t the decisions so far in state s. With alpha = 1 and rewards in [0, 1] the regret is
O(sum_a ln T / gap_a).
"""

from __future__ import annotations

import math

import numpy as np

from hfrl.learners._bandit import TabularBandit
from hfrl.learners._common import check_in_range

__all__ = ["UCB1"]


class UCB1(TabularBandit):
    """UCB1 over per-state statistics.

    Parameters
    ----------
    alpha : float, default 1.0
        Width of the confidence bonus (1 is the textbook UCB1).
    n_actions, n_states, n_envs, random_state
        As in ``EpsilonGreedy``.
    policy, policy_epsilon, policy_temperature
        What ``policy_`` serves from ``means_``: ``"greedy"`` (default), ``"softmax"`` or
        ``"epsilon_greedy"``, as in ``EpsilonGreedy``.

    Examples
    --------
    >>> from hfrl.learners import UCB1
    >>> bandit = UCB1(n_actions=3).fit([0, 1, 2, 2], [0.0, 0.0, 1.0, 1.0])
    >>> bandit.select()
    2
    """

    def __init__(self, alpha: float = 1.0, *, n_actions: int | None = None, n_states: int = 1,
                 n_envs: int = 1, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(n_actions=n_actions, n_states=n_states, n_envs=n_envs, policy=policy,
                         policy_epsilon=policy_epsilon, policy_temperature=policy_temperature,
                         random_state=random_state)
        self.alpha = alpha

    def _check_params(self) -> None:
        self._alpha = check_in_range("alpha", self.alpha, 0.0, float("inf"))

    def _initialise(self, n_states: int, n_actions: int) -> None:
        super()._initialise(n_states, n_actions)
        self._scores = np.empty(n_actions)

    def _select_one(self, s: int) -> int:
        counts = self.counts_[s]
        untried = int(counts.argmin())
        if counts[untried] == 0.0:
            return untried
        scores = self._scores
        np.divide(2.0 * math.log(self.decisions_[s]), counts, out=scores)
        np.sqrt(scores, out=scores)
        scores *= self._alpha
        scores += self.means_[s]
        return int(scores.argmax())

    def _select_batch(self, states: np.ndarray) -> np.ndarray:
        counts = self.counts_[states]
        log_t = np.log(np.maximum(self.decisions_.take(states), 1.0))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # untried arms (0 / 0 too): inf below
            bonus = self._alpha * np.sqrt(2.0 * log_t / counts)
        scores = np.where(counts == 0.0, np.inf, self.means_[states] + bonus)
        return scores.argmax(axis=1)
