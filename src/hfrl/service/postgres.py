"""The decision log on PostgreSQL (psycopg 3 with a connection pool), shared by several replicas.

``hfrl serve ... --db postgresql://user@host/db`` keeps decisions and feedback here instead of the
embedded SQLite file, so that replicas behind a load balancer share one log: a feedback reaching
any replica finds its decision, whichever replica made it. The contract is ``hfrl.service.log``'s,
with one difference that sharing requires: a decision is answered only after its rows commit (a
client may send its feedback to another replica right away).

Writes: ``writers`` threads (2 by default) take groups from the queue and commit each group in one
transaction on a pooled connection: decisions with one multi-row ``INSERT``, feedback with one
``INSERT ... SELECT ... WHERE EXISTS (the decision) ON CONFLICT DO NOTHING RETURNING`` in key order
(so two replicas inserting the same keys wait on each other instead of deadlocking), then one read
of the stored rewards of the repeats. A feedback racing the same ``(decision_id, event)`` on another
replica waits for that transaction and then reads its committed reward: one of two contradicting
feedbacks gets 202, the other 409, as with SQLite.

Needs the ``postgres`` extra: ``pip install "hfrl[postgres]"`` (``psycopg[binary,pool]``).
"""

from __future__ import annotations

from typing import Any

from hfrl.service.log import (
    ACCEPTED,
    DECISION_COLUMNS,
    DUPLICATE,
    UNKNOWN,
    FeedbackConflictError,
    LogWriterError,
    Outcome,
    QueuedFeedback,
    QueuedLog,
)

__all__ = ["PostgresDecisionLog", "read_rows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    state BIGINT NOT NULL,
    action BIGINT NOT NULL,
    propensity DOUBLE PRECISION NOT NULL,
    policy_probability DOUBLE PRECISION NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    model_version TEXT NOT NULL,
    mode TEXT NOT NULL,
    k INTEGER NOT NULL,
    request_id TEXT,
    context TEXT,
    experiment TEXT,
    policy TEXT,
    champion_probability DOUBLE PRECISION,
    challenger_probability DOUBLE PRECISION,
    PRIMARY KEY (decision_id, position)
);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL,
    event TEXT NOT NULL,
    reward DOUBLE PRECISION NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (decision_id, event)
);
CREATE TABLE IF NOT EXISTS slot_feedback (
    decision_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    event TEXT NOT NULL,
    reward DOUBLE PRECISION NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (decision_id, position, event)
);
CREATE INDEX IF NOT EXISTS feedback_by_time ON feedback (timestamp);
CREATE INDEX IF NOT EXISTS decisions_by_experiment ON decisions (experiment, timestamp)
    WHERE experiment IS NOT NULL;
"""
_SCHEMA_LOCK = 0x6866726C  # "hfrl": replicas starting together create the tables once
_ARRAY_TYPES = ("text[]", "int[]", "int8[]", "int8[]", "float8[]", "float8[]", "float8[]", "text[]",
                "text[]", "int[]", "text[]", "text[]", "text[]", "text[]", "float8[]", "float8[]")
_INSERT_DECISIONS = (
    f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{kind}' for kind in _ARRAY_TYPES)}) "
    "ON CONFLICT DO NOTHING"
)
_INSERT_FEEDBACK = """
    INSERT INTO feedback (decision_id, event, reward, timestamp)
    SELECT t.decision_id, t.event, t.reward, t.ts
    FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[]) AS t(decision_id, event, reward, ts)
    WHERE EXISTS (SELECT 1 FROM decisions AS d WHERE d.decision_id = t.decision_id AND d.position = 0)
    ORDER BY t.decision_id, t.event
    ON CONFLICT DO NOTHING
    RETURNING decision_id, event
"""
_INSERT_SLOT_FEEDBACK = """
    INSERT INTO slot_feedback (decision_id, position, event, reward, timestamp)
    SELECT %(decision_id)s, %(position)s, %(event)s, %(reward)s, %(ts)s
    WHERE EXISTS (SELECT 1 FROM decisions WHERE decision_id = %(decision_id)s AND position = %(position)s)
    ON CONFLICT DO NOTHING
    RETURNING 1
"""
_STORED_SLOT_REWARD = """
    SELECT reward FROM slot_feedback WHERE decision_id = %(decision_id)s AND position = %(position)s
      AND event = %(event)s
"""
_STORED_REWARDS = """
    SELECT f.decision_id, f.event, f.reward FROM feedback AS f
    JOIN unnest(%s::text[], %s::text[]) AS t(decision_id, event)
      ON f.decision_id = t.decision_id AND f.event = t.event
