"""Ranking benchmark: the slate estimators' speed at scale and their intervals' coverage.

Parts (issue "Rankings and real catalogs", letters as there; ``--parts`` picks them):

(a) catalog scale: ``--catalog-rows`` logged rows (50,000,000) over ``--segments`` (10,000) x
    ``--items`` (100,000), written to a Parquet file by DuckDB (items long-tailed per segment: rank
    ``floor(U ** -2)``, shifted per segment; 10% clicks). In a fresh process: ``HistoricalFrequency``
    (sparse, DuckDB backend) fitted on the file, a learned policy of 50 candidates per segment
    (``TabularPolicy.from_candidates``), their blend at alpha 0.3 with the serving exploration floor,
    the top 10 of every segment, the artifact saved and loaded again; the seconds of each step, the
    process's peak RSS and the sizes (the dense table would be 8 bytes x 10^9 = 8 GB).

(b) speed and cross-check: ``--slates`` logged slates (1,000,000 by default) of 3 positions over 20
    items in 10 segments from ``SlatePage-v0`` (position click model); the seconds of
    ``evaluate_slates`` for each estimator alone (validation and reading the slates included) and for
    all five in one call, and the estimates with their distance to the simulator's exact value in
    standard errors. On the same logs, Open Bandit Pipeline 0.5.7 (``SlateStandardIPS``,
    ``SlateIndependentIPS``, ``SlateRewardInteractionIPS``, ``SlateCascadeDoublyRobust``) run in the
    peer venv (``bench/peers.py``): its estimates and their largest distance to hfrl's (the
    definitions agree for these four, see ``OBP_AGREES``), and its seconds per estimator, which
    include building its inputs from the log columns (the target's slate, marginal and cascade
    probabilities, its per-slot action distribution and ``q_hat``) since hfrl's include validating
    and reading the log frame. cascade_dr is compared twice: with one fixed reward table given to
    both (``reward_table``), and with hfrl's default cross-fitted model, whose values (leave-one-out
    at the logged item) OBP gets as its per-slot ``q_hat`` (OBP's own ``SlateRegressionModel`` is
    another model). ``speedup``: OBP's seconds over hfrl's for each estimator alone (cascade_dr: hfrl
    fitting its default model, OBP given ``q_hat``) and for the four (hfrl: one call, given table).
    OBP has no pseudo-inverse estimator.
(c) coverage: ``--repetitions`` (200 by default) fresh logs of ``--coverage-slates`` slates (5,000)
    in two designs, the position model (every estimator's assumption holds) and the cascade model
    (only sips, rips and cascade_dr's hold); the share of 95% intervals (``interval="auto"``) that
    contain the exact value ``slate_policy_value``, with the misses on each side.

(d) the service on (a)'s artifact (``--service-duration`` seconds per load): ``bench_service.py``'s
    uvicorn server and load generator, top-10 slates per request (``"k": 10``) in exploit mode and in
    explore mode (sampled without replacement, propensities logged): the latency at 1,000 requests/s
    (open loop, from each request's scheduled send time) and the closed-loop saturation rate.

Targets: (a) peak RSS < 1 GB; (b) OBP's estimates equal hfrl's within 1e-9 where the definitions
agree, hfrl >= 20x faster than OBP (each estimator alone, and the four together); (c) coverage in
[0.93, 0.97] for the estimators whose assumptions hold in a design; (d) p99 < 10 ms at 1,000
requests/s, and the artifact loads in seconds.

Usage::

    .venv/bin/python bench/bench_rankings.py                       # prints ONE JSON line
    .venv/bin/python bench/bench_rankings.py --slates 200000 --repetitions 100
    .venv/bin/python bench/bench_rankings.py --parts a,d --catalog-rows 5000000   # smaller catalog run
    HFRL_PEER_VENV=/elsewhere/.venv-peers .venv/bin/python bench/bench_rankings.py --parts b
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import peers as peer_venv

N_SEGMENTS, N_ITEMS, K = 10, 20, 3
ESTIMATORS = ("sips", "iips", "rips", "cascade_dr", "pseudo_inverse")  # hfrl.ope.SLATE_ESTIMATORS
HOLDS = {"position": ESTIMATORS, "cascade": ("sips", "rips", "cascade_dr")}
# hfrl's estimator -> OBP's, whose per-slate term is the same formula on the same inputs (read from
# obp/ope/estimators_slate.py 0.5.7): sips w(slate) sum_j r_j; iips sum_j pi(a_j at j) / p(a_j at j) r_j;
# rips sum_j w_{0:j} r_j; cascade_dr sum_j w_{0:j} (r_j - Q_j(a_j)) + w_{0:j-1} sum_a pi(a | prefix) Q_j(a).
OBP_AGREES = {"sips": "SlateStandardIPS", "iips": "SlateIndependentIPS", "rips": "SlateRewardInteractionIPS",
              "cascade_dr": "SlateCascadeDoublyRobust"}


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def policies(seed: int):
    """A logging ranking with every item at >= half the uniform weight, and a sharper target."""
    from hfrl.policies import RankingPolicy, TabularPolicy

    rng = np.random.default_rng(seed)
    logging = 0.5 * rng.dirichlet(np.ones(N_ITEMS), N_SEGMENTS) + 0.5 / N_ITEMS
    target = 0.7 * rng.dirichlet(np.full(N_ITEMS, 0.5), N_SEGMENTS) + 0.3 * logging
    return (RankingPolicy.from_policy(TabularPolicy(logging), K),
            RankingPolicy.from_policy(TabularPolicy(target), K))


def environment(click_model: str):
    from hfrl.envs.slates import SlateEnv

    return SlateEnv(n_segments=N_SEGMENTS, n_items=N_ITEMS, k=K, click_model=click_model, bias=-1.0,
                    model_seed=1)


def reward_table(logs) -> np.ndarray:
    """One fixed ``Q_j(x, a)`` for cascade_dr, shape ``(N_SEGMENTS, K, N_ITEMS)``: the logged mean reward
    of item ``a`` at position ``j`` in segment ``x`` (0 where never logged) plus the segment's mean
    reward at the later positions."""
    state, position = logs["state"].to_numpy(), logs["position"].to_numpy()
    reward = logs["reward"].to_numpy(np.float64)
    cell = (state * K + position) * N_ITEMS + logs["action"].to_numpy()
    size = N_SEGMENTS * K * N_ITEMS
    count = np.bincount(cell, minlength=size)
    mean = (np.bincount(cell, weights=reward, minlength=size) / np.maximum(count, 1)).reshape(
        N_SEGMENTS, K, N_ITEMS)
    slot = state * K + position
    slot_mean = (np.bincount(slot, weights=reward, minlength=N_SEGMENTS * K)
                 / np.maximum(np.bincount(slot, minlength=N_SEGMENTS * K), 1)).reshape(N_SEGMENTS, K)
    later = np.cumsum(slot_mean[:, ::-1], axis=1)[:, ::-1] - slot_mean
    return mean + later[:, :, None]


def speed(n_slates: int, seed: int) -> dict:
    from hfrl.envs.slates import collect_slate_logs, slate_policy_value
    from hfrl.ope import evaluate_slates

    env = environment("position")
    logging, target = policies(seed)
    truth = slate_policy_value(env, target)
    logs, simulate = timed(lambda: collect_slate_logs(env, logging, n_slates, seed=seed))
    seconds = {}
    for name in ESTIMATORS:
        _, spent = timed(lambda name=name: evaluate_slates(logs, target, name, logging_policy=logging))
        seconds[name] = round(spent, 3)
    result, together = timed(lambda: evaluate_slates(logs, target, logging_policy=logging))
    out = {
        "n_slates": n_slates, "n_rows": len(logs), "simulate_seconds": round(simulate, 2),
        "seconds_each": seconds, "seconds_all_five": round(together, 3), "truth": truth,
        "estimate": result["estimate"].round(6).to_dict(),
        "error_in_std_errors": ((result["estimate"] - truth) / result["std_error"]).round(2).to_dict(),
    }
    out["obp"] = versus_obp(logs, target, result["estimate"].to_dict(), seconds)
    return out


def cross_fitted_table(logs) -> tuple[np.ndarray, np.ndarray]:
    """hfrl's default cascade_dr model as OBP's ``q_hat`` needs it: the dense ``Q_j(x, a)`` table and,
    per logged slot, the leave-one-out value the default uses at the logged item instead."""
    from hfrl.ope.slates import SlateRewardModel, read_slates

    slates = read_slates(logs, N_ITEMS)
    model = SlateRewardModel.fit(slates, N_ITEMS, 1.0)  # evaluate_slates' default reward_prior
    table = np.repeat(model.base[:, :, None], N_ITEMS, axis=2)
    table.reshape(-1)[model.keys] += model.delta
    return table, (model.base[slates.state] + model.loo_delta).ravel()


def versus_obp(logs, target, estimates: dict, seconds: dict) -> dict:
    """OBP's four slate estimators on the same logs: their estimates, distance to hfrl's and seconds;
    cascade_dr twice, with ``reward_table`` given to both and with hfrl's default cross-fitted model."""
    from hfrl.ope import evaluate_slates

    table = reward_table(logs)
    four = tuple(OBP_AGREES)
    given, given_seconds = timed(lambda: evaluate_slates(logs, target, four, reward_model=table))
    ours = given["estimate"].to_dict()
    ours["cascade_dr_default_model"] = estimates["cascade_dr"]
    data = {column: logs[column].to_numpy() for column in
            ("slate_id", "position", "state", "action", "reward", "propensity", "cascade_propensity",
             "slate_propensity")}
    data["item_probabilities"] = target.item_probabilities(np.arange(N_SEGMENTS))
    data["q_table"] = table
    data["default_q_table"], data["default_q_observed"] = cross_fitted_table(logs)
    peer = peer_venv.run_peer(__file__, "obp_slates", data, k=K)
    out = {"definitions_agree": OBP_AGREES, "hfrl_estimate": ours,
           "hfrl_seconds": {**{n: seconds[n] for n in four}, "four_in_one_call": round(given_seconds, 3)},
           "cascade_dr_reward_model": "reward_table, given to both (cascade_dr_default_model: hfrl's "
                                      "cross-fitted default, its values passed to OBP as q_hat)",
           "peer": peer}
    if "estimate" in peer:
        difference = {n: abs(ours[n] - peer["estimate"][n]) for n in ours}
        # cascade_dr alone: hfrl's seconds fit its default model, OBP's are given q_hat
        speedup = {n: round(peer["seconds"][n] / seconds[n], 1) for n in four}
        speedup["four_in_one_call"] = round(peer["seconds_four"] / given_seconds, 1)
        out.update(abs_difference=difference, max_abs_difference=max(difference.values()), speedup=speedup,
                   min_speedup=min(speedup.values()))
    return out


