"""The ``hfrl`` command line: a thin shell that parses options and calls the library.

Heavy imports (uvicorn, Spark, plotly, gymnasium) happen inside the command that needs them so that
``hfrl --help`` stays fast. Exit codes: 0 on success, 2 on a usage error (Typer's), 1 on a data
error with a one-line message naming the file, column or row (the traceback only with ``--debug``
or ``HFRL_DEBUG=1``). Numbers are written for people (``hfrl.report.wording``); ``--json`` keeps
them whole for programs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from hfrl import __version__

_MAX_MESSAGE = 400


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: no such file"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "out of memory (a table or the rows do not fit; --backend duckdb keeps the rows on disk)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 40].rstrip() + " ... (--debug shows everything)"
    return text


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Warnings (support violations, dropped rows) as one line each on stderr, once, without source
    lines; numpy's RuntimeWarnings are about values checked elsewhere and are left out."""
    shown = dict.fromkeys(" ".join(str(w.message).split()) for w in caught
                          if not issubclass(w.category, RuntimeWarning))
    for text in shown:
        typer.echo(f"warning: {text}", err=True)


def _tidy(params: list[Any]) -> list[Any]:
    """Plain metavars in help (``N``, ``PATH``, ``a|b``; none for flags and beside an argument's
    name) and no Rich markup inside option help (``[output]`` stays literal)."""
    for param in params:
        if getattr(param, "_hfrl_tidy", False):
            continue
        param._hfrl_tidy = True
        if getattr(param, "help", None):
            param.help = param.help.replace("[", "\\[")
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx: None  # the name says it: no "<path>" beside it
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _metavar(param)
    return params


class _HfrlCommand(TyperCommand):
    """A command with tidy help (``_tidy``), ``PIPELINE`` rather than ``{pipeline}`` in its usage
    line, and an epilog computed when help is asked for (``callback.epilog`` when callable)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def get_help(self, ctx: Any) -> str:
        epilog = getattr(self.callback, "epilog", None)
        if callable(epilog) and not self.epilog:
            self.epilog = epilog()
        return super().get_help(ctx)


def _metavar(param: Any) -> str:
    """``N``, ``X``, ``PATH`` or ``TEXT`` from an option's annotation (instead of ``<int range>``)."""
    from typing import get_args

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for kind in (annotation, *get_args(annotation)):
        if kind in (int, float, Path):
            return {int: "N", float: "X", Path: "PATH"}[kind]
    return "TEXT"


class _HfrlGroup(TyperGroup):
    """Turns data errors (``HfrlError`` and any ``ValueError``, ``OSError``, ``ImportError``, SQLite
    and memory errors) into exit code 1 with one line on stderr; ``--debug`` lets the traceback
    through. Warnings are shown when the command succeeds (after its output); a failed command
    shows only its error."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outcome = super().invoke(ctx)
            _show_warnings(caught)
            return outcome
        except (ValueError, OSError, ImportError, sqlite3.Error, MemoryError) as exc:
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


def _command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return app.command(name, cls=_HfrlCommand, **kwargs)


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


# ---------------------------------------------------------------------------- progress
class _Stages:
    """The stages of a command on a Rich progress display (stderr, only on a terminal).

    Calling it starts a stage (a spinner and the elapsed time); ``steps(description, total)``
    starts one with a known amount of work (a bar with percentage and time remaining) and returns
    the function that advances it.
    """

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: list[Any] = []

    def _finish_last(self) -> None:
        if self._tasks:
            task = self._tasks[-1]
            total = self._progress.tasks[-1].total or 1
            self._progress.update(task, total=total, completed=total)

    def __call__(self, description: str) -> None:
        self._finish_last()
        self._tasks.append(self._progress.add_task(description, total=None))

    def steps(self, description: str, total: int) -> Callable[[int], None]:
        self._finish_last()
        task = self._progress.add_task(description, total=total)
        self._tasks.append(task)
        return lambda n: self._progress.advance(task, n)

    def close(self) -> None:
        self._finish_last()


@contextmanager
def _stages(enabled: bool = True) -> Iterator[_Stages]:
    """A progress display on stderr; spinners for stages of unknown length, bars with ETA otherwise."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
    ) as progress:
        stages = _Stages(progress)
        yield stages
        stages.close()


# ---------------------------------------------------------------------------- shared helpers
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


def _spelled(name: str) -> str:
    """A choice as the command line spells it (``ad-placement``, ``lower-bound``)."""
    return name.replace("_", "-")


def _choice(value: str, choices: Any, option: str) -> str:
    key = value.replace("-", "_")
    if key not in choices:
        listed = ", ".join(_spelled(c) for c in choices)
        raise typer.BadParameter(f"expected one of {listed}; got {value!r}", param_hint=option)
    return key


def _csv_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter("expected a comma-separated list", param_hint=option)
    return items


def _numbers(value: str, option: str, count: int | None = None) -> list[float]:
    try:
        numbers = [float(v) for v in _csv_list(value, option)]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {value!r}",
                                 param_hint=option) from None
    if count is not None and len(numbers) != count:
        raise typer.BadParameter(f"expected {count} comma-separated numbers, got {value!r}",
                                 param_hint=option)
    return numbers


def _columns(state: str | None, action: str | None, reward: str | None, propensity: str | None
             ) -> dict[str, str] | None:
    """The column mapping of the ``--*-col`` options (schema column -> the file's column)."""
    given = {"state": state, "action": action, "reward": reward, "propensity": propensity}
    mapping = {k: v for k, v in given.items() if v}
    return mapping or None


def _open_logs(path: str, backend: str | None = None, no_feedback: str = "drop",
               columns: dict[str, str] | None = None, **options: Any) -> Any:
    """Logs validated once (``hfrl.data.Logs``): a CSV/Parquet file or glob, read where it lies on
    ``backend`` (into memory by default), or a service decision log.

    Decisions of a decision log that got no feedback yet have no reward: ``no_feedback="drop"``
    leaves them out, ``"zero"`` counts them as reward 0; either way a warning says how many.
    """
    from hfrl.data import Logs

    if Path(path).suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        from hfrl.service import read_decision_log

        if not Path(path).is_file():
            raise FileNotFoundError(2, "no such file", path)
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
            warnings.warn(f"{path}: {count:,} of {len(missing):,} decisions have no feedback yet; {action} "
                          "(--no-feedback drop|zero)", UserWarning, stacklevel=2)
        if frame.empty:
            raise ValueError(f"{path}: no decision has feedback yet (--no-feedback zero counts them as 0)")
        return Logs.open(frame, backend or "memory", columns=columns, **options)
    return Logs.open(path, backend or "memory", columns=columns, **options)


