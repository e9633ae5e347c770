"""What a running service holds and does: the served model, the decision log, metrics, the key.

``ServiceState`` is the one implementation of the service's rules, whatever the transport:

* a decision's ``state`` must lie in ``[0, n_states)`` and a ``context`` must carry the encoder's
  columns (``FieldError`` naming the field otherwise); a contextual model takes ``features`` only,
  every one of its ``context_columns`` and no other (logged as the decision's ``context``, with
  ``state`` 0);
* every decided slot is logged with its propensity (``hfrl.service.model`` states the rule) before
  the answer is returned;
* feedback is answered after its row is committed; an unknown decision is ``UnknownDecisionError``,
  a different reward for a stored one ``FeedbackConflictError``;
* a reload swaps one reference, so a request that read the old model finishes on it.

The routes (``hfrl.service.routes``) parse the bodies and call these methods; errors become HTTP
codes in ``hfrl.service.errors``.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hfrl.errors import ArtifactError
from hfrl.policies import resolve_rng
from hfrl.service.errors import FieldError, MissingKeyError, NoKeyConfiguredError, UnknownDecisionError
from hfrl.service.log import UNKNOWN, DecisionLog, FeedbackConflictError
from hfrl.service.metrics import Metrics
from hfrl.service.model import ServedContextualModel, ServedModel, load_served_model
from hfrl.service.schemas import DecideRequest, FeedbackRequest

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "ServiceState"]

API_KEY_ENV = "HFRL_API_KEY"
API_KEY_HEADER = "X-API-Key"

Loc = Callable[[int], tuple[str | int, ...]]


def _single(_: int) -> tuple[str | int, ...]:
    return ()


class ServiceState:
    """The served model (swapped by reload), the decision log, metrics, the sampling generator, the key.

    Parameters
    ----------
    model : ServedModel or ServedContextualModel
    log : DecisionLog
    api_key : str, optional
        The key ``check_key`` compares with; None means keyed endpoints answer 403.
    seed : int, optional
        Seeds the sampling generator.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> model = ServedModel(TabularPolicy(np.array([[0.0, 1.0]])), version="v1")
    >>> state = ServiceState(model, DecisionLog(tempfile.mkdtemp() + "/log.sqlite"), seed=0)
    >>> state.decide([DecideRequest(state=0)])[0]["actions"]
    [1]
    >>> state.log.close()
    """

    def __init__(
        self,
        model: ServedModel | ServedContextualModel,
        log: DecisionLog,
        *,
        api_key: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.loaded_at = time.time()
        self.log = log
        self.metrics = Metrics()
        self.rng = resolve_rng(seed)
        self.api_key = api_key
        self._reload_lock = asyncio.Lock()

    # ------------------------------------------------------------------ access
    def check_key(self, given: str | None) -> None:
        """Raise unless ``given`` is the configured key (compared in constant time)."""
        if self.api_key is None:
            raise NoKeyConfiguredError(
                f"no API key is configured; set {API_KEY_ENV} or pass --api-key-file"
            )
        if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise MissingKeyError(f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    # ------------------------------------------------------------------ decisions
    def decide(self, requests: Sequence[DecideRequest], loc: Loc = _single) -> list[dict[str, Any]]:
        """Decide every request with one model, log every slot, return the response bodies in order.

        Requests are grouped by ``(k, mode)`` and each group is decided in one vectorised call;
        nothing is counted or logged unless every group could be decided. ``loc(i)`` is the
        location of request ``i`` in the body, for the error messages.
        """
        model = self.model  # read once: a reload during this call does not affect it
        contextual = isinstance(model, ServedContextualModel)
        # state ids, or the feature rows of a contextual model
        inputs = self._features(requests, model, loc) if contextual else self._states(requests, model, loc)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.k, request.mode), []).append(i)
        decided = []
        for (k, mode), members in groups.items():
            try:
                decided.append((k, mode, members, model.decide(inputs[members], k, mode, self.rng)))
            except ValueError as exc:
                raise FieldError((*loc(members[0]), "k"), str(exc)) from None
        now = time.time()
        batch_token = secrets.token_hex(8) if len(requests) > 1 else None
        responses: list[dict[str, Any]] = [{} for _ in requests]
        rows: list[tuple[Any, ...]] = []
        for k, mode, members, out in decided:
            self.metrics.observe_decisions(out.actions, mode)
            actions = out.actions.tolist()
            propensities = out.propensities.tolist()
            probabilities = out.policy_probabilities.tolist()
            items = model.item_labels(out.actions)
            for row, i in enumerate(members):
                request = requests[i]
                decision_id = f"{batch_token}-{i:x}" if batch_token else secrets.token_hex(12)
                state = None if contextual else int(inputs[i])
                seen = request.features if contextual else request.context
                context = orjson.dumps(seen).decode() if seen is not None else None
                for slot in range(k):
                    rows.append(
                        (
                            decision_id, slot, state or 0, actions[row][slot], propensities[row][slot],
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
        self.log.log_decisions(rows)
        return responses

    @staticmethod
    def _features(requests: Sequence[DecideRequest], model: ServedContextualModel, loc: Loc) -> np.ndarray:
        """The feature rows of the requests to a contextual model, checked against its columns."""
        for i, request in enumerate(requests):
            if request.features is None:
                raise FieldError((*loc(i), "features"), f"model {model.version} is contextual: send "
                                 f"'features' ({{name: number}} for {model.context_columns[:6]}...)")
        try:
            return model.features([request.features for request in requests])
        except KeyError as exc:
            row, name, what = exc.args
            message = (f"features lack {name!r}" if what == "missing" else f"{name!r} is not a feature of "
                       "the model") + f"; the model reads {model.context_columns}"
            raise FieldError((*loc(row), "features", name), message) from None
        except ValueError as exc:
            row, message = exc.args
            raise FieldError((*loc(row), "features"), message) from None

    @staticmethod
    def _states(requests: Sequence[DecideRequest], model: ServedModel, loc: Loc) -> np.ndarray:
        """The state id of every request: checked against the model, or encoded from its context."""
        states = np.empty(len(requests), dtype=np.int64)
        with_context = []
        for i, request in enumerate(requests):
            if request.features is not None:
                raise FieldError((*loc(i), "features"), f"model {model.version} is not contextual: send "
                                 "'state' or 'context'")
            if request.state is None:
                with_context.append(i)
            elif request.state >= model.n_states:
                raise FieldError(
                    (*loc(i), "state"),
                    f"state {request.state} is outside [0, {model.n_states}) for model {model.version}",
                )
            else:
                states[i] = request.state
        if with_context:
            contexts = [requests[i].context or {} for i in with_context]
            try:
                states[with_context] = model.encode_contexts(contexts)
            except KeyError as exc:
                column = str(exc.args[0])
                raise FieldError(
                    (*loc(with_context[0]), "context", column),
                    f"context lacks the field {column!r}; the model encodes {model.context_columns}",
                ) from None
            except LookupError as exc:
                raise FieldError((*loc(with_context[0]), "context"), str(exc)) from None
        return states

    # ------------------------------------------------------------------ feedback
    async def record_feedback(self, body: FeedbackRequest) -> dict[str, Any]:
        """Store one feedback; return once its row is committed (the answer then means "on disk")."""
        try:
            outcome = await self.log.feedback(body.decision_id, body.reward, body.event)
        except FeedbackConflictError:
            self.metrics.observe_feedback("conflict")
            raise
        self.metrics.observe_feedback(outcome)
        if outcome == UNKNOWN:
            raise UnknownDecisionError(f"unknown decision_id {body.decision_id!r}")
        return {"decision_id": body.decision_id, "event": body.event, "status": outcome}

    # ------------------------------------------------------------------ the model
    async def reload(self, artifact: str | None) -> dict[str, Any]:
        """Load ``artifact`` (default: the served model's file) and swap it in; keep the old on error."""
        async with self._reload_lock:
            previous = self.model
            path = artifact or previous.path
            if path is None:
                raise FieldError(("artifact",), "the model was not loaded from a file; give 'artifact'")
            if not Path(path).is_file():
                raise FieldError(("artifact",), f"no artifact file at {path!r}")
            try:
                model = await asyncio.to_thread(load_served_model, path)
            except (ArtifactError, ValueError) as exc:
                self.metrics.observe_reload("failed")
                raise FieldError(("artifact",), str(exc)) from None
            self.model = model  # the swap: one reference assignment on the event loop
            self.loaded_at = time.time()
            self.metrics.observe_reload("ok")
        return {"model_version": model.version, "previous_version": previous.version, "artifact": path}

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports."""
        return {**self.model.describe(), "loaded_at": self.loaded_at}

    # ------------------------------------------------------------------ health and metrics
    def health(self) -> tuple[int, dict[str, Any]]:
        """200 while the log writer runs, else 503; with the model version and the log's queue."""
        alive = self.log.writer_alive
        body = {
            "status": "ok" if alive else "log writer stopped",
            "model_version": self.model.version,
            "log_queue": self.log.queue_depth,
        }
        return (200 if alive else 503), body

    def metrics_text(self) -> str:
        """The Prometheus exposition: the request/decision counters plus the log and model gauges."""
        log, model = self.log, self.model
        gauges = {
            "hfrl_log_queue_depth": ("Items waiting for the decision-log writer.", log.queue_depth),
            "hfrl_log_commits_total": ("Decision-log transactions committed.", log.commits),
            "hfrl_log_failed_commits_total": ("Decision-log transactions that failed.", log.failed_commits),
            "hfrl_log_rows_committed_total": ("Rows committed to the decision log.", log.rows_committed),
            "hfrl_model_loaded_timestamp_seconds": ("When the served model was loaded.", self.loaded_at),
            "hfrl_model_states": ("States in the served model (0: a contextual model).", model.n_states or 0),
            "hfrl_model_actions": ("Actions in the served model.", model.n_actions),
        }
        return self.metrics.render(gauges)
