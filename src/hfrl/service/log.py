"""The decision log: an embedded SQLite database (WAL) written by one background thread with group commit.

Durability contract
-------------------
* The database runs in WAL mode with ``synchronous=FULL``: a transaction is on disk (the WAL is
  fsynced) when ``COMMIT`` returns, so it survives a process crash and a power loss.
* Feedback: the HTTP 2xx is sent only after the transaction holding the feedback row has committed
  (the request awaits a future the writer resolves after ``COMMIT``). A 2xx on feedback means the
  row is on disk.
* Decisions: the response is sent as soon as the rows are queued. A crash (``kill -9``, power loss)
  can lose at most the decisions of the last group window: those queued but not yet committed.
  Nothing is lost on a clean shutdown (the writer drains its queue before closing).
* Group commit: the writer takes everything queued (up to ``max_batch`` items) into one transaction,
  so the fsync cost is shared by every request that arrived while the previous commit ran.
* Ordering: the writer processes items in arrival order, so a decision is always written before
  any feedback that names it; feedback is checked against the decisions table inside the writer's
  transaction, which makes "feedback for a decision still in the queue" succeed instead of 404.
* One reward per ``(decision_id, event)``: a repeat with the same reward is a ``"duplicate"``
  (nothing changes); a repeat with a different reward fails with ``FeedbackConflictError`` naming
  both rewards, and the stored one is kept.

Tables
------
``decisions``: one row per decided slot: ``decision_id``, ``position`` (slot, 0-based), ``state``,
``action``, ``propensity`` (see ``hfrl.service.model``), ``policy_probability`` (pi(a|s)),
``timestamp`` (unix seconds, UTC), ``model_version``, ``mode``, ``k``, ``request_id``, ``context``
(JSON text or NULL).
``feedback``: ``decision_id``, ``event``, ``reward``, ``timestamp``; primary key
``(decision_id, event)`` so a repeated feedback stores one row.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from hfrl.data import schema

__all__ = ["DecisionLog", "FeedbackConflictError", "LogWriterError", "read_decision_log", "write_parquet"]

DEFAULT_EVENT = "reward"

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
    PRIMARY KEY (decision_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL,
    event TEXT NOT NULL,
    reward REAL NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (decision_id, event)
) WITHOUT ROWID;
"""
_INSERT_DECISION = "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_FEEDBACK = "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)"
_KNOWN_DECISION = "SELECT 1 FROM decisions WHERE decision_id = ? AND position = 0"
_STORED_REWARD = "SELECT reward FROM feedback WHERE decision_id = ? AND event = ?"

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
UNKNOWN = "unknown_decision"


class LogWriterError(RuntimeError):
    """The decision log could not commit (disk full, database locked, writer stopped)."""


class FeedbackConflictError(ValueError):
    """A feedback repeats a stored ``(decision_id, event)`` with a different reward; the stored one is kept.

    ``decision_id``, ``event``, ``stored_reward`` and ``reward`` (the refused one) carry the facts.
    """

    def __init__(self, decision_id: str, event: str, stored_reward: float, reward: float) -> None:
        super().__init__(
            f"decision {decision_id!r} already has reward {stored_reward!r} for event {event!r}; "
            f"refusing reward {reward!r} (a repeat must carry the same reward)"
        )
        self.decision_id = decision_id
        self.event = event
        self.stored_reward = stored_reward
        self.reward = reward


@dataclass(slots=True)
class _Feedback:
    decision_id: str
    event: str
    reward: float
    timestamp: float
    done: Future[str]


def connect(path: str | PathLike[str]) -> sqlite3.Connection:
    """Open (and create if needed) a decision-log database in WAL mode with ``synchronous=FULL``."""
    connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


