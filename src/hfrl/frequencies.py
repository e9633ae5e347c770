"""Historical frequencies (HF): what users actually did, as a probability table over actions.

``HistoricalFrequency`` turns logs into a dense ``(n_states, n_actions)`` table whose rows are
distributions, the target that hfrl blends learned policies toward. Two kinds:

- ``"share"``: HF(a|s) = the share of state s's events (the reward sum: purchases, clicks) that
  went to action a, i.e. what users chose; with ``count="rows"`` the share of rows, i.e. the
  empirical logging policy (used when propensities are unknown).
- ``"rate"``: the per-(s, a) event rate (events / impressions, e.g. CTR), made a distribution by
  normalisation or by a softmax with a temperature, i.e. what performed.

Every aggregate goes through ``Backend.group_sums`` (memory, DuckDB or Spark give the same numbers);
the smoothing and normalisation then run in numpy on the small tables, in one function per formula
shared by all backends (``share_table``, ``rate_table``, ``fit_beta_binomial_prior``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend, fingerprint_from_sums, get_backend
from hfrl.data import schema
from hfrl.data.io import LogSource, is_path, load_logs
from hfrl.data.validation import validate_logs
from hfrl.errors import LogValidationError, NotFittedError

__all__ = [
    "HistoricalFrequency",
    "decay_expression",
    "fit_beta_binomial_prior",
    "rate_table",
    "share_table",
]

KINDS = ("share", "rate")
COUNTS = ("reward", "rows")
SMOOTHINGS = ("additive", "beta_binomial")
PRIOR_FITS = ("moments", "max_likelihood")
NORMALIZATIONS = ("sum", "softmax")


# --------------------------------------------------------------------------------------------
# Driver-side math: one function per formula, used whatever backend produced the sums.
# --------------------------------------------------------------------------------------------


def _shrink_rows(counts: np.ndarray, parent: np.ndarray, m: float) -> np.ndarray:
    """Rows ``(counts + m * parent) / (n + m)`` with ``n`` the row total; empty rows get ``parent``."""
    denominator = counts.sum(axis=1, keepdims=True) + m
    empty = denominator[:, 0] <= 0
    out = counts + m * parent if m else counts.copy()
    out /= np.where(empty[:, None], 1.0, denominator)
    if empty.any():
        out[empty] = parent[empty]
    return out


def _shrink_cells(events: np.ndarray, exposure: np.ndarray, parent: np.ndarray, m: float) -> np.ndarray:
    """Cells ``(events + m * parent) / (exposure + m)``; cells never shown get ``parent``."""
    denominator = exposure + m
    out = np.broadcast_to(parent, events.shape).copy()
    filled = denominator > 0
    out[filled] = (events[filled] + m * out[filled]) / denominator[filled]
    return out


def _group_totals(values: np.ndarray, state_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` per group (states with group -1 are left out)."""
    totals = np.zeros((n_groups, values.shape[1]))
    known = state_group >= 0
    np.add.at(totals, state_group[known], values[known])
    return totals


def _parent_rows(group_rows: np.ndarray | None, state_group: np.ndarray | None, root: np.ndarray,
                 n_states: int) -> np.ndarray:
    parent = np.broadcast_to(root, (n_states, root.size)).copy()
    if group_rows is not None and state_group is not None:
        known = state_group >= 0
        parent[known] = group_rows[state_group[known]]
    return parent


