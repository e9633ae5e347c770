"""In-memory backend: numpy ``bincount`` over a dense composite key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hfrl.backends.base import Backend
from hfrl.backends.expressions import columns_of, evaluate_numpy
from hfrl.backends.files import LogSource, read_frame

__all__ = ["MemoryBackend", "column_values"]

_DENSE_LIMIT = 50_000_000  # beyond this many key cells, group through np.unique instead


def _frame(logs: LogSource) -> pd.DataFrame:
    return logs if isinstance(logs, pd.DataFrame) else read_frame(logs)


def column_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as numpy for the expression evaluator: date-times as naive UTC, booleans as floats."""
    values = frame[name]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    return values.to_numpy()


class MemoryBackend(Backend):
    """Aggregates a DataFrame with numpy; files are loaded first (use DuckDB for big ones)."""

    name = "memory"

    def group_sums(
        self,
        logs: LogSource,
        keys: Sequence[str],
        sums: Mapping[str, str],
        *,
        where: str | None = None,
    ) -> pd.DataFrame:
        frame = _frame(logs)
        expressions = [*sums.values(), *([where] if where else [])]
        needed = set().union(*(columns_of(e) for e in expressions))
        columns = {name: column_values(frame, name) for name in needed}
        n_rows = len(frame)
        mask = None
        if where is not None:
            mask = evaluate_numpy(where, columns, n_rows) != 0
        key_arrays = [frame[k].to_numpy() for k in keys]
        if mask is not None:  # before the cast: excluded rows may hold NaN/NA keys
            key_arrays = [k[mask] for k in key_arrays]
        key_arrays = [k.astype(np.int64) for k in key_arrays]
        values = {}
        for name, expression in sums.items():
            v = evaluate_numpy(expression, columns, n_rows)
            values[name] = v[mask] if mask is not None else v
        n_kept = n_rows if mask is None else int(mask.sum())

        if not keys:
            return pd.DataFrame({name: [float(v.sum())] for name, v in values.items()})
        if n_kept == 0:
            empty = {k: np.empty(0, np.int64) for k in keys}
            empty.update({name: np.empty(0, np.float64) for name in values})
            return pd.DataFrame(empty)

        lows = [int(k.min()) for k in key_arrays]
        sizes = [int(k.max()) - low + 1 for k, low in zip(key_arrays, lows, strict=True)]
        if int(np.prod(sizes, dtype=np.float64)) <= _DENSE_LIMIT:
            code = np.zeros(n_kept, dtype=np.int64)
            for k, low, size in zip(key_arrays, lows, sizes, strict=True):
                code = code * size + (k - low)
            n_cells = int(np.prod(sizes))
            counts = np.bincount(code, minlength=n_cells)
            occupied = np.flatnonzero(counts)
            out: dict[str, np.ndarray] = {}
            remainder = occupied
            parts = []
            for size in reversed(sizes):
                parts.append(remainder % size)
                remainder = remainder // size
            for k, low, part in zip(keys, lows, reversed(parts), strict=True):
                out[k] = part + low
            for name, v in values.items():
                out[name] = np.bincount(code, weights=v, minlength=n_cells)[occupied]
            return pd.DataFrame(out)

        stacked = np.stack(key_arrays, axis=1)
        unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        out = {k: unique[:, i] for i, k in enumerate(keys)}
        for name, v in values.items():
            out[name] = np.bincount(inverse, weights=v, minlength=len(unique))
        return pd.DataFrame(out)

    def columns(self, logs: LogSource) -> list[str]:
        if isinstance(logs, pd.DataFrame):
            return [str(c) for c in logs.columns]
        return list(read_frame(logs).columns)

    def count(self, logs: LogSource) -> int:
        return len(_frame(logs))

    def key_ranges(self, logs: LogSource, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        frame = _frame(logs)
        return {k: (int(frame[k].min()), int(frame[k].max())) for k in keys}

    def column_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame:
        frame = _frame(logs)
        rows = []
        for name in columns:
            series = frame[name]
            nulls = int(series.isna().sum())
            low = high = np.nan
            if pd.api.types.is_bool_dtype(series.dtype):
                kind = "bool"
            elif pd.api.types.is_integer_dtype(series.dtype):
                kind = "integer"
            elif pd.api.types.is_float_dtype(series.dtype):
                kind = "float"
            elif pd.api.types.is_datetime64_any_dtype(series.dtype):
                kind = "datetime"
            else:
                kind = "other"
            if kind == "datetime":
                seconds = evaluate_numpy(f"epoch({name})", {name: column_values(frame, name)}, len(frame))
                if np.isfinite(seconds).any():
                    low, high = float(np.nanmin(seconds)), float(np.nanmax(seconds))
            elif kind != "other" and len(series) > nulls:
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
                if not np.isnan(values).all():
                    low, high = float(np.nanmin(values)), float(np.nanmax(values))
            rows.append({"min": low, "max": high, "nulls": nulls, "kind": kind})
        return pd.DataFrame(rows, index=pd.Index(list(columns)))

    def first_row(self, logs: LogSource, where: str) -> int | None:
        frame = _frame(logs)
        columns = {name: column_values(frame, name) for name in columns_of(where)}
        hits = np.flatnonzero(evaluate_numpy(where, columns, len(frame)) != 0)
        return int(hits[0]) if hits.size else None

    def value_at(self, logs: LogSource, column: str, row: int) -> object:
        return _frame(logs)[column].iloc[row]
