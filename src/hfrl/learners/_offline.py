"""What the offline learners share: validated sufficient statistics of logs, shrinkage, greedy choice.

Every tabular offline learner needs only a few sums per (state, action) — how often it was
logged, its reward sum, its importance-weighted reward sum and, for session logs, how often each
next state followed — so the logs are read once, with ``bincount`` and one sparse matrix, and the
learners work on these statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hfrl.data import schema, validate_logs
from hfrl.errors import LogValidationError, NotFittedError
from hfrl.learners._common import check_in_range
from hfrl.policies import TabularPolicy


@dataclass
class LogStatistics:
    """Sufficient statistics of logs for tabular learners (weights applied when logged)."""

    n_states: int
    n_actions: int
    n_rows: int
    counts: np.ndarray  # (n_states, n_actions) weighted number of logged decisions
    reward_sums: np.ndarray  # (n_states, n_actions)
    reward_squares: np.ndarray  # (n_states, n_actions) sum of weight * reward ** 2
    ips_sums: np.ndarray | None  # (n_states, n_actions) sum of weight * reward / propensity
    continuations: sp.csr_matrix | None  # (n_states * n_actions, n_states) non-terminal next states


def _size(logs: pd.DataFrame, given: int | None, columns: tuple[str, ...], name: str) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or given < 1:
            raise ValueError(f"{name} must be a positive integer, got {given!r}")
        return int(given)
    highest = max(int(logs[c].max()) for c in columns if c in logs.columns and logs[c].notna().any())
    return highest + 1


def log_statistics(logs: pd.DataFrame, n_states: int | None = None, n_actions: int | None = None, *,
                   need_propensity: bool = False, need_next_state: bool = False,
                   max_weight: float | None = None, source: str | None = None) -> LogStatistics:
    """Validate ``logs`` (naming the column and first bad row) and reduce them to ``LogStatistics``.

    Terminal rows are those with ``done`` true or no ``next_state``; they contribute no
    continuation. The optional ``weight`` column weights every sum. ``max_weight`` caps the
    importance weight 1 / propensity in ``ips_sums``.
    """
    required = [schema.STATE, schema.ACTION, schema.REWARD]
    if need_propensity:
        required.append(schema.PROPENSITY)
    if need_next_state:
        required.append(schema.NEXT_STATE)
    clean = validate_logs(logs, n_states=n_states, n_actions=n_actions, required=required,
                          source=source)
    n_states = _size(clean, n_states, (schema.STATE, schema.NEXT_STATE), "n_states")
    n_actions = _size(clean, n_actions, (schema.ACTION,), "n_actions")
    states = clean[schema.STATE].to_numpy(dtype=np.intp)
    actions = clean[schema.ACTION].to_numpy(dtype=np.intp)
    rewards = clean[schema.REWARD].to_numpy(dtype=np.float64)
    weights = (clean[schema.WEIGHT].to_numpy(dtype=np.float64) if schema.WEIGHT in clean.columns
               else None)
    size = n_states * n_actions
    index = states * n_actions + actions
    counts = np.bincount(index, weights=weights, minlength=size).astype(np.float64)
    weighted_rewards = rewards if weights is None else rewards * weights
    reward_sums = np.bincount(index, weights=weighted_rewards, minlength=size)
    reward_squares = np.bincount(index, weights=weighted_rewards * rewards, minlength=size)
    ips_sums = None
    if need_propensity:
        propensities = clean[schema.PROPENSITY].to_numpy(dtype=np.float64)
        if max_weight is not None:
            propensities = np.maximum(propensities, 1.0 / max_weight)
        ips_sums = np.bincount(index, weights=weighted_rewards / propensities, minlength=size)
        ips_sums = ips_sums.reshape(n_states, n_actions)
    continuations = None
    if need_next_state:
        next_column = clean[schema.NEXT_STATE]
        has_next = next_column.notna().to_numpy()
        terminal = ~has_next
        if schema.DONE in clean.columns:
            terminal |= clean[schema.DONE].to_numpy(dtype=bool)
        keep = ~terminal
        next_states = next_column.to_numpy(dtype=np.float64, na_value=-1)[keep].astype(np.intp)
        values = np.ones(int(keep.sum())) if weights is None else weights[keep]
        continuations = sp.csr_matrix((values, (index[keep], next_states)), shape=(size, n_states))
        continuations.sum_duplicates()
    return LogStatistics(n_states, n_actions, len(clean), counts.reshape(n_states, n_actions),
                         reward_sums.reshape(n_states, n_actions),
                         reward_squares.reshape(n_states, n_actions), ips_sums, continuations)


def shrunk_means(counts: np.ndarray, sums: np.ndarray, shrinkage: float) -> np.ndarray:
    """Mean per (s, a) shrunk toward its state's mean, itself shrunk toward the global mean.

    ``mean(s, a) = (sum(s, a) + k * mean(s)) / (n(s, a) + k)`` and
    ``mean(s) = (sum(s) + k * mean) / (n(s) + k)`` with ``k = shrinkage`` pseudo-observations;
    a pair never logged gets its state's mean, a state never logged the global mean.
    """
    total = counts.sum()
    global_mean = sums.sum() / total if total > 0 else 0.0
    state_counts = counts.sum(axis=1, keepdims=True)
    state_sums = sums.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        state_means = (state_sums + shrinkage * global_mean) / (state_counts + shrinkage)
        state_means = np.where(state_counts + shrinkage > 0, state_means, global_mean)
        means = (sums + shrinkage * state_means) / (counts + shrinkage)
        return np.where(counts + shrinkage > 0, means, state_means)


def state_reward_std(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Standard deviation of the logged rewards in each state, pooled over its actions, (n_states, 1)."""
    n = counts.sum(axis=1, keepdims=True)
    mean = np.divide(sums.sum(axis=1, keepdims=True), n, out=np.zeros_like(n), where=n > 0)
    second = np.divide(squares.sum(axis=1, keepdims=True), n, out=np.zeros_like(n), where=n > 0)
    return np.sqrt(np.maximum(second - mean * mean, 0.0))


