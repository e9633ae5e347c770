"""Sufficient statistics of logged bandit feedback, from which every tabular estimator is computed.

Every estimator in ``hfrl.ope`` has a per-row term that is a linear combination of the basis
``phi = (1, r, r/p, 1/p)`` with coefficients that depend only on the row's cell (its state, its
action and, for clipping, its propensity). Sums of terms and of their products therefore need only
the per-cell sums of ``phi_j * phi_l``::

    n, r, r/p, 1/p, r^2, r^2/p, r^2/p^2, r/p^2, 1/p^2

A backend computes ``n, r, r^2, 1/p, 1/p^2`` in one group-by over ``(state, action)``; when the
propensity is constant in each cell (tested exactly from those sums) the rest follow from ``p``.
The per-row ``(n_rows, n_actions)`` matrix of a tabular policy is never built.

Cells come in two grains:

* ``(state, action)`` groups, when each cell's propensity is constant (a tabular logging policy, or
  estimated propensities), which is exact for every estimator, clipping included;
* *atoms*: distinct ``(state, action, reward, propensity)`` rows with their counts (the propensity
  is left out of the key when it is constant per cell), used for the Poisson bootstrap (rows of one
  atom are exchangeable) and when propensities vary inside a cell.
  An array policy (one row of probabilities per logged row) uses one cell per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data import schema
from hfrl.data.io import LogSource, is_path, load_logs

__all__ = ["BASIS", "PRODUCT_SUMS", "Cells", "atom_cells", "grouped_cells", "reward_cells", "row_cells",
           "with_propensity"]

BASIS = ("1", "r", "r/p", "1/p")

S, A, R, P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY

# per-row expressions (hfrl.backends.expressions grammar) of the products phi_j * phi_l
PRODUCT_SUMS: dict[str, str] = {
    "n": "1",
    "r": f"{R}",
    "r_p": f"{R} / {P}",
    "inv_p": f"1 / {P}",
    "r2": f"{R} * {R}",
    "r2_p": f"{R} * {R} / {P}",
    "r2_p2": f"{R} * {R} / ({P} * {P})",
    "r_p2": f"{R} / ({P} * {P})",
    "inv_p2": f"1 / ({P} * {P})",
}
# the products that do not involve the propensity
REWARD_SUMS = {"n": "1", "r": f"{R}", "r2": f"{R} * {R}"}
# what one pass over logs with propensities reads; the rest follows when p is constant per cell
LOGGED_SUMS = {**REWARD_SUMS, "inv_p": f"1 / {P}", "inv_p2": f"1 / ({P} * {P})"}

_PAIR = {
    (0, 0): "n", (0, 1): "r", (0, 2): "r_p", (0, 3): "inv_p",
    (1, 1): "r2", (1, 2): "r2_p", (1, 3): "r_p",
    (2, 2): "r2_p2", (2, 3): "r_p2",
    (3, 3): "inv_p2",
}
PAIR_SUM = {**_PAIR, **{(j, i): name for (i, j), name in _PAIR.items()}}

# relative tolerance below which a cell's propensity counts as constant
_CONSTANT_TOLERANCE = 1e-10


@dataclass
class Cells:
    """Per-cell sums of the basis products.

    Attributes
    ----------
    state, action : int64 arrays of shape (n_cells,)
    sums : dict name -> float64 array of shape (n_cells,); names are the keys of ``PRODUCT_SUMS``
    propensity : float64 array of shape (n_cells,); the cell's propensity when it is constant in
        the cell, NaN otherwise (or when there is none)
    grain : "state_action", "atom" or "row"
    """

    state: np.ndarray
    action: np.ndarray
    sums: dict[str, np.ndarray]
    propensity: np.ndarray
    grain: str

    @property
    def n_cells(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_rows(self) -> int:
        return int(round(float(self.sums["n"].sum())))

    @property
    def count(self) -> np.ndarray:
        return self.sums["n"]

    def first_moments(self) -> np.ndarray:
        """Per-cell sums of the basis, shape (4, n_cells)."""
        s = self.sums
        return np.stack([s["n"], s["r"], s["r_p"], s["inv_p"]])

    def total(self, coefficients: np.ndarray) -> float:
        """Sum over all rows of the term whose per-cell basis coefficients are given (4, n_cells)."""
        total = 0.0
        for j, name in enumerate(("n", "r", "r_p", "inv_p")):
            column = coefficients[j]
            if column.any():
                total += float(column @ self.sums[name])
        return total

    def cross(self, first: np.ndarray, second: np.ndarray) -> float:
        """Sum over all rows of the product of two terms given by their coefficients."""
        used_first = [j for j in range(4) if first[j].any()]
        used_second = [j for j in range(4) if second[j].any()]
        total = 0.0
        for j in used_first:
            for k in used_second:
                total += float((first[j] * second[k]) @ self.sums[PAIR_SUM[(j, k)]])
        return total

    def gram(self, terms: list[np.ndarray]) -> np.ndarray:
        """Matrix of sums of products of every pair of terms."""
        size = len(terms)
        out = np.empty((size, size))
        for i in range(size):
            for j in range(i, size):
                out[i, j] = out[j, i] = self.cross(terms[i], terms[j])
        return out

    def unit_values(self, coefficients: np.ndarray) -> np.ndarray:
        """The term's value for one row of each cell (cells whose rows are identical: atoms, rows)."""
        count = self.sums["n"]
        return (coefficients * self.first_moments()).sum(axis=0) / count


