"""Tests of alpha tuning for contextual policies (hfrl.tune on a Policy over feature rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hfrl.blending import BlendedPolicy
from hfrl.frequencies import SegmentFrequency
from hfrl.ope import evaluate
from hfrl.tune import alpha_curve, tune_alpha
from test_ope_contextual import COLUMNS, problem

GRID = [0.0, 0.3, 0.7, 1.0]


def halves(n: int = 4000, seed: int = 3):
    logs, target, _ = problem(n, seed)
    train, selection = logs.iloc[: n // 2].reset_index(drop=True), logs.iloc[n // 2:].reset_index(drop=True)
    hf = SegmentFrequency(COLUMNS, n_segments=6, random_state=0).fit(train, n_actions=target.n_actions)
    return train, selection, target, hf


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_the_closed_form_curve_equals_evaluating_each_blend(estimator):
    _, selection, target, hf = halves()
    curve = alpha_curve(target, hf, selection, estimator, GRID, interval="normal", context_columns=COLUMNS)
    for alpha, row in zip(GRID, curve.itertuples(), strict=True):
        direct = evaluate(selection, BlendedPolicy(target, hf, alpha), (estimator,), interval="normal",
                          context_columns=COLUMNS).iloc[0]
        assert row.estimate == pytest.approx(direct["estimate"], rel=1e-10, abs=1e-12)
        assert row.std_error == pytest.approx(direct["std_error"], rel=1e-8)
        assert (row.ci_low, row.ci_high) == pytest.approx((direct["ci_low"], direct["ci_high"]), rel=1e-8)


def test_the_likelihood_curve_is_at_least_as_wide_as_each_blend_evaluated_alone():
    _, selection, target, hf = halves()
    curve = alpha_curve(target, hf, selection, "snips", GRID, interval="empirical_likelihood",
                        context_columns=COLUMNS)
    for alpha, row in zip(GRID, curve.itertuples(), strict=True):
        direct = evaluate(selection, BlendedPolicy(target, hf, alpha), ("snips",),
                          interval="empirical_likelihood", context_columns=COLUMNS).iloc[0]
        assert row.estimate == pytest.approx(direct["estimate"], rel=1e-10)
        # the curve bounds the blend's largest weight by the ends' (never below the blend's own)
        assert row.ci_low <= direct["ci_low"] + 1e-9 and row.ci_high >= direct["ci_high"] - 1e-9
        assert row.ci_low < row.estimate < row.ci_high


def test_tune_alpha_returns_a_blended_policy_reported_on_test_rows():
    n = 6000
    logs, target, _ = problem(n, 5)
    train, selection, test = (logs.iloc[i * n // 3:(i + 1) * n // 3].reset_index(drop=True) for i in range(3))
    hf = SegmentFrequency(COLUMNS, n_segments=6, random_state=0).fit(train, n_actions=target.n_actions)
    result = tune_alpha(target, hf, selection, "snips", test_logs=test, context_columns=COLUMNS)
    assert isinstance(result.policy, BlendedPolicy) and result.policy.alpha == result.alpha
    assert result.curve["estimate"].max() == pytest.approx(
        result.curve.loc[result.curve["alpha"] == result.alpha, "estimate"].iloc[0])
    expected = evaluate(test, BlendedPolicy(target, hf, result.alpha), ("snips",), context_columns=COLUMNS)
    assert result.evaluation["estimate"].iloc[0] == pytest.approx(expected["estimate"].iloc[0], rel=1e-12)
    assert result.evaluation["rows"].iloc[0] == "test" and not result.optimistic


def test_tuning_on_the_rows_hf_was_fit_on_is_refused():
    train, _, target, hf = halves()
    with pytest.raises(ValueError, match="fit on the very rows"):
        tune_alpha(target, hf, train, "snips", context_columns=COLUMNS)


def test_contextual_tuning_says_what_it_needs():
    _, selection, target, hf = halves()
    with pytest.raises(ValueError, match="context_columns"):
        tune_alpha(target, hf, selection, "snips")
    with pytest.raises(ValueError, match="linear blend"):
        alpha_curve(target, hf, selection, "clipped_ips", GRID, context_columns=COLUMNS)
    with pytest.raises(ValueError, match="both be contextual"):
        alpha_curve(target, np.full((1, target.n_actions), 0.25), selection, "ips", GRID,
                    context_columns=COLUMNS)
    with pytest.raises(ValueError, match="propensity"):
        alpha_curve(target, hf, selection.drop(columns="propensity"), "ips", GRID, context_columns=COLUMNS)
    bad = selection.assign(x1=selection["x1"].astype(object))
    bad.loc[7, "x1"] = "n/a"
    with pytest.raises(ValueError, match="x1.*row 7"):
        alpha_curve(target, hf, pd.DataFrame(bad), "ips", GRID, context_columns=COLUMNS)


@pytest.mark.parametrize("interval", ["normal", "empirical_likelihood"])
@pytest.mark.parametrize("estimator", ["ips", "snips"])
def test_compare_of_contextual_policies_equals_the_per_row_arrays(interval, estimator):
    from hfrl.ope import compare

    logs, target, _ = problem(3000, 11)
    other = type(target)(target.weights * -0.5)
    features = logs[COLUMNS].to_numpy()
    for baseline, baseline_rows in (("logging", "logging"), (other, other.probabilities(features))):
        contextual = compare(target, logs, baseline, estimator=estimator, interval=interval,
                             context_columns=COLUMNS)
        rows = compare(target.probabilities(features), logs, baseline_rows, estimator=estimator,
                       interval=interval)
        assert contextual.difference == pytest.approx(rows.difference, rel=1e-10, abs=1e-12)
        assert contextual.std_error == pytest.approx(rows.std_error, rel=1e-8)
        assert (contextual.ci_low, contextual.ci_high) == pytest.approx((rows.ci_low, rows.ci_high), rel=1e-6)
        assert contextual.ess == pytest.approx(rows.ess, rel=1e-10)
        assert contextual.verdict == rows.verdict


def test_compare_of_contextual_policies_with_dr_finds_the_better_policy():
    from hfrl.ope import compare

    logs, target, truth = problem(20000, 13)
    worse = type(target)(target.weights * -1.0)
    result = compare(target, logs, worse, estimator="dr", context_columns=COLUMNS)
    assert result.verdict == "ship" and result.ci_low > 0
    assert result.details["reward_model"] == "cross-fitted (2 folds)"
    assert result.candidate_ci[0] < truth < result.candidate_ci[1]
