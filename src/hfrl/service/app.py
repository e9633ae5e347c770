"""The HTTP decision service: ``create_app(artifact, db)`` builds a FastAPI app.

Endpoints: ``POST /v1/decide``, ``POST /v1/decide/batch``, ``POST /v1/feedback`` (202),
``GET /v1/model``, ``POST /v1/admin/reload``, ``GET /healthz``, ``GET /metrics``.
Errors are mapped to HTTP codes in one place (``error_status``): bad fields 422 naming
the field, unknown decision 404, oversized body 413, missing/wrong key 401, log writer behind 503.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hfrl.errors import ArtifactError, HfrlError, LogValidationError
from hfrl.policies import resolve_rng
from hfrl.service.log import DEFAULT_EVENT, UNKNOWN, DecisionLog, LogWriterError
from hfrl.service.metrics import Metrics
from hfrl.service.model import ServedModel

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "FieldError", "create_app"]

API_KEY_ENV = "HFRL_API_KEY"
API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 10_000
_ROUTES = (
    "/v1/decide", "/v1/decide/batch", "/v1/feedback", "/v1/model", "/v1/admin/reload", "/healthz", "/metrics",
)
_JSON = "application/json"

ContextValue = str | int | float | bool | None


# ---------------------------------------------------------------------- request and response bodies
class DecideRequest(BaseModel):
    """One decision: give ``state`` (an integer id) or ``context`` (raw values the artifact encodes)."""

    model_config = ConfigDict(extra="forbid")

    state: Annotated[int | None, Field(ge=0, description="Integer state id in [0, n_states).")] = None
    context: Annotated[
        dict[str, ContextValue] | None,
        Field(description="Raw context values keyed by the artifact's state_encoder columns."),
    ] = None
    k: Annotated[int, Field(ge=1, le=10_000, description="How many distinct actions to return.")] = 1
    mode: Annotated[
        Literal["explore", "exploit"],
        Field(description="explore: sample from the policy; exploit: the top k (propensity 1.0)."),
    ] = "explore"
    request_id: Annotated[str | None, Field(max_length=200, description="Caller's id, logged as is.")] = None

    @model_validator(mode="after")
    def _state_or_context(self) -> DecideRequest:
        if (self.state is None) == (self.context is None):
            raise ValueError("give exactly one of 'state' (an integer id) or 'context' (an object)")
        return self


class DecideResponse(BaseModel):
    decision_id: str
    actions: list[int] = Field(description="Chosen action ids, slot 0 first.")
    propensities: list[float] = Field(
        description="Logged propensity per slot: explore, the probability of the action at its slot given "
        "the earlier picks (slot 0: pi(a|s)); exploit, 1.0 (deterministic top-k)."
    )
    model_version: str
    state: int = Field(description="The state id decided for (the encoded context, if one was sent).")
    items: list[str] | None = Field(None, description="Raw item ids when the artifact has an action_encoder.")


class DecideBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: Annotated[list[DecideRequest], Field(min_length=1, max_length=DEFAULT_MAX_BATCH)]


class DecideBatchResponse(BaseModel):
    decisions: list[DecideResponse]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: Annotated[str, Field(min_length=1, max_length=200)]
    reward: Annotated[float, Field(allow_inf_nan=False, description="The observed outcome (finite).")]
    event: Annotated[
        str,
        Field(min_length=1, max_length=100, description="Outcome kind; (decision_id, event) is stored once."),
    ] = DEFAULT_EVENT


class FeedbackResponse(BaseModel):
    decision_id: str
    event: str
    status: Literal["accepted", "duplicate"] = Field(
        description="duplicate: this (decision_id, event) was stored before; the first reward is kept."
    )


class ModelResponse(BaseModel):
    name: str
    model_version: str
    n_states: int
    n_actions: int
    context_columns: list[str] | None
    unknown_state: int | None
    has_item_ids: bool
    artifact: str | None
    loaded_at: float


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: Annotated[
        str | None,
        Field(max_length=4096, description="Artifact path on the server; default: reload the same."),
    ] = None


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str
    artifact: str | None


class HealthResponse(BaseModel):
    status: str
    model_version: str
    log_queue: int


class ErrorResponse(BaseModel):
    detail: Any


# ---------------------------------------------------------------------- errors
class FieldError(HfrlError):
    """A request field is valid JSON but wrong for this model (422 naming ``loc``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code, media_type=_JSON)


