"""Benchmark of contextual policies on hfrl/ContextualRecommendation-v0; prints ONE JSON line of figures.

What it measures (each part in its own process, so its peak RSS is its own):

* ``learners``: 1,000 items, 32 features, ``--rows`` (1M) logged rows from the env's known logging
  policy. The exact one-step value (``policy_value`` on 5,000 fresh users, the same for every
  learner) reached by each offline learner and its training time: hfrl's
  ``DirectMethodLearner(context_columns=)`` (a ridge per item) and ``NeuralPolicyLearner`` (IPS
  and DR objectives; greedy on the trained network, like the peers), beside Vowpal Wabbit
  ``cb_explore_adf`` (one pass, user x item interactions, on ``--vw-rows`` of the same rows: every
  row carries all 1,000 items, so a full pass is out of reach on this machine) and Open Bandit Pipeline's
  ``NNPolicyLearner`` (IPW objective, on ``--obp-rows``). The peers run from
  ``bench/.venv-peers`` (``bench/requirements-peers.txt``), never as hfrl dependencies; a peer's
  value is the exact value of its greedy choice for the same fresh users.
* ``evaluate``: five estimators (IPS, SNIPS, DM, DR, Switch-DR) on a softmax policy at ``--eval-rows``
  (1M) rows x 80 actions, in memory. hfrl: ``evaluate(logs, policy, ..., context_columns=)``, one
  streaming pass with the cross-fitted ridge reward model and intervals included. Open Bandit
  Pipeline: the dense ``(n, 80, 1)`` ``action_dist`` built in numpy, its ``RegressionModel`` (Ridge,
  2-fold cross-fitting) and ``OffPolicyEvaluation.estimate_policy_values`` (point estimates only, no
  intervals: the comparison favours OBP), each timed.
* ``file``: the same evaluation from a Parquet file of ``--file-rows`` (10M) rows on DuckDB.

Usage: ``.venv/bin/python bench/bench_contexts.py [--rows N --eval-rows N --file-rows N ...]``;
``--quick`` runs tiny sizes as a smoke test (figures then mean nothing). Full scale needs about
4 GB of disk under bench/data/ for the Parquet file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import peers as peer_venv

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
N_FEATURES = 32
N_TEST_USERS = 5_000
ESTIMATORS = ("ips", "snips", "dm", "dr", "switch_dr")
SWITCH_THRESHOLD = 10.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


# ============================================================================ peers (in bench/.venv-peers)
def peer_vw(data: dict, rows: int) -> dict:
    """Vowpal Wabbit cb_explore_adf, one pass over ``rows`` logged rows; greedy choice for the test users."""
    import vowpalwabbit

    x, test = data["contexts"][:rows], data["test_contexts"]
    actions, rewards = data["actions"][:rows], data["rewards"][:rows]
    propensities = data["propensities"][:rows]
    n_items = int(data["n_items"])
    items = [f"|a i{a}" for a in range(n_items)]

    def shared(row: np.ndarray) -> str:
        return "shared |u " + " ".join(f"f{j}:{v:.5f}" for j, v in enumerate(row))

    model = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 -q ua --quiet -b 22 --power_t 0 "
                                   "-l 0.05")
    started = time.perf_counter()
    for i in range(rows):
        lines = [shared(x[i]), *items]
        a = int(actions[i])
        lines[1 + a] = f"0:{-float(rewards[i])}:{float(propensities[i])} {items[a]}"
        model.learn(lines)
    train_seconds = time.perf_counter() - started
    chosen = np.empty(len(test), dtype=np.int64)
    for i, row in enumerate(test):
        pmf = model.predict([shared(row), *items])
        chosen[i] = int(np.argmax(pmf))
    model.finish()
    return {"rows": rows, "train_seconds": train_seconds, "chosen": chosen.tolist()}


def peer_obp_learner(data: dict, rows: int, epochs: int) -> dict:
    """Open Bandit Pipeline's NNPolicyLearner (IPW objective) on ``rows`` logged rows."""
    import torch
    from obp.policy import NNPolicyLearner

    torch.set_num_threads(2)
    learner = NNPolicyLearner(n_actions=int(data["n_items"]), dim_context=data["contexts"].shape[1],
                              off_policy_objective="ipw", hidden_layer_size=(100,), batch_size=1024,
                              learning_rate_init=0.003, max_iter=epochs, random_state=0)
    _, seconds = timed(lambda: learner.fit(context=data["contexts"][:rows], action=data["actions"][:rows],
                                           reward=data["rewards"][:rows], pscore=data["propensities"][:rows]))
    chosen = learner.predict(data["test_contexts"])[:, :, 0].argmax(axis=1)
    return {"rows": rows, "epochs": epochs, "train_seconds": seconds, "chosen": chosen.tolist()}


