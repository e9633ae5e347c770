"""The decision service over HTTP (in process): decide, feedback, errors, auth, reload, metrics, OpenAPI."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hfrl.data import CategoryEncoder
from hfrl.policies import RankingPolicy, TabularPolicy
from hfrl.service import artifact_version, create_app, read_decision_log

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TABLE = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
KEY = "test-admin-key"


@pytest.fixture
def artifact(tmp_path):
    return TabularPolicy(TABLE, {"name": "demo"}).save(tmp_path / "policy.zip")


@pytest.fixture
def context_artifact(tmp_path):
    contexts = pd.DataFrame({"segment": ["a", "b"], "device": ["ios", "web"]})
    encoder = CategoryEncoder(["segment", "device"]).fit(contexts)
    items = CategoryEncoder("item").fit(pd.DataFrame({"item": ["sku-1", "sku-2", "sku-3"]}))
    metadata = {"state_encoder": encoder.to_dict(), "action_encoder": items.to_dict()}
    return TabularPolicy(TABLE, metadata).save(tmp_path / "context.zip")


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
def client(request, artifact, tmp_path):
    app = create_app(artifact, tmp_path / "log.sqlite", api_key=KEY, seed=0, fast_path=request.param)
    with TestClient(app) as c:
        yield c


def locs(response) -> list[list]:
    return [e["loc"] for e in response.json()["detail"]]


def test_decide_answers_the_interface(client, artifact):
    response = client.post("/v1/decide", json={"state": 0, "k": 1})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"decision_id", "actions", "propensities", "model_version"}
    assert body["actions"] == [1] and body["propensities"] == [1.0]
    assert body["model_version"] == artifact_version(artifact)
    assert response.headers["content-type"] == "application/json"


def test_explore_and_exploit_propensities(client):
    explore = client.post("/v1/decide", json={"state": 1, "k": 2}).json()
    pi = TABLE[1]
    a0, a1 = explore["actions"]
    assert a0 != a1
    assert explore["propensities"] == pytest.approx([pi[a0], pi[a1] / (1 - pi[a0])])
    ranking = RankingPolicy.from_policy(TabularPolicy(TABLE), 2)
    assert explore["slate_propensity"] == pytest.approx(ranking.cascade_propensities([1], [[a0, a1]])[0, -1])
    exploit = client.post("/v1/decide", json={"state": 1, "k": 2, "mode": "exploit"}).json()
    assert exploit["actions"] == [2, 1] and exploit["propensities"] == [1.0, 1.0]
    assert exploit["slate_propensity"] == 1.0


def test_decisions_and_feedback_land_in_the_log(client, tmp_path):
    ids = [client.post("/v1/decide", json={"state": s % 3}).json()["decision_id"] for s in range(6)]
    assert len(set(ids)) == 6
    for i, decision_id in enumerate(ids[:4]):  # feedback right after deciding: never a 404
        response = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": float(i)})
        assert response.status_code == 202, response.text
        assert response.json() == {"decision_id": decision_id, "event": "reward", "status": "accepted"}
    client.app.state.service.log.flush()
    frame = read_decision_log(tmp_path / "log.sqlite").set_index("decision_id").loc[ids]
    assert frame["state"].tolist() == [0, 1, 2, 0, 1, 2]
    assert frame["reward"].tolist()[:4] == [0.0, 1.0, 2.0, 3.0]
    assert frame["reward"].isna().tolist()[4:] == [True, True]
    assert (frame["propensity"] > 0).all()


def test_feedback_is_idempotent_and_unknown_is_404(client, tmp_path):
    decision_id = client.post("/v1/decide", json={"state": 2}).json()["decision_id"]
    first = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0})
    again = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1})  # the same number
    assert (first.status_code, again.status_code) == (202, 202)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    click = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1, "event": "click"})
    assert click.json()["status"] == "accepted"
    missing = client.post("/v1/feedback", json={"decision_id": "no-such-id", "reward": 1.0})
    assert missing.status_code == 404 and "no-such-id" in missing.json()["detail"]
    assert client.app.state.service.log.counts()["feedback_rows"] == 2


def test_a_different_reward_for_a_stored_feedback_is_409_naming_both(client, tmp_path):
    decision_id = client.post("/v1/decide", json={"state": 2}).json()["decision_id"]
    assert client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.5}).status_code == 202
    conflict = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 9.25})
    assert conflict.status_code == 409
    detail = conflict.json()["detail"]
    assert "1.5" in detail and "9.25" in detail and decision_id in detail
    other_event = {"decision_id": decision_id, "reward": 9.25, "event": "click"}
    assert client.post("/v1/feedback", json=other_event).status_code == 202  # a separate event
    client.app.state.service.log.flush()
    frame = read_decision_log(tmp_path / "log.sqlite", event="reward").set_index("decision_id")
    assert frame.loc[decision_id, "reward"] == 1.5  # the stored reward is kept
    assert 'hfrl_feedback_total{outcome="conflict"} 1' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"k": 1}, ["body"]),  # neither state nor context
        ({"state": 1, "context": {"a": 1}}, ["body"]),
        ({"state": 3}, ["body", "state"]),  # outside [0, 3)
        ({"state": -1}, ["body", "state"]),
        ({"state": "x"}, ["body", "state"]),
        ({"state": True}, ["body", "state"]),  # strict: no bool, string or float coercion
        ({"state": "1"}, ["body", "state"]),
        ({"state": 1.0}, ["body", "state"]),
        ({"state": 0, "k": True}, ["body", "k"]),
        ({"state": 2, "k": "2"}, ["body", "k"]),
        ({"state": 0, "k": 4}, ["body", "k"]),
        ({"state": 0, "k": 0}, ["body", "k"]),
        ({"state": 0, "k": 2}, ["body", "k"]),  # state 0 has one action with positive probability
        ({"state": 0, "mode": "greedy"}, ["body", "mode"]),
        ({"state": 0, "colour": "red"}, ["body", "colour"]),
        ({"context": {"segment": "a"}}, ["body", "context"]),  # this model has no encoder
    ],
)
def test_bad_decide_bodies_are_422_naming_the_field(client, body, loc):
    response = client.post("/v1/decide", json=body)
    assert response.status_code == 422, response.text
    assert loc in locs(response)
    assert all(e["msg"] for e in response.json()["detail"])


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"reward": 1.0}, ["body", "decision_id"]),
        ({"decision_id": "x"}, ["body", "reward"]),
        ({"decision_id": "x", "reward": "lots"}, ["body", "reward"]),
        ({"decision_id": "x", "reward": "3.5"}, ["body", "reward"]),  # strict: no string or bool coercion
        ({"decision_id": "x", "reward": True}, ["body", "reward"]),
        ({"decision_id": 7, "reward": 1.0}, ["body", "decision_id"]),
        ({"decision_id": "", "reward": 1.0}, ["body", "decision_id"]),
        ({"decision_id": "x", "reward": 1.0, "event": ""}, ["body", "event"]),
    ],
)
def test_bad_feedback_bodies_are_422_naming_the_field(client, body, loc):
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 422 and loc in locs(response)


def test_malformed_json_is_422(client):
    response = client.post("/v1/decide", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert locs(response)[0][0] == "body"


def test_non_finite_reward_is_422(client):
    body = b'{"decision_id": "x", "reward": NaN}'
    response = client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_oversized_bodies_are_413(artifact, tmp_path):
    app = create_app(artifact, tmp_path / "log.sqlite", max_body_bytes=200)
    with TestClient(app) as client:
        big = {"state": 0, "request_id": "x" * 190}
        assert client.post("/v1/decide", json=big).status_code == 413
        batch = {"requests": [{"state": 0}] * 40}
        assert client.post("/v1/decide/batch", json=batch).status_code == 413
        parts = [b'{"requests": [', b'{"state": 0},' * 30 + b"]}"]
        chunked = client.post("/v1/decide/batch", content=iter(parts))
        assert chunked.status_code == 413
        assert client.post("/v1/decide", json={"state": 0}).status_code == 200


def test_batch_decides_many_with_mixed_k_and_modes(client, tmp_path):
    requests = [{"state": s % 3} for s in range(10)] + [{"state": 1, "k": 3, "mode": "exploit"}]
    response = client.post("/v1/decide/batch", json={"requests": requests})
    assert response.status_code == 200
    decisions = response.json()["decisions"]
    assert len(decisions) == 11 and len({d["decision_id"] for d in decisions}) == 11
    assert decisions[0]["actions"] == [1]
    assert decisions[-1]["actions"] == [2, 1, 0] and decisions[-1]["propensities"] == [1.0] * 3
    bad = client.post("/v1/decide/batch", json={"requests": [{"state": 0}, {"state": 7}]})
    assert bad.status_code == 422 and ["body", "requests", 1, "state"] in locs(bad)
    coerced = client.post("/v1/decide/batch", json={"requests": [{"state": 0}, {"state": True}]})
    assert coerced.status_code == 422 and ["body", "requests", 1, "state"] in locs(coerced)
    assert client.post("/v1/decide/batch", json={"requests": []}).status_code == 422
    client.app.state.service.log.flush()
    assert len(read_decision_log(tmp_path / "log.sqlite", all_positions=True)) == 10 + 3


def test_contexts_unknown_values_and_items(context_artifact, tmp_path):
    with TestClient(create_app(context_artifact, tmp_path / "log.sqlite")) as client:
        known = client.post("/v1/decide", json={"context": {"segment": "b", "device": "web"}, "k": 3})
        assert known.status_code == 200 and known.json()["state"] == 1
        assert sorted(known.json()["items"]) == ["sku-1", "sku-2", "sku-3"]
        unknown = client.post("/v1/decide", json={"context": {"segment": "new", "device": "web"}})
        assert unknown.status_code == 200 and unknown.json()["state"] == 2  # the unknown bucket
        missing = client.post("/v1/decide", json={"context": {"segment": "a"}})
        assert missing.status_code == 422 and ["body", "context", "device"] in locs(missing)
        nested = client.post("/v1/decide", json={"context": {"segment": {"x": 1}, "device": "web"}})
        assert nested.status_code == 422
        client.app.state.service.log.flush()
        logged = read_decision_log(tmp_path / "log.sqlite")
        assert '"segment":"new"' in logged["context"].iloc[-1]


def test_admin_reload_needs_the_key_and_swaps_the_model(artifact, tmp_path):
    other = TabularPolicy(TABLE[[2, 1, 0]]).save(tmp_path / "other.zip")
    with TestClient(create_app(artifact, tmp_path / "log.sqlite", api_key=KEY)) as client:
        assert client.post("/v1/admin/reload").status_code == 401
        assert client.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 401
        response = client.post("/v1/admin/reload", json={"artifact": str(other)}, headers={"X-API-Key": KEY})
        assert response.status_code == 200
        assert response.json()["model_version"] == artifact_version(other)
        assert response.json()["previous_version"] == artifact_version(artifact)
        assert client.get("/v1/model").json()["model_version"] == artifact_version(other)
        assert client.post("/v1/decide", json={"state": 2}).json()["actions"] == [1]
        missing = {"artifact": str(tmp_path / "nope.zip")}
        bad = client.post("/v1/admin/reload", json=missing, headers={"X-API-Key": KEY})
        assert bad.status_code == 422 and ["body", "artifact"] in locs(bad)
        corrupt = tmp_path / "corrupt.zip"
        corrupt.write_bytes(b"garbage")
        bad = client.post("/v1/admin/reload", json={"artifact": str(corrupt)}, headers={"X-API-Key": KEY})
        assert bad.status_code == 422
        assert client.get("/v1/model").json()["model_version"] == artifact_version(other)  # kept


def test_admin_is_closed_without_a_configured_key(artifact, tmp_path, monkeypatch):
    monkeypatch.delenv("HFRL_API_KEY", raising=False)
    with TestClient(create_app(artifact, tmp_path / "log.sqlite")) as client:
        response = client.post("/v1/admin/reload", headers={"X-API-Key": ""})
        assert response.status_code == 403 and "HFRL_API_KEY" in response.json()["detail"]


def test_the_key_can_come_from_the_environment(artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("HFRL_API_KEY", "from-env")
    with TestClient(create_app(artifact, tmp_path / "log.sqlite")) as client:
        assert client.post("/v1/admin/reload", headers={"X-API-Key": "from-env"}).status_code == 200


@pytest.mark.parametrize("fast_path", [True, False])
def test_require_key_extends_to_every_endpoint(artifact, tmp_path, fast_path):
    app = create_app(artifact, tmp_path / "log.sqlite", api_key=KEY, require_key=True, fast_path=fast_path)
    with TestClient(app) as client:
        assert client.post("/v1/decide", json={"state": 0}).status_code == 401
        assert client.post("/v1/feedback", json={"decision_id": "x", "reward": 1}).status_code == 401
        assert client.post("/v1/decide/batch", json={"requests": [{"state": 0}]}).status_code == 401
        assert client.get("/v1/model").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200  # probes stay open
        keyed = {"X-API-Key": KEY}
        decision = client.post("/v1/decide", json={"state": 0}, headers=keyed)
        assert decision.status_code == 200
        body = {"decision_id": decision.json()["decision_id"], "reward": 1}
        assert client.post("/v1/feedback", json=body, headers=keyed).status_code == 202


def test_health_model_and_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert (info["name"], info["n_states"], info["n_actions"]) == ("demo", 3, 3)
    for _ in range(3):
        client.post("/v1/decide", json={"state": 0})
    decision_id = client.post("/v1/decide", json={"state": 0}).json()["decision_id"]
    client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1})
    client.post("/v1/decide", json={"state": 99})
    text = client.get("/metrics").text
    assert 'hfrl_requests_total{route="/v1/decide",status="200"} 4' in text
    assert 'hfrl_requests_total{route="/v1/decide",status="422"} 1' in text
    assert 'hfrl_decisions_per_action_total{action="1"} 4' in text
    assert 'hfrl_feedback_total{outcome="accepted"} 1' in text
    assert 'hfrl_request_duration_seconds_bucket{route="/v1/decide",le="+Inf"} 5' in text
    assert "hfrl_log_rows_committed_total" in text


def test_openapi_describes_the_interface(client):
    schema = client.get("/openapi.json").json()
    paths = {"/v1/decide", "/v1/decide/batch", "/v1/feedback", "/v1/model", "/v1/admin/reload", "/healthz"}
    assert paths <= set(schema["paths"])
    decide = schema["components"]["schemas"]["DecideRequest"]["properties"]
    assert {"state", "context", "k", "mode", "request_id"} <= set(decide)
    feedback = schema["paths"]["/v1/feedback"]["post"]["responses"]
    assert {"202", "404", "409", "422"} <= set(feedback)
    response = schema["components"]["schemas"]["DecideResponse"]["required"]
    assert {"decision_id", "actions", "propensities", "model_version"} <= set(response)


def test_seeded_services_decide_identically(artifact, tmp_path):
    runs = []
    for name in ("a", "b"):
        with TestClient(create_app(artifact, tmp_path / f"{name}.sqlite", seed=3)) as client:
            body = {"state": 2, "k": 2}
            runs.append([client.post("/v1/decide", json=body).json()["actions"] for _ in range(5)])
    assert runs[0] == runs[1]


def test_export_log_command_writes_parquet(client, tmp_path):
    from typer.testing import CliRunner

    from hfrl.cli import app as cli

    decision_id = client.post("/v1/decide", json={"state": 1}).json()["decision_id"]
    client.post("/v1/decide", json={"state": 2})
    assert client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 2.5}).status_code == 202
    client.app.state.service.log.flush()
    out = tmp_path / "export" / "log.parquet"
    result = CliRunner().invoke(cli, ["export-log", str(tmp_path / "log.sqlite"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns[:6]) == ["state", "action", "reward", "propensity", "timestamp", "decision_id"]
    assert len(frame) == 2
    assert frame.set_index("decision_id").loc[decision_id, "reward"] == 2.5
    assert frame["reward"].isna().sum() == 1
    missing = CliRunner().invoke(cli, ["export-log", str(tmp_path / "nope.sqlite"), "--out", str(out)])
    assert missing.exit_code == 1 and "no decision log database" in missing.output


def test_server_entry_point_reports_bad_setups(artifact, tmp_path, monkeypatch, capsys):
    from hfrl.service.server import main, read_api_key

    monkeypatch.delenv("HFRL_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing.zip"), "--db", str(tmp_path / "log.sqlite")])
    assert exit_info.value.code == 1 and "no such artifact file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(artifact), "--db", str(tmp_path / "log.sqlite"), "--require-key"])
    assert "--require-key needs a key" in capsys.readouterr().err
    assert not (tmp_path / "log.sqlite").exists()
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_api_key(empty)
    monkeypatch.setenv("HFRL_API_KEY", "k")
    assert read_api_key(None) == "k"


def test_feedback_for_a_decision_still_in_the_write_queue_is_accepted(client, tmp_path):
    import sqlite3
    import threading

    blocker = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # nothing commits until the blocker lets go
    try:
        decision_id = client.post("/v1/decide", json={"state": 1}).json()["decision_id"]
        assert client.app.state.service.log.counts()["decision_rows"] == 0  # answered, not yet on disk
        release = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
        release.start()
        response = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0})
        release.join()
    finally:
        blocker.close()
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    assert client.app.state.service.log.counts() == {"decision_rows": 1, "feedback_rows": 1}


def test_a_rejected_batch_counts_and_logs_nothing(client):
    batch = {"requests": [{"state": 1}, {"state": 0, "k": 2}]}  # the second cannot take 2 actions in state 0
    response = client.post("/v1/decide/batch", json=batch)
    assert response.status_code == 422 and ["body", "requests", 1, "k"] in locs(response)
    client.app.state.service.log.flush()
    assert client.app.state.service.log.counts()["decision_rows"] == 0
    assert "hfrl_decisions_total{" not in client.get("/metrics").text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/decide", b"{not json"),
        ("/v1/decide", b"\xff\xfe{"),  # not UTF-8
        ("/v1/decide", b""),
        ("/v1/decide", b'{"state": true}'),
        ("/v1/decide", b'{"state": 99}'),
        ("/v1/decide", b'{"state": 0, "k": 2}'),
        ("/v1/decide", b'{"state": 0, "colour": "red"}'),
        ("/v1/feedback", b'{"decision_id": "x", "reward": "3.5"}'),
        ("/v1/feedback", b'{"decision_id": "nope", "reward": 1}'),
        ("/v1/feedback", b'{"decision_id": "x", "reward": NaN}'),
    ],
)
def test_the_fast_path_answers_exactly_like_the_routes(artifact, tmp_path, path, body):
    answers = []
    for fast_path in (True, False):
        app = create_app(
            artifact, tmp_path / f"{fast_path}.sqlite", api_key=KEY, require_key=True, fast_path=fast_path
        )
        with TestClient(app) as client:
            answers.append([])
            for key in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY}):
                headers = {"content-type": "application/json", **key}
                response = client.post(path, content=body, headers=headers)
                answers[-1].append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][2][0] in (400, 404, 422)  # with the key, the body's own error


def test_feedback_per_slot_of_a_list(client, tmp_path):
    decided = client.post("/v1/decide", json={"state": 1, "k": 3}).json()
    decision_id = decided["decision_id"]
    first = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0, "position": 2})
    assert first.status_code == 202 and first.json() == {"decision_id": decision_id, "event": "reward",
                                                         "status": "accepted", "position": 2}
    again = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0, "position": 2})
    assert again.json()["status"] == "duplicate"
    other = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 0.0, "position": 2})
    assert other.status_code == 409 and "position 2" in other.text
    beyond = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0, "position": 3})
    assert beyond.status_code == 404 and "no slot at position 3" in beyond.text
    negative = client.post("/v1/feedback", json={"decision_id": decision_id, "reward": 1.0, "position": -1})
    assert negative.status_code == 422 and "position" in negative.text
    client.app.state.service.log.flush()
    slots = read_decision_log(tmp_path / "log.sqlite", all_positions=True)
    mine = slots[slots["decision_id"] == decision_id]
    assert mine["reward"].isna().tolist() == [True, True, False]
    assert mine["reward"].tolist()[2] == 1.0 and mine["reward_per_slot"].all()
    assert mine["slot_propensity"].tolist() == decided["propensities"]
    # an explored list's marginals are not logged: iips is refused by name, sips reads the export as it is
    from hfrl.errors import LogValidationError
    from hfrl.ope import evaluate_slates

    ranking = RankingPolicy.from_policy(TabularPolicy(TABLE), 3)
    exported = mine.assign(reward=mine["reward"].fillna(0.0))
    with pytest.raises(LogValidationError, match="leave 'iips' out"):
        evaluate_slates(exported, ranking)
    assert np.isfinite(evaluate_slates(exported, ranking, estimators=("sips",)).loc["sips", "estimate"])