def greedy_table(values: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Greedy distribution per row (ties share mass), restricted to ``allowed`` where a row has any.

    A row with no allowed action (a state never logged) falls back to all actions.
    """
    if allowed is None:
        allowed = np.ones(values.shape, dtype=bool)
    else:
        allowed = allowed | ~allowed.any(axis=1, keepdims=True)
    masked = np.where(allowed, values, -np.inf)
    row_max = masked.max(axis=1, keepdims=True)
    is_max = allowed & np.isclose(values, row_max, rtol=1e-12, atol=1e-12)
    return is_max / is_max.sum(axis=1, keepdims=True)


class OfflineLearner:
    """Base of the offline learners: ``fit(logs, n_states=, n_actions=)`` -> ``policy_``."""

    _param_names: tuple[str, ...] = ()

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (as scikit-learn's ``get_params(deep=False)``)."""
        return {name: getattr(self, name) for name in self._param_names}

    def _check_common(self) -> None:
        self._min_count = check_in_range("min_count", self.min_count, 0.0, float("inf"),
                                         low_open=True)
        if not isinstance(self.conservative, (bool, np.bool_)):
            raise ValueError(f"conservative must be True or False, got {self.conservative!r}")

    def _allowed(self, counts: np.ndarray) -> np.ndarray | None:
        return counts >= self._min_count if self.conservative else None

    def _finish(self, stats: LogStatistics, action_values: np.ndarray) -> None:
        self.n_states_, self.n_actions_ = stats.n_states, stats.n_actions
        self.counts_ = stats.counts
        self.action_values_ = action_values
        table = greedy_table(action_values, self._allowed(stats.counts))
        self.policy_ = TabularPolicy(table, metadata={
            "learner": type(self).__name__, "conservative": bool(self.conservative)})

    def _require_fitted(self) -> None:
        if getattr(self, "policy_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(logs) first")


__all__ = ["LogStatistics", "LogValidationError", "OfflineLearner", "greedy_table", "log_statistics",
           "shrunk_means"]