# ---------------------------------------------------------------------------------------------
# the peer (runs in the peer venv: numpy and obp only, never hfrl)


def plackett_luce_positions(p: np.ndarray, k: int) -> np.ndarray:
    """``P(a at j)`` under Plackett-Luce sampling of ``k`` of ``p``'s items, by enumerating the ordered
    k-prefixes; shape ``(len(p), k, n_items)`` for ``p`` of shape ``(n_states, n_items)``."""
    n_states, n_items = p.shape
    prefixes = np.array(list(itertools.permutations(range(n_items), k)))  # (m, k)
    picked = p[:, prefixes]  # (n_states, m, k)
    before = np.cumsum(picked, axis=2) - picked
    probability = np.prod(picked / (1.0 - before), axis=2)  # (n_states, m)
    out = np.zeros((n_states, k, n_items))
    for j in range(k):
        for s in range(n_states):
            out[s, j] = np.bincount(prefixes[:, j], weights=probability[s], minlength=n_items)
    return out


def peer_obp_slates(data: dict, k: int) -> dict:
    """OBP's slate estimators, each timed with the building of its inputs from the log columns."""
    from obp.ope import (
        SlateCascadeDoublyRobust,
        SlateIndependentIPS,
        SlateRewardInteractionIPS,
        SlateStandardIPS,
    )

    slate_id, position, reward = data["slate_id"], data["position"], data["reward"]
    action, p = data["action"], data["item_probabilities"]
    n_items = p.shape[1]
    slates = action.reshape(-1, k)
    state = data["state"][::k]

    def target_cascade() -> np.ndarray:  # pi(a_0..a_j | x), one per row
        picked = p[state[:, None], slates]
        before = np.cumsum(picked, axis=1) - picked
        return np.cumprod(picked / (1.0 - before), axis=1).ravel()

    def sips() -> float:
        slate = np.repeat(target_cascade().reshape(-1, k)[:, -1], k)
        return SlateStandardIPS(len_list=k).estimate_policy_value(
            slate_id=slate_id, reward=reward, position=position, pscore=data["slate_propensity"],
            evaluation_policy_pscore=slate)

    def iips() -> float:
        marginal = plackett_luce_positions(p, k)[state[:, None], np.arange(k)[None, :], slates].ravel()
        return SlateIndependentIPS(len_list=k).estimate_policy_value(
            slate_id=slate_id, reward=reward, position=position, pscore_item_position=data["propensity"],
            evaluation_policy_pscore_item_position=marginal)

    def rips() -> float:
        return SlateRewardInteractionIPS(len_list=k).estimate_policy_value(
            slate_id=slate_id, reward=reward, position=position, pscore_cascade=data["cascade_propensity"],
            evaluation_policy_pscore_cascade=target_cascade())

    def cascade_dr(q_table: np.ndarray, q_observed: np.ndarray | None = None) -> float:
        n = slates.shape[0]
        distribution = np.repeat(p[state][:, None, :], k, axis=1)  # pi(a | x, a_0..a_{j-1})
        for j in range(1, k):
            for m in range(j):
                distribution[np.arange(n), j, slates[:, m]] = 0.0
        distribution /= distribution.sum(axis=2, keepdims=True)
        q_hat = q_table[state]  # Q_j(x, a) for every item; the logged item's own value when given
        if q_observed is not None:
            q_hat[np.arange(n)[:, None], np.arange(k)[None, :], slates] = q_observed.reshape(n, k)
        return SlateCascadeDoublyRobust(len_list=k, n_unique_action=n_items).estimate_policy_value(
            slate_id=slate_id, action=action, reward=reward, position=position,
            pscore_cascade=data["cascade_propensity"], evaluation_policy_pscore_cascade=target_cascade(),
            q_hat=q_hat.ravel(), evaluation_policy_action_dist=distribution.ravel())

    estimate, seconds = {}, {}
    runs = {"sips": sips, "iips": iips, "rips": rips, "cascade_dr": lambda: cascade_dr(data["q_table"]),
            "cascade_dr_default_model": lambda: cascade_dr(data["default_q_table"],
                                                           data["default_q_observed"])}
    for name, run in runs.items():
        value, spent = timed(run)
        estimate[name], seconds[name] = float(value), round(spent, 3)
    four = sum(seconds[name] for name in ("sips", "iips", "rips", "cascade_dr"))
    return {"estimate": estimate, "seconds": seconds, "seconds_four": round(four, 3)}


