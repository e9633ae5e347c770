"""What the offline learners share: the logs' cell statistics, greedy choice, the fit protocol.

Every tabular offline learner needs only a few sums per (state, action): how often it was logged,
its reward sum, its importance-weighted reward sum and, for session logs, how often each next
state followed. They come from the validated logs' one pass of cell statistics
(``hfrl.data.Logs.statistics``, any backend) plus, for sessions, one grouped pass over
``(state, action, next_state)``; the learners work on these statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from hfrl.data import Logs, as_logs, schema
from hfrl.errors import NotFittedError
from hfrl.learners._common import check_in_range, check_policy_options
from hfrl.policies import TabularPolicy

S, A, R, P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY
HINTS = {
    schema.NEXT_STATE: "learning from sessions needs next_state; for one-step logs use the direct "
                       "method (DirectMethodLearner, --learner direct-method)",
    schema.PROPENSITY: "importance weighting needs the logging propensities; without them use the "
                       "direct method (DirectMethodLearner, --learner direct-method)",
}


@dataclass
class OfflineStatistics:
    """Sufficient statistics of logs for tabular learners (weighted by ``weight`` when logged)."""

    n_states: int
    n_actions: int
    n_rows: int
    counts: np.ndarray  # (n_states, n_actions) weighted number of logged decisions
    reward_sums: np.ndarray  # (n_states, n_actions)
    reward_squares: np.ndarray  # (n_states, n_actions) sum of weight * reward ** 2
    ips_sums: np.ndarray | None  # (n_states, n_actions) sum of weight * reward / propensity
    continuations: sp.csr_matrix | None  # (n_states * n_actions, n_states) non-terminal next states


def offline_statistics(logs: Any, n_states: int | None = None, n_actions: int | None = None, *,
                       need_propensity: bool = False, need_next_state: bool = False,
                       max_weight: float | None = None) -> OfflineStatistics:
    """Validate ``logs`` (unless already ``Logs``) and reduce them to ``OfflineStatistics``.

    Terminal rows are those with ``done`` true or no ``next_state``; they contribute no
    continuation. The optional ``weight`` column weights every sum. ``max_weight`` caps the
    importance weight 1 / propensity in ``ips_sums``.
    """
    required = [S, A, R] + ([P] if need_propensity else []) + ([schema.NEXT_STATE] if need_next_state else [])
    logs = as_logs(logs, n_states=n_states, n_actions=n_actions, required=required, hints=HINTS)
    weight = schema.WEIGHT if logs.has(schema.WEIGHT) else None
    times = f"{weight} * " if weight else ""
    extra = {"weighted": weight, "weighted_reward": f"{times}{R}",
             "weighted_square": f"{times}{R} * {R}"} if weight else {}
    if need_propensity:
        propensity = P if max_weight is None else f"greatest({P}, {1.0 / max_weight!r})"
        extra["ips"] = f"{times}{R} / {propensity}"
    cells = logs.statistics(extra)
    shape = (n_states or logs.n_states, n_actions or logs.n_actions)
    counts = cells.table(cells.extra.get("weighted", cells.count), shape)
    return OfflineStatistics(
        shape[0], shape[1], logs.n_rows, counts,
        cells.table(cells.extra.get("weighted_reward", cells.reward), shape),
        cells.table(cells.extra.get("weighted_square", cells.reward_sq), shape),
        cells.table(cells.extra["ips"], shape) if need_propensity else None,
        _continuations(logs, shape, weight) if need_next_state else None,
    )


def _continuations(logs: Logs, shape: tuple[int, int], weight: str | None) -> sp.csr_matrix:
    """Weighted counts of each non-terminal next state after each (state, action), sparse."""
    continuing = f"1 - missing({schema.NEXT_STATE})"
    if logs.has(schema.DONE):
        continuing = f"({continuing}) * (1 - cast_double({schema.DONE}))"
    frame = logs.backend.group_sums(logs.source, [S, A, schema.NEXT_STATE], {"n": weight or "1"},
                                    where=continuing)
    n_states, n_actions = shape
    index = frame[S].to_numpy(np.int64) * n_actions + frame[A].to_numpy(np.int64)
    following = frame[schema.NEXT_STATE].to_numpy(np.int64)
    matrix = sp.csr_matrix((frame["n"].to_numpy(np.float64), (index, following)),
                           shape=(n_states * n_actions, n_states))
    matrix.sum_duplicates()
    return matrix


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


def exploring_table(values: np.ndarray, kind: str, epsilon: float, temperature: float,
                    allowed: np.ndarray | None = None) -> np.ndarray:
    """The served distribution per row over ``values``: greedy, epsilon-greedy or softmax.

    ``"epsilon_greedy"`` spreads ``epsilon`` uniformly and puts the rest on the greedy actions;
    ``"softmax"`` is ``exp(values / temperature)`` normalised. With ``allowed`` (a conservative
    learner) every kind ranges only over a row's allowed actions (all of them in a row with none).

    Examples
    --------
    >>> exploring_table(np.array([[1.0, 0.0, 0.0]]), "epsilon_greedy", 0.3, 1.0).round(2).tolist()
    [[0.8, 0.1, 0.1]]
    >>> exploring_table(np.array([[1.0, 0.0]]), "softmax", 0.1, 1.0).round(3).tolist()
    [[0.731, 0.269]]
    """
    support = np.ones(values.shape, dtype=bool) if allowed is None else (
        allowed | ~allowed.any(axis=1, keepdims=True))
    if kind == "softmax":
        scaled = np.where(support, values, -np.inf) / temperature
        weights = np.where(support, np.exp(scaled - scaled.max(axis=1, keepdims=True)), 0.0)
        return weights / weights.sum(axis=1, keepdims=True)
    greedy = greedy_table(values, allowed)
    if kind == "epsilon_greedy":
        return (1.0 - epsilon) * greedy + epsilon * support / support.sum(axis=1, keepdims=True)
    return greedy


class OfflineLearner:
    """Base of the offline learners: ``fit(logs, n_states=, n_actions=)`` -> ``policy_``.

    Every offline learner takes ``policy`` (``"greedy"``, ``"softmax"``, ``"epsilon_greedy"``),
    ``policy_epsilon`` and ``policy_temperature``: what ``policy_`` serves from
    ``action_values_`` (see ``exploring_table``). Greedy decisions have propensity 1, so their
    logs cannot evaluate any other policy; the two others keep every (allowed) action possible.
    """

    _param_names: tuple[str, ...] = ()
    _policy_params = ("policy", "policy_epsilon", "policy_temperature")

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (as scikit-learn's ``get_params(deep=False)``)."""
        return {name: getattr(self, name) for name in (*self._param_names, *self._policy_params)}

    def _set_policy_params(self, policy: str, policy_epsilon: float, policy_temperature: float) -> None:
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature

    def _check_common(self) -> None:
        self._min_count = check_in_range("min_count", self.min_count, 0.0, float("inf"),
                                         low_open=True)
        self._served = check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        if not isinstance(self.conservative, (bool, np.bool_)):
            raise ValueError(f"conservative must be True or False, got {self.conservative!r}")

    def _allowed(self, counts: np.ndarray) -> np.ndarray | None:
        return counts >= self._min_count if self.conservative else None

    def _finish(self, stats: OfflineStatistics, action_values: np.ndarray) -> None:
        self.n_states_, self.n_actions_ = stats.n_states, stats.n_actions
        self.counts_ = stats.counts
        self.action_values_ = action_values
        kind, epsilon, temperature = self._served
        table = exploring_table(action_values, kind, epsilon, temperature, self._allowed(stats.counts))
        metadata: dict[str, Any] = {"learner": type(self).__name__, "conservative": bool(self.conservative)}
        if kind == "softmax":
            metadata.update(policy=kind, temperature=temperature)
        elif kind == "epsilon_greedy":
            metadata.update(policy=kind, epsilon=epsilon)
        self.policy_ = TabularPolicy(table, metadata=metadata)

    def _require_fitted(self) -> None:
        if getattr(self, "policy_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(logs) first")


__all__ = ["OfflineLearner", "OfflineStatistics", "exploring_table", "greedy_table", "offline_statistics",
           "state_reward_std"]
