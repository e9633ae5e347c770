"""The ASGI middleware in front of the routes: the body-size limit and the per-route request metrics.

It answers 413 for a body over the limit (by ``Content-Length``, or counted while the body streams
in) before any route reads it, and records every request's status and latency for ``/metrics``.

With ``fast_routes`` it also serves the hot JSON routes (``POST /v1/decide``, ``/v1/feedback``)
itself when the request is well formed: the key passes ``ServiceState.check_key`` and the body
(``json.loads``, as FastAPI reads it) passes the route's own pydantic model. It then calls the
route's own handler and maps its errors with ``error_response``, so every rule stays in one place;
it only skips FastAPI's routing, dependency resolution and exception middleware, about 200 us of
CPU a request (``bench/bench_service.py`` compares both). Anything else (a wrong key, an invalid
body, other routes and content types) goes to FastAPI, which answers it exactly as it would without
the fast path; FastAPI's routes also define the published OpenAPI schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel

from hfrl.service.errors import error_response
from hfrl.service.state import ServiceState

__all__ = ["Edge", "FastRoute"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FastRoute(NamedTuple):
    """A route the edge serves itself: its body model and its FastAPI handler ``(body, service)``."""

    body: type[BaseModel]
    handler: Callable[..., Awaitable[Any]]
    keyed: bool


class Edge:
    """Pure ASGI middleware: 413 for oversized bodies, request metrics, optional fast routes.

    Parameters
    ----------
    app : ASGI app
        The FastAPI app behind the edge.
    service : ServiceState
        Its metrics receive every request; the fast routes decide with it.
    max_body_bytes : int
        Larger request bodies get 413.
    routes : tuple of str
        The paths counted by name in the metrics (others count as ``"other"``).
    fast_routes : dict, optional
        ``POST`` paths served without FastAPI's routing, see the module docstring.
    """

    def __init__(
        self,
        app: Any,
        service: ServiceState,
        max_body_bytes: int,
        routes: tuple[str, ...],
        fast_routes: dict[str, FastRoute] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.routes = frozenset(routes)
        self.fast_routes = fast_routes or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                await self._too_large(send_status)
                return
            fast = self.fast_routes.get(path) if scope["method"] == "POST" else None
            if fast is not None and headers.get(b"content-type", b"").startswith(b"application/json"):
                await self._fast(fast, headers, scope, receive, send_status)
            else:
                await self._limited(scope, receive, send_status)
        finally:
            route = path if path in self.routes else "other"
            self.service.metrics.observe_request(route, status, time.perf_counter() - start)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, answering 413 instead once the streamed body passes the limit."""
        limit = self.max_body_bytes
        received = 0
        answered = False  # the edge sent a 413 itself; the app's own answer is dropped

        async def receive_limited() -> MutableMapping[str, Any]:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                received += len(message.get("body", b""))
                if received > limit:
                    answered = True
                    await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def send_app(message: MutableMapping[str, Any]) -> None:
            if not answered:
                await send(message)

        try:
            await self.app(scope, receive_limited, send_app)
        except Exception:
            if not answered:
                raise

    async def _fast(
        self, route: FastRoute, headers: dict[bytes, bytes], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a well-formed, authorised ``route`` request; hand anything else to FastAPI."""
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await self._too_large(send)
            return
        parsed = self._parse(route, headers, body)
        if parsed is None:  # FastAPI answers the input error, exactly as without the fast path
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            response = await route.handler(parsed, self.service)
        except Exception as exc:
            response = error_response(exc)
            if response is None:
                raise
        await response(scope, receive, send)

    def _parse(self, route: FastRoute, headers: dict[bytes, bytes], body: bytes) -> BaseModel | None:
        """The validated body, or None for a wrong key or an invalid body (as FastAPI reads it)."""
        try:
            if route.keyed:
                key = headers.get(b"x-api-key")
                self.service.check_key(key.decode("latin-1") if key is not None else None)
            return route.body.model_validate(json.loads(body))
        except ValueError:  # a key error, undecodable JSON, or a ValidationError: all ValueErrors
            return None

    async def _too_large(self, send: Send) -> None:
        body = orjson.dumps({"detail": f"request body exceeds the limit of {self.max_body_bytes} bytes"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read ``body`` once, then defers to ``receive``."""
    pending = True

    async def replay() -> MutableMapping[str, Any]:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _read_body(receive: Receive, limit: int) -> bytes | None:
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
