"""Benchmark: HistoricalFrequency through DuckDB vs a plain pandas groupby, on Parquet logs.

Generates (and caches under ``bench/data/``, git-ignored) Parquet logs of 1,000 states x 500
actions with 10M and 50M rows, then, for each size, measures in separate subprocesses (so each
peak RSS is its own):

- ``hfrl_duckdb``: ``HistoricalFrequency().fit(path)``, the library path (validation from Parquet
  statistics, aggregation, smoothing, fingerprint);
- ``duckdb_group_by``: the obvious query ``SELECT state, action, count(*), sum(reward) ... GROUP BY
  state, action`` on a fresh default DuckDB connection, for reference;
- ``pandas``: ``pd.read_parquet`` of the three needed columns, ``groupby([state, action])``, and
  the same smoothing (``share_table``), the baseline.

Each worker warms up once (page cache, imports) then times ``--repeats`` runs and reports the
median wall time and the median CPU time (user + system, all threads: on a shared machine the CPU
time shows the work done even when other processes take the cores). Prints ONE JSON line.

    .venv/bin/python bench/bench_frequencies.py              # 10M and 50M rows
    .venv/bin/python bench/bench_frequencies.py --rows 2000000 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_STATES, N_ACTIONS = 1_000, 500
DATA_VERSION = 1
HERE = Path(__file__).resolve().parent


def generate(path: Path, n_rows: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """Logs with a skewed logging policy and Bernoulli clicks; written in row groups of 1M rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(N_ACTIONS, 0.3))
    cumulative = np.cumsum(popularity)
    ctr = rng.beta(2.0, 30.0, size=(N_STATES, N_ACTIONS))
    schema = pa.schema([("state", pa.int16()), ("action", pa.int16()), ("reward", pa.float32()),
                        ("propensity", pa.float32()), ("timestamp", pa.timestamp("s", tz="UTC"))])
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        written = 0
        while written < n_rows:
            m = min(chunk, n_rows - written)
            state = rng.integers(0, N_STATES, m)
            action = np.minimum(np.searchsorted(cumulative, rng.random(m)), N_ACTIONS - 1)
            reward = (rng.random(m) < ctr[state, action]).astype(np.float32)
            seconds = start + (written + np.arange(m)) * (90 * 86400) // n_rows
            table = pa.table({
                "state": state.astype(np.int16), "action": action.astype(np.int16), "reward": reward,
                "propensity": popularity[action].astype(np.float32),
                "timestamp": pa.array(seconds, type=pa.timestamp("s", tz="UTC")),
            }, schema=schema)
            writer.write_table(table, row_group_size=1_000_000)
            written += m
    tmp.rename(path)


def data_path(n_rows: int, data_dir: Path) -> Path:
    path = data_dir / f"logs_{N_STATES}x{N_ACTIONS}_{n_rows}_v{DATA_VERSION}.parquet"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        generate(path, n_rows)
    return path


# ------------------------------------------------------------------ workers (one per subprocess)
def fit_hfrl(path: str) -> np.ndarray:
    from hfrl.frequencies import HistoricalFrequency

    hf = HistoricalFrequency(backend="duckdb").fit(path, n_states=N_STATES, n_actions=N_ACTIONS)
    return hf.probabilities_


def fit_duckdb_group_by(path: str) -> np.ndarray:
    import duckdb

    connection = duckdb.connect()
    frame = connection.execute(
        f"SELECT state, action, count(*) AS n, sum(reward) AS events FROM read_parquet('{path}') "
        "GROUP BY state, action"
    ).df()
    connection.close()
    counts = np.zeros((N_STATES, N_ACTIONS))
    counts[frame.state.to_numpy(), frame.action.to_numpy()] = frame.events.to_numpy()
    return counts


