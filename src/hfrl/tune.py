"""Choosing alpha: the value of ``pi' = (1 - alpha) pi + alpha HF`` along alpha, with its interval.

For the linear blend, the per-row terms of IPS, SNIPS, DM and DR are linear in the target policy
(``hfrl.ope.estimators``), so along alpha every sum an estimate or an interval needs is a quadratic
in alpha whose coefficients are the sums of products of the two end policies' terms: the whole
curve costs about two policy evaluations however many alphas it reports, and uses the same
inference as ``hfrl.ope.evaluate`` (``hfrl.ope.inference``). Clipped IPS, Switch-DR and the
geometric blend are not linear in alpha; their curves evaluate each alpha on the same prepared logs.

Splits are explicit: fit HF and the learner on the training split (``split_logs``), choose alpha
on validation, report the value on test (``tune_alpha(..., test_logs=test)``): a value measured on
the rows alpha was chosen on is optimistic, and says so. ``tune_alpha`` refuses (or, with
``allow_leak=True``, warns) when HF was fit on the very rows it is tuned on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.blending import BLEND_METHODS, as_table, blend
from hfrl.data import Logs, load_logs, schema
from hfrl.ope import compare, evaluate
from hfrl.ope.estimators import ESTIMATORS, Estimator, make_estimator
from hfrl.ope.evaluate import (
    Prepared,
    Terms,
    atom_rows,
    auto_interval,
    likelihood_interval,
    moment_interval,
    prepare,
    resolve_interval,
)
from hfrl.ope.inference import Sums, check_level, pool_rows
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["AlphaTuning", "LeakageWarning", "alpha_curve", "compare", "split_logs", "tune_alpha"]

CRITERIA = ("estimate", "lower_bound")


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
        ``hfrl.ope.evaluate``'s row for the blended policy, with a column ``rows`` saying which
        rows it was made on: ``"test"`` (``test_logs``, an honest estimate) or ``"selection"``
        (the rows alpha was chosen on: optimistic, see ``optimistic``).
    estimator, criterion, method : str
    level : float
    optimistic : bool
        True when ``evaluation`` was made on the selection rows: choosing the best of many alphas
        on the same rows inflates its value and its interval does not cover at ``level``.
    """

    alpha: float
    curve: pd.DataFrame
    policy: TabularPolicy
    evaluation: pd.DataFrame
    estimator: str
    criterion: str
    level: float
    method: str
    optimistic: bool = True

    def __repr__(self) -> str:
        row = self.evaluation.iloc[0]
        return (
            f"AlphaTuning(alpha={self.alpha:.4g}, estimator={self.estimator!r}, "
            f"estimate={row['estimate']:.6g}, ci=({row['ci_low']:.6g}, {row['ci_high']:.6g}), "
            f"rows={row['rows']!r})"
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


def _mixing(alpha: np.ndarray) -> np.ndarray:
    """Maps the two end policies' terms ``(1, term, normalizer, influence, weight)`` x ``(pi, hf)``
    to the blend's five terms at each alpha: shape ``(len(alpha), 5, 9)``."""
    a = np.asarray(alpha, dtype=np.float64)
    out = np.zeros((a.size, 5, 9))
    out[:, 0, 0] = 1.0
    for k in range(1, 5):
        out[:, k, 2 * k - 1] = 1.0 - a
        out[:, k, 2 * k] = a
    return out


def _end_gram(prepared: Prepared, estimator: Estimator, pi: np.ndarray, hf: np.ndarray
              ) -> tuple[np.ndarray, bool]:
    """Sums of products of the two end policies' terms ``(1, term, normalizer, influence, weight)``,
    interleaved as ``_mixing`` expects, and whether the estimate is a ratio."""
    ends = [Terms.of(estimator, prepared.target(table)).listed() for table in (pi, hf)]
    basis = [ends[0][0]] + [term for k in range(1, 5) for term in (ends[0][k], ends[1][k])]
    return prepared.units.gram(basis), ends[0][2] is not ends[0][0]


def _linear_sums(gram: np.ndarray, ratio: bool, alpha: np.ndarray) -> Sums:
    """The sums of the linear blend's terms at every alpha, from the end policies' Gram matrix."""
    mixing = _mixing(alpha)
    return Sums(np.einsum("aik,kl,ajl->aij", mixing, gram, mixing), ratio)


def _pointwise_sums(prepared: Prepared, estimator: Estimator, tables: list[np.ndarray]) -> Sums:
    """The sums of each given policy's terms, evaluated one by one."""
    grams = []
    ratio = False
    for table in tables:
        terms = Terms.of(estimator, prepared.target(table))
        ratio = terms.normalizer is not None
        grams.append(prepared.units.gram(terms.listed()))
    return Sums(np.stack(grams), ratio)


class _Curve:
    """Estimate and interval of one estimator at any alpha, on logs prepared once.

    What every alpha shares is computed once and kept: the end policies' Gram matrix (the linear
    blend's sums) and their pooled atoms (its likelihood intervals).
    """

    def __init__(self, prepared: Prepared, estimator: Estimator, pi: np.ndarray, hf: np.ndarray,
                 method: str, interval: str, level: float, fast: bool = True) -> None:
        self.prepared, self.estimator, self.pi, self.hf = prepared, estimator, pi, hf
        self.method, self.level = method, level
        self.closed_form = fast and method == "linear" and estimator.linear_in_target
        self.gram, self.ratio = _end_gram(prepared, estimator, pi, hf)
        if interval == "auto":  # one method along the curve: the smaller end's sample decides
            ends = _linear_sums(self.gram, self.ratio, np.array([0.0, 1.0]))
            interval = auto_interval(estimator.name, float(ends.ess().min()))
        self.interval = interval
        self._pooled: tuple[list[np.ndarray], np.ndarray] | None = None

    def __call__(self, alpha: np.ndarray) -> tuple[np.ndarray, ...]:
        alpha = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
        if self.closed_form:
            tables: list[np.ndarray] = []
            sums = _linear_sums(self.gram, self.ratio, alpha)
            max_weight = self._linear_max_weight(alpha)
        else:
            tables = [blend(self.pi, self.hf, float(a), self.method).table_ for a in alpha]
            sums = _pointwise_sums(self.prepared, self.estimator, tables)
            max_weight = np.array([self.prepared.max_weight(t) for t in tables])
        if self.interval == "empirical_likelihood":
            low, high = self._likelihood(alpha, tables, max_weight)
        else:
            low, high = moment_interval(self.interval, sums, self.estimator, max_weight,
                                        self.prepared.reward_range, self.level)
        return sums.estimate(), sums.std_error(), low, high

    def _linear_max_weight(self, alpha: np.ndarray) -> np.ndarray:
        """``Prepared.max_weight`` of the linear blend at each alpha, without building the tables."""
        logged = self.prepared.counts.sum(axis=1) > 0
        pi, hf = self.pi[logged].ravel(), self.hf[logged].ravel()
        if self.prepared.units.grain == "row" or pi.size == 0:
            tables = (blend(self.pi, self.hf, float(a)).table_ for a in alpha)
            return np.array([self.prepared.max_weight(t) for t in tables])
        largest = np.array([float(((1 - a) * pi + a * hf).max()) for a in alpha])
        return largest / self.prepared.propensity_floor

    def _likelihood(self, alpha: np.ndarray, tables: list[np.ndarray], max_weight: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Empirical-likelihood bounds at each alpha; the atoms' weights and terms of the linear
        blend are the blend of the end policies' (pooled once)."""
        if self.closed_form:
            if self._pooled is None:
                ends = [atom_rows(self.prepared, self.estimator, t) for t in (self.pi, self.hf)]
                self._pooled = pool_rows([*ends[0][:2], *ends[1][:2]], ends[0][2])
            (w0, t0, w1, t1), count = self._pooled
            rows = [((1 - a) * w0 + a * w1, (1 - a) * t0 + a * t1, count) for a in alpha]
        else:
            rows = [atom_rows(self.prepared, self.estimator, t) for t in tables]
        bounds = [likelihood_interval(r, self.estimator, float(m), self.prepared.reward_range, self.level,
                                      self.prepared.model_range)
                  for r, m in zip(rows, max_weight, strict=True)]
        return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def alpha_curve(
    policy: Any,
    hf: Any,
    logs: Any,
    estimator: str = "snips",
    alphas: Any = "auto",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    fast: bool = True,
    interval: str = "auto",
    **evaluate_options: Any,
) -> pd.DataFrame:
    """The estimated value of the blend at each alpha, with standard errors and intervals.

    ``fast=True`` (the default) uses the closed form for the linear blend and the ips/snips/dm/dr
    estimators (about two evaluations) and otherwise evaluates each alpha on logs prepared once;
    ``fast=False`` is the brute force: ``blend`` then ``hfrl.ope.evaluate`` at each alpha. The
    intervals are ``hfrl.ope.evaluate``'s (``interval``, default per estimator).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 0], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4})
    >>> curve = alpha_curve(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), logs, "ips", [0, 0.5, 1])
    >>> curve["estimate"].tolist()
    [1.0, 0.75, 0.5]
    """
    name, grid, pi, table, level = _check_curve(estimator, alphas, method, level, policy, hf)
    chosen = _estimator(name, evaluate_options)
    kind = resolve_interval(interval, name)
    if not fast:
        rows = [evaluate(logs, blend(pi, table, float(a), method), (name,), level=level, backend=backend,
                         interval=kind, clip_threshold=getattr(chosen, "threshold", 10.0),
                         switch_threshold=getattr(chosen, "threshold", 10.0), **evaluate_options).iloc[0]
                for a in grid]
        frame = pd.DataFrame(rows)[["estimate", "std_error", "ci_low", "ci_high"]].reset_index(drop=True)
        return pd.concat([pd.DataFrame({"alpha": grid}), frame], axis=1)
    prepared = prepare(logs, pi.shape[0], pi.shape[1], needs_propensity=chosen.uses_propensity,
                       backend=backend, **evaluate_options)
    return _curve_frame(grid, _Curve(prepared, chosen, pi, table, method, kind, level)(grid))


def _curve_frame(grid: np.ndarray, values: tuple[np.ndarray, ...]) -> pd.DataFrame:
    estimate, se, low, high = values
    return pd.DataFrame({"alpha": grid, "estimate": estimate, "std_error": se,
                         "ci_low": low, "ci_high": high})


def _check_curve(estimator: Any, alphas: Any, method: str, level: float, policy: Any, hf: Any
                 ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, float]:
    name = str(estimator).lower()
    if name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    pi, table = _tables(policy, hf)
    return name, _alphas(alphas), pi, table, check_level(level)


def _estimator(name: str, options: dict[str, Any]) -> Estimator:
    """The estimator, taking its threshold out of the evaluate options."""
    return make_estimator(name, options.pop("clip_threshold", 10.0), options.pop("switch_threshold", 10.0))


def check_leakage(hf: Any, logs: Logs, allow_leak: bool) -> None:
    """Refuse (or warn) when ``hf`` was fit on exactly these rows (same ``fingerprint``)."""
    trained_on = getattr(hf, "fingerprint_", None)
    if trained_on is None or tuple(trained_on) != logs.fingerprint:
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
    logs: Any,
    estimator: str = "snips",
    alphas: Any = "auto",
    criterion: str = "estimate",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    allow_leak: bool = False,
    test_logs: Any = None,
    interval: str = "auto",
    **evaluate_options: Any,
) -> AlphaTuning:
    """Choose the alpha of ``pi' = blend(policy, hf, alpha, method)`` from logged data.

    Parameters
    ----------
    policy : TabularPolicy or (n_states, n_actions) array
        The learned policy pi (fit on the training split).
    hf : fitted HistoricalFrequency, TabularPolicy or array
        The historical frequency (fit on the training split).
    logs : DataFrame, path or ``hfrl.data.Logs``
        The selection (validation) split, with ``state``, ``action``, ``reward``, ``propensity``.
    estimator : {"snips", "ips", "dr", "dm", "clipped_ips", "switch_dr"}
    alphas : "auto" or sequence of float
        "auto" is 101 points on [0, 1]; with the linear blend and ``criterion="lower_bound"`` the
        best point is then refined to the exact maximiser between its neighbours.
    criterion : {"estimate", "lower_bound"}
        Maximise the estimate, or the lower confidence bound (a safe improvement).
    level : float
    method : {"linear", "geometric"}
    backend : backend name, Backend or None
    allow_leak : bool
        Warn instead of raising when HF was fit on ``logs``.
    test_logs : DataFrame, path or ``hfrl.data.Logs``, optional
        Rows alpha was NOT chosen on: the chosen policy's value is reported there (honest). Without
        them it is reported on ``logs``, marked ``rows="selection"`` and ``optimistic=True``.
    interval : {"auto", "normal", "empirical_likelihood", "bernstein"}
        As in ``hfrl.ope.evaluate``; the lower-bound criterion uses these bounds.
    **evaluate_options
        Passed to the estimators (``propensity``, ``reward_model``, ``reward_range``, ...).

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
    >>> float(result.alpha), result.policy.table_.tolist(), result.optimistic
    (1.0, [[1.0, 0.0]], True)
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    name, grid, pi, table, level = _check_curve(estimator, alphas, method, level, policy, hf)
    options = dict(evaluate_options)
    chosen = _estimator(name, options)
    kind = resolve_interval(interval, name)
    prepared = prepare(logs, pi.shape[0], pi.shape[1], needs_propensity=chosen.uses_propensity,
                       backend=backend, **options)
    check_leakage(hf, prepared.logs, allow_leak)
    curve_at = _Curve(prepared, chosen, pi, table, method, kind, level)
    curve = _curve_frame(grid, curve_at(grid))
    score = curve["estimate" if criterion == "estimate" else "ci_low"].to_numpy()
    best = int(np.nanargmax(score)) if np.isfinite(score).any() else 0
    alpha = float(grid[best])
    if isinstance(alphas, str) and curve_at.closed_form and criterion == "lower_bound":
        alpha = _refine(curve_at, grid, best, alpha)
    blended = blend(pi, table, alpha, method)
    thresholds = {"clip_threshold": getattr(chosen, "threshold", 10.0),
                  "switch_threshold": getattr(chosen, "threshold", 10.0)}
    held_out = test_logs is not None
    evaluation = evaluate(test_logs if held_out else prepared.logs, blended, (name,), level=level,
                          backend=backend, interval=kind, **thresholds, **options)
    evaluation["rows"] = "test" if held_out else "selection"
    return AlphaTuning(alpha, curve, blended, evaluation, name, criterion, level, method, not held_out)


def _refine(curve: _Curve, grid: np.ndarray, best: int, alpha: float) -> float:
    """The exact maximiser of the lower bound between the best grid point's neighbours."""
    from scipy.optimize import minimize_scalar

    def negative_bound(a: float) -> float:
        return -float(curve(np.array([a]))[2][0])

    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if high <= low:
        return alpha
    found = minimize_scalar(negative_bound, bounds=(low, high), method="bounded", options={"xatol": 1e-9})
    if found.success and -found.fun > -negative_bound(alpha):
        return float(found.x)
    return alpha


def split_logs(
    logs: Any,
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
    frame = logs.frame() if isinstance(logs, Logs) else (
        logs if isinstance(logs, pd.DataFrame) else load_logs(logs, validate=False))
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
