"""HistoricalFrequency: invariants, smoothing limits, decay, backends agreeing, error paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.backends import fingerprint
from hfrl.errors import LogValidationError, NotFittedError
from hfrl.frequencies import HistoricalFrequency, fit_beta_binomial_prior
from hfrl.policies import TabularPolicy

T0 = pd.Timestamp("2024-05-01", tz="UTC")


def make_logs(n: int = 3000, n_states: int = 12, n_actions: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    state = rng.integers(0, n_states, n)
    return pd.DataFrame({
        "state": state,
        "action": rng.integers(0, n_actions, n),
        "reward": rng.binomial(1, 0.3, n).astype(float),
        "weight": rng.uniform(0.5, 2.0, n),
        "segment": state % 3,
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
    })


def raw_shares(logs: pd.DataFrame, n_states: int, n_actions: int, value: str = "reward") -> np.ndarray:
    table = np.zeros((n_states, n_actions))
    sums = logs.groupby(["state", "action"])[value].sum()
    for (s, a), v in sums.items():
        table[s, a] = v
    return table


# ------------------------------------------------------------------ invariants
@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        min_size=1, max_size=40,
    ),
    kind=st.sampled_from(["share", "rate"]),
    prior_strength=st.sampled_from([0.0, 0.5, 10.0]),
    normalization=st.sampled_from(["sum", "softmax"]),
)
def test_rows_are_distributions(cells, kind, prior_strength, normalization):
    logs = pd.DataFrame(cells, columns=["state", "action", "reward"])
    if logs.reward.sum() == 0:
        logs.loc[0, "reward"] = 1.0
    hf = HistoricalFrequency(kind, prior_strength=prior_strength, normalization=normalization)
    table = hf.fit(logs, n_states=8, n_actions=4).probabilities_
    assert table.shape == (8, 4)
    assert (table >= 0).all()
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(hf.counts_.sum(), logs.reward.sum())
    assert hf.impressions_.sum() == len(logs)


# ------------------------------------------------------------------ share
def test_prior_strength_zero_equals_raw_shares():
    logs = make_logs()
    hf = HistoricalFrequency(prior_strength=0).fit(logs, n_states=12, n_actions=5)
    counts = raw_shares(logs, 12, 5)
    np.testing.assert_allclose(hf.counts_, counts, rtol=1e-12)
    np.testing.assert_allclose(hf.probabilities_, counts / counts.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(hf.state_counts_, counts.sum(axis=1))


def test_count_rows_is_the_empirical_action_frequency():
    logs = make_logs().drop(columns="reward")  # reward is not needed for action frequencies
    hf = HistoricalFrequency(count="rows", prior_strength=0).fit(logs)
    counts = pd.crosstab(logs.state, logs.action).to_numpy()
    np.testing.assert_allclose(hf.probabilities_, counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(hf.impressions_, counts)


@pytest.mark.parametrize("params", [
    {"kind": "share", "prior_strength": 0.0},
    {"kind": "share", "prior_strength": 5.0},
    {"kind": "rate", "prior_strength": 0.0},
    {"kind": "rate", "smoothing": "beta_binomial"},
    {"kind": "share", "prior_strength": 2.0, "group_column": "segment"},
])
def test_unseen_state_gets_the_global_row(params):
    logs = make_logs()
    logs = logs[logs.state != 4]
    hf = HistoricalFrequency(**params).fit(logs, n_states=15)
    for unseen in (4, 12, 13, 14):
        np.testing.assert_allclose(hf.probabilities_[unseen], hf.global_, rtol=1e-12)
    assert hf.impressions_[4].sum() == 0
    if params["kind"] == "share":
        np.testing.assert_allclose(hf.global_, hf.counts_.sum(0) / hf.counts_.sum(), rtol=1e-12)


def test_state_without_events_gets_global_row_without_smoothing():
    logs = pd.DataFrame({"state": [0, 0, 1, 1], "action": [0, 1, 1, 1], "reward": [1.0, 3.0, 0.0, 0.0]})
    hf = HistoricalFrequency(prior_strength=0).fit(logs)
    np.testing.assert_allclose(hf.probabilities_[1], [0.25, 0.75])


def test_additive_smoothing_formula_and_its_limits():
    logs = make_logs()
    counts = raw_shares(logs, 12, 5)
    global_row = counts.sum(0) / counts.sum()
    m = 7.0
    hf = HistoricalFrequency(prior_strength=m).fit(logs)
    expected = (counts + m * global_row) / (counts.sum(1, keepdims=True) + m)
    np.testing.assert_allclose(hf.probabilities_, expected, rtol=1e-12)
    huge = HistoricalFrequency(prior_strength=1e12).fit(logs).probabilities_
    np.testing.assert_allclose(huge, np.tile(global_row, (12, 1)), atol=1e-9)
    small = HistoricalFrequency(prior_strength=1e-12).fit(logs).probabilities_
    np.testing.assert_allclose(small, counts / counts.sum(1, keepdims=True), atol=1e-9)


def test_group_level_sits_between_state_and_global():
    logs = make_logs()
    counts = raw_shares(logs, 12, 5)
    global_row = counts.sum(0) / counts.sum()
    groups = np.arange(12) % 3
    m = 4.0
    group_counts = np.stack([counts[groups == g].sum(0) for g in range(3)])
    group_rows = (group_counts + m * global_row) / (group_counts.sum(1, keepdims=True) + m)
    parent = group_rows[groups]
    hf = HistoricalFrequency(prior_strength=m, group_column="segment").fit(logs)
    expected = (counts + m * parent) / (counts.sum(1, keepdims=True) + m)
    np.testing.assert_allclose(hf.probabilities_, expected, rtol=1e-12)
    np.testing.assert_array_equal(hf.state_groups_, groups)
    # With a prior far stronger than a state's own counts but weaker than a group's, rows
    # approach their group's row: m large relative to n_s.
    tiny = logs[logs.index % 50 == 0].copy()  # few events per state
    strong = HistoricalFrequency(prior_strength=1e9, group_column="segment").fit(tiny)
    np.testing.assert_allclose(strong.probabilities_, np.tile(strong.global_, (12, 1)), atol=1e-6)


def test_weight_column_equals_repeating_rows():
    logs = pd.DataFrame({"state": [0, 0, 1], "action": [0, 1, 1], "reward": [1.0, 1.0, 1.0],
                         "weight": [2.0, 1.0, 3.0]})
    repeated = logs.loc[[0, 0, 1, 2, 2, 2]].drop(columns="weight")
    weighted = HistoricalFrequency(prior_strength=1.0, weight_column="weight").fit(logs)
    plain = HistoricalFrequency(prior_strength=1.0).fit(repeated)
    np.testing.assert_allclose(weighted.probabilities_, plain.probabilities_, rtol=1e-12)
    np.testing.assert_allclose(weighted.counts_, plain.counts_)
    np.testing.assert_array_equal(weighted.impressions_, [[1, 1], [0, 1]])


# ------------------------------------------------------------------ time decay
def test_decay_halves_weight_at_half_life():
    logs = pd.DataFrame({
        "state": [0, 0, 0],
        "action": [0, 1, 1],
        "reward": [1.0, 1.0, 1.0],
        "timestamp": [T0, T0 - pd.Timedelta("7D"), T0 - pd.Timedelta("14D")],
    })
    hf = HistoricalFrequency(prior_strength=0, half_life="7D").fit(logs)
    np.testing.assert_allclose(hf.counts_[0], [1.0, 0.5 + 0.25], rtol=1e-12)
    assert hf.reference_time_ == T0.value / 1e9
    np.testing.assert_allclose(hf.probabilities_[0], [1 / 1.75, 0.75 / 1.75])
    seconds = HistoricalFrequency(prior_strength=0, half_life=7 * 86400.0).fit(logs)
    np.testing.assert_allclose(seconds.counts_, hf.counts_, rtol=1e-12)
    later = HistoricalFrequency(prior_strength=0, half_life="7D", reference_time=T0 + pd.Timedelta("7D"))
    np.testing.assert_allclose(later.fit(logs).counts_[0], [0.5, 0.25 + 0.125], rtol=1e-12)
    np.testing.assert_array_equal(hf.impressions_[0], [1, 2])
    np.testing.assert_allclose(hf.exposures_[0], [1.0, 0.75])


# ------------------------------------------------------------------ rates
def test_rate_without_smoothing_normalises_raw_rates():
    logs = make_logs()
    clicks = raw_shares(logs, 12, 5)
    shows = pd.crosstab(logs.state, logs.action).to_numpy().astype(float)
    rates = clicks / shows
    hf = HistoricalFrequency("rate", prior_strength=0).fit(logs)
    np.testing.assert_allclose(hf.rates_, rates, rtol=1e-12)
    np.testing.assert_allclose(hf.probabilities_, rates / rates.sum(1, keepdims=True), rtol=1e-12)
    soft = HistoricalFrequency("rate", prior_strength=0, normalization="softmax", temperature=0.1).fit(logs)
    expected = np.exp(rates / 0.1)
    np.testing.assert_allclose(soft.probabilities_, expected / expected.sum(1, keepdims=True), rtol=1e-12)
    assert np.argmax(soft.probabilities_[0]) == np.argmax(rates[0])


def test_beta_binomial_prior_recovers_known_parameters():
    rng = np.random.default_rng(3)
    trials = rng.integers(50, 400, 6000)
    successes = rng.binomial(trials, rng.beta(3.0, 12.0, 6000))
    for method in ("moments", "max_likelihood"):
        a, b = fit_beta_binomial_prior(successes, trials, method)
        assert a == pytest.approx(3.0, rel=0.12), method
        assert b == pytest.approx(12.0, rel=0.12), method


def test_beta_binomial_through_logs():
    rng = np.random.default_rng(5)
    n_states, n_actions, per_cell = 40, 10, 60
    ctr = rng.beta(2.0, 8.0, (n_states, n_actions))
    state = np.repeat(np.arange(n_states), n_actions * per_cell)
    action = np.tile(np.repeat(np.arange(n_actions), per_cell), n_states)
    logs = pd.DataFrame({"state": state, "action": action,
                         "reward": rng.binomial(1, ctr[state, action]).astype(float)})
    hf = HistoricalFrequency("rate", smoothing="beta_binomial", prior_fit="max_likelihood").fit(logs)
    a, b = hf.beta_prior_
    assert a / (a + b) == pytest.approx(0.2, abs=0.02)
    assert a > 1.2 and a < 3.2 and b > 5.0 and b < 13.0
    raw = raw_shares(logs, n_states, n_actions) / per_cell
    np.testing.assert_allclose(hf.rates_, (raw * per_cell + a) / (per_cell + a + b), rtol=1e-12)
    # shrinkage: posterior rates are closer to the prior mean than raw rates
    assert np.abs(hf.rates_ - a / (a + b)).sum() < np.abs(raw - a / (a + b)).sum()


# ------------------------------------------------------------------ backends agree
CONFIGS = [
    {},
    {"prior_strength": 0.0},
    {"count": "rows"},
    {"kind": "rate", "prior_strength": 3.0, "group_column": "segment"},
    {"kind": "rate", "smoothing": "beta_binomial"},
    {"kind": "rate", "normalization": "softmax", "temperature": 0.2},
    {"half_life": "5D", "weight_column": "weight", "group_column": "segment", "prior_strength": 2.0},
]


@pytest.mark.parametrize("params", CONFIGS)
def test_duckdb_files_and_memory_agree(tmp_path, params):
    logs = make_logs(n=2000)
    parquet, csv = tmp_path / "logs.parquet", tmp_path / "logs.csv"
    logs.to_parquet(parquet)
    logs.to_csv(csv, index=False)
    logs.iloc[:900].to_parquet(tmp_path / "part-0.parquet")
    logs.iloc[900:].to_parquet(tmp_path / "part-1.parquet")
    reference = HistoricalFrequency(**params).fit(logs)
    for source, backend in [(logs, "duckdb"), (parquet, None), (str(csv), None),
                            (str(tmp_path / "part-*.parquet"), None), (parquet, "memory")]:
        other = HistoricalFrequency(**params, backend=backend).fit(source)
        np.testing.assert_allclose(other.probabilities_, reference.probabilities_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(other.counts_, reference.counts_, rtol=1e-12)
        np.testing.assert_array_equal(other.impressions_, reference.impressions_)
        assert other.fingerprint_ == reference.fingerprint_


def test_fingerprint_and_to_policy():
    logs = make_logs(n=400)
    hf = HistoricalFrequency().fit(logs)
    assert hf.fingerprint_ == fingerprint(logs)
    assert hf.fingerprint_ != fingerprint(logs.iloc[:-1])
    policy = hf.to_policy()
    assert isinstance(policy, TabularPolicy)
    np.testing.assert_array_equal(policy.table_, hf.probabilities_)
    assert policy.metadata["kind"] == "share"
    with pytest.raises(NotFittedError, match="not fitted"):
        HistoricalFrequency().to_policy()


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("params, message", [
    ({"kind": "ctr"}, "kind must be one of"),
    ({"prior_strength": -1}, "prior_strength must be a finite number >= 0"),
    ({"prior_strength": float("nan")}, "prior_strength"),
    ({"temperature": 0}, "temperature must be"),
    ({"count": "clicks"}, "count must be one of"),
    ({"smoothing": "laplace"}, "smoothing must be one of"),
    ({"prior_fit": "bayes"}, "prior_fit must be one of"),
    ({"normalization": "max"}, "normalization must be one of"),
    ({"kind": "rate", "count": "rows"}, "count='rows' applies to kind='share'"),
    ({"smoothing": "beta_binomial"}, "applies to kind='rate'"),
    ({"half_life": "soon"}, "half_life must be"),
    ({"half_life": -3}, "half_life must be positive"),
    ({"reference_time": "not a date"}, "reference_time"),
    ({"group_column": "state"}, "group_column must be"),
    ({"backend": "oracle"}, "backend must be one of"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        HistoricalFrequency(**params).fit(make_logs(n=50))


def test_bad_shape_arguments():
    with pytest.raises(ValueError, match="n_states must be a positive integer"):
        HistoricalFrequency().fit(make_logs(n=50), n_states=0)


@pytest.mark.parametrize("change, params, column, row, message", [
    (lambda d: d.drop(columns="reward"), {}, "reward", None, "missing required column"),
    (lambda d: d.assign(reward=d.reward.where(d.index != 7, np.nan)), {}, "reward", 7, "finite number"),
    (lambda d: d.assign(reward=d.reward.where(d.index != 3, -1.0)), {}, "reward", 3, "non-negative reward"),
    (lambda d: d.assign(reward=d.reward.where(d.index != 5, 2.0)),
     {"kind": "rate", "smoothing": "beta_binomial"}, "reward", 5, r"in \[0, 1\]"),
    (lambda d: d.assign(state=d.state.where(d.index != 9, -2)), {}, "state", 9, "non-negative"),
    (lambda d: d.assign(action=d.action.where(d.index != 11, 5)), {}, "action", 11,
     r"known action id in \[0, 5\)"),
    (lambda d: d.assign(weight=d.weight.where(d.index != 2, -1.0)), {"weight_column": "weight"}, "weight", 2,
     "non-negative weight"),
])
def test_bad_logs_name_column_and_row(tmp_path, change, params, column, row, message):
    logs = change(make_logs(n=60))
    for source in (logs, tmp_path / "logs.parquet"):
        if not isinstance(source, pd.DataFrame):
            logs.to_parquet(source)
        with pytest.raises(LogValidationError, match=message) as info:
            HistoricalFrequency(**params).fit(source, n_actions=5)
        assert info.value.column == column
        assert info.value.first_row == row
        if row is not None:
            assert info.value.count == 1
            assert f"row {row}" in str(info.value)


def test_bad_csv_rows_are_found_by_a_sql_scan(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("state,action,reward\n0,1,1.0\n1,0,0.0\nx,1,1.0\n2,1,nan\n2,1,0.0\n")
    with pytest.raises(LogValidationError, match="'state': row 2 has 'x'") as info:
        HistoricalFrequency().fit(path)
    assert (info.value.source, info.value.column, info.value.count) == (str(path), "state", 1)
    path.write_text("state,action,reward\n0,1,1.0\n1,0,0.0\n2.5,1,1.0\n2,1,0.0\n")
    expected = "'state': row 2 has 2.5, expected an integer id; 1 of 4 rows"
    with pytest.raises(LogValidationError, match=expected):
        HistoricalFrequency().fit(path)
    path.write_text("state,action,reward\n0,1,1.0\n1,0,0.0\n2,1,1.5\n2,1,nan\n2,1,0.0\n")
    with pytest.raises(LogValidationError, match="'reward': row 3 has NaN, expected a finite number"):
        HistoricalFrequency().fit(path)


def test_nan_reward_hidden_from_parquet_statistics_is_still_found(tmp_path):
    logs = make_logs(n=200)
    logs.loc[150, "reward"] = np.nan
    path = tmp_path / "logs.parquet"
    logs.drop(columns="timestamp").to_parquet(path)
    expected = "row 150 has an empty value, expected a finite number"
    with pytest.raises(LogValidationError, match=expected) as info:
        HistoricalFrequency().fit(path)
    assert info.value.count == 1


@pytest.mark.parametrize("backend", ["duckdb", "memory"])
@pytest.mark.parametrize("kind", ["share", "rate"])
def test_real_nan_rewards_in_parquet_name_column_first_row_and_count(tmp_path, backend, kind):
    # the OBD failure: NaN rewards in a Parquet file (several row groups) must not surface as
    # "the sums are not finite"; the error names the column, the first offending row and the count
    logs = make_logs(n=400).drop(columns="timestamp")
    logs["reward"] = logs["reward"].astype(np.float64)
    logs.loc[[260, 333], "reward"] = np.nan
    path = tmp_path / "nan.parquet"
    logs.to_parquet(path, row_group_size=100)
    with pytest.raises(LogValidationError, match="'reward': row 260") as info:
        HistoricalFrequency(kind=kind, backend=backend).fit(path)
    assert (info.value.column, info.value.first_row, info.value.count) == ("reward", 260, 2)
    assert "not finite (overflow" not in str(info.value)


def test_group_column_must_be_a_function_of_state():
    logs = make_logs(n=100)
    logs.loc[0, "segment"] = logs.loc[0, "segment"] + 1
    with pytest.raises(LogValidationError, match="'segment' must be a function of state"):
        HistoricalFrequency(group_column="segment").fit(logs)


def test_empty_logs_and_missing_files(tmp_path):
    with pytest.raises(LogValidationError, match="empty"):
        HistoricalFrequency().fit(make_logs().iloc[:0])
    empty = tmp_path / "empty.parquet"
    make_logs().iloc[:0].to_parquet(empty)
    with pytest.raises(LogValidationError, match="empty"):
        HistoricalFrequency().fit(empty)
    with pytest.raises(LogValidationError, match="no log file matches"):
        HistoricalFrequency().fit(tmp_path / "nothing-*.parquet")


def test_no_events_warns_and_falls_back_to_uniform():
    logs = pd.DataFrame({"state": [0, 1], "action": [0, 1], "reward": [0.0, 0.0]})
    with pytest.warns(RuntimeWarning, match="no events"):
        hf = HistoricalFrequency(prior_strength=0).fit(logs)
    np.testing.assert_allclose(hf.probabilities_, 0.5)


@pytest.mark.slow
def test_spark_backend_gives_the_same_table(tmp_path):
    """One Spark session, two configurations, a DataFrame and a Parquet file (slow: starts a JVM)."""
    import shutil

    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    from hfrl.backends.spark import SparkBackend

    logs = make_logs(n=800)
    path = tmp_path / "logs.parquet"
    logs.to_parquet(path)
    spark = SparkBackend(master="local[2]")
    try:
        for params in (CONFIGS[6], CONFIGS[4]):
            reference = HistoricalFrequency(**params).fit(logs)
            for source in (logs, path):
                other = HistoricalFrequency(**params, backend=spark).fit(source)
                np.testing.assert_allclose(other.probabilities_, reference.probabilities_, rtol=0, atol=1e-12)
                np.testing.assert_array_equal(other.impressions_, reference.impressions_)
                assert other.fingerprint_ == reference.fingerprint_
        bad_path = tmp_path / "bad.parquet"
        logs.assign(reward=logs.reward.where(logs.index != 17, -1.0)).to_parquet(bad_path)
        with pytest.raises(LogValidationError, match="non-negative reward") as info:
            HistoricalFrequency(backend=spark).fit(bad_path)
        assert info.value.count == 1
    finally:
        spark.stop()
