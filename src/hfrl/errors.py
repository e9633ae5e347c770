"""The exception types users catch. Each is a ``ValueError`` so that generic handlers still work."""

from __future__ import annotations


class HfrlError(ValueError):
    """Base class of every error hfrl raises on bad input."""


class LogValidationError(HfrlError):
    """Logged data does not fit the log schema.

    The message names the column, the first offending row and how many rows offend.
    ``column``, ``first_row`` and ``count`` carry the same facts for programs.
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        first_row: int | None = None,
        count: int | None = None,
        source: str | None = None,
    ) -> None:
        if source is not None:
            message = f"{source}: {message}"
        super().__init__(message)
        self.column = column
        self.first_row = first_row
        self.count = count
        self.source = source


class ArtifactError(HfrlError):
    """A saved artifact is corrupt, truncated, of another format version or does not match."""


class NotFittedError(HfrlError, AttributeError):
    """An estimator was used before ``fit``."""
