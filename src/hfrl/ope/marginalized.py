"""Marginalised IPS (Saito & Joachims 2022): a policy's value over a catalog too large for per-item weights.

With 100,000 items, the per-item weight ``pi(a|x) / pi_0(a|x)`` of IPS is huge whenever the target
favours an item the logging policy rarely showed, and its variance grows with the catalog. When
items are described by a discrete embedding (category, brand, price band), MIPS weighs a logged row
by how much more often the target shows the row's *embedding* than the logging policy did::

    w(x, e) = p(e | x, pi) / p(e | x, pi_0),    p(e | x, pi) = sum of pi(a | x) over items a with embedding e

Embeddings here are deterministic: item ``a`` has one embedding ``e(a)``, an integer id, or a tuple of
``d`` integer ids (``item_embeddings`` of shape ``(n_actions, d)``); a tuple is one category, the
joint one (two items share an embedding when they agree in every dimension). The weight of a
logged row is at most the largest per-item weight among the items sharing its embedding, and far
smaller on average when many items share one (``ess`` in the result, against ``"ips"`` on the same
rows).

================  ====================================  =============================================
estimator         estimate                              unbiased when
================  ====================================  =============================================
mips              ``mean_i w(x_i, e_i) r_i``            no direct effect: the reward depends on the item
                                                        only through its embedding; common embedding
                                                        support (``pi_0`` shows every embedding ``pi``
                                                        shows)
snmips            ``sum_i w_i r_i / sum_i w_i``         as mips (self-normalised: consistent, bounded by
                                                        the reward range, slightly biased)
ips, snips        the per-item weight ``pi / p``        common item support (for the comparison)
================  ====================================  =============================================

The logging policy's embedding marginal ``p(e | x, pi_0)`` needs its full distribution: from
``logging_policy`` when given, else estimated from the logs as the frequency of each embedding among
the rows of each ``state`` (then the estimate is the target's embedding mix applied to the logged
mean reward of each (state, embedding) cell; the target's mass on cells never logged is left out,
reported as ``unobserved_share``). The result's ``propensity_source`` names which.

Target rows ``pi(. | x)`` are needed in full to sum over the items of an embedding: a tabular policy
is read once per distinct logged state, a contextual one batch by batch, never more than about
``CELL_BUDGET`` probabilities at once. Intervals and standard errors are those of ``evaluate``
(``hfrl.ope.inference``), with the estimators' formulas shared with IPS and SNIPS
(``hfrl.ope.estimators``): MIPS is IPS with the marginal weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data import Logs, as_logs, schema
from hfrl.ope.estimators import IPS, SNIPS, Estimator
from hfrl.ope.evaluate import (
    LARGE_SAMPLE_ESS,
    PROPENSITY_HINT,
    check_estimators,
    is_contextual,
    likelihood_interval,
    moment_interval,
)
from hfrl.ope.inference import INTERVALS, Sums, bootstrap_interval, check_level, poisson_bootstrap
from hfrl.ope.support import UNOBSERVED_WARNING_SHARE, SupportWarning
from hfrl.ope.targets import RowInputs
from hfrl.policies import Policy, TabularPolicy, resolve_rng

__all__ = ["EMBEDDED_ASSUMPTIONS", "EMBEDDED_ESTIMATORS", "MIPS", "SNMIPS", "ItemEmbedding",
           "evaluate_embedded"]

EMBEDDED_ESTIMATORS = ("mips", "snmips", "ips", "snips")
EMBEDDED_ASSUMPTIONS = {
    "mips": "no direct effect (the reward depends on the item only through its embedding); "
            "common embedding support",
    "snmips": "no direct effect (the reward depends on the item only through its embedding); "
              "common embedding support",
    "ips": "common item support",
    "snips": "common item support",
}
CELL_BUDGET = 2_000_000  # (rows x items) probabilities held at once
_GRAM_ROWS = 1 << 20
# with an estimated logging marginal, the target's mass on unlogged cells is left out (bias): warn from 1%
ESTIMATED_UNOBSERVED_WARNING_SHARE = 0.01
S, A, R, P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY


# ---------------------------------------------------------------------------------------------
# the estimators: IPS and SNIPS with the marginal weight


class MIPS(IPS):
    """Marginalised IPS (Saito & Joachims 2022): ``V = mean_i w(x_i, e_i) r_i`` with the embedding weight
    ``w(x, e) = p(e | x, pi) / p(e | x, pi_0)`` in place of IPS's per-item weight (the formula is IPS's).

    Unbiased under two assumptions: no direct effect (``E[r | x, a] = E[r | x, e(a)]``: the reward
    depends on the item only through its embedding) and common embedding support (``p(e | x, pi_0) > 0``
    wherever ``p(e | x, pi) > 0``). Without the first its bias is
    ``E_x sum_e p(e | x, pi) (E_pi0[r | x, e] - E_pi[r | x, e])``: each embedding's items are weighed as
    the logging policy mixed them, not as the target does; without the second the target's mass on
    embeddings the logging policy never shows is missing (``support_violation_share``).
    """

    name = "mips"


class SNMIPS(SNIPS):
    """Self-normalised marginalised IPS: ``V = sum_i w_i r_i / sum_i w_i`` with MIPS's weights.

    The assumptions of ``MIPS``; bounded by the reward range whatever the weights, consistent, with a
    bias of order 1/n on top of MIPS's when the assumptions fail (the same limit: each embedding's
    items weighed as the logging policy mixed them).
    """

    name = "snmips"


_ESTIMATORS: dict[str, type[Estimator]] = {"mips": MIPS, "snmips": SNMIPS, "ips": IPS, "snips": SNIPS}


# ---------------------------------------------------------------------------------------------
# item embeddings


@dataclass(frozen=True)
class ItemEmbedding:
    """Each item's embedding as a dense id ``0..n_embeddings-1`` and the sum of rows over embeddings.

    Attributes
    ----------
    ids : int64 ndarray (n_actions,)
        Item ``a``'s embedding id (the distinct embedding values, or tuples, in sorted order).
    n_embeddings : int

    Examples
    --------
    >>> embedding = ItemEmbedding.of([7, 3, 7, 3, 9], n_actions=5)
    >>> embedding.ids.tolist(), embedding.n_embeddings
    ([1, 0, 1, 0, 2], 3)
    >>> embedding.marginals(np.array([[0.1, 0.2, 0.3, 0.2, 0.2]])).round(3).tolist()
    [[0.4, 0.4, 0.2]]
    """

    ids: np.ndarray
    n_embeddings: int
    _order: np.ndarray
    _starts: np.ndarray

    @classmethod
    def of(cls, item_embeddings: Any, n_actions: int) -> ItemEmbedding:
        """Check ``item_embeddings`` (shape ``(n_actions,)`` or ``(n_actions, d)``, integer values) and
        number its distinct values (rows, for ``d > 1``); ValueError naming the first bad item."""
        values = np.asarray(item_embeddings)
        if values.ndim not in (1, 2) or values.shape[0] != n_actions or values.size == 0:
            raise ValueError(f"item_embeddings must have shape (n_actions,) or (n_actions, d) with "
                             f"n_actions={n_actions} (one embedding per item), got shape {values.shape}")
        if values.dtype.kind == "b":
            values = values.astype(np.int64)
        if values.dtype.kind not in "iu":
            numbers = (np.asarray(values, dtype=np.float64) if values.dtype.kind == "f"
                       else np.full(values.shape, np.nan))
            bad = ~(np.isfinite(numbers) & (np.mod(numbers, 1.0) == 0))
            if bad.any():
                item, *dimension = (int(i) for i in np.argwhere(bad)[0])
                where = f"item {item}" + (f", dimension {dimension[0]}" if dimension else "")
                found = values[(item, *dimension)].item()
                raise ValueError(
                    f"item_embeddings: {where} has {found!r} (dtype {values.dtype}), "
                    "expected an integer category id; MIPS here needs discrete embeddings (bin continuous "
                    "features, number labels with pandas.factorize)")
            values = numbers.astype(np.int64)
        if values.ndim == 2:
            _, ids = np.unique(values, axis=0, return_inverse=True)
        else:
            _, ids = np.unique(values, return_inverse=True)
        ids = ids.ravel().astype(np.int64)
        order = np.argsort(ids, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
        return cls(ids, int(starts.size), order, starts)

    def marginals(self, probabilities: np.ndarray) -> np.ndarray:
        """``p(e | x) = sum of p(a | x) over the items with embedding e``: ``(m, n_embeddings)`` for rows
        of shape ``(m, n_actions)``."""
        if self.n_embeddings == self.ids.size:  # every item its own embedding: a permutation
            out = np.empty_like(probabilities)
            out[:, self.ids] = probabilities
            return out
        return np.add.reduceat(probabilities[:, self._order], self._starts, axis=1)


# ---------------------------------------------------------------------------------------------
# the policies read at the logged rows


@dataclass
class RowFacts:
    """What the estimators need per logged row, and the support facts.

    ``target_e`` / ``logging_e``: ``p(e_i | x_i, pi)`` and ``p(e_i | x_i, pi_0)``; ``target_a`` /
    ``logging_a``: ``pi(a_i | x_i)`` and the logging propensity (None when ips is not asked for);
    ``mips_bound`` / ``ips_bound``: the largest weight any row could have; ``violation`` and
    ``unobserved``: the target's embedding mass (averaged over rows) where ``pi_0``'s marginal is 0,
    and on (state, embedding) cells never logged (NaN when not known).
    """

    reward: np.ndarray
    target_e: np.ndarray
    logging_e: np.ndarray
    target_a: np.ndarray | None
    logging_a: np.ndarray | None
    mips_bound: float
    ips_bound: float
    violation: float
    unobserved: float


def _rows_per_chunk(n_actions: int) -> int:
    return max(1, CELL_BUDGET // max(n_actions, 1))


def _state_frequency(state: np.ndarray, e: np.ndarray, n_embeddings: int) -> np.ndarray:
    """``p_hat(e_i | s_i)`` per row: the share of state ``s_i``'s rows whose item has embedding ``e_i``."""
    _, cell, count = np.unique(state * n_embeddings + e, return_inverse=True, return_counts=True)
    _, state_of_row, state_rows = np.unique(state, return_inverse=True, return_counts=True)
    return count[cell.ravel()] / state_rows[state_of_row.ravel()]


