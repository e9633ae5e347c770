"""Where aggregate work runs: ``"memory"`` (numpy), ``"duckdb"`` (files, out of core), ``"spark"``.

``get_backend(None, logs)`` picks memory for a DataFrame and DuckDB for a path.
``fingerprint(logs)`` summarises which rows a model saw (to detect evaluating on training rows).
"""

from __future__ import annotations

import math

from hfrl.backends.base import Backend
from hfrl.backends.files import LogSource, is_path

__all__ = ["BACKENDS", "Backend", "fingerprint", "fingerprint_from_sums", "get_backend"]

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


def fingerprint_from_sums(
    n_rows: float, state_sum: float, action_sum: float, reward_sum: float | None
) -> tuple:
    """The canonical fingerprint tuple from the four totals (see ``fingerprint``).

    Row count and id sums are exact integers; the reward sum is rounded to 12 significant digits
    so that the same rows summed in another order (another backend, another plan) still match.
    """
    reward = None
    if reward_sum is not None and math.isfinite(reward_sum):
        reward = float(f"{float(reward_sum):.12g}")
    return (int(round(n_rows)), int(round(state_sum)), int(round(action_sum)), reward)


def fingerprint(logs: LogSource, backend: str | Backend | None = None) -> tuple:
    """A cheap summary of which rows ``logs`` holds: ``(n_rows, sum(state), sum(action), sum(reward))``.

    Computed with one ``group_sums`` over no keys, so every backend gives the same tuple. A model
    fitted on these logs stores it (``HistoricalFrequency.fingerprint_``); evaluating the model on
    logs with the same fingerprint means evaluating on its training rows (leakage). The reward sum
    is None when the logs have no ``reward`` column.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 1, 1], "action": [2, 0, 1], "reward": [1.0, 0.0, 0.5]})
    >>> fingerprint(logs)
    (3, 2, 3, 1.5)
    >>> fingerprint(logs) == fingerprint(logs.iloc[:2])
    False
    """
    resolved = get_backend(backend, logs)
    has_reward = "reward" in resolved.columns(logs)
    sums = {"n_rows": "1", "state_sum": "state", "action_sum": "action"}
    if has_reward:
        sums["reward_sum"] = "reward"
    totals = resolved.group_sums(logs, [], sums).iloc[0]
    return fingerprint_from_sums(
        totals["n_rows"], totals["state_sum"], totals["action_sum"],
        float(totals["reward_sum"]) if has_reward else None,
    )
