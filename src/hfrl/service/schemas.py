"""The service's request and response bodies (pydantic models; they define the OpenAPI schema).

Request fields are strict: ids, counts and rewards must be JSON numbers of the right kind (``true``,
``"1"`` or ``"3.5"`` are refused with a 422 naming the field instead of being coerced), and unknown
fields are refused too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from hfrl.service.log import DEFAULT_EVENT

__all__ = [
    "MAX_BATCH",
    "CandidateRequest",
    "CandidateResponse",
    "CandidatesResponse",
    "ConcludeRequest",
    "DecideBatchRequest",
    "DecideBatchResponse",
    "DecideRequest",
    "DecideResponse",
    "ErrorResponse",
    "ExperimentResponse",
    "FeedbackRequest",
    "FeedbackResponse",
    "HealthResponse",
    "ModelResponse",
    "RefreshResponse",
    "ReloadRequest",
    "ReloadResponse",
    "json_response",
]

MAX_BATCH = 10_000

ContextValue = str | int | float | bool | None
Feature = Annotated[float, Strict(), Field(allow_inf_nan=False)]


# ---------------------------------------------------------------------- requests
class DecideRequest(BaseModel):
    """One decision: give ``state`` (an integer id) or ``context`` (raw values the artifact encodes),
    or, for a contextual artifact, ``features`` (numbers by name, or a list in the model's order)."""

    model_config = ConfigDict(extra="forbid")

    state: Annotated[
        int | None, Strict(), Field(ge=0, description="Integer state id in [0, n_states).")
    ] = None
    context: Annotated[
        dict[str, ContextValue] | None,
        Field(description="Raw context values keyed by the artifact's state_encoder columns."),
    ] = None
    features: Annotated[
        dict[str, Feature] | list[Feature] | None,
        Field(description="A contextual model's features: {name: number} for every one of its "
                          "context_columns, or a list of numbers in that order."),
    ] = None
    k: Annotated[
        int, Strict(), Field(ge=1, le=10_000, description="How many distinct actions to return.")
    ] = 1
    mode: Annotated[
        Literal["explore", "exploit"],
        Field(description="explore: sample from the policy; exploit: the top k (propensity 1.0)."),
    ] = "explore"
    request_id: Annotated[str | None, Field(max_length=200, description="Caller's id, logged as is.")] = None
    user_id: Annotated[
        str | None,
        Field(max_length=200, description="Makes the experiment's arm sticky per user (not logged)."),
    ] = None

    @model_validator(mode="after")
    def _state_or_context(self) -> DecideRequest:
        if sum(x is not None for x in (self.state, self.context, self.features)) != 1:
            raise ValueError("give exactly one of 'state' (an integer id), 'context' (an object) or "
                             "'features' (a contextual model's numbers)")
        return self


class DecideBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: Annotated[list[DecideRequest], Field(min_length=1, max_length=MAX_BATCH)]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: Annotated[str, Field(min_length=1, max_length=200)]
    reward: Annotated[
        float, Strict(), Field(allow_inf_nan=False, description="The observed outcome (a finite number).")
    ]
    event: Annotated[
        str,
        Field(
            min_length=1, max_length=100,
            description="Outcome kind; (decision_id, event) holds one reward: an identical repeat is a "
            "duplicate, a different reward a 409.",
        ),
    ] = DEFAULT_EVENT
    position: Annotated[
        int | None,
        Field(
            ge=0, le=10_000,
            description="The slot of a list (k > 1) this reward is for (0-based): stored per slot, for "
            "ranking evaluation (export-log --all-positions); omitted: the decision's reward.",
        ),
    ] = None


class ConcludeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["promote", "rollback"] = Field(
        description="promote: serve the challenger to everyone; rollback: the champion."
    )


class CandidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: Annotated[str, Field(min_length=1, max_length=4096, description="Artifact path on the server.")]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: Annotated[
        str | None,
        Field(max_length=4096, description="Artifact path on the server; default: reload the same."),
    ] = None


# ---------------------------------------------------------------------- responses
class DecideResponse(BaseModel):
    decision_id: str
    actions: list[int] = Field(description="Chosen action ids, slot 0 first.")
    propensities: list[float] = Field(
        description="Logged propensity per slot: explore, the probability of the action at its slot given "
        "the earlier picks (slot 0: pi(a|s)); exploit, 1.0 (deterministic top-k)."
    )
    slate_propensity: float = Field(
        description="The probability of the whole ordered list, the product of the slot propensities: "
        "explore, its Plackett-Luce probability under pi(.|s); exploit, 1.0."
    )
    model_version: str
    state: int | None = Field(
        description="The state id decided for (the encoded context, if one was sent); null for features."
    )
    items: list[str] | None = Field(None, description="Raw item ids when the artifact has an action_encoder.")
    policy: Literal["champion", "challenger"] | None = Field(
        None, description="While an experiment runs: the arm that decided (propensities are the mixture's)."
    )


class DecideBatchResponse(BaseModel):
    decisions: list[DecideResponse]


class FeedbackResponse(BaseModel):
    decision_id: str
    event: str
    status: Literal["accepted", "duplicate"] = Field(
        description="duplicate: this (decision_id, event) was stored before with the same reward."
    )
    position: int | None = Field(default=None, description="The slot, for a slot's feedback.")


class ModelResponse(BaseModel):
    name: str
    model_version: str
    n_states: int | None = Field(description="null for a contextual model (it reads features).")
    n_actions: int
    context_columns: list[str] | None
    unknown_state: int | None
    has_item_ids: bool
    artifact: str | None
    loaded_at: float


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str
    artifact: str | None


class ExperimentResponse(BaseModel):
    state: Literal["running", "promote", "rollback"] = Field(
        description="promote: the confidence sequence's lower bound is above 0; rollback: its upper bound "
        "is below 0 or the guardrail was crossed (a state, once reached, stays)."
    )
    reason: str | None
    difference: float | None = Field(description="Challenger minus champion, running estimate.")
    ci_low: float
    ci_high: float
    level: float
    rows: int = Field(description="Decisions with feedback in the sequence.")
    ignored_rows: int
    experiment: str
    traffic: float
    challenger_version: str
    challenger_artifact: str | None
    champion_version: str
    decisions: dict[str, int] = Field(description="Decisions per arm (champion, challenger).")
    feedbacks: dict[str, int] = Field(description="Feedbacks in the sequence per arm.")
    challenger_value: dict[str, float | None]
    guardrail_floor: float | None
    reward_range: list[float]
    event: str
    auto: bool
    concluded: dict[str, Any] | None


class CandidateResponse(BaseModel):
    state: Literal["running", "promote", "rollback"]
    reason: str | None
    difference: float | None = Field(description="Candidate minus champion, estimated off-policy.")
    ci_low: float
    ci_high: float
    level: float
    rows: int
    ignored_rows: int
    candidate_artifact: str | None
    candidate_version: str
    champion_version: str
    max_weight: float
    since: float


class CandidatesResponse(BaseModel):
    champion_version: str
    candidates: list[CandidateResponse]


class RefreshResponse(BaseModel):
    model_version: str
    previous_version: str
    artifact: str
    alpha: float
    rows: int
    seconds: float


class HealthResponse(BaseModel):
    status: str
    model_version: str
    log_queue: int


class ErrorResponse(BaseModel):
    detail: Any


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response rendered by orjson (numpy scalars and arrays included)."""
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code, media_type="application/json")
