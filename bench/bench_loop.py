"""Benchmark of the closed loop: experiment monitoring, replicas on PostgreSQL, refresh under load.

(a) A/A: the two arms have the same value (different policies, equal click rates), ``--streams``
    simulated feedback streams of ``--horizon`` feedbacks each, fed to the service's own
    ``ExperimentMonitor`` in batches of ``--batch``: the share of streams whose confidence sequence
    ever says promote or rollback (target <= 5%), against a fixed-horizon two-sample z-test of the
    arms' click rates checked after every batch (peeking: expected far above 5%).
(b) The challenger's value 10% above the champion's (relative): the median number of feedbacks
    until the monitor says promote, over ``--power-streams`` streams (and the share that got there
    within ``--power-horizon``).
(c) Decisions over HTTP (``python -m hfrl.service``, 10,000 states x 100 actions): one process on
    SQLite against two replicas on one PostgreSQL server (a throwaway cluster, fsync on), same
    machine: saturation requests/s (wrk, 16 connections per process) and p99 at ``--rate``
    requests/s (open loop, half the rate to each replica).
(d) Refresh: HF recomputed from ``--refresh-rows`` logged rows (Parquet) plus the decision log,
    pi' rebuilt and hot-swapped via ``POST /v1/admin/refresh`` while 4 clients send decisions: the
    refresh time, the time to the swap, and the failed requests during it (target 0).

Prints one JSON line. Usage: ``python bench/bench_loop.py [--streams 500] [--refresh-rows 10000000]
[--duration 5] [--parts abcd]``. Needs PostgreSQL (``apt-get install postgresql``) and psycopg for (c).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import bench_service  # noqa: E402  (free_port, wait_healthy, load generators)
from hfrl.blending import blend  # noqa: E402
from hfrl.policies import TabularPolicy  # noqa: E402
from hfrl.service.experiment import Experiment  # noqa: E402
from hfrl.service.model import ServedModel  # noqa: E402
from hfrl.service.monitor import ExperimentMonitor, MonitorSettings  # noqa: E402

TRAFFIC = 0.5
CHAMPION = np.array([0.8, 0.2])  # one state, two actions
CHALLENGER = np.array([0.2, 0.8])
BASE_RATE = 0.3
TARGETS = {"aa_false_conclusions_share": 0.05, "refresh_failed_requests": 0}
N_STATES, N_ACTIONS = bench_service.N_STATES, 100
KEY = "bench-loop-key"


# ---------------------------------------------------------------------- (a) and (b): monitoring
def _stream(rng: np.random.Generator, n: int, rates: np.ndarray) -> dict[str, np.ndarray]:
    """``n`` feedbacks of an experiment: arm, action from the arm's policy, mixture propensity, click."""
    challenger = rng.random(n) < TRAFFIC
    action = (rng.random(n) < np.where(challenger, CHALLENGER[1], CHAMPION[1])).astype(np.int64)
    mixture = (1 - TRAFFIC) * CHAMPION + TRAFFIC * CHALLENGER
    return {
        "policy": np.where(challenger, "challenger", "champion").astype(object),
        "propensity": mixture[action],
        "champion_probability": CHAMPION[action],
        "challenger_probability": CHALLENGER[action],
        "reward": (rng.random(n) < rates[action]).astype(np.float64),
    }


def _monitor() -> ExperimentMonitor:
    champion = ServedModel(TabularPolicy(CHAMPION[None, :]), version="champion")
    challenger = ServedModel(TabularPolicy(CHALLENGER[None, :]), version="challenger")
    return ExperimentMonitor(Experiment(champion, challenger, TRAFFIC), MonitorSettings(level=0.95))


def _first_conclusion(rows: dict[str, np.ndarray], batch: int) -> tuple[str, int]:
    """Feed the rows batch by batch; the monitor's first non-running state and the feedbacks then."""
    monitor = _monitor()
    n = rows["reward"].size
    for end in range(batch, n + batch, batch):
        monitor.add({name: values[end - batch:end] for name, values in rows.items()})
        if monitor.state != "running":
            return monitor.state, min(end, n)
    return "running", n


