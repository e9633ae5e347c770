"""Epsilon-greedy bandit: exploit the best empirical mean, explore uniformly with rate epsilon.

    a_t = uniform arm            with probability eps_t
          argmax_a mean(s, a)    otherwise
    eps_t = epsilon                                   (decay_steps=None: constant)
    eps_t = epsilon * min(1, decay_steps / (t + 1))   (t = decisions so far in that state)

A constant epsilon keeps paying for exploration forever (regret linear in T); the 1/t decay is
greedy in the limit and its regret grows like log T.
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._bandit import TabularBandit
from hfrl.learners._common import check_in_range

__all__ = ["EpsilonGreedy"]


class EpsilonGreedy(TabularBandit):
    """Epsilon-greedy over per-state empirical means.

    Parameters
    ----------
    epsilon : float, default 0.1
        Exploration rate (at the start, when ``decay_steps`` is set).
    decay_steps : float, optional
        After this many decisions in a state, epsilon decays as ``1/t``; None keeps it constant.
    n_actions : int, optional
        Number of arms, needed before ``select``/``update`` when ``fit`` has not been called.
    n_states : int, default 1
        Number of states (contexts) with separate statistics.
    n_envs : int, default 1
        Users served per round in ``fit(env, n_steps=)``.
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from ``means_`` (``TabularPolicy.from_q_values``). Greedy
        decisions have propensity 1, so logs of them cannot evaluate any other policy; the two
        stochastic kinds keep every arm possible. ``select`` is unaffected.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1] (not the exploration ``epsilon``).
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in reward units.
    random_state : int, Generator or None

    Examples
    --------
    >>> from hfrl.learners import EpsilonGreedy
    >>> bandit = EpsilonGreedy(epsilon=0.1, n_actions=3, random_state=0)
    >>> for _ in range(200):
    ...     arm = bandit.select()
    ...     bandit.update(arm, 1.0 if arm == 2 else 0.0)
    >>> bandit.select() in (0, 1, 2), int(bandit.means_.argmax())
    (True, 2)
    """

    def __init__(self, epsilon: float = 0.1, decay_steps: float | None = None, *,
                 n_actions: int | None = None, n_states: int = 1, n_envs: int = 1,
                 policy: str = "greedy", policy_epsilon: float = 0.1, policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(n_actions=n_actions, n_states=n_states, n_envs=n_envs, policy=policy,
                         policy_epsilon=policy_epsilon, policy_temperature=policy_temperature,
                         random_state=random_state)
        self.epsilon = epsilon
        self.decay_steps = decay_steps

    def _check_params(self) -> None:
        self._epsilon = check_in_range("epsilon", self.epsilon, 0.0, 1.0)
        self._decay = None if self.decay_steps is None else check_in_range(
            "decay_steps", self.decay_steps, 0.0, float("inf"), low_open=True)

    def _select_one(self, s: int) -> int:
        epsilon = self._epsilon
        if self._decay is not None:
            epsilon *= min(1.0, self._decay / (self.decisions_[s] + 1.0))
        u = self._uniform()
        if u < epsilon:  # u / epsilon is uniform on [0, 1): reuse it to pick the arm
            return min(int(u / epsilon * self.n_actions_), self.n_actions_ - 1)
        return int(self.means_[s].argmax())

    def _select_batch(self, states: np.ndarray) -> np.ndarray:
        epsilon = np.full(states.shape[0], self._epsilon)
        if self._decay is not None:
            epsilon *= np.minimum(1.0, self._decay / (self.decisions_.take(states) + 1.0))
        u = self._rng.random(states.shape[0])
        explore = np.minimum((u / np.maximum(epsilon, 1e-300) * self.n_actions_).astype(np.intp),
                             self.n_actions_ - 1)
        return np.where(u < epsilon, explore, self.means_[states].argmax(axis=1))
