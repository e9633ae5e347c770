"""Declarative pipelines: from logs (or a simulator) to a tuned, evaluated, saved policy.

A pipeline is one nested mapping (usually a TOML file read by ``hfrl run``) with the sections
below; every key is optional and :func:`resolve_config` fills the defaults and refuses unknown
keys or wrong types with a message naming the key.

``name``, ``seed``
    A label for the run and the one seed every random step derives its own from.
``[source]``
    ``type = "simulator"``: ``env`` (``"recommendation"`` or ``"ad_placement"``) with
    ``env_options`` (keyword arguments of the env), ``logging_policy`` (``"uniform"``,
    ``"popularity"``, ``"epsilon_greedy"``), ``epsilon``, ``logging_gamma`` (the discount of the
    optimal policy an ``"epsilon_greedy"`` logging explores around: default the learner's gamma,
    0 for the myopic best, what a shop ranking by immediate revenue does), ``n_rows`` to simulate,
    and ``simulator_shift`` (optional ``{kind, strength, seed}``): the online learner then learns
    in ``hfrl.envs.shift(env, strength, kind, seed)`` -- a simulator that is wrong by that much --
    while the logs and the truth come from ``env``, the real shop (``seed`` defaults to the run's).
    ``type = "logs"``: ``path`` to a CSV/Parquet file or glob (relative to the pipeline file's
    folder), optional ``n_states`` and ``n_actions`` (default: the largest id + 1) and ``columns``,
    a table from schema columns to the file's own names (``columns = { action = "item_id",
    reward = "click", propensity = "propensity_score" }``). ``backend`` (``"memory"``, ``"duckdb"``,
    ``"spark"``) for the aggregations. The pipeline reads the rows into memory to split them; for
    logs larger than memory, split them first and use ``hfrl frequencies/tune/evaluate --backend``.
``[split]``
    ``by`` (``"time"``, ``"random"`` or ``"session"``: whole sessions, in the order they started,
    which the return of a session needs) and ``fractions`` of (train, validation, test).
``[frequencies]``
    ``kind``, ``prior_strength`` and any other ``HistoricalFrequency`` keyword in ``options``.
``[learner]``
    ``name``: online ``"q_learning"``, ``"sarsa"``, ``"expected_sarsa"`` and the bandits
    ``"epsilon_greedy"``, ``"ucb1"``, ``"thompson_sampling"``, ``"linucb"`` (simulator only,
    ``n_steps`` transitions; LinUCB's ``features`` default to one indicator per state, or name a
    ``.npy``/``.csv`` file of one row per state) or offline ``"fitted_q_iteration"``,
    ``"direct_method"``, ``"ips"``, ``"conservative"`` (fit on the training split; the conservative
    learner restricts ``options.learner``, default ``"fitted_q_iteration"``, to actions logged at
    least ``options.min_count`` times in a state); ``gamma``; constructor keywords in ``options``.
``[tuning]``
    ``objective`` (``"auto"``: the discounted return when the learner optimises one -- the online
    learners and fitted Q iteration -- and the logs are sessions, else the one-step ``"reward"``;
    or either explicitly), ``estimator`` (the one-step estimator; the return is estimated by
    fitted Q evaluation), ``criterion`` (``"estimate"`` or ``"lower_bound"``), ``alphas``
    (``"auto"`` or a list), ``method`` (``"linear"``/``"geometric"``), ``level``, ``per_state``
    (count-aware alpha per state) and ``safety`` (the chosen pi' must beat the logging policy in a
    one-sided test at ``level`` on the test split, ``passed_safety``).
``[evaluation]``
    ``estimators``, ``level``, ``n_bootstrap``, ``propensity`` (``"logged"``, or ``"estimate"`` for
    logs without propensities: the logging policy is then estimated per state from the logs, and
    tuning and evaluation say so).
``[output]``
    ``dir`` (the run folder), ``save_logs`` (write the three splits as Parquet) and
    ``min_propensity``: the exploration floor of the policies written for serving (pi, HF and
    pi'), default ``hfrl.policies.default_min_propensity(n_actions)`` (5% of the uniform
    probability, ``DEFAULT_EXPLORATION``), 0 to serve them as they are. The floor is put on pi and
    HF before tuning, so every candidate pi' has it and the values reported are those of what is
    served. The logging policy and the exact optimum are saved as they are (references).

The flow: simulate or load logs; split them (HF and the learner see only the training split,
alpha is chosen on validation, values are reported on test); fit HF; train pi; tune alpha; evaluate
the logging policy, HF alone, pi alone, pi' and (from a simulator) the optimal policy on the test
split with every estimator (and, for the return objective, fitted Q evaluation of the return);
compare pi' with each alternative, paired on the test rows (``verdicts``); compare with the exact
truth when a simulator is the source; write the run folder laid out as :mod:`hfrl.report`
documents. The HTML report itself is written by the
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
import os
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

from hfrl.data import Logs, schema
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
ONLINE_LEARNERS = {
    "q_learning": "QLearning",
    "sarsa": "Sarsa",
    "expected_sarsa": "ExpectedSarsa",
    "epsilon_greedy": "EpsilonGreedy",
    "ucb1": "UCB1",
    "thompson_sampling": "ThompsonSampling",
    "linucb": "LinUCB",
}
OFFLINE_LEARNERS = {
    "fitted_q_iteration": "FittedQIteration",
    "direct_method": "DirectMethodLearner",
    "ips": "IPSLearner",
    "conservative": "ConservativeLearner",
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
        "logging_gamma": None,
        "simulator_shift": None,
        "n_rows": 30_000,
        "path": None,
        "n_states": None,
        "n_actions": None,
        "columns": {},
        "backend": None,
    },
    "split": {"by": "time", "fractions": [0.5, 0.25, 0.25]},
    "frequencies": {"kind": "share", "prior_strength": 1.0, "options": {}},
    "learner": {"name": "q_learning", "n_steps": 200_000, "gamma": 0.9, "options": {}},
    "tuning": {
        "objective": "auto",
        "estimator": "snips",
        "criterion": "estimate",
        "alphas": "auto",
        "method": "linear",
        "level": 0.95,
        "per_state": False,
        "safety": True,
    },
    "evaluation": {
        "estimators": ["ips", "snips", "dm", "dr"],
        "level": 0.95,
        "n_bootstrap": 0,
        "propensity": "logged",
    },
    "output": {"dir": "hfrl-run", "save_logs": True, "min_propensity": None},
}
SHIFT_DEFAULTS: dict[str, Any] = {"kind": "preferences", "strength": 0.5, "seed": None}
RETURN_LEARNERS = (*ONLINE_LEARNERS, "fitted_q_iteration")  # the learners that optimise a return


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
        if key == "simulator_shift" and value is not None:
            out[key] = _merge(f"{where}.{key}" if where else key, SHIFT_DEFAULTS, value)
        elif isinstance(defaults[key], dict) and key not in ("env_options", "options", "columns"):
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
    _check_source(resolved["source"], where)
    _check_split(resolved["split"], where)
    _check_frequencies(resolved["frequencies"], where)
    _check_learner(resolved["learner"], resolved["source"]["type"], where)
    _check_tuning(resolved["tuning"], where)
    shifted = resolved["source"]["simulator_shift"] is not None
    if shifted and resolved["learner"]["name"] not in ONLINE_LEARNERS:
        raise _fail(where("source.simulator_shift"), "only an online learner learns in a simulator; "
                    f"{resolved['learner']['name']!r} learns from the logs")
    _check_evaluation(resolved["evaluation"], resolved["tuning"]["estimator"], where)
    _check_output(resolved["output"], where)
    return resolved


# Each section check validates one merged section in place (choices are normalised, e.g. "q-learning"
# to "q_learning"); ``where`` turns a key into the message prefix naming the file and the key.
_Where = Callable[[str], str]


def _check_source(src: dict[str, Any], where: _Where) -> None:
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
        if src["logging_gamma"] is not None:
            _check_number(where("source.logging_gamma"), src["logging_gamma"], 0.0, 1.0)
        if src["simulator_shift"] is not None:
            _check_shift(src["simulator_shift"], where)
    else:
        if src["simulator_shift"] is not None:
            raise _fail(where("source.simulator_shift"), "a simulator shift needs source.type = 'simulator'")
        if not isinstance(src["path"], str) or not src["path"]:
            raise _fail(where("source.path"), f"a log source needs a file path, got {src['path']!r}")
        for key in ("n_states", "n_actions"):
            if src[key] is not None:
                _check_number(where(f"source.{key}"), src[key], 1, 10**9, integer=True)
        columns = src["columns"]
        if not isinstance(columns, Mapping) or not all(isinstance(v, str) and v for v in columns.values()):
            raise _fail(where("source.columns"),
                        f"expected a table of schema column = stored column name, got {columns!r}")
        unknown = sorted(set(columns) - set(schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS))
        if unknown:
            raise _fail(where("source.columns"), f"unknown schema column(s) {unknown}; expected some of "
                        f"{list(schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS)}")
    if src["backend"] is not None:
        src["backend"] = _check_choice(where("source.backend"), src["backend"], ("memory", "duckdb", "spark"))


def _check_shift(shift: dict[str, Any], where: _Where) -> None:
    from hfrl.envs import SHIFT_KINDS

    shift["kind"] = _check_choice(where("source.simulator_shift.kind"), shift["kind"], SHIFT_KINDS)
    _check_number(where("source.simulator_shift.strength"), shift["strength"], 0.0, 100.0)
    if shift["seed"] is not None:
        _check_number(where("source.simulator_shift.seed"), shift["seed"], 0, 2**32 - 1, integer=True)


def _check_split(split: dict[str, Any], where: _Where) -> None:
    split["by"] = _check_choice(where("split.by"), split["by"], ("time", "random", "session"))
    fractions = split["fractions"]
    if not isinstance(fractions, list | tuple) or len(fractions) != 3:
        raise _fail(
            where("split.fractions"), f"expected 3 numbers (train, validation, test), got {fractions!r}"
        )
    for i, value in enumerate(fractions):
        _check_number(where(f"split.fractions[{i}]"), value, 0.0, 1.0, low_open=True)
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise _fail(where("split.fractions"), f"expected fractions summing to 1, got {fractions!r}")


def _check_frequencies(freq: dict[str, Any], where: _Where) -> None:
    freq["kind"] = _check_choice(where("frequencies.kind"), freq["kind"], ("share", "rate"))
    _check_number(where("frequencies.prior_strength"), freq["prior_strength"], 0.0, math.inf)
    if not isinstance(freq["options"], Mapping):
        raise _fail(where("frequencies.options"), f"expected a table, got {freq['options']!r}")


def _check_learner(learner: dict[str, Any], source_type: str, where: _Where) -> None:
    """Also refuses an online learner without a simulator to learn from."""
    learner["name"] = _check_choice(where("learner.name"), learner["name"], LEARNERS)
    _check_number(where("learner.n_steps"), learner["n_steps"], 1, 10**11, integer=True)
    _check_number(where("learner.gamma"), learner["gamma"], 0.0, 1.0)
    if not isinstance(learner["options"], Mapping):
        raise _fail(where("learner.options"), f"expected a table, got {learner['options']!r}")
    if learner["name"] in ONLINE_LEARNERS and source_type != "simulator":
        raise _fail(
            where("learner.name"),
            f"{learner['name']!r} learns online and needs source.type = "
            f"'simulator'; from logs use one of {sorted(OFFLINE_LEARNERS)}",
        )


def _check_tuning(tuning: dict[str, Any], where: _Where) -> None:
    tuning["objective"] = _check_choice(where("tuning.objective"), tuning["objective"],
                                        ("auto", "reward", "return"))
    for key in ("per_state", "safety"):
        if not isinstance(tuning[key], bool):
            raise _fail(where(f"tuning.{key}"), f"expected true or false, got {tuning[key]!r}")
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


def _check_evaluation(evaluation: dict[str, Any], tuning_estimator: str, where: _Where) -> None:
    """Also adds the tuning estimator to the evaluated ones: the summary reports its values."""
    estimators = evaluation["estimators"]
    if not isinstance(estimators, list | tuple) or not estimators:
        raise _fail(where("evaluation.estimators"), f"expected a list of estimator names, got {estimators!r}")
    evaluation["estimators"] = [
        _check_choice(where(f"evaluation.estimators[{i}]"), e, ESTIMATORS) for i, e in enumerate(estimators)
    ]
    if tuning_estimator not in evaluation["estimators"]:
        evaluation["estimators"].append(tuning_estimator)
    _check_number(where("evaluation.level"), evaluation["level"], 0.0, 1.0, low_open=True)
    _check_number(where("evaluation.n_bootstrap"), evaluation["n_bootstrap"], 0, 100_000, integer=True)
    evaluation["propensity"] = _check_choice(
        where("evaluation.propensity"), evaluation["propensity"], ("logged", "estimate")
    )


def _check_output(output: dict[str, Any], where: _Where) -> None:
    if not isinstance(output["dir"], str) or not output["dir"]:
        raise _fail(where("output.dir"), f"expected a folder path, got {output['dir']!r}")
    if not isinstance(output["save_logs"], bool):
        raise _fail(where("output.save_logs"), f"expected true or false, got {output['save_logs']!r}")
    if output["min_propensity"] is not None:
        _check_number(where("output.min_propensity"), output["min_propensity"], 0.0, 1.0)


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
        # lexically, as the user reads it: "examples/../logs.parquet" is "logs.parquet" even when
        # examples/ is a symbolic link to another folder
        config["source"]["path"] = os.path.normpath(path.parent / source_path)
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
    name: str,
    gamma: float = 0.9,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    n_states: int | None = None,
) -> Any:
    """Build a learner by its pipeline name, passing ``gamma`` and ``seed`` where it takes them.

    ``"conservative"`` wraps the offline learner named by ``options["learner"]`` (default
    ``"fitted_q_iteration"``; the other options but ``min_count`` go to it). ``"linucb"`` takes
    ``features`` as an array or a ``.npy``/``.csv`` file of one row per state; without them, one
    indicator feature per state when ``n_states`` is given (a separate linear model per state).

    Examples
    --------
    >>> make_learner("q_learning", gamma=0.8, seed=1).gamma
    0.8
    >>> type(make_learner("fitted-q-iteration")).__name__
    'FittedQIteration'
    >>> make_learner("conservative", options={"learner": "direct-method", "min_count": 5}).min_count
    5
    >>> make_learner("linucb", n_states=3).features.shape
    (3, 3)
    """
    import hfrl.learners

    name = _check_choice("learner", name, LEARNERS)
    options = dict(options or {})
    if name == "conservative":
        base = options.pop("learner", "fitted_q_iteration")
        min_count = options.pop("min_count", 1)
        if _check_choice("learner.options.learner", base, OFFLINE_LEARNERS) == "conservative":
            raise ConfigError("learner.options.learner of 'conservative': name the learner to restrict, "
                              f"one of {sorted(set(OFFLINE_LEARNERS) - {'conservative'})}")
        return hfrl.learners.ConservativeLearner(make_learner(base, gamma, seed, options), min_count)
    if name == "linucb":
        options["features"] = _linucb_features(options.get("features"), n_states)
    cls = getattr(hfrl.learners, LEARNERS[name])
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in (("gamma", gamma), ("random_state", seed)) if k in accepted}
    kwargs.update(options)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"learner.options of {name!r}: {exc}") from None


def _linucb_features(features: Any, n_states: int | None) -> Any:
    """LinUCB's per-state features: as given, read from a file, or one indicator per state."""
    if features is None:
        return None if n_states is None else np.eye(n_states)
    if isinstance(features, str):
        path = Path(features)
        try:
            if path.suffix.lower() == ".npy":
                return np.load(path, allow_pickle=False)
            return np.loadtxt(path, delimiter=",", ndmin=2)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"learner.options.features: cannot read {features} ({exc})") from None
    return np.asarray(features, dtype=np.float64)


