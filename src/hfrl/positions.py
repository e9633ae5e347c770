"""HF for rankings: position bias, position-debiased and per-position HF, and the blend of rankings.

On a ranked page a click depends on the item and on its slot: under the position-based model (PBM)
``E[r | item a at position j, state s] = theta_j * relevance(s, a)``, ``theta_j`` the probability
that a user examines position ``j``. Counting raw clicks credits the items a past ranker put on top.

- ``examination_probabilities``: ``theta_j / theta_0`` from a ranking log, with standard errors;
- ``PositionFrequency``: HF over a ranking log where a click at position ``j`` counts ``1 / theta_j``
  (``kind="share"``) or clicks are divided by expected examinations (``kind="rate"``), or HF per
  (state, position) (``per_position=True``); the counting and smoothing are ``HistoricalFrequency``'s;
- ``blend_rankings``: ``(1 - alpha) * pi + alpha * HF`` for ranking policies, blended at the item
  level and ranked by Plackett-Luce.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hfrl.blending import blend
from hfrl.data import Logs, as_logs, schema
from hfrl.data.validation import Rule
from hfrl.errors import NotFittedError
from hfrl.frequencies import HistoricalFrequency
from hfrl.policies import RankingPolicy, TabularPolicy, resolve_rng

__all__ = ["PositionFrequency", "blend_rankings", "examination_probabilities"]

EXAMINATION_COLUMNS = ("position", "theta", "std_error", "ci_low", "ci_high", "impressions", "clicks",
                       "matched_items")
WEIGHT = "position_weight"  # the per-row weight handed to HistoricalFrequency
STATE_GROUP = "position_state_group"  # per_position: the state, as the parent level of (state, position)


# ---------------------------------------------------------------------------------------------
# checks at the edge


def _open_ranking_logs(logs: Any, backend: Any, n_states: int | None, n_actions: int | None,
                       extra: tuple[str, ...] = ()) -> Logs:
    """Validate a ranking log: ``position``, ``action``, ``reward`` (``state`` optional); clicks >= 0."""
    required = (schema.POSITION, schema.ACTION, schema.REWARD, *extra)
    validated = as_logs(logs, backend, n_states=n_states, n_actions=n_actions, required=required,
                        hints={schema.POSITION: "a ranking log has one row per (slate, 0-based position)"})
    if validated.proof.reward_observed[0] < 0:
        validated.check(Rule(schema.REWARD, "a non-negative reward (clicks are counted)",
                             f"{schema.REWARD} < 0"))
    return validated


def _check_positions(logs: Logs, n_positions: int | None, why: str) -> int:
    """The number of positions: ``n_positions`` (every logged position below it) or the largest + 1."""
    largest = int(logs.backend.key_ranges(logs.source, [schema.POSITION])[schema.POSITION][1])
    if n_positions is None:
        return largest + 1
    if isinstance(n_positions, bool) or not isinstance(n_positions, int | np.integer) or n_positions < 1:
        raise ValueError(f"n_positions must be a positive integer or None, got {n_positions!r}")
    if largest >= n_positions:
        logs.check(Rule(schema.POSITION, f"a position in [0, {int(n_positions)}) ({why})",
                        f"{schema.POSITION} >= {int(n_positions)}"))
    return int(n_positions)


def _check_theta(theta: Any) -> np.ndarray:
    values = np.asarray(theta, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("theta must be one examination probability per position (1-D), "
                         f"got shape {values.shape}")
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"theta must be finite and > 0 at every position: theta[{j}] = {values[j]} "
                         f"({int(bad.sum())} of {values.size} positions are not)")
    return values


# ---------------------------------------------------------------------------------------------
# examination probabilities


def _mantel_haenszel(impressions: np.ndarray, clicks: np.ndarray, binary: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position ``j``: the Mantel-Haenszel ratio of click rates at ``j`` vs 0 over the strata
    (rows) shown at both, the variance of its log (Greenland and Robins 1985) and the strata used.

    ``impressions`` and ``clicks`` are ``(n_strata, n_positions)``. With ``a, n1`` clicks and
    impressions at ``j``, ``b, n0`` at 0, ``N = n0 + n1``: ``theta = R / S``, ``R = sum a n0 / N``,
    ``S = sum b n1 / N``, ``Var(log theta) = sum ((a + b) n1 n0 / N^2 - [binary] a b / N) / (R S)``.
    """
    n_positions = impressions.shape[1]
    theta = np.full(n_positions, np.nan)
    var_log = np.full(n_positions, np.nan)
    matched = np.zeros(n_positions, dtype=np.int64)
    theta[0], var_log[0], matched[0] = 1.0, 0.0, int((impressions[:, 0] > 0).sum())
    for j in range(1, n_positions):
        both = (impressions[:, 0] > 0) & (impressions[:, j] > 0)
        matched[j] = int(both.sum())
        n1, a = impressions[both, j], clicks[both, j]
        n0, b = impressions[both, 0], clicks[both, 0]
        total = n0 + n1
        r, s = float(np.sum(a * n0 / total)), float(np.sum(b * n1 / total))
        if s <= 0:  # no matched item, or none clicked at position 0
            continue
        theta[j] = r / s
        if r > 0:
            spread = (a + b) * n1 * n0 / total**2 - (a * b / total if binary else 0.0)
            var_log[j] = max(float(np.sum(spread)), 0.0) / (r * s)
    return theta, var_log, matched


