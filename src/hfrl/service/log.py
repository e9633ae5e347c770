"""The decision log: decisions and feedback written by background threads with group commit.

Two stores share this module's contract (``open_decision_log`` picks one from ``--db``):

* ``DecisionLog``: an embedded SQLite database (WAL), one writer thread; the default;
* ``hfrl.service.postgres.PostgresDecisionLog``: PostgreSQL through a psycopg connection pool, so
  that several replicas behind a load balancer share one log and any replica accepts feedback for
  any decision.

Durability contract
-------------------
* SQLite runs in WAL mode with ``synchronous=FULL``: a transaction is on disk (the WAL is fsynced)
  when ``COMMIT`` returns, so it survives a process crash and a power loss. PostgreSQL commits with
  its own (default) ``synchronous_commit=on``.
* Feedback: the HTTP 2xx is sent only after the transaction holding the feedback row has committed
  (the request awaits a future the writer resolves after ``COMMIT``). A 2xx on feedback means the
  row is on disk.
* Decisions: with SQLite the response is sent as soon as the rows are queued; a crash (``kill -9``,
  power loss) can lose at most the decisions of the last group window. With PostgreSQL the
  response waits for the commit (``commit_decisions``), because another replica may receive the
  feedback: every answered decision has its row. Nothing is lost on a clean shutdown (the writers
  drain the queue before closing).
* Group commit: a writer takes everything queued (up to ``max_batch`` items) into one transaction,
  so the fsync cost is shared by every request that arrived while the previous commit ran.
* Ordering: a transaction writes its decisions before its feedback, and a writer takes items in
  arrival order, so feedback for a decision still in the queue (SQLite) succeeds instead of 404.
* One reward per ``(decision_id, event)``: a repeat with the same reward is a ``"duplicate"``
  (nothing changes); a repeat with a different reward fails with ``FeedbackConflictError`` naming
  both rewards, and the stored one is kept.

Tables
------
``decisions``: one row per decided slot: ``decision_id``, ``position`` (slot, 0-based), ``state``,
``action``, ``propensity`` (of the slot under the rule actually served: see ``hfrl.service.model``,
and ``hfrl.service.experiment`` for the champion/challenger mixture), ``policy_probability``
(pi(a|s) of the policy that decided), ``timestamp`` (unix seconds, UTC), ``model_version``,
``mode``, ``k``, ``request_id``, ``context`` (JSON text or NULL), then, for decisions made while an
experiment runs (NULL otherwise): ``experiment`` (its id), ``policy`` (``champion`` or
``challenger``), ``champion_probability`` and ``challenger_probability`` (each arm's probability
of the slot given the earlier ones).
``feedback``: ``decision_id``, ``event``, ``reward``, ``timestamp``; primary key
``(decision_id, event)`` so a repeated feedback stores one row.
``slot_feedback``: the same for one slot of a list (feedback sent with a ``position``), primary key
``(decision_id, position, event)``; what ``read_decision_log(all_positions=True)`` puts on each slot.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import schema

__all__ = [
    "DecisionLog",
    "FeedbackConflictError",
    "LogWriterError",
    "QueuedLog",
    "is_database_url",
    "open_decision_log",
    "read_decision_log",
    "write_parquet",
]

DEFAULT_EVENT = "reward"

BASE_COLUMNS = (
    "decision_id", "position", "state", "action", "propensity", "policy_probability", "timestamp",
    "model_version", "mode", "k", "request_id", "context",
)
EXPERIMENT_COLUMNS = ("experiment", "policy", "champion_probability", "challenger_probability")
DECISION_COLUMNS = BASE_COLUMNS + EXPERIMENT_COLUMNS
_TIMESTAMP = BASE_COLUMNS.index("timestamp")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    state INTEGER NOT NULL,
    action INTEGER NOT NULL,
    propensity REAL NOT NULL,
    policy_probability REAL NOT NULL,
    timestamp REAL NOT NULL,
    model_version TEXT NOT NULL,
    mode TEXT NOT NULL,
    k INTEGER NOT NULL,
    request_id TEXT,
    context TEXT,
    experiment TEXT,
    policy TEXT,
    champion_probability REAL,
    challenger_probability REAL,
    PRIMARY KEY (decision_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL,
    event TEXT NOT NULL,
    reward REAL NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (decision_id, event)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slot_feedback (
    decision_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    event TEXT NOT NULL,
    reward REAL NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (decision_id, position, event)
) WITHOUT ROWID;
"""
# created after the columns exist (a log written before experiments gets them by ALTER TABLE)
INDEXES = """
CREATE INDEX IF NOT EXISTS feedback_by_time ON feedback (timestamp);
CREATE INDEX IF NOT EXISTS decisions_by_experiment ON decisions (experiment, timestamp)
    WHERE experiment IS NOT NULL;
"""
_KNOWN_DECISION = "SELECT 1 FROM decisions WHERE decision_id = ? AND position = 0"
_STORED_REWARD = "SELECT reward FROM feedback WHERE decision_id = ? AND event = ?"
_INSERT_FEEDBACK = "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)"
_KNOWN_SLOT = "SELECT 1 FROM decisions WHERE decision_id = ? AND position = ?"
_STORED_SLOT_REWARD = "SELECT reward FROM slot_feedback WHERE decision_id = ? AND position = ? AND event = ?"
_INSERT_SLOT_FEEDBACK = "INSERT OR IGNORE INTO slot_feedback VALUES (?, ?, ?, ?, ?)"

