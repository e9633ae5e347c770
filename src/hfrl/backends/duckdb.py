"""DuckDB backend: SQL over CSV/Parquet files (out of core) or over a DataFrame without copying."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import pandas as pd

from hfrl.backends.base import Backend
from hfrl.backends.expressions import to_sql
from hfrl.data.io import LogSource, is_path, scan_sql
from hfrl.errors import LogValidationError

__all__ = ["DuckDBBackend"]

SQL_FUNCTIONS = {
    "exp": lambda args: f"exp({args[0]})",
    "ln": lambda args: f"ln({args[0]})",
    "least": lambda args: f"least({', '.join(args)})",
    "greatest": lambda args: f"greatest({', '.join(args)})",
    "epoch": lambda args: f"epoch(CAST({args[0]} AS TIMESTAMPTZ))",
    "cast_double": lambda args: f"CAST({args[0]} AS DOUBLE)",
}


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBBackend(Backend):
    """Group-by sums in DuckDB; ``memory_limit`` and ``threads`` are passed to the engine."""

    name = "duckdb"

    def __init__(self, memory_limit: str | None = None, threads: int | None = None) -> None:
        self.memory_limit = memory_limit
        self.threads = threads
        self._local = threading.local()

    def connection(self):  # noqa: ANN201 - duckdb is imported lazily
        """A per-thread DuckDB connection with the configured limits."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            import duckdb

            connection = duckdb.connect()
            if self.memory_limit:
                connection.execute(f"SET memory_limit = '{self.memory_limit}'")
            if self.threads:
                connection.execute(f"SET threads = {int(self.threads)}")
            connection.execute("SET preserve_insertion_order = false")
            self._local.connection = connection
        return connection

    def relation(self, logs: LogSource) -> str:
        """The table expression for ``logs`` (a registered view for a DataFrame)."""
        if is_path(logs):
            return scan_sql(logs)
        if isinstance(logs, pd.DataFrame):
            name = f"hfrl_frame_{id(logs)}"
            self.connection().register(name, logs)
            return _quote_identifier(name)
        raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")

    def query(self, sql: str, logs: LogSource) -> pd.DataFrame:
        """Run ``sql`` with ``{logs}`` standing for the table expression; errors name the source."""
        import duckdb

        source = str(logs) if is_path(logs) else None
        try:
            return self.connection().execute(sql.format(logs=self.relation(logs))).df()
        except duckdb.BinderException as exc:
            raise LogValidationError(f"column not found: {exc}", source=source) from exc
        except duckdb.ConversionException as exc:
            raise LogValidationError(f"a value has the wrong type: {exc}", source=source) from exc
        except duckdb.IOException as exc:
            raise LogValidationError(f"cannot read the logs: {exc}", source=source) from exc

    def group_sums(
        self,
        logs: LogSource,
        keys: Sequence[str],
        sums: Mapping[str, str],
        *,
        where: str | None = None,
    ) -> pd.DataFrame:
        key_sql = [_quote_identifier(k) for k in keys]
        select = [f"CAST({k} AS BIGINT) AS {k}" for k in key_sql]
        select += [
            f"CAST(sum({to_sql(e, SQL_FUNCTIONS)}) AS DOUBLE) AS {_quote_identifier(n)}"
            for n, e in sums.items()
        ]
        sql = f"SELECT {', '.join(select)} FROM {{logs}}"
        if where is not None:
            sql += f" WHERE ({to_sql(where, SQL_FUNCTIONS)}) <> 0"
        if keys:
            sql += f" GROUP BY {', '.join(key_sql)} ORDER BY {', '.join(key_sql)}"
        frame = self.query(sql, logs)
        if not keys:
            frame = frame.fillna(0.0)
        return frame

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
