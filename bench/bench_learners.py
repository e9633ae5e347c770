"""Benchmark of hfrl.learners; prints ONE JSON line of figures.

What it measures (Recommendation-v0 at 1,000 states x 500 items unless said otherwise):

* env steps/s: the batch API (``step_batch`` on 65,536 users) vs ``env.step`` one at a time;
* tabular Q-learning updates/s, env steps included: vectorised (``n_envs=65,536``) vs the classic
  one-step Gymnasium loop (``n_envs=1``) of the same learner on the same (unwrapped) env;
* the fraction of the exact optimal value reached by every learner (online: Q-learning, SARSA,
  Expected SARSA; offline from uniform logs: fitted Q iteration, direct method, IPS, conservative);
* fitted Q iteration: logged transitions per second per sweep (and the one-off aggregation);
* bandits vs MABWiser on one 80-armed Bernoulli bandit: single-decision ``update`` vs MABWiser's
  ``partial_fit`` with one row, the online select+update loop with its regret, and batch ``fit``
  on 1M logged decisions with the regret of the fitted model. MABWiser runs in a subprocess from
  ``bench/.venv-peers`` (created from ``bench/requirements-peers.txt`` when missing); it is never
  a dependency of hfrl.

Usage: ``.venv/bin/python bench/bench_learners.py`` (about 2 minutes on 2 cores);
``--quick`` runs tiny sizes as a smoke test (figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEER_VENV = HERE / ".venv-peers"
PEER_REQUIREMENTS = HERE / "requirements-peers.txt"
N_ARMS = 80
BANDIT_ALGORITHMS = ("epsilon_greedy", "ucb1", "thompson")
N_PREDICTIONS = 2000


# ============================================================================ MABWiser side (peer venv)
def peer_main(data_path: str) -> None:
    """Runs inside bench/.venv-peers: only numpy and mabwiser, never hfrl."""
    from mabwiser.mab import MAB, LearningPolicy

    data = np.load(data_path)
    means, gaps = data["means"], data["means"].max() - data["means"]
    arms = list(range(len(means)))
    policies = {"epsilon_greedy": LearningPolicy.EpsilonGreedy(epsilon=0.1),
                "ucb1": LearningPolicy.UCB1(alpha=1.0), "thompson": LearningPolicy.ThompsonSampling()}
    out: dict[str, dict[str, float]] = {}
    single_actions = data["single_actions"].tolist()
    single_rewards = data["single_rewards"].tolist()
    n_single = int(data["n_single_peer"])
    for name, policy in policies.items():
        row: dict[str, float] = {}
        model = MAB(arms, policy, seed=0)
        model.fit(np.array(arms), np.zeros(len(arms)))  # MABWiser needs a fit before partial_fit
        started = time.perf_counter()
        for i in range(n_single):
            model.partial_fit([single_actions[i]], [single_rewards[i]])
        row["update_per_s"] = n_single / (time.perf_counter() - started)

        draws = data["online_draws"]  # (seeds, horizon, arms) uniforms shared with hfrl
        regrets, seconds = [], 0.0
        for seed in range(draws.shape[0]):
            model = MAB(arms, policy, seed=seed)
            model.fit(np.array(arms), (draws[seed, 0] < means).astype(float))  # one pull per arm
            total = 0.0
            started = time.perf_counter()
            for t in range(1, draws.shape[1]):
                arm = model.predict()
                model.partial_fit([arm], [float(draws[seed, t, arm] < means[arm])])
                total += gaps[arm]
            seconds += time.perf_counter() - started
            regrets.append(total + gaps.sum())
        row["online_decisions_per_s"] = draws.shape[0] * (draws.shape[1] - 1) / seconds
        row["online_regret"] = float(np.mean(regrets))

        actions, rewards = data["batch_actions"], data["batch_rewards"]
        timings = []
        for _ in range(3):
            model = MAB(arms, policy, seed=0)
            started = time.perf_counter()
            model.fit(actions, rewards)
            timings.append(time.perf_counter() - started)
        row["batch_fit_seconds"] = min(timings)
        if name == "epsilon_greedy":  # exact: (1 - eps) * gap of the greedy arm + eps * mean gap
            fitted = model._imp.arm_to_expectation
            greedy = max(arms, key=lambda arm: fitted[arm])
            row["batch_regret_per_decision"] = float(0.9 * gaps[greedy] + 0.1 * gaps.mean())
            row["batch_regret_se"] = 0.0
        else:  # UCB1 is deterministic, Thompson sampling is averaged over draws
            picked = gaps[[model.predict() for _ in range(N_PREDICTIONS)]]
            row["batch_regret_per_decision"] = float(picked.mean())
            row["batch_regret_se"] = float(picked.std() / np.sqrt(picked.size))
        out[name] = row
    print(json.dumps(out))


def peer_python() -> tuple[str | None, str]:
    """Path of the peer venv's python (created on first use), or None and why not."""
    python = PEER_VENV / "bin" / "python"
    try:
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(PEER_VENV)
        check = subprocess.run([str(python), "-c", "import mabwiser"], capture_output=True)
        if check.returncode != 0:
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)],
                           check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not prepare {PEER_VENV}: {exc}"
    return str(python), ""


