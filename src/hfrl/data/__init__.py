"""Logged data: the schema, validation, loading (pandas or DuckDB) and encoders."""

from hfrl.data import schema
from hfrl.data.encoders import CategoryEncoder
from hfrl.data.io import LogSource, is_path, load_logs, resolve_files, scan_sql
from hfrl.data.validation import LogValidationError, LogValidationWarning, validate_logs

__all__ = [
    "CategoryEncoder",
    "LogSource",
    "LogValidationError",
    "LogValidationWarning",
    "is_path",
    "load_logs",
    "resolve_files",
    "scan_sql",
    "schema",
    "validate_logs",
]
