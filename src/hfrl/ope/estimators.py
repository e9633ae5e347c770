"""Off-policy estimators of a target policy's value from logged bandit feedback.

Each estimator's per-row term is ``c_1 + c_r r + c_rp r/p + c_ip / p`` with coefficients that depend
only on the row's cell (state, action, propensity); see ``hfrl.ope.statistics``. An estimator is
therefore a few coefficient arrays, and its value, standard error and the Gram matrices used by
``hfrl.tune`` are sums over a small table of cells, whichever backend computed it.

Estimators (``r`` reward, ``p`` logged propensity, ``w = pi(a|s) / p``, ``q`` the reward model):

===============  ==========================================================================
``ips``          mean of ``w r``; standard error = sample std of the terms / sqrt(n)
``clipped_ips``  mean of ``min(w, clip_threshold) r``
``snips``        ``sum(w r) / sum(w)``; standard error by the delta method
``dm``           mean over rows of ``sum_a pi(a|s) q(s, a)``
``dr``           ``dm`` term + ``w (r - q(s, a))``
``switch_dr``    ``dr`` with the correction dropped where ``w > switch_threshold`` (the
                 form of Open Bandit Pipeline's SwitchDoublyRobust)
===============  ==========================================================================

The reward model of ``dm``/``dr``/``switch_dr`` is, by default, the shrunk mean reward per
``(state, action)``, ``q = (R_sa + k m) / (N_sa + k)`` with ``k = reward_prior`` and ``m`` the
global mean reward, **cross-fitted leave-one-out**: row ``i``'s term uses the model fit on all
rows but ``i`` (exact, from the same group sums). The shrinkage target ``m`` is the mean over all
rows (each row moves it by ``1/n``). Their standard errors use the influence function, which
includes the reward model's own noise (for DM and switched rows of Switch-DR it matters; for DR
it nearly cancels). Pass ``reward_model=`` a table fitted on a separate split
(``fit_reward_model(train_logs, ...)``) to use that instead; the standard errors then treat that
model as fixed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend, fingerprint, fingerprint_from_sums, get_backend
from hfrl.data import schema
from hfrl.data.io import LogSource, is_path, load_logs, resolve_files
from hfrl.data.validation import validate_logs
from hfrl.errors import LogValidationError
from hfrl.ope.statistics import (
    REWARD_SUMS,
    Cells,
    atom_cells,
    grouped_cells,
    reward_cells,
    row_cells,
    with_propensity,
)
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "PROPENSITY_ESTIMATORS",
    "LogStatistics",
    "SupportWarning",
    "evaluate",
    "fit_reward_model",
]

ESTIMATORS = ("ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")
PROPENSITY_ESTIMATORS = ("ips", "clipped_ips", "snips", "dr", "switch_dr")
MODEL_ESTIMATORS = ("dm", "dr", "switch_dr")
_S, _A, _R, _P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY
_BOOTSTRAP_CHUNK_BYTES = 64 * 2**20


class SupportWarning(UserWarning):
    """The target policy puts mass on actions the logging policy cannot take in a state (a proven
    support violation: bias), or most of its mass on pairs not seen in the rows (variance)."""


# ---------------------------------------------------------------------------------------------
# argument checks (the edge)


def check_estimators(estimators: str | Iterable[str]) -> tuple[str, ...]:
    """Lower-cased estimator names, or ValueError naming the unknown ones."""
    names = (estimators,) if isinstance(estimators, str) else tuple(estimators)
    names = tuple(str(n).lower() for n in names)
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {ESTIMATORS}")
    if len(set(names)) != len(names):
        raise ValueError(f"estimators has duplicates: {list(names)}")
    return names


def check_level(level: float) -> float:
    """A confidence level strictly between 0 and 1."""
    if not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def normal_quantile(level: float) -> float:
    """The two-sided normal critical value of ``level`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _check_positive(value: float, name: str) -> float:
    if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _fail_validation(logs: LogSource, columns: list[str], n_states: int | None, n_actions: int) -> None:
    """Re-run the canonical validation to raise its message (column, first row, count)."""
    if isinstance(logs, pd.DataFrame):
        validate_logs(logs[columns], n_states=n_states, n_actions=n_actions, required=columns)
    else:
        load_logs(logs, columns=columns, n_states=n_states, n_actions=n_actions, required=columns)
    raise LogValidationError(f"the logs' columns {columns} hold values outside the log schema")


def _integer_ok(values: np.ndarray, upper: int | None) -> bool:
    if values.dtype.kind in "iu":
        return bool(values.size == 0 or (values.min() >= 0 and (upper is None or values.max() < upper)))
    if values.dtype.kind != "f":
        return False
    if not np.isfinite(values).all() or (np.mod(values, 1.0) != 0).any():
        return False
    return bool(values.min() >= 0 and (upper is None or values.max() < upper))


def check_logs(
    logs: LogSource,
    backend: Backend,
    columns: list[str],
    n_states: int | None,
    n_actions: int | None,
) -> int:
    """Fast schema checks of the columns used; on failure raise the canonical validation error.

    ``n_states``/``n_actions`` None check only that ids are non-negative integers. Returns the
    number of rows.
    """
    if isinstance(logs, pd.DataFrame):
        missing = [c for c in columns if c not in logs.columns]
        if missing:
            raise LogValidationError(
                f"missing required column(s) {missing}; the logs have {list(logs.columns)}",
                column=missing[0],
            )
        if len(logs) == 0:
            raise LogValidationError("the logs are empty (0 rows)", count=0)
        ok = _integer_ok(logs[_S].to_numpy(), n_states) and _integer_ok(logs[_A].to_numpy(), n_actions)
        reward = logs[_R].to_numpy()
        ok = ok and reward.dtype.kind in "fiub" and bool(np.isfinite(reward.astype(np.float64)).all())
        if _P in columns:
            p = logs[_P].to_numpy()
            ok = ok and p.dtype.kind in "fiu" and bool(((p > 0) & (p <= 1)).all())
        if not ok:
            _fail_validation(logs, columns, n_states, n_actions)
        return len(logs)

    available = backend.columns(logs)
    missing = [c for c in columns if c not in available]
    if missing:
        raise LogValidationError(
            f"missing required column(s) {missing}; the logs have {available}",
            column=missing[0],
            source=str(logs) if is_path(logs) else None,
        )
    n_rows = backend.count(logs)
    if n_rows == 0:
        raise LogValidationError("the logs are empty (0 rows)", count=0)
    checks = {"reward_rows": f"{_R} * 0 + 1"}
    if _P in columns:
        checks.update({
            "propensity_rows": f"{_P} * 0 + 1 / {_P} * 0 + 1",
            "below_zero": f"least({_P}, 0)",
            "above_one": f"greatest({_P} - 1, 0)",
        })
    totals = backend.group_sums(logs, [], checks).iloc[0]
    ranges = backend.key_ranges(logs, [_S, _A])
    ok = totals["reward_rows"] == n_rows
    if _P in columns:
        ok = ok and totals["propensity_rows"] == n_rows and totals["below_zero"] == 0
        ok = ok and totals["above_one"] == 0
    ok = ok and ranges[_S][0] >= 0 and (n_states is None or ranges[_S][1] < n_states)
    ok = ok and ranges[_A][0] >= 0 and (n_actions is None or ranges[_A][1] < n_actions)
    if not ok:
        _fail_validation(logs, columns, n_states, n_actions)
    return n_rows


def missing_propensity_message(names: Sequence[str]) -> str:
    needing = [n for n in names if n in PROPENSITY_ESTIMATORS]
    return (
        f"the logs have no {_P!r} column, which estimator(s) {needing} need (only 'dm' does not); "
        "pass propensity='estimate' to estimate the logging policy as the smoothed frequency of "
        "actions per state, or evaluate with estimators=('dm',)"
    )


# ---------------------------------------------------------------------------------------------
# the sufficient statistics of a set of logs, computed once and shared


def _source_signature(logs: LogSource) -> tuple | None:
    """Files, sizes and modification times behind a local path (None for anything else)."""
    if not is_path(logs) or "://" in str(logs):
        return None
    try:
        files = resolve_files(logs)
        return tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)
    except (OSError, LogValidationError):
        return None


def _ranges_prove_valid(ranges: pd.DataFrame, columns: list[str]) -> bool:
    """True when column statistics alone show every row is in the log schema (ids without bounds)."""

    def numeric(column: str) -> bool:
        row = ranges.loc[column]
        return bool(row["kind"] in ("integer", "float", "bool") and row["nulls"] == 0
                    and np.isfinite(row["min"]) and np.isfinite(row["max"]))

    valid = True
    for column in (_S, _A):
        valid = valid and numeric(column) and ranges.loc[column, "kind"] == "integer"
        valid = valid and ranges.loc[column, "min"] >= 0
    valid = valid and numeric(_R)
    if _P in columns:
        valid = valid and numeric(_P) and ranges.loc[_P, "min"] > 0 and ranges.loc[_P, "max"] <= 1
    return bool(valid)


def _reward_kind(ranges: pd.DataFrame | None) -> str:
    if ranges is None or ranges.loc[_R, "kind"] not in ("integer", "bool"):
        return "float"
    if ranges.loc[_R, "min"] >= 0 and ranges.loc[_R, "max"] <= 1:
        return "binary"
    return "integer"


def _reward_range(logs: LogSource, engine: Backend, ranges: pd.DataFrame | None,
                  cells: Cells) -> tuple[float, float]:
    """The logged rewards' (min, max): from the column (a DataFrame), its statistics, or a bound."""
    if isinstance(logs, pd.DataFrame):
        reward = logs[_R].to_numpy().astype(np.float64, copy=False)
        return float(reward.min()), float(reward.max())
    if ranges is None:
        try:
            ranges = engine.column_ranges(logs, [_R])
        except NotImplementedError:
            ranges = None
    if ranges is not None and np.isfinite(ranges.loc[_R, "min"]) and np.isfinite(ranges.loc[_R, "max"]):
        return float(ranges.loc[_R, "min"]), float(ranges.loc[_R, "max"])
    # every |r| is at most the root of its cell's sum of squares
    bound = float(np.sqrt(cells.sums["r2"].max()))
    low = 0.0 if bool((cells.sums["r2"] == cells.sums["r"]).all()) else -bound  # 0/1 rewards
    return low, bound


@dataclass(eq=False)
class LogStatistics:
    """Validated per-``(state, action)`` sufficient statistics of one set of logs, from one pass.

    Every tabular estimator, the alpha curve and the paired comparison are computed from the
    per-cell sums ``n, r, r^2, 1/p, 1/p^2`` (see ``hfrl.ope.statistics``). ``LogStatistics.from_logs``
    computes them with ONE ``group_sums`` over the logs (the validation rides along: Parquet
    statistics prove the columns valid, or a counting scan runs, and only when something is wrong a
    second query finds the first offending row). Pass the object as ``statistics=`` to
    ``hfrl.ope.evaluate``, ``hfrl.ope.compare``, ``hfrl.tune.alpha_curve`` and
    ``hfrl.tune.tune_alpha`` with the same ``logs`` to skip their own pass; ``tune_alpha`` builds
    one itself for its curve and its final evaluation.

    Attributes
    ----------
    logs : DataFrame or path
        The logs the statistics were computed from (read again only for bootstrap atoms, or when
        propensities vary inside a ``(state, action)``).
    backend : Backend
        Where the pass ran.
    cells : Cells
        One cell per logged ``(state, action)``, sorted by state then action.
    has_propensity : bool
        Whether the propensity column was read (needed by every estimator but ``dm``).
    max_state, max_action : int
        The largest ids in the logs (a policy must cover them).
    fingerprint : tuple
        ``hfrl.backends.fingerprint`` of the logs (``(n_rows, sum(state), sum(action),
        sum(reward))``), from the same sums; ``tune_alpha`` compares it with HF's to detect leakage.
    reward_range : (float, float)
        The smallest and largest logged reward (from the column's statistics; a bound from the
        per-cell sums when a backend cannot give them), used by the standard-error floor.

    Notes
    -----
    A DataFrame must not be modified after the statistics were computed from it. Before the
    statistics are used, the logs are checked: the same DataFrame object passes; the same local
    files must keep their sizes and modification times; the same directory or object-store URL
    passes by its name; any other logs are compared by fingerprint (one cheap pass of totals).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hfrl.ope import LogStatistics, evaluate
    >>> logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 0.0, 1.0], "propensity": [0.5] * 4})
    >>> stats = LogStatistics.from_logs(logs)
    >>> stats.n_rows, stats.fingerprint
    (4, (4, 2, 2, 2.0))
    >>> from hfrl.policies import TabularPolicy
    >>> target = TabularPolicy(np.array([[0.9, 0.1], [0.1, 0.9]]))
    >>> evaluate(logs, target, ("ips", "snips"), statistics=stats)["estimate"].round(3).tolist()
    [0.9, 0.9]
    """

    logs: LogSource
    backend: Backend
    cells: Cells
    has_propensity: bool
    max_state: int
    max_action: int
    fingerprint: tuple
    signature: tuple | None = field(default=None, repr=False)
    _atoms: dict = field(default_factory=dict, repr=False)
    reward_range: tuple[float, float] = (0.0, 1.0)

    @property
    def n_rows(self) -> int:
        return self.cells.n_rows

    @classmethod
    def from_logs(
        cls,
        logs: LogSource,
        backend: str | Backend | None = None,
        *,
        propensity: bool | None = None,
    ) -> LogStatistics:
        """Validate ``logs`` and compute their statistics in one grouped pass.

        Parameters
        ----------
        logs : DataFrame or path/glob of CSV/Parquet files
            Columns ``state``, ``action``, ``reward`` and, for the propensity estimators,
            ``propensity``.
        backend : {"memory", "duckdb", "spark"}, Backend or None
            None picks memory for a DataFrame and DuckDB for a path.
        propensity : bool or None
            Read the propensity column (True: it must exist), do not (False: ``dm`` or estimated
            propensities only), or read it when present (None).

        Raises
        ------
        LogValidationError
            A missing column, no rows, or a value outside the log schema (naming the column, the
            first offending row and the count).
        """
        engine = get_backend(backend, logs)
        if not isinstance(logs, pd.DataFrame) and not is_path(logs):
            raise TypeError(f"logs must be a DataFrame or a path, got {type(logs).__name__}")
        present = list(logs.columns) if isinstance(logs, pd.DataFrame) else engine.columns(logs)
        if propensity is None:
            propensity = _P in present
        columns = [_S, _A, _R] + ([_P] if propensity else [])
        ranges = None
        if isinstance(logs, pd.DataFrame):
            check_logs(logs, engine, columns, None, None)
        else:
            missing = [c for c in columns if c not in present]
            if missing:
                raise LogValidationError(
                    f"missing required column(s) {missing}; the logs have {present}",
                    column=missing[0], source=str(logs),
                )
            try:
                ranges = engine.column_ranges(logs, columns)
            except NotImplementedError:
                ranges = None
            if ranges is None or not _ranges_prove_valid(ranges, columns):
                check_logs(logs, engine, columns, None, None)
                ranges = None
        cells = grouped_cells(logs, engine, "logged" if propensity else "none",
                              reward_kind=_reward_kind(ranges))
        if cells.n_cells == 0:
            raise LogValidationError("the logs are empty (0 rows)", count=0,
                                     source=str(logs) if is_path(logs) else None)
        used = ["n", "r", "r2"] + (["inv_p", "inv_p2"] if propensity else [])
        if not all(np.isfinite(cells.sums[name]).all() for name in used):
            # NaN hides from column statistics: count and name the offending rows (raises), or
            # the values are valid but their squares overflow
            check_logs(logs, engine, columns, None, None)
        n = cells.sums["n"]
        print_ = fingerprint_from_sums(
            float(n.sum()), float(cells.state @ n), float(cells.action @ n), float(cells.sums["r"].sum())
        )
        return cls(logs, engine, cells, bool(propensity), int(cells.state.max()), int(cells.action.max()),
                   print_, _source_signature(logs), reward_range=_reward_range(logs, engine, ranges, cells))

    def describes(self, logs: LogSource, backend: Backend | None = None) -> bool:
        """Whether these statistics were computed from ``logs`` (see Notes)."""
        if logs is self.logs:
            return True
        if is_path(logs) and is_path(self.logs) and str(logs) == str(self.logs):
            return _source_signature(logs) == self.signature
        engine = backend or get_backend(None, logs)
        return fingerprint(logs, engine) == self.fingerprint

    def check(self, logs: LogSource, backend: Backend, columns: list[str], n_states: int | None,
              n_actions: int, estimators: Sequence[str]) -> None:
        """Refuse statistics of other logs; check that the policy's shape covers the logged ids."""
        if not self.describes(logs, backend):
            raise ValueError(
                "statistics= were computed from other logs than the ones given (their fingerprints "
                "differ); compute them with LogStatistics.from_logs(logs) for these logs"
            )
        if _P in columns and not self.has_propensity:
            if _P not in (logs.columns if isinstance(logs, pd.DataFrame) else backend.columns(logs)):
                raise LogValidationError(missing_propensity_message(estimators), column=_P)
            raise ValueError(
                "statistics= were computed without the propensity column (propensity=False), which "
                f"estimator(s) {[e for e in estimators if e in PROPENSITY_ESTIMATORS]} need"
            )
        if (n_states is not None and self.max_state >= n_states) or self.max_action >= n_actions:
            _fail_validation(logs, columns, n_states, n_actions)


# ---------------------------------------------------------------------------------------------
# prepared logs: cells, reward model, propensities


def _dense(cells: Cells, values: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    key = cells.state * n_actions + cells.action
    return np.bincount(key, weights=values, minlength=n_states * n_actions).reshape(n_states, n_actions)


def _check_reward_model(model: Any, n_states: int, n_actions: int) -> np.ndarray:
    table = np.asarray(model, dtype=np.float64)
    if table.shape != (n_states, n_actions):
        raise ValueError(
            f"reward_model must be an (n_states, n_actions) = ({n_states}, {n_actions}) table, "
            f"got shape {table.shape}"
        )
    if not np.isfinite(table).all():
        raise ValueError("reward_model has a NaN or infinite entry")
    return table


@dataclass
class Target:
    """A target policy read at each cell: pi(a|s) of the cell's action and sum_a pi(a|s) q(s,a).

    The target's mass on ``(state, action)`` pairs absent from the rows (averaged over logged
    rows) is split in two (see ``support_known``): ``support_violation_share`` where the logging
    policy's support is known and excludes the pair (proven: importance weighting is biased
    there), ``unobserved_share`` elsewhere (the pair may have been possible, merely not drawn:
    variance, not bias).
    """

    action_probability: np.ndarray
    model_value: np.ndarray
    support_violation_share: float
    support_example: tuple[int, int] | None
    mass: np.ndarray | None = None  # (n_states, n_actions): sum over logged rows in s of pi(a|s)
    unobserved_share: float = 0.0
    unobserved_example: tuple[int, int] | None = None
    unseen_square: float = 0.0  # sum over logged rows of sum_a pi(a|s)^2 * unseen_scale(s, a)
    unseen_mass: float = 0.0  # sum over logged rows of sum_a pi(a|s) [unseen_scale(s, a) > 0]


# observed logging mass at or above which a state's support is taken as fully known
SUPPORT_MASS_TOLERANCE = 1e-6


def support_known(counts: np.ndarray, inverse_propensity_sums: np.ndarray | None,
                  propensity_mode: str) -> np.ndarray:
    """Per state: is the logging policy's support known, so that an unseen action is unsupported?

    With logged propensities, the distinct actions seen in a state carry ``sum_a p(a|s)`` of the
    logging policy's mass (``p`` per ``(s, a)`` is the harmonic mean ``N_sa / sum(1/p)``, the
    propensity itself when it is constant; when it varies it is at most the arithmetic mean, so
    the seen mass is never overstated). Only where that mass is ``>= 1 - 1e-6`` has every action
    the logging policy could take been seen; elsewhere an unseen action may simply not have been
    drawn (under uniform logging over 80 items, most are unseen in a small sample, yet IPS is
    unbiased). With estimated propensities the support IS the observed set (known everywhere);
    without propensities (``dm`` only) it is unknown everywhere.
    """
    n_states = counts.shape[0]
    if propensity_mode == "estimated":
        return np.ones(n_states, dtype=bool)
    if propensity_mode != "logged" or inverse_propensity_sums is None:
        return np.zeros(n_states, dtype=bool)
    return seen_logging_mass(counts, inverse_propensity_sums) >= 1.0 - SUPPORT_MASS_TOLERANCE


def seen_logging_mass(counts: np.ndarray, inverse_propensity_sums: np.ndarray) -> np.ndarray:
    """Per state, the logging policy's mass on the distinct actions seen there (see ``support_known``)."""
    seen = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        propensity = np.where(seen, counts / inverse_propensity_sums, 0.0)
    return propensity.sum(axis=1)


def unseen_weight_scale(counts: np.ndarray, inverse_propensity_sums: np.ndarray | None,
                        propensity_mode: str) -> np.ndarray:
    """Per ``(state, action)``: ``1 / (1 - seen mass)`` at pairs unseen in logged states whose
    support is not known, else 0. An unseen pair's propensity is at most the state's unseen mass,
    so a row of it would carry a weight of at least ``pi(a|s)`` times this (``event_weight``)."""
    scale = np.zeros(counts.shape)
    if propensity_mode != "logged" or inverse_propensity_sums is None:
        return scale
    mass = seen_logging_mass(counts, inverse_propensity_sums)
    open_states = (counts.sum(axis=1) > 0) & (mass < 1.0 - SUPPORT_MASS_TOLERANCE)
    scale[open_states] = 1.0 / (1.0 - mass[open_states, None])
    scale[counts > 0] = 0.0
    return scale


@dataclass
class Terms:
    """An estimator as coefficient arrays (4, n_cells) over the basis (1, r, r/p, 1/p).

    The estimate is ``sum(numerator) / sum(denominator)`` (denominator: the row count when None);
    ``spread``, when given, is the term whose variance gives the standard error (the direct
    method's and doubly robust estimators' influence, which includes the noise of a reward model
    fit on the same logs).
    """

    numerator: np.ndarray
    denominator: np.ndarray | None = None
    spread: np.ndarray | None = None


@dataclass
class Estimate:
    """An estimator's value and its influence terms (coefficients per cell; they sum to ~0)."""

    name: str
    estimate: float
    influence: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray | None
    diagnostics: dict[str, float] = field(default_factory=dict)
    linearised: bool = False
    se_floor: float = 0.0


@dataclass
class PreparedLogs:
    """Logs reduced to cells, with the reward model and propensities; reused across policies."""

    logs: LogSource
    backend: Backend
    cells: Cells
    n_states: int
    n_actions: int
    counts: np.ndarray
    reward_sums: np.ndarray
    reward_model: np.ndarray
    leave_one_out: bool
    reward_prior: float
    propensity_mode: str
    estimated_propensity: np.ndarray | None
    row_level: bool
    statistics: LogStatistics | None = None
    _atoms: Cells | None = None
    reward_range: tuple[float, float] = (0.0, 1.0)
    known_support: np.ndarray | None = None  # (n_states,) bool, see ``support_known``
    unseen_scale: np.ndarray | None = None  # (n_states, n_actions), see ``unseen_weight_scale``

    @property
    def n_rows(self) -> int:
        return self.cells.n_rows

    @property
    def propensity_source(self) -> str:
        return {"logged": "logged", "estimated": "estimated", "none": "none"}[self.propensity_mode]

    @property
    def reward_model_source(self) -> str:
        return "cross-fitted (leave-one-out)" if self.leave_one_out else "given"

    def atoms(self) -> Cells:
        """Cells whose rows are identical: distinct (state, action, reward, propensity), or rows."""
        if self.row_level or self.cells.grain == "atom":
            return self.cells
        if self._atoms is None:
            mode, table = self.propensity_mode, self.estimated_propensity
            shared = self.statistics._atoms if self.statistics is not None and mode == "logged" else {}
            if mode == "logged" and not np.isnan(self.cells.propensity).any():
                # one propensity per (state, action): atoms need not split on it
                mode, table = "estimated", np.ones((self.n_states, self.n_actions))
                table[self.cells.state, self.cells.action] = self.cells.propensity
            key = (mode, self.n_states, self.n_actions)
            if key not in shared:  # the logs' atoms, shared by every evaluation on the statistics
                shared[key] = atom_cells(self.logs, self.backend, mode, table)
            self._atoms = shared[key]
        return self._atoms

    # -- the reward model read at cells: q, and the leave-one-out refit A - c r
    def model_terms(self, cells: Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self.reward_model[cells.state, cells.action]
        if not self.leave_one_out:
            return q, q, np.zeros_like(q)
        n = self.counts[cells.state, cells.action]
        r = self.reward_sums[cells.state, cells.action]
        m = self.reward_sums.sum() / self.counts.sum()
        denominator = n - 1.0 + self.reward_prior
        return q, (r + self.reward_prior * m) / denominator, 1.0 / denominator

    def target(self, policy: np.ndarray, cells: Cells | None = None) -> Target:
        """Read a policy (an (n_states, n_actions) table, or one row per logged row) at the cells."""
        cells = self.cells if cells is None else cells
        unseen = self.counts == 0
        known = (self.known_support if self.known_support is not None
                 else np.zeros(self.n_states, dtype=bool))
        scale = self.unseen_scale
        if self.row_level:
            probabilities = policy
            rows = np.arange(cells.n_cells)
            pi = probabilities[rows, cells.action]
            value = np.empty(cells.n_cells)
            mass = np.empty(cells.n_cells)
            state_mass = np.zeros((self.n_states, self.n_actions))
            unseen_square = unseen_mass = 0.0
            step = 65536
            for start in range(0, cells.n_cells, step):
                stop = min(start + step, cells.n_cells)
                block = probabilities[start:stop]
                states = cells.state[start:stop]
                value[start:stop] = np.einsum("ij,ij->i", block, self.reward_model[states])
                mass[start:stop] = np.einsum("ij,ij->i", block, unseen[states])
                np.add.at(state_mass, states, block)
                if scale is not None:
                    unseen_square += float(np.einsum("ij,ij->", block * block, scale[states]))
                    unseen_mass += float(np.einsum("ij,ij->", block, scale[states] > 0))
            proven = known[cells.state]
            shares, examples = [], []
            for part in (proven, ~proven):
                part_mass = np.where(part, mass, 0.0)
                shares.append(float(part_mass.mean()))
                example = None
                if shares[-1] > 0:
                    i = int(np.flatnonzero(part_mass > 0)[0])
                    s = int(cells.state[i])
                    example = (s, int(np.argmax(probabilities[i] * unseen[s])))
                examples.append(example)
            return Target(pi, value, shares[0], examples[0], state_mass, shares[1], examples[1],
                          unseen_square, unseen_mass)
        table = policy
        pi = table[cells.state, cells.action]
        state_value = np.einsum("ij,ij->i", table, self.reward_model)
        mass = np.einsum("ij,ij->i", table, unseen)
        state_counts = self.counts.sum(axis=1)
        shares, examples = [], []
        for part in (known, ~known):
            shares.append(float((mass * part) @ state_counts / state_counts.sum()))
            example = None
            if shares[-1] > 0:
                s = int(np.flatnonzero((mass > 0) & part & (state_counts > 0))[0])
                example = (s, int(np.argmax(table[s] * unseen[s])))
            examples.append(example)
        unseen_square = 0.0 if scale is None else float(state_counts @ (table * table * scale).sum(axis=1))
        unseen_mass = 0.0 if scale is None else float(state_counts @ (table * (scale > 0)).sum(axis=1))
        return Target(pi, state_value[cells.state], shares[0], examples[0], state_counts[:, None] * table,
                      shares[1], examples[1], unseen_square, unseen_mass)


def statistics_for(
    logs: LogSource,
    backend: str | Backend | None,
    estimators: Sequence[str],
    propensity: str = "logged",
) -> LogStatistics:
    """``LogStatistics`` with the columns that ``estimators`` need (the propensity unless only
    ``dm`` runs or propensities are estimated); a missing propensity column names the estimators."""
    engine = get_backend(backend, logs)
    needs = propensity == "logged" and any(e in PROPENSITY_ESTIMATORS for e in estimators)
    if needs and _P not in (logs.columns if isinstance(logs, pd.DataFrame) else engine.columns(logs)):
        raise LogValidationError(missing_propensity_message(estimators), column=_P)
    return LogStatistics.from_logs(logs, engine, propensity=needs)


def prepare(
    logs: LogSource,
    n_states: int | None,
    n_actions: int,
    *,
    needs_propensity: bool,
    needs_model: bool = True,
    propensity: str = "logged",
    backend: str | Backend | None = None,
    reward_model: Any = None,
    reward_prior: float = 1.0,
    propensity_prior: float = 1.0,
    row_level: bool = False,
    estimators: Sequence[str] = (),
    statistics: LogStatistics | None = None,
) -> PreparedLogs:
    """Validate the logs and reduce them to cells (one ``group_sums``), reward model and propensities.

    ``n_states=None`` (row-level policies) takes the number of states from the logs. Tabular
    policies start from ``statistics`` (checked to describe ``logs``) or from a fresh
    ``LogStatistics`` pass; row-level policies read the rows.
    """
    if propensity not in ("logged", "estimate"):
        raise ValueError(f"propensity must be 'logged' or 'estimate', got {propensity!r}")
    reward_prior = _check_positive(reward_prior, "reward_prior")
    propensity_prior = _check_positive(propensity_prior, "propensity_prior")
    engine = get_backend(backend, logs)
    if row_level and not isinstance(logs, pd.DataFrame):
        logs = load_logs(logs, validate=False)
    if propensity == "estimate":
        mode = "estimated"
    elif not needs_propensity:
        mode = "none"
    else:
        mode = "logged"
    columns = [_S, _A, _R] + ([_P] if mode == "logged" else [])
    if statistics is not None and not row_level:
        statistics.check(logs, engine, columns, n_states, n_actions, estimators)
    elif mode == "logged":
        has_column = _P in (logs.columns if isinstance(logs, pd.DataFrame) else engine.columns(logs))
        if not has_column:
            raise LogValidationError(missing_propensity_message(estimators), column=_P)
        if not row_level:
            statistics = LogStatistics.from_logs(logs, engine, propensity=True)
            statistics.check(logs, engine, columns, n_states, n_actions, estimators)

    if row_level:
        check_logs(logs, engine, columns, n_states, n_actions)
        assert isinstance(logs, pd.DataFrame)
        base = row_cells(logs, "none")
        if n_states is None:
            n_states = int(base.state.max()) + 1
    else:
        if statistics is None:
            statistics = LogStatistics.from_logs(logs, engine, propensity=False)
            statistics.check(logs, engine, columns, n_states, n_actions, estimators)
        engine = statistics.backend
        base = statistics.cells if mode == "logged" else reward_cells(statistics.cells)
    assert n_states is not None
    counts = _dense(base, base.sums["n"], n_states, n_actions)
    reward_sums = _dense(base, base.sums["r"], n_states, n_actions)

    estimated = None
    if mode == "estimated":
        state_counts = counts.sum(axis=1, keepdims=True)
        estimated = (counts + propensity_prior / n_actions) / (state_counts + propensity_prior)
    if row_level:
        cells = row_cells(logs, mode, estimated)
    elif mode == "estimated":
        assert estimated is not None
        cells = with_propensity(base, estimated[base.state, base.action])
    else:
        cells = base

    inverse_propensity = _dense(cells, cells.sums["inv_p"], n_states, n_actions) if mode == "logged" else None
    known = support_known(counts, inverse_propensity, mode)
    unseen_scale = unseen_weight_scale(counts, inverse_propensity, mode)
    if row_level:
        reward = logs[_R].to_numpy().astype(np.float64, copy=False)
        reward_range = (float(reward.min()), float(reward.max()))
    else:
        assert statistics is not None
        reward_range = statistics.reward_range

    if reward_model is None:
        mean = reward_sums.sum() / counts.sum()
        model = (reward_sums + reward_prior * mean) / (counts + reward_prior)
        leave_one_out = True
    else:
        model = _check_reward_model(reward_model, n_states, n_actions)
        leave_one_out = False

    prepared = PreparedLogs(
        logs=logs, backend=engine, cells=cells, n_states=n_states, n_actions=n_actions,
        counts=counts, reward_sums=reward_sums, reward_model=model, leave_one_out=leave_one_out,
        reward_prior=reward_prior, propensity_mode=mode, estimated_propensity=estimated,
        row_level=row_level, statistics=None if row_level else statistics,
        reward_range=reward_range, known_support=known, unseen_scale=unseen_scale,
    )
    if mode == "logged" and np.isnan(cells.propensity).any():
        # propensities vary inside some (state, action): work on exact atoms instead
        prepared.cells = prepared.atoms()
    return prepared


def fit_reward_model(
    logs: LogSource,
    n_states: int,
    n_actions: int,
    reward_prior: float = 1.0,
    backend: str | Backend | None = None,
) -> np.ndarray:
    """The shrunk mean reward per (state, action), for ``evaluate(..., reward_model=)``.

    ``q(s, a) = (R_sa + k m) / (N_sa + k)`` with ``k = reward_prior`` and ``m`` the mean reward of
    ``logs``. Fit it on a split that is not the one evaluated.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"state": [0, 0, 1], "action": [1, 1, 0], "reward": [1.0, 0.0, 1.0]})
    >>> fit_reward_model(train, n_states=2, n_actions=2, reward_prior=1.0).round(3).tolist()
    [[0.667, 0.556], [0.833, 0.667]]
    """
    reward_prior = _check_positive(reward_prior, "reward_prior")
    engine = get_backend(backend, logs)
    check_logs(logs, engine, [_S, _A, _R], n_states, n_actions)
    frame = engine.group_sums(logs, [_S, _A], REWARD_SUMS)
    counts = np.zeros((n_states, n_actions))
    sums = np.zeros((n_states, n_actions))
    s, a = frame[_S].to_numpy(np.int64), frame[_A].to_numpy(np.int64)
    counts[s, a] = frame["n"].to_numpy()
    sums[s, a] = frame["r"].to_numpy()
    mean = sums.sum() / counts.sum()
    return (sums + reward_prior * mean) / (counts + reward_prior)


# ---------------------------------------------------------------------------------------------
# the estimators: coefficient arrays over the basis (1, r, r/p, 1/p)


def _coefficients(columns: dict[int, np.ndarray], n_cells: int) -> np.ndarray:
    out = np.zeros((4, n_cells))
    for j, values in columns.items():
        out[j] = values
    return out


def estimator_terms(
    name: str,
    prepared: PreparedLogs,
    cells: Cells,
    target: Target,
    clip_threshold: float,
    switch_threshold: float,
) -> Terms:
    """Coefficients (4, n_cells) of the estimator's terms; all are linear in the target policy."""
    pi = target.action_probability
    n = cells.n_cells
    if name == "ips":
        return Terms(_coefficients({2: pi}, n))
    if name == "snips":
        return Terms(_coefficients({2: pi}, n), _coefficients({3: pi}, n))
    if name == "clipped_ips":
        weight = np.minimum(pi / cells.propensity, clip_threshold)
        return Terms(_coefficients({1: weight}, n))
    q, refit, slope = prepared.model_terms(cells)
    constant = target.model_value + pi * (refit - q)
    if name == "dm":
        numerator = _coefficients({0: constant, 1: -pi * slope}, n)
        if not prepared.leave_one_out:
            return Terms(numerator)
        # The model is fit on these logs: its noise enters the value. The influence of a row of
        # (s, a) on mean_i sum_a pi(a|s_i) q(s_i, a) is v(s) + M_sa / (N_sa + k) (r - q), with
        # M_sa = sum over rows in s of pi(a|s) (= N_s pi(a|s) for a tabular policy).
        gain = target.mass[cells.state, cells.action] / (
            prepared.counts[cells.state, cells.action] + prepared.reward_prior
        )
        return Terms(numerator, spread=_coefficients({0: target.model_value - gain * q, 1: gain}, n))
    keep = np.ones_like(pi) if name == "dr" else (pi / cells.propensity <= switch_threshold).astype(float)
    numerator = _coefficients(
        {0: constant, 1: -pi * slope, 2: keep * pi * (1.0 + slope), 3: -keep * pi * refit}, n
    )
    if not prepared.leave_one_out:
        return Terms(numerator)
    # The model's noise enters through q(s, a) with weight N_s pi(a|s) (the DM part) minus the
    # importance weights of the corrected rows: ~0 for DR (double robustness), not for switched rows.
    corrected = _dense_at(cells, keep * pi * cells.sums["inv_p"], prepared)
    mass = target.mass[cells.state, cells.action]
    gain = (mass - corrected) / (prepared.counts[cells.state, cells.action] + prepared.reward_prior)
    spread = numerator.copy()
    spread[0] -= gain * q
    spread[1] += gain
    return Terms(numerator, spread=spread)


def _dense_at(cells: Cells, values: np.ndarray, prepared: PreparedLogs) -> np.ndarray:
    """Per-cell values summed over each cell's (state, action), read back at the cells."""
    if cells.grain == "state_action":
        return values
    return _dense(cells, values, prepared.n_states, prepared.n_actions)[cells.state, cells.action]


def summarize(cells: Cells, terms: Terms) -> tuple[float, np.ndarray]:
    """The estimate and the coefficients of its influence terms (mean zero by construction)."""
    n = cells.n_rows
    if terms.denominator is None:
        estimate = cells.total(terms.numerator) / n
        spread = terms.numerator if terms.spread is None else terms.spread
        influence = spread.copy()
        influence[0] -= cells.total(spread) / n
        return estimate, influence
    mean_weight = cells.total(terms.denominator) / n
    estimate = cells.total(terms.numerator) / (mean_weight * n)
    return estimate, (terms.numerator - estimate * terms.denominator) / mean_weight


def event_weight(name: str, cells: Cells, target: Target, clip_threshold: float,
                 switch_threshold: float) -> float:
    """The weight of one more event, on a row drawn as the target would meet it: ``sum w^2 / sum w``.

    A row drawn from the logs in proportion to its weight (where the target puts its mass) has
    expected weight ``sum w^2 / sum w`` (``n / ESS`` times the mean weight; 1 for ``dm``). The
    sums run over the logged rows (weights clipped for ``clipped_ips``; switched rows count 1 for
    ``switch_dr``) and, for ``ips``/``snips``/``dr``, over the pairs not seen in states whose
    support is not known (``Target.unseen_square`` and ``Target.unseen_mass``): such a pair's
    propensity is at most the state's unseen mass ``1 - m_s``, so a row of it would weigh at least
    ``pi(a|s) / (1 - m_s)``. 0 when the target has no mass on logged or open pairs.
    """
    if name == "dm":
        return 1.0
    pi = target.action_probability
    if name in ("clipped_ips", "switch_dr"):
        weight = pi / cells.propensity
        if name == "clipped_ips":
            weight = np.minimum(weight, clip_threshold)
        else:
            weight = np.where(weight <= switch_threshold, weight, 1.0)
        first, second = float(weight @ cells.count), float(weight**2 @ cells.count)
    else:
        first = float(pi @ cells.sums["inv_p"]) + target.unseen_mass
        second = float(pi**2 @ cells.sums["inv_p2"]) + target.unseen_square
    return second / first if first > 0 else 0.0


def std_error_floor(reward_range: tuple[float, float], weight: float | np.ndarray,
                    weight_total: float | np.ndarray) -> float | np.ndarray:
    """The smallest standard error an estimate may report: ``(r_max - r_min) w / W``.

    ``w`` is the weight of one more event on a row the target would meet (``event_weight``:
    ``sum w^2 / sum w``), ``W`` the row count plus one (for SNIPS the sum of the weights plus
    ``w``) and ``[r_min, r_max]`` the logged reward range. It is the standard error the
    estimator would have if, besides rows that all agree, that one row had the other extreme
    reward: what a single unseen event (one click) could do. For SNIPS it is about
    ``(r_max - r_min) / (ESS + 1)``: one event among the effective rows (rule-of-three style).
    Without it a policy whose weighted rows all have the same reward (all mass on pairs that
    never clicked) reports std_error 0 and a zero-width interval, which beats every
    policy that saw an event (rule-of-three reasoning: zero observed events do not prove a rate
    of zero). With many events the sample standard error is far above it (the floor shrinks as
    1/ESS, the standard error as 1/sqrt(ESS)).
    """
    span = float(reward_range[1] - reward_range[0])
    weight, total = np.asarray(weight, dtype=np.float64), np.asarray(weight_total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, span * weight / total, 0.0)
    return float(out) if out.ndim == 0 else out


def floored(std_error: float | np.ndarray, floor: float | np.ndarray) -> float | np.ndarray:
    """``std_error`` raised to ``floor`` (NaN stays NaN: too few rows for any standard error)."""
    se = np.asarray(std_error, dtype=np.float64)
    out = np.where(np.isnan(se), se, np.maximum(se, floor))
    return float(out) if out.ndim == 0 else out


def standard_error(cells: Cells, influence: np.ndarray) -> float:
    """sqrt(sum(psi^2) / (n (n - 1))): the sample std of the influence terms over sqrt(n)."""
    n = cells.n_rows
    if n < 2:
        return float("nan")
    return float(np.sqrt(max(cells.cross(influence, influence), 0.0) / (n * (n - 1.0))))


def _weight_diagnostics(
    name: str, cells: Cells, pi: np.ndarray, clip_threshold: float, switch_threshold: float
) -> dict[str, float]:
    n = cells.n_rows
    if name == "dm":
        return {"ess": float(n), "max_weight": float("nan"), "clipped_share": 0.0}
    weight = pi / cells.propensity
    logged = cells.count > 0
    if name == "clipped_ips":
        clipped = np.minimum(weight, clip_threshold)
        total, squares = float(clipped @ cells.count), float(clipped**2 @ cells.count)
        share = float(cells.count[weight > clip_threshold].sum() / n)
        max_weight = float(clipped[logged].max())
    else:
        total = float(pi @ cells.sums["inv_p"])
        squares = float(pi**2 @ cells.sums["inv_p2"])
        max_weight = float(weight[logged].max())
        share = float(cells.count[weight > switch_threshold].sum() / n) if name == "switch_dr" else 0.0
    ess = total * total / squares if squares > 0 else 0.0
    return {"ess": ess, "max_weight": max_weight, "clipped_share": share}


def run_estimators(
    names: Sequence[str],
    prepared: PreparedLogs,
    policy: np.ndarray,
    clip_threshold: float = 10.0,
    switch_threshold: float = 10.0,
    cells: Cells | None = None,
) -> tuple[list[Estimate], Target]:
    """Every estimator's value, influence coefficients and weight diagnostics on ``cells``."""
    cells = prepared.cells if cells is None else cells
    target = prepared.target(policy, cells)
    results = []
    for name in names:
        terms = estimator_terms(name, prepared, cells, target, clip_threshold, switch_threshold)
        estimate, influence = summarize(cells, terms)
        diagnostics = _weight_diagnostics(
            name, cells, target.action_probability, clip_threshold, switch_threshold
        )
        typical = event_weight(name, cells, target, clip_threshold, switch_threshold)
        # the total with one more row: n + 1 rows, or (SNIPS) the sum of the weights plus its weight
        weight_total = cells.n_rows + 1.0 if terms.denominator is None else cells.total(terms.denominator)
        floor = std_error_floor(prepared.reward_range, typical,
                                weight_total if terms.denominator is None else weight_total + typical)
        results.append(Estimate(name, estimate, influence, terms.numerator, terms.denominator, diagnostics,
                                linearised=terms.spread is not None, se_floor=float(floor)))
    return results, target


_TABLE_LIMIT = 100_000  # counts above this draw with numpy's Poisson sampler instead of a table


def _poisson_pmf(mean: float) -> np.ndarray:
    """The Poisson(mean) probabilities of 0, 1, ... up to where the tail is far below 1e-16."""
    k = np.arange(1, int(mean + 12.0 * np.sqrt(mean) + 40.0))
    log_pmf = -mean + np.r_[0.0, np.cumsum(np.log(mean) - np.log(k))]  # log(mean^k e^-mean / k!)
    pmf = np.exp(log_pmf)
    return pmf / pmf.sum()


class PoissonCounts:
    """Draws of Poisson(count) for many atoms, grouped by their (integer) count.

    Numpy's Poisson sampler costs ~10x a uniform draw. Atoms share few distinct counts, and a sample
    of ``m`` iid Poisson(c) values is exactly a multinomial tally of the values ``0, 1, ...`` over
    ``m`` draws, put in a uniformly random order; tallying and shuffling is a few times cheaper than
    drawing each value. ``order`` is the atom order of the draws (sorted by count, stable).
    """

    def __init__(self, count: np.ndarray) -> None:
        whole = np.rint(count).astype(np.int64)
        self.order = np.argsort(whole, kind="stable")
        ordered = whole[self.order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        stops = np.r_[starts[1:], ordered.size]
        self.groups = [(int(ordered[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        self.pmfs = {
            c: _poisson_pmf(float(c)) for c, _, _ in self.groups if 0 < c <= _TABLE_LIMIT
        }
        self.size = ordered.size

    def draw(self, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
        """Draws of shape (n_resamples, n_atoms), atoms in ``order``."""
        out = np.zeros((n_resamples, self.size))
        for count, start, stop in self.groups:
            if count == 0:
                continue
            size = stop - start
            if count in self.pmfs:
                pmf = self.pmfs[count]
                tallies = rng.multinomial(size, pmf, size=n_resamples)  # (n_resamples, n_values)
                support = np.tile(np.arange(pmf.size, dtype=np.int32), n_resamples)
                values = np.repeat(support, tallies.ravel()).reshape(n_resamples, size)
                out[:, start:stop] = rng.permuted(values, axis=1)
            else:
                out[:, start:stop] = rng.poisson(float(count), (n_resamples, size))
        return out


def poisson_bootstrap(
    atoms: Cells,
    terms: Sequence[tuple[np.ndarray, np.ndarray | None]],
    n_bootstrap: int,
    random_state: int | np.random.Generator | None,
) -> np.ndarray:
    """Bootstrap replicates (n_bootstrap, n_terms) of ratio estimates sum(P u) / sum(P d).

    Each row gets a Poisson(1) weight; the rows of an atom are exchangeable, so an atom's total
    weight is one Poisson(count) draw. One pass over the atoms, in chunks of resamples; all
    estimators share the draws (paired). Seeded: the same ``random_state`` gives the same result.
    """
    rng = resolve_rng(random_state)
    sampler = PoissonCounts(atoms.count)
    order = sampler.order
    values = np.stack([atoms.unit_values(numerator)[order] for numerator, _ in terms], axis=1)
    weights = np.stack(
        [np.ones(atoms.n_cells) if d is None else atoms.unit_values(d)[order] for _, d in terms], axis=1
    )
    out = np.empty((n_bootstrap, len(terms)))
    chunk = max(1, min(n_bootstrap, _BOOTSTRAP_CHUNK_BYTES // (8 * max(atoms.n_cells, 1))))
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        draws = sampler.draw(rng, stop - start)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = (draws @ values) / (draws @ weights)
    return out


def bootstrap_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval and standard deviation of bootstrap replicates, per column."""
    tail = (1.0 - level) / 2.0
    low = np.nanquantile(replicates, tail, axis=0)
    high = np.nanquantile(replicates, 1.0 - tail, axis=0)
    return low, high, np.nanstd(replicates, axis=0, ddof=1)


# unobserved mass at or above which a (variance) warning is given
UNOBSERVED_WARNING_SHARE = 0.5


def warn_support(target: Target, stacklevel: int = 3) -> None:
    """Warn of proven support violations (bias) and of a mostly unobserved target (variance)."""
    if target.support_violation_share > 0:
        s, a = target.support_example or (-1, -1)
        warnings.warn(
            f"support violation: the target policy puts {100 * target.support_violation_share:.3g}% of "
            f"its mass (averaged over logged rows) on actions the logging policy cannot take in that "
            f"state (e.g. state {s}, action {a}: the propensities of the actions seen there already sum "
            "to 1, or propensities are estimated and the support is the observed set); "
            "importance-weighted estimates ignore that mass and are biased there, DM and DR "
            "extrapolate it with the reward model",
            SupportWarning,
            stacklevel=stacklevel,
        )
    if target.unobserved_share >= UNOBSERVED_WARNING_SHARE:
        s, a = target.unobserved_example or (-1, -1)
        warnings.warn(
            f"the target policy puts {100 * target.unobserved_share:.3g}% of its mass on (state, action) "
            f"pairs not seen in these rows (e.g. state {s}, action {a}) although the logging policy may "
            "take them (their states' seen propensities sum to less than 1): not a support violation "
            "and no bias for importance weighting, but the estimate rests on few rows (high variance; "
            "see ess)",
            SupportWarning,
            stacklevel=stacklevel,
        )


def policy_table(policy: Any, name: str = "policy") -> tuple[np.ndarray, bool]:
    """``(probabilities, row_level)``: a TabularPolicy's table, or a per-row array of distributions."""
    if isinstance(policy, TabularPolicy):
        return policy.table_, False
    if isinstance(policy, pd.DataFrame | pd.Series):
        raise TypeError(f"{name} must be a TabularPolicy or a numpy array, got {type(policy).__name__}")
    array = np.asarray(policy, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a TabularPolicy or an (n_rows, n_actions) array, got shape {array.shape}"
        )
    if not np.isfinite(array).all() or (array < 0).any():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1) | (array < 0).any(axis=1))[0])
        raise ValueError(f"{name} row {row} has a negative, NaN or infinite probability")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-6
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} row {row} sums to {sums[row]:.6g}, expected 1 (rows are distributions)")
    return array, True


def evaluate(
    logs: LogSource,
    policy: TabularPolicy | np.ndarray,
    estimators: str | Iterable[str] = DEFAULT_ESTIMATORS,
    level: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    backend: str | Backend | None = None,
    *,
    propensity: str = "logged",
    reward_model: Any = None,
    reward_prior: float = 1.0,
    propensity_prior: float = 1.0,
    clip_threshold: float = 10.0,
    switch_threshold: float = 10.0,
    statistics: LogStatistics | None = None,
) -> pd.DataFrame:
    """Estimate a target policy's value from logged bandit feedback, with intervals and diagnostics.

    Parameters
    ----------
    logs : DataFrame or path/glob of CSV/Parquet files
        Columns ``state``, ``action``, ``reward`` and (for all but ``dm``) ``propensity``.
    policy : TabularPolicy or array of shape (n_rows, n_actions)
        The target policy, read at each row's state (a TabularPolicy; never expanded to rows), or
        one distribution per logged row (then ``logs`` is read into memory).
    estimators : str or sequence of str
        Any of ``"ips"``, ``"clipped_ips"``, ``"snips"``, ``"dm"``, ``"dr"``, ``"switch_dr"``.
    level : float
        Confidence level of the intervals.
    n_bootstrap : int
        Number of Poisson bootstrap resamples (0 for none): adds ``boot_std_error``,
        ``boot_ci_low``, ``boot_ci_high`` (percentile interval at ``level``).
    random_state : int, Generator or None
        Seed of the bootstrap.
    backend : {"memory", "duckdb", "spark"}, Backend or None
        Where the group sums run; None picks memory for a DataFrame and DuckDB for a path.
    propensity : {"logged", "estimate"}
        ``"estimate"`` replaces the propensity column by the smoothed frequency of actions per state
        in ``logs``, ``(N_sa + propensity_prior / n_actions) / (N_s + propensity_prior)``; the
        result says ``propensity_source="estimated"``.
    reward_model : array of shape (n_states, n_actions), optional
        The reward model of dm/dr/switch_dr, fitted on another split; default: cross-fitted
        leave-one-out shrunk means (see the module docstring).
    reward_prior, propensity_prior : float
        Pseudo-counts of the reward model's shrinkage and of the estimated propensities.
    clip_threshold, switch_threshold : float
        Weight cap of ``clipped_ips``; weight above which ``switch_dr`` drops the correction.
    statistics : LogStatistics, optional
        ``LogStatistics.from_logs(logs)`` computed earlier, to evaluate several policies (or
        chain with ``tune_alpha``/``compare``) without another pass over the logs. They must
        describe ``logs`` (ValueError otherwise). Unused for a per-row array policy.

    Returns
    -------
    DataFrame
        One row per estimator (index = name): ``estimate``, ``std_error``, ``ci_low``, ``ci_high``
        (normal interval), ``ess`` (effective sample size of the weights), ``max_weight``,
        ``clipped_share`` (rows whose weight was clipped / switched), ``n_rows``,
        ``support_violation_share`` (the target's mass, averaged over logged rows, on actions the
        logging policy provably cannot take: bias), ``unobserved_share`` (its mass on pairs merely
        not seen in the rows where the logging policy may take them: variance, not bias; see
        ``support_known``), ``propensity_source``, ``reward_model``, ``level``, and with a
        bootstrap ``boot_std_error``, ``boot_ci_low``, ``boot_ci_high``.

        ``std_error`` is floored at ``(r_max - r_min) * w / W`` (``w = sum w^2 / sum w``, the weight
        of a row where the target puts its mass; ``W`` the row count plus one, or the sum of the
        weights plus ``w`` for SNIPS, so about ``1 / (ESS + 1)``; ``[r_min, r_max]`` the logged
        reward range) because a target whose weighted rows
        all share one reward (say all mass on pairs that never clicked) would otherwise report a
        standard error of 0: the floor is what one more logged row with the other extreme reward
        would give (see ``std_error_floor``). With many events it is far below the sample
        standard error.

    Raises
    ------
    LogValidationError
        A missing column (naming the estimators that need it) or a value outside the schema.
    ValueError
        Unknown estimator, bad level, a policy that does not fit the logs.

    Warns
    -----
    SupportWarning
        When the target puts mass on actions the logging policy provably cannot take in a state
        (the propensities of the actions seen there sum to 1, or propensities are estimated so
        the support is the observed set), and, separately worded, when at least half of its mass
        is on pairs not seen in the rows (variance, not bias).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hfrl.policies import TabularPolicy
    >>> logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 0.0, 1.0], "propensity": [0.5] * 4})
    >>> target = TabularPolicy(np.array([[0.9, 0.1], [0.1, 0.9]]))
    >>> result = evaluate(logs, target, estimators=("ips", "snips"))
    >>> result["estimate"].round(3).tolist()
    [0.9, 0.9]
    >>> list(result.columns[:6])
    ['estimate', 'std_error', 'ci_low', 'ci_high', 'ess', 'max_weight']
    """
    names = check_estimators(estimators)
    level = check_level(level)
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    clip_threshold = _check_positive(clip_threshold, "clip_threshold")
    switch_threshold = _check_positive(switch_threshold, "switch_threshold")
    table, row_level = policy_table(policy)
    prepared = prepare(
        logs,
        None if row_level else table.shape[0],
        table.shape[1],
        needs_propensity=any(n in PROPENSITY_ESTIMATORS for n in names),
        propensity=propensity,
        backend=backend,
        reward_model=reward_model,
        reward_prior=reward_prior,
        propensity_prior=propensity_prior,
        row_level=row_level,
        estimators=names,
        statistics=statistics,
    )
    if row_level and table.shape[0] != prepared.n_rows:
        raise ValueError(
            f"policy has {table.shape[0]} rows but the logs have {prepared.n_rows}; an array policy "
            "needs one distribution per logged row (use a TabularPolicy for one per state)"
        )
    cells = prepared.atoms() if n_bootstrap else prepared.cells  # atoms are exact too
    results, target = run_estimators(names, prepared, table, clip_threshold, switch_threshold, cells)
    warn_support(target)
    return _result_frame(results, prepared, target, level, n_bootstrap, random_state, table,
                         clip_threshold, switch_threshold)


def _result_frame(
    results: list[Estimate],
    prepared: PreparedLogs,
    target: Target,
    level: float,
    n_bootstrap: int,
    random_state: int | np.random.Generator | None,
    table: np.ndarray,
    clip_threshold: float,
    switch_threshold: float,
) -> pd.DataFrame:
    z = normal_quantile(level)
    rows = []
    for result in results:
        se = floored(standard_error(prepared.atoms() if n_bootstrap else prepared.cells, result.influence),
                     result.se_floor)
        uses_propensity = result.name in PROPENSITY_ESTIMATORS
        rows.append({
            "estimate": result.estimate,
            "std_error": se,
            "ci_low": result.estimate - z * se,
            "ci_high": result.estimate + z * se,
            **result.diagnostics,
            "n_rows": prepared.n_rows,
            "support_violation_share": target.support_violation_share,
            "unobserved_share": target.unobserved_share,
            "propensity_source": prepared.propensity_source if uses_propensity else "not used",
            "reward_model": prepared.reward_model_source if result.name in MODEL_ESTIMATORS else "not used",
            "level": level,
        })
    frame = pd.DataFrame(rows, index=pd.Index([r.name for r in results], name="estimator"))
    if n_bootstrap:
        atoms = prepared.atoms()
        terms = [bootstrap_terms(r, prepared) for r in results]
        replicates = poisson_bootstrap(atoms, terms, int(n_bootstrap), random_state)
        low, high, spread = bootstrap_interval(replicates, level)
        frame["boot_std_error"] = spread
        frame["boot_ci_low"] = low
        frame["boot_ci_high"] = high
        frame["n_bootstrap"] = int(n_bootstrap)
    return frame


def bootstrap_terms(result: Estimate, prepared: PreparedLogs) -> tuple[np.ndarray, np.ndarray | None]:
    """What each resample averages: the estimator's own terms, or, when the reward model is fit on
    these logs (dm, dr, switch_dr), its influence terms (a linearised bootstrap that includes the
    model's noise, which resampling the terms with a fixed model would miss)."""
    if result.linearised:
        centred = result.influence.copy()
        centred[0] += result.estimate
        return centred, None
    return result.numerator, result.denominator
