"""The hfrl log schema: one row per logged decision.

Required: ``state`` (integer id; or raw context columns that a ``CategoryEncoder`` maps to one),
``action`` (integer id), ``reward`` (finite number).
Optional: ``propensity`` (the logging policy's probability of the logged action, in (0, 1]),
``timestamp`` (parseable date-time), ``position`` (slot in a slate), ``session_id``,
``next_state`` (integer id, for session logs), ``done`` (bool), ``weight`` (non-negative).

Ranking logs: one row per (slate, position) with ``slate_id`` (not empty), ``position`` (0-based),
``action``, ``reward`` (at that position), ``propensity`` (the logging policy's probability of this
action at this position), ``cascade_propensity`` (its probability of the slate's items at positions
0..position) and ``slate_propensity`` (of the whole slate), both in (0, 1].
"""

from __future__ import annotations

STATE = "state"
ACTION = "action"
REWARD = "reward"
PROPENSITY = "propensity"
TIMESTAMP = "timestamp"
POSITION = "position"
SESSION_ID = "session_id"
NEXT_STATE = "next_state"
DONE = "done"
WEIGHT = "weight"
SLATE_ID = "slate_id"
CASCADE_PROPENSITY = "cascade_propensity"
SLATE_PROPENSITY = "slate_propensity"

REQUIRED_COLUMNS: tuple[str, ...] = (STATE, ACTION, REWARD)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    PROPENSITY,
    TIMESTAMP,
    POSITION,
    SESSION_ID,
    NEXT_STATE,
    DONE,
    WEIGHT,
    SLATE_ID,
    CASCADE_PROPENSITY,
    SLATE_PROPENSITY,
)
RANKING_COLUMNS: tuple[str, ...] = (SLATE_ID, POSITION, ACTION, REWARD)
INTEGER_COLUMNS: tuple[str, ...] = (STATE, ACTION, POSITION, NEXT_STATE)