def _load_policy(path: str | Path) -> Any:
    from hfrl.policies import TabularPolicy

    return TabularPolicy.load(path)


def _served(policy: Any, min_propensity: float | None) -> tuple[Any, float]:
    """``policy`` with the exploration floor of a served artifact (``--min-propensity``; default
    ``hfrl.policies.default_min_propensity``) and the floor applied, so that decisions served from
    it carry real propensities and their log can evaluate the next policy."""
    from hfrl.policies import default_min_propensity

    floor = default_min_propensity(policy.n_actions) if min_propensity is None else float(min_propensity)
    if not 0.0 <= floor <= 1.0 / policy.n_actions:
        ceiling = 1.0 / policy.n_actions
        raise typer.BadParameter(f"expected a floor in [0, 1 / n_actions] = [0, {ceiling:.6g}] for "
                                 f"{policy.n_actions} actions, got {floor:g}", param_hint="--min-propensity")
    return (policy.with_exploration(floor) if floor > 0 else policy), floor


def _floor_sentence(policy: Any, floor: float) -> str:
    """What the exploration floor did to a written artifact, in one line."""
    from hfrl.report.wording import number, percent

    if floor <= 0:
        return "exploration floor: none (--min-propensity 0): written as it is"
    share = float(policy.metadata.get("exploration_epsilon", 0.0))
    mixed = f"{percent(share, signed=False)} uniform mixed in" if share > 0 else "already so, none mixed in"
    return (f"exploration floor: every action has probability >= {number(floor)} "
            f"({mixed}; --min-propensity 0 writes it as it is)")


def _stdout_console() -> Any:
    """A Rich console on stdout; wide enough for the tables when stdout is not a terminal."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _print_json(payload: Any) -> None:
    from hfrl.pipeline import json_ready

    typer.echo(json.dumps(json_ready(payload), indent=2))


_BACKEND_HELP = "Where aggregations run: memory (pandas/numpy), duckdb (files, out of core) or spark."
_JSON_HELP = "Print machine-readable JSON on stdout instead of tables."
_SEED_HELP = "Seed of every random step (same seed, same result)."
_PROPENSITY_HELP = ("logged (the propensity column) or estimate (the logging policy estimated as the "
                    "smoothed frequency of actions per state, for logs without propensities).")
_NO_FEEDBACK_HELP = "Decision-log (.sqlite) rows without feedback: drop, or zero (count as reward 0)."
_REWARD_RANGE_HELP = ("The reward's possible range LOW,HIGH (e.g. 0,1 for clicks): intervals then bound "
                      "what unseen rewards could be. Default: 0,1 for 0/1 rewards, else the logged range.")
_ENVS_HELP = "recommendation or ad-placement"
_ESTIMATORS_HELP = "ips, clipped-ips, snips, dm, dr, switch-dr."
_N_STATES_HELP = "Number of states (default: the largest id + 1)."
_N_ACTIONS_HELP = "Number of actions (default: the largest id + 1)."
_MIN_PROPENSITY_HELP = ("Exploration floor of the written artifact: every action gets at least this "
                        "probability (mixing in uniform). Default 0.05 / n_actions; 0 writes it as it is.")
# what --json says about the rows behind an estimate
DIAGNOSTICS = ("n_rows", "ess", "max_weight", "support_violation_share", "unobserved_share",
               "propensity_source")

STATE_COL = typer.Option(None, "--state-col", metavar="NAME", help="The column holding the state id "
                         "(default: state).")
ACTION_COL = typer.Option(None, "--action-col", metavar="NAME", help="The column holding the action id, "
                          "e.g. item_id (default: action).")
REWARD_COL = typer.Option(None, "--reward-col", metavar="NAME", help="The column holding the reward, "
                          "e.g. click (default: reward).")
PROPENSITY_COL = typer.Option(None, "--propensity-col", metavar="NAME", help="The column holding the "
                              "logging policy's probability of the logged action, e.g. propensity_score "
                              "(default: propensity).")


# ---------------------------------------------------------------------------- simulate and split
@_command()
def simulate(
    out: Path = typer.Option(..., "--out", help="Where to write the logs (.parquet or .csv)."),
    env: str = typer.Option("recommendation", "--env", metavar="ENV", help=f"Simulator: {_ENVS_HELP}."),
    logging: str = typer.Option(
        "popularity", "--logging", metavar="POLICY",
        help="Logging policy: uniform, popularity or epsilon-greedy."
    ),
    rows: int = typer.Option(10_000, "--rows", min=1, help="Number of logged decisions to simulate."),
    epsilon: float = typer.Option(
        0.1, "--epsilon", min=0.0, max=1.0, help="Exploration share of the epsilon-greedy logging policy."
    ),
    gamma: float = typer.Option(
        0.9, "--gamma", min=0.0, max=1.0,
        help="Discount of the optimal policy epsilon-greedy logging is built around.",
    ),
    env_option: list[str] = typer.Option(
        None, "--env-option", metavar="KEY=VALUE",
        help="Simulator setting (repeatable), e.g. n_items=50.",
    ),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Simulate logged decisions of a logging policy in a built-in simulator and write them to a file."""
    from hfrl.pipeline import ENVS, LOGGING_POLICIES, make_env, simulate_logs
    from hfrl.report.wording import count, number

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
        return
    typer.echo(
        f"wrote {count(len(logs))} rows ({count(summary['sessions'])} sessions, {simulator.n_states} "
        f"states x {simulator.n_actions} actions) to {out}; mean reward {number(summary['mean_reward'])} "
        f"± {number(summary['mean_reward_std_error'], 2)} (std. error)"
    )


