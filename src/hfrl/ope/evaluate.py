"""``evaluate``: a target policy's value from logged bandit feedback, with intervals and diagnostics.

The logs are reduced once (``prepare``: units of rows, propensities, the reward model, support
facts); each estimator's terms are read off the target at those units (``hfrl.ope.estimators``),
summed (``hfrl.ope.units``), and turned into an estimate and an interval (``hfrl.ope.inference``).
``compare`` and ``hfrl.tune`` reuse the same steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data import Logs, as_logs, schema
from hfrl.ope.estimators import DEFAULT_ESTIMATORS, ESTIMATORS, Estimator, make_estimator
from hfrl.ope.inference import (
    INFLUENCE,
    INTERVALS,
    ONE,
    Sums,
    bernstein_interval,
    bootstrap_interval,
    check_level,
    empirical_likelihood_interval,
    merge_rows,
    normal_quantile,
    poisson_bootstrap,
)
from hfrl.ope.reward_model import RewardModel
from hfrl.ope.support import Support, known_support, warn_support
from hfrl.ope.targets import RowInputs, Target, policy_table
from hfrl.ope.units import Affine, Units, affine
from hfrl.policies import Policy, TabularPolicy, resolve_rng

__all__ = ["DEFAULT_INTERVALS", "Prepared", "check_estimators", "evaluate", "prepare"]

# the interval each estimator reports by default (``interval="auto"``); see bench/bench_intervals.py
DEFAULT_INTERVALS = {"ips": "empirical_likelihood", "snips": "empirical_likelihood",
                     "dr": "empirical_likelihood", "dm": "normal", "clipped_ips": "normal",
                     "switch_dr": "normal"}
# from this effective sample size on, "auto" takes the normal interval: the likelihood's small-sample
# shape no longer shows (the two agree to about 1% of the width) and the normal one costs no pass
LARGE_SAMPLE_ESS = 20_000.0
PROPENSITY_HINT = ("{needed} need it (only 'dm' does not); pass propensity='estimate' (--propensity "
                   "estimate) to estimate the logging policy as the smoothed frequency of actions per state")


def check_estimators(estimators: str | Iterable[str], known: tuple[str, ...] = ESTIMATORS,
                     what: str = "estimator") -> tuple[str, ...]:
    """Lower-cased estimator names among ``known``, or ValueError naming the unknown ones."""
    names = (estimators,) if isinstance(estimators, str) else tuple(estimators)
    names = tuple(str(n).lower() for n in names)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what}(s) {unknown}; choose from {known}")
    if len(set(names)) != len(names):
        raise ValueError(f"estimators has duplicates: {list(names)}")
    return names


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@dataclass
class Prepared:
    """Logs reduced for evaluation, shared by every policy evaluated on them.

    Attributes
    ----------
    logs : Logs
    units : Units
        Cells (one propensity per cell), atoms, or rows (array policies).
    counts : (n_states, n_actions) array
        Rows per pair.
    propensity_source : {"logged", "estimated", "none"}
    known : (n_states,) bool
        Whether each state's logging support is known (``hfrl.ope.support.known_support``).
    model : RewardModel
    propensity_floor : float
        The smallest propensity a row can have (the largest weight is ``pi / propensity_floor``).
    """

    logs: Logs
    units: Units
    counts: np.ndarray
    propensity_source: str
    known: np.ndarray
    model: RewardModel
    propensity_floor: float
    estimated: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.units.n_rows

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape  # type: ignore[return-value]

    @property
    def reward_range(self) -> tuple[float, float]:
        return self.logs.reward_range

    @property
    def model_range(self) -> tuple[float, float]:
        """The smallest and largest value of the reward model (what it predicts for a new row)."""
        return float(self.model.table.min()), float(self.model.table.max())

    def target(self, policy: np.ndarray) -> Target:
        """The policy (a table, or one row per logged row) read at the units."""
        if self.units.grain == "row":
            return Target.of_rows(policy, self.units, self.model)
        return Target.of_table(policy, self.units, self.model, self.counts.sum(axis=1))

    def at_atoms(self) -> Prepared:
        """The same preparation on atoms (exchangeable rows), for the bootstrap."""
        if self.units.grain in ("atom", "row"):
            return self
        atoms = self.logs.atoms()
        propensity = None if self.estimated is None else self.estimated[atoms.state, atoms.action]
        units = Units.from_atoms(atoms, propensity)
        return Prepared(self.logs, units, self.counts, self.propensity_source, self.known, self.model,
                        self.propensity_floor, self.estimated)

    def support(self, policy: np.ndarray) -> Support:
        """Where the target's mass falls relative to the logged pairs."""
        if self.units.grain == "row":
            return Support.of(policy, self.units.state, self.units.count, self.counts, self.known)
        states = np.arange(self.shape[0])
        return Support.of(policy, states, self.counts.sum(axis=1), self.counts, self.known)

    def max_weight(self, policy: np.ndarray) -> float:
        """The largest importance weight a row could have: ``max pi(a|s) / propensity_floor``."""
        if self.units.grain == "row":
            return float(policy.max() / self.propensity_floor)
        logged = self.counts.sum(axis=1) > 0
        return float(policy[logged].max() / self.propensity_floor) if logged.any() else 0.0