def _products(reward: np.ndarray, propensity: np.ndarray, count: np.ndarray) -> dict[str, np.ndarray]:
    inv_p = 1.0 / propensity
    return {
        "n": count,
        "r": count * reward,
        "r_p": count * reward * inv_p,
        "inv_p": count * inv_p,
        "r2": count * reward * reward,
        "r2_p": count * reward * reward * inv_p,
        "r2_p2": count * (reward * inv_p) ** 2,
        "r_p2": count * reward * inv_p * inv_p,
        "inv_p2": count * inv_p * inv_p,
    }


def _with_propensity(state, action, base, propensity, grain) -> Cells:
    """Cells whose propensity is one known value per cell, from the reward sums n, r, r^2."""
    inv_p = 1.0 / propensity
    sums = {
        "n": base["n"], "r": base["r"], "r2": base["r2"],
        "r_p": base["r"] * inv_p, "inv_p": base["n"] * inv_p,
        "r2_p": base["r2"] * inv_p, "r2_p2": base["r2"] * inv_p * inv_p,
        "r_p2": base["r"] * inv_p * inv_p, "inv_p2": base["n"] * inv_p * inv_p,
    }
    return Cells(state, action, sums, propensity, grain)


def with_propensity(cells: Cells, propensity: np.ndarray) -> Cells:
    """The same cells with one known propensity per cell (from their reward sums)."""
    return _with_propensity(cells.state, cells.action, cells.sums, propensity, cells.grain)


