"""Choosing alpha: the value of ``pi' = (1 - alpha) pi + alpha HF`` along alpha, with its interval.

For the linear blend, the per-row terms of IPS, SNIPS, DM and DR are linear in the target policy
(``hfrl.ope.estimators``), so along alpha every sum an estimate or an interval needs is a quadratic
in alpha whose coefficients are the sums of products of the two end policies' terms: the whole
curve costs about two policy evaluations however many alphas it reports, and uses the same
inference as ``hfrl.ope.evaluate`` (``hfrl.ope.inference``). Clipped IPS, Switch-DR and the
geometric blend are not linear in alpha; their curves evaluate each alpha on the same prepared logs.

Splits are explicit: fit HF and the learner on the training split (``split_logs``), choose alpha
on validation, report the value on test (``tune_alpha(..., test_logs=test)``): a value measured on
the rows alpha was chosen on is optimistic, and says so. ``tune_alpha`` refuses (or, with
``allow_leak=True``, warns) when HF was fit on the very rows it is tuned on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.blending import BLEND_METHODS, BlendedPolicy, as_table, blend
from hfrl.data import Logs, as_logs, load_logs, schema
from hfrl.ope import Comparison, compare, evaluate
from hfrl.ope.estimators import ESTIMATORS, Estimator, make_estimator
from hfrl.ope.evaluate import (
    Prepared,
    Terms,
    atom_rows,
    auto_interval,
    contextual_logs,
    corner_inputs,
    is_contextual,
    likelihood_interval,
    moment_interval,
    prepare,
    resolve_interval,
)
from hfrl.ope.inference import Sums, check_level, normal_quantile, pool_rows
from hfrl.ope.returns import RETURN_ESTIMATORS, ReturnModel, check_gamma, compare_return, evaluate_return
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["OBJECTIVES", "AlphaTuning", "LeakageWarning", "alpha_curve", "compare", "per_state_alpha",
           "split_logs", "tune_alpha"]

CRITERIA = ("estimate", "lower_bound")
OBJECTIVES = ("reward", "return")
SPLITS = ("time", "random", "session")


class LeakageWarning(UserWarning):
    """HF was fit on the rows it is being tuned or evaluated on."""


@dataclass
class AlphaTuning:
    """The result of ``tune_alpha``.

    Attributes
    ----------
    alpha : float
        The chosen alpha.
    curve : DataFrame
        ``alpha``, ``estimate``, ``std_error``, ``ci_low``, ``ci_high`` for every alpha tried.
    policy : TabularPolicy or BlendedPolicy
        The blended policy at the chosen alpha (a ``BlendedPolicy`` for contextual policies).
    evaluation : DataFrame
        ``hfrl.ope.evaluate``'s row for the blended policy, with a column ``rows`` saying which
        rows it was made on: ``"test"`` (``test_logs``, an honest estimate) or ``"selection"``
        (the rows alpha was chosen on: optimistic, see ``optimistic``).
    estimator, criterion, method : str
    level : float
    optimistic : bool
        True when ``evaluation`` was made on the selection rows: choosing the best of many alphas
        on the same rows inflates its value and its interval does not cover at ``level``.
    objective : {"reward", "return"}
        What was maximised; ``gamma`` is the discount of the return (None for the reward).
    reason : str
        One sentence: why this alpha (the criterion, its value and interval, and the two parents').
    passed_safety : bool or None
        Whether the chosen pi' beat the logging policy in the one-sided test at ``level`` on
        ``safety_logs`` (None without safety logs). When False, keep the policy that runs today:
        ``policy`` is still the chosen pi', for inspection.
    safety_reason : str or None
        Why it passed or not (the bound, or what made the test unreliable), with the advice.
    safety : Comparison or None
        The test itself (``hfrl.ope.compare`` or ``hfrl.ope.returns.compare_return``, at the
        two-sided level ``2 * level - 1`` whose lower bound is the one-sided bound at ``level``).
    alpha_per_state : ndarray or None
        With ``per_state=True``: each state's alpha; ``alpha`` is then their mean over the tuning
        rows' states and ``kappa`` the chosen parameter.
    kappa : float or None
    """

    alpha: float
    curve: pd.DataFrame
    policy: TabularPolicy | BlendedPolicy
    evaluation: pd.DataFrame
    estimator: str
    criterion: str
    level: float
    method: str
    optimistic: bool = True
    objective: str = "reward"
    gamma: float | None = None
    reason: str = ""
    passed_safety: bool | None = None
    safety_reason: str | None = None
    safety: Comparison | None = None
    alpha_per_state: np.ndarray | None = None
    kappa: float | None = None
    parents: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = field(default=None, repr=False)

    def policy_at(self, index: int) -> TabularPolicy:
        """The candidate pi' of row ``index`` of ``curve`` (e.g. to know its exact value in a simulator).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> logs = pd.DataFrame({"state": [0, 0], "action": [0, 1], "reward": [1.0, 0.0],
        ...                      "propensity": [0.5, 0.5]})
        >>> result = tune_alpha(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), logs, "ips", [0, 0.25])
        >>> result.policy_at(1).table_.tolist()
        [[0.75, 0.25]]
        """
        if self.parents is None:
            raise ValueError("this result does not keep the parents pi and HF")
        pi, hf, counts = self.parents
        row = self.curve.iloc[index]
        alpha = per_state_alpha(float(row["kappa"]), counts) if counts is not None else float(row["alpha"])
        return blend(pi, hf, alpha, self.method)

    def __repr__(self) -> str:
        row = self.evaluation.iloc[0]
        return (
            f"AlphaTuning(alpha={self.alpha:.4g}, objective={self.objective!r}, "
            f"estimator={self.estimator!r}, "
            f"estimate={row['estimate']:.6g}, ci=({row['ci_low']:.6g}, {row['ci_high']:.6g}), "
            f"rows={row['rows']!r}, passed_safety={self.passed_safety})"
        )


def _alphas(alphas: Any) -> np.ndarray:
    if isinstance(alphas, str):
        if alphas != "auto":
            raise ValueError(f"alphas must be 'auto' or a sequence of values in [0, 1], got {alphas!r}")
        return np.linspace(0.0, 1.0, 101)
    grid = np.asarray(alphas, dtype=np.float64).ravel()
    if grid.size == 0:
        raise ValueError("alphas is empty; give at least one value in [0, 1] or 'auto'")
    if not np.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
        bad = grid[~np.isfinite(grid) | (grid < 0) | (grid > 1)][0]
        raise ValueError(f"alphas must lie in [0, 1]; got {bad!r}")
    return grid


def _tables(policy: Any, hf: Any) -> tuple[np.ndarray, np.ndarray]:
    pi = as_table(policy, "policy")
    table = as_table(hf, "hf")
    if pi.shape != table.shape:
        raise ValueError(
            f"policy has shape {pi.shape} but hf has shape {table.shape}; they must cover the same "
            "states and actions"
        )
    return pi, table


def _mixing(alpha: np.ndarray) -> np.ndarray:
    """Maps the two end policies' terms ``(1, term, normalizer, influence, weight)`` x ``(pi, hf)``
    to the blend's five terms at each alpha: shape ``(len(alpha), 5, 9)``."""
    a = np.asarray(alpha, dtype=np.float64)
    out = np.zeros((a.size, 5, 9))
    out[:, 0, 0] = 1.0
    for k in range(1, 5):
        out[:, k, 2 * k - 1] = 1.0 - a
        out[:, k, 2 * k] = a
    return out


