"""The one validator of logged data: the rules of the log schema, checked where the rows lie.

Each rule is an expression of the backends' grammar that is non-zero on an offending row, so the
same rule runs as numpy over a DataFrame and as SQL over files (DuckDB, Spark). A source is checked
once: column statistics (Parquet footers, or one min/max query) prove what they can, one counting
pass checks the rest, and only when something is wrong a second query finds the first offending
row, so every message names the file, column, first row, its value and how many rows offend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.backends.expressions import columns_of, evaluate_numpy
from hfrl.data import schema
from hfrl.errors import LogValidationError

__all__ = [
    "LogValidationError",
    "LogValidationWarning",
    "Rule",
    "canonical",
    "check_columns",
    "check_rules",
    "column_rules",
    "format_value",
    "id_rules",
    "number_rules",
    "proven_columns",
    "time_expression",
    "validate_logs",
]

ID_COLUMNS = (schema.STATE, schema.ACTION, schema.POSITION, schema.NEXT_STATE)
NUMERIC_KINDS = ("integer", "float", "bool")


class LogValidationWarning(UserWarning):
    """Rows were dropped by ``on_invalid="drop"``; the message says how many and why."""


@dataclass(frozen=True)
class Rule:
    """One schema rule: rows where ``bad`` (an expression) is non-zero do not hold ``expected``."""

    column: str
    expected: str
    bad: str


def time_expression(kind: str) -> str:
    """Seconds since 1970 of the ``timestamp`` column: numbers are taken as seconds already."""
    if kind in ("integer", "float"):
        return f"cast_double({schema.TIMESTAMP})"
    return f"epoch({schema.TIMESTAMP})"


def id_rules(column: str, bound: int | None) -> list[Rule]:
    x = f"cast_double({column})"
    not_whole = f"1 - finite({x}) * ({x} == floor({x}))"
    if column == schema.NEXT_STATE:  # empty at the end of a session
        not_whole = f"(1 - missing({column})) * ({not_whole})"
    rules = [
        Rule(column, "an integer id", not_whole),
        Rule(column, "a non-negative integer id", f"finite({x}) * ({x} < 0)"),
    ]
    if bound is not None:
        label = "action" if column == schema.ACTION else "state"
        rules.append(Rule(column, f"a known {label} id in [0, {bound})", f"finite({x}) * ({x} >= {bound})"))
    return rules


def number_rules(column: str, low: float | None, high: float | None, expected: str,
                  open_low: bool = False) -> list[Rule]:
    x = f"cast_double({column})"
    rules = [Rule(column, "a finite number", f"1 - finite({x})")]
    outside = []
    if low is not None:
        outside.append(f"({x} <= {low!r})" if open_low else f"({x} < {low!r})")
    if high is not None:
        outside.append(f"({x} > {high!r})")
    if outside:
        rules.append(Rule(column, expected, f"finite({x}) * ({' + '.join(outside)})"))
    return rules


def column_rules(
    columns: Iterable[str],
    *,
    n_states: int | None = None,
    n_actions: int | None = None,
    reward_range: tuple[float, float] | None = None,
    time_kind: str = "datetime",
) -> list[Rule]:
    """The rules of the log schema for the schema columns among ``columns``, in a fixed order."""
    present = set(columns)
    bounds = {schema.STATE: n_states, schema.ACTION: n_actions, schema.NEXT_STATE: n_states,
              schema.POSITION: None}
    rules: list[Rule] = []
    for column in ID_COLUMNS:
        if column in present:
            rules += id_rules(column, bounds[column])
    if schema.REWARD in present:
        low, high = reward_range if reward_range is not None else (None, None)
        rules += number_rules(schema.REWARD, low, high,
                               f"a reward in the declared reward_range [{low:g}, {high:g}]"
                               if reward_range is not None else "")
    for column in (schema.PROPENSITY, schema.CASCADE_PROPENSITY, schema.SLATE_PROPENSITY):
        if column in present:
            rules += number_rules(column, 0.0, 1.0, "a propensity in (0, 1]", open_low=True)
    if schema.WEIGHT in present:
        rules += number_rules(schema.WEIGHT, 0.0, None, "a non-negative weight")
    if schema.TIMESTAMP in present:
        rules.append(Rule(schema.TIMESTAMP, "a parseable date-time",
                          f"1 - finite({time_expression(time_kind)})"))
    if schema.DONE in present:
        x = f"cast_double({schema.DONE})"
        rules.append(Rule(schema.DONE, "a boolean (0/1)", f"1 - finite({x}) * (({x} == 0) + ({x} == 1))"))
    for column, what in ((schema.SESSION_ID, "a session id"), (schema.SLATE_ID, "a slate id")):
        if column in present:
            rules.append(Rule(column, f"{what} (not empty)", f"missing({column})"))
    return rules


def proven_columns(
    ranges: pd.DataFrame,
    *,
    n_states: int | None = None,
    n_actions: int | None = None,
    reward_range: tuple[float, float] | None = None,
) -> set[str]:
    """The columns whose every rule the column statistics alone prove (no row scan needed).

    ``ranges`` is ``Backend.column_ranges``: ``min``, ``max``, ``nulls`` and ``kind`` per column
    (NaN min/max when a float column holds NaN, so NaN is never proven away).
    """

    def numeric(column: str, low: float | None = None, high: float | None = None,
                open_low: bool = False) -> bool:
        row = ranges.loc[column]
        if row["kind"] not in NUMERIC_KINDS or row["nulls"] != 0:
            return False
        if not (math.isfinite(row["min"]) and math.isfinite(row["max"])):
            return False
        above_low = low is None or (row["min"] > low if open_low else row["min"] >= low)
        return bool(above_low and (high is None or row["max"] <= high))

    def ids(column: str, bound: int | None, nullable: bool = False) -> bool:
        row = ranges.loc[column]
        if row["kind"] != "integer" or (row["nulls"] != 0 and not nullable):
            return False
        if not math.isfinite(row["min"]):
            return bool(nullable)  # every value empty
        return bool(row["min"] >= 0 and (bound is None or row["max"] < bound))

    proven = set()
    checks = {
        schema.STATE: lambda: ids(schema.STATE, n_states),
        schema.ACTION: lambda: ids(schema.ACTION, n_actions),
        schema.POSITION: lambda: ids(schema.POSITION, None),
        schema.NEXT_STATE: lambda: ids(schema.NEXT_STATE, n_states, nullable=True),
        schema.REWARD: lambda: numeric(schema.REWARD, *(reward_range or (None, None))),
        schema.PROPENSITY: lambda: numeric(schema.PROPENSITY, 0.0, 1.0, open_low=True),
        schema.CASCADE_PROPENSITY: lambda: numeric(schema.CASCADE_PROPENSITY, 0.0, 1.0, open_low=True),
        schema.SLATE_PROPENSITY: lambda: numeric(schema.SLATE_PROPENSITY, 0.0, 1.0, open_low=True),
        schema.WEIGHT: lambda: numeric(schema.WEIGHT, 0.0),
        schema.TIMESTAMP: lambda: bool(ranges.loc[schema.TIMESTAMP, "nulls"] == 0 and (
            ranges.loc[schema.TIMESTAMP, "kind"] == "datetime" or numeric(schema.TIMESTAMP))),
        schema.DONE: lambda: bool(ranges.loc[schema.DONE, "nulls"] == 0 and (
            ranges.loc[schema.DONE, "kind"] == "bool" or numeric(schema.DONE, 0.0, 1.0)
            and ranges.loc[schema.DONE, "kind"] == "integer")),
        schema.SESSION_ID: lambda: bool(ranges.loc[schema.SESSION_ID, "nulls"] == 0),
        schema.SLATE_ID: lambda: bool(ranges.loc[schema.SLATE_ID, "nulls"] == 0),
    }
    for column, check in checks.items():
        if column in ranges.index and check():
            proven.add(column)
    return proven


def format_value(value: object) -> str:
    """A stored value as a person reads it (``0.5``, ``'abc'``, ``empty``), never a numpy repr."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "an empty value" if value is None or value is pd.NaT else "NaN"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, pd.Timestamp):
        return str(value)
    return repr(str(value))


