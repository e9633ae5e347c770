"""The deployment verdict: does a candidate policy beat the logging policy (or another), paired?"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hfrl.backends import Backend
from hfrl.data.io import LogSource
from hfrl.ope.estimators import (
    ESTIMATORS,
    PROPENSITY_ESTIMATORS,
    bootstrap_interval,
    bootstrap_terms,
    check_level,
    floored,
    normal_quantile,
    poisson_bootstrap,
    policy_table,
    prepare,
    run_estimators,
    standard_error,
    std_error_floor,
    warn_support,
)
from hfrl.policies import TabularPolicy

__all__ = ["VERDICTS", "Comparison", "compare"]

VERDICTS = ("ship", "no evidence", "worse", "unreliable")


@dataclass
class Comparison:
    """The answer of ``compare``: the verdict, the paired difference with its interval, and why.

    ``difference = candidate_value - baseline_value``; ``ci_low``/``ci_high`` are its normal
    interval at ``level`` from the paired per-row influence terms.
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
    logs: LogSource,
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
    Otherwise ``"ship"`` when the interval lies above 0, ``"worse"`` when below 0, else
    ``"no evidence"``. Standard errors are floored as in ``hfrl.ope.evaluate``
    (``hfrl.ope.estimators.std_error_floor``): a candidate whose weighted rows all have the same
    reward does not get a zero-width interval.

    Parameters
    ----------
    candidate : TabularPolicy or array of shape (n_rows, n_actions)
    logs : DataFrame or path
        Logged ``state``, ``action``, ``reward``, ``propensity``.
    baseline : "logging", TabularPolicy or array
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
        Passed to the estimators (``propensity``, ``reward_model``, ``reward_prior``, ...), and
        ``statistics=`` (a ``LogStatistics`` of ``logs``, to skip the pass over the logs).

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
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    estimator = str(estimator).lower()
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    clip = evaluate_options.pop("clip_threshold", 10.0)
    switch = evaluate_options.pop("switch_threshold", 10.0)
    table, row_level = policy_table(candidate, "candidate")
    baseline_is_logging = isinstance(baseline, str)
    if baseline_is_logging and baseline != "logging":
        raise ValueError(f"baseline must be 'logging', a TabularPolicy or an array; got {baseline!r}")
    baseline_table = None
    if not baseline_is_logging:
        baseline_table, baseline_rows = policy_table(baseline, "baseline")
        if baseline_rows != row_level or baseline_table.shape != table.shape:
            raise ValueError(
                f"candidate {table.shape} and baseline {baseline_table.shape} must be the same kind "
                "and shape (both TabularPolicy tables or both per-row arrays)"
            )
    prepared = prepare(
        logs, None if row_level else table.shape[0], table.shape[1],
        needs_propensity=estimator in PROPENSITY_ESTIMATORS, backend=backend,
        row_level=row_level, estimators=(estimator,), **evaluate_options,
    )
    if row_level and table.shape[0] != prepared.n_rows:
        raise ValueError(f"candidate has {table.shape[0]} rows but the logs have {prepared.n_rows}")
    cells = prepared.cells
    n = prepared.n_rows
    (cand,), target = run_estimators([estimator], prepared, table, clip, switch)
    warn_support(target)
    if baseline_is_logging:
        base_value = cells.total(_reward_term(cells)) / n
        base_influence = _reward_term(cells)
        base_influence[0] -= base_value
    else:
        assert baseline_table is not None
        (base,), _ = run_estimators([estimator], prepared, baseline_table, clip, switch)
        base_value, base_influence = base.estimate, base.influence
    z = normal_quantile(level)
    difference = cand.estimate - base_value
    # the logging baseline's term is r (weight 1): its floor is one more row of the other reward
    base_floor = (std_error_floor(prepared.reward_range, 1.0, n + 1.0) if baseline_is_logging
                  else base.se_floor)
    se = floored(standard_error(cells, cand.influence - base_influence), max(cand.se_floor, base_floor))
    cand_se = floored(standard_error(cells, cand.influence), cand.se_floor)
    base_se = floored(standard_error(cells, base_influence), base_floor)
    ci_low, ci_high = difference - z * se, difference + z * se

    ess = cand.diagnostics["ess"]
    ess_needed = max(min_ess, min_ess_share * n)
    support = target.support_violation_share
    unobserved = target.unobserved_share
    covered = 1.0 - unobserved
    pct = f"{level:.0%}"
    if ess < ess_needed:
        verdict = "unreliable"
        reason = (
            f"effective sample size {ess:.0f} is below {ess_needed:.0f} (max({min_ess:g}, "
            f"{min_ess_share:.0%} of {n} rows)): the candidate is too far from the logging policy "
            "for these logs to say what it is worth"
        )
    elif support > max_support_violation:
        verdict = "unreliable"
        reason = (
            f"support violation: the candidate puts {100 * support:.3g}% of its mass on actions the "
            f"logging policy cannot take in their state (more than {max_support_violation:.0%}; "
            + ("propensities are estimated, so the support is the set of actions observed in each state"
               if prepared.propensity_source == "estimated" else
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
    if verdict != "unreliable" and support > 0:
        reason += f"; {100 * support:.3g}% of its mass is on unsupported actions (biased there)"
    boot_low = boot_high = None
    if n_bootstrap:
        boot_low, boot_high = _paired_bootstrap(
            prepared, estimator, table, baseline_table, clip, switch, int(n_bootstrap), random_state, level
        )
    return Comparison(
        verdict=verdict,
        difference=difference,
        std_error=se,
        ci_low=ci_low,
        ci_high=ci_high,
        reason=reason,
        candidate_value=cand.estimate,
        candidate_ci=(cand.estimate - z * cand_se, cand.estimate + z * cand_se),
        baseline_value=base_value,
        baseline_ci=(base_value - z * base_se, base_value + z * base_se),
        ess=ess,
        ess_share=ess / n,
        max_weight=cand.diagnostics["max_weight"],
        support_violation_share=support,
        unobserved_share=unobserved,
        n_rows=n,
        estimator=estimator,
        level=level,
        propensity_source=prepared.propensity_source,
        details={
            "baseline": "logging" if baseline_is_logging else "policy",
            "clipped_share": cand.diagnostics["clipped_share"],
            "min_ess_required": ess_needed,
        },
        boot_ci_low=boot_low,
        boot_ci_high=boot_high,
    )


def _paired_bootstrap(prepared, estimator, table, baseline_table, clip, switch, n_bootstrap,  # noqa: ANN001
                      random_state, level) -> tuple[float, float]:  # noqa: ANN001
    """Percentile interval of the difference; both values use the same Poisson draws."""
    atoms = prepared.atoms()
    (cand,), _ = run_estimators([estimator], prepared, table, clip, switch, atoms)
    terms = [bootstrap_terms(cand, prepared)]
    if baseline_table is None:
        terms.append((_reward_term(atoms), None))
    else:
        (base,), _ = run_estimators([estimator], prepared, baseline_table, clip, switch, atoms)
        terms.append(bootstrap_terms(base, prepared))
    replicates = poisson_bootstrap(atoms, terms, n_bootstrap, random_state)
    low, high, _ = bootstrap_interval((replicates[:, 0] - replicates[:, 1])[:, None], level)
    return float(low[0]), float(high[0])


def _reward_term(cells) -> np.ndarray:  # noqa: ANN001 - Cells
    out = np.zeros((4, cells.n_cells))
    out[1] = 1.0
    return out


def comparison_frame(result: Comparison) -> pd.DataFrame:
    """The two values and the difference as a small table (for reports)."""
    return pd.DataFrame(
        {
            "value": [result.candidate_value, result.baseline_value, result.difference],
            "ci_low": [result.candidate_ci[0], result.baseline_ci[0], result.ci_low],
            "ci_high": [result.candidate_ci[1], result.baseline_ci[1], result.ci_high],
        },
        index=["candidate", "baseline", "difference"],
    )
