"""Scale benchmark: HF fit + SNIPS/DR evaluation + a 101-point alpha curve on DuckDB, Spark and pandas.

Generates (once, cached under bench/data/, git-ignored) ``--rows`` rows of Parquet logs with
``--states`` x ``--actions`` cells, logged by a known softmax policy (so propensities are exact),
with Bernoulli rewards and timestamps, written in chunks with pyarrow so memory stays low. Then
runs the same pipeline on each backend in its own subprocess, sampling the peak RSS of the whole
process tree (Spark's JVM included) with psutil:

1. ``Logs.open(logs, backend)``: validation, proven by the Parquet footers (no pass over the rows);
2. ``logs.statistics(hf.sums_for(logs))``: ONE grouped pass over (state, action) computing HF's
   time-decayed sums and the estimators' sums together;
3. ``HistoricalFrequency(half_life="7D").fit(logs)``, ``evaluate(logs, target, ("snips", "dr"))`` and
   ``tune_alpha(target, hf, logs, alphas=101 points)`` on those statistics (no further pass).

In the same run, DuckDB also times the plain query ``SELECT state, action, count(*), sum(reward)
... GROUP BY state, action`` over the same files: the floor no pipeline that reads every row can
beat (target: end to end at most 1.5x it). Spark runs on local[1] and local[2] (its speed-up from
one to two cores).

Prints ONE JSON line: rows/s, seconds and peak RSS per backend, DuckDB as the reference, Spark and
pandas (memory backend on the largest size pandas holds) as ratios, and the largest difference in
the estimates between backends on the shared size.

Usage::

    .venv/bin/python bench/bench_scale.py --spark-rows 20000000   # DuckDB 100M (+20M), Spark, pandas 20M
    .venv/bin/python bench/bench_scale.py --rows 5000000 --spark-rows 5000000 --pandas-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CHUNK_ROWS = 5_000_000
START = np.datetime64("2026-01-01T00:00:00", "us")
DAYS = 30


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def logging_table(n_states: int, n_actions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The logging policy (softmax of random logits) and the click-through rate of each cell."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (n_states, n_actions))
    policy = np.exp(logits - logits.max(axis=1, keepdims=True))
    policy /= policy.sum(axis=1, keepdims=True)
    ctr = rng.beta(1.0, 20.0, (n_states, n_actions))
    return policy, ctr


def dataset_dir(n_rows: int, n_states: int, n_actions: int, seed: int) -> Path:
    return DATA / f"scale_{n_states}x{n_actions}_seed{seed}" / f"rows{n_rows}"


def generate(n_rows: int, n_states: int, n_actions: int, seed: int) -> Path:
    """Write ``n_rows`` rows as Parquet parts of ``CHUNK_ROWS`` rows; reuse them when present."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset_dir(n_rows, n_states, n_actions, seed)
    done = folder / "_SUCCESS"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    policy, ctr = logging_table(n_states, n_actions, seed)
    # inverse-CDF sampling of every row's action at once: row s of the CDF is shifted by s so the
    # flattened table is increasing and one searchsorted serves all states
    cdf = np.cumsum(policy, axis=1)
    cdf[:, -1] = 1.0
    shifted = (cdf + np.arange(n_states)[:, None]).ravel()
    span = np.int64((DAYS * 86_400) * 1_000_000)
    for part, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
        size = min(CHUNK_ROWS, n_rows - start)
        rng = np.random.default_rng([seed, part])
        state = rng.integers(0, n_states, size)
        flat = np.searchsorted(shifted, state + rng.random(size), side="right")
        action = np.minimum(flat - state * n_actions, n_actions - 1)
        cell = state * n_actions + action
        reward = (rng.random(size) < ctr.ravel()[cell]).astype(np.int8)
        timestamp = START + np.sort(rng.integers(0, span, size)).astype("timedelta64[us]")
        table = pa.table(
            {
                "state": state.astype(np.int32),
                "action": action.astype(np.int32),
                "reward": reward,
                "propensity": policy.ravel()[cell],
                "timestamp": pa.array(timestamp, type=pa.timestamp("us")),
            }
        )
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=1_000_000)
    done.touch()
    return folder


# ------------------------------------------------------------------------------------------------
# the pipeline, run in a worker process per backend
# ------------------------------------------------------------------------------------------------
def target_policy(n_states: int, n_actions: int, seed: int):  # noqa: ANN201
    """A learned-looking target: softmax of noisy true click-through rates."""
    from hfrl.policies import TabularPolicy

    _, ctr = logging_table(n_states, n_actions, seed)
    noisy = ctr + np.random.default_rng(seed + 1).normal(0.0, 0.01, ctr.shape)
    return TabularPolicy.from_q_values(noisy, "softmax", temperature=0.02)