def check_rules(
    backend: Backend,
    logs: object,
    rules: Sequence[Rule],
    n_rows: int,
    source: str | None = None,
) -> None:
    """Count the rows offending each rule in one pass; raise for the first failing rule.

    The message names the column, the first offending row (0-based, in file order), its value,
    what was expected and how many rows offend.
    """
    if not rules:
        return
    totals = backend.group_sums(logs, [], {f"rule{i}": rule.bad for i, rule in enumerate(rules)}).iloc[0]
    for i, rule in enumerate(rules):
        count = int(round(float(totals[f"rule{i}"])))
        if count > 0:
            raise offending_rows_error(backend, logs, rule, count, n_rows, source)


def offending_rows_error(backend: Backend, logs: object, rule: Rule, count: int, n_rows: int,
                         source: str | None) -> LogValidationError:
    """The error for ``count`` rows offending ``rule``, naming the first one and its value."""
    first = backend.first_row(logs, rule.bad)
    where = "a row"
    if first is not None:
        where = f"row {first} has {format_value(backend.value_at(logs, rule.column, first))}"
    return LogValidationError(
        f"column {rule.column!r}: {where}, expected {rule.expected}; {count:,} of {n_rows:,} rows offend",
        column=rule.column, first_row=first, count=count, source=source,
    )


