"""The same numbers out of memory, DuckDB and Spark: HF, every OPE estimator, the alpha curve.

Every data-heavy step reduces to backend group sums; these tests run the public functions with
``backend="memory" | "duckdb" | "spark"`` on the same logs (a DataFrame and Parquet/CSV files in
``tmp_path``) and require agreement to 1e-9. One local Spark session serves the whole run.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from hfrl.backends.spark import SparkBackend
from hfrl.errors import LogValidationError
from hfrl.frequencies import HistoricalFrequency
from hfrl.ope import ESTIMATORS, evaluate
from hfrl.policies import TabularPolicy
from hfrl.tune import alpha_curve, tune_alpha

pytest.importorskip("pyspark")
if shutil.which("java") is None:  # `make test` installs a JDK first; a bare checkout may lack one
    pytest.skip("the Spark tests need Java (make test installs a JDK)", allow_module_level=True)

RTOL = 1e-9
N_STATES, N_ACTIONS = 6, 4


def make_logs(n_rows: int, seed: int) -> pd.DataFrame:
    """Logs of a known softmax logging policy (propensity constant per cell), rewards, timestamps."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.ones(N_ACTIONS), N_STATES)
    state = rng.integers(0, N_STATES, n_rows)
    action = (rng.random(n_rows)[:, None] > np.cumsum(table[state], axis=1)).sum(axis=1)
    action = np.minimum(action, N_ACTIONS - 1)
    ctr = rng.uniform(0.05, 0.6, (N_STATES, N_ACTIONS))
    start = np.datetime64("2025-06-01T00:00:00", "us")
    offsets = np.sort(rng.integers(0, 14 * 86_400 * 1_000_000, n_rows)).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "state": state,
            "action": action,
            "reward": (rng.random(n_rows) < ctr[state, action]).astype(np.float64),
            "propensity": table[state, action],
            "timestamp": pd.Series(start + offsets, dtype="datetime64[us]"),
            "weight": rng.uniform(0.5, 2.0, n_rows),
        }
    )