def peer_main(kind: str, path: str, options: str) -> None:
    data = dict(np.load(path))
    print(json.dumps({"obp_slates": peer_obp_slates}[kind](data, **json.loads(options))))


# ---------------------------------------------------------------------------------------------


def coverage(click_model: str, n_slates: int, repetitions: int, seed: int) -> dict:
    from hfrl.envs.slates import collect_slate_logs, slate_policy_value
    from hfrl.ope import evaluate_slates

    env = environment(click_model)
    logging, target = policies(seed)
    truth = slate_policy_value(env, target)
    names = HOLDS[click_model]
    below = {n: 0 for n in names}
    above = {n: 0 for n in names}
    for rep in range(repetitions):
        logs = collect_slate_logs(env, logging, n_slates, seed=seed * 100_003 + rep)
        result = evaluate_slates(logs, target, names, logging_policy=logging)
        for name in names:
            below[name] += int(truth < result.loc[name, "ci_low"])
            above[name] += int(truth > result.loc[name, "ci_high"])
    return {
        "click_model": click_model, "n_slates": n_slates, "truth": truth,
        "coverage": {n: 1.0 - (below[n] + above[n]) / repetitions for n in names},
        "truth_below_interval": {n: below[n] / repetitions for n in names},
        "truth_above_interval": {n: above[n] / repetitions for n in names},
    }


