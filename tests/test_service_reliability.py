"""Reliability of the decision service as a real uvicorn process on 127.0.0.1.

* kill -9 in the middle of a feedback stream, restart: every feedback that got a 2xx is in the database;
* hot reload under concurrent load: no request fails, each answers with the old or the new model;
* schemathesis against the published OpenAPI schema: no 5xx, responses conform to the schema.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from hfrl.policies import TabularPolicy
from hfrl.service import artifact_version, read_decision_log

KEY = "reliability-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    artifact: Path, db: Path, tmp_path: Path, *extra: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``python -m hfrl.service`` on a free port, wait for /healthz, always stop it."""
    port = free_port()
    key_file = tmp_path / "api.key"
    key_file.write_text(KEY + "\n")
    command = [
        sys.executable, "-m", "hfrl.service", str(artifact), "--db", str(db), "--port", str(port),
        "--api-key-file", str(key_file), *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "HFRL_API_KEY"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"server exited with {process.returncode}: {output}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not become healthy in 30 s")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def artifacts(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    first = rng.random((50, 20))
    second = rng.random((50, 20))
    a = TabularPolicy(first / first.sum(axis=1, keepdims=True)).save(tmp_path / "a.zip")
    b = TabularPolicy(second / second.sum(axis=1, keepdims=True)).save(tmp_path / "b.zip")
    return a, b


def test_kill_9_during_a_feedback_stream_loses_no_acknowledged_feedback(artifacts, tmp_path):
    db = tmp_path / "log.sqlite"
    acknowledged: list[str] = []
    with running_server(artifacts[0], db, tmp_path) as (base, process):
        with httpx.Client(base_url=base, timeout=10) as client:
            decisions = [client.post("/v1/decide", json={"state": i % 50}) for i in range(300)]
            ids = [d.json()["decision_id"] for d in decisions]
        errors: list[str] = []
        lock = threading.Lock()

        def stream(chunk: list[str]) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                for decision_id in chunk:
                    try:
                        body = {"decision_id": decision_id, "reward": 1.0}
                        response = client.post("/v1/feedback", json=body)
                    except httpx.TransportError:
                        return  # the server died under us: this feedback was never acknowledged
                    if response.status_code == 202:
                        with lock:
                            acknowledged.append(decision_id)
                    else:
                        errors.append(f"{response.status_code} {response.text}")

        threads = [threading.Thread(target=stream, args=(ids[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 60 and any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.002)  # kill in the middle of the stream
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
        assert 60 <= len(acknowledged) < 300
    # restart on the same database: everything acknowledged is there
    with running_server(artifacts[0], db, tmp_path) as (base, _):
        connection = sqlite3.connect(db)
        stored = {row[0] for row in connection.execute("SELECT decision_id FROM feedback")}
        connection.close()
        missing = set(acknowledged) - stored
        assert not missing, f"{len(missing)} acknowledged feedback rows lost"
        with httpx.Client(base_url=base, timeout=10) as client:
            again = client.post("/v1/feedback", json={"decision_id": acknowledged[0], "reward": 1.0})
            assert again.status_code == 202 and again.json()["status"] == "duplicate"
            changed = client.post("/v1/feedback", json={"decision_id": acknowledged[0], "reward": 0.5})
            assert changed.status_code == 409  # the reward stored before the crash stands
            assert "1.0" in changed.json()["detail"] and "0.5" in changed.json()["detail"]
            coerced = client.post("/v1/feedback", json={"decision_id": acknowledged[0], "reward": "1.0"})
            assert coerced.status_code == 422 and coerced.json()["detail"][0]["loc"] == ["body", "reward"]
    frame = read_decision_log(db)
    assert frame.loc[frame["decision_id"].isin(acknowledged), "reward"].notna().all()


def test_reload_under_concurrent_load_loses_no_request(artifacts, tmp_path):
    first, second = artifacts
    versions = {artifact_version(first), artifact_version(second)}
    with running_server(first, tmp_path / "log.sqlite", tmp_path) as (base, _):
        stop = threading.Event()
        outcomes: list[tuple[int, str]] = []
        lock = threading.Lock()

        def load() -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        response = client.post("/v1/decide", json={"state": i % 50, "k": 2})
                        ok = response.status_code == 200
                        version = response.json().get("model_version", "") if ok else ""
                        with lock:
                            outcomes.append((response.status_code, version))
                    except httpx.HTTPError as exc:
                        with lock:
                            outcomes.append((-1, repr(exc)))

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}) as admin:
            for target in (second, first, second, first, second):
                response = admin.post("/v1/admin/reload", json={"artifact": str(target)})
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == artifact_version(target)
                time.sleep(0.15)
            stop.set()
            for thread in threads:
                thread.join()
            assert admin.get("/v1/model").json()["model_version"] == artifact_version(second)
        failures = [o for o in outcomes if o[0] != 200]
        assert not failures, failures[:5]
        assert len(outcomes) > 20
        seen = {version for _, version in outcomes}
        assert seen == versions  # both models answered, and nothing else


def test_schemathesis_finds_no_server_errors(artifacts, tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    with running_server(artifacts[0], tmp_path / "log.sqlite", tmp_path) as (base, _):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        checked = 0
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case) -> None:
                case.call_and_validate(
                    base_url=base,
                    checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                )

            run()
            checked += 1
        assert checked >= 7
