"""Plackett-Luce arithmetic: slates of ``k`` distinct items drawn from item weights, with exact probabilities.

A Plackett-Luce ranking with weights ``pi`` (one distribution over ``n_actions`` items) draws
position 0 from ``pi``, each later position from ``pi`` renormalised over the items not yet shown
(sampling without replacement). ``hfrl.policies.RankingPolicy`` applies it to any policy's rows;
the functions here work on the rows themselves. Everything the ranking estimators need follows
exactly from ``pi``:

* the probability of item ``a`` at position ``j`` given the earlier items, ``pi(a) / (1 - sum of the
  earlier items' pi)`` (what the decision service logs per slot);
* the cascade probability of the items at positions ``0..j`` (the product of those), and of the
  whole slate;
* the marginal probability of item ``a`` at position ``j`` (``position_probabilities``), a sum over
  every ordered prefix of length ``j``. It is computed exactly by a walk over the multisets of
  distinct probability values already drawn (items with equal ``pi`` are exchangeable), so its cost
  grows like ``C(m + j - 1, j)`` for ``m`` distinct values: instant for a uniform policy or a few
  hundred items at three positions, refused (with the cost in the message) when too large.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

__all__ = [
    "MAX_PREFIX_STATES",
    "check_slate_size",
    "check_support",
    "conditional_propensities",
    "draw_slates",
    "enumerate_slates",
    "plackett_luce_marginals",
]

# the most (prefix multiset x distinct value) cells the exact marginals may visit for one context
MAX_PREFIX_STATES = 20_000_000
_CHUNK_CELLS = 4_000_000  # rows x items densified at once when sampling


def check_slate_size(k: Any, n_actions: int) -> int:
    """``k`` as an int, or a ValueError unless it is an integer in ``[1, n_actions]``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_actions:
        raise ValueError(f"k (the slate size) must be an integer in [1, {n_actions}], got {k!r}")
    return int(k)


def check_support(rows: np.ndarray, k: int) -> None:
    """Each row needs ``k`` items of positive probability to fill a slate without replacement."""
    short = (rows > 0).sum(axis=1) < k
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ValueError(
            f"context {i} gives only {int((rows[i] > 0).sum())} items a positive probability; a slate "
            f"of k={k} distinct items needs at least {k} (mix in exploration, e.g. with_exploration)")


def plackett_luce_marginals(probabilities: Any, k: int, max_states: int = MAX_PREFIX_STATES) -> np.ndarray:
    """Exact ``P(item a at position j)``, shape ``(k, n_actions)``, for Plackett-Luce weights ``p``.

    ``P(a at j) = sum over ordered prefixes b_0..b_{j-1} without a of prod_i p_{b_i} / (1 - sum_{l<i}
    p_{b_l}) * p_a / (1 - sum_i p_{b_i})``. Items with equal ``p`` are exchangeable, so the walk keeps
    the multiset of values drawn so far (each with its total probability): for an item of value
    class ``c`` the chance it is not among the drawn is ``(count_c - drawn_c) / count_c``.

    Raises
    ------
    ValueError
        Fewer than ``k`` positive entries, or more than ``max_states`` prefix states to visit.

    Examples
    --------
    >>> plackett_luce_marginals([0.5, 0.25, 0.25], 2).round(4).tolist()
    [[0.5, 0.25, 0.25], [0.3333, 0.3333, 0.3333]]
    """
    p = np.asarray(probabilities, dtype=np.float64)
    check_support(p[None, :], k)
    values, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    drawable = values > 0
    values, counts = values[drawable], counts[drawable].astype(np.float64)
    m = values.size
    cost = comb(m + k - 2, k - 1) * m if k > 1 else 0
    if cost > max_states:
        raise ValueError(
            f"exact position probabilities for {m} distinct item probabilities at k={k} positions visit "
            f"about {cost:,} prefix states (more than {max_states:,}); use fewer positions, a policy "
            "with fewer distinct probabilities, or the cascade and slate propensities, which are exact "
            "at any catalog size")
    out = np.zeros((k, p.size))
    out[0] = p
    # the frontier: distinct multisets of drawn value classes (rows of sorted class ids), their total
    # probability and drawn mass
    drawn, prob, mass = np.zeros((1, 0), dtype=np.int64), np.ones(1), np.zeros(1)
    for j in range(1, k):
        rows = np.arange(drawn.shape[0])
        left = np.broadcast_to(counts, (rows.size, m)).copy()
        np.subtract.at(left, (np.repeat(rows, drawn.shape[1]), drawn.ravel()), 1.0)
        step = prob[:, None] * left * values / (1.0 - mass)[:, None]
        parent, cls = np.nonzero(step > 0)
        grown = np.sort(np.concatenate([drawn[parent], cls[:, None]], axis=1), axis=1)
        codes, first, where = np.unique(_multiset_keys(grown, m), return_index=True, return_inverse=True)
        prob = np.bincount(where.ravel(), weights=step[parent, cls], minlength=codes.size)
        mass, drawn = mass[parent[first]] + values[cls[first]], grown[first]
        # P(a at j) for an item of class c: sum over multisets of prob / (1 - mass) * P(a not drawn)
        scale = prob / (1.0 - mass)
        taken = np.bincount(drawn.ravel(), weights=np.repeat(scale, drawn.shape[1]), minlength=m)
        by_class = (scale.sum() * counts - taken) / counts * values
        row = np.zeros(drawable.size)
        row[drawable] = by_class
        out[j] = row[inverse]
    return out