def _z_test_ever_rejects(rows: dict[str, np.ndarray], batch: int) -> bool:
    """Two-sample z-test of the arms' click rates at the 5% level, checked after every batch."""
    ends = np.arange(batch, rows["reward"].size + 1, batch) - 1
    challenger = rows["policy"] == "challenger"
    counts, clicks = [], []
    for arm in (challenger, ~challenger):
        counts.append(np.cumsum(arm)[ends])
        clicks.append(np.cumsum(rows["reward"] * arm)[ends])
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = [c / n for c, n in zip(clicks, counts, strict=True)]
        pooled = (clicks[0] + clicks[1]) / (counts[0] + counts[1])
        z = (rates[0] - rates[1]) / np.sqrt(pooled * (1 - pooled) * (1 / counts[0] + 1 / counts[1]))
    return bool(np.any(np.abs(np.nan_to_num(z)) > 1.959964))


def monitoring(streams: int, horizon: int, batch: int, power_streams: int, power_horizon: int,
               seed: int) -> dict:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    equal = np.array([BASE_RATE, BASE_RATE])
    cs_ever = z_ever = 0
    for _ in range(streams):
        rows = _stream(rng, horizon, equal)
        cs_ever += _first_conclusion(rows, batch)[0] != "running"
        z_ever += _z_test_ever_rejects(rows, batch)
    aa_seconds = time.perf_counter() - start
    # the challenger's value 10% above the champion's: CHALLENGER . rates = 1.1 CHAMPION . rates
    rate_1 = BASE_RATE * (1.1 * CHAMPION[0] - CHALLENGER[0]) / (CHALLENGER[1] - 1.1 * CHAMPION[1])
    rates = np.array([BASE_RATE, rate_1])
    values = (CHAMPION @ rates, CHALLENGER @ rates)
    to_promote = []
    for _ in range(power_streams):
        state, n = _first_conclusion(_stream(rng, power_horizon, rates), max(batch, 500))
        to_promote.append(n if state == "promote" else np.inf)
    reached = np.isfinite(to_promote)
    return {
        "aa": {"streams": streams, "horizon": horizon, "batch": batch, "traffic": TRAFFIC,
               "click_rate": BASE_RATE, "confidence_sequence_ever_concludes": cs_ever / streams,
               "z_test_ever_rejects": z_ever / streams, "seconds": round(aa_seconds, 1)},
        "plus_10pct": {"streams": power_streams, "horizon": power_horizon,
                       "values": [round(float(v), 4) for v in values],
                       "median_feedbacks_to_promote": float(np.median(to_promote)),
                       "share_promoted": float(reached.mean())},
    }