def share_table(
    counts: np.ndarray,
    prior_strength: float,
    *,
    state_group: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each state's events per action, shrunk toward the parent level.

    Each row is ``(counts[s] + m * parent) / (n_s + m)`` with ``n_s = counts[s].sum()`` and
    ``m = prior_strength``; the parent of a state is its group's row (itself shrunk toward the
    global row) when ``state_group`` is given, else the global row ``counts.sum(0) / counts.sum()``.
    A state with no events gets its parent row; a state not in ``seen`` gets the global row.

    Returns
    -------
    (probabilities, global_row)

    Examples
    --------
    >>> probabilities, global_row = share_table(np.array([[3.0, 1.0], [0.0, 0.0]]), 0.0)
    >>> probabilities.tolist(), global_row.tolist()
    ([[0.75, 0.25], [0.75, 0.25]], [0.75, 0.25])
    """
    n_states, n_actions = counts.shape
    action_totals = counts.sum(axis=0)
    total = action_totals.sum()
    if total > 0:
        global_row = action_totals / total
    else:
        warnings.warn(
            "no events in the logs (every reward is 0): the global row is uniform; "
            "use count='rows' for action frequencies",
            RuntimeWarning,
            stacklevel=3,
        )
        global_row = np.full(n_actions, 1.0 / n_actions)
    group_rows = None
    if state_group is not None:
        n_groups = int(state_group.max()) + 1 if (state_group >= 0).any() else 0
        group_counts = _group_totals(counts, state_group, n_groups)
        group_rows = _shrink_rows(group_counts, np.broadcast_to(global_row, group_counts.shape).copy(),
                                  prior_strength)
    parent = _parent_rows(group_rows, state_group, global_row, n_states)
    probabilities = _shrink_rows(counts, parent, prior_strength)
    if seen is not None:
        probabilities[~seen] = global_row
    return probabilities, global_row


def fit_beta_binomial_prior(
    successes: Any, trials: Any, method: str = "moments"
) -> tuple[float, float]:
    """Empirical-Bayes Beta(a, b) prior for rates ``successes / trials`` across cells.

    ``method="moments"`` matches the pooled mean and the between-cell dispersion of the
    observed rates, allowing for unequal trials (the intra-class correlation
    ``rho = 1 / (a + b + 1)`` is solved from the trials-weighted sum of squares);
    ``"max_likelihood"`` maximises the Beta-Binomial likelihood with scipy, starting there.
    Cells with no trials are ignored. When the rates show no extra-binomial spread the prior is
    very strong (``a + b`` up to 1e8): every cell is pulled to the pooled mean.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> trials = np.full(4000, 200)
    >>> successes = rng.binomial(trials, rng.beta(2.0, 8.0, size=4000))
    >>> a, b = fit_beta_binomial_prior(successes, trials)
    >>> round(a / (a + b), 2), 1.5 < a < 2.5, 6.0 < b < 10.0
    (0.2, True, True)
    """
    if method not in PRIOR_FITS:
        raise ValueError(f"prior_fit must be one of {PRIOR_FITS}, got {method!r}")
    x = np.asarray(successes, dtype=np.float64).ravel()
    n = np.asarray(trials, dtype=np.float64).ravel()
    keep = n > 0
    x, n = x[keep], n[keep]
    eps = 1e-9
    if x.size == 0 or x.sum() <= 0:
        return eps, 1.0
    if x.sum() >= n.sum():
        return 1.0, eps
    total = n.sum()
    mean = x.sum() / total
    k = x.size
    spread = float(np.sum(n * (x / n - mean) ** 2))
    denominator = total - k - float(np.sum(n**2)) / total + 1.0
    rho = 1e-8
    if k > 1 and denominator > 0:
        rho = (spread / (mean * (1.0 - mean)) - (k - 1)) / denominator
    rho = float(np.clip(rho, 1e-8, 1.0 - 1e-6))
    strength = 1.0 / rho - 1.0
    a, b = mean * strength, (1.0 - mean) * strength
    if method == "max_likelihood":
        from scipy.optimize import minimize
        from scipy.special import betaln

        def negative_log_likelihood(log_ab: np.ndarray) -> float:
            alpha, beta = np.exp(log_ab)
            return -float(np.sum(betaln(x + alpha, n - x + beta) - betaln(alpha, beta)))

        result = minimize(negative_log_likelihood, np.log([a, b]), method="L-BFGS-B",
                          bounds=[(-20.0, 18.5), (-20.0, 18.5)])
        a, b = (float(v) for v in np.exp(result.x))
    return float(a), float(b)


def _to_distribution(scores: np.ndarray, normalization: str, temperature: float,
                     fallback: np.ndarray) -> np.ndarray:
    """Rows of non-negative scores -> distributions (sum or softmax); all-zero rows get ``fallback``."""
    if normalization == "softmax":
        z = scores / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    totals = scores.sum(axis=1, keepdims=True)
    out = np.broadcast_to(fallback, scores.shape).copy()
    positive = totals[:, 0] > 0
    out[positive] = scores[positive] / totals[positive]
    return out


def rate_table(
    events: np.ndarray,
    exposure: np.ndarray,
    prior_strength: float,
    *,
    smoothing: str = "additive",
    beta_prior: tuple[float, float] | None = None,
    normalization: str = "sum",
    temperature: float = 1.0,
    state_group: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-(s, a) event rates, smoothed, then turned into distributions.

    Additive smoothing: ``rate = (events + m * parent_rate) / (exposure + m)`` with the parent
    rate of action a from the state's group (itself shrunk toward the global rate) or the global
    rate ``events[:, a].sum() / exposure[:, a].sum()``; cells never shown get the parent rate.
    Beta-Binomial: ``rate = (events + a0) / (exposure + a0 + b0)`` with ``beta_prior = (a0, b0)``.
    Rows become distributions by ``normalization="sum"`` (rate / row total) or ``"softmax"``
    (``exp(rate / temperature)`` normalised). States not in ``seen`` and rows with all rates 0
    get the global row.

    Returns
    -------
    (probabilities, rates, global_row)

    Examples
    --------
    >>> events = np.array([[1.0, 3.0], [0.0, 0.0]])
    >>> exposure = np.array([[10.0, 10.0], [0.0, 0.0]])
    >>> probabilities, rates, global_row = rate_table(events, exposure, 0.0)
    >>> probabilities.round(6).tolist(), rates[0].tolist()
    ([[0.25, 0.75], [0.25, 0.75]], [0.1, 0.3])
    """
    n_states, n_actions = events.shape
    action_events, action_exposure = events.sum(axis=0), exposure.sum(axis=0)
    if smoothing == "beta_binomial":
        if beta_prior is None:
            raise ValueError("beta_prior is required with smoothing='beta_binomial'")
        a0, b0 = beta_prior
        rates = (events + a0) / (exposure + a0 + b0)
        global_rates = (action_events + a0) / (action_exposure + a0 + b0)
    else:
        overall = action_events.sum() / action_exposure.sum() if action_exposure.sum() > 0 else 0.0
        global_rates = np.full(n_actions, overall)
        shown = action_exposure > 0
        global_rates[shown] = action_events[shown] / action_exposure[shown]
        group_rates = None
        if state_group is not None:
            n_groups = int(state_group.max()) + 1 if (state_group >= 0).any() else 0
            group_rates = _shrink_cells(
                _group_totals(events, state_group, n_groups),
                _group_totals(exposure, state_group, n_groups),
                global_rates[None, :],
                prior_strength,
            )
        parent = _parent_rows(group_rates, state_group, global_rates, n_states)
        rates = _shrink_cells(events, exposure, parent, prior_strength)
    uniform = np.full(n_actions, 1.0 / n_actions)
    global_row = _to_distribution(global_rates[None, :], normalization, temperature, uniform)[0]
    probabilities = _to_distribution(rates, normalization, temperature, global_row)
    if seen is not None:
        probabilities[~seen] = global_row
    return probabilities, rates, global_row