def run_pipeline(source: object, backend: str, n_states: int, n_actions: int, seed: int,
                 cores: int = 2) -> dict:
    """Validation, the one pass, HF, SNIPS + DR and the 101-point alpha curve; seconds and numbers."""
    import warnings

    from hfrl.data import Logs
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.ope import evaluate
    from hfrl.tune import LeakageWarning, tune_alpha

    if backend == "spark":  # start the JVM outside the timed section, as a cluster job would
        from hfrl.backends.spark import SparkBackend

        engine: object = SparkBackend(master=f"local[{cores}]", config={"spark.driver.memory": "3g"})
        engine.session()
    else:
        engine = backend
    target = target_policy(n_states, n_actions, seed)
    timings = {}
    started = time.perf_counter()
    logs = Logs.open(source, engine, n_states=n_states, n_actions=n_actions)
    timings["validate_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    hf = HistoricalFrequency(half_life="7D")
    logs.statistics(hf.sums_for(logs))  # the one grouped pass: HF's decayed sums and the OPE sums
    timings["statistics_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    hf.fit(logs, n_states=n_states, n_actions=n_actions)
    result = evaluate(logs, target, estimators=("snips", "dr"))
    timings["hf_evaluate_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    # a throughput benchmark: HF, the evaluation and the curve all read every row (so HF was fit on
    # the rows alpha is tuned on; a real run splits first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeakageWarning)
        tuning = tune_alpha(target, hf, logs, "snips", np.linspace(0.0, 1.0, 101), allow_leak=True)
    timings["tune_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    timings["passes"] = len(logs._statistics)
    return {
        **timings,
        "estimates": {
            "snips": float(result.loc["snips", "estimate"]),
            "snips_se": float(result.loc["snips", "std_error"]),
            "dr": float(result.loc["dr", "estimate"]),
            "dr_se": float(result.loc["dr", "std_error"]),
            "curve_at_best": float(tuning.curve["estimate"].max()),
            "hf_mass_checksum": float((hf.probabilities_ * np.arange(n_actions)).sum()),
        },
        "interval": str(result.loc["snips", "interval"]),
        "alpha": tuning.alpha,
    }


def plain_query_seconds(source: str) -> float:
    """The floor: DuckDB's plain (state, action) count and reward sum over the same files."""
    from hfrl.backends.duckdb import DuckDBBackend
    from hfrl.backends.files import scan_sql

    connection = DuckDBBackend().connection()
    started = time.perf_counter()
    connection.execute(f"SELECT state, action, count(*), sum(reward) FROM {scan_sql(source)} "
                       "GROUP BY state, action").to_arrow_table()
    return time.perf_counter() - started


def worker(args: argparse.Namespace) -> None:
    folder = dataset_dir(args.dataset_rows, args.states, args.actions, args.seed)
    files = sorted(folder.glob("part-*.parquet"))[: int(np.ceil(args.rows / CHUNK_ROWS))]
    if args.backend == "memory":
        import pyarrow.parquet as pq

        started = time.perf_counter()
        logs: object = pq.read_table(files).to_pandas()
        load_s = time.perf_counter() - started
    else:
        load_s = 0.0
        logs = str(folder / "part-*.parquet") if len(files) == len(list(folder.glob("part-*.parquet"))) \
            else _subset_glob(folder, files)
    import pyarrow.parquet as pq

    out = run_pipeline(logs, args.backend, args.states, args.actions, args.seed, args.cores)
    if args.backend == "duckdb":  # the floor, measured right after, on the same files
        out["plain_query_s"] = min(plain_query_seconds(str(logs)) for _ in range(2))
    out["load_s"] = load_s
    out["total_s"] += load_s  # end to end: pandas must read the rows first
    out["rows"] = sum(pq.read_metadata(f).num_rows for f in files)
    print(json.dumps(out))


def _subset_glob(folder: Path, files: list[Path]) -> str:
    """A glob matching exactly the first ``len(files)`` parts (they are numbered from 0)."""
    count = len(files)
    if count <= 10:
        return str(folder / f"part-0000[0-{count - 1}].parquet")
    raise ValueError("subset sizes use at most 10 parts; pass a smaller --pandas-rows / --spark-rows")


# ------------------------------------------------------------------------------------------------
# the driver: one subprocess per backend, peak RSS of its process tree
# ------------------------------------------------------------------------------------------------
def measure(backend: str, rows: int, args: argparse.Namespace, cores: int = 2) -> dict:
    import psutil

    command = [
        sys.executable, __file__, "--worker", "--backend", backend, "--rows", str(rows),
        "--dataset-rows", str(args.rows), "--states", str(args.states), "--actions", str(args.actions),
        "--seed", str(args.seed), "--cores", str(cores),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{backend} worker failed:\n{stderr[-4000:]}")
    out = json.loads(stdout.strip().splitlines()[-1])
    rows = out["rows"]  # whole parts: the requested size rounded up to CHUNK_ROWS
    out.update(
        backend=backend,
        peak_rss_gb=round(peak / 2**30, 3),
        wall_s=round(wall, 2),
        rows_per_s=round(rows / out["total_s"]),
    )
    return out


def growth(args: argparse.Namespace) -> None:
    """How DuckDB's peak RSS and time grow with rows (at states x actions) and with the table size."""
    rows_sizes = [args.rows // 10, args.rows * 3 // 10, args.rows]
    generate(args.rows, args.states, args.actions, args.seed)
    by_rows = []
    for rows in rows_sizes:
        out = measure("duckdb", rows, args)
        by_rows.append({k: out[k] for k in ("rows", "peak_rss_gb", "total_s", "rows_per_s")})
        print(f"growth rows {rows}: {by_rows[-1]}", file=sys.stderr)
    by_table = []
    fixed_rows = args.rows // 10
    for n_states, n_actions in ((100, 100), (args.states, args.actions), (2 * args.states, 2 * args.actions)):
        shape = {"rows": fixed_rows, "states": n_states, "actions": n_actions}
        shaped = argparse.Namespace(**{**vars(args), **shape})
        generate(fixed_rows, n_states, n_actions, args.seed)
        out = measure("duckdb", fixed_rows, shaped)
        by_table.append({"states": n_states, "actions": n_actions,
                         **{k: out[k] for k in ("rows", "peak_rss_gb", "total_s", "rows_per_s")}})
        print(f"growth table {n_states}x{n_actions}: {by_table[-1]}", file=sys.stderr)
    print(json.dumps({"bench": "scale_growth", "backend": "duckdb", "by_rows": by_rows, "by_table": by_table,
                      "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--spark-rows", type=int, default=None, help="default: --rows")
    parser.add_argument("--pandas-rows", type=int, default=20_000_000)
    parser.add_argument("--states", type=int, default=1_000)
    parser.add_argument("--actions", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="duckdb,spark,memory")
    parser.add_argument(
        "--growth", action="store_true",
        help="instead: DuckDB peak RSS and time at 3 row counts and 3 table shapes (docs/scale.md)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--dataset-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    if args.growth:
        growth(args)
        return
    started = time.perf_counter()
    generate(args.rows, args.states, args.actions, args.seed)
    generate_s = time.perf_counter() - started
    spark_rows = args.spark_rows or args.rows
    runs = []  # (label, backend, rows): DuckDB at the full size and at each peer's size
    for backend in args.backends.split(","):
        if backend == "duckdb":
            runs.append(("duckdb", "duckdb", args.rows))
        elif backend == "spark":
            runs.append(("spark", "spark", spark_rows))
            runs.append(("spark_1core", "spark", spark_rows))
        elif backend == "memory":
            runs.append(("pandas", "memory", args.pandas_rows))
    if "duckdb" in args.backends:
        for extra in sorted({rows for label, _, rows in runs if label != "duckdb" and rows != args.rows}):
            runs.append((f"duckdb_{extra // 1_000_000}m", "duckdb", extra))
    results = {}
    for label, backend, rows in runs:
        results[label] = measure(backend, rows, args, cores=1 if label.endswith("_1core") else 2)
        print(f"{label}: {results[label]}", file=sys.stderr)

    summary: dict = {
        "bench": "scale",
        "states": args.states,
        "actions": args.actions,
        "generate_s": round(generate_s, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for label, out in results.items():
        summary[label] = {
            key: (round(value, 3) if isinstance(value, float) else value)
            for key, value in out.items()
            if key in ("rows", "rows_per_s", "total_s", "validate_s", "statistics_s", "hf_evaluate_s",
                       "tune_s", "load_s", "peak_rss_gb", "wall_s", "alpha", "passes", "plain_query_s",
                       "interval")
        }
        summary[label]["snips"] = round(out["estimates"]["snips"], 6)
        summary[label]["snips_se"] = round(out["estimates"]["snips_se"], 6)
    duck = results.get("duckdb")
    if duck is not None:
        summary["duckdb_vs_plain_query"] = round(duck["total_s"] / duck["plain_query_s"], 3)
        summary["targets"] = {
            "duckdb_rows": duck["rows"],
            "duckdb_peak_rss_lt_4gb": duck["peak_rss_gb"] < 4.0,
            "duckdb_rows_per_s_ge_20m": duck["rows_per_s"] >= 20_000_000,
            "duckdb_within_1_5x_plain_query": duck["total_s"] <= 1.5 * duck["plain_query_s"],
        }
        diffs = []
        for label in ("spark", "pandas"):
            if label not in results:
                continue
            peer = results[label]
            same_label = "duckdb" if peer["rows"] == duck["rows"] else f"duckdb_{peer['rows'] // 1_000_000}m"
            same = results.get(same_label)
            if same is None:
                continue
            # throughput ratio at the same number of rows, and agreement of every reported number
            ratio = peer["rows_per_s"] / same["rows_per_s"]
            summary[f"{label}_vs_duckdb_throughput_same_rows"] = round(ratio, 3)
            diffs += [abs(peer["estimates"][k] - same["estimates"][k]) for k in same["estimates"]]
            if label == "spark" and "spark_1core" in results:
                summary["spark_speedup_1_to_2_cores"] = round(
                    results["spark_1core"]["total_s"] / peer["total_s"], 3)
        if diffs:
            summary["max_abs_estimate_diff_vs_duckdb"] = max(diffs)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
