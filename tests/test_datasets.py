"""The Open Bandit Dataset loader and the ``hfrl datasets obd`` fetch/verify logic, on synthetic files."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfrl.data import CategoryEncoder, validate_logs
from hfrl.datasets import (
    USER_FEATURE_COLUMNS,
    bts_action_distribution,
    export_obd,
    extract_obd,
    fetch_obd,
    iter_obd,
    load_obd,
    obd_files,
    verify_obd,
)
from hfrl.errors import LogValidationError


def obd_frame(n: int = 60, n_items: int = 6, seed: int = 0) -> pd.DataFrame:
    """A small log in the OBD file format (hashed-looking user features, affinities)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "timestamp": (
                pd.Timestamp("2019-11-24", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 7e5, n)), "s")
            ).floor("us").astype(str),  # OBD timestamps have microseconds
            "item_id": rng.integers(0, n_items, n),
            "position": rng.integers(1, 4, n),
            "click": (rng.random(n) < 0.2).astype(int),
            "propensity_score": np.full(n, 1.0 / n_items),
        }
    )
    for i, levels in enumerate((2, 3, 2, 2)):
        frame[f"user_feature_{i}"] = [f"{i}h{v:x}" for v in rng.integers(0, levels, n)]
    for item in range(n_items):
        frame[f"user-item_affinity_{item}"] = rng.integers(0, 3, n).astype(float)
    return frame


def item_frame(n_items: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": np.arange(n_items),
            "item_feature_0": np.linspace(-1, 1, n_items),
            "item_feature_1": [f"cat{i % 2}" for i in range(n_items)],
            "item_feature_2": ["x"] * n_items,
            "item_feature_3": [f"brand{i % 3}" for i in range(n_items)],
        }
    )


def write_obd(root: Path, frame: pd.DataFrame, policy: str = "random", campaign: str = "all",
              items: pd.DataFrame | None = None) -> Path:
    folder = root / policy / campaign
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{campaign}.csv")  # with the unnamed index column, as OBD ships it
    if items is not None:
        items.to_csv(folder / "item_context.csv")
    return folder / f"{campaign}.csv"


@pytest.fixture
def obd_root(tmp_path: Path) -> Path:
    write_obd(tmp_path, obd_frame(), items=item_frame())
    write_obd(tmp_path, obd_frame(seed=1).assign(propensity_score=np.linspace(0.01, 0.9, 60)), "bts",
              items=item_frame())
    return tmp_path


# --- the mapping -------------------------------------------------------------------------------


def test_mapping_matches_the_file_row_for_row(obd_root: Path):
    raw = obd_frame()
    logs = load_obd(obd_root)
    assert len(logs) == len(raw)
    assert list(logs.columns[:6]) == ["state", "action", "reward", "propensity", "position", "timestamp"]
    np.testing.assert_array_equal(logs["action"], raw["item_id"])
    np.testing.assert_array_equal(logs["reward"], raw["click"].astype(float))
    np.testing.assert_array_equal(logs["propensity"], raw["propensity_score"])
    np.testing.assert_array_equal(logs["position"], raw["position"])
    assert (logs["timestamp"] == pd.to_datetime(raw["timestamp"], utc=True)).all()
    assert str(logs["timestamp"].dt.tz) == "UTC"
    # the states are exactly what a CategoryEncoder fitted on the raw user features gives
    encoder = CategoryEncoder(list(USER_FEATURE_COLUMNS)).fit(raw)
    np.testing.assert_array_equal(logs["state"], encoder.transform(raw))
    assert logs.attrs["n_states"] == encoder.n_ids
    assert logs.attrs["n_actions"] == 6
    assert logs.attrs["behavior_policy"] == "random" and logs.attrs["campaign"] == "all"
    # the result passes the schema's own validation unchanged
    validated = validate_logs(logs, n_states=logs.attrs["n_states"], n_actions=6)
    np.testing.assert_array_equal(validated["state"], logs["state"])


