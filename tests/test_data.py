"""Log schema validation, loading from files, and encoders."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hfrl.data import (
    CategoryEncoder,
    LogValidationError,
    LogValidationWarning,
    load_logs,
    scan_sql,
    validate_logs,
)
from hfrl.errors import LogValidationError as ErrorsLogValidationError


def make_logs(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "state": np.arange(n) % 3,
            "action": np.arange(n) % 2,
            "reward": np.linspace(0, 1, n),
            "propensity": np.full(n, 0.5),
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
        }
    )


def test_error_class_is_shared_and_a_value_error():
    assert LogValidationError is ErrorsLogValidationError
    assert issubclass(LogValidationError, ValueError)


def test_valid_logs_get_canonical_dtypes():
    out = validate_logs(make_logs(), n_states=3, n_actions=2)
    assert out["state"].dtype == np.int64
    assert out["reward"].dtype == np.float64
    assert isinstance(out["timestamp"].dtype, pd.DatetimeTZDtype)
    assert out.attrs["n_dropped"] == 0


@pytest.mark.parametrize(
    ("column", "values", "expected", "first_row", "count"),
    [
        ("reward", [0, 1, np.nan, 0, np.inf, 1], "a finite number", 2, 2),
        ("reward", ["a", 1, 0, 0, 0, 1], "a finite number", 0, 1),
        ("propensity", [0.5, 0.5, 0.5, 0.0, 1.5, 0.5], r"a propensity in \(0, 1\]", 3, 2),
        ("action", [0, 1, 0, 5, 1, 0], r"a known action id in \[0, 2\)", 3, 1),
        ("action", [0, -1, 0, 1, 1, 0], "a non-negative integer id", 1, 1),
        ("state", [0, 1, 2.5, 1, 1, 0], "an integer id", 2, 1),
        ("state", ["x", 1, 2, 1, 1, 0], "an integer id", 0, 1),
        ("timestamp", ["2024-01-01", "yesterday", "2024-01-02", "", "2024-01-03", "2024-01-04"],
         "a parseable date-time", 1, 2),
    ],
)
def test_each_error_names_column_first_row_and_count(column, values, expected, first_row, count):
    logs = make_logs().astype({column: object})
    logs[column] = values
    with pytest.raises(LogValidationError, match=expected) as info:
        validate_logs(logs, n_states=3, n_actions=2)
    error = info.value
    assert (error.column, error.first_row, error.count) == (column, first_row, count)
    assert f"column {column!r}" in str(error)
    assert f"row {first_row}" in str(error)
    assert f"{count} of 6 rows offend" in str(error)


def test_missing_columns_and_empty_logs():
    missing = r"missing required column\(s\) 'reward'; the logs have 'state', 'action'"
    with pytest.raises(LogValidationError, match=missing):
        validate_logs(make_logs().drop(columns="reward"))
    with pytest.raises(LogValidationError, match="empty"):
        validate_logs(make_logs().iloc[:0])
    with pytest.raises(LogValidationError, match="propensity"):
        required = ("state", "action", "reward", "propensity")
        validate_logs(make_logs().drop(columns="propensity"), required=required)
    with pytest.raises(TypeError, match="DataFrame"):
        validate_logs([1, 2, 3])
    with pytest.raises(ValueError, match="on_invalid"):
        validate_logs(make_logs(), on_invalid="ignore")


def test_drop_reports_what_it_dropped():
    logs = make_logs()
    logs.loc[1, "reward"] = np.nan
    logs.loc[4, "propensity"] = 2.0
    expected = r"dropped 2 of 6 rows: reward: 1 rows .*propensity: 1 rows"
    with pytest.warns(LogValidationWarning, match=expected):
        out = validate_logs(logs, on_invalid="drop")
    assert len(out) == 4
    assert out.attrs["n_dropped"] == 2
    everything_bad = make_logs().assign(reward=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogValidationWarning)
        with pytest.raises(LogValidationError, match="every row was invalid"):
            validate_logs(everything_bad, on_invalid="drop")


def test_optional_columns_next_state_done_weight():
    logs = make_logs().assign(next_state=[1, 2, None, 0, 1, None], done=[0, 0, 1, 0, 0, 1], weight=1.0)
    out = validate_logs(logs)
    assert out["done"].tolist() == [False, False, True, False, False, True]
    assert out["next_state"].isna().sum() == 2
    with pytest.raises(LogValidationError, match="'done'"):
        validate_logs(logs.assign(done=[0, 2, 1, 0, 0, 1]))
    with pytest.raises(LogValidationError, match="a non-negative weight"):
        validate_logs(logs.assign(weight=[1, 1, -1, 1, 1, 1]))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_logs_from_files_and_globs(tmp_path, suffix):
    logs = make_logs()
    for part in range(2):
        path = tmp_path / f"part{part}{suffix}"
        chunk = logs.iloc[part * 3 : (part + 1) * 3]
        chunk.to_csv(path, index=False) if suffix == ".csv" else chunk.to_parquet(path)
    loaded = load_logs(str(tmp_path / f"part*{suffix}"))
    assert len(loaded) == 6
    assert sorted(loaded["state"].tolist()) == sorted(logs["state"].tolist())
    assert "read_" in scan_sql(tmp_path / f"part0{suffix}")


def test_load_logs_file_errors_name_the_file(tmp_path):
    with pytest.raises(LogValidationError, match="no log file matches"):
        load_logs(tmp_path / "nothing.csv")
    bad = tmp_path / "bad.csv"
    make_logs().assign(reward=["1", "x", "0", "1", "0", "1"]).to_csv(bad, index=False)
    with pytest.raises(LogValidationError, match=r"bad\.csv: column 'reward': row 1"):
        load_logs(bad)
    text = tmp_path / "logs.txt"
    text.write_text("state,action,reward\n")
    with pytest.raises(LogValidationError, match="cannot tell the format"):
        load_logs(text)


def test_category_encoder_multi_column_unknown_bucket_and_round_trip():
    frame = pd.DataFrame({"segment": ["a", "b", "a", "c"], "device": [1, 2, 1, 2]})
    encoder = CategoryEncoder(["segment", "device"]).fit(frame)
    ids = encoder.transform(frame)
    assert ids.tolist() == [0, 1, 0, 2]
    assert encoder.n_known == 3 and encoder.unknown_id == 3 and encoder.n_ids == 4
    new = pd.DataFrame({"segment": ["a", "z"], "device": [1, 1]})
    assert encoder.transform(new).tolist() == [0, 3]
    back = encoder.inverse_transform([2, 3])
    assert back.iloc[0].tolist() == ["c", "2"]
    assert back.iloc[1, 0] == "<unknown>"
    restored = CategoryEncoder.from_dict(encoder.to_dict())
    assert restored.transform(frame).tolist() == ids.tolist()


def test_category_encoder_errors():
    encoder = CategoryEncoder("item", handle_unknown="error").fit(pd.DataFrame({"item": [10, 20]}))
    assert encoder.transform([20, 10]).tolist() == [1, 0]
    with pytest.raises(LogValidationError, match=r"row 1 has a value never seen in fit; 1 rows"):
        encoder.transform([10, 99])
    with pytest.raises(LogValidationError, match="missing column"):
        encoder.transform(pd.DataFrame({"sku": [1]}))
    with pytest.raises(ValueError, match="not fitted"):
        CategoryEncoder("x").transform([1])
    with pytest.raises(ValueError, match="not an encoder description"):
        CategoryEncoder.from_dict({"categories": []})
