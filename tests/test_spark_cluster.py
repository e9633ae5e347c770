"""The Spark backend on a real standalone cluster gives the memory backend's numbers (to 1e-9).

A session fixture starts, from the installed pyspark (``bin/spark-class``), a standalone master
and two workers as separate JVMs (one core each, free ports, logs and work directories in a
temporary folder) and waits until both workers are registered. The job below is then submitted
with ``spark-submit --master spark://...`` (this file is the driver script) and also run in the
test process with the memory backend: group sums over Parquet and CSV, a time-decayed weighted HF
fit, every estimator with the Poisson bootstrap, and ``tune_alpha``. The driver reports which
executors ran the tasks; the workers report which executors they launched. The executors get a
Python interpreter that does not exist, so the job passing shows that they need no Python (hfrl
sends them Spark SQL only). Stopping the cluster must leave no process behind.

The cluster tests take 1.5 to 2.5 minutes on two busy cores (JVM start-up dominates).
They skip without Java or pyspark, except under ``make test`` (``HFRL_REQUIRE_SYSTEM_DEPS=1``),
where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hfrl.backends import get_backend
from hfrl.backends.spark import MASTER_ENV
from hfrl.data import Logs
from hfrl.frequencies import HistoricalFrequency
from hfrl.ope import ESTIMATORS, evaluate
from hfrl.policies import TabularPolicy
from hfrl.tune import tune_alpha

RTOL = 1e-9
N_STATES, N_ACTIONS = 6, 4
N_WORKERS = 2
SUMS = {
    "n": "1",
    "ips": "reward / propensity",
    "clipped": "least(reward / propensity, 4.5) + greatest(0.1 * weight, 0.2)",
    "decayed": "weight * exp(-0.5 * (1749945600.0 - epoch(timestamp)) / 86400.0)",
}
NUMERIC = ["estimate", "std_error", "ci_low", "ci_high", "ess", "max_weight", "boot_std_error"]
# Short-lived JVMs on two shared cores: the client compiler only and the serial collector start
# them about three times faster (the job's numbers do not depend on the JIT).
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# The job's Spark settings on the test cluster: executors that fit the workers' 1 GB, the job
# starting only once both workers' executors are up (so that both get tasks), few shuffle
# partitions for small data, and the driver on the loopback interface.
SUBMIT_CONF = {
    "spark.executor.memory": "512m",
    "spark.cores.max": str(N_WORKERS),
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.driver.extraJavaOptions": FAST_JVM,
    "spark.executor.extraJavaOptions": FAST_JVM,
}


# -- the job: the same code runs on the cluster (driver below) and in the test process -----------
def make_logs(n_rows: int, seed: int) -> pd.DataFrame:
    """Logs of a known softmax logging policy with 0/1 rewards, weights and timestamps."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.ones(N_ACTIONS), N_STATES)
    state = rng.integers(0, N_STATES, n_rows)
    action = (rng.random(n_rows)[:, None] > np.cumsum(table[state], axis=1)).sum(axis=1)
    action = np.minimum(action, N_ACTIONS - 1)
    ctr = rng.uniform(0.05, 0.6, (N_STATES, N_ACTIONS))
    start = np.datetime64("2025-06-01T00:00:00", "us")
    offsets = np.sort(rng.integers(0, 14 * 86_400 * 1_000_000, n_rows)).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "state": state,
            "action": action,
            "reward": (rng.random(n_rows) < ctr[state, action]).astype(np.float64),
            "propensity": table[state, action],
            "timestamp": pd.Series(start + offsets, dtype="datetime64[us]"),
            "weight": rng.uniform(0.5, 2.0, n_rows),
        }
    )