def read_tabular(frame: pd.DataFrame, policy: TabularPolicy, logging_policy: TabularPolicy | None,
                 embedding: ItemEmbedding, need_items: bool) -> RowFacts:
    """Both policies tables (or no logging policy): each distinct logged state's row is read once, in
    chunks of states, and its embedding marginal kept only at the (state, embedding) cells logged."""
    state = frame[S].to_numpy(np.int64)
    action = frame[A].to_numpy(np.int64)
    n_emb = embedding.n_embeddings
    e = embedding.ids[action]
    states, where = np.unique(state, return_inverse=True)
    where = where.ravel()
    keys, cell, cell_count = np.unique(where * n_emb + e, return_inverse=True, return_counts=True)
    cell = cell.ravel()
    cell_state, cell_e = keys // n_emb, keys % n_emb
    state_rows = np.bincount(where, minlength=states.size).astype(np.float64)
    target_cell = np.empty(keys.size)
    logging_cell = (np.empty(keys.size) if logging_policy is not None
                    else cell_count / state_rows[cell_state])
    bound = np.zeros(states.size)
    violation = np.zeros(states.size)
    unobserved = np.zeros(states.size)
    top = np.zeros(states.size)
    step = _rows_per_chunk(policy.n_actions)
    for s0 in range(0, states.size, step):
        s1 = min(states.size, s0 + step)
        lo, hi = np.searchsorted(keys, [s0 * n_emb, s1 * n_emb])
        local, at = cell_state[lo:hi] - s0, cell_e[lo:hi]
        rows = policy.probabilities(states[s0:s1])
        top[s0:s1] = rows.max(axis=1)
        target = embedding.marginals(rows)
        target_cell[lo:hi] = target[local, at]
        logged_mass = np.bincount(local, weights=target_cell[lo:hi], minlength=s1 - s0)
        unobserved[s0:s1] = np.maximum(target.sum(axis=1) - logged_mass, 0.0)
        if logging_policy is not None:
            logging = embedding.marginals(logging_policy.probabilities(states[s0:s1]))
            logging_cell[lo:hi] = logging[local, at]
            with np.errstate(divide="ignore", invalid="ignore"):
                bound[s0:s1] = np.where(logging > 0, target / logging, 0.0).max(axis=1)
            violation[s0:s1] = np.where(logging > 0, 0.0, target).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cell_weight = np.where(logging_cell > 0, target_cell / logging_cell, 0.0)
    if logging_policy is None:  # the largest weight the logged cells show (unlogged cells weigh 0)
        np.maximum.at(bound, cell_state, cell_weight)
    reward = frame[R].to_numpy(np.float64)
    target_a = logging_a = None
    ips_bound = float("nan")
    if need_items:
        target_a = policy.action_probabilities(state, action)
        logging_a = (frame[P].to_numpy(np.float64) if P in frame.columns
                     else logging_policy.action_probabilities(state, action))  # type: ignore[union-attr]
        ips_bound = float(top.max() / logging_a.min())
    n = float(state.size)
    return RowFacts(
        reward, target_cell[cell], logging_cell[cell], target_a, logging_a, float(bound.max()), ips_bound,
        float(violation @ state_rows / n) if logging_policy is not None else float("nan"),
        float(unobserved @ state_rows / n))


