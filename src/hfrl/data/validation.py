"""Validate logged data at the edge: every problem is named by column, first row and count."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from hfrl.data import schema
from hfrl.errors import LogValidationError

__all__ = ["LogValidationError", "LogValidationWarning", "validate_logs"]


class LogValidationWarning(UserWarning):
    """Rows were dropped by ``on_invalid="drop"``; the message says how many and why."""


def _first_and_count(mask: np.ndarray) -> tuple[int, int]:
    positions = np.flatnonzero(mask)
    return int(positions[0]), int(positions.size)


def _integer_ids(values: pd.Series, column: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Integer view of an id column and the mask of rows that are not whole numbers."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(), None, "an integer id, got booleans"
    if pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
        return values.to_numpy(dtype=np.int64), None, ""
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numeric) | (np.mod(numeric, 1.0) != 0.0)
    ids = np.where(bad, 0, numeric).astype(np.int64)
    return ids, bad, "an integer id"


class _Checker:
    """Collects problems; raises the first or drops all offending rows."""

    def __init__(self, n_rows: int, on_invalid: str, source: str | None) -> None:
        self.drop_mask = np.zeros(n_rows, dtype=bool)
        self.on_invalid = on_invalid
        self.source = source
        self.reasons: list[str] = []

    def check(self, mask: np.ndarray | None, column: str, expected: str, values: pd.Series) -> None:
        if mask is None or not mask.any():
            return
        first, count = _first_and_count(mask)
        message = (
            f"column {column!r}: row {first} has {values.iloc[first]!r}, expected {expected}; "
            f"{count} of {mask.size} rows offend"
        )
        if self.on_invalid == "raise":
            raise LogValidationError(
                message, column=column, first_row=first, count=count, source=self.source
            )
        self.drop_mask |= mask
        self.reasons.append(f"{column}: {count} rows ({expected})")


def validate_logs(
    logs: pd.DataFrame,
    *,
    n_states: int | None = None,
    n_actions: int | None = None,
    required: Iterable[str] = schema.REQUIRED_COLUMNS,
    on_invalid: str = "raise",
    source: str | None = None,
) -> pd.DataFrame:
    """Check a log DataFrame against the schema and return it with canonical dtypes.

    Parameters
    ----------
    logs : DataFrame
        One row per decision; see ``hfrl.data.schema``.
    n_states, n_actions : int, optional
        When given, ids must lie in ``[0, n)``; an action outside is an unknown action id.
    required : iterable of str
        Columns that must be present (``propensity`` is added by estimators that need it).
    on_invalid : {"raise", "drop"}
        ``"raise"`` (default) raises on the first problem; ``"drop"`` removes offending rows and
        warns with the count per column. Nothing is dropped silently.
    source : str, optional
        A file name to put in front of messages.

    Returns
    -------
    DataFrame
        A copy with ``state``/``action`` as int64, ``reward``/``propensity`` as float64,
        ``timestamp`` as UTC datetimes and ``done`` as bool; ``attrs["n_dropped"]`` holds how
        many rows were dropped.

    Raises
    ------
    LogValidationError
        Naming the column, the first offending row (0-based position) and the count.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 1], "action": [2, 0], "reward": [1.0, 0.0]})
    >>> validate_logs(logs).dtypes["action"]
    dtype('int64')
    >>> validate_logs(logs.assign(reward=[1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: column 'reward': row 1 has nan, expected a finite number; ...
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    if not isinstance(logs, pd.DataFrame):
        raise TypeError(f"logs must be a pandas DataFrame, got {type(logs).__name__}")
    required = tuple(required)
    missing = [c for c in required if c not in logs.columns]
    if missing:
        raise LogValidationError(
            f"missing required column(s) {missing}; the logs have {list(logs.columns)}",
            column=missing[0],
            source=source,
        )
    if len(logs) == 0:
        raise LogValidationError("the logs are empty (0 rows)", count=0, source=source)

    out = logs.copy()
    checker = _Checker(len(out), on_invalid, source)
    bounds = {schema.STATE: n_states, schema.ACTION: n_actions, schema.NEXT_STATE: n_states}
    for column in schema.INTEGER_COLUMNS:
        if column not in out.columns:
            continue
        values = out[column]
        allow_missing = column == schema.NEXT_STATE
        ids, bad, expected = _integer_ids(values, column)
        if bad is None and expected:  # booleans
            checker.check(np.ones(len(out), dtype=bool), column, expected, values)
            continue
        if allow_missing and bad is not None:
            bad = bad & values.notna().to_numpy()
        checker.check(bad, column, expected or "an integer id", values)
        upper = bounds.get(column)
        valid = ~bad if bad is not None else np.ones(len(out), dtype=bool)
        negative = valid & (ids < 0)
        checker.check(negative, column, "a non-negative integer id", values)
        if upper is not None:
            outside = valid & (ids >= upper)
            label = "known action id" if column == schema.ACTION else "known state id"
            checker.check(outside, column, f"a {label} in [0, {upper})", values)
        if allow_missing and values.hasnans:
            out[column] = pd.array(np.where(values.isna(), pd.NA, ids), dtype="Int64")
        else:
            out[column] = ids

    for column in (schema.REWARD, schema.PROPENSITY, schema.WEIGHT):
        if column not in out.columns:
            continue
        values = out[column]
        if pd.api.types.is_bool_dtype(values.dtype):
            numeric = values.to_numpy(dtype=np.float64)
        else:
            numeric = pd.to_numeric(values, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        not_number = ~np.isfinite(numeric)
        checker.check(not_number, column, "a finite number", values)
        if column == schema.PROPENSITY:
            checker.check(~not_number & ((numeric <= 0) | (numeric > 1)), column,
                          "a propensity in (0, 1]", values)
        elif column == schema.WEIGHT:
            checker.check(~not_number & (numeric < 0), column, "a non-negative weight", values)
        out[column] = numeric

    if schema.TIMESTAMP in out.columns:
        values = out[schema.TIMESTAMP]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            parsed = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            parsed = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
        else:
            parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        checker.check(parsed.isna().to_numpy(), schema.TIMESTAMP, "a parseable date-time", values)
        out[schema.TIMESTAMP] = parsed

    if schema.DONE in out.columns:
        values = out[schema.DONE]
        if pd.api.types.is_bool_dtype(values.dtype):
            out[schema.DONE] = values.to_numpy(dtype=bool)
        else:
            numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            checker.check(~np.isin(numeric, (0.0, 1.0)), schema.DONE, "a boolean (0/1)", values)
            out[schema.DONE] = numeric == 1.0

    n_dropped = int(checker.drop_mask.sum())
    if n_dropped:
        out = out.loc[~checker.drop_mask].reset_index(drop=True)
        prefix = f"{source}: " if source else ""
        warnings.warn(
            f"{prefix}dropped {n_dropped} of {len(logs)} rows: " + "; ".join(checker.reasons),
            LogValidationWarning,
            stacklevel=2,
        )
        if len(out) == 0:
            raise LogValidationError(
                "every row was invalid; nothing is left after dropping", count=n_dropped,
                source=source,
            )
    out.attrs["n_dropped"] = n_dropped
    return out
