"""Benchmark of hfrl.ope and hfrl.tune; prints ONE JSON line (progress goes to stderr).

1. Scale: 10M logged rows, 1,000 states x 500 actions. All six estimators (and the standard five
   without Switch-DR) without bootstrap, then with a 200-resample Poisson bootstrap; the 101-point
   alpha curve computed the fast way and by brute force (blend + evaluate per alpha); peak RSS.
   Peer in the same run: a dense per-row implementation in the style of Open Bandit Pipeline (the
   target as an (n_rows, n_actions) matrix) on 1M rows x 80 actions, against hfrl on the same rows.
2. Coverage: 200 seeded repetitions of a synthetic contextual bandit with exact truth
   sum_s p(s) sum_a pi(a|s) q(s, a): share of 95% normal intervals that contain it.
3. Open Bandit Dataset (../shared/data/obd): the Bernoulli TS policy's value estimated from the
   uniform-random logs (state = position - 1) vs the BTS logs' on-policy mean click; the BTS action
   distribution per position computed (a) as the empirical action frequency of the BTS logs and
   (b) by Monte Carlo from the Beta priors in prior_bts.yaml (top 3 items by sampled value), and
   for reference (c) BTS's own logged propensities per (position, item), normalised.

Run: .venv/bin/python bench/bench_ope.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from hfrl.ope import SupportWarning, evaluate
from hfrl.policies import TabularPolicy
from hfrl.tune import alpha_curve

OBD = Path(os.environ.get("HFRL_OBD_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "obd"))
ALL = ("ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
FIVE = ("ips", "clipped_ips", "snips", "dm", "dr")


def log(message: str) -> None:
    print(f"[bench_ope {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class PeakRSS:
    """Samples this process's RSS every 5 ms while active; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def timed(function, repeat: int = 1):  # noqa: ANN001, ANN201
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def bandit(n_states: int, n_actions: int, seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (n_states, n_actions))
    logging = np.exp(logits)
    logging /= logging.sum(axis=1, keepdims=True)
    logging = 0.5 * logging + 0.5 / n_actions  # every action logged with probability >= 0.5/A
    q = rng.beta(1.0, 20.0, (n_states, n_actions))  # click-like rates, mean ~5%
    target = 0.5 * rng.dirichlet(np.ones(n_actions), n_states) + 0.5 * logging  # weights <= 1 + A
    return logging, q, target


