"""Where logs come from: a DataFrame, or CSV/Parquet files (one path or a glob) read by DuckDB.

Files are never loaded whole unless asked: ``scan_sql`` gives the DuckDB table expression that
backends aggregate over, out of core.
"""

from __future__ import annotations

import glob
from os import PathLike
from pathlib import Path

import pandas as pd

from hfrl.data.validation import validate_logs
from hfrl.errors import LogValidationError

__all__ = ["LogSource", "is_path", "load_logs", "resolve_files", "scan_sql"]

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


def _file_format(path: str) -> str:
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
    formats = {_file_format(f) for f in files}
    if len(formats) != 1:
        raise LogValidationError(f"{path!s} mixes CSV and Parquet files", source=str(path))
    listing = "[" + ", ".join(_quote(f) for f in files) + "]"
    if formats == {"parquet"}:
        return f"read_parquet({listing})"
    return f"read_csv({listing}, header=true, union_by_name=true)"


def load_logs(
    logs: LogSource,
    *,
    columns: list[str] | None = None,
    validate: bool = True,
    **validate_options: object,
) -> pd.DataFrame:
    """Rows of ``logs`` as a validated DataFrame.

    ``logs`` is a DataFrame or a path/glob of CSV or Parquet files, read through DuckDB (only the
    requested ``columns`` are read). Use backends for files larger than memory.
    """
    if isinstance(logs, pd.DataFrame):
        frame = logs if columns is None else logs[columns]
        source = None
    elif is_path(logs):
        import duckdb

        source = str(logs)
        projection = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
        try:
            frame = duckdb.sql(f"SELECT {projection} FROM {scan_sql(logs)}").df()
        except duckdb.BinderException as exc:
            raise LogValidationError(f"column not found: {exc}", source=source) from exc
        except duckdb.Error as exc:
            raise LogValidationError(f"cannot read the file: {exc}", source=source) from exc
    else:
        raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")
    if not validate:
        return frame
    return validate_logs(frame, source=source, **validate_options)  # type: ignore[arg-type]
