"""Marginalised IPS benchmark: hfrl's ``evaluate_embedded`` against Open Bandit Pipeline's MIPW, same logs.

The logs: ``--rows`` decisions (1,000,000 by default) in ``--states`` user segments (20) over a catalog
of ``--items`` items (10,000) in ``--categories`` categories (50); the reward (a click) depends on the
item only through its category, so MIPS's assumption holds and the exact value of the target is
known. The logging policy shows every item (half uniform, half a random mix per segment); the target
is a sharp softmax over the items. Both are tables (``TabularPolicy``).

hfrl: ``evaluate_embedded`` with the logging policy given (exact marginal weights), timed with the
validation of the log frame, for ``mips`` and ``snmips`` each alone and both in one call; ``ips`` on the
same rows for the effective sample size of the per-item weights.

Open Bandit Pipeline 0.5.7 (``MarginalizedInverseProbabilityWeighting``, ``SelfNormalizedMarginalized
InverseProbabilityWeighting``), run in the peer venv (``bench/peers.py``), given the true embedding
distribution ``p_e_a`` (one-hot: deterministic embeddings), so that it computes the exact marginal
weights too (without ``p_e_a`` it fits a logistic regression of the item on the context and embedding
instead: another estimator). OBP takes the two policies as dense ``(n_rows, n_items, 1)`` arrays: at
1,000,000 x 10,000 that is 80 GB each, so OBP runs on chunks of rows (``--peer-cells`` probabilities
per chunk) and the chunks are combined exactly: MIPW's value is the row-weighted mean of the chunks'
values; SNMIPW's, the chunks' values weighted by each chunk's sum of weights (OBP's MIPW with reward
1, timed apart and not counted in SNMIPW's seconds). OBP's seconds include building its dense inputs
from the log columns, as hfrl's include validating and reading the log frame.

Where the definitions agree (read from obp/ope/estimators_embed.py 0.5.7): with one embedding
dimension both estimators compute ``w = p(e | x, pi) / p(e | x, pi_0)``, as hfrl. With ``--dims 2`` (a
second embedding, 4 price bands), OBP's MIPW multiplies ``p_e_a`` over the dimensions inside the sum
over items, which for deterministic embeddings is the joint tuple, as hfrl; but OBP's SNMIPW divides
the *product of the per-dimension marginals* ``prod_d p(e_d | x, pi) / prod_d p(e_d | x, pi_0)``, another
weight (it treats the dimensions as independent): not compared (and, over several chunks, not
combined: MIPW's chunk sums are not its weights' sums; its seconds are still reported).

Targets: OBP's estimates equal hfrl's within 1e-9 where the definitions agree; the speed ratio
(OBP's seconds over hfrl's) is reported.

Usage::

    .venv/bin/python bench/bench_embedded.py                    # prints ONE JSON line
    .venv/bin/python bench/bench_embedded.py --rows 100000 --dims 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

import peers as peer_venv

PRICE_BANDS = 4


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def problem(n_states: int, n_items: int, n_categories: int, dims: int, seed: int):
    """Item embeddings, the click rate of each (segment, category), the logging and target tables and
    the target's exact value (segments drawn uniformly)."""
    rng = np.random.default_rng(seed)
    category = np.r_[np.arange(n_categories), rng.integers(0, n_categories, n_items - n_categories)]
    embedding = category[:, None] if dims == 1 else np.column_stack([category, rng.integers(0, PRICE_BANDS,
                                                                                             n_items)])
    joint = np.unique(embedding, axis=0, return_inverse=True)[1].ravel()
    click = rng.uniform(0.02, 0.3, (n_states, joint.max() + 1))
    logging = 0.5 * rng.dirichlet(np.ones(n_items), n_states) + 0.5 / n_items
    scores = rng.normal(0.0, 2.0, (n_states, n_items))
    target = np.exp(scores - scores.max(axis=1, keepdims=True))
    target /= target.sum(axis=1, keepdims=True)
    truth = float(np.mean((target * click[:, joint]).sum(axis=1)))
    return embedding, joint, click, logging, target, truth