@pytest.fixture(scope="module")
def spark():
    backend = SparkBackend(master="local[2]")
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, dict[str, object]]:
    """Train and validation logs, each as a DataFrame, a Parquet glob and a CSV file."""
    folder = tmp_path_factory.mktemp("scale")
    out: dict[str, dict[str, object]] = {}
    for name, seed, n_rows in (("train", 1, 1500), ("valid", 2, 1200)):
        frame = make_logs(n_rows, seed)
        (folder / name).mkdir()
        frame.iloc[: n_rows // 2].to_parquet(folder / name / "part-0.parquet", index=False)
        frame.iloc[n_rows // 2 :].to_parquet(folder / name / "part-1.parquet", index=False)
        frame.to_csv(folder / f"{name}.csv", index=False)
        out[name] = {
            "frame": frame,
            "parquet": str(folder / name / "part-*.parquet"),
            "csv": str(folder / f"{name}.csv"),
        }
    return out


def target_policy() -> TabularPolicy:
    q = np.random.default_rng(7).normal(size=(N_STATES, N_ACTIONS))
    return TabularPolicy.from_q_values(q, "softmax", temperature=0.5)


def runs(spark: SparkBackend, split: dict[str, object]) -> list[tuple[str, object, object]]:
    """(label, backend, logs): memory on the DataFrame, DuckDB and Spark on files and the frame."""
    return [
        ("memory/frame", "memory", split["frame"]),
        ("duckdb/parquet", "duckdb", split["parquet"]),
        ("duckdb/csv", "duckdb", split["csv"]),
        ("spark/parquet", spark, split["parquet"]),
        ("spark/frame", spark, split["frame"]),
    ]


HF_SETTINGS = {
    "share": {},
    "share_rows_decayed_weighted": {"count": "rows", "half_life": "3D", "weight_column": "weight"},
    "rate_beta_binomial": {"kind": "rate", "smoothing": "beta_binomial"},
}


@pytest.mark.parametrize("setting", sorted(HF_SETTINGS))
def test_historical_frequency_agrees_across_backends(spark, splits, setting):
    fitted = {
        label: HistoricalFrequency(backend=backend, **HF_SETTINGS[setting]).fit(
            logs, n_states=N_STATES, n_actions=N_ACTIONS
        )
        for label, backend, logs in runs(spark, splits["train"])
        if not (label == "duckdb/csv" and setting != "share")  # CSV parsing is covered once
    }
    reference = fitted.pop("memory/frame")
    assert np.allclose(reference.probabilities_.sum(axis=1), 1.0)
    assert reference.counts_.sum() > 0
    for label, hf in fitted.items():
        for attribute in ("probabilities_", "counts_", "exposures_", "global_"):
            np.testing.assert_allclose(
                getattr(hf, attribute), getattr(reference, attribute), rtol=RTOL, atol=1e-15,
                err_msg=f"{label} {attribute}",
            )
        assert hf.fingerprint_ == reference.fingerprint_, label
        if setting == "share_rows_decayed_weighted":
            assert hf.reference_time_ == pytest.approx(reference.reference_time_, abs=1e-6)


def test_every_estimator_agrees_across_backends(spark, splits):
    target = target_policy()
    results = {
        label: evaluate(logs, target, ESTIMATORS, backend=backend, n_bootstrap=30, random_state=3)
        for label, backend, logs in runs(spark, splits["valid"])
        if label != "duckdb/csv"
    }
    reference = results.pop("memory/frame")
    assert list(reference.index) == list(ESTIMATORS)
    assert (reference["std_error"] > 0).all()
    numeric = ["estimate", "std_error", "ci_low", "ci_high", "ess", "max_weight", "boot_std_error"]
    for label, result in results.items():
        assert list(result.index) == list(reference.index)
        np.testing.assert_allclose(result[numeric], reference[numeric], rtol=RTOL, err_msg=label)


def test_estimated_propensities_agree(spark, splits):
    target = target_policy()
    split = splits["valid"]
    expected = evaluate(split["frame"], target, ("ips", "dr"), propensity="estimate", backend="memory")
    assert set(expected["propensity_source"]) == {"estimated"}
    for backend, logs in (("duckdb", split["parquet"]), (spark, split["parquet"])):
        result = evaluate(logs, target, ("ips", "dr"), propensity="estimate", backend=backend)
        np.testing.assert_allclose(result[["estimate", "std_error"]], expected[["estimate", "std_error"]],
                                   rtol=RTOL)


def test_alpha_curve_and_tuning_agree_across_backends(spark, splits):
    target = target_policy()
    hf = HistoricalFrequency(backend="memory").fit(splits["train"]["frame"], N_STATES, N_ACTIONS)
    grid = np.linspace(0.0, 1.0, 101)
    curves, tunings = {}, {}
    for label, backend, logs in runs(spark, splits["valid"]):
        if label == "duckdb/csv":
            continue
        curves[label] = alpha_curve(target, hf, logs, "dr", grid, backend=backend)
        tunings[label] = tune_alpha(target, hf, logs, "snips", "auto", criterion="lower_bound",
                                    backend=backend)
    reference_curve = curves.pop("memory/frame")
    reference = tunings.pop("memory/frame")
    assert len(reference_curve) == 101
    assert reference_curve["estimate"].nunique() > 1  # the blend changes the value
    for label, curve in curves.items():
        np.testing.assert_allclose(curve.to_numpy(), reference_curve.to_numpy(), rtol=RTOL, err_msg=label)
    for label, tuning in tunings.items():
        assert tuning.alpha == pytest.approx(reference.alpha, abs=1e-7), label
        np.testing.assert_allclose(tuning.curve.to_numpy(), reference.curve.to_numpy(), rtol=RTOL)
        np.testing.assert_allclose(
            tuning.evaluation[["estimate", "std_error"]], reference.evaluation[["estimate", "std_error"]],
            rtol=RTOL, err_msg=label,
        )


def test_backend_names_resolve_to_spark(splits):
    # the string form used by the CLI: a fresh SparkBackend that shares the running session
    split = splits["valid"]
    expected = HistoricalFrequency(backend="memory").fit(split["frame"], N_STATES, N_ACTIONS)
    hf = HistoricalFrequency(backend="spark").fit(split["parquet"], N_STATES, N_ACTIONS)
    np.testing.assert_allclose(hf.probabilities_, expected.probabilities_, rtol=RTOL)


def test_invalid_rows_are_reported_alike(spark, splits, tmp_path):
    frame = splits["valid"]["frame"].copy()
    frame.loc[[17, 40, 41], "reward"] = -1.0
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    messages = {}
    for label, backend, logs in (("memory", "memory", frame), ("duckdb", "duckdb", str(path)),
                                 ("spark", spark, str(path))):
        with pytest.raises(LogValidationError) as info:
            HistoricalFrequency(backend=backend).fit(logs, N_STATES, N_ACTIONS)
        assert info.value.column == "reward", label
        assert info.value.count == 3, label
        assert info.value.first_row == 17, label
        messages[label] = str(info.value).split(": ", 1)[-1]
    assert messages["spark"] == messages["duckdb"]
