"""Simulate logged history: what a logging policy would have recorded in an environment."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from hfrl.data import schema
from hfrl.envs.tabular import TabularMDPEnv
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["collect_logs", "logging_policy"]

_LOG_START = pd.Timestamp("2026-01-01", tz="UTC")


def _unwrap(env: Any) -> TabularMDPEnv:
    inner = env.unwrapped if isinstance(env, gym.Env) else env
    if not isinstance(inner, TabularMDPEnv):
        raise TypeError(f"env must be an hfrl tabular environment, got {type(inner).__name__}")
    return inner


def _time_limit(env: Any) -> int | None:
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None) if spec is not None else None
    return int(limit) if limit else None


def logging_policy(
    env: Any,
    kind: str = "uniform",
    epsilon: float = 0.1,
    base: TabularPolicy | None = None,
    random_state: int | np.random.Generator | None = None,
    *,
    gamma: float = 0.95,
) -> TabularPolicy:
    """A logging (behaviour) policy of a usual design, for ``collect_logs``.

    Parameters
    ----------
    env : TabularMDPEnv or a Gymnasium wrapper of one
    kind : {"uniform", "popularity", "epsilon_greedy", "random"}
        ``"uniform"``: every action equally likely. ``"popularity"``: in each state, proportional
        to ``env.popularity_matrix()`` (the price-free purchase/click probability; for a fitted
        env the logged action frequencies). ``"epsilon_greedy"``: ``(1 - epsilon) * base +
        epsilon * uniform`` with ``base`` defaulting to ``env.optimal_policy(gamma)``.
        ``"random"``: each row a Dirichlet(1) draw from ``random_state``.
    epsilon : float in [0, 1], default 0.1
    base : TabularPolicy, optional
    random_state : int or Generator, optional
        Only used by ``"random"``.
    gamma : float, default 0.95
        Discount of the optimal policy used when ``base`` is None.

    Returns
    -------
    TabularPolicy
        Every row a distribution; ``"uniform"`` and ``"epsilon_greedy"`` (epsilon > 0) give every
        action positive probability, as off-policy evaluation needs.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, logging_policy
    >>> env = RecommendationEnv()
    >>> bool(logging_policy(env, "epsilon_greedy", epsilon=0.2).table_.min() >= 0.2 / env.n_actions)
    True
    """
    inner = _unwrap(env)
    n_s, n_a = inner.n_states, inner.n_actions
    metadata = {"source": "logging_policy", "kind": kind}
    if kind == "uniform":
        return TabularPolicy(np.full((n_s, n_a), 1.0 / n_a), metadata)
    if kind == "popularity":
        weights = np.asarray(inner.popularity_matrix(), dtype=np.float64)
        sums = weights.sum(axis=1, keepdims=True)
        table = np.where(sums > 0, weights / np.where(sums > 0, sums, 1.0), 1.0 / n_a)
        return TabularPolicy(table, metadata)
    if kind == "epsilon_greedy":
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        around = inner.optimal_policy(gamma) if base is None else base
        if not isinstance(around, TabularPolicy) or around.table_.shape != (n_s, n_a):
            raise ValueError(f"base must be a TabularPolicy of shape ({n_s}, {n_a})")
        table = (1.0 - epsilon) * around.table_ + epsilon / n_a
        return TabularPolicy(table, {**metadata, "epsilon": epsilon})
    if kind == "random":
        return TabularPolicy(resolve_rng(random_state).dirichlet(np.ones(n_a), size=n_s), metadata)
    raise ValueError(f"kind must be 'uniform', 'popularity', 'epsilon_greedy' or 'random', got {kind!r}")


def collect_logs(
    env: Any,
    policy: TabularPolicy,
    n: int,
    seed: int | np.random.Generator | None = None,
    *,
    n_parallel: int | None = None,
    max_steps: int | None = None,
) -> pd.DataFrame:
    """Simulate ``n`` logged decisions of ``policy`` in ``env``, many sessions at once.

    Sessions run side by side (``n_parallel`` concurrent users, vectorised through the batch
    API); a user whose session ends (churn, or ``max_steps`` steps) is replaced by a new one.
    The log stops after exactly ``n`` rows, so up to ``n_parallel`` sessions are cut short at
    the end (their last row has ``done=False``, like a time-limit truncation).

    Parameters
    ----------
    env : TabularMDPEnv or a Gymnasium wrapper of one (single-item mode)
    policy : TabularPolicy
        The logging policy, shape ``(env.n_states, env.n_actions)``.
    n : int
        Number of rows (decisions) to log.
    seed : int or Generator, optional
    n_parallel : int, optional
        Concurrent sessions; default ``clip(n // 64, 1, 4096)`` so that most sessions are whole.
    max_steps : int, optional
        Cut sessions after this many steps; default the env's ``TimeLimit``
        (``env.spec.max_episode_steps``) if it has one, else no cut.

    Returns
    -------
    DataFrame
        Columns ``state, action, reward, propensity, timestamp, session_id, next_state, done``
        (the hfrl log schema). ``propensity`` is ``policy``'s probability of the logged action;
        ``done`` is True when the episode terminated after the row (``next_state`` is then
        meaningless and set to the row's state); ``timestamp`` increases one second per row.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, collect_logs, logging_policy
    >>> env = RecommendationEnv()
    >>> logs = collect_logs(env, logging_policy(env, "uniform"), n=1000, seed=0)
    >>> list(logs.columns)
    ['state', 'action', 'reward', 'propensity', 'timestamp', 'session_id', 'next_state', 'done']
    >>> bool((logs["propensity"] == 0.1).all())
    True
    """
    inner = _unwrap(env)
    if getattr(inner, "slate_size", None) is not None:
        raise ValueError("collect_logs logs single-item decisions; build the env with slate_size=None")
    if not isinstance(policy, TabularPolicy):
        raise TypeError(f"policy must be a TabularPolicy, got {type(policy).__name__}")
    if policy.table_.shape != (inner.n_states, inner.n_actions):
        raise ValueError(
            f"policy has shape {policy.table_.shape}, the env has ({inner.n_states}, {inner.n_actions})"
        )
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_steps is None:
        max_steps = _time_limit(env)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    width = int(np.clip(n // 64, 1, 4096)) if n_parallel is None else int(n_parallel)
    if width < 1:
        raise ValueError(f"n_parallel must be >= 1, got {n_parallel}")
    width = min(width, n)
    rng = resolve_rng(seed)

    n_rounds = -(-n // width)
    states_out = np.empty((n_rounds, width), dtype=np.int64)
    actions_out = np.empty((n_rounds, width), dtype=np.int64)
    rewards_out = np.empty((n_rounds, width), dtype=np.float64)
    prop_out = np.empty((n_rounds, width), dtype=np.float64)
    session_out = np.empty((n_rounds, width), dtype=np.int64)
    next_out = np.empty((n_rounds, width), dtype=np.int64)
    done_out = np.empty((n_rounds, width), dtype=bool)

    states = inner.reset_batch(width, rng)
    sessions = np.arange(width, dtype=np.int64)
    steps = np.zeros(width, dtype=np.int64)
    next_session = width
    for t in range(n_rounds):
        actions, propensities = policy.sample(states, random_state=rng)
        rewards, next_states, terminated = inner.step_batch(states, actions, rng)
        next_states = np.where(terminated, states, next_states)
        states_out[t], actions_out[t], rewards_out[t], prop_out[t] = states, actions, rewards, propensities
        session_out[t], next_out[t], done_out[t] = sessions, next_states, terminated
        steps += 1
        ended = terminated | ((steps >= max_steps) if max_steps is not None else False)
        n_ended = int(ended.sum())
        if n_ended:
            next_states[ended] = inner.reset_batch(n_ended, rng)
            sessions[ended] = np.arange(next_session, next_session + n_ended)
            steps[ended] = 0
            next_session += n_ended
        states = next_states

    logs = pd.DataFrame(
        {
            schema.STATE: states_out.ravel()[:n],
            schema.ACTION: actions_out.ravel()[:n],
            schema.REWARD: rewards_out.ravel()[:n],
            schema.PROPENSITY: prop_out.ravel()[:n],
            schema.TIMESTAMP: _LOG_START + pd.to_timedelta(np.arange(n), unit="s"),
            schema.SESSION_ID: session_out.ravel()[:n],
            schema.NEXT_STATE: next_out.ravel()[:n],
            schema.DONE: done_out.ravel()[:n],
        }
    )
    logs.attrs["generator"] = {"env": type(inner).__name__, "n_parallel": width, "max_steps": max_steps}
    return logs
