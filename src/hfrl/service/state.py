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
* a reload swaps one reference, so a request that read the old model finishes on it;
* with an experiment, a share of the decisions goes to the challenger and the log records the
  mixture's propensities (``hfrl.service.experiment``); the monitors (``hfrl.service.monitor``)
  judge it as feedback arrives, and with ``auto`` a conclusion swaps the model by itself.

The routes (``hfrl.service.routes``) parse the bodies and call these methods; errors become HTTP
codes in ``hfrl.service.errors``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from hfrl.errors import ArtifactError
from hfrl.policies import resolve_rng
from hfrl.service.errors import (
    FieldError,
    MissingKeyError,
    NoExperimentError,
    NoKeyConfiguredError,
    UnknownDecisionError,
)
from hfrl.service.experiment import CHALLENGER, CHAMPION, Experiment, mixture
from hfrl.service.log import UNKNOWN, FeedbackConflictError, QueuedLog
from hfrl.service.metrics import Metrics
from hfrl.service.model import ServedContextualModel, ServedModel, load_served_model
from hfrl.service.monitor import PROMOTE, ROLLBACK, CandidateMonitor, ExperimentMonitor, MonitorSettings
from hfrl.service.refresh import RefreshSettings, refresh_artifact
from hfrl.service.schemas import DecideRequest, FeedbackRequest

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "ServiceState"]

API_KEY_ENV = "HFRL_API_KEY"
API_KEY_HEADER = "X-API-Key"

Loc = Callable[[int], tuple[str | int, ...]]
logger = logging.getLogger("hfrl.service")


def _single(_: int) -> tuple[str | int, ...]:
    return ()


