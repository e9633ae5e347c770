"""The ``hfrl`` command line: a thin shell that parses options and calls the library.

Heavy imports (uvicorn, Spark, plotly, gymnasium) happen inside the command that needs them so that
``hfrl --help`` stays fast. Exit codes: 0 on success, 2 on a usage error (Typer's), 1 on a data
error with a one-line message naming the file, column or row (the traceback only with ``--debug``
or ``HFRL_DEBUG=1``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from hfrl import __version__

_MAX_MESSAGE = 400


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: no such file"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 40].rstrip() + " ... (--debug shows everything)"
    return text


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    """Warnings (support violations, dropped rows) as one line on stderr, without source lines."""
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


class _HfrlGroup(TyperGroup):
    """Turns data errors (``HfrlError`` and any ``ValueError``, ``OSError``, ``ImportError``) into
    exit code 1 with one line on stderr; ``--debug`` lets the traceback through."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (ValueError, OSError, ImportError) as exc:
            debug = bool((ctx.obj or {}).get("debug")) or os.environ.get("HFRL_DEBUG", "") not in ("", "0")
            if debug:
                raise
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="hfrl",
    help="RL policies fine-tuned toward historical frequency: learn, blend, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_HfrlGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfrl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback on errors (also HFRL_DEBUG=1)."
    ),
) -> None:
    """RL policies fine-tuned toward historical frequency: learn, blend, evaluate, serve."""
    ctx.obj = {"debug": debug}


# ---------------------------------------------------------------------------- shared helpers
def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def _stages(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A Rich progress display on stderr: each call starts a stage (spinner + elapsed time)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = _stderr_console()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
    ) as progress:
        tasks: list[Any] = []

        def start(description: str) -> None:
            if tasks:
                progress.update(tasks[-1], total=1, completed=1)
            tasks.append(progress.add_task(description, total=None))

        yield start
        if tasks:
            progress.update(tasks[-1], total=1, completed=1)


