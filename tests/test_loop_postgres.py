"""Replicas on PostgreSQL: two real service processes share one real PostgreSQL server.

The server is a throwaway cluster (``pgcluster.PostgresCluster``). Without PostgreSQL or psycopg the
module skips, except under ``make test`` (``HFRL_REQUIRE_SYSTEM_DEPS=1``), which installs both.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from hfrl.ope import confidence_sequence
from hfrl.policies import TabularPolicy
from hfrl.service import read_decision_log
from pgcluster import PostgresCluster, postgres_bin
from test_loop import CHALLENGER, CHAMPION, CLICK_RATE, running_server

REQUIRED = bool(os.environ.get("HFRL_REQUIRE_SYSTEM_DEPS"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    missing = []
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing.append('psycopg 3 and its pool (pip install "hfrl[postgres]")')
    if postgres_bin() is None:
        missing.append("PostgreSQL (apt-get install postgresql)")
    if missing:
        if REQUIRED:
            pytest.fail(f"make test needs {' and '.join(missing)}")
        pytest.skip(f"needs {' and '.join(missing)}")
    with PostgresCluster(fsync=False) as server:  # the tests kill service processes, never the database
        yield server


_names = itertools.count()


@pytest.fixture
def database(cluster) -> str:
    return cluster.create_database(f"log_{os.getpid()}_{next(_names)}")


def stored(url: str) -> tuple[set[str], dict[str, float]]:
    """Decision ids (slot 0) and the reward of each ``reward`` feedback, as committed in PostgreSQL."""
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT decision_id FROM decisions WHERE position = 0")
        decisions = {row[0] for row in rows}
        feedback = dict(connection.execute("SELECT decision_id, reward FROM feedback WHERE event = 'reward'"))
    return decisions, feedback


def test_feedback_reaches_any_replica_and_contradictions_get_409(tmp_path, database):
    policy = TabularPolicy(CHAMPION).save(tmp_path / "policy.zip")
    with running_server(policy, database, tmp_path) as (first, _), \
            running_server(policy, database, tmp_path) as (second, _):
        decided = httpx.post(f"{first}/v1/decide/batch",
                             json={"requests": [{"state": s % 4} for s in range(50)]}).json()["decisions"]
        for i, decision in enumerate(decided):  # at once, to the other replica
            body = {"decision_id": decision["decision_id"], "reward": float(i % 2)}
            assert httpx.post(f"{second}/v1/feedback", json=body).status_code == 202
        again = {"decision_id": decided[0]["decision_id"], "reward": 0.0}
        repeat = httpx.post(f"{first}/v1/feedback", json=again)
        assert repeat.status_code == 202 and repeat.json()["status"] == "duplicate"
        contradiction = {"decision_id": decided[0]["decision_id"], "reward": 1.0}
        assert httpx.post(f"{first}/v1/feedback", json=contradiction).status_code == 409
        unknown = httpx.post(f"{second}/v1/feedback", json={"decision_id": "nope", "reward": 1.0})
        assert unknown.status_code == 404
    log = read_decision_log(database).set_index("decision_id")
    assert len(log) == 50
    for i, decision in enumerate(decided):
        assert log.loc[decision["decision_id"], "reward"] == float(i % 2)
        assert log.loc[decision["decision_id"], "action"] == decision["actions"][0]
    out = tmp_path / "log.parquet"
    export = subprocess.run([sys.executable, "-m", "hfrl.cli", "export-log", database, "--out", str(out)],
                            capture_output=True, text=True)
    assert export.returncode == 0, export.stderr
    assert "wrote 50 decisions" in export.stdout


def test_slot_feedback_reaches_any_replica_and_exports_per_slot(tmp_path, database):
    policy = TabularPolicy(CHAMPION).save(tmp_path / "policy.zip")
    with running_server(policy, database, tmp_path) as (first, _), \
            running_server(policy, database, tmp_path) as (second, _):
        decided = httpx.post(f"{first}/v1/decide", json={"state": 3, "k": 3}).json()
        decision_id = decided["decision_id"]
        click = {"decision_id": decision_id, "reward": 1.0, "position": 1}
        assert httpx.post(f"{second}/v1/feedback", json=click).json()["status"] == "accepted"
        assert httpx.post(f"{first}/v1/feedback", json=click).json()["status"] == "duplicate"
        assert httpx.post(f"{first}/v1/feedback", json={**click, "reward": 0.0}).status_code == 409
        assert httpx.post(f"{second}/v1/feedback", json={**click, "position": 5}).status_code == 404
        both = [{"decision_id": decision_id, "reward": 0.0, "position": 0},
                {"decision_id": decision_id, "reward": 1.0}]  # a slot's and the decision's, one batch
        for body in both:
            assert httpx.post(f"{second}/v1/feedback", json=body).status_code == 202
    slots = read_decision_log(database, all_positions=True)
    assert slots["reward"].tolist()[:2] == [0.0, 1.0] and np.isnan(slots["reward"].tolist()[2])
    assert slots["slot_propensity"].tolist() == pytest.approx(decided["propensities"])
    assert read_decision_log(database)["reward"].tolist() == [1.0]  # the decision's own feedback


def test_an_unreachable_database_is_named_and_the_server_exits(tmp_path, cluster):
    policy = TabularPolicy(CHAMPION).save(tmp_path / "policy.zip")
    url = f"postgresql://hfrl@127.0.0.1:{cluster.port}/no_such_database"
    result = subprocess.run([sys.executable, "-m", "hfrl.service", str(policy), "--db", url, "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot open the decision log at postgresql://hfrl@127.0.0.1" in result.stderr
    assert 'database "no_such_database" does not exist' in result.stderr


def test_both_replicas_report_the_same_experiment_from_the_shared_log(tmp_path, database):
    champion = TabularPolicy(CHAMPION).save(tmp_path / "champion.zip")
    challenger = TabularPolicy(CHALLENGER).save(tmp_path / "challenger.zip")
    extra = ("--challenger", str(challenger), "--traffic", "0.4", "--seed", "0")
    rng = np.random.default_rng(5)
    sent = 0
    with running_server(champion, database, tmp_path, *extra) as (first, _), \
            running_server(champion, database, tmp_path, *extra) as (second, _):
        for decider, receiver in ((first, second), (second, first)):  # decide on one, feed back to the other
            body = {"requests": [{"state": int(s)} for s in rng.integers(0, 4, 300)]}
            decided = httpx.post(f"{decider}/v1/decide/batch", json=body).json()["decisions"]
            clicks = rng.random(len(decided)) < [CLICK_RATE[d["state"], d["actions"][0]] for d in decided]
            bodies = [{"decision_id": d["decision_id"], "reward": float(click)}
                      for d, click in zip(decided, clicks, strict=True)]
            with httpx.Client(base_url=receiver, timeout=30) as client, ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda feedback: client.post("/v1/feedback", json=feedback).status_code,
                                      bodies))
            assert codes == [202] * len(bodies)
            sent += len(bodies)
        deadline = time.monotonic() + 30
        while True:  # each replica's monitor reads the shared log after its lag (1 s)
            reports = [httpx.get(f"{base}/v1/experiment").json() for base in (first, second)]
            if all(sum(r["feedbacks"].values()) == sent for r in reports) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert [sum(r["feedbacks"].values()) for r in reports] == [sent, sent]
    assert reports[0]["decisions"] == reports[1]["decisions"]
    assert reports[0]["experiment"] == reports[1]["experiment"]
    assert reports[0]["difference"] == pytest.approx(reports[1]["difference"])
    log = read_decision_log(database)
    assert log["policy"].value_counts().to_dict() == reports[0]["decisions"]
    expected = confidence_sequence(log, TabularPolicy(CHALLENGER), baseline=TabularPolicy(CHAMPION),
                                   reward_range=(0, 1), n_points=1).iloc[-1]
    assert reports[0]["difference"] == pytest.approx(expected["estimate"])


def _load(decider: str, receiver: str, stop: threading.Event, decisions: set[str],
          feedback: dict[str, float], seed: int) -> None:
    """Decide on one replica and send the feedback to the other until ``stop``; record what was
    acknowledged (200 for a decision, 202 for a feedback). Failures (a killed replica) are expected."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=decider, timeout=5) as deciding, \
            httpx.Client(base_url=receiver, timeout=5) as other:
        while not stop.is_set():
            try:
                response = deciding.post("/v1/decide", json={"state": int(rng.integers(0, 4))})
            except httpx.HTTPError:
                time.sleep(0.01)
                continue
            if response.status_code != 200:
                continue
            decision_id = response.json()["decision_id"]
            decisions.add(decision_id)
            reward = float(rng.integers(0, 2))
            try:
                answer = other.post("/v1/feedback", json={"decision_id": decision_id, "reward": reward})
            except httpx.HTTPError:
                continue
            if answer.status_code == 202:
                feedback[decision_id] = reward


@pytest.mark.slow
def test_kill_9_of_either_replica_under_load_loses_nothing_acknowledged(tmp_path, database):
    policy = TabularPolicy(CHAMPION).save(tmp_path / "policy.zip")
    decisions: set[str] = set()
    feedback: dict[str, float] = {}
    for victim in ("decider", "receiver"):
        before = (len(decisions), len(feedback))
        with running_server(policy, database, tmp_path) as (decider, deciding), \
                running_server(policy, database, tmp_path) as (receiver, receiving):
            stop = threading.Event()
            threads = [threading.Thread(target=_load, args=(decider, receiver, stop, decisions, feedback, i))
                       for i in range(4)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 120
            while len(feedback) - before[1] < 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            (deciding if victim == "decider" else receiving).kill()  # SIGKILL under load
            time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join()
        assert len(feedback) - before[1] >= 200  # the load ran
        rows, rewards = stored(database)
        assert decisions - rows == set(), f"{len(decisions - rows)} acknowledged decisions without their row"
        lost = {k: v for k, v in feedback.items() if rewards.get(k) != v}
        assert lost == {}, f"{len(lost)} acknowledged feedbacks lost after kill -9 of the {victim}"
