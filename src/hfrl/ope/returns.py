"""The discounted return of a policy from session logs: tabular fitted Q evaluation, with its interval.

An RL policy maximises the discounted return of a whole session, ``v(pi) = E[sum_t gamma^t r_t]``
from the start distribution, not the reward of one decision. ``evaluate_return`` estimates it by
**fitted Q evaluation** on the logs' cell statistics. On a tabular problem fitted Q evaluation is
certainty equivalence: estimate the shop from the rows and solve it exactly,

* ``r(s, a)`` = the mean logged reward of the cell, ``P(s' | s, a)`` = the share of its rows that
  continued to ``s'`` (a terminal row, ``done`` or no ``next_state``, continues nowhere),
  ``mu0(s)`` = the share of sessions whose first row is in ``s``;
* ``V = (I - gamma P_pi)^-1 r_pi``, ``Q = r + gamma P V`` and ``v = mu0 . V``.

Each cell's reward and continuation are shrunk toward its state's pooled rows by ``shrinkage``
pseudo-rows (default 1, as ``hfrl.data.shrink``), so that a cell seen once does not steer the
solution alone; ``shrinkage=0`` is the plain certainty-equivalence model.

Why this estimator rather than per-decision importance sampling (``evaluate_sessions``): the
importance weight of a session is the product of its per-step ratios, so for a policy that differs
from the logging one over ten steps almost every session weighs 0 and a few weigh thousands, while
the model reuses every transition for every policy. Its cost is the same few sums per cell that the
one-step estimators use (one grouped pass over ``(state, action, next_state)``), and evaluating
another policy -- every alpha of a tuning curve -- is one small linear solve. Its weak point is a
cell the logs never saw: the model then uses the state's mean over its logged actions (for a state
with no rows: no reward, no continuation), which is a guess, not data. ``unobserved_share`` (the
policy's discounted occupancy on such cells) says how much of the value rests on it, and
``compare_return`` calls a verdict resting on more than ``max_unobserved`` of it unreliable.

Interval. The estimate is a smooth function of the cell means, so its first-order expansion gives
each row's influence: a row of cell ``(s, a)`` moves ``v`` by ``d(s) pi(a|s) / n(s, a) * delta``
with ``delta = r + gamma V(s') - Q(s, a)`` the row's temporal-difference error and ``d = mu0 (I -
gamma P_pi)^-1`` the policy's discounted state occupancy; a session start in ``s`` moves it by
``(V(s) - v) / n_sessions``. The temporal-difference errors are martingale differences along a
session (zero mean given the past under the model), so the variance is the sum of the squared
influences, computed from per-cell and per-``(s, a, s')`` sums without touching rows again; the
interval is normal. The logging policy's own value (``baseline="logging"``) is that of the empirical
behaviour ``n(s, a) / n(s)``, whose influence ``d(s) / n(s) * (r + gamma V(s') - V(s))`` also
counts the behaviour's estimation. Paired differences subtract the two policies' influences row by
row, so shared noise cancels as in ``compare``.

Splits: a session cut by a split starts, in the later part, at its first row there, so the start
distribution leans toward mid-session states. Split session logs by session
(``hfrl.tune.split_logs(logs, by="session")``).

Logs without ``session_id`` and ``next_state`` are read as one-step sessions (every row starts and
ends one): the return is then the expected reward at the logged states, the direct method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from hfrl.backends import Backend
from hfrl.data import Logs, as_logs, schema
from hfrl.ope.compare import Comparison
from hfrl.ope.inference import check_level, normal_quantile
from hfrl.ope.targets import policy_table

__all__ = ["RETURN_ESTIMATORS", "ReturnEstimate", "ReturnModel", "compare_return", "evaluate_return"]

RETURN_ESTIMATORS = ("fqe",)
#: pseudo-rows of its state's pooled model in each cell's model (as ``hfrl.data.shrink``)
DEFAULT_SHRINKAGE = 1.0
S, A, R = schema.STATE, schema.ACTION, schema.REWARD
SESSION_HINTS = {
    schema.NEXT_STATE: "the return of a session needs each row's next_state (and done, or a missing "
                       "next_state, where a session ends)",
    schema.SESSION_ID: "the return needs session_id to find where sessions start",
}


def check_gamma(gamma: Any) -> float:
    """A discount factor in [0, 1], or ValueError naming it."""
    if isinstance(gamma, bool) or not isinstance(gamma, int | float | np.floating) \
            or not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must be a discount factor in [0, 1], got {gamma!r}")
    return float(gamma)


@dataclass(frozen=True)
class ReturnEstimate:
    """One policy's (or one difference's) estimated discounted return and its normal standard error."""

    estimate: float
    std_error: float
    unobserved_share: float


@dataclass(frozen=True)
class _Solution:
    """A policy solved in the logs' model: its value and what its rows' influences need."""

    value: float
    values: np.ndarray  # V (n_states,)
    occupancy: np.ndarray  # d (n_states,): discounted visits from the start distribution
    scale: np.ndarray  # per cell: the weight of the row's next-step target in its influence
    offset: np.ndarray  # per cell: the influence of a row whose target is 0
    unobserved_share: float


class ReturnModel:
    """The tabular model of session logs that fitted Q evaluation solves, and the rows' influences.

    Build it once with ``ReturnModel.from_logs`` and evaluate any number of policies on it
    (``evaluate``, ``difference``): each costs a sparse LU solve over the states.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"session_id": [0, 0, 1], "state": [0, 1, 0], "action": [0, 1, 1],
    ...                      "reward": [1.0, 2.0, 0.0], "next_state": [1, 1, 0],
    ...                      "done": [False, True, True]})
    >>> model = ReturnModel.from_logs(logs, 2, 2, shrinkage=0.0)  # each cell's own rows only
    >>> round(model.evaluate(np.array([[1.0, 0.0], [0.0, 1.0]]), gamma=0.5).estimate, 3)  # 1 + 0.5 * 2
    2.0
    """

    def __init__(self, counts: np.ndarray, reward_sums: np.ndarray, reward_squares: np.ndarray,
                 continuations: sp.csr_matrix, continuation_rewards: sp.csr_matrix,
                 starts: np.ndarray, shrinkage: float = DEFAULT_SHRINKAGE) -> None:
        self.counts, self.reward_sums, self.reward_squares = counts, reward_sums, reward_squares
        self.shrinkage = float(shrinkage)
        self.continuations, self.continuation_rewards = continuations, continuation_rewards
        self.starts = starts
        self.n_states, self.n_actions = counts.shape
        self.n_rows = int(round(counts.sum()))
        self.n_sessions = int(round(starts.sum()))
        self.seen = counts > 0
        self.state_counts = counts.sum(axis=1)
        n_cells = self.n_states * self.n_actions
        self._state_rows = sp.csr_matrix(  # (n_states, n_cells): sums a state's cells
            (np.ones(n_cells), (np.repeat(np.arange(self.n_states), self.n_actions), np.arange(n_cells))),
            shape=(self.n_states, n_cells))
        self.pooled_continuations = (self._state_rows @ continuations).tocsr()
        self.pooled_rewards = _ratio(reward_sums.sum(axis=1), self.state_counts)
        # each cell's model is (its rows + shrinkage x its state's pooled model) / (n + shrinkage)
        self.pooled_share = np.where(self.seen, _ratio(self.shrinkage, counts + self.shrinkage), 1.0)
        self.own_weight = _ratio(1.0, counts + self.shrinkage) * self.seen  # per row of the cell
        self.mean_rewards = self.own_weight * reward_sums + self.pooled_share * self.pooled_rewards[:, None]

    @classmethod
    def from_logs(cls, logs: Any, n_states: int | None = None, n_actions: int | None = None,
                  backend: str | Backend | None = None, shrinkage: float = DEFAULT_SHRINKAGE) -> ReturnModel:
        """The model of validated logs: the cell statistics and one grouped pass over continuations.

        Raises
        ------
        LogValidationError
            A missing ``next_state`` or ``session_id`` (only one of them present), or a bad value.
        ValueError
            Logs with a ``weight`` column (weighted rows are not supported here).
        """
        validated = as_logs(logs, backend, n_states=n_states, n_actions=n_actions, required=(S, A, R))
        validated.require_ids(n_states, n_actions)
        if validated.has(schema.WEIGHT):
            raise ValueError("the return estimator does not support weighted rows (a 'weight' column); "
                             "drop it or expand the rows")
        sessions = validated.has(schema.SESSION_ID) or validated.has(schema.NEXT_STATE)
        if sessions:
            validated.require(schema.SESSION_ID, schema.NEXT_STATE, hints=SESSION_HINTS)
        shape = (n_states or validated.n_states, n_actions or validated.n_actions)
        cells = validated.statistics()
        counts = cells.table(cells.count, shape)
        reward_sums = cells.table(cells.reward, shape)
        reward_squares = cells.table(cells.reward_sq, shape)
        if sessions:
            continuations, continuation_rewards = _continuations(validated, shape)
            starts = _starts(validated, shape[0])
        else:
            empty = sp.csr_matrix((shape[0] * shape[1], shape[0]))
            continuations, continuation_rewards = empty, empty.copy()
            starts = counts.sum(axis=1)
        return cls(counts, reward_sums, reward_squares, continuations, continuation_rewards, starts,
                   shrinkage)

    # ------------------------------------------------------------------ solving one policy
    def _check_table(self, table: np.ndarray) -> None:
        if table.shape != (self.n_states, self.n_actions):
            raise ValueError(f"the policy has shape {table.shape}, the model ({self.n_states}, "
                             f"{self.n_actions}); they must cover the same states and actions")

    def _kernel(self, table: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
        """``r_pi``, ``P_pi`` (continuing mass only) and each state's mass on the pooled model."""
        pooled_mass = (table * self.pooled_share).sum(axis=1)
        mixing = self._state_rows.multiply((table * self.own_weight).ravel()[None, :]).tocsr()
        pooled = sp.diags(_ratio(pooled_mass, self.state_counts))
        kernel = (mixing @ self.continuations + pooled @ self.pooled_continuations).tocsc()
        return (table * self.mean_rewards).sum(axis=1), kernel, pooled_mass

    def _solve(self, table: np.ndarray, gamma: float) -> _Solution:
        rewards, kernel, pooled_mass = self._kernel(table)
        value, values, occupancy = self._values(rewards, kernel, gamma)
        # each row's influence is scale(s, a) * (r + gamma V(s')) - offset(s, a)
        pooled_q = self.pooled_rewards + gamma * _ratio(self.pooled_continuations @ values, self.state_counts)
        follow = (self.continuations @ values).reshape(self.counts.shape)
        q = self.own_weight * (self.reward_sums + gamma * follow) + self.pooled_share * pooled_q[:, None]
        cell = occupancy[:, None] * table * self.own_weight
        pooled = occupancy * _ratio(pooled_mass, self.state_counts)
        scale = cell + pooled[:, None]
        offset = cell * q + (pooled * pooled_q)[:, None]
        total = float(occupancy.sum())
        unseen_mass = (table * ~self.seen).sum(axis=1)
        unobserved = float(occupancy @ unseen_mass / total) if total > 0 else 0.0
        return _Solution(value, values, occupancy, scale, offset, unobserved)

    def _values(self, rewards: np.ndarray, kernel: sp.spmatrix, gamma: float
                ) -> tuple[float, np.ndarray, np.ndarray]:
        """``(v, V, d)``: the return from the start distribution, per state, and the discounted
        occupancy, for per-state rewards and continuation kernel."""
        system = (sp.identity(self.n_states, format="csc") - gamma * kernel).tocsc()
        try:
            factor = splu(system)
        except RuntimeError:
            raise ValueError(
                f"the logs' model never ends a session under this policy, so its return at gamma = "
                f"{gamma:g} is infinite; use gamma < 1 or logs whose sessions end (done)") from None
        start = self.starts / max(self.n_sessions, 1)
        values = factor.solve(rewards)
        return float(start @ values), values, factor.solve(start, trans="T")

    def _solve_logging(self, gamma: float) -> _Solution:
        """The empirical behaviour ``n(s, a) / n(s)`` (whose model is each state's pooled rows): its
        value and its on-policy influences ``d(s) / n(s) * (r + gamma V(s') - V(s))``."""
        kernel = sp.diags(_ratio(1.0, self.state_counts)) @ self.pooled_continuations
        value, values, occupancy = self._values(self.pooled_rewards, kernel, gamma)
        scale = np.broadcast_to(_ratio(occupancy, self.state_counts)[:, None], self.counts.shape)
        return _Solution(value, values, occupancy, scale, scale * values[:, None], 0.0)

    # ------------------------------------------------------------------ variance
    def _cross(self, first: _Solution, second: _Solution, gamma: float) -> float:
        """Sum over rows of the product of two solutions' influences (temporal-difference part)."""
        shape = self.counts.shape

        def follow(matrix: sp.csr_matrix, vector: np.ndarray) -> np.ndarray:
            return (matrix @ vector).reshape(shape)

        target_1 = self.reward_sums + gamma * follow(self.continuations, first.values)
        target_2 = self.reward_sums + gamma * follow(self.continuations, second.values)
        products = (self.reward_squares
                    + gamma * (follow(self.continuation_rewards, first.values)
                               + follow(self.continuation_rewards, second.values))
                    + gamma**2 * follow(self.continuations, first.values * second.values))
        terms = (first.scale * second.scale * products - first.scale * second.offset * target_1
                 - first.offset * second.scale * target_2 + self.counts * first.offset * second.offset)
        return float(terms.sum())

    def _variance(self, solutions: list[tuple[float, _Solution]], gamma: float) -> float:
        """Variance of ``sum_k sign_k v_k``: rows' temporal-difference influences plus the starts'."""
        total = sum(a * b * self._cross(x, y, gamma) for a, x in solutions for b, y in solutions)
        start_values = sum(sign * solved.values for sign, solved in solutions)
        value = sum(sign * solved.value for sign, solved in solutions)
        n = max(self.n_sessions, 1)
        total += float(self.starts @ (start_values - value) ** 2) / n**2
        return max(total, 0.0)

    # ------------------------------------------------------------------ public
    def evaluate(self, table: Any, gamma: float) -> ReturnEstimate:
        """The estimated discounted return of a policy (table or ``TabularPolicy``), with its error."""
        probabilities = _table(table)
        self._check_table(probabilities)
        gamma = check_gamma(gamma)
        solved = self._solve(probabilities, gamma)
        se = float(np.sqrt(self._variance([(1.0, solved)], gamma)))
        return ReturnEstimate(solved.value, se, solved.unobserved_share)

    def logging_value(self, gamma: float) -> ReturnEstimate:
        """The on-policy return of the logged behaviour, with its error."""
        gamma = check_gamma(gamma)
        solved = self._solve_logging(gamma)
        return ReturnEstimate(solved.value, float(np.sqrt(self._variance([(1.0, solved)], gamma))), 0.0)

    def difference(self, table: Any, baseline: Any, gamma: float
                   ) -> tuple[ReturnEstimate, ReturnEstimate, ReturnEstimate]:
        """``(difference, candidate, baseline)``: the paired difference of two returns on these rows.

        ``baseline`` is a table, a ``TabularPolicy`` or ``"logging"`` (the empirical behaviour).
        """
        gamma = check_gamma(gamma)
        probabilities = _table(table)
        self._check_table(probabilities)
        candidate = self._solve(probabilities, gamma)
        if isinstance(baseline, str):
            if baseline != "logging":
                raise ValueError(f"baseline must be 'logging', a TabularPolicy or a table; got {baseline!r}")
            base = self._solve_logging(gamma)
        else:
            base_table = _table(baseline)
            self._check_table(base_table)
            base = self._solve(base_table, gamma)
        pair = [(1.0, candidate), (-1.0, base)]
        spread = float(np.sqrt(self._variance(pair, gamma)))
        return (ReturnEstimate(candidate.value - base.value, spread,
                               max(candidate.unobserved_share, base.unobserved_share)),
                ReturnEstimate(candidate.value, float(np.sqrt(self._variance(pair[:1], gamma))),
                               candidate.unobserved_share),
                ReturnEstimate(base.value, float(np.sqrt(self._variance([(1.0, base)], gamma))),
                               base.unobserved_share))


