"""Closing the loop: champion and challenger, monitors, off-policy candidates, refresh (SQLite, in process
and as a real server under load)."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from hfrl.blending import blend
from hfrl.ope import confidence_sequence
from hfrl.policies import TabularPolicy
from hfrl.service import artifact_version, create_app, read_decision_log
from hfrl.service.monitor import MonitorSettings
from test_service_reliability import KEY, running_server

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LAG = 0.3  # seconds a monitor waits before reading a row (commits of the last group window land first)
CHAMPION = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
CHALLENGER = np.array([[0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.0, 0.5, 0.5], [0.25, 0.25, 0.5]])
CLICK_RATE = np.array([[0.1, 0.2, 0.6], [0.5, 0.1, 0.3], [0.2, 0.4, 0.5], [0.1, 0.1, 0.7]])


@pytest.fixture
def artifacts(tmp_path) -> tuple[Path, Path]:
    return (TabularPolicy(CHAMPION, {"name": "champion"}).save(tmp_path / "champion.zip"),
            TabularPolicy(CHALLENGER, {"name": "challenger"}).save(tmp_path / "challenger.zip"))


def experiment_app(artifacts, tmp_path, **options):
    defaults = {"api_key": KEY, "seed": 0, "challenger": artifacts[1], "traffic": 0.3,
                "monitor": MonitorSettings(lag=LAG), "monitor_interval": 0.05}
    return create_app(artifacts[0], tmp_path / "log.sqlite", **{**defaults, **options})


def decide_batch(client, states, **fields) -> list[dict]:
    body = {"requests": [{"state": int(s), **fields} for s in states]}
    response = client.post("/v1/decide/batch", json=body)
    assert response.status_code == 200, response.text
    return response.json()["decisions"]


def send_feedback(client, decisions, rng, rates=CLICK_RATE) -> None:
    for decision in decisions:
        reward = float(rng.random() < rates[decision["state"], decision["actions"][0]])
        body = {"decision_id": decision["decision_id"], "reward": reward}
        response = client.post("/v1/feedback", json=body)
        assert response.status_code == 202, response.text


def test_the_split_logs_the_mixture_propensity_and_the_deciding_policy(artifacts, tmp_path):
    traffic = 0.3
    with TestClient(experiment_app(artifacts, tmp_path)) as client:
        states = np.arange(4000) % 4
        decisions = decide_batch(client, states)
        slates = decide_batch(client, states[:400], k=2)
        exploits = decide_batch(client, states[:400], k=2, mode="exploit")
        client.app.state.service.log.flush()
    versions = {"champion": artifact_version(artifacts[0]), "challenger": artifact_version(artifacts[1])}
    arms = np.array([d["policy"] for d in decisions])
    assert abs((arms == "challenger").mean() - traffic) < 0.03
    for decision in decisions:
        s, a = decision["state"], decision["actions"][0]
        mixed = (1 - traffic) * CHAMPION[s, a] + traffic * CHALLENGER[s, a]
        assert decision["propensities"][0] == pytest.approx(mixed)
        assert decision["model_version"] == versions[decision["policy"]]
    for decision in slates:  # slot 1: P(a0, a1) / P(a0) under the mixture
        s, (a0, a1) = decision["state"], decision["actions"]
        joint = [table[s, a0] * table[s, a1] / (1 - table[s, a0]) for table in (CHAMPION, CHALLENGER)]
        first = [table[s, a0] for table in (CHAMPION, CHALLENGER)]
        mix = lambda pair: (1 - traffic) * pair[0] + traffic * pair[1]  # noqa: E731
        assert decision["propensities"] == pytest.approx([mix(first), mix(joint) / mix(first)])
        assert decision["slate_propensity"] == pytest.approx(mix(joint))  # the list's probability as served
    for decision in exploits:  # two deterministic rules: the share of the arms that give this slate
        s = decision["state"]
        tops = [list(np.argsort(-table[s], kind="stable")[:2]) for table in (CHAMPION, CHALLENGER)]
        first_action = decision["actions"][0]
        expected = (1 - traffic) * (tops[0][0] == first_action) + traffic * (tops[1][0] == first_action)
        assert decision["propensities"][0] == pytest.approx(expected)
    log = read_decision_log(tmp_path / "log.sqlite")
    assert set(log["policy"]) == {"champion", "challenger"}
    assert log["propensity"].between(0, 1, inclusive="right").all()


def test_the_logged_propensities_are_the_served_frequencies(artifacts, tmp_path):
    traffic = 0.3
    with TestClient(experiment_app(artifacts, tmp_path)) as client:
        decisions = decide_batch(client, np.zeros(10_000, dtype=int), k=2)
    pairs = pd.Series([tuple(d["actions"]) for d in decisions]).value_counts(normalize=True)
    logged = {tuple(d["actions"]): d["propensities"][0] * d["propensities"][1] for d in decisions}
    for pair, share in pairs.items():  # observed slate frequency vs the logged mixture probability
        assert abs(share - logged[pair]) < 4 * np.sqrt(logged[pair] * (1 - logged[pair]) / 10_000) + 1e-3
    first = pd.Series([d["actions"][0] for d in decisions]).value_counts(normalize=True)
    expected = (1 - traffic) * CHAMPION[0] + traffic * CHALLENGER[0]
    assert np.allclose(first.sort_index().to_numpy(), expected, atol=0.015)


def test_a_user_id_keeps_one_arm(artifacts, tmp_path):
    with TestClient(experiment_app(artifacts, tmp_path)) as client:
        arms = {}
        for user in range(40):
            seen = {client.post("/v1/decide", json={"state": 1, "user_id": f"u{user}"}).json()["policy"]
                    for _ in range(5)}
            assert len(seen) == 1
            arms[user] = seen.pop()
    assert set(arms.values()) == {"champion", "challenger"}


def test_the_experiment_report_is_the_confidence_sequence_of_the_decision_log(artifacts, tmp_path):
    rng = np.random.default_rng(1)
    with TestClient(experiment_app(artifacts, tmp_path)) as client:
        decisions = decide_batch(client, rng.integers(0, 4, 3000))
        send_feedback(client, decisions[:2500], rng)
        service = client.app.state.service
        service.log.flush()
        time.sleep(LAG)
        service.poll_monitors()
        report = client.get("/v1/experiment").json()
        metrics = client.get("/metrics").text
    arms = pd.Series([d["policy"] for d in decisions])
    assert report["decisions"] == arms.value_counts().to_dict()
    assert report["feedbacks"] == arms[:2500].value_counts().to_dict()
    log = read_decision_log(tmp_path / "log.sqlite").dropna(subset=["reward"])
    expected = confidence_sequence(log, TabularPolicy(CHALLENGER), baseline=TabularPolicy(CHAMPION),
                                   reward_range=(0, 1), n_points=1).iloc[-1]
    assert report["rows"] == 2500
    assert report["difference"] == pytest.approx(expected["estimate"])
    truth = float(((CHALLENGER - CHAMPION) * CLICK_RATE).sum(axis=1).mean())  # states are uniform
    assert report["ci_low"] <= truth <= report["ci_high"]
    assert report["state"] in ("running", "promote") and report["traffic"] == 0.3
    assert "hfrl_experiment_ci_low" in metrics
    assert 'hfrl_experiment_decisions_total{policy="challenger"}' in metrics


def run_until(client, state: str, rng, rates, rounds: int = 60) -> dict:
    for _ in range(rounds):
        send_feedback(client, decide_batch(client, rng.integers(0, 4, 200)), rng, rates)
        client.app.state.service.log.flush()
        deadline = time.monotonic() + 2 + LAG
        report = client.get("/v1/experiment").json()
        while report["concluded"] is None and report["state"] == state and time.monotonic() < deadline:
            time.sleep(0.05)  # the watch task acts on the conclusion
            report = client.get("/v1/experiment").json()
        if report["concluded"] is not None:
            return report
    raise AssertionError(f"no conclusion after {rounds} rounds: {report}")


def test_auto_promotes_a_better_challenger(artifacts, tmp_path):
    rates = np.tile([0.05, 0.05, 0.9], (4, 1))  # the challenger favours action 2, the best one
    rng = np.random.default_rng(2)
    with TestClient(experiment_app(artifacts, tmp_path, traffic=0.5, auto=True)) as client:
        report = run_until(client, "promote", rng, rates)
        assert report["state"] == "promote" and report["ci_low"] > 0
        assert report["concluded"]["decision"] == "promote" and report["concluded"]["how"] == "auto"
        after = client.post("/v1/decide", json={"state": 0}).json()
        assert after["model_version"] == artifact_version(artifacts[1]) and "policy" not in after
        metrics = client.get("/metrics").text
        assert 'hfrl_experiment_conclusions_total{decision="promote",how="auto"} 1' in metrics
        assert client.get("/v1/model").json()["model_version"] == artifact_version(artifacts[1])


def test_a_crossed_guardrail_rolls_back(artifacts, tmp_path):
    rates = np.tile([0.5, 0.5, 0.02], (4, 1))  # the challenger's favourite action rarely clicks
    rng = np.random.default_rng(3)
    settings = MonitorSettings(lag=LAG, guardrail_floor=0.3, level=0.9)
    with TestClient(experiment_app(artifacts, tmp_path, traffic=0.5, auto=True, monitor=settings)) as client:
        report = run_until(client, "rollback", rng, rates)
        assert report["state"] == "rollback"
        assert report["challenger_value"]["ci_high"] < 0.3 or report["ci_high"] < 0
        after = client.post("/v1/decide", json={"state": 0}).json()
        assert after["model_version"] == artifact_version(artifacts[0]) and "policy" not in after


def test_the_admin_concludes_and_bad_inputs_are_refused(artifacts, tmp_path):
    with TestClient(create_app(artifacts[0], tmp_path / "plain.sqlite")) as client:
        assert client.get("/v1/experiment").status_code == 404
        assert "policy" not in client.post("/v1/decide", json={"state": 0}).json()
    with TestClient(experiment_app(artifacts, tmp_path)) as client:
        decision = client.post("/v1/decide", json={"state": 0}).json()
        outside = client.post("/v1/feedback", json={"decision_id": decision["decision_id"], "reward": 3.0})
        assert outside.status_code == 422 and outside.json()["detail"][0]["loc"] == ["body", "reward"]
        assert "outside the monitored reward range [0.0, 1.0]" in outside.json()["detail"][0]["msg"]
        other = {"decision_id": decision["decision_id"], "reward": 3.0, "event": "revenue"}
        assert client.post("/v1/feedback", json=other).status_code == 202  # not the monitored event
        assert client.post("/v1/admin/experiment", json={"decision": "rollback"}).status_code == 401
        headers = {"X-API-Key": KEY}
        bad = client.post("/v1/admin/experiment", json={"decision": "maybe"}, headers=headers)
        assert bad.status_code == 422
        done = client.post("/v1/admin/experiment", json={"decision": "promote"}, headers=headers).json()
        assert done["state"] == "promote" and done["concluded"]["how"] == "admin"
        served = client.post("/v1/decide", json={"state": 0}).json()["model_version"]
        assert served == artifact_version(artifacts[1])
    with pytest.raises(ValueError, match="traffic must be a share strictly between 0 and 1"):
        experiment_app(artifacts, tmp_path, traffic=1.0)
    other_shape = TabularPolicy(np.full((2, 3), 1 / 3)).save(tmp_path / "small.zip")
    with pytest.raises(ValueError, match="has 2 states x 3 actions; the champion has 4 x 3"):
        experiment_app(artifacts, tmp_path, challenger=other_shape)


def test_a_candidate_is_watched_off_policy_from_the_champions_propensities(artifacts, tmp_path):
    champion = TabularPolicy(CHAMPION).with_exploration(0.1).save(tmp_path / "explored.zip")
    best = TabularPolicy(np.tile([0.0, 0.0, 1.0], (4, 1))).save(tmp_path / "best.zip")
    rates = np.tile([0.1, 0.1, 0.8], (4, 1))
    rng = np.random.default_rng(4)
    app = create_app(champion, tmp_path / "log.sqlite", api_key=KEY, seed=0, candidates=[best],
                     monitor=MonitorSettings(lag=LAG), monitor_interval=0.05)
    with TestClient(app) as client:
        for _ in range(30):
            send_feedback(client, decide_batch(client, rng.integers(0, 4, 200)), rng, rates)
            client.app.state.service.log.flush()
            time.sleep(LAG)
            client.app.state.service.poll_monitors()
            (report,) = client.get("/v1/candidates").json()["candidates"]
            if report["state"] != "running":
                break
        assert report["state"] == "promote" and report["ci_low"] > 0
        truth = 0.8 - float((TabularPolicy(CHAMPION).with_exploration(0.1).table_ * rates).sum(axis=1).mean())
        assert report["ci_low"] <= truth <= report["ci_high"]
        assert report["max_weight"] == pytest.approx(1 / 0.1, rel=1e-6)
        unsupported = TabularPolicy(np.tile([0.0, 0.0, 1.0], (4, 1))).save(tmp_path / "other.zip")
        plain = create_app(artifacts[0], tmp_path / "other.sqlite", api_key=KEY)
        with TestClient(plain) as other_client:
            ok = other_client.post("/v1/admin/candidates", json={"artifact": str(unsupported)},
                                   headers={"X-API-Key": KEY})
            assert ok.status_code == 200  # CHAMPION plays every action: a bound exists
        greedy = TabularPolicy(np.tile([1.0, 0.0, 0.0], (4, 1))).save(tmp_path / "greedy.zip")
        with TestClient(create_app(greedy, tmp_path / "greedy.sqlite", api_key=KEY)) as greedy_client:
            refused = greedy_client.post("/v1/admin/candidates", json={"artifact": str(unsupported)},
                                         headers={"X-API-Key": KEY})
            assert refused.status_code == 422
            assert "plays action 2 in state 0, which the served policy never plays" in refused.text


# ---------------------------------------------------------------------- refresh
def blended_artifacts(tmp_path) -> tuple[Path, Path, Path]:
    """pi, HF (as hfrl frequencies writes it, with a half-life) and pi' as hfrl tune writes it."""
    pi = TabularPolicy(CHAMPION, {"name": "pi"})
    hf = TabularPolicy(np.full((4, 3), 1 / 3), {"name": "hf", "kind": "share", "prior_strength": 1.0,
                                                 "half_life": "1D", "source": "old.parquet"})
    blended = blend(pi, hf, 0.4)
    blended.metadata.update(alpha=0.4, method="linear", estimator="snips")
    return pi.save(tmp_path / "pi.zip"), hf.save(tmp_path / "hf.zip"), blended.save(tmp_path / "tuned.zip")


