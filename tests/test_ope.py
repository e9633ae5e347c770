"""Tests of hfrl.ope: estimators against per-row brute force and known truth, intervals, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.backends import fingerprint
from hfrl.backends.duckdb import DuckDBBackend
from hfrl.data import Logs
from hfrl.errors import LogValidationError
from hfrl.ope import (
    ESTIMATORS,
    SupportWarning,
    compare,
    evaluate,
    fit_reward_model,
)
from hfrl.policies import TabularPolicy

ALL = ESTIMATORS


def make_bandit(n_states=20, n_actions=5, seed=0):
    """A contextual bandit with Bernoulli rewards: state dist, mean rewards, logging and target."""
    rng = np.random.default_rng(seed)
    p_state = rng.dirichlet(np.full(n_states, 5.0))
    q = rng.uniform(0.1, 0.9, (n_states, n_actions))
    logging = 0.8 * rng.dirichlet(np.full(n_actions, 2.0), n_states) + 0.2 / n_actions
    target = 0.5 * rng.dirichlet(np.ones(n_actions), n_states) + 0.5 * logging  # weights <= 2 / 0.2
    return p_state, q, logging, target


def collect(p_state, q, logging, n, seed, noise="bernoulli"):
    rng = np.random.default_rng(seed)
    s = rng.choice(len(p_state), n, p=p_state)
    cdf = logging.cumsum(axis=1)
    a = np.minimum((rng.random(n)[:, None] > cdf[s]).sum(axis=1), logging.shape[1] - 1)
    if noise == "bernoulli":
        r = (rng.random(n) < q[s, a]).astype(float)
    else:
        r = q[s, a] + rng.normal(0, 0.3, n)
    return pd.DataFrame({"state": s, "action": a, "reward": r, "propensity": logging[s, a]})


def truth(p_state, q, target):
    return float(p_state @ (target * q).sum(axis=1))


def brute_force(logs, pi_rows, clip=10.0, switch=10.0, prior=1.0, n_states=None):
    """Per-row reference implementation, written independently of the cell algebra."""
    s = logs["state"].to_numpy()
    a = logs["action"].to_numpy()
    r = logs["reward"].to_numpy(float)
    p = logs["propensity"].to_numpy(float)
    n, n_actions = pi_rows.shape
    n_states = n_states or s.max() + 1
    counts = np.zeros((n_states, n_actions))
    sums = np.zeros((n_states, n_actions))
    np.add.at(counts, (s, a), 1)
    np.add.at(sums, (s, a), r)
    m = r.mean()
    state_mean = (sums.sum(axis=1) + prior * m) / (counts.sum(axis=1) + prior)  # pair -> state -> global
    qhat = (sums + prior * state_mean[:, None]) / (counts + prior)
    w = pi_rows[np.arange(n), a] / p
    out = {}
    ips = w * r
    out["ips"] = (ips.mean(), ips.std(ddof=1) / np.sqrt(n))
    wc = np.minimum(w, clip)
    cl = wc * r
    out["clipped_ips"] = (cl.mean(), cl.std(ddof=1) / np.sqrt(n))
    v = (w * r).sum() / w.sum()
    psi = w * (r - v) / w.mean()
    out["snips"] = (v, np.sqrt((psi**2).sum() / (n * (n - 1))))
    dm_terms, dr_terms, sw_terms = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        qi = qhat[s[i]].copy()
        qi[a[i]] = (sums[s[i], a[i]] - r[i] + prior * state_mean[s[i]]) / (counts[s[i], a[i]] - 1 + prior)
        dm_terms[i] = pi_rows[i] @ qi
        correction = w[i] * (r[i] - qi[a[i]])
        dr_terms[i] = dm_terms[i] + correction
        sw_terms[i] = dm_terms[i] + (correction if w[i] <= switch else 0.0)
    # The influence of row i through the model q(s_i, a_i) fit on these rows: the derivative of the
    # sum of terms with respect to q(s, a), (M_sa - corrected weights_sa), over N_sa + k.
    mass = np.zeros((n_states, n_actions))
    np.add.at(mass, s, pi_rows)  # M_sa = sum over rows in s of pi(a|s)
    full = (pi_rows * qhat[s]).sum(axis=1)
    residual = r - qhat[s, a]
    dm_influence = full + mass[s, a] / (counts[s, a] + prior) * residual
    out["dm"] = (dm_terms.mean(), dm_influence.std(ddof=1) / np.sqrt(n))
    for name, terms, kept in (("dr", dr_terms, np.ones(n)), ("switch_dr", sw_terms, (w <= switch) * 1.0)):
        corrected = np.zeros((n_states, n_actions))
        np.add.at(corrected, (s, a), kept * w)
        influence = terms + (mass[s, a] - corrected[s, a]) / (counts[s, a] + prior) * residual
        out[name] = (terms.mean(), influence.std(ddof=1) / np.sqrt(n))
    return out


@pytest.fixture(scope="module")
def bandit():
    return make_bandit()


@pytest.fixture(scope="module")
def small_logs(bandit):
    p_state, q, logging, _ = bandit
    return collect(p_state, q, logging, 3000, seed=1, noise="gaussian")


# ------------------------------------------------------------------------------ correctness


def test_matches_per_row_brute_force(bandit, small_logs):
    target = bandit[3]
    result = evaluate(small_logs, TabularPolicy(target), ALL, clip_threshold=1.5, switch_threshold=1.5)
    reference = brute_force(small_logs, target[small_logs["state"]], clip=1.5, switch=1.5, n_states=20)
    for name in ALL:
        assert result.loc[name, "estimate"] == pytest.approx(reference[name][0], abs=1e-10), name
        assert result.loc[name, "std_error"] == pytest.approx(reference[name][1], rel=1e-8), name
    assert 0 < result.loc["clipped_ips", "clipped_share"] < 1


def test_array_policy_equals_tabular_policy(bandit, small_logs):
    target = bandit[3]
    tabular = evaluate(small_logs, TabularPolicy(target), ALL)
    rows = evaluate(small_logs, target[small_logs["state"]], ALL)
    numeric = ["estimate", "std_error", "ess", "max_weight", "clipped_share", "support_violation_share"]
    np.testing.assert_allclose(rows[numeric].to_numpy(), tabular[numeric].to_numpy(), rtol=1e-9, atol=1e-12)


def test_array_policy_with_rows_that_differ_within_a_state(bandit, small_logs):
    rng = np.random.default_rng(3)
    rows = rng.dirichlet(np.ones(5), len(small_logs)) * 0.5 + 0.5 * bandit[2][small_logs["state"]]
    result = evaluate(small_logs, rows, ALL, clip_threshold=1.5, switch_threshold=1.5)
    reference = brute_force(small_logs, rows, clip=1.5, switch=1.5, n_states=20)
    for name in ALL:
        assert result.loc[name, "estimate"] == pytest.approx(reference[name][0], abs=1e-10), name
        assert result.loc[name, "std_error"] == pytest.approx(reference[name][1], rel=1e-8), name


def test_varying_propensity_within_a_cell_is_exact(bandit, small_logs):
    logs = small_logs.copy()
    # the same (state, action) logged with different propensities (e.g. a policy that changed)
    logs["propensity"] = np.clip(logs["propensity"] * np.where(np.arange(len(logs)) % 2, 0.7, 1.0), 0.01, 1)
    target = bandit[3]
    result = evaluate(logs, TabularPolicy(target), ALL, clip_threshold=3.0, switch_threshold=3.0)
    reference = brute_force(logs, target[logs["state"]], clip=3.0, switch=3.0, n_states=20)
    for name in ALL:
        assert result.loc[name, "estimate"] == pytest.approx(reference[name][0], abs=1e-10), name
        assert result.loc[name, "std_error"] == pytest.approx(reference[name][1], rel=1e-8), name
    w = target[logs["state"], logs["action"]] / logs["propensity"]
    assert result.loc["ips", "max_weight"] == pytest.approx(w.max())
    assert result.loc["ips", "ess"] == pytest.approx(w.sum() ** 2 / (w**2).sum())


def test_relative_error_below_5_percent_with_100k_rows(bandit):
    p_state, q, logging, target = bandit
    logs = collect(p_state, q, logging, 100_000, seed=7)
    value = truth(p_state, q, target)
    result = evaluate(logs, TabularPolicy(target), ALL)
    for name in ("ips", "snips", "dr", "dm"):
        assert abs(result.loc[name, "estimate"] - value) / value < 0.05, name
    assert result.loc["ips", "max_weight"] <= 1.0 / 0.2 + 1e-9  # bounded weights, by construction


@pytest.mark.filterwarnings("ignore::hfrl.ope.SupportWarning")
def test_interval_coverage_over_50_seeds(bandit):
    p_state, q, logging, target = bandit
    value = truth(p_state, q, target)
    policy = TabularPolicy(target)
    covered = {name: 0 for name in ("ips", "snips", "dm", "dr", "switch_dr")}
    for seed in range(50):
        logs = collect(p_state, q, logging, 4000, seed=100 + seed)
        result = evaluate(logs, policy, tuple(covered), switch_threshold=1.2)  # some rows switch
        for name in covered:
            covered[name] += result.loc[name, "ci_low"] <= value <= result.loc[name, "ci_high"]
    for name, hits in covered.items():
        assert 0.85 <= hits / 50 <= 1.0, (name, hits)


def test_backends_agree_including_bootstrap(tmp_path, bandit, small_logs):
    target = TabularPolicy(bandit[3])
    path = tmp_path / "logs.parquet"
    small_logs.to_parquet(path)
    memory = evaluate(small_logs, target, ALL, n_bootstrap=50, random_state=3)
    duck_frame = evaluate(small_logs, target, ALL, n_bootstrap=50, random_state=3, backend="duckdb")
    duck_path = evaluate(str(path), target, ALL, n_bootstrap=50, random_state=3)
    numeric = memory.select_dtypes("number").columns
    for other in (duck_frame, duck_path):
        np.testing.assert_allclose(
            other[numeric].to_numpy(), memory[numeric].to_numpy(), rtol=1e-9, atol=1e-12
        )


def test_bootstrap_is_seeded_and_close_to_the_normal_interval(bandit):
    p_state, q, logging, target = bandit
    logs = collect(p_state, q, logging, 20_000, seed=5)
    policy = TabularPolicy(target)
    first = evaluate(logs, policy, ALL, n_bootstrap=200, random_state=11)
    again = evaluate(logs, policy, ALL, n_bootstrap=200, random_state=11)
    other = evaluate(logs, policy, ALL, n_bootstrap=200, random_state=12)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["boot_ci_low"], other["boot_ci_low"])
    ratio = first["boot_std_error"] / first["std_error"]
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio
    assert (first["boot_ci_low"] < first["estimate"]).all()
    assert (first["boot_ci_high"] > first["estimate"]).all()


def test_estimated_propensities_are_reported(bandit):
    p_state, q, logging, target = bandit
    logs = collect(p_state, q, logging, 50_000, seed=9).drop(columns="propensity")
    result = evaluate(logs, TabularPolicy(target), ("ips", "snips", "dm", "dr"), propensity="estimate")
    assert (result.loc[["ips", "snips", "dr"], "propensity_source"] == "estimated").all()
    assert result.loc["dm", "propensity_source"] == "not used"
    value = truth(p_state, q, target)
    assert abs(result.loc["snips", "estimate"] - value) / value < 0.05


def test_dm_needs_no_propensity_and_accepts_a_separate_reward_model(bandit):
    p_state, q, logging, target = bandit
    train = collect(p_state, q, logging, 20_000, seed=21).drop(columns="propensity")
    test = collect(p_state, q, logging, 20_000, seed=22).drop(columns="propensity")
    model = fit_reward_model(train, 20, 5)
    result = evaluate(test, TabularPolicy(target), "dm", reward_model=model)
    assert result.loc["dm", "reward_model"] == "given"
    expected = np.mean((target * model).sum(axis=1)[test["state"]])
    assert result.loc["dm", "estimate"] == pytest.approx(expected, abs=1e-12)
    crossfit = evaluate(test, TabularPolicy(target), "dm")
    assert crossfit.loc["dm", "reward_model"] == "cross-fitted (leave-one-out)"


def test_support_violation_warns_and_is_reported():
    # state 0 logged action 0 with propensity 1: the logging policy's support there is known
    # ({0}), so the target's mass on action 1 is a proven violation
    logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 0, 0, 1], "reward": [1.0, 0.0, 1.0, 0.0],
                         "propensity": [1.0, 1.0, 0.5, 0.5]})
    target = TabularPolicy(np.array([[0.5, 0.5], [1.0, 0.0]]))
    with pytest.warns(SupportWarning, match=r"support violation.*state 0, action 1"):
        result = evaluate(logs, target, ("ips", "dm"))
    # state 0 (half the rows) puts half its mass on the unsupported action 1
    assert result["support_violation_share"].iloc[0] == pytest.approx(0.25)
    assert result["unobserved_share"].iloc[0] == 0.0


def test_unobserved_pairs_under_known_propensities_are_not_support_violations():
    # state 0 saw only action 0, logged with propensity 0.5: half of the logging policy's mass is
    # unseen, so action 1 is unobserved, not unsupported (variance, not bias)
    logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 0, 0, 1], "reward": [1.0, 0.0, 1.0, 0.0],
                         "propensity": [0.5] * 4})
    target = TabularPolicy(np.array([[0.5, 0.5], [1.0, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SupportWarning)  # 25% unobserved: below the warning share
        result = evaluate(logs, target, ("ips", "dm"))
    assert result["support_violation_share"].iloc[0] == 0.0
    assert result["unobserved_share"].iloc[0] == pytest.approx(0.25)
    # with estimated propensities the support is the observed set: the same mass is a violation
    with pytest.warns(SupportWarning, match="support violation"):
        estimated = evaluate(logs, target, ("ips",), propensity="estimate")
    assert estimated["support_violation_share"].iloc[0] == pytest.approx(0.25)
    assert estimated["unobserved_share"].iloc[0] == 0.0


def test_uniform_logging_small_sample_is_unbiased_not_unsupported():
    # the Open Bandit Dataset's shape: uniform logging over many items, far fewer rows per state
    # than items, so most (state, action) pairs are unobserved, yet IPS stays unbiased
    n_states, n_actions, n = 20, 80, 400
    truth = np.linspace(0.0, 0.5, n_actions)
    target = TabularPolicy.from_q_values(np.tile(truth, (n_states, 1)), "softmax", temperature=0.1)
    values = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        action = rng.integers(0, n_actions, n)
        logs = pd.DataFrame({"state": rng.integers(0, n_states, n), "action": action,
                             "reward": (rng.random(n) < truth[action]) * 1.0, "propensity": 1 / n_actions})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SupportWarning)
            result = evaluate(logs, target, ("ips",))
        assert result.loc["ips", "support_violation_share"] == 0.0
        assert result.loc["ips", "unobserved_share"] > 0.5
        values.append(result.loc["ips", "estimate"])
    exact = float(target.table_[0] @ truth)
    assert np.mean(values) == pytest.approx(exact, abs=4 * np.std(values) / np.sqrt(len(values)))
    # 79 of 80 actions seen in a state: 79/80 of the logging mass, support still not known
    seen = pd.DataFrame({"state": 0, "action": np.arange(79), "reward": 0.0, "propensity": 1 / n_actions})
    with pytest.warns(SupportWarning, match="not a support violation"):
        result = evaluate(seen, TabularPolicy(np.eye(n_actions)[[79]]), "ips")
    assert result.loc["ips", "support_violation_share"] == 0 and result.loc["ips", "unobserved_share"] == 1


@pytest.mark.parametrize("backend", ["duckdb"])
def test_support_shares_agree_across_backends(tmp_path, backend):
    rng = np.random.default_rng(3)
    n = 120
    logs = pd.DataFrame({"state": rng.integers(0, 6, n), "action": rng.integers(0, 10, n),
                         "reward": rng.random(n)})
    one = logs["state"] == 1  # state 1 logs actions 0-3 at 0.25 each: action 4 is unsupported
    logs.loc[one, "action"] = rng.integers(0, 4, int(one.sum()))
    logs["propensity"] = np.where(one, 0.25, 0.1)  # other states: uniform, some actions unseen
    path = tmp_path / "logs.parquet"
    logs.to_parquet(path)
    target = TabularPolicy(rng.dirichlet(np.ones(10), size=6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupportWarning)
        memory = evaluate(logs, target, ("ips", "snips"), backend="memory")
        other = evaluate(str(path), target, ("ips", "snips"), backend=backend)
    columns = ["estimate", "std_error", "support_violation_share", "unobserved_share"]
    assert memory["support_violation_share"].iloc[0] > 0 and memory["unobserved_share"].iloc[0] > 0
    np.testing.assert_allclose(other[columns].to_numpy(float), memory[columns].to_numpy(float), rtol=1e-10)


# ------------------------------------------------------------------------------ error paths


def test_missing_propensity_names_the_estimators_that_need_it(small_logs, bandit):
    logs = small_logs.drop(columns="propensity")
    pattern = (r"missing required column\(s\) 'propensity'.*'ips', 'dr' need it \(only 'dm' does not\)"
               r".*propensity='estimate'")
    with pytest.raises(LogValidationError, match=pattern):
        evaluate(logs, TabularPolicy(bandit[3]), ("ips", "dm", "dr"))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda d: d.assign(propensity=d["propensity"].where(d.index != 7, 0.0)), r"'propensity': row 7"),
        (lambda d: d.assign(propensity=d["propensity"].where(d.index != 3, 1.5)), r"'propensity': row 3"),
        (lambda d: d.assign(reward=d["reward"].where(d.index != 5, np.nan)), r"'reward': row 5"),
        (lambda d: d.assign(state=d["state"].where(d.index != 2, 99)), r"'state': row 2 .*\[0, 20\)"),
        (lambda d: d.assign(action=d["action"].where(d.index != 4, 9)), r"'action': row 4 .*\[0, 5\)"),
        (lambda d: d.drop(columns="reward"), r"missing required column.*'reward'"),
        (lambda d: d.iloc[:0], r"empty"),
    ],
)
def test_bad_logs_name_column_and_row(small_logs, bandit, change, pattern):
    with pytest.raises(LogValidationError, match=pattern):
        evaluate(change(small_logs), TabularPolicy(bandit[3]))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [("propensity", -0.5, "in \\(0, 1\\]"), ("propensity", 0.0, "in \\(0, 1\\]"),
     ("propensity", None, "finite"), ("reward", None, "finite"), ("propensity", 1.5, "in \\(0, 1\\]")],
)
def test_bad_logs_in_a_file_name_column_and_row(tmp_path, small_logs, bandit, column, value, expected):
    path = tmp_path / "bad.csv"
    small_logs.assign(**{column: small_logs[column].where(small_logs.index != 11, value)}).to_csv(
        path, index=False
    )
    with pytest.raises(LogValidationError, match=rf"bad.csv.*'{column}': row 11 .*{expected}"):
        evaluate(str(path), TabularPolicy(bandit[3]))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"estimators": ("ips", "magic")}, r"unknown estimator.*magic"),
        ({"level": 1.5}, r"level must be"),
        ({"n_bootstrap": 1}, r"n_bootstrap"),
        ({"clip_threshold": -1}, r"clip_threshold"),
        ({"propensity": "guess"}, r"propensity must be"),
        ({"reward_model": np.zeros((2, 2))}, r"reward_model must be .*\(20, 5\)"),
    ],
)
def test_bad_arguments(small_logs, bandit, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        evaluate(small_logs, TabularPolicy(bandit[3]), **kwargs)


def test_bad_policies(small_logs):
    with pytest.raises(ValueError, match=r"3000"):
        evaluate(small_logs, np.full((10, 5), 0.2))
    with pytest.raises(ValueError, match=r"row 0 sums to"):
        evaluate(small_logs, np.full((3000, 5), 0.3))
    with pytest.raises(ValueError, match=r"\(n_rows, n_actions\)"):
        evaluate(small_logs, np.full(5, 0.2))


# ------------------------------------------------------------------------------ properties


@pytest.mark.filterwarnings("ignore::hfrl.ope.SupportWarning")  # small samples miss actions
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60))
def test_ips_of_the_logging_policy_is_the_mean_reward(seed, n):
    rng = np.random.default_rng(seed)
    logging = rng.dirichlet(np.ones(3), 4)
    s = rng.integers(0, 4, n)
    a = np.array([rng.choice(3, p=logging[i]) for i in s])
    logs = pd.DataFrame({"state": s, "action": a, "reward": rng.normal(size=n), "propensity": logging[s, a]})
    result = evaluate(logs, TabularPolicy(logging), ("ips", "snips"))
    assert result.loc["ips", "estimate"] == pytest.approx(logs["reward"].mean(), abs=1e-9)
    assert result.loc["snips", "estimate"] == pytest.approx(logs["reward"].mean(), abs=1e-9)


@pytest.mark.filterwarnings("ignore::hfrl.ope.SupportWarning")
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-5, 5))
def test_snips_shifts_with_the_reward(seed, shift):
    p_state, q, logging, target = make_bandit(4, 3, seed)
    logs = collect(p_state, q, logging, 200, seed)
    policy = TabularPolicy(target)
    base = evaluate(logs, policy, ("snips", "dr"))
    moved = evaluate(logs.assign(reward=logs["reward"] + shift), policy, ("snips", "dr"))
    assert moved.loc["snips", "estimate"] == pytest.approx(base.loc["snips", "estimate"] + shift, abs=1e-9)
    assert moved.loc["snips", "std_error"] == pytest.approx(
        base.loc["snips", "std_error"], rel=1e-6, abs=1e-12
    )


# ------------------------------------------------------------------------------ compare


def two_arm_logs(n, means, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    r = (rng.random(n) < np.asarray(means)[a]).astype(float)
    return pd.DataFrame({"state": 0, "action": a, "reward": r, "propensity": 0.5})


def test_compare_verdicts():
    logs = two_arm_logs(20_000, [0.3, 0.4], seed=0)
    better, worse = TabularPolicy(np.array([[0.0, 1.0]])), TabularPolicy(np.array([[1.0, 0.0]]))
    assert compare(better, logs).verdict == "ship"
    assert compare(worse, logs).verdict == "worse"
    same = compare(TabularPolicy(np.array([[0.5, 0.5]])), logs)
    assert same.verdict == "no evidence"
    assert same.difference == pytest.approx(0.0, abs=1e-12)  # the logging policy itself
    against = compare(better, logs, baseline=worse, estimator="ips")
    assert against.verdict == "ship" and against.difference == pytest.approx(0.1, abs=0.03)
    assert "above 0" in compare(better, logs).reason


def test_compare_is_paired_and_matches_brute_force():
    logs = two_arm_logs(5_000, [0.3, 0.35], seed=1)
    candidate = TabularPolicy(np.array([[0.3, 0.7]]))
    result = compare(candidate, logs, estimator="ips")
    w = candidate.table_[0, logs["action"]] / 0.5
    diff = w * logs["reward"] - logs["reward"]
    assert result.difference == pytest.approx(diff.mean(), abs=1e-12)
    assert result.std_error == pytest.approx(diff.std(ddof=1) / np.sqrt(len(logs)), rel=1e-9)
    unpaired = np.hypot(
        result.candidate_ci[1] - result.candidate_value, result.baseline_ci[1] - result.baseline_value
    )
    assert result.ci_high - result.difference < unpaired


def test_compare_unreliable_when_overlap_is_poor():
    rng = np.random.default_rng(2)
    a = (rng.random(5000) < 0.001).astype(int)  # action 1 is almost never logged
    logs = pd.DataFrame({"state": 0, "action": a, "reward": rng.random(5000),
                         "propensity": np.where(a == 1, 0.001, 0.999)})
    result = compare(TabularPolicy(np.array([[0.0, 1.0]])), logs)
    assert result.verdict == "unreliable"
    assert "effective sample size" in result.reason
    logs1 = pd.DataFrame(
        {"state": 0, "action": np.zeros(500, int), "reward": rng.random(500), "propensity": 1.0}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupportWarning)
        result = compare(TabularPolicy(np.array([[0.5, 0.5]])), logs1)
    assert result.verdict == "unreliable" and "support violation" in result.reason
    assert result.support_violation_share == pytest.approx(0.5) and result.unobserved_share == 0.0


def test_compare_unobserved_mass_is_variance_not_a_verdict_by_itself():
    # uniform logging over 40 actions in 20 states, 2,000 rows: pairs unseen, none unsupported
    rng = np.random.default_rng(5)
    n, n_states, n_actions = 2000, 20, 40
    action = rng.integers(0, n_actions, n)
    logs = pd.DataFrame({"state": rng.integers(0, n_states, n), "action": action, "propensity": 1 / n_actions,
                         "reward": (rng.random(n) < np.where(action < 20, 0.2, 0.6)) * 1.0})
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (logs["state"], logs["action"]), 1)
    assert (counts == 0).any()  # some pairs unobserved
    # half the mass on the good actions, spread: well covered, small unobserved mass -> a verdict
    spread = np.zeros((n_states, n_actions))
    spread[:, 20:] = 1 / 20
    result = compare(TabularPolicy(spread), logs)
    assert result.verdict == "ship" and result.support_violation_share == 0.0
    assert 0 < result.unobserved_share < 0.5
    # all mass on one action per state, chosen among the pairs never seen: 100% unobserved
    unseen = np.zeros((n_states, n_actions))
    for s in range(n_states):
        missing = np.flatnonzero(counts[s] == 0)
        unseen[s, missing[0] if missing.size else 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupportWarning)
        far = compare(TabularPolicy(unseen), logs, estimator="ips")
    assert far.verdict == "unreliable" and far.support_violation_share == 0.0
    assert "not seen" in far.reason or "effective sample size" in far.reason
    # a large unobserved share with a big enough ESS is reported, not refused
    half = np.full((n_states, n_actions), 0.5 / n_actions)
    for s in range(n_states):
        seen = np.flatnonzero(counts[s] > 0)
        half[s] = 0.0
        half[s, seen] = 0.4 / seen.size
        missing = np.flatnonzero(counts[s] == 0)
        half[s, missing] = 0.6 / missing.size if missing.size else 0.0
        half[s] /= half[s].sum()
    with pytest.warns(SupportWarning, match="not a support violation"):
        relaxed = compare(TabularPolicy(half), logs, max_unobserved=0.5, min_ess=10, min_ess_share=0.0)
    assert relaxed.unobserved_share > 0.5 and relaxed.verdict != "unreliable"
    assert "not seen in these rows" in relaxed.reason


def test_compare_rejects_bad_baseline():
    logs = two_arm_logs(100, [0.3, 0.4], seed=0)
    with pytest.raises(ValueError, match="baseline"):
        compare(TabularPolicy(np.array([[0.0, 1.0]])), logs, baseline="random")


def test_compare_paired_bootstrap_interval():
    logs = two_arm_logs(20_000, [0.3, 0.34], seed=4)
    candidate = TabularPolicy(np.array([[0.2, 0.8]]))
    first = compare(candidate, logs, estimator="dr", n_bootstrap=200, random_state=1)
    again = compare(candidate, logs, estimator="dr", n_bootstrap=200, random_state=1)
    assert (first.boot_ci_low, first.boot_ci_high) == (again.boot_ci_low, again.boot_ci_high)
    assert first.boot_ci_low < first.difference < first.boot_ci_high
    normal_width = first.ci_high - first.ci_low
    assert 0.75 < (first.boot_ci_high - first.boot_ci_low) / normal_width < 1.33
    against = compare(candidate, logs, baseline=TabularPolicy(np.array([[0.5, 0.5]])), estimator="snips",
                      n_bootstrap=100, random_state=2)
    assert against.boot_ci_low < against.difference < against.boot_ci_high
    assert compare(candidate, logs).boot_ci_low is None


# ------------------------------------------------------------------------------ shared statistics


class CountingDuckDB(DuckDBBackend):
    """DuckDB that records every ``group_sums`` (each is one pass over the logs)."""

    def __init__(self):
        super().__init__()
        self.passes = []

    def group_sums(self, logs, keys, sums, *, where=None):
        self.passes.append((tuple(keys), tuple(sums)))
        return super().group_sums(logs, keys, sums, where=where)


def test_one_pass_over_a_file_serves_evaluate_compare_and_the_bootstrap(tmp_path, bandit, small_logs):
    path = str(tmp_path / "logs.parquet")
    small_logs.to_parquet(path)
    target = TabularPolicy(bandit[3])
    engine = CountingDuckDB()
    logs = Logs.open(path, engine)
    assert engine.passes == []  # the Parquet statistics prove every column valid
    shared = evaluate(logs, target, ALL)
    verdict = compare(target, logs)
    assert engine.passes == [(("state", "action"), ("count", "reward", "reward_sq", "inv_propensity",
                                                      "inv_propensity_sq"))]
    assert logs.fingerprint == fingerprint(small_logs)
    assert (logs.n_rows, logs.n_states, logs.n_actions) == (3000, 20, 5)
    fresh = evaluate(path, target, ALL, backend="duckdb")
    pd.testing.assert_frame_equal(shared, fresh)
    assert verdict.difference == compare(target, path, backend="duckdb").difference
    in_memory = evaluate(small_logs, target, ALL)
    np.testing.assert_allclose(in_memory["estimate"], fresh["estimate"], rtol=1e-9)


def test_logs_are_checked_against_the_policy(small_logs, bandit):
    logs = Logs.open(small_logs)
    narrow = TabularPolicy(bandit[3][:10])
    with pytest.raises(LogValidationError, match=r"'state': row \d+ has \d+, expected .*\[0, 10\)") as caught:
        evaluate(logs, narrow)
    offending = np.flatnonzero(small_logs["state"].to_numpy() >= 10)
    assert caught.value.column == "state"
    assert caught.value.first_row == offending[0]
    assert caught.value.count == offending.size


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [("propensity", 1.5, "in \\(0, 1\\]"), ("propensity", np.nan, "finite"), ("reward", np.nan, "finite"),
     ("reward", np.inf, "finite"), ("propensity", 0.0, "in \\(0, 1\\]")],
)
def test_bad_values_in_parquet_name_column_first_row_and_count(tmp_path, small_logs, bandit, column, value,
                                                               expected):
    # NaN is invisible to Parquet min/max statistics: the statistics pass itself must catch it
    path = str(tmp_path / "bad.parquet")
    bad = small_logs.index.isin([11, 40, 41])
    small_logs.assign(**{column: small_logs[column].where(~bad, value)}).to_parquet(path)
    with pytest.raises(LogValidationError, match=rf"'{column}': row 11 .*{expected}") as caught:
        Logs.open(path)
    assert (caught.value.column, caught.value.first_row, caught.value.count) == (column, 11, 3)
    with pytest.raises(LogValidationError, match=rf"'{column}': row 11"):
        evaluate(path, TabularPolicy(bandit[3]))


def test_integer_rewards_are_summed_exactly(tmp_path, small_logs, bandit):
    target = TabularPolicy(bandit[3])
    clicks = small_logs.assign(reward=(small_logs["reward"] > 0.5).astype(np.int8))
    scaled = clicks.assign(reward=(clicks["reward"] * 100).astype(np.int8))  # 100^2 overflows int8
    for frame in (clicks, scaled):
        path = str(tmp_path / f"r{int(frame['reward'].max())}.parquet")
        frame.to_parquet(path)
        on_file = evaluate(path, target, ALL, backend="duckdb")
        in_memory = evaluate(frame.astype({"reward": float}), target, ALL)
        np.testing.assert_allclose(on_file["estimate"], in_memory["estimate"], rtol=1e-12)
        np.testing.assert_allclose(on_file["std_error"], in_memory["std_error"], rtol=1e-9)


def test_large_tables_stream_on_duckdb_with_the_same_numbers(tmp_path):
    # 1,024 x 512 possible cells: DuckDB's "auto" strategy streams the sums into numpy
    rng = np.random.default_rng(3)
    n = 4000
    logs = pd.DataFrame({"state": rng.integers(0, 1024, n), "action": rng.integers(0, 512, n),
                         "reward": rng.integers(0, 2, n).astype(np.int8),
                         "propensity": rng.choice([0.25, 0.5, 1.0], n)})
    logs.loc[0, ["state", "action"]] = (1023, 511)
    path = str(tmp_path / "wide.parquet")
    logs.to_parquet(path)
    engine = DuckDBBackend()
    assert engine._dense_layout(path, ["state", "action"])[1] == [1024, 512]
    on_file = Logs.open(path, engine).statistics()
    in_memory = Logs.open(logs).statistics()
    np.testing.assert_array_equal(on_file.state, in_memory.state)
    np.testing.assert_array_equal(on_file.action, in_memory.action)
    for name in ("count", "reward", "reward_sq", "inv_propensity", "inv_propensity_sq"):
        np.testing.assert_allclose(getattr(on_file, name), getattr(in_memory, name), rtol=1e-12)
    assert on_file.fingerprint() == in_memory.fingerprint()