def _contexts(policy: Any, batch: pd.DataFrame, context_columns: Sequence[str] | None) -> Any:
    if isinstance(policy, TabularPolicy):
        return batch[S].to_numpy(np.int64)
    return batch[list(context_columns or ())]


def read_rows(logs: Logs, columns: list[str], policy: Any, logging_policy: Any, embedding: ItemEmbedding,
              context_columns: Sequence[str] | None, need_items: bool) -> RowFacts:
    """Any policy (contextual ones): batches of rows, each policy's full rows for a batch at a time."""
    n_actions = policy.n_actions
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("reward", "target_e", "logging_e", "target_a",
                                                          "logging_a", "state", "e")}
    bound = violation = 0.0
    top = 0.0
    for batch in logs.batches(columns, _rows_per_chunk(n_actions)):
        action = batch[A].to_numpy(np.int64)
        e = embedding.ids[action]
        index = np.arange(action.size)
        rows = np.asarray(policy.probabilities(_contexts(policy, batch, context_columns)), dtype=np.float64)
        target = embedding.marginals(rows)
        parts["reward"].append(batch[R].to_numpy(np.float64))
        parts["target_e"].append(target[index, e])
        parts["e"].append(e)
        if S in batch.columns:
            parts["state"].append(batch[S].to_numpy(np.int64))
        top = max(top, float(rows.max(initial=0.0)))
        if need_items:
            parts["target_a"].append(rows[index, action])
        logging_rows = None
        if logging_policy is not None:
            logging_rows = np.asarray(logging_policy.probabilities(
                _contexts(logging_policy, batch, context_columns)), dtype=np.float64)
            logging = embedding.marginals(logging_rows)
            parts["logging_e"].append(logging[index, e])
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = max(bound, float(np.where(logging > 0, target / logging, 0.0).max(initial=0.0)))
            violation += float(np.where(logging > 0, 0.0, target).sum())
        if need_items:
            parts["logging_a"].append(batch[P].to_numpy(np.float64) if P in batch.columns
                                      else logging_rows[index, action])  # type: ignore[index]
    joined = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    reward, target_e = joined["reward"], joined["target_e"]
    assert reward is not None and target_e is not None
    n = reward.size
    unobserved = float("nan")
    if logging_policy is None:
        assert joined["state"] is not None and joined["e"] is not None
        logging_e = _state_frequency(joined["state"], joined["e"], embedding.n_embeddings)
        bound = float((target_e / logging_e).max(initial=0.0))
    else:
        logging_e = joined["logging_e"]
    logging_a = joined["logging_a"]
    ips_bound = top / float(logging_a.min()) if logging_a is not None else float("nan")
    return RowFacts(reward, target_e, logging_e, joined["target_a"], logging_a, bound,  # type: ignore[arg-type]
                    ips_bound, violation / n if logging_policy is not None else float("nan"), unobserved)


