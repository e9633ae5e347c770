"""The Open Bandit Dataset (ZOZOTOWN fashion recommendations) read into the hfrl log schema.

Layout (the small sample shipped with Open Bandit Pipeline and the full ~26M-row release alike)::

    {path}/{behavior_policy}/{campaign}/{campaign}.csv        # one row per impression
    {path}/{behavior_policy}/{campaign}/item_context.csv      # one row per item

``behavior_policy`` is ``random`` (uniform random logging) or ``bts`` (Bernoulli Thompson
sampling); ``campaign`` is ``all``, ``men`` or ``women``. Files are read and validated by DuckDB,
which reads only the columns asked for, so the full release (too large for pandas in 24 GB with
its 80 affinity columns) can be read on one machine. ``load_obd`` without feature columns
returns about 50 bytes a row and peaks at about 350 bytes a row while DuckDB stages the core
columns (measured: 670 MB for 1M rows; so about 4 GB for the 12M rows of ``bts/all``).
``iter_obd`` yields the rows in chunks, and ``export_obd`` writes them to Parquet without holding
them in pandas; the affinity columns are never staged, only streamed.

Mapping: ``action`` = ``item_id``, ``reward`` = ``click`` (float), ``propensity`` =
``propensity_score``, ``position`` as in the file (1-based), ``timestamp`` parsed to UTC, ``state``
= the four user features (optionally with ``position``) encoded by a ``CategoryEncoder`` whose ids
follow the order of first appearance in the file; the encoder travels in
``frame.attrs["state_encoder"]`` (its ``to_dict()``), so that a policy can carry it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import CategoryEncoder, schema
from hfrl.errors import LogValidationError

__all__ = [
    "affinity_columns",
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "ITEM_FEATURE_COLUMNS",
    "LOG_COLUMNS",
    "USER_FEATURE_COLUMNS",
    "bts_action_distribution",
    "export_obd",
    "iter_obd",
    "load_obd",
    "obd_files",
]

BEHAVIOR_POLICIES: tuple[str, ...] = ("random", "bts")
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
USER_FEATURE_COLUMNS: tuple[str, ...] = tuple(f"user_feature_{i}" for i in range(4))
ITEM_FEATURE_COLUMNS: tuple[str, ...] = tuple(f"item_feature_{i}" for i in range(4))
#: The columns every OBD log file has besides the unnamed index and the affinities.
LOG_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "item_id",
    "position",
    "click",
    "propensity_score",
    *USER_FEATURE_COLUMNS,
)
_SEPARATOR = "\x1f"  # CategoryEncoder's key separator: ids built here equal CategoryEncoder.fit's
_MISSING = "<NA>"  # CategoryEncoder's spelling of a missing value


def affinity_columns(n_items: int = 80) -> tuple[str, ...]:
    """The user-item affinity column names of a campaign with ``n_items`` items.

    Examples
    --------
    >>> affinity_columns(34)[-1]
    'user-item_affinity_33'
    """
    return tuple(f"user-item_affinity_{i}" for i in range(n_items))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def obd_files(
    path: str | PathLike[str], behavior_policy: str = "random", campaign: str = "all"
) -> tuple[Path, Path]:
    """The log file and the item-context file of one policy and campaign.

    Parameters
    ----------
    path : str or PathLike
        The dataset's root directory (the one holding ``random/`` and ``bts/``).
    behavior_policy : {"random", "bts"}
    campaign : {"all", "men", "women"}

    Returns
    -------
    (Path, Path)
        ``{path}/{behavior_policy}/{campaign}/{campaign}.csv`` and the ``item_context.csv`` next to
        it (which need not exist).

    Raises
    ------
    LogValidationError
        For an unknown policy or campaign, or when the log file is missing.

    Examples
    --------
    >>> obd_files("obd", "bts", "men")
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: obd/bts/men/men.csv: missing file: ...
    """
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise LogValidationError(
            f"unknown behavior_policy {behavior_policy!r}: expected one of {list(BEHAVIOR_POLICIES)}"
        )
    if campaign not in CAMPAIGNS:
        raise LogValidationError(f"unknown campaign {campaign!r}: expected one of {list(CAMPAIGNS)}")
    folder = Path(path) / behavior_policy / campaign
    log_file = folder / f"{campaign}.csv"
    if not log_file.is_file():
        raise LogValidationError(
            "missing file: expected the Open Bandit Dataset layout "
            "{path}/{behavior_policy}/{campaign}/{campaign}.csv "
            "(run `hfrl datasets obd --out DIR` to fetch the small sample)",
            source=str(log_file),
        )
    return log_file, folder / "item_context.csv"


def _connect() -> Any:
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET enable_progress_bar = false")
    connection.execute("SET preserve_insertion_order = true")  # a staged table's rowid = file row
    return connection


def _header(connection: Any, file: Path) -> list[str]:
    """The column names on the first line of a CSV file (the unnamed index column is ``""``)."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            first = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LogValidationError(f"cannot read the header line: {exc}", source=str(file)) from exc
    if not first:
        raise LogValidationError("the file is empty: no header line", source=str(file))
    return first


