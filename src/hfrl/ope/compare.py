"""The deployment verdict: does a candidate policy beat the logging policy (or another), paired?

Both values are estimated on the same rows, so the difference's standard error comes from the
per-row difference of the two estimators' influence terms and shared noise cancels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hfrl.backends import Backend
from hfrl.ope.estimators import ESTIMATORS, Estimator, make_estimator
from hfrl.ope.evaluate import (
    Prepared,
    Terms,
    atom_rows,
    auto_interval,
    contextual_logs,
    corner_inputs,
    is_contextual,
    prepare,
    resampled_terms,
    resolve_interval,
    run_estimator,
)
from hfrl.ope.inference import (
    INFLUENCE,
    NORMALIZER,
    ONE,
    Sums,
    bootstrap_interval,
    check_level,
    empirical_likelihood_interval,
    merge_rows,
    normal_quantile,
    poisson_bootstrap,
)
from hfrl.ope.support import Support, warn_support
from hfrl.ope.targets import policy_table
from hfrl.ope.units import Affine, Units
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["VERDICTS", "Comparison", "compare"]

VERDICTS = ("ship", "no evidence", "worse", "unreliable")


@dataclass
class Comparison:
    """The answer of ``compare``: the verdict, the paired difference with its interval, and why.

    ``difference = candidate_value - baseline_value``; ``ci_low``/``ci_high`` are its normal
    interval at ``level`` from the paired per-row influence terms (``interval`` names the method).
    ``support_violation_share`` is the candidate's mass on actions the logging policy provably
    cannot take (bias); ``unobserved_share`` its mass on pairs merely not seen in the rows
    (variance); see ``hfrl.ope.estimators.support_known``.
    """

    verdict: str
    difference: float
    std_error: float
    ci_low: float
    ci_high: float
    reason: str
    candidate_value: float
    candidate_ci: tuple[float, float]
    baseline_value: float
    baseline_ci: tuple[float, float]
    ess: float
    ess_share: float
    max_weight: float
    support_violation_share: float
    n_rows: int
    estimator: str
    level: float
    propensity_source: str
    details: dict[str, Any] = field(default_factory=dict)
    boot_ci_low: float | None = None
    boot_ci_high: float | None = None
    unobserved_share: float = 0.0
    interval: str = "normal"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly fields."""
        return {k: v for k, v in self.__dict__.items()}

    def __repr__(self) -> str:
        return (
            f"Comparison(verdict={self.verdict!r}, difference={self.difference:.6g}, "
            f"ci=({self.ci_low:.6g}, {self.ci_high:.6g}), reason={self.reason!r})"
        )


