"""Declarative pipelines: from logs (or a simulator) to a tuned, evaluated, saved policy.

A pipeline is one nested mapping (usually a TOML file read by ``hfrl run``) with the sections
below; every key is optional and :func:`resolve_config` fills the defaults and refuses unknown
keys or wrong types with a message naming the key.

``name``, ``seed``
    A label for the run and the one seed every random step derives its own from.
``[source]``
    ``type = "simulator"``: ``env`` (``"recommendation"`` or ``"ad_placement"``) with
    ``env_options`` (keyword arguments of the env), ``logging_policy`` (``"uniform"``,
    ``"popularity"``, ``"epsilon_greedy"``), ``epsilon``, ``n_rows`` to simulate.
    ``type = "logs"``: ``path`` to a CSV/Parquet file or glob, optional ``n_states`` and
    ``n_actions`` (default: the largest id + 1). ``backend`` (``"memory"``, ``"duckdb"``,
    ``"spark"``) for the aggregations. The pipeline reads the rows into memory to split them; for
    logs larger than memory, split them first and use ``hfrl frequencies/tune/evaluate --backend``.
``[split]``
    ``by`` (``"time"`` or ``"random"``) and ``fractions`` of (train, validation, test).
``[frequencies]``
    ``kind``, ``prior_strength`` and any other ``HistoricalFrequency`` keyword in ``options``.
``[learner]``
    ``name``: online ``"q_learning"``, ``"sarsa"``, ``"expected_sarsa"`` (simulator only,
    ``n_steps`` transitions) or offline ``"fitted_q_iteration"``, ``"direct_method"``, ``"ips"``
    (fit on the training split); ``gamma``; constructor keywords in ``options``.
``[tuning]``
    ``estimator``, ``criterion`` (``"estimate"`` or ``"lower_bound"``), ``alphas`` (``"auto"``
    or a list), ``method`` (``"linear"``/``"geometric"``), ``level``.
``[evaluation]``
    ``estimators``, ``level``, ``n_bootstrap``, ``propensity`` (``"logged"``, or ``"estimate"`` for
    logs without propensities: the logging policy is then estimated per state from the logs, and
    tuning and evaluation say so).
``[output]``
    ``dir`` (the run folder) and ``save_logs`` (write the three splits as Parquet).

The flow: simulate or load logs; split them (HF and the learner see only the training split,
alpha is chosen on validation, values are reported on test); fit HF; train pi; tune alpha; evaluate
the logging policy, HF alone, pi alone, pi' and (from a simulator) the optimal policy on the test
split with every estimator; compare with the exact truth when a simulator is the source; write
the run folder laid out as :mod:`hfrl.report` documents. The HTML report itself is written by the
caller (``hfrl run`` and ``hfrl demo`` do it) because the library does not import the report.

Exact truth. Off-policy estimators estimate the expected reward per decision at the states the
test split visited, ``V(pi) = sum_s d(s) sum_a pi(a|s) r(s, a)`` with ``d`` the test split's state
frequencies; ``true_value`` is that number computed from the env's exact reward model.
``true_return`` is ``env.policy_value(pi, gamma)``, the exact discounted return of a whole
session from the start distribution (what the RL learner maximises).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import schema
from hfrl.errors import HfrlError
from hfrl.policies import TabularPolicy

__all__ = [
    "DEFAULT_CONFIG",
    "ENVS",
    "LEARNERS",
    "POLICY_LABELS",
    "ConfigError",
    "PipelineResult",
    "demo_config",
    "json_ready",
    "load_config",
    "make_learner",
    "make_env",
    "resolve_config",
    "run_demo",
    "run_pipeline",
    "simulate_logs",
    "true_values",
]

ProgressCallback = Callable[[str], None]


class ConfigError(HfrlError):
    """A pipeline configuration has an unknown key or a value of the wrong type or range."""


ENVS = {"recommendation": "RecommendationEnv", "ad_placement": "AdPlacementEnv"}
ONLINE_LEARNERS = {"q_learning": "QLearning", "sarsa": "Sarsa", "expected_sarsa": "ExpectedSarsa"}
OFFLINE_LEARNERS = {
    "fitted_q_iteration": "FittedQIteration",
    "direct_method": "DirectMethodLearner",
    "ips": "IPSLearner",
}
LEARNERS = {**ONLINE_LEARNERS, **OFFLINE_LEARNERS}
LOGGING_POLICIES = ("uniform", "popularity", "epsilon_greedy")
ESTIMATORS = ("ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
POLICY_LABELS = {
    "logging": "logging policy",
    "hf": "HF only",
    "pi": "pi only",
    "pi_prime": "pi' (tuned)",
    "optimal": "optimal",
}

DEFAULT_CONFIG: dict[str, Any] = {
    "name": "hfrl-run",
    "seed": 0,
    "source": {
        "type": "simulator",
        "env": "recommendation",
        "env_options": {},
        "logging_policy": "popularity",
        "epsilon": 0.1,
        "n_rows": 30_000,
        "path": None,
        "n_states": None,
        "n_actions": None,
        "backend": None,
    },
    "split": {"by": "time", "fractions": [0.5, 0.25, 0.25]},
    "frequencies": {"kind": "share", "prior_strength": 1.0, "options": {}},
    "learner": {"name": "q_learning", "n_steps": 200_000, "gamma": 0.9, "options": {}},
    "tuning": {
        "estimator": "snips",
        "criterion": "estimate",
        "alphas": "auto",
        "method": "linear",
        "level": 0.95,
    },
    "evaluation": {
        "estimators": ["ips", "snips", "dm", "dr"],
        "level": 0.95,
        "n_bootstrap": 0,
        "propensity": "logged",
    },
    "output": {"dir": "hfrl-run", "save_logs": True},
}


# ---------------------------------------------------------------------------- configuration
def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _check_choice(where: str, value: Any, choices: Any) -> str:
    text = str(value).replace("-", "_") if isinstance(value, str) else value
    if text not in choices:
        raise _fail(where, f"expected one of {sorted(choices)}, got {value!r}")
    return text


def _check_number(
    where: str, value: Any, low: float, high: float, *, integer: bool = False, low_open: bool = False
) -> Any:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        kind = "an integer" if integer else "a number"
        raise _fail(where, f"expected {kind}, got {value!r}")
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise _fail(where, f"expected a value in {bracket}{low}, {high}], got {value!r}")
    return value


def _merge(where: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise _fail(where, f"expected a table of settings, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; expected some of {sorted(defaults)}")
    out = copy.deepcopy(dict(defaults))
    for key, value in given.items():
        if isinstance(defaults[key], dict) and key not in ("env_options", "options"):
            out[key] = _merge(f"{where}.{key}" if where else key, defaults[key], value)
        else:
            out[key] = value
    return out


def resolve_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Fill defaults into a pipeline configuration and validate every value.

    Parameters
    ----------
    config : mapping
        The sections described in :mod:`hfrl.pipeline`; anything missing takes its default.
    source : str
        A name for messages (the TOML file's path).

    Returns
    -------
    dict
        The resolved configuration (written to the run folder as ``config.json``).

    Raises
    ------
    ConfigError
        Naming the section and key, what was expected and what was given.

    Examples
    --------
    >>> resolve_config({"learner": {"n_steps": 5000}})["learner"]["n_steps"]
    5000
    >>> resolve_config({"learner": {"n_step": 5000}})
    Traceback (most recent call last):
    ...
    hfrl.pipeline.ConfigError: config: learner: unknown key(s) ['n_step']; ...
    """
    try:
        resolved = _merge("", DEFAULT_CONFIG, config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {str(exc).lstrip(': ')}") from None

    def where(key: str) -> str:
        return f"{source}: {key}"

    if not isinstance(resolved["name"], str) or not resolved["name"]:
        raise _fail(where("name"), f"expected a non-empty string, got {resolved['name']!r}")
    _check_number(where("seed"), resolved["seed"], 0, 2**32 - 1, integer=True)

    src = resolved["source"]
    src["type"] = _check_choice(where("source.type"), src["type"], ("simulator", "logs"))
    if src["type"] == "simulator":
        src["env"] = _check_choice(where("source.env"), src["env"], ENVS)
        if not isinstance(src["env_options"], Mapping):
            raise _fail(where("source.env_options"), f"expected a table, got {src['env_options']!r}")
        src["logging_policy"] = _check_choice(
            where("source.logging_policy"), src["logging_policy"], LOGGING_POLICIES
        )
        _check_number(where("source.epsilon"), src["epsilon"], 0.0, 1.0)
        _check_number(where("source.n_rows"), src["n_rows"], 1, 10**10, integer=True)
    else:
        if not isinstance(src["path"], str) or not src["path"]:
            raise _fail(where("source.path"), f"a log source needs a file path, got {src['path']!r}")
        for key in ("n_states", "n_actions"):
            if src[key] is not None:
                _check_number(where(f"source.{key}"), src[key], 1, 10**9, integer=True)
    if src["backend"] is not None:
        src["backend"] = _check_choice(where("source.backend"), src["backend"], ("memory", "duckdb", "spark"))

    split = resolved["split"]
    split["by"] = _check_choice(where("split.by"), split["by"], ("time", "random"))
    fractions = split["fractions"]
    if not isinstance(fractions, list | tuple) or len(fractions) != 3:
        raise _fail(
            where("split.fractions"), f"expected 3 numbers (train, validation, test), got {fractions!r}"
        )
    for i, value in enumerate(fractions):
        _check_number(where(f"split.fractions[{i}]"), value, 0.0, 1.0, low_open=True)
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise _fail(where("split.fractions"), f"expected fractions summing to 1, got {fractions!r}")

    freq = resolved["frequencies"]
    freq["kind"] = _check_choice(where("frequencies.kind"), freq["kind"], ("share", "rate"))
    _check_number(where("frequencies.prior_strength"), freq["prior_strength"], 0.0, math.inf)
    if not isinstance(freq["options"], Mapping):
        raise _fail(where("frequencies.options"), f"expected a table, got {freq['options']!r}")

    learner = resolved["learner"]
    learner["name"] = _check_choice(where("learner.name"), learner["name"], LEARNERS)
    _check_number(where("learner.n_steps"), learner["n_steps"], 1, 10**11, integer=True)
    _check_number(where("learner.gamma"), learner["gamma"], 0.0, 1.0)
    if not isinstance(learner["options"], Mapping):
        raise _fail(where("learner.options"), f"expected a table, got {learner['options']!r}")
    if learner["name"] in ONLINE_LEARNERS and src["type"] != "simulator":
        raise _fail(
            where("learner.name"),
            f"{learner['name']!r} learns online and needs source.type = "
            f"'simulator'; from logs use one of {sorted(OFFLINE_LEARNERS)}",
        )

    tuning = resolved["tuning"]
    tuning["estimator"] = _check_choice(where("tuning.estimator"), tuning["estimator"], ESTIMATORS)
    tuning["criterion"] = _check_choice(
        where("tuning.criterion"), tuning["criterion"], ("estimate", "lower_bound")
    )
    tuning["method"] = _check_choice(where("tuning.method"), tuning["method"], ("linear", "geometric"))
    _check_number(where("tuning.level"), tuning["level"], 0.0, 1.0, low_open=True)
    alphas = tuning["alphas"]
    if alphas != "auto":
        if not isinstance(alphas, list | tuple) or not alphas:
            raise _fail(where("tuning.alphas"), f"expected 'auto' or a list of numbers, got {alphas!r}")
        for i, value in enumerate(alphas):
            _check_number(where(f"tuning.alphas[{i}]"), value, 0.0, 1.0)

    evaluation = resolved["evaluation"]
    estimators = evaluation["estimators"]
    if not isinstance(estimators, list | tuple) or not estimators:
        raise _fail(where("evaluation.estimators"), f"expected a list of estimator names, got {estimators!r}")
    evaluation["estimators"] = [
        _check_choice(where(f"evaluation.estimators[{i}]"), e, ESTIMATORS) for i, e in enumerate(estimators)
    ]
    if tuning["estimator"] not in evaluation["estimators"]:
        evaluation["estimators"].append(tuning["estimator"])
    _check_number(where("evaluation.level"), evaluation["level"], 0.0, 1.0, low_open=True)
    _check_number(where("evaluation.n_bootstrap"), evaluation["n_bootstrap"], 0, 100_000, integer=True)
    evaluation["propensity"] = _check_choice(
        where("evaluation.propensity"), evaluation["propensity"], ("logged", "estimate")
    )

    output = resolved["output"]
    if not isinstance(output["dir"], str) or not output["dir"]:
        raise _fail(where("output.dir"), f"expected a folder path, got {output['dir']!r}")
    if not isinstance(output["save_logs"], bool):
        raise _fail(where("output.save_logs"), f"expected true or false, got {output['save_logs']!r}")
    return resolved


def load_config(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a TOML pipeline file and resolve it (relative paths are taken from the file's folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.toml"
    >>> _ = path.write_text('name = "x"\\n[learner]\\nn_steps = 1000\\n')
    >>> load_config(path)["learner"]["n_steps"]
    1000
    """
    import tomllib

    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pipeline file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = resolve_config(raw, source=str(path))
    source_path = config["source"]["path"]
    if (
        config["source"]["type"] == "logs"
        and not Path(source_path).is_absolute()
        and "://" not in source_path
    ):
        config["source"]["path"] = str(path.parent / source_path)
    return config


# ---------------------------------------------------------------------------- building blocks
def make_env(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build a simulator by its pipeline name (``"recommendation"``, ``"ad_placement"``).

    Examples
    --------
    >>> make_env("recommendation", {"n_items": 5}).n_actions
    5
    """
    import hfrl.envs

    key = _check_choice("env", name, ENVS)
    cls = getattr(hfrl.envs, ENVS[key])
    try:
        return cls(**dict(options or {}))
    except TypeError as exc:
        raise ConfigError(f"env_options of {key!r}: {exc}") from None


def simulate_logs(
    env: Any,
    logging: str = "popularity",
    n_rows: int = 10_000,
    *,
    epsilon: float = 0.1,
    gamma: float = 0.9,
    seed: int | None = None,
) -> tuple[TabularPolicy, pd.DataFrame]:
    """Simulate ``n_rows`` logged decisions of a usual logging policy in ``env``.

    Returns the logging policy and the logs (the hfrl log schema, with propensities).

    Examples
    --------
    >>> policy, logs = simulate_logs(make_env("recommendation"), "uniform", 500, seed=0)
    >>> len(logs), bool((logs["propensity"] == 0.1).all())
    (500, True)
    """
    from hfrl.envs import collect_logs, logging_policy

    kind = _check_choice("logging_policy", logging, LOGGING_POLICIES)
    policy = logging_policy(env, kind, epsilon=epsilon, gamma=gamma, random_state=seed)
    return policy, collect_logs(env, policy, int(n_rows), seed)


def make_learner(
    name: str, gamma: float = 0.9, seed: int | None = None, options: Mapping[str, Any] | None = None
) -> Any:
    """Build a learner by its pipeline name, passing ``gamma`` and ``seed`` where it takes them.

    Examples
    --------
    >>> make_learner("q_learning", gamma=0.8, seed=1).gamma
    0.8
    >>> type(make_learner("fitted-q-iteration")).__name__
    'FittedQIteration'
    """
    import hfrl.learners

    name = _check_choice("learner", name, LEARNERS)
    options = dict(options or {})

    cls = getattr(hfrl.learners, LEARNERS[name])
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in (("gamma", gamma), ("random_state", seed)) if k in accepted}
    kwargs.update(options)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"learner.options of {name!r}: {exc}") from None


def true_values(env: Any, policy: TabularPolicy, states: np.ndarray, gamma: float) -> tuple[float, float]:
    """The exact ``(true_value, true_return)`` of ``policy`` in a simulator.

    ``true_value = sum_s d(s) sum_a pi(a|s) r(s, a)`` with ``d`` the frequencies of ``states`` (the
    evaluation split's): what off-policy estimators estimate from those rows. ``true_return`` is
    ``env.policy_value(policy, gamma)``: the discounted session return from the start distribution.

    Examples
    --------
    >>> import numpy as np
    >>> env = make_env("recommendation")
    >>> uniform = TabularPolicy.uniform(env.n_states, env.n_actions)
    >>> value, ret = true_values(env, uniform, np.array([0, 0, 5]), gamma=0.9)
    >>> bool(np.isclose(value, (2 * env.reward_matrix()[0].mean() + env.reward_matrix()[5].mean()) / 3))
    True
    """
    d = np.bincount(np.asarray(states, dtype=np.int64), minlength=env.n_states) / max(len(states), 1)
    per_state = (policy.table_ * env.reward_matrix()).sum(axis=1)
    return float(d @ per_state), float(env.policy_value(policy, gamma))


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars made plain and NaN/inf turned into None, for ``json.dumps``.

    Examples
    --------
    >>> import numpy as np
    >>> json_ready({"a": np.float64("nan"), "b": [np.int64(2), 0.5]})
    {'a': None, 'b': [2, 0.5]}
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


RUN_FOLDER_FILES = (
    "metrics.json",
    "config.json",
    "report.html",
    "curves/*.csv",
    "tables/*.npy",
    "artifacts/*.hfrl",
    "logs/*.parquet",
)


def _clear_run_folder(out: Path) -> None:
    """Remove the files a previous run left in ``out`` (only those of the run-folder layout), so
    that a part this run does not produce (a learning curve, the truth) cannot be stale."""
    for pattern in RUN_FOLDER_FILES:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()


def _events_per_state(logs: pd.DataFrame, n_states: int) -> np.ndarray:
    return np.bincount(logs[schema.STATE].to_numpy(dtype=np.int64), minlength=n_states).astype(np.float64)


# ---------------------------------------------------------------------------- the pipeline
@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produced.

    ``summary`` has one row per policy (``logging policy``, ``HF only``, ``pi only``,
    ``pi' (tuned)``, ``optimal``) and columns ``estimate``, ``std_error``, ``ci_low``,
    ``ci_high``, ``true_value``, ``true_return`` (truth only from a simulator).
    """

    out_dir: Path
    alpha: float
    summary: pd.DataFrame
    estimates: pd.DataFrame
    metrics: dict[str, Any]
    config: dict[str, Any]
    policies: dict[str, TabularPolicy] = field(default_factory=dict)


def run_pipeline(
    config: Mapping[str, Any],
    out_dir: str | PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> PipelineResult:
    """Run a declarative pipeline end to end and write its run folder.

    Parameters
    ----------
    config : mapping
        A pipeline configuration (resolved again here, so a raw mapping works).
    out_dir : path, optional
        The run folder; default ``config["output"]["dir"]``.
    progress : callable, optional
        Called with a short description as each stage starts (the CLI shows it).

    Returns
    -------
    PipelineResult

    Examples
    --------
    >>> import tempfile
    >>> config = {"source": {"n_rows": 3000}, "learner": {"n_steps": 3000}}
    >>> result = run_pipeline(config, tempfile.mkdtemp())
    >>> 0.0 <= result.alpha <= 1.0, sorted(p.name for p in (result.out_dir / "artifacts").iterdir())[0]
    (True, 'hf.hfrl')
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        return _run_pipeline(config, out_dir, progress, caught)


def _run_pipeline(
    config: Mapping[str, Any],
    out_dir: str | PathLike[str] | None,
    progress: ProgressCallback | None,
    caught: list[warnings.WarningMessage],
) -> PipelineResult:
    from hfrl.blend import blend
    from hfrl.frequencies import HistoricalFrequency
    from hfrl.ope import compare, evaluate
    from hfrl.tune import split_logs, tune_alpha

    started = time.perf_counter()
    config = resolve_config(config)
    say = progress or (lambda stage: None)
    out = Path(out_dir if out_dir is not None else config["output"]["dir"])
    config["output"]["dir"] = str(out)  # the resolved config says where the run really went
    seed = int(config["seed"])
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(5)]
    src, learner_cfg = config["source"], config["learner"]
    gamma = float(learner_cfg["gamma"])
    backend = src["backend"]

    # 1. the logs
    env = None
    known: dict[str, TabularPolicy] = {}
    if src["type"] == "simulator":
        say(f"simulating {src['n_rows']:,} logged decisions ({src['env']}, {src['logging_policy']} logging)")
        env = make_env(src["env"], src["env_options"])
        known["logging"], logs = simulate_logs(
            env, src["logging_policy"], src["n_rows"], epsilon=src["epsilon"], gamma=gamma, seed=seeds[0]
        )
        n_states, n_actions = env.n_states, env.n_actions
    else:
        from hfrl.data import load_logs

        say(f"loading {src['path']}")
        logs = load_logs(src["path"], n_states=src["n_states"], n_actions=src["n_actions"])
        n_states = src["n_states"] or int(logs[schema.STATE].max()) + 1
        n_actions = src["n_actions"] or int(logs[schema.ACTION].max()) + 1

    # 2. splits: HF and pi from train, alpha from validation, values on test
    split = config["split"]
    train, validation, test = split_logs(
        logs, fractions=tuple(split["fractions"]), by=split["by"], random_state=seeds[1]
    )
    # 3. HF
    freq = config["frequencies"]
    say(f"fitting historical frequencies on {len(train):,} training rows")
    hf_options = dict(freq["options"])
    if backend is not None:
        hf_options.setdefault("backend", backend)
    hf = HistoricalFrequency(kind=freq["kind"], prior_strength=freq["prior_strength"], **hf_options)
    hf.fit(train, n_states=n_states, n_actions=n_actions)
    # 4. pi
    learner = make_learner(learner_cfg["name"], gamma, seeds[2], learner_cfg["options"])
    if learner_cfg["name"] in ONLINE_LEARNERS:
        say(f"training {type(learner).__name__} online for {learner_cfg['n_steps']:,} steps")
        learner.fit(env, n_steps=learner_cfg["n_steps"])
    else:
        say(f"training {type(learner).__name__} offline on {len(train):,} rows")
        learner.fit(train, n_states=n_states, n_actions=n_actions)
    pi = learner.policy_
    # 5. alpha
    tuning = config["tuning"]
    say(f"tuning alpha by {tuning['estimator'].upper()} on {len(validation):,} validation rows")
    evaluation = config["evaluation"]
    propensity = evaluation["propensity"]
    tuned = tune_alpha(
        pi,
        hf,
        validation,
        estimator=tuning["estimator"],
        alphas=tuning["alphas"],
        criterion=tuning["criterion"],
        level=tuning["level"],
        method=tuning["method"],
        backend=backend,
        propensity=propensity,
    )
    alpha = float(tuned.alpha)
    pi_prime = tuned.policy
    # 6. evaluation on test
    policies = dict(known)
    policies["hf"] = blend(pi, hf, 1.0)
    policies["pi"] = pi
    policies["pi_prime"] = pi_prime
    if env is not None:
        say("solving the simulator exactly for the optimal policy")
        policies["optimal"] = env.optimal_policy(gamma)
    say(
        f"evaluating {len(policies) + (env is None)} policies on {len(test):,} test rows"
        + (f" with {evaluation['n_bootstrap']} bootstrap resamples" if evaluation["n_bootstrap"] else "")
    )
    eval_kwargs: dict[str, Any] = {
        "estimators": tuple(evaluation["estimators"]),
        "level": evaluation["level"],
        "n_bootstrap": evaluation["n_bootstrap"],
        "random_state": seeds[3],
        "backend": backend,
        "propensity": propensity,
    }
    primary = tuning["estimator"]
    test_states = test[schema.STATE].to_numpy(dtype=np.int64)
    estimate_rows, summary_rows = [], {}
    # The deployment verdict for pi' against the logging policy, paired on the test rows; its
    # baseline (the on-policy mean reward) is the logging policy's value when no table of it exists.
    verdict = compare(
        pi_prime,
        test,
        baseline="logging",
        level=evaluation["level"],
        estimator=primary if primary in ("snips", "dr", "ips") else "snips",
        backend=backend,
        propensity=propensity,
    )
    if env is None:
        label = POLICY_LABELS["logging"]
        low, high = (float(v) for v in verdict.baseline_ci)
        summary_rows[label] = {
            "estimate": float(verdict.baseline_value),
            "std_error": None,
            "ci_low": low,
            "ci_high": high,
            "true_value": None,
            "true_return": None,
        }
        estimate_rows.append({"policy": label, "estimator": "on-policy mean", **summary_rows[label]})
    for key, policy in policies.items():
        label = POLICY_LABELS[key]
        frame = evaluate(test, policy, **eval_kwargs)
        truth, ret = true_values(env, policy, test_states, gamma) if env is not None else (None, None)
        for estimator, row in frame.iterrows():
            estimate_rows.append(
                {
                    "policy": label,
                    "estimator": str(estimator),
                    "estimate": row["estimate"],
                    "std_error": row["std_error"],
                    "ci_low": row["ci_low"],
                    "ci_high": row["ci_high"],
                    "ess": row.get("ess"),
                    "max_weight": row.get("max_weight"),
                    "true_value": truth,
                }
            )
            if "boot_ci_low" in frame.columns:
                estimate_rows[-1].update(boot_ci_low=row["boot_ci_low"], boot_ci_high=row["boot_ci_high"])
        chosen = frame.loc[primary]
        summary_rows[label] = {
            "estimate": float(chosen["estimate"]),
            "std_error": float(chosen["std_error"]),
            "ci_low": float(chosen["ci_low"]),
            "ci_high": float(chosen["ci_high"]),
            "true_value": truth,
            "true_return": ret,
        }
    summary = pd.DataFrame.from_dict(summary_rows, orient="index")
    summary.index.name = "policy"
    estimates = pd.DataFrame(estimate_rows)

    # 7. the run folder
    say(f"writing the run folder {out}")
    counts = _events_per_state(logs, n_states)
    metrics = {
        "format": "hfrl.run",
        "format_version": 1,
        "run": {
            "name": config["name"],
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "hfrl_version": _version(),
            "python": platform.python_version(),
            "seed": seed,
            "source": (
                f"simulator {src['env']} with {src['logging_policy']} logging"
                if env is not None
                else f"logs {src['path']}"
            ),
            "learner": type(learner).__name__,
            "gamma": gamma,
            "elapsed_seconds": None,
        },
        "alpha": alpha,
        "tuning": {
            "estimator": primary,
            "criterion": tuning["criterion"],
            "method": tuning["method"],
            "level": tuning["level"],
            "split": "validation",
            "validation_estimate": float(tuned.evaluation.iloc[0]["estimate"]),
            "validation_ci": [
                float(tuned.evaluation.iloc[0]["ci_low"]),
                float(tuned.evaluation.iloc[0]["ci_high"]),
            ],
        },
        "evaluation": {
            "split": "test",
            "estimators": evaluation["estimators"],
            "level": evaluation["level"],
            "n_bootstrap": evaluation["n_bootstrap"],
            "propensity": propensity,
            "truth": None
            if env is None
            else "true_value: exact expected reward per decision at "
            "the test split's states; true_return: env.policy_value(policy, gamma)",
        },
        "policies": {label: dict(row) for label, row in summary_rows.items()},
        "verdict": {
            k: getattr(verdict, k)
            for k in (
                "verdict",
                "difference",
                "std_error",
                "ci_low",
                "ci_high",
                "reason",
                "estimator",
                "ess",
                "n_rows",
            )
        },
        "estimators": estimate_rows,
        "data": {
            "rows": len(logs),
            "n_states": n_states,
            "n_actions": n_actions,
            "mean_reward": float(logs[schema.REWARD].mean()),
            "states_seen": int((counts > 0).sum()),
            "actions_seen": int(logs[schema.ACTION].nunique()),
            "splits": {"train": len(train), "validation": len(validation), "test": len(test)},
            "events_per_state": {
                "min": float(counts.min()),
                "median": float(np.median(counts)),
                "mean": float(counts.mean()),
                "max": float(counts.max()),
            },
        },
    }
    tables = {"pi": pi, "hf": policies["hf"], "pi_prime": pi_prime}
    for key in ("logging", "optimal"):
        if key in policies:
            tables[key] = policies[key]
    _clear_run_folder(out)
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    (out / "curves").mkdir(exist_ok=True)
    for key, policy in tables.items():
        meta = {"name": key, "label": POLICY_LABELS[key], "run": config["name"]}
        if key == "pi_prime":
            meta.update(alpha=alpha, method=tuning["method"])
        policy.metadata.update(meta)
        policy.save(out / "artifacts" / f"{key}.hfrl")
        if key in ("pi", "hf", "pi_prime"):
            np.save(out / "tables" / f"{key}.npy", policy.table_)
    np.save(out / "tables" / "state_counts.npy", counts)
    curve = getattr(learner, "learning_curve_", None)
    if isinstance(curve, pd.DataFrame) and len(curve):
        reward_column = "reward" if "reward" in curve.columns else "mean_reward"
        pd.DataFrame({"step": curve["step"], "reward": curve[reward_column]}).to_csv(
            out / "curves" / "learning_curve.csv", index=False
        )
    tuned.curve.to_csv(out / "curves" / "alpha_curve.csv", index=False)
    if config["output"]["save_logs"]:
        (out / "logs").mkdir(exist_ok=True)
        for name, part in (("train", train), ("validation", validation), ("test", test)):
            part.to_parquet(out / "logs" / f"{name}.parquet", index=False)
    # Warnings (support violations, dropped rows, ...) are part of the result, not lost on stderr.
    metrics["warnings"] = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    metrics["run"]["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    (out / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2))
    (out / "config.json").write_text(json.dumps(json_ready(config), indent=2))
    return PipelineResult(
        out_dir=out,
        alpha=alpha,
        summary=summary,
        estimates=estimates,
        metrics=metrics,
        config=config,
        policies=policies,
    )


def _version() -> str:
    from hfrl import __version__

    return __version__


# ---------------------------------------------------------------------------- the demo
def demo_config(seed: int = 0, out_dir: str = "demo-out") -> dict[str, Any]:
    """The configuration of ``hfrl demo``: Recommendation simulator, popularity logging, Q-learning.

    Examples
    --------
    >>> demo_config(3)["learner"]["name"], demo_config(3)["seed"]
    ('q_learning', 3)
    """
    return resolve_config(
        {
            "name": "hfrl demo",
            "seed": seed,
            "source": {
                "type": "simulator",
                "env": "recommendation",
                "logging_policy": "popularity",
                "n_rows": 200_000,
            },
            "split": {"by": "time", "fractions": [0.5, 0.25, 0.25]},
            "frequencies": {"kind": "share", "prior_strength": 1.0},
            "learner": {
                "name": "q_learning",
                "n_steps": 400_000,
                "gamma": 0.9,
                "options": {"n_envs": 256, "learning_rate": 0.1, "epsilon": 0.3, "epsilon_final": 0.01},
            },
            "tuning": {"estimator": "snips", "criterion": "estimate", "alphas": "auto"},
            "evaluation": {"estimators": ["ips", "snips", "dm", "dr"], "level": 0.95, "n_bootstrap": 200},
            "output": {"dir": out_dir, "save_logs": True},
        }
    )


def run_demo(
    out_dir: str | PathLike[str] = "demo-out", seed: int = 0, progress: ProgressCallback | None = None
) -> PipelineResult:
    """Run the end-to-end demo (see :func:`demo_config`) into ``out_dir``.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), seed=0)
    >>> list(result.summary.index)
    ['logging policy', 'HF only', 'pi only', "pi' (tuned)", 'optimal']
    """
    return run_pipeline(demo_config(seed, str(out_dir)), out_dir, progress=progress)