class CountedSteps:
    """An env that reports every step it takes to ``advance(n)`` (a progress bar's), else unchanged.

    The learners step ``env`` one decision at a time (``step``) or ``env.unwrapped`` in batches
    (``step_batch``); this wrapper is its own ``unwrapped``, so both pass through it.
    """

    def __init__(self, env: Any, advance: Callable[[int], None]) -> None:
        self._env = env
        self._base = getattr(env, "unwrapped", env)
        self._advance = advance

    @property
    def unwrapped(self) -> CountedSteps:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        return self._env.reset(*args, **kwargs)

    def step(self, action: Any) -> Any:
        self._advance(1)
        return self._env.step(action)

    def step_batch(self, states: Any, actions: Any, rng: Any) -> Any:
        self._advance(len(states))
        return self._base.step_batch(states, actions, rng)


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
    """The stages in order. Each takes the config section it needs and what earlier stages made, so
    the data flow (which split feeds which step) reads here and nowhere else."""
    started = time.perf_counter()
    config, out = _resolve_run(config, out_dir)
    say = progress or _silent
    seeds = _StageSeeds.from_seed(config["seed"])
    gamma, backend = float(config["learner"]["gamma"]), config["source"]["backend"]
    propensity = config["evaluation"]["propensity"]

    source = _load_source(config["source"], gamma, seeds, config["seed"], say)
    splits = _split_by_role(source, config["split"], seeds.split, backend)
    hf = _fit_frequencies(
        splits.train, config["frequencies"], source.n_states, source.n_actions, backend, say
    )
    learner = _train_learner(config["learner"], source, splits.train, seeds.learner, say)
    objective = _objective(config["tuning"], config["learner"]["name"], splits.validation, config["split"])
    floor = _serving_floor(config["output"], source.n_actions)
    pi, hf_policy = _served_parents(learner.policy_, hf, floor)
    tuned = _choose_alpha(pi, hf_policy, splits, config["tuning"], objective, gamma, propensity, backend, say)
    policies = _policies_to_report(source, pi, hf_policy, tuned.policy, gamma, say)
    evaluation = _evaluate_on_test(
        policies,
        splits.test,
        config["evaluation"],
        primary=config["tuning"]["estimator"],
        objective=objective,
        env=source.env,
        gamma=gamma,
        backend=backend,
        seed=seeds.evaluation,
        say=say,
    )

    say(f"writing the run folder {out}")
    counts = _events_per_state(source.logs, source.n_states)
    metrics = _metrics(config, source, splits, type(learner).__name__, tuned, evaluation, counts, floor)
    _write_run_folder(
        out,
        config,
        policies,
        alpha=float(tuned.alpha),
        learning_curve=getattr(learner, "learning_curve_", None),
        alpha_curve=_curve_with_truth(tuned, source.env, splits.validation, gamma),
        counts=counts,
        splits=splits if config["output"]["save_logs"] else None,
    )
    # Warnings (support violations, dropped rows, ...) are part of the result, not lost on stderr.
    metrics["warnings"] = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    metrics["run"]["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    _write_run_record(out, metrics, config)
    return PipelineResult(
        out_dir=out,
        alpha=float(tuned.alpha),
        summary=evaluation.summary(),
        estimates=evaluation.estimates(),
        metrics=metrics,
        config=config,
        policies=policies,
    )


# ---------------------------------------------------------------------------- stages: setup and data
def _silent(message: str) -> None:
    """The progress callback when the caller gives none."""


def _resolve_run(
    config: Mapping[str, Any], out_dir: str | PathLike[str] | None
) -> tuple[dict[str, Any], Path]:
    """Resolve the configuration and the run folder; the resolved config records the folder the run
    really went to (``out_dir`` overrides ``[output] dir``), since it is saved as ``config.json``."""
    resolved = resolve_config(config)
    out = Path(out_dir if out_dir is not None else resolved["output"]["dir"])
    resolved["output"]["dir"] = str(out)
    return resolved, out


@dataclass(frozen=True)
class _StageSeeds:
    """One seed per random stage, all derived from the run's seed: a stage's randomness does not
    depend on how much another stage drew, so changing the learner leaves the logs and splits alone."""

    simulation: int
    split: int
    learner: int
    evaluation: int

    @classmethod
    def from_seed(cls, seed: int) -> _StageSeeds:
        return cls(*(int(word) for word in np.random.SeedSequence(int(seed)).generate_state(4)))


@dataclass(frozen=True)
class _Source:
    """The logged decisions a run learns from and their id ranges; from a simulator also the env (the
    shop) and the logging policy that wrote the logs (they give the truth and the logging policy's
    table), and the simulator an online learner learns in (the shop itself, or a shift of it)."""

    logs: pd.DataFrame
    n_states: int
    n_actions: int
    description: str
    env: Any = None
    logging_policy: TabularPolicy | None = None
    simulator: Any = None


def _load_source(source: Mapping[str, Any], gamma: float, seeds: _StageSeeds, run_seed: int,
                 say: ProgressCallback) -> _Source:
    """Simulate or read the logs as ``[source]`` says (``seeds.simulation`` drives the simulated logging)."""
    if source["type"] == "simulator":
        return _simulate_source(source, gamma, seeds.simulation, run_seed, say)
    return _read_source(source, say)


def _simulate_source(source: Mapping[str, Any], gamma: float, seed: int, run_seed: int,
                     say: ProgressCallback) -> _Source:
    """Simulate ``n_rows`` decisions of the configured logging policy in the configured env (the shop),
    and build the simulator the learner learns in: the shop, or its shift by ``simulator_shift``."""
    env_name, logging_name = source["env"], source["logging_policy"]
    say(f"simulating {source['n_rows']:,} logged decisions ({env_name}, {logging_name} logging)")
    env = make_env(env_name, source["env_options"])
    logging_gamma = gamma if source["logging_gamma"] is None else float(source["logging_gamma"])
    logging, logs = simulate_logs(
        env, logging_name, source["n_rows"], epsilon=source["epsilon"], gamma=logging_gamma, seed=seed
    )
    description = f"simulator {env_name} with {logging_name} logging"
    simulator, change = env, source["simulator_shift"]
    if change is not None:
        from hfrl.envs import shift

        shift_seed = run_seed if change["seed"] is None else change["seed"]
        simulator = shift(env, change["strength"], change["kind"], seed=shift_seed)
        description += (f"; the learner's simulator is the shop shifted by {change['kind']} "
                        f"(strength {change['strength']:g}, seed {shift_seed})")
    return _Source(logs, env.n_states, env.n_actions, description, env=env, logging_policy=logging,
                   simulator=simulator)


def _read_source(source: Mapping[str, Any], say: ProgressCallback) -> _Source:
    """Read a log file into memory (the pipeline splits it there); id ranges default to the largest id + 1
    (of ``state`` and ``next_state`` for the states)."""
    say(f"loading {source['path']}")
    opened = Logs.open(source["path"], "memory", n_states=source["n_states"], n_actions=source["n_actions"],
                       columns=source["columns"] or None)
    logs = opened.frame()
    return _Source(logs, opened.n_states, opened.n_actions, f"logs {source['path']}")


@dataclass(frozen=True)
class _Splits:
    """The logs in three disjoint parts, one per role: HF and pi learn from ``train``, alpha is chosen
    on ``validation``, values are reported on ``test``, so no reported value was fit or tuned on its rows."""

    train: Logs
    validation: Logs
    test: Logs


def _split_by_role(source: _Source, split: Mapping[str, Any], seed: int, backend: str | None) -> _Splits:
    """Split the logs as ``[split]`` says (by time keeps the test split the most recent), each part
    validated once: every later stage shares its one pass of cell statistics."""
    from hfrl.tune import split_logs

    parts = split_logs(source.logs, fractions=tuple(split["fractions"]), by=split["by"], random_state=seed)
    return _Splits(*(Logs.open(part, backend, n_states=source.n_states, n_actions=source.n_actions)
                     for part in parts))


# ---------------------------------------------------------------------------- stages: HF, pi, alpha
def _fit_frequencies(
    train: Logs,
    frequencies: Mapping[str, Any],
    n_states: int,
    n_actions: int,
    backend: str | None,
    say: ProgressCallback,
) -> Any:
    """Fit the historical frequency on the training split as ``[frequencies]`` says; it aggregates
    with the source's backend unless its own options name one."""
    from hfrl.frequencies import HistoricalFrequency

    say(f"fitting historical frequencies on {train.n_rows:,} training rows")
    options = dict(frequencies["options"])
    options.pop("backend", None)  # the split is already on the source's backend
    hf = HistoricalFrequency(
        kind=frequencies["kind"], prior_strength=frequencies["prior_strength"], **options
    )
    hf.fit(train, n_states=n_states, n_actions=n_actions)
    return hf


def _train_learner(
    learner: Mapping[str, Any], source: _Source, train: Logs, seed: int, say: ProgressCallback
) -> Any:
    """Train the learner of ``[learner]``: an online one interacts with the simulator for ``n_steps``,
    an offline one fits the training split only. Returns the fitted learner (``policy_`` is pi)."""
    model = make_learner(learner["name"], float(learner["gamma"]), seed, learner["options"],
                         n_states=source.n_states)
    if learner["name"] in ONLINE_LEARNERS:
        where = "" if source.simulator is source.env else " in the shifted simulator"
        description = f"training {type(model).__name__} online{where} for {learner['n_steps']:,} steps"
        steps = getattr(say, "steps", None)  # a progress display that can count steps
        if steps is None:
            say(description)
        env = source.simulator
        if steps is not None:
            env = CountedSteps(env, steps(description, learner["n_steps"]))
        model.fit(env, n_steps=learner["n_steps"])
    else:
        say(f"training {type(model).__name__} offline on {train.n_rows:,} rows")
        model.fit(train, n_states=source.n_states, n_actions=source.n_actions)
    return model


def _objective(tuning: Mapping[str, Any], learner_name: str, validation: Logs, split: Mapping[str, Any]
               ) -> str:
    """What alpha maximises: ``[tuning] objective``, or for ``"auto"`` the discounted return when the
    learner optimises one and the logs are sessions (else the one-step reward). Warns when the
    return is tuned on a split that cuts sessions."""
    objective = tuning["objective"]
    if objective == "auto":
        sessions = validation.has(schema.SESSION_ID) and validation.has(schema.NEXT_STATE)
        objective = "return" if learner_name in RETURN_LEARNERS and sessions else "reward"
    if objective == "return" and split["by"] != "session" and validation.has(schema.SESSION_ID):
        warnings.warn(
            f"the return is tuned on a split by {split['by']!r}, which cuts sessions: those cut start "
            "mid-way in the later split and the estimated start distribution leans toward later states; "
            "use [split] by = \"session\"", UserWarning, stacklevel=3)
    return objective


def _serving_floor(output: Mapping[str, Any], n_actions: int) -> float:
    """The exploration floor of the policies written for serving (``[output] min_propensity``)."""
    from hfrl.policies import default_min_propensity

    floor = output["min_propensity"]
    floor = default_min_propensity(n_actions) if floor is None else float(floor)
    if floor > 1.0 / n_actions:
        raise ConfigError(f"output.min_propensity: {floor!r} is above 1 / n_actions = {1.0 / n_actions:.6g}")
    return floor


def _served_parents(pi: TabularPolicy, hf: Any, floor: float) -> tuple[TabularPolicy, TabularPolicy]:
    """pi and HF with the exploration floor: every blend of them keeps it, so each candidate pi' is
    evaluated as it would be served."""
    return pi.with_exploration(floor), hf.to_policy().with_exploration(floor)


def _choose_alpha(
    pi: TabularPolicy,
    hf: TabularPolicy,
    splits: _Splits,
    tuning: Mapping[str, Any],
    objective: str,
    gamma: float,
    propensity: str,
    backend: str | None,
    say: ProgressCallback,
) -> Any:
    """Choose the alpha of ``pi' = blend(pi, hf, alpha)`` on the validation split as ``[tuning]``
    says, for ``objective``; with ``safety`` the chosen pi' is tested against the logging policy on
    the test split (rows alpha was not chosen on). Returns :func:`hfrl.tune.tune_alpha`'s result."""
    from hfrl.tune import tune_alpha

    options: dict[str, Any] = {"objective": objective}
    if objective == "return":
        options.update(estimator="fqe", gamma=gamma)
        how = f"FQE (discounted return, gamma {gamma:g})"
    else:
        options.update(estimator=tuning["estimator"], propensity=propensity)
        how = tuning["estimator"].upper()
    say(f"tuning alpha by {how} on {splits.validation.n_rows:,} validation rows")
    return tune_alpha(
        pi,
        hf,
        splits.validation,
        alphas=tuning["alphas"],
        criterion=tuning["criterion"],
        level=tuning["level"],
        method=tuning["method"],
        backend=backend,
        per_state=tuning["per_state"],
        safety_logs=splits.test if tuning["safety"] else None,
        **options,
    )


def _policies_to_report(
    source: _Source, pi: TabularPolicy, hf: TabularPolicy, pi_prime: TabularPolicy, gamma: float,
    say: ProgressCallback
) -> dict[str, TabularPolicy]:
    """The policies the run reports, keyed as :data:`POLICY_LABELS`: the logging policy (known only
    from a simulator), HF alone, pi, pi' and, from a simulator, the optimum of the shop."""
    policies = {} if source.logging_policy is None else {"logging": source.logging_policy}
    policies["hf"] = hf
    policies["pi"] = pi
    policies["pi_prime"] = pi_prime
    if source.env is not None:
        say("solving the simulator exactly for the optimal policy")
        policies["optimal"] = source.env.optimal_policy(gamma)
    return policies


def _curve_with_truth(tuned: Any, env: Any, validation: Logs, gamma: float) -> pd.DataFrame:
    """The alpha curve, with the exact value of each candidate pi' (``true_value``) from a simulator:
    the return ``env.policy_value`` for the return objective, else the expected reward per decision
    at the validation split's states (what the curve estimates)."""
    curve = tuned.curve.copy()
    if env is None:
        return curve
    states = validation.frame([schema.STATE])[schema.STATE].to_numpy(dtype=np.int64)
    pick = 1 if tuned.objective == "return" else 0
    curve["true_value"] = [true_values(env, tuned.policy_at(i), states, gamma)[pick]
                           for i in range(len(curve))]
    return curve


# ---------------------------------------------------------------------------- stages: evaluation
@dataclass(frozen=True)
class _Evaluation:
    """The values on the test split: per policy label the row of the objective's estimator
    (``summary_rows``), every one-step estimator's rows (``estimate_rows``), and pi' compared with
    each alternative (``verdicts``, keyed by the alternative's label; ``verdict`` is the one
    against the logging policy, the deployment verdict)."""

    summary_rows: dict[str, dict[str, Any]]
    estimate_rows: list[dict[str, Any]]
    verdicts: dict[str, Any]
    objective: str = "reward"

    @property
    def verdict(self) -> Any:
        return self.verdicts[POLICY_LABELS["logging"]]

    def summary(self) -> pd.DataFrame:
        """One row per policy label, the table :class:`PipelineResult` reports."""
        summary = pd.DataFrame.from_dict(self.summary_rows, orient="index")
        summary.index.name = "policy"
        return summary

    def estimates(self) -> pd.DataFrame:
        """One row per (policy, estimator)."""
        return pd.DataFrame(self.estimate_rows)


def _evaluate_on_test(
    policies: Mapping[str, TabularPolicy],
    test: Logs,
    evaluation: Mapping[str, Any],
    *,
    primary: str,
    objective: str,
    env: Any,
    gamma: float,
    backend: str | None,
    seed: int,
    say: ProgressCallback,
) -> _Evaluation:
    """Estimate every policy's value on the test split with every one-step estimator of
    ``[evaluation]``; the summary uses the objective's estimator: ``primary`` (the tuning estimator)
    for the reward, fitted Q evaluation for the return. From a simulator each row also carries the
    exact truth; from logs the logging policy's row is its on-policy value (there is no table of it)."""
    from hfrl.ope import evaluate

    say(
        f"evaluating {len(policies) + (env is None)} policies on {test.n_rows:,} test rows"
        + (f" with {evaluation['n_bootstrap']} bootstrap resamples" if evaluation["n_bootstrap"] else "")
    )
    model = None
    if objective == "return":
        from hfrl.ope.returns import ReturnModel

        model = ReturnModel.from_logs(test, *policies["pi"].table_.shape)
    verdicts = _verdicts(policies, test, evaluation, primary, objective, gamma, backend, model)
    summary_rows: dict[str, dict[str, Any]] = {}
    estimate_rows: list[dict[str, Any]] = []
    if env is None:
        label = POLICY_LABELS["logging"]
        summary_rows[label] = _on_policy_row(verdicts[label])  # the objective's on-policy value
        per_decision = verdicts[label] if objective == "reward" else _deployment_verdict(
            policies["pi_prime"], test, evaluation, primary, backend)  # the mean reward, for the estimators
        estimate_rows.append({"policy": label, "estimator": "on-policy mean", **_on_policy_row(per_decision)})
    options: dict[str, Any] = {
        "estimators": tuple(evaluation["estimators"]),
        "level": evaluation["level"],
        "n_bootstrap": evaluation["n_bootstrap"],
        "random_state": seed,
        "backend": backend,
        "propensity": evaluation["propensity"],
    }
    test_states = test.frame([schema.STATE])[schema.STATE].to_numpy(dtype=np.int64)
    for key, policy in policies.items():
        label = POLICY_LABELS[key]
        frame = evaluate(test, policy, **options)
        truth, ret = true_values(env, policy, test_states, gamma) if env is not None else (None, None)
        estimate_rows.extend(_estimator_rows(label, frame, truth))
        level = evaluation["level"]
        chosen = frame.loc[primary] if model is None else _return_row(model, policy, gamma, level)
        summary_rows[label] = _summary_row(chosen, truth, ret)
    return _Evaluation(summary_rows, estimate_rows, verdicts, objective)


def _return_row(model: Any, policy: TabularPolicy, gamma: float, level: float) -> dict[str, float]:
    """A policy's fitted-Q-evaluation return on the test split, as a summary row's numbers."""
    from hfrl.ope.inference import normal_quantile

    result = model.evaluate(policy.table_, gamma)
    half = normal_quantile(level) * result.std_error
    return {"estimate": result.estimate, "std_error": result.std_error,
            "ci_low": result.estimate - half, "ci_high": result.estimate + half}


def _verdicts(
    policies: Mapping[str, TabularPolicy],
    test: Logs,
    evaluation: Mapping[str, Any],
    primary: str,
    objective: str,
    gamma: float,
    backend: str | None,
    model: Any,
) -> dict[str, Any]:
    """pi' against each alternative -- the logging policy, pi alone, HF alone -- paired on the test
    rows, on the objective (the return by fitted Q evaluation, or the one-step value)."""
    from hfrl.ope.returns import compare_return

    alternatives = {"logging": "logging", "pi": policies["pi"], "hf": policies["hf"]}
    verdicts = {}
    for key, baseline in alternatives.items():
        if objective == "return":
            verdicts[POLICY_LABELS[key]] = compare_return(policies["pi_prime"], test, gamma, baseline,
                                                          level=evaluation["level"], model=model)
        else:
            verdicts[POLICY_LABELS[key]] = _deployment_verdict(policies["pi_prime"], test, evaluation,
                                                               primary, backend, baseline)
    return verdicts


def _deployment_verdict(
    pi_prime: TabularPolicy,
    test: Logs,
    evaluation: Mapping[str, Any],
    primary: str,
    backend: str | None,
    baseline: Any = "logging",
) -> Any:
    """Compare pi' with ``baseline``, paired on the test rows, on the one-step value. The logging
    policy's value is the on-policy mean reward, which needs no table of it; ``compare`` takes
    SNIPS, DR or IPS, so another tuning estimator is replaced by SNIPS here."""
    from hfrl.ope import compare

    return compare(
        pi_prime,
        test,
        baseline=baseline,
        level=evaluation["level"],
        estimator=primary if primary in ("snips", "dr", "ips") else "snips",
        backend=backend,
        propensity=evaluation["propensity"],
    )


def _on_policy_row(verdict: Any) -> dict[str, Any]:
    """The logging policy's summary row from a verdict's baseline (its on-policy value and interval)."""
    low, high = (float(v) for v in verdict.baseline_ci)
    return {
        "estimate": float(verdict.baseline_value),
        "std_error": None,
        "ci_low": low,
        "ci_high": high,
        "true_value": None,
        "true_return": None,
    }


def _estimator_rows(label: str, frame: pd.DataFrame, truth: float | None) -> list[dict[str, Any]]:
    """One row per estimator of ``evaluate``'s frame, with the diagnostics and bootstrap interval."""
    rows = []
    for estimator, row in frame.iterrows():
        rows.append(
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
            rows[-1].update(boot_ci_low=row["boot_ci_low"], boot_ci_high=row["boot_ci_high"])
    return rows


def _summary_row(chosen: Mapping[str, Any], truth: float | None, ret: float | None) -> dict[str, Any]:
    """A policy's summary row: the chosen estimator's value and interval, and the truth if known."""
    return {
        "estimate": float(chosen["estimate"]),
        "std_error": float(chosen["std_error"]),
        "ci_low": float(chosen["ci_low"]),
        "ci_high": float(chosen["ci_high"]),
        "true_value": truth,
        "true_return": ret,
    }


# ---------------------------------------------------------------------------- stages: the run folder
VERDICT_FIELDS = (
    "verdict",
    "candidate_value",
    "baseline_value",
    "difference",
    "std_error",
    "ci_low",
    "ci_high",
    "reason",
    "estimator",
    "ess",
    "n_rows",
)
RUN_FOLDER_FILES = (
    "metrics.json",
    "config.json",
    "report.html",
    "curves/*.csv",
    "tables/*.npy",
    "artifacts/*.hfrl",
    "logs/*.parquet",
)


def _events_per_state(logs: pd.DataFrame, n_states: int) -> np.ndarray:
    """How many logged rows each state has: the history HF and the learner had to go on."""
    return np.bincount(logs[schema.STATE].to_numpy(dtype=np.int64), minlength=n_states).astype(np.float64)


def _metrics(
    config: Mapping[str, Any],
    source: _Source,
    splits: _Splits,
    learner_name: str,
    tuned: Any,
    evaluation: _Evaluation,
    counts: np.ndarray,
    floor: float,
) -> dict[str, Any]:
    """The content of ``metrics.json`` (its layout is documented in :mod:`hfrl.report`). The caller
    adds ``warnings`` and ``run.elapsed_seconds`` last, once the run folder is written."""
    truth_key = "true_return" if evaluation.objective == "return" else "true_value"
    return {
        "format": "hfrl.run",
        "format_version": 1,
        "run": _run_section(config, source, learner_name),
        "alpha": float(tuned.alpha),
        "true_value": {label: row[truth_key] for label, row in evaluation.summary_rows.items()}
        if source.env is not None else None,
        "tuning": _tuning_section(config["tuning"], tuned, floor),
        "evaluation": _evaluation_section(config["evaluation"], evaluation.objective,
                                          float(tuned.gamma or 0.0), truth=source.env is not None),
        "policies": {label: dict(row) for label, row in evaluation.summary_rows.items()},
        "verdict": _verdict_fields(evaluation.verdict),
        "verdicts": {label: _verdict_fields(v) for label, v in evaluation.verdicts.items()},
        "outcome": _outcome(evaluation, truth_key if source.env is not None else None),
        "estimators": evaluation.estimate_rows,
        "data": _data_section(source, splits, counts),
    }


def _outcome(evaluation: _Evaluation, truth_key: str | None) -> str:
    """One sentence: does pi' beat both of its parents, pi alone and HF alone, paired on the test rows
    (and, from a simulator, in exact value)? Said plainly when it does not."""
    parents = {key: POLICY_LABELS[key] for key in ("pi", "hf")}
    verdicts = {key: evaluation.verdicts[label].verdict for key, label in parents.items()}
    beats = all(v == "ship" for v in verdicts.values())
    text = ("pi' beats both of its parents on the test rows" if beats else
            "pi' does not beat both of its parents on the test rows")
    text += f" (against pi alone: {verdicts['pi']}; against HF alone: {verdicts['hf']})"
    if truth_key is not None:
        rows = evaluation.summary_rows
        exact = {key: float(rows[POLICY_LABELS[key]][truth_key]) for key in ("pi_prime", "pi", "hf")}
        better = exact["pi_prime"] > max(exact["pi"], exact["hf"]) + 1e-9 * abs(exact["pi_prime"])
        text += (f"; in exact value pi' {'beats' if better else 'does not beat'} both: "
                 f"{exact['pi_prime']:.4g} against {exact['pi']:.4g} for pi and {exact['hf']:.4g} for HF")
    return text + "."


def _verdict_fields(verdict: Any) -> dict[str, Any]:
    return {key: getattr(verdict, key) for key in VERDICT_FIELDS}


def _run_section(config: Mapping[str, Any], source: _Source, learner_name: str) -> dict[str, Any]:
    """What was run, where and with what: enough to tell two run folders apart."""
    return {
        "name": config["name"],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hfrl_version": _version(),
        "python": platform.python_version(),
        "seed": int(config["seed"]),
        "source": source.description,
        "learner": learner_name,
        "gamma": float(config["learner"]["gamma"]),
        "elapsed_seconds": None,
    }


def _tuning_section(tuning: Mapping[str, Any], tuned: Any, floor: float) -> dict[str, Any]:
    """How alpha was chosen, why (one sentence), pi''s value on the validation split and, with
    ``safety``, whether it passed the one-sided test on the test split."""
    best = tuned.evaluation.iloc[0]
    return {
        "objective": tuned.objective,
        "gamma": tuned.gamma,
        "estimator": tuned.estimator,
        "criterion": tuning["criterion"],
        "method": tuning["method"],
        "level": tuning["level"],
        "per_state": bool(tuning["per_state"]),
        "kappa": tuned.kappa,
        "split": "validation",
        "validation_estimate": float(best["estimate"]),
        "validation_ci": [float(best["ci_low"]), float(best["ci_high"])],
        "reason": tuned.reason,
        "passed_safety": tuned.passed_safety,
        "safety_reason": tuned.safety_reason,
        "min_propensity": floor,
    }


def _evaluation_section(evaluation: Mapping[str, Any], objective: str, gamma: float, *, truth: bool
                        ) -> dict[str, Any]:
    """How the test-split values were estimated and, from a simulator, what the truth columns mean."""
    summary = ("estimate: discounted return of a session by fitted Q evaluation (gamma "
               f"{gamma:g}); compare with true_return" if objective == "return" else
               "estimate: expected reward per decision by the tuning estimator; compare with true_value")
    return {
        "split": "test",
        "objective": objective,
        "summary": summary,
        "estimators": evaluation["estimators"],
        "level": evaluation["level"],
        "n_bootstrap": evaluation["n_bootstrap"],
        "propensity": evaluation["propensity"],
        "truth": "true_value: exact expected reward per decision at the test split's states; "
        "true_return: env.policy_value(policy, gamma)"
        if truth
        else None,
    }


def _data_section(source: _Source, splits: _Splits, counts: np.ndarray) -> dict[str, Any]:
    """The size and coverage of the logs: how much history each state had for HF and the learner."""
    logs = source.logs
    return {
        "rows": len(logs),
        "n_states": source.n_states,
        "n_actions": source.n_actions,
        "mean_reward": float(logs[schema.REWARD].mean()),
        "states_seen": int((counts > 0).sum()),
        "actions_seen": int(logs[schema.ACTION].nunique()),
        "splits": {
            "train": splits.train.n_rows,
            "validation": splits.validation.n_rows,
            "test": splits.test.n_rows,
        },
        "events_per_state": {
            "min": float(counts.min()),
            "median": float(np.median(counts)),
            "mean": float(counts.mean()),
            "max": float(counts.max()),
        },
    }


def _write_run_folder(
    out: Path,
    config: Mapping[str, Any],
    policies: Mapping[str, TabularPolicy],
    *,
    alpha: float,
    learning_curve: pd.DataFrame | None,
    alpha_curve: pd.DataFrame,
    counts: np.ndarray,
    splits: _Splits | None,
) -> None:
    """Write the artifacts, tables, curves and (when given) the splits of the run folder, after
    removing what a previous run left there. ``metrics.json`` and ``config.json`` come last."""
    _clear_run_folder(out)
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    (out / "curves").mkdir(exist_ok=True)
    _save_policies(out, policies, config["name"], alpha, config["tuning"]["method"])
    np.save(out / "tables" / "state_counts.npy", counts)
    if isinstance(learning_curve, pd.DataFrame) and len(learning_curve):
        reward_column = "reward" if "reward" in learning_curve.columns else "mean_reward"
        pd.DataFrame({"step": learning_curve["step"], "reward": learning_curve[reward_column]}).to_csv(
            out / "curves" / "learning_curve.csv", index=False
        )
    alpha_curve.to_csv(out / "curves" / "alpha_curve.csv", index=False)
    if splits is not None:
        (out / "logs").mkdir(exist_ok=True)
        for name in ("train", "validation", "test"):
            getattr(splits, name).source.to_parquet(out / "logs" / f"{name}.parquet", index=False)


def _clear_run_folder(out: Path) -> None:
    """Remove the files a previous run left in ``out`` (only those of the run-folder layout), so
    that a part this run does not produce (a learning curve, the truth) cannot be stale."""
    for pattern in RUN_FOLDER_FILES:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()


def _save_policies(
    out: Path, policies: Mapping[str, TabularPolicy], run_name: str, alpha: float, method: str
) -> None:
    """Save each policy as an artifact labelled with its role (pi' also with its alpha and blend),
    and the tables of pi, HF and pi' as ``.npy`` for the report."""
    for key in ("pi", "hf", "pi_prime", "logging", "optimal"):
        if key not in policies:
            continue
        policy = policies[key]
        meta = {"name": key, "label": POLICY_LABELS[key], "run": run_name}
        if key == "pi_prime":
            meta.update(alpha=alpha, method=method)
        if key in ("logging", "optimal"):
            meta["reference"] = "saved as it is, without the serving exploration floor"
        policy.metadata.update(meta)
        policy.save(out / "artifacts" / f"{key}.hfrl")
        if key in ("pi", "hf", "pi_prime"):
            np.save(out / "tables" / f"{key}.npy", policy.table_)


def _write_run_record(out: Path, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` and ``config.json`` (plain JSON: numpy scalars made plain, NaN as null)."""
    (out / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2))
    (out / "config.json").write_text(json.dumps(json_ready(config), indent=2))


def _version() -> str:
    from hfrl import __version__

    return __version__


# ---------------------------------------------------------------------------- the demo
def demo_config(seed: int = 0, out_dir: str = "demo-out") -> dict[str, Any]:
    """The configuration of ``hfrl demo``: a policy learned in a wrong simulator, corrected by what
    the real shop's users did.

    The shop is Recommendation-v0. Its current recommender shows the item with the best immediate
    expected revenue 70% of the time and a random item otherwise (``epsilon_greedy`` around the
    myopic best, ``logging_gamma = 0``, ``epsilon = 0.3``); 200,000 of its decisions are the logs,
    split by session. Q-learning learns in a simulator of the shop whose tastes are wrong:
    ``shift(shop, 0.5, "preferences", seed)``, half a logit of noise on every segment-item
    affinity (the middle of ``bench/bench_sim_to_real.py``'s grid). HF is fit on the shop's
    training split, alpha is chosen on the discounted return (gamma 0.9) of the validation split,
    pi' must pass the one-sided safety test on the test split, and the exact truth of the shop
    tells whether that was right.

    Examples
    --------
    >>> config = demo_config(3)
    >>> config["learner"]["name"], config["seed"], config["tuning"]["objective"], config["split"]["by"]
    ('q_learning', 3, 'auto', 'session')
    >>> config["source"]["simulator_shift"]
    {'kind': 'preferences', 'strength': 0.5, 'seed': None}
    """
    return resolve_config(
        {
            "name": "hfrl demo",
            "seed": seed,
            "source": {
                "type": "simulator",
                "env": "recommendation",
                "logging_policy": "epsilon_greedy",
                "epsilon": 0.3,
                "logging_gamma": 0.0,
                "n_rows": 200_000,
                "simulator_shift": {"kind": "preferences", "strength": 0.5},
            },
            "split": {"by": "session", "fractions": [0.5, 0.25, 0.25]},
            "frequencies": {"kind": "share", "prior_strength": 1.0},
            "learner": {
                "name": "q_learning",
                "n_steps": 400_000,
                "gamma": 0.9,
                "options": {"n_envs": 256, "learning_rate": 0.1, "epsilon": 0.3, "epsilon_final": 0.01},
            },
            "tuning": {"objective": "auto", "estimator": "snips", "criterion": "estimate", "alphas": "auto",
                       "safety": True},
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
