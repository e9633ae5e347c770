"""Where aggregate work runs: ``"memory"`` (numpy), ``"duckdb"`` (files, out of core), ``"spark"``.

``get_backend(None, logs)`` picks memory for a DataFrame and DuckDB for a path.
"""

from __future__ import annotations

from hfrl.backends.base import Backend
from hfrl.data.io import LogSource, is_path

__all__ = ["BACKENDS", "Backend", "get_backend"]

BACKENDS = ("memory", "duckdb", "spark")


def get_backend(backend: str | Backend | None, logs: LogSource | None = None) -> Backend:
    """Resolve a backend name (or instance) for ``logs``."""
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        backend = "duckdb" if logs is not None and is_path(logs) else "memory"
    if backend == "memory":
        from hfrl.backends.memory import MemoryBackend

        return MemoryBackend()
    if backend == "duckdb":
        from hfrl.backends.duckdb import DuckDBBackend

        return DuckDBBackend()
    if backend == "spark":
        try:
            from hfrl.backends.spark import SparkBackend
        except ImportError as exc:
            raise ImportError(
                'the spark backend needs pyspark: pip install "hfrl[spark]"'
            ) from exc
        return SparkBackend()
    raise ValueError(f"backend must be one of {BACKENDS} or a Backend instance, got {backend!r}")
