"""DuckDB backend: SQL over CSV/Parquet files (out of core) or over a DataFrame without copying."""

from __future__ import annotations

import ast
import os
import re
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hfrl.backends.base import Backend, range_record
from hfrl.backends.expressions import parse, to_sql
from hfrl.backends.files import LogSource, is_path, resolve_files, scan_sql
from hfrl.errors import LogValidationError

__all__ = ["DuckDBBackend"]

# Only what differs from the shared ANSI renderings in ``expressions.DEFAULT_SQL_FUNCTIONS``. DuckDB
# folds ``isnan`` and comparisons with Parquet min/max statistics, which skip NaN, so a NaN there
# would pass for finite; its own ``isfinite`` is not folded.
SQL_FUNCTIONS = {
    "epoch": lambda args: f"epoch(TRY_CAST({args[0]} AS TIMESTAMPTZ))",
    "finite": lambda args: (
        f"(CASE WHEN coalesce(isfinite(TRY_CAST({args[0]} AS DOUBLE)), false) THEN 1.0 ELSE 0.0 END)"
    ),
    "missing": lambda args: (
        f"(CASE WHEN {args[0]} IS NULL THEN 1.0 WHEN TRY_CAST({args[0]} AS DOUBLE) IS NULL THEN 0.0 "
        f"WHEN isfinite(TRY_CAST({args[0]} AS DOUBLE)) OR isinf(TRY_CAST({args[0]} AS DOUBLE)) THEN 0.0 "
        "ELSE 1.0 END)"
    ),
}


PERFECT_HASH_BITS = 22
_CSV_CONVERSION = re.compile(
    r"CSV Error on Line: (?P<line>\d+).*?converting column \"(?P<column>[^\"]+)\"\. "
    r"Could not convert string \"(?P<value>.*?)\" to '(?P<type>[A-Z ]+)'",
    re.DOTALL,
)
_KINDS = {
    "TINYINT": "integer", "SMALLINT": "integer", "INTEGER": "integer", "BIGINT": "integer",
    "HUGEINT": "integer", "UTINYINT": "integer", "USMALLINT": "integer", "UINTEGER": "integer",
    "UBIGINT": "integer", "UHUGEINT": "integer", "FLOAT": "float", "DOUBLE": "float",
    "BOOLEAN": "bool", "DATE": "datetime",
}


def _kind(sql_type: str) -> str:
    if sql_type.startswith("TIMESTAMP"):
        return "datetime"
    if sql_type.startswith("DECIMAL"):
        return "float"
    return _KINDS.get(sql_type, "other")


_CONNECTIONS = threading.local()
DENSE_CELLS = 1 << 22  # composite keys up to this many cells take the dense path
STREAM_CELLS = 1 << 19  # "auto" streams into numpy from this many dense cells (1,000 x 1,000: yes)


_RANGES_CACHE: dict[tuple, pd.DataFrame] = {}


def _file_signature(logs: LogSource, columns: Sequence[str]) -> tuple | None:
    """Files, sizes and modification times behind a path source (None for anything else)."""
    if not is_path(logs) or "://" in str(logs):
        return None
    try:
        stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in resolve_files(logs)]
    except (OSError, LogValidationError):
        return None
    return (str(logs), tuple(columns), tuple(stats))


def _is_one(expression: str) -> bool:
    node = parse(expression)
    return isinstance(node, ast.Constant) and float(node.value) == 1.0


def _sum_sql(expression: str, functions: Mapping = SQL_FUNCTIONS) -> str:
    """``sum`` of an expression as DOUBLE; a constant 1 becomes ``count(*)`` (DuckDB's cheapest)."""
    if _is_one(expression):
        return "CAST(count(*) AS DOUBLE)"
    return f"CAST(sum({to_sql(expression, functions)}) AS DOUBLE)"


def _canonical(expression: str) -> str:
    """One spelling per expression (so that equal expressions are computed once)."""
    return ast.unparse(parse(expression))