def compare(
    candidate: TabularPolicy | np.ndarray,
    logs: Any,
    baseline: str | TabularPolicy | np.ndarray = "logging",
    level: float = 0.95,
    estimator: str = "snips",
    backend: str | Backend | None = None,
    *,
    min_ess: float = 100.0,
    min_ess_share: float = 0.01,
    max_support_violation: float = 0.05,
    max_unobserved: float = 0.5,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
    interval: str = "auto",
    context_columns: Sequence[str] | None = None,
    **evaluate_options: Any,
) -> Comparison:
    """Does ``candidate`` beat ``baseline`` on these logs, with confidence ``level``?

    The difference of the two values is estimated on the same rows (paired): its standard error
    comes from the per-row difference of the two estimators' influence terms, so shared noise
    cancels. ``baseline="logging"`` is the logging policy's on-policy value, the mean reward (its
    term is ``r``).

    Verdicts: ``"unreliable"`` when the candidate's effective sample size is below
    ``E = max(min_ess, min_ess_share * n_rows)``, or it puts more than ``max_support_violation`` of
    its mass on actions the logging policy provably cannot take (a support violation: the
    propensities of the actions seen in the state sum to 1, or propensities are estimated; the
    estimate is then biased), or more than ``max_unobserved`` of its mass on pairs not seen in
    the rows AND its effective sample size is below ``E / (1 - unobserved_share)`` (the few rows
    that do cover it must be worth ``E`` rows on their own). Unobserved mass alone is not bias
    (with logged propensities the logging policy may take those pairs; IPS stays unbiased), so
    it does not by itself make the verdict unreliable; the reason mentions it from 5%.
    Also ``"unreliable"`` when fewer than two rows, or no row the candidate would meet, carry the
    estimate (no standard error can be formed). Otherwise ``"ship"`` when the interval lies above
    0, ``"worse"`` when below 0, else ``"no evidence"``. The direct method (``estimator="dm"``) is
    used only when asked: its interval ignores the model's bias.

    A contextual candidate (and baseline) (``hfrl.policies.Policy`` over feature rows) needs
    ``context_columns``: both are scored on every logged row in one streaming pass
    (``hfrl.ope.contextual``) and the paired difference comes from the same sums; support cannot
    be checked per context (the shares are reported as 0), the effective sample size still can.

    Parameters
    ----------
    candidate : TabularPolicy, array of shape (n_rows, n_actions), or contextual Policy
    logs : DataFrame, path or ``hfrl.data.Logs``
        Logged ``state``, ``action``, ``reward``, ``propensity`` (and the context columns).
    baseline : "logging", TabularPolicy, array or contextual Policy
    level : float
    estimator : {"snips", "ips", "dr", "dm", "clipped_ips", "switch_dr"}
    backend : backend name, Backend or None
    min_ess, min_ess_share, max_support_violation, max_unobserved : float
        Reliability thresholds (see above).
    n_bootstrap, random_state
        With ``n_bootstrap > 0``, a paired Poisson bootstrap (both values from the same resampled
        rows) adds ``boot_ci_low``/``boot_ci_high`` of the difference (the verdict uses the normal
        interval).
    **evaluate_options
        Passed to the estimators (``propensity``, ``reward_model``, ``reward_prior``,
        ``reward_range``, ``clip_threshold``, ``switch_threshold``).
    context_columns : sequence of str, optional
        The feature columns a contextual candidate reads.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hfrl.policies import TabularPolicy
    >>> rng = np.random.default_rng(0)
    >>> action = rng.integers(0, 2, 4000)
    >>> logs = pd.DataFrame({"state": 0, "action": action, "propensity": 0.5,
    ...                      "reward": (rng.random(4000) < np.where(action == 1, 0.6, 0.3)) * 1.0})
    >>> result = compare(TabularPolicy(np.array([[0.0, 1.0]])), logs)
    >>> result.verdict, round(result.difference, 2)
    ('ship', 0.15)
    """
    level = check_level(level)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 \
            or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    estimator = str(estimator).lower()
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    chosen = make_estimator(estimator, evaluate_options.pop("clip_threshold", 10.0),
                            evaluate_options.pop("switch_threshold", 10.0))
    if is_contextual(candidate) or is_contextual(baseline):
        if n_bootstrap:
            raise ValueError("n_bootstrap is not available for contextual policies; use the intervals")
        thresholds = (min_ess, min_ess_share, max_support_violation, max_unobserved)
        return _compare_contextual(candidate, logs, baseline, level, chosen, backend, interval,
                                   context_columns, thresholds, evaluate_options)
    table, row_level = policy_table(candidate, "candidate")
    baseline_table = _baseline_table(baseline, table, row_level)
    prepared = prepare(logs, None if row_level else table.shape[0], table.shape[1],
                       needs_propensity=chosen.uses_propensity, backend=backend, row_level=row_level,
                       **evaluate_options)
    if row_level and table.shape[0] != prepared.n_rows:
        raise ValueError(f"candidate has {table.shape[0]} rows but the logs have {prepared.n_rows}")
    support = prepared.support(table)
    warn_support(support)
    cand, cand_terms = run_estimator(chosen, prepared, table, prepared.target(table), "normal", level)
    cand_psi = centred_influence(prepared.units, cand_terms)
    if baseline_table is None:
        base_value, base_psi = _logging_value(prepared.units)
    else:
        base, base_terms = run_estimator(chosen, prepared, baseline_table, prepared.target(baseline_table),
                                         "normal", level)
        base_value, base_psi = base.estimate, centred_influence(prepared.units, base_terms)
    n = prepared.n_rows
    z = normal_quantile(level)
    se = _std_error(prepared.units, cand_psi - base_psi)
    base_se = _std_error(prepared.units, base_psi)
    difference = cand.estimate - base_value
    method = resolve_interval(interval, estimator)
    if method == "auto":
        method = auto_interval(estimator, cand.ess)
    if method == "empirical_likelihood":
        ci_low, ci_high = _likelihood_difference(prepared, chosen, table, baseline_table, level)
    else:
        ci_low, ci_high = difference - z * se, difference + z * se
    verdict, reason = _verdict(cand.ess, n, se, ci_low, ci_high, support, prepared.propensity_source, level,
                               min_ess, min_ess_share, max_support_violation, max_unobserved)
    boot_low = boot_high = None
    if n_bootstrap:
        boot_low, boot_high = _paired_bootstrap(prepared, chosen, table, baseline_table, int(n_bootstrap),
                                                random_state, level)
    return Comparison(
        verdict=verdict, difference=difference, std_error=se, ci_low=ci_low, ci_high=ci_high, reason=reason,
        candidate_value=cand.estimate, candidate_ci=(cand.estimate - z * cand.std_error,
                                                     cand.estimate + z * cand.std_error),
        baseline_value=base_value, baseline_ci=(base_value - z * base_se, base_value + z * base_se),
        ess=cand.ess, ess_share=cand.ess / n, max_weight=cand.max_weight,
        support_violation_share=support.violation_share, unobserved_share=support.unobserved_share,
        n_rows=n, estimator=estimator, level=level, propensity_source=prepared.propensity_source,
        details={"baseline": "logging" if baseline_table is None else "policy",
                 "clipped_share": cand.clipped_share, "min_ess_required": max(min_ess, min_ess_share * n)},
        boot_ci_low=boot_low, boot_ci_high=boot_high, interval=method,
    )