CANDIDATES, CATALOG_ALPHA, TOP = 50, 0.3, 10


def write_catalog_logs(path: str, n_rows: int, n_segments: int, n_items: int) -> float:
    """Long-tailed click logs written by DuckDB (never held in this process); returns the seconds."""
    import duckdb

    started = time.perf_counter()
    with duckdb.connect() as connection:
        connection.execute("SET threads = 1")  # setseed makes random() repeatable on one thread
        connection.execute("SELECT setseed(0.42)")
        connection.execute(f"""
            COPY (
              SELECT CAST(i % {n_segments} AS BIGINT) AS state,
                     CAST((i % {n_segments}) * 7919
                          + CAST(least(pow(1.0 - random(), -2.0), 1e9) AS BIGINT) - 1 AS BIGINT) % {n_items}
                       AS action,
                     CAST(random() < 0.1 AS DOUBLE) AS reward
              FROM range({n_rows}) t(i)
            ) TO '{path}' (FORMAT parquet)""")
    return time.perf_counter() - started


def catalog_child(path: str, artifact: str, n_segments: int, n_items: int) -> None:
    """Part (a) inside a fresh process, so that its peak RSS is HF + blend + top-k's own."""
    import resource

    from hfrl import blend
    from hfrl.backends.duckdb import DuckDBBackend
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.policies import TabularPolicy, default_min_propensity

    seconds = {}
    started = time.perf_counter()
    hf = HistoricalFrequency(prior_strength=1.0, backend=DuckDBBackend(memory_limit="400MB"))
    hf.fit(path, n_states=n_segments, n_actions=n_items)
    seconds["hf_fit"] = time.perf_counter() - started
    rng = np.random.default_rng(1)
    step = time.perf_counter()
    states = np.repeat(np.arange(n_segments), CANDIDATES)
    items = (states * 104_729 + rng.integers(0, n_items, states.size)) % n_items
    scores = rng.dirichlet(np.ones(CANDIDATES), n_segments).ravel() * 0.9  # 10% left to the others
    pi = TabularPolicy.from_candidates(states, items, scores, n_segments, n_items)
    blended = blend(pi, hf, CATALOG_ALPHA).with_exploration(default_min_propensity(n_items))
    seconds["blend"] = time.perf_counter() - step
    step = time.perf_counter()
    top, probabilities = blended.top_k(np.arange(n_segments), TOP)
    seconds["top_10_all_segments"] = time.perf_counter() - step
    step = time.perf_counter()
    blended.save(artifact)
    seconds["save"] = time.perf_counter() - step
    step = time.perf_counter()
    loaded = TabularPolicy.load(artifact)
    seconds["load"] = time.perf_counter() - step
    same = bool(np.array_equal(loaded.top_k(np.arange(100), TOP)[0], top[:100]))
    seconds["total"] = time.perf_counter() - started
    table = blended.sparse_
    print(json.dumps({
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "hf_sparse": bool(hf.to_policy().is_sparse),
        "hf_logged_cells": int(hf.counts_.nnz),
        "blend_explicit_cells": table.nnz, "blend_base_rows": int(table.base.shape[0]),
        "blend_megabytes": round(table.nbytes / 2**20, 1),
        "dense_table_megabytes": round(8 * n_segments * n_items / 2**20, 1),
        "artifact_megabytes": round(os.path.getsize(artifact) / 2**20, 1),
        "loaded_top_10_same": same,
        "top_10_mass_mean": round(float(probabilities.sum(axis=1).mean()), 4),
    }))


