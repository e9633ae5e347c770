"""The Open Bandit Dataset end to end: OPE check, policy learning with the HF blend, which estimator to trust.

Usage::

    python bench/bench_obd.py --data /work/shared/data/obd [--replications 100] [--seed 0]

Prints one JSON line of figures, then a Markdown report (the tables of ``examples/obd.md``).
Sections:

1. Loading: ``hfrl.datasets.load_obd`` (DuckDB) against a plain pandas ``read_csv`` +
   ``CategoryEncoder`` peer on the same file (time, and the same state ids).
2. OPE check: the value of Bernoulli TS (its action distribution per position from the Beta
   priors in ``prior_bts.yaml`` by Monte Carlo, and as the empirical action frequency of the BTS
   logs) estimated from the uniform-random logs by every estimator, against the BTS logs'
   on-policy mean click (with its binomial CI).
   And at scale (``--scale`` copies of the random file): time and own-process peak RSS of both.
3. Policy learning on the random logs, time-ordered train / validation / test: HF of clicks per
   (user, position) state, offline learners (DM, IPS, LinUCB on the one-hot state and mean
   user-item affinities), the blend of the DM learner with HF with alpha tuned on validation by
   SNIPS and by the lower-bound criterion, and each policy's estimated CTR on test with 95% CI
   and the share of its mass on (state, item) pairs the test split never logged. Repeated with
   position-only states, a context-free policy that the test split can evaluate.
4. Which estimator to trust: a simulator fitted to the random logs (``hfrl.envs.fit_env``), the
   uniform logging design replayed in it ``--replications`` times, each estimator's bias, RMSE and
   CI coverage against the replica's exact values.
5. The deployment verdict (``hfrl.ope.compare``) for each blend vs the uniform logging policy on
   test (with the estimator the replica says to trust when its intervals held up, else SNIPS).

Pieces whose upstream module is missing are reported as missing, never faked.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hfrl.data import CategoryEncoder
from hfrl.datasets import USER_FEATURE_COLUMNS, bts_action_distribution, load_obd
from hfrl.policies import TabularPolicy

STATE_COLUMNS = [*USER_FEATURE_COLUMNS, "position"]
Z95 = 1.959963984540054


def mean_ci(values: np.ndarray) -> dict[str, float]:
    """On-policy value: the mean with its normal 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"estimate": mean, "std_error": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se,
            "n_rows": int(values.size)}


# --- 1. loading ------------------------------------------------------------------------------------