def prepare(
    logs: Any,
    n_states: int | None,
    n_actions: int,
    *,
    needs_propensity: bool,
    propensity: str = "logged",
    backend: str | Backend | None = None,
    reward_model: Any = None,
    reward_prior: float = 1.0,
    propensity_prior: float = 1.0,
    row_level: bool = False,
    reward_range: tuple[float, float] | None = None,
    needed_by: Sequence[str] = (),
) -> Prepared:
    """Validate ``logs`` (unless already ``Logs``) and reduce them for evaluation (one pass).

    ``n_states=None`` (row-level policies) takes the number of states from the logs; ``needed_by``
    names the estimators that need propensities, for the message when the column is missing.
    """
    if propensity not in ("logged", "estimate"):
        raise ValueError(f"propensity must be 'logged' or 'estimate', got {propensity!r}")
    reward_prior = _positive(reward_prior, "reward_prior")
    propensity_prior = _positive(propensity_prior, "propensity_prior")
    logs = as_logs(logs, backend, n_states=n_states, n_actions=n_actions, reward_range=reward_range)
    source = "estimated" if propensity == "estimate" else ("logged" if needs_propensity else "none")
    if source == "logged":
        needed = "estimator(s) " + ", ".join(repr(n) for n in needed_by) if needed_by else "the estimators"
        logs.require(schema.PROPENSITY, hints={schema.PROPENSITY: PROPENSITY_HINT.format(needed=needed)})
    shape = (n_states or logs.n_states, n_actions)
    cells = logs.statistics()
    counts = cells.table(cells.count, shape)
    estimated = None
    if source == "estimated":
        state_rows = counts.sum(axis=1, keepdims=True)
        estimated = (counts + propensity_prior / n_actions) / (state_rows + propensity_prior)
    model = (RewardModel.fit(cells, reward_prior, shape) if reward_model is None
             else RewardModel.given(reward_model, shape))
    inverse = cells.table(cells.inv_propensity, shape) if source == "logged" else None
    known = known_support(counts, inverse, source)
    if row_level:
        frame = logs.frame([schema.STATE, schema.ACTION, schema.REWARD]
                           + ([schema.PROPENSITY] if source == "logged" else []))
        units = Units.from_rows(frame, _row_propensity(frame, source, estimated))
    elif source == "logged" and not cells.constant_propensity:
        units = Units.from_atoms(logs.atoms())
    else:
        units = Units.from_cells(cells, _cell_propensity(cells, source, estimated))
    floor = float(units.propensity[units.count > 0].min()) if source != "none" else 1.0
    if source == "logged" and logs.proof.propensity_range is not None:
        floor = min(floor, logs.proof.propensity_range[0])
    return Prepared(logs, units, counts, source, known, model, floor, estimated)