def _compare_contextual(candidate: Any, logs: Any, baseline: Any, level: float, estimator: Estimator,
                        backend: Any, interval: str, context_columns: Sequence[str] | None,
                        thresholds: tuple[float, float, float, float], options: dict[str, Any]) -> Comparison:
    """``compare`` for contextual policies, from one streaming pass scoring both (``ContextualPass``).

    The basis of the pass is ``1``, then ``(term, normalizer, influence, weight)`` per policy, then
    the reward; each value's centred influence is a fixed combination of that basis, so the paired
    difference's variance is a quadratic form of the pass's Gram matrix.
    """
    from hfrl.ope.contextual import ContextualPass

    policies = [candidate] + ([] if isinstance(baseline, str) else [baseline])
    if isinstance(baseline, str) and baseline != "logging":
        raise ValueError(f"baseline must be 'logging' or a policy; got {baseline!r}")
    if not all(is_contextual(p) for p in policies):
        raise ValueError("candidate and baseline must both be contextual policies (or both tables)")
    unknown = sorted(set(options) - {"reward_model", "reward_range"})
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to contextual policies (reward_model and "
                         "reward_range do)")
    n_actions = candidate.n_actions
    if any(p.n_actions != n_actions for p in policies):
        raise ValueError(f"candidate has {n_actions} actions but baseline has {policies[-1].n_actions}")
    validated = contextual_logs(logs, [estimator], backend, context_columns, options.get("reward_range"),
                                n_actions)
    scored = ContextualPass(validated, policies, [estimator], context_columns, n_actions,
                            options.get("reward_model"))
    gram, n = scored.full_gram[estimator.name], scored.n_rows
    ratio = estimator.normalizer(corner_inputs(np.ones(1), 0.0, 0.0, 0.0)) is not None
    values, psis = [], []
    for j in range(len(policies)):
        block = [0, 1 + 4 * j, 2 + 4 * j, 3 + 4 * j, 4 + 4 * j]
        sums = Sums(gram[np.ix_(block, block)], ratio)
        psi = np.zeros(len(gram))
        if ratio:  # (term - estimate * normalizer) * n / sum(normalizer)
            scale = n / gram[0, block[NORMALIZER]]
            psi[block[1]], psi[block[NORMALIZER]] = scale, -float(sums.estimate()) * scale
        else:  # influence - its mean
            psi[block[INFLUENCE]], psi[0] = 1.0, -gram[0, block[INFLUENCE]] / n
        values.append((float(sums.estimate()), float(sums.std_error()), float(sums.ess())))
        psis.append(psi)
    if isinstance(baseline, str):  # the logging policy: the reward, centred
        mean = float(gram[0, -1] / n)
        psi = np.zeros(len(gram))
        psi[-1], psi[0] = 1.0, -mean
        values.append((mean, float(np.sqrt(max(psi @ gram @ psi, 0.0) / (n * (n - 1.0)))), float(n)))
        psis.append(psi)
    difference_psi = psis[0] - psis[1]
    se = float(np.sqrt(max(difference_psi @ gram @ difference_psi, 0.0) / (n * (n - 1.0)))) if n > 1 \
        else float("nan")
    (value, value_se, ess), (base_value, base_se, _) = values
    difference = value - base_value
    z = normal_quantile(level)
    method = resolve_interval(interval, estimator.name)
    if method == "auto":
        method = auto_interval(estimator.name, ess)
    if method == "empirical_likelihood":
        columns, count = scored.pooled(estimator.name, with_reward=True)
        base_term = columns[-1] if isinstance(baseline, str) else columns[3]
        base_top = None if isinstance(baseline, str) else float(scored.max_weight[1])
        ci_low, ci_high = _difference_interval(
            estimator, columns[0], columns[1] - base_term, count, float(scored.max_weight[0]), base_top,
            validated.reward_range, (scored.model_min, scored.model_max), level)
    else:
        ci_low, ci_high = difference - z * se, difference + z * se
    support = Support()
    verdict, reason = _verdict(ess, n, se, ci_low, ci_high, support, "logged", level, *thresholds)
    return Comparison(
        verdict=verdict, difference=difference, std_error=se, ci_low=ci_low, ci_high=ci_high, reason=reason,
        candidate_value=value, candidate_ci=(value - z * value_se, value + z * value_se),
        baseline_value=base_value, baseline_ci=(base_value - z * base_se, base_value + z * base_se),
        ess=ess, ess_share=ess / n, max_weight=float(scored.logged_weight[estimator.name][0]),
        support_violation_share=0.0, unobserved_share=0.0, n_rows=n, estimator=estimator.name, level=level,
        propensity_source="logged",
        details={"baseline": "logging" if isinstance(baseline, str) else "policy",
                 "clipped_share": float("nan"), "min_ess_required": max(thresholds[0], thresholds[1] * n),
                 "reward_model": scored.description, "support": "not checked per context"},
        interval=method,
    )


