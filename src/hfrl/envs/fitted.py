"""fit_env: a simulator estimated from the user's own logs, with the same exact-truth API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hfrl.data import schema, validate_logs
from hfrl.envs.tabular import TabularMDPEnv

__all__ = ["fit_env"]


def fit_env(
    logs: pd.DataFrame,
    *,
    n_states: int | None = None,
    n_actions: int | None = None,
    prior_strength: float = 1.0,
    reward_noise: str | None = None,
    render_mode: str | None = None,
) -> TabularMDPEnv:
    """Estimate a tabular MDP from logged decisions and return it as an env with exact truth.

    The estimate (``k = prior_strength``, ``N(s, a)`` the logged count, weights from a ``weight``
    column when present):

    * **Reward**: ``R(s, a) = (sum of rewards at (s, a) + k * m(s)) / (N(s, a) + k)``, shrunk
      toward the state mean ``m(s) = (sum of rewards in s + k * global mean) / (N(s) + k)``; an
      unlogged pair gets ``m(s)``, an unlogged state the global mean.
    * **Reward noise**: ``"bernoulli"`` (success probability ``R``) when every logged reward is
      0 or 1, else ``"gaussian"`` around ``R`` with standard deviation
      ``sqrt((sum of squared deviations at (s, a) + k * global variance) / (N(s, a) + k))``.
    * **Transitions** (session logs: a ``next_state`` column): ``P(. | s, a) = (C(s, a, .) + k *
      Pbar(. | s)) / (M(s, a) + k)`` where ``C`` counts logged next states (a row with ``done``
      True, or ``next_state`` missing without a ``done`` column, counts as an episode end),
      ``M(s, a)`` the rows counted and ``Pbar(. | s)`` the same estimate pooled over actions. A
      row with ``done`` False and no ``next_state`` (a cut session) is used for rewards only.
      States seen only as a ``next_state`` use the transitions pooled over all states; states
      never logged end the episode at once (they are unreachable from the logged starts).
    * **Start distribution**: the first state of each ``session_id`` (ordered by ``timestamp``
      when present, else by row order); without ``session_id``, the logged state frequencies
      (which over-weight states deep inside sessions).
    * **No ``next_state`` column**: a contextual bandit -- every episode is one step and the start
      distribution is the logged state frequencies.

    Parameters
    ----------
    logs : DataFrame
        The hfrl log schema (``state``, ``action``, ``reward``; optional ``next_state``,
        ``done``, ``session_id``, ``timestamp``, ``weight``).
    n_states, n_actions : int, optional
        Sizes; default one more than the largest id logged.
    prior_strength : float > 0, default 1.0
        Pseudo-count ``k`` of the shrinkage. With few rows per ``(s, a)`` the replica's optimal
        value is optimistic (maximising over noisy estimates); a larger ``k`` tempers that.
    reward_noise : {"bernoulli", "gaussian", "none"}, optional
        Override the choice described above.
    render_mode : {"ansi"}, optional

    Returns
    -------
    TabularMDPEnv
        With ``counts_`` (``N(s, a)``), ``n_logged_`` and ``fitted_mode_`` (``"sessions"`` or
        ``"bandit"``) set; ``popularity_matrix()`` is the shrunk logged action frequency.

    Raises
    ------
    LogValidationError
        When the logs do not fit the schema (names the column and first bad row).

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, collect_logs, fit_env, logging_policy
    >>> truth = RecommendationEnv(reward="purchase")
    >>> logs = collect_logs(truth, logging_policy(truth, "uniform"), n=20_000, seed=0)
    >>> replica = fit_env(logs, n_states=truth.n_states, n_actions=truth.n_actions)
    >>> replica.fitted_mode_
    'sessions'
    >>> bool(abs(replica.optimal_value(0.9) - truth.optimal_value(0.9)) < 0.1 * truth.optimal_value(0.9))
    True
    """
    if not (np.isfinite(prior_strength) and prior_strength > 0):
        raise ValueError(f"prior_strength must be a finite number > 0, got {prior_strength!r}")
    if not isinstance(logs, pd.DataFrame):
        raise TypeError(f"logs must be a pandas DataFrame, got {type(logs).__name__}")
    checked = validate_logs(logs, n_states=n_states, n_actions=n_actions)
    states = checked[schema.STATE].to_numpy(dtype=np.int64)
    actions = checked[schema.ACTION].to_numpy(dtype=np.int64)
    rewards = checked[schema.REWARD].to_numpy(dtype=np.float64)
    has_next = schema.NEXT_STATE in checked.columns
    next_col = checked[schema.NEXT_STATE] if has_next else None
    if n_states is None:
        n_states = int(states.max()) + 1
        if next_col is not None and next_col.notna().any():
            n_states = max(n_states, int(next_col.max()) + 1)
    if n_actions is None:
        n_actions = int(actions.max()) + 1
    k = float(prior_strength)
    weights = (checked[schema.WEIGHT].to_numpy(dtype=np.float64) if schema.WEIGHT in checked.columns
               else np.ones(states.shape[0]))
    n_cells = n_states * n_actions
    flat = states * n_actions + actions

    # Rewards: pair -> state -> global shrinkage.
    counts = np.bincount(flat, weights, n_cells)
    sums = np.bincount(flat, weights * rewards, n_cells)
    total = weights.sum()
    if total <= 0:
        raise ValueError("the logs carry zero total weight")
    global_mean = float((weights * rewards).sum() / total)
    state_counts = counts.reshape(n_states, n_actions).sum(axis=1)
    state_sums = sums.reshape(n_states, n_actions).sum(axis=1)
    state_mean = (state_sums + k * global_mean) / (state_counts + k)
    reward_table = (sums.reshape(n_states, n_actions) + k * state_mean[:, None]) / (
        counts.reshape(n_states, n_actions) + k
    )
    if reward_noise is None:
        reward_noise = "bernoulli" if np.isin(rewards, (0.0, 1.0)).all() else "gaussian"
    reward_std = None
    if reward_noise == "gaussian":
        pair_mean = np.divide(sums, counts, out=np.zeros(n_cells), where=counts > 0)
        squares = np.bincount(flat, weights * (rewards - pair_mean[flat]) ** 2, n_cells)
        global_var = float((weights * (rewards - global_mean) ** 2).sum() / total)
        reward_std = np.sqrt((squares + k * global_var) / (counts + k)).reshape(n_states, n_actions)

    if has_next:
        transitions, initial = _session_model(checked, states, flat, weights, n_states, n_actions, k)
        mode = "sessions"
    else:
        transitions = sp.csr_matrix((n_cells, n_states))
        initial = np.bincount(states, weights, n_states) / total
        mode = "bandit"

    action_freq = counts.reshape(n_states, n_actions).sum(axis=0) / total
    popularity = counts.reshape(n_states, n_actions) + k * action_freq[None, :]
    env = TabularMDPEnv(
        reward_table,
        transitions,
        initial,
        reward_noise=reward_noise,
        reward_std=reward_std,
        popularity=popularity,
        render_mode=render_mode,
    )
    env.counts_ = counts.reshape(n_states, n_actions)
    env.n_logged_ = int(states.shape[0])
    env.fitted_mode_ = mode
    return env


def _session_model(
    logs: pd.DataFrame,
    states: np.ndarray,
    flat: np.ndarray,
    weights: np.ndarray,
    n_states: int,
    n_actions: int,
    k: float,
) -> tuple[sp.csr_matrix, np.ndarray]:
    next_col = logs[schema.NEXT_STATE]
    missing = next_col.isna().to_numpy()
    next_states = next_col.fillna(0).to_numpy(dtype=np.int64)
    if schema.DONE in logs.columns:
        done = logs[schema.DONE].to_numpy(dtype=bool)
    else:
        done = missing
    continues = ~done & ~missing
    used = done | continues  # rows with a known outcome (cut sessions are excluded)
    n_cells = n_states * n_actions

    pair_rows = np.bincount(flat[used], weights[used], n_cells)
    pair_counts = sp.csr_matrix(
        (weights[continues], (flat[continues], next_states[continues])), shape=(n_cells, n_states)
    )
    state_rows = np.bincount(states[used], weights[used], n_states)
    state_counts = sp.csr_matrix(
        (weights[continues], (states[continues], next_states[continues])), shape=(n_states, n_states)
    )
    global_row = np.asarray(state_counts.sum(axis=0)).ravel() / max(state_rows.sum(), 1e-300)

    # Pbar(. | s): pooled over actions when s was logged, else global for states only reached.
    seen = state_rows > 0
    reached = np.zeros(n_states, dtype=bool)
    reached[next_states[continues]] = True
    only_reached = reached & ~seen
    scale = np.divide(1.0, state_rows, out=np.zeros(n_states), where=seen)
    pooled = sp.diags(scale) @ state_counts
    if only_reached.any():
        support = np.flatnonzero(global_row)
        rows = np.repeat(np.flatnonzero(only_reached), support.size)
        cols = np.tile(support, int(only_reached.sum()))
        pooled = pooled + sp.csr_matrix((global_row[cols], (rows, cols)), shape=(n_states, n_states))
    expand = sp.csr_matrix(
        (np.ones(n_cells), (np.arange(n_cells), np.repeat(np.arange(n_states), n_actions))),
        shape=(n_cells, n_states),
    )
    transitions = sp.diags(1.0 / (pair_rows + k)) @ (pair_counts + k * (expand @ pooled))
    transitions = sp.csr_matrix(transitions)

    if schema.SESSION_ID in logs.columns:
        order = np.arange(len(logs))
        if schema.TIMESTAMP in logs.columns:
            order = logs[schema.TIMESTAMP].reset_index(drop=True).argsort(kind="stable").to_numpy()
        first = ~pd.Series(logs[schema.SESSION_ID].to_numpy()[order]).duplicated().to_numpy()
        start_states = states[order][first]
        initial = np.bincount(start_states, weights[order][first], n_states)
    else:
        initial = np.bincount(states, weights, n_states)
    return transitions, initial / initial.sum()