def test_state_encoder_round_trips_and_maps_unseen_context_to_the_bucket(obd_root: Path):
    logs = load_obd(obd_root)
    encoder = CategoryEncoder.from_dict(json.loads(json.dumps(logs.attrs["state_encoder"])))
    raw = obd_frame()
    np.testing.assert_array_equal(encoder.transform(raw), logs["state"])
    decoded = encoder.inverse_transform(logs["state"].to_numpy())
    pd.testing.assert_frame_equal(decoded, raw[list(USER_FEATURE_COLUMNS)].astype(object), check_dtype=False)
    unseen = raw.iloc[:1].assign(user_feature_0="never-seen")
    assert encoder.transform(unseen).tolist() == [encoder.unknown_id] == [logs.attrs["n_states"] - 1]


def test_state_columns_can_include_position(obd_root: Path):
    raw = obd_frame()
    columns = [*USER_FEATURE_COLUMNS, "position"]
    logs = load_obd(obd_root, state_columns=columns)
    np.testing.assert_array_equal(logs["state"], CategoryEncoder(columns).fit_transform(raw))
    by_user = load_obd(obd_root)
    assert logs.attrs["n_states"] > by_user.attrs["n_states"]
    # every (user, position) state lies within a single user state
    assert logs.groupby("state")["position"].nunique().max() == 1


def test_feature_columns_are_kept_on_request(obd_root: Path):
    raw = obd_frame()
    logs = load_obd(obd_root, include_user_features=True, include_affinities=True, include_item_features=True)
    affinities = [f"user-item_affinity_{i}" for i in range(6)]
    np.testing.assert_array_equal(logs[affinities].to_numpy(), raw[affinities].to_numpy())
    np.testing.assert_array_equal(logs["user_feature_2"].to_numpy(), raw["user_feature_2"].to_numpy())
    items = item_frame()
    np.testing.assert_allclose(logs["item_feature_0"], items["item_feature_0"].to_numpy()[raw["item_id"]])
    np.testing.assert_array_equal(logs["item_feature_3"], items["item_feature_3"].to_numpy()[raw["item_id"]])
    plain = load_obd(obd_root)
    assert not any(c.startswith(("user-item", "item_feature", "user_feature")) for c in plain.columns)


def test_bts_logs_keep_their_own_propensities(obd_root: Path):
    logs = load_obd(obd_root, behavior_policy="bts")
    np.testing.assert_allclose(logs["propensity"], np.linspace(0.01, 0.9, 60))