def _shared_expressions(sums: Mapping[str, str]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The distinct expressions to project, and those that are products of two projected ones."""
    distinct = list(dict.fromkeys(_canonical(e) for e in sums.values()))
    derived = {}
    for expression in distinct:
        node = parse(expression)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = ast.unparse(node.left), ast.unparse(node.right)
            if left in distinct and right in distinct and left != expression and right != expression:
                derived[expression] = (left, right)
    projected = [e for e in distinct if e not in derived]
    derived = {e: pair for e, pair in derived.items() if all(p in projected for p in pair)}
    return [e for e in distinct if e not in derived], derived


def _direct_epoch(sql_type: str) -> bool:
    """Types whose ``epoch`` DuckDB computes directly (naive times as UTC, like pandas)."""
    return sql_type.startswith("TIMESTAMP") or sql_type == "DATE"


_TYPES_CACHE: dict[tuple, dict[str, str]] = {}


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBBackend(Backend):
    """Group-by sums in DuckDB; ``memory_limit`` and ``threads`` are passed to the engine.

    ``strategy`` chooses how keyed sums run. ``"composite"`` groups on one composite integer key
    when the key columns' statistics (Parquet metadata, or a min/max query) show small dense
    ranges, so DuckDB uses its perfect-hash aggregate, and falls back to a plain ``GROUP BY``
    otherwise. ``"sql"`` always uses the plain ``GROUP BY``. ``"stream"`` lets DuckDB scan and
    project while numpy ``bincount`` adds batches into dense arrays. ``"auto"`` is ``"composite"``
    below ``STREAM_CELLS`` dense cells and ``"stream"`` from there: each DuckDB thread's
    perfect-hash table of 1M cells no longer fits in cache, and streaming halved the time of
    the (state, action) sums at 1,000 x 1,000 (measured in ``bench/RESULTS.md``). All give the
    same numbers (to rounding); ``bench/bench_frequencies.py`` measures them.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 1, 1], "action": [1, 0, 0], "reward": [1.0, 0.5, 2.0]})
    >>> DuckDBBackend().group_sums(logs, ["state", "action"], {"n": "1", "r": "reward"})
       state  action    n    r
    0      0       1  1.0  1.0
    1      1       0  2.0  2.5
    """

    name = "duckdb"

    def __init__(
        self, memory_limit: str | None = None, threads: int | None = None, strategy: str = "auto"
    ) -> None:
        if strategy not in ("auto", "sql", "composite", "stream"):
            raise ValueError(f"strategy must be 'auto', 'sql', 'composite' or 'stream', got {strategy!r}")
        self.memory_limit = memory_limit
        self.threads = threads
        self.strategy = strategy

    def connection(self):  # noqa: ANN201 - duckdb is imported lazily
        """A per-thread DuckDB connection with the configured limits (shared by backends alike)."""
        settings = (self.memory_limit, self.threads)
        connections = _CONNECTIONS.__dict__.setdefault("by_settings", {})
        connection = connections.get(settings)
        if connection is None:
            import duckdb

            connection = duckdb.connect()
            if self.memory_limit:
                connection.execute(f"SET memory_limit = '{self.memory_limit}'")
            if self.threads:
                connection.execute(f"SET threads = {int(self.threads)}")
            connection.execute("SET preserve_insertion_order = false")
            # naive date-times are UTC, as in pandas (memory backend) and in epoch(timestamp)
            connection.execute("SET TimeZone = 'UTC'")
            # Dense small-range keys (ids from Parquet statistics) go through DuckDB's perfect
            # hash aggregate instead of a general hash table: 1,000 x 500 ids need 19-20 bits.
            connection.execute(f"SET perfect_ht_threshold = {PERFECT_HASH_BITS}")
            connections[settings] = connection
        return connection

    def relation(self, logs: LogSource) -> str:
        """The table expression for ``logs`` (a registered view for a DataFrame)."""
        return self.relation_sql(logs, self.connection())

    @staticmethod
    def relation_name(logs: pd.DataFrame) -> str:
        """The view name a DataFrame is registered under."""
        return f"hfrl_frame_{id(logs)}"

    @staticmethod
    def relation_sql(logs: LogSource, connection) -> str:  # noqa: ANN001 - duckdb is imported lazily
        """The table expression for ``logs`` on ``connection`` (registering a DataFrame there)."""
        if is_path(logs):
            return scan_sql(logs)
        if isinstance(logs, pd.DataFrame):
            name = DuckDBBackend.relation_name(logs)
            connection.register(name, logs)
            return _quote_identifier(name)
        raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")

    def query(self, sql: str, logs: LogSource) -> pd.DataFrame:
        """Run ``sql`` with ``{logs}`` standing for the table expression; errors name the source."""
        import duckdb

        source = str(logs) if is_path(logs) else None
        try:
            relation = self.relation(logs)
            try:
                return self.connection().execute(sql.format(logs=relation)).df()
            finally:
                if isinstance(logs, pd.DataFrame):  # do not keep the frame alive in the connection
                    self.connection().unregister(self.relation_name(logs))
        except duckdb.BinderException as exc:
            raise LogValidationError(f"column not found: {exc}", source=source) from exc
        except duckdb.ConversionException as exc:
            found = _CSV_CONVERSION.search(str(exc))
            if found is not None and is_path(logs):
                column, sql_type = found["column"], found["type"]
                row = int(found["line"]) - 2  # 1-based file line, after the header
                count = self._count_unconvertible(logs, column, sql_type)
                counted = f"; {count} rows offend" if count is not None else ""
                raise LogValidationError(
                    f"column {column!r}: row {row} has {found['value']!r}, expected a "
                    f"{sql_type} value like the rest of the column{counted}",
                    column=column, first_row=row, count=count, source=source,
                ) from exc
            raise LogValidationError(f"a value has the wrong type: {exc}", source=source) from exc
        except duckdb.IOException as exc:
            raise LogValidationError(f"cannot read the logs: {exc}", source=source) from exc

    def _count_unconvertible(self, logs: LogSource, column: str, sql_type: str) -> int | None:
        """Rows of a CSV source whose ``column`` text does not convert to ``sql_type``."""
        relation = scan_sql(logs)
        if not relation.startswith("read_csv(") or not re.fullmatch(r"[A-Z ]+", sql_type):
            return None
        relation = relation[:-1] + ", all_varchar=true)"
        q = _quote_identifier(column)
        sql = f"SELECT count(*) FROM {relation} WHERE {q} IS NOT NULL AND TRY_CAST({q} AS {sql_type}) IS NULL"
        try:
            return int(self.connection().execute(sql).fetchone()[0])
        except Exception:  # noqa: BLE001 - the count is a courtesy; the first row is already known
            return None

    def column_types(self, logs: LogSource) -> dict[str, str]:
        """DuckDB type of every column, by quoted name (files: cached while unchanged)."""
        signature = _file_signature(logs, ("*types*",))
        if signature is not None and signature in _TYPES_CACHE:
            return dict(_TYPES_CACHE[signature])
        described = self.query("DESCRIBE SELECT * FROM {logs}", logs)
        types = {_quote_identifier(str(n)): str(t)
                 for n, t in zip(described["column_name"], described["column_type"], strict=True)}
        if signature is not None:
            if len(_TYPES_CACHE) >= 64:
                _TYPES_CACHE.pop(next(iter(_TYPES_CACHE)))
            _TYPES_CACHE[signature] = dict(types)
        return types

    def functions(self, logs: LogSource, expressions: Sequence[str | None]) -> Mapping:
        """SQL renderings for these expressions: ``epoch`` of a date-time column without a cast.

        ``epoch(TRY_CAST(x AS TIMESTAMPTZ))`` (needed for text) costs ~8x ``epoch(x)`` on a
        TIMESTAMP column: 5 s per 100M rows on 2 cores.
        """
        if not any(e is not None and "epoch" in e for e in expressions):
            return SQL_FUNCTIONS
        types = self.column_types(logs)

        def epoch(args: list[str]) -> str:
            if _direct_epoch(types.get(args[0], "")):
                return f"epoch({args[0]})"
            return SQL_FUNCTIONS["epoch"](args)

        return {**SQL_FUNCTIONS, "epoch": epoch}

    def group_sums(
        self,
        logs: LogSource,
        keys: Sequence[str],
        sums: Mapping[str, str],
        *,
        where: str | None = None,
    ) -> pd.DataFrame:
        layout = self._dense_layout(logs, keys) if keys and self.strategy != "sql" else None
        strategy = self.strategy
        if strategy == "auto" and layout is not None:
            strategy = "stream" if int(np.prod(layout[1])) >= STREAM_CELLS else "composite"
        if layout is not None and strategy in ("auto", "composite"):
            return self._composite_group_sums(logs, keys, sums, where, layout)
        if layout is not None and strategy == "stream":
            return self._streamed_group_sums(logs, keys, sums, where, layout)
        functions = self.functions(logs, [*sums.values(), where])
        key_sql = [_quote_identifier(k) for k in keys]
        select = [f"CAST({k} AS BIGINT) AS {k}" for k in key_sql]
        select += [f"{_sum_sql(e, functions)} AS {_quote_identifier(n)}" for n, e in sums.items()]
        sql = f"SELECT {', '.join(select)} FROM {{logs}}"
        if where is not None:
            sql += f" WHERE ({to_sql(where, functions)}) <> 0"
        if keys:
            sql += f" GROUP BY {', '.join(key_sql)} ORDER BY {', '.join(key_sql)}"
        frame = self.query(sql, logs)
        if not keys:
            frame = frame.fillna(0.0)
        return frame

    def _dense_layout(self, logs: LogSource, keys: Sequence[str]) -> tuple[list[int], list[int]] | None:
        """Offsets and sizes of the keys when statistics show small dense integer ranges, else None."""
        ranges = self.column_ranges(logs, keys)
        if not ((ranges["kind"] == "integer").all() and (ranges["nulls"] == 0).all()):
            return None
        if not (np.isfinite(ranges["min"]).all() and np.isfinite(ranges["max"]).all()):
            return None
        lows = [int(v) for v in ranges["min"]]
        sizes = [int(high) - low + 1 for high, low in zip(ranges["max"], lows, strict=True)]
        if float(np.prod(sizes, dtype=np.float64)) > DENSE_CELLS:
            return None
        return lows, sizes

    @staticmethod
    def _code_sql(keys: Sequence[str], lows: list[int], sizes: list[int]) -> str:
        code = ""
        for key, low, size in zip(keys, lows, sizes, strict=True):
            term = f"(CAST({_quote_identifier(key)} AS INTEGER) - {low})"
            code = term if not code else f"({code}) * {size} + {term}"
        return code

    @staticmethod
    def _decode(keys: Sequence[str], codes: np.ndarray, lows: list[int], sizes: list[int]) -> dict:
        out: dict[str, np.ndarray] = {}
        remainder = codes.astype(np.int64)
        for key, low, size in reversed(list(zip(keys, lows, sizes, strict=True))):
            out[key] = remainder % size + low
            remainder = remainder // size
        return {k: out[k] for k in keys}

    def _composite_group_sums(
        self, logs: LogSource, keys: Sequence[str], sums: Mapping[str, str], where: str | None,
        layout: tuple[list[int], list[int]],
    ) -> pd.DataFrame:
        """Group on one composite integer key (DuckDB's perfect-hash aggregate), decode in numpy."""
        lows, sizes = layout
        functions = self.functions(logs, [*sums.values(), where])
        select = [f"{self._code_sql(keys, lows, sizes)} AS __hfrl_code"]
        select += [f"{_sum_sql(e, functions)} AS {_quote_identifier(n)}" for n, e in sums.items()]
        sql = f"SELECT {', '.join(select)} FROM {{logs}}"
        if where is not None:
            sql += f" WHERE ({to_sql(where, functions)}) <> 0"
        sql += " GROUP BY __hfrl_code"
        frame = self.query(sql, logs)
        codes = frame["__hfrl_code"].to_numpy(dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        out = self._decode(keys, codes[order], lows, sizes)
        for name in sums:
            out[name] = frame[name].to_numpy(dtype=np.float64)[order]
        return pd.DataFrame(out)

    def _streamed_group_sums(
        self, logs: LogSource, keys: Sequence[str], sums: Mapping[str, str], where: str | None,
        layout: tuple[list[int], list[int]],
    ) -> pd.DataFrame:
        """DuckDB scans and projects in parallel; numpy adds each batch into dense arrays.

        Each distinct expression is projected once, and one that is the product of two others (a
        reward times a time decay) is multiplied in numpy from their columns rather than computed
        again by DuckDB.
        """
        lows, sizes = layout
        n_cells = int(np.prod(sizes))
        projected, derived = _shared_expressions({n: e for n, e in sums.items() if not _is_one(e)})
        functions = self.functions(logs, [*sums.values(), where])
        select = [f"{self._code_sql(keys, lows, sizes)} AS __hfrl_code"]
        select += [f"coalesce(CAST({to_sql(e, functions)} AS DOUBLE), 0.0) AS e{i}"
                   for i, e in enumerate(projected)]
        sql = f"SELECT {', '.join(select)} FROM {self.relation(logs)}"
        if where is not None:
            sql += f" WHERE ({to_sql(where, functions)}) <> 0"
        counts = np.zeros(n_cells, dtype=np.int64)
        totals = {e: np.zeros(n_cells) for e in [*projected, *derived]}
        try:
            for batch in self.connection().sql(sql).to_arrow_reader(1 << 20):
                codes = batch.column(0).to_numpy()
                counts += np.bincount(codes, minlength=n_cells)
                values = {e: batch.column(i).to_numpy() for i, e in enumerate(projected, start=1)}
                values.update({e: values[a] * values[b] for e, (a, b) in derived.items()})
                for expression, weights in values.items():
                    totals[expression] += np.bincount(codes, weights=weights, minlength=n_cells)
        finally:
            if isinstance(logs, pd.DataFrame):
                self.connection().unregister(self.relation_name(logs))
        occupied = np.flatnonzero(counts)
        out = self._decode(keys, occupied, lows, sizes)
        for name, expression in sums.items():
            out[name] = (counts[occupied].astype(np.float64) if _is_one(expression)
                         else totals[_canonical(expression)][occupied])
        return pd.DataFrame(out)

    def columns(self, logs: LogSource) -> list[str]:
        return list(self.query("SELECT * FROM {logs} LIMIT 0", logs).columns)

    def count(self, logs: LogSource) -> int:
        return int(self.query("SELECT count(*) AS n FROM {logs}", logs)["n"].iloc[0])

    def key_ranges(self, logs: LogSource, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        parts = []
        for k in keys:
            q = _quote_identifier(k)
            low, high = _quote_identifier("min_" + k), _quote_identifier("max_" + k)
            parts.append(f"min({q}) AS {low}, max({q}) AS {high}")
        row = self.query(f"SELECT {', '.join(parts)} FROM {{logs}}", logs).iloc[0]
        return {k: (int(row["min_" + k]), int(row["max_" + k])) for k in keys}

    def column_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame:
        # Files: remembered while their size and modification time stay the same.
        signature = _file_signature(logs, columns)
        if signature is not None and signature in _RANGES_CACHE:
            return _RANGES_CACHE[signature].copy()
        ranges = self._column_ranges(logs, columns)
        if signature is not None:
            if len(_RANGES_CACHE) >= 64:
                _RANGES_CACHE.pop(next(iter(_RANGES_CACHE)))
            _RANGES_CACHE[signature] = ranges.copy()
        return ranges

    def _footer_ranges(self, logs: LogSource, columns: Sequence[str], types: Sequence[str]) -> dict:
        """``{column: (min, max, nulls)}`` from Parquet footers, for the columns they prove.

        Only exact statistics present in every row group count; integers always, floats only
        when the footers count NaN (and find none: min/max skip NaN), naive timestamps parsed by
        DuckDB. Anything else is left to the scan.
        """
        if not is_path(logs):
            return {}
        relation = scan_sql(logs)
        if not relation.startswith("read_parquet("):
            return {}
        listed = ", ".join("'" + c.replace("'", "''") + "'" for c in columns)
        metadata = relation.replace("read_parquet(", "parquet_metadata(", 1)
        meta = self.connection().execute(
            f"SELECT path_in_schema AS name, count(*) AS groups, count(stats_min_value) AS mins, "
            f"count(stats_max_value) AS maxs, count(stats_null_count) AS null_counts, "
            f"sum(stats_null_count) AS nulls, count(stats_nan_count) AS nan_counts, "
            f"coalesce(sum(stats_nan_count), 0) AS nans, "
            f"bool_and(coalesce(min_is_exact, true) AND coalesce(max_is_exact, true)) AS exact, "
            f"list(stats_min_value) AS low, list(stats_max_value) AS high, "
            f"(SELECT count(DISTINCT (file_name, row_group_id)) FROM {metadata}) AS total "
            f"FROM {metadata} "
            f"WHERE path_in_schema IN ({listed}) GROUP BY path_in_schema"
        ).df().set_index("name")
        out = {}
        for column, sql_type in zip(columns, types, strict=True):
            if column not in meta.index:
                continue
            row = meta.loc[column]
            groups = int(row["groups"])
            complete = groups == int(row["total"]) and bool(row["exact"]) and min(
                int(row["mins"]), int(row["maxs"]), int(row["null_counts"])) == groups
            if not complete:
                continue
            kind = _kind(sql_type)
            try:
                if kind == "integer":
                    low, high = min(int(v) for v in row["low"]), max(int(v) for v in row["high"])
                elif kind == "float" and int(row["nan_counts"]) == groups and int(row["nans"]) == 0:
                    low, high = min(float(v) for v in row["low"]), max(float(v) for v in row["high"])
                elif kind == "datetime" and sql_type == "TIMESTAMP":
                    low, high = self.connection().execute(
                        "SELECT (SELECT min(epoch(CAST(v AS TIMESTAMP))) FROM unnest(?) AS t(v)), "
                        "(SELECT max(epoch(CAST(v AS TIMESTAMP))) FROM unnest(?) AS t(v))",
                        [list(row["low"]), list(row["high"])],
                    ).fetchone()
                else:
                    continue
            except (ValueError, TypeError):
                continue
            out[column] = (float(low), float(high), int(row["nulls"]))
        return out

    def _column_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame:
        # Parquet footers where they prove the range, one min/max/count query for the rest.
        quoted = [_quote_identifier(c) for c in columns]
        described = self.query(f"DESCRIBE SELECT {', '.join(quoted)} FROM {{logs}}", logs)
        types = [str(t) for t in described["column_type"]]
        kinds = [_kind(t) for t in types]
        try:
            footer = self._footer_ranges(logs, columns, types)
        except Exception:  # noqa: BLE001 - footers are a shortcut; the scan below is the answer
            footer = {}
        parts = ["count(*) AS n_rows"]
        for i, (q, kind) in enumerate(zip(quoted, kinds, strict=True)):
            if columns[i] in footer:
                continue
            parts.append(f"count({q}) AS c{i}")
            if kind == "datetime":
                parts.append(f"epoch(CAST(min({q}) AS TIMESTAMPTZ)) AS lo{i}")
                parts.append(f"epoch(CAST(max({q}) AS TIMESTAMPTZ)) AS hi{i}")
            elif kind in ("integer", "float", "bool"):
                parts.append(f"CAST(min({q}) AS DOUBLE) AS lo{i}, CAST(max({q}) AS DOUBLE) AS hi{i}")
                if kind == "float":  # min/max come from Parquet statistics, which skip NaN
                    parts.append(f"count(*) FILTER (WHERE isnan(CAST({q} AS DOUBLE))) AS nan{i}")
            else:
                parts.append(f"NULL AS lo{i}, NULL AS hi{i}")
        row = self.query(f"SELECT {', '.join(parts)} FROM {{logs}}", logs).iloc[0]
        n_rows = int(row["n_rows"])
        records = []
        for i, kind in enumerate(kinds):
            if columns[i] in footer:
                low, high, nulls = footer[columns[i]]
                records.append({"min": low, "max": high, "nulls": nulls, "kind": kind})
                continue
            low, high = row[f"lo{i}"], row[f"hi{i}"]
            if kind == "float" and row[f"nan{i}"] > 0:  # a NaN makes the range unknown
                low = high = np.nan
            records.append(range_record(low, high, row[f"c{i}"], n_rows, kind))
        return pd.DataFrame(records, index=pd.Index(list(columns)))

    def _ordered_connection(self):  # noqa: ANN202 - duckdb is imported lazily
        """A fresh connection that keeps file order (for naming rows)."""
        import duckdb

        connection = duckdb.connect()
        if self.threads:
            connection.execute(f"SET threads = {int(self.threads)}")
        connection.execute("SET preserve_insertion_order = true")
        connection.execute("SET TimeZone = 'UTC'")
        return connection

    def first_row(self, logs: LogSource, where: str) -> int | None:
        # streamed, so that it stops at the first hit
        functions = self.functions(logs, [where])
        connection = self._ordered_connection()
        try:
            condition = to_sql(where, functions)
            relation = self.relation_sql(logs, connection)
            sql = f"SELECT coalesce(({condition}) <> 0, false) AS hit FROM {relation}"
            reader = connection.sql(sql).to_arrow_reader(1 << 20)
            offset = 0
            for batch in reader:
                hits = np.flatnonzero(batch.column(0).to_numpy(zero_copy_only=False))
                if hits.size:
                    return offset + int(hits[0])
                offset += batch.num_rows
            return None
        finally:
            connection.close()

    def value_at(self, logs: LogSource, column: str, row: int) -> object:
        connection = self._ordered_connection()
        try:
            relation = self.relation_sql(logs, connection)
            found = connection.execute(
                f"SELECT {_quote_identifier(column)} FROM {relation} LIMIT 1 OFFSET {int(row)}"
            ).fetchone()
            return None if found is None else found[0]
        except Exception:  # noqa: BLE001 - the value is a courtesy in a message
            return None
        finally:
            connection.close()
