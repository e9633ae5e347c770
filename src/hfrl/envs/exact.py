"""The exact truth of a finite MDP, computed from its tables: policy values, Q-values, the optimum.

Every function takes the **model**: any object with the three table methods of
:class:`TabularModel` (every hfrl environment; a Gymnasium wrapper is unwrapped):

* ``reward_matrix()`` -- ``R[s, a]``, the expected reward of action ``a`` in state ``s``;
* ``transition_matrix()`` -- a CSR matrix ``P`` of shape ``(n_states * n_actions, n_states)``, row
  ``s * n_actions + a`` holding ``P(s' | s, a)``; rows are *sub*-stochastic and the missing mass is
  the probability that the episode ends after that step (``termination_probability``);
* ``initial_distribution()`` -- the distribution of the first state of an episode.

Values are the infinite-horizon discounted returns with termination as the only ending, solved
exactly (one sparse linear solve per policy), so that learners and off-policy estimators can be
checked against the number they approximate rather than against another estimate. The functions
are separate from the environments so that the truth has one implementation whatever produced the
tables (a built-in shop, a simulator fitted to logs, a shifted shop).
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import MatrixRankWarning, spsolve

from hfrl.policies import TabularPolicy, check_distribution_table

__all__ = [
    "TabularModel",
    "optimal_policy",
    "optimal_q",
    "optimal_value",
    "policy_kernel",
    "policy_value",
    "q_values",
    "state_values",
    "termination_probability",
    "truncation_error_bound",
]


class TabularModel(Protocol):
    """What the exact functions read: the three tables of a finite MDP (see the module docstring)."""

    def reward_matrix(self) -> np.ndarray: ...

    def transition_matrix(self) -> sp.csr_matrix: ...

    def initial_distribution(self) -> np.ndarray: ...


def _model(model: Any) -> TabularModel:
    """The tables' owner: a Gymnasium wrapper is replaced by the env it wraps."""
    return getattr(model, "unwrapped", model)


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return gamma


def _policy_table(policy: Any, shape: tuple[int, int]) -> np.ndarray:
    table = policy.table_ if isinstance(policy, TabularPolicy) else check_distribution_table(policy, "policy")
    if table.shape != shape:
        raise ValueError(f"policy has shape {table.shape}, the env has {shape}")
    return table


def policy_kernel(model: Any, policy: Any) -> tuple[np.ndarray, sp.csr_matrix]:
    """The Markov chain a policy induces: ``r_pi[s]`` and ``P_pi[s, s']``.

    Parameters
    ----------
    model : TabularModel
    policy : TabularPolicy or array-like of shape (n_states, n_actions)
        Rows are action distributions.

    Returns
    -------
    r_pi : ndarray of shape (n_states,)
        ``sum_a pi(a|s) R[s, a]``.
    p_pi : scipy.sparse.csr_matrix of shape (n_states, n_states)
        ``sum_a pi(a|s) P(s'|s, a)``, sub-stochastic like ``P``.

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> r_pi, p_pi = policy_kernel(env, np.full((env.n_states, env.n_actions), 0.1))
    >>> bool(np.allclose(r_pi, env.reward_matrix().mean(axis=1))), p_pi.nnz
    (True, 0)
    """
    model = _model(model)
    rewards = model.reward_matrix()
    n_s, n_a = rewards.shape
    table = _policy_table(policy, (n_s, n_a))
    r_pi = np.einsum("sa,sa->s", table, rewards)
    mixer = sp.csr_matrix(
        (table.ravel(), np.arange(n_s * n_a), np.arange(0, n_s * n_a + 1, n_a)), shape=(n_s, n_s * n_a)
    )
    return r_pi, (mixer @ model.transition_matrix()).tocsr()


def _solve(r_pi: np.ndarray, p_pi: sp.csr_matrix, gamma: float) -> np.ndarray:
    """``V`` solving ``(I - gamma P_pi) V = r_pi``; a singular system is a clear ValueError."""
    if gamma == 0.0:
        return r_pi.copy()
    system = (sp.identity(r_pi.shape[0], format="csc") - gamma * p_pi.tocsc()).tocsc()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatrixRankWarning)  # reported below as a ValueError
        values = np.atleast_1d(spsolve(system, r_pi))
    if not np.isfinite(values).all():
        raise ValueError(
            f"the Bellman system is singular at gamma={gamma}: some states never end an "
            "episode under this policy; use gamma < 1"
        )
    return values