@_command()
def split(
    logs: str = typer.Argument(..., metavar="LOGS", help="Log file or glob (.csv or .parquet)."),
    out_dir: Path = typer.Option(
        ..., "--out-dir", help="Folder for train, validation and test (in the input's format)."
    ),
    fractions: str = typer.Option(
        "0.6,0.2,0.2", "--fractions", metavar="TRAIN,VALIDATION,TEST",
        help="Shares of the rows, summing to 1.",
    ),
    by: str = typer.Option(
        "time", "--by", metavar="time|random",
        help="time: in timestamp order (row order without one), so validation and test come after "
        "train; random: shuffled with --seed.",
    ),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP + " Used by --by random."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Split logs into train, validation and test files: fit HF and pi on train, choose alpha on
    validation, report on test."""
    from hfrl.backends.files import file_format, resolve_files
    from hfrl.report.wording import count
    from hfrl.tune import split_logs

    shares = _numbers(fractions, "--fractions", 3)
    how = _choice(by, ("time", "random"), "--by")
    kind = file_format(resolve_files(logs)[0])
    suffix = ".parquet" if kind == "parquet" else ".csv"
    with _stages(not as_json) as stage:
        stage(f"reading and splitting {logs}")
        parts = split_logs(logs, fractions=tuple(shares), by=how, random_state=seed)  # type: ignore[arg-type]
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, part in zip(("train", "validation", "test"), parts, strict=True):
            path = out_dir / f"{name}{suffix}"
            if kind == "parquet":
                part.to_parquet(path, index=False)
            else:
                part.to_csv(path, index=False)
            written[name] = {"path": str(path), "rows": len(part)}
    if as_json:
        _print_json({"by": how, "fractions": shares, "splits": written})
        return
    listed = ", ".join(f"{w['path']} ({count(w['rows'])} rows)" for w in written.values())
    typer.echo(f"wrote {listed}; split by {how}")


# ---------------------------------------------------------------------------- HF and pi
@_command()
def frequencies(
    logs: str = typer.Argument(..., metavar="LOGS", help="Log file or glob (.csv or .parquet)."),
    out: Path = typer.Option(..., "--out", help="Where to save HF as a policy artifact (e.g. hf.hfrl)."),
    kind: str = typer.Option(
        "share", "--kind", metavar="share|rate",
        help="share: what users chose per state; rate: what performed (events/impressions).",
    ),
    prior_strength: float = typer.Option(
        1.0, "--prior-strength", min=0.0, help="Smoothing toward the parent level; 0 means none."
    ),
    n_states: int = typer.Option(None, "--n-states", min=1, help=_N_STATES_HELP),
    n_actions: int = typer.Option(None, "--n-actions", min=1, help=_N_ACTIONS_HELP),
    option: list[str] = typer.Option(
        None, "--option", metavar="KEY=VALUE",
        help="Any other HistoricalFrequency setting (repeatable), e.g. half_life=604800.",
    ),
    backend: str = typer.Option(None, "--backend", metavar="memory|duckdb|spark", help=_BACKEND_HELP),
    state_col: str = STATE_COL,
    action_col: str = ACTION_COL,
    reward_col: str = REWARD_COL,
    propensity_col: str = PROPENSITY_COL,
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Fit the historical frequency HF(a|s) from a log file and save it as a policy artifact."""
    from hfrl.backends import BACKENDS
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.policies import TabularPolicy
    from hfrl.report.wording import count

    kind = _choice(kind, ("share", "rate"), "--kind")
    settings = {"kind": kind, "prior_strength": prior_strength, **_key_values(option, "--option")}
    engine = _choice(backend, BACKENDS, "--backend") if backend is not None else None
    columns = _columns(state_col, action_col, reward_col, propensity_col)
    with _stages(not as_json) as stage:
        stage(f"reading {logs} and counting")
        opened = _open_logs(logs, engine or ("memory" if columns else "duckdb"), columns=columns,
                            n_states=n_states, n_actions=n_actions)
        hf = HistoricalFrequency(**settings).fit(opened, n_states=n_states, n_actions=n_actions)
        table = hf.probabilities_
        metadata = {"name": "hf", "source": str(logs), **settings}
        path = TabularPolicy(table, metadata).save(out)
    counts = getattr(hf, "state_counts_", None)
    summary: dict[str, Any] = {
        "out": str(path),
        "rows": opened.n_rows,
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
        return
    extra = f"; {count(summary['states_with_events'])} states have events" if counts is not None else ""
    typer.echo(f"wrote HF ({kind}, {count(table.shape[0])} states x {count(table.shape[1])} actions, from "
               f"{count(opened.n_rows)} rows{extra}) to {path}")


def _learner_settings() -> str:
    """The ``train --help`` epilog: every learner with its settings and defaults, from the code."""
    import inspect

    import hfrl.learners
    from hfrl.pipeline import LEARNERS, ONLINE_LEARNERS

    skipped = {"random_state", "gamma", "n_actions", "n_states", "n_features", "learner", "features"}
    lines = ["Learners and their --option settings (defaults shown; help(hfrl.learners.NAME) explains "
             "each). --gamma and --seed go to every learner that takes them."]
    for name, cls_name in LEARNERS.items():
        cls = getattr(hfrl.learners, cls_name)
        settings = [f"{p.name}={p.default!r}" for p in inspect.signature(cls).parameters.values()
                    if p.name not in skipped and p.default is not inspect.Parameter.empty]
        if name == "conservative":
            settings = ["learner='fitted-q-iteration' (or direct-method, ips)", *settings]
        if name == "linucb":
            settings.append("features=FILE.npy|.csv (default: one indicator per state)")
        where = "online, --env" if name in ONLINE_LEARNERS else "offline, --logs"
        lines.append(f"{_spelled(name)} ({cls_name}; {where}): {', '.join(settings)}")
    return "\n\n".join(lines)


@_command()
def train(
    out: Path = typer.Option(..., "--out", help="Where to save the learned policy artifact (e.g. pi.hfrl)."),
    env: str = typer.Option(
        None, "--env", metavar="ENV", help=f"Train online against this simulator: {_ENVS_HELP}."
    ),
    logs: str = typer.Option(
        None, "--logs", metavar="LOGS", help="Train offline from this log file (CSV/Parquet)."
    ),
    learner: str = typer.Option(
        None, "--learner", metavar="NAME",
        help="Online (with --env): q-learning, sarsa, expected-sarsa, epsilon-greedy, ucb1, "
        "thompson-sampling, linucb. Offline (with --logs): fitted-q-iteration (session logs with "
        "next_state), direct-method, ips, conservative. Default: q-learning online, "
        "fitted-q-iteration offline. Each learner's settings are listed below.",
    ),
    steps: int = typer.Option(200_000, "--steps", min=1, help="Environment steps for online learners."),
    gamma: float = typer.Option(0.9, "--gamma", min=0.0, max=1.0, help="Discount factor."),
    env_option: list[str] = typer.Option(
        None, "--env-option", metavar="KEY=VALUE", help="Simulator setting (repeatable)."
    ),
    option: list[str] = typer.Option(
        None, "--option", metavar="KEY=VALUE", help="Learner setting (repeatable), e.g. learning_rate=0.2."
    ),
    n_states: int = typer.Option(None, "--n-states", min=1, help="Offline: " + _N_STATES_HELP),
    n_actions: int = typer.Option(None, "--n-actions", min=1, help="Offline: " + _N_ACTIONS_HELP),
    state_col: str = STATE_COL,
    action_col: str = ACTION_COL,
    reward_col: str = REWARD_COL,
    propensity_col: str = PROPENSITY_COL,
    curve_out: Path = typer.Option(None, "--curve-out", help="Also write the learning curve as CSV."),
    min_propensity: float = typer.Option(None, "--min-propensity", min=0.0, help=_MIN_PROPENSITY_HELP),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Learn a policy: online against a simulator, or offline from logged data; the written policy
    keeps an exploration floor (--min-propensity)."""
    from hfrl.pipeline import (
        ENVS,
        LEARNERS,
        OFFLINE_LEARNERS,
        ONLINE_LEARNERS,
        CountedSteps,
        make_env,
        make_learner,
    )
    from hfrl.report.wording import count, number, percent

    if (env is None) == (logs is None):
        raise typer.BadParameter("give exactly one of --env (online) or --logs (offline)",
                                 param_hint="--env/--logs")
    online = env is not None
    name = _choice(learner or ("q_learning" if online else "fitted_q_iteration"), LEARNERS, "--learner")
    if online and name not in ONLINE_LEARNERS:
        raise typer.BadParameter(f"{_spelled(name)} learns from logs; use --logs", param_hint="--learner")
    if not online and name not in OFFLINE_LEARNERS:
        raise typer.BadParameter(f"{_spelled(name)} learns online; use --env", param_hint="--learner")
    summary: dict[str, Any] = {"out": str(out)}
    settings = _key_values(option, "--option")
    with _stages(not as_json) as stage:
        if online:
            simulator = make_env(_choice(env, ENVS, "--env"), _key_values(env_option, "--env-option"))
            model = make_learner(name, gamma, seed, settings, n_states=simulator.n_states)
            advance = stage.steps(f"training {type(model).__name__}", steps)
            model.fit(CountedSteps(simulator, advance), n_steps=steps)
            stage("solving the simulator exactly")
            summary["true_return"] = simulator.policy_value(model.policy_, gamma)
            summary["optimal_return"] = simulator.policy_value(simulator.optimal_policy(gamma), gamma)
        else:
            model = make_learner(name, gamma, seed, settings)
            stage(f"reading {logs}")
            columns = _columns(state_col, action_col, reward_col, propensity_col)
            opened = _open_logs(logs, "memory", columns=columns, n_states=n_states, n_actions=n_actions)
            stage(f"training {type(model).__name__} on {opened.n_rows:,} rows")
            model.fit(opened, n_states=opened.n_states, n_actions=opened.n_actions)
            summary["rows"] = opened.n_rows
        learned = model.policy_
        learned.metadata.setdefault("learner", type(model).__name__)
        policy, floor = _served(learned, min_propensity)
        policy.save(out)
        if online:
            summary["written_true_return"] = simulator.policy_value(policy, gamma)
    summary["learner"] = type(model).__name__
    summary["min_propensity"] = floor
    summary["exploration_epsilon"] = float(policy.metadata.get("exploration_epsilon", 0.0))
    curve = getattr(model, "learning_curve_", None)
    if curve_out is not None and curve is not None:
        curve.to_csv(curve_out, index=False)
        summary["curve"] = str(curve_out)
    summary.update(n_states=policy.n_states, n_actions=policy.n_actions)
    if as_json:
        _print_json(summary)
        return
    typer.echo(f"wrote {summary['learner']} policy ({count(policy.n_states)} states x "
               f"{count(policy.n_actions)} actions) to {out}")
    if online:
        optimal = summary["optimal_return"]
        share = percent(summary["true_return"] / optimal, signed=False) if optimal else "–"
        typer.echo(f"exact discounted return {number(summary['true_return'])} = {share} of the optimal "
                   f"{number(optimal)} (gamma={gamma:g}); as written, with its floor: "
                   f"{number(summary['written_true_return'])}")
    typer.echo(_floor_sentence(policy, floor))


train.epilog = _learner_settings  # type: ignore[attr-defined]  # computed when --help is asked for


# ---------------------------------------------------------------------------- alpha and values
def _reward_range(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = _numbers(value, "--reward-range", 2)
    if not low < high:
        raise typer.BadParameter(f"expected LOW,HIGH with LOW < HIGH, got {value!r}",
                                 param_hint="--reward-range")
    return low, high


@_command()
def tune(
    policy: Path = typer.Argument(..., metavar="PI", help="The learned policy artifact pi (hfrl train)."),
    hf: Path = typer.Argument(
        ..., metavar="HF", help="The HF artifact (hfrl frequencies), fitted on other rows."
    ),
    logs: str = typer.Argument(
        ..., metavar="LOGS", help="Validation logs (CSV/Parquet, or a service .sqlite decision log)."
    ),
    out: Path = typer.Option(..., "--out", help="Where to save the blended policy pi' artifact."),
    estimator: str = typer.Option(
        "snips", "--estimator", metavar="NAME", help="OPE estimator: " + _ESTIMATORS_HELP
    ),
    criterion: str = typer.Option(
        "estimate", "--criterion", metavar="estimate|lower-bound",
        help="estimate (best value) or lower-bound (best lower confidence bound: a safe improvement).",
    ),
    alphas: str = typer.Option(
        "auto", "--alphas", help="auto (101 points on [0, 1]) or a comma-separated list."
    ),
    method: str = typer.Option(
        "linear", "--method", metavar="linear|geometric", help="How pi and HF are blended."
    ),
    level: float = typer.Option(0.95, "--level", min=0.5, max=0.999, help="Confidence level of the band."),
    min_ess: float = typer.Option(
        100.0, "--min-ess", min=0.0,
        help="Refuse to choose alpha when the chosen pi' is worth fewer logged rows than this (its "
        "effective sample size); 0 chooses anyway.",
    ),
    reward_range: str = typer.Option(None, "--reward-range", metavar="LOW,HIGH", help=_REWARD_RANGE_HELP),
    curve_out: Path = typer.Option(None, "--curve-out", help="Also write the alpha curve as CSV."),
    no_feedback: str = typer.Option("drop", "--no-feedback", metavar="drop|zero", help=_NO_FEEDBACK_HELP),
    propensity: str = typer.Option("logged", "--propensity", metavar="logged|estimate",
                                   help=_PROPENSITY_HELP),
    backend: str = typer.Option(None, "--backend", metavar="memory|duckdb|spark", help=_BACKEND_HELP),
    min_propensity: float = typer.Option(None, "--min-propensity", min=0.0, help=_MIN_PROPENSITY_HELP),
    state_col: str = STATE_COL,
    action_col: str = ACTION_COL,
    reward_col: str = REWARD_COL,
    propensity_col: str = PROPENSITY_COL,
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Choose alpha for pi' = (1 - alpha) pi + alpha HF by off-policy evaluation on validation logs;
    the written pi' keeps an exploration floor (--min-propensity) and carries pi and HF."""
    from hfrl.ope.evidence import NoEvidenceError, require_evidence
    from hfrl.pipeline import ESTIMATORS
    from hfrl.policies import TabularPolicy
    from hfrl.report.wording import alpha_sentence, count, number
    from hfrl.tune import tune_alpha

    estimator = _choice(estimator, ESTIMATORS, "--estimator")
    criterion = _choice(criterion, ("estimate", "lower_bound"), "--criterion")
    no_feedback = _choice(no_feedback, ("drop", "zero"), "--no-feedback")
    method = _choice(method, ("linear", "geometric"), "--method")
    propensity = _choice(propensity, ("logged", "estimate"), "--propensity")
    grid: Any = "auto" if alphas == "auto" else _numbers(alphas, "--alphas")
    columns = _columns(state_col, action_col, reward_col, propensity_col)
    with _stages(not as_json) as stage:
        stage("loading artifacts and logs")
        pi, hf_policy = _load_policy(policy), _load_policy(hf)
        opened = _open_logs(logs, backend, no_feedback, columns, reward_range=_reward_range(reward_range))
        stage(f"computing the alpha curve by {estimator.upper()}")
        result = tune_alpha(pi, hf_policy, opened, estimator=estimator, alphas=grid, criterion=criterion,
                            level=level, method=method, propensity=propensity)
        best = result.evaluation.iloc[0]  # the estimator's row at the chosen (possibly refined) alpha
        require_evidence(result.evaluation, logs)
        if float(best["ess"]) < min_ess:
            raise NoEvidenceError(
                f"{logs}: too little evidence to choose alpha: pi' at alpha {number(result.alpha)} is worth "
                f"{number(best['ess'])} logged rows (its effective sample size, of {count(opened.n_rows)} "
                f"rows), below --min-ess {number(min_ess)}; tune on more rows, or pass --min-ess 0")
        # the blend inherits pi's metadata; the floor recorded on pi' is pi''s own
        own = {k: v for k, v in result.policy.metadata.items()
               if k not in ("min_propensity", "exploration_epsilon")}
        written, floor = _served(TabularPolicy(result.policy.table_, own), min_propensity)
        written.metadata.update(alpha=float(result.alpha), method=method, estimator=estimator,
                                name="pi_prime")
        _save_blend(written, pi, hf_policy, out)
    curve = result.curve
    if curve_out is not None:
        curve.to_csv(curve_out, index=False)
    diagnostics = {k: best.get(k) for k in DIAGNOSTICS}
    summary = {
        "alpha": float(result.alpha),
        "estimate": float(best["estimate"]),
        "ci_low": float(best["ci_low"]),
        "ci_high": float(best["ci_high"]),
        "estimator": estimator,
        "criterion": criterion,
        "level": level,
        "rows": "selection",
        **diagnostics,
        "min_propensity": floor,
        "exploration_epsilon": float(written.metadata.get("exploration_epsilon", 0.0)),
        "out": str(out),
    }
    if as_json:
        _print_json({**summary, "curve": curve.to_dict(orient="records")})
        return
    why = alpha_sentence(result.alpha, criterion, estimator, level, curve.to_dict(orient="records"),
                         rows=f"these {count(opened.n_rows)} rows")
    typer.echo(f"chosen {why}")
    typer.echo(f"pi' written to {out} (with pi and HF inside, for hfrl evaluate --verdict and hfrl refresh)")
    typer.echo(_floor_sentence(written, floor) + "; the values above are those of the blend without it")
    if best["propensity_source"] == "estimated":
        typer.echo("note: propensities were estimated from the logs (--propensity estimate)")
    typer.echo("note: values on the rows alpha was chosen on are optimistic; report pi' on other rows "
               "(hfrl evaluate PI_PRIME TEST_LOGS)")


def _save_blend(written: Any, pi: Any, hf: Any, out: Path) -> None:
    """Save pi' carrying pi, HF's table and HF's settings, so that a verdict can compare the blend
    with each parent and ``hfrl refresh`` needs neither --pi nor --hf."""
    from hfrl.service.refresh import HF_PARAMETERS, BlendRecipe, save_refreshable

    settings = {k: v for k, v in hf.metadata.items() if k in HF_PARAMETERS}
    recipe = BlendRecipe(pi, float(written.metadata["alpha"]), str(written.metadata["method"]), settings,
                         dict(written.metadata))
    save_refreshable(written, recipe, out, hf=hf.table_)


_EVALUATE_CAPTION = (
    "estimate: expected reward per decision under the policy. {level} CI: its interval ({intervals}). "
    "ESS: how many logged rows the estimate is worth (effective sample size). max weight: the largest "
    "importance weight. unseen: the policy's probability mass on (state, action) pairs never logged."
)


@_command()
def evaluate(
    policy: Path = typer.Argument(..., metavar="POLICY", help="The policy artifact to evaluate."),
    logs: str = typer.Argument(
        ..., metavar="LOGS", help="Logs with propensities (CSV/Parquet, or a service .sqlite decision log)."
    ),
    estimators: str = typer.Option(
        "ips,snips,dm,dr", "--estimators", metavar="NAMES",
        help="Comma-separated: " + _ESTIMATORS_HELP,
    ),
    level: float = typer.Option(
        0.95, "--level", min=0.5, max=0.999, help="Confidence level of the intervals."
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", min=0, help="Bootstrap resamples (0: no bootstrap interval)."
    ),
    verdict: bool = typer.Option(
        False, "--verdict",
        help="Also say whether the policy beats the logging policy (ship, worse, no evidence, unreliable), "
        "and pi alone and HF alone when known (--pi, --hf, or carried by a blend hfrl tune wrote).",
    ),
    pi: Path = typer.Option(
        None, "--pi", help="With --verdict: also compare with this learned policy pi (paired, same rows)."
    ),
    hf: Path = typer.Option(
        None, "--hf", help="With --verdict: also compare with this HF artifact (paired, same rows)."
    ),
    reward_range: str = typer.Option(None, "--reward-range", metavar="LOW,HIGH", help=_REWARD_RANGE_HELP),
    seed: int = typer.Option(0, "--seed", help=_SEED_HELP),
    no_feedback: str = typer.Option("drop", "--no-feedback", metavar="drop|zero", help=_NO_FEEDBACK_HELP),
    propensity: str = typer.Option("logged", "--propensity", metavar="logged|estimate",
                                   help=_PROPENSITY_HELP),
    backend: str = typer.Option(None, "--backend", metavar="memory|duckdb|spark", help=_BACKEND_HELP),
    state_col: str = STATE_COL,
    action_col: str = ACTION_COL,
    reward_col: str = REWARD_COL,
    propensity_col: str = PROPENSITY_COL,
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Estimate a policy's value from logged data with every estimator, each with its confidence interval."""
    from hfrl.ope import compare
    from hfrl.ope import evaluate as ope_evaluate
    from hfrl.ope.evidence import require_evidence
    from hfrl.pipeline import ESTIMATORS

    names = tuple(_choice(e, ESTIMATORS, "--estimators") for e in _csv_list(estimators, "--estimators"))
    no_feedback = _choice(no_feedback, ("drop", "zero"), "--no-feedback")
    propensity = _choice(propensity, ("logged", "estimate"), "--propensity")
    columns = _columns(state_col, action_col, reward_col, propensity_col)
    with _stages(not as_json) as stage:
        stage("loading the policy and the logs")
        target = _load_policy(policy)
        opened = _open_logs(logs, backend, no_feedback, columns, reward_range=_reward_range(reward_range))
        stage("evaluating" + (f" with {bootstrap:,} bootstrap resamples" if bootstrap else ""))
        result = ope_evaluate(opened, target, names, level=level, n_bootstrap=bootstrap, random_state=seed,
                              propensity=propensity)
        gaps = require_evidence(result, logs)
        verdicts: dict[str, dict[str, Any]] = {}
        if verdict:
            for label, baseline in _baselines(policy, target, pi, hf).items():
                stage(f"comparing with {_against(label)}")
                decision = compare(target, opened, baseline=baseline, level=level, propensity=propensity)
                verdicts[label] = _verdict_payload(decision, level, label)
    verdict_payload = verdicts.get("logging policy")
    if as_json:
        rows = result.to_dict(orient="index")
        for name, row in rows.items():
            row["evidence"] = gaps.get(str(name))
        payload: dict[str, Any] = {"policy": str(policy), "logs": str(logs), "rows": opened.n_rows,
                                   "propensity_source": result["propensity_source"].iloc[0],
                                   "estimators": rows}
        if verdict_payload:
            payload["verdict"] = verdict_payload
            payload["verdicts"] = verdicts
        _print_json(payload)
        return
    _print_values(f"Value of {policy.name} on {opened.n_rows:,} rows", result, gaps, level)
    for name, why in gaps.items():
        typer.echo(f"warning: {name}: no evidence: {why}", err=True)
    if (result["propensity_source"] == "estimated").any():
        typer.echo("note: propensities were estimated from the logs (--propensity estimate)")
    for label, payload in verdicts.items():
        typer.echo(f"verdict vs {_against(label)}: {payload['sentence']}")


def _against(label: str) -> str:
    """A baseline's label as a sentence names it (``the logging policy``, ``pi alone``)."""
    return "the logging policy" if label == "logging policy" else label.replace(" only", " alone")


def _baselines(path: Path, target: Any, pi: Path | None, hf: Path | None) -> dict[str, Any]:
    """What ``--verdict`` compares the policy with: the logging policy, then pi alone and HF alone
    when given (``--pi``, ``--hf``) or carried by the artifact (a blend ``hfrl tune`` wrote)."""
    from hfrl.pipeline import POLICY_LABELS
    from hfrl.service.refresh import embedded_parents

    carried_pi, carried_hf = embedded_parents(path) if pi is None or hf is None else (None, None)
    parents = {"pi": _load_policy(pi) if pi is not None else carried_pi,
               "hf": _load_policy(hf) if hf is not None else carried_hf}
    baselines: dict[str, Any] = {POLICY_LABELS["logging"]: "logging"}
    for key, parent in parents.items():
        if parent is None:
            continue
        if parent.table_.shape != target.table_.shape:
            option = f"--{key}" if (pi if key == "pi" else hf) is not None else f"{key} carried by {path}"
            raise ValueError(f"{option}: shape {parent.table_.shape} differs from {path}'s "
                             f"{target.table_.shape}")
        baselines[POLICY_LABELS[key]] = parent
    return baselines


def _verdict_payload(decision: Any, level: float, baseline: str = "logging policy") -> dict[str, Any]:
    """A comparison's fields for people and programs: the verdict, the difference, the relative uplift."""
    from hfrl.report.wording import relative_uplift, verdict_sentence

    fields = ("verdict", "difference", "ci_low", "ci_high", "reason", "candidate_value", "baseline_value",
              *DIAGNOSTICS, "estimator")
    payload = {k: getattr(decision, k, None) for k in fields}
    relative = relative_uplift(decision.difference, decision.ci_low, decision.ci_high,
                               decision.baseline_value)
    if relative is not None and decision.verdict != "unreliable":
        payload.update(relative_uplift=relative[0], relative_ci_low=relative[1], relative_ci_high=relative[2])
    payload["sentence"] = verdict_sentence(payload, level, candidate="the policy",
                                           baseline=_against(baseline))
    return payload


def _print_values(title: str, result: Any, gaps: dict[str, str], level: float) -> None:
    """The estimators' table: numbers for people, a caption for what each column means."""
    from rich.table import Table

    from hfrl.report.wording import count, interval, number, percent

    boot = "boot_ci_low" in result.columns
    intervals = ", ".join(dict.fromkeys(str(v) for v in result["interval"]))
    table = Table(title=title, caption=_EVALUATE_CAPTION.format(level=f"{level:.0%}", intervals=intervals),
                  caption_justify="left")
    headers = ["estimator", "estimate", f"{level:.0%} CI", "std. error"]
    headers += [f"bootstrap {level:.0%} CI"] if boot else []
    headers += ["ESS", "max weight", "unseen"]
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for name, row in result.iterrows():
        if str(name) in gaps:
            table.add_row(str(name), "no evidence", *["–"] * (len(headers) - 2))
            continue
        cells = [str(name), number(row["estimate"]), interval(row["ci_low"], row["ci_high"]),
                 number(row["std_error"])]
        if boot:
            cells.append(interval(row["boot_ci_low"], row["boot_ci_high"]))
        cells += [count(row["ess"]), number(row.get("max_weight")),
                  percent(row["unobserved_share"], signed=False)]
        table.add_row(*cells)
    _stdout_console().print(table)


@_command()
def recommend(
    policy: Path = typer.Argument(..., metavar="POLICY", help="The policy artifact to query."),
    states: str = typer.Option(..., "--states", metavar="IDS", help="Comma-separated state ids, e.g. 0,3,7."),
    k: int = typer.Option(3, "--k", min=1, help="How many actions per state."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The k most probable actions of a policy for each given state, with their probabilities."""
    try:
        ids = [int(s) for s in _csv_list(states, "--states")]
    except ValueError:
        raise typer.BadParameter(f"expected integer state ids, got {states!r}",
                                 param_hint="--states") from None
    target = _load_policy(policy)
    if k > target.n_actions:
        raise typer.BadParameter(f"k must be at most the {target.n_actions} actions", param_hint="--k")
    outside = [s for s in ids if not 0 <= s < target.n_states]
    if outside:
        raise ValueError(f"--states: state {outside[0]} is outside [0, {target.n_states}) for {policy}")
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

    from hfrl.report.wording import number

    table = Table(title=f"Top {k} actions of {policy.name}")
    for column in ("state", "rank", "action", "probability"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["state"]), str(row["rank"]), str(row["action"]), number(row["probability"]))
    _stdout_console().print(table)


# ---------------------------------------------------------------------------- pipelines and reports
@_command()
def report(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="A run folder (written by hfrl run or hfrl demo)."
    ),
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
    from hfrl.report.wording import alpha_sentence, interval, number, verdict_sentence

    metrics = result.metrics
    level = metrics["evaluation"]["level"]
    tuning = metrics["tuning"]
    curve_path = result.out_dir / "curves" / "alpha_curve.csv"
    curve = None
    if curve_path.is_file():
        import pandas as pd

        curve = pd.read_csv(curve_path).to_dict(orient="records")
    why = tuning.get("reason") or alpha_sentence(result.alpha, tuning["criterion"], tuning["estimator"],
                                                 tuning["level"], curve)
    unit = "per session" if tuning.get("objective") == "return" else "per decision"
    verdict = metrics.get("verdict") or {}
    if as_json:
        payload = {
            "out": str(result.out_dir),
            "alpha": result.alpha,
            "why_alpha": why,
            "report": str(result.out_dir / "report.html"),
            "policies": result.summary.to_dict(orient="index"),
            "verdict": ({**verdict, "sentence": verdict_sentence(verdict, level, unit=unit)} if verdict
                        else None),
            "verdicts": metrics.get("verdicts"),
            "safety": tuning.get("safety_reason"),
            "outcome": metrics.get("outcome"),
            "propensity_source": metrics["evaluation"].get("propensity"),
        }
        _print_json(payload)
        return
    from rich.table import Table

    estimator = tuning["estimator"].upper()
    simulated = not result.summary["true_value"].isna().all()
    table = Table(title=f"Policy values on the test split — chosen alpha = {number(result.alpha)}",
                  caption=("estimated value = the discounted return of a session (fitted Q evaluation)"
                           if unit == "per session" else
                           "estimated value = expected reward per decision at the test split's states")
                  + ("; true value: exact expected reward per decision, from the simulator's model; true "
                     "return: the exact discounted session return (env.policy_value)" if simulated else ""),
                  caption_justify="left")
    table.add_column("policy")
    table.add_column(f"estimated value ({estimator})", justify="right")
    table.add_column(f"{level:.0%} CI", justify="right")
    if simulated:
        table.add_column("true value", justify="right")
        table.add_column("true return", justify="right")
    for label, row in result.summary.iterrows():
        cells = [str(label), number(row["estimate"]), interval(row["ci_low"], row["ci_high"])]
        if simulated:
            cells += [number(row["true_value"]), number(row["true_return"])]
        table.add_row(*cells)
    _stdout_console().print(table)
    typer.echo(f"why: {why}")
    if verdict:
        typer.echo(f"verdict for pi' vs the logging policy: {verdict_sentence(verdict, level, unit=unit)}")
    for line in (tuning.get("safety_reason"), metrics.get("outcome")):
        if line:
            typer.echo(line)
    for note in metrics.get("warnings", []):
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"run folder: {result.out_dir}  report: {result.out_dir / 'report.html'}")


@_command()
def run(
    pipeline: Path = typer.Argument(
        ..., metavar="PIPELINE", help="A pipeline file (TOML); see examples/*.toml."
    ),
    out: Path = typer.Option(None, "--out", help="Run folder (overrides the file's [output] dir)."),
    logs: str = typer.Option(
        None, "--logs", metavar="LOGS",
        help="Read this log file instead of the file's [source] (relative to the current folder).",
    ),
    state_col: str = STATE_COL,
    action_col: str = ACTION_COL,
    reward_col: str = REWARD_COL,
    propensity_col: str = PROPENSITY_COL,
    seed: int = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Run a declarative pipeline: logs or simulator -> HF -> learner -> alpha -> evaluation -> run folder."""
    from hfrl.pipeline import load_config, resolve_config, run_pipeline

    config = load_config(pipeline)
    if seed is not None:
        config["seed"] = seed
    if logs is not None:
        config["source"].update(type="logs", path=logs)
    config["source"]["columns"].update(_columns(state_col, action_col, reward_col, propensity_col) or {})
    config = resolve_config(config, source=str(pipeline))
    with _stages(not as_json) as stage:
        result = run_pipeline(config, out, progress=stage)
        if not no_report:
            from hfrl.report import write_report

            stage("writing report.html")
            write_report(result.out_dir)
    _print_summary(result, as_json)


@_command()
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
    help="Fetch public datasets (the Open Bandit Dataset sample).", no_args_is_help=True, cls=_HfrlGroup
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("obd", cls=_HfrlCommand)
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
_SQLITE_HEADER = b"SQLite format 3\x00"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _check_decision_log(db: str) -> None:
    """Refuse, in one line, a --db that cannot be the decision log (before anything starts)."""
    if "://" in db:  # a database URL: its own driver says what is wrong
        return
    path = Path(db)
    if path.is_dir():
        raise ValueError(f"--db {db}: is a folder; give the decision log's file name")
    if not path.parent.is_dir():
        raise ValueError(f"--db {db}: the folder {path.parent} does not exist")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                raise ValueError(f"--db {db}: not an SQLite database (give a decision log written by hfrl "
                                 "serve, or a new file name)")


def _bind_port(host: str, port: int) -> int:
    """The port to serve on (a free one for 0), or one line when another process holds it."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                             "stop the other server or choose another --port") from None
        return int(probe.getsockname()[1])


@_command()
def serve(
    artifact: str = typer.Argument(
        ..., metavar="ARTIFACT",
        help="Policy artifact to serve (e.g. pi_prime.hfrl from hfrl tune, or a contextual policy's).",
    ),
    db: str = typer.Option(
        "decisions.sqlite", "--db", metavar="PATH",
        help="Decision log: a SQLite file (created when absent) or a postgresql:// URL shared by replicas.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
    api_key_file: str | None = typer.Option(
        None, "--api-key-file", metavar="PATH",
        help="File holding the admin API key (default: $HFRL_API_KEY).",
    ),
    require_key: bool = typer.Option(False, "--require-key", help="Require the API key on every endpoint."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Larger bodies get 413."),
    log_level: str = typer.Option(
        "info", "--log-level", metavar="|".join(LOG_LEVELS),
        help="The server's log level on stderr (info: start, stop and, with --access-log, every request).",
    ),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="Log every request (at --log-level info or lower)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampling generator."),
    challenger: str | None = typer.Option(
        None, "--challenger", help="Serve this artifact to a share of decisions next to ARTIFACT (champion)."
    ),
    traffic: float = typer.Option(0.1, "--traffic", help="The challenger's share of decisions, in (0, 1)."),
    auto: bool = typer.Option(
        False, "--auto", help="Promote or roll back by itself once the confidence sequence concludes."
    ),
    reward_range: str = typer.Option(
        "0,1", "--reward-range", help="LOW,HIGH of monitored rewards (the sequences rest on it)."
    ),
    level: float = typer.Option(0.95, "--level", min=0.5, max=0.999, help="Confidence sequence level."),
    guardrail_floor: float | None = typer.Option(
        None, "--guardrail-floor", help="Roll back once the challenger's value is confidently below this."
    ),
    event: str = typer.Option("reward", "--event", help="The feedback event the monitors read."),
    candidate: list[str] = typer.Option(
        None, "--candidate", help="Watch this artifact off-policy against the champion (repeatable)."
    ),
    refresh_every: float | None = typer.Option(
        None, "--refresh-every", help="Refresh the champion from the logs every this many seconds."
    ),
    refresh_logs: list[str] = typer.Option(
        None, "--refresh-logs", help="Logs read by refresh besides the decision log (repeatable)."
    ),
    refresh_out: str | None = typer.Option(
        None, "--refresh-out", help="Where refresh writes (default ARTIFACT's name + .refreshed.zip)."
    ),
    pi: str | None = typer.Option(None, "--pi", help="Refresh: the learned policy, if ARTIFACT lacks it."),
    hf: str | None = typer.Option(None, "--hf", help="Refresh: the HF artifact, for HF's settings."),
    half_life: str | None = typer.Option(None, "--half-life", help="Refresh: HF half-life ('7D', seconds)."),
    retune: bool = typer.Option(False, "--retune", help="Refresh: re-tune alpha by its lower bound."),
) -> None:
    """Serve a policy over HTTP (decide, feedback, reload, metrics), logging every decision to --db;
    optionally next to a challenger, watching candidates, and refreshing HF from the logs."""
    from hfrl.service.model import artifact_version
    from hfrl.service.monitor import MonitorSettings
    from hfrl.service.refresh import RefreshSettings
    from hfrl.service.server import parse_reward_range
    from hfrl.service.server import serve as run_server

    server_log_level = _choice(log_level.lower(), LOG_LEVELS, "--log-level")
    _check_decision_log(db)
    served = _load_policy(artifact)
    version = artifact_version(artifact)
    port = _bind_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {artifact} (model {version}, {served.n_states:,} states x "
               f"{served.n_actions:,} actions) at http://{shown}:{port}; decisions are logged to {db}; "
               "Ctrl-C stops")
    try:
        monitor = MonitorSettings(level=level, reward_range=parse_reward_range(reward_range), event=event,
                                  guardrail_floor=guardrail_floor)
        refresh = RefreshSettings(tuple(refresh_logs or ()), refresh_every, refresh_out, pi, hf, half_life,
                                  retune)
        run_server(
            artifact, db, host=host, port=port, api_key_file=api_key_file, require_key=require_key,
            max_body_bytes=max_body_bytes, seed=seed, log_level=server_log_level, access_log=access_log,
            challenger=challenger, traffic=traffic, auto=auto, monitor=monitor, candidates=candidate or (),
            refresh=refresh,
        )
    except SystemExit as exc:  # uvicorn exits when it cannot start (the port was taken meanwhile)
        raise ValueError(f"the server on {host}:{port} could not start (see the lines above)") from exc
    typer.echo(f"stopped; the decision log {db} is closed")


@_command("export-log")
def export_log(
    db: str = typer.Argument(
        ..., metavar="DB", help="Decision log written by hfrl serve: a SQLite file or a postgresql:// URL."
    ),
    out: str = typer.Option(..., "--out", help="Parquet file to write."),
    event: str | None = typer.Option(None, "--event", help="Reward from this feedback event only."),
    all_positions: bool = typer.Option(
        False, "--all-positions",
        help="Also the slots k>1 of each decision: a ranking log with each slot's own feedback "
             "(sent with position), slot_propensity, cascade_propensity and slate_propensity.",
    ),
    missing_reward: float | None = typer.Option(
        None, "--missing-reward", help="Reward of decisions without feedback (default: null)."
    ),
) -> None:
    """Write the decision log as Parquet in the log schema, one row per decision, reward from feedback."""
    from hfrl.service.log import write_parquet

    if "://" not in db and not Path(db).is_file():
        raise ValueError(f"{db}: no decision log database there (no such file)")
    _check_decision_log(db)
    rows = write_parquet(db, out, event=event, all_positions=all_positions, missing_reward=missing_reward)
    typer.echo(f"wrote {rows:,} decisions to {out}")


@app.command()
def refresh(
    artifact: Path = typer.Argument(..., help="A blended artifact (from hfrl tune, or refreshed before)."),
    logs: list[str] = typer.Option(
        ..., "--logs",
        help="Logs to recompute HF from: decision logs (.sqlite, postgresql://), CSV/Parquet (repeatable).",
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the refreshed artifact."),
    pi: Path = typer.Option(None, "--pi", help="The learned policy pi, when ARTIFACT does not carry it."),
    hf: Path = typer.Option(
        None, "--hf", help="The HF artifact (for its settings), when ARTIFACT does not carry them."
    ),
    half_life: str = typer.Option(None, "--half-life", help="Override HF's half-life ('7D', or seconds)."),
    retune: bool = typer.Option(False, "--retune", help="Re-tune alpha by its lower confidence bound."),
    level: float = typer.Option(0.95, "--level", min=0.5, max=0.999, help="Level of that lower bound."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Recompute HF from recent logs and rebuild pi' = (1 - alpha) pi + alpha HF (alpha kept or re-tuned)."""
    from hfrl.errors import HfrlError
    from hfrl.service.model import artifact_version
    from hfrl.service.refresh import refresh_artifact

    life: Any = half_life
    if half_life is not None:
        try:
            life = float(half_life)
        except ValueError:
            life = half_life
    try:
        result = refresh_artifact(artifact, logs, out, pi=pi, hf=hf, half_life=life, retune=retune,
                                  level=level)
    except (HfrlError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    summary = {
        "out": str(result.path), "model_version": artifact_version(result.path), "alpha": result.alpha,
        "previous_alpha": result.previous_alpha, "rows": result.rows, "seconds": round(result.seconds, 3),
        "note": result.note,
    }
    if as_json:
        _print_json(summary)
        return
    typer.echo(f"refreshed HF from {result.rows:,} rows; alpha {result.alpha:.3g} ({result.note}); "
               f"model {summary['model_version']} written to {result.path}")


if __name__ == "__main__":  # pragma: no cover
    app()
