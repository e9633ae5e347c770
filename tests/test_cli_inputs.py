"""The command line on a new user's path: split, column mapping, every learner, and bad input that
ends in exit code 1 with one line naming the file, column, row or option (never a traceback, never
a number without evidence)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hfrl.cli import app
from hfrl.policies import TabularPolicy

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def ok(*args: object):
    result = invoke(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def one_line_error(*args: object) -> str:
    """Run a command that must fail on its data: exit 1, one line on stderr, nothing on stdout."""
    result = invoke(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small bandit log (3 states x 4 actions, uniform logging), a policy always taking action 0,
    a uniform HF, and variants of the log that break one thing each."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    n = 400
    logs = pd.DataFrame({"state": rng.integers(0, 3, n), "action": rng.integers(0, 4, n),
                         "reward": rng.random(n), "propensity": 0.25, "timestamp": np.arange(n)})
    logs.to_csv(root / "logs.csv", index=False)
    logs.to_parquet(root / "logs.parquet", index=False)
    logs.iloc[:1].to_csv(root / "one_line.csv", index=False)
    logs.iloc[:3].to_csv(root / "three.csv", index=False)
    no_overlap = logs.assign(action=rng.integers(1, 4, n))
    no_overlap.to_csv(root / "no_overlap.csv", index=False)
    huge = logs.assign(action=logs["action"].where(logs.index != 5, 10**12))
    huge.to_csv(root / "huge_id.csv", index=False)
    logs.assign(state=logs["state"].astype(str)).to_parquet(root / "text_states.parquet", index=False)
    logs.assign(reward=logs["reward"].astype(str)).to_parquet(root / "text_rewards.parquet", index=False)
    logs.drop(columns="propensity").to_csv(root / "no_propensity.csv", index=False)
    logs.rename(columns={"action": "item_id", "reward": "click", "propensity": "propensity_score"}).to_csv(
        root / "obd.csv", index=False)
    (root / "empty.csv").write_text("")
    always_0 = np.zeros((3, 4))
    always_0[:, 0] = 1.0
    TabularPolicy(always_0).save(root / "pi.hfrl")
    TabularPolicy(np.full((3, 4), 0.25)).save(root / "hf.hfrl")
    return root


# ---------------------------------------------------------------------------- split
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_split_by_time_writes_three_files_in_the_inputs_format(files, tmp_path, kind):
    payload = json.loads(ok("split", files / f"logs.{kind}", "--out-dir", tmp_path, "--fractions",
                            "0.5,0.25,0.25", "--json").stdout)
    read = pd.read_csv if kind == "csv" else pd.read_parquet
    parts = [read(tmp_path / f"{name}.{kind}") for name in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [200, 100, 100]
    assert [payload["splits"][name]["rows"] for name in ("train", "validation", "test")] == [200, 100, 100]
    assert parts[0]["timestamp"].max() < parts[1]["timestamp"].min() <= parts[1]["timestamp"].max() \
        < parts[2]["timestamp"].min()


def test_split_at_random_is_seeded_and_keeps_every_row(files, tmp_path):
    ok("split", files / "logs.csv", "--out-dir", tmp_path / "a", "--by", "random", "--seed", 3)
    ok("split", files / "logs.csv", "--out-dir", tmp_path / "b", "--by", "random", "--seed", 3)
    ok("split", files / "logs.csv", "--out-dir", tmp_path / "c", "--by", "random", "--seed", 4)
    first, again, other = ([pd.read_csv(tmp_path / d / f"{n}.csv") for n in ("train", "validation", "test")]
                           for d in "abc")
    assert all(x.equals(y) for x, y in zip(first, again, strict=True))
    assert not first[0].equals(other[0])
    assert sorted(pd.concat(first)["timestamp"]) == list(range(400))
    assert first[0]["timestamp"].max() > first[1]["timestamp"].min()  # shuffled, not cut in time


@pytest.mark.parametrize("fractions", ["0.5,0.5", "a,b,c"])
def test_split_refuses_bad_fractions_as_a_usage_error(files, tmp_path, fractions):
    result = invoke("split", files / "logs.csv", "--out-dir", tmp_path, "--fractions", fractions)
    assert result.exit_code == 2 and "--fractions" in result.output


# ---------------------------------------------------------------------------- column mapping
def test_column_options_read_a_file_with_its_own_names(files, tmp_path):
    mapping = ("--action-col", "item_id", "--reward-col", "click", "--propensity-col", "propensity_score")
    mapped = json.loads(ok("evaluate", files / "pi.hfrl", files / "obd.csv", *mapping, "--json").stdout)
    plain = json.loads(ok("evaluate", files / "pi.hfrl", files / "logs.csv", "--json").stdout)
    snips = mapped["estimators"]["snips"]["estimate"]
    assert snips == pytest.approx(plain["estimators"]["snips"]["estimate"])
    ok("frequencies", files / "obd.csv", "--out", tmp_path / "hf.hfrl", *mapping)
    ok("frequencies", files / "logs.csv", "--out", tmp_path / "hf_plain.hfrl")
    np.testing.assert_allclose(TabularPolicy.load(tmp_path / "hf.hfrl").table_,
                               TabularPolicy.load(tmp_path / "hf_plain.hfrl").table_)
    tuned = json.loads(ok("tune", files / "pi.hfrl", files / "hf.hfrl", files / "obd.csv", "--out",
                          tmp_path / "pi_prime.hfrl", *mapping, "--min-ess", 0, "--json").stdout)
    assert 0.0 <= tuned["alpha"] <= 1.0


def test_column_option_naming_a_missing_column_names_it(files):
    line = one_line_error("evaluate", files / "pi.hfrl", files / "obd.csv", "--action-col", "item")
    assert "obd.csv" in line and "item" in line


# ---------------------------------------------------------------------------- no estimate without evidence
def test_evaluate_on_one_row_says_no_evidence(files):
    line = one_line_error("evaluate", files / "pi.hfrl", files / "one_line.csv")
    assert "one_line.csv" in line and "no evidence" in line and "1 row" in line


@pytest.mark.parametrize("estimators", ["ips,snips,dm,dr", "ips,dm"])
def test_evaluate_without_overlap_says_no_evidence(files, estimators):
    line = one_line_error("evaluate", files / "pi.hfrl", files / "no_overlap.csv", "--estimators", estimators)
    assert "no_overlap.csv" in line and "no evidence" in line and "no overlap" in line


def test_tune_on_one_row_refuses(files, tmp_path):
    line = one_line_error("tune", files / "pi.hfrl", files / "hf.hfrl", files / "one_line.csv",
                          "--out", tmp_path / "x.hfrl")
    assert "one_line.csv" in line and "no evidence" in line
    assert not (tmp_path / "x.hfrl").exists()


def test_tune_on_three_rows_refuses_below_the_minimum_ess(files, tmp_path):
    line = one_line_error("tune", files / "pi.hfrl", files / "hf.hfrl", files / "three.csv",
                          "--out", tmp_path / "x.hfrl")
    assert "three.csv" in line and "--min-ess" in line
    assert not (tmp_path / "x.hfrl").exists()


def test_tune_without_overlap_for_pi_says_pi_alone_has_no_evidence(files, tmp_path):
    result = ok("tune", files / "pi.hfrl", files / "hf.hfrl", files / "no_overlap.csv", "--out",
                tmp_path / "x.hfrl", "--min-ess", 0)
    assert "chosen alpha = 0 " not in result.stdout
    assert "no evidence for pi alone" in result.stdout
    assert "nan" not in result.stdout.lower()


def test_tune_explains_alpha_zero_as_pi_alone(files, tmp_path):
    result = ok("tune", files / "pi.hfrl", files / "hf.hfrl", files / "logs.csv", "--alphas", "0",
                "--out", tmp_path / "x.hfrl", "--min-ess", 0)
    assert "alpha = 0 (pi' = pi (the learned policy alone))" in result.stdout


# ---------------------------------------------------------------------------- bad files, one line each
@pytest.mark.parametrize("command", [
    ("frequencies", "{f}", "--out", "{tmp}/hf.hfrl"),
    ("train", "--logs", "{f}", "--learner", "direct-method", "--out", "{tmp}/pi.hfrl"),
])
def test_huge_ids_are_refused_naming_the_row(files, tmp_path, command):
    args = [a.format(f=files / "huge_id.csv", tmp=tmp_path) for a in command]
    line = one_line_error(*args)
    assert "huge_id.csv" in line and "'action'" in line and "row 5" in line and "CategoryEncoder" in line


@pytest.mark.parametrize("name, column", [("text_states.parquet", "'state'"),
                                          ("text_rewards.parquet", "'reward'")])
def test_numbers_stored_as_text_are_refused_the_same_way_by_every_command(files, tmp_path, name, column):
    for args in (("frequencies", files / name, "--out", tmp_path / "hf.hfrl"),
                 ("evaluate", files / "pi.hfrl", files / name),
                 ("tune", files / "pi.hfrl", files / "hf.hfrl", files / name, "--out", tmp_path / "x.hfrl")):
        line = one_line_error(*args)
        assert name in line and column in line and "stored as text" in line and "np." not in line


def test_an_empty_file_says_it_is_empty(files, tmp_path):
    line = one_line_error("frequencies", files / "empty.csv", "--out", tmp_path / "hf.hfrl")
    assert "empty.csv" in line and "empty" in line.split("empty.csv", 1)[1]


def test_a_missing_propensity_points_at_the_option(files):
    line = one_line_error("evaluate", files / "pi.hfrl", files / "no_propensity.csv")
    assert "'propensity'" in line and "--propensity estimate" in line


def test_offline_training_without_next_state_points_at_the_direct_method(files, tmp_path):
    line = one_line_error("train", "--logs", files / "logs.csv", "--out", tmp_path / "pi.hfrl")
    assert "next_state" in line and "--learner direct-method" in line


# ---------------------------------------------------------------------------- every learner
@pytest.mark.parametrize("learner, options", [("epsilon-greedy", ()), ("ucb1", ()), ("linucb", ()),
                                              ("thompson-sampling", ("--option", "prior=gaussian"))])
def test_bandit_learners_train_online(tmp_path, learner, options):
    payload = json.loads(ok("train", "--env", "recommendation", "--learner", learner, "--steps", 3000,
                            *options, "--out", tmp_path / "pi.hfrl", "--json").stdout)
    policy = TabularPolicy.load(tmp_path / "pi.hfrl")
    assert (policy.n_states, policy.n_actions) == (20, 10)
    assert 0.0 < payload["true_return"] <= payload["optimal_return"] + 1e-9


def test_thompson_sampling_on_rewards_above_one_names_the_gaussian_prior(tmp_path):
    line = one_line_error("train", "--env", "recommendation", "--learner", "thompson-sampling",
                          "--steps", 500, "--out", tmp_path / "pi.hfrl")
    assert "[0, 1]" in line and "--option prior=gaussian" in line


def test_conservative_learner_restricts_a_named_base_learner_to_logged_actions(files, tmp_path):
    logs = pd.read_csv(files / "logs.csv")
    logs = logs[~((logs["state"] == 0) & (logs["action"] == 3))]
    logs.to_csv(tmp_path / "logs.csv", index=False)
    payload = json.loads(ok("train", "--logs", tmp_path / "logs.csv", "--learner", "conservative", "--option",
                            'learner="direct-method"', "--option", "min_count=1", "--out",
                            tmp_path / "pi.hfrl", "--min-propensity", 0, "--json").stdout)  # as learned
    assert payload["learner"] == "ConservativeLearner"
    assert TabularPolicy.load(tmp_path / "pi.hfrl").table_[0, 3] == 0.0


def test_an_online_learner_with_logs_is_a_usage_error_naming_the_fix(files, tmp_path):
    result = invoke("train", "--logs", files / "logs.csv", "--learner", "ucb1", "--out", tmp_path / "x.hfrl")
    assert result.exit_code == 2 and "--env" in result.output


# ---------------------------------------------------------------------------- help reads as text
def test_help_has_plain_metavars_listed_choices_and_one_spelling():
    run_help = ok("run", "--help").stdout
    assert "[output]" in run_help
    for command in ("run", "train", "simulate", "tune", "evaluate", "serve", "split"):
        text = ok(command, "--help").stdout
        for leaked in ("<bool>", "<list[str]>", "{logs}", "<path>", "ad_placement"):
            assert leaked not in text, (command, leaked)
    assert "ad-placement" in ok("simulate", "--help").stdout
    train_help = ok("train", "--help").stdout
    for learner in ("ucb1", "linucb", "thompson-sampling", "epsilon-greedy", "conservative", "direct-method"):
        assert learner in train_help
    bad_env = invoke("simulate", "--out", "x.csv", "--env", "nope")
    assert bad_env.exit_code == 2 and "ad-placement" in bad_env.output
    assert "ad_placement" not in bad_env.output


# ---------------------------------------------------------------------------- serve refuses before starting
def test_serve_refuses_a_missing_folder_and_a_file_that_is_not_a_decision_log(files):
    line = one_line_error("serve", files / "pi.hfrl", "--db", "/nonexistent/dir/d.sqlite")
    assert "--db" in line and "/nonexistent/dir" in line and "does not exist" in line
    line = one_line_error("serve", files / "pi.hfrl", "--db", files / "logs.csv")
    assert "--db" in line and "not an SQLite database" in line


def test_serve_refuses_a_port_in_use(files, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line_error("serve", files / "pi.hfrl", "--db", tmp_path / "d.sqlite", "--port", port)
    assert f"--port {port}" in line and "in use" in line
