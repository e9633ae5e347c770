"""Declarative pipelines: the examples at a small size, the run folder, truth, determinism, config errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrl.ope.returns import ReturnModel, compare_return
from hfrl.pipeline import (
    POLICY_LABELS,
    ConfigError,
    demo_config,
    load_config,
    make_env,
    resolve_config,
    run_pipeline,
    simulate_logs,
)
from hfrl.policies import DEFAULT_EXPLORATION, TabularPolicy, default_min_propensity

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def small(config: dict, out: Path, n_rows: int = 6000, n_steps: int = 20_000) -> dict:
    config = json.loads(json.dumps(config))
    config["source"]["n_rows"] = n_rows
    config["learner"]["n_steps"] = n_steps
    config["output"]["dir"] = str(out)
    return config


@pytest.fixture(scope="module")
def recommendation_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reco") / "run"
    config = small(load_config(EXAMPLES / "recommendation.toml"), out)
    return config, run_pipeline(config)


@pytest.mark.parametrize("name", ["recommendation", "ad_placement", "small_data"])
def test_simulator_examples_write_a_complete_run_folder(tmp_path, name):
    config = small(load_config(EXAMPLES / f"{name}.toml"), tmp_path / "run")
    result = run_pipeline(config)
    out = result.out_dir
    for part in (
        "metrics.json",
        "config.json",
        "curves/alpha_curve.csv",
        "tables/pi.npy",
        "tables/hf.npy",
        "tables/pi_prime.npy",
        "tables/state_counts.npy",
        "artifacts/pi.hfrl",
        "artifacts/hf.hfrl",
        "artifacts/pi_prime.hfrl",
        "artifacts/logging.hfrl",
        "artifacts/optimal.hfrl",
    ):
        assert (out / part).is_file(), part
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["alpha"] <= 1.0
    assert set(metrics["policies"]) == set(POLICY_LABELS.values())
    for label, row in metrics["policies"].items():
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"], label
        assert row["true_value"] is not None and row["true_return"] is not None, label
    assert metrics["verdict"]["verdict"] in ("ship", "no evidence", "worse", "unreliable")
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(config))
    # every estimator for every policy
    assert {(r["policy"], r["estimator"]) for r in metrics["estimators"]} == {
        (p, e) for p in POLICY_LABELS.values() for e in config["evaluation"]["estimators"]
    }


def test_artifacts_are_the_blend_at_the_chosen_alpha(recommendation_run):
    _, result = recommendation_run
    out = result.out_dir
    pi = TabularPolicy.load(out / "artifacts" / "pi.hfrl").table_
    hf = TabularPolicy.load(out / "artifacts" / "hf.hfrl").table_
    pi_prime = TabularPolicy.load(out / "artifacts" / "pi_prime.hfrl")
    alpha = result.alpha
    np.testing.assert_allclose(pi_prime.table_, (1 - alpha) * pi + alpha * hf, atol=1e-12)
    assert pi_prime.metadata["alpha"] == alpha
    np.testing.assert_allclose(np.load(out / "tables" / "pi_prime.npy"), pi_prime.table_, rtol=0, atol=1e-15)
    curve = pd.read_csv(out / "curves" / "alpha_curve.csv")
    best = curve.loc[curve["estimate"].idxmax(), "alpha"]
    assert abs(best - alpha) <= 0.011  # criterion "estimate": the grid maximum (refined within a step)


def test_true_values_are_exact_for_the_test_states(recommendation_run):
    config, result = recommendation_run
    env = make_env(config["source"]["env"], config["source"]["env_options"])
    test = pd.read_parquet(result.out_dir / "logs" / "test.parquet")
    rewards = env.reward_matrix()
    gamma = config["learner"]["gamma"]
    for key, label in POLICY_LABELS.items():
        policy = TabularPolicy.load(result.out_dir / "artifacts" / f"{key}.hfrl")
        per_row = (policy.table_[test["state"].to_numpy()] * rewards[test["state"].to_numpy()]).sum(axis=1)
        row = result.summary.loc[label]
        assert row["true_value"] == pytest.approx(per_row.mean(), rel=1e-12)
        assert row["true_return"] == pytest.approx(env.policy_value(policy, gamma), rel=1e-12)
    returns = result.summary["true_return"]
    assert returns[POLICY_LABELS["optimal"]] >= returns.max() - 1e-9


def test_logging_policy_estimate_is_its_mean_reward_and_its_return_the_logs_own(recommendation_run):
    config, result = recommendation_run
    test = pd.read_parquet(result.out_dir / "logs" / "test.parquet")
    estimates = result.estimates.set_index(["policy", "estimator"])
    # propensities are exact, so every weight is 1: IPS and SNIPS reduce to the mean reward
    snips = estimates.loc[(POLICY_LABELS["logging"], "snips"), "estimate"]
    assert snips == pytest.approx(test["reward"].mean(), rel=1e-9)
    # Q-learning optimises the return: the summary is each policy's fitted-Q-evaluation return
    assert result.metrics["tuning"]["objective"] == result.metrics["evaluation"]["objective"] == "return"
    model = ReturnModel.from_logs(test, 20, 10)
    gamma = config["learner"]["gamma"]
    for key in ("logging", "pi", "pi_prime"):
        policy = TabularPolicy.load(result.out_dir / "artifacts" / f"{key}.hfrl")
        assert result.summary.loc[POLICY_LABELS[key], "estimate"] == pytest.approx(
            model.evaluate(policy, gamma).estimate, rel=1e-9), key


def test_pi_prime_is_compared_with_every_alternative_on_the_same_rows(recommendation_run):
    config, result = recommendation_run
    verdicts = result.metrics["verdicts"]
    assert set(verdicts) == {POLICY_LABELS[k] for k in ("logging", "pi", "hf")}
    assert verdicts[POLICY_LABELS["logging"]] == result.metrics["verdict"]
    test = pd.read_parquet(result.out_dir / "logs" / "test.parquet")
    pi_prime = TabularPolicy.load(result.out_dir / "artifacts" / "pi_prime.hfrl")
    pi = TabularPolicy.load(result.out_dir / "artifacts" / "pi.hfrl")
    paired = compare_return(pi_prime, test, config["learner"]["gamma"], pi, level=0.95)
    assert verdicts[POLICY_LABELS["pi"]]["difference"] == pytest.approx(paired.difference, rel=1e-9)
    assert verdicts[POLICY_LABELS["pi"]]["verdict"] == paired.verdict


def test_metrics_keep_alpha_and_give_the_true_value_of_every_policy(recommendation_run):
    config, result = recommendation_run
    metrics = result.metrics
    env = make_env(config["source"]["env"], config["source"]["env_options"])
    assert set(metrics["true_value"]) == set(POLICY_LABELS.values())
    for key, label in POLICY_LABELS.items():
        policy = TabularPolicy.load(result.out_dir / "artifacts" / f"{key}.hfrl")
        assert metrics["true_value"][label] == pytest.approx(
            env.policy_value(policy, config["learner"]["gamma"]), rel=1e-12), label
    assert metrics["alpha"] == result.alpha and metrics["tuning"]["reason"].startswith("alpha = ")
    assert metrics["tuning"]["passed_safety"] in (True, False)
    curve = pd.read_csv(result.out_dir / "curves" / "alpha_curve.csv")
    assert curve["true_value"].notna().all()  # the exact return along alpha, under the estimated band


def test_served_policies_keep_the_default_exploration_floor(recommendation_run):
    _, result = recommendation_run
    floor = default_min_propensity(10)
    assert result.metrics["tuning"]["min_propensity"] == floor
    for key in ("pi", "hf", "pi_prime"):
        table = TabularPolicy.load(result.out_dir / "artifacts" / f"{key}.hfrl").table_
        assert table.min() >= floor - 1e-12, key
    optimal = TabularPolicy.load(result.out_dir / "artifacts" / "optimal.hfrl").table_
    assert optimal.min() == 0.0  # a reference, saved as it is


def test_splits_do_not_overlap_and_keep_time_order(recommendation_run):
    _, result = recommendation_run
    parts = [
        pd.read_parquet(result.out_dir / "logs" / f"{n}.parquet") for n in ("train", "validation", "test")
    ]
    assert [len(p) for p in parts] == [3000, 1500, 1500]
    assert parts[0]["timestamp"].max() < parts[1]["timestamp"].min()
    assert parts[1]["timestamp"].max() < parts[2]["timestamp"].min()


def test_same_seed_same_run_other_seed_other_logs(tmp_path):
    config = small(load_config(EXAMPLES / "recommendation.toml"), tmp_path / "a", n_rows=3000, n_steps=5000)
    first = run_pipeline(config)
    second = run_pipeline(config, tmp_path / "b")
    pd.testing.assert_frame_equal(first.summary, second.summary)
    for name in ("pi", "hf", "pi_prime"):
        np.testing.assert_array_equal(
            np.load(first.out_dir / "tables" / f"{name}.npy"),
            np.load(second.out_dir / "tables" / f"{name}.npy"),
        )
    config["seed"] = 1
    third = run_pipeline(config, tmp_path / "c")
    assert not first.summary["estimate"].equals(third.summary["estimate"])


def test_a_relative_log_path_is_read_as_written_through_a_linked_folder(tmp_path):
    elsewhere = tmp_path / "shared" / "examples"
    elsewhere.mkdir(parents=True)
    (elsewhere / "from_logs.toml").write_text((EXAMPLES / "from_logs.toml").read_text())
    project = tmp_path / "project"
    project.mkdir()
    (project / "examples").symlink_to(elsewhere, target_is_directory=True)
    config = load_config(project / "examples" / "from_logs.toml")  # path = "../logs.parquet"
    assert config["source"]["path"] == str(project / "logs.parquet")


def test_log_file_source_with_an_offline_learner(tmp_path):
    env = make_env("recommendation")
    _, logs = simulate_logs(env, "uniform", 8000, seed=3)
    logs.to_parquet(tmp_path / "logs.parquet", index=False)
    text = (EXAMPLES / "from_logs.toml").read_text().replace('"../logs.parquet"', '"logs.parquet"')
    (tmp_path / "pipeline.toml").write_text(text)
    config = load_config(tmp_path / "pipeline.toml")
    assert config["source"]["path"] == str(tmp_path / "logs.parquet")  # relative to the file
    result = run_pipeline(config, tmp_path / "run")
    summary = result.summary
    assert list(summary.index) == [POLICY_LABELS[k] for k in ("logging", "hf", "pi", "pi_prime")]
    assert summary["true_value"].isna().all()  # no simulator, no truth
    test = logs.iloc[int(0.8 * len(logs)) :]
    estimates = result.estimates.set_index(["policy", "estimator"])
    on_policy = estimates.loc[(POLICY_LABELS["logging"], "on-policy mean"), "estimate"]
    assert on_policy == pytest.approx(test["reward"].mean())
    # fitted Q iteration optimises the return: the logging policy's is the logs' own behaviour's
    assert summary.loc[POLICY_LABELS["logging"], "estimate"] == pytest.approx(
        ReturnModel.from_logs(test, 20, 10).logging_value(config["learner"]["gamma"]).estimate)
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["data"]["rows"] == 8000 and metrics["run"]["source"].startswith("logs ")
    assert not (result.out_dir / "curves" / "learning_curve.csv").exists()  # offline: no curve


def test_log_file_source_with_its_own_column_names_and_the_conservative_learner(tmp_path):
    env = make_env("recommendation")
    _, logs = simulate_logs(env, "uniform", 6000, seed=4)
    renamed = {"action": "item_id", "reward": "click", "propensity": "propensity_score"}
    logs.rename(columns=renamed).to_csv(tmp_path / "obd_like.csv", index=False)
    (tmp_path / "pipeline.toml").write_text(
        'seed = 0\n[source]\ntype = "logs"\npath = "obd_like.csv"\n'
        'columns = { action = "item_id", reward = "click", propensity = "propensity_score" }\n'
        '[learner]\nname = "conservative"\noptions = { learner = "direct_method", min_count = 3 }\n'
    )
    result = run_pipeline(load_config(tmp_path / "pipeline.toml"), tmp_path / "run")
    test = logs.iloc[int(0.75 * len(logs)):]
    assert result.summary.loc[POLICY_LABELS["logging"], "estimate"] == pytest.approx(test["reward"].mean())
    pi = TabularPolicy.load(result.out_dir / "artifacts" / "pi.hfrl")
    train = logs.iloc[: int(0.5 * len(logs))]
    counts = pd.crosstab(train["state"], train["action"]).reindex(
        index=range(pi.n_states), columns=range(pi.n_actions), fill_value=0).to_numpy()
    rare = counts < 3
    # the conservative learner never picks a rare action; the served artifact keeps only the floor
    floor = DEFAULT_EXPLORATION / pi.n_actions
    assert rare.any() and np.allclose(pi.table_[rare & (counts.sum(axis=1, keepdims=True) > 0)], floor)


@pytest.mark.parametrize("learner", ["ucb1", "linucb"])
def test_bandit_learners_run_from_a_pipeline_file(tmp_path, learner):
    config = small(load_config(EXAMPLES / "recommendation.toml"), tmp_path / "run", n_steps=4000)
    config["learner"] = {**config["learner"], "name": learner, "options": {}}
    result = run_pipeline(resolve_config(config))
    pi = TabularPolicy.load(result.out_dir / "artifacts" / "pi.hfrl")
    assert (pi.n_states, pi.n_actions) == (20, 10)
    assert 0.0 < result.summary.loc[POLICY_LABELS["pi"], "true_return"]


def test_warnings_are_recorded_not_lost(recommendation_run):
    _, result = recommendation_run
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert isinstance(metrics["warnings"], list)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(isinstance(w, str) for w in metrics["warnings"])


def test_progress_names_each_stage_in_order(tmp_path):
    config = small(load_config(EXAMPLES / "recommendation.toml"), tmp_path / "sim", n_rows=3000, n_steps=3000)
    config["evaluation"]["n_bootstrap"] = 10
    said: list[str] = []
    run_pipeline(config, progress=said.append)
    assert said == [
        "simulating 3,000 logged decisions (recommendation, popularity logging)",
        "fitting historical frequencies on 1,500 training rows",
        "training QLearning online for 3,000 steps",
        "tuning alpha by FQE (discounted return, gamma 0.9) on 750 validation rows",
        "solving the simulator exactly for the optimal policy",
        "evaluating 5 policies on 750 test rows with 10 bootstrap resamples",
        f"writing the run folder {tmp_path / 'sim'}",
    ]
    env = make_env("recommendation")
    _, logs = simulate_logs(env, "uniform", 4000, seed=3)
    logs.to_parquet(tmp_path / "logs.parquet", index=False)
    from_logs = {
        "source": {"type": "logs", "path": str(tmp_path / "logs.parquet")},
        "learner": {"name": "direct_method"},
    }
    said.clear()
    run_pipeline(from_logs, tmp_path / "logs", progress=said.append)
    assert said == [
        f"loading {tmp_path / 'logs.parquet'}",
        "fitting historical frequencies on 2,000 training rows",
        "training DirectMethodLearner offline on 2,000 rows",
        "tuning alpha by SNIPS on 1,000 validation rows",
        "evaluating 4 policies on 1,000 test rows",  # the logging policy by its on-policy mean
        f"writing the run folder {tmp_path / 'logs'}",
    ]


def test_demo_config_is_the_documented_flow():
    config = demo_config(7, "somewhere")
    assert config["seed"] == 7 and config["output"]["dir"] == "somewhere"
    assert config["source"]["env"] == "recommendation"
    assert config["source"]["logging_policy"] == "epsilon_greedy"
    assert config["source"]["simulator_shift"]["strength"] > 0  # the learner's simulator is wrong
    assert config["learner"]["name"] == "q_learning" and config["tuning"]["objective"] == "auto"
    assert config["tuning"]["safety"] is True and config["split"]["by"] == "session"


# ---------------------------------------------------------------------------- configuration errors
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"learner": {"n_step": 10}}, "learner: unknown key(s) ['n_step']"),
        ({"sourse": {}}, "unknown key(s) ['sourse']"),
        ({"learner": {"n_steps": "many"}}, "learner.n_steps: expected an integer, got 'many'"),
        ({"learner": {"gamma": 1.5}}, "learner.gamma: expected a value in [0.0, 1.0], got 1.5"),
        ({"source": {"env": "chess"}}, "source.env: expected one of ['ad_placement', 'recommendation']"),
        ({"split": {"fractions": [0.5, 0.5, 0.5]}}, "split.fractions: expected fractions summing to 1"),
        ({"tuning": {"alphas": [0.1, 2]}}, "tuning.alphas[1]: expected a value in [0.0, 1.0], got 2"),
        ({"evaluation": {"estimators": ["ips", "magic"]}}, "evaluation.estimators[1]: expected one of"),
        ({"source": {"type": "logs", "path": "x.csv"}}, "learner.name: 'q_learning' learns online"),
        ({"source": {"type": "logs"}}, "source.path: a log source needs a file path"),
        ({"seed": -1}, "seed: expected a value in"),
        ({"tuning": {"objective": "profit"}}, "tuning.objective: expected one of"),
        ({"tuning": {"safety": "yes"}}, "tuning.safety: expected true or false"),
        ({"source": {"simulator_shift": {"kind": "weather"}}},
         "source.simulator_shift.kind: expected one of"),
        ({"source": {"simulator_shift": {"strenght": 1}}}, "source.simulator_shift: unknown key(s)"),
        ({"source": {"simulator_shift": {}}, "learner": {"name": "direct_method"}},
         "source.simulator_shift: only an online learner learns in a simulator"),
        ({"output": {"min_propensity": 2}}, "output.min_propensity: expected a value in"),
        ({"source": {"type": "logs", "path": "x.csv", "columns": {"acton": "item_id"}},
          "learner": {"name": "direct_method"}}, "source.columns: unknown schema column(s) ['acton']"),
        ({"source": {"type": "logs", "path": "x.csv", "columns": {"action": 3}},
          "learner": {"name": "direct_method"}}, "source.columns: expected a table of schema column"),
        ({"learner": {"name": "ucb2"}}, "learner.name: expected one of"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(config, message):
    with pytest.raises(ConfigError) as info:
        resolve_config(config, source="p.toml")
    assert str(info.value).startswith("p.toml: ")
    assert message in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[learner\nname = 1")
    with pytest.raises(ConfigError, match=r"p.toml: not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_config(tmp_path / "absent.toml")


def test_unknown_env_option_is_named():
    with pytest.raises(ConfigError, match="env_options of 'recommendation'.*n_itemz"):
        make_env("recommendation", {"n_itemz": 3})


def test_logs_without_propensities_need_propensity_estimate(tmp_path):
    from hfrl.errors import LogValidationError

    env = make_env("recommendation")
    _, logs = simulate_logs(env, "popularity", 6000, seed=5)
    logs.drop(columns=["propensity"]).to_parquet(tmp_path / "logs.parquet", index=False)
    config = {
        "source": {"type": "logs", "path": str(tmp_path / "logs.parquet")},
        "learner": {"name": "direct_method"},
        "evaluation": {"estimators": ["snips", "dm"]},
    }
    with pytest.raises(LogValidationError, match="propensity"):
        run_pipeline(config, tmp_path / "refused")
    config["evaluation"]["propensity"] = "estimate"
    result = run_pipeline(config, tmp_path / "run")
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["evaluation"]["propensity"] == "estimate"
    assert result.summary["ci_low"].le(result.summary["estimate"]).all()


def test_rerun_into_the_same_folder_leaves_nothing_stale(tmp_path):
    out = tmp_path / "run"
    online = small(load_config(EXAMPLES / "recommendation.toml"), out, n_rows=3000, n_steps=3000)
    run_pipeline(online)
    assert (out / "curves" / "learning_curve.csv").is_file()
    (out / "notes.txt").write_text("mine")  # a file of the user's own is kept
    offline = json.loads(json.dumps(online))
    offline["learner"] = {"name": "direct_method"}
    run_pipeline(offline)
    assert not (out / "curves" / "learning_curve.csv").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["run"]["learner"] == "DirectMethodLearner"


def test_the_online_learner_learns_in_the_shifted_simulator_while_truth_is_the_shop(tmp_path):
    from hfrl.envs import shift

    config = small(load_config(EXAMPLES / "recommendation.toml"), tmp_path / "run", n_rows=3000, n_steps=3000)
    config["source"]["simulator_shift"] = {"kind": "trend", "strength": 1.0, "seed": 4}
    said: list[str] = []
    result = run_pipeline(config, progress=said.append)
    assert "training QLearning online in the shifted simulator for 3,000 steps" in said
    assert "shifted by trend (strength 1, seed 4)" in result.metrics["run"]["source"]
    shop = make_env("recommendation")
    gamma = config["learner"]["gamma"]
    optimal = TabularPolicy.load(result.out_dir / "artifacts" / "optimal.hfrl")
    np.testing.assert_array_equal(optimal.table_, shop.optimal_policy(gamma).table_)  # the shop's optimum
    assert not np.array_equal(shift(shop, 1.0, "trend", seed=4).reward_matrix(), shop.reward_matrix())