def _ratio(numerator: Any, denominator: Any) -> np.ndarray:
    """``numerator / denominator`` where the denominator is positive, else 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64),
                                                 np.asarray(denominator, dtype=np.float64))
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator > 0)


def _table(policy: Any) -> np.ndarray:
    table, row_level = policy_table(policy, "policy")
    if row_level and not isinstance(policy, np.ndarray):
        raise TypeError("policy must be a TabularPolicy or an (n_states, n_actions) table")
    return table


def _continuations(logs: Logs, shape: tuple[int, int]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Rows that continued from each (state, action) to each next state: their count and reward sum."""
    continuing = f"1 - missing({schema.NEXT_STATE})"
    if logs.has(schema.DONE):
        continuing = f"({continuing}) * (1 - cast_double({schema.DONE}))"
    frame = logs.backend.group_sums(logs.source, [S, A, schema.NEXT_STATE], {"n": "1", "r": R},
                                    where=continuing)
    n_states, n_actions = shape
    index = frame[S].to_numpy(np.int64) * n_actions + frame[A].to_numpy(np.int64)
    following = frame[schema.NEXT_STATE].to_numpy(np.int64)
    if following.size and following.max() >= n_states:
        raise ValueError(f"next_state {int(following.max())} is outside [0, {n_states}), the policy's states")
    matrices = []
    for column in ("n", "r"):
        matrix = sp.csr_matrix((frame[column].to_numpy(np.float64), (index, following)),
                               shape=(n_states * n_actions, n_states))
        matrix.sum_duplicates()
        matrices.append(matrix)
    return matrices[0], matrices[1]


