"""Choosing alpha: the value of ``pi' = (1 - alpha) pi + alpha HF`` along alpha, with its confidence band.

For the linear blend every estimator term of ``hfrl.ope`` is linear in the target policy, so along
alpha IPS, DM and DR are affine and SNIPS is a ratio of affine functions; their variances are
quadratics in alpha whose coefficients are the Gram matrix (cross terms included) of the two end
policies' terms. ``alpha_curve`` therefore costs about two policy evaluations however many alphas
it reports. Clipped IPS, Switch-DR and the geometric blend are not linear in alpha; their curves
evaluate each alpha on the same prepared sufficient statistics.

Splits are explicit: fit HF and the learner on the training split (``split_logs``), choose alpha
on validation, report the value on test. ``tune_alpha`` refuses (or, with ``allow_leak=True``,
warns) when HF was fit on the very rows it is tuned on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend, fingerprint, get_backend
from hfrl.blend import BLEND_METHODS, as_table, blend
from hfrl.data import schema
from hfrl.data.io import LogSource, load_logs
from hfrl.ope import compare, evaluate
from hfrl.ope.estimators import (
    ESTIMATORS,
    PROPENSITY_ESTIMATORS,
    LogStatistics,
    check_level,
    estimator_terms,
    floored,
    normal_quantile,
    prepare,
    run_estimators,
    standard_error,
    statistics_for,
    std_error_floor,
)
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["AlphaTuning", "LeakageWarning", "alpha_curve", "compare", "split_logs", "tune_alpha"]

CRITERIA = ("estimate", "lower_bound")
LINEAR_ESTIMATORS = ("ips", "snips", "dm", "dr")


class LeakageWarning(UserWarning):
    """HF was fit on the rows it is being tuned or evaluated on."""


@dataclass
class AlphaTuning:
    """The result of ``tune_alpha``.

    Attributes
    ----------
    alpha : float
        The chosen alpha.
    curve : DataFrame
        ``alpha``, ``estimate``, ``std_error``, ``ci_low``, ``ci_high`` for every alpha tried.
    policy : TabularPolicy
        The blended policy at the chosen alpha.
    evaluation : DataFrame
        ``hfrl.ope.evaluate``'s row for the blended policy (value, interval, diagnostics).
    estimator, criterion, method : str
    level : float
    """

    alpha: float
    curve: pd.DataFrame
    policy: TabularPolicy
    evaluation: pd.DataFrame
    estimator: str
    criterion: str
    level: float
    method: str

    def __repr__(self) -> str:
        row = self.evaluation.iloc[0]
        return (
            f"AlphaTuning(alpha={self.alpha:.4g}, estimator={self.estimator!r}, "
            f"estimate={row['estimate']:.6g}, ci=({row['ci_low']:.6g}, {row['ci_high']:.6g}))"
        )


def _alphas(alphas: Any) -> np.ndarray:
    if isinstance(alphas, str):
        if alphas != "auto":
            raise ValueError(f"alphas must be 'auto' or a sequence of values in [0, 1], got {alphas!r}")
        return np.linspace(0.0, 1.0, 101)
    grid = np.asarray(alphas, dtype=np.float64).ravel()
    if grid.size == 0:
        raise ValueError("alphas is empty; give at least one value in [0, 1] or 'auto'")
    if not np.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
        bad = grid[~np.isfinite(grid) | (grid < 0) | (grid > 1)][0]
        raise ValueError(f"alphas must lie in [0, 1]; got {bad!r}")
    return grid


def _tables(policy: Any, hf: Any) -> tuple[np.ndarray, np.ndarray]:
    pi = as_table(policy, "policy")
    table = as_table(hf, "hf")
    if pi.shape != table.shape:
        raise ValueError(
            f"policy has shape {pi.shape} but hf has shape {table.shape}; they must cover the same "
            "states and actions"
        )
    return pi, table


class _LinearCurve:
    """Value and standard error of an estimator at any alpha of the linear blend, in closed form."""

    def __init__(self, prepared, pi, hf, estimator, clip, switch) -> None:  # noqa: ANN001
        cells = prepared.cells
        self.n = cells.n_rows
        self.reward_range = prepared.reward_range
        targets = [prepared.target(t, cells) for t in (pi, hf)]
        ends = [estimator_terms(estimator, prepared, cells, target, clip, switch) for target in targets]
        # the floor's event weight along alpha, sum w^2 / sum w (hfrl.ope.estimators.event_weight):
        # a quadratic over a linear function of alpha, over logged rows plus open unseen pairs
        self.squares = self.firsts = None
        if estimator != "dm":
            pis = [t.action_probability for t in targets]
            tables = (pi, hf)
            scale = prepared.unseen_scale
            state_counts = prepared.counts.sum(axis=1)
            open_pairs = scale > 0
            self.firsts = np.array([
                float(pis[j] @ cells.sums["inv_p"])
                + float(state_counts @ (tables[j] * open_pairs).sum(axis=1))
                for j in range(2)
            ])
            self.squares = np.empty((2, 2))
            for j in range(2):
                for k in range(2):
                    unseen = float(state_counts @ (tables[j] * tables[k] * scale).sum(axis=1))
                    self.squares[j, k] = float((pis[j] * pis[k]) @ cells.sums["inv_p2"]) + unseen
        self.ratio = ends[0].denominator is not None
        if self.ratio:
            base = [ends[0].numerator, ends[1].numerator, ends[0].denominator, ends[1].denominator]
            self.totals = np.array([cells.total(c) for c in base])
            self.gram = cells.gram(base)
        else:
            spread = [t.numerator if t.spread is None else t.spread for t in ends]
            self.totals = np.array([cells.total(t.numerator) for t in ends])
            self.spread_totals = np.array([cells.total(c) for c in spread])
            self.gram = cells.gram(spread)

    def __call__(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(alpha, dtype=np.float64)
        b = 1.0 - a
        n = self.n
        g = self.gram
        if not self.ratio:
            estimate = (b * self.totals[0] + a * self.totals[1]) / n
            squares = b * b * g[0, 0] + 2 * a * b * g[0, 1] + a * a * g[1, 1]
            mean = (b * self.spread_totals[0] + a * self.spread_totals[1]) / n
            centred = squares - n * mean * mean
        else:
            t = self.totals
            numerator, denominator = b * t[0] + a * t[1], b * t[2] + a * t[3]
            estimate = numerator / denominator
            mean_weight = denominator / n
            coefficients = np.stack([b, a, -estimate * b, -estimate * a]) / mean_weight
            centred = np.einsum("i...,ij,j...->...", coefficients, g, coefficients)
        se = np.sqrt(np.maximum(centred, 0.0) / (n * (n - 1.0)))
        if self.squares is None:  # dm: one unweighted row
            typical = np.ones(a.shape)
        else:
            q, f = self.squares, self.firsts
            second = b * b * q[0, 0] + 2 * a * b * q[0, 1] + a * a * q[1, 1]
            first = b * f[0] + a * f[1]
            with np.errstate(divide="ignore", invalid="ignore"):
                typical = np.where(first > 0, second / first, 0.0)
        # the total with one more row (as in hfrl.ope.estimators.run_estimators)
        total = denominator + typical if self.ratio else np.full(a.shape, n + 1.0)
        return estimate, floored(se, std_error_floor(self.reward_range, typical, total))


def alpha_curve(
    policy: Any,
    hf: Any,
    logs: LogSource,
    estimator: str = "snips",
    alphas: Any = "auto",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    fast: bool = True,
    statistics: LogStatistics | None = None,
    **evaluate_options: Any,
) -> pd.DataFrame:
    """The estimated value of the blend at each alpha, with standard errors and normal intervals.

    ``fast=True`` (the default) uses the closed form for the linear blend and the ips/snips/dm/dr
    estimators (about two evaluations), and otherwise evaluates each alpha on statistics prepared
    once. ``fast=False`` is the brute force: ``blend`` then ``hfrl.ope.evaluate`` at each alpha.
    ``statistics`` (``hfrl.ope.LogStatistics`` of ``logs``) skips the pass over the logs.

    ``std_error`` is floored at ``(r_max - r_min) * w(alpha) / W(alpha)``, exactly as in
    ``hfrl.ope.evaluate`` (``hfrl.ope.estimators.std_error_floor``; ``w(alpha) = sum w^2 / sum w``
    under the blend, a quadratic over a linear function of alpha),
    because an alpha whose weighted rows all share one reward would otherwise get a zero-width
    interval and win ``criterion="lower_bound"``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 0], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4})
    >>> curve = alpha_curve(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), logs, "ips", [0, 0.5, 1])
    >>> curve["estimate"].tolist()
    [1.0, 0.75, 0.5]
    """
    estimator = str(estimator).lower()
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    level = check_level(level)
    grid = _alphas(alphas)
    pi, table = _tables(policy, hf)
    z = normal_quantile(level)
    clip = evaluate_options.pop("clip_threshold", 10.0)
    switch = evaluate_options.pop("switch_threshold", 10.0)
    if not fast:
        rows = []
        for a in grid:
            row = evaluate(logs, blend(pi, table, float(a), method), (estimator,), level=level,
                           backend=backend, clip_threshold=clip, switch_threshold=switch,
                           statistics=statistics, **evaluate_options).iloc[0]
            rows.append((row["estimate"], row["std_error"]))
        estimate, se = (np.array(v) for v in zip(*rows, strict=True))
    else:
        prepared = prepare(
            logs, pi.shape[0], pi.shape[1], needs_propensity=estimator in PROPENSITY_ESTIMATORS,
            backend=backend, estimators=(estimator,), statistics=statistics, **evaluate_options,
        )
        if method == "linear" and estimator in LINEAR_ESTIMATORS:
            estimate, se = _LinearCurve(prepared, pi, table, estimator, clip, switch)(grid)
        else:
            estimate, se = np.empty(grid.size), np.empty(grid.size)
            for i, a in enumerate(grid):
                (result,), _ = run_estimators(
                    [estimator], prepared, blend(pi, table, float(a), method).table_, clip, switch
                )
                estimate[i] = result.estimate
                se[i] = floored(standard_error(prepared.cells, result.influence), result.se_floor)
    return pd.DataFrame({
        "alpha": grid, "estimate": estimate, "std_error": se,
        "ci_low": estimate - z * se, "ci_high": estimate + z * se,
    })


def check_leakage(
    hf: Any,
    logs: LogSource,
    backend: str | Backend | None,
    allow_leak: bool,
    statistics: LogStatistics | None = None,
) -> None:
    """Refuse (or warn) when ``hf`` was fit on exactly these rows (same ``fingerprint``).

    The logs' fingerprint comes from ``statistics`` when given (no pass over the logs).
    """
    trained_on = getattr(hf, "fingerprint_", None)
    if trained_on is None:
        return
    seen = statistics.fingerprint if statistics is not None else fingerprint(logs, get_backend(backend, logs))
    if tuple(trained_on) != seen:
        return
    message = (
        "hf was fit on the very rows alpha is being tuned on (the logs' fingerprint equals "
        "hf.fingerprint_): HF already contains these rewards, so the curve would favour it. Split "
        "first: train, validation, test = hfrl.tune.split_logs(logs); fit HF (and the learner) on "
        "train, tune alpha on validation, report the value on test"
    )
    if not allow_leak:
        raise ValueError(message + " (or pass allow_leak=True to proceed with a warning)")
    warnings.warn(message, LeakageWarning, stacklevel=3)


def tune_alpha(
    policy: Any,
    hf: Any,
    logs: LogSource,
    estimator: str = "snips",
    alphas: Any = "auto",
    criterion: str = "estimate",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    allow_leak: bool = False,
    statistics: LogStatistics | None = None,
    **evaluate_options: Any,
) -> AlphaTuning:
    """Choose the alpha of ``pi' = blend(policy, hf, alpha, method)`` from logged data.

    Parameters
    ----------
    policy : TabularPolicy or (n_states, n_actions) array
        The learned policy pi (fit on the training split).
    hf : fitted HistoricalFrequency, TabularPolicy or array
        The historical frequency (fit on the training split).
    logs : DataFrame or path
        The validation split, with ``state``, ``action``, ``reward``, ``propensity``.
    estimator : {"snips", "ips", "dm", "dr", "clipped_ips", "switch_dr"}
    alphas : "auto" or sequence of float
        "auto" is 101 points on [0, 1]; with the linear blend and ``criterion="lower_bound"`` the
        best point is then refined to the exact maximiser between its neighbours.
    criterion : {"estimate", "lower_bound"}
        Maximise the estimate, or the lower confidence bound (a safe improvement). The bound uses
        the floored standard error of ``alpha_curve``: a blend whose weighted rows never saw an
        event (estimate 0, sample standard error 0) is not a safe 0.
    level : float
    method : {"linear", "geometric"}
    backend : backend name, Backend or None
    allow_leak : bool
        Warn instead of raising when HF was fit on ``logs``.
    statistics : hfrl.ope.LogStatistics, optional
        The statistics of ``logs`` if already computed (e.g. for an ``evaluate`` call on the same
        logs). Otherwise they are computed once here, in one pass over the logs, and shared by the
        leakage check, the curve, the refinement and the final evaluation.
    **evaluate_options
        Passed to the estimators (``propensity``, ``reward_model``, ...).

    Returns
    -------
    AlphaTuning

    Raises
    ------
    ValueError
        HF fit on these rows (leakage), bad alphas, criterion, estimator or method.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 0], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4})
    >>> result = tune_alpha(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), logs, "ips")
    >>> float(result.alpha), result.policy.table_.tolist()
    (1.0, [[1.0, 0.0]])
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    level = check_level(level)
    grid = _alphas(alphas)
    estimator = str(estimator).lower()
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    _tables(policy, hf)
    if statistics is None:  # one pass over the logs for the leakage check, curve and evaluation
        statistics = statistics_for(logs, backend, (estimator,), evaluate_options.get("propensity", "logged"))
    check_leakage(hf, logs, backend, allow_leak, statistics)
    curve = alpha_curve(policy, hf, logs, estimator, grid, level, method, backend, statistics=statistics,
                        **evaluate_options)
    score = curve["estimate"] if criterion == "estimate" else curve["ci_low"]
    best = int(np.nanargmax(score.to_numpy()))
    alpha = float(curve["alpha"].iloc[best])
    if (isinstance(alphas, str) and method == "linear" and criterion == "lower_bound"
            and estimator in LINEAR_ESTIMATORS):
        alpha = _refine(policy, hf, logs, estimator, level, backend, grid, best, alpha,
                        dict(evaluate_options, statistics=statistics))
    pi, table = _tables(policy, hf)
    blended = blend(pi, table, alpha, method)
    evaluation = evaluate(logs, blended, (estimator,), level=level, backend=backend, statistics=statistics,
                          **evaluate_options)
    return AlphaTuning(alpha, curve, blended, evaluation, estimator, criterion, level, method)


