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

import numpy as np
from scipy import stats

__all__ = [
    "INTERVALS",
    "Sums",
    "bernstein_interval",
    "bootstrap_interval",
    "check_level",
    "empirical_likelihood_interval",
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


def _euclidean_bound(s: Sums, fake_weight: float | np.ndarray, fake_term: float | np.ndarray,
                     slack: np.ndarray, sign: float) -> np.ndarray:
    """The bound of one side with the unseen row at ``(fake_weight, fake_term)``: the reweighting
    with mean weight 1 whose value is furthest (``sign`` -1: lowest) within ``slack`` of the best."""
    m = s.n + 1.0
    w_mean = (s[ONE, WEIGHT] + fake_weight) / m
    t_mean = (s[ONE, TERM] + fake_term) / m
    w_var = (s[WEIGHT, WEIGHT] + fake_weight**2) / m - w_mean**2
    cov = (s[WEIGHT, TERM] + fake_weight * fake_term) / m - w_mean * t_mean
    t_var = (s[TERM, TERM] + fake_term**2) / m - t_mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = w_var > 1e-300
        centre = t_mean + np.where(safe, cov / w_var, 0.0) * (1.0 - w_mean)
        distance = np.where(safe, m * (1.0 - w_mean) ** 2 / w_var, 0.0)  # of mean weight 1
        residual = np.maximum(t_var - np.where(safe, cov**2 / w_var, 0.0), 0.0)
        room = slack - distance
        half = np.sqrt(np.maximum(room, 0.0) * residual / m)
    return np.where(room >= 0, centre + sign * half, np.nan)


def empirical_likelihood_interval(
    s: Sums,
    level: float,
    max_weight: float | np.ndarray,
    fake_terms: tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float, np.ndarray | float],
    value_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean empirical-likelihood interval (see the module docstring), clipped to ``value_range``.

    ``fake_terms`` are the unseen row's term for the lower bound at weight 0 and ``max_weight``,
    then for the upper bound at weight 0 and ``max_weight`` (e.g. ``w0 * r_min`` and
    ``w0 * r_max`` for IPS).
    """
    n = s.n
    critical = stats.f.isf(1.0 - level, 1, np.maximum(n, 1.0))
    # the best reweighting uses the unseen row's weight that helps the mean weight towards 1
    best_fake = np.where(s[ONE, WEIGHT] < n, max_weight, 0.0)
    m = n + 1.0
    w_mean = (s[ONE, WEIGHT] + best_fake) / m
    w_var = (s[WEIGHT, WEIGHT] + best_fake**2) / m - w_mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.where(w_var > 1e-300, m * (1.0 - w_mean) ** 2 / w_var, 0.0)
    slack = best + critical
    low_zero, low_max, high_zero, high_max = fake_terms
    low = np.fmin(_euclidean_bound(s, 0.0, low_zero, slack, -1.0),
                  _euclidean_bound(s, max_weight, low_max, slack, -1.0))
    high = np.fmax(_euclidean_bound(s, 0.0, high_zero, slack, 1.0),
                   _euclidean_bound(s, max_weight, high_max, slack, 1.0))
    low = np.where(np.isnan(low), value_range[0], np.clip(low, *value_range))
    high = np.where(np.isnan(high), value_range[1], np.clip(high, *value_range))
    return low, high


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
