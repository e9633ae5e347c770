"""Historical frequencies (HF): what users actually did, as a probability table over actions.

``HistoricalFrequency`` turns logs into a ``(n_states, n_actions)`` table whose rows are
distributions, the target that hfrl blends learned policies toward: dense, or for large catalogs
where most cells were never logged a ``hfrl.sparse.SparseTable`` holding the logged cells of each
state plus the global backoff row (``sparse_share_table``). Two kinds:

- ``"share"``: HF(a|s) = the share of state s's events (the reward sum: purchases, clicks) that
  went to action a, i.e. what users chose; with ``count="rows"`` the share of rows, i.e. the
  empirical logging policy (used when propensities are unknown).
- ``"rate"``: the per-(s, a) event rate (events / impressions, e.g. CTR), made a distribution by
  normalisation or by a softmax with a temperature, i.e. what performed.

The sums come from the validated logs' one pass of cell statistics (``hfrl.data.Logs.statistics``,
any backend); the smoothing (``hfrl.data.shrink``) and normalisation run in numpy on the small
tables, one function per formula (``share_table``, ``rate_table``, ``fit_beta_binomial_prior``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hfrl.backends import Backend
from hfrl.data import Logs, as_logs, schema, shrink
from hfrl.data.source import MAX_TABLE_CELLS
from hfrl.data.validation import Rule, time_expression
from hfrl.errors import LogValidationError, NotFittedError
from hfrl.sparse import SparseTable

__all__ = [
    "HistoricalFrequency",
    "SegmentFrequency",
    "decay_expression",
    "fit_beta_binomial_prior",
    "rate_table",
    "share_table",
    "sparse_share_table",
]

#: ``sparse="auto"`` stores HF sparse from this many cells (128 MiB dense) when at most
#: ``SPARSE_MAX_FILL`` of them were logged.
SPARSE_FROM_CELLS = 1 << 24
SPARSE_MAX_FILL = 0.1
#: A sparse HF's bounds on its ids: ``n_states x n_actions`` cells (most of them empty) and ids of
#: one kind (its backoff row is dense over the actions). Dense tables hold ``MAX_TABLE_CELLS``.
SPARSE_MAX_CELLS = 10**12
SPARSE_MAX_IDS = 10**7

KINDS = ("share", "rate")
COUNTS = ("reward", "rows")
SMOOTHINGS = ("additive", "beta_binomial")
PRIOR_FITS = ("moments", "max_likelihood")
NORMALIZATIONS = ("sum", "softmax")


def _group_totals(values: np.ndarray, state_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` per group (states with group -1 are left out)."""
    totals = np.zeros((n_groups, values.shape[1]))
    known = state_group >= 0
    np.add.at(totals, state_group[known], values[known])
    return totals


def _parent_rows(group_rows: np.ndarray | None, state_group: np.ndarray | None, root: np.ndarray,
                 n_states: int) -> np.ndarray:
    """Each state's parent row: its group's row, or ``root`` (the global row) without a group."""
    parent = np.broadcast_to(root, (n_states, root.size)).copy()
    if group_rows is not None and state_group is not None:
        known = state_group >= 0
        parent[known] = group_rows[state_group[known]]
    return parent


def _global_row(action_totals: np.ndarray) -> np.ndarray:
    """All states pooled: each action's share of the events (uniform, with a warning, when none)."""
    total = action_totals.sum()
    if total > 0:
        return action_totals / total
    warnings.warn(
        "no events in the logs (every reward is 0): the global row is uniform; "
        "use count='rows' for action frequencies",
        RuntimeWarning,
        stacklevel=4,
    )
    return np.full(action_totals.size, 1.0 / action_totals.size)


def _shrink_shares(counts: np.ndarray, parent: np.ndarray, m: float) -> np.ndarray:
    """Rows ``(counts + m * parent) / (n + m)``, ``n`` the row total; an empty row is its parent."""
    return shrink(counts, counts.sum(axis=1, keepdims=True), parent, m)


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
    global_row = _global_row(counts.sum(axis=0))
    group_rows = None
    if state_group is not None:
        n_groups = int(state_group.max()) + 1 if (state_group >= 0).any() else 0
        group_rows = _shrink_shares(_group_totals(counts, state_group, n_groups), global_row, prior_strength)
    parent = _parent_rows(group_rows, state_group, global_row, n_states)
    probabilities = _shrink_shares(counts, parent, prior_strength)
    if seen is not None:
        probabilities[~seen] = global_row
    return probabilities, global_row


