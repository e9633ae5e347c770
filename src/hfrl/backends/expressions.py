"""The small expression language that every backend understands.

Aggregates are written once, as strings such as ``"reward / propensity"`` or
``"weight * exp(-0.1 * (12.5 - epoch(timestamp)))"``, and each backend evaluates them its own
way: numpy for memory, SQL for DuckDB and Spark. Allowed: column names, numbers, ``+ - * /``,
unary minus, and the functions ``exp``, ``ln``, ``least``, ``greatest``, ``epoch`` (seconds
since 1970 of a timestamp column) and ``cast_double`` (NULL/NaN when a value is not a number).
One grammar keeps one source of truth for each formula (ARCHITECTURE convention 7).

For validating logs where they lie: comparisons ``< <= > >= == !=`` give 1.0 or
0.0 (0.0 when a side is NULL; on NaN the result is unspecified, so guard with ``finite``),
``finite(x)`` is 1.0 for a non-null finite number and 0.0 otherwise, ``missing(x)`` is 1.0 for
NULL/NaN/NaT and 0.0 otherwise, and ``floor(x)``.
``to_sql`` renders any function missing from the backend's map with ``DEFAULT_SQL_FUNCTIONS``
(written to work in both DuckDB and Spark SQL).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_SQL_FUNCTIONS", "FUNCTIONS", "columns_of", "evaluate_numpy", "parse", "to_sql"]

FUNCTIONS = ("exp", "ln", "least", "greatest", "epoch", "cast_double", "finite", "floor", "missing")
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "=", ast.NotEq: "<>"}


def _sql_finite(args: list[str]) -> str:
    value = f"TRY_CAST({args[0]} AS DOUBLE)"
    return (
        f"(CASE WHEN {value} IS NOT NULL AND NOT isnan({value}) "
        f"AND abs({value}) < CAST('Infinity' AS DOUBLE) THEN 1.0 ELSE 0.0 END)"
    )


DEFAULT_SQL_FUNCTIONS: dict[str, Callable[[list[str]], str]] = {
    "exp": lambda args: f"exp({args[0]})",
    "ln": lambda args: f"ln({args[0]})",
    "least": lambda args: f"least({', '.join(args)})",
    "greatest": lambda args: f"greatest({', '.join(args)})",
    "epoch": lambda args: f"unix_timestamp({args[0]})",
    "cast_double": lambda args: f"TRY_CAST({args[0]} AS DOUBLE)",
    "finite": _sql_finite,
    "floor": lambda args: f"floor({args[0]})",
    "missing": lambda args: (
        f"(CASE WHEN {args[0]} IS NULL OR isnan(TRY_CAST({args[0]} AS DOUBLE)) THEN 1.0 ELSE 0.0 END)"
    ),
}


@lru_cache(maxsize=512)
def parse(expression: str) -> ast.expr:
    """Parse and check an expression; raise ValueError naming what is not allowed."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"cannot parse expression {expression!r}: {exc.msg}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ValueError(f"expression {expression!r}: only {FUNCTIONS} may be called")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ValueError(f"expression {expression!r}: only + - * / are allowed")
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                raise ValueError(
                    f"expression {expression!r}: only single comparisons < <= > >= == != are allowed"
                )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise ValueError(f"expression {expression!r}: only unary minus is allowed")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                raise ValueError(f"expression {expression!r}: only numeric constants are allowed")
        elif not isinstance(node, ast.Name | ast.Load | ast.operator | ast.unaryop | ast.cmpop):
            raise ValueError(f"expression {expression!r}: {type(node).__name__} is not allowed")
    return tree


def columns_of(expression: str) -> set[str]:
    """The column names an expression reads."""
    tree = parse(expression)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def to_sql(expression: str, functions: Mapping[str, Callable[[list[str]], str]]) -> str:
    """Render an expression as SQL; ``functions`` maps each function to its rendering."""

    def render(node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return repr(float(node.value))
        if isinstance(node, ast.Name):
            return '"' + node.id.replace('"', '""') + '"'
        if isinstance(node, ast.UnaryOp):
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return f"({sign}{render(node.operand)})"
        if isinstance(node, ast.BinOp):
            return f"({render(node.left)} {_BINARY[type(node.op)]} {render(node.right)})"
        if isinstance(node, ast.Compare):
            left, right = render(node.left), render(node.comparators[0])
            return f"(CASE WHEN {left} {_COMPARE[type(node.ops[0])]} {right} THEN 1.0 ELSE 0.0 END)"
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        render_call = functions.get(node.func.id) or DEFAULT_SQL_FUNCTIONS[node.func.id]
        return render_call([render(arg) for arg in node.args])

    return render(parse(expression))


def _epoch_seconds(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "O":  # text: parsed as date-times (NaN where it is not one), as in SQL
        parsed = pd.to_datetime(pd.Series(values), utc=True, errors="coerce", format="mixed")
        values = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if values.dtype.kind == "M":
        seconds = values.astype("datetime64[ns]").astype(np.int64) / 1e9
        return np.where(np.isnat(values), np.nan, seconds)
    return _as_double(values)


def _as_double(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64, copy=False)
    numeric = pd.to_numeric(pd.Series(array.ravel()), errors="coerce")
    return numeric.to_numpy(dtype=np.float64, na_value=np.nan).reshape(array.shape)


def _finite(values: Any) -> np.ndarray:
    return np.isfinite(_as_double(values)).astype(np.float64)


def _missing(values: Any) -> np.ndarray:
    return pd.isna(pd.Series(np.asarray(values).ravel())).to_numpy(dtype=np.float64)


def _compare(op: type, left: Any, right: Any) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        result = {
            ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater,
            ast.GtE: np.greater_equal, ast.Eq: np.equal, ast.NotEq: np.not_equal,
        }[op](left, right)
    return np.asarray(result, dtype=np.float64)


_NUMPY_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "exp": np.exp,
    "ln": np.log,
    "least": np.minimum,
    "greatest": np.maximum,
    "epoch": _epoch_seconds,
    "cast_double": _as_double,
    "finite": _finite,
    "floor": np.floor,
    "missing": _missing,
}


def evaluate_numpy(expression: str, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
    """Evaluate an expression over numpy columns; constants broadcast to ``n_rows``."""

    def value(node: ast.expr) -> np.ndarray | float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return columns[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            op = type(node.op)
            if op is ast.Add:
                return np.add(left, right)
            if op is ast.Sub:
                return np.subtract(left, right)
            if op is ast.Mult:
                return np.multiply(left, right)
            return np.divide(left, right)
        if isinstance(node, ast.Compare):
            return _compare(type(node.ops[0]), value(node.left), value(node.comparators[0]))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _NUMPY_FUNCTIONS[node.func.id](*[value(arg) for arg in node.args])

    result = value(parse(expression))
    return np.broadcast_to(np.asarray(result, dtype=np.float64), (n_rows,))
