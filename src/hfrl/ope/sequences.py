"""Anytime-valid confidence sequences: intervals that may be looked at after every batch of logs.

A fixed-horizon interval covers at 95% at the one sample size it was planned for; re-checked after
every batch, the chance that it ever excludes the truth grows without bound. A confidence
sequence covers the truth at every sample size at once, so a user (or the decision service) may
watch it as logs arrive and stop whenever it excludes a value.

``confidence_sequence`` uses the stitched empirical-Bernstein boundary of Howard, Ramdas, McAuliffe
& Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. (1.2) with
their Theorem 4): for terms ``X_i`` in ``[a, b]`` with predictable means ``m_{i-1}`` (the running
mean of the earlier terms, starting mid-range),

    |sum_{i<=t} X_i - t mu| <= 1.7 sqrt(v (log log(2v) + 0.72 log(5.2/alpha)))
                              + 3.4 c (log log(2v) + 0.72 log(5.2/alpha)),

``v = max(V_t / c^2, 1) c^2``, ``V_t = sum (X_i - m_{i-1})^2``, ``c = b - a``, with ``alpha / 2``
on each side. The terms are importance-weighted rewards ``w r`` (IPS, unbiased for the value) or,
for a difference, ``w_candidate r - w_baseline r`` (``w_baseline = 1`` for the logging policy),
bounded through the declared reward range and the largest possible weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data import as_logs, schema
from hfrl.ope.inference import check_level
from hfrl.ope.targets import policy_table
from hfrl.policies import TabularPolicy

__all__ = ["RunningSequence", "confidence_sequence", "stitched_boundary"]


def stitched_boundary(variance: np.ndarray, scale: float, alpha: float) -> np.ndarray:
    """Howard et al.'s stitched boundary ``u(v)`` for sums with variance process ``variance`` and
    sub-exponential scale ``scale``, at crossing probability ``alpha`` (one side)."""
    v = np.maximum(variance, scale**2)
    unit = v / scale**2
    log_term = np.log(np.log(2.0 * unit) + 1e-300).clip(min=0.0) + 0.72 * np.log(5.2 / alpha)
    return 1.7 * np.sqrt(v * log_term) + 3.4 * scale * log_term


def _time_order(frame: pd.DataFrame) -> np.ndarray:
    if schema.TIMESTAMP in frame.columns:
        return np.argsort(frame[schema.TIMESTAMP].to_numpy(), kind="stable")
    return np.arange(len(frame))


def _weights(policy: Any, frame: pd.DataFrame, name: str) -> tuple[np.ndarray, float]:
    """Per-row importance weights of ``policy`` and the largest weight any row could have."""
    table, row_level = policy_table(policy, name)
    state, action = frame[schema.STATE].to_numpy(np.int64), frame[schema.ACTION].to_numpy(np.int64)
    propensity = frame[schema.PROPENSITY].to_numpy(np.float64)
    probability = table[np.arange(len(frame)), action] if row_level else table[state, action]
    largest = float((table.max(axis=1) if row_level else table[state].max(axis=1)).max())
    return probability / propensity, largest / float(propensity.min())


def confidence_sequence(
    logs: Any,
    policy: TabularPolicy | np.ndarray,
    baseline: TabularPolicy | np.ndarray | str | None = None,
    level: float = 0.95,
    reward_range: tuple[float, float] | None = None,
    *,
    n_points: int = 100,
    step: int | None = None,
    backend: str | Backend | None = None,
) -> pd.DataFrame:
    """The policy's value (or its difference from ``baseline``) on every prefix of the logs in time
    order, with an anytime-valid confidence sequence.

    Parameters
    ----------
    logs : DataFrame, path or ``hfrl.data.Logs``
        ``state``, ``action``, ``reward``, ``propensity``; ordered by ``timestamp`` when present,
        else by row.
    policy : TabularPolicy or (n_rows, n_actions) array
    baseline : None, "logging", TabularPolicy or array
        With a baseline the sequence is of ``value(policy) - value(baseline)`` on the same rows.
    level : float
        Probability that the sequence covers the truth at every prefix simultaneously.
    reward_range : (low, high), optional
        The reward domain the bounds rest on (default the logs': declared, (0, 1) for binary
        rewards, else the logged range).
    n_points, step : int
        Report ``n_points`` evenly spaced prefixes (default 100), or every ``step`` rows.

    Returns
    -------
    DataFrame
        ``n_rows``, ``estimate`` (IPS on the prefix), ``ci_low``, ``ci_high``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> action = rng.integers(0, 2, 5000)
    >>> logs = pd.DataFrame({"state": 0, "action": action, "propensity": 0.5,
    ...                      "reward": (rng.random(5000) < np.where(action == 1, 0.6, 0.3)) * 1.0})
    >>> sequence = confidence_sequence(logs, TabularPolicy(np.array([[0.0, 1.0]])), baseline="logging")
    >>> row = sequence.iloc[-1]
    >>> int(row["n_rows"]), bool(row["ci_low"] > 0)
    (5000, True)
    """
    alpha = 1.0 - check_level(level)
    validated = as_logs(logs, backend, reward_range=reward_range)
    validated.require(schema.PROPENSITY)
    frame = validated.frame([schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY]
                            + ([schema.TIMESTAMP] if validated.has(schema.TIMESTAMP) else []))
    frame = frame.iloc[_time_order(frame)].reset_index(drop=True)
    low, high = validated.reward_range
    reward = frame[schema.REWARD].to_numpy(np.float64)
    weight, largest = _weights(policy, frame, "policy")
    terms, term_low, term_high = weight * reward, min(0.0, largest * low), max(0.0, largest * high)
    value_range = (low, high)
    if baseline is not None:
        if isinstance(baseline, str):
            if baseline != "logging":
                raise ValueError(
                    f"baseline must be None, 'logging', a TabularPolicy or an array; got {baseline!r}")
            base, base_low, base_high = reward, low, high
        else:
            base_weight, base_largest = _weights(baseline, frame, "baseline")
            base = base_weight * reward
            base_low, base_high = min(0.0, base_largest * low), max(0.0, base_largest * high)
        terms, term_low, term_high = terms - base, term_low - base_high, term_high - base_low
        value_range = (low - high, high - low)
    return _sequence(terms, (term_low, term_high), value_range, alpha, n_points, step)


def _sequence(terms: np.ndarray, term_range: tuple[float, float], value_range: tuple[float, float],
              alpha: float, n_points: int, step: int | None) -> pd.DataFrame:
    """Running mean and the stitched empirical-Bernstein bounds at the reported prefixes."""
    low, high = term_range
    n = terms.size
    count = np.arange(1, n + 1, dtype=np.float64)
    totals = np.cumsum(terms)
    predicted = np.r_[0.5 * (low + high), totals[:-1] / count[:-1]]  # mean of the earlier terms
    variance = np.cumsum((terms - predicted) ** 2)
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 1:
            raise ValueError(f"step must be a positive integer, got {step!r}")
        ends = np.unique(np.r_[np.arange(step, n + 1, step), n])
    else:
        if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 1:
            raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
        ends = np.unique(np.ceil(np.linspace(n / n_points, n, n_points)).astype(np.int64))
    index = ends - 1
    radius = stitched_boundary(variance[index], high - low, alpha / 2.0) / count[index]
    estimate = totals[index] / count[index]
    return pd.DataFrame({
        "n_rows": ends, "estimate": estimate,
        "ci_low": np.maximum(estimate - radius, value_range[0]),
        "ci_high": np.minimum(estimate + radius, value_range[1]),
    })


class RunningSequence:
    """The confidence sequence of ``confidence_sequence``, updated in place as terms arrive.

    A service that watches a stream (feedback joining its decisions) cannot recompute the sequence
    from every row at each look; this keeps the three running sums the boundary needs (the count,
    the total and the variance process ``V_t = sum (X_i - m_{i-1})^2``) and gives the same estimate
    and bounds as ``confidence_sequence`` on the same terms in the same order, with the same
    ``stitched_boundary``, after any number of ``update`` calls of any sizes.

    Parameters
    ----------
    term_range : (low, high)
        Bounds every term lies in (the boundary's scale is ``high - low``); terms outside are refused.
    value_range : (low, high), optional
        Bounds of the estimated quantity; the interval is clipped to it (default ``term_range``).
    level : float
        Probability that the sequence covers the truth at every count simultaneously.

    Attributes
    ----------
    n : int
        Terms seen.
    total : float
        Their sum.
    variance : float
        The variance process ``V_t`` (squared deviations from the running mean of earlier terms).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> terms = rng.random(1000)
    >>> running = RunningSequence((0.0, 1.0)).update(terms[:300]).update(terms[300:])
    >>> batch = _sequence(terms, (0.0, 1.0), (0.0, 1.0), 0.05, 1, None).iloc[-1]
    >>> bool(np.isclose(running.ci_low, batch["ci_low"])), running.n
    (True, 1000)
    """

    def __init__(self, term_range: tuple[float, float], value_range: tuple[float, float] | None = None,
                 level: float = 0.95) -> None:
        low, high = (float(x) for x in term_range)
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"term_range must be two finite numbers, low < high; got {term_range!r}")
        self.term_range = (low, high)
        self.value_range = (low, high) if value_range is None else tuple(float(x) for x in value_range)
        self.alpha = 1.0 - check_level(level)
        self.n = 0
        self.total = 0.0
        self.variance = 0.0

    def update(self, terms: np.ndarray) -> RunningSequence:
        """Add ``terms`` (in arrival order); returns ``self``."""
        terms = np.asarray(terms, dtype=np.float64).ravel()
        if terms.size == 0:
            return self
        low, high = self.term_range
        outside = ~((terms >= low) & (terms <= high))  # also catches NaN
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise ValueError(f"term {float(terms[first])!r} (at {first}) is outside the declared range "
                             f"[{low}, {high}]")
        totals = self.total + np.cumsum(terms)
        counts = self.n + np.arange(terms.size, dtype=np.float64)  # terms before each new one
        before = np.r_[self.total, totals[:-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            predicted = np.where(counts > 0, before / np.maximum(counts, 1.0), 0.5 * (low + high))
        self.variance += float(np.sum((terms - predicted) ** 2))
        self.total = float(totals[-1])
        self.n += terms.size
        return self

    @property
    def estimate(self) -> float:
        """The running mean (NaN before the first term)."""
        return self.total / self.n if self.n else float("nan")

    @property
    def radius(self) -> float:
        """Half the width of the unclipped interval (infinite before the first term)."""
        if self.n == 0:
            return float("inf")
        low, high = self.term_range
        bound = stitched_boundary(np.array([self.variance]), high - low, self.alpha / 2.0)[0]
        return float(bound) / self.n

    @property
    def ci_low(self) -> float:
        return max(self.estimate - self.radius, self.value_range[0]) if self.n else self.value_range[0]

    @property
    def ci_high(self) -> float:
        return min(self.estimate + self.radius, self.value_range[1]) if self.n else self.value_range[1]