class ServiceState:
    """The served model (swapped by reload), the decision log, metrics, the sampling generator, the key,
    and the experiment and candidate monitors when there are any.

    Parameters
    ----------
    model : ServedModel or ServedContextualModel
        The champion.
    log : QueuedLog
        The decision log (``DecisionLog`` on SQLite, ``PostgresDecisionLog``).
    api_key : str, optional
        The key ``check_key`` compares with; None means keyed endpoints answer 403.
    seed : int, optional
        Seeds the sampling generator.
    challenger : ServedModel, optional
        Served to a share ``traffic`` of the decisions (an ``Experiment``).
    traffic : float
    auto : bool
        Promote or roll back by itself when the experiment's monitor concludes.
    monitor : MonitorSettings, optional
        How the experiment and the candidates are judged (default ``MonitorSettings()``).
    refresh : RefreshSettings, optional
        How ``refresh`` rebuilds the champion from the logs (default ``RefreshSettings()``).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> from hfrl.service.log import DecisionLog
    >>> model = ServedModel(TabularPolicy(np.array([[0.0, 1.0]])), version="v1")
    >>> state = ServiceState(model, DecisionLog(tempfile.mkdtemp() + "/log.sqlite"), seed=0)
    >>> asyncio.run(state.decide([DecideRequest(state=0)]))[0]["actions"]
    [1]
    >>> state.log.close()
    """

    def __init__(
        self,
        model: ServedModel | ServedContextualModel,
        log: QueuedLog,
        *,
        api_key: str | None = None,
        seed: int | None = None,
        challenger: ServedModel | None = None,
        traffic: float = 0.1,
        auto: bool = False,
        monitor: MonitorSettings | None = None,
        refresh: RefreshSettings | None = None,
    ) -> None:
        self.model = model
        self.loaded_at = time.time()
        self.log = log
        self.metrics = Metrics()
        self.rng = resolve_rng(seed)
        self.api_key = api_key
        self._reload_lock = asyncio.Lock()
        self.settings = monitor or MonitorSettings()
        self.auto = auto
        self.experiment: Experiment | None = None  # set while decisions are split
        self.experiment_monitor: ExperimentMonitor | None = None
        if challenger is not None:
            self.experiment = Experiment(model, challenger, traffic)
            self.experiment_monitor = ExperimentMonitor(self.experiment, self.settings)
        self.candidates: list[CandidateMonitor] = []
        self.refresh_settings = refresh or RefreshSettings()
        self._poll_lock = threading.Lock()

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
    async def decide(self, requests: Sequence[DecideRequest], loc: Loc = _single) -> list[dict[str, Any]]:
        """Decide every request, log every slot, return the response bodies in order.

        Requests are grouped by arm, ``k`` and ``mode``, and each group is decided in one vectorised
        call; nothing is counted or logged unless every group could be decided. ``loc(i)`` is the
        location of request ``i`` in the body, for the error messages. Returns once the rows are
        queued, or committed when the log says so (``commit_decisions``, PostgreSQL).
        """
        responses, rows = self._decide(requests, loc)
        pending = self.log.log_decisions(rows)
        if pending is not None:
            await asyncio.wrap_future(pending)
        return responses

    def _decide(self, requests: Sequence[DecideRequest], loc: Loc
                ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        model, experiment = self.model, self.experiment  # read once: a swap does not affect this call
        contextual = isinstance(model, ServedContextualModel)
        # state ids, or the feature rows of a contextual model (never in an experiment)
        states = self._features(requests, model, loc) if contextual else self._states(requests, model, loc)
        arms = (experiment.assign([r.user_id for r in requests], self.rng) if experiment is not None
                else np.zeros(len(requests), dtype=bool))
        groups: dict[tuple[bool, int, str], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((bool(arms[i]), request.k, request.mode), []).append(i)
        decided = []
        for (arm, k, mode), members in groups.items():
            deciding = experiment.challenger if arm and experiment is not None else model
            try:
                out = deciding.decide(states[members], k, mode, self.rng)
            except ValueError as exc:
                raise FieldError((*loc(members[0]), "k"), str(exc)) from None
            decided.append((arm, k, mode, members, deciding, out))
        now = time.time()
        batch_token = secrets.token_hex(8) if len(requests) > 1 else None
        responses: list[dict[str, Any]] = [{} for _ in requests]
        rows: list[tuple[Any, ...]] = []
        for arm, k, mode, members, deciding, out in decided:
            self.metrics.observe_decisions(out.actions, mode)
            arm_columns: tuple[Any, ...] = ()
            if experiment is not None:
                policy = CHALLENGER if arm else CHAMPION
                self.metrics.observe_arm(policy, len(members))
                other = model if arm else experiment.challenger
                mine, theirs = out.propensities, other.rule_probabilities(out.states, out.actions, mode)
                champion, challenger = (theirs, mine) if arm else (mine, theirs)
                logged = mixture(champion, challenger, experiment.traffic)
                champion_list, challenger_list = champion.tolist(), challenger.tolist()
            else:
                logged = out.propensities
            propensities = logged.tolist()
            slate_propensities = logged.prod(axis=1).tolist()  # the list's probability as served
            actions = out.actions.tolist()
            probabilities = out.policy_probabilities.tolist()
            items = deciding.item_labels(out.actions)
            for row, i in enumerate(members):
                request = requests[i]
                decision_id = f"{batch_token}-{i:x}" if batch_token else secrets.token_hex(12)
                state = None if contextual else int(states[i])
                seen = request.features if contextual else request.context
                context = orjson.dumps(seen).decode() if seen is not None else None
                for slot in range(k):
                    if experiment is not None:
                        arm_columns = (experiment.id, policy, champion_list[row][slot],
                                       challenger_list[row][slot])
                    rows.append(
                        (
                            decision_id, slot, state or 0, actions[row][slot], propensities[row][slot],
                            probabilities[row][slot], now, deciding.version, mode, k, request.request_id,
                            context, *arm_columns,
                        )
                    )
                responses[i] = {
                    "decision_id": decision_id,
                    "actions": actions[row],
                    "propensities": propensities[row],
                    "slate_propensity": slate_propensities[row],
                    "model_version": deciding.version,
                    "state": state,
                    "items": items[row] if items is not None else None,
                }
                if experiment is not None:
                    responses[i]["policy"] = policy
        return responses, rows

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
        # the monitors read decisions' feedback, not a slot's
        monitored = body.position is None and body.event == self.settings.event
        if monitored and (self.experiment_monitor is not None or self.candidates):
            problem = self.settings.check_reward(body.reward)
            if problem is not None:
                raise FieldError(("reward",), problem)
        try:
            outcome = await self.log.feedback(body.decision_id, body.reward, body.event, body.position)
        except FeedbackConflictError:
            self.metrics.observe_feedback("conflict")
            raise
        self.metrics.observe_feedback(outcome)
        if outcome == UNKNOWN:
            if body.position is not None:
                raise UnknownDecisionError(f"unknown decision_id {body.decision_id!r}, or it has no slot at "
                                           f"position {body.position}")
            raise UnknownDecisionError(f"unknown decision_id {body.decision_id!r}")
        answer = {"decision_id": body.decision_id, "event": body.event, "status": outcome}
        if body.position is not None:
            answer["position"] = body.position
        return answer

    # ------------------------------------------------------------------ experiment and candidates
    def experiment_report(self) -> dict[str, Any]:
        """What ``GET /v1/experiment`` answers; ``NoExperimentError`` without a challenger."""
        if self.experiment_monitor is None:
            raise NoExperimentError("no experiment: start the service with --challenger PATH --traffic SHARE")
        return {**self.experiment_monitor.report(), "auto": self.auto, "champion_version": self.model.version}

    def candidates_report(self) -> dict[str, Any]:
        """What ``GET /v1/candidates`` answers."""
        return {"champion_version": self.model.version, "candidates": [c.report() for c in self.candidates]}

    async def add_candidate(self, artifact: str) -> dict[str, Any]:
        """Watch the candidate at ``artifact`` off-policy from now on."""
        if not Path(artifact).is_file():
            raise FieldError(("artifact",), f"no artifact file at {artifact!r}")
        try:
            candidate = await asyncio.to_thread(ServedModel.load, artifact)
            monitor = CandidateMonitor(candidate, self.model, self.settings, self.experiment)
        except (ArtifactError, ValueError) as exc:
            raise FieldError(("artifact",), str(exc)) from None
        self.candidates.append(monitor)
        return monitor.report()

    def _restart_candidates(self) -> None:
        """The logging policy changed: the candidates' weight bounds must be derived again."""
        self.candidates = [
            CandidateMonitor(c.candidate, self.model, self.settings, self.experiment) for c in self.candidates
        ]

    def poll_monitors(self) -> None:
        """Read the feedback that arrived and update every monitor (blocking: run it in a thread)."""
        with self._poll_lock:  # one reader at a time moves the monitors' cursors
            if self.experiment_monitor is not None:
                self.experiment_monitor.poll(self.log)
            for candidate in list(self.candidates):
                candidate.poll(self.log)

    def conclude(self, decision: str, how: str) -> dict[str, Any]:
        """End the experiment: ``promote`` serves the challenger to everyone, ``rollback`` the champion.

        ``how`` (``auto`` or ``admin``) is logged with it and counted in the metrics.
        """
        monitor, experiment = self.experiment_monitor, self.experiment
        if monitor is None or experiment is None:
            if monitor is not None and monitor.concluded is not None:
                return self.experiment_report()
            raise NoExperimentError("no experiment is running")
        previous = self.model
        if decision == PROMOTE:
            self.model = experiment.challenger  # the swap: one reference assignment on the event loop
            self.loaded_at = time.time()
        self.experiment = None
        if monitor.difference.state != decision:
            monitor.difference.state, monitor.difference.reason = decision, f"concluded by the {how}"
        monitor.concluded = {"decision": decision, "how": how, "at": time.time(),
                             "previous_version": previous.version, "model_version": self.model.version}
        self.metrics.observe_conclusion(decision, how)
        logger.warning("experiment %s concluded (%s, %s): %s; serving %s", experiment.id, decision, how,
                       monitor.difference.reason or "by the admin", self.model.version)
        self._restart_candidates()
        return self.experiment_report()

    async def watch(self, interval: float) -> None:
        """Poll the monitors every ``interval`` seconds; with ``auto``, act on a conclusion."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.poll_monitors)
            except Exception as exc:  # a failing read must not stop the watch; it is retried next time
                logger.warning("monitor poll failed: %s: %s", type(exc).__name__, exc)
                continue
            monitor = self.experiment_monitor
            if (self.auto and monitor is not None and monitor.concluded is None
                    and monitor.state in (PROMOTE, ROLLBACK)):
                self.conclude(monitor.state, "auto")

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
                self.swap(model)
            except (ArtifactError, ValueError) as exc:
                self.metrics.observe_reload("failed")
                raise FieldError(("artifact",), str(exc)) from None
            self.metrics.observe_reload("ok")
        return {"model_version": model.version, "previous_version": previous.version, "artifact": path}

    async def refresh(self) -> dict[str, Any]:
        """Rebuild the champion from the decision log and the other logs (``hfrl.service.refresh``) and
        swap it in like a reload; requests keep being served by the old model meanwhile."""
        settings = self.refresh_settings
        async with self._reload_lock:
            previous = self.model
            if previous.path is None:
                raise FieldError(("artifact",), "the model was not loaded from a file; nothing to refresh")
            out = settings.out_for(previous.path)
            sources = [self.log.source, *settings.logs]
            try:
                result = await asyncio.to_thread(
                    refresh_artifact, previous.path, sources, out, pi=settings.pi, hf=settings.hf,
                    half_life=settings.half_life, retune=settings.retune,
                )
                model = await asyncio.to_thread(ServedModel.load, result.path)
                self.swap(model)
            except (ArtifactError, ValueError) as exc:  # LogValidationError is a ValueError
                self.metrics.observe_reload("refresh_failed")
                raise FieldError(("artifact",), str(exc)) from None
            self.metrics.observe_reload("refreshed")
        logger.warning("refreshed %s -> %s (alpha %.4g, %s rows, %.2f s): %s", previous.version,
                       model.version, result.alpha, result.rows, result.seconds, result.note)
        return {"model_version": model.version, "previous_version": previous.version,
                "artifact": str(result.path), "alpha": result.alpha, "rows": result.rows,
                "seconds": round(result.seconds, 3)}

    async def refresh_periodically(self, every: float) -> None:
        """``refresh`` every ``every`` seconds; a failure is logged and the served model kept."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except FieldError as exc:
                logger.warning("periodic refresh failed, model kept: %s", exc)

    def swap(self, model: ServedModel | ServedContextualModel) -> None:
        """Serve ``model`` as the champion from the next request on (requests in flight finish on the
        old one); candidate monitors start again against it."""
        if isinstance(model, ServedContextualModel) and (self.experiment is not None or self.candidates):
            raise ValueError("a contextual policy cannot be the champion of an experiment or of watched "
                             "candidates (they compare tables)")
        if self.experiment is not None:
            from hfrl.service.experiment import check_compatible

            check_compatible(model, self.experiment.challenger)
        self.model = model  # the swap: one reference assignment on the event loop
        self.loaded_at = time.time()
        self._restart_candidates()

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
        monitor = self.experiment_monitor
        if monitor is not None:
            sequence = monitor.difference.sequence
            code = {"running": 0, PROMOTE: 1, ROLLBACK: -1}[monitor.state]
            gauges.update({
                "hfrl_experiment_state": ("Experiment state: 0 running, 1 promote, -1 rollback.", code),
                "hfrl_experiment_concluded": ("1 once the experiment was concluded.",
                                              int(monitor.concluded is not None)),
                "hfrl_experiment_difference": ("Challenger minus champion, running estimate.",
                                               sequence.estimate if sequence.n else "NaN"),
                "hfrl_experiment_ci_low": ("Lower bound of the confidence sequence.", sequence.ci_low),
                "hfrl_experiment_ci_high": ("Upper bound of the confidence sequence.", sequence.ci_high),
                "hfrl_experiment_feedback_rows": ("Feedback rows in the sequence.", sequence.n),
            })
        return self.metrics.render(gauges)