class DecisionLog:
    """Queue decisions and feedback; one writer thread commits them in groups.

    Parameters
    ----------
    path : path
        The SQLite database file (created with its tables when absent).
    max_batch : int
        The most queued items one transaction takes.
    max_queue : int
        Queued items (decision batches and feedback rows) beyond this make ``log_decisions`` raise
        ``LogWriterError`` (back-pressure instead of unbounded memory).

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
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._connection = connect(self.path)
        self._reader = connect(self.path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self.failed_commits = 0
        self.last_error: str | None = None
        self.commits = 0
        self.rows_committed = 0
        self._thread = threading.Thread(target=self._run, name="hfrl-decision-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers
    def log_decisions(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue decision rows (tuples in the ``decisions`` column order); returns immediately."""
        self._check_open()
        if self._queue.qsize() > self.max_queue:
            raise LogWriterError(f"the decision log is {self._queue.qsize()} items behind; try again shortly")
        self._queue.put(rows)

    def submit_feedback(
        self, decision_id: str, reward: float, event: str = DEFAULT_EVENT, timestamp: float | None = None
    ) -> Future[str]:
        """Queue a feedback row; the future resolves after its transaction commits.

        The result is ``"accepted"``, ``"duplicate"`` (the same decision, event and reward were
        stored before; nothing changes) or ``"unknown_decision"``. A different reward for a stored
        decision and event sets ``FeedbackConflictError`` on the future (after the commit of its
        transaction, like every outcome).
        """
        self._check_open()
        done: Future[str] = Future()
        self._queue.put(_Feedback(decision_id, event, float(reward), timestamp or time.time(), done))
        return done

    async def feedback(self, decision_id: str, reward: float, event: str = DEFAULT_EVENT) -> str:
        """``submit_feedback`` for the event loop: returns (or raises) once the row is committed."""
        return await asyncio.wrap_future(self.submit_feedback(decision_id, reward, event))

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed."""
        marker: Future[str] = Future()
        self._queue.put(marker)
        marker.result(timeout=timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._reader.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogWriterError("the decision log is closed")
        if not self._thread.is_alive():
            raise LogWriterError("the decision log writer has stopped")

    # ------------------------------------------------------------------ queries
    @property
    def queue_depth(self) -> int:
        """Items (decision batches, feedback rows) queued and not yet taken by the writer."""
        return self._queue.qsize()

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread has stopped (closed, or crashed)."""
        return self._thread.is_alive()

    def counts(self) -> dict[str, int]:
        """Committed decision slots and feedback rows."""
        n_decisions = self._reader.execute("SELECT count(*) FROM decisions").fetchone()[0]
        n_feedback = self._reader.execute("SELECT count(*) FROM feedback").fetchone()[0]
        return {"decision_rows": int(n_decisions), "feedback_rows": int(n_feedback)}

    # ------------------------------------------------------------------ the writer
    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None or None in batch:
                stop = True
                batch = [item for item in batch if item is not None]
            self._commit(batch)
        self._connection.close()

    def _commit(self, batch: list[Any]) -> None:
        outcomes: list[tuple[Future[str], str | FeedbackConflictError]] = []
        n_rows = 0
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            for item in batch:
                if isinstance(item, _Feedback):
                    known = connection.execute(_KNOWN_DECISION, (item.decision_id,)).fetchone()
                    if known is None:
                        outcomes.append((item.done, UNKNOWN))
                        continue
                    cursor = connection.execute(
                        _INSERT_FEEDBACK, (item.decision_id, item.event, item.reward, item.timestamp)
                    )
                    if cursor.rowcount == 1:
                        outcomes.append((item.done, ACCEPTED))
                        n_rows += 1
                    else:
                        outcomes.append((item.done, self._repeat_outcome(item)))
                elif isinstance(item, Future):
                    outcomes.append((item, "flushed"))
                else:
                    connection.executemany(_INSERT_DECISION, item)
                    n_rows += len(item)
            connection.execute("COMMIT")
        except BaseException as exc:  # resolve every waiter; a 2xx must never follow a failed commit
            self.failed_commits += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = LogWriterError(f"decision log commit failed: {exc}")
            for item in batch:
                done = item.done if isinstance(item, _Feedback) else item
                if isinstance(done, Future) and not done.done():
                    done.set_exception(error)
            return
        self.commits += 1
        self.rows_committed += n_rows
        for done, outcome in outcomes:
            if isinstance(outcome, FeedbackConflictError):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    def _repeat_outcome(self, item: _Feedback) -> str | FeedbackConflictError:
        """A stored ``(decision_id, event)`` again: a duplicate when the reward is the same."""
        (stored,) = self._connection.execute(_STORED_REWARD, (item.decision_id, item.event)).fetchone()
        if stored == item.reward:
            return DUPLICATE
        return FeedbackConflictError(item.decision_id, item.event, stored, item.reward)