def write_job_data(folder: Path) -> Path:
    """Train/validation logs as two Parquet parts each, the validation logs as CSV, a policy."""
    for name, seed, n_rows in (("train", 1, 1500), ("valid", 2, 1200)):
        frame = make_logs(n_rows, seed)
        (folder / name).mkdir(parents=True)
        frame.iloc[: n_rows // 2].to_parquet(folder / name / "part-0.parquet", index=False)
        frame.iloc[n_rows // 2 :].to_parquet(folder / name / "part-1.parquet", index=False)
        if name == "valid":
            frame.to_csv(folder / "valid.csv", index=False)
    q_values = np.random.default_rng(7).normal(size=(N_STATES, N_ACTIONS))
    TabularPolicy.from_q_values(q_values, "softmax", temperature=0.5).save(folder / "policy.npz")
    return folder


def run_job(folder: Path, backend: str) -> dict[str, list[float]]:
    """The pipeline of docs/scale.md on the logs in ``folder``, its numbers by name."""
    train, valid = str(folder / "train" / "*.parquet"), str(folder / "valid" / "*.parquet")
    numbers: dict[str, list[float]] = {}
    engine = get_backend(backend)
    for label, logs in (("parquet", valid), ("csv", str(folder / "valid.csv"))):
        sums = engine.group_sums(logs, ["state", "action"], SUMS)
        for column in sums.columns:
            numbers[f"group_sums/{label}/{column}"] = sums[column].astype(float).tolist()
    hf = HistoricalFrequency(count="rows", half_life="3D", weight_column="weight", backend=backend)
    hf.fit(train, n_states=N_STATES, n_actions=N_ACTIONS)
    numbers["hf/probabilities"] = hf.probabilities_.ravel().tolist()
    numbers["hf/counts"] = hf.counts_.ravel().tolist()
    policy = TabularPolicy.load(folder / "policy.npz")
    validated = Logs.open(valid, backend=backend)  # one pass shared by evaluate and tune_alpha
    result = evaluate(validated, policy, ESTIMATORS, n_bootstrap=20, random_state=3)
    for column in NUMERIC:
        numbers[f"evaluate/{column}"] = result[column].astype(float).tolist()
    tuning = tune_alpha(policy, hf, validated, "snips", criterion="lower_bound")
    numbers["tune_alpha/alpha"] = [float(tuning.alpha)]
    numbers["tune_alpha/curve"] = tuning.curve["estimate"].astype(float).tolist()
    return numbers


def executor_report() -> dict[str, Any]:
    """The running application: its id, master and every executor with its completed tasks."""
    from pyspark.sql import SparkSession

    context = SparkSession.getActiveSession().sparkContext
    summaries = context._jsc.sc().statusStore().executorList(False)  # live and removed executors
    executors = []
    for i in range(summaries.size()):
        summary = summaries.apply(i)
        executors.append({"id": summary.id(), "host_port": summary.hostPort(),
                          "tasks": summary.completedTasks()})
    return {"app_id": context.applicationId, "master": context.master, "executors": executors}


def driver_main(folder: str, out: str) -> None:
    """Entry point under spark-submit: run the job with ``backend="spark"`` and write a report."""
    numbers = run_job(Path(folder), "spark")
    report = {"numbers": numbers, **executor_report()}
    Path(out).write_text(json.dumps(report))
    get_backend("spark").session().stop()


# -- the cluster -----------------------------------------------------------------------------
def require(condition: bool, reason: str) -> None:
    """Skip without a system dependency, or fail under ``make test`` (which installs them)."""
    if condition:
        return
    if os.environ.get("HFRL_REQUIRE_SYSTEM_DEPS"):
        pytest.fail(f"{reason} (make test installs it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local web UI
        return json.load(response)


class StandaloneCluster:
    """A Spark standalone master and workers, each a JVM in its own process group.

    Parameters
    ----------
    spark_home : Path
        The pyspark installation (it ships ``bin/spark-class`` and ``bin/spark-submit``).
    folder : Path
        Where the processes' logs, the workers' work directories and scratch space go.
    """

    def __init__(self, spark_home: Path, folder: Path) -> None:
        self.spark_home = spark_home
        self.folder = folder
        (folder / "conf").mkdir()  # an empty configuration: no spark-defaults.conf from elsewhere
        (folder / "scratch").mkdir()
        self.env = {
            **os.environ,
            "SPARK_HOME": str(spark_home),
            "SPARK_CONF_DIR": str(folder / "conf"),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(folder / "scratch"),
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",  # no fixed port 6066
            "SPARK_DAEMON_JAVA_OPTS": FAST_JVM,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        self.env.pop(MASTER_ENV, None)  # the job's master is the one spark-submit names
        self.processes: dict[str, subprocess.Popen] = {}
        self.groups: set[int] = set()
        self.url = ""
        self.ui = ""
        self.startup_seconds = float("nan")

    def _start(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        command = [str(self.spark_home / "bin" / "spark-class"), *args]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                   start_new_session=True)  # its own group: the worker's executors too
        log.close()
        self.processes[name] = process
        self.groups.add(process.pid)

    def start(self, n_workers: int, timeout: float = 180.0) -> None:
        """Start the master and ``n_workers`` workers; return once all are registered."""
        port, ui_port = free_port(), free_port()
        self.url, self.ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(port), "--webui-port", str(ui_port))
        for i in range(n_workers):
            work = self.folder / f"worker-{i}"
            work.mkdir()
            self._start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--port", str(free_port()), "--webui-port", str(free_port()),
                        "--cores", "1", "--memory", "1g", "--work-dir", str(work), self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited while starting:\n{self.log_tail(dead[0])}")
            try:
                alive = [w for w in self.status()["workers"] if w["state"] == "ALIVE"]
            except OSError:  # the web UI is not up yet
                alive = []
            if len(alive) == n_workers:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{n_workers} workers did not register in {timeout:.0f} s:\n"
                           f"{self.log_tail('master')}")

    def status(self) -> dict[str, Any]:
        """The master's state (workers, applications) from its web UI's JSON."""
        return fetch_json(self.ui + "/json/")

    def log_tail(self, name: str, n_lines: int = 30) -> str:
        return "\n".join((self.folder / f"{name}.log").read_text(errors="replace").splitlines()[-n_lines:])

    def submit(self, script: Path, *args: str, conf: dict[str, str], env: dict[str, str],
               timeout: float = 420.0) -> subprocess.CompletedProcess:
        """``spark-submit --master <this cluster>`` in client mode: the driver runs here."""
        command = [str(self.spark_home / "bin" / "spark-submit"), "--master", self.url]
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        command += [str(script), *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**self.env, **env}, start_new_session=True)
        self.groups.add(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        return subprocess.CompletedProcess(command, process.returncode, stdout.decode(), stderr.decode())

    def remaining(self) -> list[str]:
        """Live processes (not zombies) in the groups this cluster started, from ``ps``."""
        listing = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat=,args="], capture_output=True,
                                 text=True, check=True).stdout
        rows = [line.split(None, 3) for line in listing.splitlines()]
        return [" ".join(row)[:200] for row in rows
                if len(row) == 4 and int(row[1]) in self.groups and not row[2].startswith("Z")]

    def stop(self, timeout: float = 60.0) -> list[str]:
        """Stop every process (workers first); return those that needed SIGKILL (none, normally)."""
        for name in sorted(self.processes, reverse=True):  # worker-1, worker-0, master
            if self.processes[name].poll() is None:
                os.killpg(self.processes[name].pid, signal.SIGTERM)  # the executors are in the group
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        while self.remaining() and time.monotonic() < deadline:
            time.sleep(0.2)  # executors exit after their worker
        killed = self.remaining()
        for group in {int(line.split()[1]) for line in killed}:
            os.killpg(group, signal.SIGKILL)
        for process in self.processes.values():
            process.wait()
        return killed


@pytest.fixture(scope="session")
def spark_home() -> Path:
    require(shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME")),
            "a standalone Spark cluster needs a Java runtime")
    try:
        import pyspark
    except ImportError:
        require(False, "a standalone Spark cluster needs pyspark (the spark extra)")
    home = Path(pyspark.__file__).parent
    assert (home / "bin" / "spark-class").is_file(), f"no bin/spark-class in {home}"
    return home


@pytest.fixture(scope="session")
def cluster(spark_home, tmp_path_factory):
    started = time.monotonic()
    cluster = StandaloneCluster(spark_home, tmp_path_factory.mktemp("spark_cluster"))
    try:
        cluster.start(N_WORKERS)
        cluster.startup_seconds = time.monotonic() - started
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def job_folder(tmp_path_factory) -> Path:
    return write_job_data(tmp_path_factory.mktemp("spark_cluster_job"))


@pytest.fixture(scope="session")
def submitted(cluster, job_folder) -> dict[str, Any]:
    """The job submitted to the cluster: the driver's report (numbers, executors)."""
    out = job_folder / "report.json"
    started = time.monotonic()
    # The executors run Spark SQL only: no Python process may start there, so they get none.
    no_python = {"PYSPARK_PYTHON": str(job_folder / "no-python-on-the-executors")}
    run = cluster.submit(Path(__file__), str(job_folder), str(out), conf=SUBMIT_CONF, env=no_python)
    assert run.returncode == 0, f"spark-submit failed ({run.returncode}):\n{run.stderr[-5000:]}"
    report = json.loads(out.read_text())
    report["seconds"] = time.monotonic() - started
    return report


# -- tests -----------------------------------------------------------------------------------
def test_the_cluster_has_two_workers_with_one_core_each(cluster):
    status = cluster.status()
    assert status["status"] == "ALIVE"
    assert status["url"] == cluster.url
    assert [w["cores"] for w in status["workers"]] == [1] * N_WORKERS
    assert len({w["id"] for w in status["workers"]}) == N_WORKERS


def test_the_cluster_job_gives_the_memory_numbers(submitted, job_folder):
    expected = run_job(job_folder, "memory")
    assert sum(expected["group_sums/parquet/n"]) == 1200
    assert len(expected["evaluate/estimate"]) == len(ESTIMATORS)
    assert len(set(expected["tune_alpha/curve"])) > 1  # the blend changes the value
    assert submitted["master"].startswith("spark://")
    assert sorted(submitted["numbers"]) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(submitted["numbers"][name], values, rtol=RTOL, atol=0, err_msg=name)


def test_the_tasks_ran_on_the_workers_executors(submitted, cluster):
    assert submitted["master"] == cluster.url
    executors = {e["id"]: e for e in submitted["executors"]}
    driver = executors.pop("driver")
    assert driver["tasks"] == 0  # in client mode the driver only plans and collects
    assert len(executors) == N_WORKERS
    assert all(e["tasks"] > 0 for e in executors.values()), executors
    # each worker launched one of those executors for this application
    launched = []
    for worker in cluster.status()["workers"]:
        state = fetch_json(worker["webuiaddress"] + "/json/")
        launched += [str(e["id"]) for e in state["finishedexecutors"] + state["executors"]
                     if e["appid"] == submitted["app_id"]]
    assert sorted(launched) == sorted(executors)
    application = [a for a in cluster.status()["completedapps"] if a["id"] == submitted["app_id"]]
    assert len(application) == 1 and application[0]["state"] == "FINISHED"


def test_stopping_the_cluster_leaves_no_process(cluster):
    assert len(cluster.remaining()) == 1 + N_WORKERS  # the master and workers, nothing else left over
    assert cluster.stop() == []  # SIGTERM sufficed
    assert cluster.remaining() == []
    assert all(process.poll() is not None for process in cluster.processes.values())


if __name__ == "__main__":  # the driver script under spark-submit
    driver_main(*sys.argv[1:])