def _masks(frame: pd.DataFrame, rules: Sequence[Rule]) -> list[np.ndarray]:
    from hfrl.backends.memory import column_values

    needed = set().union(*(columns_of(rule.bad) for rule in rules)) if rules else set()
    columns = {name: column_values(frame, name) for name in needed}
    return [evaluate_numpy(rule.bad, columns, len(frame)) != 0 for rule in rules]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids as int64 (``next_state`` as nullable Int64), numbers as float64, UTC times, bool ``done``."""
    out = frame.copy()
    for column in ID_COLUMNS:
        if column not in out.columns:
            continue
        values = pd.to_numeric(out[column], errors="coerce")
        if column == schema.NEXT_STATE and values.isna().any():
            out[column] = values.astype("Int64")
        else:
            out[column] = values.to_numpy(dtype=np.float64).astype(np.int64)
    for column in (schema.REWARD, schema.PROPENSITY, schema.WEIGHT, schema.CASCADE_PROPENSITY,
                   schema.SLATE_PROPENSITY):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(np.float64)
    if schema.TIMESTAMP in out.columns:
        values = out[schema.TIMESTAMP]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            out[schema.TIMESTAMP] = (values.dt.tz_localize("UTC") if values.dt.tz is None
                                     else values.dt.tz_convert("UTC"))
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            out[schema.TIMESTAMP] = pd.to_datetime(values, unit="s", utc=True)
        else:
            out[schema.TIMESTAMP] = pd.to_datetime(values, utc=True, format="mixed")
    if schema.DONE in out.columns:
        out[schema.DONE] = pd.to_numeric(out[schema.DONE]).to_numpy(dtype=np.float64) == 1.0
    return out


def validate_logs(
    logs: pd.DataFrame,
    *,
    n_states: int | None = None,
    n_actions: int | None = None,
    required: Iterable[str] = schema.REQUIRED_COLUMNS,
    on_invalid: str = "raise",
    source: str | None = None,
    reward_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Check a log DataFrame against the schema and return it with canonical dtypes.

    The rules are those of every other log source (``column_rules``); this function applies them
    to a DataFrame in memory and can drop the offending rows instead of raising.

    Parameters
    ----------
    logs : DataFrame
        One row per decision; see ``hfrl.data.schema``.
    n_states, n_actions : int, optional
        When given, ids must lie in ``[0, n)``.
    required : iterable of str
        Columns that must be present.
    on_invalid : {"raise", "drop"}
        ``"raise"`` (default) raises on the first problem; ``"drop"`` removes offending rows and
        warns with the count per column. Nothing is dropped silently.
    source : str, optional
        A file name to put in front of messages.
    reward_range : (float, float), optional
        The declared reward domain; rewards outside it offend.

    Returns
    -------
    DataFrame
        A copy with ``state``/``action`` as int64, ``reward``/``propensity`` as float64,
        ``timestamp`` as UTC datetimes and ``done`` as bool; ``attrs["n_dropped"]`` holds how
        many rows were dropped.

    Raises
    ------
    LogValidationError
        Naming the column, the first offending row (0-based position), its value and the count.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 1], "action": [2, 0], "reward": [1.0, 0.0]})
    >>> validate_logs(logs).dtypes["action"]
    dtype('int64')
    >>> validate_logs(logs.assign(reward=[1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: column 'reward': row 1 has NaN, expected a finite number; ...
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    if not isinstance(logs, pd.DataFrame):
        raise TypeError(f"logs must be a pandas DataFrame, got {type(logs).__name__}")
    check_columns([str(c) for c in logs.columns], required, source)
    if len(logs) == 0:
        raise LogValidationError("the logs are empty (0 rows)", count=0, source=source)
    time_kind = "datetime"
    if schema.TIMESTAMP in logs.columns:
        dtype = logs[schema.TIMESTAMP].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            time_kind = "float"
    rules = column_rules(logs.columns, n_states=n_states, n_actions=n_actions, reward_range=reward_range,
                         time_kind=time_kind)
    masks = _masks(logs, rules)
    drop = np.zeros(len(logs), dtype=bool)
    reasons = []
    for rule, mask in zip(rules, masks, strict=True):
        mask = mask & ~drop
        if not mask.any():
            continue
        if on_invalid == "raise":
            from hfrl.backends.memory import MemoryBackend

            raise offending_rows_error(MemoryBackend(), logs, rule, int(mask.sum()), len(logs), source)
        drop |= mask
        reasons.append(f"{rule.column}: {int(mask.sum()):,} rows ({rule.expected})")
    kept = logs.loc[~drop].reset_index(drop=True) if drop.any() else logs
    n_dropped = int(drop.sum())
    if n_dropped:
        prefix = f"{source}: " if source else ""
        warnings.warn(f"{prefix}dropped {n_dropped:,} of {len(logs):,} rows: " + "; ".join(reasons),
                      LogValidationWarning, stacklevel=2)
        if len(kept) == 0:
            raise LogValidationError("every row was invalid; nothing is left after dropping",
                                     count=n_dropped, source=source)
    out = canonical(kept)
    out.attrs["n_dropped"] = n_dropped
    return out


def check_columns(present: Sequence[str], required: Iterable[str], source: str | None,
                  hints: Mapping[str, str] | None = None) -> None:
    """Raise naming the missing required columns and the columns the logs do have."""
    missing = [c for c in required if c not in present]
    if not missing:
        return
    hint = "".join(f"; {hints[c]}" for c in missing if hints and c in hints)
    shown = ", ".join(repr(c) for c in present) if present else "none"
    raise LogValidationError(
        f"missing required column(s) {', '.join(repr(c) for c in missing)}; the logs have {shown}{hint}",
        column=missing[0], source=source,
    )