# what the monitors read: slot 0 of every decision whose feedback of one event arrived in a window
MONITOR_SQL = """
    SELECT d.state, d.action, d.mode, d.timestamp, d.policy, f.reward, d.propensity,
           COALESCE(d.champion_probability, d.propensity) AS champion_probability,
           d.challenger_probability
    FROM feedback AS f JOIN decisions AS d ON d.decision_id = f.decision_id AND d.position = 0
    WHERE f.event = ? AND f.timestamp > ? AND f.timestamp <= ? {experiment}
    ORDER BY f.timestamp, f.decision_id
"""
ARM_COUNTS_SQL = """
    SELECT policy, count(*) FROM decisions
    WHERE experiment = ? AND position = 0 AND timestamp > ? AND timestamp <= ?
    GROUP BY policy
"""
MONITOR_COLUMNS = (
    "state", "action", "mode", "decided_at", "policy", "reward", "propensity", "champion_probability",
    "challenger_probability",
)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
UNKNOWN = "unknown_decision"


class LogWriterError(RuntimeError):
    """The decision log could not commit (disk full, database locked or unreachable, writer stopped)."""


class FeedbackConflictError(ValueError):
    """A feedback repeats a stored ``(decision_id, event)`` (and ``position``, for a slot) with a
    different reward; the stored one is kept.

    ``decision_id``, ``event``, ``stored_reward``, ``reward`` (the refused one) and ``position``
    carry the facts.
    """

    def __init__(self, decision_id: str, event: str, stored_reward: float, reward: float,
                 position: int | None = None) -> None:
        slot = f" at position {position}" if position is not None else ""
        super().__init__(
            f"decision {decision_id!r} already has reward {stored_reward!r}{slot} for event {event!r}; "
            f"refusing reward {reward!r} (a repeat must carry the same reward)"
        )
        self.decision_id = decision_id
        self.event = event
        self.stored_reward = stored_reward
        self.reward = reward
        self.position = position


@dataclass(slots=True)
class QueuedFeedback:
    """A queued feedback row and the future its sender awaits."""

    decision_id: str
    event: str
    reward: float
    timestamp: float
    done: Future[str]
    position: int | None = None  # a slot's feedback (``slot_feedback``), else the decision's


@dataclass(slots=True)
class QueuedDecisions:
    """Queued decision rows; ``done`` (when a sender waits for the commit) resolves after it."""

    rows: Sequence[tuple[Any, ...]]
    done: Future[str] | None = None

    @property
    def timestamp(self) -> float:
        """The earliest decision time among the rows."""
        return min((float(row[_TIMESTAMP]) for row in self.rows), default=float("inf"))


Outcome = str | FeedbackConflictError