# ---------------------------------------------------------------------- (c) replicas on PostgreSQL
def _server(artifact: Path, db: str, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HFRL_API_KEY": KEY}
    command = [sys.executable, "-m", "hfrl.service", str(artifact), "--db", db, "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _decide_statuses(ports: list[int]) -> dict[str, int]:
    """``/v1/decide`` answers by HTTP status, summed over the servers (their own /metrics)."""
    import re

    import httpx

    counts: dict[str, int] = {}
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for status, n in re.findall(r'hfrl_requests_total\{route="/v1/decide",status="(\d+)"\} (\d+)', text):
            counts[status] = counts.get(status, 0) + int(n)
    return counts


def _measure(ports: list[int], rate: float, duration: float, folder: Path) -> dict:
    """p99 at ``rate`` split evenly over the ports, then saturation with wrk on every port at once."""
    with ThreadPoolExecutor(len(ports)) as pool:
        for port in ports:  # warm-up
            bench_service.load_from_subprocess(port, None, 1.0)
        fixed = list(pool.map(lambda p: bench_service.load_from_subprocess(p, rate / len(ports), duration),
                              ports))
        saturated = list(pool.map(lambda p: bench_service.saturate(p, duration, folder), ports))
    return {
        "p99_ms_at_rate": max(run["p99_ms"] for run in fixed),
        "rps_at_rate": round(sum(run["rps"] for run in fixed), 1),
        "non_200_at_rate": sum(run["non_200"] for run in fixed),
        "saturation_rps": round(sum(run["rps"] for run in saturated), 1),
        "saturation_p99_ms": max(run["p99_ms"] for run in saturated),
        "saturation_non_200": sum(run["non_200"] for run in saturated),
        "decide_statuses_seen_by_servers": _decide_statuses(ports),
    }


def replicas(artifact: Path, rate: float, duration: float, folder: Path) -> dict:
    from pgcluster import PostgresCluster

    result: dict = {"rate": rate, "duration_s": duration, "tool": "wrk" if bench_service.shutil.which("wrk")
                    else "python-closed-loop"}
    port = bench_service.free_port()
    servers = [_server(artifact, str(folder / "single.sqlite"), port)]
    try:
        bench_service.wait_healthy(port, servers[0], timeout=120)
        result["sqlite_one_process"] = _measure([port], rate, duration, folder)
    finally:
        _stop(servers)
    with PostgresCluster(max_connections=50, fsync=True) as cluster:
        url = cluster.create_database("bench")
        ports = [bench_service.free_port(), bench_service.free_port()]
        servers = [_server(artifact, url, p) for p in ports]
        try:
            for p, process in zip(ports, servers, strict=True):
                bench_service.wait_healthy(p, process, timeout=120)
            result["postgresql_two_replicas"] = _measure(ports, rate, duration, folder)
        finally:
            _stop(servers)
    return result


# ---------------------------------------------------------------------- (d) refresh under load
def _blended(folder: Path, rng: np.random.Generator) -> tuple[Path, Path, Path]:
    pi = TabularPolicy(rng.dirichlet(np.ones(N_ACTIONS), N_STATES), {"name": "pi"})
    hf = TabularPolicy(np.full((N_STATES, N_ACTIONS), 1 / N_ACTIONS),
                       {"name": "hf", "kind": "share", "prior_strength": 1.0, "half_life": "7D"})
    tuned = blend(pi, hf, 0.3)
    tuned.metadata.update(alpha=0.3, method="linear", estimator="snips")
    return pi.save(folder / "pi.zip"), hf.save(folder / "hf.zip"), tuned.save(folder / "tuned.zip")


def _logs(path: Path, n: int, rng: np.random.Generator) -> Path:
    pd.DataFrame({
        "state": rng.integers(0, N_STATES, n), "action": rng.integers(0, N_ACTIONS, n),
        "reward": (rng.random(n) < 0.1).astype(np.float64), "propensity": 1.0 / N_ACTIONS,
        "timestamp": 1.7e9 + np.arange(n, dtype=np.float64) * 0.01,
    }).to_parquet(path)
    return path


def refresh_under_load(rows: int, folder: Path, seed: int) -> dict:
    import httpx

    rng = np.random.default_rng(seed)
    pi, hf, tuned = _blended(folder, rng)
    logs = _logs(folder / "logs.parquet", rows, rng)
    port = bench_service.free_port()
    server = _server(tuned, str(folder / "refresh.sqlite"), port, "--refresh-logs", str(logs),
                     "--pi", str(pi), "--hf", str(hf))
    outcomes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                try:
                    outcomes.append(client.post("/v1/decide", json={"state": 1}).status_code)
                except httpx.HTTPError:
                    outcomes.append(-1)

    try:
        bench_service.wait_healthy(port, server, timeout=120)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        start = time.perf_counter()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/admin/refresh", headers={"X-API-Key": KEY},
                              timeout=3600)
        to_swap = time.perf_counter() - start
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        _stop([server])
    body = response.json()
    return {"rows": rows, "logged_rows_read": body.get("rows"), "refresh_seconds": body.get("seconds"),
            "seconds_to_swap": round(to_swap, 2), "status": response.status_code,
            "requests_during": len(outcomes), "failed_requests": sum(code != 200 for code in outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--horizon", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--power-streams", type=int, default=100)
    parser.add_argument("--power-horizon", type=int, default=400_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--refresh-rows", type=int, default=10_000_000)
    parser.add_argument("--parts", default="abcd", help="Which of (a)+(b) 'ab', (c) 'c', (d) 'd' to run.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result: dict = {"bench": "loop", "loadavg_before": bench_service.loadavg(), "targets": TARGETS}
    if "a" in args.parts or "b" in args.parts:
        result.update(monitoring(args.streams, args.horizon, args.batch, args.power_streams,
                                 args.power_horizon, args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "c" in args.parts:
            artifact = TabularPolicy(np.random.default_rng(args.seed).dirichlet(
                np.ones(N_ACTIONS), N_STATES)).save(folder / "policy.zip")
            result["replicas"] = replicas(artifact, args.rate, args.duration, folder)
        if "d" in args.parts:
            result["refresh"] = refresh_under_load(args.refresh_rows, folder, args.seed)
    result["loadavg_after"] = bench_service.loadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