def _key_values(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """Parse repeated ``key=value`` options; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


def _choice(value: str, choices: Any, option: str) -> str:
    key = value.replace("-", "_")
    if key not in choices:
        raise typer.BadParameter(
            f"expected one of {', '.join(sorted(choices))}; got {value!r}", param_hint=option
        )
    return key


def _csv_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter("expected a comma-separated list", param_hint=option)
    return items


def _read_logs(path: str, backend: str | None = None, no_feedback: str = "drop") -> Any:
    """Logs for evaluate/tune, validated once (``hfrl.data.Logs``): a CSV/Parquet file or glob, read
    where it lies on ``backend`` (into memory by default), or a service decision log.

    Decisions of a decision log that got no feedback yet have no reward: ``no_feedback="drop"``
    leaves them out, ``"zero"`` counts them as reward 0; either way a warning says how many.
    """
    from hfrl.data import Logs

    if Path(path).suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        from hfrl.service import read_decision_log

        frame = read_decision_log(path)
        missing = frame["reward"].isna()
        if missing.any():
            count = int(missing.sum())
            if no_feedback == "zero":
                frame["reward"] = frame["reward"].fillna(0.0)
                action = "counted as reward 0"
            else:
                frame = frame.loc[~missing].reset_index(drop=True)
                action = "left out"
            warnings.warn(f"{path}: {count} of {len(missing)} decisions have no feedback yet; {action} "
                          "(--no-feedback drop|zero)", UserWarning, stacklevel=2)
        return Logs.open(frame, backend or "memory")
    return Logs.open(path, backend or "memory")


def _load_policy(path: str) -> Any:
    from hfrl.policies import TabularPolicy

    return TabularPolicy.load(path)


def _stdout_console() -> Any:
    """A Rich console on stdout; wide enough for the tables when stdout is not a terminal."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _print_json(payload: Any) -> None:
    from hfrl.pipeline import json_ready

    typer.echo(json.dumps(json_ready(payload), indent=2))


def _print_table(title: str, frame: Any, columns: list[str], index_name: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column(index_name)
    for column in columns:
        table.add_column(column, justify="right")
    for label, row in frame.iterrows():
        table.add_row(str(label), *(_fmt(row.get(c)) for c in columns))
    _stdout_console().print(table)


def _fmt(value: Any) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)


_BACKEND_HELP = "Where aggregations run: memory (pandas/numpy), duckdb (files, out of core) or spark."
_JSON_HELP = "Print machine-readable JSON on stdout instead of tables."
_SEED_HELP = "Seed of every random step (same seed, same result)."
_PROPENSITY_HELP = "logged (the propensity column) or estimate (from the logs, for logs without one)."
_NO_FEEDBACK_HELP = "Decision-log (.sqlite) rows without feedback: drop, or zero (count as reward 0)."


# ---------------------------------------------------------------------------- commands
@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", help="Where to write the logs (.parquet or .csv)."),
    env: str = typer.Option("recommendation", "--env", help="Simulator: recommendation or ad-placement."),
    logging: str = typer.Option(
        "popularity", "--logging", help="Logging policy: uniform, popularity or epsilon-greedy."
    ),
    rows: int = typer.Option(10_000, "--rows", min=1, help="Number of logged decisions to simulate."),
    epsilon: float = typer.Option(
        0.1, "--epsilon", min=0.0, max=1.0, help="Exploration share of the epsilon-greedy logging policy."
    ),
    gamma: float = typer.Option(
        0.9,
        "--gamma",
        min=0.0,
        max=1.0,
        help="Discount of the optimal policy epsilon-greedy logging is built around.",
    ),
    env_option: list[str] = typer.Option(
        None, "--env-option", help="Simulator setting as key=value (repeatable), e.g. n_items=50."
    ),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Simulate logged decisions of a logging policy in a built-in simulator and write them to a file."""
    from hfrl.pipeline import ENVS, LOGGING_POLICIES, make_env, simulate_logs

    env_name = _choice(env, ENVS, "--env")
    kind = _choice(logging, LOGGING_POLICIES, "--logging")
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise typer.BadParameter("the file name must end in .parquet or .csv", param_hint="--out")
    with _stages(not as_json) as stage:
        stage(f"simulating {rows:,} decisions")
        simulator = make_env(env_name, _key_values(env_option, "--env-option"))
        _, logs = simulate_logs(simulator, kind, rows, epsilon=epsilon, gamma=gamma, seed=seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            logs.to_csv(out, index=False)
        else:
            logs.to_parquet(out, index=False)
    summary = {
        "out": str(out),
        "rows": len(logs),
        "n_states": simulator.n_states,
        "n_actions": simulator.n_actions,
        "sessions": int(logs["session_id"].nunique()),
        "mean_reward": float(logs["reward"].mean()),
        "mean_reward_std_error": float(logs["reward"].std(ddof=1) / max(len(logs), 1) ** 0.5),
    }
    if as_json:
        _print_json(summary)
    else:
        typer.echo(
            f"wrote {len(logs):,} rows ({summary['sessions']:,} sessions, {simulator.n_states} states x "
            f"{simulator.n_actions} actions) to {out}; mean reward {summary['mean_reward']:.4g} "
            f"± {summary['mean_reward_std_error']:.2g} (std. error)"
        )


@app.command()
def frequencies(
    logs: str = typer.Argument(..., help="Log file or glob (.csv or .parquet) with state, action, reward."),
    out: Path = typer.Option(..., "--out", help="Where to save HF as a policy artifact (e.g. hf.hfrl)."),
    kind: str = typer.Option(
        "share",
        "--kind",
        help="share: what users chose per state; rate: what performed (events/impressions).",
    ),
    prior_strength: float = typer.Option(
        1.0, "--prior-strength", min=0.0, help="Smoothing toward the parent level; 0 means none."
    ),
    n_states: int = typer.Option(
        None, "--n-states", min=1, help="Number of states (default: largest id + 1)."
    ),
    n_actions: int = typer.Option(
        None, "--n-actions", min=1, help="Number of actions (default: largest id + 1)."
    ),
    option: list[str] = typer.Option(
        None, "--option", help="Any other HistoricalFrequency setting as key=value (repeatable)."
    ),
    backend: str = typer.Option(None, "--backend", help=_BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Fit the historical frequency HF(a|s) from a log file and save it as a policy artifact."""
    from hfrl.backends import BACKENDS
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.policies import TabularPolicy

    kind = _choice(kind, ("share", "rate"), "--kind")
    settings = {"kind": kind, "prior_strength": prior_strength, **_key_values(option, "--option")}
    if backend is not None:
        settings["backend"] = _choice(backend, BACKENDS, "--backend")
    with _stages(not as_json) as stage:
        stage(f"reading {logs} and counting")
        hf = HistoricalFrequency(**settings).fit(logs, n_states=n_states, n_actions=n_actions)
        table = hf.probabilities_
        metadata = {
            "name": "hf",
            "source": str(logs),
            **{k: v for k, v in settings.items() if k != "backend"},
        }
        path = TabularPolicy(table, metadata).save(out)
    counts = getattr(hf, "state_counts_", None)
    summary = {
        "out": str(path),
        "n_states": int(table.shape[0]),
        "n_actions": int(table.shape[1]),
        "kind": kind,
        "prior_strength": prior_strength,
    }
    if counts is not None:
        summary["events"] = float(counts.sum())
        summary["states_with_events"] = int((counts > 0).sum())
    if as_json:
        _print_json(summary)
    else:
        extra = f"; {summary['states_with_events']} states have events" if counts is not None else ""
        typer.echo(f"wrote HF ({kind}, {table.shape[0]} states x {table.shape[1]} actions{extra}) to {path}")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Where to save the learned policy artifact (e.g. pi.hfrl)."),
    env: str = typer.Option(
        None, "--env", help="Train online against this simulator (recommendation, ad-placement)."
    ),
    logs: str = typer.Option(
        None, "--logs", help="Train offline from this log file (CSV/Parquet, read into memory)."
    ),
    learner: str = typer.Option(
        None,
        "--learner",
        help="q-learning, sarsa, expected-sarsa (online) or fitted-q-iteration, direct-method, ips "
        "(offline). Default: q-learning online, fitted-q-iteration offline.",
    ),
    steps: int = typer.Option(200_000, "--steps", min=1, help="Environment steps for online learners."),
    gamma: float = typer.Option(0.9, "--gamma", min=0.0, max=1.0, help="Discount factor."),
    env_option: list[str] = typer.Option(
        None, "--env-option", help="Simulator setting as key=value (repeatable)."
    ),
    option: list[str] = typer.Option(
        None, "--option", help="Learner setting as key=value (repeatable), e.g. learning_rate=0.2."
    ),
    n_states: int = typer.Option(
        None, "--n-states", min=1, help="Offline: number of states (default: largest id + 1)."
    ),
    n_actions: int = typer.Option(
        None, "--n-actions", min=1, help="Offline: number of actions (default: largest id + 1)."
    ),
    curve_out: Path = typer.Option(None, "--curve-out", help="Also write the learning curve as CSV."),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Learn a policy: online against a simulator, or offline from logged data."""
    from hfrl.pipeline import ENVS, LEARNERS, OFFLINE_LEARNERS, ONLINE_LEARNERS, make_env, make_learner

    if (env is None) == (logs is None):
        raise typer.BadParameter(
            "give exactly one of --env (online) or --logs (offline)", param_hint="--env/--logs"
        )
    online = env is not None
    name = _choice(learner or ("q_learning" if online else "fitted_q_iteration"), LEARNERS, "--learner")
    if online and name not in ONLINE_LEARNERS:
        raise typer.BadParameter(f"{learner} learns from logs; use --logs", param_hint="--learner")
    if not online and name not in OFFLINE_LEARNERS:
        raise typer.BadParameter(f"{learner} learns online; use --env", param_hint="--learner")
    model = make_learner(name, gamma, seed, _key_values(option, "--option"))
    summary: dict[str, Any] = {"out": str(out), "learner": type(model).__name__}
    with _stages(not as_json) as stage:
        if online:
            simulator = make_env(_choice(env, ENVS, "--env"), _key_values(env_option, "--env-option"))
            stage(f"training {type(model).__name__} for {steps:,} steps")
            model.fit(simulator, n_steps=steps)
            stage("solving the simulator exactly")
            summary["true_return"] = simulator.policy_value(model.policy_, gamma)
            summary["optimal_return"] = simulator.policy_value(simulator.optimal_policy(gamma), gamma)
        else:
            from hfrl.data import load_logs

            stage(f"reading {logs}")
            frame = load_logs(logs)
            stage(f"training {type(model).__name__} on {len(frame):,} rows")
            model.fit(
                frame,
                n_states=n_states or int(frame["state"].max()) + 1,
                n_actions=n_actions or int(frame["action"].max()) + 1,
            )
        policy = model.policy_
        policy.metadata.setdefault("learner", type(model).__name__)
        policy.save(out)
    curve = getattr(model, "learning_curve_", None)
    if curve_out is not None and curve is not None:
        curve.to_csv(curve_out, index=False)
        summary["curve"] = str(curve_out)
    summary.update(n_states=policy.n_states, n_actions=policy.n_actions)
    if as_json:
        _print_json(summary)
        return
    typer.echo(
        f"wrote {summary['learner']} policy ({policy.n_states} states x {policy.n_actions} actions) to {out}"
    )
    if online:
        share = (
            summary["true_return"] / summary["optimal_return"] if summary["optimal_return"] else float("nan")
        )
        typer.echo(
            f"exact discounted return {summary['true_return']:.4g} = {share:.1%} of the optimal "
            f"{summary['optimal_return']:.4g} (gamma={gamma})"
        )


@app.command()
def tune(
    policy: Path = typer.Argument(..., help="The learned policy artifact pi (from hfrl train)."),
    hf: Path = typer.Argument(..., help="The HF artifact (from hfrl frequencies), fitted on other rows."),
    logs: str = typer.Argument(..., help="Validation logs (CSV/Parquet, or a service .sqlite decision log)."),
    out: Path = typer.Option(..., "--out", help="Where to save the blended policy pi' artifact."),
    estimator: str = typer.Option(
        "snips", "--estimator", help="OPE estimator: ips, clipped-ips, snips, dm, dr, switch-dr."
    ),
    criterion: str = typer.Option(
        "estimate", "--criterion", help="estimate (best value) or lower-bound (best lower confidence bound)."
    ),
    alphas: str = typer.Option(
        "auto", "--alphas", help="auto (101 points on [0, 1]) or a comma-separated list."
    ),
    method: str = typer.Option("linear", "--method", help="Blend: linear or geometric."),
    level: float = typer.Option(0.95, "--level", min=0.5, max=0.999, help="Confidence level of the band."),
    curve_out: Path = typer.Option(None, "--curve-out", help="Also write the alpha curve as CSV."),
    no_feedback: str = typer.Option("drop", "--no-feedback", help=_NO_FEEDBACK_HELP),
    propensity: str = typer.Option("logged", "--propensity", help=_PROPENSITY_HELP),
    backend: str = typer.Option(None, "--backend", help=_BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Choose alpha for pi' = (1 - alpha) pi + alpha HF by off-policy evaluation on validation logs."""
    import inspect

    from hfrl.pipeline import ESTIMATORS
    from hfrl.tune import tune_alpha

    estimator = _choice(estimator, ESTIMATORS, "--estimator")
    criterion = _choice(criterion, ("estimate", "lower_bound"), "--criterion")
    no_feedback = _choice(no_feedback, ("drop", "zero"), "--no-feedback")
    method = _choice(method, ("linear", "geometric"), "--method")
    grid: Any = "auto"
    if alphas != "auto":
        try:
            grid = [float(a) for a in _csv_list(alphas, "--alphas")]
        except ValueError:
            raise typer.BadParameter(
                f"expected 'auto' or numbers, got {alphas!r}", param_hint="--alphas"
            ) from None
    kwargs: dict[str, Any] = {"estimator": estimator, "alphas": grid, "criterion": criterion,
                              "propensity": _choice(propensity, ("logged", "estimate"), "--propensity")}
    params = inspect.signature(tune_alpha).parameters
    for key, value in (("method", method), ("level", level), ("backend", backend)):
        if key in params and value is not None:
            kwargs[key] = value
    with _stages(not as_json) as stage:
        stage("loading artifacts and logs")
        pi, hf_policy = _load_policy(str(policy)), _load_policy(str(hf))
        frame = _read_logs(logs, backend, no_feedback)
        stage(f"computing the alpha curve by {estimator.upper()}")
        result = tune_alpha(pi, hf_policy, frame, **kwargs)
        blended = result.policy
        blended.metadata.update(alpha=float(result.alpha), method=method, estimator=estimator)
        blended.save(out)
    curve = result.curve
    if curve_out is not None:
        curve.to_csv(curve_out, index=False)
    best = result.evaluation.iloc[0]  # the estimator's row at the chosen (possibly refined) alpha
    summary = {
        "alpha": float(result.alpha),
        "estimate": float(best["estimate"]),
        "ci_low": float(best["ci_low"]),
        "ci_high": float(best["ci_high"]),
        "estimator": estimator,
        "criterion": criterion,
        "out": str(out),
    }
    if as_json:
        _print_json({**summary, "curve": curve.to_dict(orient="records")})
        return
    typer.echo(
        f"chosen alpha = {summary['alpha']:.3g}: {estimator.upper()} value {summary['estimate']:.4g} "
        f"[{summary['ci_low']:.4g}, {summary['ci_high']:.4g}] ({level:.0%} CI); pi' written to {out}"
    )


@app.command()
def evaluate(
    policy: Path = typer.Argument(..., help="The policy artifact to evaluate."),
    logs: str = typer.Argument(
        ..., help="Logs with propensities (CSV/Parquet, or a service .sqlite decision log)."
    ),
    estimators: str = typer.Option(
        "ips,snips,dm,dr", "--estimators", help="Comma-separated: ips, clipped-ips, snips, dm, dr, switch-dr."
    ),
    level: float = typer.Option(
        0.95, "--level", min=0.5, max=0.999, help="Confidence level of the intervals."
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", min=0, help="Bootstrap resamples (0: normal intervals only)."
    ),
    verdict: bool = typer.Option(
        False,
        "--verdict",
        help="Also say whether the policy beats the logging policy (ship / no evidence / ...).",
    ),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    no_feedback: str = typer.Option("drop", "--no-feedback", help=_NO_FEEDBACK_HELP),
    propensity: str = typer.Option("logged", "--propensity", help=_PROPENSITY_HELP),
    backend: str = typer.Option(None, "--backend", help=_BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Estimate a policy's value from logged data with every estimator, each with its confidence interval."""
    import inspect

    from hfrl.ope import compare
    from hfrl.ope import evaluate as ope_evaluate
    from hfrl.pipeline import ESTIMATORS

    names = tuple(_choice(e, ESTIMATORS, "--estimators") for e in _csv_list(estimators, "--estimators"))
    no_feedback = _choice(no_feedback, ("drop", "zero"), "--no-feedback")
    kwargs: dict[str, Any] = {
        "estimators": names,
        "level": level,
        "n_bootstrap": bootstrap,
        "random_state": seed,
        "propensity": _choice(propensity, ("logged", "estimate"), "--propensity"),
    }
    if backend is not None and "backend" in inspect.signature(ope_evaluate).parameters:
        kwargs["backend"] = backend
    with _stages(not as_json) as stage:
        stage("loading the policy and the logs")
        target, frame = _load_policy(str(policy)), _read_logs(logs, backend, no_feedback)
        stage("evaluating" + (f" with {bootstrap} bootstrap resamples" if bootstrap else ""))
        result = ope_evaluate(frame, target, **kwargs)
        decision = compare(target, frame, level=level, propensity=kwargs["propensity"]) if verdict else None
    wanted = ("estimate", "std_error", "ci_low", "ci_high", "boot_ci_low", "boot_ci_high", "ess")
    columns = [c for c in (*wanted, "max_weight") if c in result.columns]
    verdict_payload = None
    if decision is not None:
        verdict_payload = {
            k: getattr(decision, k) for k in ("verdict", "difference", "ci_low", "ci_high", "reason")
        }
    if as_json:
        payload: dict[str, Any] = {"estimators": result[columns].to_dict(orient="index")}
        if verdict_payload:
            payload["verdict"] = verdict_payload
        _print_json(payload)
        return
    _print_table(f"Value of {policy.name} ({level:.0%} intervals)", result, columns, "estimator")
    if verdict_payload:
        typer.echo(
            f"verdict vs the logging policy: {verdict_payload['verdict']} — difference "
            f"{verdict_payload['difference']:.4g} [{verdict_payload['ci_low']:.4g}, "
            f"{verdict_payload['ci_high']:.4g}]; {verdict_payload['reason']}"
        )


@app.command()
def recommend(
    policy: Path = typer.Argument(..., help="The policy artifact to query."),
    states: str = typer.Option(..., "--states", help="Comma-separated state ids, e.g. 0,3,7."),
    k: int = typer.Option(3, "--k", min=1, help="How many actions per state."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The k most probable actions of a policy for each given state, with their probabilities."""
    try:
        ids = [int(s) for s in _csv_list(states, "--states")]
    except ValueError:
        raise typer.BadParameter(
            f"expected integer state ids, got {states!r}", param_hint="--states"
        ) from None
    target = _load_policy(str(policy))
    if k > target.n_actions:
        raise typer.BadParameter(f"k must be at most the {target.n_actions} actions", param_hint="--k")
    actions, probabilities = target.top_k(ids, k)
    rows = [
        {"state": s, "rank": r + 1, "action": int(a), "probability": float(p)}
        for s, acts, probs in zip(ids, actions, probabilities, strict=True)
        for r, (a, p) in enumerate(zip(acts, probs, strict=True))
    ]
    if as_json:
        _print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"Top {k} actions of {policy.name}")
    for column in ("state", "rank", "action", "probability"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["state"]), str(row["rank"]), str(row["action"]), f"{row['probability']:.4f}")
    _stdout_console().print(table)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder (written by hfrl run or hfrl demo)."),
    out: Path = typer.Option(None, "--out", help="Where to write the HTML (default RUN_DIR/report.html)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Write the self-contained HTML report of a run folder (opens offline, no CDN)."""
    from hfrl.report import write_report

    with _stages(not as_json) as stage:
        stage(f"rendering {run_dir}")
        path = write_report(run_dir, out)
    if as_json:
        _print_json({"report": str(path), "bytes": path.stat().st_size})
    else:
        typer.echo(f"wrote {path}")


def _print_summary(result: Any, as_json: bool) -> None:
    if as_json:
        payload = {
            "out": str(result.out_dir),
            "alpha": result.alpha,
            "report": str(result.out_dir / "report.html"),
            "policies": result.summary.to_dict(orient="index"),
        }
        _print_json(payload)
        return
    from rich.table import Table

    metrics = result.metrics
    level = metrics["evaluation"]["level"]
    estimator = metrics["tuning"]["estimator"].upper()
    simulated = not result.summary["true_value"].isna().all()
    table = Table(title=f"Policy values on the test split — chosen alpha = {result.alpha:.3g}")
    table.add_column("policy")
    table.add_column(f"estimated value ({estimator})", justify="right")
    table.add_column(f"{level:.0%} CI", justify="right")
    if simulated:
        table.add_column("true value", justify="right")
        table.add_column("true return", justify="right")
    for label, row in result.summary.iterrows():
        cells = [str(label), _fmt(row["estimate"]), f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"]
        if simulated:
            cells += [_fmt(row["true_value"]), _fmt(row["true_return"])]
        table.add_row(*cells)
    _stdout_console().print(table)
    if simulated:
        typer.echo(
            "value = expected reward per decision at the test split's states; true value is exact "
            "(simulator); true return = exact discounted session return (env.policy_value)."
        )
    verdict = metrics.get("verdict")
    if verdict:
        typer.echo(
            f"verdict for pi' vs the logging policy: {verdict['verdict']} ({verdict['reason']})"
        )
    for note in metrics.get("warnings", []):
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"run folder: {result.out_dir}  report: {result.out_dir / 'report.html'}")


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="A pipeline file (TOML); see examples/*.toml."),
    out: Path = typer.Option(None, "--out", help="Run folder (overrides [output] dir)."),
    seed: int = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Run a declarative pipeline: logs or simulator -> HF -> learner -> alpha -> evaluation -> run folder."""
    from hfrl.pipeline import load_config, run_pipeline

    config = load_config(pipeline)
    if seed is not None:
        config["seed"] = seed
    with _stages(not as_json) as stage:
        result = run_pipeline(config, out, progress=stage)
        if not no_report:
            from hfrl.report import write_report

            stage("writing report.html")
            write_report(result.out_dir)
    _print_summary(result, as_json)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Run folder to write."),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """End to end on the Recommendation simulator: logs, HF, Q-learning, alpha by SNIPS, truth."""
    from hfrl.pipeline import run_demo
    from hfrl.report import write_report

    with _stages(not as_json) as stage:
        result = run_demo(out, seed, progress=stage)
        stage("writing report.html")
        write_report(result.out_dir)
    _print_summary(result, as_json)


datasets_app = typer.Typer(
    help="Fetch public datasets (the Open Bandit Dataset sample).", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("obd")
def datasets_obd(
    out: str = typer.Option(..., "--out", help="Directory to put the dataset in."),
    sdist: str | None = typer.Option(
        None, "--sdist", help="An already downloaded obp-0.5.7.tar.gz (skips pip download)."
    ),
) -> None:
    """Fetch the Open Bandit Dataset small sample from the obp sdist, verify it, print its path."""
    from hfrl.datasets import fetch_obd
    from hfrl.errors import HfrlError

    try:
        root = fetch_obd(out, sdist=sdist)
    except (HfrlError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(root.resolve()))


# ---------------------------------------------------------------------- service (hfrl.service)
@app.command()
def serve(
    artifact: str = typer.Argument(
        ..., help="Policy artifact to serve (a TabularPolicy or a contextual policy, saved with .save)."
    ),
    db: str = typer.Option("decisions.sqlite", "--db", help="SQLite decision log (created when absent)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    api_key_file: str | None = typer.Option(
        None, "--api-key-file", help="File holding the admin API key (default: $HFRL_API_KEY)."
    ),
    require_key: bool = typer.Option(False, "--require-key", help="Require the API key on every endpoint."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Larger bodies get 413."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampling generator."),
) -> None:
    """Serve a policy over HTTP (decide, feedback, reload, metrics), logging every decision to --db."""
    from hfrl.errors import HfrlError
    from hfrl.service.server import serve as run

    try:
        run(
            artifact, db, host=host, port=port, api_key_file=api_key_file, require_key=require_key,
            max_body_bytes=max_body_bytes, seed=seed,
        )
    except (HfrlError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("export-log")
def export_log(
    db: str = typer.Argument(..., help="Decision log database written by hfrl serve."),
    out: str = typer.Option(..., "--out", help="Parquet file to write."),
    event: str | None = typer.Option(None, "--event", help="Reward from this feedback event only."),
    all_positions: bool = typer.Option(False, "--all-positions", help="Also the slots k>1 of each decision."),
    missing_reward: float | None = typer.Option(
        None, "--missing-reward", help="Reward of decisions without feedback (default: null)."
    ),
) -> None:
    """Write the decision log as Parquet in the log schema, one row per decision, reward from feedback."""
    from hfrl.errors import HfrlError
    from hfrl.service.log import write_parquet

    try:
        rows = write_parquet(db, out, event=event, all_positions=all_positions, missing_reward=missing_reward)
    except (HfrlError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {rows} decisions to {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
