"""What the tabular bandits share: per-(state, arm) statistics, fitting, one-decision updates.

A tabular bandit keeps, for every state (context id; 1 state = a plain multi-armed bandit) and
arm, the number of pulls and the sum of rewards (and of squared rewards). Three ways to feed it:

* ``fit(env, n_steps=)``: interact with an env (``n_envs`` users per round through its batch
  API); records the learning curve and, when the env knows its expected rewards, the regret.
* ``fit(actions, rewards, states=None)`` / ``partial_fit``: batch updates from logged arrays,
  one ``bincount`` per statistic.
* ``select(context)`` / ``update(action, reward, context)``: one decision at a time, as a live
  service does. These touch numpy scalars in preallocated arrays and draw their uniforms from a
  prefilled buffer, so a call allocates nothing proportional to the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.errors import NotFittedError
from hfrl.learners._common import (
    CurveRecorder,
    batch_env,
    check_feedback,
    check_policy_options,
    check_positive_int,
    expected_rewards,
    served_policy,
)
from hfrl.policies import TabularPolicy, resolve_rng

_BUFFER = 4096


class TabularBandit:
    """Base of ``EpsilonGreedy``, ``UCB1`` and ``ThompsonSampling``."""

    def __init__(self, *, n_actions: int | None = None, n_states: int = 1, n_envs: int = 1,
                 policy: str = "greedy", policy_epsilon: float = 0.1, policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.n_actions = n_actions
        self.n_states = n_states
        self.n_envs = n_envs
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    # ------------------------------------------------------------------ algorithm hooks
    def _select_one(self, s: int) -> int:
        raise NotImplementedError

    def _select_batch(self, states: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_params(self) -> None:
        """Validate the algorithm's own hyper-parameters (raise ValueError naming them)."""

    # ------------------------------------------------------------------ state
    def _initialise(self, n_states: int, n_actions: int) -> None:
        self._check_params()
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        n_states = check_positive_int("n_states", n_states)
        n_actions = check_positive_int("n_actions", n_actions)
        self.n_states_, self.n_actions_ = n_states, n_actions
        self.counts_ = np.zeros((n_states, n_actions))
        self.reward_sums_ = np.zeros((n_states, n_actions))
        self.reward_squares_ = np.zeros((n_states, n_actions))
        self.means_ = np.zeros((n_states, n_actions))
        self.decisions_ = np.zeros(n_states)
        self._rng = resolve_rng(self.random_state)
        self._uniforms = self._rng.random(_BUFFER)
        self._next_uniform = 0
        # flat views: one index per (s, a) for the scalar path
        self._counts_flat = self.counts_.reshape(-1)
        self._sums_flat = self.reward_sums_.reshape(-1)
        self._squares_flat = self.reward_squares_.reshape(-1)
        self._means_flat = self.means_.reshape(-1)

    def _ensure_initialised(self) -> None:
        if getattr(self, "counts_", None) is None:
            if self.n_actions is None:
                raise NotFittedError(
                    f"this {type(self).__name__} has no arms yet: pass n_actions= to the constructor "
                    f"or call fit(...) first"
                )
            self._initialise(self.n_states, self.n_actions)

    def _uniform(self) -> float:
        i = self._next_uniform
        if i == _BUFFER:
            self._uniforms = self._rng.random(_BUFFER)
            i = 0
        self._next_uniform = i + 1
        return float(self._uniforms[i])

    def _state_of(self, context: Any) -> int:
        if context is None:
            if self.n_states_ != 1:
                raise ValueError(f"context (a state id in [0, {self.n_states_})) is required")
            return 0
        s = int(context)
        if s != context or not 0 <= s < self.n_states_:
            raise ValueError(f"context must be a state id in [0, {self.n_states_}), got {context!r}")
        return s

    # ------------------------------------------------------------------ one decision at a time
    def select(self, context: Any = None) -> int:
        """Choose an arm for one decision in state ``context`` (None for a context-free bandit)."""
        self._ensure_initialised()
        return self._select_one(self._state_of(context))

    def update(self, action: int, reward: float, context: Any = None) -> None:
        """Record the reward of one decision; O(1), no allocation."""
        self._ensure_initialised()
        s = self._state_of(context)
        a, r = check_feedback(action, reward, self.n_actions_)
        self._check_reward_one(r)
        i = s * self.n_actions_ + a
        n = self._counts_flat[i] + 1.0
        self._counts_flat[i] = n
        self._sums_flat[i] += r
        self._squares_flat[i] += r * r
        self._means_flat[i] += (r - self._means_flat[i]) / n
        self.decisions_[s] += 1.0

    def _check_reward_one(self, reward: float) -> None:
        """Algorithm-specific reward domain check (Beta-Bernoulli needs [0, 1])."""

    def _check_rewards(self, rewards: np.ndarray) -> None:
        """Vectorised counterpart of ``_check_reward_one``."""

    # ------------------------------------------------------------------ batches
    def partial_fit(self, actions: Any, rewards: Any, states: Any = None) -> TabularBandit:
        """Add logged decisions (arrays) to the statistics; returns self."""
        self._ensure_initialised()
        states_arr, actions_arr, rewards_arr = self._validate_arrays(actions, rewards, states)
        self._update_batch(states_arr, actions_arr, rewards_arr)
        return self

    def fit(self, env_or_actions: Any, rewards: Any = None, states: Any = None, *,
            n_steps: int | None = None) -> TabularBandit:
        """Learn from an env (``fit(env, n_steps=)``) or from logged arrays (``fit(actions, rewards)``).

        Parameters
        ----------
        env_or_actions : env or array-like of int
            An hfrl env (batch API), or the arm chosen in each logged decision.
        rewards : array-like of float, optional
            The logged rewards (with ``actions``).
        states : array-like of int, optional
            The logged state ids (with ``actions``); all 0 when omitted.
        n_steps : int, optional
            Decisions to take against the env.

        Returns
        -------
        self
            With ``counts_``, ``means_``, ``policy_`` (``policy`` over ``means_``) and, after an env fit,
            ``learning_curve_`` (``step``, ``mean_reward`` and, when the env knows its expected
            rewards, ``cumulative_regret``) and ``regret_``.
        """
        if hasattr(getattr(env_or_actions, "unwrapped", env_or_actions), "step_batch"):
            if rewards is not None or states is not None:
                raise ValueError("fit(env, n_steps=) takes no rewards/states arrays")
            if n_steps is None:
                raise ValueError("fit(env, n_steps=) needs n_steps")
            return self._fit_env(env_or_actions, check_positive_int("n_steps", n_steps))
        if rewards is None:
            raise ValueError("fit(actions, rewards) needs rewards, or pass an env with n_steps=")
        actions_arr = np.asarray(env_or_actions)
        n_actions = self.n_actions if self.n_actions is not None else int(actions_arr.max()) + 1
        n_states = self.n_states
        if states is not None and self.n_states == 1:
            n_states = int(np.asarray(states).max()) + 1
        self._initialise(n_states, n_actions)
        return self.partial_fit(actions_arr, rewards, states)

    def _validate_arrays(self, actions: Any, rewards: Any, states: Any):
        actions_arr = np.asarray(actions)
        rewards_arr = np.asarray(rewards, dtype=np.float64)
        if actions_arr.ndim != 1 or rewards_arr.shape != actions_arr.shape:
            raise ValueError(f"actions and rewards must be 1-D of one length, got shapes "
                             f"{actions_arr.shape} and {rewards_arr.shape}")
        states_arr = (np.zeros(actions_arr.shape[0], dtype=np.intp) if states is None
                      else np.asarray(states))
        if states_arr.shape != actions_arr.shape:
            raise ValueError(f"states must match actions in shape, got {states_arr.shape}")
        for name, values, upper in (("actions", actions_arr, self.n_actions_),
                                    ("states", states_arr, self.n_states_)):
            if values.dtype.kind not in "iu":
                raise ValueError(f"{name} must be integer ids, got dtype {values.dtype}")
            bad = (values < 0) | (values >= upper)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}: row {row} has {values[row]}, expected an id in [0, {upper}); "
                                 f"{int(bad.sum())} rows offend")
        bad = ~np.isfinite(rewards_arr)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"rewards: row {row} has {rewards_arr[row]}, expected a finite number")
        self._check_rewards(rewards_arr)
        return states_arr.astype(np.intp), actions_arr.astype(np.intp), rewards_arr

    def _update_batch(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        size = self.counts_.size
        index = states * self.n_actions_ + actions
        self._counts_flat += np.bincount(index, minlength=size)
        self._sums_flat += np.bincount(index, weights=rewards, minlength=size)
        self._squares_flat += np.bincount(index, weights=rewards * rewards, minlength=size)
        np.divide(self._sums_flat, self._counts_flat, out=self._means_flat,
                  where=self._counts_flat > 0)
        self.decisions_ += np.bincount(states, minlength=self.n_states_)

    def _fit_env(self, env: Any, n_steps: int) -> TabularBandit:
        base = batch_env(env)
        n_envs = check_positive_int("n_envs", self.n_envs)
        self._initialise(int(base.n_states), int(base.n_actions))
        truth = expected_rewards(base)
        best = truth.max(axis=1) if truth is not None else None
        curve = CurveRecorder(n_steps)
        regret = 0.0
        regret_points: list[float] = []
        states = np.asarray(base.reset_batch(n_envs, self._rng), dtype=np.intp)
        done = 0
        while done < n_steps:
            if states.shape[0] > n_steps - done:
                states = states[: n_steps - done]
            if states.shape[0] == 1:  # the sequential algorithm, exactly
                s = int(states[0])
                actions = np.array([self._select_one(s)], dtype=np.intp)
            else:
                actions = self._select_batch(states)
            rewards, next_states, terminated = base.step_batch(states, actions, self._rng)
            rewards = np.asarray(rewards, dtype=np.float64)
            if states.shape[0] == 1:
                self.update(int(actions[0]), float(rewards[0]), int(states[0]))
            else:
                self._update_batch(states, actions, rewards)
            done += states.shape[0]
            if best is not None:
                regret += float((best.take(states) - truth[states, actions]).sum())
            before = len(curve.steps)
            curve.add(float(rewards.sum()), states.shape[0])
            if len(curve.steps) > before:
                regret_points.append(regret)
            next_states = np.asarray(next_states, dtype=np.intp)
            terminated = np.asarray(terminated, dtype=bool)
            if terminated.any():
                next_states = next_states.copy()
                next_states[terminated] = base.reset_batch(int(terminated.sum()), self._rng)
            states = next_states
        before = len(curve.steps)
        self.learning_curve_ = curve.frame()
        if len(curve.steps) > before:
            regret_points.append(regret)
        if best is not None:
            self.learning_curve_["cumulative_regret"] = np.asarray(regret_points)
            self.regret_ = regret
        else:
            self.regret_ = None
        return self

    # ------------------------------------------------------------------ results
    @property
    def policy_(self) -> TabularPolicy:
        """The ``policy`` kind (greedy by default) over the estimated means (untried arms: 0)."""
        if getattr(self, "means_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")
        return served_policy(self, self.means_)