# ============================================================================ hfrl side
def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def best_of(repeats: int, function):
    """Run ``function`` ``repeats`` times: its (deterministic) result, fastest wall and CPU times.

    The machine is shared: the fastest run is the one least disturbed by other processes, and
    the CPU time of this process (``time.process_time``) shows what the code costs on a core it
    gets to itself.
    """
    runs = []
    for _ in range(repeats):
        cpu_started = time.process_time()
        result, seconds = timed(function)
        runs.append((result, seconds, time.process_time() - cpu_started))
    return runs[0][0], min(run[1] for run in runs), min(run[2] for run in runs)


def bench_env_and_q_learning(env, gamma: float, n_envs: int, n_steps: int, n_one_step: int,
                             repeats: int) -> dict:
    from hfrl.learners import QLearning

    def env_batch_run() -> int:
        rng = np.random.default_rng(0)
        states = env.reset_batch(n_envs, rng)
        actions = rng.integers(0, env.n_actions, n_envs)
        rounds = max(1, n_steps // n_envs // 4)
        for _ in range(rounds):
            _, next_states, terminated = env.step_batch(states, actions, rng)
            next_states[terminated] = env.reset_batch(int(terminated.sum()), rng)
            states = next_states
        return rounds * n_envs

    def env_one_run() -> int:
        env.reset(seed=0)
        for a in np.random.default_rng(0).integers(0, env.n_actions, n_one_step).tolist():
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return n_one_step

    done, seconds, cpu = best_of(repeats, env_batch_run)
    env_batch, env_batch_cpu = done / seconds, done / cpu
    done, seconds, cpu = best_of(repeats, env_one_run)
    env_one, env_one_cpu = done / seconds, done / cpu

    params = dict(gamma=gamma, learning_rate=0.1, epsilon=0.5, epsilon_final=0.02, random_state=0)
    vectorised, seconds, cpu = best_of(
        repeats, lambda: QLearning(n_envs=n_envs, **params).fit(env, n_steps=n_steps))
    q_batch, q_batch_cpu = vectorised.n_steps_ / seconds, vectorised.n_steps_ / cpu
    one_step, seconds_one, cpu_one = best_of(
        repeats, lambda: QLearning(n_envs=1, **params).fit(env, n_steps=n_one_step))
    q_one, q_one_cpu = one_step.n_steps_ / seconds_one, one_step.n_steps_ / cpu_one
    return {"env_steps_per_s_vectorised": env_batch, "env_steps_per_s_one_step": env_one,
            "env_speedup": env_batch / env_one,
            "q_updates_per_s_vectorised": q_batch, "q_updates_per_s_one_step": q_one,
            "q_speedup": q_batch / q_one, "q_learning_steps": vectorised.n_steps_,
            "q_learning_seconds": seconds, "timing": f"best of {repeats} runs",
            "per_cpu_second": {"env_steps_vectorised": env_batch_cpu, "env_steps_one_step": env_one_cpu,
                               "q_updates_vectorised": q_batch_cpu, "q_updates_one_step": q_one_cpu,
                               "q_speedup": q_batch_cpu / q_one_cpu},
            "_q_policy": vectorised.policy_}


def bench_value_fractions(env, gamma: float, optimal: float, q_policy, n_envs: int, n_steps: int,
                          logs) -> dict:
    from hfrl.learners import (
        ConservativeLearner,
        DirectMethodLearner,
        ExpectedSarsa,
        FittedQIteration,
        IPSLearner,
        Sarsa,
    )

    fractions = {"q_learning": env.policy_value(q_policy, gamma) / optimal}
    params = dict(gamma=gamma, learning_rate=0.1, epsilon=0.5, epsilon_final=0.02, n_envs=n_envs,
                  random_state=0)
    for name, cls in (("sarsa", Sarsa), ("expected_sarsa", ExpectedSarsa)):
        fractions[name] = env.policy_value(cls(**params).fit(env, n_steps=n_steps).policy_, gamma) / optimal
    fqi = FittedQIteration(gamma=gamma).fit(logs, n_states=env.n_states, n_actions=env.n_actions)
    fractions["fitted_q_iteration"] = env.policy_value(fqi.policy_, gamma) / optimal
    for name, learner in (("fitted_q_iteration_pessimism_2", FittedQIteration(gamma=gamma, pessimism=2.0)),
                          ("direct_method", DirectMethodLearner()), ("ips", IPSLearner()),
                          ("conservative_fqi", ConservativeLearner(FittedQIteration(gamma=gamma)))):
        learner.fit(logs, n_states=env.n_states, n_actions=env.n_actions)
        fractions[name] = env.policy_value(learner.policy_, gamma) / optimal
    from hfrl.envs import logging_policy

    fractions["uniform_logging_policy"] = env.policy_value(logging_policy(env, "uniform"), gamma) / optimal
    fqi_figures = {"fqi_logged_transitions": fqi.n_transitions_, "fqi_sweeps": fqi.n_iterations_,
                   "fqi_sweep_seconds": fqi.sweep_seconds_,
                   "fqi_transitions_per_s_per_sweep": fqi.n_transitions_ / fqi.sweep_seconds_,
                   "fqi_distinct_transitions": int(fqi_nnz(logs, env)),
                   "fqi_aggregation_rows_per_s": fqi.n_transitions_ / fqi.statistics_seconds_}
    return {"value_fraction_of_optimal": fractions, **fqi_figures}


def fqi_nnz(logs, env) -> int:
    keep = ~logs["done"].to_numpy()
    pairs = (logs["state"].to_numpy()[keep] * env.n_actions + logs["action"].to_numpy()[keep]) * env.n_states
    return np.unique(pairs + logs["next_state"].to_numpy()[keep]).size


def make_bandit(name: str, seed: int):
    from hfrl.learners import UCB1, EpsilonGreedy, ThompsonSampling

    if name == "epsilon_greedy":
        return EpsilonGreedy(epsilon=0.1, n_actions=N_ARMS, random_state=seed)
    if name == "ucb1":
        return UCB1(alpha=1.0, n_actions=N_ARMS, random_state=seed)
    return ThompsonSampling(n_actions=N_ARMS, random_state=seed)


def bench_bandits(data: dict) -> dict:
    means = data["means"]
    gaps = means.max() - means
    single_actions = data["single_actions"].tolist()
    single_rewards = data["single_rewards"].tolist()
    out: dict[str, dict[str, float]] = {}
    for name in BANDIT_ALGORITHMS:
        row: dict[str, float] = {}
        bandit = make_bandit(name, 0)
        update = bandit.update
        started = time.perf_counter()
        for a, r in zip(single_actions, single_rewards, strict=True):
            update(a, r)
        row["update_per_s"] = len(single_actions) / (time.perf_counter() - started)

        draws = data["online_draws"]
        regrets, seconds = [], 0.0
        for seed in range(draws.shape[0]):
            bandit = make_bandit(name, seed)
            bandit.fit(np.arange(N_ARMS), (draws[seed, 0] < means).astype(float))  # one pull per arm
            select, update = bandit.select, bandit.update
            total = 0.0
            started = time.perf_counter()
            for t in range(1, draws.shape[1]):
                arm = select()
                update(arm, float(draws[seed, t, arm] < means[arm]))
                total += gaps[arm]
            seconds += time.perf_counter() - started
            regrets.append(total + gaps.sum())
        row["online_decisions_per_s"] = draws.shape[0] * (draws.shape[1] - 1) / seconds
        row["online_regret"] = float(np.mean(regrets))

        timings = []
        for _ in range(3):
            bandit = make_bandit(name, 0)
            started = time.perf_counter()
            bandit.fit(data["batch_actions"], data["batch_rewards"])
            timings.append(time.perf_counter() - started)
        row["batch_fit_seconds"] = min(timings)
        if name == "epsilon_greedy":  # exact: (1 - eps) * gap of the greedy arm + eps * mean gap
            greedy = int(bandit.means_[0].argmax())
            row["batch_regret_per_decision"] = float(0.9 * gaps[greedy] + 0.1 * gaps.mean())
            row["batch_regret_se"] = 0.0
        else:
            picked = gaps[[bandit.select() for _ in range(N_PREDICTIONS)]]
            row["batch_regret_per_decision"] = float(picked.mean())
            row["batch_regret_se"] = float(picked.std() / np.sqrt(picked.size))
        out[name] = row
    return out


def bandit_data(quick: bool) -> dict:
    rng = np.random.default_rng(2024)
    means = np.sort(rng.beta(2.0, 18.0, N_ARMS))
    means[-1] = means[-2] + 0.03  # one clearly best arm
    means = rng.permutation(means)
    n_single = 20_000 if quick else 300_000
    n_batch = 100_000 if quick else 1_000_000
    seeds, horizon = (1, 300) if quick else (3, 3000)
    single_actions = rng.integers(0, N_ARMS, n_single)
    batch_actions = rng.integers(0, N_ARMS, n_batch)  # uniform logging
    return {
        "means": means,
        "single_actions": single_actions,
        "single_rewards": (rng.random(n_single) < means[single_actions]).astype(np.float64),
        "n_single_peer": np.array(500 if quick else 3000),
        "online_draws": rng.random((seeds, horizon, N_ARMS)),
        "batch_actions": batch_actions,
        "batch_rewards": (rng.random(n_batch) < means[batch_actions]).astype(np.float64),
    }


def run_peer(data: dict) -> tuple[dict | None, str]:
    python, why = peer_python()
    if python is None:
        return None, why
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bandit.npz")
        np.savez(path, **data)
        done = subprocess.run([python, __file__, "--peer-mabwiser", path], capture_output=True,
                              text=True, timeout=1800)
    if done.returncode != 0:
        return None, f"MABWiser run failed: {done.stderr.strip()[-500:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test only")
    parser.add_argument("--peer-mabwiser", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_mabwiser:
        peer_main(args.peer_mabwiser)
        return

    import gymnasium as gym

    import hfrl.envs
    from hfrl.envs import collect_logs

    quick = args.quick
    gamma = 0.9
    sizes = dict(n_segments=8, n_categories=4, n_items=50) if quick else dict(
        n_segments=40, n_categories=24, n_items=500)
    env = gym.make("hfrl/Recommendation-v0", **sizes).unwrapped
    n_envs = 4096 if quick else 65_536
    n_steps = 400_000 if quick else 30_000_000
    n_one_step = 5_000 if quick else 30_000
    optimal_policy, optimal_seconds = timed(lambda: env.optimal_policy(gamma))
    optimal = env.policy_value(optimal_policy, gamma)

    load_before = os.getloadavg()[0]
    figures: dict = {"machine": "2 cores, 24 GiB (shared)", "load_average_1m_start": load_before,
                     "n_states": env.n_states, "n_actions": env.n_actions, "gamma": gamma,
                     "optimal_value": optimal, "optimal_policy_seconds": optimal_seconds}
    q = bench_env_and_q_learning(env, gamma, n_envs, n_steps, n_one_step, 1 if quick else 3)
    q_policy = q.pop("_q_policy")
    figures.update(q)

    logs, seconds = timed(lambda: collect_logs(env, hfrl.envs.logging_policy(env, "uniform"),
                                               200_000 if quick else 5_000_000, seed=0))
    figures["collect_logs_rows_per_s"] = len(logs) / seconds
    figures.update(bench_value_fractions(env, gamma, optimal, q_policy, n_envs, n_steps, logs))
    del logs

    data = bandit_data(quick)
    ours = bench_bandits(data)
    peer, why = run_peer(data)
    bandits: dict = {"n_arms": N_ARMS, "hfrl": ours, "mabwiser": peer}
    if peer is None:
        bandits["mabwiser_missing"] = why
    else:
        bandits["ratios"] = {name: {
            "update_speedup": ours[name]["update_per_s"] / peer[name]["update_per_s"],
            "online_speedup": ours[name]["online_decisions_per_s"] / peer[name]["online_decisions_per_s"],
            "batch_fit_speedup": peer[name]["batch_fit_seconds"] / ours[name]["batch_fit_seconds"],
        } for name in BANDIT_ALGORITHMS}
    figures["bandits"] = bandits

    targets = {
        "q_vectorised_at_least_10M_updates_per_s": figures["q_updates_per_s_vectorised"] >= 10e6,
        "q_vectorised_at_least_50x_one_step": figures["q_speedup"] >= 50,
        "fqi_at_least_50M_transitions_per_s_per_sweep": figures["fqi_transitions_per_s_per_sweep"] >= 50e6,
        "bandit_update_at_least_100k_per_s": all(ours[n]["update_per_s"] >= 1e5 for n in BANDIT_ALGORITHMS),
    }
    if peer is not None:
        ratios = bandits["ratios"]
        targets["bandit_update_at_least_25x_mabwiser"] = all(
            ratios[n]["update_speedup"] >= 25 for n in BANDIT_ALGORITHMS)
        targets["bandit_batch_fit_at_least_2x_mabwiser"] = all(
            ratios[n]["batch_fit_speedup"] >= 2 for n in BANDIT_ALGORITHMS)
        # equal within two standard errors of the difference (Thompson draws), or lower
        targets["bandit_batch_regret_equal_or_lower"] = all(
            ours[n]["batch_regret_per_decision"] <= peer[n]["batch_regret_per_decision"]
            + 2.0 * float(np.hypot(ours[n]["batch_regret_se"], peer[n]["batch_regret_se"])) + 1e-12
            for n in BANDIT_ALGORITHMS)
    figures["targets_met"] = targets
    figures["load_average_1m_end"] = os.getloadavg()[0]
    print(json.dumps(figures, default=float))


if __name__ == "__main__":
    sys.exit(main())
