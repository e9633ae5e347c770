"""Inference for the off-policy estimators: standard errors and intervals, apart from the formulas.

Everything here reads ``Sums``: sums over the logged rows of an estimator's terms and their products
(``hfrl.ope.units.Units.gram``), scalars for one evaluation or arrays along alpha for the curve, so
one function serves ``evaluate``, ``compare`` and ``hfrl.tune``. Three interval methods:

``"normal"``
    ``estimate +- z * std_error`` with the delta-method standard error of the influence terms.
``"empirical_likelihood"``
    For importance-weighted estimators: the Euclidean (Cressie-Read, lambda = -2) member of the
    empirical likelihood family of Karampatziakis, Mineiro & Ramdas (2020, 2021), in closed form.
    Among reweightings of the rows (plus one unseen row at an extreme weight ``w0`` in
    ``{0, w_max}`` and an extreme reward) that keep the mean importance weight at 1, as it is under
    the logging policy, the interval holds the values whose reweighting is within the ``F(1, n)``
    critical value of the best. Known weights (``E[w] = 1``) correct for an unlucky sample of
    weights, and the unseen row keeps the interval honest when few or no events were logged.
``"bernstein"``
    A guaranteed interval: the empirical Bernstein bound of Maurer & Pontil (2009) for the mean of
    terms bounded by the declared reward range and the largest possible weight, each side at
    ``(1 - level) / 2``; conservative, valid at every sample size.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "INTERVALS",
    "Sums",
    "bernstein_interval",
    "bootstrap_interval",
    "check_level",
    "empirical_likelihood_interval",
    "merge_rows",
    "pool_rows",
    "normal_quantile",
    "poisson_bootstrap",
]

INTERVALS = ("normal", "empirical_likelihood", "bernstein")
_BOOTSTRAP_CHUNK_BYTES = 64 * 2**20
_TABLE_LIMIT = 100_000  # counts above this draw with numpy's Poisson sampler instead of a table


def check_level(level: float) -> float:
    """A confidence level strictly between 0 and 1."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def normal_quantile(level: float) -> float:
    """The two-sided normal critical value of ``level`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


ONE, TERM, NORMALIZER, INFLUENCE, WEIGHT = range(5)


@dataclass(frozen=True)
class Sums:
    """Sums over rows of the products of ``(1, term, normalizer, influence, weight)``.

    ``gram[..., i, j]`` is the sum over rows of the product of terms i and j (``gram[..., 0, 0]``
    is the row count); the leading axes, if any, run along alpha. ``ratio`` says whether the
    estimate is ``sum term / sum normalizer`` (else ``sum term / n``).
    """

    gram: np.ndarray
    ratio: bool

    def __getitem__(self, pair: tuple[int, int]) -> np.ndarray:
        return self.gram[..., pair[0], pair[1]]

    @property
    def n(self) -> np.ndarray:
        return self[ONE, ONE]

    def estimate(self) -> np.ndarray:
        denominator = self[ONE, NORMALIZER] if self.ratio else self.n
        with np.errstate(invalid="ignore", divide="ignore"):
            return self[ONE, TERM] / denominator

    def std_error(self) -> np.ndarray:
        """sqrt(sum psi^2 / (n (n - 1))): the influence terms' sample deviation over sqrt(n).

        ``psi = influence - mean`` (a mean), or ``(term - estimate * normalizer) / mean(normalizer)``
        (a ratio, by the delta method). NaN with fewer than two rows.
        """
        n = self.n
        estimate = self.estimate()
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.ratio:
                mean_normalizer = self[ONE, NORMALIZER] / n
                squares = (self[TERM, TERM] - 2 * estimate * self[TERM, NORMALIZER]
                           + estimate**2 * self[NORMALIZER, NORMALIZER]) / mean_normalizer**2
            else:
                squares = self[INFLUENCE, INFLUENCE] - self[ONE, INFLUENCE] ** 2 / n
            return np.where(n > 1, np.sqrt(np.maximum(squares, 0.0) / (n * (n - 1.0))), np.nan)

    def ess(self) -> np.ndarray:
        """Effective sample size of the weights, ``(sum w)^2 / sum w^2`` (0 when all are 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self[WEIGHT, WEIGHT] > 0, self[ONE, WEIGHT] ** 2 / self[WEIGHT, WEIGHT], 0.0)