def _scan(file: Path, header: Sequence[str], types: dict[str, str]) -> str:
    """``read_csv`` of an OBD file without sniffing: comma-separated, double-quoted, this header.

    Every column is read as ``types.get(name, "VARCHAR")``; the unnamed index column is
    ``column00`` as DuckDB would call it.
    """
    names = [name if name else f"column{i:02d}" for i, name in enumerate(header)]
    columns = ", ".join(f"{_literal(n)}: '{types.get(n, 'VARCHAR')}'" for n in names)
    return (
        f"read_csv({_literal(str(file))}, auto_detect = false, header = true, delim = ',', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}})"
    )


def _require(columns: Sequence[str], present: Sequence[str], file: Path, what: str) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise LogValidationError(
            f"missing column(s) {missing} ({what}); the file has {len(present)} columns: "
            f"{list(present)[:12]}{' ...' if len(present) > 12 else ''}",
            column=missing[0],
            source=str(file),
        )


# (file column, the condition that makes its raw text {v} bad, what was expected); {d} is {v} as a number.
_CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "item_id",
        "{d} IS NULL OR NOT isfinite({d}) OR {d} <> floor({d}) OR {d} < 0{item_bound}",
        "an item id: an integer in [0, {n_items})",
    ),
    ("position", "{d} IS NULL OR NOT isfinite({d}) OR {d} <> floor({d}) OR {d} < 1",
     "a position: an integer >= 1"),
    ("click", "{d} IS NULL OR {d} NOT IN (0, 1)", "a click: 0 or 1"),
    (
        "propensity_score",
        "{d} IS NULL OR NOT isfinite({d}) OR {d} <= 0 OR {d} > 1",
        "a propensity in (0, 1]",
    ),
    ("timestamp", "TRY_CAST({v} AS TIMESTAMPTZ) IS NULL", "a parseable date-time"),
)


