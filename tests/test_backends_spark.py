"""The Spark backend gives the memory and DuckDB numbers (to 1e-9) on the same DataFrame, CSV and Parquet.

One local Spark session serves the whole file (starting the JVM takes seconds), and each test runs
few Spark jobs so that the file stays well under a minute and a half.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from hfrl.backends import get_backend
from hfrl.backends.duckdb import DuckDBBackend
from hfrl.backends.memory import MemoryBackend
from hfrl.backends.spark import MASTER_ENV, SparkBackend, _session_settings, resolve_master, spark_sql
from hfrl.errors import LogValidationError

pytest.importorskip("pyspark")
if shutil.which("java") is None:  # `make test` installs a JDK first; a bare checkout may lack one
    pytest.skip("the Spark tests need Java (make test installs a JDK)", allow_module_level=True)

RTOL = 1e-9
SUMS = {
    "n": "1",
    "reward": "reward",
    "ips": "reward / propensity",
    "clipped": "least(reward / propensity, 4.5) + greatest(0.1 * weight, 0.2)",
    "decayed": "weight * exp(-0.5 * (1704153600.0 - epoch(timestamp)) / 86400.0)",
    "log_propensity": "ln(propensity) * cast_double(position)",
}


def make_logs(n_rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    offsets = rng.integers(0, 2 * 86_400 * 1_000_000, size=n_rows).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "state": rng.integers(0, 7, n_rows),
            "action": rng.integers(2, 6, n_rows),
            "position": rng.integers(1, 4, n_rows),
            "reward": rng.binomial(1, 0.3, n_rows).astype(np.int64),
            "propensity": rng.uniform(0.05, 1.0, n_rows),
            "weight": rng.uniform(0.5, 2.0, n_rows),
            "timestamp": pd.Series(start + offsets, dtype="datetime64[us]"),
        }
    )


@pytest.fixture(scope="session")
def spark_backend():
    backend = SparkBackend(master="local[2]")
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def logs() -> pd.DataFrame:
    return make_logs()


@pytest.fixture(scope="session")
def sources(logs, tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("spark_logs")
    csv_path = folder / "logs.csv"
    logs.to_csv(csv_path, index=False)
    parquet_dir = folder / "parts"
    parquet_dir.mkdir()
    half = len(logs) // 2
    logs.iloc[:half].to_parquet(parquet_dir / "part-0.parquet", index=False)
    logs.iloc[half:].to_parquet(parquet_dir / "part-1.parquet", index=False)
    return {"frame": logs, "csv": str(csv_path), "parquet": str(parquet_dir / "*.parquet")}


def assert_same(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in expected.columns:
        if expected[column].dtype.kind == "i":
            assert actual[column].dtype == np.int64, column
            np.testing.assert_array_equal(actual[column].to_numpy(), expected[column].to_numpy())
        else:
            assert actual[column].dtype == np.float64, column
            np.testing.assert_allclose(actual[column], expected[column], rtol=RTOL, atol=0, err_msg=column)


def test_spark_sql_renders_backticks_and_double_literals():
    assert spark_sql("1 + e1") == "(1.0D + `e1`)"
    assert spark_sql("reward / 3") == "(`reward` / 3.0D)"
    assert spark_sql("-2.5e-07 * x1") == "((-2.5e-07D) * `x1`)"
    assert spark_sql("least(a, 1e+20)") == "least(`a`, 1e+20D)"
    assert spark_sql("exp(ln(cast_double(a)))") == "exp(ln(TRY_CAST(`a` AS DOUBLE)))"
    assert "'Infinity'" in spark_sql("finite(a)")  # string literals stay as they are


def test_get_backend_resolves_spark(monkeypatch):
    monkeypatch.delenv(MASTER_ENV, raising=False)
    backend = get_backend("spark")
    assert isinstance(backend, SparkBackend)
    assert backend.master is None
    assert repr(backend) == "SparkBackend(master='local[2]')"


def test_the_master_comes_from_the_argument_the_environment_or_spark_submit(monkeypatch):
    monkeypatch.delenv(MASTER_ENV, raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert resolve_master() == "local[2]"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41234")  # what spark-submit hands its Python driver
    assert resolve_master() is None
    assert repr(SparkBackend()) == "SparkBackend(master=<spark-submit's>)"
    monkeypatch.setenv(MASTER_ENV, "spark://10.0.0.5:7077")
    assert resolve_master() == "spark://10.0.0.5:7077"
    assert repr(SparkBackend()) == "SparkBackend(master='spark://10.0.0.5:7077')"
    assert resolve_master("local[4]") == "local[4]"


def test_only_local_sessions_are_pinned_to_the_loopback_interface():
    local = _session_settings("local[2]", {"spark.driver.memory": "4g"})
    assert local["spark.driver.host"] == "127.0.0.1"
    assert local["spark.driver.memory"] == "4g"  # the caller's settings win
    for master in ("spark://10.0.0.5:7077", "yarn", None):
        cluster = _session_settings(master, {})
        assert cluster["spark.sql.session.timeZone"] == "UTC", master
        assert "spark.driver.host" not in cluster and "spark.sql.shuffle.partitions" not in cluster


def test_a_different_master_than_the_running_session_is_an_error(spark_backend, monkeypatch):
    running = spark_backend.session().sparkContext.master
    assert running == "local[2]"
    with pytest.raises(RuntimeError, match=r"'local\[2\]' already runs .* 'spark://10.0.0.5:7077'"):
        SparkBackend(master="spark://10.0.0.5:7077").session()
    monkeypatch.setenv(MASTER_ENV, "local[3]")
    with pytest.raises(RuntimeError, match=r"master 'local\[3\]' cannot be used"):
        SparkBackend().session()
    assert SparkBackend(master="local[2]").session().sparkContext is spark_backend.session().sparkContext


@pytest.mark.parametrize("source", ["frame", "csv", "parquet"])
def test_group_sums_agree_with_memory_and_duckdb(spark_backend, logs, sources, source):
    keys = ["state", "action"]
    expected = MemoryBackend().group_sums(logs, keys, SUMS)
    # sanity: the expected table is the plain pandas group-by of the same formulas
    assert expected["n"].sum() == len(logs)
    pandas_ips = (logs["reward"] / logs["propensity"]).groupby([logs["state"], logs["action"]]).sum()
    np.testing.assert_allclose(expected["ips"], pandas_ips.to_numpy(), rtol=RTOL)

    assert_same(expected, DuckDBBackend().group_sums(sources[source], keys, SUMS))
    assert_same(expected, spark_backend.group_sums(sources[source], keys, SUMS))


def test_totals_where_and_empty_groups(spark_backend, logs, sources):
    where = "reward * (3 - state)"  # non-zero: rewarded rows of states 0..2 and 4..6
    memory = MemoryBackend()
    for source in (sources["frame"], sources["parquet"]):
        expected_totals = memory.group_sums(logs, [], SUMS, where=where)
        assert_same(expected_totals, spark_backend.group_sums(source, [], SUMS, where=where))
        expected_by_state = memory.group_sums(logs, ["state"], {"ips": "reward / propensity"}, where=where)
        assert 3 not in set(expected_by_state["state"])
        assert_same(
            expected_by_state,
            spark_backend.group_sums(source, ["state"], {"ips": "reward / propensity"}, where=where),
        )
    none_kept = "state - state"
    totals = spark_backend.group_sums(sources["frame"], [], {"n": "1", "r": "reward"}, where=none_kept)
    assert_same(pd.DataFrame({"n": [0.0], "r": [0.0]}), totals)
    grouped = spark_backend.group_sums(sources["frame"], ["state"], {"n": "1"}, where=none_kept)
    assert len(grouped) == 0
    assert list(grouped.columns) == ["state", "n"]


def test_columns_count_and_key_ranges(spark_backend, logs, sources):
    assert spark_backend.columns(sources["parquet"]) == list(logs.columns)
    assert spark_backend.count(sources["csv"]) == len(logs)
    expected = {"state": (int(logs["state"].min()), int(logs["state"].max())), "action": (2, 5)}
    for source in ("frame", "csv", "parquet"):  # pandas, a Spark scan, Parquet footers
        assert spark_backend.key_ranges(sources[source], ["state", "action"]) == expected, source


def test_column_ranges_agree_with_duckdb(spark_backend, logs, sources):
    columns = ["state", "propensity", "timestamp"]
    expected = DuckDBBackend().column_ranges(sources["parquet"], columns)
    actual = spark_backend.column_ranges(sources["parquet"], columns)
    assert list(actual["kind"]) == ["integer", "float", "datetime"] == list(expected["kind"])
    assert list(actual["nulls"]) == [0, 0, 0]
    np.testing.assert_allclose(actual[["min", "max"]], expected[["min", "max"]], rtol=RTOL)
    assert actual.loc["timestamp", "max"] == logs["timestamp"].max().timestamp()


def test_comparisons_and_finite_in_where(spark_backend, logs):
    where = "(propensity > 0.5) * finite(weight) * (action != 3)"
    sums = {"n": "1", "ips": "reward / propensity"}
    expected = MemoryBackend().group_sums(logs, ["state"], sums, where=where)
    assert 0 < expected["n"].sum() < len(logs)
    assert_same(expected, spark_backend.group_sums(logs, ["state"], sums, where=where))


def test_epoch_is_exact_seconds(spark_backend):
    frame = pd.DataFrame(
        {
            "state": [0, 0, 1],
            "timestamp": pd.to_datetime(
                ["1970-01-01 00:00:01.000001", "2024-03-01 12:00:00.25", "2001-09-09 01:46:40"],
                format="ISO8601",
            ),
        }
    )
    result = spark_backend.group_sums(frame, ["state"], {"seconds": "epoch(timestamp)"})
    np.testing.assert_array_equal(result["seconds"], [1.000001 + 1709294400.25, 1_000_000_000.0])


def test_missing_column_names_the_column_and_source(spark_backend, sources):
    with pytest.raises(LogValidationError, match="column not found: 'clicks'") as info:
        spark_backend.group_sums(sources["parquet"], ["state"], {"c": "clicks / propensity"})
    assert info.value.column == "clicks"
    assert info.value.source == sources["parquet"]


def test_bad_values_and_missing_files_raise_validation_errors(spark_backend, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("state,reward,propensity\n0,1,0.5\n1,1,not-a-number\n")
    with pytest.raises(LogValidationError, match="bad.csv"):
        spark_backend.group_sums(str(bad), ["state"], {"ips": "reward / propensity"})
    with pytest.raises(LogValidationError, match="no log file matches"):
        spark_backend.count(str(tmp_path / "missing-*.parquet"))
    with pytest.raises(LogValidationError, match="cannot tell the format"):
        (tmp_path / "logs.json").write_text("{}")
        spark_backend.count(str(tmp_path / "logs.json"))
    with pytest.raises(ValueError, match="only"):
        spark_backend.group_sums(str(bad), [], {"x": "reward ** 2"})


def test_passed_session_is_used_and_not_stopped(spark_backend):
    session = spark_backend.session()
    shared = SparkBackend(spark=session)
    assert shared.session() is session
    shared.stop()
    assert spark_backend.count(pd.DataFrame({"state": [1, 2, 3]})) == 3


def test_first_row_follows_file_order(spark_backend, logs, sources):
    where = "(reward > 0) * (state == 3)"
    expected = MemoryBackend().first_row(logs, where)
    assert expected is not None and logs.loc[expected, "state"] == 3
    assert spark_backend.first_row(sources["frame"], where) == expected
    assert spark_backend.first_row(sources["csv"], where) == expected
    assert spark_backend.first_row(sources["frame"], "state - state") is None


def test_read_files_are_reused_until_they_change(spark_backend, tmp_path):
    path = tmp_path / "logs.csv"
    pd.DataFrame({"state": [0, 1], "reward": [1.0, 0.0]}).to_csv(path, index=False)
    first = spark_backend.frame(str(path))
    assert spark_backend.frame(str(path)) is first  # no second schema inference
    pd.DataFrame({"state": [0, 1, 2], "reward": [1.0, 0.0, 1.0]}).to_csv(path, index=False)
    assert spark_backend.frame(str(path)) is not first
    assert spark_backend.count(str(path)) == 3


def test_file_formats_by_suffix_and_urls():
    from hfrl.backends.spark import _file_format

    assert _file_format("s3a://bucket/logs/train/") == "parquet"
    assert _file_format("gs://bucket/logs/*.csv.gz") == "csv"
    assert _file_format("/data/part-0.PARQUET") == "parquet"
    with pytest.raises(LogValidationError, match="cannot tell the format"):
        _file_format("/data/logs.json")


def test_empty_frame_and_mixed_column_types(spark_backend):
    empty = pd.DataFrame({"state": np.empty(0, np.int64), "reward": np.empty(0)})
    assert_same(pd.DataFrame({"r": [0.0]}), spark_backend.group_sums(empty, [], {"r": "reward"}))
    assert len(spark_backend.group_sums(empty, ["state"], {"r": "reward"})) == 0
    assert spark_backend.count(empty) == 0
    frame = pd.DataFrame(
        {
            "state": [0, 1, 1],
            "reward": [1.0, 0.0, 1.0],
            "session_id": pd.array(["a", "b", None], dtype="string"),
            "timestamp": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-03 00:00:00.5"], format="ISO8601", utc=True
            ),
            "done": [True, False, True],
        }
    )
    sums = {"r": "reward", "seconds": "epoch(timestamp)", "done": "cast_double(done)"}
    expected = MemoryBackend().group_sums(frame, ["state"], sums)
    assert_same(expected, spark_backend.group_sums(frame, ["state"], sums))


def test_a_running_session_is_shared_from_another_thread(spark_backend):
    import threading

    session = spark_backend.session()
    found = {}

    def resolve() -> None:
        other = SparkBackend()
        found["session"] = other.session()
        other.stop()  # not its session: must leave it running

    worker = threading.Thread(target=resolve)
    worker.start()
    worker.join()
    assert found["session"].sparkContext is session.sparkContext
    assert spark_backend.count(pd.DataFrame({"state": [4, 5]})) == 2
    assert spark_backend.group_sums(pd.DataFrame({"state": [4, 5]}), [], {"n": "1"})["n"].iloc[0] == 2.0
