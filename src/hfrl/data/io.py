"""Reading logs into memory: a DataFrame, or CSV/Parquet files (one path or a glob) read by DuckDB.

For files larger than memory, open them as ``hfrl.data.Logs`` on the DuckDB or Spark backend
instead: aggregates then run where the rows lie.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from hfrl.backends.files import LogSource, is_path, read_frame, resolve_files, scan_sql
from hfrl.data.source import with_schema_names
from hfrl.data.validation import validate_logs

__all__ = ["LogSource", "is_path", "load_logs", "resolve_files", "scan_sql"]


def load_logs(
    logs: LogSource,
    *,
    columns: list[str] | Mapping[str, str] | None = None,
    validate: bool = True,
    **validate_options: object,
) -> pd.DataFrame:
    """Rows of ``logs`` as a validated DataFrame (``validate_logs``), or as stored with ``validate=False``.

    ``logs`` is a DataFrame or a path/glob of CSV or Parquet files, read through DuckDB. ``columns``
    is either the list of columns to read (only those are read), or a mapping from schema columns
    to the stored columns that hold them (``{"action": "item_id", "reward": "click"}``; see
    ``hfrl.data.source.with_schema_names``), for logs that name the schema's columns otherwise.

    Examples
    --------
    >>> import pandas as pd
    >>> stored = pd.DataFrame({"segment": [0, 1], "item_id": [2, 0], "click": [1, 0]})
    >>> load_logs(stored, columns={"state": "segment", "action": "item_id", "reward": "click"})[
    ...     ["state", "action", "reward"]].to_dict("list")
    {'state': [0, 1], 'action': [2, 0], 'reward': [1.0, 0.0]}
    """
    if isinstance(columns, Mapping):
        source = str(logs) if is_path(logs) else None
        frame = with_schema_names(logs, columns, source)
        if not validate:
            return frame
        return validate_logs(frame, source=source, **validate_options)  # type: ignore[arg-type]
    if isinstance(logs, pd.DataFrame):
        frame = logs if columns is None else logs[columns]
        source = None
    elif is_path(logs):
        frame, source = read_frame(logs, columns), str(logs)
    else:
        raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")
    if not validate:
        return frame
    return validate_logs(frame, source=source, **validate_options)  # type: ignore[arg-type]
