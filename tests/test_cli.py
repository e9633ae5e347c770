"""The hfrl command line: every command through Typer's CliRunner, exit codes, and one real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hfrl.cli import app
from hfrl.errors import LogValidationError
from hfrl.policies import TabularPolicy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COMMANDS = {"simulate", "frequencies", "train", "tune", "evaluate", "recommend", "report", "run", "demo"}
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Logs simulated once, split by time, plus HF and pi fitted on the first part."""
    root = tmp_path_factory.mktemp("cli")
    ok("simulate", "--out", root / "logs.parquet", "--rows", 6000, "--seed", 1)
    logs = pd.read_parquet(root / "logs.parquet")
    logs.iloc[:3000].to_parquet(root / "train.parquet", index=False)
    logs.iloc[3000:4500].to_parquet(root / "validation.parquet", index=False)
    logs.iloc[4500:].to_csv(root / "test.csv", index=False)
    ok("frequencies", root / "train.parquet", "--out", root / "hf.hfrl")
    ok(
        "train",
        "--env",
        "recommendation",
        "--steps",
        20_000,
        "--out",
        root / "pi.hfrl",
        "--option",
        "n_envs=32",
    )
    return root


# ---------------------------------------------------------------------------- help and imports
def _leaf_commands(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_help_lists_every_command_and_documents_every_option():
    result = ok("--help")
    for name in COMMANDS:
        assert name in result.stdout
    leaves = dict(_leaf_commands(get_command(app)))
    assert COMMANDS <= set(leaves)
    for name, command in leaves.items():  # every command of the CLI, ours and the others'
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"hfrl {name}: {param.name} has no help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_runs(name):
    assert "Usage" in ok(name, "--help").stdout


def test_importing_the_cli_stays_light():
    code = (
        "import sys, hfrl.cli; heavy = [m for m in ('plotly', 'uvicorn', 'pyspark', 'gymnasium', 'fastapi') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- the commands
def test_simulate_writes_valid_logs(workdir):
    logs = pd.read_parquet(workdir / "logs.parquet")
    assert len(logs) == 6000
    assert {"state", "action", "reward", "propensity", "timestamp", "session_id"} <= set(logs.columns)
    result = ok(
        "simulate",
        "--out",
        workdir / "small.csv",
        "--rows",
        50,
        "--env",
        "ad-placement",
        "--logging",
        "uniform",
        "--json",
    )
    payload = json.loads(result.stdout)
    assert payload["rows"] == 50 and payload["n_actions"] == 10
    assert len(pd.read_csv(workdir / "small.csv")) == 50


def test_frequencies_matches_the_library(workdir):
    from hfrl.frequencies import HistoricalFrequency

    saved = TabularPolicy.load(workdir / "hf.hfrl")
    direct = HistoricalFrequency().fit(pd.read_parquet(workdir / "train.parquet"))
    np.testing.assert_allclose(saved.table_, direct.probabilities_, atol=1e-12)
    payload = json.loads(
        ok(
            "frequencies",
            workdir / "train.parquet",
            "--out",
            workdir / "hf2.hfrl",
            "--kind",
            "rate",
            "--backend",
            "duckdb",
            "--json",
        ).stdout
    )
    assert payload["kind"] == "rate" and payload["n_states"] == saved.n_states


def test_train_online_reports_exact_return(workdir):
    result = ok(
        "train",
        "--env",
        "recommendation",
        "--steps",
        5000,
        "--out",
        workdir / "pi_small.hfrl",
        "--curve-out",
        workdir / "curve.csv",
        "--json",
    )
    payload = json.loads(result.stdout)
    assert 0 < payload["true_return"] <= payload["optimal_return"] + 1e-9
    assert len(pd.read_csv(workdir / "curve.csv")) > 0
    written = TabularPolicy.load(workdir / "pi_small.hfrl")
    assert written.n_actions == 10
    # the written policy explores: every action at least the default floor, 0.05 / 10 actions
    assert payload["min_propensity"] == pytest.approx(0.005)
    assert written.table_.min() == pytest.approx(0.005) and written.metadata["min_propensity"] == 0.005
    assert 0 < payload["written_true_return"] <= payload["optimal_return"] + 1e-9


def test_train_min_propensity_zero_writes_the_learned_policy_as_it_is(workdir):
    args = ("train", "--env", "recommendation", "--steps", 3000, "--seed", 3)
    raw = json.loads(ok(*args, "--out", workdir / "raw.hfrl", "--min-propensity", 0, "--json").stdout)
    floored = ok(*args, "--out", workdir / "floored.hfrl", "--min-propensity", 0.02)
    assert raw["min_propensity"] == 0 and raw["exploration_epsilon"] == 0
    assert raw["written_true_return"] == pytest.approx(raw["true_return"])
    learned = TabularPolicy.load(workdir / "raw.hfrl").table_
    assert learned.min() == 0.0  # Q-learning's greedy policy: one action per state
    eps = 0.02 / 0.1  # (1 - eps) * 0 + eps / 10 = 0.02
    np.testing.assert_allclose(TabularPolicy.load(workdir / "floored.hfrl").table_,
                               (1 - eps) * learned + eps / 10, atol=1e-12)
    assert "every action has probability >= 0.02 (20% uniform mixed in" in floored.stdout
    too_high = invoke(*args, "--out", workdir / "x.hfrl", "--min-propensity", 0.2)
    assert too_high.exit_code == 2 and "[0, 0.1] for 10 actions" in too_high.output


def test_train_offline_from_logs(workdir):
    payload = json.loads(
        ok(
            "train",
            "--logs",
            workdir / "train.parquet",
            "--learner",
            "direct-method",
            "--out",
            workdir / "dm.hfrl",
            "--json",
        ).stdout
    )
    assert payload["learner"] == "DirectMethodLearner"
    assert TabularPolicy.load(workdir / "dm.hfrl").n_states == 20


def test_tune_evaluate_recommend(workdir):
    result = ok(
        "tune",
        workdir / "pi.hfrl",
        workdir / "hf.hfrl",
        workdir / "validation.parquet",
        "--out",
        workdir / "pi_prime.hfrl",
        "--curve-out",
        workdir / "alpha.csv",
        "--json",
    )
    payload = json.loads(result.stdout)
    assert 0.0 <= payload["alpha"] <= 1.0
    assert payload["ci_low"] <= payload["estimate"] <= payload["ci_high"]
    assert len(pd.read_csv(workdir / "alpha.csv")) == 101
    blended = TabularPolicy.load(workdir / "pi_prime.hfrl")
    pi, hf = TabularPolicy.load(workdir / "pi.hfrl"), TabularPolicy.load(workdir / "hf.hfrl")
    alpha = payload["alpha"]
    raw = (1 - alpha) * pi.table_ + alpha * hf.table_
    # written with the default floor 0.05 / 10: mixed with uniform just enough to lift the smallest entry
    eps = max(0.0, (0.005 - raw.min()) / (0.1 - raw.min()))
    np.testing.assert_allclose(blended.table_, (1 - eps) * raw + eps / 10, atol=1e-12)
    assert blended.table_.min() >= 0.005 - 1e-12
    assert payload["min_propensity"] == pytest.approx(0.005)
    assert payload["exploration_epsilon"] == pytest.approx(eps)

    result = ok(
        "evaluate",
        workdir / "pi_prime.hfrl",
        workdir / "test.csv",
        "--estimators",
        "ips,snips,dr",
        "--bootstrap",
        20,
        "--verdict",
        "--json",
    )
    payload = json.loads(result.stdout)
    assert set(payload["estimators"]) == {"ips", "snips", "dr"}
    for row in payload["estimators"].values():
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    assert payload["verdict"]["verdict"] in ("ship", "no evidence", "worse", "unreliable")
    # pi' carries pi and HF: the verdict also compares it with each parent, paired on the same rows
    from hfrl.ope import compare

    assert list(payload["verdicts"]) == ["logging policy", "pi only", "HF only"]
    assert payload["verdicts"]["logging policy"] == payload["verdict"]
    for label, parent in (("pi only", pi), ("HF only", hf)):
        expected = compare(blended, pd.read_csv(workdir / "test.csv"), baseline=parent)
        got = payload["verdicts"][label]
        assert got["verdict"] == expected.verdict
        assert got["difference"] == pytest.approx(expected.difference, rel=1e-9)
        assert got["baseline_value"] == pytest.approx(expected.baseline_value, rel=1e-9)
    table = ok("evaluate", workdir / "pi_prime.hfrl", workdir / "test.csv").stdout
    assert "snips" in table and "95% CI" in table and "ESS" in table

    lines = ok("evaluate", workdir / "pi_prime.hfrl", workdir / "test.csv", "--verdict").stdout
    assert "verdict vs the logging policy: " in lines
    assert "verdict vs pi alone: " in lines and "verdict vs HF alone: " in lines

    rows = json.loads(
        ok("recommend", workdir / "pi_prime.hfrl", "--states", "0,3", "--k", 2, "--json").stdout
    )
    actions, probabilities = blended.top_k([0, 3], 2)
    assert [r["action"] for r in rows] == actions.ravel().tolist()
    assert [r["probability"] for r in rows] == pytest.approx(probabilities.ravel().tolist())


def test_tune_min_propensity_zero_and_verdicts_from_given_parents(workdir):
    payload = json.loads(ok("tune", workdir / "pi.hfrl", workdir / "hf.hfrl", workdir / "validation.parquet",
                            "--alphas", "0.3", "--out", workdir / "raw_blend.hfrl", "--min-propensity", 0,
                            "--json").stdout)
    pi, hf = TabularPolicy.load(workdir / "pi.hfrl"), TabularPolicy.load(workdir / "hf.hfrl")
    raw = TabularPolicy.load(workdir / "raw_blend.hfrl")
    np.testing.assert_allclose(raw.table_, 0.7 * pi.table_ + 0.3 * hf.table_, atol=1e-12)
    assert payload["min_propensity"] == 0 and "min_propensity" not in raw.metadata
    # a plain artifact carries no parents: the verdict is against the logging policy only ...
    plain = workdir / "plain.hfrl"
    TabularPolicy(raw.table_).save(plain)
    alone = json.loads(ok("evaluate", plain, workdir / "test.csv", "--verdict", "--json").stdout)
    assert list(alone["verdicts"]) == ["logging policy"]
    # ... unless --pi and --hf name them
    both = json.loads(ok("evaluate", plain, workdir / "test.csv", "--verdict", "--json", "--pi",
                         workdir / "pi.hfrl", "--hf", workdir / "hf.hfrl").stdout)
    carried = json.loads(ok("evaluate", workdir / "raw_blend.hfrl", workdir / "test.csv", "--verdict",
                            "--json").stdout)
    assert list(both["verdicts"]) == ["logging policy", "pi only", "HF only"]
    for label in ("pi only", "HF only"):
        assert both["verdicts"][label]["difference"] == pytest.approx(
            carried["verdicts"][label]["difference"])
    # the blend at alpha = 0.3 lies between its parents: the two differences have opposite signs
    assert both["verdicts"]["pi only"]["difference"] * both["verdicts"]["HF only"]["difference"] < 0
    TabularPolicy(np.full((2, 10), 0.1)).save(workdir / "small.hfrl")
    wrong = invoke("evaluate", plain, workdir / "test.csv", "--verdict", "--pi", workdir / "small.hfrl")
    assert wrong.exit_code == 1 and "--pi: shape (2, 10) differs" in wrong.output


def test_refresh_of_a_tuned_artifact_needs_no_parents_and_keeps_its_floor(workdir):
    from hfrl.blending import blend
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.service.refresh import embedded_parents

    ok("tune", workdir / "pi.hfrl", workdir / "hf.hfrl", workdir / "validation.parquet", "--alphas", "0.5",
       "--out", workdir / "half.hfrl", "--min-propensity", 0.02)
    ok("refresh", workdir / "half.hfrl", "--logs", workdir / "test.csv", "--out", workdir / "half_new.hfrl")
    pi = TabularPolicy.load(workdir / "pi.hfrl")
    carried_pi, carried_hf = embedded_parents(workdir / "half_new.hfrl")
    np.testing.assert_array_equal(carried_pi.table_, pi.table_)
    fresh = HistoricalFrequency().fit(pd.read_csv(workdir / "test.csv").drop(columns="propensity"),
                                      n_states=pi.n_states, n_actions=pi.n_actions).probabilities_
    np.testing.assert_allclose(carried_hf.table_, fresh, atol=1e-12)
    expected = blend(pi, fresh, 0.5).with_exploration(0.02).table_
    refreshed = TabularPolicy.load(workdir / "half_new.hfrl")
    np.testing.assert_allclose(refreshed.table_, expected, atol=1e-12)
    assert refreshed.table_.min() >= 0.02 - 1e-12 and refreshed.metadata["min_propensity"] == 0.02


def test_run_pipeline_and_report(tmp_path):
    text = (EXAMPLES / "recommendation.toml").read_text()
    text = text.replace("n_rows = 100000", "n_rows = 4000").replace("n_steps = 300000", "n_steps = 5000")
    (tmp_path / "p.toml").write_text(text)
    result = ok("run", tmp_path / "p.toml", "--out", tmp_path / "run", "--json")
    payload = json.loads(result.stdout)
    assert Path(payload["report"]).is_file()
    assert (tmp_path / "run" / "config.json").is_file()
    (tmp_path / "run" / "report.html").unlink()
    payload = json.loads(ok("report", tmp_path / "run", "--out", tmp_path / "again.html", "--json").stdout)
    assert payload["report"] == str(tmp_path / "again.html") and payload["bytes"] > 1_000_000
    assert "plot-alpha-curve" in (tmp_path / "again.html").read_text()


def test_demo_writes_report_metrics_and_prints_the_table(tmp_path):
    result = ok("demo", "--out", tmp_path / "demo", "--seed", 0)
    out = tmp_path / "demo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["alpha"] <= 1.0
    assert len(metrics["policies"]) == 5
    for row in metrics["policies"].values():
        assert {"estimate", "ci_low", "ci_high", "true_value"} <= set(row)
        assert row["true_value"] is not None
    assert (out / "report.html").stat().st_size > 1_000_000
    for name in ("pi", "hf", "pi_prime"):
        assert (out / "artifacts" / f"{name}.hfrl").is_file()
    for label in ("logging policy", "HF only", "pi only", "pi' (tuned)", "optimal", "true value"):
        assert label in result.stdout
    assert set(metrics["true_value"]) == set(metrics["policies"])
    for line in (metrics["tuning"]["reason"], metrics["tuning"]["safety_reason"], metrics["outcome"]):
        assert line in result.stdout


# ---------------------------------------------------------------------------- errors and exit codes
def test_bad_log_file_is_a_one_line_data_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("state,action,reward\n0,1,1.0\n1,-2,0.0\n")
    result = invoke("frequencies", bad, "--out", tmp_path / "hf.hfrl")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "bad.csv" in lines[0] and "'action'" in lines[0] and "row 1" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_column_names_file_and_column(tmp_path):
    bad = tmp_path / "nocol.parquet"
    pd.DataFrame({"state": [0], "action": [1]}).to_parquet(bad)
    result = invoke("frequencies", bad, "--out", tmp_path / "hf.hfrl")
    assert result.exit_code == 1
    assert "nocol.parquet" in result.stderr and "reward" in result.stderr


def test_debug_lets_the_traceback_through(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("state,action,reward\n0,-1,1.0\n")
    result = invoke("--debug", "frequencies", bad, "--out", tmp_path / "hf.hfrl")
    assert result.exit_code == 1
    assert isinstance(result.exception, LogValidationError)


@pytest.mark.parametrize(
    "args",
    [
        ("frequencies",),  # missing argument
        ("simulate", "--out", "x.parquet", "--env", "chess"),  # bad choice
        ("simulate", "--out", "x.txt"),  # bad file type
        ("train", "--out", "x.hfrl"),  # neither --env nor --logs
        ("tune", "a", "b", "c", "--out", "d", "--alphas", "x,y"),
        ("recommend", "p.hfrl", "--states", "a,b"),
        ("evaluate", "p", "l", "--nope"),
    ],
)
def test_usage_errors_exit_2(args):
    assert invoke(*args).exit_code == 2


def test_bad_pipeline_and_corrupt_artifact_exit_1(tmp_path):
    (tmp_path / "p.toml").write_text("[learner]\nn_step = 3\n")
    result = invoke("run", tmp_path / "p.toml")
    assert result.exit_code == 1 and "unknown key(s) ['n_step']" in result.stderr
    (tmp_path / "broken.hfrl").write_bytes(b"not a zip")
    result = invoke("recommend", tmp_path / "broken.hfrl", "--states", "0")
    assert result.exit_code == 1 and "broken.hfrl" in result.stderr
    result = invoke("report", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no such run folder" in result.stderr


def test_exit_codes_in_a_real_process(tmp_path):
    def hfrl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hfrl.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert hfrl("--version").returncode == 0
    assert hfrl("frequencies", "--bogus").returncode == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("state,action,reward\n0,1,nan\n")
    failed = hfrl("frequencies", bad, "--out", tmp_path / "hf.hfrl")
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0 and "Traceback" not in failed.stderr
    assert "bad.csv" in failed.stderr and "reward" in failed.stderr


def test_evaluate_reads_a_service_decision_log(tmp_path):
    from hfrl.service.log import DecisionLog

    rng = np.random.default_rng(0)
    policy = TabularPolicy(np.full((3, 4), 0.25))
    policy.save(tmp_path / "uniform.hfrl")
    log = DecisionLog(tmp_path / "log.sqlite")
    states, actions = rng.integers(0, 3, 200), rng.integers(0, 4, 200)
    rows = [
        (f"d{i}", 0, int(s), int(a), 0.25, 0.25, float(i), "v1", "explore", 1, None, None)
        for i, (s, a) in enumerate(zip(states, actions, strict=True))
    ]
    log.log_decisions(rows)
    log.flush()
    rewards = rng.random(150)
    for i, reward in enumerate(rewards):  # the last 50 decisions get no feedback
        log.submit_feedback(f"d{i}", float(reward)).result(timeout=30)
    log.close()

    result = ok(
        "evaluate", tmp_path / "uniform.hfrl", tmp_path / "log.sqlite", "--estimators", "ips", "--json"
    )
    estimate = json.loads(result.stdout)["estimators"]["ips"]["estimate"]
    assert estimate == pytest.approx(rewards.mean())  # the logging policy itself: weights 1
    assert "50 of 200 decisions have no feedback yet; left out" in result.stderr
    result = ok(
        "evaluate",
        tmp_path / "uniform.hfrl",
        tmp_path / "log.sqlite",
        "--estimators",
        "ips",
        "--no-feedback",
        "zero",
        "--json",
    )
    assert json.loads(result.stdout)["estimators"]["ips"]["estimate"] == pytest.approx(rewards.sum() / 200)


def test_evaluate_estimates_missing_propensities(workdir, tmp_path):
    test = pd.read_csv(workdir / "test.csv").drop(columns=["propensity"])
    test.to_csv(tmp_path / "nopropensity.csv", index=False)
    refused = invoke("evaluate", workdir / "pi.hfrl", tmp_path / "nopropensity.csv", "--estimators", "snips")
    assert refused.exit_code == 1 and "propensity" in refused.stderr
    result = ok(
        "evaluate",
        workdir / "pi.hfrl",
        tmp_path / "nopropensity.csv",
        "--estimators",
        "snips",
        "--propensity",
        "estimate",
        "--json",
    )
    row = json.loads(result.stdout)["estimators"]["snips"]
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