def _backup(model: TabularModel, values: np.ndarray, gamma: float) -> np.ndarray:
    """``R + gamma * P V`` reshaped to ``(n_states, n_actions)``: one Bellman backup of ``values``."""
    rewards = model.reward_matrix()
    return rewards + gamma * (model.transition_matrix() @ values).reshape(rewards.shape)


def state_values(model: Any, policy: Any, gamma: float) -> np.ndarray:
    """Exact ``V_pi(s)`` of every state, from one sparse solve of ``(I - gamma P_pi) V = r_pi``.

    Parameters
    ----------
    model : TabularModel
    policy : TabularPolicy or array-like of shape (n_states, n_actions)
    gamma : float in [0, 1]
        Discount; ``gamma = 1`` needs every state to end its episode eventually.

    Returns
    -------
    ndarray of shape (n_states,)

    Raises
    ------
    ValueError
        On a policy of the wrong shape, ``gamma`` outside [0, 1], or a singular system.

    Examples
    --------
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> uniform = np.full((env.n_states, env.n_actions), 0.1)
    >>> bool(np.allclose(state_values(env, uniform, 0.9), env.reward_matrix().mean(axis=1)))
    True
    """
    model = _model(model)
    gamma = _check_gamma(gamma)
    r_pi, p_pi = policy_kernel(model, policy)
    return _solve(r_pi, p_pi, gamma)


def policy_value(model: Any, policy: Any, gamma: float) -> float:
    """Exact expected discounted return of ``policy`` from the start distribution.

    ``sum_s mu0(s) V_pi(s)``. Episodes end with each step's termination probability and at no
    time limit; ``truncation_error_bound`` bounds the effect of a ``TimeLimit`` wrapper.

    Parameters
    ----------
    model : TabularModel
    policy : TabularPolicy or array-like of shape (n_states, n_actions)
    gamma : float in [0, 1]

    Returns
    -------
    float

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, logging_policy
    >>> env = RecommendationEnv()
    >>> policy_value(env, logging_policy(env, "uniform"), 0.9) < optimal_value(env, 0.9)
    True
    """
    model = _model(model)
    return float(model.initial_distribution() @ state_values(model, policy, gamma))


def q_values(model: Any, policy: Any, gamma: float) -> np.ndarray:
    """Exact ``Q_pi(s, a) = R(s, a) + gamma * sum_s' P(s'|s, a) V_pi(s')``.

    Parameters
    ----------
    model : TabularModel
    policy : TabularPolicy or array-like of shape (n_states, n_actions)
    gamma : float in [0, 1]

    Returns
    -------
    ndarray of shape (n_states, n_actions)

    Examples
    --------
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> bool(np.allclose(q_values(env, np.full((20, 10), 0.1), 0.9), env.reward_matrix()))
    True
    """
    model = _model(model)
    gamma = _check_gamma(gamma)
    return _backup(model, state_values(model, policy, gamma), gamma)


