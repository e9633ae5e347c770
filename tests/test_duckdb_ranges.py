"""DuckDB column ranges from Parquet footers and epoch() without a per-row cast: same answers as a scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hfrl.backends.duckdb import DuckDBBackend
from hfrl.backends.memory import MemoryBackend


def _write(tmp_path, frame, name="logs.parquet"):
    path = str(tmp_path / name)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=50)
    return path


def test_footer_ranges_match_a_scan(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "state": rng.integers(3, 40, n).astype(np.int32),
        "action": pd.array(rng.integers(0, 7, n), dtype="Int16"),
        "reward": rng.random(n),
        "timestamp": pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 10**12, n), "us"),
    })
    frame.loc[[5, 170], "action"] = pd.NA
    path = _write(tmp_path, frame)
    ranges = DuckDBBackend().column_ranges(path, ["state", "action", "reward", "timestamp"])
    assert ranges.loc["state", ["min", "max", "nulls"]].tolist() == [
        frame["state"].min(), frame["state"].max(), 0]
    assert ranges.loc["action", "nulls"] == 2
    assert ranges.loc["action", ["min", "max"]].tolist() == [frame["action"].min(), frame["action"].max()]
    seconds = frame["timestamp"].astype("datetime64[us]").astype(np.int64) / 1e6
    assert ranges.loc["timestamp", ["min", "max"]].tolist() == [seconds.min(), seconds.max()]
    assert ranges.loc["reward", ["min", "max"]].tolist() == [frame["reward"].min(), frame["reward"].max()]


def test_nan_in_a_float_column_is_never_hidden_by_footers(tmp_path):
    # Parquet min/max statistics skip NaN: the range must not look finite and complete
    path = str(tmp_path / "nan.parquet")
    reward = pa.array([0.5, float("nan"), 1.0, 0.0], from_pandas=False)  # a real NaN, not a null
    pq.write_table(pa.table({"state": [0, 1, 2, 3], "reward": reward}), path)
    row = DuckDBBackend().column_ranges(path, ["reward"]).loc["reward"]
    assert not (np.isfinite(row["min"]) and np.isfinite(row["max"]))
    # pandas writes NaN as null: then the footers' null count says so
    frame = pd.DataFrame({"state": [0, 1, 2, 3], "reward": [0.5, np.nan, 1.0, 0.0]})
    assert DuckDBBackend().column_ranges(_write(tmp_path, frame), ["reward"]).loc["reward", "nulls"] == 1


def test_epoch_of_timestamp_columns_equals_memory(tmp_path):
    rng = np.random.default_rng(1)
    n = 500
    frame = pd.DataFrame({
        "state": rng.integers(0, 5, n), "action": rng.integers(0, 3, n),
        "timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**12, n), "us"),
    })
    sums = {"n": "1", "w": "exp(1e-6 * (epoch(timestamp) - 1767225600))", "t": "epoch(timestamp)"}
    expected = MemoryBackend().group_sums(frame, ["state", "action"], sums)
    path = _write(tmp_path, frame)
    for logs in (path, frame):
        got = DuckDBBackend().group_sums(logs, ["state", "action"], sums)
        pd.testing.assert_frame_equal(got, expected, rtol=1e-12)
    rendered = DuckDBBackend().functions(path, ["epoch(timestamp)"])["epoch"](['"timestamp"'])
    assert rendered == 'epoch("timestamp")'  # no per-row cast


def test_a_real_nan_in_parquet_is_refused_with_its_row(tmp_path):
    from hfrl.data import Logs
    from hfrl.errors import LogValidationError
    from hfrl.frequencies import HistoricalFrequency

    path = str(tmp_path / "nan_reward.parquet")
    reward = [0.5, 1.0, 0.0, float("nan"), 1.0, float("nan")]
    pq.write_table(pa.table({
        "state": [0, 1, 2, 0, 1, 2], "action": [0, 0, 1, 1, 0, 1],
        "reward": pa.array(reward, from_pandas=False), "propensity": [0.5] * 6,
    }), path)
    with pytest.raises(LogValidationError, match=r"'reward': row 3 .*finite") as caught:
        Logs.open(path)
    assert (caught.value.column, caught.value.first_row, caught.value.count) == ("reward", 3, 2)
    with pytest.raises(LogValidationError) as again:  # HF refuses it with the same message
        HistoricalFrequency().fit(path)
    assert str(again.value) == str(caught.value)