def _multiset_keys(rows: np.ndarray, m: int) -> np.ndarray:
    """One integer per row of class ids in ``[0, m)`` (base-``m`` digits), or the rows themselves."""
    if rows.shape[1] * np.log2(max(m, 2)) < 62:
        return rows @ (m ** np.arange(rows.shape[1], dtype=np.int64))
    return np.unique(rows, axis=0, return_inverse=True)[1].ravel()


def enumerate_slates(probabilities: Any, k: int, max_slates: int = MAX_PREFIX_STATES
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered slate of ``k`` distinct items with positive Plackett-Luce probability.

    Returns ``(slates (n_slates, k), probabilities (n_slates,))``; the probabilities sum to 1. The
    count is ``n! / (n - k)!`` for ``n`` items of positive weight, refused beyond ``max_slates``.

    Examples
    --------
    >>> slates, probs = enumerate_slates([0.5, 0.5, 0.0], 2)
    >>> slates.tolist(), probs.tolist()
    ([[0, 1], [1, 0]], [0.5, 0.5])
    """
    p = np.asarray(probabilities, dtype=np.float64)
    check_support(p[None, :], k)
    items = np.flatnonzero(p > 0)
    n = items.size
    count = 1
    for i in range(k):
        count *= n - i
    if count > max_slates:
        raise ValueError(f"{count:,} ordered slates of {k} among {n} items exceed max_slates={max_slates:,}")
    slates, prob, mass = np.zeros((1, 0), dtype=np.int64), np.ones(1), np.zeros(1)
    for _ in range(k):
        used = np.zeros((slates.shape[0], n), dtype=bool)
        if slates.shape[1]:
            np.put_along_axis(used, np.searchsorted(items, slates), True, axis=1)
        rows, cols = np.nonzero(~used)
        prob = prob[rows] * p[items[cols]] / (1.0 - mass[rows])
        mass = mass[rows] + p[items[cols]]
        slates = np.concatenate([slates[rows], items[cols][:, None]], axis=1)
    return slates, prob


def conditional_propensities(picked: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """``pi(a_j) / (1 - sum_{i<j} pi(a_i))`` per slot from ``picked[i, j] = pi(slates[i, j] | x_i)``,
    0 for a repeated item: shape ``(n, k)``."""
    taken = np.cumsum(picked, axis=1) - picked
    remaining = np.clip(1.0 - taken, np.finfo(np.float64).tiny, None)
    conditional = np.minimum(picked / remaining, 1.0)
    for j in range(1, slates.shape[1]):
        repeated = (slates[:, :j] == slates[:, j : j + 1]).any(axis=1)
        conditional[repeated, j] = 0.0
    return conditional


def draw_slates(rows: np.ndarray, where: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """One Plackett-Luce slate from ``rows[where[i]]`` for each ``i``, by the Gumbel-top-k trick
    (argmax-k of ``log pi + Gumbel`` noise is sequential sampling without replacement), in chunks."""
    n_actions = rows.shape[1]
    n = where.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    chunk = max(1, _CHUNK_CELLS // max(n_actions, 1))
    with np.errstate(divide="ignore"):
        log_rows = np.log(rows)
    for start in range(0, n, chunk):
        block = log_rows[where[start : start + chunk]]
        keys = block + rng.gumbel(size=block.shape)
        if k < n_actions:
            part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_actions), block.shape).copy()
        order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out
