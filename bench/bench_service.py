"""Benchmark of the decision service against a plain FastAPI + autocommit-SQLite baseline, in one run.

Both servers serve the same 10,000-state x 1,000-action policy as separate uvicorn processes on
127.0.0.1; load comes from another process:

* saturation: ``wrk`` (Debian package) with 16 connections for 10 s when installed, else this file's
  asyncio generator in closed loop;
* fixed rate, two ways: this file's open-loop asyncio generator at 1,000 requests/s over 16
  connections, latency measured from each request's *scheduled* send time (no coordinated omission,
  but a starved Python generator's own lag counts against the server); and ``wrk`` paced with a Lua
  ``delay`` per connection to about 1,000 requests/s, latency from send to response (in C).

The hfrl service runs in each of its ``VARIANTS`` (``create_app`` options), alternating, ``--rounds``
times each, so that a difference between variants is not a change in the machine's load.

Then the in-process batched rate of ``ServedModel.decide`` (and with the decision rows logged and
committed). Prints one JSON line.

Usage: ``python bench/bench_service.py [--duration 10] [--rate 1000] [--rounds 2] [--skip-baselines]``
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_STATES = 10_000
N_ACTIONS = 1_000
CONNECTIONS = 16
GRACE_S = 5.0
TARGETS = {"p99_ms_at_1000rps": 10.0, "saturation_rps": 3000.0, "inprocess_decisions_per_s": 200_000.0}
# create_app options compared in the same run (the first is what ``hfrl serve`` runs)
VARIANTS: dict[str, dict] = {"fast_path": {"fast_path": True}, "fastapi_routes": {"fast_path": False}}
# extra JSON fields sent with every /v1/decide (bench_rankings asks for top-10 slates), and the states
DECIDE_EXTRA = os.environ.get("HFRL_BENCH_DECIDE_EXTRA", "")
N_STATES = int(os.environ.get("HFRL_BENCH_N_STATES", N_STATES))


def run_hfrl_server(artifact: str, db: str, port: int, variant: str) -> None:
    """``hfrl serve`` with one of ``VARIANTS``' create_app options."""
    from hfrl.service import create_app
    from hfrl.service.server import run_app

    run_app(create_app(artifact, db, **VARIANTS[variant]), host="127.0.0.1", port=port)


# ---------------------------------------------------------------------- the calibration baseline
def baseline_app(artifact: str, db: str, journal: str):  # noqa: ANN201 - a FastAPI app, imported lazily
    """A plain FastAPI endpoint: numpy sampling per request, one autocommit SQLite insert per decision.

    ``journal`` is ``"default"`` (SQLite's rollback journal, synchronous=FULL: durable, fsyncs per
    insert) or ``"wal-normal"`` (WAL with synchronous=NORMAL: no fsync per commit, so a power loss
    can lose recent decisions; the weaker promise the issue's calibration figure may rest on).
    """
    import sqlite3
    import threading
    import uuid

    from fastapi import FastAPI
    from pydantic import BaseModel

    from hfrl.policies import TabularPolicy

    table = TabularPolicy.load(artifact).table_
    connection = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    if journal == "wal-normal":
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS decisions (decision_id TEXT PRIMARY KEY, state INTEGER, action INTEGER, "
        "propensity REAL, timestamp REAL)"
    )
    lock = threading.Lock()
    rng = np.random.default_rng(0)
    app = FastAPI()

    class Decide(BaseModel):
        state: int
        k: int = 1

    @app.post("/v1/decide")
    def decide(body: Decide) -> dict:
        row = table[body.state]
        with lock:
            action = int(rng.choice(N_ACTIONS, p=row))
            decision_id = uuid.uuid4().hex
            connection.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
                (decision_id, body.state, action, float(row[action]), time.time()),
            )
        return {"decision_id": decision_id, "actions": [action], "propensities": [float(row[action])]}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def run_baseline_server(artifact: str, db: str, port: int, journal: str) -> None:
    import uvicorn

    app = baseline_app(artifact, db, journal)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------- the load generator (own process)
def _request(state: int) -> bytes:
    body = b'{"state":%d%s}' % (state, DECIDE_EXTRA.encode())
    return (
        b"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    await reader.readexactly(int(match.group(1)) if match else 0)
    return status


async def _generate(port: int, rate: float | None, duration: float, connections: int) -> dict:
    """Open loop at ``rate`` requests/s (latency from the scheduled time); closed loop when rate is None."""
    rng = np.random.default_rng(1)
    latencies: list[float] = []
    errors = 0
    behind = 0  # scheduled requests never sent because the server fell too far behind
    start = time.perf_counter() + 0.2

    async def connection(index: int) -> None:
        nonlocal errors, behind
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        try:
            while True:
                if rate is None:
                    scheduled = time.perf_counter()
                else:
                    scheduled = start + (index + sent * connections) / rate
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if scheduled - start > duration:
                    break
                if time.perf_counter() - start > duration + GRACE_S:  # the server cannot keep up
                    behind += 1 + int((start + duration - scheduled) * rate / connections) if rate else 0
                    break
                status = await _exchange(reader, writer, _request(int(rng.integers(N_STATES))))
                finished = time.perf_counter()
                if scheduled >= start:
                    latencies.append(finished - scheduled)
                    errors += status != 200
                sent += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    elapsed = max(duration, time.perf_counter() - start)
    values = np.sort(np.asarray(latencies)) * 1000
    return {
        "requests": int(values.size),
        "rps": round(values.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "max_ms": round(float(values[-1]), 3),
        "non_200": int(errors),
        "not_sent_server_behind": int(behind),
    }


def run_load(port: int, rate: float | None, duration: float, connections: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_generate(port, rate, duration, connections))))


