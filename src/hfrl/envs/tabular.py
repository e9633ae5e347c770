"""TabularMDPEnv: a Gymnasium environment built from exact tables, with its exact truth.

The model is a finite MDP with an absorbing "end of episode":

* ``reward_matrix()`` -- ``R[s, a]``, the expected reward of taking action ``a`` in state ``s``;
* ``transition_matrix()`` -- a CSR matrix ``P`` of shape ``(n_states * n_actions, n_states)``; row
  ``s * n_actions + a`` holds ``P(s' | s, a)``. Rows are *sub*-stochastic: the missing mass
  ``1 - P[s * n_actions + a].sum()`` is the probability that the episode ends after that step;
* ``initial_distribution()`` -- the distribution of the first state of an episode.

Because the tables are exact, every quantity a learner or an off-policy estimator tries to
approximate is available exactly: the value of any policy (one sparse linear solve), its
Q-values, the optimal Q-values and an optimal policy.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from gymnasium import spaces
from scipy.sparse.linalg import MatrixRankWarning, spsolve

from hfrl.policies import TabularPolicy, check_distribution_table, resolve_rng

__all__ = ["TabularMDPEnv"]

_REWARD_NOISES = ("bernoulli", "gaussian", "none")
_MASS_TOLERANCE = 1e-9


def _as_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    return resolve_rng(rng)


class TabularMDPEnv(gym.Env):
    """A finite MDP with exact reward, transition and start tables.

    Generative model (one step): in state ``s`` the agent takes action ``a``; the reward is
    drawn with mean ``R[s, a]`` (``reward_noise="bernoulli"``: ``scale[s, a] * Bernoulli(R[s, a] /
    scale[s, a])``; ``"gaussian"``: ``R[s, a] + std[s, a] * N(0, 1)``; ``"none"``: exactly
    ``R[s, a]``); independently, the next state is ``s'`` with probability ``P(s' | s, a)`` and
    the episode terminates with the remaining probability. Observations are integer state ids.
    Randomness in ``reset``/``step`` comes only from ``self.np_random``.

    Parameters
    ----------
    rewards : array-like of shape (n_states, n_actions)
        Expected rewards ``R[s, a]``.
    transitions : scipy.sparse matrix or array-like of shape (n_states * n_actions, n_states)
        Row ``s * n_actions + a`` is ``P(. | s, a)``; entries >= 0, row sums <= 1.
    initial_distribution : array-like of shape (n_states,)
        Start-state probabilities (must sum to 1).
    reward_noise : {"bernoulli", "gaussian", "none"}, default "none"
        How a sampled reward scatters around its mean (see above).
    reward_scale : array-like of shape (n_states, n_actions), optional
        Bernoulli payoff on success (default 1); ``0 <= R <= scale`` is required.
    reward_std : array-like of shape (n_states, n_actions) or float, optional
        Standard deviation of Gaussian reward noise (default 1).
    popularity : array-like of shape (n_states, n_actions), optional
        Non-negative weights used by ``hfrl.envs.logging_policy(env, "popularity")``
        (default: the success probability, or the expected reward shifted to be positive).
    render_mode : {"ansi"}, optional

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> rewards = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> stay = sparse.csr_matrix(np.array([[0.5, 0], [0, 0.5], [0.5, 0], [0, 0.5]]))
    >>> env = TabularMDPEnv(rewards, stay, [1.0, 0.0])
    >>> round(env.policy_value(env.optimal_policy(gamma=1.0), gamma=1.0), 6)
    2.0
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(0)
    >>> reward
    1.0
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        rewards: Any,
        transitions: Any,
        initial_distribution: Any,
        *,
        reward_noise: str = "none",
        reward_scale: Any = None,
        reward_std: Any = None,
        popularity: Any = None,
        render_mode: str | None = None,
    ) -> None:
        reward_table = np.asarray(rewards, dtype=np.float64)
        if reward_table.ndim != 2 or reward_table.size == 0:
            raise ValueError(
                f"rewards must be a non-empty (n_states, n_actions) array, got {reward_table.shape}"
            )
        if not np.isfinite(reward_table).all():
            s, a = np.argwhere(~np.isfinite(reward_table))[0]
            raise ValueError(f"rewards[{s}, {a}] is not finite")
        n_states, n_actions = reward_table.shape
        self._setup(n_states, n_actions, render_mode)
        self._rewards = _read_only(reward_table)
        self._transitions = _check_transitions(transitions, n_states, n_actions)
        self._initial = _check_initial(initial_distribution, n_states)
        self._set_reward_noise(reward_noise, reward_scale, reward_std)
        if popularity is not None:
            pop = np.asarray(popularity, dtype=np.float64)
            if pop.shape != (n_states, n_actions) or not np.isfinite(pop).all() or (pop < 0).any():
                raise ValueError(
                    f"popularity must be a finite non-negative ({n_states}, {n_actions}) array"
                )
            self._popularity: np.ndarray | None = _read_only(pop)
        else:
            self._popularity = None

    # ------------------------------------------------------------------ set-up helpers
    def _setup(self, n_states: int, n_actions: int, render_mode: str | None) -> None:
        """Declare spaces and empty caches; subclasses call this instead of ``__init__``."""
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self._n_states = int(n_states)
        self._n_actions = int(n_actions)
        self.observation_space = spaces.Discrete(self._n_states)
        self.action_space = spaces.Discrete(self._n_actions)
        self._rewards = None
        self._transitions = None
        self._initial = None
        self._popularity = None
        self._reward_noise = "none"
        self._success = None
        self._scale = None
        self._std = None
        self._transition_keys: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None
        self._initial_cdf: np.ndarray | None = None
        self._state = 0
        self._last_action: Any = None
        self._last_reward = 0.0

    def _set_reward_noise(self, reward_noise: str, reward_scale: Any, reward_std: Any) -> None:
        if reward_noise not in _REWARD_NOISES:
            raise ValueError(f"reward_noise must be one of {_REWARD_NOISES}, got {reward_noise!r}")
        self._reward_noise = reward_noise
        shape = (self._n_states, self._n_actions)
        rewards = self.reward_matrix()
        if reward_noise == "bernoulli":
            scale = np.broadcast_to(
                np.asarray(1.0 if reward_scale is None else reward_scale, dtype=np.float64), shape
            )
            if (scale <= 0).any() or not np.isfinite(scale).all():
                raise ValueError("reward_scale must be finite and > 0 for Bernoulli rewards")
            success = rewards / scale
            bad = (success < -1e-12) | (success > 1 + 1e-12)
            if bad.any():
                s, a = np.argwhere(bad)[0]
                raise ValueError(
                    f"Bernoulli rewards need 0 <= rewards <= reward_scale; rewards[{s}, {a}] = "
                    f"{rewards[s, a]:g} with scale {scale[s, a]:g}"
                )
            self._success = _read_only(np.clip(success, 0.0, 1.0))
            self._scale = _read_only(np.array(scale))
        elif reward_noise == "gaussian":
            std = np.broadcast_to(
                np.asarray(1.0 if reward_std is None else reward_std, dtype=np.float64), shape
            )
            if (std < 0).any() or not np.isfinite(std).all():
                raise ValueError("reward_std must be finite and >= 0")
            self._std = _read_only(np.array(std))

    # ------------------------------------------------------------------ sizes and tables
    @property
    def n_states(self) -> int:
        """Number of states (observations are ids in ``[0, n_states)``)."""
        return self._n_states

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return self._n_actions

    def reward_matrix(self) -> np.ndarray:
        """Expected rewards ``R[s, a]``, a read-only ``(n_states, n_actions)`` float64 array."""
        if self._rewards is None:
            self._rewards = _read_only(self._build_reward_matrix())
        return self._rewards

    def transition_matrix(self) -> sp.csr_matrix:
        """``P`` as CSR, shape ``(n_states * n_actions, n_states)``, row ``s * n_actions + a``.

        Rows are sub-stochastic; the missing mass is the probability that the episode ends.
        """
        if self._transitions is None:
            self._transitions = _check_transitions(
                self._build_transition_matrix(), self._n_states, self._n_actions
            )
        return self._transitions

    def initial_distribution(self) -> np.ndarray:
        """Start-state probabilities, shape ``(n_states,)``."""
        if self._initial is None:
            self._initial = _check_initial(self._build_initial_distribution(), self._n_states)
        return self._initial

    def termination_probability(self) -> np.ndarray:
        """Probability that the episode ends after ``(s, a)``, shape ``(n_states, n_actions)``."""
        mass = np.asarray(self.transition_matrix().sum(axis=1)).ravel()
        return np.clip(1.0 - mass, 0.0, 1.0).reshape(self._n_states, self._n_actions)

    def popularity_matrix(self) -> np.ndarray:
        """Non-negative action weights per state used by the ``"popularity"`` logging policy."""
        if self._popularity is not None:
            return self._popularity
        if self._success is not None:
            return self._success
        rewards = self.reward_matrix()
        shifted = rewards - rewards.min(axis=1, keepdims=True)
        return shifted + 1e-3 * (np.abs(rewards).max() + 1.0)

    # Subclasses that generate their tables lazily override these three.
    def _build_reward_matrix(self) -> np.ndarray:  # pragma: no cover - base has tables
        raise NotImplementedError

    def _build_transition_matrix(self) -> sp.csr_matrix:  # pragma: no cover
        raise NotImplementedError

    def _build_initial_distribution(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def decode_state(self, s: int) -> dict[str, Any]:
        """The parts of state id ``s`` (here just the id; subclasses name segment, slot, ...)."""
        self._check_ids(np.asarray(s), self._n_states, "state")
        return {"state": int(s)}

    # ------------------------------------------------------------------ exact truth
    def expected_reward(self, s: Any, a: Any) -> Any:
        """``E[reward | s, a]`` with numpy broadcasting of ``s`` and ``a``.

        Returns a float for scalar inputs, else an array of the broadcast shape.
        """
        states = self._check_ids(np.asarray(s), self._n_states, "state")
        actions = self._check_ids(np.asarray(a), self._n_actions, "action")
        states, actions = np.broadcast_arrays(states, actions)
        values = self._expected_reward(states, actions)
        return float(values) if values.ndim == 0 else values

    def _expected_reward(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.reward_matrix()[states, actions]

    def _policy_table(self, policy: Any) -> np.ndarray:
        if isinstance(policy, TabularPolicy):
            table = policy.table_
        else:
            table = check_distribution_table(policy, "policy")
        if table.shape != (self._n_states, self._n_actions):
            raise ValueError(
                f"policy has shape {table.shape}, the env has ({self._n_states}, {self._n_actions})"
            )
        return table

    @staticmethod
    def _check_gamma(gamma: float) -> float:
        gamma = float(gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        return gamma

    def _policy_kernel(self, table: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
        """``r_pi`` (n_states,) and ``P_pi`` (n_states, n_states) under the policy table."""
        n_s, n_a = self._n_states, self._n_actions
        r_pi = np.einsum("sa,sa->s", table, self.reward_matrix())
        mixer = sp.csr_matrix(
            (table.ravel(), np.arange(n_s * n_a), np.arange(0, n_s * n_a + 1, n_a)),
            shape=(n_s, n_s * n_a),
        )
        return r_pi, (mixer @ self.transition_matrix()).tocsr()

    def state_values(self, policy: Any, gamma: float) -> np.ndarray:
        """Exact ``V_pi(s)`` for every state: solves ``(I - gamma P_pi) V = r_pi`` (sparse)."""
        gamma = self._check_gamma(gamma)
        r_pi, p_pi = self._policy_kernel(self._policy_table(policy))
        return self._solve(r_pi, p_pi, gamma)

    def _solve(self, r_pi: np.ndarray, p_pi: sp.csr_matrix, gamma: float) -> np.ndarray:
        if gamma == 0.0:
            return r_pi.copy()
        system = (sp.identity(self._n_states, format="csc") - gamma * p_pi.tocsc()).tocsc()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MatrixRankWarning)  # reported below as a ValueError
            values = np.atleast_1d(spsolve(system, r_pi))
        if not np.isfinite(values).all():
            raise ValueError(
                f"the Bellman system is singular at gamma={gamma}: some states never end an "
                "episode under this policy; use gamma < 1"
            )
        return values

    def policy_value(self, policy: Any, gamma: float) -> float:
        """Exact expected discounted return of ``policy`` from the start distribution.

        ``sum_s mu0(s) V_pi(s)`` with ``V_pi`` from one sparse linear solve; the episode ends
        with the termination probability of each step (no time limit; see
        ``truncation_error_bound`` for the effect of a ``TimeLimit`` wrapper).
        """
        return float(self.initial_distribution() @ self.state_values(policy, gamma))

    def q_values(self, policy: Any, gamma: float) -> np.ndarray:
        """Exact ``Q_pi(s, a) = R(s, a) + gamma * sum_s' P(s'|s, a) V_pi(s')``."""
        values = self.state_values(policy, gamma)
        return self._backup(values, self._check_gamma(gamma))

    def _backup(self, values: np.ndarray, gamma: float) -> np.ndarray:
        future = (self.transition_matrix() @ values).reshape(self._n_states, self._n_actions)
        return self.reward_matrix() + gamma * future

    def optimal_q(self, gamma: float, *, tol: float = 1e-10, max_iter: int = 100_000,
                  patience: int = 10) -> np.ndarray:
        """Optimal ``Q*(s, a)``: value iteration, then policy iteration to an exact fixed point.

        Value iteration runs until successive values differ by less than ``tol`` (sup norm) or
        its greedy policy has not changed for ``patience`` sweeps; policy iteration then
        evaluates the greedy policy exactly (one sparse solve) and improves it until no state
        can improve, so the result is exact up to the linear solver's precision whichever way
        value iteration stopped.
        """
        gamma = self._check_gamma(gamma)
        values = np.zeros(self._n_states)
        greedy = np.zeros(self._n_states, dtype=np.intp)
        stable = 0
        for _ in range(max_iter):
            q = self._backup(values, gamma)
            updated_greedy = q.argmax(axis=1)
            updated = q[np.arange(self._n_states), updated_greedy]
            delta = float(np.max(np.abs(updated - values)))
            stable = stable + 1 if np.array_equal(updated_greedy, greedy) else 0
            values, greedy = updated, updated_greedy
            if delta < tol or stable >= patience:
                break
        every_state = np.arange(self._n_states)
        for _ in range(1000):
            rows = every_state * self._n_actions + greedy
            kernel = self.transition_matrix()[rows]
            q = self._backup(self._solve(self.reward_matrix()[every_state, greedy], kernel, gamma), gamma)
            best = q.max(axis=1)
            keep = q[every_state, greedy] >= best - 1e-12 * (1.0 + np.abs(best))
            if keep.all():
                break
            greedy = np.where(keep, greedy, q.argmax(axis=1))
        return q

    def optimal_policy(self, gamma: float, *, tol: float = 1e-10) -> TabularPolicy:
        """A deterministic optimal policy (greedy on ``optimal_q``; ties share mass equally)."""
        q = self.optimal_q(gamma, tol=tol)
        return TabularPolicy.from_q_values(q, "greedy", metadata={"source": "optimal_policy", "gamma": gamma})

    def optimal_value(self, gamma: float) -> float:
        """Exact value of ``optimal_policy(gamma)`` from the start distribution."""
        return self.policy_value(self.optimal_policy(gamma), gamma)

    def truncation_error_bound(self, gamma: float, max_steps: int) -> float:
        """Upper bound on ``|policy_value - value with episodes cut after max_steps|``.

        ``max|R| * (gamma * rho)^T / (1 - gamma * rho)`` with ``rho`` the largest continuation
        probability of any ``(s, a)``; tiny when episodes end (churn) long before the limit.
        """
        gamma = self._check_gamma(gamma)
        rho = float(np.asarray(self.transition_matrix().sum(axis=1)).max(initial=0.0))
        factor = gamma * rho
        r_max = float(np.abs(self.reward_matrix()).max())
        if factor >= 1.0:
            return float("inf")
        return r_max * factor ** int(max_steps) / (1.0 - factor)

    # ------------------------------------------------------------------ sampling (batch)
    @staticmethod
    def _check_ids(values: np.ndarray, upper: int, name: str) -> np.ndarray:
        if values.dtype.kind not in "iu":
            if values.dtype.kind == "f" and values.size and np.all(np.mod(values, 1) == 0):
                values = values.astype(np.int64)
            elif values.size or values.dtype.kind not in "f":
                raise ValueError(f"{name} ids must be integers, got dtype {values.dtype}")
            else:
                values = values.astype(np.int64)
        if values.size:
            low, high = values.min(), values.max()
            if low < 0 or high >= upper:
                bad = int(np.flatnonzero((values.ravel() < 0) | (values.ravel() >= upper))[0])
                raise ValueError(
                    f"{name} id {int(values.ravel()[bad])} at position {bad} is outside [0, {upper})"
                )
        return values.astype(np.intp, copy=False)

    def reset_batch(self, n: int, rng: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw ``n`` independent start states, shape ``(n,)`` int64."""
        if int(n) < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._sample_initial(int(n), _as_rng(rng))

    def step_batch(
        self, states: Any, actions: Any, rng: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``len(states)`` independent users at once.

        Returns ``(rewards, next_states, terminated)``; ``next_states`` of terminated users are
        valid ids but carry no meaning.
        """
        s = self._check_ids(np.asarray(states).reshape(-1), self._n_states, "state")
        a = self._check_batch_actions(actions, s.shape[0])
        return self._sample_step(s, a, _as_rng(rng))

    def _check_batch_actions(self, actions: Any, n: int) -> np.ndarray:
        a = self._check_ids(np.asarray(actions).reshape(-1), self._n_actions, "action")
        if a.shape[0] != n:
            raise ValueError(f"states and actions differ in length: {n} vs {a.shape[0]}")
        return a

    def _sample_initial(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._initial_cdf is None:
            cdf = np.cumsum(self.initial_distribution())
            cdf[-1] = np.inf
            self._initial_cdf = cdf
        return np.searchsorted(self._initial_cdf, rng.random(n), side="right").astype(np.int64)

    def _sample_rewards(
        self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        flat = states * self._n_actions + actions
        if self._reward_noise == "bernoulli":
            assert self._success is not None and self._scale is not None
            hit = rng.random(flat.shape[0]) < self._success.ravel()[flat]
            return np.where(hit, self._scale.ravel()[flat], 0.0)
        mean = self.reward_matrix().ravel()[flat]
        if self._reward_noise == "gaussian":
            assert self._std is not None
            return mean + self._std.ravel()[flat] * rng.standard_normal(flat.shape[0])
        return mean.copy()

    def _transition_sampler(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Cumulative mass within each CSR row, for a vectorised binary search per row."""
        if self._transition_keys is None:
            matrix = self.transition_matrix()
            counts = np.diff(matrix.indptr)
            cum = np.cumsum(matrix.data)
            before = np.concatenate(([0.0], cum))[matrix.indptr[:-1]]
            within = np.minimum(cum - np.repeat(before, counts), 1.0)
            n_steps = int(np.ceil(np.log2(int(counts.max(initial=0)) + 1)))
            self._transition_keys = (within, matrix.indptr.astype(np.int64),
                                     matrix.indices.astype(np.int64), n_steps)
        return self._transition_keys

    def _sample_next(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
        within, indptr, indices, n_steps = self._transition_sampler()
        flat = states * self._n_actions + actions
        u = rng.random(flat.shape[0])
        if within.size == 0:
            return states.astype(np.int64), np.ones(flat.shape[0], dtype=bool)
        # First entry of the row whose cumulative mass exceeds u (row end = the episode ends):
        # a binary search run for all users at once, log2(longest row) rounds of numpy ops.
        low, high = indptr[flat], indptr[flat + 1]
        row_end = high
        for _ in range(n_steps):
            middle = (low + high) >> 1
            right = (low < high) & (within[np.minimum(middle, within.size - 1)] <= u)
            low = np.where(right, middle + 1, low)
            high = np.where(right, high, middle)
        continues = low < row_end
        next_states = np.where(continues, indices[np.minimum(low, within.size - 1)], states)
        return next_states.astype(np.int64), ~continues

    def _sample_step(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rewards = self._sample_rewards(states, actions, rng)
        next_states, terminated = self._sample_next(states, actions, rng)
        return rewards, next_states, terminated

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Start an episode; the first state is drawn from ``initial_distribution()``."""
        super().reset(seed=seed)
        self._state = self._reset_one(self.np_random)
        self._last_action = None
        self._last_reward = 0.0
        return self._state, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Take ``action`` in the current state; returns ``(obs, reward, terminated, False, info)``."""
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward, next_state, terminated = self._step_one(self._state, int(action), self.np_random)
        self._last_action = int(action)
        self._last_reward = reward
        self._state = next_state  # on termination: a valid id, the last state seen
        return self._state, reward, terminated, False, {}

    def _reset_one(self, rng: np.random.Generator) -> int:
        """One start state, drawing exactly what ``_sample_initial(1, rng)`` draws."""
        if self._initial_cdf is None:
            self._sample_initial(0, rng)
        assert self._initial_cdf is not None
        return int(self._initial_cdf.searchsorted(rng.random(), side="right"))

    def _step_one(self, state: int, action: int, rng: np.random.Generator) -> tuple[float, int, bool]:
        """One user, one step, with Python scalars; draws exactly what ``_sample_step`` draws."""
        flat = state * self._n_actions + action
        if self._reward_noise == "bernoulli":
            assert self._success is not None and self._scale is not None
            hit = rng.random() < self._success.flat[flat]
            reward = float(self._scale.flat[flat]) if hit else 0.0
        elif self._reward_noise == "gaussian":
            assert self._std is not None
            reward = float(self.reward_matrix().flat[flat] + self._std.flat[flat] * rng.standard_normal())
        else:
            reward = float(self.reward_matrix().flat[flat])
        within, indptr, indices, _ = self._transition_sampler()
        u = rng.random()
        low, high = int(indptr[flat]), int(indptr[flat + 1])
        position = low + int(np.searchsorted(within[low:high], u, side="right"))
        if position < high:
            return reward, int(indices[position]), False
        return reward, state, True

    def render(self) -> str | None:
        """ANSI text: the decoded state and the last action/reward."""
        if self.render_mode != "ansi":
            return None
        state = self.decode_state(self._state)
        return f"state {state} last action {self._last_action} reward {self._last_reward:g}\n"


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def _check_transitions(transitions: Any, n_states: int, n_actions: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix(transitions, dtype=np.float64)
    expected = (n_states * n_actions, n_states)
    if matrix.shape != expected:
        raise ValueError(
            f"transitions must have shape {expected} (row s * n_actions + a), got {matrix.shape}"
        )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.nnz:
        if not np.isfinite(matrix.data).all() or (matrix.data < 0).any():
            raise ValueError("transitions must be finite and non-negative")
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        over = sums > 1.0 + _MASS_TOLERANCE
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"transition row {row} (state {row // n_actions}, action {row % n_actions}) sums to "
                f"{sums[row]:.6g} > 1; rows must be sub-stochastic"
            )
    return matrix


def _check_initial(initial: Any, n_states: int) -> np.ndarray:
    mu = np.asarray(initial, dtype=np.float64).reshape(-1)
    if mu.shape != (n_states,):
        raise ValueError(f"initial_distribution must have shape ({n_states},), got {mu.shape}")
    if not np.isfinite(mu).all() or (mu < 0).any() or abs(mu.sum() - 1.0) > 1e-6:
        raise ValueError("initial_distribution must be non-negative and sum to 1")
    return _read_only(mu / mu.sum())
