"""Log files: a path or glob of CSV/Parquet files, how an engine scans them, how to read them raw.

``LogSource`` is what callers may pass wherever logs are read: a DataFrame, or a path/glob of files
of one format. Files are never loaded whole unless asked: ``scan_sql`` is the DuckDB table
expression that engines aggregate over, out of core; ``read_frame`` reads columns into memory.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import pandas as pd

from hfrl.errors import LogValidationError

__all__ = ["LogSource", "file_format", "is_path", "read_batches", "read_frame", "resolve_files", "scan_sql"]

LogSource = pd.DataFrame | str | PathLike[str]
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv")


def is_path(logs: object) -> bool:
    """True when ``logs`` names files rather than holding rows."""
    return isinstance(logs, str | PathLike)


def resolve_files(path: str | PathLike[str]) -> list[str]:
    """Expand a path or glob into its files; raise ``LogValidationError`` when none exist."""
    text = str(path)
    if "://" in text:  # object-store URL: let the engine resolve it
        return [text]
    files = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise LogValidationError(f"no log file matches {text!r}", source=text)
    return files


def file_format(path: str) -> str:
    """``"parquet"`` or ``"csv"`` from the file name (a directory is a Parquet dataset)."""
    lower = path.lower()
    if lower.endswith(_PARQUET) or Path(lower).is_dir():
        return "parquet"
    if lower.endswith(_CSV):
        return "csv"
    raise LogValidationError(
        f"cannot tell the format of {path!r}: expected a .csv, .csv.gz, .tsv or .parquet file",
        source=path,
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scan_sql(path: str | PathLike[str]) -> str:
    """The DuckDB table expression that reads ``path`` (a file or glob of one format)."""
    files = resolve_files(path)
    formats = {file_format(f) for f in files}
    if len(formats) != 1:
        raise LogValidationError(f"{path!s} mixes CSV and Parquet files", source=str(path))
    listing = "[" + ", ".join(_quote(f) for f in files) + "]"
    if formats == {"parquet"}:
        return f"read_parquet({listing})"
    return f"read_csv({listing}, header=true, union_by_name=true)"


def read_frame(path: str | PathLike[str], columns: list[str] | None = None) -> pd.DataFrame:
    """Read ``columns`` (all when None) of the files at ``path`` into memory, as they are stored."""
    import duckdb

    source = str(path)
    projection = "*" if columns is None else ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    try:
        return duckdb.sql(f"SELECT {projection} FROM {scan_sql(path)}").df()
    except duckdb.BinderException as exc:
        raise LogValidationError(f"column not found: {exc}", source=source) from exc
    except duckdb.Error as exc:
        raise LogValidationError(f"cannot read the file: {exc}", source=source) from exc


def read_batches(path: str | PathLike[str], columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """The ``columns`` of the files at ``path`` in file order, ``batch_rows`` rows at a time."""
    import duckdb

    projection = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    connection = duckdb.connect()  # a fresh connection keeps file order
    try:
        connection.execute("SET preserve_insertion_order = true")
        reader = connection.sql(f"SELECT {projection} FROM {scan_sql(path)}").to_arrow_reader(batch_rows)
        for batch in reader:
            yield batch.to_pandas()
    except duckdb.Error as exc:
        raise LogValidationError(f"cannot read the file: {exc}", source=str(path)) from exc
    finally:
        connection.close()
