"""Fitted Q iteration on session logs, tabular: repeated Bellman backups on sufficient statistics.

With n(s, a) the logged count, R(s, a) the (shrunk) mean reward and C the sparse matrix of
non-terminal next-state counts, one sweep is

    V(s')   = max_a' Q(s', a')                      (over tried actions when conservative)
    Q(s, a) = R(s, a) + gamma * (C @ V)(s, a) / n(s, a)

so a terminal transition (``done`` or no ``next_state``) contributes no continuation, and a sweep
costs O(distinct (s, a, s') triples), not O(logged rows). A pair never logged gets its state's
mean reward and no continuation.

Pessimism. Maximising over many noisy estimates favours the luckiest (the winner's curse), and
the backups carry that optimism into every state that can reach it. ``pessimism=beta`` subtracts
``beta * sigma(s) / sqrt(n(s, a) + max(shrinkage, 1))`` from R(s, a), with sigma(s) the state's
reward standard deviation: pairs seen rarely must prove themselves (as in pessimistic value
iteration).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hfrl.data import shrunk_means
from hfrl.learners._common import check_in_range, check_positive_int
from hfrl.learners._offline import OfflineLearner, offline_statistics, state_reward_std

__all__ = ["FittedQIteration"]


class FittedQIteration(OfflineLearner):
    """Tabular fitted Q iteration from logs with ``next_state`` (and optionally ``done``).

    Parameters
    ----------
    gamma : float, default 0.95
        Discount factor in [0, 1].
    n_iterations : int, default 1000
        Maximum number of sweeps.
    tol : float, default 1e-8
        Stop when no Q-value moved more than ``tol`` in a sweep.
    shrinkage : float, default 1.0
        Pseudo-observations pulling each mean reward toward its state's mean (see ``shrunk_means``).
    conservative : bool, default False
        Maximise only over actions logged at least ``min_count`` times in the state, in the
        backups and in the policy.
    min_count : float, default 1
        Minimum (weighted) count for an action to count as tried.
    pessimism : float, default 0.0
        Width of the lower confidence bound subtracted from each mean reward (0: none).
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from ``action_values_``; the two stochastic kinds keep every
        (allowed) action possible, so the decisions they log can evaluate other policies.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1].
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in the units of ``action_values_``.

    Attributes
    ----------
    q_values_, action_values_ : ndarray of shape (n_states, n_actions)
    policy_ : TabularPolicy
        ``policy`` over ``q_values_`` (greedy by default: ties share the mass).
    counts_ : ndarray
        Logged (weighted) count per (state, action).
    n_iterations_ : int
        Sweeps run; ``converged_`` tells whether ``tol`` was reached.
    sweep_seconds_, statistics_seconds_ : float
        Mean wall time of one sweep, and of reading the logs into statistics.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 1, 0, 1],
    ...                      "reward": [0.0, 0.0, 1.0, 0.0], "next_state": [0, 1, 1, 1],
    ...                      "done": [False, False, True, True]})
    >>> fqi = FittedQIteration(gamma=0.9, shrinkage=0.0).fit(logs)
    >>> fqi.policy_.greedy().top_k([0, 1])[0].ravel().tolist()
    [1, 0]
    >>> round(float(fqi.q_values_[0, 1]), 3)
    0.9
    """

    _param_names = ("gamma", "n_iterations", "tol", "shrinkage", "conservative", "min_count",
                    "pessimism")

    def __init__(self, gamma: float = 0.95, n_iterations: int = 1000, tol: float = 1e-8, *,
                 shrinkage: float = 1.0, conservative: bool = False, min_count: float = 1,
                 pessimism: float = 0.0, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0) -> None:
        self._set_policy_params(policy, policy_epsilon, policy_temperature)
        self.gamma = gamma
        self.n_iterations = n_iterations
        self.tol = tol
        self.shrinkage = shrinkage
        self.conservative = conservative
        self.min_count = min_count
        self.pessimism = pessimism

    def fit(self, logs: Any, n_states: int | None = None, n_actions: int | None = None) -> FittedQIteration:
        """Learn Q-values from session logs; returns self.

        Raises
        ------
        LogValidationError
            When a required column (state, action, reward, next_state) is missing or a value is
            invalid, naming the column and the first offending row.
        """
        gamma = check_in_range("gamma", self.gamma, 0.0, 1.0)
        n_iterations = check_positive_int("n_iterations", self.n_iterations)
        tol = check_in_range("tol", self.tol, 0.0, float("inf"))
        shrinkage = check_in_range("shrinkage", self.shrinkage, 0.0, float("inf"))
        pessimism = check_in_range("pessimism", self.pessimism, 0.0, float("inf"))
        self._check_common()
        started = time.perf_counter()
        stats = offline_statistics(logs, n_states, n_actions, need_next_state=True)
        self.statistics_seconds_ = time.perf_counter() - started

        counts = stats.counts.reshape(-1)
        rewards = shrunk_means(stats.counts, stats.reward_sums, shrinkage)
        if pessimism > 0:
            sigma = state_reward_std(stats.counts, stats.reward_sums, stats.reward_squares)
            rewards = rewards - pessimism * sigma / np.sqrt(stats.counts + max(shrinkage, 1.0))
        rewards = rewards.reshape(-1)
        # row-normalise the continuation counts once: P[(s, a), s'] = C[(s, a), s'] / n(s, a)
        inverse_counts = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
        transitions = stats.continuations.multiply(inverse_counts[:, None]).tocsr()
        transitions.data *= gamma
        allowed = self._allowed(stats.counts)
        penalty = None if allowed is None else np.where(
            allowed | ~allowed.any(axis=1, keepdims=True), 0.0, -np.inf)

        q = rewards.copy()
        q_next = np.empty_like(q)
        sweeps_started = time.perf_counter()
        self.converged_ = False
        sweep = 0
        for sweep in range(1, n_iterations + 1):  # noqa: B007 - the count is reported
            table = q.reshape(stats.n_states, stats.n_actions)
            values = (table + penalty).max(axis=1) if penalty is not None else table.max(axis=1)
            np.add(rewards, transitions @ values, out=q_next)
            change = float(np.max(np.abs(q_next - q)))
            q, q_next = q_next, q
            if change <= tol:
                self.converged_ = True
                break
        self.sweep_seconds_ = (time.perf_counter() - sweeps_started) / sweep
        self.n_iterations_ = sweep
        self.q_values_ = q.reshape(stats.n_states, stats.n_actions)
        self.n_transitions_ = stats.n_rows
        self._finish(stats, self.q_values_)
        return self