def fit_pandas(path: str) -> np.ndarray:
    import pandas as pd

    from hfrl.frequencies import share_table

    logs = pd.read_parquet(path, columns=["state", "action", "reward"])
    grouped = logs.groupby(["state", "action"], sort=False)["reward"].agg(["sum", "count"])
    counts = np.zeros((N_STATES, N_ACTIONS))
    states = grouped.index.get_level_values(0).to_numpy()
    actions = grouped.index.get_level_values(1).to_numpy()
    counts[states, actions] = grouped["sum"].to_numpy()
    seen = np.zeros(N_STATES, dtype=bool)
    seen[states] = True
    return share_table(counts, 1.0, seen=seen)[0]


WORKERS = {"hfrl_duckdb": fit_hfrl, "duckdb_group_by": fit_duckdb_group_by, "pandas": fit_pandas}


def run_worker(mode: str, path: str, repeats: int, out: str | None) -> None:
    fit = WORKERS[mode]
    result = fit(path)  # warm-up: imports, page cache
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        result = fit(path)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(_cpu_seconds() - cpu_start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if out:
        np.save(out, result)
    print(json.dumps({"seconds": statistics.median(seconds), "all_seconds": seconds,
                      "cpu_seconds": statistics.median(cpu_seconds), "peak_rss_mb": peak_kib / 1024}))


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (DuckDB's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(mode: str, path: Path, repeats: int, out: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--path", str(path), "--repeats", str(repeats)]
    if out is not None:
        command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 50_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pandas-repeats", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--path")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.path, args.repeats, args.out)
        return

    load_before = os.getloadavg()
    figures: dict[str, dict] = {}
    for n_rows in args.rows:
        path = data_path(n_rows, args.data_dir)
        tables = {mode: args.data_dir / f"result_{mode}.npy" for mode in ("hfrl_duckdb", "pandas")}
        hfrl = measure("hfrl_duckdb", path, args.repeats, tables["hfrl_duckdb"])
        plain = measure("duckdb_group_by", path, args.repeats)
        pandas = measure("pandas", path, args.pandas_repeats, tables["pandas"])
        difference = float(np.abs(np.load(tables["hfrl_duckdb"]) - np.load(tables["pandas"])).max())
        for table in tables.values():
            table.unlink()
        key = f"{n_rows // 1_000_000}M" if n_rows % 1_000_000 == 0 else str(n_rows)
        figures[key] = {
            "rows": n_rows,
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "hfrl_duckdb_rows_per_s": round(n_rows / hfrl["seconds"]),
            "duckdb_group_by_rows_per_s": round(n_rows / plain["seconds"]),
            "pandas_rows_per_s": round(n_rows / pandas["seconds"]),
            "speedup_vs_pandas": round(pandas["seconds"] / hfrl["seconds"], 2),
            "speedup_vs_group_by": round(plain["seconds"] / hfrl["seconds"], 2),
            "hfrl_duckdb_seconds": round(hfrl["seconds"], 3),
            "duckdb_group_by_seconds": round(plain["seconds"], 3),
            "pandas_seconds": round(pandas["seconds"], 3),
            "cpu_seconds": {"hfrl_duckdb": round(hfrl["cpu_seconds"], 3),
                            "duckdb_group_by": round(plain["cpu_seconds"], 3),
                            "pandas": round(pandas["cpu_seconds"], 3)},
            "peak_rss_mb": {"hfrl_duckdb": round(hfrl["peak_rss_mb"]), "duckdb_group_by":
                            round(plain["peak_rss_mb"]), "pandas": round(pandas["peak_rss_mb"])},
            "max_abs_difference_hfrl_vs_pandas": difference,
        }
    largest = figures[max(figures, key=lambda k: figures[k]["rows"])]
    targets = {
        "rows_per_s_ge_50M": largest["hfrl_duckdb_rows_per_s"] >= 50_000_000,
        "speedup_vs_pandas_ge_3": largest["speedup_vs_pandas"] >= 3,
        "peak_rss_lt_1GB": largest["peak_rss_mb"]["hfrl_duckdb"] < 1024,
        "beats_plain_group_by": largest["speedup_vs_group_by"] > 1,
    }
    print(json.dumps({
        "benchmark": "bench_frequencies",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "states": N_STATES, "actions": N_ACTIONS, "repeats": args.repeats,
        "sizes": figures, "targets_at_largest": targets,
    }))


if __name__ == "__main__":
    main()
