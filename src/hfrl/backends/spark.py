"""Spark backend: the same group-by sums as Spark SQL, on a laptop (``local[2]``) or a cluster.

Logs are CSV/Parquet paths (local files, globs, Parquet directories or object-store URLs such as
``s3a://bucket/logs/*.parquet``) read by Spark itself, or a pandas DataFrame shipped through Arrow.
Only the small result (one row per group: states x actions at most) comes back to the driver, so
rows never have to fit in the driver's memory.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
import weakref
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hfrl.backends.base import Backend, range_record
from hfrl.backends.expressions import columns_of, to_sql
from hfrl.backends.files import LogSource, is_path, resolve_files
from hfrl.errors import LogValidationError

if TYPE_CHECKING:  # pragma: no cover - pyspark is an optional dependency
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

__all__ = ["MASTER_ENV", "SparkBackend", "resolve_master", "spark_sql"]

# Only what differs from the shared ANSI renderings in ``expressions.DEFAULT_SQL_FUNCTIONS``:
# exact seconds since 1970 (microsecond resolution, like DuckDB's epoch of a TIMESTAMPTZ).
SPARK_FUNCTIONS = {
    "epoch": lambda args: f"(unix_micros(TRY_CAST({args[0]} AS TIMESTAMP)) / 1000000.0)",
}

# The shared renderer writes ANSI SQL: "quoted" identifiers and plain numeric literals. Spark quotes
# identifiers with backticks and reads ``0.1`` as a DECIMAL (whose division rounds to 6 digits), so
# each identifier is re-quoted and each number becomes a DOUBLE literal (``0.1D``); 'strings' stay.
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"((?:[^"]|"")*)"|(?<![\w.])(\d+\.?\d*(?:[eE][+-]?\d+)?|inf|nan)(?![\w.])"""
)

# The environment variable naming the master of the sessions hfrl creates (``backend="spark"``
# in the API and ``--backend spark`` in the CLI), e.g. ``spark://host:7077``.
MASTER_ENV = "HFRL_SPARK_MASTER"

# Settings every session hfrl creates gets: time-zone-less timestamps read as UTC (as in the
# memory and DuckDB backends) and results returned through Arrow.
_SESSION_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
# Settings for a session on this machine only (``local[...]`` masters). A cluster's driver must be
# reachable from the executors and is sized by whoever submits the job, so they are left alone.
_LOCAL_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
}


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands its gateway to the Python driver it launches
    return "PYSPARK_GATEWAY_PORT" in os.environ


def resolve_master(master: str | None = None) -> str | None:
    """The master URL for a session hfrl creates.

    Parameters
    ----------
    master : str, optional
        An explicit master URL (``local[4]``, ``spark://host:7077``, ``yarn``, ...); it wins.

    Returns
    -------
    str or None
        ``master``, else ``$HFRL_SPARK_MASTER``, else None under ``spark-submit`` (its
        ``--master`` decides), else ``"local[2]"``.

    Examples
    --------
    >>> resolve_master("spark://10.0.0.5:7077")
    'spark://10.0.0.5:7077'
    """
    if master:
        return master
    if os.environ.get(MASTER_ENV):
        return os.environ[MASTER_ENV]
    return None if _under_spark_submit() else "local[2]"


# pandas DataFrames already shipped to Spark, by id, while they live (shared by every SparkBackend,
# since estimators resolve ``backend="spark"`` to a fresh instance on each call).
_SHIPPED: dict[int, tuple[weakref.ref[pd.DataFrame], Any, Any]] = {}
# Spark DataFrames over local files, by path and the files' (name, size, mtime)
_READ: dict[tuple, tuple[Any, Any]] = {}


