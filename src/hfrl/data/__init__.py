"""Logged data: the schema, the one validator, the validated log source and its cell statistics."""

from hfrl.backends.files import LogSource, is_path, resolve_files, scan_sql
from hfrl.data import schema
from hfrl.data.cells import Atoms, CellStatistics
from hfrl.data.encoders import CategoryEncoder
from hfrl.data.io import load_logs
from hfrl.data.shrinkage import shrink, shrunk_means
from hfrl.data.source import LogProof, Logs, as_logs
from hfrl.data.validation import LogValidationError, LogValidationWarning, validate_logs

__all__ = [
    "Atoms",
    "CategoryEncoder",
    "CellStatistics",
    "LogProof",
    "LogSource",
    "LogValidationError",
    "LogValidationWarning",
    "Logs",
    "as_logs",
    "is_path",
    "load_logs",
    "resolve_files",
    "scan_sql",
    "schema",
    "shrink",
    "shrunk_means",
    "validate_logs",
]
