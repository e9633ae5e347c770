"""The service's HTTP routes: parse the body, call ``ServiceState``, answer JSON.

Three routers, so the app factory can put the key where the settings say:

* ``client_routes``: decide, batch decide, feedback, the model, the experiment and the candidates,
  metrics (keyed with ``require_key``);
* ``admin_routes``: hot reload, refresh, concluding the experiment, adding a candidate (always keyed);
* ``probe_routes``: ``/healthz`` (never keyed, for load balancers and orchestrators).

Handlers get the running service through the ``Service`` dependency (``app.state.service``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from hfrl.service.errors import ERROR_RESPONSES
from hfrl.service.schemas import (
    CandidateRequest,
    CandidateResponse,
    CandidatesResponse,
    ConcludeRequest,
    DecideBatchRequest,
    DecideBatchResponse,
    DecideRequest,
    DecideResponse,
    ErrorResponse,
    ExperimentResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    ModelResponse,
    RefreshResponse,
    ReloadRequest,
    ReloadResponse,
    json_response,
)
from hfrl.service.state import API_KEY_HEADER, ServiceState

__all__ = ["Service", "admin_routes", "client_routes", "probe_routes", "require_key", "service_state"]


async def service_state(request: Request) -> ServiceState:
    """The running service of the app serving ``request``."""
    return request.app.state.service


Service = Annotated[ServiceState, Depends(service_state)]
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The service API key.")


async def require_key(service: Service, given: Annotated[str | None, Security(_key_header)]) -> None:
    """The dependency that refuses a request without the service's key (401, or 403 with none set)."""
    service.check_key(given)


client_routes = APIRouter(responses=ERROR_RESPONSES)
admin_routes = APIRouter(responses=ERROR_RESPONSES, dependencies=[Depends(require_key)])
probe_routes = APIRouter()


@client_routes.post(
    "/v1/decide", response_model=DecideResponse,
    summary="Choose k actions for one state or context and log the decision.",
)
async def decide(body: DecideRequest, service: Service) -> Response:
    return json_response((await service.decide([body]))[0])


@client_routes.post(
    "/v1/decide/batch", response_model=DecideBatchResponse,
    summary="Many decisions in one request (vectorised); each is logged like a single decide.",
)
async def decide_batch(body: DecideBatchRequest, service: Service) -> Response:
    return json_response({"decisions": await service.decide(body.requests, lambda i: ("requests", i))})


@client_routes.post(
    "/v1/feedback", status_code=202, response_model=FeedbackResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown decision_id."},
        409: {"model": ErrorResponse, "description": "This decision and event hold a different reward."},
    },
    summary="Record the outcome of a decision; the 202 is sent after the row is committed to disk.",
)
async def feedback(body: FeedbackRequest, service: Service) -> Response:
    return json_response(await service.record_feedback(body), 202)


@client_routes.get("/v1/model", response_model=ModelResponse, summary="The model being served.")
async def model_info(service: Service) -> Response:
    return json_response(service.describe())


_NO_EXPERIMENT = {404: {"model": ErrorResponse, "description": "No experiment (no --challenger)."}}


@client_routes.get(
    "/v1/experiment", response_model=ExperimentResponse, responses=_NO_EXPERIMENT,
    summary="Challenger minus champion with its anytime-valid confidence sequence, and the state.",
)
async def experiment(service: Service) -> Response:
    return json_response(service.experiment_report())


@client_routes.get(
    "/v1/candidates", response_model=CandidatesResponse,
    summary="Candidates watched off-policy: candidate minus champion from the logged propensities.",
)
async def candidates(service: Service) -> Response:
    return json_response(service.candidates_report())


@client_routes.get(
    "/metrics", summary="Prometheus text exposition.",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."}},
)
async def metrics(service: Service) -> Response:
    return Response(service.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


@admin_routes.post(
    "/v1/admin/reload", response_model=ReloadResponse,
    summary="Atomically swap in a new artifact; in-flight requests finish on the old one.",
)
async def reload(service: Service, body: ReloadRequest | None = None) -> Response:
    return json_response(await service.reload(body.artifact if body is not None else None))


@admin_routes.post(
    "/v1/admin/refresh", response_model=RefreshResponse,
    summary="Recompute HF from the logs, rebuild the blended champion and swap it in.",
)
async def refresh(service: Service) -> Response:
    return json_response(await service.refresh())


@admin_routes.post(
    "/v1/admin/experiment", response_model=ExperimentResponse, responses=_NO_EXPERIMENT,
    summary="Conclude the experiment now: promote the challenger or roll it back.",
)
async def conclude(body: ConcludeRequest, service: Service) -> Response:
    return json_response(service.conclude(body.decision, "admin"))


@admin_routes.post(
    "/v1/admin/candidates", response_model=CandidateResponse,
    summary="Watch another candidate artifact off-policy from now on.",
)
async def add_candidate(body: CandidateRequest, service: Service) -> Response:
    return json_response(await service.add_candidate(body.artifact))


@probe_routes.get(
    "/healthz", response_model=HealthResponse, summary="Liveness and the decision log's state.",
    responses={503: {"model": HealthResponse, "description": "The log writer has stopped."}},
)
async def healthz(service: Service) -> Response:
    status, body = service.health()
    return json_response(body, status)