def run(args) -> dict:
    import pandas as pd

    from hfrl.ope import evaluate_embedded
    from hfrl.policies import TabularPolicy

    embedding, joint, click, logging_table, target_table, truth = problem(
        args.states, args.items, args.categories, args.dims, args.seed)
    logging, target = TabularPolicy(logging_table), TabularPolicy(target_table)
    rng = np.random.default_rng(args.seed + 1)
    state = rng.integers(0, args.states, args.rows)
    action, propensity = logging.sample(state, rng)
    reward = (rng.random(args.rows) < click[state, joint[action]]).astype(np.float64)
    logs = pd.DataFrame({"state": state, "action": action, "reward": reward, "propensity": propensity})
    items = embedding[:, 0] if args.dims == 1 else embedding
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ips: most items are never logged (the point of MIPS)
        for name in ("mips", "snmips"):
            _, seconds[name] = timed(lambda name=name: evaluate_embedded(logs, target, items, logging, name))
        result, seconds["both_in_one_call"] = timed(
            lambda: evaluate_embedded(logs, target, items, logging, ("mips", "snmips")))
        items_result, seconds["with_ips"] = timed(
            lambda: evaluate_embedded(logs, target, items, logging, ("mips", "ips")))
        estimated, seconds["mips_estimated_marginal"] = timed(
            lambda: evaluate_embedded(logs, target, items, estimators="mips"))
    hfrl = {
        "estimate": result["estimate"].to_dict(), "std_error": result["std_error"].to_dict(),
        "ci": {n: [result.loc[n, "ci_low"], result.loc[n, "ci_high"]] for n in result.index},
        "interval": result["interval"].to_dict(),
        "error_in_std_errors": ((result["estimate"] - truth) / result["std_error"]).round(2).to_dict(),
        "ess": {"mips": float(items_result.loc["mips", "ess"]), "ips": float(items_result.loc["ips", "ess"])},
        "max_weight": {"mips": float(items_result.loc["mips", "max_weight"]),
                       "ips": float(items_result.loc["ips", "max_weight"])},
        "ips_estimate": float(items_result.loc["ips", "estimate"]),
        "ips_std_error": float(items_result.loc["ips", "std_error"]),
        "mips_estimated_marginal": {"estimate": float(estimated.loc["mips", "estimate"]),
                                    "std_error": float(estimated.loc["mips", "std_error"])},
        "n_embeddings": int(result.loc["mips", "n_embeddings"]),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    out = {"truth": truth, "hfrl": hfrl}
    out["obp"] = versus_obp(state, action, reward, embedding, logging_table, target_table, args, hfrl)
    return out


def versus_obp(state, action, reward, embedding, logging_table, target_table, args, hfrl: dict) -> dict:
    agree = {"mips": "MarginalizedInverseProbabilityWeighting"}
    if args.dims == 1:
        agree["snmips"] = "SelfNormalizedMarginalizedInverseProbabilityWeighting"
    data = {"state": state, "action": action, "reward": reward, "embedding": embedding,
            "logging": logging_table, "target": target_table}
    peer = peer_venv.run_peer(__file__, "obp_embedded", data, cells=args.peer_cells)
    out = {"definitions_agree": agree,
           "differs": {} if args.dims == 1 else {
               "snmips": "OBP 0.5.7's SNMIPW weighs by the product of per-dimension marginal ratios, hfrl by "
                         "the joint embedding's ratio"},
           "peer": peer}
    if "estimate" in peer:
        difference = {n: abs(hfrl["estimate"][n] - peer["estimate"][n]) for n in agree}
        speed = {n: round(peer["seconds"][n] / hfrl["seconds"][n], 1) for n in ("mips", "snmips")}
        speed["both"] = round((peer["seconds"]["mips"] + peer["seconds"]["snmips"])
                              / hfrl["seconds"]["both_in_one_call"], 1)
        out.update(abs_difference=difference, max_abs_difference=max(difference.values()), speed_ratio=speed)
    return out


# ---------------------------------------------------------------------------------------------
# the peer (runs in the peer venv: numpy and obp only, never hfrl)


def peer_obp_embedded(data: dict, cells: int) -> dict:
    """OBP's MIPW and SNMIPW over chunks of rows, given the one-hot ``p_e_a``; combined exactly."""
    from obp.ope import (
        MarginalizedInverseProbabilityWeighting,
        SelfNormalizedMarginalizedInverseProbabilityWeighting,
    )

    state, action, reward = data["state"], data["action"], data["reward"]
    embedding, logging, target = data["embedding"], data["logging"], data["target"]
    n, n_items, dims = reward.size, logging.shape[1], embedding.shape[1]
    p_e_a = np.zeros((n_items, int(embedding.max()) + 1, dims))
    for d in range(dims):
        p_e_a[np.arange(n_items), embedding[:, d], d] = 1.0
    step = max(2, cells // n_items)
    chunks = [slice(s, min(n, s + step)) for s in range(0, n, step)]

    def inputs(rows: slice, rewards: np.ndarray) -> dict:
        return {"reward": rewards, "action": action[rows], "action_embed": embedding[action[rows]],
                "pi_b": logging[state[rows]][:, :, None], "action_dist": target[state[rows]][:, :, None],
                "p_e_a": p_e_a}

    def mipw() -> float:
        estimator = MarginalizedInverseProbabilityWeighting(n_actions=n_items)
        values = [estimator.estimate_policy_value(**inputs(c, reward[c])) for c in chunks]
        return float(np.dot(values, [c.stop - c.start for c in chunks])) / n

    def snmipw_chunks() -> list[float]:
        estimator = SelfNormalizedMarginalizedInverseProbabilityWeighting(n_actions=n_items)
        return [estimator.estimate_policy_value(**inputs(c, reward[c])) for c in chunks]

    def chunk_weights() -> np.ndarray:  # each chunk's sum of MIPW weights: MIPW with reward 1
        estimator = MarginalizedInverseProbabilityWeighting(n_actions=n_items)
        return np.array([estimator.estimate_policy_value(**inputs(c, np.ones(c.stop - c.start)))
                         * (c.stop - c.start) for c in chunks])

    mips, mips_seconds = timed(mipw)
    values, sn_seconds = timed(snmipw_chunks)
    weights, weight_seconds = timed(chunk_weights)
    # with d > 1 SNMIPW's weights are not MIPW's, so MIPW's chunk sums cannot combine its chunks
    snmips = float(np.dot(values, weights) / weights.sum()) if dims == 1 or len(chunks) == 1 else None
    return {"estimate": {"mips": float(mips), "snmips": snmips},
            "seconds": {"mips": round(mips_seconds, 3), "snmips": round(sn_seconds, 3),
                        "snmips_chunk_normalisers_not_counted": round(weight_seconds, 3)},
            "chunk_rows": step, "n_chunks": len(chunks)}


def peer_main(kind: str, path: str, options: str) -> None:
    data = dict(np.load(path))
    print(json.dumps({"obp_embedded": peer_obp_embedded}[kind](data, **json.loads(options))))


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--states", type=int, default=20)
    parser.add_argument("--dims", type=int, default=1, choices=(1, 2),
                        help="1: the category; 2: (category, price band) as the joint embedding")
    parser.add_argument("--peer-cells", type=int, default=10_000_000,
                        help="OBP's dense probabilities per chunk of rows (rows x items)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(*args.peer)
        return
    started = time.perf_counter()
    figures: dict = {"bench": "embedded", "rows": args.rows, "items": args.items,
                     "categories": args.categories, "states": args.states, "dims": args.dims,
                     "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    figures.update(run(args))
    obp = figures["obp"]
    targets = figures["targets"] = {}
    if "max_abs_difference" in obp:
        targets["obp_same_within_1e-9"] = bool(obp["max_abs_difference"] <= 1e-9)
    hfrl = figures["hfrl"]
    targets["mips_ess_over_ips_ess"] = round(hfrl["ess"]["mips"] / max(hfrl["ess"]["ips"], 1e-300), 1)
    figures.update(seconds=round(time.perf_counter() - started, 1), cpu_count=os.cpu_count(),
                   load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(figures, default=lambda value: value.item()))


if __name__ == "__main__":
    main()