def _end_gram(prepared: Prepared, estimator: Estimator, pi: np.ndarray, hf: np.ndarray
              ) -> tuple[np.ndarray, bool]:
    """Sums of products of the two end policies' terms ``(1, term, normalizer, influence, weight)``,
    interleaved as ``_mixing`` expects, and whether the estimate is a ratio."""
    ends = [Terms.of(estimator, prepared.target(table)).listed() for table in (pi, hf)]
    basis = [ends[0][0]] + [term for k in range(1, 5) for term in (ends[0][k], ends[1][k])]
    return prepared.units.gram(basis), ends[0][2] is not ends[0][0]


def _linear_sums(gram: np.ndarray, ratio: bool, alpha: np.ndarray) -> Sums:
    """The sums of the linear blend's terms at every alpha, from the end policies' Gram matrix."""
    mixing = _mixing(alpha)
    return Sums(np.einsum("aik,kl,ajl->aij", mixing, gram, mixing), ratio)


def _pointwise_sums(prepared: Prepared, estimator: Estimator, tables: list[np.ndarray]) -> Sums:
    """The sums of each given policy's terms, evaluated one by one."""
    grams = []
    ratio = False
    for table in tables:
        terms = Terms.of(estimator, prepared.target(table))
        ratio = terms.normalizer is not None
        grams.append(prepared.units.gram(terms.listed()))
    return Sums(np.stack(grams), ratio)