def _local_signature(files: Sequence[str]) -> tuple | None:
    if any("://" in f for f in files):
        return None
    try:
        return tuple((f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files)
    except OSError:
        return None


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _rewrite_token(match: re.Match[str]) -> str:
    identifier, number = match.group(1), match.group(2)
    if identifier is None and number is None:
        return match.group(0)  # a string literal
    if identifier is not None:
        return _quote_identifier(identifier.replace('""', '"'))
    if number == "inf":
        return "CAST('Infinity' AS DOUBLE)"
    if number == "nan":
        return "CAST('NaN' AS DOUBLE)"
    return number + "D"


def spark_sql(expression: str) -> str:
    """Render an expression of the shared grammar as Spark SQL.

    Parameters
    ----------
    expression : str
        An expression such as ``"reward / propensity"`` (see ``hfrl.backends.expressions``).

    Returns
    -------
    str
        Spark SQL with backtick-quoted columns and DOUBLE literals, so that arithmetic runs in
        double precision exactly as in the memory and DuckDB backends.

    Examples
    --------
    >>> spark_sql("0.5 * reward / propensity")
    '((0.5D * `reward`) / `propensity`)'
    >>> spark_sql("epoch(timestamp)")
    '(unix_micros(TRY_CAST(`timestamp` AS TIMESTAMP)) / 1000000.0D)'
    """
    return _TOKEN.sub(_rewrite_token, to_sql(expression, SPARK_FUNCTIONS))


@contextmanager
def _quiet_pandas_warning():  # noqa: ANN202 - a context manager
    # pyspark warns on every Arrow conversion that pandas >= 3 is "not yet fully supported" (and
    # about pandas' deprecated ``copy=``); the numeric and timestamp columns hfrl moves are
    # converted exactly (the tests check it), so keep the users' output readable.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
        warnings.filterwarnings("ignore", message="toPandas attempted Arrow optimization")
        yield


def _file_format(path: str) -> str:
    lower = path.lower().rstrip("/")
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if lower.endswith((".parquet", ".pq")) or ("://" in path or Path(path).is_dir()):
        return "parquet"  # a URL without a suffix names a Parquet dataset (a directory)
    raise LogValidationError(
        f"cannot tell the format of {path!r}: expected a .csv, .csv.gz, .tsv or .parquet file "
        "(or a directory of Parquet files)",
        source=path,
    )


def _session_settings(master: str | None, config: Mapping[str, str]) -> dict[str, str]:
    """The settings of a session hfrl creates on ``master``; ``config`` overrides them."""
    local = master is not None and master.startswith("local")
    return {**_SESSION_CONFIG, **(_LOCAL_CONFIG if local else {}), **config}


class SparkBackend(Backend):
    """Group-by sums in Spark SQL; the small result comes back to the driver through Arrow.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession, optional
        A session to use (for example one a notebook or the job's own code created). When
        omitted, the session running in this process is used, or one is created on first use.
    master : str, optional
        Master URL of the session created here: ``local[4]``, ``spark://host:7077``, ``yarn``,
        ``k8s://...``. By default ``$HFRL_SPARK_MASTER``, else under ``spark-submit`` its
        ``--master`` (and its ``--conf`` settings), else ``local[2]`` (see ``resolve_master``).
    config : mapping, optional
        Extra Spark settings for the session created here (e.g. ``{"spark.driver.memory": "4g"}``).

    Notes
    -----
    Every session created here reads timestamps in UTC and returns results through Arrow. A
    ``local[...]`` session also gets few shuffle partitions, no UI, 2 GB of driver memory and is
    bound to 127.0.0.1; a cluster session keeps Spark's defaults and the submitter's settings.
    Spark allows one session per process: when one is running, it is shared, and asking for a
    different ``master`` (or ``$HFRL_SPARK_MASTER``) than its own is an error, not a silent
    change of cluster.

    Paths are read by Spark: local files and globs (expanded with ``hfrl.data.resolve_files``),
    directories of Parquet files, and object-store URLs (``s3a://``, ``gs://``, ``abfss://``) that
    the session is configured to reach. On a cluster every executor must be able to read them.
    A pandas DataFrame is converted once and cached for as long as it lives, so repeated
    aggregates over the same logs do not re-ship rows (so do not modify a DataFrame in place
    between calls; pass a new one).

    Examples
    --------
    >>> backend = SparkBackend()  # no JVM starts until the first query
    >>> backend.name
    'spark'
    >>> SparkBackend(master="spark://10.0.0.5:7077")
    SparkBackend(master='spark://10.0.0.5:7077')
    """

    name = "spark"

    def __init__(
        self,
        spark: SparkSession | None = None,
        master: str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.spark = spark
        self.master = master
        self.config = dict(config or {})
        self._lock = threading.Lock()
        self._session: SparkSession | None = spark
        self._owns_session = False

    def __repr__(self) -> str:
        if self.spark is not None:
            return "SparkBackend(spark=...)"
        master = resolve_master(self.master)
        return f"SparkBackend(master={master!r})" if master else "SparkBackend(master=<spark-submit's>)"

    # -- session --------------------------------------------------------------------------------
    def session(self) -> SparkSession:
        """The Spark session: the one passed in, the one running in this process, or a new one."""
        with self._lock:
            if self._session is None:
                try:
                    import pyspark.sql  # noqa: F401 - only to fail early with the install hint
                except ImportError as exc:
                    raise ImportError('the spark backend needs pyspark: pip install "hfrl[spark]"') from exc
                running = self._running_session()
                self._session = running if running is not None else self._new_session()
                self._owns_session = running is None
            return self._session

    def _running_session(self) -> SparkSession | None:
        """The session already running in this process (a notebook, another thread), if any."""
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        with _quiet_pandas_warning():
            active = SparkSession.getActiveSession()
        if active is None and SparkContext._active_spark_context is None:
            return None
        with _quiet_pandas_warning():
            session = active or SparkSession.builder.getOrCreate()  # e.g. started in another thread
        requested = self.master or os.environ.get(MASTER_ENV)
        running_master = session.sparkContext.master
        if requested and requested != running_master:
            raise RuntimeError(
                f"a Spark session on master {running_master!r} already runs in this process (Spark "
                f"allows one per process), so master {requested!r} cannot be used: stop that "
                "session first, or share it by not setting a master"
            )
        return session

    def _new_session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        master = resolve_master(self.master)
        builder = SparkSession.builder
        if master is not None:  # None: spark-submit already set the master, app name and settings
            builder = builder.master(master).appName("hfrl")
        for key, value in _session_settings(master, self.config).items():
            builder = builder.config(key, value)
        try:
            with _quiet_pandas_warning():
                session = builder.getOrCreate()
        except Exception as exc:  # most often: no Java runtime
            if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
                raise RuntimeError(
                    "the spark backend needs a Java 17+ runtime: install one (make test does) or "
                    "set JAVA_HOME"
                ) from exc
            raise
        if master is not None:
            session.sparkContext.setLogLevel("ERROR")
        return session

    def stop(self) -> None:
        """Stop the session if this backend created it (a session passed in is left running)."""
        with self._lock:
            if self._session is not None and self._owns_session:
                self._session.stop()
                self._session = None
                self._owns_session = False

    # -- reading --------------------------------------------------------------------------------
    def frame(self, logs: LogSource) -> SparkDataFrame:
        """The Spark DataFrame over ``logs`` (a path/glob/URL read lazily, or a pandas DataFrame)."""
        if is_path(logs):
            return self._read_files(str(logs))
        if isinstance(logs, pd.DataFrame):
            session = self.session()
            key = id(logs)
            cached = _SHIPPED.get(key)
            if cached is not None and cached[0]() is logs and cached[1] is session:
                return cached[2]
            with _quiet_pandas_warning():
                frame = session.createDataFrame(logs)
            _SHIPPED[key] = (weakref.ref(logs, lambda _ref: _SHIPPED.pop(key, None)), session, frame)
            return frame
        if type(logs).__module__.startswith("pyspark."):
            return logs  # already a Spark DataFrame
        raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")

    def _read_files(self, path: str) -> SparkDataFrame:
        if "://" not in path and Path(path).is_dir():
            files = [path]
        else:
            files = resolve_files(path)
        formats = {_file_format(f) for f in files}
        if len(formats) != 1:
            raise LogValidationError(f"{path} mixes CSV and Parquet files", source=path)
        session = self.session()
        # local files: reuse the DataFrame (and CSV schema inference, a pass over the file) while
        # the files are unchanged; URLs are listed afresh each time
        signature = _local_signature(files)
        key = (path, signature)
        cached = _READ.get(key)
        if signature is not None and cached is not None and cached[0] is session:
            return cached[1]
        try:
            if formats == {"parquet"}:
                frame = session.read.parquet(*files)
            else:
                sep = "\t" if all(f.lower().endswith(".tsv") for f in files) else ","
                frame = session.read.csv(files, header=True, inferSchema=True, sep=sep)
        except Exception as exc:  # pyspark raises AnalysisException / Py4JJavaError subclasses
            raise LogValidationError(f"cannot read the logs: {_short(exc)}", source=path) from exc
        if signature is not None:
            if len(_READ) >= 32:
                _READ.pop(next(iter(_READ)))
            _READ[key] = (session, frame)
        return frame

    # -- queries --------------------------------------------------------------------------------
    def query(self, sql: str, logs: LogSource, *, needed: set[str] | None = None) -> pd.DataFrame:
        """Run Spark ``sql`` with ``{logs}`` standing for the logs; errors name the source and column.

        ``needed`` lists the columns the query reads: a missing one is reported before Spark runs.
        """
        source = str(logs) if is_path(logs) else None
        frame = self.frame(logs)
        if needed:
            available = set(frame.columns)
            missing = sorted(needed - available)
            if missing:
                raise LogValidationError(
                    f"column not found: {missing[0]!r} (the logs have {sorted(available)})",
                    column=missing[0],
                    source=source,
                )
        try:
            with _quiet_pandas_warning():
                return self.session().sql(sql, logs=frame).toPandas()
        except Exception as exc:
            raise _as_validation_error(exc, source) from exc

    def group_sums(
        self,
        logs: LogSource,
        keys: Sequence[str],
        sums: Mapping[str, str],
        *,
        where: str | None = None,
    ) -> pd.DataFrame:
        if isinstance(logs, pd.DataFrame) and logs.empty:  # Spark cannot type an empty frame
            from hfrl.backends.memory import MemoryBackend

            return MemoryBackend().group_sums(logs, keys, sums, where=where)
        needed = set(keys).union(*(columns_of(e) for e in sums.values()))
        aggregates = [f"{_sum_sql(e)} AS {_quote_identifier(n)}" for n, e in sums.items()]
        condition = ""
        if where is not None:
            condition = f" WHERE ({spark_sql(where)}) <> 0"
            needed |= columns_of(where)
        layout = self._dense_layout(logs, keys) if keys else None
        if layout is not None:
            # one composite BIGINT key groups faster than several; decoded and sorted in numpy
            lows, sizes = layout
            sql = f"SELECT {_code_sql(keys, lows, sizes)} AS __hfrl_code, {', '.join(aggregates)} "
            sql += f"FROM {{logs}}{condition} GROUP BY __hfrl_code"
            result = self.query(sql, logs, needed=needed)
            codes = result["__hfrl_code"].to_numpy(dtype=np.int64)
            order = np.argsort(codes, kind="stable")
            out = _decode(keys, codes[order], lows, sizes)
            for name in sums:
                out[name] = result[name].to_numpy(dtype=np.float64)[order]
            return pd.DataFrame(out)
        key_sql = [_quote_identifier(k) for k in keys]
        select = [f"CAST({k} AS BIGINT) AS {k}" for k in key_sql] + aggregates
        sql = f"SELECT {', '.join(select)} FROM {{logs}}{condition}"
        if keys:  # sorted on the driver: a Spark ORDER BY costs a sampling job and a range shuffle
            sql += f" GROUP BY {', '.join(key_sql)}"
        result = self.query(sql, logs, needed=needed)
        if not keys:
            return result.fillna(0.0).astype("float64")
        dtypes = {k: "int64" for k in keys} | {n: "float64" for n in sums}
        result = result.astype(dtypes).sort_values(list(keys), kind="stable")
        return result.reset_index(drop=True)

    def _dense_layout(self, logs: LogSource, keys: Sequence[str]) -> tuple[list[int], list[int]] | None:
        """Offsets and sizes of the integer keys when they are known cheaply and fit one BIGINT."""
        if isinstance(logs, pd.DataFrame):
            if not all(k in logs.columns and pd.api.types.is_integer_dtype(logs[k].dtype) for k in keys):
                return None
            if len(logs) == 0 or any(logs[k].hasnans for k in keys):
                return None
            lows = [int(logs[k].min()) for k in keys]
            highs = [int(logs[k].max()) for k in keys]
        else:
            ranges = self._footer_ranges(logs, keys)
            if ranges is None or not (ranges["kind"] == "integer").all() or (ranges["nulls"] > 0).any():
                return None
            if not (np.isfinite(ranges["min"]).all() and np.isfinite(ranges["max"]).all()):
                return None
            lows, highs = [int(v) for v in ranges["min"]], [int(v) for v in ranges["max"]]
        sizes = [high - low + 1 for low, high in zip(lows, highs, strict=True)]
        if float(np.prod(sizes, dtype=np.float64)) >= 2.0**62:
            return None
        return lows, sizes

    def _footer_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame | None:
        """Column ranges of local Parquet files from their footers (read by DuckDB, no scan)."""
        if not _local_parquet(logs):
            return None
        from hfrl.backends.duckdb import DuckDBBackend

        try:
            return DuckDBBackend().column_ranges(logs, columns)
        except (LogValidationError, NotImplementedError):
            return None

    def columns(self, logs: LogSource) -> list[str]:
        return [str(c) for c in self.frame(logs).columns]

    def count(self, logs: LogSource) -> int:
        if isinstance(logs, pd.DataFrame):
            return len(logs)
        if _local_parquet(logs):  # row counts are in the footers
            from hfrl.backends.duckdb import DuckDBBackend

            return DuckDBBackend().count(logs)
        return int(self.query("SELECT count(*) AS n FROM {logs}", logs)["n"].iloc[0])

    def key_ranges(self, logs: LogSource, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        if isinstance(logs, pd.DataFrame) and all(k in logs.columns for k in keys):
            return {k: (int(logs[k].min()), int(logs[k].max())) for k in keys}
        footer = self._footer_ranges(logs, keys)
        if footer is not None and (footer["kind"] == "integer").all():
            if np.isfinite(footer[["min", "max"]].to_numpy()).all():
                return {k: (int(footer.loc[k, "min"]), int(footer.loc[k, "max"])) for k in keys}
        parts = []
        for k in keys:
            q = _quote_identifier(k)
            low, high = _quote_identifier("min_" + k), _quote_identifier("max_" + k)
            parts.append(f"min({q}) AS {low}, max({q}) AS {high}")
        row = self.query(f"SELECT {', '.join(parts)} FROM {{logs}}", logs, needed=set(keys)).iloc[0]
        return {k: (int(row["min_" + k]), int(row["max_" + k])) for k in keys}

    def column_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame:
        # Local Parquet: the footers' statistics. Otherwise one aggregate job over the rows.
        footer = self._footer_ranges(logs, columns)
        if footer is not None:
            return footer
        if isinstance(logs, pd.DataFrame) and logs.empty:
            from hfrl.backends.memory import MemoryBackend

            return MemoryBackend().column_ranges(logs, columns)
        frame = self.frame(logs)
        types = {field.name: field.dataType.typeName() for field in frame.schema.fields}
        kinds = [_kind(types.get(c, "")) for c in columns]
        parts = ["count(*) AS n_rows"]
        for i, (column, kind) in enumerate(zip(columns, kinds, strict=True)):
            q = _quote_identifier(column)
            parts.append(f"count({q}) AS c{i}")
            if kind == "datetime":
                low, high = (f"unix_micros(CAST({f}({q}) AS TIMESTAMP)) / 1000000.0D" for f in ("min", "max"))
                parts.append(f"{low} AS lo{i}, {high} AS hi{i}")
            elif kind in ("integer", "float", "bool"):
                parts.append(f"CAST(min({q}) AS DOUBLE) AS lo{i}, CAST(max({q}) AS DOUBLE) AS hi{i}")
            else:
                parts.append(f"CAST(NULL AS DOUBLE) AS lo{i}, CAST(NULL AS DOUBLE) AS hi{i}")
        row = self.query(f"SELECT {', '.join(parts)} FROM {{logs}}", logs, needed=set(columns)).iloc[0]
        n_rows = int(row["n_rows"])
        records = []
        for i, kind in enumerate(kinds):
            records.append(range_record(row[f"lo{i}"], row[f"hi{i}"], row[f"c{i}"], n_rows, kind))
        return pd.DataFrame(records, index=pd.Index(list(columns)))

    def first_row(self, logs: LogSource, where: str) -> int | None:
        # Spark has no file order to speak of; local files and DataFrames are read in order on the
        # driver (this runs only after a validation count found offending rows, to name one).
        if isinstance(logs, pd.DataFrame):
            from hfrl.backends.memory import MemoryBackend

            return MemoryBackend().first_row(logs, where)
        if is_path(logs) and "://" not in str(logs) and not Path(str(logs)).is_dir():
            from hfrl.backends.duckdb import DuckDBBackend

            try:
                return DuckDBBackend().first_row(logs, where)
            except LogValidationError:
                return None
        return None

    def value_at(self, logs: LogSource, column: str, row: int) -> object:
        # read on the driver, in file order, as first_row does
        if isinstance(logs, pd.DataFrame):
            return logs[column].iloc[row]
        if is_path(logs) and "://" not in str(logs) and not Path(str(logs)).is_dir():
            from hfrl.backends.duckdb import DuckDBBackend

            return DuckDBBackend().value_at(logs, column, row)
        return None


_KINDS = {
    "byte": "integer", "short": "integer", "integer": "integer", "long": "integer",
    "float": "float", "double": "float", "boolean": "bool",
    "timestamp": "datetime", "timestamp_ntz": "datetime", "date": "datetime",
}


def _kind(type_name: str) -> str:
    """The column kind (as in ``Backend.column_ranges``) of a Spark type name."""
    if type_name.startswith("decimal"):
        return "float"
    return _KINDS.get(type_name, "other")


def _local_parquet(logs: LogSource) -> bool:
    """True for a local Parquet file or glob (whose statistics DuckDB reads from the footers)."""
    if not is_path(logs) or "://" in str(logs):
        return False
    text = str(logs)
    try:
        files = [text] if Path(text).is_dir() else resolve_files(text)
    except LogValidationError:
        return False
    return all(f.lower().endswith((".parquet", ".pq")) for f in files)


def _sum_sql(expression: str) -> str:
    """``sum`` of an expression in double precision; a constant 1 is ``count(*)``."""
    rendered = spark_sql(expression)
    if rendered == "1.0D":
        return "CAST(count(*) AS DOUBLE)"
    return f"CAST(sum(CAST({rendered} AS DOUBLE)) AS DOUBLE)"


def _code_sql(keys: Sequence[str], lows: list[int], sizes: list[int]) -> str:
    """One BIGINT per combination of keys: mixed-radix digits ``key - low`` of base ``size``."""
    code = ""
    for key, low, size in zip(keys, lows, sizes, strict=True):
        term = f"(CAST({_quote_identifier(key)} AS BIGINT) - ({low}))"
        code = term if not code else f"({code}) * {size} + {term}"
    return code


def _decode(keys: Sequence[str], codes: np.ndarray, lows: list[int], sizes: list[int]) -> dict:
    out: dict[str, np.ndarray] = {}
    remainder = codes
    for key, low, size in reversed(list(zip(keys, lows, sizes, strict=True))):
        out[key] = remainder % size + low
        remainder = remainder // size
    return {k: out[k] for k in keys}


def _short(exc: BaseException) -> str:
    """The first line of a Spark error (the JVM stack trace is not for users)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _as_validation_error(exc: Exception, source: str | None) -> Exception:
    """Map a Spark error to a ``LogValidationError`` naming the source (and column when known)."""
    condition = ""
    parameters: dict[str, Any] = {}
    read_condition = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)  # 4.x / 3.5
    if read_condition is not None:
        condition = read_condition() or ""
        parameters = exc.getMessageParameters() or {}
    kind = type(exc).__name__
    if condition.startswith("UNRESOLVED_COLUMN"):
        column = str(parameters.get("objectName", "")).strip("`")
        return LogValidationError(f"column not found: {column!r}", column=column or None, source=source)
    if condition.startswith(("CAST_INVALID_INPUT", "DATATYPE_MISMATCH")) or kind in (
        "NumberFormatException",
        "DateTimeException",
    ):
        return LogValidationError(f"a value has the wrong type: {_short(exc)}", source=source)
    if kind in ("AnalysisException", "ArithmeticException", "SparkRuntimeException", "Py4JJavaError"):
        return LogValidationError(f"cannot aggregate the logs: {_short(exc)}", source=source)
    return exc