_BARRIER = 1e-9  # weight of the unseen rows' barrier, relative to the row count
_NEWTON_STEPS = 60


def _maximise_dual(a: np.ndarray, b: np.ndarray | None, count: np.ndarray, corner_a: np.ndarray,
                   corner_b: np.ndarray | None, start: np.ndarray) -> tuple[float, np.ndarray, float]:
    """``max over lambda of sum_j c_j log(1 + lambda . g_j)``, ``g_j = (a_j, b_j)`` (``b`` None: 1-d).

    The unseen rows may sit at any corner ``k``, so ``1 + lambda . g_k >= 0`` there too (a
    vanishing log-barrier keeps it). Damped Newton from ``start`` (or from 0 if that is no longer
    feasible). Returns the maximum, the maximiser and ``sum_j c_j / (1 + lambda . g_j)``.
    """
    dims = 1 if b is None else 2
    data = np.stack([a] if b is None else [a, b])
    corners = np.stack([corner_a] if corner_b is None else [corner_a, corner_b])
    barrier = _BARRIER * float(count.sum())
    weights = np.concatenate([count, np.full(corners.shape[1], barrier)])
    g = np.concatenate([data, corners], axis=1)
    lam = start[:dims].copy()

    def value(point: np.ndarray) -> float:
        inside = 1.0 + point @ g
        return float(weights @ np.log(inside)) if (inside > 0).all() else -np.inf

    current = value(lam)
    for fallback in (np.r_[lam[:1], np.zeros(dims - 1)], np.zeros(dims)):  # a start made infeasible
        if np.isfinite(current):
            break
        lam, current = fallback, value(fallback)
    for _ in range(_NEWTON_STEPS):
        inside = 1.0 + lam @ g
        scaled = g / inside
        gradient = scaled @ weights
        hessian = (scaled * weights) @ scaled.T
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        if not np.isfinite(step).all() or float(gradient @ step) < 1e-10:
            break
        size = 1.0
        while size > 1e-12:
            candidate = value(lam + size * step)
            if candidate > current:
                lam, current = lam + size * step, candidate
                break
            size *= 0.5
        else:
            break
    inverse_total = float(weights @ (1.0 / (1.0 + lam @ g)))
    return current, np.r_[lam, np.zeros(2 - dims)], inverse_total


def empirical_likelihood_interval(
    weight: np.ndarray,
    term: np.ndarray,
    count: np.ndarray,
    corners: tuple[np.ndarray, np.ndarray],
    level: float,
    value_range: tuple[float, float],
) -> tuple[float, float]:
    """Empirical-likelihood interval of ``E[term]`` given ``E[weight] = 1`` (see the module docstring).

    Rows ``(weight_j, term_j)`` with multiplicities ``count_j``; the distributions considered may
    also put mass on rows never seen, at any of the ``corners`` (an extreme weight and term). The
    interval holds the values ``v`` whose profile log-likelihood ratio ``S(v) = 2 (D(v) - D0)`` is
    at most the ``F(1, n)`` critical value, ``D`` the dual of the constrained likelihood. Each bound
    is found by a bracketed Newton search on ``S``, whose slope is ``-2 gamma sum c_j / (1 +
    lambda . g_j)`` at the dual optimum (the envelope theorem).
    """
    n = float(count.sum())
    if n < 1:
        return value_range
    critical = float(stats.f.isf(1.0 - level, 1, max(n - 1.0, 1.0)))
    corner_w, corner_t = corners
    base, start, _ = _maximise_dual(weight - 1.0, None, count, corner_w - 1.0, None, np.zeros(2))
    warm = {"lambda": start}

    def statistic(v: float) -> tuple[float, float]:
        best, warm["lambda"], inverse_total = _maximise_dual(
            weight - 1.0, term - v, count, corner_w - 1.0, corner_t - v, warm["lambda"])
        return 2.0 * (best - base), -2.0 * warm["lambda"][1] * inverse_total

    # the likelihood's best reweighting: row masses c_j / (n (1 + beta (w_j - 1)))
    mass = count / (n * (1.0 + start[0] * (weight - 1.0)))
    centre = float(np.clip((mass @ term) + (1.0 - mass.sum()) * 0.5 * (corner_t.min() + corner_t.max()),
                           *value_range))
    if statistic(centre)[0] > critical:  # the reweighting's centre is off: search from the mean term
        centre = float(np.clip(count @ term / n, *value_range))
    if statistic(centre)[0] > critical:  # no value is plausible within the range: report the range
        return value_range
    spread = np.sqrt(max(float(count @ (term - count @ term / n) ** 2) / n, 0.0) / n)
    return (_bound(statistic, critical, centre, value_range[0], spread, start, warm),
            _bound(statistic, critical, centre, value_range[1], spread, start, warm))