# ---------------------------------------------------------------------- reading back
def read_decision_log(
    db: str | PathLike[str],
    *,
    event: str | None = None,
    all_positions: bool = False,
    missing_reward: float | None = None,
) -> pd.DataFrame:
    """The decision log as a DataFrame in the hfrl log schema, ready for ``evaluate`` or ``tune``.

    One row per decision (its slot 0, whose propensity is pi(a|s) under both explore and the
    deterministic exploit rule): ``state``, ``action``, ``reward``, ``propensity``, ``timestamp``
    (UTC), ``decision_id``, then ``position``, ``policy_probability``, ``model_version``, ``mode``,
    ``k``, ``request_id``, ``context``.

    Parameters
    ----------
    db : path
        A database written by ``DecisionLog`` (``hfrl serve --db``).
    event : str, optional
        Take the reward of this feedback event only. By default a decision's reward is the sum of
        the rewards of all its feedback events.
    all_positions : bool
        Also return the slots ``position >= 1`` of k > 1 decisions (propensity: probability at that
        slot given the earlier picks); each carries its decision's reward. Adds the ranking log
        schema's ``cascade_propensity`` (the product of the slot propensities up to this slot: the
        probability of the list's items at positions 0..position) and ``slate_propensity`` (of the
        whole list).
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
    path = Path(db)
    if not path.is_file():
        from hfrl.errors import LogValidationError

        raise LogValidationError(f"no decision log database at {path}", source=str(path))
    event_filter = "WHERE event = ?" if event is not None else ""
    params: tuple[Any, ...] = (event,) if event is not None else ()
    position_filter = "" if all_positions else "WHERE d.position = 0"
    sql = f"""
        SELECT d.state, d.action, f.reward, d.propensity, d.timestamp, d.decision_id, d.position,
               d.policy_probability, d.model_version, d.mode, d.k, d.request_id, d.context
        FROM decisions AS d
        LEFT JOIN (SELECT decision_id, sum(reward) AS reward FROM feedback {event_filter}
                   GROUP BY decision_id) AS f ON f.decision_id = d.decision_id
        {position_filter}
        ORDER BY d.timestamp, d.decision_id, d.position
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        frame = pd.read_sql_query(sql, connection, params=params)
    finally:
        connection.close()
    frame[schema.REWARD] = frame[schema.REWARD].astype("float64")
    if missing_reward is not None:
        frame[schema.REWARD] = frame[schema.REWARD].fillna(float(missing_reward))
    frame[schema.TIMESTAMP] = pd.to_datetime(frame[schema.TIMESTAMP], unit="s", utc=True)
    for column in (schema.STATE, schema.ACTION, schema.POSITION, "k"):
        frame[column] = frame[column].astype("int64")
    if all_positions:  # rows are ordered by position within each decision
        by_decision = frame.groupby("decision_id", sort=False)[schema.PROPENSITY]
        frame[schema.CASCADE_PROPENSITY] = by_decision.cumprod()
        frame[schema.SLATE_PROPENSITY] = by_decision.transform("prod")
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
