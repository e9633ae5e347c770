"""The service's errors and the one place they become HTTP codes (``error_status``).

422 names the field (``loc``), 404 an unknown decision, 409 a feedback that contradicts a stored
one, 401/403 a missing or unconfigured key, 503 a decision log that is behind or failing. (413 is
answered before the body is read; see ``hfrl.service.edge``.)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from hfrl.errors import ArtifactError, HfrlError, LogValidationError
from hfrl.service.log import FeedbackConflictError, LogWriterError
from hfrl.service.schemas import ErrorResponse, json_response

__all__ = [
    "ERROR_RESPONSES",
    "FieldError",
    "MissingKeyError",
    "NoExperimentError",
    "NoKeyConfiguredError",
    "UnknownDecisionError",
    "error_response",
    "error_status",
    "install_error_handlers",
]


class FieldError(HfrlError):
    """A request field is valid JSON but wrong for this model (422 naming ``loc``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class UnknownDecisionError(HfrlError):
    """Feedback names a decision the log does not hold (404)."""


class NoExperimentError(HfrlError):
    """The experiment endpoints were called on a service without a challenger (404)."""


class MissingKeyError(HfrlError):
    """The request lacks the API key or sends a wrong one (401)."""


class NoKeyConfiguredError(HfrlError):
    """A keyed endpoint was called on a server without a key (403)."""


_STATUS: dict[type[Exception], int] = {
    MissingKeyError: 401,
    NoKeyConfiguredError: 403,
    UnknownDecisionError: 404,
    NoExperimentError: 404,
    FeedbackConflictError: 409,
    LogWriterError: 503,
}


def _field(loc: tuple[str | int, ...], message: str) -> tuple[int, dict[str, Any]]:
    return 422, {"detail": [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]}


def error_status(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The HTTP status and JSON body for an exception, or None when it is not a client-facing error.

    Examples
    --------
    >>> error_status(FieldError(("state",), "state 9 is outside [0, 3)"))
    (422, {'detail': [{'loc': ['body', 'state'], 'msg': 'state 9 is outside [0, 3)', 'type': 'value_error'}]})
    >>> error_status(UnknownDecisionError("unknown decision_id 'x'"))
    (404, {'detail': "unknown decision_id 'x'"})
    """
    if isinstance(exc, FieldError):
        return _field(exc.loc, str(exc))
    if isinstance(exc, LogValidationError):  # an encoder with handle_unknown="error"
        return _field(("context", exc.column or ""), str(exc))
    if isinstance(exc, ArtifactError):
        return _field(("artifact",), str(exc))
    if isinstance(exc, RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return 422, {"detail": errors}
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status, {"detail": str(exc)}
    return None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    403: {"model": ErrorResponse, "description": "No API key configured on the server."},
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    422: {"model": ErrorResponse, "description": "A field is missing or invalid (its loc names it)."},
    503: {"model": ErrorResponse, "description": "The decision log is behind or failing."},
}


def error_response(exc: Exception) -> Response | None:
    """``error_status`` as a JSON response, or None when ``exc`` is not a client-facing error."""
    mapped = error_status(exc)
    return json_response(mapped[1], mapped[0]) if mapped is not None else None


def install_error_handlers(app: FastAPI) -> None:
    """Answer every client-facing error through ``error_status``."""

    async def handler(_: Request, exc: Exception) -> Response:
        response = error_response(exc)
        if response is None:  # pragma: no cover - only the registered types arrive here
            raise exc
        return response

    for kind in (FieldError, LogValidationError, ArtifactError, RequestValidationError, *_STATUS):
        app.add_exception_handler(kind, handler)