def _validation_errors(errors: list[Any], prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


def error_status(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The HTTP status and body for an exception, or None when it is not a client-facing error.

    The one place errors become HTTP codes: 422 names the field (``loc``), 503 means the decision
    log is behind or failing.
    """

    def field(loc: tuple[str | int, ...], message: str) -> tuple[int, dict[str, Any]]:
        return 422, {"detail": [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]}

    if isinstance(exc, FieldError):
        return field(exc.loc, str(exc))
    if isinstance(exc, LogValidationError):  # an encoder with handle_unknown="error"
        return field(("context", exc.column or ""), str(exc))
    if isinstance(exc, ArtifactError):
        return field(("artifact",), str(exc))
    if isinstance(exc, LogWriterError):
        return 503, {"detail": str(exc)}
    if isinstance(exc, RequestValidationError):
        return 422, {"detail": _validation_errors(list(exc.errors()))}
    if isinstance(exc, ValidationError):
        return 422, {"detail": _validation_errors(exc.errors(include_url=False), ("body",))}
    return None


def _install_error_handlers(app: FastAPI) -> None:
    async def handler(_: Request, exc: Exception) -> Response:
        mapped = error_status(exc)
        if mapped is None:  # pragma: no cover - only the registered types arrive here
            raise exc
        return _json(mapped[1], mapped[0])

    for kind in (FieldError, LogValidationError, ArtifactError, LogWriterError, RequestValidationError):
        app.add_exception_handler(kind, handler)


# ---------------------------------------------------------------------- the ASGI edge
FastHandler = Callable[[bytes], Awaitable[tuple[int, bytes]]]


class _Edge:
    """Pure ASGI middleware in front of FastAPI.

    * 413 for bodies over the limit (by Content-Length, or counted while streaming);
    * request counts and latency per route for ``/metrics``;
    * a fast path for the two hot JSON routes (``POST /v1/decide`` and ``/v1/feedback``): the same
      pydantic models validate the body (``model_validate_json``), the same functions decide and
      log, errors map through ``error_status``; it only skips FastAPI's routing and dependency
      machinery (about 100 us a request). Requests it does not take (other content types, other
      routes) go to FastAPI, whose routes define the published OpenAPI schema.
    """

    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        max_body_bytes: int,
        fast_routes: dict[str, FastHandler] | None = None,
        key_check: Callable[[str | None], None] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.fast_routes = fast_routes or {}
        self.key_check = key_check

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        route = path if path in _ROUTES else "other"
        status = 500
        limit = self.max_body_bytes

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        content_type = b""
        api_key: bytes | None = None
        try:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > limit:
                        await _send_json(send_status, 413, _too_large(limit))
                        return
                elif name == b"content-type":
                    content_type = value
                elif name == b"x-api-key":
                    api_key = value
            fast = self.fast_routes.get(path)
            is_json = content_type.startswith(b"application/json")
            if fast is not None and scope["method"] == "POST" and is_json:
                body = await _read_body(receive, limit)
                if body is None:
                    await _send_json(send_status, 413, _too_large(limit))
                    return
                if self.key_check is not None:
                    try:
                        self.key_check(api_key.decode("latin-1") if api_key is not None else None)
                    except HTTPException as exc:
                        await _send_json(send_status, exc.status_code, orjson.dumps({"detail": exc.detail}))
                        return
                code, payload = await fast(body)
                await _send_json(send_status, code, payload)
                return
            received = 0
            answered = False  # the edge sent a 413 itself; the app's own answer is dropped

            async def receive_limited() -> MutableMapping[str, Any]:
                nonlocal received, answered
                message = await receive()
                if message["type"] == "http.request" and not answered:
                    received += len(message.get("body", b""))
                    if received > limit:
                        answered = True
                        await _send_json(send_status, 413, _too_large(limit))
                        return {"type": "http.disconnect"}
                return message

            async def send_app(message: MutableMapping[str, Any]) -> None:
                if not answered:
                    await send_status(message)

            try:
                await self.app(scope, receive_limited, send_app)
            except Exception:
                if not answered:
                    raise
        finally:
            self.metrics.observe_request(route, status, time.perf_counter() - start)


def _too_large(limit: int) -> bytes:
    return orjson.dumps({"detail": f"request body exceeds the limit of {limit} bytes"})


async def _read_body(receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]], status: int, body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- the app
class _ModelHolder:
    """The one reference hot reload swaps; a request reads it once and decides with that model."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.loaded_at = time.time()
        self.lock = asyncio.Lock()


def _load_model(artifact: str | PathLike[str] | ServedModel) -> ServedModel:
    if isinstance(artifact, ServedModel):
        return artifact
    return ServedModel.load(artifact)


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
    artifact : path or ServedModel
        A ``TabularPolicy`` saved with ``.save``. Its metadata may hold ``state_encoder`` (a
        ``CategoryEncoder.to_dict()``: decisions then accept raw ``context``), ``action_encoder``
        (responses then carry raw ``items``) and ``name``.
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
        Serve ``POST /v1/decide`` and ``/v1/feedback`` (JSON bodies) from a pure-ASGI path that
        skips FastAPI's routing (same models, same logic, same errors; ~120 us less per request).

    Returns
    -------
    FastAPI
        Run it with uvicorn (``hfrl serve`` / ``python -m hfrl.service``).

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
    holder = _ModelHolder(_load_model(artifact))
    log = DecisionLog(db)
    metrics = Metrics()
    rng = resolve_rng(seed)
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The service API key.")

    def check_key(given: str | None) -> None:
        if api_key is None:
            raise HTTPException(403, f"no API key is configured; set {API_KEY_ENV} or pass --api-key-file")
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    async def admin_key(given: str | None = Security(key_header)) -> None:
        check_key(given)

    async def client_key(given: str | None = Security(key_header)) -> None:
        check_key(given)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(log.close)

    app = FastAPI(
        title="hfrl decision service",
        version=holder.model.version,
        summary="Decide with a tabular policy, log every decision with its propensity, take feedback.",
        lifespan=lifespan,
        # the service exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would look up
        # the (unconfigured) providers on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.holder = holder
    app.state.log = log
    app.state.metrics = metrics
    _install_error_handlers(app)
    client_deps = [Depends(client_key)] if require_key else []
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
        403: {"model": ErrorResponse, "description": "No API key configured on the server."},
        413: {"model": ErrorResponse, "description": "Request body over the size limit."},
        422: {"model": ErrorResponse, "description": "A field is missing or invalid (its loc names it)."},
        503: {"model": ErrorResponse, "description": "The decision log is behind or failing."},
    }

    def states_for(
        requests: list[DecideRequest], model: ServedModel, prefix: Callable[[int], tuple[str | int, ...]]
    ) -> np.ndarray:
        states = np.empty(len(requests), dtype=np.int64)
        with_context = []
        for i, request in enumerate(requests):
            if request.state is not None:
                if request.state >= model.n_states:
                    raise FieldError(
                        (*prefix(i), "state"),
                        f"state {request.state} is outside [0, {model.n_states}) for model {model.version}",
                    )
                states[i] = request.state
            else:
                with_context.append(i)
        if with_context:
            contexts = [requests[i].context or {} for i in with_context]
            try:
                states[with_context] = model.encode_contexts(contexts)
            except LookupError as exc:
                if isinstance(exc, KeyError):
                    raise FieldError(
                        (*prefix(with_context[0]), "context", str(exc.args[0])),
                        f"context lacks the field {exc.args[0]!r}; the model encodes {model.context_columns}",
                    ) from None
                raise FieldError((*prefix(with_context[0]), "context"), str(exc)) from None
        return states

    def decide_many(
        requests: list[DecideRequest], model: ServedModel, prefix: Callable[[int], tuple[str | int, ...]]
    ) -> list[dict[str, Any]]:
        states = states_for(requests, model, prefix)
        now = time.time()
        token = secrets.token_hex(8) if len(requests) > 1 else ""
        responses: list[dict[str, Any]] = [{} for _ in requests]
        rows: list[tuple[Any, ...]] = []
        groups: dict[tuple[int, str], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.k, request.mode), []).append(i)
        decided = []
        for (k, mode), members in groups.items():  # every group decides before anything is counted or logged
            index = np.asarray(members, dtype=np.int64)
            try:
                decided.append((k, mode, members, model.decide(states[index], k, mode, rng)))
            except ValueError as exc:
                raise FieldError((*prefix(members[0]), "k"), str(exc)) from None
        for k, mode, members, out in decided:
            metrics.observe_decisions(out.actions, mode)
            actions = out.actions.tolist()
            propensities = out.propensities.tolist()
            probabilities = out.policy_probabilities.tolist()
            items = model.item_labels(out.actions)
            for row, i in enumerate(members):
                request = requests[i]
                decision_id = f"{token}-{i:x}" if len(requests) > 1 else secrets.token_hex(12)
                state = int(states[i])
                context = orjson.dumps(request.context).decode() if request.context is not None else None
                for slot in range(k):
                    rows.append(
                        (
                            decision_id, slot, state, actions[row][slot], propensities[row][slot],
                            probabilities[row][slot], now, model.version, mode, k, request.request_id,
                            context,
                        )
                    )
                responses[i] = {
                    "decision_id": decision_id,
                    "actions": actions[row],
                    "propensities": propensities[row],
                    "model_version": model.version,
                    "state": state,
                    "items": items[row] if items is not None else None,
                }
        log.log_decisions(rows)
        return responses

    async def record_feedback(body: FeedbackRequest) -> tuple[int, dict[str, Any]]:
        outcome = await log.feedback(body.decision_id, body.reward, body.event)
        metrics.observe_feedback(outcome)
        if outcome == UNKNOWN:
            return 404, {"detail": f"unknown decision_id {body.decision_id!r}"}
        return 202, {"decision_id": body.decision_id, "event": body.event, "status": outcome}

    @app.post(
        "/v1/decide", response_model=DecideResponse, responses=errors, dependencies=client_deps,
        summary="Choose k actions for one state or context and log the decision.",
    )
    async def decide(request: DecideRequest) -> Response:
        model = holder.model  # read once: a reload during this request does not affect it
        return _json(decide_many([request], model, lambda i: ())[0])

    @app.post(
        "/v1/decide/batch", response_model=DecideBatchResponse, responses=errors, dependencies=client_deps,
        summary="Many decisions in one request (vectorised); each is logged like a single decide.",
    )
    async def decide_batch(batch: DecideBatchRequest) -> Response:
        model = holder.model
        return _json({"decisions": decide_many(batch.requests, model, lambda i: ("requests", i))})

    @app.post(
        "/v1/feedback", status_code=202, response_model=FeedbackResponse, dependencies=client_deps,
        responses={**errors, 404: {"model": ErrorResponse, "description": "Unknown decision_id."}},
        summary="Record the outcome of a decision; the 202 is sent after the row is committed to disk.",
    )
    async def feedback(body: FeedbackRequest) -> Response:
        code, content = await record_feedback(body)
        return _json(content, code)

    # the same work without FastAPI's routing layer (see _Edge); bodies validated by the same models
    async def fast_decide(body: bytes) -> tuple[int, bytes]:
        try:
            request = DecideRequest.model_validate_json(body)
            model = holder.model
            return 200, orjson.dumps(decide_many([request], model, lambda i: ())[0])
        except (ValidationError, HfrlError, LogWriterError) as exc:
            mapped = error_status(exc)
            if mapped is None:  # pragma: no cover
                raise
            return mapped[0], orjson.dumps(mapped[1])

    async def fast_feedback(body: bytes) -> tuple[int, bytes]:
        try:
            code, content = await record_feedback(FeedbackRequest.model_validate_json(body))
            return code, orjson.dumps(content)
        except (ValidationError, HfrlError, LogWriterError) as exc:
            mapped = error_status(exc)
            if mapped is None:  # pragma: no cover
                raise
            return mapped[0], orjson.dumps(mapped[1])

    if fast_path:
        app.add_middleware(
            _Edge, metrics=metrics, max_body_bytes=max_body_bytes,
            fast_routes={"/v1/decide": fast_decide, "/v1/feedback": fast_feedback},
            key_check=check_key if require_key else None,
        )
    else:
        app.add_middleware(_Edge, metrics=metrics, max_body_bytes=max_body_bytes)

    @app.get("/v1/model", response_model=ModelResponse, responses=errors, dependencies=client_deps,
             summary="The model being served.")
    async def model_info() -> Response:
        return _json({**holder.model.describe(), "loaded_at": holder.loaded_at})

    @app.post(
        "/v1/admin/reload", response_model=ReloadResponse, dependencies=[Depends(admin_key)],
        responses=errors,
        summary="Atomically swap in a new artifact; in-flight requests finish on the old one.",
    )
    async def reload(body: ReloadRequest | None = None) -> Response:
        async with holder.lock:
            previous = holder.model
            path = body.artifact if body is not None and body.artifact else previous.path
            if path is None:
                raise FieldError(("artifact",), "the model was not loaded from a file; give 'artifact'")
            if not Path(path).is_file():
                raise FieldError(("artifact",), f"no artifact file at {path!r}")
            try:
                model = await asyncio.to_thread(ServedModel.load, path)
            except (ArtifactError, ValueError) as exc:
                metrics.observe_reload("failed")
                raise FieldError(("artifact",), str(exc)) from None
            holder.model = model  # the swap: one reference assignment on the event loop
            holder.loaded_at = time.time()
            metrics.observe_reload("ok")
        return _json({"model_version": model.version, "previous_version": previous.version, "artifact": path})

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness and the decision log's state.",
             responses={503: {"model": HealthResponse, "description": "The log writer has stopped."}})
    async def healthz() -> Response:
        alive = log.writer_alive
        return _json(
            {"status": "ok" if alive else "log writer stopped", "model_version": holder.model.version,
             "log_queue": log.queue_depth},
            200 if alive else 503,
        )

    @app.get("/metrics", dependencies=client_deps, summary="Prometheus text exposition.",
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."}})
    async def metrics_text() -> Response:
        gauges = {
            "hfrl_log_queue_depth": ("Items waiting for the decision-log writer.", log.queue_depth),
            "hfrl_log_commits_total": ("Decision-log transactions committed.", log.commits),
            "hfrl_log_failed_commits_total": ("Decision-log transactions that failed.", log.failed_commits),
            "hfrl_log_rows_committed_total": ("Rows committed to the decision log.", log.rows_committed),
            "hfrl_model_loaded_timestamp_seconds": ("When the served model was loaded.", holder.loaded_at),
            "hfrl_model_states": ("States in the served model.", holder.model.n_states),
            "hfrl_model_actions": ("Actions in the served model.", holder.model.n_actions),
        }
        return Response(metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app

