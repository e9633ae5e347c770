"""Backends: group_sums and the expression grammar agree between memory (numpy) and DuckDB (SQL)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hfrl.backends import fingerprint, get_backend
from hfrl.backends.expressions import columns_of, evaluate_numpy, parse, to_sql

BACKENDS = ["memory", "duckdb"]


@pytest.fixture
def logs() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 500
    return pd.DataFrame({
        "state": rng.integers(0, 6, n),
        "action": rng.integers(2, 5, n),
        "reward": rng.random(n).round(3),
        "propensity": rng.uniform(0.1, 1.0, n),
        "timestamp": pd.Timestamp("2024-03-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 10 * 86400, n), unit="s"),
    })


def both(logs, keys, sums, where=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tuple(get_backend(b).group_sums(logs, keys, sums, where=where) for b in BACKENDS)


def test_grouped_sums_agree_and_match_pandas(logs):
    sums = {"rows": "1", "ips": "reward / propensity", "clipped": "least(reward / propensity, 2)"}
    memory, duck = both(logs, ["state", "action"], sums)
    pd.testing.assert_frame_equal(memory, duck, check_dtype=False, rtol=1e-12, atol=1e-12)
    expected = logs.assign(ips=logs.reward / logs.propensity).groupby(["state", "action"])["ips"].sum()
    np.testing.assert_allclose(memory["ips"].to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert memory["action"].min() == 2  # keys keep their values, not offsets
    assert list(memory.columns) == ["state", "action", "rows", "ips", "clipped"]


def test_totals_with_no_keys(logs):
    memory, duck = both(logs, [], {"rows": "1", "reward": "reward"})
    assert memory.shape == duck.shape == (1, 2)
    assert memory["rows"].iloc[0] == duck["rows"].iloc[0] == len(logs)
    assert duck["reward"].iloc[0] == pytest.approx(logs.reward.sum(), rel=1e-12)


def test_where_filter_and_comparisons(logs):
    memory, duck = both(logs, ["action"], {"rows": "1", "high": "reward > 0.5"}, where="state >= 3")
    pd.testing.assert_frame_equal(memory, duck, check_dtype=False)
    kept = logs[logs.state >= 3]
    assert memory["rows"].sum() == len(kept)
    assert memory["high"].sum() == (kept.reward > 0.5).sum()


def test_epoch_and_exp_decay(logs):
    latest = logs.timestamp.max().value / 1e9
    sums = {"decay": f"exp(0.001 * (epoch(timestamp) - {latest}))", "seconds": "epoch(timestamp)"}
    memory, duck = both(logs, ["state"], sums)
    pd.testing.assert_frame_equal(memory, duck, check_dtype=False, rtol=1e-12)
    seconds = (logs.timestamp - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    assert memory["seconds"].sum() == pytest.approx(seconds.sum(), rel=1e-12)


def test_empty_result_when_nothing_passes(logs):
    memory, duck = both(logs, ["state", "action"], {"rows": "1"}, where="reward > 5")
    assert len(memory) == len(duck) == 0
    assert list(memory.columns) == list(duck.columns) == ["state", "action", "rows"]
    total_memory, total_duck = both(logs, [], {"rows": "1"}, where="reward > 5")
    assert total_memory["rows"].iloc[0] == total_duck["rows"].iloc[0] == 0


def test_finite_and_floor_see_bad_values():
    frame = pd.DataFrame({"state": [0.0, 1.5, np.nan, 3.0, np.inf], "action": [0, 0, 1, 1, 1]})
    sums = {"not_finite": "1 - finite(state)", "fraction": "finite(state) * (floor(state) < state)"}
    memory, duck = both(frame, [], sums)
    assert memory["not_finite"].iloc[0] == duck["not_finite"].iloc[0] == 2
    assert memory["fraction"].iloc[0] == duck["fraction"].iloc[0] == 1


@pytest.mark.parametrize("name", BACKENDS)
def test_first_row(name):
    frame = pd.DataFrame({"state": [0, 1, 2, 9, 9], "action": 0, "reward": [0.0, 1, 1, -1, -1]})
    backend = get_backend(name)
    assert backend.first_row(frame, "reward < 0") == 3
    assert backend.first_row(frame, "reward > 10") is None


def test_first_row_in_a_parquet_file_follows_file_order(tmp_path):
    n = 300_000
    frame = pd.DataFrame({"state": np.zeros(n, np.int64), "action": 0, "reward": 1.0})
    frame.loc[[250_001, 299_000], "reward"] = -1.0
    path = tmp_path / "logs.parquet"
    frame.to_parquet(path, row_group_size=50_000)
    assert get_backend("duckdb").first_row(path, "reward < 0") == 250_001


@pytest.mark.parametrize("name", BACKENDS)
def test_column_ranges(name, logs):
    ranges = get_backend(name).column_ranges(logs, ["state", "reward", "timestamp"])
    assert ranges.loc["state", "kind"] == "integer"
    assert ranges.loc["state", "max"] == logs.state.max()
    assert ranges.loc["reward", "kind"] == "float"
    assert ranges.loc["timestamp", "kind"] == "datetime"
    assert ranges.loc["timestamp", "max"] == pytest.approx(logs.timestamp.max().value / 1e9)
    assert (ranges["nulls"] == 0).all()


def test_column_ranges_from_parquet_statistics_count_nulls(tmp_path):
    frame = pd.DataFrame({"state": pd.array([1, None, 3], dtype="Int64"), "reward": [0.5, 0.25, 2.0]})
    path = tmp_path / "logs.parquet"
    frame.to_parquet(path)
    ranges = get_backend("duckdb").column_ranges(path, ["state", "reward"])
    assert ranges.loc["state", "nulls"] == 1
    assert (ranges.loc["state", "min"], ranges.loc["state", "max"]) == (1.0, 3.0)
    assert ranges.loc["reward", "max"] == 2.0


@pytest.mark.parametrize(
    "expression, message",
    [
        ("reward ** 2", "only \\+ - \\* /"),
        ("sqrt(reward)", "may be called"),
        ("reward and 1", "BoolOp is not allowed"),
        ("'text'", "numeric constants"),
        ("0 < reward < 1", "single comparisons"),
        ("reward +", "cannot parse"),
    ],
)
def test_bad_expression_is_refused(expression, message, logs):
    with pytest.raises(ValueError, match=message):
        parse(expression)
    for name in BACKENDS:
        with pytest.raises(ValueError, match=message):
            get_backend(name).group_sums(logs, ["state"], {"x": expression})


def test_sql_rendering_falls_back_to_default_functions():
    sql = to_sql("finite(reward) * (state >= 2) + floor(cast_double(action))", {})
    assert "isnan" in sql and "CASE WHEN" in sql and "floor(TRY_CAST" in sql
    assert columns_of("exp(reward) + epoch(timestamp)") == {"reward", "timestamp"}


def test_evaluate_numpy_broadcasts_constants():
    assert evaluate_numpy("2 + 1", {}, 3).tolist() == [3.0, 3.0, 3.0]


def test_fingerprint_agrees_across_backends_and_files(tmp_path, logs):
    path = tmp_path / "logs.parquet"
    logs.to_parquet(path)
    reference = fingerprint(logs)
    assert reference == fingerprint(logs, "duckdb") == fingerprint(path)
    assert reference[:3] == (len(logs), int(logs.state.sum()), int(logs.action.sum()))
    assert fingerprint(logs.iloc[1:]) != reference


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("oracle")


@pytest.mark.parametrize("strategy", ["sql", "composite", "stream"])
def test_duckdb_strategies_agree_on_a_parquet_file(tmp_path, logs, strategy):
    from hfrl.backends.duckdb import DuckDBBackend

    path = tmp_path / "logs.parquet"
    logs.to_parquet(path)
    sums = {"rows": "1", "events": "reward", "ips": "reward / propensity"}
    reference = get_backend("memory").group_sums(logs, ["state", "action"], sums, where="reward > 0.2")
    backend = DuckDBBackend(strategy=strategy)
    result = backend.group_sums(path, ["state", "action"], sums, where="reward > 0.2")
    pd.testing.assert_frame_equal(result, reference, check_dtype=False, rtol=1e-12, atol=1e-12)
    assert result["state"].dtype == np.int64


def test_dense_path_is_skipped_for_wide_or_nullable_keys(tmp_path):
    from hfrl.backends.duckdb import DuckDBBackend

    frame = pd.DataFrame({"state": [0, 10_000_000, 5], "action": [0, 1, 1], "reward": [1.0, 2.0, 3.0]})
    backend = DuckDBBackend()
    assert backend._dense_layout(frame, ["state", "action"]) is None  # 2e7 cells: plain GROUP BY
    assert backend._dense_layout(frame.assign(state=[0, 1, 5]), ["state", "action"]) == ([0, 0], [6, 2])
    result = backend.group_sums(frame, ["state", "action"], {"r": "reward"})
    assert result["state"].tolist() == [0, 5, 10_000_000]
    with pytest.raises(ValueError, match="strategy must be"):
        DuckDBBackend(strategy="fast")
