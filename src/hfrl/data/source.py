"""A validated log source: rows (a DataFrame, or CSV/Parquet files) on a backend, with what they prove.

``Logs.open`` validates once, at the edge (``hfrl.data.validation``); the result carries its
``LogProof`` (row count, id ranges, reward domain, propensity bounds, time range, sessions), so
every consumer (HF, the estimators, tuning, the offline learners, the CLI) takes the object instead
of checking again, and the cell statistics they share are computed in one pass and kept.

Every public function that reads logs accepts a DataFrame, a path, or a ``Logs``; ``as_logs`` turns
the first two into the third, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend, get_backend
from hfrl.backends.files import LogSource, is_path, read_batches, read_frame
from hfrl.data import schema
from hfrl.data.cells import PROPENSITY_SUMS, STANDARD_SUMS, Atoms, CellStatistics
from hfrl.data.validation import (
    Rule,
    check_columns,
    check_rules,
    column_rules,
    format_value,
    id_rules,
    number_rules,
    offending_rows_error,
    proven_columns,
)
from hfrl.errors import LogValidationError

__all__ = ["MAX_TABLE_CELLS", "LogProof", "Logs", "as_logs", "with_schema_names"]

S, A, R, P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY
# The largest n_states x n_actions the ids may imply: every consumer holds tables of that shape
# (counts, sums, policies), so ids far above the number of distinct values (raw SKUs, hashes)
# would allocate terabytes; they are refused naming the row, and CategoryEncoder makes them dense.
MAX_TABLE_CELLS = 100_000_000


@dataclass(frozen=True)
class LogProof:
    """What validation proved about a log source.

    Attributes
    ----------
    n_rows : int
    columns : tuple of str
        The columns of the source (schema columns among them were validated).
    n_states, n_actions : int
        Every ``state`` (and ``next_state``) id lies in ``[0, n_states)``, every ``action`` in
        ``[0, n_actions)``: the bounds given to ``Logs.open``, else the largest id plus one.
    reward_observed : (float, float)
        The smallest and largest logged reward.
    reward_declared : (float, float) or None
        The reward domain declared by the user (``reward_range=``); every reward lies in it.
    reward_kind : {"binary", "integer", "float"}
        ``"binary"`` when every reward is 0 or 1 (as stored: integers or booleans; float columns
        are recognised from the cell sums, see ``Logs.binary_reward``).
    propensity_range : (float, float) or None
        Smallest and largest logged propensity; None without a propensity column.
    time_range : (float, float) or None
        Earliest and latest timestamp in seconds since 1970; None without timestamps.
    time_kind : str
        How timestamps are stored (``"datetime"``, or ``"integer"``/``"float"`` seconds).
    """

    n_rows: int
    columns: tuple[str, ...]
    n_states: int
    n_actions: int
    reward_observed: tuple[float, float]
    reward_declared: tuple[float, float] | None
    reward_kind: str
    propensity_range: tuple[float, float] | None
    time_range: tuple[float, float] | None
    time_kind: str = "datetime"

    @property
    def has_sessions(self) -> bool:
        """Whether the logs are sessions: ``session_id`` with ``next_state`` or ``done``."""
        return schema.SESSION_ID in self.columns and (
            schema.NEXT_STATE in self.columns or schema.DONE in self.columns)


def _check_reward_range(reward_range: Any) -> tuple[float, float] | None:
    if reward_range is None:
        return None
    try:
        low, high = (float(v) for v in reward_range)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"reward_range must be (low, high), e.g. (0, 1); got {reward_range!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"reward_range must be two finite numbers with low < high; got {reward_range!r}")
    return low, high


def _check_bound(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


class Logs:
    """A validated log source. Build it with ``Logs.open`` (or ``as_logs``), not the constructor.

    Attributes
    ----------
    source : DataFrame or str
        The rows, or the path/glob of the files holding them.
    backend : Backend
        Where aggregate work over the rows runs.
    proof : LogProof
        What validation proved.
    name : str or None
        The file name put in front of messages (None for a DataFrame).

    Examples
    --------
    >>> import pandas as pd
    >>> logs = Logs.open(pd.DataFrame({"state": [0, 1, 1], "action": [2, 0, 1],
    ...                                "reward": [1, 0, 0], "propensity": [0.5, 0.25, 0.25]}))
    >>> logs.n_rows, logs.n_states, logs.n_actions, logs.proof.reward_kind, logs.reward_range
    (3, 2, 3, 'binary', (0.0, 1.0))
    >>> Logs.open(pd.DataFrame({"state": [0, -1], "action": [0, 0], "reward": [1.0, 0.0]}))
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: column 'state': row 1 has -1, expected a non-negative integer id; ...
    """

    def __init__(self, source: LogSource, backend: Backend, proof: LogProof, name: str | None) -> None:
        self.source = source
        self.backend = backend
        self.proof = proof
        self.name = name
        self._statistics: list[CellStatistics] = []
        self._atoms: Atoms | None = None
        self._validated: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ building
    @classmethod
    def open(
        cls,
        logs: LogSource,
        backend: str | Backend | None = None,
        *,
        n_states: int | None = None,
        n_actions: int | None = None,
        reward_range: tuple[float, float] | None = None,
        required: Iterable[str] = schema.REQUIRED_COLUMNS,
        hints: Mapping[str, str] | None = None,
        columns: Mapping[str, str] | None = None,
        max_cells: int = MAX_TABLE_CELLS,
        max_ids: int | None = None,
    ) -> Logs:
        """Validate ``logs`` once and return them with their proof.

        Parameters
        ----------
        logs : DataFrame, or str/Path of a CSV or Parquet file or glob
        backend : {"memory", "duckdb", "spark"}, Backend or None
            Where aggregates run; None picks memory for a DataFrame and DuckDB for a path. A file
            on the memory backend is read once, here.
        n_states, n_actions : int, optional
            Ids must lie in ``[0, n)``; default the largest id plus one.
        reward_range : (low, high), optional
            The declared reward domain (e.g. ``(0, 1)`` for clicks); every reward must lie in it,
            and interval bounds use it rather than the logged range.
        required : iterable of str
            Columns that must be present (default ``state``, ``action``, ``reward``).
        hints : mapping of column -> str, optional
            What to suggest when a required column is missing.
        columns : mapping of schema column -> stored column, optional
            Where the schema's columns are, when the logs name them otherwise, e.g.
            ``{"action": "item_id", "reward": "click", "propensity": "propensity_score"}`` for the
            Open Bandit Dataset (see ``with_schema_names``; a file is then read into memory).
        max_cells, max_ids : int, optional
            The largest table (``n_states x n_actions`` cells) the ids may index, and the largest
            number of ids of one kind: ids beyond are refused as raw ids (``MAX_TABLE_CELLS`` by
            default; a consumer that keeps sparse tables allows more cells but bounds each id).

        Raises
        ------
        LogValidationError
            A missing column, no rows, or a value outside the schema: the message names the
            file, the column, the first offending row, its value and how many rows offend.
        """
        if not isinstance(logs, pd.DataFrame) and not is_path(logs):
            raise TypeError(f"logs must be a DataFrame, a path or hfrl.data.Logs, got {type(logs).__name__}")
        declared = _check_reward_range(reward_range)
        n_states, n_actions = _check_bound(n_states, "n_states"), _check_bound(n_actions, "n_actions")
        name = str(logs) if is_path(logs) else None
        if columns:
            logs = with_schema_names(logs, columns, name)
        resolved = get_backend(backend, logs)
        if is_path(logs) and resolved.name == "memory":
            logs = read_frame(logs)
        n_rows = len(logs) if isinstance(logs, pd.DataFrame) else resolved.count(logs)
        if n_rows == 0:  # before the columns: an empty CSV has one made-up column
            raise LogValidationError("the logs are empty (0 rows)", count=0, source=name)
        stored = logs.columns if isinstance(logs, pd.DataFrame) else resolved.columns(logs)
        present = [str(c) for c in stored]
        check_columns(present, tuple(required), name, hints)
        validated = [c for c in schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS if c in present]
        ranges = resolved.column_ranges(logs, validated)
        time_kind = "datetime"
        if schema.TIMESTAMP in ranges.index:
            time_kind = str(ranges.loc[schema.TIMESTAMP, "kind"])
        bounds = {"n_states": n_states, "n_actions": n_actions, "reward_range": declared}
        proven = proven_columns(ranges, **bounds)
        rules = [rule for rule in column_rules(validated, time_kind=time_kind, **bounds)
                 if rule.column not in proven]
        check_rules(resolved, logs, rules, n_rows, name)
        _refuse_text(resolved, logs, ranges, name)
        if rules:  # scanned columns: their statistics are now known to be clean
            ranges = resolved.column_ranges(logs, validated) if not isinstance(logs, pd.DataFrame) else ranges
        proof = _proof(ranges, present, n_rows, n_states, n_actions, declared, time_kind)
        _refuse_huge_tables(resolved, logs, proof, n_states, n_actions, name, max_cells, max_ids)
        return cls(logs, resolved, proof, name)

    # ------------------------------------------------------------------ facts
    @property
    def n_rows(self) -> int:
        return self.proof.n_rows

    @property
    def n_states(self) -> int:
        return self.proof.n_states

    @property
    def n_actions(self) -> int:
        return self.proof.n_actions

    @property
    def columns(self) -> tuple[str, ...]:
        return self.proof.columns

    def has(self, column: str) -> bool:
        """Whether the source has ``column``."""
        return column in self.proof.columns

    @property
    def reward_range(self) -> tuple[float, float]:
        """The reward domain: as declared; else (0, 1) for binary rewards; else the logged range."""
        if self.proof.reward_declared is not None:
            return self.proof.reward_declared
        return (0.0, 1.0) if self.binary_reward else self.proof.reward_observed

    @property
    def binary_reward(self) -> bool:
        """Whether every reward is 0 or 1 (from the column's type, or from the cell sums)."""
        if self.proof.reward_kind == "binary":
            return True
        low, high = self.proof.reward_observed
        return bool(low >= 0 and high <= 1 and self.statistics().binary_reward)

    def describe(self) -> str:
        """``file: `` (or nothing) to put in front of messages about these logs."""
        return f"{self.name}: " if self.name else ""

    def __repr__(self) -> str:
        where = self.name or f"DataFrame of {self.n_rows:,} rows"
        return (f"Logs({where}, backend={self.backend.name!r}, n_states={self.n_states}, "
                f"n_actions={self.n_actions}, reward_range={self.reward_range})")

    # ------------------------------------------------------------------ consumers' checks
    def require(self, *columns: str, hints: Mapping[str, str] | None = None) -> None:
        """Raise naming any of ``columns`` the logs do not have (with a hint per column if given)."""
        check_columns(self.columns, columns, self.name, hints)

    def require_ids(self, n_states: int | None = None, n_actions: int | None = None) -> None:
        """Raise when an id does not fit a consumer's table (a policy of ``n_states x n_actions``)."""
        for column, bound, proven in ((S, n_states, self.n_states), (A, n_actions, self.n_actions)):
            if bound is None or proven <= bound:
                continue
            label = "state" if column == S else "action"
            rule = Rule(column, f"a known {label} id in [0, {bound}) (the policy's size)",
                        f"{column} >= {int(bound)}")
            check_rules(self.backend, self.source, [rule], self.n_rows, self.name)

    def check(self, *rules: Rule) -> None:
        """Check a consumer's own rules (e.g. rewards >= 0 to count events), naming the first bad row.

        Callers check what the proof does not already settle; this costs one pass over the rows.
        """
        check_rules(self.backend, self.source, rules, self.n_rows, self.name)

    def validate_column(self, column: str, role: str) -> None:
        """Check a column the schema does not know: ``role="id"`` (non-negative integers, e.g. a
        group column) or ``"weight"`` (finite, non-negative). Statistics prove it when they can."""
        self.require(column)
        if (column, role) in self._validated:
            return
        if role not in ("id", "weight"):
            raise ValueError(f"role must be 'id' or 'weight', got {role!r}")
        ranges = self.backend.column_ranges(self.source, [column])
        row = ranges.loc[column]
        if role == "id":
            proven = row["kind"] == "integer" and row["nulls"] == 0 and row["min"] >= 0
            rules = id_rules(column, None)
        else:
            proven = (row["kind"] in ("integer", "float", "bool") and row["nulls"] == 0
                      and math.isfinite(row["min"]) and math.isfinite(row["max"]) and row["min"] >= 0)
            rules = number_rules(column, 0.0, None, "a non-negative weight")
        if not proven:
            _refuse_text(self.backend, self.source, ranges, self.name, [column])
            self.check(*rules)
        self._validated.add((column, role))

    # ------------------------------------------------------------------ one pass of sums
    def statistics(self, extra: Mapping[str, str] | None = None) -> CellStatistics:
        """Per-(state, action) sums (``CellStatistics``), computed in one grouped pass and kept.

        ``extra`` names more per-row expressions to sum in the same pass (e.g. HF's decayed
        events). Statistics already computed with at least these sums are returned as they are;
        ask for everything up front (e.g. ``HistoricalFrequency.sums_for(logs)``) to read the
        rows once.
        """
        extra = dict(extra or {})
        for cached in self._statistics:
            if all(cached.expressions.get(k) == v for k, v in extra.items()):
                return cached
        sums = dict(STANDARD_SUMS) if self.has(R) else {"count": "1"}
        if self.proof.reward_kind == "binary":
            sums["reward_sq"] = R  # r^2 = r
        if self.has(P):
            sums.update(PROPENSITY_SUMS)
        sums.update(extra)
        frame = self.backend.group_sums(self.source, [S, A] if self.has(S) else [A], sums)
        if S not in frame.columns:  # ranking logs without contexts: one state
            frame.insert(0, S, 0)
        values = frame[list(sums)].to_numpy()
        if not np.isfinite(values).all():
            bad = [k for k in sums if not np.isfinite(frame[k].to_numpy()).all()]
            raise LogValidationError(
                f"every row is valid but the per-(state, action) sums {bad} are not finite: the "
                "values or their squares overflow (check the reward, weight and timestamp columns)",
                source=self.name,
            )
        statistics = CellStatistics.from_sums(frame, self.n_states, self.n_actions, sums)
        self._statistics.append(statistics)
        return statistics

    def atoms(self) -> Atoms:
        """Distinct ``(state, action, reward, propensity)`` rows with their counts (kept)."""
        if self._atoms is None:
            cells = self.statistics()
            if self.binary_reward and (not cells.has_propensity or cells.constant_propensity):
                self._atoms = Atoms.from_cells(cells)
            else:
                self._atoms = _distinct_atoms(self)
        return self._atoms

    @property
    def fingerprint(self) -> tuple:
        """``(n_rows, sum(state), sum(action), sum(reward))`` (see ``hfrl.backends.fingerprint``)."""
        return self.statistics().fingerprint()

    # ------------------------------------------------------------------ rows
    def frame(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """The rows in memory, validated columns in canonical dtypes (ids int64, numbers float64)."""
        from hfrl.data.validation import canonical

        wanted = list(self.columns) if columns is None else list(columns)
        self.require(*wanted)
        if isinstance(self.source, pd.DataFrame):
            frame = self.source[wanted]
        else:
            frame = read_frame(self.source, wanted)
        return canonical(frame)


    def batches(self, columns: Iterable[str], batch_rows: int = 1 << 16) -> Iterator[pd.DataFrame]:
        """The rows in order, ``batch_rows`` at a time (canonical dtypes), for work that needs rows
        but not all of them at once (scoring a contextual policy on a file larger than memory)."""
        from hfrl.data.validation import canonical

        wanted = list(columns)
        self.require(*wanted)
        if isinstance(self.source, pd.DataFrame):
            for start in range(0, len(self.source), batch_rows):
                yield canonical(self.source[wanted].iloc[start:start + batch_rows])
        else:
            for batch in read_batches(self.source, wanted, batch_rows):
                yield canonical(batch)


def as_logs(
    logs: LogSource | Logs,
    backend: str | Backend | None = None,
    **options: Any,
) -> Logs:
    """``logs`` as a validated ``Logs`` (validated now, unless it already is one).

    ``options`` are those of ``Logs.open``. A ``Logs`` is returned as it is; bounds given in
    ``options`` are then checked against its proof, and ``required`` columns against its columns.
    """
    if isinstance(logs, Logs):
        if options.get("columns"):
            raise ValueError("these Logs are already open with the schema's column names; map columns "
                             "once, in Logs.open(..., columns=)")
        if backend is not None and not isinstance(backend, Backend) and backend != logs.backend.name:
            raise ValueError(
                f"these Logs were opened on the {logs.backend.name!r} backend; open them with "
                f"backend={backend!r} instead of passing backend= here")
        logs.require(*options.get("required", ()), hints=options.get("hints"))
        logs.require_ids(options.get("n_states"), options.get("n_actions"))
        declared = _check_reward_range(options.get("reward_range"))
        if declared is not None and declared != logs.proof.reward_declared:
            raise ValueError(
                f"reward_range={declared} differs from the one these Logs were opened with "
                f"({logs.proof.reward_declared}); declare it once, in Logs.open")
        return logs
    return Logs.open(logs, backend, **options)


def with_schema_names(logs: LogSource, columns: Mapping[str, str], name: str | None = None) -> pd.DataFrame:
    """The rows with the schema's column names, from logs that store them under other names.

    ``columns`` maps a schema column (``state``, ``action``, ``reward``, ``propensity``, ...) to
    the stored column that holds it. The stored column stays as it is and the schema column is
    added as a copy (a stored column already named like a mapped schema column is replaced); a
    file is read into memory for this (rename the columns in the files to keep them out of core).

    Raises
    ------
    ValueError
        A key that is not a schema column, or two schema columns mapped to one stored column.
    LogValidationError
        A mapped column the logs do not have (the message lists the columns they have).

    Examples
    --------
    >>> import pandas as pd
    >>> obd = pd.DataFrame({"position": [1, 2], "item_id": [3, 0], "click": [0, 1],
    ...                     "propensity_score": [0.0125, 0.0125]})
    >>> mapping = {"state": "position", "action": "item_id", "reward": "click",
    ...            "propensity": "propensity_score"}
    >>> list(with_schema_names(obd, mapping).columns)
    ['position', 'item_id', 'click', 'propensity_score', 'state', 'action', 'reward', 'propensity']
    """
    known = schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS
    mapping = {str(k): str(v) for k, v in columns.items() if v is not None and str(v) != str(k)}
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise ValueError(f"cannot map {unknown[0]!r}: the log schema's columns are {', '.join(known)}")
    shared = [v for v in set(mapping.values()) if list(mapping.values()).count(v) > 1]
    if shared:
        both = [k for k, v in mapping.items() if v == shared[0]]
        raise ValueError(f"column {shared[0]!r} is mapped to both {both[0]!r} and {both[1]!r}")
    frame = logs if isinstance(logs, pd.DataFrame) else read_frame(logs)
    present = [str(c) for c in frame.columns]
    for key, stored in mapping.items():
        if stored not in present:
            raise LogValidationError(
                f"column {stored!r} (given for {key!r}) is not in the logs; they have "
                + ", ".join(repr(c) for c in present), column=stored, source=name)
    renamed = frame.drop(columns=[k for k in mapping if k in present])
    for key, stored in mapping.items():
        renamed[key] = frame[stored].array
    return renamed


def _refuse_huge_tables(backend: Backend, logs: LogSource, proof: LogProof, n_states: int | None,
                        n_actions: int | None, name: str | None, max_cells: int = MAX_TABLE_CELLS,
                        max_ids: int | None = None) -> None:
    """Refuse ids whose table (``n_states x n_actions`` cells) would exceed ``max_cells``, or whose
    count of one kind would exceed ``max_ids``."""
    cells = proof.n_states * proof.n_actions
    longest = max(proof.n_states, proof.n_actions)
    if cells <= max_cells and (max_ids is None or longest <= max_ids):
        return
    label = "action" if proof.n_actions >= proof.n_states else "state"
    if (n_actions if label == "action" else n_states) is not None:  # the size was asked for
        ids = f" and at most {max_ids:,} ids of a kind" if max_ids is not None else ""
        raise LogValidationError(
            f"n_states x n_actions = {proof.n_states:,} x {proof.n_actions:,} = {cells:,} cells; hfrl's "
            f"tables hold at most {max_cells:,}{ids}", source=name)
    other = proof.n_states if label == "action" else proof.n_actions
    limit = max(max_cells // other, 1)
    if max_ids is not None:
        limit = min(limit, max_ids)
    candidates = [A] if label == "action" else [c for c in (S, schema.NEXT_STATE) if c in proof.columns]
    expected = (f"a dense {label} id below {limit:,}: ids index tables of n_states x n_actions cells (at "
                f"most {max_cells:,}); map raw ids to 0..n-1 with hfrl.data.CategoryEncoder")
    rules = [Rule(column, expected, f"finite(cast_double({column})) * (cast_double({column}) >= {limit})")
             for column in candidates]
    totals = backend.group_sums(logs, [], {f"rule{i}": r.bad for i, r in enumerate(rules)}).iloc[0]
    rule, count = max(((r, int(round(float(totals[f"rule{i}"])))) for i, r in enumerate(rules)),
                      key=lambda pair: pair[1])
    raise offending_rows_error(backend, logs, rule, count, proof.n_rows, name)


def _refuse_text(backend: Backend, logs: LogSource, ranges: pd.DataFrame, name: str | None,
                 columns: Iterable[str] = (S, A, R, P, schema.NEXT_STATE, schema.POSITION, schema.WEIGHT,
                                           schema.CASCADE_PROPENSITY, schema.SLATE_PROPENSITY)
                 ) -> None:
    """Ids and numbers stored as text are refused (order and sums would be wrong), though each parses."""
    for column in columns:
        if column not in ranges.index or ranges.loc[column, "kind"] != "other":
            continue
        numbers = column in (R, P, schema.WEIGHT, schema.CASCADE_PROPENSITY, schema.SLATE_PROPENSITY)
        value = backend.value_at(logs, column, 0)
        advice = "" if numbers else " (raw categories become ids with hfrl.data.CategoryEncoder)"
        raise LogValidationError(
            f"column {column!r} holds {'numbers' if numbers else 'integer ids'} stored as text (row 0 "
            f"has {format_value(value)}); store the column as numbers{advice}",
            column=column, first_row=0, source=name,
        )


def _proof(ranges: pd.DataFrame, columns: list[str], n_rows: int, n_states: int | None,
           n_actions: int | None, declared: tuple[float, float] | None, time_kind: str) -> LogProof:
    def span(column: str) -> tuple[float, float]:
        return float(ranges.loc[column, "min"]), float(ranges.loc[column, "max"])

    max_state = span(S)[1] if S in ranges.index else 0.0  # contextual logs may have no state column
    if schema.NEXT_STATE in ranges.index and math.isfinite(ranges.loc[schema.NEXT_STATE, "max"]):
        max_state = max(max_state, span(schema.NEXT_STATE)[1])
    observed = span(R) if R in ranges.index else (0.0, 0.0)
    kind = "float"
    if R in ranges.index and ranges.loc[R, "kind"] in ("integer", "bool"):
        kind = "binary" if observed[0] >= 0 and observed[1] <= 1 else "integer"
    time_range = None  # unknown for text times, which statistics cannot order
    if schema.TIMESTAMP in ranges.index and all(math.isfinite(t) for t in span(schema.TIMESTAMP)):
        time_range = span(schema.TIMESTAMP)
    return LogProof(
        n_rows=n_rows,
        columns=tuple(columns),
        n_states=n_states if n_states is not None else int(max_state) + 1,
        n_actions=n_actions if n_actions is not None else int(span(A)[1]) + 1,
        reward_observed=observed,
        reward_declared=declared,
        reward_kind=kind,
        propensity_range=span(P) if P in ranges.index else None,
        time_range=time_range,
        time_kind=time_kind,
    )


def _distinct_atoms(logs: Logs) -> Atoms:
    """Group the rows by ``(state, action, reward, propensity)`` where they lie."""
    columns = [S, A, R] + ([P] if logs.has(P) else [])
    backend = logs.backend
    if backend.name in ("duckdb", "spark"):
        quote = (lambda c: f"`{c}`") if backend.name == "spark" else (lambda c: f'"{c}"')
        listed = ", ".join(quote(c) for c in columns)
        grouped = backend.query(f"SELECT {listed}, count(*) AS n FROM {{logs}} GROUP BY {listed}",  # type: ignore[attr-defined]
                                logs.source).sort_values(columns, kind="stable")
        values = {c: grouped[c].to_numpy(np.float64) for c in columns}
        count = grouped["n"].to_numpy(np.float64)
    else:
        frame = logs.frame(columns)
        size = frame.groupby(columns, sort=True).size()
        values = {c: size.index.get_level_values(c).to_numpy(np.float64) for c in columns}
        count = size.to_numpy(np.float64)
    return Atoms(
        state=values[S].astype(np.int64), action=values[A].astype(np.int64), reward=values[R],
        propensity=values[P] if P in values else np.ones_like(values[R]), count=count,
    )
