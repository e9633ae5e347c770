"""The one interface every backend implements: group-by sums over logs.

Frequencies, the offline learners' sufficient statistics and every tabular OPE estimator reduce to
sums of per-row expressions grouped by a few integer keys (state, action, ...). The resulting
tables are small (states x actions), so everything after the sums runs in numpy on the driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hfrl.backends.files import LogSource

__all__ = ["Backend", "range_record"]


def range_record(low: object, high: object, non_null: int, n_rows: int, kind: str) -> dict[str, object]:
    """One row of ``column_ranges``: min and max as floats (NaN when unknown), nulls and kind."""
    return {
        "min": np.nan if pd.isna(low) else float(low),
        "max": np.nan if pd.isna(high) else float(high),
        "nulls": n_rows - int(non_null),
        "kind": kind,
    }


class Backend(ABC):
    """Where aggregate work runs. Subclasses: memory (numpy), duckdb (files, out of core), spark."""

    name: str = "abstract"

    @abstractmethod
    def group_sums(
        self,
        logs: LogSource,
        keys: Sequence[str],
        sums: Mapping[str, str],
        *,
        where: str | None = None,
    ) -> pd.DataFrame:
        """Sum each expression in ``sums`` per distinct combination of the integer ``keys``.

        Returns one row per non-empty group: the key columns (int64) then one float64 column per
        entry of ``sums``, in that order, sorted by the keys. ``where`` is an optional expression
        (rows where it is non-zero are kept). With ``keys=[]`` the result has one row of totals.
        """

    @abstractmethod
    def columns(self, logs: LogSource) -> list[str]:
        """The column names available in ``logs``."""

    @abstractmethod
    def count(self, logs: LogSource) -> int:
        """Number of rows in ``logs``."""

    @abstractmethod
    def key_ranges(self, logs: LogSource, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Min and max of each integer key column (to size dense tables)."""

    def column_ranges(self, logs: LogSource, columns: Sequence[str]) -> pd.DataFrame:
        """Min, max, null count and kind of each column, cheaply.

        Returns a DataFrame indexed by column name with ``min`` and ``max`` (float64 over the
        non-null values; date-times as seconds since 1970, strings as NaN), ``nulls`` (int64: the
        number of NULL/NaT values) and ``kind`` (one of ``"integer"``, ``"float"``,
        ``"datetime"``, ``"bool"``, ``"other"``). On float columns NaN may be ignored by
        ``min``/``max``; callers must not rely on them to find NaN.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement column_ranges")

    def first_row(self, logs: LogSource, where: str) -> int | None:
        """0-based position of the first row where ``where`` is non-zero, or None if unknown."""
        return None

    def value_at(self, logs: LogSource, column: str, row: int) -> object:
        """The stored value of ``column`` at 0-based ``row`` (file order), or None if unknown.

        Used only to show an offending value in a validation message.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