def sparse_share_table(
    counts: sp.csr_array,
    prior_strength: float,
    *,
    state_group: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> tuple[SparseTable, np.ndarray]:
    """``share_table`` on sparse counts, as a ``SparseTable``: every cell equals the dense table's.

    A row ``(counts[s] + m * parent) / (n_s + m)`` is kept as its logged cells
    ``counts[s] / (n_s + m)``, plus ``m / (n_s + m)`` of its parent; the parent (a group's row,
    itself its logged cells plus a share of the global row, or the global row) contributes its
    cells and its share of the global row, which is the one base row.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> counts = sp.csr_array(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    >>> table, global_row = sparse_share_table(counts, 1.0)
    >>> table.to_dense().round(4).tolist()
    [[0.75, 0.25, 0.0], [0.75, 0.25, 0.0]]
    >>> dense, _ = share_table(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), 1.0)
    >>> bool(np.allclose(dense, table.to_dense()))
    True
    """
    counts = sp.csr_array(counts, dtype=np.float64)
    n_states, n_actions = counts.shape
    global_row = _global_row(np.asarray(counts.sum(axis=0), dtype=np.float64).ravel())
    m = float(prior_strength)

    def shares(rows: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the weight of its own counts and of its parent in ``(counts + m * parent) / (n + m)``."""
        n = np.asarray(rows.sum(axis=1), dtype=np.float64).ravel()
        empty = n + m <= 0
        own = np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, n + m))
        return own, np.where(empty, 1.0, m * own)

    own, to_parent = shares(counts)
    parent_cells = sp.csr_array((n_states, n_actions))
    parent_global = np.ones(n_states)
    if state_group is not None and (state_group >= 0).any():
        n_groups = int(state_group.max()) + 1
        member = np.flatnonzero(state_group >= 0)
        membership = sp.csr_array((np.ones(member.size), (member, state_group[member])),
                                  shape=(n_states, n_groups))
        group_counts = sp.csr_array(membership.T @ counts)
        group_own, group_to_global = shares(group_counts)
        group_cells = sp.diags_array(group_own) @ group_counts
        parent_cells = sp.csr_array(membership @ group_cells)
        parent_global = np.where(state_group >= 0, group_to_global[np.maximum(state_group, 0)], 1.0)
    explicit = sp.diags_array(own) @ counts + sp.diags_array(to_parent) @ parent_cells
    base_weight = to_parent * parent_global
    if seen is not None:
        explicit = sp.diags_array(seen.astype(np.float64)) @ explicit
        base_weight = np.where(seen, base_weight, 1.0)
    return SparseTable.build(explicit, global_row[None, :], base_weight[:, None]), global_row


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
    Beta-Binomial: ``rate = (events + a0) / (exposure + a0 + b0)`` with ``beta_prior = (a0, b0)``,
    the same shrinkage toward the prior mean ``a0 / (a0 + b0)`` with strength ``a0 + b0``.
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
        prior_mean = np.array(a0 / (a0 + b0))
        rates = shrink(events, exposure, prior_mean, a0 + b0)
        global_rates = shrink(action_events, action_exposure, prior_mean, a0 + b0)
    else:
        overall = action_events.sum() / action_exposure.sum() if action_exposure.sum() > 0 else 0.0
        global_rates = shrink(action_events, action_exposure, np.array(overall), 0.0)
        group_rates = None
        if state_group is not None:
            n_groups = int(state_group.max()) + 1 if (state_group >= 0).any() else 0
            group_rates = shrink(_group_totals(events, state_group, n_groups),
                                 _group_totals(exposure, state_group, n_groups),
                                 global_rates[None, :], prior_strength)
        parent = _parent_rows(group_rates, state_group, global_rates, n_states)
        rates = shrink(events, exposure, parent, prior_strength)
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
    sparse : {"auto", True, False}, default "auto"
        Store the table as a ``hfrl.sparse.SparseTable`` (each state's logged cells plus the
        global backoff row; every cell equals the dense table's) instead of a dense array.
        ``"auto"``: sparse for ``kind="share"`` with additive smoothing when the table has at
        least ``SPARSE_FROM_CELLS`` cells and at most ``SPARSE_MAX_FILL`` of them were logged,
        or more cells than a dense table may hold (``MAX_TABLE_CELLS``). Sparse tables hold
        ``kind="share"`` with additive smoothing only; their ids are bounded by
        ``SPARSE_MAX_CELLS`` cells and ``SPARSE_MAX_IDS`` ids of a kind.

    Attributes
    ----------
    probabilities_ : ndarray of shape (n_states, n_actions), or SparseTable
        Rows are distributions; states never seen in the logs get ``global_``.
    counts_ : ndarray (n_states, n_actions), or scipy sparse array when sparse
        Events per (s, a): reward sums (or rows), weighted and decayed when asked.
    impressions_ : ndarray (n_states, n_actions) of int64, or scipy sparse array when sparse
        Rows per (s, a).
    exposures_ : ndarray (n_states, n_actions), or scipy sparse array when sparse
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
        sparse: bool | str = "auto",
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
        self.sparse = sparse

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
        if self.sparse not in ("auto", True, False):
            raise ValueError(f"sparse must be 'auto', True or False, got {self.sparse!r}")
        if self.sparse is True and (self.kind != "share" or self.smoothing != "additive"):
            raise ValueError("sparse=True holds kind='share' with smoothing='additive' only; "
                             f"got kind={self.kind!r}, smoothing={self.smoothing!r} (use sparse=False)")


    def _required(self) -> tuple[str, ...]:
        columns = [schema.STATE, schema.ACTION]
        if not (self.kind == "share" and self.count == "rows"):
            columns.append(schema.REWARD)
        columns += [c for c in (self.group_column, self.weight_column) if c is not None]
        if self.half_life is not None:
            columns.append(schema.TIMESTAMP)
        return tuple(columns)

    def _check_rewards(self, logs: Logs) -> None:
        """Rewards HF can count: >= 0 to sum events, in [0, 1] for Beta-Binomial rates."""
        if schema.REWARD not in self._required():
            return
        low, high = logs.proof.reward_observed
        x = schema.REWARD
        if self.smoothing == "beta_binomial" and (low < 0 or high > 1):
            logs.check(Rule(x, "a reward in [0, 1] (Beta-Binomial rates)", f"({x} < 0) + ({x} > 1)"))
        elif self.normalization == "sum" and low < 0:
            logs.check(Rule(x, "a non-negative reward (events are counted)", f"{x} < 0"))

    def _row_weight(self, logs: Logs) -> str:
        """The expression each row counts with: its weight times its time decay (``"1"`` for neither)."""
        factors = [self.weight_column] if self.weight_column is not None else []
        half_life = _half_life_seconds(self.half_life)
        if half_life is not None:
            reference = _reference_seconds(self.reference_time)
            if reference is None:
                if logs.proof.time_range is None:
                    raise LogValidationError(
                        "cannot find the latest timestamp of the logs; pass reference_time",
                        column=schema.TIMESTAMP, source=logs.name)
                reference = logs.proof.time_range[1]
            self.reference_time_ = reference
            factors.append(decay_expression(time_expression(logs.proof.time_kind), half_life, reference))
        return " * ".join(factors) if factors else "1"

    def sums_for(self, logs: Logs) -> dict[str, str]:
        """The per-row sums this HF needs beyond the standard cell statistics (empty without weights
        or decay): ask ``logs.statistics`` for them together with the estimators' to read the rows once."""
        weight = self._row_weight(logs)
        if weight == "1":
            return {}
        sums = {"hf_exposure": weight}
        if schema.REWARD in self._required():
            sums["hf_events"] = f"{schema.REWARD} * {weight}"
        return sums

    # ---------------------------------------------------------------- fit
    def fit(self, logs: Any, n_states: int | None = None, n_actions: int | None = None
            ) -> HistoricalFrequency:
        """Aggregate ``logs`` and build the table; returns ``self``.

        Parameters
        ----------
        logs : DataFrame, str/Path of a CSV or Parquet file or glob, or ``hfrl.data.Logs``
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
        limits = ({"max_cells": SPARSE_MAX_CELLS, "max_ids": SPARSE_MAX_IDS} if self._may_be_sparse()
                  else {})
        logs = as_logs(logs, self.backend, n_states=n_states, n_actions=n_actions, required=self._required(),
                       **limits)
        self._check_rewards(logs)
        if self.group_column is not None:
            logs.validate_column(self.group_column, "id")
        if self.weight_column is not None:
            logs.validate_column(self.weight_column, "weight")
        self.reference_time_ = None
        cells = logs.statistics(self.sums_for(logs))
        n_states, n_actions = n_states or logs.n_states, n_actions or logs.n_actions
        shape = (n_states, n_actions)
        if self._stores_sparse(cells.state.size, shape):
            return self._fit_sparse(logs, cells, shape)
        impressions = np.rint(cells.table(cells.count, shape)).astype(np.int64)
        exposure = cells.table(cells.extra.get("hf_exposure", cells.count), shape)
        if schema.REWARD in self._required():
            counts = cells.table(cells.extra.get("hf_events", cells.reward), shape)
        else:
            counts = exposure.copy()
        seen = impressions.sum(axis=1) > 0
        state_group = self._state_groups(logs, n_states) if self.group_column is not None else None

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
        self.fingerprint_ = logs.fingerprint
        return self

    def _may_be_sparse(self) -> bool:
        return self.sparse is not False and self.kind == "share" and self.smoothing == "additive"

    def _stores_sparse(self, n_cells: int, shape: tuple[int, int]) -> bool:
        if self.sparse != "auto":
            return bool(self.sparse)
        size = shape[0] * shape[1]
        return self._may_be_sparse() and size >= SPARSE_FROM_CELLS and (
            n_cells <= SPARSE_MAX_FILL * size or size > MAX_TABLE_CELLS)

    def _fit_sparse(self, logs: Logs, cells: Any, shape: tuple[int, int]) -> HistoricalFrequency:
        """``fit`` keeping the tables sparse (the same sums, ``sparse_share_table``)."""
        def table(values: np.ndarray) -> sp.csr_array:
            return sp.csr_array((values, (cells.state, cells.action)), shape=shape)

        impressions = table(np.rint(cells.count).astype(np.int64))
        exposure = table(cells.extra.get("hf_exposure", cells.count))
        counts = exposure
        if schema.REWARD in self._required():
            counts = table(cells.extra.get("hf_events", cells.reward))
        seen = np.asarray(impressions.sum(axis=1)).ravel() > 0
        state_group = self._state_groups(logs, shape[0]) if self.group_column is not None else None
        probabilities, global_row = sparse_share_table(counts, float(self.prior_strength),
                                                       state_group=state_group, seen=seen)
        self.beta_prior_ = None
        self.rates_ = None
        self.probabilities_ = probabilities
        self.counts_ = counts
        self.impressions_ = impressions
        self.exposures_ = exposure
        self.state_counts_ = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        self.global_ = global_row
        self.state_groups_ = state_group
        self.n_states_, self.n_actions_ = shape
        self.fingerprint_ = logs.fingerprint
        return self

    def _state_groups(self, logs: Logs, n_states: int) -> np.ndarray:
        """Group id of each state (-1 for unseen states); refuse a group column that varies within a state."""
        pairs = logs.backend.group_sums(logs.source, [schema.STATE, self.group_column], {"rows": "1"})
        states = pairs[schema.STATE].to_numpy(dtype=np.int64)
        groups = pairs[self.group_column].to_numpy(dtype=np.int64)
        repeated = np.flatnonzero(np.diff(states) == 0) if states.size > 1 else np.empty(0, np.int64)
        if repeated.size:
            state = int(states[repeated[0]])
            listed = groups[states == state].tolist()
            raise LogValidationError(
                f"column {self.group_column!r} must be a function of state: state {state} appears in "
                f"groups {listed}; {np.unique(states[repeated]).size} states do",
                column=self.group_column, count=int(np.unique(states[repeated]).size), source=logs.name,
            )
        state_group = np.full(n_states, -1, dtype=np.int64)
        state_group[states] = groups
        return state_group

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


class SegmentFrequency:
    """Historical frequency for users described by features: HF by segment, a contextual ``Policy``.

    A user's segment is the value of ``segment_column`` when the logs have one, else the nearest of
    ``n_segments`` k-means centres (scikit-learn, ``random_state``) fitted on the standardised
    ``context_columns``. Within segments it is ``HistoricalFrequency`` (``hf_options``: kind,
    prior_strength, ...), with the same smoothing toward the global row; a segment never seen gets
    the global row. ``probabilities(contexts)`` maps each context to its segment's row.

    Parameters
    ----------
    context_columns : sequence of str
        The feature columns (what ``probabilities`` reads, as a DataFrame or an array in this order).
    n_segments : int, default 20
    segment_column : str, optional
        An integer segment id per row, used instead of k-means (``probabilities`` then reads it).
    random_state : int, optional
    **hf_options
        Passed to ``HistoricalFrequency``.

    Attributes
    ----------
    hf_ : HistoricalFrequency
        Fitted with the segment as its state.
    centres_ : ndarray (n_segments, n_features), or None with ``segment_column``
    n_actions : int
    fingerprint_ : tuple
        The fingerprint of the logs it was fit on (``hfrl.tune`` refuses to tune on the same rows).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"x": [0.0, 0.1, 5.0, 5.1], "action": [0, 0, 1, 1], "reward": 1.0})
    >>> hf = SegmentFrequency(["x"], n_segments=2, random_state=0, prior_strength=0)
    >>> hf.fit(logs, n_actions=2).probabilities(np.array([[0.05], [4.9]])).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, context_columns: Any, n_segments: int = 20, *, segment_column: str | None = None,
                 random_state: int | None = None, **hf_options: Any) -> None:
        self.context_columns = list(context_columns)
        self.n_segments = n_segments
        self.segment_column = segment_column
        self.random_state = random_state
        self.hf_options = hf_options

    def fit(self, logs: Any, n_actions: int | None = None) -> SegmentFrequency:
        """Segment the logged users and fit HF per segment; returns self."""
        reads = [self.segment_column] if self.segment_column is not None else self.context_columns
        required = [schema.ACTION, schema.REWARD, *reads]
        validated = as_logs(logs, required=required, n_actions=n_actions)
        frame = validated.frame([schema.ACTION, schema.REWARD, *reads])
        if self.segment_column is not None:
            validated.validate_column(self.segment_column, "id")
            segments = frame[self.segment_column].to_numpy(np.int64)
            self.centres_ = None
        else:
            from sklearn.cluster import KMeans

            features = self._features(frame)
            self.mean_, self.scale_ = features.mean(axis=0), features.std(axis=0) + 1e-12
            k = min(int(self.n_segments), len(frame))
            model = KMeans(n_clusters=k, n_init=4, random_state=self.random_state)
            segments = model.fit_predict((features - self.mean_) / self.scale_)
            self.centres_ = model.cluster_centers_
        by_segment = pd.DataFrame({schema.STATE: segments, schema.ACTION: frame[schema.ACTION],
                                   schema.REWARD: frame[schema.REWARD]})
        n_segments = int(segments.max()) + 1 if self.segment_column is not None else len(self.centres_)
        self.hf_ = HistoricalFrequency(**self.hf_options).fit(by_segment, n_states=n_segments,
                                                              n_actions=n_actions or validated.n_actions)
        self.n_actions = self.hf_.n_actions_
        self.fingerprint_ = validated.fingerprint  # the rows HF was fit on, for the leakage check
        return self

    def _features(self, contexts: Any) -> np.ndarray:
        if isinstance(contexts, pd.DataFrame):
            return contexts[self.context_columns].to_numpy(np.float64)
        return np.asarray(contexts, dtype=np.float64).reshape(len(contexts), -1)

    def segments(self, contexts: Any) -> np.ndarray:
        """Each context's segment (k-means: the nearest centre)."""
        if self.segment_column is not None:
            values = (contexts[self.segment_column] if isinstance(contexts, pd.DataFrame)
                      else np.asarray(contexts).reshape(len(contexts), -1)[:, 0])
            segments = np.asarray(values, dtype=np.int64)
            return np.where((segments >= 0) & (segments < self.hf_.n_states_), segments, -1)
        standard = (self._features(contexts) - self.mean_) / self.scale_
        distances = ((standard[:, None, :] - self.centres_[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1)

    def probabilities(self, contexts: Any) -> np.ndarray:
        segments = self.segments(contexts)
        rows = self.hf_.probabilities_[np.maximum(segments, 0)]
        rows[segments < 0] = self.hf_.global_  # a segment id never seen
        return rows

    def action_probabilities(self, contexts: Any, actions: Any) -> np.ndarray:
        return self.probabilities(contexts)[np.arange(len(actions)), np.asarray(actions, dtype=np.int64)]

    def sample(self, contexts: Any, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        from hfrl.policies import TabularPolicy

        segments = self.segments(contexts)
        table = TabularPolicy(np.vstack([self.hf_.probabilities_, self.hf_.global_]))
        return table.sample(np.where(segments < 0, table.n_states - 1, segments), random_state=random_state)

    def top_k(self, contexts: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self.probabilities(contexts)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(probabilities, order, axis=1)

    def save(self, path: Any) -> Any:
        """The segment table as a ``TabularPolicy`` artifact, with the segmenter in its metadata."""
        kmeans = self.centres_ is not None
        metadata = {"segments": {
            "context_columns": self.context_columns, "segment_column": self.segment_column,
            "centres": self.centres_.tolist() if kmeans else None,
            "mean": self.mean_.tolist() if kmeans else None,
            "scale": self.scale_.tolist() if kmeans else None}}
        return self.hf_.to_policy(metadata).save(path)
