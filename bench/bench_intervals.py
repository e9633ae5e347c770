"""Coverage benchmark: do hfrl's intervals cover the true value as often as they claim?

Designs (Monte Carlo, ``--repetitions`` each, 500 by default), each with an exactly known value:

(a) uniform logging over 20 actions in 5 states, a stochastic target, Bernoulli rewards (CTR 5-40%),
    n in {500, 2000};
(b) rare rewards: CTR 0.5% on the target's actions, a deterministic target whose action the logging
    policy takes with probability 0.4, n in {2000, 5000};
(c) heavy weights: logging propensities down to 0.01 on the actions the target prefers, n = 5000;
(d) a split with no rewards: CTR 0.05%, n = 1000 (most splits have no click at all); every interval
    must have positive width.

For IPS, SNIPS and DR it reports the coverage of the default interval (``interval="auto"``) with
the share of misses on each side, and of the guaranteed ``"bernstein"`` interval with its width
relative to the default; ``compare``'s verdicts under a true null (a target whose value equals the
logging policy's); and continuous monitoring under an A/A null: the share of 500 streams that ever
exclude 0 when ``confidence_sequence`` is checked after every batch of 100 rows, against a
fixed-horizon normal interval checked after every batch.

Targets (issue "Intervals a deployment can rest on"): default coverage in [0.93, 0.97] with each tail
<= 3.5% in every design; Bernstein >= 0.95 everywhere; no zero-width interval in (d); compare says
"ship" and "worse" each <= 2.5% (+ Monte Carlo error) under the null.

Usage::

    .venv/bin/python bench/bench_intervals.py               # prints ONE JSON line
    .venv/bin/python bench/bench_intervals.py --repetitions 100
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pandas as pd

ESTIMATORS = ("ips", "snips", "dr")


def design(name: str) -> dict:
    """States' distribution, true CTR per (state, action), logging and target tables."""
    rng = np.random.default_rng({"a": 1, "b": 2, "c": 3, "d": 4}[name])
    n_states = 5
    if name == "a":
        n_actions = 20
        ctr = rng.uniform(0.05, 0.40, (n_states, n_actions))
        logging = np.full((n_states, n_actions), 1.0 / n_actions)
        target = rng.dirichlet(np.ones(n_actions), n_states)
    elif name == "b":
        n_actions = 10
        ctr = np.full((n_states, n_actions), 0.002)
        best = rng.integers(0, n_actions, n_states)
        ctr[np.arange(n_states), best] = 0.005
        target = np.zeros((n_states, n_actions))
        target[np.arange(n_states), best] = 1.0
        logging = np.full((n_states, n_actions), 0.6 / (n_actions - 1))
        logging[np.arange(n_states), best] = 0.4
    elif name == "c":
        n_actions = 10
        ctr = rng.uniform(0.05, 0.30, (n_states, n_actions))
        logging = np.full((n_states, n_actions), 0.0)
        logging[:, :3] = 0.01
        logging[:, 3:] = 0.97 / (n_actions - 3)
        target = np.full((n_states, n_actions), 0.1 / (n_actions - 3))
        target[:, :3] = 0.3
    else:
        n_actions = 10
        ctr = np.full((n_states, n_actions), 0.0005)
        logging = np.full((n_states, n_actions), 1.0 / n_actions)
        target = rng.dirichlet(np.ones(n_actions), n_states)
    p_state = np.full(n_states, 1.0 / n_states)
    return {"p_state": p_state, "ctr": ctr, "logging": logging, "target": target}


def truth(d: dict, policy: np.ndarray) -> float:
    return float(d["p_state"] @ (policy * d["ctr"]).sum(axis=1))


def collect(d: dict, n: int, rng: np.random.Generator) -> pd.DataFrame:
    state = rng.choice(len(d["p_state"]), n, p=d["p_state"])
    cdf = d["logging"].cumsum(axis=1)
    action = np.minimum((rng.random(n)[:, None] > cdf[state]).sum(axis=1), cdf.shape[1] - 1)
    reward = (rng.random(n) < d["ctr"][state, action]).astype(np.int64)
    return pd.DataFrame({"state": state, "action": action, "reward": reward,
                         "propensity": d["logging"][state, action]})