def decay_expression(time_expression: str, half_life_seconds: float, reference_seconds: float) -> str:
    """Backend expression for ``2 ** (-(reference - t) / half_life)``: 1 at the reference, 1/2 one
    half-life earlier.

    Examples
    --------
    >>> decay_expression("epoch(timestamp)", 10.0, 100.0)
    'exp(0.06931471805599453 * (epoch(timestamp) - 100.0))'
    """
    rate = math.log(2.0) / half_life_seconds
    return f"exp({rate!r} * ({time_expression} - {float(reference_seconds)!r}))"


# --------------------------------------------------------------------------------------------
# Parameter and log checks (at the edge).
# --------------------------------------------------------------------------------------------


def _half_life_seconds(half_life: Any) -> float | None:
    if half_life is None:
        return None
    try:
        if isinstance(half_life, str | pd.Timedelta):
            seconds = pd.Timedelta(half_life).total_seconds()
        elif hasattr(half_life, "total_seconds"):
            seconds = float(half_life.total_seconds())
        else:
            seconds = float(half_life)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"half_life must be a pandas Timedelta, a string like '7D' or seconds, got {half_life!r}"
        ) from exc
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"half_life must be positive, got {half_life!r}")
    return seconds


def _reference_seconds(reference_time: Any) -> float | None:
    if reference_time is None:
        return None
    if isinstance(reference_time, int | float | np.integer | np.floating) and not isinstance(
        reference_time, bool
    ):
        value = float(reference_time)
    else:
        try:
            stamp = pd.Timestamp(reference_time)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"reference_time must be a date-time or seconds since 1970, got {reference_time!r}"
            ) from exc
        if stamp is pd.NaT:
            raise ValueError(f"reference_time must be a date-time, got {reference_time!r}")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        value = stamp.value / 1e9
    if not math.isfinite(value):
        raise ValueError(f"reference_time must be finite, got {reference_time!r}")
    return value


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


class _Check:
    """One row-level rule: rows where ``bad`` (an expression) is non-zero offend."""

    def __init__(self, column: str, expected: str, bad: str) -> None:
        self.column, self.expected, self.bad = column, expected, bad


def _id_checks(column: str, bound: int | None, label: str) -> list[_Check]:
    x = f"cast_double({column})"
    checks = [
        _Check(column, "an integer id", f"1 - finite({x}) * ({x} == floor({x}))"),
        _Check(column, "a non-negative integer id", f"finite({x}) * ({x} < 0)"),
    ]
    if bound is not None:
        checks.append(_Check(column, f"a {label} in [0, {bound})", f"finite({x}) * ({x} >= {bound})"))
    return checks