def collect(logging: np.ndarray, q: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    states = rng.integers(0, logging.shape[0], n)
    actions, propensity = TabularPolicy(logging).sample(states, random_state=rng)
    reward = (rng.random(n) < q[states, actions]).astype(np.float64)
    return pd.DataFrame({"state": states, "action": actions, "reward": reward, "propensity": propensity})


def dense_baseline(logs: pd.DataFrame, target: np.ndarray, q_hat: np.ndarray) -> dict[str, float]:
    """OBP-style: action_dist as an (n_rows, n_actions) matrix, estimated rewards likewise."""
    states = logs["state"].to_numpy()
    actions = logs["action"].to_numpy()
    reward = logs["reward"].to_numpy()
    pscore = logs["propensity"].to_numpy()
    action_dist = target[states]  # (n, A)
    rewards_hat = q_hat[states]  # (n, A)
    rows = np.arange(len(logs))
    w = action_dist[rows, actions] / pscore
    out = {"ips": float(np.mean(w * reward)), "snips": float(np.sum(w * reward) / np.sum(w))}
    dm_terms = np.average(rewards_hat, weights=action_dist, axis=1)
    out["dm"] = float(dm_terms.mean())
    out["dr"] = float(np.mean(dm_terms + w * (reward - rewards_hat[rows, actions])))
    out["clipped_ips"] = float(np.mean(np.minimum(w, 10.0) * reward))
    return out


def scale_section(n_rows: int, n_states: int, n_actions: int, brute_alphas: int) -> dict:
    logging, q, target = bandit(n_states, n_actions, seed=0)
    log(f"generating {n_rows:,} rows ({n_states} states x {n_actions} actions)")
    logs = collect(logging, q, n_rows, seed=1)
    policy = TabularPolicy(target)
    rss_data = psutil.Process().memory_info().rss
    truth = float((target * q).sum(axis=1).mean())  # states are uniform

    log("evaluate: all six estimators")
    with PeakRSS() as peak_all:
        t_all, result = timed(lambda: evaluate(logs, policy, ALL), repeat=3)
    t_five, _ = timed(lambda: evaluate(logs, policy, FIVE), repeat=3)
    log(f"evaluate six {t_all:.2f}s, five {t_five:.2f}s; bootstrap 200")
    with PeakRSS() as peak_boot:
        t_boot, boot = timed(lambda: evaluate(logs, policy, ALL, n_bootstrap=200, random_state=0), repeat=2)

    hf = TabularPolicy(logging)  # a stand-in HF: the action frequency the logs came from
    alphas = np.linspace(0.0, 1.0, 101)
    t_one, _ = timed(lambda: evaluate(logs, policy, ("snips",)), repeat=3)
    t_fast, fast = timed(lambda: alpha_curve(policy, hf, logs, "snips", alphas), repeat=3)
    log(f"alpha curve fast {t_fast:.2f}s; brute force over {brute_alphas} alphas")
    brute_grid = alphas if brute_alphas >= 101 else alphas[:: max(1, 100 // max(brute_alphas - 1, 1))]
    t_brute, brute = timed(lambda: alpha_curve(policy, hf, logs, "snips", brute_grid, fast=False))
    matched = fast.set_index("alpha").loc[brute["alpha"]].reset_index()
    curve_error = float(np.abs(matched[["estimate", "std_error"]].to_numpy()
                               - brute[["estimate", "std_error"]].to_numpy()).max())
    t_brute_101 = t_brute * 101 / len(brute_grid)

    # peer: dense per-row (OBP-style) on 1M rows x 80 actions, hfrl on the same rows
    log("peer: dense per-row estimators on 1M x 80")
    peer_logging, peer_q, peer_target = bandit(200, 80, seed=5)
    peer_logs = collect(peer_logging, peer_q, 1_000_000, seed=6)
    q_hat = np.full_like(peer_q, peer_logs["reward"].mean())
    base_rss = psutil.Process().memory_info().rss
    with PeakRSS() as peak_dense:
        t_dense, dense = timed(lambda: dense_baseline(peer_logs, peer_target, q_hat))
    with PeakRSS() as peak_hfrl_small:
        t_hfrl_small, small = timed(lambda: evaluate(peer_logs, TabularPolicy(peer_target), FIVE), repeat=2)
    agree = float(max(abs(small.loc[k, "estimate"] - dense[k]) for k in ("ips", "snips", "clipped_ips")))

    return {
        "n_rows": n_rows, "n_states": n_states, "n_actions": n_actions,
        "evaluate_six_s": round(t_all, 3), "evaluate_five_s": round(t_five, 3),
        "rss_after_data_gib": round(rss_data / 2**30, 3),
        "peak_rss_evaluate_gib": round(peak_all.peak / 2**30, 3),
        "peak_rss_bootstrap_gib": round(peak_boot.peak / 2**30, 3),
        "bootstrap_200_s": round(t_boot, 3), "bootstrap_over_evaluation": round(t_boot / t_all, 2),
        "one_evaluation_snips_s": round(t_one, 3),
        "alpha_curve_fast_s": round(t_fast, 3), "alpha_curve_over_evaluation": round(t_fast / t_one, 2),
        "alpha_curve_brute_points": len(brute_grid), "alpha_curve_brute_s": round(t_brute, 3),
        "alpha_curve_brute_101_s_extrapolated": round(t_brute_101, 1),
        "alpha_curve_max_abs_diff_fast_vs_brute": curve_error,
        "truth": truth,
        "support_violation_share": float(result["support_violation_share"].iloc[0]),
        "estimates": {k: round(float(result.loc[k, "estimate"]), 6) for k in ALL},
        "std_errors": {k: float(f"{result.loc[k, 'std_error']:.3g}") for k in ALL},
        "relative_errors": {k: round(abs(float(result.loc[k, "estimate"]) - truth) / truth, 5) for k in ALL},
        "boot_std_error_over_std_error": {
            k: round(float(boot.loc[k, "boot_std_error"] / boot.loc[k, "std_error"]), 3) for k in ALL
        },
        "peer_dense_1m_x_80": {
            "dense_per_row_s": round(t_dense, 3),
            "dense_peak_rss_delta_gib": round((peak_dense.peak - base_rss) / 2**30, 3),
            "hfrl_s": round(t_hfrl_small, 3),
            "hfrl_peak_rss_delta_gib": round(max(peak_hfrl_small.peak - base_rss, 0) / 2**30, 3),
            "max_abs_diff_ips_snips_clipped": agree,
        },
    }


def coverage_section(repetitions: int) -> dict:
    logging, q, target = bandit(50, 10, seed=11)
    policy = TabularPolicy(target)
    truth = float((target * q).sum(axis=1).mean())
    names = ("ips", "snips", "dm", "dr")
    hits = dict.fromkeys(names, 0)
    start = time.perf_counter()
    for rep in range(repetitions):
        logs = collect(logging, q, 20_000, seed=1000 + rep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SupportWarning)
            result = evaluate(logs, policy, names)
        for name in names:
            hits[name] += int(result.loc[name, "ci_low"] <= truth <= result.loc[name, "ci_high"])
    return {
        "repetitions": repetitions, "rows_each": 20_000, "states": 50, "actions": 10, "level": 0.95,
        "coverage": {k: round(v / repetitions, 3) for k, v in hits.items()},
        "seconds": round(time.perf_counter() - start, 2),
    }


def obd_section(monte_carlo: int) -> dict:
    import yaml

    def read(policy: str) -> pd.DataFrame:
        frame = pd.read_csv(OBD / policy / "all" / "all.csv",
                            usecols=["item_id", "position", "click", "propensity_score"])
        return pd.DataFrame({"state": frame["position"] - 1, "action": frame["item_id"],
                             "reward": frame["click"].astype(float), "propensity": frame["propensity_score"]})

    random_logs, bts_logs = read("random"), read("bts")
    n_items, n_positions = 80, 3
    truth = float(bts_logs["reward"].mean())
    truth_se = float(bts_logs["reward"].std(ddof=1) / np.sqrt(len(bts_logs)))

    # (a) empirical action frequency of the BTS logs per position (an HF table)
    counts = np.zeros((n_positions, n_items))
    np.add.at(counts, (bts_logs["state"], bts_logs["action"]), 1.0)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    # (b) Monte Carlo from the Beta priors: position k shows the k-th item by sampled value
    prior = yaml.safe_load((OBD / "prior_bts.yaml").read_text())["all"]
    a, b = np.asarray(prior["alpha"], float), np.asarray(prior["beta"], float)
    rng = np.random.default_rng(0)
    monte = np.zeros((n_positions, n_items))
    for _ in range(monte_carlo // 20_000):
        draws = rng.beta(a, b, size=(20_000, n_items))
        top = np.argsort(-draws, axis=1)[:, :n_positions]
        for k in range(n_positions):
            monte[k] += np.bincount(top[:, k], minlength=n_items)
    monte /= monte.sum(axis=1, keepdims=True)

    # (c) for reference: BTS's logged propensities per (position, item), normalised per position
    logged = np.zeros((n_positions, n_items))
    mean_propensity = bts_logs.groupby(["state", "action"])["propensity"].mean()
    index = mean_propensity.index
    logged[index.get_level_values(0), index.get_level_values(1)] = mean_propensity.to_numpy()
    logged /= logged.sum(axis=1, keepdims=True)

    table = {}
    for label, distribution in (("bts_empirical_frequency", empirical), ("bts_prior_monte_carlo", monte),
                                ("bts_logged_propensity", logged)):
        result = evaluate(random_logs, TabularPolicy(distribution), ALL, n_bootstrap=200, random_state=0)
        table[label] = {
            name: {
                "estimate": round(float(row["estimate"]), 5),
                "std_error": round(float(row["std_error"]), 5),
                "ci": [round(float(row["ci_low"]), 5), round(float(row["ci_high"]), 5)],
                "boot_ci": [round(float(row["boot_ci_low"]), 5), round(float(row["boot_ci_high"]), 5)],
                "relative_error": round(abs(float(row["estimate"]) - truth) / truth, 3),
                "ci_covers_truth": bool(row["ci_low"] <= truth <= row["ci_high"]),
                "ess": round(float(row["ess"]), 1),
            }
            for name, row in result.iterrows()
        }
    return {
        "random_rows": len(random_logs), "bts_rows": len(bts_logs),
        "bts_on_policy_mean_click": round(truth, 5), "bts_mean_click_std_error": round(truth_se, 5),
        "random_on_policy_mean_click": round(float(random_logs["reward"].mean()), 5),
        "l1_empirical_vs_monte_carlo_per_position": [
            round(float(x), 3) for x in np.abs(empirical - monte).sum(axis=1)
        ],
        "l1_empirical_vs_logged_propensity_per_position": [
            round(float(x), 3) for x in np.abs(empirical - logged).sum(axis=1)
        ],
        "monte_carlo_draws": monte_carlo,
        "estimates": table,
    }


def main() -> None:
    # the synthetic logs leave a few (state, action) cells of tiny logging probability empty; the
    # share of target mass there is recorded in the JSON instead of warning at every evaluation
    warnings.simplefilter("ignore", SupportWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.quick:
        scale = scale_section(200_000, 100, 50, brute_alphas=11)
        coverage = coverage_section(10)
        obd = obd_section(40_000)
    else:
        scale = scale_section(10_000_000, 1000, 500, brute_alphas=101)
        coverage = coverage_section(200)
        obd = obd_section(1_000_000)
    targets = {
        "evaluate_10m_under_5s": scale["evaluate_five_s"] < 5.0,
        "peak_rss_under_2gb": scale["peak_rss_bootstrap_gib"] * 2**30 < 2e9,
        "alpha_curve_under_3x_evaluation": scale["alpha_curve_over_evaluation"] < 3.0,
        "bootstrap_under_10x_evaluation": scale["bootstrap_over_evaluation"] < 10.0,
        "coverage_95_within_5_points": all(0.90 <= v <= 1.0 for v in coverage["coverage"].values()),
        "alpha_curve_matches_brute_force_1e10": scale["alpha_curve_max_abs_diff_fast_vs_brute"] < 1e-10,
    }
    print(json.dumps({
        "bench": "ope",
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "quick": args.quick,
        "scale": scale, "coverage": coverage, "obd": obd, "targets": targets,
        "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }))


if __name__ == "__main__":
    main()