class _Staged:
    """One validated, state-encoded pass over an OBD file: DuckDB temp table ``obd_mapped``.

    ``obd_mapped`` holds the mapped core columns (and item features) in file order; the wide
    feature columns are read by ``select_sql`` in a second scan, joined by position.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        behavior_policy: str,
        campaign: str,
        state_columns: Sequence[str],
        include_user_features: bool,
        include_affinities: bool,
        include_item_features: bool,
    ) -> None:
        self.log_file, self.item_file = obd_files(path, behavior_policy, campaign)
        self.behavior_policy, self.campaign = behavior_policy, campaign
        self.state_columns = list(state_columns)
        if not self.state_columns:
            raise LogValidationError("state_columns must name at least one column")
        self.connection = _connect()
        header = self.header = _header(self.connection, self.log_file)
        _require(LOG_COLUMNS, header, self.log_file, "the Open Bandit Dataset log columns")
        _require(self.state_columns, header, self.log_file, "asked for by state_columns")

        self.n_items: int | None = None
        item_columns: list[str] = []
        if self.item_file.is_file():
            item_header = _header(self.connection, self.item_file)
            needed = ["item_id", *(ITEM_FEATURE_COLUMNS if include_item_features else ())]
            _require(needed, item_header, self.item_file, "the item context columns")
            self.n_items = int(
                self.connection.execute(
                    f"SELECT count(*) FROM read_csv({_literal(str(self.item_file))}, header = true)"
                ).fetchone()[0]
            )
            item_columns = list(ITEM_FEATURE_COLUMNS) if include_item_features else []
        elif include_item_features:
            raise LogValidationError(
                "missing file: include_item_features=True needs item_context.csv next to the logs",
                source=str(self.item_file),
            )

        self.affinity_columns = [c for c in header if c.startswith("user-item_affinity_")]
        if include_affinities and not self.affinity_columns:
            raise LogValidationError(
                "include_affinities=True but the file has no user-item_affinity_* columns",
                column="user-item_affinity_0",
                source=str(self.log_file),
            )
        self.feature_columns = [
            *(USER_FEATURE_COLUMNS if include_user_features else ()),
            *(self.affinity_columns if include_affinities else ()),
        ]
        self.item_columns = item_columns
        self._stage()
        self._validate()
        self._encode()

    def _stage(self) -> None:
        import duckdb

        key_parts = ", ".join(
            f"coalesce(CAST({_ident(c)} AS VARCHAR), {_literal(_MISSING)})" for c in self.state_columns
        )
        sql = (
            "CREATE TEMP TABLE obd AS SELECT "
            + ", ".join(_ident(c) for c in LOG_COLUMNS)
            + f", concat_ws({_literal(_SEPARATOR)}, {key_parts}) AS state_key "
            f"FROM {_scan(self.log_file, self.header, {})}"
        )
        try:
            self.connection.execute(sql)
        except duckdb.Error as exc:
            raise LogValidationError(f"cannot read the file: {exc}", source=str(self.log_file)) from exc
        self.n_rows = int(self.connection.execute("SELECT count(*) FROM obd").fetchone()[0])
        if self.n_rows == 0:
            raise LogValidationError("the logs are empty (0 rows)", count=0, source=str(self.log_file))

    def _validate(self) -> None:
        bound = " OR {d} >= " + str(self.n_items) if self.n_items is not None else ""
        n_items = self.n_items if self.n_items is not None else "n_items"
        selects = []
        for column, condition, _ in _CHECKS:
            raw = _ident(column)
            number = f"TRY_CAST({raw} AS DOUBLE)"
            bad = "(" + condition.replace("{item_bound}", bound).format(v=raw, d=number) + ")"
            selects.append(
                f"count(*) FILTER (WHERE {bad}), min(rowid) FILTER (WHERE {bad}), "
                f"arg_min({raw}, rowid) FILTER (WHERE {bad})"
            )
        result = self.connection.execute("SELECT " + ", ".join(selects) + " FROM obd").fetchone()
        for index, (column, _, expected) in enumerate(_CHECKS):
            count, first, value = result[3 * index : 3 * index + 3]
            if count:
                expected = expected.format(n_items=n_items)
                raise LogValidationError(
                    f"column {column!r}: row {first} (line {first + 2} of the file) has {value!r}, "
                    f"expected {expected}; {count} of {self.n_rows} rows offend",
                    column=column,
                    first_row=int(first),
                    count=int(count),
                    source=str(self.log_file),
                )
        if self.n_items is None:
            self.n_items = int(
                self.connection.execute("SELECT max(CAST(item_id AS DOUBLE)) FROM obd").fetchone()[0]
            ) + 1

    def _encode(self) -> None:
        categories = self.connection.execute(
            "SELECT state_key, min(rowid) AS first_row FROM obd GROUP BY state_key ORDER BY first_row"
        ).fetchnumpy()["state_key"]
        self.encoder = CategoryEncoder.from_dict(
            {"columns": self.state_columns, "handle_unknown": "bucket", "categories": list(categories)}
        )
        frame = pd.DataFrame(
            {"state_key": np.asarray(categories, dtype=object), "state": np.arange(len(categories))}
        )
        self.connection.register("obd_states", frame)
        items = join_items = ""
        if self.item_columns:
            items = "".join(f", items.{_ident(c)}" for c in self.item_columns)
            join_items = (
                f" LEFT JOIN (SELECT * FROM read_csv({_literal(str(self.item_file))}, header = true)) "
                "AS items ON items.item_id = CAST(CAST(obd.item_id AS DOUBLE) AS BIGINT)"
            )
        # the mapped core columns in file order; the wide feature columns are never staged
        self.connection.execute(
            f"CREATE TEMP TABLE obd_mapped AS SELECT CAST(s.state AS BIGINT) AS {schema.STATE}, "
            f"CAST(CAST(obd.item_id AS DOUBLE) AS BIGINT) AS {schema.ACTION}, "
            f"CAST(obd.click AS DOUBLE) AS {schema.REWARD}, "
            f"CAST(obd.propensity_score AS DOUBLE) AS {schema.PROPENSITY}, "
            f"CAST(CAST(obd.position AS DOUBLE) AS BIGINT) AS {schema.POSITION}, "
            f"CAST(obd.timestamp AS TIMESTAMPTZ) AS {schema.TIMESTAMP}{items} "
            f"FROM obd JOIN obd_states AS s USING (state_key){join_items} ORDER BY obd.rowid"
        )
        self.connection.execute("DROP TABLE obd")

    def select_sql(self) -> str:
        """The mapped rows in file order; feature columns come from a second scan, by position."""
        if not self.feature_columns:
            return "SELECT * FROM obd_mapped"
        features = ", ".join(_ident(c) for c in self.feature_columns)
        types = {c: "DOUBLE" for c in self.affinity_columns}
        return (
            f"SELECT * FROM obd_mapped POSITIONAL JOIN "
            f"(SELECT {features} FROM {_scan(self.log_file, self.header, types)})"
        )

    def fetch(self, how: str, *args: Any) -> Any:
        """Run ``select_sql`` (``how``: "df", "pending" or "copy"), naming the file on errors."""
        import duckdb

        try:
            if how == "df":
                return self.connection.execute(self.select_sql()).df()
            if how == "pending":
                return self.connection.execute(self.select_sql())
            copy = f"COPY ({self.select_sql()}) TO {_literal(args[0])} (FORMAT parquet)"
            return self.connection.execute(copy)
        except duckdb.Error as exc:
            raise LogValidationError(f"cannot read the file: {exc}", source=str(self.log_file)) from exc

    def attrs(self) -> dict[str, Any]:
        return {
            "state_encoder": self.encoder.to_dict(),
            "n_states": self.encoder.n_ids,
            "n_actions": int(self.n_items or 0),
            "behavior_policy": self.behavior_policy,
            "campaign": self.campaign,
            "source": str(self.log_file),
        }

    def close(self) -> None:
        self.connection.close()


def _as_list(state_columns: Sequence[str] | str) -> list[str]:
    if isinstance(state_columns, str):
        state_columns = [state_columns]
    return list(state_columns)


def load_obd(
    path: str | PathLike[str],
    behavior_policy: str = "random",
    campaign: str = "all",
    *,
    state_columns: Sequence[str] = USER_FEATURE_COLUMNS,
    include_user_features: bool = False,
    include_affinities: bool = False,
    include_item_features: bool = False,
) -> pd.DataFrame:
    """Read one policy's and campaign's Open Bandit Dataset logs into the hfrl log schema.

    Parameters
    ----------
    path : str or PathLike
        The dataset's root directory (holding ``random/`` and ``bts/``).
    behavior_policy : {"random", "bts"}
        The logging policy: uniform random or Bernoulli Thompson sampling.
    campaign : {"all", "men", "women"}
    state_columns : sequence of str
        File columns whose value combination is the state; default the four user features. Add
        ``"position"`` to make the state (user features x position).
    include_user_features : bool
        Keep the raw (hashed) ``user_feature_0..3`` columns.
    include_affinities : bool
        Keep the ``user-item_affinity_*`` columns (float; 80 columns: 640 bytes a row).
    include_item_features : bool
        Join ``item_feature_0..3`` from ``item_context.csv`` on the row's item.

    Returns
    -------
    DataFrame
        One row per row of the file, in the file's order: ``state`` (int64), ``action``
        (= ``item_id``, int64), ``reward`` (= ``click``, float64), ``propensity``
        (= ``propensity_score``), ``position`` (int64, 1-based as in the file), ``timestamp``
        (UTC), then the requested feature columns. ``attrs`` holds ``state_encoder`` (the
        ``CategoryEncoder.to_dict()`` whose ids are the states; unseen contexts map to its unknown
        bucket), ``n_states`` (including that bucket), ``n_actions`` (items in ``item_context.csv``),
        ``behavior_policy``, ``campaign`` and ``source``.

    Raises
    ------
    LogValidationError
        Unknown policy or campaign, a missing file, a missing column, or a bad value (item id,
        position, click, propensity outside (0, 1], unparseable timestamp), naming the file, the
        column and the first offending row.

    Notes
    -----
    Memory: the frame holds about 50 bytes a row without feature columns (+ 8 per affinity
    column); the peak while loading is about 350 bytes a row (DuckDB stages the core columns as
    text). For the full release with affinities use ``iter_obd`` or ``export_obd``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "random" / "all").mkdir(parents=True)
    >>> _ = (root / "random" / "all" / "all.csv").write_text(
    ...     ",timestamp,item_id,position,click,propensity_score,"
    ...     "user_feature_0,user_feature_1,user_feature_2,user_feature_3\\n"
    ...     "0,2019-11-24 00:00:01+00:00,3,1,0,0.0125,a,b,c,d\\n"
    ...     "1,2019-11-24 00:00:02+00:00,7,2,1,0.0125,e,b,c,d\\n")
    >>> logs = load_obd(root)
    >>> logs[["state", "action", "reward", "propensity", "position"]].values.tolist()
    [[0.0, 3.0, 0.0, 0.0125, 1.0], [1.0, 7.0, 1.0, 0.0125, 2.0]]
    >>> logs.attrs["n_states"]  # two contexts seen plus the unknown bucket
    3
    """
    staged = _Staged(
        path,
        behavior_policy,
        campaign,
        _as_list(state_columns),
        include_user_features,
        include_affinities,
        include_item_features,
    )
    try:
        frame = staged.fetch("df")
    finally:
        staged.close()
    frame[schema.TIMESTAMP] = _utc(frame[schema.TIMESTAMP])
    frame.attrs.update(staged.attrs())
    return frame


def _utc(values: pd.Series) -> pd.Series:
    if values.dt.tz is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def iter_obd(
    path: str | PathLike[str],
    behavior_policy: str = "random",
    campaign: str = "all",
    *,
    chunk_rows: int = 1_000_000,
    state_columns: Sequence[str] = USER_FEATURE_COLUMNS,
    include_user_features: bool = False,
    include_affinities: bool = False,
    include_item_features: bool = False,
) -> Iterator[pd.DataFrame]:
    """``load_obd`` in chunks of at most ``chunk_rows`` rows, in file order.

    The whole file is validated and the states encoded before the first chunk is yielded, so
    every chunk uses the same state ids and carries the same ``attrs``. Peak memory is one chunk
    plus DuckDB's staging (which spills to disk when large).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "random" / "all"
    >>> root.mkdir(parents=True)
    >>> _ = (root / "all.csv").write_text(
    ...     ",timestamp,item_id,position,click,propensity_score,"
    ...     "user_feature_0,user_feature_1,user_feature_2,user_feature_3\\n"
    ...     + "".join(f"{i},2019-11-24 00:00:0{i}+00:00,{i},1,0,0.0125,a,b,c,{i % 2}\\n" for i in range(5)))
    >>> [len(chunk) for chunk in iter_obd(root.parent.parent, chunk_rows=2)]
    [2, 2, 1]
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    staged = _Staged(
        path,
        behavior_policy,
        campaign,
        _as_list(state_columns),
        include_user_features,
        include_affinities,
        include_item_features,
    )
    try:
        result = staged.fetch("pending")
        attrs = staged.attrs()
        vectors = max(1, -(-chunk_rows // 2048))  # DuckDB hands out rows in vectors of 2048
        pending: list[pd.DataFrame] = []
        pending_rows = 0
        for frame in _frames(result, vectors, staged.log_file):
            pending.append(frame)
            pending_rows += len(frame)
            while pending_rows >= chunk_rows:
                joined = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
                yield _chunk(joined.iloc[:chunk_rows].reset_index(drop=True), attrs)
                rest = joined.iloc[chunk_rows:].reset_index(drop=True)
                pending, pending_rows = ([rest] if len(rest) else []), len(rest)
        if pending_rows:
            yield _chunk(pd.concat(pending, ignore_index=True), attrs)
    finally:
        staged.close()


def _frames(result: Any, vectors: int, log_file: Path) -> Iterator[pd.DataFrame]:
    """DataFrames of ``vectors`` x 2048 rows from a pending DuckDB result; errors name the file."""
    import duckdb

    while True:
        try:
            frame = result.fetch_df_chunk(vectors)
        except duckdb.Error as exc:
            raise LogValidationError(f"cannot read the file: {exc}", source=str(log_file)) from exc
        if len(frame) == 0:
            return
        yield frame


def _chunk(frame: pd.DataFrame, attrs: dict[str, Any]) -> pd.DataFrame:
    frame[schema.TIMESTAMP] = _utc(frame[schema.TIMESTAMP])
    frame.attrs.update(attrs)
    return frame


def export_obd(
    path: str | PathLike[str],
    out: str | PathLike[str],
    behavior_policy: str = "random",
    campaign: str = "all",
    *,
    state_columns: Sequence[str] = USER_FEATURE_COLUMNS,
    include_user_features: bool = False,
    include_affinities: bool = False,
    include_item_features: bool = False,
) -> Path:
    """Write the mapped logs to a Parquet file (out of core) and the encoder next to it.

    The Parquet file has the columns of ``load_obd``; ``{out}.json`` holds the ``attrs``
    (``state_encoder``, ``n_states``, ``n_actions``, ...). Any hfrl function that takes a path
    (``HistoricalFrequency.fit``, the backends) then reads it through DuckDB without pandas.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "bts" / "all").mkdir(parents=True)
    >>> _ = (root / "bts" / "all" / "all.csv").write_text(
    ...     ",timestamp,item_id,position,click,propensity_score,"
    ...     "user_feature_0,user_feature_1,user_feature_2,user_feature_3\\n"
    ...     "0,2019-11-24 00:00:01+00:00,3,1,0,0.5,a,b,c,d\\n")
    >>> export_obd(root, root / "bts.parquet", "bts").name
    'bts.parquet'
    """
    staged = _Staged(
        path,
        behavior_policy,
        campaign,
        _as_list(state_columns),
        include_user_features,
        include_affinities,
        include_item_features,
    )
    target = Path(out)
    try:
        staged.fetch("copy", str(target))
        Path(str(target) + ".json").write_text(json.dumps(staged.attrs(), indent=1))
    finally:
        staged.close()
    return target


def bts_action_distribution(
    alpha: Sequence[float] | np.ndarray,
    beta: Sequence[float] | np.ndarray,
    *,
    n_positions: int = 3,
    n_samples: int = 100_000,
    random_state: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Bernoulli Thompson sampling's probability of showing each item at each position.

    Each round BTS draws one Beta(alpha_i, beta_i) sample per item and shows the items with the
    ``n_positions`` largest draws, in that order. This returns the Monte Carlo frequency of
    item ``i`` at position ``k`` over ``n_samples`` rounds: an ``(n_positions, n_items)`` array
    whose rows sum to 1 (the OBD's BTS policy is context-free, so this is its whole policy).

    Parameters
    ----------
    alpha, beta : array-like of shape (n_items,)
        The Beta parameters per item (``prior_bts.yaml`` of the Open Bandit Pipeline holds the
        production ones per campaign).
    n_positions : int, default 3
        Slate length.
    n_samples : int, default 100,000
        Monte Carlo rounds; the standard error of an entry ``p`` is ``sqrt(p (1 - p) / n_samples)``.
    random_state : int, Generator or None

    Returns
    -------
    ndarray of shape (n_positions, n_items)

    Raises
    ------
    ValueError
        Non-positive or mismatched parameters, or ``n_positions`` outside ``[1, n_items]``.

    Examples
    --------
    >>> table = bts_action_distribution([50, 1, 1], [1, 50, 50], n_positions=2, random_state=0)
    >>> table.shape, bool(table[0, 0] > 0.99), table.sum(axis=1).round(6).tolist()
    ((2, 3), True, [1.0, 1.0])
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.ndim != 1 or alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta must be 1-d of equal length, got {alpha.shape} and {beta.shape}")
    if not (np.all(alpha > 0) and np.all(beta > 0)):
        raise ValueError("alpha and beta must be positive")
    n_items = alpha.size
    if not 1 <= n_positions <= n_items:
        raise ValueError(f"n_positions must be in [1, {n_items}], got {n_positions}")
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(
        random_state
    )
    counts = np.zeros((n_positions, n_items), dtype=np.int64)
    batch = 10_000
    done = 0
    while done < n_samples:
        size = min(batch, n_samples - done)
        draws = rng.beta(alpha, beta, size=(size, n_items))
        top = np.argsort(-draws, axis=1, kind="stable")[:, :n_positions]
        for position in range(n_positions):
            counts[position] += np.bincount(top[:, position], minlength=n_items)
        done += size
    return counts / float(n_samples)
