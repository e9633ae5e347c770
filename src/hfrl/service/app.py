"""The decision service's app factory: ``create_app(artifact, db)`` composes a FastAPI app.

Endpoints (``hfrl.service.routes``): ``POST /v1/decide``, ``POST /v1/decide/batch``,
``POST /v1/feedback`` (202), ``GET /v1/model``, ``GET /v1/experiment``, ``GET /v1/candidates``,
``POST /v1/admin/reload``, ``POST /v1/admin/refresh``, ``POST /v1/admin/experiment``,
``POST /v1/admin/candidates``, ``GET /healthz``, ``GET /metrics``. The rules live in
``ServiceState`` (``hfrl.service.state``); errors become HTTP
codes in one place (``hfrl.service.errors``); the body limit and request metrics sit in front
(``hfrl.service.edge``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from os import PathLike

from fastapi import Depends, FastAPI

from hfrl.service import routes
from hfrl.service.edge import Edge, FastRoute
from hfrl.service.errors import install_error_handlers
from hfrl.service.log import open_decision_log
from hfrl.service.model import ServedContextualModel, ServedModel, load_served_model
from hfrl.service.monitor import CandidateMonitor, MonitorSettings
from hfrl.service.refresh import RefreshSettings
from hfrl.service.schemas import DecideRequest, FeedbackRequest
from hfrl.service.state import API_KEY_ENV, API_KEY_HEADER, ServiceState

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 1 << 20


def create_app(
    artifact: str | PathLike[str] | ServedModel | ServedContextualModel,
    db: str | PathLike[str],
    api_key: str | None = None,
    require_key: bool = False,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    seed: int | None = None,
    fast_path: bool = True,
    challenger: str | PathLike[str] | ServedModel | None = None,
    traffic: float = 0.1,
    auto: bool = False,
    monitor: MonitorSettings | None = None,
    candidates: Sequence[str | PathLike[str]] = (),
    refresh: RefreshSettings | None = None,
    monitor_interval: float = 1.0,
) -> FastAPI:
    """Build the decision service for one policy artifact and one decision-log database.

    Parameters
    ----------
    artifact : path, ServedModel or ServedContextualModel
        A ``TabularPolicy`` saved with ``.save``. Its metadata may hold ``state_encoder`` (a
        ``CategoryEncoder.to_dict()``: decisions then accept raw ``context``), ``action_encoder``
        (responses then carry raw ``items``) and ``name``. Or a contextual policy
        (``hfrl.contextual.LinearPolicy`` / ``NeuralPolicy``) saved with ``.save``: decisions then
        take ``features`` (no challenger or candidates beside it).
    db : path or PostgreSQL URL
        The decision log: a SQLite file (created when absent), or a ``postgresql://`` URL that
        several replicas share (see ``hfrl.service.log`` and ``hfrl.service.postgres``).
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
    challenger : path or ServedModel, optional
        Serve it to a share ``traffic`` of the decisions next to the champion ``artifact``, and
        watch the difference (``GET /v1/experiment``; ``hfrl.service.experiment``).
    traffic : float
        The challenger's share, in (0, 1).
    auto : bool
        Promote or roll back by itself once the experiment concludes.
    monitor : MonitorSettings, optional
        Level, reward range, monitored event, guardrail floor (``hfrl.service.monitor``).
    candidates : sequence of paths
        Artifacts watched off-policy against the champion (``GET /v1/candidates``).
    refresh : RefreshSettings, optional
        How ``POST /v1/admin/refresh`` (and, with ``every``, a periodic task) rebuilds the champion.
    monitor_interval : float
        Seconds between two reads of the monitors.

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
    if isinstance(model, ServedContextualModel) and (challenger is not None or candidates):
        raise ValueError("a challenger or candidates are served beside a tabular champion only; "
                         f"{model.path or 'the artifact'} is a contextual policy")
    if challenger is not None and not isinstance(challenger, ServedModel):
        challenger = ServedModel.load(challenger)
    settings = monitor or MonitorSettings()
    watched = [ServedModel.load(path) for path in candidates]
    log = open_decision_log(db)
    try:
        service = ServiceState(model, log, api_key=api_key, seed=seed, challenger=challenger, traffic=traffic,
                               auto=auto, monitor=settings, refresh=refresh)
        service.candidates = [CandidateMonitor(c, model, settings, service.experiment) for c in watched]
    except BaseException:
        log.close()
        raise

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(service.watch(monitor_interval))]
        if service.refresh_settings.every is not None:
            tasks.append(asyncio.create_task(service.refresh_periodically(service.refresh_settings.every)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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