def test_iter_obd_chunks_concatenate_to_load_obd(obd_root: Path):
    whole = load_obd(obd_root, include_affinities=True)
    chunks = list(iter_obd(obd_root, chunk_rows=25, include_affinities=True))
    assert [len(c) for c in chunks] == [25, 25, 10]
    assert all(c.attrs["state_encoder"] == whole.attrs["state_encoder"] for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_export_obd_writes_parquet_and_the_encoder(obd_root: Path, tmp_path: Path):
    out = export_obd(obd_root, tmp_path / "random.parquet")
    back = pd.read_parquet(out)
    whole = load_obd(obd_root)
    np.testing.assert_array_equal(back["state"], whole["state"])
    np.testing.assert_array_equal(back["action"], whole["action"])
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["state_encoder"] == whole.attrs["state_encoder"] and meta["n_actions"] == 6
    options = {"include_affinities": True, "include_item_features": True}
    wide = export_obd(obd_root, tmp_path / "wide.parquet", **options)
    pd.testing.assert_frame_equal(pd.read_parquet(wide), load_obd(obd_root, **options))


def test_without_item_context_the_number_of_items_comes_from_the_logs(tmp_path: Path):
    write_obd(tmp_path, obd_frame(n_items=4))
    logs = load_obd(tmp_path)
    assert logs.attrs["n_actions"] == int(obd_frame(n_items=4)["item_id"].max()) + 1
    with pytest.raises(LogValidationError, match="item_context.csv"):
        load_obd(tmp_path, include_item_features=True)


# --- errors ------------------------------------------------------------------------------------


def test_unknown_campaign_and_policy_are_refused(obd_root: Path):
    with pytest.raises(LogValidationError, match=r"unknown campaign 'kids'.*'all', 'men', 'women'"):
        load_obd(obd_root, campaign="kids")
    with pytest.raises(LogValidationError, match=r"unknown behavior_policy 'ucb'.*'random', 'bts'"):
        load_obd(obd_root, behavior_policy="ucb")


def test_missing_file_names_the_expected_path(obd_root: Path):
    with pytest.raises(LogValidationError, match=r"women\.csv: missing file") as info:
        load_obd(obd_root, campaign="women")
    assert info.value.source == str(obd_root / "random" / "women" / "women.csv")
    with pytest.raises(LogValidationError, match="missing file"):
        obd_files(obd_root / "nowhere")


def test_missing_column_is_named_with_the_file(tmp_path: Path):
    log_file = write_obd(tmp_path, obd_frame().drop(columns=["propensity_score"]))
    with pytest.raises(LogValidationError, match=r"missing column\(s\) \['propensity_score'\]") as info:
        load_obd(tmp_path)
    assert info.value.column == "propensity_score"
    assert str(log_file) in str(info.value)
    with pytest.raises(LogValidationError, match=r"\['segment'\].*state_columns"):
        write_obd(tmp_path, obd_frame())
        load_obd(tmp_path, state_columns=["segment"])


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("propensity_score", 7, 0.0, r"a propensity in \(0, 1\]"),
        ("propensity_score", 3, 1.5, r"a propensity in \(0, 1\]"),
        ("propensity_score", 11, "abc", r"a propensity in \(0, 1\]"),
        ("item_id", 5, 6, r"an item id: an integer in \[0, 6\)"),
        ("item_id", 9, -1, r"an item id"),
        ("position", 2, 0, r"a position: an integer >= 1"),
        ("click", 4, 2, r"a click: 0 or 1"),
        ("timestamp", 8, "yesterday", r"a parseable date-time"),
    ],
)
def test_bad_values_name_file_column_and_first_row(tmp_path, column, row, value, expected):
    frame = obd_frame().astype({column: object})
    frame.loc[row, column] = value
    frame.loc[row + 20, column] = value
    log_file = write_obd(tmp_path, frame, items=item_frame())
    with pytest.raises(LogValidationError, match=expected) as info:
        load_obd(tmp_path)
    error = info.value
    assert (error.column, error.first_row, error.count) == (column, row, 2)
    assert str(log_file) in str(error) and f"row {row} (line {row + 2} of the file)" in str(error)


def test_a_bad_feature_value_names_the_file(tmp_path: Path):
    frame = obd_frame().astype({"user-item_affinity_2": object})
    frame.loc[13, "user-item_affinity_2"] = "lots"
    log_file = write_obd(tmp_path, frame)
    assert len(load_obd(tmp_path)) == 60  # the core columns are fine
    with pytest.raises(LogValidationError, match="lots") as info:
        load_obd(tmp_path, include_affinities=True)
    assert info.value.source == str(log_file)
    with pytest.raises(LogValidationError, match="lots"):
        list(iter_obd(tmp_path, include_affinities=True, chunk_rows=10))


def test_empty_file_is_refused(tmp_path: Path):
    write_obd(tmp_path, obd_frame().iloc[:0])
    with pytest.raises(LogValidationError, match="empty"):
        load_obd(tmp_path)


# --- the BTS policy from its Beta priors ---------------------------------------------------------


def test_bts_action_distribution_is_seeded_and_matches_the_exact_two_item_case():
    alpha, beta = np.array([3.0, 1.0]), np.array([1.0, 1.0])
    table = bts_action_distribution(alpha, beta, n_positions=2, n_samples=40_000, random_state=1)
    # P(X > Y) for X ~ Beta(3, 1), Y ~ Uniform(0, 1) is E[X] = 3/4
    assert abs(table[0, 0] - 0.75) < 0.01
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    np.testing.assert_allclose(table[1], table[0][::-1])
    again = bts_action_distribution(alpha, beta, n_positions=2, n_samples=40_000, random_state=1)
    np.testing.assert_array_equal(table, again)
    with pytest.raises(ValueError, match="positive"):
        bts_action_distribution([1.0, 0.0], [1.0, 1.0])


# --- `hfrl datasets obd`: extraction and verification on a synthetic sdist ------------------------

SDIST_PREFIX = "obp-0.5.7/obp/dataset/obd"


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv().encode()