def _refine(policy, hf, logs, estimator, level, backend, grid, best, alpha, options) -> float:  # noqa: ANN001
    """The exact maximiser of the lower bound between the best grid point's neighbours."""
    from scipy.optimize import minimize_scalar

    pi, table = _tables(policy, hf)
    options = dict(options)
    clip = options.pop("clip_threshold", 10.0)
    switch = options.pop("switch_threshold", 10.0)
    prepared = prepare(logs, pi.shape[0], pi.shape[1], needs_propensity=estimator in PROPENSITY_ESTIMATORS,
                       backend=backend, estimators=(estimator,), **options)
    curve = _LinearCurve(prepared, pi, table, estimator, clip, switch)
    z = normal_quantile(level)

    def negative_bound(a: float) -> float:
        estimate, se = curve(np.array([a]))
        return -float(estimate[0] - z * se[0])

    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if high <= low:
        return alpha
    found = minimize_scalar(negative_bound, bounds=(low, high), method="bounded",
                            options={"xatol": 1e-9})
    if found.success and -found.fun > -negative_bound(alpha):
        return float(found.x)
    return alpha


def split_logs(
    logs: LogSource,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    by: str = "time",
    random_state: int | np.random.Generator | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split logs into (train, validation, test) DataFrames.

    ``by="time"`` keeps time order (by ``timestamp`` when present, stable; else row order), so
    that the model is always validated on later data; ``by="random"`` shuffles rows with
    ``random_state``. Sizes are ``floor`` of the cumulative fractions; each split keeps its
    rows' original order and gets a fresh index.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": range(10), "action": 0, "reward": 1.0})
    >>> [len(part) for part in split_logs(logs)]
    [6, 2, 2]
    """
    parts = tuple(float(f) for f in fractions)
    if len(parts) != 3 or any(not math.isfinite(f) or f < 0 for f in parts) or abs(sum(parts) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    if by not in ("time", "random"):
        raise ValueError(f"by must be 'time' or 'random', got {by!r}")
    frame = logs if isinstance(logs, pd.DataFrame) else load_logs(logs, validate=False)
    n = len(frame)
    if by == "time":
        if schema.TIMESTAMP in frame.columns:
            time = pd.to_datetime(frame[schema.TIMESTAMP], utc=True, errors="coerce")
            if time.isna().any():
                row = int(np.flatnonzero(time.isna().to_numpy())[0])
                raise ValueError(f"column 'timestamp': row {row} is not a parseable date-time")
            order = np.argsort(time.dt.tz_localize(None).to_numpy("datetime64[ns]"), kind="stable")
        else:
            order = np.arange(n)
    else:
        order = resolve_rng(random_state).permutation(n)
    cuts = np.floor(np.cumsum(parts) * n + 1e-9).astype(int)
    cuts[-1] = n
    pieces = np.split(order, cuts[:-1])
    for name, fraction, piece in zip(("train", "validation", "test"), parts, pieces, strict=True):
        if fraction > 0 and piece.size == 0:
            raise ValueError(f"the {name} split is empty: {n} rows are too few for fractions {parts}")
    if by == "random":
        pieces = [np.sort(p) for p in pieces]
    return tuple(frame.iloc[p].reset_index(drop=True) for p in pieces)  # type: ignore[return-value]