def optimal_q(model: Any, gamma: float, *, tol: float = 1e-10, max_iter: int = 100_000,
              patience: int = 10) -> np.ndarray:
    """Optimal ``Q*(s, a)``: value iteration, then policy iteration to an exact fixed point.

    Value iteration runs until successive values differ by less than ``tol`` (sup norm) or its
    greedy policy has not changed for ``patience`` sweeps; policy iteration then evaluates the
    greedy policy exactly (one sparse solve) and improves it until no state can improve, so the
    result is exact up to the linear solver's precision whichever way value iteration stopped.

    Parameters
    ----------
    model : TabularModel
    gamma : float in [0, 1]
    tol : float, default 1e-10
    max_iter : int, default 100_000
        Most value-iteration sweeps.
    patience : int, default 10
        Sweeps with an unchanged greedy policy after which value iteration hands over.

    Returns
    -------
    ndarray of shape (n_states, n_actions)

    Examples
    --------
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> bool(np.allclose(optimal_q(env, 0.5), env.reward_matrix()))  # one-step episodes
    True
    """
    model = _model(model)
    gamma = _check_gamma(gamma)
    rewards = model.reward_matrix()
    n_states, n_actions = rewards.shape
    every_state = np.arange(n_states)
    values = np.zeros(n_states)
    greedy = np.zeros(n_states, dtype=np.intp)
    stable = 0
    for _ in range(max_iter):
        q = _backup(model, values, gamma)
        updated_greedy = q.argmax(axis=1)
        updated = q[every_state, updated_greedy]
        delta = float(np.max(np.abs(updated - values)))
        stable = stable + 1 if np.array_equal(updated_greedy, greedy) else 0
        values, greedy = updated, updated_greedy
        if delta < tol or stable >= patience:
            break
    for _ in range(1000):
        kernel = model.transition_matrix()[every_state * n_actions + greedy]
        q = _backup(model, _solve(rewards[every_state, greedy], kernel, gamma), gamma)
        best = q.max(axis=1)
        keep = q[every_state, greedy] >= best - 1e-12 * (1.0 + np.abs(best))
        if keep.all():
            break
        greedy = np.where(keep, greedy, q.argmax(axis=1))
    return q


def optimal_policy(model: Any, gamma: float, *, tol: float = 1e-10) -> TabularPolicy:
    """A deterministic optimal policy: greedy on ``optimal_q`` (tied actions share mass equally).

    Parameters
    ----------
    model : TabularModel
    gamma : float in [0, 1]
    tol : float, default 1e-10
        Value-iteration tolerance passed to ``optimal_q``.

    Returns
    -------
    TabularPolicy
        With ``metadata`` ``{"source": "optimal_policy", "gamma": gamma}``.

    Examples
    --------
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> bool((optimal_policy(env, 0.0).table_.argmax(axis=1) == env.reward_matrix().argmax(axis=1)).all())
    True
    """
    q = optimal_q(model, gamma, tol=tol)
    return TabularPolicy.from_q_values(q, "greedy", metadata={"source": "optimal_policy", "gamma": gamma})


def optimal_value(model: Any, gamma: float) -> float:
    """Exact value of ``optimal_policy(model, gamma)`` from the start distribution.

    Examples
    --------
    >>> from hfrl.envs import AdPlacementEnv
    >>> env = AdPlacementEnv()
    >>> bool(np.isclose(optimal_value(env, 0.0),
    ...                 env.initial_distribution() @ env.reward_matrix().max(axis=1)))
    True
    """
    return policy_value(model, optimal_policy(model, gamma), gamma)


def termination_probability(model: Any) -> np.ndarray:
    """Probability that the episode ends after ``(s, a)``: the mass missing from each row of ``P``.

    Returns
    -------
    ndarray of shape (n_states, n_actions)

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv
    >>> bool(np.allclose(termination_probability(RecommendationEnv(churn_probability=0.2)), 0.2))
    True
    """
    model = _model(model)
    shape = model.reward_matrix().shape
    mass = np.asarray(model.transition_matrix().sum(axis=1)).ravel()
    return np.clip(1.0 - mass, 0.0, 1.0).reshape(shape)


def truncation_error_bound(model: Any, gamma: float, max_steps: int) -> float:
    """Upper bound on ``|policy_value - the value with episodes cut after max_steps|``, any policy.

    ``max|R| * (gamma * rho)^T / (1 - gamma * rho)`` with ``rho`` the largest continuation
    probability of any ``(s, a)`` and ``T = max_steps``: tiny when episodes end (churn) long
    before the limit, which is why a ``TimeLimit`` wrapper can be left out of the exact truth.

    Returns
    -------
    float
        ``inf`` when some ``(s, a)`` never ends the episode and ``gamma = 1``.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv
    >>> truncation_error_bound(RecommendationEnv(), 0.9, 1000) < 1e-40
    True
    """
    model = _model(model)
    gamma = _check_gamma(gamma)
    rho = float(np.asarray(model.transition_matrix().sum(axis=1)).max(initial=0.0))
    factor = gamma * rho
    if factor >= 1.0:
        return float("inf")
    return float(np.abs(model.reward_matrix()).max()) * factor ** int(max_steps) / (1.0 - factor)