# ---------------------------------------------------------------------------------------------
# sums, intervals and the public function


def _columns(estimator: Estimator, weight: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """``(1, term, normalizer, influence, weight)`` per row, in the order of ``Sums``."""
    zeros = np.zeros_like(weight)
    x = RowInputs(weight, reward, zeros, zeros, None)
    normalizer = estimator.normalizer(x)
    return np.stack([np.ones_like(weight), estimator.term(x),
                     np.ones_like(weight) if normalizer is None else normalizer,
                     estimator.influence(x), estimator.weight(x)])


def _sums(estimator: Estimator, weight: np.ndarray, reward: np.ndarray) -> Sums:
    """The Gram matrix of ``_columns`` over rows, a block of rows at a time."""
    gram = np.zeros((5, 5))
    for start in range(0, weight.size, _GRAM_ROWS):
        block = _columns(estimator, weight[start:start + _GRAM_ROWS], reward[start:start + _GRAM_ROWS])
        gram += block @ block.T
    return Sums(gram, isinstance(estimator, SNIPS))


def _method(interval: str, name: str, ess: float, known: bool) -> str:
    if interval == "auto":
        return "empirical_likelihood" if known and ess < LARGE_SAMPLE_ESS else "normal"
    if interval == "empirical_likelihood" and not known:
        raise ValueError(f"interval='empirical_likelihood' for {name!r} needs weights of mean 1 under the "
                         "logging policy: pass logging_policy (an estimated marginal does not give them)")
    return interval


def _check_policy(policy: Any, name: str) -> None:
    if not isinstance(policy, Policy) or not hasattr(policy, "n_actions"):
        raise TypeError(f"{name} must be a hfrl.policies.Policy (TabularPolicy or a contextual policy), "
                        f"got {type(policy).__name__}")


def evaluate_embedded(
    logs: Any,
    policy: Any,
    item_embeddings: Any,
    logging_policy: Any = None,
    estimators: str | Iterable[str] = ("mips", "snmips"),
    level: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    backend: str | Backend | None = None,
    *,
    interval: str = "auto",
    reward_range: tuple[float, float] | None = None,
    context_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Estimate a policy's value over a large catalog with marginalised IPS on item embeddings.

    Parameters
    ----------
    logs : DataFrame, path of CSV/Parquet files, or ``hfrl.data.Logs``
        Columns ``action``, ``reward``; ``state`` for a tabular policy (and to estimate the logging
        marginal); the ``context_columns`` of a contextual policy; ``propensity`` for ``"ips"`` and
        ``"snips"`` unless ``logging_policy`` is given (mips and snmips never read it).
    policy : TabularPolicy or contextual ``hfrl.policies.Policy``
        The target, read at each row's ``state`` (a table) or ``context_columns`` (a contextual policy).
    item_embeddings : integer array of shape (n_actions,) or (n_actions, d)
        Each item's discrete embedding (category, brand, price band, ...). With ``d > 1`` the tuple of
        the ``d`` values is one category (the joint embedding), not ``d`` separate ones.
    logging_policy : Policy, optional
        The policy that logged the rows (a table read at ``state``, or a contextual policy read at
        ``context_columns``); its embedding marginal makes the weights exact. Without it the marginal
        is estimated as the frequency of each embedding among each state's logged rows
        (``propensity_source`` says which).
    estimators : str or sequence of str
        Any of ``"mips"``, ``"snmips"`` and, for comparison on the same rows, ``"ips"``, ``"snips"``.
    level : float
    n_bootstrap : int
        Poisson bootstrap resamples over rows (0: none); adds ``boot_*`` columns.
    random_state : int, Generator or None
    backend : {"memory", "duckdb", "spark"}, Backend or None
        Where the logs are validated; the rows are then read into memory (in batches for a contextual
        policy).
    interval : {"auto", "normal", "empirical_likelihood", "bernstein"}
        ``"auto"``: empirical likelihood below an effective sample size of 20,000 when the weights are
        exact (mips with ``logging_policy``, ips with propensities), normal otherwise.
    reward_range : (low, high), optional
    context_columns : sequence of str, optional
        The feature columns a contextual policy reads.

    Returns
    -------
    DataFrame
        One row per estimator, the columns of ``evaluate``: ``estimate``, ``std_error``, ``ci_low``,
        ``ci_high``, ``interval``, ``ess`` (effective sample size of the weights), ``max_weight`` (the
        largest logged weight), ``clipped_share`` (0), ``n_rows``, ``support_violation_share`` (the
        target's embedding mass where the logging policy's is 0: bias; NaN without
        ``logging_policy``), ``unobserved_share`` (its mass on (state, embedding) cells not logged:
        bias with an estimated marginal, variance otherwise; NaN for contextual policies),
        ``propensity_source`` (``"logging policy"``, ``"estimated (embedding frequency per state)"``,
        or for ips ``"logged"``), ``reward_model`` (not used), ``level``; then ``assumption`` and
        ``n_embeddings``.

    Raises
    ------
    ValueError
        ``item_embeddings`` of the wrong length or not integers, a ``logging_policy`` over another
        number of items, an unknown estimator or interval.

    Warns
    -----
    SupportWarning
        When the target shows embeddings the logging policy cannot (bias), or when at least half of
        its embedding mass is on (state, embedding) cells not logged.

    Notes
    -----
    Both mips and snmips are unbiased (snmips consistent) when the reward depends on the item only
    through its embedding, ``E[r | x, a] = E[r | x, e(a)]`` (no direct effect), and the logging
    policy shows every embedding the target shows. When items of one embedding differ in reward,
    the estimate weighs them as the logging policy mixed them within the embedding, not as the
    target does: the bias is ``E_x sum_e p(e|x, pi) (E_{pi_0}[r | x, e] - E_pi[r | x, e])``, zero when
    the two policies mix the items of each embedding alike. A finer embedding removes bias and adds
    variance; embeddings equal to the item ids give IPS exactly. With an estimated marginal the
    standard error takes the frequencies as fixed, which overstates it (estimating them from the
    same rows lowers the variance).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hfrl.policies import TabularPolicy
    >>> rng = np.random.default_rng(0)
    >>> category = np.arange(1000) % 10                    # 1,000 items in 10 categories
    >>> logging = TabularPolicy.uniform(1, 1000)
    >>> actions = rng.integers(0, 1000, 5000)
    >>> logs = pd.DataFrame({"state": 0, "action": actions, "propensity": 1 / 1000,
    ...                      "reward": rng.random(5000) < 0.1 + 0.05 * category[actions]})
    >>> target = TabularPolicy(np.eye(1000)[[9]])            # always item 9, of category 9
    >>> result = evaluate_embedded(logs, target, category, logging, ("mips", "ips"))
    >>> bool(result.loc["mips", "ess"] > 40 * result.loc["ips", "ess"])
    True
    >>> bool(result.loc["mips", "ci_low"] < 0.55 < result.loc["mips", "ci_high"])
    True
    """
    names = check_estimators(estimators, EMBEDDED_ESTIMATORS, "embedded estimator")
    level = check_level(level)
    if interval != "auto" and interval not in INTERVALS:
        raise ValueError(f"interval must be 'auto' or one of {INTERVALS}, got {interval!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 \
            or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    _check_policy(policy, "policy")
    n_actions = int(policy.n_actions)
    if logging_policy is not None:
        _check_policy(logging_policy, "logging_policy")
        if int(logging_policy.n_actions) != n_actions:
            raise ValueError(f"logging_policy has n_actions={logging_policy.n_actions} but the target policy "
                             f"has {n_actions}: both must be over the same items")
    embedding = ItemEmbedding.of(item_embeddings, n_actions)
    need_items = any(n in ("ips", "snips") for n in names)
    contextual = [p for p in (policy, logging_policy) if p is not None and is_contextual(p)]
    if contextual and not context_columns:
        raise ValueError("a contextual policy needs context_columns=[...]: the feature columns it reads")
    needed = [A, R]
    tabular = [p for p in (policy, logging_policy) if isinstance(p, TabularPolicy)]
    if tabular or logging_policy is None:
        needed.append(S)
    if contextual:
        needed += [c for c in context_columns or () if c not in needed]
    hints = {S: "a tabular policy reads it, and without logging_policy the logging marginal is estimated "
                "per state; pass logging_policy (and context_columns) otherwise"}
    validated = as_logs(logs, backend, required=needed, hints=hints, n_actions=n_actions,
                        reward_range=reward_range)
    for p in tabular:
        validated.require_ids(n_states=p.n_states)
    if need_items and logging_policy is None:
        validated.require(P, hints={P: PROPENSITY_HINT.format(needed="estimators 'ips' and 'snips'")
                                    + " (or pass logging_policy)"})
    if need_items and validated.has(P):
        needed.append(P)
    if not contextual and isinstance(policy, TabularPolicy):
        facts = read_tabular(validated.frame(needed), policy, logging_policy, embedding, need_items)
    else:
        facts = read_rows(validated, needed, policy, logging_policy, embedding, context_columns, need_items)
    if logging_policy is not None:
        _check_logged(facts)
    _warn(facts, logging_policy is not None)
    marginal_source = ("logging policy" if logging_policy is not None
                       else "estimated (embedding frequency per state)")
    item_source = "logged" if validated.has(P) else "logging policy"
    with np.errstate(divide="ignore", invalid="ignore"):
        w_embedded = np.where(facts.logging_e > 0, facts.target_e / facts.logging_e, 0.0)
        w_item = None if facts.target_a is None else facts.target_a / facts.logging_a
    rows, chosen = [], []
    for name in names:
        embedded = name in ("mips", "snmips")
        estimator = _ESTIMATORS[name]()
        weight = w_embedded if embedded else w_item
        assert weight is not None
        sums = _sums(estimator, weight, facts.reward)
        ess = float(sums.ess())
        known = logging_policy is not None or not embedded
        bound = facts.mips_bound if embedded else facts.ips_bound
        method = _method(interval, name, ess, known)
        if method == "empirical_likelihood":
            term = weight * facts.reward
            low, high = likelihood_interval((weight, term, np.ones_like(term)), estimator, bound,
                                            validated.reward_range, level)
        else:
            low, high = moment_interval(method, sums, estimator, bound, validated.reward_range, level)
        chosen.append((estimator, weight))
        rows.append({
            "estimate": float(sums.estimate()), "std_error": float(sums.std_error()),
            "ci_low": float(low), "ci_high": float(high), "interval": method, "ess": ess,
            "max_weight": float(weight.max(initial=0.0)), "clipped_share": 0.0, "n_rows": int(weight.size),
            "support_violation_share": facts.violation if embedded else float("nan"),
            "unobserved_share": facts.unobserved if embedded else float("nan"),
            "propensity_source": marginal_source if embedded else item_source, "reward_model": "not used",
            "level": level, "assumption": EMBEDDED_ASSUMPTIONS[name],
            "n_embeddings": embedding.n_embeddings if embedded else n_actions,
        })
    frame = pd.DataFrame(rows, index=pd.Index(names, name="estimator"))
    if n_bootstrap:
        frame = frame.join(_bootstrap(chosen, facts.reward, names, int(n_bootstrap), random_state, level))
    return frame


def _bootstrap(chosen: list[tuple[Estimator, np.ndarray]], reward: np.ndarray, names: Sequence[str],
               n_bootstrap: int, random_state: Any, level: float) -> pd.DataFrame:
    """Poisson bootstrap over rows, paired across estimators; identical rows are drawn as one atom."""
    columns = [_columns(e, w, reward)[[1, 2]] for e, w in chosen]  # term and normalizer
    stacked = np.concatenate(columns).T  # (n, 2 * n_estimators)
    atoms, count = np.unique(stacked, axis=0, return_counts=True)
    replicates = poisson_bootstrap(count.astype(np.float64), atoms[:, 0::2], atoms[:, 1::2], n_bootstrap,
                                   resolve_rng(random_state))
    low, high, spread = bootstrap_interval(replicates, level)
    return pd.DataFrame({"boot_std_error": spread, "boot_ci_low": low, "boot_ci_high": high,
                         "n_bootstrap": n_bootstrap}, index=list(names))


def _check_logged(facts: RowFacts) -> None:
    """A logging policy that gives a logged row's embedding (or item) probability 0 did not log the rows."""
    for values, what in ((facts.logging_e, "the embedding of"), (facts.logging_a, "the item of")):
        if values is not None and not (values > 0).all():
            row = int(np.flatnonzero(~(values > 0))[0])
            raise ValueError(
                f"logging_policy gives probability 0 to {what} logged row {row} "
                f"({int((~(values > 0)).sum()):,} rows): it cannot have logged these rows; pass the "
                "policy that did, or leave logging_policy out to estimate its marginal from the logs")


def _warn(facts: RowFacts, known: bool) -> None:
    if known and facts.violation > 0:
        warnings.warn(
            f"support violation: the target policy puts {100 * facts.violation:.3g}% of its embedding mass "
            "(averaged over logged rows) on embeddings the logging policy never shows in that context; "
            "mips and snmips ignore that mass and are biased there", SupportWarning, stacklevel=3)
    if facts.unobserved >= (UNOBSERVED_WARNING_SHARE if known else ESTIMATED_UNOBSERVED_WARNING_SHARE):
        consequence = ("the estimate rests on few rows (high variance)" if known else
                       "with the marginal estimated from the logs, that mass is left out of the estimate "
                       "(bias)")
        warnings.warn(
            f"the target policy puts {100 * facts.unobserved:.3g}% of its embedding mass on (state, "
            f"embedding) cells not seen in these rows: {consequence}", SupportWarning, stacklevel=3)