def catalog(n_rows: int, n_segments: int, n_items: int, folder: str) -> dict:
    import subprocess
    import sys

    path = os.path.join(folder, "catalog.parquet")
    written = write_catalog_logs(path, n_rows, n_segments, n_items)
    artifact = os.path.join(folder, "catalog.zip")
    out = subprocess.run([sys.executable, __file__, "--catalog-child", path, artifact, str(n_segments),
                          str(n_items)], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rows": n_rows, "segments": n_segments, "items": n_items, "alpha": CATALOG_ALPHA,
            "candidates_per_segment": CANDIDATES, "file_megabytes": round(os.path.getsize(path) / 2**20, 1),
            "write_seconds": round(written, 1), **figures, "artifact": artifact}


def serve_catalog(artifact: str, n_segments: int, duration: float, folder: str) -> dict:
    """Part (d): bench_service's server and load generator on the catalog artifact, top-10 slates."""
    import sys

    result = {}
    for mode in ("exploit", "explore"):
        os.environ["HFRL_BENCH_DECIDE_EXTRA"] = f',"k":{TOP},"mode":"{mode}"'
        os.environ["HFRL_BENCH_N_STATES"] = str(n_segments)
        import importlib

        import bench_service

        bench_service = importlib.reload(bench_service)  # reads the request shape at import
        port = bench_service.free_port()
        server = [sys.executable, bench_service.__file__, "--hfrl-server", artifact,
                  os.path.join(folder, f"serve-{mode}.sqlite"), str(port), "fast_path"]
        measured = bench_service.measure_server(server, port, duration, 1000.0, Path(folder))
        fixed = measured["fixed_rate_open_loop"]
        result[mode] = {"p50_ms_at_1000rps": fixed.get("p50_ms"), "p99_ms_at_1000rps": fixed.get("p99_ms"),
                        "achieved_rps": fixed.get("rps"), "non_200": fixed.get("non_200"),
                        "saturation_rps": measured["saturation"].get("rps"),
                        "saturation_p99_ms": measured["saturation"].get("p99_ms"),
                        "server_cpu_us_per_request": measured["saturation"].get("server_cpu_us_per_request"),
                        "saturation_tool": measured["saturation"].get("tool"),
                        "loadavg": measured["loadavg"]}
        if "fixed_rate_wrk_paced" in measured:
            paced = measured["fixed_rate_wrk_paced"]
            result[mode].update(wrk_paced_rps=paced.get("rps"), wrk_paced_p99_ms=paced.get("p99_ms"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slates", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--coverage-slates", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog-rows", type=int, default=50_000_000)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--service-duration", type=float, default=10.0)
    parser.add_argument("--parts", default="a,b,c,d",
                        help="comma-separated: a (catalog HF + blend + top-10), b (speed, OBP), "
                             "c (coverage), d (service on a's artifact)")
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--catalog-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(*args.peer)
        return
    if args.catalog_child:
        path, artifact, n_segments, n_items = args.catalog_child
        catalog_child(path, artifact, int(n_segments), int(n_items))
        return
    parts = args.parts.split(",")
    started = time.perf_counter()
    figures: dict = {"bench": "rankings", "k": K, "n_items": N_ITEMS, "n_segments": N_SEGMENTS,
                     "parts": parts, "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    targets = figures["targets"] = {}
    folder = tempfile.mkdtemp(prefix="bench-rankings-")
    if "a" in parts or "d" in parts:
        scale = figures["catalog"] = catalog(args.catalog_rows, args.segments, args.items, folder)
        targets["catalog_peak_rss_below_1gb"] = bool(scale["peak_rss_mb"] < 1024)
        targets["catalog_artifact_loads_in_seconds"] = bool(scale["seconds"]["load"] < 10)
    if "d" in parts:
        served = figures["service"] = serve_catalog(figures["catalog"]["artifact"], args.segments,
                                                    args.service_duration, folder)
        targets["service_p99_below_10ms_at_1000rps"] = {mode: bool(served[mode]["p99_ms_at_1000rps"] < 10)
                                                        for mode in served}
    if "b" in parts:
        fast = figures["speed"] = speed(args.slates, args.seed)
        if "max_abs_difference" in fast["obp"]:
            targets["obp_same_within_1e-9"] = bool(fast["obp"]["max_abs_difference"] <= 1e-9)
            speedup = fast["obp"]["speedup"]
            targets["obp_20x_faster_each"] = bool(fast["obp"]["min_speedup"] >= 20)
            targets["obp_20x_faster_four"] = bool(speedup["four_in_one_call"] >= 20)
    if "c" in parts:
        designs = figures["coverage"] = [coverage(m, args.coverage_slates, args.repetitions, args.seed)
                                         for m in HOLDS]
        figures["repetitions"] = args.repetitions
        targets["coverage_in_093_097"] = all(0.93 <= c <= 0.97 for d in designs
                                             for c in d["coverage"].values())
    shutil.rmtree(folder, ignore_errors=True)
    figures["not_measured"] = ["b: pseudo_inverse against OBP (OBP has no pseudo-inverse estimator)"]
    figures.update(seconds=round(time.perf_counter() - started, 1), cpu_count=os.cpu_count(),
                   load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(figures, default=lambda value: value.item()))


if __name__ == "__main__":
    main()
