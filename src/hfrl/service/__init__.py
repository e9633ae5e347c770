"""The decision service: serve a policy over HTTP, log every decision and its outcome, close the loop.

``create_app(artifact, db)`` builds the FastAPI app (routes in ``routes``, request/response bodies in
``schemas``, the rules in ``state.ServiceState``, errors to HTTP codes in ``errors``); ``DecisionLog``
is the SQLite (WAL, group commit) decision log; ``read_decision_log(db)`` reads it back in the hfrl
log schema for ``evaluate``/``tune``; ``serve`` runs the app under uvicorn (``hfrl serve`` and
``python -m hfrl.service`` call it).
Code that only reads logs can import ``hfrl.service.log`` alone (no FastAPI import).
"""

from hfrl.service.app import create_app
from hfrl.service.log import (
    DecisionLog,
    FeedbackConflictError,
    LogWriterError,
    read_decision_log,
    write_parquet,
)
from hfrl.service.model import (
    Decisions,
    ServedContextualModel,
    ServedModel,
    artifact_version,
    load_served_model,
)
from hfrl.service.server import serve

__all__ = [
    "DecisionLog",
    "Decisions",
    "FeedbackConflictError",
    "LogWriterError",
    "ServedContextualModel",
    "ServedModel",
    "artifact_version",
    "create_app",
    "load_served_model",
    "read_decision_log",
    "serve",
    "write_parquet",
]