def grouped_cells(
    logs: LogSource,
    backend: Backend,
    propensity_mode: str,
    estimated_propensity: np.ndarray | None = None,
    *,
    reward_kind: str = "float",
) -> Cells:
    """One cell per logged ``(state, action)``: a single ``group_sums`` over the logs.

    ``propensity_mode`` is ``"logged"`` (use the column), ``"estimated"`` (use
    ``estimated_propensity[state, action]``; only reward sums are read) or ``"none"`` (no
    propensity; the propensity sums are zero and only the direct method may use the cells).

    With logged propensities the backend sums ``n, r, r^2, 1/p, 1/p^2``: when the propensity is
    constant in every cell (``n sum(1/p^2) = sum(1/p)^2`` to a relative 1e-10) the other products
    follow exactly from ``p``; otherwise the varying cells have ``propensity`` NaN and the caller
    switches to atoms.

    ``reward_kind`` says what the reward column is known to hold: ``"binary"`` (integers 0 and 1,
    so ``r^2 = r`` and that sum is not computed), ``"integer"`` (squared as a double: small
    integer types would overflow) or ``"float"``.
    """
    sums = dict(LOGGED_SUMS if propensity_mode == "logged" else REWARD_SUMS)
    if reward_kind == "binary":
        del sums["r2"]
    elif reward_kind == "integer":
        sums["r2"] = f"cast_double({R}) * cast_double({R})"
    frame = backend.group_sums(logs, [S, A], sums)
    state = frame[S].to_numpy(np.int64)
    action = frame[A].to_numpy(np.int64)
    values = {name: frame[name].to_numpy(np.float64) for name in sums}
    if reward_kind == "binary":
        values["r2"] = values["r"]
    if propensity_mode == "logged":
        n, inv_p, inv_p2 = values["n"], values["inv_p"], values["inv_p2"]
        spread = n * inv_p2 - inv_p * inv_p  # n^2 times the variance of 1/p in the cell
        constant = np.abs(spread) <= _CONSTANT_TOLERANCE * inv_p * inv_p
        if constant.all():
            return _with_propensity(state, action, values, n / inv_p, "state_action")
        nan = np.full_like(n, np.nan)
        filled = {name: values.get(name, nan) for name in PRODUCT_SUMS}
        return Cells(state, action, filled, np.where(constant, n / inv_p, np.nan), "state_action")
    if propensity_mode == "estimated":
        assert estimated_propensity is not None
        return _with_propensity(state, action, values, estimated_propensity[state, action], "state_action")
    zero = np.zeros_like(values["n"])
    filled = {name: values.get(name, zero) for name in PRODUCT_SUMS}
    return Cells(state, action, filled, np.full(state.shape, np.nan), "state_action")


def reward_cells(cells: Cells) -> Cells:
    """The same ``(state, action)`` cells without propensities (as ``propensity_mode="none"``)."""
    zero = np.zeros_like(cells.sums["n"])
    sums = {name: cells.sums[name] if name in REWARD_SUMS else zero for name in PRODUCT_SUMS}
    return Cells(cells.state, cells.action, sums, np.full(cells.state.shape, np.nan), cells.grain)


def _needed_columns(propensity_mode: str) -> list[str]:
    return [S, A, R] + ([P] if propensity_mode == "logged" else [])


def _frame(logs: LogSource, columns: list[str]) -> pd.DataFrame:
    if isinstance(logs, pd.DataFrame):
        return logs
    return load_logs(logs, columns=columns, validate=False)