def peer_obp_evaluate(data: dict) -> dict:
    """OBP's five estimators on the same rows: dense action_dist, RegressionModel, estimate_policy_values."""
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        RegressionModel,
        SelfNormalizedInverseProbabilityWeighting,
        SwitchDoublyRobust,
    )
    from sklearn.linear_model import Ridge

    x, actions, rewards = data["contexts"], data["actions"], data["rewards"]
    n_actions = int(data["n_actions"])

    def action_dist() -> np.ndarray:
        scores = (x @ data["weights"].T + data["bias"]) / float(data["temperature"])
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        p = scores / scores.sum(axis=1, keepdims=True)
        epsilon = float(data["epsilon"])
        return ((1 - epsilon) * p + epsilon / n_actions)[:, :, None]

    distribution, dist_seconds = timed(action_dist)
    feedback = {"n_rounds": len(actions), "n_actions": n_actions, "action": actions, "reward": rewards,
                "pscore": data["propensities"], "position": np.zeros(len(actions), dtype=int),
                "context": x}
    regression = RegressionModel(n_actions=n_actions, base_model=Ridge(alpha=1.0), fitting_method="normal")
    predicted, model_seconds = timed(lambda: regression.fit_predict(
        context=x, action=actions, reward=rewards, n_folds=2, random_state=0))
    ope = OffPolicyEvaluation(bandit_feedback=feedback, ope_estimators=[
        InverseProbabilityWeighting(), SelfNormalizedInverseProbabilityWeighting(), DirectMethod(),
        DoublyRobust(), SwitchDoublyRobust(lambda_=SWITCH_THRESHOLD)])
    estimates, estimate_seconds = timed(lambda: ope.estimate_policy_values(
        action_dist=distribution, estimated_rewards_by_reg_model=predicted))
    return {"action_dist_seconds": dist_seconds, "reward_model_seconds": model_seconds,
            "estimate_seconds": estimate_seconds,
            "total_seconds": dist_seconds + model_seconds + estimate_seconds,
            "estimates": {k: float(v) for k, v in estimates.items()}, "peak_rss_mb": peak_rss_mb()}


def peer_main(kind: str, path: str, options: str) -> None:
    data = dict(np.load(path))
    settings = json.loads(options)
    if kind == "vw":
        out = peer_vw(data, **settings)
    elif kind == "obp_learner":
        out = peer_obp_learner(data, **settings)
    else:
        out = peer_obp_evaluate(data)
    print(json.dumps(out))


def run_peer(kind: str, data: dict, **settings) -> dict:
    return peer_venv.run_peer(__file__, kind, data, **settings)


