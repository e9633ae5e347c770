"""TabularMDPEnv: a Gymnasium environment that samples a finite MDP given by exact tables.

The environment does one job, sampling: ``reset``/``step`` for one user (Gymnasium style) and
``reset_batch``/``step_batch`` for many independent users at once go through the same sampler.
The exact truth of its tables (policy values, Q-values, an optimal policy) lives in
:mod:`hfrl.envs.exact`; the env's methods of the same names are shortcuts to those functions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from gymnasium import spaces

from hfrl.envs import exact
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["TabularMDPEnv"]

_REWARD_NOISES = ("bernoulli", "gaussian", "none")
_MASS_TOLERANCE = 1e-9


class TabularMDPEnv(gym.Env):
    """A finite MDP with exact reward, transition and start tables.

    **Generative model.**

    * **Start**: the first state of an episode is ``s`` with probability ``mu0(s)``
      (``initial_distribution``). Observations are integer state ids.
    * **Reward** of action ``a`` in state ``s``, with mean ``R[s, a]``: ``reward_noise=
      "bernoulli"`` pays ``scale[s, a]`` with probability ``R[s, a] / scale[s, a]``, else 0;
      ``"gaussian"`` is ``R[s, a] + std[s, a] * N(0, 1)``; ``"none"`` is exactly ``R[s, a]``.
    * **Next state**, independently of the reward: ``s'`` with probability ``P(s' | s, a)``; the
      episode terminates with the remaining probability ``1 - sum_s' P(s' | s, a)``.

    One sampler serves both APIs: ``step``/``reset`` run it for one user with ``self.np_random``
    (Gymnasium style), ``step_batch``/``reset_batch`` for many users with the generator given, so
    the two draw exactly the same numbers from the same generator state. The exact truth of the
    tables (``policy_value``, ``optimal_policy``, ...) is computed by :mod:`hfrl.envs.exact`.

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
        self._transition_keys: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
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
        """Probability that the episode ends after ``(s, a)``; see :func:`exact.termination_probability`."""
        return exact.termination_probability(self)

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

    # ------------------------------------------------------------------ exact truth (hfrl.envs.exact)
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

    def state_values(self, policy: Any, gamma: float) -> np.ndarray:
        """Exact ``V_pi(s)`` of every state; see :func:`hfrl.envs.exact.state_values`."""
        return exact.state_values(self, policy, gamma)

    def policy_value(self, policy: Any, gamma: float) -> float:
        """Exact discounted return of ``policy`` from the start; see :func:`hfrl.envs.exact.policy_value`."""
        return exact.policy_value(self, policy, gamma)

    def q_values(self, policy: Any, gamma: float) -> np.ndarray:
        """Exact ``Q_pi(s, a)``; see :func:`hfrl.envs.exact.q_values`."""
        return exact.q_values(self, policy, gamma)

    def optimal_q(self, gamma: float, *, tol: float = 1e-10, max_iter: int = 100_000,
                  patience: int = 10) -> np.ndarray:
        """Optimal ``Q*(s, a)``; see :func:`hfrl.envs.exact.optimal_q`."""
        return exact.optimal_q(self, gamma, tol=tol, max_iter=max_iter, patience=patience)

    def optimal_policy(self, gamma: float, *, tol: float = 1e-10) -> TabularPolicy:
        """A deterministic optimal policy; see :func:`hfrl.envs.exact.optimal_policy`."""
        return exact.optimal_policy(self, gamma, tol=tol)

    def optimal_value(self, gamma: float) -> float:
        """Exact value of ``optimal_policy(gamma)``; see :func:`hfrl.envs.exact.optimal_value`."""
        return exact.optimal_value(self, gamma)

    def truncation_error_bound(self, gamma: float, max_steps: int) -> float:
        """Bound on the effect of a time limit; see :func:`hfrl.envs.exact.truncation_error_bound`."""
        return exact.truncation_error_bound(self, gamma, max_steps)

    # ------------------------------------------------------------------ the sampler
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
        return self._sample_initial(int(n), resolve_rng(rng))

    def step_batch(
        self, states: Any, actions: Any, rng: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``len(states)`` independent users at once.

        Returns ``(rewards, next_states, terminated)``; ``next_states`` of terminated users are
        valid ids but carry no meaning.
        """
        s = self._check_ids(np.asarray(states).reshape(-1), self._n_states, "state")
        a = self._check_batch_actions(actions, s.shape[0])
        return self._sample_step(s, a, resolve_rng(rng))

    def _check_batch_actions(self, actions: Any, n: int) -> np.ndarray:
        a = self._check_ids(np.asarray(actions).reshape(-1), self._n_actions, "action")
        if a.shape[0] != n:
            raise ValueError(f"states and actions differ in length: {n} vs {a.shape[0]}")
        return a

    # The sampler proper: ``_sample_initial`` and ``_sample_step`` (overridden together by
    # subclasses with a generative model) are the only source of randomness of every API. They are
    # elementwise numpy code: the batch API passes arrays of shape (n,), ``reset``/``step`` pass
    # numpy scalars (shape ()), for which the same operations run at scalar speed. ``size`` below
    # is the shape of the draws, None for one user (``rng.random(None)`` is a float).
    def _sample_initial(self, n: int | None, rng: np.random.Generator) -> Any:
        """``n`` start states from ``initial_distribution()`` (one when ``n`` is None): one draw each."""
        if self._initial_cdf is None:
            cdf = np.cumsum(self.initial_distribution())
            cdf[-1] = np.inf
            self._initial_cdf = cdf
        return self._initial_cdf.searchsorted(rng.random(n), side="right")

    def _sample_step(self, states: Any, actions: Any, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        """Rewards (the noise draws), then next states / terminations (one uniform draw each)."""
        flat = states * self._n_actions + actions
        size = flat.shape or None
        return (self._sample_rewards(flat, size, rng),) + self._sample_next(states, flat, size, rng)

    def _sample_rewards(self, flat: Any, size: tuple[int, ...] | None, rng: np.random.Generator) -> Any:
        if self._reward_noise == "bernoulli":
            assert self._success is not None and self._scale is not None
            return self._scale.ravel()[flat] * (rng.random(size) < self._success.ravel()[flat])
        mean = self.reward_matrix().ravel()[flat]
        if self._reward_noise == "gaussian":
            assert self._std is not None
            return mean + self._std.ravel()[flat] * rng.standard_normal(size)
        return mean

    def _transition_sampler(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``P``'s entries as one running sum, with each row's offset and end, and the targets."""
        if self._transition_keys is None:
            matrix = self.transition_matrix()
            cumulative = np.cumsum(matrix.data)
            row_offset = np.concatenate(([0.0], cumulative))[matrix.indptr[:-1]]
            self._transition_keys = (cumulative, row_offset, matrix.indptr[1:].astype(np.int64),
                                     matrix.indices.astype(np.int64))
        return self._transition_keys

    def _sample_next(self, states: Any, flat: Any, size: tuple[int, ...] | None, rng: np.random.Generator
                     ) -> tuple[Any, Any]:
        cumulative, row_offset, row_end, targets = self._transition_sampler()
        u = rng.random(size)
        if cumulative.size == 0:
            return states.copy(), np.ones(states.shape, dtype=bool)
        # Inverse-CDF sampling within row ``flat`` as one search over the running sum of all rows:
        # the first entry whose cumulative mass exceeds ``offset + u`` is the next state, and
        # running past the row's end means the episode ends (the row's missing mass). Rounding
        # of the running sum shifts probabilities by ~1e-16 x (number of rows) at most.
        position = _search_right(cumulative, row_offset[flat] + u)
        continues = position < row_end[flat]
        reached = targets[np.minimum(position, targets.size - 1)]
        return states + (reached - states) * continues, ~continues

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Start an episode; the first state is drawn from ``initial_distribution()``."""
        super().reset(seed=seed)
        self._state = int(self._sample_initial(None, self.np_random))
        self._last_action = None
        self._last_reward = 0.0
        return self._state, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Take ``action`` in the current state; returns ``(obs, reward, terminated, False, info)``.

        The sampler of ``step_batch`` run for one user, drawing from ``self.np_random``.
        """
        self._check_action(action)
        actions = np.asarray(action, dtype=np.intp)[()]  # a numpy scalar (a slate stays an array)
        reward, next_state, terminated = self._sample_step(np.intp(self._state), actions, self.np_random)
        self._last_action = actions.tolist()
        self._last_reward = float(reward)
        self._state = int(next_state)  # on termination: a valid id, the last state seen
        return self._state, self._last_reward, bool(terminated), False, {}

    def _check_action(self, action: Any) -> None:
        """Raise unless ``action`` is in the action space (a plain int in range passes at once)."""
        discrete = type(self.action_space) is spaces.Discrete
        if discrete and type(action) is int and 0 <= action < self._n_actions:
            return
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")

    def render(self) -> str | None:
        """ANSI text: the decoded state and the last action/reward."""
        if self.render_mode != "ansi":
            return None
        state = self.decode_state(self._state)
        return f"state {state} last action {self._last_action} reward {self._last_reward:g}\n"


def _search_right(cumulative: np.ndarray, target: Any) -> Any:
    """``np.searchsorted(cumulative, target, side="right")``, a batch searched in sorted order.

    The result is the same; sorted targets make successive binary searches touch nearby memory,
    3-6x faster than random order once ``cumulative`` outgrows the CPU caches.
    """
    if not target.shape:
        return cumulative.searchsorted(target, side="right")
    order = target.argsort()
    position = np.empty_like(order)
    position[order] = cumulative.searchsorted(target[order], side="right")
    return position


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
