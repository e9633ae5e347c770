"""One shrinkage for every mean estimated from thin cells: HF and every reward model.

A mean over few rows is pulled toward its parent level's mean by ``m`` pseudo-rows:
``(total + m * parent) / (count + m)``. HF shrinks each state's action shares toward its group's
(then the global) shares and each cell's event rate toward its parent rate; the reward models of
the direct-method learner, fitted Q iteration and the off-policy estimators shrink each
``(state, action)`` mean reward toward its state's mean, itself shrunk toward the global mean
(``shrunk_means``), so they agree on the same logs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shrink", "shrunk_means"]


def shrink(total: np.ndarray, count: np.ndarray, parent: np.ndarray, strength: float) -> np.ndarray:
    """``(total + m * parent) / (count + m)`` elementwise (broadcasting); ``parent`` where ``count + m`` is 0.

    Examples
    --------
    >>> shrink(np.array([3.0, 0.0]), np.array([4.0, 0.0]), np.array([0.5, 0.5]), 4.0).tolist()
    [0.625, 0.5]
    """
    arrays = (np.asarray(v, dtype=np.float64) for v in (total, count, parent))
    total, count, parent = np.broadcast_arrays(*arrays)
    denominator = count + strength
    out = parent.copy()
    filled = denominator > 0
    out[filled] = (total[filled] + strength * parent[filled]) / denominator[filled]
    return out


def shrunk_means(count: np.ndarray, total: np.ndarray, strength: float) -> np.ndarray:
    """Mean per ``(state, action)`` shrunk toward its state's mean, shrunk toward the global mean.

    ``mean(s) = (sum(s) + m * mean) / (n(s) + m)`` and
    ``mean(s, a) = (sum(s, a) + m * mean(s)) / (n(s, a) + m)``: a pair never logged gets its
    state's mean, a state never logged the global mean (0 for empty logs).

    Examples
    --------
    >>> count = np.array([[3.0, 1.0], [0.0, 0.0]])
    >>> total = np.array([[3.0, 0.0], [0.0, 0.0]])
    >>> shrunk_means(count, total, 1.0).round(3).tolist()
    [[0.938, 0.375], [0.75, 0.75]]
    """
    n = float(count.sum())
    overall = float(total.sum()) / n if n > 0 else 0.0
    state = shrink(total.sum(axis=1), count.sum(axis=1), np.array(overall), strength)
    return shrink(total, count, state[:, None], strength)