# ============================================================================ hfrl parts (own processes)
def part_learners(settings: dict) -> dict:
    import torch

    from hfrl.envs import ContextualRecommendationEnv, collect_logs
    from hfrl.learners import DirectMethodLearner, NeuralPolicyLearner

    torch.set_num_threads(2)
    env = ContextualRecommendationEnv(n_items=settings["items"], context_dim=N_FEATURES)
    logging = env.logging_policy(seed=0)
    logs, collect_seconds = timed(lambda: collect_logs(env, logging, settings["rows"], seed=1))
    columns = logs.attrs["context_columns"]
    test = env.sample_contexts(N_TEST_USERS, seed=2)
    out: dict = {"items": env.n_items, "features": N_FEATURES, "rows": len(logs),
                 "collect_seconds": collect_seconds, "test_users": N_TEST_USERS,
                 "value": {"optimal": env.optimal_value(test), "logging": env.policy_value(logging, test),
                           "uniform": env.policy_value(env.uniform_policy(), test)}, "train_seconds": {}}
    dm, seconds = timed(lambda: DirectMethodLearner().fit(logs, context_columns=columns,
                                                          n_actions=env.n_items))
    out["value"]["hfrl_direct_method"], out["train_seconds"]["hfrl_direct_method"] = (
        env.policy_value(dm.policy_, test), seconds)
    for objective in ("ips", "dr"):
        neural = NeuralPolicyLearner(hidden=(100,), objective=objective, n_epochs=settings["hfrl_epochs"],
                                     batch_size=1024, learning_rate=0.003, random_state=0)
        _, seconds = timed(lambda neural=neural: neural.fit(logs, context_columns=columns,
                                                            n_actions=env.n_items))
        name = f"hfrl_neural_policy_{objective}"
        out["value"][name] = env.policy_value(neural.policy_.greedy(), test)
        out["train_seconds"][name] = seconds

    data = {"contexts": logs[columns].to_numpy(), "actions": logs["action"].to_numpy(),
            "rewards": logs["reward"].to_numpy(), "propensities": logs["propensity"].to_numpy(),
            "test_contexts": test, "n_items": np.array(env.n_items)}
    peers = {"vw_cb_explore_adf": run_peer("vw", data, rows=min(settings["vw_rows"], len(logs))),
             "obp_nn_policy_learner": run_peer("obp_learner", data, rows=min(settings["obp_rows"], len(logs)),
                                               epochs=settings["epochs"])}
    for name, peer in peers.items():
        if "chosen" in peer:
            chosen = np.asarray(peer.pop("chosen"))
            out["value"][name] = float(env.expected_reward(test, chosen).mean())
            out["train_seconds"][name] = peer["train_seconds"]
        out[name] = peer
    return out


def evaluation_problem(rows: int, seed: int):
    from hfrl.envs import ContextualRecommendationEnv, collect_logs

    env = ContextualRecommendationEnv(n_items=80, context_dim=N_FEATURES)
    target = env.logging_policy(seed=7, noise=0.5, temperature=0.5, epsilon=0.05)
    logs = collect_logs(env, env.logging_policy(seed=0), rows, seed=seed)
    return env, target, logs


def part_evaluate(settings: dict) -> dict:
    from hfrl.ope import evaluate

    env, target, logs = evaluation_problem(settings["eval_rows"], seed=3)
    columns = logs.attrs["context_columns"]
    truth = env.policy_value(target, logs[columns].to_numpy())
    result, seconds = timed(lambda: evaluate(logs, target, ESTIMATORS, context_columns=columns,
                                             switch_threshold=SWITCH_THRESHOLD))
    out = {"rows": len(logs), "actions": env.n_items, "truth_on_logged_users": truth,
           "hfrl_seconds": seconds, "hfrl_peak_rss_mb": peak_rss_mb(),
           "hfrl_estimates": result["estimate"].to_dict()}
    data = {"contexts": logs[columns].to_numpy(), "actions": logs["action"].to_numpy(),
            "rewards": logs["reward"].to_numpy(), "propensities": logs["propensity"].to_numpy(),
            "weights": target.weights_, "bias": target.bias_, "temperature": np.array(target.temperature),
            "epsilon": np.array(target.epsilon), "n_actions": np.array(env.n_items)}
    out["obp"] = run_peer("obp_evaluate", data)
    if "total_seconds" in out["obp"]:
        out["speedup_vs_obp_total"] = out["obp"]["total_seconds"] / seconds
        out["speedup_vs_obp_estimates_only"] = out["obp"]["estimate_seconds"] / seconds
    return out