def _likelihood_difference(prepared: Prepared, estimator: Estimator, table: np.ndarray,
                           baseline_table: np.ndarray | None, level: float) -> tuple[float, float]:
    """The empirical-likelihood interval of the paired difference: per atom, the candidate's weight
    (whose mean is 1) and its term minus the baseline's (the reward itself for the logging policy);
    unseen rows at the extremes of that difference."""
    weight, term, count = atom_rows(prepared, estimator, table)
    atoms = prepared.at_atoms().units
    if baseline_table is None:
        base_term = atoms.reward / atoms.count
    else:
        base_term = atom_rows(prepared, estimator, baseline_table)[1]
    top = prepared.max_weight(table)
    base_top = None if baseline_table is None else prepared.max_weight(baseline_table)
    return _difference_interval(estimator, weight, term - base_term, count, top, base_top,
                                prepared.reward_range, prepared.model_range, level)


def _difference_interval(estimator: Estimator, weight: np.ndarray, difference: np.ndarray, count: np.ndarray,
                         top: float, base_top: float | None, reward_range: tuple[float, float],
                         model_range: tuple[float, float], level: float) -> tuple[float, float]:
    """The likelihood interval of the mean paired difference from its atoms ``(weight, difference)``;
    the unseen rows sit at the extremes of the difference any row could have (the candidate's weight
    up to ``top``, the baseline's up to ``base_top``, or the reward itself for the logging policy)."""
    corner_w, corner_t = [], []
    for w in (0.0, top):
        values = []
        for r, q, v in itertools.product(reward_range, model_range, model_range):
            candidate = float(estimator.term(corner_inputs(np.array(w), r, q, v)))
            if base_top is None:
                values.append(candidate - r)
            else:
                values += [candidate - float(estimator.term(corner_inputs(np.array(wb), r, q, v)))
                           for wb in (0.0, base_top)]
        corner_w += [w, w]
        corner_t += [min(values), max(values)]
    low, high = reward_range
    span = (low - high, high - low)
    return empirical_likelihood_interval(*merge_rows(weight, difference, count),
                                         (np.array(corner_w), np.array(corner_t)), level, span)


def _baseline_table(baseline: Any, table: np.ndarray, row_level: bool) -> np.ndarray | None:
    """None for the logging policy, else the baseline's table (checked to match the candidate)."""
    if isinstance(baseline, str):
        if baseline != "logging":
            raise ValueError(f"baseline must be 'logging', a TabularPolicy or an array; got {baseline!r}")
        return None
    baseline_table, baseline_rows = policy_table(baseline, "baseline")
    if baseline_rows != row_level or baseline_table.shape != table.shape:
        raise ValueError(
            f"candidate {table.shape} and baseline {baseline_table.shape} must be the same kind "
            "and shape (both TabularPolicy tables or both per-row arrays)")
    return baseline_table


def centred_influence(units: Units, terms: Terms) -> Affine:
    """Per-row influence of an estimate, mean zero: ``psi`` of ``hfrl.ope.inference.Sums.std_error``."""
    sums = Sums(units.gram(terms.listed()), terms.normalizer is not None)
    n = sums.n
    if terms.normalizer is None:
        return terms.influence - _constant(units, float(sums[ONE, INFLUENCE] / n))
    estimate = float(sums.estimate())
    return (terms.term - terms.normalizer.scaled(estimate)).scaled(float(n / sums[ONE, NORMALIZER]))


def _constant(units: Units, value: float) -> Affine:
    return Affine(np.full(units.n_units, value), np.zeros(units.n_units))