# ---------------------------------------------------------------------- orchestration
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def load_from_subprocess(port: int, rate: float | None, duration: float) -> dict:
    command = [sys.executable, __file__, "--load-port", str(port), "--duration", str(duration)]
    if rate is not None:
        command += ["--rate", str(rate)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"state":' .. math.random(0, LAST_STATE) .. 'EXTRA}')
end
""".replace("LAST_STATE", str(N_STATES - 1)).replace("EXTRA", DECIDE_EXTRA)


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    return value * 1000  # seconds


def paced(port: int, rate: float, duration: float, folder: Path) -> dict | None:
    """wrk with each of the 16 connections pausing between requests (Lua ``delay``) to about ``rate``/s.

    wrk times each request from its send to its response in C, so the figure is the server's, not a
    Python generator's lag; unlike the open-loop figure it does not charge a late send to the server.
    """
    if shutil.which("wrk") is None:
        return None
    pause_ms = max(0, int(round(CONNECTIONS * 1000 / rate)) - 1)
    script = folder / "paced.lua"
    script.write_text(WRK_SCRIPT + f"\ndelay = function()\n  return {pause_ms}\nend\n")
    return {"pause_ms": pause_ms, **_wrk(port, duration, script)}


def saturate(port: int, duration: float, folder: Path) -> dict:
    if shutil.which("wrk") is None:
        return {"tool": "python-closed-loop", **load_from_subprocess(port, None, duration)}
    script = folder / "decide.lua"
    script.write_text(WRK_SCRIPT)
    return _wrk(port, duration, script)


def _wrk(port: int, duration: float, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{int(duration)}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/v1/decide"],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"tool": "wrk", "rps": rps, "p50_ms": p50, "p99_ms": p99, "non_200": errors, "requests": requests}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handler_time_fractions(port: int) -> dict | None:
    """From the service's own /metrics histogram: the share of /v1/decide handled within 1, 5, 10 ms.

    It separates time spent in the server from time lost to scheduling on a shared machine.
    """
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    pattern = r'hfrl_request_duration_seconds_bucket\{route="/v1/decide",le="([^"]+)"\} (\d+)'
    buckets = dict(re.findall(pattern, text))
    if "+Inf" not in buckets:
        return None
    total = int(buckets["+Inf"])
    bounds = (("1", "0.001"), ("5", "0.005"), ("10", "0.01"))
    return {ms: round(int(buckets[le]) / total, 5) for ms, le in bounds}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_server(command: list[str], port: int, duration: float, rate: float, folder: Path) -> dict:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, process)
        load_from_subprocess(port, None, 2.0)  # warm-up
        before = loadavg()
        fixed = load_from_subprocess(port, rate, duration)
        handler = handler_time_fractions(port)
        if handler:
            fixed["server_handler_fraction_within_ms"] = handler
        result = {"fixed_rate_open_loop": fixed}
        wrk_paced = paced(port, rate, duration, folder)
        if wrk_paced is not None:
            result["fixed_rate_wrk_paced"] = wrk_paced
        cpu_before = cpu_seconds(process.pid)
        result["saturation"] = saturate(port, duration, folder)
        # the server's own CPU per request: what a variant costs, whatever else runs on the machine
        saturation = result["saturation"]
        cpu = cpu_seconds(process.pid) - cpu_before
        saturation["server_cpu_us_per_request"] = round(cpu / saturation["requests"] * 1e6)
        result["loadavg"] = [before, loadavg()]
        return result
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def inprocess(artifact: Path, folder: Path) -> dict:
    from hfrl.service import DecisionLog, ServedModel

    model = ServedModel.load(artifact)
    rng = np.random.default_rng(2)
    batch = rng.integers(N_STATES, size=100_000)
    model.decide(batch[:1000], 1, "explore", rng)
    repeats = 10
    start = time.perf_counter()
    for _ in range(repeats):
        model.decide(batch, 1, "explore", rng)
    decide_rate = repeats * batch.size / (time.perf_counter() - start)
    # the same, with every decision logged and committed (what /v1/decide/batch does besides HTTP)
    log = DecisionLog(folder / "inprocess.sqlite")
    start = time.perf_counter()
    for r in range(3):
        out = model.decide(batch, 1, "explore", rng)
        now = time.time()
        rows = [
            (f"b{r}-{i:x}", 0, s, a, p, p, now, model.version, "explore", 1, None, None)
            for i, (s, a, p) in enumerate(
                zip(batch.tolist(), out.actions[:, 0].tolist(), out.propensities[:, 0].tolist(), strict=True)
            )
        ]
        log.log_decisions(rows)
    log.flush(timeout=300)
    logged_rate = 3 * batch.size / (time.perf_counter() - start)
    log.close()
    return {
        "batch": int(batch.size),
        "decide_per_s": round(decide_rate),
        "decide_and_log_committed_per_s": round(logged_rate),
    }


def summary(runs: list[dict]) -> dict:
    """The figures the targets are about, one per round."""
    return {
        "p99_ms_open_loop": [r["fixed_rate_open_loop"]["p99_ms"] for r in runs],
        "p99_ms_wrk_paced": [r.get("fixed_rate_wrk_paced", {}).get("p99_ms") for r in runs],
        "saturation_rps": [r["saturation"]["rps"] for r in runs],
        "server_cpu_us_per_request": [r["saturation"]["server_cpu_us_per_request"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument(
        "--rounds", type=int, default=2, help="Measurements of each hfrl variant, alternating."
    )
    parser.add_argument("--skip-baselines", action="store_true", help="Measure the hfrl variants only.")
    parser.add_argument("--load-port", type=int, default=None)
    parser.add_argument("--baseline-server", nargs=4, metavar=("ARTIFACT", "DB", "PORT", "JOURNAL"))
    parser.add_argument("--hfrl-server", nargs=4, metavar=("ARTIFACT", "DB", "PORT", "VARIANT"))
    parser.add_argument(
        "--nice", type=int, default=0,
        help="Run this benchmark (servers and load generators inherit it) at this niceness; a negative "
        "value (root) shields both servers equally from other jobs on a shared machine.",
    )
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    if args.load_port is not None:
        run_load(args.load_port, args.rate, args.duration, CONNECTIONS)
        return
    if args.baseline_server:
        artifact, db, port, journal = args.baseline_server
        run_baseline_server(artifact, db, int(port), journal)
        return
    if args.hfrl_server:
        artifact, db, port, variant = args.hfrl_server
        run_hfrl_server(artifact, db, int(port), variant)
        return

    from hfrl.policies import TabularPolicy

    rate = args.rate or 1000.0
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        table = rng.dirichlet(np.full(N_ACTIONS, 0.3), size=N_STATES)
        artifact = TabularPolicy(table, {"name": "bench"}).save(folder / "policy.zip")
        del table
        served: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                port = free_port()
                db = folder / f"hfrl-{variant}-{round_}.sqlite"
                server = [
                    sys.executable, __file__, "--hfrl-server", str(artifact), str(db), str(port), variant
                ]
                served[variant].append(measure_server(server, port, args.duration, rate, folder))
        baselines = {}
        for journal in () if args.skip_baselines else ("default", "wal-normal"):
            port = free_port()
            baseline_server = [
                sys.executable, __file__, "--baseline-server", str(artifact),
                str(folder / f"baseline-{journal}.sqlite"), str(port), journal,
            ]
            baselines[journal] = measure_server(baseline_server, port, args.duration, rate, folder)
        in_process = inprocess(artifact, folder)
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401

        server_stack = "uvicorn+uvloop+httptools"
    except ImportError:
        server_stack = "uvicorn+asyncio+h11"
    shipped = summary(served[next(iter(VARIANTS))])
    result = {
        "bench": "service",
        "policy": f"{N_STATES}x{N_ACTIONS}",
        "connections": CONNECTIONS,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "server_stack": server_stack,
        "cpus": os.cpu_count(),
        "niceness": os.nice(0),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "hfrl_summary": {variant: summary(runs) for variant, runs in served.items()},
        "hfrl": served,
        "baseline_fastapi_autocommit": baselines.get("default"),
        "baseline_fastapi_autocommit_wal_normal": baselines.get("wal-normal"),
        "inprocess": in_process,
        "targets": {
            "p99_ms_at_1000rps": [
                TARGETS["p99_ms_at_1000rps"],
                {
                    "open_loop": all(p < 10.0 for p in shipped["p99_ms_open_loop"]),
                    "wrk_paced": all(p is not None and p < 10.0 for p in shipped["p99_ms_wrk_paced"]),
                },
            ],
            "saturation_rps": [
                TARGETS["saturation_rps"], all(r >= 3000.0 for r in shipped["saturation_rps"])
            ],
            "inprocess_decisions_per_s": [
                TARGETS["inprocess_decisions_per_s"], in_process["decide_per_s"] >= 200_000
            ],
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