def _bound(statistic: Any, critical: float, inside: float, outside: float, spread: float,
           start: np.ndarray, warm: dict) -> float:
    """The ``v`` between ``inside`` (S <= critical) and ``outside`` where ``S(v) = critical``."""
    warm["lambda"] = start
    if statistic(outside)[0] <= critical:
        return outside
    tolerance = 1e-9 * max(abs(outside - inside), 1e-12)
    direction = np.sign(outside - inside)
    v = inside + direction * min(abs(outside - inside) / 2, np.sqrt(critical) * max(spread, 1e-12))
    warm["lambda"] = start
    for _ in range(100):
        value, slope = statistic(v)
        if value > critical:
            outside = v
        else:
            inside = v
        if abs(outside - inside) <= tolerance or abs(value - critical) <= 1e-9 * critical:
            return float(v)
        step = v - (value - critical) / slope if slope != 0 else np.nan
        low, high = sorted((inside, outside))
        v = step if low < step < high else 0.5 * (inside + outside)
    return float(v)


MAX_POINTS = 5_000  # distinct points the likelihood works on; more are pooled
_RESOLUTIONS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # relative widths of the pooling cells, in turn


def pool_rows(columns: list[np.ndarray], count: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Rows with the same values in every column merged, their counts added (count-0 rows dropped).

    When more than ``MAX_POINTS`` rows remain (a large table of cells), rows within a relative
    0.1% (then 0.3%, 1%, ...) of each other in every column are pooled at their count-weighted
    means (up to 10% when 1% is not enough): sums of counts and of each column stay exact, and
    since the terms along alpha are linear
    in the columns of the two end policies, pooling those once serves every alpha. The
    likelihood's bounds move by far less than the pooling width (1e-9 relative in the tests).
    """
    keep = count > 0
    columns, count = [c[keep] for c in columns], count[keep]
    if count.size <= MAX_POINTS:  # repeated rows are harmless to the likelihood: keep them as they are
        return columns, count
    for resolution in _RESOLUTIONS:
        codes = _row_codes([_cell(c, resolution) for c in columns])
        if codes.max(initial=-1) + 1 <= MAX_POINTS:
            break
    total = np.bincount(codes, weights=count)
    return [np.bincount(codes, weights=count * c) / total for c in columns], total


def merge_rows(weight: np.ndarray, term: np.ndarray, count: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pool_rows`` of ``(weight, term)`` pairs."""
    (weight, term), total = pool_rows([weight, term], count)
    return weight, term, total


def _row_codes(cells: list[np.ndarray]) -> np.ndarray:
    """0-based code of each distinct row of integer cell indices (one sort)."""
    key = np.zeros(cells[0].shape[0], dtype=np.int64)
    for cell in cells:
        low = int(cell.min(initial=0))
        key = key * (int(cell.max(initial=0)) - low + 1) + (cell - low)
    _, codes = np.unique(key, return_inverse=True)
    return codes.ravel()


def _cell(values: np.ndarray, resolution: float) -> np.ndarray:
    """Index of each value's pooling cell: logarithmic steps of ``resolution``, linear near 0 (within
    1e-6 of the largest magnitude); negative values get negative indices."""
    floor = max(float(np.abs(values).max(initial=0.0)), 1e-300) * 1e-6
    magnitude = np.floor(np.log(np.maximum(np.abs(values), floor) / floor) / np.log1p(resolution))
    return (np.sign(values) * (magnitude + 1)).astype(np.int64)


def bernstein_interval(s: Sums, level: float, term_range: tuple[np.ndarray | float, np.ndarray | float],
                       value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Empirical Bernstein interval for the mean of terms in ``term_range`` (Maurer & Pontil 2009,
    Theorem 4), each side at ``(1 - level) / 2``, clipped to ``value_range``.

    ``|mean - E| <= sqrt(2 V log(2/delta) / n) + 7 R log(2/delta) / (3 (n - 1))`` with ``V`` the
    unbiased sample variance of the terms, ``R`` their range and ``delta = (1 - level) / 2``.
    """
    n = s.n
    delta = (1.0 - level) / 2.0
    log_term = np.log(2.0 / delta)
    mean = s[ONE, TERM] / n
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.maximum(s[TERM, TERM] - n * mean**2, 0.0) / (n - 1.0)
        span = np.asarray(term_range[1]) - np.asarray(term_range[0])
        half = np.sqrt(2.0 * variance * log_term / n) + 7.0 * span * log_term / (3.0 * (n - 1.0))
    half = np.where(n > 1, half, np.inf)
    return np.clip(mean - half, *value_range), np.clip(mean + half, *value_range)


# ---------------------------------------------------------------------------------------------
# the Poisson bootstrap on atoms


def _poisson_pmf(mean: float) -> np.ndarray:
    """The Poisson(mean) probabilities of 0, 1, ... up to where the tail is far below 1e-16."""
    k = np.arange(1, int(mean + 12.0 * np.sqrt(mean) + 40.0))
    log_pmf = -mean + np.r_[0.0, np.cumsum(np.log(mean) - np.log(k))]  # log(mean^k e^-mean / k!)
    pmf = np.exp(log_pmf)
    return pmf / pmf.sum()


class PoissonCounts:
    """Draws of Poisson(count) for many atoms, grouped by their (integer) count.

    Numpy's Poisson sampler costs ~10x a uniform draw. Atoms share few distinct counts, and a sample
    of ``m`` iid Poisson(c) values is exactly a multinomial tally of the values ``0, 1, ...`` over
    ``m`` draws, put in a uniformly random order; tallying and shuffling is a few times cheaper than
    drawing each value. ``order`` is the atom order of the draws (sorted by count, stable).
    """

    def __init__(self, count: np.ndarray) -> None:
        whole = np.rint(count).astype(np.int64)
        self.order = np.argsort(whole, kind="stable")
        ordered = whole[self.order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        stops = np.r_[starts[1:], ordered.size]
        self.groups = [(int(ordered[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        self.pmfs = {c: _poisson_pmf(float(c)) for c, _, _ in self.groups if 0 < c <= _TABLE_LIMIT}
        self.size = ordered.size

    def draw(self, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
        """Draws of shape (n_resamples, n_atoms), atoms in ``order``."""
        out = np.zeros((n_resamples, self.size))
        for count, start, stop in self.groups:
            if count == 0:
                continue
            size = stop - start
            if count in self.pmfs:
                pmf = self.pmfs[count]
                tallies = rng.multinomial(size, pmf, size=n_resamples)  # (n_resamples, n_values)
                support = np.tile(np.arange(pmf.size, dtype=np.int32), n_resamples)
                values = np.repeat(support, tallies.ravel()).reshape(n_resamples, size)
                out[:, start:stop] = rng.permuted(values, axis=1)
            else:
                out[:, start:stop] = rng.poisson(float(count), (n_resamples, size))
        return out


def poisson_bootstrap(
    count: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replicates ``(n_bootstrap, n_terms)`` of ratio estimates ``sum(P v) / sum(P d)`` over atoms.

    Each row gets a Poisson(1) weight; the rows of an atom are exchangeable, so an atom's total
    weight is one Poisson(count) draw. ``values`` and ``weights`` are ``(n_atoms, n_terms)``: one
    row's term and normalizer per atom. All terms share the draws (paired).
    """
    sampler = PoissonCounts(count)
    values, weights = values[sampler.order], weights[sampler.order]
    out = np.empty((n_bootstrap, values.shape[1]))
    chunk = max(1, min(n_bootstrap, _BOOTSTRAP_CHUNK_BYTES // (8 * max(count.size, 1))))
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        draws = sampler.draw(rng, stop - start)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = (draws @ values) / (draws @ weights)
    return out


def bootstrap_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval and standard deviation of bootstrap replicates, per column."""
    tail = (1.0 - level) / 2.0
    low = np.nanquantile(replicates, tail, axis=0)
    high = np.nanquantile(replicates, 1.0 - tail, axis=0)
    return low, high, np.nanstd(replicates, axis=0, ddof=1)
