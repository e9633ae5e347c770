"""Serving a contextual artifact from a real uvicorn process: decisions from features, logged propensities."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from hfrl.contextual import LinearPolicy, NeuralPolicy
from hfrl.policies import TabularPolicy
from hfrl.service import artifact_version, read_decision_log
from test_service_reliability import KEY, running_server

COLUMNS = ["age", "spend", "visits"]


@pytest.fixture
def linear_artifact(tmp_path):
    rng = np.random.default_rng(0)
    policy = LinearPolicy(rng.normal(size=(5, 3)), rng.normal(size=5), context_columns=COLUMNS, epsilon=0.1)
    return policy, policy.save(tmp_path / "linear.zip")


def test_decide_from_features_logs_the_policy_propensities(linear_artifact, tmp_path):
    policy, path = linear_artifact
    db = tmp_path / "log.sqlite"
    user = {"age": 0.5, "spend": -1.0, "visits": 2.0}
    x = np.array([[0.5, -1.0, 2.0]])
    p = policy.probabilities(x)[0]
    with running_server(path, db, tmp_path) as (base, _), httpx.Client(base_url=base, timeout=10) as client:
        described = client.get("/v1/model").json()
        assert described["n_states"] is None and described["context_columns"] == COLUMNS
        assert described["model_version"] == artifact_version(path)

        by_name = client.post("/v1/decide", json={"features": user, "request_id": "by-name"}).json()
        (action,), (propensity,) = by_name["actions"], by_name["propensities"]
        assert propensity == pytest.approx(p[action], rel=1e-12) and by_name["state"] is None
        assert by_name["model_version"] == artifact_version(path)
        in_order = client.post("/v1/decide", json={"features": [0.5, -1.0, 2.0]}).json()
        assert in_order["propensities"][0] == pytest.approx(p[in_order["actions"][0]], rel=1e-12)

        two = client.post("/v1/decide", json={"features": user, "k": 2}).json()
        first, second = two["actions"]
        assert first != second
        np.testing.assert_allclose(two["propensities"], [p[first], p[second] / (1 - p[first])], rtol=1e-12)
        best = client.post("/v1/decide", json={"features": user, "mode": "exploit", "k": 3}).json()
        assert best["actions"] == np.argsort(-p, kind="stable")[:3].tolist()
        assert best["propensities"] == [1.0] * 3

        batch = client.post("/v1/decide/batch", json={"requests": [
            {"features": user, "mode": "exploit"}, {"features": [-3.0, 0.0, 0.0], "mode": "exploit"}]})
        expected = policy.top_k(np.array([[0.5, -1.0, 2.0], [-3.0, 0.0, 0.0]]), 1)[0][:, 0].tolist()
        assert [d["actions"][0] for d in batch.json()["decisions"]] == expected

        feedback = client.post("/v1/feedback", json={"decision_id": by_name["decision_id"], "reward": 1.0})
        assert feedback.status_code == 202
    frame = read_decision_log(db)
    row = frame[frame["request_id"] == "by-name"].iloc[0]
    assert json.loads(row["context"]) == user and row["reward"] == 1.0 and row["state"] == 0
    assert row["propensity"] == pytest.approx(p[row["action"]], rel=1e-12)


@pytest.mark.parametrize(("body", "loc"), [
    ({"features": {"age": 1.0, "spend": 2.0}}, ["body", "features", "visits"]),  # missing
    ({"features": {"age": 1.0, "spend": 2.0, "visits": 0.0, "tenure": 4.0}}, ["body", "features", "tenure"]),
    ({"features": [1.0, 2.0]}, ["body", "features"]),  # too short
    ({"features": {"age": "1", "spend": 2.0, "visits": 0.0}}, ["body", "features", "dict[str,float]", "age"]),
    ({"state": 0}, ["body", "features"]),  # a contextual model has no states
    ({"features": [1.0, 2.0, 3.0], "k": 6}, ["body", "k"]),
])
def test_bad_features_are_refused_naming_the_field(linear_artifact, tmp_path, body, loc):
    _, path = linear_artifact
    with running_server(path, tmp_path / "log.sqlite", tmp_path) as (base, _):
        response = httpx.post(f"{base}/v1/decide", json=body, timeout=10)
    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()


def test_reload_swaps_between_contextual_and_tabular_artifacts(linear_artifact, tmp_path):
    _, path = linear_artifact
    rng = np.random.default_rng(1)
    neural = NeuralPolicy([(rng.normal(size=(4, 3)), np.zeros(4)), (rng.normal(size=(5, 4)), np.zeros(5))],
                          context_columns=COLUMNS, kind="greedy").save(tmp_path / "neural.zip")
    table = TabularPolicy(np.array([[0.0, 1.0]])).save(tmp_path / "table.zip")
    x = [0.1, 0.2, 0.3]
    with running_server(path, tmp_path / "log.sqlite", tmp_path) as (base, _), \
            httpx.Client(base_url=base, timeout=10, headers={"X-API-Key": KEY}) as client:
        swapped = client.post("/v1/admin/reload", json={"artifact": str(neural)})
        assert swapped.json()["model_version"] == artifact_version(neural) != artifact_version(path)
        decided = client.post("/v1/decide", json={"features": x}).json()
        greedy = int(NeuralPolicy.load(neural).scores(x)[0].argmax())
        assert decided["actions"] == [greedy] and decided["propensities"] == [1.0]
        client.post("/v1/admin/reload", json={"artifact": str(table)})
        refused = client.post("/v1/decide", json={"features": x})
        assert refused.status_code == 422
        assert ["body", "features"] in [error["loc"] for error in refused.json()["detail"]]
        assert client.post("/v1/decide", json={"state": 0}).json()["actions"] == [1]
