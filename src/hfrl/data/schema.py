"""The hfrl log schema: one row per logged decision.

Required: ``state`` (integer id; or raw context columns that a ``CategoryEncoder`` maps to one),
``action`` (integer id), ``reward`` (finite number).
Optional: ``propensity`` (the logging policy's probability of the logged action, in (0, 1]),
``timestamp`` (parseable date-time), ``position`` (slot in a slate), ``session_id``,
``next_state`` (integer id, for session logs), ``done`` (bool), ``weight`` (non-negative).
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

REQUIRED_COLUMNS: tuple[str, ...] = (STATE, ACTION, REWARD)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    PROPENSITY,
    TIMESTAMP,
    POSITION,
    SESSION_ID,
    NEXT_STATE,
    DONE,
    WEIGHT,
)
INTEGER_COLUMNS: tuple[str, ...] = (STATE, ACTION, POSITION, NEXT_STATE)