def _logging_value(units: Units) -> tuple[float, Affine]:
    """The logging policy's on-policy value (the mean reward) and its centred influence ``r - mean``."""
    mean = float(units.reward.sum() / units.count.sum())
    return mean, Affine(np.full(units.n_units, -mean), np.ones(units.n_units))


def _std_error(units: Units, psi: Affine) -> float:
    n = units.n_rows
    return float(np.sqrt(max(units.cross(psi, psi), 0.0) / (n * (n - 1.0)))) if n > 1 else float("nan")


def _verdict(ess: float, n: int, se: float, ci_low: float, ci_high: float, support: Support,
             propensity_source: str, level: float, min_ess: float, min_ess_share: float,
             max_support_violation: float, max_unobserved: float) -> tuple[str, str]:
    """The verdict and its reason (see ``compare``)."""
    ess_needed = max(min_ess, min_ess_share * n)
    violation, unobserved = support.violation_share, support.unobserved_share
    covered = 1.0 - unobserved
    pct = f"{level:.0%}"
    if ess < ess_needed:
        verdict = "unreliable"
        reason = (
            f"effective sample size {ess:.0f} is below {ess_needed:.0f} (max({min_ess:g}, "
            f"{min_ess_share:.0%} of {n:,} rows)): the candidate is too far from the logging policy "
            "for these logs to say what it is worth"
        )
    elif not np.isfinite(se) or ess <= 0:
        verdict = "unreliable"
        reason = (f"no standard error can be formed from {n} rows (the candidate meets "
                  f"{'no' if ess <= 0 else 'too few'} logged rows): no evidence either way")
    elif violation > max_support_violation:
        verdict = "unreliable"
        reason = (
            f"support violation: the candidate puts {100 * violation:.3g}% of its mass on actions the "
            f"logging policy cannot take in their state (more than {max_support_violation:.0%}; "
            + ("propensities are estimated, so the support is the set of actions observed in each state"
               if propensity_source == "estimated" else
               "the propensities of the actions seen in those states already sum to 1")
            + "): the logs cannot tell what those are worth and the estimate is biased"
        )
    elif unobserved > max_unobserved and (covered <= 0 or ess < ess_needed / covered):
        verdict = "unreliable"
        reason = (
            f"the candidate puts {100 * unobserved:.3g}% of its mass on (state, action) pairs not seen "
            f"in these rows (more than {max_unobserved:.0%}; not a support violation, the logging "
            "policy may take them, so no bias but high variance) and its effective sample size "
            f"{ess:.0f} is below {ess_needed:.0f} / (1 - {unobserved:.3g}): too few rows carry the estimate"
        )
    elif ci_low > 0:
        verdict = "ship"
        reason = f"the {pct} interval of the improvement, [{ci_low:.4g}, {ci_high:.4g}], lies above 0"
    elif ci_high < 0:
        verdict = "worse"
        reason = f"the {pct} interval of the difference, [{ci_low:.4g}, {ci_high:.4g}], lies below 0"
    else:
        verdict = "no evidence"
        reason = (
            f"the {pct} interval of the difference, [{ci_low:.4g}, {ci_high:.4g}], contains 0: "
            "no evidence either way at this level"
        )
    if verdict != "unreliable" and unobserved >= 0.05:
        reason += (
            f"; note: {100 * unobserved:.3g}% of the candidate's mass is on pairs not seen in these rows "
            "(variance, not bias: the logged propensities do not rule them out)"
        )
    if verdict != "unreliable" and violation > 0:
        reason += f"; {100 * violation:.3g}% of its mass is on unsupported actions (biased there)"
    return verdict, reason


def _paired_bootstrap(prepared: Prepared, estimator: Estimator, table: np.ndarray,
                      baseline_table: np.ndarray | None, n_bootstrap: int, random_state: Any,
                      level: float) -> tuple[float, float]:
    """Percentile interval of the difference; both values use the same Poisson draws."""
    atoms = prepared.at_atoms()
    units = atoms.units
    pairs = [resampled_terms(atoms, estimator, table)]
    if baseline_table is None:  # the logging policy's value: the mean reward
        pairs.append((units.reward / units.count, np.ones(units.n_units)))
    else:
        pairs.append(resampled_terms(atoms, estimator, baseline_table))
    values, weights = zip(*pairs, strict=True)
    replicates = poisson_bootstrap(units.count, np.stack(values, axis=1), np.stack(weights, axis=1),
                                   n_bootstrap, resolve_rng(random_state))
    low, high, _ = bootstrap_interval((replicates[:, 0] - replicates[:, 1])[:, None], level)
    return float(low[0]), float(high[0])