def load_section(data: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    start = time.perf_counter()
    random_logs = load_obd(data, "random", state_columns=STATE_COLUMNS, include_affinities=True)
    load_seconds = time.perf_counter() - start
    bts_logs = load_obd(data, "bts", state_columns=STATE_COLUMNS)

    start = time.perf_counter()
    raw = pd.read_csv(data / "random" / "all" / "all.csv", index_col=0)
    peer_states = CategoryEncoder(STATE_COLUMNS).fit_transform(raw)
    peer_seconds = time.perf_counter() - start
    figures = {
        "rows_random": len(random_logs),
        "rows_bts": len(bts_logs),
        "clicks_random": int(random_logs["reward"].sum()),
        "clicks_bts": int(bts_logs["reward"].sum()),
        "n_states": int(random_logs.attrs["n_states"]),
        "n_actions": int(random_logs.attrs["n_actions"]),
        "load_seconds": round(load_seconds, 3),
        "pandas_peer_seconds": round(peer_seconds, 3),
        "states_equal_to_peer": bool(np.array_equal(peer_states, random_logs["state"].to_numpy())),
    }
    return random_logs, bts_logs, figures


_SCALE_CHILD = """
import sys, time
from pathlib import Path
root, how = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if how == "load_obd":
    from hfrl.datasets import load_obd
    frame = load_obd(root, "random", state_columns={state_columns!r})
    states = frame["state"].to_numpy()
else:
    import pandas as pd
    from hfrl.data import CategoryEncoder
    frame = pd.read_csv(root / "random" / "all" / "all.csv", index_col=0)
    states = CategoryEncoder({state_columns!r}).fit_transform(frame)
seconds = time.perf_counter() - start
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(seconds, peak_kb / 1024, int(states.sum()))
"""


def scale_section(data: Path, copies: int) -> dict:
    """``load_obd`` vs pandas on the random file repeated ``copies`` times: time and peak RSS.

    Each reader runs in its own process and reports its own peak (``VmHWM``, not inherited).
    """
    import subprocess
    import tempfile

    import duckdb

    with tempfile.TemporaryDirectory(prefix="hfrl-obd-scale-") as scratch:
        root = Path(scratch)
        (root / "random" / "all").mkdir(parents=True)
        source = str(data / "random" / "all" / "all.csv").replace("'", "''")
        target = str(root / "random" / "all" / "all.csv").replace("'", "''")
        connection = duckdb.connect()
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_progress_bar = false")
        connection.execute(
            f"COPY (SELECT s.* FROM range({int(copies)}) AS r, read_csv('{source}') AS s) "
            f"TO '{target}' (HEADER)"
        )
        connection.close()
        size_mb = (root / "random" / "all" / "all.csv").stat().st_size / 2**20
        child = _SCALE_CHILD.format(state_columns=STATE_COLUMNS)
        results = {}
        for how in ("load_obd", "pandas"):
            done = subprocess.run([sys.executable, "-c", child, str(root), how], capture_output=True,
                                  text=True, check=True)
            seconds, peak_mb, checksum = done.stdout.strip().splitlines()[-1].split()
            results[how] = {"seconds": round(float(seconds), 2), "peak_rss_mb": round(float(peak_mb)),
                            "state_checksum": int(checksum)}
    rows = copies * 10_000
    return {
        "rows": rows,
        "csv_mb": round(size_mb),
        **{f"{how}_{key}": value for how, r in results.items() for key, value in r.items()},
        "same_states": results["load_obd"]["state_checksum"] == results["pandas"]["state_checksum"],
        "speedup": round(results["pandas"]["seconds"] / results["load_obd"]["seconds"], 2),
        "memory_ratio": round(results["pandas"]["peak_rss_mb"] / results["load_obd"]["peak_rss_mb"], 2),
    }


# --- 2. the BTS policy and the OPE check ------------------------------------------------------------


def state_positions(logs: pd.DataFrame) -> np.ndarray:
    """The 1-based position of every state id (0 for the unknown bucket)."""
    encoder = CategoryEncoder.from_dict(logs.attrs["state_encoder"])
    decoded = encoder.inverse_transform(np.arange(encoder.n_ids))["position"]
    return pd.to_numeric(decoded, errors="coerce").fillna(0).to_numpy(dtype=np.int64)


def per_position_policy(logs: pd.DataFrame, by_position: np.ndarray, name: str) -> TabularPolicy:
    """A state policy that plays ``by_position[k - 1]`` in every state at position k."""
    positions = state_positions(logs)
    table = np.where(
        (positions > 0)[:, None], by_position[np.clip(positions - 1, 0, None)], by_position.mean(axis=0)
    )
    return TabularPolicy(table / table.sum(axis=1, keepdims=True), {"name": name})


def bts_tables(data: Path, bts_logs: pd.DataFrame, n_actions: int, seed: int) -> dict[str, np.ndarray]:
    tables = {}
    prior_file = data / "prior_bts.yaml"
    if prior_file.is_file():
        import yaml

        prior = yaml.safe_load(prior_file.read_text())["all"]
        tables["bts_prior_mc"] = bts_action_distribution(
            prior["alpha"], prior["beta"], n_positions=3, n_samples=100_000, random_state=seed
        )
    counts = np.zeros((3, n_actions))
    np.add.at(counts, (bts_logs["position"].to_numpy() - 1, bts_logs["action"].to_numpy()), 1.0)
    tables["bts_empirical"] = counts / counts.sum(axis=1, keepdims=True)
    return tables


def ope_section(random_logs, bts_logs, tables, seed: int) -> tuple[dict, dict[str, TabularPolicy]]:
    from hfrl.ope import ESTIMATORS, evaluate

    truth = mean_ci(bts_logs["reward"].to_numpy())
    out = {"truth": truth, "policies": {}}
    policies = {}
    for name, by_position in tables.items():
        policy = per_position_policy(random_logs, by_position, name)
        policies[name] = policy
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate(random_logs, policy, estimators=ESTIMATORS, level=0.95, n_bootstrap=1000,
                              random_state=seed)
        rows = {}
        for estimator, row in result.iterrows():
            rows[estimator] = {
                "estimate": float(row["estimate"]),
                "ci_low": float(row["ci_low"]),
                "ci_high": float(row["ci_high"]),
                "relative_error": float((row["estimate"] - truth["estimate"]) / truth["estimate"]),
                "covers_truth": bool(row["ci_low"] <= truth["estimate"] <= row["ci_high"]),
                "boot_ci_low": float(row["boot_ci_low"]),
                "boot_ci_high": float(row["boot_ci_high"]),
                "ess": float(row["ess"]),
            }
        out["policies"][name] = rows
    return out, policies


# --- 3. policy learning on time-ordered splits ------------------------------------------------------


def time_splits(logs: pd.DataFrame, fractions=(0.6, 0.2, 0.2)):
    try:
        from hfrl.tune import split_logs
    except ImportError:
        split_logs = None
    if split_logs is not None:
        parts = split_logs(logs, fractions=fractions, by="time")
        for part in parts:
            part.attrs = dict(logs.attrs)
        return tuple(parts), "hfrl.tune.split_logs(by='time'), 60/20/20"
    order = np.argsort(logs["timestamp"].to_numpy(), kind="stable")
    cuts = np.cumsum(np.round(np.array(fractions[:-1]) * len(logs)).astype(int))
    parts = [logs.iloc[np.sort(index)].reset_index(drop=True) for index in np.split(order, cuts)]
    for part in parts:
        part.attrs = dict(logs.attrs)
    return tuple(parts), "time quantiles (split_logs not available)"


def evaluate_split(test: pd.DataFrame, policy: TabularPolicy) -> dict:
    from hfrl.ope import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(test, policy, estimators=("snips", "ips", "dr"), level=0.95)
    row = result.loc["snips"]
    return {
        "estimator": "snips",
        "estimate": float(row["estimate"]),
        "ci_low": float(row["ci_low"]),
        "ci_high": float(row["ci_high"]),
        "ess": float(row["ess"]),
        # mass on pairs the test rows never show: proven violations plus merely unobserved pairs
        "unlogged_mass": float(row["support_violation_share"] + row.get("unobserved_share", 0.0)),
        "support_violation": float(row["support_violation_share"]),
        "ips": float(result.loc["ips", "estimate"]),
        "dr": float(result.loc["dr", "estimate"]),
    }


def state_features(train: pd.DataFrame, n_states: int, n_actions: int) -> np.ndarray:
    """Per-state LinUCB features: a bias, one-hot user features and position, mean affinities.

    The affinities vary between users who share a state, so a state gets the mean affinity
    vector of its training rows (the pooled mean when it has none).
    """
    encoder = CategoryEncoder.from_dict(train.attrs["state_encoder"])
    decoded = encoder.inverse_transform(np.arange(n_states))
    blocks = [np.ones((n_states, 1))]
    for column in encoder.columns:
        values = decoded[column].fillna("<unknown>").to_numpy(dtype=object)
        levels = sorted(set(values) - {"<unknown>"})
        blocks.append((values[:, None] == np.array(levels, dtype=object)[None, :]).astype(np.float64))
    affinity_names = [f"user-item_affinity_{i}" for i in range(n_actions)]
    affinities = train[affinity_names].to_numpy(dtype=np.float64)
    sums = np.zeros((n_states, n_actions))
    np.add.at(sums, train["state"].to_numpy(), affinities)
    counts = np.bincount(train["state"].to_numpy(), minlength=n_states)[:, None]
    pooled = affinities.mean(axis=0)
    blocks.append(np.where(counts > 0, sums / np.maximum(counts, 1), pooled))
    return np.hstack(blocks)


def learning_section(random_logs, bts_logs, policies, seed) -> tuple[dict, dict[str, TabularPolicy]]:
    n_states, n_actions = random_logs.attrs["n_states"], random_logs.attrs["n_actions"]
    (train, valid, test), split_method = time_splits(random_logs)
    out: dict = {
        "split": split_method,
        "rows": [len(train), len(valid), len(test)],
        "clicks": [int(train["reward"].sum()), int(valid["reward"].sum()), int(test["reward"].sum())],
        "missing": [],
    }
    start_test = test["timestamp"].min()
    bts_test = bts_logs[bts_logs["timestamp"] >= start_test]
    on_policy = {"estimator": "on-policy mean"}
    results = {
        "uniform random (on-policy)": {**mean_ci(test["reward"].to_numpy()), **on_policy},
        "BTS (on-policy, same days)": {**mean_ci(bts_test["reward"].to_numpy()), **on_policy},
    }
    if "bts_prior_mc" in policies:
        results["BTS (prior MC) off-policy"] = evaluate_split(test, policies["bts_prior_mc"])
    learned: dict[str, TabularPolicy] = {}

    try:
        from hfrl.frequencies import HistoricalFrequency

        hf = HistoricalFrequency(kind="share", prior_strength=1.0, group_column="position").fit(
            train, n_states=n_states, n_actions=n_actions
        )
        learned["HF only"] = TabularPolicy(hf.probabilities_, {"name": "hf"})
    except ImportError as exc:
        out["missing"].append(f"HistoricalFrequency: {exc}")
        hf = None

    try:
        from hfrl.learners import DirectMethodLearner, IPSLearner, LinUCB

        for name, learner in (("DM learner", DirectMethodLearner()), ("IPS learner", IPSLearner())):
            learned[name] = learner.fit(train, n_states=n_states, n_actions=n_actions).policy_
        features = state_features(train, n_states, n_actions)
        linucb = LinUCB(alpha=0.0, ridge=1.0, features=features, n_actions=n_actions, random_state=seed)
        linucb.fit(train["action"].to_numpy(), train["reward"].to_numpy(), train["state"].to_numpy())
        learned["LinUCB (state one-hot + mean affinities)"] = TabularPolicy.from_q_values(
            features @ linucb.theta_.T, "greedy"
        )
        out["linucb_features"] = int(features.shape[1])
    except ImportError as exc:
        out["missing"].append(f"offline learners: {exc}")

    # The blend's base learner is fixed in advance (the direct method): with ~7 validation clicks,
    # picking the learner with the best validation estimate would pick noise. The validation
    # estimates are still reported, so "LinUCB where it helps" can be judged.
    candidates = [n for n in learned if n != "HF only"]
    validation = {name: evaluate_split(valid, learned[name]) for name in candidates}
    out["validation"] = validation
    base_name = "DM learner" if "DM learner" in learned else (candidates[0] if candidates else None)
    out["base_learner"] = base_name
    if hf is not None and base_name is not None:
        try:
            from hfrl.tune import tune_alpha

            for criterion in ("estimate", "lower_bound"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tuned = tune_alpha(learned[base_name], hf, valid, estimator="snips", alphas="auto",
                                       criterion=criterion)
                out[f"alpha_{criterion}"] = float(tuned.alpha)
                learned[f"blend, alpha by {criterion}"] = tuned.policy
        except ImportError as exc:
            out["missing"].append(f"tune_alpha: {exc}")
    for name, policy in learned.items():
        results[name] = evaluate_split(test, policy)
    out["test"] = results
    return out, {**learned, "_test": test}  # type: ignore[dict-item]


# --- 3b. users described by features: a contextual learner and HF by segment ---------------------


def context_frame(logs: pd.DataFrame, train: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Numeric context columns: one-hot user features (levels seen in training), one-hot position,
    and the 80 user-item affinities."""
    blocks, names = [], []
    for column in [*USER_FEATURE_COLUMNS, "position"]:
        levels = sorted(train[column].astype(str).unique())
        values = logs[column].astype(str).to_numpy()
        for i, level in enumerate(levels):
            blocks.append((values == level).astype(np.float64))
            names.append(f"{column}={i}")
    affinities = [c for c in logs.columns if c.startswith("user-item_affinity_")]
    frame = pd.DataFrame(dict(zip(names, blocks, strict=True)), index=logs.index)
    frame[affinities] = logs[affinities].to_numpy(np.float64)
    return frame, [*names, *affinities]


def contextual_section(data: Path, seed: int) -> dict:
    """The contextual chain on the held-back days: DM on features, HF by k-means segment, the tuned
    blend, each evaluated (SNIPS, IPS, DR) and compared with the logging policy on the test split."""
    from hfrl.blending import BlendedPolicy
    from hfrl.frequencies import SegmentFrequency
    from hfrl.learners import DirectMethodLearner
    from hfrl.ope import compare, evaluate
    from hfrl.tune import tune_alpha

    logs = load_obd(data, "random", state_columns=STATE_COLUMNS, include_user_features=True,
                    include_affinities=True)
    (train, valid, test), split_method = time_splits(logs)
    n_actions = int(logs.attrs["n_actions"])
    parts = []
    for part in (train, valid, test):
        features, columns = context_frame(part, train)
        parts.append(pd.concat([part[["action", "reward", "propensity", "timestamp"]], features], axis=1))
    train, valid, test = parts
    start = time.perf_counter()
    learner = DirectMethodLearner(ridge=10.0, policy="softmax", policy_temperature=0.01)
    pi = learner.fit(train, context_columns=columns, n_actions=n_actions).policy_
    hf = SegmentFrequency(columns, n_segments=20, random_state=seed, prior_strength=1.0).fit(
        train, n_actions=n_actions)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = tune_alpha(pi, hf, valid, "snips", criterion="lower_bound", test_logs=test,
                           context_columns=columns)
    tune_seconds = time.perf_counter() - start
    out: dict = {"split": split_method, "rows": [len(train), len(valid), len(test)],
                 "n_context_columns": len(columns), "fit_seconds": round(fit_seconds, 2),
                 "tune_seconds": round(tune_seconds, 2), "alpha": float(tuned.alpha), "test": {}}
    policies = {"pi (DM on features, softmax)": pi, "HF by segment (k-means, 20)": hf,
                "pi' (tuned)": BlendedPolicy(pi, hf, tuned.alpha)}
    for name, policy in policies.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate(test, policy, ("snips", "ips", "dr"), context_columns=columns)
            verdict = compare(policy, test, "logging", estimator="snips", context_columns=columns)
        row = result.loc["snips"]
        out["test"][name] = {"estimate": float(row["estimate"]), "ci_low": float(row["ci_low"]),
                             "ci_high": float(row["ci_high"]), "ess": float(row["ess"]),
                             "ips": float(result.loc["ips", "estimate"]),
                             "dr": float(result.loc["dr", "estimate"]), "verdict": verdict.verdict,
                             "difference": verdict.difference, "diff_ci": [verdict.ci_low, verdict.ci_high]}
    out["logging (on-policy mean)"] = mean_ci(test["reward"].to_numpy())
    return out


def contextual_markdown(section: dict | None) -> list[str]:
    if not section:
        return []
    lines = ["", "### Users described by features: contextual DM, HF by segment, the tuned blend", "",
             f"Split: {section['split']}; rows {section['rows']}; {section['n_context_columns']} context "
             f"columns (one-hot user features and position, 80 affinities). Fit {section['fit_seconds']} s, "
             f"tune {section['tune_seconds']} s; alpha by the SNIPS lower bound = {section['alpha']:.3g}. "
             f"Logging policy on the test days: {pct(section['logging (on-policy mean)']['estimate'])}.", "",
             "| policy (test split) | SNIPS | 95% CI | ESS | IPS | DR | vs logging | difference 95% CI |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in section["test"].items():
        lines.append(f"| {name} | {pct(row['estimate'])} | {pct(row['ci_low'])} .. {pct(row['ci_high'])} | "
                     f"{row['ess']:.0f} | {pct(row['ips'])} | {pct(row['dr'])} | {row['verdict']} | "
                     f"{pct(row['diff_ci'][0])} .. {pct(row['diff_ci'][1])} |")
    return lines


# --- 4. which estimator to trust: a replica fitted to the logs --------------------------------------


def replica_section(random_logs, targets: dict[str, TabularPolicy], replications: int, seed: int) -> dict:
    try:
        from hfrl.envs import collect_logs, fit_env, logging_policy
    except ImportError as exc:
        return {"missing": f"fit_env / collect_logs: {exc}"}
    from hfrl.ope import ESTIMATORS, evaluate

    n_states, n_actions = random_logs.attrs["n_states"], random_logs.attrs["n_actions"]
    # shrinkage worth one expected click: a single lucky click does not make a cell a hit
    prior_strength = 1.0 / float(random_logs["reward"].mean())
    replica = fit_env(random_logs[["state", "action", "reward"]], n_states=n_states, n_actions=n_actions,
                      prior_strength=prior_strength)
    uniform = logging_policy(replica, "uniform")
    truths = {name: replica.policy_value(policy, 0.0) for name, policy in targets.items()}
    errors = {name: {e: [] for e in ESTIMATORS} for name in targets}
    covered = {name: {e: [] for e in ESTIMATORS} for name in targets}
    start = time.perf_counter()
    for r in range(replications):
        logs = collect_logs(replica, uniform, n=len(random_logs), seed=seed + 1000 + r)
        for name, policy in targets.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = evaluate(logs, policy, estimators=ESTIMATORS, level=0.95)
            for estimator, row in result.iterrows():
                errors[name][estimator].append(row["estimate"] - truths[name])
                covered[name][estimator].append(row["ci_low"] <= truths[name] <= row["ci_high"])
    seconds = time.perf_counter() - start
    summary: dict = {"replications": replications, "seconds": round(seconds, 2),
                     "prior_strength": round(prior_strength, 1), "targets": {}}
    for name in targets:
        rows = {}
        for estimator in ESTIMATORS:
            e = np.asarray(errors[name][estimator])
            rows[estimator] = {
                "truth": truths[name],
                "bias": float(e.mean()),
                "rmse": float(np.sqrt(np.mean(e**2))),
                "relative_rmse": float(np.sqrt(np.mean(e**2)) / truths[name]),
                "coverage": float(np.mean(covered[name][estimator])),
            }
        summary["targets"][name] = rows
    # trust: lowest mean relative RMSE among estimators whose 95% intervals cover >= 85% of the time
    scores = {}
    for estimator in ESTIMATORS:
        rel = [summary["targets"][n][estimator]["relative_rmse"] for n in targets]
        cov = [summary["targets"][n][estimator]["coverage"] for n in targets]
        scores[estimator] = (float(np.mean(rel)), float(np.min(cov)))
    eligible = {e: s for e, s in scores.items() if s[1] >= 0.85}
    summary["coverage_met"] = bool(eligible)
    eligible = eligible or scores
    summary["trust"] = min(eligible, key=lambda e: eligible[e][0])
    summary["scores"] = {e: {"mean_relative_rmse": s[0], "min_coverage": s[1]} for e, s in scores.items()}
    return summary


# --- 5. the deployment verdict ----------------------------------------------------------------------


def verdict_section(test: pd.DataFrame, candidate: TabularPolicy, estimator: str) -> dict:
    from hfrl.ope import compare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(candidate, test, baseline="logging", level=0.95, estimator=estimator)
    return {
        "verdict": result.verdict,
        "difference": float(result.difference),
        "ci_low": float(result.ci_low),
        "ci_high": float(result.ci_high),
        "estimator": estimator,
        "ess": float(result.ess),
        "reason": result.reason,
    }


# --- report ------------------------------------------------------------------------------------------


def mass_text(row: dict) -> str:
    return f"{row['unlogged_mass']:.0%}" if "unlogged_mass" in row else "-"


def ess_text(row: dict) -> str:
    return f"{row['ess']:.0f}" if "ess" in row else "-"


def pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def learning_markdown(learning: dict | None, states: str) -> list[str]:
    if not learning:
        return []
    lines = [
        f"### Policy learning on the random logs, states = {states} (time-ordered splits)",
        "",
        f"Split: {learning['split']}; rows train/valid/test = {learning['rows']}, clicks = "
        f"{learning['clicks']}. Blend base learner: {learning.get('base_learner')}; alpha by SNIPS "
        f"estimate = {learning.get('alpha_estimate', 'n/a')}, by lower bound = "
        f"{learning.get('alpha_lower_bound', 'n/a')}.",
        "",
        "| policy (test split) | CTR estimate | 95% CI | estimator | ESS | unlogged mass | IPS | DR "
        "| validation SNIPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    validation = learning.get("validation", {})
    for name, row in learning["test"].items():
        valid = validation.get(name)
        lines.append(
            f"| {name} | {pct(row['estimate'])} | {pct(row['ci_low'])} .. {pct(row['ci_high'])} | "
            f"{row['estimator']} | {ess_text(row)} | "
            f"{mass_text(row)} | "
            f"{pct(row['ips']) if 'ips' in row else '-'} | {pct(row['dr']) if 'dr' in row else '-'} | "
            f"{pct(valid['estimate']) if valid else '-'} |"
        )
    for missing in learning["missing"]:
        lines.append(f"\nMissing: {missing}")
    lines.append("")
    return lines


def verdict_markdown(verdicts: dict | None, states: str) -> list[str]:
    if not verdicts:
        return []
    lines = [f"### Deployment verdict (hfrl.ope.compare vs the uniform logging policy, test split), "
             f"states = {states}", ""]
    for name, verdict in verdicts.items():
        lines.append(
            f"- {name}: **{verdict['verdict']}**, difference {pct(verdict['difference'])} (95% CI "
            f"{pct(verdict['ci_low'])} .. {pct(verdict['ci_high'])}, {verdict['estimator']}, ESS "
            f"{verdict['ess']:.0f}). {verdict['reason']}"
        )
    lines.append("")
    return lines


def markdown(figures: dict) -> str:
    lines = []
    load = figures["load"]
    lines += [
        "### Data",
        "",
        f"random: {load['rows_random']} rows, {load['clicks_random']} clicks; bts: {load['rows_bts']} rows, "
        f"{load['clicks_bts']} clicks; {load['n_states']} states (user features x position, with the "
        f"unknown bucket), {load['n_actions']} items. `load_obd` {load['load_seconds']} s vs pandas "
        f"read_csv + CategoryEncoder {load['pandas_peer_seconds']} s (same state ids: "
        f"{load['states_equal_to_peer']}).",
        "",
    ]
    scale = figures.get("load_at_scale")
    if scale:
        lines += [
            f"At scale ({scale['rows']} rows, the random file repeated; {scale['csv_mb']} MB of CSV; each "
            "reader in its own process):",
            "",
            "| reader | seconds | peak RSS (MB) |",
            "|---|---|---|",
            f"| `load_obd` (DuckDB, core columns) | {scale['load_obd_seconds']} | "
            f"{scale['load_obd_peak_rss_mb']} |",
            f"| pandas `read_csv` + `CategoryEncoder` | {scale['pandas_seconds']} | "
            f"{scale['pandas_peak_rss_mb']} |",
            "",
            f"Same state ids: {scale['same_states']}; load_obd is {scale['speedup']}x as fast and uses "
            f"1/{scale['memory_ratio']} of the memory.",
            "",
        ]
    ope = figures.get("ope")
    if ope:
        truth = ope["truth"]
        lines += [
            "### OPE check: Bernoulli TS estimated from the uniform-random logs",
            "",
            f"Ground truth (BTS logs' on-policy mean click): {pct(truth['estimate'])} "
            f"(95% CI {pct(truth['ci_low'])} .. {pct(truth['ci_high'])}, n = {truth['n_rows']}).",
            "",
            "| BTS policy | estimator | estimate | 95% CI (normal) | 95% CI (bootstrap) | relative error "
            "| CI covers truth | ESS |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for policy, rows in ope["policies"].items():
            for estimator, row in rows.items():
                lines.append(
                    f"| {policy} | {estimator} | {pct(row['estimate'])} | {pct(row['ci_low'])} .. "
                    f"{pct(row['ci_high'])} | {pct(row['boot_ci_low'])} .. {pct(row['boot_ci_high'])} | "
                    f"{row['relative_error']:+.1%} | {row['covers_truth']} | "
                    f"{row['ess']:.0f} |"
                )
        lines.append("")
    lines += learning_markdown(figures.get("learning"), "user features x position")
    replica = figures.get("replica")
    if replica and "targets" in replica:
        lines += [
            f"### Which estimator to trust: fit_env replica, uniform logging replayed "
            f"{replica['replications']} times",
            "",
            "| target | estimator | exact value | bias | RMSE | relative RMSE | 95% CI coverage |",
            "|---|---|---|---|---|---|---|",
        ]
        for target, rows in replica["targets"].items():
            for estimator, row in rows.items():
                lines.append(
                    f"| {target} | {estimator} | {pct(row['truth'])} | {pct(row['bias'])} | "
                    f"{pct(row['rmse'])} | {row['relative_rmse']:.1%} | {row['coverage']:.0%} |"
                )
        rule = ("lowest mean relative RMSE among the estimators whose 95% intervals cover the exact value "
                "at least 85% of the time for every target" if replica["coverage_met"] else
                "lowest mean relative RMSE; NO estimator's 95% intervals covered the exact value 85% of the "
                "time for every target, so none of the intervals is trustworthy at this sample size")
        lines += ["", f"Trust on this data: **{replica['trust']}** ({rule}).", ""]
    elif replica:
        lines += [f"Replica section missing: {replica.get('missing')}", ""]
    lines += verdict_markdown(figures.get("verdicts"), "user features x position")
    coarse = figures.get("learning_position_only")
    if coarse:
        lines += learning_markdown(coarse, "position only")
        lines += verdict_markdown(figures.get("verdicts_position_only"), "position only")
    lines += contextual_markdown(figures.get("contextual"))
    return "\n".join(lines)


def summary(figures: dict) -> dict:
    """The one JSON line: the key figures (the Markdown below it has every table)."""
    def triple(row: dict) -> list[float]:
        return [round(row["estimate"], 5), round(row["ci_low"], 5), round(row["ci_high"], 5)]

    load, out = figures["load"], {"bench": "obd"}
    out.update({k: load[k] for k in ("rows_random", "clicks_random", "rows_bts", "clicks_bts", "n_states",
                                     "load_seconds", "pandas_peer_seconds")})
    scale = figures.get("load_at_scale")
    if scale:
        out.update({f"scale_{k}": v for k, v in scale.items() if not k.endswith("checksum")})
    ope = figures["ope"]
    out["bts_truth"] = triple(ope["truth"])
    main = ope["policies"].get("bts_prior_mc") or ope["policies"]["bts_empirical"]
    out["bts_policy"] = "bts_prior_mc" if "bts_prior_mc" in ope["policies"] else "bts_empirical"
    out["ope_relative_error"] = {e: round(r["relative_error"], 3) for e, r in main.items()}
    out["ope_ci_covers_truth"] = {e: r["covers_truth"] for e, r in main.items()}
    configurations = (("", figures["learning"]), ("position_only_", figures.get("learning_position_only")))
    for key, learning in configurations:
        if not learning:
            continue
        out[f"{key}alpha"] = {c: learning.get(f"alpha_{c}") for c in ("estimate", "lower_bound")}
        out[f"{key}test_ctr"] = {name: triple(row) for name, row in learning["test"].items()}
        if learning["missing"]:
            out[f"{key}missing"] = learning["missing"]
    replica = figures["replica"]
    if "targets" in replica:
        out["replica_trust"] = replica["trust"]
        out["replica_coverage_met"] = replica["coverage_met"]
        out["replica_scores"] = {e: [round(v["mean_relative_rmse"], 3), round(v["min_coverage"], 2)]
                                 for e, v in replica["scores"].items()}
    for key in ("verdicts", "verdicts_position_only"):
        out[key] = {
            name: [v["verdict"], round(v["difference"], 5), round(v["ci_low"], 5), round(v["ci_high"], 5)]
            for name, v in figures.get(key, {}).items()
        }
    contextual = figures.get("contextual")
    if contextual:
        out["contextual"] = {"alpha": contextual["alpha"], **{
            name: [v["verdict"], round(v["estimate"], 5), round(v["ci_low"], 5), round(v["ci_high"], 5)]
            for name, v in contextual["test"].items()}}
    out["seconds"] = figures["seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/obd"))
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=50,
                        help="time load_obd vs pandas on the random file repeated this many times (0: skip)")
    parser.add_argument("--contextual-only", action="store_true",
                        help="run only the contextual section (users described by features)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.contextual_only:
        section = contextual_section(args.data, args.seed)
        print(json.dumps({"bench": "obd", "contextual": section}, default=float, separators=(",", ":")))
        print("\n".join(contextual_markdown(section)))
        return 0
    figures: dict = {"bench": "obd", "machine": f"{platform.machine()}, python {sys.version.split()[0]}"}
    random_logs, bts_logs, figures["load"] = load_section(args.data)
    if args.scale > 0:
        figures["load_at_scale"] = scale_section(args.data, args.scale)
    tables = bts_tables(args.data, bts_logs, random_logs.attrs["n_actions"], args.seed)
    figures["ope"], bts_policies = ope_section(random_logs, bts_logs, tables, args.seed)
    figures["learning"], learned = learning_section(random_logs, bts_logs, bts_policies, args.seed)
    test = learned.pop("_test")
    targets = {"BTS": bts_policies.get("bts_prior_mc", bts_policies["bts_empirical"])}
    for name, policy in learned.items():
        if name.startswith("blend") and "estimate" in name:
            targets["blend"] = policy
        elif not name.startswith("blend"):
            targets[name] = policy
    figures["replica"] = replica_section(random_logs, targets, args.replications, args.seed)
    # the verdict uses the estimator the replica says to trust, when its intervals held up there
    trusted = figures["replica"].get("coverage_met") and figures["replica"].get("trust")
    estimator = trusted or "snips"
    figures["verdicts"] = {
        name: verdict_section(test, policy, estimator) for name, policy in learned.items()
        if name.startswith("blend")
    }

    # The same learning with a coarse state (position only): a context-free policy that 2,000 test
    # rows can actually evaluate (every (position, item) cell is logged about 8 times).
    coarse_random = load_obd(args.data, "random", state_columns=["position"], include_affinities=True)
    coarse_bts = load_obd(args.data, "bts", state_columns=["position"])
    coarse_policies = {name: per_position_policy(coarse_random, by_position, name)
                       for name, by_position in tables.items()}
    figures["learning_position_only"], coarse_learned = learning_section(
        coarse_random, coarse_bts, coarse_policies, args.seed
    )
    coarse_test = coarse_learned.pop("_test")
    figures["verdicts_position_only"] = {
        name: verdict_section(coarse_test, policy, estimator) for name, policy in coarse_learned.items()
        if name.startswith("blend")
    }
    figures["contextual"] = contextual_section(args.data, args.seed)
    figures["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(summary(figures), default=float, separators=(",", ":")))
    print()
    print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