def _cell_propensity(cells: Any, source: str, estimated: np.ndarray | None) -> np.ndarray:
    if source == "logged":
        return cells.propensity
    if source == "estimated":
        assert estimated is not None
        return estimated[cells.state, cells.action]
    return np.ones(cells.n_cells)


def _row_propensity(frame: pd.DataFrame, source: str, estimated: np.ndarray | None) -> np.ndarray:
    if source == "logged":
        return frame[schema.PROPENSITY].to_numpy(np.float64)
    if source == "estimated":
        assert estimated is not None
        return estimated[frame[schema.STATE].to_numpy(np.int64), frame[schema.ACTION].to_numpy(np.int64)]
    return np.ones(len(frame))


# ---------------------------------------------------------------------------------------------
# from a target and an estimator to sums, an estimate and an interval


@dataclass(frozen=True)
class Terms:
    """An estimator's per-row terms at the units, each affine in the reward."""

    term: Affine
    normalizer: Affine | None
    influence: Affine
    weight: Affine

    @classmethod
    def of(cls, estimator: Estimator, target: Target) -> Terms:
        n = target.units.n_units
        inputs = {0.0: target.inputs(np.zeros(n)), 1.0: target.inputs(np.ones(n))}

        def read(method: Any) -> Affine:  # the method at r = 0 and r = 1 (every term is affine in r)
            return affine(lambda r: method(inputs[float(r[0])]) if n else np.zeros(0), n)

        normalizer = None
        if estimator.normalizer(inputs[0.0]) is not None:
            normalizer = read(estimator.normalizer)
        return cls(read(estimator.term), normalizer, read(estimator.influence), read(estimator.weight))

    def listed(self) -> list[Affine]:
        """``(1, term, normalizer, influence, weight)`` in the order of ``hfrl.ope.inference.Sums``."""
        one = Affine(np.ones_like(self.term.const), np.zeros_like(self.term.const))
        return [one, self.term, self.normalizer or one, self.influence, self.weight]


