"""Benchmark of sim-to-real correction: how good is hfrl's alpha on the real shop's exact truth?

For each simulator (Recommendation-v0, AdPlacement-v0), shift strength (the simulator the RL policy
learns in is ``hfrl.envs.shift(shop, strength, "preferences", seed)``), logged rows and seed:

* the shop logs ``rows`` decisions of its current recommender (epsilon-greedy, epsilon 0.3, around
  the myopic best: what a shop ranking by immediate revenue does), split by session into train
  (HF), tuning (alpha) and safety (the one-sided test) halves of 50/25/25%;
* pi is the exact optimum of the simulator (what an RL learner converges to there), HF the
  shop's historical frequency on the training split; both keep the default serving floor
  (``hfrl.policies.default_min_propensity``), as the pipeline serves them;
* rules: hfrl's alpha (``tune_alpha(objective="return")``, criterion "estimate"), alpha = 0 (pure
  RL), alpha = 1 (pure HF), alpha = 0.1 (a fixed step), and the oracle alpha (best exact return of
  the shop on the 101-point grid). Normalised regret of a rule: ``(V(oracle) - V(rule)) /
  (V(oracle) - V(logging))``; a run whose oracle is not above the logging policy has no regret
  scale and is counted apart (``runs_without_scale``);
* the safe procedure ships hfrl's pi' when it passes the safety test at level 0.95
  (``safety_logs``), else keeps the logging policy; ``safe_below_logging`` is the share of runs in
  which what it ships has an exact return below the logging policy's.

Targets (issue 14): hfrl's mean normalised regret the lowest of the four rules over the grid and
<= 0.15; ``safe_below_logging`` <= 0.05.

Prints one JSON line. Usage:
    .venv/bin/python bench/bench_sim_to_real.py [--seeds 20] [--rows 2000 20000 200000]
        [--strengths 0 0.25 0.5 1] [--envs recommendation ad_placement] [--gamma 0.9]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from hfrl.blending import blend
from hfrl.envs import AdPlacementEnv, RecommendationEnv, collect_logs, logging_policy, shift
from hfrl.frequencies import HistoricalFrequency
from hfrl.policies import TabularPolicy, default_min_propensity
from hfrl.tune import split_logs, tune_alpha

ENVS = {"recommendation": RecommendationEnv, "ad_placement": AdPlacementEnv}
GRID = np.linspace(0.0, 1.0, 101)
FIXED = {"pure RL (alpha 0)": 0.0, "pure HF (alpha 1)": 1.0, "fixed step (alpha 0.1)": 0.1}


def one_run(shop: Any, strength: float, rows: int, seed: int, gamma: float) -> dict[str, float]:
    """Exact returns on the shop of every rule's pi', the oracle's and the logging policy's."""
    floor = default_min_propensity(shop.n_actions)
    myopic = TabularPolicy(np.eye(shop.n_actions)[shop.reward_matrix().argmax(axis=1)])
    logging = logging_policy(shop, "epsilon_greedy", epsilon=0.3, base=myopic)
    logs = collect_logs(shop, logging, rows, seed=seed)
    train, tuning, safety = split_logs(logs, (0.5, 0.25, 0.25), by="session")
    simulator = shift(shop, strength, "preferences", seed=seed)
    pi = simulator.optimal_policy(gamma).with_exploration(floor)
    hf = HistoricalFrequency().fit(train, n_states=shop.n_states, n_actions=shop.n_actions)
    hf_policy = hf.to_policy().with_exploration(floor)
    exact = np.array([shop.policy_value(blend(pi, hf_policy, float(a)), gamma) for a in GRID])
    tuned = tune_alpha(pi, hf_policy, tuning, objective="return", gamma=gamma, safety_logs=safety)
    values = {"hfrl": shop.policy_value(tuned.policy, gamma), "oracle": float(exact.max()),
              "logging": shop.policy_value(logging, gamma)}
    values.update({name: float(exact[int(round(a * 100))]) for name, a in FIXED.items()})
    values["safe"] = values["hfrl"] if tuned.passed_safety else values["logging"]
    values["alpha"] = tuned.alpha
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 20_000, 200_000])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--gamma", type=float, default=0.9)
    args = parser.parse_args()

    start = time.perf_counter()
    rules = ["hfrl", *FIXED]
    regrets: dict[str, list[float]] = {rule: [] for rule in rules}
    cells: dict[str, dict[str, float]] = {}
    below, runs, unscaled = 0, 0, 0
    for env_name in args.envs:
        shop = ENVS[env_name]()
        for strength in args.strengths:
            for rows in args.rows:
                cell: dict[str, list[float]] = {rule: [] for rule in rules}
                for seed in range(args.seeds):
                    values = one_run(shop, strength, rows, seed, args.gamma)
                    runs += 1
                    below += values["safe"] < values["logging"] - 1e-9
                    scale = values["oracle"] - values["logging"]
                    if scale <= 1e-9:
                        unscaled += 1
                        continue
                    for rule in rules:
                        regret = (values["oracle"] - values[rule]) / scale
                        regrets[rule].append(regret)
                        cell[rule].append(regret)
                cells[f"{env_name}/{strength:g}/{rows}"] = {
                    rule: round(float(np.mean(v)), 4) if v else None for rule, v in cell.items()}
    mean_regret = {rule: round(float(np.mean(v)), 4) if v else None for rule, v in regrets.items()}
    best_rule = min((r for r in rules if mean_regret[r] is not None), key=lambda r: mean_regret[r])
    result = {
        "bench": "sim_to_real",
        "cpus": os.cpu_count(),
        "envs": args.envs,
        "strengths": args.strengths,
        "rows": args.rows,
        "seeds": args.seeds,
        "gamma": args.gamma,
        "runs": runs,
        "runs_without_scale": unscaled,
        "mean_normalised_regret": mean_regret,
        "hfrl_lowest": best_rule == "hfrl",
        "hfrl_regret_target_0.15_met": mean_regret["hfrl"] is not None and mean_regret["hfrl"] <= 0.15,
        "safe_below_logging": round(below / max(runs, 1), 4),
        "safe_target_0.05_met": below / max(runs, 1) <= 0.05,
        "per_cell_mean_regret": cells,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
