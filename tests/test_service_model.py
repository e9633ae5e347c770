"""ServedModel: decisions follow the policy, propensities follow the documented rule; the decision log."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.data import CategoryEncoder
from hfrl.errors import ArtifactError
from hfrl.policies import TabularPolicy
from hfrl.service import DecisionLog, ServedModel, artifact_version, read_decision_log, write_parquet
from hfrl.service.log import QueuedDecisions

TABLE = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])


def model_of(table: np.ndarray = TABLE, **metadata: object) -> ServedModel:
    return ServedModel(TabularPolicy(table, metadata), version="test")


def test_artifact_version_is_the_saved_checksum(tmp_path):
    path = TabularPolicy(TABLE).save(tmp_path / "p.zip")
    with zipfile.ZipFile(path) as archive:
        sha = json.loads(archive.read("metadata.json"))["sha256"]
    assert artifact_version(path) == sha[:16]
    assert ServedModel.load(path).version == sha[:16]
    other = TabularPolicy(TABLE[::-1].copy()).save(tmp_path / "q.zip")
    assert artifact_version(other) != artifact_version(path)


def test_artifact_version_rejects_a_non_artifact(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="bad.zip"):
        artifact_version(bad)


def test_explore_k1_samples_from_the_policy_with_pi_as_propensity():
    model = model_of()
    states = np.repeat(np.arange(3), 20_000)
    out = model.decide(states, k=1, mode="explore", rng=np.random.default_rng(0))
    actions = out.actions[:, 0]
    assert np.allclose(out.propensities[:, 0], TABLE[states, actions])
    assert np.array_equal(out.policy_probabilities, out.propensities)
    for s in range(3):
        freq = np.bincount(actions[states == s], minlength=4) / 20_000
        # 4 standard errors of a proportion at n = 20,000 is at most 0.0142
        assert np.all(np.abs(freq - TABLE[s]) < 0.0142), (s, freq)
    assert not np.any(actions[states == 0] == 3)  # pi = 0 is never drawn


def test_explore_is_deterministic_given_a_seed():
    model = model_of()
    states = np.arange(3).repeat(5)
    first = model.decide(states, k=2, mode="explore", rng=np.random.default_rng(7)).actions
    again = model.decide(states, k=2, mode="explore", rng=np.random.default_rng(7)).actions
    assert np.array_equal(first, again)


def test_explore_k2_is_sequential_sampling_without_replacement():
    model = model_of()
    n = 40_000
    out = model.decide(np.zeros(n, dtype=np.int64), k=2, mode="explore", rng=np.random.default_rng(1))
    assert np.all(out.actions[:, 0] != out.actions[:, 1])
    pi = TABLE[0]
    for a, b in itertools.permutations(range(3), 2):
        expected = pi[a] * pi[b] / (1 - pi[a])
        observed = np.mean((out.actions[:, 0] == a) & (out.actions[:, 1] == b))
        assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9, (a, b)
    # recorded propensities: slot 0 is pi(a0|s), slot 1 is pi(a1|s) / (1 - pi(a0|s))
    a0, a1 = out.actions[:, 0], out.actions[:, 1]
    assert np.allclose(out.propensities[:, 0], pi[a0])
    assert np.allclose(out.propensities[:, 1], pi[a1] / (1 - pi[a0]))
    assert np.allclose(out.policy_probabilities, pi[out.actions])


def test_exploit_returns_top_k_with_propensity_one():
    model = model_of()
    out = model.decide(np.array([0, 1]), k=2, mode="exploit", rng=None)
    assert out.actions.tolist() == [[0, 1], [3, 0]]  # ties in state 1 go to the lower id
    assert np.all(out.propensities == 1.0)
    assert np.allclose(out.policy_probabilities, [[0.5, 0.3], [0.7, 0.1]])


def test_k_beyond_the_support_is_refused_when_exploring():
    model = model_of()
    with pytest.raises(ValueError, match="state 0"):
        model.decide(np.array([2, 0]), k=4, mode="explore", rng=np.random.default_rng(0))
    assert model.decide(np.array([0]), k=4, mode="exploit", rng=None).actions.shape == (1, 4)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        model.decide(np.array([0]), k=5, mode="exploit", rng=None)


@settings(max_examples=30, deadline=None)
@given(
    table=st.integers(2, 6).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n), min_size=1, max_size=4
        )
    ),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_explore_propensities_are_probabilities_of_distinct_actions(table, k, seed):
    raw = np.array(table)
    raw /= raw.sum(axis=1, keepdims=True)
    k = min(k, raw.shape[1])
    model = model_of(raw)
    states = np.arange(raw.shape[0])
    out = model.decide(states, k=k, mode="explore", rng=np.random.default_rng(seed))
    assert all(len(set(row)) == k for row in out.actions.tolist())
    assert np.all((out.propensities > 0) & (out.propensities <= 1.0))
    assert np.allclose(out.propensities[:, 0], model.policy.table_[states, out.actions[:, 0]])


def test_contexts_use_the_encoder_and_unknown_values_go_to_the_bucket():
    frame = pd.DataFrame({"segment": ["a", "b", "c"], "device": [1, 2, 1]})
    encoder = CategoryEncoder(["segment", "device"]).fit(frame)
    table = np.full((encoder.n_ids, 2), 0.5)
    model = model_of(table, state_encoder=encoder.to_dict())
    contexts = [
        {"segment": "b", "device": 2},
        {"segment": "a", "device": 1},
        {"segment": "zzz", "device": 1},
        {"segment": "b", "device": 2},  # cached
        {"segment": "c", "device": "1"},  # the string "1" is the same key as the integer 1
    ]
    expected = encoder.transform(pd.DataFrame(contexts, dtype=object)).tolist()
    assert model.encode_contexts(contexts).tolist() == expected == [1, 0, 3, 1, 2]
    with pytest.raises(KeyError, match="device"):
        model.encode_contexts([{"segment": "a"}])
    with pytest.raises(LookupError, match="no state_encoder"):
        model_of().encode_contexts([{"x": 1}])


def test_an_encoder_larger_than_the_table_is_an_artifact_error():
    encoder = CategoryEncoder("segment").fit(pd.DataFrame({"segment": list("abcd")}))
    with pytest.raises(ArtifactError, match="state_encoder emits 5 ids"):
        model_of(state_encoder=encoder.to_dict())


def test_item_labels_come_from_the_action_encoder():
    items = CategoryEncoder("item").fit(pd.DataFrame({"item": ["x9", "y7", "z5", "w3"]}))
    model = model_of(action_encoder=items.to_dict())
    assert model.item_labels(np.array([[3, 0]])) == [["w3", "x9"]]
    assert model_of().item_labels(np.array([[0]])) is None


# ---------------------------------------------------------------------- the decision log
def row(decision_id: str, state: int, action: int, position: int = 0, ts: float = 1.0) -> tuple:
    return (decision_id, position, state, action, 0.5, 0.5, ts, "v1", "explore", 1, None, None)


def test_log_is_wal_with_full_sync_and_feedback_resolves_after_commit(tmp_path):
    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    try:
        assert log._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        log.log_decisions([row("d1", 1, 2)])
        future = log.submit_feedback("d1", 1.0)
        assert future.result(timeout=10) == "accepted"
        # the row is visible to an independent connection the moment the future resolved
        other = sqlite3.connect(path)
        assert other.execute("SELECT reward FROM feedback WHERE decision_id='d1'").fetchall() == [(1.0,)]
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()
    finally:
        log.close()


def test_feedback_is_idempotent_and_unknown_decisions_are_reported(tmp_path):
    log = DecisionLog(tmp_path / "log.sqlite")
    try:
        log.log_decisions([row("d1", 1, 2)])
        first = log.submit_feedback("d1", 1.0)
        second = log.submit_feedback("d1", 1.0)  # same (decision, event): possibly in the same transaction
        other_event = log.submit_feedback("d1", 2.0, event="click")
        unknown = log.submit_feedback("nope", 1.0)
        assert [f.result(timeout=10) for f in (first, second, other_event, unknown)] == [
            "accepted", "duplicate", "accepted", "unknown_decision",
        ]
        assert log.counts() == {"decision_rows": 1, "feedback_rows": 2}
    finally:
        log.close()


def test_a_different_reward_for_a_stored_feedback_is_refused_naming_both(tmp_path):
    from hfrl.service.log import FeedbackConflictError

    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    try:
        log.log_decisions([row("d1", 1, 2)])
        first = log.submit_feedback("d1", 1.0)
        conflicting = log.submit_feedback("d1", 5.0)  # possibly in the same transaction as the first
        assert first.result(timeout=10) == "accepted"
        with pytest.raises(FeedbackConflictError, match=r"reward 1\.0 .*refusing reward 5\.0") as info:
            conflicting.result(timeout=10)
        assert (info.value.stored_reward, info.value.reward, info.value.event) == (1.0, 5.0, "reward")
        assert log.submit_feedback("d1", 1.0).result(timeout=10) == "duplicate"  # the stored one is kept
        rows_before = log.rows_committed
        assert log.submit_feedback("d1", 1.0).result(timeout=10) == "duplicate"
        assert log.rows_committed == rows_before  # a duplicate writes nothing
    finally:
        log.close()
    assert read_decision_log(path)["reward"].tolist() == [1.0]


def test_group_commit_shares_transactions(tmp_path):
    log = DecisionLog(tmp_path / "log.sqlite")
    try:
        log.log_decisions([row(f"d{i}", i % 3, 1) for i in range(500)])
        futures = [log.submit_feedback(f"d{i}", float(i)) for i in range(500)]
        assert all(f.result(timeout=30) == "accepted" for f in futures)
        assert log.rows_committed == 1000
        assert log.commits < 501  # more than one feedback per transaction
    finally:
        log.close()


def test_close_drains_the_queue(tmp_path):
    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    log.log_decisions([row(f"d{i}", 0, 0) for i in range(2000)])
    log.close()
    assert len(read_decision_log(path)) == 2000
    with pytest.raises(Exception, match="closed"):
        log.log_decisions([row("late", 0, 0)])


def test_read_decision_log_is_in_the_log_schema(tmp_path):
    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    log.log_decisions([row("a", 1, 2, ts=10.0), row("b", 0, 1, ts=20.0), row("b", 0, 3, position=1, ts=20.0)])
    assert log.submit_feedback("a", 1.0).result(timeout=10) == "accepted"
    assert log.submit_feedback("a", 0.5, event="click").result(timeout=10) == "accepted"
    log.close()
    frame = read_decision_log(path)
    assert list(frame.columns[:6]) == ["state", "action", "reward", "propensity", "timestamp", "decision_id"]
    assert frame["decision_id"].tolist() == ["a", "b"]  # one row per decision (slot 0)
    assert frame["reward"].tolist()[0] == 1.5  # the sum over events
    assert np.isnan(frame["reward"].tolist()[1])
    assert str(frame["timestamp"].dtype).startswith("datetime64") and frame["timestamp"].dt.tz is not None
    assert read_decision_log(path, event="click")["reward"].tolist()[0] == 0.5
    slots = read_decision_log(path, all_positions=True)
    assert len(slots) == 3
    b_slots = slots[slots["decision_id"] == "b"]
    first, second = b_slots["slot_propensity"].tolist()
    assert b_slots["cascade_propensity"].tolist() == pytest.approx([first, first * second])
    assert b_slots["slate_propensity"].tolist() == pytest.approx([first * second] * 2)
    # an explored slot's marginal propensity is not logged: the ranking schema's column is left out
    assert "propensity" not in slots.columns
    assert not slots["reward_per_slot"].any()
    assert read_decision_log(path, missing_reward=0.0)["reward"].tolist() == [1.5, 0.0]
    out = tmp_path / "log.parquet"
    assert write_parquet(path, out) == 2
    assert pd.read_parquet(out)["action"].tolist() == [2, 1]


def test_read_decision_log_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no decision log database"):
        read_decision_log(tmp_path / "missing.sqlite")


def test_a_failed_commit_fails_its_waiters_and_the_writer_recovers(tmp_path):
    from hfrl.service import LogWriterError

    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    try:
        log.log_decisions([row("ok", 0, 0)])
        log.flush()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits on its next transaction...
        log.log_decisions([row("first", 0, 0)])
        time.sleep(0.2)
        # ...while these two queue up together
        log._queue.put(QueuedDecisions([("bad-row-with-too-few-columns",)]))
        waiting = log.submit_feedback("ok", 1.0)
        blocker.execute("ROLLBACK")
        blocker.close()
        with pytest.raises(LogWriterError, match="commit failed"):
            waiting.result(timeout=10)
        assert log.failed_commits == 1 and log.writer_alive
        again = log.submit_feedback("ok", 1.0)
        assert again.result(timeout=10) == "accepted"  # the failed transaction left nothing behind
        assert log.counts() == {"decision_rows": 2, "feedback_rows": 1}
    finally:
        log.close()


def test_back_pressure_refuses_new_decisions(tmp_path):
    from hfrl.service import LogWriterError

    log = DecisionLog(tmp_path / "log.sqlite", max_queue=-1)
    try:
        with pytest.raises(LogWriterError, match="behind"):
            log.log_decisions([row("x", 0, 0)])
    finally:
        log.close()


def test_slot_feedback_makes_the_all_positions_export_a_ranking_log(tmp_path):
    from hfrl.ope import evaluate_slates
    from hfrl.policies import RankingPolicy, TabularPolicy
    from hfrl.service.log import FeedbackConflictError

    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    exploit = lambda d, j, a: (d, j, 0, a, 1.0, 0.5, 1.0, "v1", "exploit", 2, None, None)  # noqa: E731
    log.log_decisions([exploit("a", 0, 1), exploit("a", 1, 2), exploit("b", 0, 1), exploit("b", 1, 2)])
    assert log.submit_feedback("a", 1.0, position=1).result(timeout=10) == "accepted"
    assert log.submit_feedback("a", 1.0, position=1).result(timeout=10) == "duplicate"
    with pytest.raises(FeedbackConflictError, match="at position 1"):
        log.submit_feedback("a", 0.0, position=1).result(timeout=10)
    assert log.submit_feedback("a", 1.0, position=2).result(timeout=10) == "unknown_decision"
    assert log.submit_feedback("b", 1.0).result(timeout=10) == "accepted"  # the decision's reward
    log.close()
    slots = read_decision_log(path, all_positions=True, missing_reward=0.0)
    assert slots["reward"].tolist() == [0.0, 1.0, 1.0, 1.0]  # a: per slot; b: its decision's on each
    assert slots["reward_per_slot"].tolist() == [True, True, False, False]
    assert slots["propensity"].tolist() == [1.0] * 4  # exploited lists: the marginal is known (1)
    assert read_decision_log(path)["reward"].isna().tolist() == [True, False]  # slot feedback stays apart
    # the export of exploited lists evaluates as a ranking log
    deterministic = RankingPolicy.from_policy(TabularPolicy(np.array([[0.0, 0.6, 0.4]])), 2)
    result = evaluate_slates(slots[slots["slate_id"] == "a"], deterministic, estimators=("iips",))
    # Plackett-Luce over [0, 0.6, 0.4]: item 2 is at position 1 when item 1 comes first (0.6), and only
    # slot 1 was clicked: iips = 0.6 / 1 * 1
    assert result.loc["iips", "estimate"] == pytest.approx(0.6)