def examination_probabilities(
    logs: Any,
    n_positions: int | None = None,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    backend: Any = None,
) -> pd.DataFrame:
    """The position-based model's examination probability of each position, relative to position 0.

    Under the position-based model ``E[r | a at j, s] = theta_j * relevance(s, a)``, so within one
    (state, item) the click rate at ``j`` over the click rate at 0 is ``theta_j / theta_0``.
    The estimate pools that ratio over every (state, item) shown at both positions with the
    Mantel-Haenszel estimator of a common rate ratio (a stratified ratio: each (state, item) is its
    own stratum). Because items are compared only with themselves, **no propensities are needed**
    and the logging policy may favour some items at the top: it must only choose slates from the
    state (not from something else that also drives clicks) and show each item at several
    positions. Pooling raw click totals per position instead is right only when the logging policy
    randomises every item uniformly over positions (an item's chance at ``j`` equal to its chance
    at 0); otherwise it needs inverse-propensity weights, which the stratified ratio does without.

    Standard errors: the Greenland-Robins (1985) variance of ``log theta_j`` (binomial form for 0/1
    clicks, Poisson form for counts), valid for many small strata, with the interval
    ``exp(log theta_j +- z se)``; ``std_error`` is on the ``theta`` scale (``theta * se``, delta
    method). With ``n_bootstrap`` the standard error of ``log theta_j`` is instead that of a Poisson
    bootstrap over slates (``slate_id`` needed), which also allows for clicks that depend on each
    other within a slate.

    Parameters
    ----------
    logs : DataFrame, path or ``hfrl.data.Logs``
        A ranking log (``position``, ``action``, ``reward``; ``state`` optional).
    n_positions : int, optional
        Positions ``0..n_positions-1``; default the largest logged position + 1. A logged position
        beyond it is refused.
    confidence : float, default 0.95
    n_bootstrap : int, default 0
    random_state : int or Generator, optional
        The bootstrap's seed.
    backend : {"memory", "duckdb", "spark"}, optional
        Where the per-(state, item, position) sums run.

    Returns
    -------
    DataFrame
        One row per position: ``position``, ``theta`` (``theta_0 = 1``), ``std_error``,
        ``ci_low``, ``ci_high``, ``impressions`` and ``clicks`` (rows and reward sum at the position)
        and ``matched_items`` (the (state, item) strata shown at both ``j`` and 0). ``theta`` is NaN
        where no item was shown at both or none of them was clicked at 0; ``std_error`` is NaN when
        no matched item was clicked at ``j``.

    Raises
    ------
    LogValidationError
        A missing ``position``/``action``/``reward`` column, a position >= ``n_positions``,
        negative rewards (the message names the column and the first bad row).

    References
    ----------
    Mantel and Haenszel (1959); Greenland and Robins (1985), "Estimation of a common effect
    parameter from sparse follow-up data", Biometrics 41. For the position-based model: Wang et al.
    (2018), "Position bias estimation for unbiased learning to rank in personal search".

    Examples
    --------
    >>> from hfrl.envs import SlateEnv, collect_slate_logs
    >>> from hfrl.policies import RankingPolicy, TabularPolicy
    >>> env = SlateEnv(n_segments=2, n_items=8, k=3, examination=[1.0, 0.6, 0.3])
    >>> uniform = RankingPolicy.from_policy(TabularPolicy.uniform(2, 8), 3)
    >>> table = examination_probabilities(collect_slate_logs(env, uniform, 20_000, seed=0))
    >>> list(table.columns)
    ['position', 'theta', 'std_error', 'ci_low', 'ci_high', 'impressions', 'clicks', 'matched_items']
    >>> bool(((table.ci_low <= env.examination) & (env.examination <= table.ci_high)).all())
    True
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    validated = _open_ranking_logs(logs, backend, None, None, (schema.SLATE_ID,) if n_bootstrap else ())
    k = _check_positions(validated, n_positions, "n_positions")
    binary = validated.binary_reward
    keys = [schema.STATE, schema.ACTION] if validated.has(schema.STATE) else [schema.ACTION]
    cells = validated.backend.group_sums(validated.source, [*keys, schema.POSITION],
                                         {"rows": "1", "clicks": schema.REWARD})
    strata, stratum = np.unique(cells[keys].to_numpy(np.int64), axis=0, return_inverse=True)
    position = cells[schema.POSITION].to_numpy(np.int64)
    impressions = np.zeros((len(strata), k))
    clicks = np.zeros((len(strata), k))
    impressions[stratum.ravel(), position] = cells["rows"].to_numpy()
    clicks[stratum.ravel(), position] = cells["clicks"].to_numpy()
    theta, var_log, matched = _mantel_haenszel(impressions, clicks, binary)
    if n_bootstrap:
        var_log = _bootstrap_var_log(validated, keys, k, binary, int(n_bootstrap), random_state)
    se_log = np.sqrt(var_log)
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    with np.errstate(invalid="ignore"):
        table = pd.DataFrame({
            "position": np.arange(k), "theta": theta, "std_error": theta * se_log,
            "ci_low": theta * np.exp(-z * se_log), "ci_high": theta * np.exp(z * se_log),
            "impressions": impressions.sum(axis=0).astype(np.int64), "clicks": clicks.sum(axis=0),
            "matched_items": matched,
        })
    table.attrs["method"] = "bootstrap" if n_bootstrap else "greenland_robins"
    table.attrs["confidence"] = float(confidence)
    return table


def _bootstrap_var_log(logs: Logs, keys: list[str], k: int, binary: bool, n_bootstrap: int,
                       random_state: Any) -> np.ndarray:
    """Variance of ``log theta_j`` over a Poisson bootstrap of slates (each slate's rows weighted alike)."""
    frame = logs.frame([schema.SLATE_ID, *keys, schema.POSITION, schema.REWARD])
    slate = pd.factorize(frame[schema.SLATE_ID])[0]
    _, stratum = np.unique(frame[keys].to_numpy(np.int64), axis=0, return_inverse=True)
    n_strata = int(stratum.max()) + 1
    cell = stratum.ravel() * k + frame[schema.POSITION].to_numpy(np.int64)
    reward = frame[schema.REWARD].to_numpy(np.float64)
    rng = resolve_rng(random_state)
    logs_theta = np.full((n_bootstrap, k), np.nan)
    for b in range(n_bootstrap):
        weight = rng.poisson(1.0, int(slate.max()) + 1)[slate].astype(np.float64)
        shown = np.bincount(cell, weights=weight, minlength=n_strata * k).reshape(n_strata, k)
        clicked = np.bincount(cell, weights=weight * reward, minlength=n_strata * k).reshape(n_strata, k)
        with np.errstate(divide="ignore"):
            logs_theta[b] = np.log(_mantel_haenszel(shown, clicked, binary)[0])
    logs_theta[~np.isfinite(logs_theta)] = np.nan
    with np.errstate(invalid="ignore"):
        var = np.nanvar(logs_theta, axis=0, ddof=1) if n_bootstrap > 1 else np.full(k, np.nan)
    var[0] = 0.0
    return var


# ---------------------------------------------------------------------------------------------
# HF over ranking logs


class PositionFrequency:
    """Historical frequency over a ranking log: position-debiased, or one distribution per position.

    ``per_position=False`` (default): one item distribution per state, with each click credited for
    the position it was made at. ``kind="share"``: a click at position ``j`` counts ``1 / theta_j``
    (the clicks the item would have had had every slot been examined like position 0), so
    ``HF(a|s)`` is the debiased share of state ``s``'s clicks that went to ``a``. ``kind="rate"``:
    clicks per expected examination, ``sum r / sum theta_j`` over the item's impressions, an
    estimate of ``relevance(s, a)`` (with ``theta`` absolute, e.g. known, or relative to
    position 0), made a distribution by ``normalization``. A share still grows with how often an
    item was shown at all; the rate does not.

    ``per_position=True``: HF per (state, position), each row the share (or rate) of the clicks at
    that position; ``theta`` is a constant within a position and cancels, so none is needed. Rows
    are smoothed toward the state's row pooled over positions (then toward the global row).

    The counting, smoothing and normalisation are ``HistoricalFrequency``'s (``hf_options``): the
    debiasing is a per-row weight (``weight_column``; for rates the reward becomes ``r / theta_j``
    with weight ``theta_j``, so events are clicks and exposure examinations). The rows are read into
    memory once.

    Parameters
    ----------
    kind : {"share", "rate"}, default "share"
    theta : array-like of shape (n_positions,), optional
        Examination probability of each position (> 0). Default: estimated from the logs by
        ``examination_probabilities`` (relative to position 0).
    per_position : bool, default False
    n_positions : int, optional
        Default ``len(theta)``, else the largest logged position + 1; a logged position beyond it
        is refused.
    confidence : float, default 0.95
        Of the intervals in ``examination_`` when theta is estimated.
    **hf_options
        Passed to ``HistoricalFrequency`` (``prior_strength``, ``normalization``, ``group_column``,
        ``weight_column`` (multiplied into the position weight), ``half_life``, ``backend``, ...).

    Attributes
    ----------
    probabilities_ : ndarray (n_states, n_actions), or (n_states * n_positions, n_actions) per position
        Rows are distributions. Per position, row ``state * n_positions + position``
        (``context_ids``); ``position_table_`` is the same numbers as (n_states, n_positions, n_actions).
    theta_ : ndarray (n_positions,) or None
        The examination probabilities used (None per position).
    examination_ : DataFrame or None
        ``examination_probabilities``' table when theta was estimated (with standard errors).
    hf_ : HistoricalFrequency
        The fitted HF (its ``counts_``, ``rates_``, ``state_counts_``, ...).
    counts_, global_, state_counts_ : ndarray
        ``hf_``'s (debiased clicks per cell for ``kind="share"``).
    n_states_, n_actions_, n_positions_ : int
    fingerprint_ : tuple
        ``hfrl.backends.fingerprint`` of the ranking log.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"slate_id": [0, 0, 1, 1], "position": [0, 1, 0, 1],
    ...                      "action": [0, 1, 1, 0], "reward": [1, 1, 1, 0]})
    >>> hf = PositionFrequency(theta=[1.0, 0.5], prior_strength=0).fit(logs)
    >>> hf.counts_.tolist()  # item 1's click at position 1 counts 2
    [[1.0, 3.0]]
    >>> hf.probabilities_.tolist()
    [[0.25, 0.75]]
    >>> PositionFrequency(per_position=True, prior_strength=0).fit(logs).position_table_.tolist()
    [[[0.5, 0.5], [0.0, 1.0]]]
    """

    def __init__(self, kind: str = "share", *, theta: Any = None, per_position: bool = False,
                 n_positions: int | None = None, confidence: float = 0.95, **hf_options: Any) -> None:
        self.kind = kind
        self.theta = theta
        self.per_position = per_position
        self.n_positions = n_positions
        self.confidence = confidence
        self.hf_options = hf_options

    def __repr__(self) -> str:
        return f"PositionFrequency(kind={self.kind!r}, per_position={self.per_position!r})"

    def _check_parameters(self) -> np.ndarray | None:
        if self.kind not in ("share", "rate"):
            raise ValueError(f"kind must be one of ('share', 'rate'), got {self.kind!r}")
        if self.hf_options.get("count", "reward") != "reward":
            raise ValueError("count='rows' counts impressions, not clicks: use HistoricalFrequency for it")
        if self.hf_options.get("smoothing", "additive") != "additive" and not self.per_position:
            raise ValueError("smoothing='beta_binomial' needs rewards in [0, 1]; debiased clicks "
                             "(r / theta_j) are not: use the additive smoothing (prior_strength)")
        if self.per_position and self.theta is not None:
            raise ValueError("theta is not used with per_position=True: within one position it is a "
                             "constant factor and cancels out of each row")
        return None if self.theta is None else _check_theta(self.theta)

    def fit(self, logs: Any, n_states: int | None = None, n_actions: int | None = None
            ) -> PositionFrequency:
        """Estimate theta if needed, weight the rows, fit ``HistoricalFrequency``; returns ``self``.

        Parameters
        ----------
        logs : DataFrame, path or ``hfrl.data.Logs``
            A ranking log: ``position``, ``action``, ``reward`` (``state`` optional: one state
            without it), plus the columns ``hf_options`` name.
        n_states, n_actions : int, optional

        Raises
        ------
        ValueError
            A bad parameter, theta <= 0, or an estimated theta that is 0 or unknown at a logged
            position (pass ``theta``).
        LogValidationError
            A missing column (``position`` among them), a position >= ``n_positions`` or
            ``len(theta)``, negative rewards; the message names the column and the first bad row.
        """
        theta = self._check_parameters()
        options = dict(self.hf_options)
        backend = options.pop("backend", None)
        user_weight = options.get("weight_column")
        carried = [c for c in (options.get("group_column"), user_weight) if c is not None]
        if options.get("half_life") is not None:
            carried.append(schema.TIMESTAMP)
        validated = _open_ranking_logs(logs, backend, n_states, n_actions, tuple(carried))
        if user_weight is not None:
            validated.validate_column(user_weight, "weight")
        n_positions = self.n_positions if self.n_positions is not None else (
            None if theta is None else theta.size)
        why = "n_positions" if self.n_positions is not None or theta is None else "one theta per position"
        k = _check_positions(validated, n_positions, why)
        if theta is not None and theta.size < k:
            raise ValueError(f"theta has {theta.size} values but n_positions is {k}: one per position")
        self.examination_ = None
        if theta is None and not self.per_position:
            self.examination_ = examination_probabilities(validated, k, confidence=self.confidence)
            theta = self.examination_["theta"].to_numpy()
            bad = ~np.isfinite(theta) | (theta <= 0)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"the estimated examination probability of position {j} is {theta[j]}: the "
                    "estimate needs items shown at both it and position 0 and clicked at each; pass theta")

        has_state = validated.has(schema.STATE)
        frame = validated.frame([c for c in (schema.STATE, schema.ACTION, schema.POSITION, schema.REWARD,
                                             *carried) if c in validated.columns and c is not None])
        frame = frame.loc[:, ~frame.columns.duplicated()].copy()
        states = frame[schema.STATE].to_numpy(np.int64) if has_state else np.zeros(len(frame), np.int64)
        n_states = n_states or (validated.n_states if has_state else 1)
        n_actions = n_actions or validated.n_actions
        position = frame[schema.POSITION].to_numpy(np.int64)
        weight = np.ones(len(frame))
        if self.per_position:
            frame[schema.STATE] = states * k + position
            if options.get("group_column") is None:
                frame[STATE_GROUP] = states
                options["group_column"] = STATE_GROUP
            hf_states = n_states * k
        else:
            frame[schema.STATE] = states
            row_theta = theta[position]
            if self.kind == "share":
                weight = 1.0 / row_theta
            else:  # events sum r, exposure sums theta: clicks per examination
                weight = row_theta
                frame[schema.REWARD] = frame[schema.REWARD].to_numpy(np.float64) / row_theta
            hf_states = n_states
        if user_weight is not None:
            weight = weight * frame[user_weight].to_numpy(np.float64)
        frame[WEIGHT] = weight
        options["weight_column"] = WEIGHT
        self.hf_ = HistoricalFrequency(self.kind, **options).fit(frame, n_states=hf_states,
                                                                 n_actions=n_actions)

        self.theta_ = None if self.per_position else theta[:k]
        self.n_states_, self.n_actions_, self.n_positions_ = int(n_states), int(n_actions), int(k)
        self.probabilities_ = self.hf_.probabilities_
        self.position_table_ = (self.probabilities_.reshape(n_states, k, n_actions) if self.per_position
                                else None)
        self.counts_ = self.hf_.counts_
        self.global_ = self.hf_.global_
        self.state_counts_ = self.hf_.state_counts_
        self.fingerprint_ = validated.fingerprint
        return self

    def context_ids(self, states: Any, positions: Any) -> np.ndarray:
        """Per position: the row of ``probabilities_`` (and the ``to_policy()`` state) of each
        (state, position): ``state * n_positions + position``."""
        self._check_fitted()
        if not self.per_position:
            raise ValueError("context_ids applies to per_position=True; the rows are the states")
        s, j = np.broadcast_arrays(np.asarray(states, np.int64), np.asarray(positions, np.int64))
        if (j < 0).any() or (j >= self.n_positions_).any():
            raise ValueError(f"positions must be in [0, {self.n_positions_})")
        return s * self.n_positions_ + j

    def _check_fitted(self) -> None:
        if not hasattr(self, "probabilities_"):
            raise NotFittedError("this PositionFrequency is not fitted yet; call fit(logs) first")

    def to_policy(self, metadata: dict[str, Any] | None = None) -> TabularPolicy:
        """The table as a ``TabularPolicy`` (per position: states are ``context_ids``)."""
        self._check_fitted()
        info = {"source": "PositionFrequency", "per_position": bool(self.per_position),
                "n_positions": self.n_positions_,
                "theta": None if self.theta_ is None else [float(t) for t in self.theta_],
                "theta_estimated": self.examination_ is not None}
        info.update(metadata or {})
        return self.hf_.to_policy(info)