class _Curve:
    """Estimate and interval of one estimator at any alpha, on logs prepared once.

    What every alpha shares is computed once and kept: the end policies' Gram matrix (the linear
    blend's sums) and their pooled atoms (its likelihood intervals).
    """

    def __init__(self, prepared: Prepared, estimator: Estimator, pi: np.ndarray, hf: np.ndarray,
                 method: str, interval: str, level: float, fast: bool = True) -> None:
        self.prepared, self.estimator, self.pi, self.hf = prepared, estimator, pi, hf
        self.method, self.level = method, level
        self.reward_range, self.model_range = prepared.reward_range, prepared.model_range
        self.closed_form = fast and method == "linear" and estimator.linear_in_target
        self.gram, self.ratio = _end_gram(prepared, estimator, pi, hf)
        self.interval = self._resolve(interval)
        self._pooled: tuple[list[np.ndarray], np.ndarray] | None = None

    def _resolve(self, interval: str) -> str:
        """One interval method along the curve: for ``"auto"``, the smaller end's sample decides."""
        if interval != "auto":
            return interval
        ends = _linear_sums(self.gram, self.ratio, np.array([0.0, 1.0]))
        return auto_interval(self.estimator.name, float(ends.ess().min()))

    def __call__(self, alpha: np.ndarray) -> tuple[np.ndarray, ...]:
        alpha = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
        if not self.closed_form:
            return self.at_tables([blend(self.pi, self.hf, float(a), self.method).table_ for a in alpha])
        sums = _linear_sums(self.gram, self.ratio, alpha)
        max_weight = self._linear_max_weight(alpha)
        if self.interval == "empirical_likelihood":
            low, high = self._likelihood(alpha, max_weight)
        else:
            low, high = moment_interval(self.interval, sums, self.estimator, max_weight,
                                        self.reward_range, self.level)
        return sums.estimate(), sums.std_error(), low, high

    def at_tables(self, tables: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Estimate, standard error and interval of each given policy table, one by one."""
        sums = _pointwise_sums(self.prepared, self.estimator, tables)
        max_weight = np.array([self.prepared.max_weight(t) for t in tables])
        if self.interval == "empirical_likelihood":
            rows = [atom_rows(self.prepared, self.estimator, t) for t in tables]
            bounds = [likelihood_interval(r, self.estimator, float(m), self.reward_range, self.level,
                                          self.model_range)
                      for r, m in zip(rows, max_weight, strict=True)]
            low, high = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
        else:
            low, high = moment_interval(self.interval, sums, self.estimator, max_weight,
                                        self.reward_range, self.level)
        return sums.estimate(), sums.std_error(), low, high

    def _linear_max_weight(self, alpha: np.ndarray) -> np.ndarray:
        """``Prepared.max_weight`` of the linear blend at each alpha, without building the tables."""
        logged = self.prepared.counts.sum(axis=1) > 0
        pi, hf = self.pi[logged].ravel(), self.hf[logged].ravel()
        if self.prepared.units.grain == "row" or pi.size == 0:
            tables = (blend(self.pi, self.hf, float(a)).table_ for a in alpha)
            return np.array([self.prepared.max_weight(t) for t in tables])
        largest = np.array([float(((1 - a) * pi + a * hf).max()) for a in alpha])
        return largest / self.prepared.propensity_floor

    def _likelihood(self, alpha: np.ndarray, max_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Empirical-likelihood bounds at each alpha of the linear blend: the atoms' weights and
        terms are the blend of the end policies' (pooled once)."""
        if self._pooled is None:
            ends = [atom_rows(self.prepared, self.estimator, t) for t in (self.pi, self.hf)]
            self._pooled = pool_rows([*ends[0][:2], *ends[1][:2]], ends[0][2])
        (w0, t0, w1, t1), count = self._pooled
        rows = [((1 - a) * w0 + a * w1, (1 - a) * t0 + a * t1, count) for a in alpha]
        bounds = [likelihood_interval(r, self.estimator, float(m), self.reward_range, self.level,
                                      self.model_range)
                  for r, m in zip(rows, max_weight, strict=True)]
        return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


class _ContextualCurve(_Curve):
    """``_Curve`` for a contextual pi and HF (``hfrl.policies.Policy`` over feature rows).

    One streaming pass (``hfrl.ope.contextual.ContextualPass``) scores both end policies on every
    logged row; their Gram matrix and pooled atoms then give the linear blend at any alpha, as for
    tables. The largest weight of the blend is bounded by ``(1 - a) max_pi + a max_hf`` (the largest
    weight of each end policy over the rows), a bound the likelihood's unseen rows may use.
    """

    ORDER = [0, 1, 5, 2, 6, 3, 7, 4, 8]  # the pass's (1, four of pi, four of HF) interleaved for _mixing

    def __init__(self, scored: Any, estimator: Estimator, interval: str, level: float,
                 reward_range: tuple[float, float]) -> None:
        self.estimator, self.method, self.level = estimator, "linear", level
        self.reward_range, self.model_range = reward_range, (scored.model_min, scored.model_max)
        self.closed_form = True
        self.gram = scored.gram[estimator.name][np.ix_(self.ORDER, self.ORDER)]
        self.ratio = estimator.normalizer(corner_inputs(np.ones(1), 0.0, 0.0, 0.0)) is not None
        self.ends_max_weight = scored.max_weight
        self.interval = self._resolve(interval)
        self._pooled = scored.pooled(estimator.name)

    def _linear_max_weight(self, alpha: np.ndarray) -> np.ndarray:
        return (1.0 - alpha) * self.ends_max_weight[0] + alpha * self.ends_max_weight[1]


def _contextual_curve(policy: Any, hf: Any, logs: Any, estimator: Estimator, method: str, interval: str,
                      level: float, backend: Any, context_columns: Any, options: dict[str, Any]
                      ) -> tuple[_ContextualCurve, Logs]:
    """The curve of a contextual pi blended with a contextual HF, and the validated logs."""
    from hfrl.ope.contextual import ContextualPass

    if not (is_contextual(policy) and is_contextual(hf)):
        raise ValueError(
            "policy and hf must both be contextual (hfrl.policies.Policy over feature rows, e.g. a "
            "learner's policy_ and hfrl.frequencies.SegmentFrequency) or both tables")
    if method != "linear" or not estimator.linear_in_target:
        raise ValueError(
            f"contextual policies are tuned with the linear blend and ips, snips, dm or dr (got method "
            f"{method!r}, estimator {estimator.name!r}); evaluate other blends one alpha at a time with "
            "hfrl.ope.evaluate(logs, BlendedPolicy(policy, hf, alpha), context_columns=...)")
    unknown = sorted(set(options) - {"reward_model", "reward_range"})
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to contextual policies (reward_model and "
                         "reward_range do)")
    if policy.n_actions != hf.n_actions:
        raise ValueError(f"policy has {policy.n_actions} actions but hf has {hf.n_actions}")
    validated = contextual_logs(logs, [estimator], backend, context_columns, options.get("reward_range"),
                                policy.n_actions)
    scored = ContextualPass(validated, [policy, hf], [estimator], context_columns, policy.n_actions,
                            options.get("reward_model"))
    return _ContextualCurve(scored, estimator, interval, level, validated.reward_range), validated


def alpha_curve(
    policy: Any,
    hf: Any,
    logs: Any,
    estimator: str = "snips",
    alphas: Any = "auto",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    fast: bool = True,
    interval: str = "auto",
    context_columns: Sequence[str] | None = None,
    **evaluate_options: Any,
) -> pd.DataFrame:
    """The estimated value of the blend at each alpha, with standard errors and intervals.

    ``fast=True`` (the default) uses the closed form for the linear blend and the ips/snips/dm/dr
    estimators (about two evaluations) and otherwise evaluates each alpha on logs prepared once;
    ``fast=False`` is the brute force: ``blend`` then ``hfrl.ope.evaluate`` at each alpha. The
    intervals are ``hfrl.ope.evaluate``'s (``interval``, default per estimator). A contextual
    ``policy`` and ``hf`` (``hfrl.policies.Policy`` over feature rows) need ``context_columns``:
    both are scored in one streaming pass over the logs (linear blend; ips, snips, dm or dr).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 0], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4})
    >>> curve = alpha_curve(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), logs, "ips", [0, 0.5, 1])
    >>> curve["estimate"].tolist()
    [1.0, 0.75, 0.5]
    """
    name, grid, level = _check_curve(estimator, alphas, method, level)
    chosen = _estimator(name, evaluate_options)
    kind = resolve_interval(interval, name)
    if is_contextual(policy) or is_contextual(hf):
        curve, _ = _contextual_curve(policy, hf, logs, chosen, method, kind, level, backend, context_columns,
                                     evaluate_options)
        return _curve_frame(grid, curve(grid))
    pi, table = _tables(policy, hf)
    if not fast:
        rows = [evaluate(logs, blend(pi, table, float(a), method), (name,), level=level, backend=backend,
                         interval=kind, clip_threshold=getattr(chosen, "threshold", 10.0),
                         switch_threshold=getattr(chosen, "threshold", 10.0), **evaluate_options).iloc[0]
                for a in grid]
        frame = pd.DataFrame(rows)[["estimate", "std_error", "ci_low", "ci_high"]].reset_index(drop=True)
        return pd.concat([pd.DataFrame({"alpha": grid}), frame], axis=1)
    prepared = prepare(logs, pi.shape[0], pi.shape[1], needs_propensity=chosen.uses_propensity,
                       backend=backend, **evaluate_options)
    return _curve_frame(grid, _Curve(prepared, chosen, pi, table, method, kind, level)(grid))


def _curve_frame(grid: np.ndarray, values: tuple[np.ndarray, ...]) -> pd.DataFrame:
    estimate, se, low, high = values
    return pd.DataFrame({"alpha": grid, "estimate": estimate, "std_error": se,
                         "ci_low": low, "ci_high": high})


def _check_curve(estimator: Any, alphas: Any, method: str, level: float) -> tuple[str, np.ndarray, float]:
    name = str(estimator).lower()
    if name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    return name, _alphas(alphas), check_level(level)


def _estimator(name: str, options: dict[str, Any]) -> Estimator:
    """The estimator, taking its threshold out of the evaluate options."""
    return make_estimator(name, options.pop("clip_threshold", 10.0), options.pop("switch_threshold", 10.0))


def check_leakage(hf: Any, logs: Logs, allow_leak: bool) -> None:
    """Refuse (or warn) when ``hf`` was fit on exactly these rows (same ``fingerprint``)."""
    trained_on = getattr(hf, "fingerprint_", None)
    if trained_on is None or tuple(trained_on) != logs.fingerprint:
        return
    message = (
        "hf was fit on the very rows alpha is being tuned on (the logs' fingerprint equals "
        "hf.fingerprint_): HF already contains these rewards, so the curve would favour it. Split "
        "first: train, validation, test = hfrl.tune.split_logs(logs); fit HF (and the learner) on "
        "train, tune alpha on validation, report the value on test"
    )
    if not allow_leak:
        raise ValueError(message + " (or pass allow_leak=True to proceed with a warning)")
    warnings.warn(message, LeakageWarning, stacklevel=3)


def tune_alpha(
    policy: Any,
    hf: Any,
    logs: Any,
    estimator: str = "snips",
    alphas: Any = "auto",
    criterion: str = "estimate",
    level: float = 0.95,
    method: str = "linear",
    backend: str | Backend | None = None,
    *,
    allow_leak: bool = False,
    test_logs: Any = None,
    interval: str = "auto",
    objective: str = "reward",
    gamma: float | None = None,
    safety_logs: Any = None,
    per_state: bool = False,
    context_columns: Sequence[str] | None = None,
    **evaluate_options: Any,
) -> AlphaTuning:
    """Choose the alpha of ``pi' = blend(policy, hf, alpha, method)`` from logged data.

    Parameters
    ----------
    policy : TabularPolicy, (n_states, n_actions) array, or contextual ``hfrl.policies.Policy``
        The learned policy pi (fit on the training split).
    hf : fitted HistoricalFrequency, TabularPolicy, array, or ``SegmentFrequency``
        The historical frequency (fit on the training split); contextual when ``policy`` is.
    logs : DataFrame, path or ``hfrl.data.Logs``
        The selection (validation) split, with ``state``, ``action``, ``reward``, ``propensity``
        (the reward objective) or session logs (the return objective: ``session_id``,
        ``next_state``, ``done``; split them by session, ``split_logs(by="session")``).
    estimator : {"snips", "ips", "dr", "dm", "clipped_ips", "switch_dr"} or "fqe"
        The one-step estimator of the reward objective. The return objective uses fitted Q
        evaluation (``"fqe"``, see ``hfrl.ope.returns``); leave the default or pass ``"fqe"``.
    alphas : "auto" or sequence of float
        "auto" is 101 points on [0, 1]; with the linear blend, the reward objective and
        ``criterion="lower_bound"`` the best point is then refined to the exact maximiser between
        its neighbours. With ``per_state=True`` leave it "auto" (kappa has its own grid).
    criterion : {"estimate", "lower_bound"}
        Maximise the estimate, or the lower confidence bound (a safe improvement).
    level : float
    method : {"linear", "geometric"}
    backend : backend name, Backend or None
    allow_leak : bool
        Warn instead of raising when HF was fit on ``logs``.
    test_logs : DataFrame, path or ``hfrl.data.Logs``, optional
        Rows alpha was NOT chosen on: the chosen policy's value is reported there (honest). Without
        them it is reported on ``logs``, marked ``rows="selection"`` and ``optimistic=True``.
    interval : {"auto", "normal", "empirical_likelihood", "bernstein"}
        As in ``hfrl.ope.evaluate``; the lower-bound criterion uses these bounds. The return's
        interval is normal.
    objective : {"reward", "return"}
        The one-step value per decision, or the discounted return of a session (needs ``gamma``).
    gamma : float in [0, 1], optional
        The discount of the return (the learner's); required with ``objective="return"``.
    safety_logs : DataFrame, path or ``hfrl.data.Logs``, optional
        Rows neither HF, pi nor alpha saw: the chosen pi' must beat the logging policy there, its
        one-sided lower bound at ``level`` above 0 (``passed_safety``).
    per_state : bool
        Count-aware alpha per state, ``kappa / (n_s + kappa)`` with ``n_s`` the rows HF was fit on
        in state ``s`` (``hf.impressions_``; for an HF given as a table, the rows of ``logs``), and
        ``kappa`` chosen on ``logs`` from 0 (pi wherever there is history) to infinity (HF).
    context_columns : sequence of str, optional
        The feature columns contextual policies read; the chosen policy is then a
        ``hfrl.blending.BlendedPolicy`` (computed per batch of users, never materialised).
        Contextual policies are tuned on the one-step reward with one alpha.
    **evaluate_options
        Passed to the one-step estimators (``propensity``, ``reward_model``, ``reward_range``, ...).

    Returns
    -------
    AlphaTuning

    Raises
    ------
    ValueError
        HF fit on these rows (leakage), bad alphas, criterion, estimator, objective, gamma or method.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0, 0], "action": [0, 1, 0, 1],
    ...                      "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4})
    >>> result = tune_alpha(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), logs, "ips")
    >>> float(result.alpha), result.policy.table_.tolist(), result.optimistic
    (1.0, [[1.0, 0.0]], True)
    >>> result.reason.split(",")[0]
    "alpha = 1 has the highest estimated value per decision (IPS) of pi' on the 4 tuning rows"
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    if not isinstance(per_state, bool | np.bool_):
        raise ValueError(f"per_state must be True or False, got {per_state!r}")
    if per_state and not (isinstance(alphas, str) and alphas == "auto"):
        raise ValueError("per_state=True chooses kappa on its own grid; leave alphas='auto'")
    level = check_level(level)
    options = dict(evaluate_options)
    contextual = is_contextual(policy) or is_contextual(hf)
    pi, table = (None, None) if contextual else _tables(policy, hf)
    if contextual:
        if objective != "reward" or per_state:
            raise ValueError("contextual policies are tuned on the one-step reward with one alpha "
                             "(objective='reward', per_state=False)")
        scorer: _Scorer = _ContextualScorer.open(estimator, interval, options, logs, policy, hf, method,
                                                 backend, level, context_columns)
    elif objective == "return":
        scorer = _ReturnScorer.open(estimator, interval, gamma, options, logs, pi.shape, backend, level)
    else:
        scorer = _RewardScorer.open(estimator, interval, options, logs, pi, table, method, backend, level)
    check_leakage(hf, scorer.logs, allow_leak)
    counts = _history_counts(hf, scorer.logs, pi.shape) if per_state else None
    if counts is not None:
        kappa, curve, chosen_alpha, best = _tune_kappa(scorer, pi, table, method, counts, criterion)
    else:
        kappa = None
        curve, chosen_alpha, best = _tune_one_alpha(scorer, pi, table, method, alphas, criterion)
    blended: Any = (BlendedPolicy(policy, hf, chosen_alpha) if contextual
                    else blend(pi, table, chosen_alpha, method))
    alpha = float(chosen_alpha) if np.ndim(chosen_alpha) == 0 else float(curve["alpha"].iloc[best])
    held_out = test_logs is not None
    evaluation = scorer.evaluate(test_logs if held_out else scorer.logs, blended)
    evaluation["rows"] = "test" if held_out else "selection"
    result = AlphaTuning(alpha, curve, blended, evaluation, scorer.name, criterion, level, method,
                         not held_out, objective=objective, gamma=getattr(scorer, "gamma", None),
                         alpha_per_state=None if kappa is None else np.asarray(chosen_alpha),
                         kappa=kappa, parents=None if contextual else (pi, table, counts))
    result.reason = _why(result, best, scorer)
    if safety_logs is not None:
        result.safety = scorer.safety_test(safety_logs, blended)
        result.passed_safety, result.safety_reason = _safety_outcome(result.safety, level)
    return result


def _tune_one_alpha(scorer: _Scorer, pi: Any, hf: Any, method: str, alphas: Any, criterion: str
                    ) -> tuple[pd.DataFrame, float, int]:
    """The curve over the alphas and its best point ``(curve, alpha, index)``; with "auto" alphas and
    the lower-bound criterion on a closed-form curve, refined between the best point's neighbours."""
    grid = _alphas(alphas)
    curve = _curve_frame(grid, scorer.curve(pi, hf, method, grid))
    best = _best(curve, criterion)
    chosen = float(grid[best])
    if isinstance(alphas, str) and criterion == "lower_bound" and scorer.refinable:
        chosen = _refine(scorer.curve_at, grid, best, chosen)
    return curve, chosen, best


class _Scorer:
    """How candidate policies are scored on the tuning rows: the reward's estimators or the return's."""

    name: str
    logs: Logs
    level: float
    refinable: bool = False
    curve_at: Any = None

    def curve(self, pi: np.ndarray, hf: np.ndarray, method: str, grid: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.at_tables([blend(pi, hf, float(a), method).table_ for a in grid])

    def at_tables(self, tables: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def evaluate(self, logs: Any, policy: TabularPolicy) -> pd.DataFrame:
        raise NotImplementedError

    def safety_test(self, logs: Any, policy: TabularPolicy) -> Comparison:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _RewardScorer(_Scorer):
    """The one-step value per decision by a ``hfrl.ope`` estimator (closed form along the linear blend)."""

    @classmethod
    def open(cls, estimator: Any, interval: str, options: dict[str, Any], logs: Any, pi: np.ndarray,
             hf: np.ndarray, method: str, backend: Any, level: float) -> _RewardScorer:
        self = cls()
        self.name = str(estimator).lower()
        if self.name not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.chosen = _estimator(self.name, options)
        self.kind = resolve_interval(interval, self.name)
        self.options, self.backend, self.level = options, backend, level
        prepared = prepare(logs, pi.shape[0], pi.shape[1], needs_propensity=self.chosen.uses_propensity,
                           backend=backend, **options)
        self.logs = prepared.logs
        self.curve_at = _Curve(prepared, self.chosen, pi, hf, method, self.kind, level)
        self.refinable = self.curve_at.closed_form
        return self

    def curve(self, pi: np.ndarray, hf: np.ndarray, method: str, grid: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.curve_at(grid)

    def at_tables(self, tables: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        return self.curve_at.at_tables(tables)

    def _thresholds(self) -> dict[str, float]:
        threshold = getattr(self.chosen, "threshold", 10.0)
        return {"clip_threshold": threshold, "switch_threshold": threshold}

    def evaluate(self, logs: Any, policy: TabularPolicy) -> pd.DataFrame:
        return evaluate(logs, policy, (self.name,), level=self.level, backend=self.backend,
                        interval=self.kind, **self._thresholds(), **self.options)

    def safety_test(self, logs: Any, policy: TabularPolicy) -> Comparison:
        paired = self.name if self.name in ("snips", "dr", "ips") else "snips"
        return compare(policy, logs, "logging", level=2 * self.level - 1, estimator=paired,
                       backend=self.backend, **self._thresholds(), **self.options)

    def describe(self) -> str:
        return f"estimated value per decision ({self.name.upper()})"


class _ContextualScorer(_RewardScorer):
    """The one-step value of contextual policies (``hfrl.policies.Policy`` over feature rows): one
    streaming pass scores pi and HF together, and the linear blend's curve is closed-form."""

    @classmethod
    def open(cls, estimator: Any, interval: str, options: dict[str, Any], logs: Any,  # type: ignore[override]
             policy: Any, hf: Any, method: str, backend: Any, level: float, context_columns: Any
             ) -> _ContextualScorer:
        self = cls()
        self.name = str(estimator).lower()
        if self.name not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.chosen = _estimator(self.name, options)
        self.kind = resolve_interval(interval, self.name)
        self.options, self.backend, self.level = options, backend, level
        self.context_columns = context_columns
        self.curve_at, self.logs = _contextual_curve(policy, hf, logs, self.chosen, method, self.kind, level,
                                                     backend, context_columns, options)
        self.refinable = True
        return self

    def evaluate(self, logs: Any, policy: Any) -> pd.DataFrame:
        return evaluate(logs, policy, (self.name,), level=self.level, backend=self.backend,
                        interval=self.kind, context_columns=self.context_columns, **self.options)

    def safety_test(self, logs: Any, policy: Any) -> Comparison:
        paired = self.name if self.name in ("snips", "dr", "ips") else "snips"
        return compare(policy, logs, "logging", level=2 * self.level - 1, estimator=paired,
                       backend=self.backend, context_columns=self.context_columns, **self.options)


class _ReturnScorer(_Scorer):
    """The discounted return of a session by fitted Q evaluation on the tuning rows' model."""

    @classmethod
    def open(cls, estimator: Any, interval: str, gamma: Any, options: dict[str, Any], logs: Any,
             shape: tuple[int, int], backend: Any, level: float) -> _ReturnScorer:
        if str(estimator).lower() not in ("snips", *RETURN_ESTIMATORS):
            raise ValueError(f"the return objective is estimated by {RETURN_ESTIMATORS}; got estimator="
                             f"{estimator!r} (the one-step estimators value a single decision)")
        if interval not in ("auto", "normal"):
            raise ValueError(f"the return's interval is normal; got interval={interval!r}")
        if options:
            raise ValueError(f"options {sorted(options)} apply to the one-step estimators, not to the return")
        if gamma is None:
            raise ValueError("objective='return' needs gamma, the discount the learner optimised")
        self = cls()
        self.name, self.gamma = RETURN_ESTIMATORS[0], check_gamma(gamma)
        self.level, self.backend = level, backend
        self.logs = as_logs(logs, backend, n_states=shape[0], n_actions=shape[1])
        self.model = ReturnModel.from_logs(self.logs, *shape)
        return self

    def at_tables(self, tables: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        values = [self.model.evaluate(t, self.gamma) for t in tables]
        estimate = np.array([v.estimate for v in values])
        se = np.array([v.std_error for v in values])
        z = normal_quantile(self.level)
        return estimate, se, estimate - z * se, estimate + z * se

    def evaluate(self, logs: Any, policy: TabularPolicy) -> pd.DataFrame:
        return evaluate_return(logs, policy, self.gamma, self.level, self.backend)

    def safety_test(self, logs: Any, policy: TabularPolicy) -> Comparison:
        return compare_return(policy, logs, self.gamma, "logging", level=2 * self.level - 1,
                              backend=self.backend)

    def describe(self) -> str:
        return f"estimated discounted return (FQE, gamma = {self.gamma:g})"


def _best(curve: pd.DataFrame, criterion: str) -> int:
    score = curve["estimate" if criterion == "estimate" else "ci_low"].to_numpy()
    return int(np.nanargmax(score)) if np.isfinite(score).any() else 0


def _history_counts(hf: Any, logs: Logs, shape: tuple[int, int]) -> np.ndarray:
    """Rows per state behind HF: those it was fit on, else (HF given as a table) the tuning rows'."""
    impressions = getattr(hf, "impressions_", None)
    if impressions is not None and np.shape(impressions) == shape:
        return np.asarray(impressions, dtype=np.float64).sum(axis=1)
    cells = logs.statistics()
    return cells.table(cells.count, shape).sum(axis=1)


def per_state_alpha(kappa: float, counts: np.ndarray) -> np.ndarray:
    """The count-aware alpha of each state: ``kappa / (n_s + kappa)``.

    A state with little history keeps more of HF (in the spirit of Soft-SPIBB, Laroche et al.
    2019): 1 (HF) without history or at infinite ``kappa``, 0 (pi) wherever there is history at
    ``kappa = 0``.

    Parameters
    ----------
    kappa : float >= 0 or inf
        The history, in rows, at which a state's alpha is one half.
    counts : array of shape (n_states,)
        Rows per state behind HF.

    Examples
    --------
    >>> per_state_alpha(10.0, np.array([0.0, 10.0, 990.0])).tolist()
    [1.0, 0.5, 0.01]
    """
    if not kappa >= 0:
        raise ValueError(f"kappa must be >= 0 (or inf), got {kappa!r}")
    n = np.asarray(counts, dtype=np.float64)
    if np.isinf(kappa):
        return np.ones_like(n)
    return np.where(n > 0, kappa / np.maximum(n + kappa, 1e-300), 1.0)


def _kappa_grid(counts: np.ndarray) -> np.ndarray:
    """0, 49 geometric steps across the range of the states' history, and infinity."""
    positive = counts[counts > 0]
    if positive.size == 0:
        return np.array([0.0, np.inf])
    return np.r_[0.0, np.geomspace(max(positive.min(), 1.0) / 10.0, positive.max() * 10.0, 49), np.inf]


def _tune_kappa(scorer: _Scorer, pi: np.ndarray, hf: np.ndarray, method: str, counts: np.ndarray,
                criterion: str) -> tuple[float, pd.DataFrame, np.ndarray, int]:
    """The count-aware alpha's curve over kappa and its best point: ``(kappa, curve, alphas, index)``."""
    cells = scorer.logs.statistics()
    served = cells.table(cells.count, pi.shape).sum(axis=1)  # where pi' meets users: the mean's weights
    kappas = _kappa_grid(counts)
    vectors = [per_state_alpha(float(k), counts) for k in kappas]
    values = scorer.at_tables([blend(pi, hf, a, method).table_ for a in vectors])
    weights = served if served.sum() > 0 else np.ones_like(served)
    mean_alpha = np.array([float(weights @ a / weights.sum()) for a in vectors])
    curve = pd.concat([pd.DataFrame({"kappa": kappas}), _curve_frame(mean_alpha, values)], axis=1)
    best = _best(curve, criterion)
    return float(kappas[best]), curve, vectors[best], best


def _why(result: AlphaTuning, best: int, scorer: _Scorer) -> str:
    """One sentence: the criterion, the chosen point's value and interval, and the parents' values."""
    curve = result.curve
    row = curve.iloc[best]
    what = scorer.describe() if result.criterion == "estimate" else \
        f"{result.level:.0%} lower confidence bound of the {scorer.describe()}"
    if result.kappa is not None:
        point = f"kappa = {result.kappa:.4g} (count-aware alpha, mean {result.alpha:.3g})"
    else:
        point = f"alpha = {result.alpha:.4g}"
    text = f"{point} has the highest {what} of pi' on the {scorer.logs.n_rows:,} tuning rows"
    text += f", {row['estimate']:.4g} [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
    parents = []
    for label, at in (("pi alone", 0.0), ("HF alone", 1.0)):
        match = np.flatnonzero(np.isclose(curve["alpha"].to_numpy(), at))
        if match.size:
            parents.append(f"{curve['estimate'].iloc[match[0]]:.4g} for {label}")
    if parents:
        text += ", against " + " and ".join(parents)
    return text + "."


def _safety_outcome(test: Comparison, level: float) -> tuple[bool, str]:
    """Whether the one-sided test passed, and why, with the advice when it did not."""
    bound = f"the one-sided {level:.0%} lower bound of pi''s improvement over the logging policy"
    if test.verdict == "ship":
        return True, f"passed: {bound} on the {test.n_rows:,} safety rows is {test.ci_low:.4g} > 0."
    if test.verdict == "unreliable":
        why = test.reason
    else:
        why = f"{bound} on the {test.n_rows:,} safety rows is {test.ci_low:.4g}, not above 0"
    return False, (f"not passed: {why}. Keep the policy that runs today (the logging policy); "
                   "`policy` is the chosen pi' for inspection only.")


def _refine(curve: _Curve, grid: np.ndarray, best: int, alpha: float) -> float:
    """The exact maximiser of the lower bound between the best grid point's neighbours."""
    from scipy.optimize import minimize_scalar

    def negative_bound(a: float) -> float:
        return -float(curve(np.array([a]))[2][0])

    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if high <= low:
        return alpha
    found = minimize_scalar(negative_bound, bounds=(low, high), method="bounded", options={"xatol": 1e-9})
    if found.success and -found.fun > -negative_bound(alpha):
        return float(found.x)
    return alpha


def split_logs(
    logs: Any,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    by: str = "time",
    random_state: int | np.random.Generator | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split logs into (train, validation, test) DataFrames.

    ``by="time"`` keeps time order (by ``timestamp`` when present, stable; else row order), so
    that the model is always validated on later data; ``by="random"`` shuffles rows with
    ``random_state``; ``by="session"`` keeps every session whole (needs ``session_id``): sessions
    in the order of their first row in time, the fractions counting sessions, so that each part
    holds whole sessions and later parts later sessions (what the return of a session needs).
    Sizes are ``floor`` of the cumulative fractions; each split keeps its rows' original order
    (time order for "time" and "session") and gets a fresh index.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": range(10), "action": 0, "reward": 1.0})
    >>> [len(part) for part in split_logs(logs)]
    [6, 2, 2]
    >>> sessions = logs.assign(session_id=[0, 0, 1, 2, 1, 3, 4, 3, 4, 4])
    >>> [part["session_id"].unique().tolist() for part in split_logs(sessions, (0.6, 0.2, 0.2), "session")]
    [[0, 1, 2], [3], [4]]
    """
    parts = tuple(float(f) for f in fractions)
    if len(parts) != 3 or any(not math.isfinite(f) or f < 0 for f in parts) or abs(sum(parts) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    if by not in SPLITS:
        raise ValueError(f"by must be one of {SPLITS}, got {by!r}")
    frame = logs.frame() if isinstance(logs, Logs) else (
        logs if isinstance(logs, pd.DataFrame) else load_logs(logs, validate=False))
    n = len(frame)
    if by == "random":
        order = resolve_rng(random_state).permutation(n)
    else:
        order = _time_order(frame)
    if by == "session":
        if schema.SESSION_ID not in frame.columns:
            raise ValueError("by='session' needs a 'session_id' column; split by 'time' or 'random' instead")
        # sessions numbered by their first row in time order; cut the session numbers
        session, _ = pd.factorize(frame[schema.SESSION_ID].to_numpy()[order])
        n_units, unit = int(session.max()) + 1 if n else 0, session
    else:
        n_units, unit = n, np.arange(n)
    cuts = np.floor(np.cumsum(parts) * n_units + 1e-9).astype(int)
    cuts[-1] = n_units
    part_of = np.searchsorted(cuts, unit, side="right")
    pieces = [order[part_of == k] for k in range(3)]
    for name, fraction, piece in zip(("train", "validation", "test"), parts, pieces, strict=True):
        if fraction > 0 and piece.size == 0:
            what = "sessions" if by == "session" else "rows"
            raise ValueError(f"the {name} split is empty: {n_units} {what} are too few for fractions {parts}")
    if by == "random":
        pieces = [np.sort(p) for p in pieces]
    return tuple(frame.iloc[p].reset_index(drop=True) for p in pieces)  # type: ignore[return-value]


def _time_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions in time order (by ``timestamp``, stable; row order without one)."""
    if schema.TIMESTAMP not in frame.columns:
        return np.arange(len(frame))
    time = pd.to_datetime(frame[schema.TIMESTAMP], utc=True, errors="coerce")
    if time.isna().any():
        row = int(np.flatnonzero(time.isna().to_numpy())[0])
        raise ValueError(f"column 'timestamp': row {row} is not a parseable date-time")
    return np.argsort(time.dt.tz_localize(None).to_numpy("datetime64[ns]"), kind="stable")