def coverage(name: str, n: int, repetitions: int, seed: int) -> dict:
    from hfrl.ope import evaluate
    from hfrl.policies import TabularPolicy

    d = design(name)
    target = TabularPolicy(d["target"])
    value = truth(d, d["target"])
    rng = np.random.default_rng([seed, ord(name), n])
    counts = {e: {"default": [0, 0, 0], "bernstein": [0, 0, 0]} for e in ESTIMATORS}
    widths = {e: {"default": [], "bernstein": []} for e in ESTIMATORS}
    methods = {e: set() for e in ESTIMATORS}
    zero_width, no_click = 0, 0
    for _ in range(repetitions):
        logs = collect(d, n, rng)
        no_click += int(logs["reward"].sum() == 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = {"default": evaluate(logs, target, ESTIMATORS),
                       "bernstein": evaluate(logs, target, ESTIMATORS, interval="bernstein")}
        for kind, frame in results.items():
            for e in ESTIMATORS:
                low, high = frame.loc[e, "ci_low"], frame.loc[e, "ci_high"]
                side = 0 if low <= value <= high else (1 if value < low else 2)
                counts[e][kind][side] += 1
                widths[e][kind].append(high - low)
                if kind == "default":
                    methods[e].add(frame.loc[e, "interval"])
                    zero_width += int(high - low <= 0)
    out: dict = {"design": name, "n": n, "truth": round(value, 6), "no_click_share": no_click / repetitions,
                 "zero_width": zero_width}
    for e in ESTIMATORS:
        for kind in ("default", "bernstein"):
            covered, below, above = (c / repetitions for c in counts[e][kind])
            out[f"{e}_{kind}"] = {"coverage": round(covered, 3), "truth_below": round(below, 3),
                                  "truth_above": round(above, 3)}
        out[f"{e}_default"]["method"] = sorted(methods[e])
        out[f"{e}_bernstein_width_ratio"] = round(
            float(np.median(widths[e]["bernstein"]) / max(np.median(widths[e]["default"]), 1e-300)), 2)
    return out


def compare_null(repetitions: int, seed: int, n: int = 1000) -> dict:
    """Verdicts of ``compare`` for a candidate whose true value equals the logging policy's."""
    from hfrl.ope import compare
    from hfrl.policies import TabularPolicy

    rng = np.random.default_rng([seed, 99])
    n_states, n_actions = 5, 10
    ctr = np.full((n_states, n_actions), 0.2)  # every action is worth the same: any policy ties
    d = {"p_state": np.full(n_states, 0.2), "ctr": ctr,
         "logging": np.full((n_states, n_actions), 0.1)}
    candidate = TabularPolicy(rng.dirichlet(np.ones(n_actions), n_states))
    verdicts: dict[str, int] = {}
    for _ in range(repetitions):
        logs = collect(d, n, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verdict = compare(candidate, logs, min_ess=10).verdict
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return {f"{k}_share": round(v / repetitions, 4) for k, v in sorted(verdicts.items())} | {"n": n}


def monitoring(streams: int, seed: int, n: int = 20_000, batch: int = 100) -> dict:
    """A/A: candidate and logging equally good; share of streams that ever exclude 0."""
    from statistics import NormalDist

    from hfrl.ope import confidence_sequence
    from hfrl.policies import TabularPolicy

    rng = np.random.default_rng([seed, 7])
    candidate = TabularPolicy(np.array([[0.8, 0.2]]))
    z = NormalDist().inv_cdf(0.975)
    sequence_alarms = fixed_alarms = 0
    for _ in range(streams):
        action = rng.integers(0, 2, n)
        reward = (rng.random(n) < 0.3).astype(np.int64)
        logs = pd.DataFrame({"state": 0, "action": action, "reward": reward, "propensity": 0.5})
        seq = confidence_sequence(logs, candidate, baseline="logging", step=batch)
        sequence_alarms += int(((seq["ci_low"] > 0) | (seq["ci_high"] < 0)).any())
        terms = candidate.table_[0, action] / 0.5 * reward - reward
        ends = np.arange(batch, n + 1, batch)
        sums, squares = np.cumsum(terms)[ends - 1], np.cumsum(terms**2)[ends - 1]
        mean = sums / ends
        se = np.sqrt(np.maximum(squares / ends - mean**2, 0) / ends)
        fixed_alarms += int((np.abs(mean) > z * se).any())
    return {"streams": streams, "rows": n, "batch": batch,
            "sequence_ever_alarms": round(sequence_alarms / streams, 4),
            "fixed_horizon_ever_alarms": round(fixed_alarms / streams, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    cells = [("a", 500), ("a", 2000), ("b", 2000), ("b", 5000), ("c", 5000), ("d", 1000)]
    designs = [coverage(name, n, args.repetitions, args.seed) for name, n in cells]
    null = compare_null(args.repetitions, args.seed)
    watch = monitoring(args.repetitions, args.seed)
    default_ok = all(
        0.93 <= d[f"{e}_default"]["coverage"] <= 0.97 and d[f"{e}_default"]["truth_below"] <= 0.035
        and d[f"{e}_default"]["truth_above"] <= 0.035 for d in designs for e in ESTIMATORS)
    margin = 2 * np.sqrt(0.025 * 0.975 / args.repetitions)
    print(json.dumps({
        "bench": "intervals", "repetitions": args.repetitions, "designs": designs, "compare_null": null,
        "monitoring": watch,
        "targets": {
            "default_coverage_in_093_097_tails_le_0035": default_ok,
            "bernstein_ge_095": all(d[f"{e}_bernstein"]["coverage"] >= 0.95
                                    for d in designs for e in ESTIMATORS),
            "no_zero_width": all(d["zero_width"] == 0 for d in designs),
            "compare_ship_le_0025": null.get("ship_share", 0.0) <= 0.025 + margin,
            "compare_worse_le_0025": null.get("worse_share", 0.0) <= 0.025 + margin,
            "sequence_alarms_le_005": watch["sequence_ever_alarms"] <= 0.05,
        },
        "seconds": round(time.perf_counter() - started, 1), "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }, default=lambda value: value.item()))


if __name__ == "__main__":
    main()