def unseen_rows(estimator: Estimator, max_weight: float | np.ndarray, reward_range: tuple[float, float],
                model_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Extreme rows never seen, as ``(weights, terms)`` of shape ``(n_corners, *max_weight.shape)``.

    An unseen row has weight between 0 and ``max_weight``, a reward anywhere in the reward range, and
    a model value ``v`` and prediction ``q`` anywhere in ``model_range`` (the fitted model's range;
    the reward range when None); every term is multilinear in these, so its extremes for a given
    weight are at the corners. The weights listed are 0, ``max_weight`` and a
    thresholded estimator's threshold (below ``max_weight``).
    """
    top = np.asarray(max_weight, dtype=np.float64)
    threshold = getattr(estimator, "threshold", None)
    weights = [np.zeros_like(top), top] + ([np.minimum(top, threshold)] if threshold is not None else [])
    corner_w, corner_t = [], []
    for w in weights:
        corners = itertools.product(reward_range, model_range or reward_range, model_range or reward_range)
        values = [estimator.term(corner_inputs(w, r, q, v)) for r, q, v in corners]
        corner_w += [w, w]
        corner_t += [np.minimum.reduce(values), np.maximum.reduce(values)]
    return np.stack(corner_w), np.stack(corner_t)


def corner_inputs(w: np.ndarray, r: float, q: float, v: float) -> RowInputs:
    def full(value: float) -> np.ndarray:
        return np.full(w.shape, value, dtype=np.float64)

    return RowInputs(w, full(r), full(q), full(v), None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Result:
    """One estimator's estimate, standard error, interval and weight diagnostics."""

    name: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    interval: str
    ess: float
    max_weight: float
    clipped_share: float


def moment_interval(method: str, sums: Sums, estimator: Estimator, max_weight: float | np.ndarray,
                    reward_range: tuple[float, float], level: float) -> tuple[np.ndarray, np.ndarray]:
    """The bounds of ``"normal"`` or ``"bernstein"`` from the sums (vectorised along leading axes)."""
    if method == "normal":
        estimate, half = sums.estimate(), normal_quantile(level) * sums.std_error()
        return estimate - half, estimate + half
    _, corner_t = unseen_rows(estimator, max_weight, reward_range)
    return bernstein_interval(sums, level, (corner_t.min(axis=0), corner_t.max(axis=0)), reward_range)


def atom_rows(prepared: Prepared, estimator: Estimator, policy: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(importance weight, term, count)`` of each atom of rows, for the empirical likelihood."""
    atoms = prepared.at_atoms()
    target = atoms.target(policy)
    terms = Terms.of(estimator, target)
    return target.weight, atoms.units.per_row(terms.term), atoms.units.count


def likelihood_interval(rows: tuple[np.ndarray, np.ndarray, np.ndarray], estimator: Estimator,
                        max_weight: float, reward_range: tuple[float, float], level: float,
                        model_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """The empirical-likelihood bounds for atoms ``rows`` = ``(weight, term, count)``; the unseen rows
    it allows take the model's values within ``model_range`` (see ``unseen_rows``)."""
    weight, term, count = merge_rows(*rows)
    corners = unseen_rows(estimator, max_weight, reward_range, model_range)
    return empirical_likelihood_interval(weight, term, count, (corners[0].ravel(), corners[1].ravel()), level,
                                         reward_range)


def resolve_interval(interval: str, name: str) -> str:
    """``interval`` checked for estimator ``name`` (``"auto"`` stays: it depends on the sample)."""
    if interval == "auto":
        return interval
    if interval not in INTERVALS:
        raise ValueError(f"interval must be 'auto' or one of {INTERVALS}, got {interval!r}")
    if interval == "empirical_likelihood" and name in ("dm",):
        raise ValueError("interval='empirical_likelihood' needs importance weights; 'dm' has none")
    return interval


def auto_interval(name: str, ess: float) -> str:
    """What ``interval="auto"`` means for estimator ``name`` at effective sample size ``ess``."""
    return DEFAULT_INTERVALS[name] if ess < LARGE_SAMPLE_ESS else "normal"


def run_estimator(estimator: Estimator, prepared: Prepared, policy: np.ndarray, target: Target,
                  interval: str, level: float) -> tuple[Result, Terms]:
    """Estimate, standard error, interval and diagnostics of one estimator for one target."""
    terms = Terms.of(estimator, target)
    sums = Sums(prepared.units.gram(terms.listed()), terms.normalizer is not None)
    max_weight = prepared.max_weight(policy)
    if interval == "auto":
        interval = auto_interval(estimator.name, float(sums.ess()))
    if interval == "empirical_likelihood":
        low, high = likelihood_interval(atom_rows(prepared, estimator, policy), estimator, max_weight,
                                        prepared.reward_range, level, prepared.model_range)
    else:
        low, high = moment_interval(interval, sums, estimator, max_weight, prepared.reward_range, level)
    weight = estimator.weight(target.inputs(np.zeros(target.units.n_units)))
    logged = prepared.units.count > 0
    clipped = ~np.isclose(weight, target.weight) & logged
    label = interval + (" (variance only)" if estimator.name == "dm" else "")
    result = Result(
        estimator.name, float(sums.estimate()), float(sums.std_error()), float(low), float(high), label,
        float(sums.ess()) if estimator.uses_propensity else float(prepared.n_rows),
        float(weight[logged].max()) if estimator.uses_propensity and logged.any() else float("nan"),
        float(prepared.units.count[clipped].sum() / prepared.n_rows),
    )
    return result, terms


def resampled_terms(atoms: Prepared, estimator: Estimator, policy: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """What a bootstrap resample averages, per atom: one row's term and normalizer.

    When the reward model is fitted on these rows (dm, dr, switch_dr) the influence terms are
    resampled instead (a linearised bootstrap that includes the model's noise, which resampling the
    terms with a fixed model would miss).
    """
    units = atoms.units
    terms = Terms.of(estimator, atoms.target(policy))
    ones = np.ones(units.n_units)
    if estimator.uses_model and atoms.model.cross_fitted:
        sums = Sums(units.gram(terms.listed()), False)
        shift = float(sums[ONE, INFLUENCE] / sums.n) - float(sums.estimate())
        return units.per_row(terms.influence) - shift, ones
    normalizer = ones if terms.normalizer is None else units.per_row(terms.normalizer)
    return units.per_row(terms.term), normalizer


def bootstrap_columns(prepared: Prepared, estimators: Sequence[Estimator], policy: np.ndarray,
                      n_bootstrap: int, random_state: Any, level: float) -> pd.DataFrame:
    """Poisson-bootstrap standard errors and percentile intervals, paired across estimators."""
    atoms = prepared.at_atoms()
    values, weights = zip(*(resampled_terms(atoms, e, policy) for e in estimators), strict=True)
    replicates = poisson_bootstrap(atoms.units.count, np.stack(values, axis=1), np.stack(weights, axis=1),
                                   int(n_bootstrap), resolve_rng(random_state))
    low, high, spread = bootstrap_interval(replicates, level)
    return pd.DataFrame({"boot_std_error": spread, "boot_ci_low": low, "boot_ci_high": high,
                         "n_bootstrap": int(n_bootstrap)}, index=[e.name for e in estimators])


def evaluate(
    logs: Any,
    policy: TabularPolicy | np.ndarray,
    estimators: str | Iterable[str] = DEFAULT_ESTIMATORS,
    level: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    backend: str | Backend | None = None,
    *,
    interval: str = "auto",
    reward_range: tuple[float, float] | None = None,
    propensity: str = "logged",
    reward_model: Any = None,
    reward_prior: float = 1.0,
    propensity_prior: float = 1.0,
    clip_threshold: float = 10.0,
    switch_threshold: float = 10.0,
    context_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Estimate a target policy's value from logged bandit feedback, with intervals and diagnostics.

    Parameters
    ----------
    logs : DataFrame, path/glob of CSV/Parquet files, or ``hfrl.data.Logs``
        Columns ``state``, ``action``, ``reward`` and (for all but ``dm``) ``propensity``. Pass a
        ``Logs`` to evaluate several policies on one pass over the rows.
    policy : TabularPolicy, contextual ``hfrl.policies.Policy``, or array of shape (n_rows, n_actions)
        The target policy, read at each row's state (a TabularPolicy; never expanded to rows), at
        each row's ``context_columns`` (a contextual policy: scored batch by batch, see
        ``hfrl.ope.contextual``), or one distribution per logged row (then the rows are read into
        memory).
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
    interval : {"auto", "normal", "empirical_likelihood", "bernstein"}
        How the bounds are made (``hfrl.ope.inference``); ``"auto"`` takes each estimator's default
        (``DEFAULT_INTERVALS``: empirical likelihood for IPS, SNIPS and DR, calibrated at small samples
        and rare rewards, up to an effective sample size of ``LARGE_SAMPLE_ESS``, normal beyond;
        ``"bernstein"`` is guaranteed and wider).
    reward_range : (low, high), optional
        The reward domain (e.g. ``(0, 1)`` for clicks), used by the bounds; default the one the
        logs declare, ``(0, 1)`` for binary rewards, else the logged range.
    propensity : {"logged", "estimate"}
        ``"estimate"`` replaces the propensity column by the smoothed frequency of actions per state,
        ``(N_sa + propensity_prior / n_actions) / (N_s + propensity_prior)``; the result says
        ``propensity_source="estimated"``.
    reward_model : array of shape (n_states, n_actions), optional
        The reward model of dm/dr/switch_dr fitted on another split; default: the shrunk means of
        these logs, cross-fitted (``hfrl.ope.reward_model``).
    reward_prior, propensity_prior : float
        Pseudo-counts of the reward model's shrinkage and of the estimated propensities.
    clip_threshold, switch_threshold : float
        Weight cap of ``clipped_ips``; weight above which ``switch_dr`` drops the correction.
    context_columns : sequence of str, optional
        The feature columns a contextual policy reads (required for one). Its DM/DR reward model is
        a ridge regression per action on them, cross-fitted over two folds of rows, unless
        ``reward_model`` (an object with ``predict(contexts) -> (n, n_actions)``, fitted on another
        split) is given.

    Returns
    -------
    DataFrame
        One row per estimator (index = name): ``estimate``, ``std_error``, ``ci_low``, ``ci_high``,
        ``interval`` (the method; DM's says "variance only": its bias is not in it), ``ess``
        (effective sample size of the weights), ``max_weight``, ``clipped_share`` (rows whose
        weight was clipped or switched), ``n_rows``, ``support_violation_share`` (the target's mass
        on actions the logging policy provably cannot take: bias), ``unobserved_share`` (its mass
        on pairs merely not seen: variance), ``propensity_source``, ``reward_model``, ``level``,
        and with a bootstrap ``boot_std_error``, ``boot_ci_low``, ``boot_ci_high``.

    Raises
    ------
    LogValidationError
        A missing column (naming the estimators that need it) or a value outside the schema.
    ValueError
        Unknown estimator or interval, bad level, a policy that does not fit the logs.

    Warns
    -----
    SupportWarning
        When the target puts mass on actions the logging policy provably cannot take, and,
        separately worded, when at least half of its mass is on pairs not seen in the rows.

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
    >>> list(result.columns[:5])
    ['estimate', 'std_error', 'ci_low', 'ci_high', 'interval']
    """
    names = check_estimators(estimators)
    level = check_level(level)
    methods = {name: resolve_interval(interval, name) for name in names}
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 \
            or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    clip_threshold = _positive(clip_threshold, "clip_threshold")
    switch_threshold = _positive(switch_threshold, "switch_threshold")
    chosen = [make_estimator(n, clip_threshold, switch_threshold) for n in names]
    if is_contextual(policy):
        if n_bootstrap:
            raise ValueError("n_bootstrap is not available for contextual policies; use the intervals")
        if propensity != "logged":
            raise ValueError("a contextual policy needs logged propensities (propensity='logged')")
        return evaluate_contextual(logs, policy, chosen, methods, level, backend, context_columns,
                                   reward_model, reward_range)
    table, row_level = policy_table(policy)
    prepared = prepare(
        logs, None if row_level else table.shape[0], table.shape[1],
        needs_propensity=any(e.uses_propensity for e in chosen), propensity=propensity, backend=backend,
        reward_model=reward_model, reward_prior=reward_prior, propensity_prior=propensity_prior,
        row_level=row_level, reward_range=reward_range,
        needed_by=[e.name for e in chosen if e.uses_propensity],
    )
    if row_level and table.shape[0] != prepared.n_rows:
        raise ValueError(
            f"policy has {table.shape[0]} rows but the logs have {prepared.n_rows}; an array policy "
            "needs one distribution per logged row (use a TabularPolicy for one per state)")
    target = prepared.target(table)
    support = prepared.support(table)
    warn_support(support)
    rows = []
    for estimator in chosen:
        result, _ = run_estimator(estimator, prepared, table, target, methods[estimator.name], level)
        rows.append({
            **{k: v for k, v in result.__dict__.items() if k != "name"},
            "n_rows": prepared.n_rows,
            "support_violation_share": support.violation_share,
            "unobserved_share": support.unobserved_share,
            "propensity_source": prepared.propensity_source if estimator.uses_propensity else "not used",
            "reward_model": prepared.model.description if estimator.uses_model else "not used",
            "level": level,
        })
    frame = pd.DataFrame(rows, index=pd.Index(names, name="estimator"))
    if n_bootstrap:
        frame = frame.join(bootstrap_columns(prepared, chosen, table, int(n_bootstrap), random_state, level))
    return frame


def is_contextual(policy: Any) -> bool:
    """Whether ``policy`` is a ``Policy`` over feature rows (not a table, not a per-row array)."""
    return isinstance(policy, Policy) and not isinstance(policy, TabularPolicy)


def contextual_logs(logs: Any, estimators: Sequence[Estimator], backend: Any,
                    context_columns: Sequence[str] | None, reward_range: tuple[float, float] | None,
                    n_actions: int) -> Logs:
    """The validated logs a contextual policy is evaluated on: actions, rewards, the context columns
    and (when an estimator weighs rows) the logged propensities."""
    if not context_columns:
        raise ValueError("a contextual policy needs context_columns=[...]: the feature columns it reads")
    needed = [schema.ACTION, schema.REWARD, *context_columns]
    if any(e.uses_propensity for e in estimators):
        needed.append(schema.PROPENSITY)
    hints = {schema.PROPENSITY: PROPENSITY_HINT.format(needed="the estimators")}
    return as_logs(logs, backend, required=needed, hints=hints, reward_range=reward_range,
                   n_actions=n_actions)


def evaluate_contextual(logs: Any, policy: Any, estimators: Sequence[Estimator], methods: dict[str, str],
                        level: float, backend: Any, context_columns: Sequence[str] | None,
                        reward_model: Any, reward_range: tuple[float, float] | None) -> pd.DataFrame:
    """``evaluate`` for a contextual policy: one streaming pass (``hfrl.ope.contextual``)."""
    from hfrl.ope.contextual import ContextualPass

    validated = contextual_logs(logs, estimators, backend, context_columns, reward_range, policy.n_actions)
    scored = ContextualPass(validated, [policy], estimators, context_columns, policy.n_actions, reward_model)
    model_range = (scored.model_min, scored.model_max)
    rows = []
    for estimator in estimators:
        ratio = estimator.normalizer(corner_inputs(np.ones(1), 0.0, 0.0, 0.0)) is not None
        sums = Sums(scored.gram[estimator.name], ratio)
        method = methods[estimator.name]
        if method == "auto":
            method = auto_interval(estimator.name, float(sums.ess()))
        max_weight = float(scored.max_weight[0])
        if method == "empirical_likelihood":
            (weight, term), count = scored.pooled(estimator.name)
            low, high = likelihood_interval((weight, term, count), estimator, max_weight,
                                            validated.reward_range, level, model_range)
        else:
            low, high = moment_interval(method, sums, estimator, max_weight, validated.reward_range, level)
        rows.append({
            "estimate": float(sums.estimate()), "std_error": float(sums.std_error()),
            "ci_low": float(low), "ci_high": float(high),
            "interval": method + (" (variance only)" if estimator.name == "dm" else ""),
            "ess": float(sums.ess()) if estimator.uses_propensity else float(scored.n_rows),
            "max_weight": (scored.logged_weight[estimator.name][0] if estimator.uses_propensity
                           else float("nan")),
            "clipped_share": float("nan"), "n_rows": scored.n_rows, "support_violation_share": float("nan"),
            "unobserved_share": float("nan"),
            "propensity_source": "logged" if estimator.uses_propensity else "not used",
            "reward_model": scored.description if estimator.uses_model else "not used", "level": level,
        })
    return pd.DataFrame(rows, index=pd.Index([e.name for e in estimators], name="estimator"))

