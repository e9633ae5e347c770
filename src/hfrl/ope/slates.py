"""Off-policy evaluation of rankings: a ``RankingPolicy``'s value from logged slates.

The logs follow the ranking schema (``hfrl.data.schema``): one row per (slate, position). For a
logged slate ``i`` with items ``a_0..a_{K-1}``, rewards ``r_0..r_{K-1}`` and context ``x`` (its
``state``), and a target ranking ``pi``, each estimator's value is the mean over slates of one
per-slate term (the formula in each function's docstring), each unbiased under its own assumption
about how the slate's items produce the rewards:

================  =====================================================  ==========================
estimator         per-slate term                                         holds when
================  =====================================================  ==========================
sips              ``w(slate) sum_j r_j``                                 always (common support)
iips              ``sum_j w_j r_j``, ``w_j = pi(a_j at j) / p(a_j at j)``  ``r_j`` depends on ``a_j``, j
rips              ``sum_j w_{0:j} r_j`` (cascade weights)                ``r_j`` depends on ``a_0..a_j``
cascade_dr        rips with a reward model as control variate            as rips
pseudo_inverse    ``theta_i sum_j r_j``                                  the slate reward is additive
================  =====================================================  ==========================

Intervals and diagnostics are those of ``hfrl.ope.evaluate``, from ``hfrl.ope.inference``: normal
intervals from the per-slate terms (slates are independent), empirical likelihood for ``sips``
(whose weight has mean 1 under the logging policy), empirical Bernstein for the importance-weighted
three, and a Poisson bootstrap over slates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data import as_logs, schema, shrink
from hfrl.data.validation import format_value
from hfrl.errors import LogValidationError
from hfrl.ope.evaluate import check_estimators
from hfrl.ope.inference import (
    Sums,
    bernstein_interval,
    bootstrap_interval,
    check_level,
    empirical_likelihood_interval,
    merge_rows,
    normal_quantile,
    poisson_bootstrap,
)
from hfrl.policies import RankingPolicy, resolve_rng
from hfrl.rankings import (
    MAX_PREFIX_STATES,
    conditional_propensities,
    enumerate_slates,
    plackett_luce_marginals,
)

__all__ = ["SLATE_ASSUMPTIONS", "SLATE_ESTIMATORS", "SlateLogs", "evaluate_slates", "read_slates"]

SLATE_ESTIMATORS = ("sips", "iips", "rips", "cascade_dr", "pseudo_inverse")
SLATE_ASSUMPTIONS = {
    "sips": "none (the slate's weight)",
    "iips": "item-position: r_j depends only on the item at j",
    "rips": "cascade: r_j depends only on the items at positions 0..j",
    "cascade_dr": "cascade: r_j depends only on the items at positions 0..j",
    "pseudo_inverse": "additive: E[sum_j r_j] = sum_j phi(j, a_j)",
}
_NEEDS = {"sips": schema.SLATE_PROPENSITY, "iips": schema.PROPENSITY, "rips": schema.CASCADE_PROPENSITY,
          "cascade_dr": schema.CASCADE_PROPENSITY, "pseudo_inverse": None}
LARGE_SAMPLE_ESS = 20_000.0
MAX_PSEUDO_INVERSE_SIZE = 2_000  # k * n_actions above which the pseudo-inverse is refused


# ---------------------------------------------------------------------------------------------
# the logs as one row per slate


@dataclass(frozen=True)
class SlateLogs:
    """Ranking logs as arrays with one row per slate, positions in order.

    Attributes
    ----------
    slate_id : ndarray (n_slates,)
        The logged ids, in the order of the rows here.
    state : int64 ndarray (n_slates,)
        Each slate's context (0 for all when the logs have no ``state``).
    actions, rewards : ndarrays (n_slates, k)
    propensity, cascade_propensity : ndarrays (n_slates, k) or None
    slate_propensity : ndarray (n_slates,) or None
    reward_range : (low, high)
        Of one position's reward.
    """

    slate_id: np.ndarray
    state: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensity: np.ndarray | None
    cascade_propensity: np.ndarray | None
    slate_propensity: np.ndarray | None
    reward_range: tuple[float, float]

    @property
    def n_slates(self) -> int:
        return int(self.actions.shape[0])

    @property
    def k(self) -> int:
        return int(self.actions.shape[1])


def read_slates(logs: Any, n_actions: int, required: Iterable[str] = (), backend: str | Backend | None = None,
                reward_range: tuple[float, float] | None = None) -> SlateLogs:
    """Validate ranking logs and arrange them one slate per row.

    Every slate must hold positions ``0..K-1`` exactly once (the same ``K`` for all), one ``state``
    and one ``slate_propensity``; the errors name the first slate that does not.
    """
    needed = (*schema.RANKING_COLUMNS, *required)
    hints = {schema.PROPENSITY: "iips reads each item's marginal probability at its position; leave "
                                "'iips' out of estimators for logs without it (an export of explored lists)"}
    validated = as_logs(logs, backend, n_actions=n_actions, required=needed, reward_range=reward_range,
                        hints=hints)
    optional = (schema.STATE, schema.PROPENSITY, schema.CASCADE_PROPENSITY, schema.SLATE_PROPENSITY)
    present = [c for c in optional if validated.has(c)]
    frame = validated.frame([*schema.RANKING_COLUMNS, *present])
    codes, ids = pd.factorize(frame[schema.SLATE_ID], sort=False)
    position = frame[schema.POSITION].to_numpy(np.int64)
    order = np.lexsort((position, codes))
    codes, position = codes[order], position[order]
    sizes = np.bincount(codes)
    k = int(sizes.max())
    name = validated.name

    def fail(slate: int, what: str, column: str) -> LogValidationError:
        label = format_value(ids[slate])
        return LogValidationError(f"{validated.describe()}slate {label} {what}", column=column, source=name)

    if (sizes != k).any():
        slate = int(np.flatnonzero(sizes != k)[0])
        raise fail(slate, f"has {sizes[slate]} rows, other slates have {k}: every slate needs positions "
                   f"0..{k - 1} once", schema.POSITION)
    expected = np.tile(np.arange(k), sizes.size)
    if (position != expected).any():
        slate = int(codes[np.flatnonzero(position != expected)[0]])
        seen = sorted(position[codes == slate].tolist())
        raise fail(slate, f"has positions {seen}, expected 0..{k - 1} once", schema.POSITION)

    def per_slot(column: str) -> np.ndarray:
        return frame[column].to_numpy()[order].reshape(-1, k)

    def per_slate(column: str) -> np.ndarray:
        values = per_slot(column)
        varies = (values != values[:, :1]).any(axis=1)
        if varies.any():
            raise fail(int(np.flatnonzero(varies)[0]),
                       f"has several values of {column!r}; it must be one per slate", column)
        return values[:, 0]

    state = (per_slate(schema.STATE).astype(np.int64) if schema.STATE in present
             else np.zeros(sizes.size, dtype=np.int64))
    return SlateLogs(
        slate_id=np.asarray(ids), state=state, actions=per_slot(schema.ACTION).astype(np.int64),
        rewards=per_slot(schema.REWARD).astype(np.float64),
        propensity=per_slot(schema.PROPENSITY).astype(np.float64) if schema.PROPENSITY in present else None,
        cascade_propensity=(per_slot(schema.CASCADE_PROPENSITY).astype(np.float64)
                            if schema.CASCADE_PROPENSITY in present else None),
        slate_propensity=(per_slate(schema.SLATE_PROPENSITY).astype(np.float64)
                          if schema.SLATE_PROPENSITY in present else None),
        reward_range=validated.reward_range,
    )


# ---------------------------------------------------------------------------------------------
# the target read at the logged slates


@dataclass
class SlateTarget:
    """A target ranking read at the logged slates: probabilities of the logged items, lazily the marginals."""

    policy: RankingPolicy
    slates: SlateLogs
    rows: np.ndarray  # item rows of the distinct states
    where: np.ndarray  # each slate's index into rows
    cascade: np.ndarray  # (n, k): pi(a_0..a_j | x)
    picked: np.ndarray  # (n, k): pi(a_j | x), the item policy at the logged items
    max_states: int = MAX_PREFIX_STATES
    _marginal_table: np.ndarray | None = None

    @classmethod
    def read(cls, policy: RankingPolicy, slates: SlateLogs, max_states: int = MAX_PREFIX_STATES
             ) -> SlateTarget:
        rows, where = policy._distinct_rows(slates.state)
        picked = rows[where[:, None], slates.actions]
        cascade = np.cumprod(conditional_propensities(picked, slates.actions), axis=1)
        return cls(policy, slates, rows, where, cascade, picked, max_states)

    @property
    def marginal_table(self) -> np.ndarray:
        """``P(a at j | x)`` per distinct state, shape ``(n_distinct, k, n_actions)``."""
        if self._marginal_table is None:
            self._marginal_table = np.stack([plackett_luce_marginals(r, self.policy.k, self.max_states)
                                             for r in self.rows])
        return self._marginal_table

    @property
    def marginal(self) -> np.ndarray:
        """``P(a_j at j | x)`` at the logged items, shape ``(n, k)``."""
        k = self.policy.k
        return self.marginal_table[self.where[:, None], np.arange(k)[None, :], self.slates.actions]


# ---------------------------------------------------------------------------------------------
# the estimators: per-slate terms


@dataclass(frozen=True)
class SlateTerms:
    """Per-slate terms of one estimator: its value, its importance weight (for the ESS) and the
    largest per-slot weight it used."""

    term: np.ndarray
    weight: np.ndarray
    max_weight: float
    # the largest weight a slot could have: the target's largest probability / the smallest propensity
    weight_bound: float = float("nan")
    propensity_source: str = "logged"
    reward_model: str = "not used"


def sips(target: SlateTarget) -> SlateTerms:
    """Standard slate IPS (Li et al. 2018; McInerney et al. 2020): ``w(slate) * sum_j r_j``,
    ``w(slate) = pi(slate | x) / slate_propensity``.

    Assumption: none about the rewards; unbiased whenever the logging policy gives every slate the
    target can show a positive probability. Its weights are the largest of the five.
    """
    logs = target.slates
    w = target.cascade[:, -1] / logs.slate_propensity
    bound = float(target.cascade[:, -1].max() / logs.slate_propensity.min())
    return SlateTerms(w * logs.rewards.sum(axis=1), w, float(w.max(initial=0.0)), bound)


def iips(target: SlateTarget) -> SlateTerms:
    """Independent IPS (Li et al. 2018): ``sum_j w_j r_j``, ``w_j = pi(a_j at j | x) / propensity_j``
    (position marginals of both policies).

    Assumption (item-position model): the reward at position j depends only on the context, the
    item at j and j, not on the other items (e.g. the position-based click model).
    """
    logs = target.slates
    w = target.marginal / logs.propensity
    bound = float(target.marginal_table.max() / logs.propensity.min())
    return SlateTerms((w * logs.rewards).sum(axis=1), w.mean(axis=1), float(w.max(initial=0.0)), bound)


def rips(target: SlateTarget) -> SlateTerms:
    """Reward-interaction IPS (McInerney et al. 2020): ``sum_j w_{0:j} r_j``,
    ``w_{0:j} = pi(a_0..a_j | x) / cascade_propensity_j``.

    Assumption (cascade): the reward at position j depends only on the items at positions 0..j (users
    read from the top; what lies below does not matter).
    """
    logs = target.slates
    w = target.cascade / logs.cascade_propensity
    bound = float(target.cascade.max() / logs.cascade_propensity.min())
    return SlateTerms((w * logs.rewards).sum(axis=1), w.mean(axis=1), float(w.max(initial=0.0)), bound)


@dataclass(frozen=True)
class SlateRewardModel:
    """``Q_j(x, a_0..a_j) = base[x, j] + delta(x, j, a_j)``: the expected reward from position j on.

    ``delta`` is stored only for the logged ``(state, position, item)`` cells (sorted ``keys``), so it
    fits any catalog. With ``loo`` the cell value of a logged slate leaves that slate's own reward out.
    """

    base: np.ndarray  # (n_states, k)
    keys: np.ndarray  # sorted cell keys state * k * n_actions + j * n_actions + a
    delta: np.ndarray
    n_actions: int
    loo_delta: np.ndarray | None = None  # (n_slates, k): delta at the logged cell without the slate
    description: str = "given"

    def key(self, state: np.ndarray, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        k = self.base.shape[1]
        return (state * k + position) * self.n_actions + action

    def at(self, state: np.ndarray, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``delta`` at cells (0 where no cell is stored)."""
        key = self.key(state, position, action)
        index = np.clip(np.searchsorted(self.keys, key), 0, max(self.keys.size - 1, 0))
        found = self.keys.size > 0
        return np.where(found & (self.keys[index] == key), self.delta[index] if found else 0.0, 0.0)

    @classmethod
    def fit(cls, slates: SlateLogs, n_actions: int, strength: float) -> SlateRewardModel:
        """Shrunk cell means ``(R + m mu_xj) / (N + m)`` around the state-position means ``mu_xj`` (shrunk
        toward the position means), plus the logged mean reward of the later positions."""
        n, k = slates.actions.shape
        n_states = int(slates.state.max()) + 1
        state = np.repeat(slates.state, k)
        position = np.tile(np.arange(k), n)
        reward = slates.rewards.ravel()
        position_mean = slates.rewards.mean(axis=0)
        sp = state * k + position
        sp_count = np.bincount(sp, minlength=n_states * k).reshape(n_states, k)
        sp_total = np.bincount(sp, weights=reward, minlength=n_states * k).reshape(n_states, k)
        mu = shrink(sp_total, sp_count, position_mean[None, :], strength)
        later = np.cumsum(mu[:, ::-1], axis=1)[:, ::-1] - mu  # sum of mu over positions after j
        keys, inverse = np.unique(sp * n_actions + slates.actions.ravel(), return_inverse=True)
        count = np.bincount(inverse, minlength=keys.size)
        total = np.bincount(inverse, weights=reward, minlength=keys.size)
        cell_mu = mu.ravel()[keys // n_actions]
        delta = (total + strength * cell_mu) / (count + strength) - cell_mu
        loo = (total[inverse] - reward + strength * cell_mu[inverse]) / (count[inverse] - 1.0 + strength)
        loo_delta = (loo - cell_mu[inverse]).reshape(n, k)
        return cls(mu + later, keys, delta, n_actions, loo_delta, "cross-fitted (leave-one-out)")

    @classmethod
    def given(cls, table: Any, shape: tuple[int, int, int]) -> SlateRewardModel:
        """A model fitted elsewhere: ``table[x, j, a] = Q_j(x, ..., a)``, shape
        ``(n_states, k, n_actions)``."""
        values = np.asarray(table, dtype=np.float64)
        if values.ndim != 3 or values.shape[1:] != shape[1:] or values.shape[0] < shape[0]:
            raise ValueError(f"reward_model must have shape (n_states >= {shape[0]}, {shape[1]}, "
                             f"{shape[2]}), got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("reward_model has a NaN or infinite entry")
        keys = np.arange(values.size, dtype=np.int64)
        return cls(np.zeros(values.shape[:2]), keys, values.ravel(), shape[2])


def cascade_dr(target: SlateTarget, model: SlateRewardModel) -> SlateTerms:
    """Cascade doubly robust (Kiyohara et al. 2022):
    ``sum_j w_{0:j} (r_j - Q_j(x, a_0..a_j))
    + w_{0:j-1} sum_a pi(a | x, a_0..a_{j-1}) Q_j(x, a_0..a_{j-1}, a)``
    with ``w_{0:-1} = 1`` and ``Q_j`` a model of the reward from position j on.

    Assumption (cascade), as ``rips``; unbiased whatever the model when the propensities are right,
    and the model removes variance. ``pi(a | x, prefix)`` is the target's Plackett-Luce step,
    ``pi(a | x) / (1 - sum of the prefix's pi)`` off the prefix.
    """
    logs = target.slates
    n, k = logs.actions.shape
    w = target.cascade / logs.cascade_propensity
    w_before = np.concatenate([np.ones((n, 1)), w[:, :-1]], axis=1)
    state = logs.state
    base = model.base[state]  # (n, k)
    if model.loo_delta is not None:
        delta_observed = model.loo_delta
    else:
        cells = (np.repeat(state, k), np.tile(np.arange(k), n), logs.actions.ravel())
        delta_observed = model.at(*cells).reshape(n, k)
    q_observed = base + delta_observed
    # sum_a pi(a | prefix) delta(x, j, a) = (D_xj - sum over the prefix of pi(b) delta(x, j, b)) / (1 - mass)
    cell_state = model.keys // (model.base.shape[1] * model.n_actions)
    cell_position = (model.keys // model.n_actions) % model.base.shape[1]
    cell_action = model.keys % model.n_actions
    distinct_state, first = np.unique(state, return_index=True)
    rows_of = np.full(int(max(cell_state.max(initial=0), state.max())) + 1, -1)
    rows_of[distinct_state] = target.where[first]  # each state's row among the target's distinct rows
    on_logged = rows_of[cell_state] >= 0
    weight_cells = np.zeros(model.keys.size)
    weight_cells[on_logged] = target.rows[rows_of[cell_state[on_logged]], cell_action[on_logged]]
    totals = np.zeros((rows_of.size, k))
    np.add.at(totals, (cell_state, cell_position), weight_cells * model.delta)
    expected = np.empty((n, k))
    mass = np.cumsum(target.picked, axis=1) - target.picked
    for j in range(k):
        prefix = logs.actions[:, :j]
        taken = (target.picked[:, :j] * model.at(np.repeat(state, j), np.full(n * j, j), prefix.ravel())
                 .reshape(n, j)).sum(axis=1) if j else 0.0
        stored = model.at(state, np.full(n, j), logs.actions[:, j])
        own = target.picked[:, j] * (delta_observed[:, j] - stored)
        expected[:, j] = (totals[state, j] - taken + own) / np.clip(1.0 - mass[:, j], 1e-300, None)
    term = (w * (logs.rewards - q_observed) + w_before * (base + expected)).sum(axis=1)
    return SlateTerms(term, w.mean(axis=1), float(w.max(initial=0.0)), reward_model=model.description)


def pseudo_inverse(target: SlateTarget, logging_policy: RankingPolicy | None) -> SlateTerms:
    """Pseudo-inverse estimator (Swaminathan et al. 2017): ``theta_i sum_j r_j`` with
    ``theta_i = q_pi(x)^T Gamma_mu(x)^+ 1_{slate_i}``, where ``1_slate`` marks the slate's (position,
    item) pairs, ``q_pi(x) = E_pi[1_slate | x]`` (the target's position marginals) and ``Gamma_mu(x) =
    E_mu[1_slate 1_slate^T | x]`` (the logging policy's pairwise slot probabilities, from
    ``logging_policy``, or else the mean over the state's logged slates).

    Assumption (additive): the expected slate reward is a sum of per-(position, item) effects; then
    it is unbiased when ``q_pi`` lies in the range of ``Gamma_mu``. Its cost is a ``(k n_actions)^2``
    pseudo-inverse per state, refused beyond ``k n_actions = 2,000``.
    """
    logs = target.slates
    n, k = logs.actions.shape
    n_actions = target.policy.n_actions
    size = k * n_actions
    if size > MAX_PSEUDO_INVERSE_SIZE:
        raise ValueError(f"pseudo_inverse needs a ({size} x {size}) pseudo-inverse per state (k * n_actions "
                         f"= {size} > {MAX_PSEUDO_INVERSE_SIZE}); leave it out for this catalog")
    slots = np.arange(k) * n_actions + logs.actions  # (n, k) indices into the indicator vector
    theta = np.empty(n)
    distinct, inverse = np.unique(logs.state, return_inverse=True)
    inverse = inverse.ravel()
    marginals = target.marginal_table
    for i, s in enumerate(distinct):
        members = np.flatnonzero(inverse == i)
        if logging_policy is not None:
            row = logging_policy.item_probabilities(np.array([s]))[0]
            slates, probs = enumerate_slates(row, k, target.max_states)
            gamma = _second_moments(np.arange(k) * n_actions + slates, probs, size)
        else:
            gamma = _second_moments(slots[members], np.full(members.size, 1.0 / members.size), size)
        u = np.linalg.pinv(gamma, hermitian=True) @ marginals[target.where[members[0]]].ravel()
        theta[members] = u[slots[members]].sum(axis=1)
    source = "logging policy" if logging_policy is not None else "estimated (the state's logged slates)"
    return SlateTerms(theta * logs.rewards.sum(axis=1), theta, float(np.abs(theta).max(initial=0.0)), source)


def _second_moments(slots: np.ndarray, probs: np.ndarray, size: int) -> np.ndarray:
    """``sum_i probs_i 1_{slots_i} 1_{slots_i}^T`` as a dense ``(size, size)`` matrix."""
    k = slots.shape[1]
    pairs = (slots[:, :, None] * size + slots[:, None, :]).reshape(-1)
    return np.bincount(pairs, weights=np.repeat(probs, k * k), minlength=size * size).reshape(size, size)


# ---------------------------------------------------------------------------------------------
# inference and the public function


def _sums(terms: SlateTerms) -> Sums:
    """The Gram matrix of ``(1, term, normalizer = 1, influence = term, weight)`` over slates."""
    ones = np.ones_like(terms.term)
    columns = np.stack([ones, terms.term, ones, terms.term, terms.weight])
    return Sums(columns @ columns.T, False)


def _interval(method: str, terms: SlateTerms, sums: Sums, slates: SlateLogs, level: float
              ) -> tuple[float, float]:
    """The bounds of ``method``; the empirical-likelihood and Bernstein ones take unseen slates at weight
    0 or ``weight_bound`` with any reward in the range."""
    low_r, high_r = slates.reward_range
    k = slates.k
    value_range = (k * low_r, k * high_r)
    if method == "normal":
        estimate, half = float(sums.estimate()), normal_quantile(level) * float(sums.std_error())
        return estimate - half, estimate + half
    top = terms.weight_bound
    if method == "empirical_likelihood":
        corner_w = np.array([0.0, 0.0, top, top])
        corner_t = np.array([0.0, 0.0, top * k * low_r, top * k * high_r])
        weight, term, count = merge_rows(terms.weight, terms.term, np.ones_like(terms.term))
        return empirical_likelihood_interval(weight, term, count, (corner_w, corner_t), level, value_range)
    # every slot's term lies between 0 and weight_bound times a reward: k slots per slate
    term_range = (k * top * min(low_r, 0.0), k * top * max(high_r, 0.0))
    low, high = bernstein_interval(sums, level, term_range, value_range)
    return float(low), float(high)


def _method(interval: str, name: str, ess: float) -> str:
    allowed = {"sips": ("normal", "empirical_likelihood", "bernstein"), "iips": ("normal", "bernstein"),
               "rips": ("normal", "bernstein"), "cascade_dr": ("normal",), "pseudo_inverse": ("normal",)}
    if interval == "auto":
        return "empirical_likelihood" if name == "sips" and ess < LARGE_SAMPLE_ESS else "normal"
    if interval not in ("normal", "empirical_likelihood", "bernstein"):
        raise ValueError("interval must be 'auto', 'normal', 'empirical_likelihood' or 'bernstein', "
                         f"got {interval!r}")
    if interval not in allowed[name]:
        raise ValueError(f"interval={interval!r} is not available for {name!r} (it has {allowed[name]})")
    return interval


def _unobserved_share(target: SlateTarget) -> float:
    """The target's position mass on (state, position, item) cells absent from the logs, per slot."""
    logs = target.slates
    n, k = logs.actions.shape
    table = target.marginal_table  # (n_distinct, k, n_actions)
    seen = np.zeros(table.shape, dtype=bool)
    seen[np.repeat(target.where, k), np.tile(np.arange(k), n), logs.actions.ravel()] = True
    mass = np.where(seen, 0.0, table).sum(axis=(1, 2)) / k
    slates_per_row = np.bincount(target.where, minlength=table.shape[0])
    return float(mass @ slates_per_row / n)


def evaluate_slates(
    logs: Any,
    policy: RankingPolicy,
    estimators: str | Iterable[str] = SLATE_ESTIMATORS,
    level: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    backend: str | Backend | None = None,
    *,
    interval: str = "auto",
    reward_range: tuple[float, float] | None = None,
    logging_policy: RankingPolicy | None = None,
    reward_model: Any = None,
    reward_prior: float = 1.0,
    max_states: int = MAX_PREFIX_STATES,
) -> pd.DataFrame:
    """Estimate a ranking policy's expected slate reward (the sum over positions) from logged slates.

    Parameters
    ----------
    logs : DataFrame, path of CSV/Parquet files, or ``hfrl.data.Logs``
        The ranking log schema: ``slate_id``, ``position``, ``action``, ``reward``, optional ``state``
        (the context the target ranks for; one per slate), and the propensities the estimators need:
        ``slate_propensity`` (sips), ``propensity`` (iips), ``cascade_propensity`` (rips, cascade_dr).
    policy : RankingPolicy
        The target ranking; its ``k`` must equal the logged slates' size.
    estimators : str or sequence of str
        Any of ``"sips"``, ``"iips"``, ``"rips"``, ``"cascade_dr"``, ``"pseudo_inverse"``.
    level : float
    n_bootstrap : int
        Poisson bootstrap resamples over slates (0: none); adds ``boot_*`` columns.
    random_state : int, Generator or None
    backend : {"memory", "duckdb", "spark"}, Backend or None
        Where the logs are validated; the slates are then read into memory.
    interval : {"auto", "normal", "empirical_likelihood", "bernstein"}
        ``"auto"``: empirical likelihood for sips below an effective sample size of 20,000, normal
        otherwise and for the rest; ``"bernstein"`` for sips, iips and rips.
    reward_range : (low, high), optional
        One position's reward domain (default: as the logs declare or show).
    logging_policy : RankingPolicy, optional
        The logging ranking; pseudo_inverse then uses its exact pairwise slot probabilities
        instead of the mean over each state's logged slates.
    reward_model : array of shape (n_states, k, n_actions), optional
        cascade_dr's ``Q_j(x, ..., a)`` fitted elsewhere; default: shrunk means of these logs per
        (state, position, item) plus the mean reward of the later positions, cross-fitted.
    reward_prior : float
        The pseudo-count of that default model's shrinkage.
    max_states : int
        Budget of the exact position marginals (``hfrl.rankings.plackett_luce_marginals``).

    Returns
    -------
    DataFrame
        One row per estimator: ``estimate``, ``std_error``, ``ci_low``, ``ci_high``, ``interval``,
        ``ess``, ``max_weight`` (the largest slot or slate weight), ``clipped_share`` (0: no estimator
        here clips), ``n_rows``, ``n_slates``, ``support_violation_share`` (NaN: a slate's logging
        support is not known from the logs), ``unobserved_share`` (the target's position mass on
        (state, position, item) cells not logged; NaN when the marginals were not needed),
        ``propensity_source``, ``reward_model``, ``assumption``, ``level``.

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.envs.slates import SlateEnv, collect_slate_logs
    >>> from hfrl.policies import TabularPolicy
    >>> env = SlateEnv(n_segments=2, n_items=6, k=2)
    >>> uniform = RankingPolicy.from_policy(TabularPolicy.uniform(2, 6), 2)
    >>> logs = collect_slate_logs(env, uniform, 2000, seed=0)
    >>> result = evaluate_slates(logs, uniform, ("sips", "iips", "rips"))
    >>> bool(np.allclose(result["estimate"], logs["reward"].sum() / 2000))
    True
    >>> list(result.columns[:5])
    ['estimate', 'std_error', 'ci_low', 'ci_high', 'interval']
    """
    names = check_estimators(estimators, SLATE_ESTIMATORS, "slate estimator")
    level = check_level(level)
    if not isinstance(policy, RankingPolicy):
        raise TypeError(f"policy must be a hfrl.policies.RankingPolicy, got {type(policy).__name__}")
    if logging_policy is not None and (
            not isinstance(logging_policy, RankingPolicy) or logging_policy.k != policy.k
            or logging_policy.n_actions != policy.n_actions):
        raise ValueError("logging_policy must be a RankingPolicy with the target's k and n_actions")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 \
            or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    required = sorted({_NEEDS[n] for n in names} - {None})
    slates = read_slates(logs, policy.n_actions, required, backend, reward_range)
    if slates.k != policy.k:
        raise ValueError(f"the logged slates have {slates.k} positions but the policy ranks k={policy.k}")
    target = SlateTarget.read(policy, slates, max_states)
    chosen: dict[str, SlateTerms] = {}
    for name in names:
        if name == "cascade_dr":
            shape = (int(slates.state.max()) + 1, policy.k, policy.n_actions)
            model = (SlateRewardModel.given(reward_model, shape) if reward_model is not None
                     else SlateRewardModel.fit(slates, policy.n_actions, float(reward_prior)))
            chosen[name] = cascade_dr(target, model)
        elif name == "pseudo_inverse":
            chosen[name] = pseudo_inverse(target, logging_policy)
        else:
            chosen[name] = {"sips": sips, "iips": iips, "rips": rips}[name](target)
    unobserved = _unobserved_share(target) if target._marginal_table is not None else float("nan")
    rows = []
    for name, terms in chosen.items():
        sums = _sums(terms)
        ess = float(sums.ess())
        method = _method(interval, name, ess)
        low, high = _interval(method, terms, sums, slates, level)
        rows.append({
            "estimate": float(sums.estimate()), "std_error": float(sums.std_error()), "ci_low": low,
            "ci_high": high, "interval": method, "ess": ess, "max_weight": terms.max_weight,
            "clipped_share": 0.0, "n_rows": slates.n_slates * slates.k, "n_slates": slates.n_slates,
            "support_violation_share": float("nan"), "unobserved_share": unobserved,
            "propensity_source": terms.propensity_source, "reward_model": terms.reward_model,
            "assumption": SLATE_ASSUMPTIONS[name], "level": level,
        })
    frame = pd.DataFrame(rows, index=pd.Index(names, name="estimator"))
    if n_bootstrap:
        values = np.stack([chosen[n].term for n in names], axis=1)
        ones = np.ones(slates.n_slates)
        replicates = poisson_bootstrap(ones, values, np.ones_like(values), int(n_bootstrap),
                                       resolve_rng(random_state))
        low, high, spread = bootstrap_interval(replicates, level)
        frame["boot_std_error"], frame["boot_ci_low"], frame["boot_ci_high"] = spread, low, high
        frame["n_bootstrap"] = int(n_bootstrap)
    return frame