def _distinct_rows(frame: pd.DataFrame, columns: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distinct value combinations of ``columns`` (sorted) and their counts, in O(n).

    Each column becomes sorted codes (ids as they are, floats through ``pandas.factorize``), the
    codes one mixed-radix integer key, and the key is counted with ``bincount`` (or ``unique``
    when the key space is large).
    """
    codes, uniques, sizes = [], [], []
    for column in columns:
        values = frame[column].to_numpy()
        if column in (S, A):
            ids = values.astype(np.int64)
            low = int(ids.min())
            codes.append(ids - low)
            uniques.append(np.arange(low, int(ids.max()) + 1))
        else:
            values = values.astype(np.float64)
            low, high = float(values.min()), float(values.max())
            if high - low < 1e6 and bool((values == np.floor(values)).all()):  # e.g. clicks
                codes.append((values - low).astype(np.int64))
                uniques.append(np.arange(low, high + 1.0))
            else:
                code, unique = pd.factorize(values, sort=True)
                codes.append(code.astype(np.int64))
                uniques.append(np.asarray(unique))
        sizes.append(len(uniques[-1]))
    if float(np.prod(sizes, dtype=np.float64)) >= 2.0**62:
        size = frame.groupby(columns, sort=True, observed=True).size()
        keys = {c: size.index.get_level_values(c).to_numpy() for c in columns}
        return keys, size.to_numpy(np.float64)
    key = codes[0]
    for code, size in zip(codes[1:], sizes[1:], strict=True):
        key = key * size + code
    n_keys = int(np.prod(sizes, dtype=np.int64))
    if n_keys <= 50_000_000:
        counts = np.bincount(key, minlength=n_keys)
        occupied = np.flatnonzero(counts)
        counts = counts[occupied]
    else:
        occupied, counts = np.unique(key, return_counts=True)
    keys = {}
    remainder = occupied
    for column, size, unique in reversed(list(zip(columns, sizes, uniques, strict=True))):
        keys[column] = unique[remainder % size]
        remainder = remainder // size
    return keys, counts.astype(np.float64)


def atom_cells(
    logs: LogSource,
    backend: Backend,
    propensity_mode: str,
    estimated_propensity: np.ndarray | None = None,
) -> Cells:
    """One cell per distinct ``(state, action, reward, propensity)``, sorted by those keys.

    DuckDB groups in SQL; other backends group in memory (files are read column-wise first).
    """
    columns = _needed_columns(propensity_mode)
    if backend.name == "duckdb" and (is_path(logs) or isinstance(logs, pd.DataFrame)):
        listed = ", ".join(f'"{c}"' for c in columns)
        sql = (
            f"SELECT {listed}, count(*) AS n FROM {{logs}} GROUP BY {listed} ORDER BY {listed}"
        )
        grouped = backend.query(sql, logs)  # type: ignore[attr-defined]
        keys = {c: grouped[c].to_numpy() for c in columns}
        count = grouped["n"].to_numpy(np.float64)
    elif backend.name == "spark":  # distributed too; Spark quotes with backticks, sorts on the driver
        listed = ", ".join(f"`{c}`" for c in columns)
        sql = f"SELECT {listed}, count(*) AS n FROM {{logs}} GROUP BY {listed}"
        grouped = backend.query(sql, logs).sort_values(columns, kind="stable")  # type: ignore[attr-defined]
        keys = {c: grouped[c].to_numpy() for c in columns}
        count = grouped["n"].to_numpy(np.float64)
    else:
        keys, count = _distinct_rows(_frame(logs, columns), columns)
    logged = keys[P].astype(np.float64) if propensity_mode == "logged" else None
    return _cells(keys[S], keys[A], keys[R], count, logged, propensity_mode, estimated_propensity, "atom")


def row_cells(
    frame: pd.DataFrame,
    propensity_mode: str,
    estimated_propensity: np.ndarray | None = None,
) -> Cells:
    """One cell per logged row, in row order (for policies given as one row per logged row)."""
    reward = frame[R].to_numpy(np.float64)
    logged = frame[P].to_numpy(np.float64) if propensity_mode == "logged" else None
    return _cells(
        frame[S].to_numpy(), frame[A].to_numpy(), reward, np.ones_like(reward), logged,
        propensity_mode, estimated_propensity, "row",
    )


def _cells(
    state: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    count: np.ndarray,
    logged_propensity: np.ndarray | None,
    propensity_mode: str,
    estimated_propensity: np.ndarray | None,
    kind: str,
) -> Cells:
    """Cells from per-atom (or per-row) columns: the propensity of the chosen mode, then the sums."""
    state = state.astype(np.int64)
    action = action.astype(np.int64)
    reward = reward.astype(np.float64)
    if propensity_mode == "logged":
        assert logged_propensity is not None
        propensity = logged_propensity
    elif propensity_mode == "estimated":
        assert estimated_propensity is not None
        propensity = estimated_propensity[state, action]
    else:
        propensity = np.ones_like(reward)
    sums = _products(reward, propensity, count)
    if propensity_mode == "none":
        for name in ("r_p", "inv_p", "r2_p", "r2_p2", "r_p2", "inv_p2"):
            sums[name] = np.zeros_like(count)
        propensity = np.full_like(reward, np.nan)
    return Cells(state, action, sums, propensity, kind)