@pytest.fixture(scope="module")
def sample_csvs() -> dict[str, bytes]:
    """The two `all` campaigns at the sample's real size (10,000 rows), with 6 items."""
    return {
        "random/all/all.csv": csv_bytes(obd_frame(10_000, seed=2)),
        "random/all/item_context.csv": csv_bytes(item_frame()),
        "bts/all/all.csv": csv_bytes(obd_frame(10_000, seed=3)),
        "bts/all/item_context.csv": csv_bytes(item_frame()),
    }


def make_sdist(path: Path, files: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "obp-0.5.7/setup.py", b"raise SystemExit('never run')\n")
        add_bytes(tar, "obp-0.5.7/obp/policy/conf/prior_bts.yaml", b"all: {}\n")
        add_bytes(tar, f"{SDIST_PREFIX}/README.md", b"not a csv\n")
        for name, data in files.items():
            add_bytes(tar, f"{SDIST_PREFIX}/{name}", data)
        for name, data in (extra or {}).items():
            add_bytes(tar, name, data)
    return path


def test_extract_takes_only_the_obd_csvs(tmp_path: Path, sample_csvs):
    sdist = make_sdist(tmp_path / "obp.tar.gz", sample_csvs)
    written = extract_obd(sdist, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == sorted(sample_csvs)
    for name, data in sample_csvs.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    everything = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert everything == sorted({*sample_csvs, "random", "random/all", "bts", "bts/all"})


@pytest.mark.parametrize(
    "member",
    [
        f"../../escape/{SDIST_PREFIX}/random/all/all.csv",
        f"/abs/{SDIST_PREFIX}/random/all/all.csv",
    ],
)
def test_extract_refuses_unsafe_member_names(tmp_path: Path, member: str):
    sdist = tmp_path / "evil.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        add_bytes(tar, member, b"x\n")
    with pytest.raises(LogValidationError, match="unsafe path"):
        extract_obd(sdist, tmp_path / "out" / "deep")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


def test_extract_refuses_links_and_ignores_traversal_outside_the_dataset(tmp_path: Path):
    sdist = tmp_path / "link.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        add_bytes(tar, "../../outside.txt", b"x\n")  # not a dataset file: never written anywhere
        link = tarfile.TarInfo(f"{SDIST_PREFIX}/random/all/all.csv")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(LogValidationError, match="regular file"):
        extract_obd(sdist, tmp_path / "out")
    assert not (tmp_path.parent.parent / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_extract_refuses_archives_without_the_dataset(tmp_path: Path):
    with pytest.raises(LogValidationError, match="no Open Bandit Dataset CSV"):
        extract_obd(make_sdist(tmp_path / "empty.tar.gz", {}), tmp_path / "out")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(LogValidationError, match="not a readable tar archive"):
        extract_obd(tmp_path / "plain.txt", tmp_path / "out")


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_verify_counts_rows_and_checks_columns(tmp_path: Path, sample_csvs):
    counts = verify_obd(write_files(tmp_path / "ok", sample_csvs))
    assert counts == {
        "random/all/all.csv": 10_000,
        "random/all/item_context.csv": 6,
        "bts/all/all.csv": 10_000,
        "bts/all/item_context.csv": 6,
    }


def test_verify_checks_other_campaigns_and_can_skip_the_row_count(tmp_path: Path, sample_csvs):
    men = {"random/men/men.csv": csv_bytes(obd_frame(40, n_items=4)),
           "random/men/item_context.csv": csv_bytes(item_frame(4))}
    root = write_files(tmp_path, {**sample_csvs, **men})
    with pytest.raises(LogValidationError, match=r"men\.csv: expected 10000 rows, found 40"):
        verify_obd(root)
    counts = verify_obd(root, expected_rows=None)
    assert counts["random/men/men.csv"] == 40 and counts["random/men/item_context.csv"] == 4


def test_verify_refuses_a_truncated_file(tmp_path: Path, sample_csvs):
    files = dict(sample_csvs, **{"bts/all/all.csv": csv_bytes(obd_frame(9_999, seed=3))})
    expected = r"bts/all/all\.csv: expected 10000 rows, found 9999"
    with pytest.raises(LogValidationError, match=expected) as info:
        verify_obd(write_files(tmp_path, files))
    assert info.value.count == 9_999


def test_verify_refuses_missing_columns_and_files(tmp_path: Path, sample_csvs):
    no_affinity = obd_frame(10_000, seed=2).drop(columns=["user-item_affinity_5"])
    files = dict(sample_csvs, **{"random/all/all.csv": csv_bytes(no_affinity)})
    expected = r"random/all/all\.csv: missing column\(s\) \['user-item_affinity_5'\]"
    with pytest.raises(LogValidationError, match=expected):
        verify_obd(write_files(tmp_path / "a", files))
    files = {k: v for k, v in sample_csvs.items() if k != "bts/all/all.csv"}
    with pytest.raises(LogValidationError, match=r"bts/all/all\.csv: missing file"):
        verify_obd(write_files(tmp_path / "b", files))
    files = {k: v for k, v in sample_csvs.items() if k != "random/all/item_context.csv"}
    with pytest.raises(LogValidationError, match=r"item_context\.csv: missing file"):
        verify_obd(write_files(tmp_path / "c", files))


def test_fetch_runs_pip_download_and_leaves_nothing_on_failure(tmp_path, sample_csvs, monkeypatch):
    from hfrl.datasets import fetch as fetch_module

    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        make_sdist(Path(command[command.index("-d") + 1]) / "obp-0.5.7.tar.gz", sample_csvs)
        return subprocess.CompletedProcess(command, 0, "Saved", "")

    monkeypatch.setattr(fetch_module.subprocess, "run", fake_run)
    root = fetch_obd(tmp_path / "data")
    assert calls[0][1:9] == ["-m", "pip", "download", "obp==0.5.7", "--no-deps", "--no-binary", ":all:",
                             "--ignore-requires-python"]
    assert "0.5.7" in (root / "SOURCE.txt").read_text()
    logs = load_obd(root, "bts")
    assert len(logs) == 10_000 and logs.attrs["n_actions"] == 6

    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(fetch_module.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="(?s)No matching distribution found.*--sdist"):
        fetch_obd(tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_fetch_leaves_out_untouched_when_verification_fails(tmp_path: Path, sample_csvs):
    files = dict(sample_csvs, **{"random/all/all.csv": csv_bytes(obd_frame(50, seed=2))})
    with pytest.raises(LogValidationError, match="expected 10000 rows, found 50"):
        fetch_obd(tmp_path / "data", sdist=make_sdist(tmp_path / "obp.tar.gz", files))
    assert not (tmp_path / "data").exists()


def test_cli_datasets_obd_prints_the_path(tmp_path: Path, sample_csvs):
    from typer.testing import CliRunner

    from hfrl.cli import app

    sdist = make_sdist(tmp_path / "obp.tar.gz", sample_csvs)
    arguments = ["datasets", "obd", "--out", str(tmp_path / "data"), "--sdist", str(sdist)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str((tmp_path / "data").resolve())
    assert verify_obd(tmp_path / "data")["random/all/all.csv"] == 10_000
    bad = CliRunner().invoke(app, ["datasets", "obd", "--out", str(tmp_path / "x"), "--sdist", str(tmp_path)])
    assert bad.exit_code == 1 and "not a readable tar archive" in bad.output


# --- property: the states are CategoryEncoder's ids of the file's raw text, whatever the text ----

feature_text = st.text(alphabet=st.sampled_from(list("ab,\" 'é\\;x1")), min_size=0, max_size=4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(feature_text, feature_text), min_size=1, max_size=25))
def test_states_match_category_encoder_on_any_feature_text(tmp_path_factory, values):
    root = tmp_path_factory.mktemp("obd")
    frame = obd_frame(len(values))
    frame["user_feature_0"] = [v[0] for v in values]
    frame["user_feature_3"] = [v[1] for v in values]
    log_file = write_obd(root, frame)
    logs = load_obd(root)
    # what the file says: quoted text as written, an empty field as missing
    raw = pd.read_csv(log_file, index_col=0, dtype=str, keep_default_na=False, na_values=[""])
    expected = CategoryEncoder(list(USER_FEATURE_COLUMNS)).fit_transform(raw)
    np.testing.assert_array_equal(logs["state"], expected)
    np.testing.assert_array_equal(logs["action"], frame["item_id"])