def full_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A decision row with the experiment columns (NULL when the row was made without them)."""
    return row if len(row) == len(DECISION_COLUMNS) else (*row, None, None, None, None)


def is_database_url(db: str | PathLike[str]) -> bool:
    """True when ``db`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return str(db).startswith(("postgresql://", "postgres://"))


def open_decision_log(db: str | PathLike[str], **options: Any) -> QueuedLog:
    """The decision log ``db`` names: a PostgreSQL URL, else a SQLite file (created when absent)."""
    if is_database_url(db):
        from hfrl.service.postgres import PostgresDecisionLog

        return PostgresDecisionLog(str(db), **options)
    return DecisionLog(db, **options)


class QueuedLog:
    """Queue decisions and feedback; writer threads commit them in groups (see the module docstring).

    Subclasses open the store and implement ``_transaction`` (write one group in one transaction and
    return the feedback outcomes), ``_query`` (a read) and ``_close_store``.

    Parameters
    ----------
    max_batch : int
        The most queued items one transaction takes.
    max_queue : int
        Queued items (decision batches and feedback rows) beyond this make ``log_decisions`` raise
        ``LogWriterError`` (back-pressure instead of unbounded memory).
    writers : int
        Writer threads (each commits its own groups; 1 keeps strict arrival order).
    commit_decisions : bool
        ``log_decisions`` returns a future that resolves after the rows commit (the service then
        answers a decision only once it is stored).
    """

    description = "decision log"

    def __init__(self, max_batch: int = 4096, max_queue: int = 200_000, writers: int = 1,
                 commit_decisions: bool = False) -> None:
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.commit_decisions = commit_decisions
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._busy = 0
        self._idle = threading.Condition()
        self._pending: Counter[float] = Counter()  # timestamps of rows queued, not yet committed
        self._pending_items: dict[int, float] = {}  # queued item -> its timestamp there
        self._pending_lock = threading.Lock()
        self.failed_commits = 0
        self.last_error: str | None = None
        self.commits = 0
        self.rows_committed = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"hfrl-decision-log-{i}", daemon=True)
            for i in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ producers
    def log_decisions(self, rows: Sequence[tuple[Any, ...]]) -> Future[str] | None:
        """Queue decision rows (tuples in the ``decisions`` column order; the four experiment
        columns may be left out). Returns a future resolved after the commit when
        ``commit_decisions``, else None at once."""
        self._check_open()
        if self._queue.qsize() > self.max_queue:
            raise LogWriterError(f"the decision log is {self._queue.qsize()} items behind; try again shortly")
        done: Future[str] | None = Future() if self.commit_decisions else None
        self._enqueue(QueuedDecisions(rows, done))
        return done

    def submit_feedback(
        self, decision_id: str, reward: float, event: str = DEFAULT_EVENT, timestamp: float | None = None,
        position: int | None = None,
    ) -> Future[str]:
        """Queue a feedback row; the future resolves after its transaction commits.

        The result is ``"accepted"``, ``"duplicate"`` (the same decision, event and reward were
        stored before; nothing changes) or ``"unknown_decision"``. A different reward for a stored
        decision and event sets ``FeedbackConflictError`` on the future (after the commit of its
        transaction, like every outcome). With ``position``, the feedback is the reward of that slot
        of the list (``slot_feedback``; ``"unknown_decision"`` when the decision has no such slot).
        """
        self._check_open()
        done: Future[str] = Future()
        self._enqueue(QueuedFeedback(decision_id, event, float(reward), timestamp or time.time(), done,
                                     None if position is None else int(position)))
        return done

    def _enqueue(self, item: QueuedDecisions | QueuedFeedback) -> None:
        stamp = item.timestamp
        with self._pending_lock:
            self._pending[stamp] += 1
            self._pending_items[id(item)] = stamp
        self._queue.put(item)

    def settled_until(self) -> float:
        """A time up to which every row this process queued is committed (``inf`` when none waits).

        Readers that follow the log by time (the monitors) read no further, so a row queued before
        and committed after a read is never skipped; rows other processes write (replicas sharing a
        PostgreSQL log) are covered by the monitors' ``lag``.
        """
        with self._pending_lock:
            oldest = min(self._pending, default=None)
        return float("inf") if oldest is None else float(np.nextafter(oldest, -np.inf))

    async def feedback(self, decision_id: str, reward: float, event: str = DEFAULT_EVENT,
                       position: int | None = None) -> str:
        """``submit_feedback`` for the event loop: returns (or raises) once the row is committed."""
        return await asyncio.wrap_future(self.submit_feedback(decision_id, reward, event, position=position))

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed."""
        marker: Future[str] = Future()
        self._queue.put(marker)
        marker.result(timeout=timeout)
        with self._idle:  # another writer may still be committing a group taken before the marker
            if not self._idle.wait_for(lambda: self._busy == 0, timeout):
                raise LogWriterError(f"the {self.description} did not drain within {timeout} s")

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, stop the writers and close the store."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._close_store()

    def _check_open(self) -> None:
        if self._closed:
            raise LogWriterError(f"the {self.description} is closed")
        if not self.writer_alive:
            raise LogWriterError(f"the {self.description} writer has stopped")

    # ------------------------------------------------------------------ queries
    @property
    def queue_depth(self) -> int:
        """Items (decision batches, feedback rows) queued and not yet taken by a writer."""
        return self._queue.qsize()

    @property
    def writer_alive(self) -> bool:
        """False once every writer thread has stopped (closed, or crashed)."""
        return any(thread.is_alive() for thread in self._threads)

    def counts(self) -> dict[str, int]:
        """Committed decision slots and feedback rows."""
        n_decisions = self._query("SELECT count(*) FROM decisions")[0][0]
        n_feedback = self._query("SELECT count(*) FROM feedback")[0][0]
        return {"decision_rows": int(n_decisions), "feedback_rows": int(n_feedback)}

    def monitor_rows(self, event: str, after: float, until: float,
                     experiment: str | None = None) -> dict[str, np.ndarray]:
        """Slot 0 of the decisions (of ``experiment`` when given) whose ``event`` feedback arrived in
        ``(after, until]`` (unix seconds), in arrival order, as arrays named by ``MONITOR_COLUMNS``
        (``champion_probability`` is the logged propensity for decisions made outside experiments):
        what the monitors (``hfrl.service.monitor``) add to their sequences."""
        if experiment is None:
            rows = self._query(MONITOR_SQL.format(experiment=""), (event, after, until))
        else:
            rows = self._query(MONITOR_SQL.format(experiment="AND d.experiment = ?"),
                               (event, after, until, experiment))
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(MONITOR_COLUMNS)
        kinds = (np.int64, np.int64, object, np.float64, object, np.float64, np.float64, np.float64,
                 np.float64)
        out = {}
        for name, values, kind in zip(MONITOR_COLUMNS, columns, kinds, strict=True):
            if kind is np.float64:
                out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            else:
                out[name] = np.array(values, dtype=kind)
        return out

    def arm_counts(self, experiment: str, after: float, until: float) -> dict[str, int]:
        """Decisions per arm of ``experiment`` made in ``(after, until]``."""
        return {str(policy): int(n) for policy, n in self._query(ARM_COUNTS_SQL, (experiment, after, until))}

    # ------------------------------------------------------------------ for subclasses
    def _transaction(self, rows: list[tuple[Any, ...]], feedback: list[QueuedFeedback]) -> list[Outcome]:
        """Write ``rows`` then ``feedback`` in one transaction; the outcome of each feedback."""
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read (``?`` placeholders) and return its rows."""
        raise NotImplementedError

    def _close_store(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the writers
    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stops = sum(item is None for item in batch)
            if stops:
                stop = True
                batch = [item for item in batch if item is not None]
                for _ in range(stops - 1):  # another writer's stop signal, taken in this group
                    self._queue.put(None)
            with self._idle:
                self._busy += 1
            try:
                self._commit(batch)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _commit(self, batch: list[Any]) -> None:
        try:
            self._write(batch)
        finally:  # committed or failed: either way no longer pending
            with self._pending_lock:
                for item in batch:
                    stamp = self._pending_items.pop(id(item), None)
                    if stamp is not None:
                        self._pending[stamp] -= 1
                        if self._pending[stamp] <= 0:
                            del self._pending[stamp]

    def _write(self, batch: list[Any]) -> None:
        rows = [full_row(row) for item in batch if isinstance(item, QueuedDecisions) for row in item.rows]
        feedback = [item for item in batch if isinstance(item, QueuedFeedback)]
        try:
            outcomes = self._transaction(rows, feedback) if rows or feedback else []
        except BaseException as exc:  # resolve every waiter; a 2xx must never follow a failed commit
            self.failed_commits += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            error = LogWriterError(f"{self.description} commit failed: {exc}")
            for item in batch:
                done = item if isinstance(item, Future) else item.done
                if done is not None and not done.done():
                    done.set_exception(error)
            return
        self.commits += 1
        self.rows_committed += len(rows) + sum(outcome == ACCEPTED for outcome in outcomes)
        for item, outcome in zip(feedback, outcomes, strict=True):
            if isinstance(outcome, FeedbackConflictError):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)
        for item in batch:
            if isinstance(item, Future):
                item.set_result("flushed")
            elif isinstance(item, QueuedDecisions) and item.done is not None:
                item.done.set_result("committed")


def connect(path: str | PathLike[str]) -> sqlite3.Connection:
    """Open (and create if needed) a decision-log database in WAL mode with ``synchronous=FULL``."""
    connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    present = {row[1] for row in connection.execute("PRAGMA table_info(decisions)")}
    for column, kind in zip(EXPERIMENT_COLUMNS, ("TEXT", "TEXT", "REAL", "REAL"), strict=True):
        if column not in present:  # a log written before experiments existed
            connection.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
    connection.executescript(INDEXES)
    return connection


class DecisionLog(QueuedLog):
    """The embedded decision log: SQLite (WAL, ``synchronous=FULL``), one writer thread, group commit.

    Parameters
    ----------
    path : path
        The SQLite database file (created with its tables when absent).
    max_batch, max_queue : int
        See ``QueuedLog``.

    Examples
    --------
    >>> import tempfile
    >>> log = DecisionLog(tempfile.mkdtemp() + "/log.sqlite")
    >>> log.log_decisions([("d1", 0, 3, 1, 0.5, 0.5, 0.0, "v1", "explore", 1, None, None)])
    >>> log.submit_feedback("d1", 1.0).result(timeout=10)
    'accepted'
    >>> log.close()
    >>> read_decision_log(log.path)[["state", "action", "reward"]].to_dict("records")
    [{'state': 3, 'action': 1, 'reward': 1.0}]
    """

    def __init__(self, path: str | PathLike[str], max_batch: int = 4096, max_queue: int = 200_000) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self._connection = connect(self.path)
        self._reader = connect(self.path)
        self._reader_lock = threading.Lock()
        self._reader_closed = False
        self._insert = (f"INSERT OR IGNORE INTO decisions ({', '.join(DECISION_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))})")
        super().__init__(max_batch, max_queue)

    def _transaction(self, rows: list[tuple[Any, ...]], feedback: list[QueuedFeedback]) -> list[Outcome]:
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            if rows:
                connection.executemany(self._insert, rows)
            outcomes = [self._store_feedback(item) for item in feedback]
            connection.execute("COMMIT")
        except BaseException:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return outcomes

    def _store_feedback(self, item: QueuedFeedback) -> Outcome:
        connection = self._connection
        if item.position is not None:
            return self._store_slot_feedback(item)
        if connection.execute(_KNOWN_DECISION, (item.decision_id,)).fetchone() is None:
            return UNKNOWN
        values = (item.decision_id, item.event, item.reward, item.timestamp)
        cursor = connection.execute(_INSERT_FEEDBACK, values)
        if cursor.rowcount == 1:
            return ACCEPTED
        (stored,) = connection.execute(_STORED_REWARD, (item.decision_id, item.event)).fetchone()
        if stored == item.reward:
            return DUPLICATE
        return FeedbackConflictError(item.decision_id, item.event, stored, item.reward)

    def _store_slot_feedback(self, item: QueuedFeedback) -> Outcome:
        connection = self._connection
        slot = (item.decision_id, item.position)
        if connection.execute(_KNOWN_SLOT, slot).fetchone() is None:
            return UNKNOWN
        cursor = connection.execute(_INSERT_SLOT_FEEDBACK, (*slot, item.event, item.reward, item.timestamp))
        if cursor.rowcount == 1:
            return ACCEPTED
        (stored,) = connection.execute(_STORED_SLOT_REWARD, (*slot, item.event)).fetchone()
        if stored == item.reward:
            return DUPLICATE
        return FeedbackConflictError(item.decision_id, item.event, stored, item.reward, item.position)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._reader_lock:
            if self._reader_closed:  # a monitor's read still in flight at shutdown
                raise LogWriterError(f"the {self.description} is closed")
            return self._reader.execute(sql, params).fetchall()

    def _close_store(self) -> None:
        self._connection.close()
        with self._reader_lock:  # never close the reader under a read another thread is making
            self._reader_closed = True
            self._reader.close()


# ---------------------------------------------------------------------- reading back
def decision_log_sql(event: str | None, all_positions: bool) -> tuple[str, int]:
    """The query ``read_decision_log`` runs and how many times it takes the event (``?`` placeholders)."""
    event_filter = "WHERE event = ?" if event is not None else ""
    if not all_positions:
        slots, joins, uses = "NULL, 0", "WHERE d.position = 0", 1
    else:
        slots = "s.reward, h.decision_id IS NOT NULL"
        joins = f"""
        LEFT JOIN (SELECT decision_id, position, sum(reward) AS reward FROM slot_feedback {event_filter}
                   GROUP BY decision_id, position) AS s
          ON s.decision_id = d.decision_id AND s.position = d.position
        LEFT JOIN (SELECT DISTINCT decision_id FROM slot_feedback {event_filter}) AS h
          ON h.decision_id = d.decision_id"""
        uses = 3
    sql = f"""
        SELECT d.state, d.action, f.reward, d.propensity, d.timestamp, d.decision_id, d.position,
               d.policy_probability, d.model_version, d.mode, d.k, d.request_id, d.context, d.policy,
               {slots}
        FROM decisions AS d
        LEFT JOIN (SELECT decision_id, sum(reward) AS reward FROM feedback {event_filter}
                   GROUP BY decision_id) AS f ON f.decision_id = d.decision_id
        {joins}
        ORDER BY d.timestamp, d.decision_id, d.position
    """
    return sql, uses if event is not None else 0


LOG_FRAME_COLUMNS = (
    "state", "action", "reward", "propensity", "timestamp", "decision_id", "position", "policy_probability",
    "model_version", "mode", "k", "request_id", "context", "policy",
)
_SLOT_COLUMNS = ("slot_reward", "reward_per_slot")


def read_decision_log(
    db: str | PathLike[str],
    *,
    event: str | None = None,
    all_positions: bool = False,
    missing_reward: float | None = None,
) -> pd.DataFrame:
    """The decision log as a DataFrame in the hfrl log schema, ready for ``evaluate`` or ``tune``.

    One row per decision (its slot 0, whose propensity is pi(a|s) under both explore and the
    deterministic exploit rule, or the mixture's while an experiment runs): ``state``, ``action``,
    ``reward``, ``propensity``, ``timestamp`` (UTC), ``decision_id``, then ``position``,
    ``policy_probability``, ``model_version``, ``mode``, ``k``, ``request_id``, ``context`` and
    ``policy`` (``champion``/``challenger`` during an experiment, else null).

    Parameters
    ----------
    db : path or PostgreSQL URL
        A database written by the service (``hfrl serve --db``): a SQLite file or a
        ``postgresql://`` URL.
    event : str, optional
        Take the reward of this feedback event only. By default a decision's reward is the sum of
        the rewards of all its feedback events.
    all_positions : bool
        Also return the slots ``position >= 1`` of k > 1 decisions, as a ranking log (``slate_id``
        is the ``decision_id``): each slot's
        ``reward`` is the sum of its own feedback (sent with ``position``) when its decision got any
        slot feedback (``reward_per_slot`` True; NaN for a slot without), else its decision's reward
        (``reward_per_slot`` False). ``slot_propensity`` is the probability of the slot's item given
        the earlier picks, ``cascade_propensity`` their product up to this slot (the probability of
        the list's items at positions 0..position) and ``slate_propensity`` of the whole list.
        ``propensity`` is the ranking schema's marginal, P(item at this position): kept only when
        every row's is known (slot 0; exploited lists outside an experiment, where it is 1), and
        dropped otherwise: an explored slot's marginal is not logged, so ``iips`` cannot use it.
    missing_reward : float, optional
        The reward of decisions without feedback. By default it stays NaN (null), which
        ``validate_logs`` rejects: choose explicitly, e.g. 0.0 when silence means no click, or drop
        those rows (``frame.dropna(subset=["reward"])``) when feedback is still to come.

    Returns
    -------
    DataFrame
        ``reward`` is NaN (null) for decisions without feedback unless ``missing_reward`` is given.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/log.sqlite"
    >>> log = DecisionLog(path)
    >>> log.log_decisions([("a", 0, 1, 2, 0.25, 0.25, 0.0, "v", "explore", 1, None, None)])
    >>> log.close()
    >>> frame = read_decision_log(path)
    >>> frame[["state", "action", "propensity"]].values.tolist(), bool(frame["reward"].isna()[0])
    ([[1.0, 2.0, 0.25]], True)
    """
    sql, uses = decision_log_sql(event, all_positions)
    params: tuple[Any, ...] = (event,) * uses
    columns = [*LOG_FRAME_COLUMNS, *_SLOT_COLUMNS]
    if is_database_url(db):
        from hfrl.service.postgres import read_rows

        frame = pd.DataFrame(read_rows(str(db), sql, params), columns=columns)
    else:
        path = Path(db)
        if not path.is_file():
            from hfrl.errors import LogValidationError

            raise LogValidationError(f"no decision log database at {path}", source=str(path))
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            frame = pd.DataFrame(connection.execute(sql, params).fetchall(), columns=columns)
        finally:
            connection.close()
    frame[schema.REWARD] = frame[schema.REWARD].astype("float64")
    if all_positions:
        per_slot = frame["reward_per_slot"].astype(bool)
        frame[schema.REWARD] = frame[schema.REWARD].where(~per_slot, frame["slot_reward"].astype("float64"))
        frame["reward_per_slot"] = per_slot
    frame = frame.drop(columns=[c for c in _SLOT_COLUMNS if not (all_positions and c == "reward_per_slot")])
    if missing_reward is not None:
        frame[schema.REWARD] = frame[schema.REWARD].fillna(float(missing_reward))
    for column in (schema.PROPENSITY, "policy_probability", schema.TIMESTAMP):
        frame[column] = frame[column].astype("float64")
    frame[schema.TIMESTAMP] = pd.to_datetime(frame[schema.TIMESTAMP], unit="s", utc=True)
    for column in (schema.STATE, schema.ACTION, schema.POSITION, "k"):
        frame[column] = frame[column].astype("int64")
    if all_positions:  # rows are ordered by position within each decision
        frame[schema.SLATE_ID] = frame["decision_id"]
        frame["slot_propensity"] = frame[schema.PROPENSITY]
        by_decision = frame.groupby("decision_id", sort=False)["slot_propensity"]
        frame[schema.CASCADE_PROPENSITY] = by_decision.cumprod()
        frame[schema.SLATE_PROPENSITY] = by_decision.transform("prod")
        exploited = (frame["mode"] == "exploit") & frame["policy"].isna()
        marginal_known = (frame[schema.POSITION] == 0) | exploited
        if not marginal_known.all():
            frame = frame.drop(columns=[schema.PROPENSITY])
    return frame


def write_parquet(
    db: str | PathLike[str],
    out: str | PathLike[str],
    *,
    event: str | None = None,
    all_positions: bool = False,
    missing_reward: float | None = None,
) -> int:
    """Write ``read_decision_log(db, ...)`` to a Parquet file; return the number of rows written."""
    frame = read_decision_log(db, event=event, all_positions=all_positions, missing_reward=missing_reward)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return len(frame)
