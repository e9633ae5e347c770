"""Small bandit problems with exact ground truth, for tests, benchmarks and examples.

``BernoulliBandit`` follows the hfrl env contract (``n_states``, ``n_actions``, ``reward_matrix()``,
``reset_batch``/``step_batch``, ``policy_value``) and is a Gymnasium env, so every learner in
``hfrl.learners`` runs on it. Each round is a one-step episode: a user arrives in a state drawn
from ``state_distribution``, receives one action, and leaves.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hfrl.policies import TabularPolicy

__all__ = ["BernoulliBandit"]


class BernoulliBandit(gym.Env):
    """Arms paying 1 with probability ``means[s, a]`` (0 otherwise), optionally per state.

    Parameters
    ----------
    means : array-like of shape (n_actions,) or (n_states, n_actions)
        Success probability of each arm (in each state), in [0, 1].
    state_distribution : array-like of shape (n_states,), optional
        Probability of each state at the start of a round; uniform by default.

    Examples
    --------
    >>> import numpy as np
    >>> env = BernoulliBandit([0.1, 0.9])
    >>> rewards, next_states, terminated = env.step_batch(np.zeros(4, int), np.ones(4, int),
    ...                                                   np.random.default_rng(0))
    >>> bool(terminated.all()), env.optimal_value()
    (True, 0.9)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, means: Any, state_distribution: Any = None) -> None:
        table = np.atleast_2d(np.asarray(means, dtype=np.float64))
        if table.ndim != 2 or table.size == 0:
            raise ValueError(f"means must be 1-D or 2-D and non-empty, got shape {table.shape}")
        if not np.all((table >= 0) & (table <= 1)):
            raise ValueError("means must be probabilities in [0, 1]")
        self.means = table
        self.n_states, self.n_actions = table.shape
        if state_distribution is None:
            distribution = np.full(self.n_states, 1.0 / self.n_states)
        else:
            distribution = np.asarray(state_distribution, dtype=np.float64)
            if distribution.shape != (self.n_states,) or np.any(distribution < 0) or not np.isclose(
                distribution.sum(), 1.0
            ):
                raise ValueError(f"state_distribution must be {self.n_states} probabilities summing to 1")
        self.state_distribution = distribution
        self._cdf = np.cumsum(distribution)
        self._cdf[-1] = 1.0
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(self.n_actions)
        self._state = 0

    # ------------------------------------------------------------------ exact model
    def reward_matrix(self) -> np.ndarray:
        """Expected reward of every (state, action): the success probabilities."""
        return self.means.copy()

    def expected_reward(self, state: int, action: int) -> float:
        return float(self.means[state, action])

    def initial_distribution(self) -> np.ndarray:
        return self.state_distribution.copy()

    def policy_value(self, policy: TabularPolicy, gamma: float = 0.0) -> float:
        """Expected reward per round of ``policy`` (rounds are one-step episodes)."""
        return float(self.state_distribution @ (policy.table_ * self.means).sum(axis=1))

    def optimal_value(self) -> float:
        return float(self.state_distribution @ self.means.max(axis=1))

    # ------------------------------------------------------------------ batch API
    def reset_batch(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.n_states == 1:
            return np.zeros(n, dtype=np.intp)
        return np.searchsorted(self._cdf, rng.random(n), side="right").astype(np.intp)

    def step_batch(self, states: np.ndarray, actions: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.means.reshape(-1).take(states * self.n_actions + actions)
        rewards = (rng.random(p.shape[0]) < p).astype(np.float64)
        return rewards, self.reset_batch(p.shape[0], rng), np.ones(p.shape[0], dtype=bool)

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = int(self.reset_batch(1, self.np_random)[0])
        return self._state, {}

    def step(self, action: Any):
        reward = float(self.np_random.random() < self.means[self._state, int(action)])
        self._state = int(self.reset_batch(1, self.np_random)[0])
        return self._state, reward, True, False, {}