def _starts(logs: Logs, n_states: int) -> np.ndarray:
    """How many sessions start in each state: the state of each session's first row (by timestamp,
    then row order)."""
    columns = [schema.SESSION_ID, S] + ([schema.TIMESTAMP] if logs.has(schema.TIMESTAMP) else [])
    frame = logs.frame(columns)
    if schema.TIMESTAMP in frame.columns:
        frame = frame.sort_values(schema.TIMESTAMP, kind="stable")
    first = frame.drop_duplicates(schema.SESSION_ID, keep="first")
    return np.bincount(first[S].to_numpy(np.int64), minlength=n_states).astype(np.float64)


def evaluate_return(
    logs: Any,
    policy: Any,
    gamma: float,
    level: float = 0.95,
    backend: str | Backend | None = None,
) -> pd.DataFrame:
    """The discounted return of ``policy`` estimated from session logs (fitted Q evaluation).

    Parameters
    ----------
    logs : DataFrame, path or ``hfrl.data.Logs``
        ``state``, ``action``, ``reward``, ``session_id``, ``next_state`` and optionally ``done``
        and ``timestamp`` (a session's first row is its earliest); without ``session_id`` and
        ``next_state`` every row is a one-step session. Split session logs by session.
    policy : TabularPolicy or (n_states, n_actions) array
    gamma : float in [0, 1]
    level : float
        Confidence level of the normal interval.
    backend : backend name, Backend or None

    Returns
    -------
    DataFrame
        One row indexed ``"fqe"``: ``estimate`` (discounted return per session from the logged
        start distribution), ``std_error``, ``ci_low``, ``ci_high``, ``interval`` (``"normal"``),
        ``unobserved_share`` (the policy's discounted occupancy on cells the logs never saw, where
        the model guesses), ``n_rows``, ``n_sessions``, ``gamma``, ``level``.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, collect_logs, logging_policy
    >>> env = RecommendationEnv()
    >>> logs = collect_logs(env, logging_policy(env, "uniform"), 60_000, seed=0)
    >>> best = env.optimal_policy(0.9)
    >>> row = evaluate_return(logs, best, gamma=0.9).loc["fqe"]
    >>> bool(row["ci_low"] <= env.policy_value(best, 0.9) <= row["ci_high"])
    True
    """
    level = check_level(level)
    table = _table(policy)
    model = ReturnModel.from_logs(logs, table.shape[0], table.shape[1], backend)
    result = model.evaluate(table, gamma)
    half = normal_quantile(level) * result.std_error
    row = {"estimate": result.estimate, "std_error": result.std_error,
           "ci_low": result.estimate - half, "ci_high": result.estimate + half,
           "interval": "normal", "unobserved_share": result.unobserved_share, "n_rows": model.n_rows,
           "n_sessions": model.n_sessions, "gamma": float(gamma), "level": level}
    return pd.DataFrame([row], index=pd.Index(["fqe"], name="estimator"))