def write_file(rows: int, path: Path) -> None:
    """The logs of ``evaluation_problem`` as Parquet, written in chunks of 1M rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfrl.envs import ContextualRecommendationEnv, collect_logs

    env = ContextualRecommendationEnv(n_items=80, context_dim=N_FEATURES)
    logging = env.logging_policy(seed=0)
    writer = None
    chunk = 1_000_000
    for i, start in enumerate(range(0, rows, chunk)):
        logs = collect_logs(env, logging, min(chunk, rows - start), seed=100 + i)
        logs = logs.drop(columns=["timestamp", "session_id", "done"])
        table = pa.Table.from_pandas(logs, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def part_file(settings: dict) -> dict:
    from hfrl.ope import evaluate

    env, target, _ = evaluation_problem(10, seed=3)
    path = Path(settings["path"])
    result, seconds = timed(lambda: evaluate(str(path), target, ESTIMATORS, backend="duckdb",
                                             context_columns=env.context_columns,
                                             switch_threshold=SWITCH_THRESHOLD))
    return {"rows": int(result["n_rows"].iloc[0]), "file_mb": path.stat().st_size / 2**20,
            "hfrl_seconds": seconds, "hfrl_peak_rss_mb": peak_rss_mb(),
            "hfrl_estimates": result["estimate"].to_dict()}


PARTS = {"learners": part_learners, "evaluate": part_evaluate, "file": part_file}


def run_part(name: str, settings: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--part", name, json.dumps(settings)],
                          capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        return {"failed": done.stderr.strip()[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test only")
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged rows for the learners")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of OBP's policy network")
    parser.add_argument("--hfrl-epochs", type=int, default=None,
                        help="epochs of hfrl's policy networks (default --epochs; more is fair while its "
                             "training time stays below the peers')")
    parser.add_argument("--vw-rows", type=int, default=50_000)
    parser.add_argument("--obp-rows", type=int, default=1_000_000)
    parser.add_argument("--eval-rows", type=int, default=1_000_000)
    parser.add_argument("--file-rows", type=int, default=10_000_000)
    parser.add_argument("--parts", default="learners,evaluate,file")
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--part", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(*args.peer)
        return
    if args.part:
        print(json.dumps(PARTS[args.part[0]](json.loads(args.part[1])), default=float))
        return
    if args.quick:
        args.rows, args.items, args.vw_rows, args.obp_rows = 5_000, 50, 500, 5_000
        args.eval_rows, args.file_rows, args.epochs = 20_000, 50_000, 1
    settings = {"rows": args.rows, "items": args.items, "epochs": args.epochs,
                "hfrl_epochs": args.hfrl_epochs or args.epochs, "vw_rows": args.vw_rows,
                "obp_rows": args.obp_rows, "eval_rows": args.eval_rows}
    figures: dict = {"benchmark": "bench_contexts", "machine": "2 cores, 24 GiB (shared)",
                     "load_average_1m_start": os.getloadavg()[0], "settings": {**settings,
                                                                              "file_rows": args.file_rows}}
    parts = args.parts.split(",")
    if "learners" in parts:
        learners = figures["learners"] = run_part("learners", settings)
        values, times = learners.get("value", {}), learners.get("train_seconds", {})
        ours = max((k for k in values if k.startswith("hfrl_")), key=values.get, default=None)
        theirs = [k for k in times if not k.startswith("hfrl_")]
        if ours and theirs:
            best_peer = max(theirs, key=values.get)
            figures["learners_target_met"] = bool(values[ours] >= values[best_peer]
                                                  and times[ours] <= times[best_peer])
            figures["learners_best"] = {"hfrl": ours, "peer": best_peer}
    if "evaluate" in parts:
        figures["evaluate"] = run_part("evaluate", settings)
    if "file" in parts:
        DATA.mkdir(exist_ok=True)
        path = DATA / f"contexts_{args.file_rows}.parquet"
        if not path.exists():
            _, figures["file_write_seconds"] = timed(lambda: write_file(args.file_rows, path))
        figures["file"] = run_part("file", {"path": str(path)})
    figures["load_average_1m_end"] = os.getloadavg()[0]
    print(json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