"""


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            'a postgresql:// decision log needs psycopg 3 and its pool: pip install "hfrl[postgres]"'
        ) from exc
    return psycopg, psycopg_pool


def read_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one read (``?`` placeholders) on the database at ``url`` and return its rows."""
    psycopg, _ = _psycopg()
    try:
        with psycopg.connect(url) as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()
    except psycopg.Error as exc:
        from hfrl.errors import LogValidationError

        raise LogValidationError(f"cannot read the decision log at {_redacted(url)}: {exc}",
                                 source=_redacted(url)) from exc


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class PostgresDecisionLog(QueuedLog):
    """The decision log in a PostgreSQL database, through a psycopg connection pool.

    Parameters
    ----------
    url : str
        A libpq connection URL, ``postgresql://user:password@host:port/dbname``. The tables (same
        columns as SQLite's) are created when absent.
    max_batch, max_queue : int
        See ``hfrl.service.log.QueuedLog``.
    writers : int
        Writer threads, each committing its own groups on its own pooled connection.
    pool_size : int
        Connections in the pool beyond the writers' (for the monitors' and ``counts``' reads).

    Raises
    ------
    LogWriterError
        The database cannot be reached within ``connect_timeout`` seconds (the message names it).
    """

    description = "PostgreSQL decision log"

    def __init__(self, url: str, max_batch: int = 4096, max_queue: int = 200_000, writers: int = 2,
                 pool_size: int = 2, connect_timeout: float = 10.0) -> None:
        psycopg, psycopg_pool = _psycopg()
        self.url = url
        self.source = url
        self.path = _redacted(url)
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=writers + 1, max_size=writers + pool_size, open=False,
            name="hfrl-decision-log", timeout=connect_timeout,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            with self._pool.connection() as connection, connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                connection.execute(_SCHEMA)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self._pool.close()
            raise LogWriterError(f"cannot open the decision log at {self.path}: {exc}") from exc
        super().__init__(max_batch, max_queue, writers=writers, commit_decisions=True)

    def _transaction(self, rows: list[tuple[Any, ...]], feedback: list[QueuedFeedback]) -> list[Outcome]:
        with self._pool.connection() as connection, connection.transaction():
            if rows:
                connection.execute(_INSERT_DECISIONS, [list(column) for column in zip(*rows, strict=True)])
            if not feedback:
                return []
            slots = [item for item in feedback if item.position is not None]
            if not slots:
                return self._store_feedback(connection, feedback)
            outcomes = {id(item): self._store_slot_feedback(connection, item) for item in slots}
            decisions = [item for item in feedback if item.position is None]
            if decisions:
                stored = self._store_feedback(connection, decisions)
                outcomes.update(zip(map(id, decisions), stored, strict=True))
            return [outcomes[id(item)] for item in feedback]

    @staticmethod
    def _store_slot_feedback(connection: Any, item: QueuedFeedback) -> Outcome:
        """One slot's feedback (rare next to decision feedback: one statement each)."""
        values = {"decision_id": item.decision_id, "position": item.position, "event": item.event,
                  "reward": item.reward, "ts": item.timestamp}
        if connection.execute(_INSERT_SLOT_FEEDBACK, values).fetchone() is not None:
            return ACCEPTED
        stored = connection.execute(_STORED_SLOT_REWARD, values).fetchone()
        if stored is None:
            return UNKNOWN
        if stored[0] == item.reward:
            return DUPLICATE
        return FeedbackConflictError(item.decision_id, item.event, stored[0], item.reward, item.position)

    @staticmethod
    def _store_feedback(connection: Any, feedback: list[QueuedFeedback]) -> list[Outcome]:
        """Insert the first of each ``(decision_id, event)`` of the group, then settle the rest."""
        first: dict[tuple[str, str], QueuedFeedback] = {}
        for item in feedback:
            first.setdefault((item.decision_id, item.event), item)
        items = list(first.values())
        inserted = {
            (decision_id, event) for decision_id, event in connection.execute(
                _INSERT_FEEDBACK,
                ([i.decision_id for i in items], [i.event for i in items], [i.reward for i in items],
                 [i.timestamp for i in items]),
            ).fetchall()
        }
        settled = [key for key in first if key not in inserted] + [
            (i.decision_id, i.event) for i in feedback if first[(i.decision_id, i.event)] is not i
        ]
        stored: dict[tuple[str, str], float] = {}
        if settled:
            for decision_id, event, reward in connection.execute(
                _STORED_REWARDS, ([key[0] for key in settled], [key[1] for key in settled])
            ).fetchall():
                stored[(decision_id, event)] = reward
        outcomes: list[Outcome] = []
        for item in feedback:
            key = (item.decision_id, item.event)
            if first[key] is item and key in inserted:
                outcomes.append(ACCEPTED)
            elif key not in stored:
                outcomes.append(UNKNOWN)
            elif stored[key] == item.reward:
                outcomes.append(DUPLICATE)
            else:
                outcomes.append(FeedbackConflictError(item.decision_id, item.event, stored[key], item.reward))
        return outcomes

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()

    def _close_store(self) -> None:
        self._pool.close()
