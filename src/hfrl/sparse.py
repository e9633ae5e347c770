"""Sparse distribution tables for large catalogs: explicit cells plus a mix of shared rows.

A ``SparseTable`` holds ``n_rows`` distributions over ``n_columns`` items as

    row[s] = explicit[s] + sum_j base_weight[s, j] * base[j]

``explicit`` is a CSR matrix of the cells a row knows about (the items seen in a state, a learned
policy's top candidates), ``base`` a few dense rows shared by every row (the global backoff row of
the historical frequency, the uniform row of an exploration floor) and ``base_weight`` how much of
each row's mass each base row carries. The form is exact for what hfrl builds: an additively
smoothed HF row ``(counts + m * global) / (n + m)`` is ``counts / (n + m)`` plus ``m / (n + m)``
of the global row; the linear blend ``(1 - alpha) * pi + alpha * HF`` of two such tables is one
(the union of their explicit cells, their base rows side by side); and so is mixing in a uniform
share for exploration. Memory is ``12 * nnz + 8 * n_rows * n_base + 8 * n_base * n_columns`` bytes
instead of ``8 * n_rows * n_columns``.

Top-k, sampling and lookups never build a dense row unless two or more base rows are not uniform
(then each row's base mix has its own order, and the rows are read in dense chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["SparseTable", "top_k_of_rows"]

_ROW_SUM_TOLERANCE = 1e-6
_DENSE_CHUNK_CELLS = 1 << 22  # rows read densely are read this many cells at a time


def _canonical(matrix: Any, shape: tuple[int, int]) -> sp.csr_array:
    explicit = sp.csr_array(matrix, shape=shape, dtype=np.float64)
    explicit.sum_duplicates()
    explicit.eliminate_zeros()
    explicit.sort_indices()
    return explicit


@dataclass(frozen=True, eq=False)
class SparseTable:
    """``n_rows`` distributions over ``n_columns`` items: explicit cells plus shared base rows.

    Parameters
    ----------
    explicit : scipy sparse matrix or array of shape (n_rows, n_columns)
        Non-negative mass on the cells each row knows about.
    base : array of shape (n_base, n_columns)
        Shared rows, each a distribution.
    base_weight : array of shape (n_rows, n_base)
        Non-negative mass of each base row in each row. A row's explicit mass plus its base
        weights must sum to 1 (within 1e-6; then rescaled to exactly 1).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> table = SparseTable.build(sp.csr_array(np.array([[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])),
    ...                           np.array([[0.25, 0.25, 0.25, 0.25]]), np.array([[0.5], [1.0]]))
    >>> table.to_dense().tolist()
    [[0.625, 0.125, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25]]
    >>> table.values([0, 1], [0, 3]).tolist()
    [0.625, 0.25]
    """

    explicit: sp.csr_array
    base: np.ndarray
    base_weight: np.ndarray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, explicit: Any, base: Any, base_weight: Any, name: str = "probabilities",
              rescale: bool = True) -> SparseTable:
        """Validate the parts (errors name the first bad row) and rescale rows to sum to 1
        (``rescale=False`` keeps the values bit for bit, e.g. when loading a saved table)."""
        base = np.atleast_2d(np.asarray(base, dtype=np.float64))
        n_columns = base.shape[1] if base.size else int(np.shape(explicit)[1])
        n_rows = int(np.shape(explicit)[0])
        explicit = _canonical(explicit, (n_rows, n_columns))
        base = base.reshape(-1, n_columns)
        weight = np.asarray(base_weight, dtype=np.float64).reshape(n_rows, base.shape[0])
        if n_rows == 0 or n_columns == 0:
            raise ValueError(f"{name} must have at least one row and one item, got ({n_rows}, {n_columns})")
        parts = (("explicit cells", explicit.data), ("base rows", base), ("base weights", weight))
        for part, values in parts:
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                raise ValueError(f"{name}: the {part} hold a negative, NaN or infinite value "
                                 f"({values[bad].ravel()[0]!r}); every part must be non-negative")
        if base.shape[0]:
            off = np.abs(base.sum(axis=1) - 1.0) > _ROW_SUM_TOLERANCE
            if off.any():
                row = int(np.flatnonzero(off)[0])
                raise ValueError(f"{name}: base row {row} sums to {base[row].sum():.6g}, expected 1")
            if rescale:
                base = base / base.sum(axis=1, keepdims=True)
        sums = explicit.sum(axis=1) + weight.sum(axis=1)
        off = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise ValueError(f"{name} row {row} sums to {sums[row]:.6g}, expected 1; "
                             f"{int(off.sum())} rows are not distributions")
        scale = 1.0 / sums if rescale else np.ones(n_rows)
        explicit = _canonical(sp.diags_array(scale) @ explicit, (n_rows, n_columns))
        base, weight = _merge_equal_rows(base, weight * scale[:, None])
        base.setflags(write=False)
        weight.setflags(write=False)
        return cls(explicit, base, weight)

    @classmethod
    def from_dense(cls, table: Any) -> SparseTable:
        """The non-zero cells of a dense table of distributions (no base rows): exact."""
        array = np.asarray(table, dtype=np.float64)
        return cls.build(sp.csr_array(array), np.empty((0, array.shape[1])), np.empty((array.shape[0], 0)))

    @classmethod
    def uniform(cls, n_rows: int, n_columns: int) -> SparseTable:
        """Every row uniform: no explicit cell, one base row."""
        return cls.build(sp.csr_array((n_rows, n_columns)), np.full((1, n_columns), 1.0 / n_columns),
                         np.ones((n_rows, 1)))

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.explicit.shape[0]), int(self.explicit.shape[1]))

    @property
    def nnz(self) -> int:
        """The number of explicit cells."""
        return int(self.explicit.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes held by the parts (what the dense table would be: ``8 * n_rows * n_columns``)."""
        e = self.explicit
        return int(e.data.nbytes + e.indices.nbytes + e.indptr.nbytes + self.base.nbytes
                   + self.base_weight.nbytes)

    def __repr__(self) -> str:
        n, m = self.shape
        return f"SparseTable(shape=({n}, {m}), explicit cells={self.nnz}, base rows={self.base.shape[0]})"

    # ------------------------------------------------------------------ reading
    def to_dense(self, rows: Any = None) -> np.ndarray:
        """Dense rows (all rows when ``rows`` is None), shape ``(len(rows), n_columns)``."""
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows, dtype=np.intp).reshape(-1)
        dense = np.zeros((rows.size, self.shape[1]))
        if self.base.shape[0]:
            dense = self.base_weight[rows] @ self.base
        dense += self.explicit[rows].toarray()
        return dense

    def values(self, rows: Any, columns: Any) -> np.ndarray:
        """``row[rows[i]][columns[i]]`` for paired index arrays (a binary search per pair)."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        columns = np.asarray(columns, dtype=np.intp).reshape(-1)
        values = np.zeros(rows.size)
        e = self.explicit
        if rows.size and e.nnz:
            if "keys" not in self._cache:  # cell (s, a) as s * n_columns + a: sorted, as CSR is
                entry_rows = np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(e.indptr))
                self._cache["keys"] = entry_rows * self.shape[1] + e.indices
            keys = self._cache["keys"]
            wanted = rows.astype(np.int64) * self.shape[1] + columns
            where = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
            values = np.where(keys[where] == wanted, e.data[where], 0.0)
        if self.base.shape[0]:
            values = values + np.einsum("ij,ji->i", self.base_weight[rows], self.base[:, columns])
        return values

    def explicit_mass(self) -> np.ndarray:
        """Each row's explicit mass (the rest is its base weights)."""
        if "explicit_mass" not in self._cache:
            self._cache["explicit_mass"] = np.asarray(self.explicit.sum(axis=1), dtype=np.float64)
        return self._cache["explicit_mass"]

    def _varying_base(self) -> np.ndarray:
        """Indices of the base rows that are not uniform (uniform rows do not change an order)."""
        if "varying" not in self._cache:
            b = self.base
            varying = np.ptp(b, axis=1) > 0 if b.shape[0] else np.zeros(0, dtype=bool)
            self._cache["varying"] = np.flatnonzero(varying)
        return self._cache["varying"]

    def _order(self, j: int | None) -> np.ndarray:
        """Items by decreasing ``base[j]`` (ties by lower id); ``None``: by id."""
        key = f"order{j}"
        if key not in self._cache:
            n = self.shape[1]
            self._cache[key] = np.arange(n) if j is None else np.argsort(-self.base[j], kind="stable")
        return self._cache[key]

    def top_k(self, rows: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` largest cells of each row (ties by lower id): ``(items, values)``, each ``(n, k)``.

        Exact. With at most one non-uniform base row, the items outside a row's explicit cells all
        rank in that base row's order, so only the row's explicit cells and the first ``k`` other
        items in that order are compared.
        """
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        n_columns = self.shape[1]
        items = np.empty((rows.size, k), dtype=np.int64)
        values = np.empty((rows.size, k), dtype=np.float64)
        varying = self._varying_base()
        if varying.size > 1:
            step = max(1, _DENSE_CHUNK_CELLS // n_columns)
            for start in range(0, rows.size, step):
                chunk = rows[start:start + step]
                items[start:start + step], values[start:start + step] = top_k_of_rows(self.to_dense(chunk), k)
            return items, values
        indptr, indices = self.explicit.indptr, self.explicit.indices
        for i, s in enumerate(rows):
            known = indices[indptr[s]:indptr[s + 1]]
            if known.size + k >= n_columns:
                items[i], values[i] = top_k_of_rows(self.to_dense([s]), k)
                continue
            j = int(varying[0]) if varying.size and self.base_weight[s, varying[0]] > 0 else None
            others = self._order(j)[:known.size + k]
            others = others[~np.isin(others, known, assume_unique=True)][:k]
            candidates = np.concatenate([known, others])
            cell = self.values(np.full(candidates.size, s), candidates)
            best = np.lexsort((candidates, -cell))[:k]
            items[i], values[i] = candidates[best], cell[best]
        return items, values

    def support_sizes(self) -> np.ndarray:
        """The number of items with positive probability in each row."""
        if "support" not in self._cache:
            positive_base = self.base > 0
            counts = np.asarray((self.explicit > 0).sum(axis=1)).ravel().astype(np.int64)
            if self.base.shape[0]:
                # a row's base mix is positive on the union of its weighted base rows' supports
                union_masks, where = np.unique(self.base_weight > 0, axis=0, return_inverse=True)
                where = where.ravel()
                for u, mask in enumerate(union_masks):
                    mine = np.flatnonzero(where == u)
                    if not mask.any():
                        continue
                    support = positive_base[mask].any(axis=0)
                    sub = self.explicit[mine]
                    inside = np.asarray(sub[:, support].astype(bool).sum(axis=1)).ravel() if sub.nnz else 0
                    counts[mine] = counts[mine] - inside + int(support.sum())
            self._cache["support"] = counts
        return self._cache["support"]

    def min_value(self) -> float:
        """A lower bound on the smallest cell, exact when every row's base mix attains its minimum
        outside the row's explicit cells (always with uniform base rows and unseen items)."""
        e = self.explicit
        lows = []
        if e.nnz:
            entry_rows = np.repeat(np.arange(self.shape[0]), np.diff(e.indptr))
            lows.append(float(self.values(entry_rows, e.indices).min()))
        full = np.diff(e.indptr) == self.shape[1]
        if not full.all():
            floor = self.base_weight[~full] @ self.base.min(axis=1) if self.base.shape[0] else np.zeros(1)
            lows.append(float(floor.min()))
        return min(lows)

    # ------------------------------------------------------------------ sampling
    def sample(self, rows: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One item per row drawn from the row, with its probability: ``(items, probabilities)``.

        A uniform draw ``u`` picks an explicit cell by the row's cumulative explicit mass, or past
        it a base row by the cumulative base weights and then an item from that base row.
        """
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        e = self.explicit
        if "flat_cdf" not in self._cache:
            self._cache["flat_cdf"] = np.cumsum(e.data)
            self._cache["base_cdf"] = np.cumsum(self.base, axis=1)
            self._cache["base_last"] = [int(np.flatnonzero(row > 0)[-1]) for row in self.base]
        flat_cdf, base_cdf = self._cache["flat_cdf"], self._cache["base_cdf"]
        u = rng.random(rows.size)
        explicit_mass = self.explicit_mass()[rows]
        items = np.empty(rows.size, dtype=np.int64)
        in_explicit = u < explicit_mass
        if in_explicit.any():
            s = rows[in_explicit]
            start, stop = e.indptr[s], e.indptr[s + 1]
            before = np.where(start > 0, flat_cdf[np.maximum(start - 1, 0)], 0.0)
            position = np.searchsorted(flat_cdf, before + u[in_explicit], side="right")
            items[in_explicit] = e.indices[np.clip(position, start, stop - 1)]
        rest = ~in_explicit
        if rest.any():
            s = rows[rest]
            left = u[rest] - explicit_mass[rest]
            weights = np.cumsum(self.base_weight[s], axis=1)
            j = np.minimum((left[:, None] >= weights).sum(axis=1), self.base.shape[0] - 1)
            v = rng.random(s.size)
            picked = np.empty(s.size, dtype=np.int64)
            for b in np.unique(j):
                mine = j == b
                cdf = base_cdf[b]
                last = self._cache["base_last"][b]
                picked[mine] = np.minimum(np.searchsorted(cdf, v[mine] * cdf[-1], side="right"), last)
            items[rest] = picked
        probabilities = self.values(rows, items)
        zero = probabilities <= 0  # only from floating-point edges: redraw from the dense row
        for i in np.flatnonzero(zero):
            row = self.to_dense([rows[i]])[0]
            items[i] = rng.choice(row.size, p=row / row.sum())
            probabilities[i] = row[items[i]]
        return items, probabilities

    # ------------------------------------------------------------------ combining
    def mix(self, other: SparseTable, weight: Any) -> SparseTable:
        """``(1 - weight) * self + weight * other`` row by row (``weight`` a float or one per row), exact:
        the explicit cells are the union of both, the base rows are both sets side by side."""
        if other.shape != self.shape:
            raise ValueError(f"tables differ in shape: {self.shape} vs {other.shape}")
        a = np.broadcast_to(np.asarray(weight, dtype=np.float64), (self.shape[0],))
        explicit = sp.diags_array(1.0 - a) @ self.explicit + sp.diags_array(a) @ other.explicit
        base = np.vstack([self.base, other.base])
        base_weight = np.hstack([(1.0 - a)[:, None] * self.base_weight, a[:, None] * other.base_weight])
        return SparseTable.build(explicit, base, base_weight)

    def arrays(self) -> dict[str, np.ndarray]:
        """The parts as named arrays (what an artifact stores)."""
        e = self.explicit
        return {"indptr": e.indptr.astype(np.int64), "indices": e.indices.astype(np.int64),
                "data": e.data, "base": self.base, "base_weight": self.base_weight}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> SparseTable:
        """Inverse of ``arrays``."""
        explicit = sp.csr_array((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return cls.build(explicit, arrays["base"], arrays["base_weight"], rescale=False)


def _merge_equal_rows(base: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical base rows (adding their weights) and drop rows no row uses."""
    if base.shape[0] == 0:
        return base.copy(), weight.copy()
    used = weight.any(axis=0)
    base, weight = base[used], weight[:, used]
    if base.shape[0] <= 1:
        return base.copy(), weight.copy()
    unique, where = np.unique(base, axis=0, return_inverse=True)
    merged = np.zeros((weight.shape[0], unique.shape[0]))
    for source, target in enumerate(where.ravel()):
        merged[:, target] += weight[:, source]
    return unique, merged


def top_k_of_rows(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each dense row and their column ids, ties by lower id.

    Examples
    --------
    >>> top_k_of_rows(np.array([[0.2, 0.4, 0.2, 0.2]]), 2)[0].tolist()
    [[1, 0]]
    """
    n = rows.shape[1]
    if k < n:
        part = np.argpartition(-rows, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), rows.shape)
    picked = np.take_along_axis(rows, part, axis=1)
    # a tie at the k-th value may leave a lower id outside the partition: widen to all tied items
    kth = picked.min(axis=1, keepdims=True)
    if ((rows == kth).sum(axis=1) > (picked == kth).sum(axis=1)).any():
        part = np.argsort(-rows, axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(rows, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(picked, order, axis=1)
