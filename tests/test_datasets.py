"""The Open Bandit Dataset loader and the ``hfrl datasets obd`` fetch/verify logic, on synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrl.data import CategoryEncoder, validate_logs
from hfrl.datasets import (
    USER_FEATURE_COLUMNS,
    bts_action_distribution,
    export_obd,
    iter_obd,
    load_obd,
    obd_files,
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