# ---------------------------------------------------------------------------------------------
# the blend of ranking policies


def _item_policy(value: Any, name: str) -> Any:
    """The item policy (or table) behind a ranking, HF or policy argument."""
    if isinstance(value, RankingPolicy):
        return value.policy
    if isinstance(value, PositionFrequency):
        value._check_fitted()
        if value.per_position:
            raise ValueError(f"{name} is a per-position HF (one distribution per (state, position)); a "
                             "Plackett-Luce ranking needs one item distribution per state: fit it "
                             "with per_position=False")
        return value.to_policy()
    return value


def blend_rankings(pi_ranking: Any, hf: Any, alpha: Any, k: int | None = None, method: str = "linear"
                   ) -> RankingPolicy:
    """The blend of ranking policies: ``RankingPolicy.from_policy(blend(pi_item, hf_item, alpha), k)``.

    HF of a ranking log is an item distribution per state (``PositionFrequency``: the
    position-debiased share of clicks per item), and a Plackett-Luce ranking is its item policy
    drawn slot by slot. The formula ``(1 - alpha) * pi + alpha * HF`` is about which item is
    chosen; it applies where both are item distributions, and the blended ranking is the
    Plackett-Luce ranking of the blended item policy: its top slot is drawn from exactly
    ``(1 - alpha) * pi + alpha * HF``, each later slot from the same formula renormalised over the
    items not yet shown; ``alpha = 0`` gives ``pi``'s ranking and ``alpha = 1`` HF's. It stays a
    Plackett-Luce ranking, so its slate, cascade and marginal propensities are exact and the
    ranking estimators (``hfrl.ope.evaluate_slates``) and ``tune``-style alpha curves apply.

    It is **not** the mixture of the two rankings (a whole slate from ``pi``'s ranking with
    probability ``1 - alpha``, else from HF's): below the top slot, its position marginals are not
    ``(1 - alpha) * P_pi(a at j) + alpha * P_HF(a at j)``, the mixture's (see the example).

    Parameters
    ----------
    pi_ranking : RankingPolicy, or an item ``Policy`` / table (then ``k`` is required)
    hf : PositionFrequency (per_position=False), HistoricalFrequency, TabularPolicy, RankingPolicy
        (its item policy), array, or a contextual ``Policy``
    alpha : float in [0, 1], or one value per state
    k : int, optional
        Slate size; default ``pi_ranking.k``.
    method : {"linear", "geometric"}
        As ``hfrl.blending.blend``.

    Returns
    -------
    RankingPolicy

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.policies import RankingPolicy, TabularPolicy
    >>> pi = RankingPolicy.from_policy(TabularPolicy(np.array([[0.8, 0.1, 0.1]])), 2)
    >>> hf = TabularPolicy(np.array([[0.1, 0.1, 0.8]]))
    >>> blended = blend_rankings(pi, hf, 0.5)
    >>> blended.item_probabilities([0]).round(3).tolist()
    [[0.45, 0.1, 0.45]]
    >>> marginals = blended.position_probabilities([0])[0]
    >>> mixture = (0.5 * pi.position_probabilities([0])[0]
    ...            + 0.5 * RankingPolicy.from_policy(hf, 2).position_probabilities([0])[0])
    >>> bool(np.allclose(marginals[0], mixture[0]))  # the top slot: the formula itself
    True
    >>> marginals[1].round(3).tolist(), mixture[1].round(3).tolist()  # slot 1: not the mixture
    ([0.418, 0.164, 0.418], [0.294, 0.411, 0.294])
    """
    ranking_k = pi_ranking.k if isinstance(pi_ranking, RankingPolicy) else None
    k = ranking_k if k is None else k
    if k is None:
        raise ValueError("k is required when pi_ranking is an item policy, not a RankingPolicy")
    item = blend(_item_policy(pi_ranking, "pi_ranking"), _item_policy(hf, "hf"), alpha, method)
    return RankingPolicy.from_policy(item, int(k))