def recent_logs(n: int, seed: int, favourite: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    action = np.where(rng.random(n) < 0.8, favourite, rng.integers(0, 3, n))
    return pd.DataFrame({"state": rng.integers(0, 4, n), "action": action, "reward": 1.0,
                         "propensity": 1 / 3, "timestamp": 1.7e9 + np.arange(n, dtype=float)})


def test_refresh_command_rebuilds_the_blend_and_carries_its_recipe(tmp_path):
    from typer.testing import CliRunner

    from hfrl.cli import app as cli

    pi, hf, tuned = blended_artifacts(tmp_path)
    recent_logs(3000, 0, favourite=2).to_parquet(tmp_path / "recent.parquet")
    runner = CliRunner()
    missing = runner.invoke(cli, ["refresh", str(tuned), "--logs", str(tmp_path / "recent.parquet"),
                                  "--out", str(tmp_path / "new.zip")])
    assert missing.exit_code == 1
    assert "does not carry pi; give the learned policy once with --pi" in missing.output
    first = runner.invoke(cli, ["refresh", str(tuned), "--logs", str(tmp_path / "recent.parquet"), "--out",
                                str(tmp_path / "new.zip"), "--pi", str(pi), "--hf", str(hf), "--json"])
    assert first.exit_code == 0, first.output
    refreshed = TabularPolicy.load(tmp_path / "new.zip")
    assert refreshed.metadata["alpha"] == 0.4 and refreshed.metadata["refresh"]["hf"]["half_life"] == "1D"
    assert refreshed.metadata["name"] == "pi"
    share_of_2 = refreshed.table_[:, 2]  # HF now leans on action 2: pi' = 0.6 pi + 0.4 HF
    assert np.all(share_of_2 > 0.6 * CHAMPION[:, 2] + 0.4 * 0.6)
    again = runner.invoke(cli, ["refresh", str(tmp_path / "new.zip"), "--logs",
                                str(tmp_path / "recent.parquet"), "--out", str(tmp_path / "again.zip"),
                                "--retune"])
    assert again.exit_code == 0, again.output  # the refreshed artifact carries pi and HF's settings
    assert "alpha re-tuned by the 95% lower bound" in again.output
    assert artifact_version(tmp_path / "again.zip") != artifact_version(tuned)


def test_serve_refuses_bad_experiment_settings_before_listening(artifacts, tmp_path):
    from typer.testing import CliRunner

    from hfrl.cli import app as cli

    runner = CliRunner()
    base = ["serve", str(artifacts[0]), "--db", str(tmp_path / "log.sqlite"),
            "--challenger", str(artifacts[1])]
    bad_range = runner.invoke(cli, [*base, "--reward-range", "1"])
    assert bad_range.exit_code == 1
    assert "--reward-range expects LOW,HIGH (two numbers), got '1'" in bad_range.output
    bad_share = runner.invoke(cli, [*base, "--traffic", "1.5"])
    assert bad_share.exit_code == 1
    assert "traffic must be a share strictly between 0 and 1, got 1.5" in bad_share.output


def test_a_refresh_swaps_under_load_without_a_failed_request(tmp_path):
    pi, hf, tuned = blended_artifacts(tmp_path)
    recent_logs(20_000, 1, favourite=1).to_parquet(tmp_path / "recent.parquet")
    db = str(tmp_path / "log.sqlite")
    extra = ("--refresh-logs", str(tmp_path / "recent.parquet"), "--pi", str(pi), "--hf", str(hf))
    with running_server(tuned, db, tmp_path, *extra) as (base, _):
        stop = threading.Event()
        outcomes: list[tuple[int, str]] = []

        def load() -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                while not stop.is_set():
                    try:
                        response = client.post("/v1/decide", json={"state": 1})
                        outcomes.append((response.status_code, response.json().get("model_version", "")))
                    except httpx.HTTPError as exc:
                        outcomes.append((-1, repr(exc)))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": KEY}) as admin:
            response = admin.post("/v1/admin/refresh")
            time.sleep(0.3)
            stop.set()
            for thread in threads:
                thread.join()
            assert response.status_code == 200, response.text
            refreshed = response.json()
            assert refreshed["previous_version"] == artifact_version(tuned)
            assert admin.get("/v1/model").json()["model_version"] == refreshed["model_version"]
    failures = [o for o in outcomes if o[0] != 200]
    assert not failures, failures[:5]
    versions = [v for _, v in outcomes]
    assert set(versions) == {artifact_version(tuned), refreshed["model_version"]}
    swap = versions.index(refreshed["model_version"])
    assert set(versions[swap:]) == {refreshed["model_version"]} or len(threads) > 1  # later decisions: new
    log = read_decision_log(db)
    assert (log["model_version"] == refreshed["model_version"]).sum() > 0
    assert Path(refreshed["artifact"]).name == "tuned.refreshed.zip"


def test_monitors_never_read_past_a_row_that_is_queued_but_not_committed(tmp_path):
    from hfrl.service.log import DecisionLog

    release = threading.Event()

    class SlowLog(DecisionLog):
        def _transaction(self, rows, feedback):  # noqa: ANN001, ANN202
            release.wait(10)  # a commit that takes longer than any lag
            return super()._transaction(rows, feedback)

    log = SlowLog(tmp_path / "slow.sqlite")
    try:
        assert log.settled_until() == float("inf")
        log.submit_feedback("no-such-decision", 1.0, timestamp=100.0)
        assert log.settled_until() < 100.0  # the queued row bounds what may be read
        release.set()
        log.flush()
        assert log.settled_until() == float("inf")
    finally:
        release.set()
        log.close()


def test_a_read_after_the_log_closed_is_refused_not_a_crash(tmp_path):
    from hfrl.service import LogWriterError
    from hfrl.service.log import DecisionLog

    log = DecisionLog(tmp_path / "closed.sqlite")
    log.close()
    with pytest.raises(LogWriterError, match="closed"):
        log.monitor_rows("reward", 0.0, 1.0)