def compare_return(
    candidate: Any,
    logs: Any,
    gamma: float,
    baseline: Any = "logging",
    level: float = 0.95,
    backend: str | Backend | None = None,
    *,
    max_unobserved: float = 0.05,
    model: ReturnModel | None = None,
) -> Comparison:
    """Does ``candidate`` beat ``baseline`` on the discounted return, paired on the same sessions?

    The difference of the two fitted-Q-evaluation returns and its normal interval at ``level``
    come from the per-row difference of their influences (see the module). Verdicts as in
    ``hfrl.ope.compare``: ``"unreliable"`` when either policy puts more than ``max_unobserved`` of
    its discounted occupancy on cells the logs never saw (the model guesses there), or there are
    fewer than two sessions; else ``"ship"`` when the interval lies above 0, ``"worse"`` when below,
    ``"no evidence"`` otherwise. Importance-weight fields (``ess``, ``max_weight``) do not apply and
    are NaN; ``unobserved_share`` is the larger of the two policies'.

    Parameters
    ----------
    candidate : TabularPolicy or (n_states, n_actions) array
    logs : DataFrame, path or ``hfrl.data.Logs`` (session logs, see ``evaluate_return``)
    gamma : float in [0, 1]
    baseline : "logging" (the logged behaviour's on-policy return), TabularPolicy or array
    level : float
    backend : backend name, Backend or None
    max_unobserved : float in [0, 1]
    model : ReturnModel, optional
        The logs' model when already built (``logs`` is then only used for its size).

    Returns
    -------
    Comparison
        ``estimator="fqe"``; ``details`` holds ``gamma``, ``n_sessions`` and the baseline kind.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, collect_logs, logging_policy
    >>> env = RecommendationEnv()
    >>> logs = collect_logs(env, logging_policy(env, "uniform"), 60_000, seed=0)
    >>> compare_return(env.optimal_policy(0.9), logs, gamma=0.9).verdict
    'ship'
    """
    level = check_level(level)
    if not 0.0 <= float(max_unobserved) <= 1.0:
        raise ValueError(f"max_unobserved must be in [0, 1], got {max_unobserved!r}")
    table = _table(candidate)
    if model is None:
        model = ReturnModel.from_logs(logs, table.shape[0], table.shape[1], backend)
    difference, cand, base = model.difference(table, baseline, gamma)
    z = normal_quantile(level)
    low, high = difference.estimate - z * difference.std_error, difference.estimate + z * difference.std_error
    verdict, reason = _verdict(difference, low, high, model.n_sessions, level, max_unobserved)
    return Comparison(
        verdict=verdict, difference=difference.estimate, std_error=difference.std_error, ci_low=low,
        ci_high=high, reason=reason, candidate_value=cand.estimate,
        candidate_ci=(cand.estimate - z * cand.std_error, cand.estimate + z * cand.std_error),
        baseline_value=base.estimate,
        baseline_ci=(base.estimate - z * base.std_error, base.estimate + z * base.std_error),
        ess=float("nan"), ess_share=float("nan"), max_weight=float("nan"), support_violation_share=0.0,
        n_rows=model.n_rows, estimator="fqe", level=level, propensity_source="not used",
        details={"baseline": "logging" if isinstance(baseline, str) else "policy", "gamma": float(gamma),
                 "n_sessions": model.n_sessions},
        unobserved_share=difference.unobserved_share, interval="normal",
    )


def _verdict(difference: ReturnEstimate, low: float, high: float, n_sessions: int, level: float,
             max_unobserved: float) -> tuple[str, str]:
    pct = f"{level:.0%}"
    unobserved = difference.unobserved_share
    if n_sessions < 2 or not np.isfinite(difference.std_error):
        return "unreliable", f"{n_sessions} session(s) cannot give a standard error: no evidence either way"
    if unobserved > max_unobserved:
        return "unreliable", (
            f"{100 * unobserved:.3g}% of a policy's discounted occupancy is on (state, action) pairs the "
            f"logs never saw (more than {max_unobserved:.0%}): the model guesses their value, so the "
            "difference is not evidence")
    if low > 0:
        return "ship", f"the {pct} interval of the return's gain, [{low:.4g}, {high:.4g}], lies above 0"
    if high < 0:
        return "worse", f"the {pct} interval of the return's change, [{low:.4g}, {high:.4g}], lies below 0"
    return "no evidence", (f"the {pct} interval of the return's difference, [{low:.4g}, {high:.4g}], "
                           "contains 0: no evidence either way at this level")
