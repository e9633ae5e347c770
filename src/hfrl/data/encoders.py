"""Map raw values (context columns, item or ad ids) to dense integer ids, and back.

A ``CategoryEncoder`` learns the distinct values (or value tuples, for several columns) seen in
the logs. Values first seen at decision time go to an explicit unknown bucket whose id is
``n_known`` (so a state encoder yields ``n_known + 1`` states), or raise, as configured.
Encoders serialise to plain JSON so that they travel inside policy artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hfrl.errors import LogValidationError, NotFittedError

__all__ = ["CategoryEncoder"]

_SEPARATOR = "\x1f"


class CategoryEncoder:
    """Dense integer ids for the values of one or more columns.

    Parameters
    ----------
    columns : str or sequence of str
        The raw columns; several are combined into one key.
    handle_unknown : {"bucket", "error"}
        ``"bucket"`` maps unseen values to ``unknown_id`` (= number of known values);
        ``"error"`` raises ``LogValidationError`` naming the column and row.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"segment": ["a", "b", "a"], "device": ["ios", "web", "web"]})
    >>> encoder = CategoryEncoder(["segment", "device"]).fit(frame)
    >>> encoder.transform(frame).tolist(), encoder.n_ids
    ([0, 1, 2], 4)
    >>> encoder.transform(pd.DataFrame({"segment": ["z"], "device": ["ios"]})).tolist()
    [3]
    """

    def __init__(self, columns: str | Sequence[str], handle_unknown: str = "bucket") -> None:
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        self.handle_unknown = handle_unknown

    def _keys(self, frame: pd.DataFrame | Any) -> pd.Index:
        if not isinstance(frame, pd.DataFrame):
            if len(self.columns) != 1:
                raise ValueError(f"pass a DataFrame with columns {self.columns}")
            frame = pd.DataFrame({self.columns[0]: np.asarray(frame)})
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise LogValidationError(
                f"missing column(s) {missing} needed by the encoder", column=missing[0]
            )
        parts = [frame[c].astype("string").fillna("<NA>") for c in self.columns]
        keys = parts[0]
        for part in parts[1:]:
            keys = keys + _SEPARATOR + part
        return pd.Index(keys.to_numpy(dtype=object))

    def fit(self, frame: pd.DataFrame | Any) -> CategoryEncoder:
        """Learn the distinct values in order of first appearance; returns ``self``."""
        if self.handle_unknown not in ("bucket", "error"):
            raise ValueError(f"handle_unknown must be 'bucket' or 'error', got {self.handle_unknown!r}")
        keys = self._keys(frame)
        self.categories_ = pd.Index(pd.unique(keys))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "categories_"):
            raise NotFittedError("this CategoryEncoder is not fitted yet; call fit first")

    @property
    def n_known(self) -> int:
        """How many distinct values were seen in ``fit``."""
        self._check_fitted()
        return len(self.categories_)

    @property
    def unknown_id(self) -> int | None:
        """The id of the unknown bucket, or None when unknown values raise."""
        return self.n_known if self.handle_unknown == "bucket" else None

    @property
    def n_ids(self) -> int:
        """Number of ids the encoder can emit (known values, plus the unknown bucket)."""
        return self.n_known + (1 if self.handle_unknown == "bucket" else 0)

    def transform(self, frame: pd.DataFrame | Any) -> np.ndarray:
        """Integer ids (int64) for each row."""
        self._check_fitted()
        ids = self.categories_.get_indexer(self._keys(frame)).astype(np.int64)
        unknown = ids < 0
        if unknown.any():
            if self.handle_unknown == "error":
                row = int(np.flatnonzero(unknown)[0])
                raise LogValidationError(
                    f"column(s) {self.columns}: row {row} has a value never seen in fit; "
                    f"{int(unknown.sum())} rows have unknown values",
                    column=self.columns[0],
                    first_row=row,
                    count=int(unknown.sum()),
                )
            ids[unknown] = self.n_known
        return ids

    def fit_transform(self, frame: pd.DataFrame | Any) -> np.ndarray:
        return self.fit(frame).transform(frame)

    def inverse_transform(self, ids: Any) -> pd.DataFrame:
        """The raw values (as strings) behind ids; the unknown bucket gives ``<unknown>``."""
        self._check_fitted()
        ids = np.asarray(ids, dtype=np.int64)
        labels = np.append(self.categories_.to_numpy(dtype=object), "<unknown>")
        keys = pd.Series(labels[np.clip(ids, 0, self.n_known)])
        split = keys.str.split(_SEPARATOR, expand=True, regex=False)
        if split.shape[1] != len(self.columns):  # the unknown label has no separators
            split = split.reindex(columns=range(len(self.columns)))
        split.columns = self.columns
        return split

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (columns, policy for unknowns, the categories)."""
        self._check_fitted()
        return {
            "columns": self.columns,
            "handle_unknown": self.handle_unknown,
            "categories": [str(c) for c in self.categories_],
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> CategoryEncoder:
        """Rebuild an encoder saved with ``to_dict``."""
        try:
            encoder = cls(spec["columns"], spec.get("handle_unknown", "bucket"))
            encoder.categories_ = pd.Index(list(spec["categories"]), dtype=object)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an encoder description: {exc}") from exc
        return encoder