def _weight_checks(column: str) -> list[_Check]:
    w = f"cast_double({column})"
    return [
        _Check(column, "a finite number", f"1 - finite({w})"),
        _Check(column, "a non-negative weight", f"finite({w}) * ({w} < 0)"),
    ]


# --------------------------------------------------------------------------------------------
# The estimator.
# --------------------------------------------------------------------------------------------


class HistoricalFrequency:
    """The historical frequency HF(a|s) of logged behaviour, as a table of distributions.

    Parameters
    ----------
    kind : {"share", "rate"}
        ``"share"``: the share of state s's events that went to action a (what users chose).
        ``"rate"``: the per-(s, a) event rate (events / impressions), made a distribution by
        ``normalization`` (what performed).
    prior_strength : float, default 1.0
        ``m`` of the additive shrinkage toward the parent level (state -> ``group_column`` ->
        global): a row becomes ``(counts + m * parent) / (n_s + m)`` (for rates per cell,
        ``n`` = the cell's impressions). ``0`` means no smoothing; a state with no events then
        gets its parent row (the global row without ``group_column``). Ignored by
        ``smoothing="beta_binomial"``, whose strength is fitted.
    count : {"reward", "rows"}, default "reward"
        For ``kind="share"``: events are the reward sum, or one per row (the empirical action
        frequency, an estimate of the logging policy when propensities are unknown).
    smoothing : {"additive", "beta_binomial"}, default "additive"
        ``"beta_binomial"`` (``kind="rate"`` only, rewards in [0, 1]): empirical-Bayes posterior
        mean rates under a Beta prior fitted from the data (``prior_fit``).
    prior_fit : {"moments", "max_likelihood"}, default "moments"
        How the Beta prior is fitted (``fit_beta_binomial_prior``).
    normalization : {"sum", "softmax"}, default "sum"
        For ``kind="rate"``: rate / row total, or ``softmax(rate / temperature)``.
    temperature : float, default 1.0
        Softmax temperature (> 0).
    group_column : str, optional
        An integer column that maps each state to a group (must be a function of state), the
        middle level of the smoothing hierarchy.
    weight_column : str, optional
        A non-negative per-row weight (e.g. ``"weight"``) multiplying each row's contribution.
    half_life : pandas Timedelta, str (``"7D"``) or float seconds, optional
        Exponential time decay on ``timestamp``: a row ``half_life`` older than the reference
        time counts half.
    reference_time : date-time or float seconds since 1970, optional
        The time at which the decay weight is 1; default the latest timestamp in the logs.
    backend : {"memory", "duckdb", "spark"} or Backend, optional
        Where the sums run; default memory for a DataFrame and DuckDB for a path.

    Attributes
    ----------
    probabilities_ : ndarray of shape (n_states, n_actions)
        Rows are distributions; states never seen in the logs get ``global_``.
    counts_ : ndarray (n_states, n_actions)
        Events per (s, a): reward sums (or rows), weighted and decayed when asked.
    impressions_ : ndarray (n_states, n_actions) of int64
        Rows per (s, a).
    exposures_ : ndarray (n_states, n_actions)
        Weighted, decayed rows per (s, a) (the denominator of rates; equals ``impressions_``
        without weights or decay).
    rates_ : ndarray (n_states, n_actions)
        Smoothed rates (``kind="rate"`` only).
    state_counts_ : ndarray (n_states,)
        The amount of history per state that smoothing used: events (share) or exposure (rate).
    global_ : ndarray (n_actions,)
        The global row (all states pooled).
    beta_prior_ : tuple (a, b)
        The fitted Beta prior (``smoothing="beta_binomial"`` only).
    n_states_, n_actions_ : int
    fingerprint_ : tuple
        ``hfrl.backends.fingerprint`` of the training logs, to detect evaluation on them.
    reference_time_ : float or None
        The decay reference in seconds since 1970.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 1], "action": [0, 1, 1, 0],
    ...                      "reward": [1.0, 1.0, 1.0, 1.0]})
    >>> hf = HistoricalFrequency(prior_strength=0).fit(logs, n_states=3)
    >>> hf.probabilities_.round(3).tolist()
    [[0.333, 0.667], [1.0, 0.0], [0.5, 0.5]]
    >>> hf.counts_.tolist()
    [[1.0, 2.0], [1.0, 0.0], [0.0, 0.0]]
    """

    def __init__(
        self,
        kind: str = "share",
        *,
        prior_strength: float = 1.0,
        count: str = "reward",
        smoothing: str = "additive",
        prior_fit: str = "moments",
        normalization: str = "sum",
        temperature: float = 1.0,
        group_column: str | None = None,
        weight_column: str | None = None,
        half_life: Any = None,
        reference_time: Any = None,
        backend: str | Backend | None = None,
    ) -> None:
        self.kind = kind
        self.prior_strength = prior_strength
        self.count = count
        self.smoothing = smoothing
        self.prior_fit = prior_fit
        self.normalization = normalization
        self.temperature = temperature
        self.group_column = group_column
        self.weight_column = weight_column
        self.half_life = half_life
        self.reference_time = reference_time
        self.backend = backend

    def __repr__(self) -> str:
        return f"HistoricalFrequency(kind={self.kind!r}, prior_strength={self.prior_strength!r})"

    # ---------------------------------------------------------------- parameters
    def _check_parameters(self) -> None:
        for name, value, allowed in (
            ("kind", self.kind, KINDS),
            ("count", self.count, COUNTS),
            ("smoothing", self.smoothing, SMOOTHINGS),
            ("prior_fit", self.prior_fit, PRIOR_FITS),
            ("normalization", self.normalization, NORMALIZATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        m = self.prior_strength
        if isinstance(m, bool) or not isinstance(m, int | float | np.integer | np.floating) or not (
            math.isfinite(m) and m >= 0
        ):
            raise ValueError(f"prior_strength must be a finite number >= 0, got {m!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float | np.integer | np.floating) or not (
            math.isfinite(t) and t > 0
        ):
            raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
        if self.kind == "rate" and self.count != "reward":
            raise ValueError("count='rows' applies to kind='share' (a rate of rows per row is always 1)")
        if self.smoothing == "beta_binomial" and self.kind != "rate":
            raise ValueError("smoothing='beta_binomial' applies to kind='rate'")
        reserved = (schema.STATE, schema.ACTION, schema.REWARD)
        for name, column in (("group_column", self.group_column), ("weight_column", self.weight_column)):
            if column is not None and (not isinstance(column, str) or column in reserved):
                raise ValueError(f"{name} must be the name of another column, got {column!r}")
        _half_life_seconds(self.half_life)
        _reference_seconds(self.reference_time)

    def _columns(self) -> list[str]:
        columns = [schema.STATE, schema.ACTION]
        if not (self.kind == "share" and self.count == "rows"):
            columns.append(schema.REWARD)
        for extra in (self.group_column, self.weight_column):
            if extra is not None:
                columns.append(extra)
        if self.half_life is not None:
            columns.append(schema.TIMESTAMP)
        return columns

    def _reward_checks(self) -> list[_Check]:
        x = f"cast_double({schema.REWARD})"
        checks = [_Check(schema.REWARD, "a finite number", f"1 - finite({x})")]
        if self.smoothing == "beta_binomial":
            checks.append(_Check(schema.REWARD, "a reward in [0, 1] (Beta-Binomial rates)",
                                 f"finite({x}) * (({x} < 0) + ({x} > 1))"))
        elif self.normalization == "sum":
            checks.append(_Check(schema.REWARD, "a non-negative reward (events are counted)",
                                 f"finite({x}) * ({x} < 0)"))
        return checks

    def _row_checks(self, columns: Sequence[str], n_states: int | None, n_actions: int | None,
                    time_expression: str) -> list[_Check]:
        checks = _id_checks(schema.STATE, n_states, "known state id")
        checks += _id_checks(schema.ACTION, n_actions, "known action id")
        if schema.REWARD in columns:
            checks += self._reward_checks()
        if self.group_column is not None:
            checks += _id_checks(self.group_column, None, "group id")
        if self.weight_column is not None:
            checks += _weight_checks(self.weight_column)
        if self.half_life is not None:
            checks.append(_Check(schema.TIMESTAMP, "a parseable date-time", f"1 - finite({time_expression})"))
        return checks

    # ---------------------------------------------------------------- validation
    def _validate_frame(self, logs: pd.DataFrame, columns: list[str], n_states: int | None,
                        n_actions: int | None, source: str | None) -> pd.DataFrame:
        missing = [c for c in columns if c not in logs.columns]
        if missing:
            raise LogValidationError(
                f"missing required column(s) {missing}; the logs have {list(logs.columns)}",
                column=missing[0], source=source,
            )
        frame = validate_logs(logs[columns], n_states=n_states, n_actions=n_actions, required=columns,
                              source=source)
        extra_checks: list[_Check] = []
        if schema.REWARD in columns:
            extra_checks += self._reward_checks()[1:]
        if self.group_column is not None:
            extra_checks += _id_checks(self.group_column, None, "group id")
        if self.weight_column is not None:
            extra_checks += _weight_checks(self.weight_column)
        if extra_checks:
            memory = get_backend("memory")
            totals = memory.group_sums(frame, [], {f"c{i}": c.bad for i, c in enumerate(extra_checks)})
            self._raise_first(memory, frame, extra_checks, totals.iloc[0], len(frame), source)
        if self.group_column is not None:
            frame[self.group_column] = frame[self.group_column].to_numpy(dtype=np.float64).astype(np.int64)
        if self.weight_column is not None:
            frame[self.weight_column] = pd.to_numeric(frame[self.weight_column]).astype(np.float64)
        return frame

    @staticmethod
    def _raise_first(backend: Backend, logs: LogSource, checks: list[_Check], totals: pd.Series,
                     n_rows: int, source: str | None) -> None:
        for i, check in enumerate(checks):
            count = int(round(float(totals[f"c{i}"])))
            if count <= 0:
                continue
            first = backend.first_row(logs, check.bad)
            where = f"row {first}" if first is not None else "a row"
            raise LogValidationError(
                f"column {check.column!r}: {where} is not {check.expected}; "
                f"{count} of {n_rows} rows offend",
                column=check.column, first_row=first, count=count, source=source,
            )

    def _validate_source(self, backend: Backend, logs: LogSource, columns: list[str],
                         n_states: int | None, n_actions: int | None) -> tuple[pd.DataFrame | None, int, str]:
        """Check a file source in SQL: statistics first, a counting scan only if they don't prove it."""
        source = str(logs) if is_path(logs) else None
        present = backend.columns(logs)
        missing = [c for c in columns if c not in present]
        if missing:
            raise LogValidationError(
                f"missing required column(s) {missing}; the logs have {present}",
                column=missing[0], source=source,
            )
        try:
            ranges = backend.column_ranges(logs, columns)
        except NotImplementedError:
            ranges = None
        n_rows = backend.count(logs)
        if n_rows == 0:
            raise LogValidationError("the logs are empty (0 rows)", count=0, source=source)
        time_expression = f"epoch({schema.TIMESTAMP})"
        if ranges is not None and self.half_life is not None and ranges.loc[schema.TIMESTAMP, "kind"] in (
            "integer", "float"
        ):
            time_expression = f"cast_double({schema.TIMESTAMP})"
        checks = self._row_checks(columns, n_states, n_actions, time_expression)
        if ranges is None or not self._ranges_prove_valid(ranges, n_states, n_actions):
            self._scan_rows(backend, logs, checks, n_rows, source)
        return ranges, n_rows, time_expression

    def _scan_rows(self, backend: Backend, logs: LogSource, checks: list[_Check], n_rows: int,
                  source: str | None) -> None:
        """Count offending rows per rule in one pass; name the first row of the first failing rule."""
        totals = backend.group_sums(logs, [], {f"c{i}": c.bad for i, c in enumerate(checks)})
        self._raise_first(backend, logs, checks, totals.iloc[0], n_rows, source)

    def _ranges_prove_valid(self, ranges: pd.DataFrame, n_states: int | None,
                            n_actions: int | None) -> bool:
        def ok_ids(column: str, bound: int | None) -> bool:
            row = ranges.loc[column]
            return bool(row["kind"] == "integer" and row["nulls"] == 0 and row["min"] >= 0
                        and (bound is None or row["max"] < bound))

        def ok_numbers(column: str, low: float | None, high: float | None) -> bool:
            row = ranges.loc[column]
            if row["kind"] not in ("integer", "float", "bool") or row["nulls"] != 0:
                return False
            if not (math.isfinite(row["min"]) and math.isfinite(row["max"])):
                return False
            return (low is None or row["min"] >= low) and (high is None or row["max"] <= high)

        valid = ok_ids(schema.STATE, n_states) and ok_ids(schema.ACTION, n_actions)
        if schema.REWARD in ranges.index:
            low = 0.0 if (self.smoothing == "beta_binomial" or self.normalization == "sum") else None
            high = 1.0 if self.smoothing == "beta_binomial" else None
            valid = valid and ok_numbers(schema.REWARD, low, high)
        if self.group_column is not None:
            valid = valid and ok_ids(self.group_column, None)
        if self.weight_column is not None:
            valid = valid and ok_numbers(self.weight_column, 0.0, None)
        if self.half_life is not None:
            row = ranges.loc[schema.TIMESTAMP]
            valid = valid and row["nulls"] == 0 and row["kind"] in ("datetime", "integer", "float")
        return bool(valid)

    # ---------------------------------------------------------------- fit
    def fit(self, logs: LogSource, n_states: int | None = None, n_actions: int | None = None
            ) -> HistoricalFrequency:
        """Aggregate ``logs`` and build the table; returns ``self``.

        Parameters
        ----------
        logs : DataFrame, or str/Path of a CSV or Parquet file or glob (read through DuckDB)
            Columns ``state``, ``action``, ``reward`` (not needed with ``count="rows"``), plus
            ``timestamp`` with ``half_life`` and the group/weight columns when given.
        n_states, n_actions : int, optional
            Table shape; default the largest id seen plus one. Ids outside are refused.

        Returns
        -------
        HistoricalFrequency
            ``self``, with the learned attributes set.

        Raises
        ------
        ValueError
            A parameter is invalid (the message names it).
        LogValidationError
            Missing columns, ids that are not non-negative integers in range, non-finite or
            negative rewards (or outside [0, 1] for Beta-Binomial), negative weights,
            unparseable timestamps; the message names the column, first row and count.
        """
        self._check_parameters()
        n_states = _positive_int(n_states, "n_states")
        n_actions = _positive_int(n_actions, "n_actions")
        half_life = _half_life_seconds(self.half_life)
        columns = self._columns()
        backend = get_backend(self.backend, logs)
        source = str(logs) if is_path(logs) else None

        if is_path(logs) and backend.name == "memory":  # read the file once, then work in memory
            logs = load_logs(logs, validate=False)
        original = logs
        if isinstance(logs, pd.DataFrame):
            logs = self._validate_frame(logs, columns, n_states, n_actions, source)
            ranges = get_backend("memory").column_ranges(logs, columns)
            n_rows, time_expression = len(logs), f"epoch({schema.TIMESTAMP})"
        elif is_path(logs):
            ranges, n_rows, time_expression = self._validate_source(backend, logs, columns, n_states,
                                                                   n_actions)
        else:
            raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")
        if ranges is None:  # a backend without column_ranges: ids were scan-validated
            key_ranges = backend.key_ranges(logs, [schema.STATE, schema.ACTION])
            max_state, max_action = key_ranges[schema.STATE][1], key_ranges[schema.ACTION][1]
        else:
            max_state = int(ranges.loc[schema.STATE, "max"])
            max_action = int(ranges.loc[schema.ACTION, "max"])
        n_states = n_states or max_state + 1
        n_actions = n_actions or max_action + 1

        reference = _reference_seconds(self.reference_time)
        row_weight = "1"
        if self.weight_column is not None:
            row_weight = self.weight_column
        if half_life is not None:
            if reference is None:
                latest = np.nan if ranges is None else float(ranges.loc[schema.TIMESTAMP, "max"])
                if not math.isfinite(latest):
                    raise LogValidationError(
                        "cannot find the latest timestamp of the logs; pass reference_time",
                        column=schema.TIMESTAMP, source=source,
                    )
                reference = latest
            decay = decay_expression(time_expression, half_life, reference)
            row_weight = decay if row_weight == "1" else f"{row_weight} * {decay}"
        weighted = row_weight != "1"

        sums = {"rows": "1"}
        if schema.REWARD in columns:
            sums["events"] = schema.REWARD if not weighted else f"{schema.REWARD} * {row_weight}"
        if weighted:
            sums["exposure"] = row_weight
        cells = backend.group_sums(logs, [schema.STATE, schema.ACTION], sums)
        sums_values = cells[list(sums)].to_numpy()
        if not np.isfinite(sums_values).all():  # NaN/inf the statistics could not see: name the row
            self._scan_rows(backend, logs, self._row_checks(columns, n_states, n_actions, time_expression),
                           n_rows, source)
            bad = [name for name in sums if not np.isfinite(cells[name].to_numpy()).all()]
            raise LogValidationError(
                f"every row is valid but the per-(state, action) sums {bad} are not finite: the "
                "weights or the time decay overflow (check weight_column / half_life)",
                column=self.weight_column or (schema.TIMESTAMP if half_life is not None else None),
                source=source,
            )

        shape = (n_states, n_actions)
        states = cells[schema.STATE].to_numpy(dtype=np.int64)
        actions = cells[schema.ACTION].to_numpy(dtype=np.int64)
        impressions = np.zeros(shape, dtype=np.int64)
        impressions[states, actions] = np.rint(cells["rows"].to_numpy()).astype(np.int64)
        exposure = impressions.astype(np.float64)
        if weighted:
            exposure = np.zeros(shape)
            exposure[states, actions] = cells["exposure"].to_numpy()
        if "events" in sums:
            counts = np.zeros(shape)
            counts[states, actions] = cells["events"].to_numpy()
        else:
            counts = exposure.copy()
        seen = impressions.sum(axis=1) > 0

        state_group = None
        if self.group_column is not None:
            state_group = self._state_groups(backend, logs, n_states, source)

        m = float(self.prior_strength)
        self.beta_prior_ = None
        self.rates_ = None
        if self.kind == "share":
            probabilities, global_row = share_table(counts, m, state_group=state_group, seen=seen)
            state_counts = counts.sum(axis=1)
        else:
            if self.smoothing == "beta_binomial":
                shown = exposure > 0
                self.beta_prior_ = fit_beta_binomial_prior(counts[shown], exposure[shown], self.prior_fit)
            probabilities, rates, global_row = rate_table(
                counts, exposure, m, smoothing=self.smoothing, beta_prior=self.beta_prior_,
                normalization=self.normalization, temperature=float(self.temperature),
                state_group=state_group, seen=seen,
            )
            self.rates_ = rates
            state_counts = exposure.sum(axis=1)

        self.probabilities_ = probabilities
        self.counts_ = counts
        self.impressions_ = impressions
        self.exposures_ = exposure
        self.state_counts_ = state_counts
        self.global_ = global_row
        self.state_groups_ = state_group
        self.n_states_, self.n_actions_ = n_states, n_actions
        self.reference_time_ = reference
        self.fingerprint_ = self._fingerprint(cells, states, actions, original, backend, weighted, columns)
        return self

    def _state_groups(self, backend: Backend, logs: LogSource, n_states: int,
                      source: str | None) -> np.ndarray:
        """Group id of each state (-1 for unseen states); refuse a group column that varies within a state."""
        pairs = backend.group_sums(logs, [schema.STATE, self.group_column], {"rows": "1"})
        states = pairs[schema.STATE].to_numpy(dtype=np.int64)
        groups = pairs[self.group_column].to_numpy(dtype=np.int64)
        repeated = np.flatnonzero(np.diff(states) == 0) if states.size > 1 else np.empty(0, np.int64)
        if repeated.size:
            state = int(states[repeated[0]])
            listed = groups[states == state].tolist()
            raise LogValidationError(
                f"column {self.group_column!r} must be a function of state: state {state} appears in "
                f"groups {listed}; {np.unique(states[repeated]).size} states do",
                column=self.group_column, count=int(np.unique(states[repeated]).size), source=source,
            )
        state_group = np.full(n_states, -1, dtype=np.int64)
        state_group[states] = groups
        return state_group

    @staticmethod
    def _fingerprint(cells: pd.DataFrame, states: np.ndarray, actions: np.ndarray, logs: LogSource,
                     backend: Backend, weighted: bool, columns: list[str]) -> tuple:
        # The (s, a) sums already hold every total the fingerprint needs unless rewards were
        # weighted or not read; then one more pass computes it.
        if weighted or schema.REWARD not in columns:
            from hfrl.backends import fingerprint

            return fingerprint(logs, "memory" if isinstance(logs, pd.DataFrame) else backend)
        rows = cells["rows"].to_numpy()
        return fingerprint_from_sums(
            rows.sum(), float(np.dot(states, rows)), float(np.dot(actions, rows)),
            float(cells["events"].to_numpy().sum()),
        )

    # ---------------------------------------------------------------- use
    def _check_fitted(self) -> None:
        if not hasattr(self, "probabilities_"):
            raise NotFittedError("this HistoricalFrequency is not fitted yet; call fit(logs) first")

    def to_policy(self, metadata: dict[str, Any] | None = None):  # noqa: ANN201 - TabularPolicy
        """The table as a ``TabularPolicy`` (metadata records how HF was fitted).

        Examples
        --------
        >>> import pandas as pd
        >>> logs = pd.DataFrame({"state": [0, 1], "action": [1, 0], "reward": [1.0, 1.0]})
        >>> policy = HistoricalFrequency(prior_strength=0).fit(logs).to_policy()
        >>> policy.table_.tolist(), policy.metadata["kind"]
        ([[0.0, 1.0], [1.0, 0.0]], 'share')
        """
        from hfrl.policies import TabularPolicy

        self._check_fitted()
        info = {
            "source": "HistoricalFrequency",
            "kind": self.kind,
            "prior_strength": float(self.prior_strength),
            "count": self.count,
            "smoothing": self.smoothing,
            "fingerprint": list(self.fingerprint_),
        }
        info.update(metadata or {})
        return TabularPolicy(self.probabilities_, metadata=info)
