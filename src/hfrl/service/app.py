"""The decision service's app factory: ``create_app(artifact, db)`` composes a FastAPI app.

Endpoints (``hfrl.service.routes``): ``POST /v1/decide``, ``POST /v1/decide/batch``,
``POST /v1/feedback`` (202), ``GET /v1/model``, ``POST /v1/admin/reload``, ``GET /healthz``,
``GET /metrics``. The rules live in ``ServiceState`` (``hfrl.service.state``); errors become HTTP
codes in one place (``hfrl.service.errors``); the body limit and request metrics sit in front
(``hfrl.service.edge``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from os import PathLike

from fastapi import Depends, FastAPI

from hfrl.service import routes
from hfrl.service.edge import Edge, FastRoute
from hfrl.service.errors import install_error_handlers
from hfrl.service.log import DecisionLog
from hfrl.service.model import ServedContextualModel, ServedModel, load_served_model
from hfrl.service.schemas import DecideRequest, FeedbackRequest
from hfrl.service.state import API_KEY_ENV, API_KEY_HEADER, ServiceState

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 1 << 20


def create_app(
    artifact: str | PathLike[str] | ServedModel,
    db: str | PathLike[str],
    api_key: str | None = None,
    require_key: bool = False,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    seed: int | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """Build the decision service for one policy artifact and one decision-log database.

    Parameters
    ----------
    artifact : path, ServedModel or ServedContextualModel
        A ``TabularPolicy`` saved with ``.save``. Its metadata may hold ``state_encoder`` (a
        ``CategoryEncoder.to_dict()``: decisions then accept raw ``context``), ``action_encoder``
        (responses then carry raw ``items``) and ``name``. Or a contextual policy
        (``hfrl.contextual.LinearPolicy`` / ``NeuralPolicy``) saved with ``.save``: decisions then
        take ``features``.
    db : path
        The SQLite decision log (created when absent; see ``hfrl.service.log``).
    api_key : str, optional
        The admin key; by default the ``HFRL_API_KEY`` environment variable. Clients send it in the
        ``X-API-Key`` header. Without a key the admin endpoints answer 403.
    require_key : bool
        Require the key on every ``/v1`` endpoint and ``/metrics`` too (``/healthz`` and the
        OpenAPI documents stay open for probes and clients).
    max_body_bytes : int
        Larger request bodies get 413.
    seed : int, optional
        Seeds the sampling generator (decisions are then reproducible for a given request order).
    fast_path : bool
        Let the edge serve ``POST /v1/decide`` and ``/v1/feedback`` (JSON bodies) with the routes'
        own models and handlers, skipping FastAPI's routing and dependency resolution.

    Returns
    -------
    FastAPI
        Run it with uvicorn (``hfrl serve`` / ``python -m hfrl.service``). ``app.state.service`` is
        the running ``ServiceState`` (model, decision log, metrics).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from fastapi.testclient import TestClient
    >>> from hfrl.policies import TabularPolicy
    >>> folder = tempfile.mkdtemp()
    >>> path = TabularPolicy(np.array([[0.0, 1.0], [1.0, 0.0]])).save(folder + "/policy.zip")
    >>> with TestClient(create_app(path, folder + "/log.sqlite", seed=0)) as client:
    ...     decision = client.post("/v1/decide", json={"state": 0}).json()
    ...     body = {"decision_id": decision["decision_id"], "reward": 1.0}
    ...     feedback = client.post("/v1/feedback", json=body)
    >>> decision["actions"], decision["propensities"], feedback.status_code
    ([1], [1.0], 202)
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    served = (ServedModel, ServedContextualModel)
    model = artifact if isinstance(artifact, served) else load_served_model(artifact)
    service = ServiceState(model, DecisionLog(db), api_key=api_key, seed=seed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(service.log.close)

    app = FastAPI(
        title="hfrl decision service",
        version=model.version,
        summary="Decide with a tabular policy, log every decision with its propensity, take feedback.",
        lifespan=lifespan,
        # the service exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would look up
        # the (unconfigured) providers on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    install_error_handlers(app)
    routers = (routes.client_routes, routes.admin_routes, routes.probe_routes)
    client_keyed = [Depends(routes.require_key)] if require_key else []
    app.include_router(routes.client_routes, dependencies=client_keyed)
    app.include_router(routes.admin_routes)
    app.include_router(routes.probe_routes)
    fast_routes = {
        "/v1/decide": FastRoute(DecideRequest, routes.decide, keyed=require_key),
        "/v1/feedback": FastRoute(FeedbackRequest, routes.feedback, keyed=require_key),
    }
    app.add_middleware(
        Edge, service=service, max_body_bytes=max_body_bytes,
        routes=tuple(route.path for router in routers for route in router.routes),
        fast_routes=fast_routes if fast_path else None,
    )
    return app
