"""The one interface every backend implements: group-by sums over logs.

Frequencies, the offline learners' sufficient statistics and every tabular OPE estimator reduce to
sums of per-row expressions grouped by a few integer keys (state, action, ...). The resulting
tables are small (states x actions), so everything after the sums runs in numpy on the driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import pandas as pd

from hfrl.data.io import LogSource

__all__ = ["Backend"]


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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
