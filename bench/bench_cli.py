"""Benchmark of the command line: `hfrl --help` start-up and the end-to-end `hfrl demo`.

Prints one JSON line. Targets (issue 6): `hfrl demo` under 120 s on 2 cores; `hfrl --help` fast,
compared in the same run with the bare interpreter start-up (`python -c pass`) and with importing
the heavy libraries the CLI must not import up front (pandas, duckdb, gymnasium, plotly,
uvicorn, fastapi, pyspark).

Usage: .venv/bin/python bench/bench_cli.py [--seed 0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HFRL = [sys.executable, "-m", "hfrl.cli"]


def wall(command: list[str], repeats: int) -> float:
    """Median wall time of ``command`` over ``repeats`` runs (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    python_s = wall([sys.executable, "-c", "pass"], args.repeats)
    help_s = wall([*HFRL, "--help"], args.repeats)
    heavy = "import pandas, duckdb, gymnasium, plotly.graph_objects, uvicorn, fastapi, pyspark.sql"
    heavy_s = wall([sys.executable, "-c", heavy], args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo-out"
        start = time.perf_counter()
        subprocess.run([*HFRL, "demo", "--out", str(out), "--seed", str(args.seed)], check=True,
                       capture_output=True)
        demo_s = time.perf_counter() - start
        metrics = json.loads((out / "metrics.json").read_text())
        report_mb = (out / "report.html").stat().st_size / 1e6

    policies = metrics["policies"]
    covered = sum(p["ci_low"] <= p["true_value"] <= p["ci_high"] for p in policies.values())
    result = {
        "bench": "cli",
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python_startup_s": round(python_s, 3),
        "hfrl_help_s": round(help_s, 3),
        "heavy_imports_s": round(heavy_s, 3),
        "help_vs_heavy_imports": round(heavy_s / help_s, 1),
        "demo_s": round(demo_s, 2),
        "demo_target_s": 120,
        "demo_met": demo_s < 120,
        "demo_alpha": metrics["alpha"],
        "demo_rows": metrics["data"]["rows"],
        "demo_ci_cover_truth": f"{covered}/{len(policies)}",
        "demo_values": {k: [round(v["estimate"], 4), round(v["ci_low"], 4), round(v["ci_high"], 4),
                            round(v["true_value"], 4)] for k, v in policies.items()},
        "demo_verdict": metrics["verdict"]["verdict"],
        "report_mb": round(report_mb, 2),
    }
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
