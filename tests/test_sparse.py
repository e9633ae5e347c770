"""Sparse tables: every operation on a sparse policy or HF equals the dense one's, cell for cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hfrl import blend
from hfrl.errors import ArtifactError
from hfrl.frequencies import HistoricalFrequency, share_table, sparse_share_table
from hfrl.policies import TabularPolicy
from hfrl.sparse import SparseTable


def random_sparse(n_rows: int, n_columns: int, seed: int, n_base: int = 2) -> SparseTable:
    """A table with a few explicit cells per row and ``n_base`` base rows (one uniform)."""
    rng = np.random.default_rng(seed)
    explicit = sp.random_array((n_rows, n_columns), density=0.2, random_state=rng, format="csr")
    varying = [rng.dirichlet(np.ones(n_columns)) for _ in range(n_base - 1)]
    base = [np.full(n_columns, 1.0 / n_columns), *varying]
    weight = rng.random((n_rows, n_base))
    total = np.asarray(explicit.sum(axis=1)).ravel() + weight.sum(axis=1)
    return SparseTable.build(sp.diags_array(1 / total) @ explicit, np.array(base), weight / total[:, None])


def dense_logs(n_states: int, n_actions: int, n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    popular = rng.zipf(1.6, n_rows) % n_actions
    return pd.DataFrame({"state": rng.integers(0, n_states, n_rows), "action": popular,
                         "reward": rng.binomial(1, 0.4, n_rows).astype(float),
                         "group": 0})


@pytest.mark.parametrize("n_base", [1, 2, 3])
def test_lookups_top_k_and_rows_match_the_dense_table(n_base):
    table = random_sparse(40, 30, seed=n_base, n_base=n_base)
    dense = table.to_dense()
    assert np.allclose(dense.sum(axis=1), 1.0)
    rows = np.repeat(np.arange(40), 30)
    cols = np.tile(np.arange(30), 40)
    assert np.allclose(table.values(rows, cols), dense.ravel())
    policy, reference = TabularPolicy(table), TabularPolicy(dense)
    for k in (1, 3, 30):
        items, values = policy.top_k(np.arange(40), k)
        expected_items, expected_values = reference.top_k(np.arange(40), k)
        assert np.allclose(values, expected_values)
        assert np.array_equal(items, expected_items)
    assert np.array_equal(table.support_sizes(), (dense > 0).sum(axis=1))
    assert table.min_value() <= dense.min() + 1e-15


def test_top_k_breaks_ties_by_lower_id_outside_the_explicit_cells():
    # row 0: item 7 explicit, everything else uniform: the top 3 are 7, then ids 0 and 1
    explicit = sp.csr_array(([0.5], ([0], [7])), shape=(1, 10))
    policy = TabularPolicy(SparseTable.build(explicit, np.full((1, 10), 0.1), [[0.5]]))
    items, values = policy.top_k([0], 3)
    assert items.tolist() == [[7, 0, 1]]
    assert np.allclose(values, [[0.55, 0.05, 0.05]])


def test_sampling_follows_the_table():
    table = random_sparse(3, 6, seed=4)
    policy = TabularPolicy(table)
    states = np.repeat(np.arange(3), 40_000)
    actions, propensities = policy.sample(states, random_state=0)
    dense = table.to_dense()
    assert np.allclose(propensities, dense[states, actions])
    for s in range(3):
        share = np.bincount(actions[states == s], minlength=6) / 40_000
        assert np.abs(share - dense[s]).max() < 0.01  # 4 standard errors of a share at 40,000 draws
    again, _ = policy.sample(states, random_state=0)
    assert np.array_equal(actions, again)


def test_sparse_share_table_equals_share_table_with_groups_and_unseen_states():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (12, 9)).astype(float)
    counts[3] = 0.0
    group = np.array([0, 0, 1, 1, 2, 2, -1, 0, 1, 2, 2, -1])
    seen = np.ones(12, dtype=bool)
    seen[5] = False
    counts[5] = 0.0
    for m in (0.0, 1.0, 7.5):
        dense, dense_global = share_table(counts, m, state_group=group, seen=seen)
        table, global_row = sparse_share_table(sp.csr_array(counts), m, state_group=group, seen=seen)
        assert np.allclose(global_row, dense_global)
        assert np.allclose(table.to_dense(), dense, atol=1e-12)
        assert table.base.shape[0] == 1  # the global row is the only base row


def test_historical_frequency_sparse_equals_dense_and_keeps_it_small():
    logs = dense_logs(50, 400, 3_000, seed=1)
    dense = HistoricalFrequency(prior_strength=2.0, sparse=False).fit(logs, n_actions=400)
    sparse = HistoricalFrequency(prior_strength=2.0, sparse=True).fit(logs, n_actions=400)
    assert isinstance(sparse.probabilities_, SparseTable)
    assert np.allclose(sparse.probabilities_.to_dense(), dense.probabilities_, atol=1e-12)
    assert np.allclose(sparse.counts_.toarray(), dense.counts_)
    assert np.array_equal(sparse.impressions_.toarray(), dense.impressions_)
    assert np.allclose(sparse.state_counts_, dense.state_counts_)
    assert sparse.probabilities_.nbytes < dense.probabilities_.nbytes / 3
    policy = sparse.to_policy()
    assert policy.is_sparse
    assert np.array_equal(policy.top_k(np.arange(50), 10)[0], dense.to_policy().top_k(np.arange(50), 10)[0])


def test_sparse_hf_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="kind='share'"):
        HistoricalFrequency(kind="rate", sparse=True).fit(dense_logs(3, 4, 20, 0))
    with pytest.raises(ValueError, match="sparse must be"):
        HistoricalFrequency(sparse="yes").fit(dense_logs(3, 4, 20, 0))


def test_blend_of_sparse_tables_equals_the_dense_blend():
    logs = dense_logs(30, 200, 2_000, seed=2)
    hf = HistoricalFrequency(prior_strength=1.0, sparse=True).fit(logs, n_actions=200)
    rng = np.random.default_rng(3)
    scores = rng.dirichlet(np.ones(200), 30)
    pi = TabularPolicy(scores).sparsify(20)
    for alpha in (0.0, 0.3, 1.0, rng.random(30)):
        blended = blend(pi, hf, alpha)
        assert blended.is_sparse
        expected = blend(pi.table_, hf.probabilities_.to_dense(), alpha).table_
        assert np.allclose(blended.table_, expected, atol=1e-12)
        states = np.arange(30)
        assert np.array_equal(blended.top_k(states, 10)[0], TabularPolicy(expected).top_k(states, 10)[0])
    with pytest.raises(ValueError, match="linear"):
        blend(pi, hf, 0.5, method="geometric")
    # a fitted HF's table given as it is (as the service's refresh does) blends the same
    assert np.allclose(blend(pi, hf.probabilities_, 0.3).table_, blend(pi, hf, 0.3).table_)
    assert np.allclose(blend(pi.table_, hf.probabilities_, 0.3).table_, blend(pi, hf, 0.3).table_)


def test_sparsify_keeps_the_candidates_and_the_row_mass():
    rng = np.random.default_rng(5)
    table = rng.dirichlet(np.ones(50), 8)
    sparse = TabularPolicy(table).sparsify(5)
    top, probabilities = TabularPolicy(table).top_k(np.arange(8), 5)
    kept = sparse.action_probabilities(np.repeat(np.arange(8), 5), top.ravel())
    assert np.allclose(kept, probabilities.ravel())
    tail = np.ones_like(table, dtype=bool)
    np.put_along_axis(tail, top, False, axis=1)
    tail_mean = table[tail].reshape(8, 45).mean(axis=1, keepdims=True)
    assert np.allclose(sparse.table_[tail].reshape(8, 45), tail_mean)
    assert np.allclose(sparse.table_.sum(axis=1), 1.0)
    assert sparse.sparse_.nnz == 40


def test_exploration_floor_on_a_sparse_policy():
    pi = TabularPolicy.from_candidates([0, 1], [3, 4], [1.0, 1.0], 2, 100)
    floored = pi.with_exploration(0.005)
    assert floored.is_sparse
    assert floored.table_.min() >= 0.005 - 1e-15
    assert np.allclose(floored.table_, pi.with_exploration(0.005).table_)
    dense = TabularPolicy(pi.table_).with_exploration(0.005)
    assert np.allclose(floored.table_, dense.table_)


def test_save_and_load_round_trip_a_sparse_policy(tmp_path):
    table = random_sparse(20, 15, seed=6)
    policy = TabularPolicy(table, {"name": "sparse"})
    path = policy.save(tmp_path / "sparse.zip")
    loaded = TabularPolicy.load(path)
    assert loaded.is_sparse and loaded.metadata["name"] == "sparse"
    assert np.array_equal(loaded.table_, policy.table_)
    blob = bytearray(path.read_bytes())
    blob[-200] ^= 0xFF
    (tmp_path / "bad.zip").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError):
        TabularPolicy.load(tmp_path / "bad.zip")


def test_dense_table_of_a_huge_sparse_policy_is_refused_with_its_size():
    pi = TabularPolicy.from_candidates([0], [1], [0.5], 20_000, 100_000)
    assert pi.top_k([0], 2)[0].tolist() == [[1, 0]]
    with pytest.raises(MemoryError, match="GiB"):
        _ = pi.table_


def test_bad_parts_are_named():
    with pytest.raises(ValueError, match="row 1 sums to"):
        explicit = sp.csr_array(np.array([[1.0, 0.0], [0.2, 0.0]]))
        SparseTable.build(explicit, np.empty((0, 2)), np.empty((2, 0)))
    with pytest.raises(ValueError, match="negative"):
        SparseTable.build(sp.csr_array(np.array([[1.0, 0.0]])), np.array([[1.5, -0.5]]), [[0.0]])
    with pytest.raises(ValueError, match=r"states\[1\] = 9"):
        TabularPolicy.from_candidates([0, 9], [1, 1], [0.5, 0.5], 3, 4)
    with pytest.raises(ValueError, match="candidates of state 0 sum to 1.5"):
        TabularPolicy.from_candidates([0, 0], [1, 2], [0.75, 0.75], 3, 4)


def test_evaluate_a_sparse_policy_as_its_dense_table():
    from hfrl.ope import evaluate

    rng = np.random.default_rng(7)
    n = 4_000
    logs = pd.DataFrame({"state": rng.integers(0, 20, n), "action": rng.integers(0, 60, n),
                         "propensity": 1 / 60})
    logs["reward"] = rng.binomial(1, 0.1 + 0.5 * (logs["action"] < 5)).astype(float)
    hf = HistoricalFrequency(prior_strength=1.0, sparse=True).fit(logs, n_states=20, n_actions=60)
    pi = TabularPolicy(rng.dirichlet(np.ones(60), 20)).sparsify(8)
    target = blend(pi, hf, 0.4)
    sparse_result = evaluate(logs, target, estimators=("ips", "snips", "dr"))
    dense_result = evaluate(logs, TabularPolicy(target.table_), estimators=("ips", "snips", "dr"))
    columns = ["estimate", "std_error", "ci_low", "ci_high"]
    assert np.allclose(sparse_result[columns].to_numpy(), dense_result[columns].to_numpy())


def served_sparse_policy(n_states: int = 30, n_actions: int = 5_000) -> TabularPolicy:
    rng = np.random.default_rng(8)
    states = np.repeat(np.arange(n_states), 12)
    actions = rng.choice(n_actions, states.size)
    probabilities = np.tile(np.linspace(0.1, 0.04, 12), n_states)
    policy = TabularPolicy.from_candidates(states, actions, probabilities, n_states, n_actions)
    return policy.with_exploration(1e-5)


def test_served_model_explores_slates_of_a_sparse_policy_by_its_law():
    from hfrl.service.model import ServedModel

    policy = served_sparse_policy()
    model = ServedModel(policy, version="sparse")
    states = np.full(30_000, 3)
    decisions = model.decide(states, 3, "explore", np.random.default_rng(0))
    assert all(len(set(row)) == 3 for row in decisions.actions.tolist())
    first = decisions.actions[:, 0]
    expected = policy.action_probabilities(np.full(10, 3), np.argsort(-policy.probabilities([3])[0])[:10])
    for action, p in zip(np.argsort(-policy.probabilities([3])[0])[:10], expected, strict=True):
        assert abs((first == action).mean() - p) < 4 * np.sqrt(p * (1 - p) / first.size)
    # the logged slot propensities are the sequential ones, as for a dense policy
    dense = ServedModel(TabularPolicy(policy.table_), version="dense")
    assert np.allclose(model.rule_probabilities(states[:50], decisions.actions[:50], "explore"),
                       dense.rule_probabilities(states[:50], decisions.actions[:50], "explore"))
    exploit = model.decide(np.arange(30), 10, "exploit", None)
    assert np.array_equal(exploit.actions, dense.decide(np.arange(30), 10, "exploit", None).actions)


def test_a_real_server_decides_and_logs_on_a_sparse_artifact(tmp_path):
    import httpx

    from hfrl.service import read_decision_log
    from test_service_reliability import running_server

    artifact = served_sparse_policy().save(tmp_path / "sparse.zip")
    with running_server(artifact, tmp_path / "log.sqlite", tmp_path) as (base, _):
        with httpx.Client(base_url=base, timeout=10) as client:
            model = client.get("/v1/model").json()
            assert model["n_actions"] == 5_000
            answer = client.post("/v1/decide", json={"state": 4, "k": 10}).json()
            assert len(set(answer["actions"])) == 10 and answer["slate_propensity"] > 0
            top = client.post("/v1/decide", json={"state": 4, "k": 10, "mode": "exploit"}).json()
            assert top["actions"] == served_sparse_policy().top_k([4], 10)[0][0].tolist()
            bad = client.post("/v1/decide", json={"state": 30})
            assert bad.status_code == 422 and "state" in bad.text
            assert client.post("/v1/feedback", json={"decision_id": answer["decision_id"],
                                                     "reward": 1.0}).status_code == 202
    log = read_decision_log(tmp_path / "log.sqlite")
    assert len(log) >= 2


def test_the_docs_example_runs_sparse_and_prints_its_sizes(capsys):
    import re

    from docs_examples import run_docs_example

    run_docs_example("rankings.md", "Sparse tables")
    printed = capsys.readouterr().out
    assert "sparse)" in printed  # the repr of a sparse TabularPolicy
    mebibytes = float(re.search(r"([0-9.]+) MiB instead of", printed).group(1))
    assert mebibytes < 50


def test_sparse_hf_takes_ids_beyond_a_dense_table_and_still_refuses_raw_ids():
    from hfrl.errors import LogValidationError

    logs = pd.DataFrame({"state": [0, 1, 2_999], "action": [5, 99_999, 7], "reward": [1.0, 1.0, 0.0]})
    hf = HistoricalFrequency().fit(logs, n_states=3_000, n_actions=100_000)  # 3e8 cells: auto is sparse
    assert isinstance(hf.probabilities_, SparseTable)
    with pytest.raises(LogValidationError, match="tables hold at most 100,000,000"):
        HistoricalFrequency(sparse=False).fit(logs, n_states=3_000, n_actions=100_000)
    raw = logs.assign(action=[5, 123_456_789, 7])
    with pytest.raises(LogValidationError, match="dense action id below 10,000,000"):
        HistoricalFrequency().fit(raw)
