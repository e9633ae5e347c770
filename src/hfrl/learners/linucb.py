"""LinUCB (Li et al., 2010, disjoint model): a ridge regression per arm plus an optimism bonus.

For context features x and each arm a, with A_a = ridge * I + sum x x^T and b_a = sum r x:

    theta_a = A_a^-1 b_a
    a_t     = argmax_a  theta_a . x + alpha * sqrt(x^T A_a^-1 x)

One update keeps A_a^-1 current with the Sherman-Morrison identity (O(d^2), no inversion):

    A_a^-1 <- A_a^-1 - (A_a^-1 x)(A_a^-1 x)^T / (1 + x^T A_a^-1 x)

Contexts are rows of a state-feature table (``features=``, the policy is then a table over env
states) or raw feature vectors, as ``hfrl/ContextualRecommendation-v0`` gives them (the policy is
then a ``LinearPolicy`` over the features, for users never seen).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.contextual import LinearPolicy
from hfrl.errors import NotFittedError
from hfrl.learners._common import (
    CurveRecorder,
    batch_env,
    check_feedback,
    check_in_range,
    check_policy_options,
    check_positive_int,
    served_policy,
)
from hfrl.learners._contextual import contextual_env, served_options
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["LinUCB"]


class LinUCB:
    """Contextual bandit with linear reward models and upper-confidence exploration.

    Parameters
    ----------
    alpha : float, default 1.0
        Width of the confidence bonus.
    ridge : float, default 1.0
        Ridge penalty (prior precision) of every arm's regression.
    features : array-like of shape (n_states, n_features), optional
        Feature vector of each env state; needed for ``fit(env, ...)`` and ``policy_`` and lets
        ``select``/``update`` take a state id as context. Without it, contexts are vectors.
    n_actions, n_features : int, optional
        Needed before ``select``/``update`` when ``fit`` has not been called.
    n_envs : int, default 1
        Users served per round in ``fit(env, n_steps=)``.
    fit_intercept : bool, optional
        Append a constant feature (a per-arm intercept, the last column of ``theta_``). Default:
        True on a contextual env (raw features), False otherwise (features used as given).
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from the estimated rewards ``features @ theta_.T``
        (``TabularPolicy.from_q_values``, or a ``LinearPolicy`` of that kind on raw contexts).
        Greedy decisions have propensity 1, so logs of them cannot evaluate any other policy;
        the two stochastic kinds keep every arm possible.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1].
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in reward units.
    random_state : int, Generator or None

    Attributes
    ----------
    theta_ : ndarray of shape (n_actions, n_features (+ 1 with an intercept))
    covariance_inverse_ : ndarray of shape (n_actions, n_features (+ 1), n_features (+ 1))
    policy_ : TabularPolicy or LinearPolicy
        ``policy`` over ``features @ theta_.T`` with ``features``; else a ``LinearPolicy`` over raw
        contexts (named ``context_columns_`` after a contextual env fit).

    Examples
    --------
    >>> import numpy as np
    >>> bandit = LinUCB(alpha=0.5, n_actions=2, n_features=2)
    >>> for _ in range(50):
    ...     for x in ([1.0, 0.0], [0.0, 1.0]):
    ...         arm = bandit.select(x)
    ...         bandit.update(arm, float(arm == int(x[1])), x)
    >>> bandit.select([1.0, 0.0]), bandit.select([0.0, 1.0])
    (0, 1)
    """

    def __init__(self, alpha: float = 1.0, ridge: float = 1.0, *, features: Any = None,
                 n_actions: int | None = None, n_features: int | None = None, n_envs: int = 1,
                 fit_intercept: bool | None = None, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.alpha = alpha
        self.ridge = ridge
        self.features = features
        self.n_actions = n_actions
        self.n_features = n_features
        self.n_envs = n_envs
        self.fit_intercept = fit_intercept
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    # ------------------------------------------------------------------ state
    def _check_exploration(self) -> None:
        self._alpha = check_in_range("alpha", self.alpha, 0.0, float("inf"))

    def _initialise(self, n_actions: int, n_features: int, *, intercept: bool = False) -> None:
        self._check_exploration()
        self._ridge = check_in_range("ridge", self.ridge, 0.0, float("inf"), low_open=True)
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        n_actions = check_positive_int("n_actions", n_actions)
        n_features = check_positive_int("n_features", n_features)
        if self.fit_intercept is not None:
            if not isinstance(self.fit_intercept, (bool, np.bool_)):
                raise ValueError(f"fit_intercept must be True, False or None, got {self.fit_intercept!r}")
            intercept = bool(self.fit_intercept)
        self._features = None
        if self.features is not None:
            features = np.asarray(self.features, dtype=np.float64)
            if features.ndim != 2 or features.shape[1] != n_features or not np.isfinite(features).all():
                raise ValueError(f"features must be a finite (n_states, {n_features}) array, "
                                 f"got shape {features.shape}")
            self._features = features
        self.n_actions_, self.n_features_, self.intercept_ = n_actions, n_features, intercept
        dim = n_features + intercept
        self.covariance_ = np.broadcast_to(self._ridge * np.eye(dim), (n_actions, dim, dim)).copy()
        self.covariance_inverse_ = np.broadcast_to(np.eye(dim) / self._ridge, (n_actions, dim, dim)).copy()
        self.response_ = np.zeros((n_actions, dim))
        self.theta_ = np.zeros((n_actions, dim))
        self.counts_ = np.zeros(n_actions)
        self.context_columns_: list[str] | None = None
        self._rng = resolve_rng(self.random_state)

    def _design(self, contexts: np.ndarray) -> np.ndarray:
        """Contexts with the constant feature appended when the model has an intercept."""
        if not self.intercept_:
            return contexts
        return np.hstack([contexts, np.ones((contexts.shape[0], 1))])

    def _ensure_initialised(self) -> None:
        if getattr(self, "theta_", None) is not None:
            return
        n_features = self.n_features
        if n_features is None and self.features is not None:
            n_features = np.asarray(self.features).shape[1]
        if self.n_actions is None or n_features is None:
            raise NotFittedError("LinUCB has no arms yet: pass n_actions= and n_features= (or features=) "
                                 "to the constructor, or call fit(...) first")
        self._initialise(self.n_actions, n_features)

    def _context(self, context: Any) -> np.ndarray:
        if self._features is not None and np.ndim(context) == 0 and context is not None:
            s = int(context)
            if s != context or not 0 <= s < self._features.shape[0]:
                raise ValueError(f"context must be a state id in [0, {self._features.shape[0]}) "
                                 f"or a feature vector, got {context!r}")
            return self._features[s]
        x = np.asarray(context, dtype=np.float64)
        if x.shape != (self.n_features_,) or not np.isfinite(x).all():
            raise ValueError(f"context must be a finite feature vector of length {self.n_features_}, "
                             f"got {context!r}")
        return np.append(x, 1.0) if self.intercept_ else x

    # ------------------------------------------------------------------ one decision at a time
    def _exploration(self, width: np.ndarray) -> np.ndarray:
        """The bonus added to the estimated rewards, from the confidence widths ``sqrt(x^T A^-1 x)``."""
        return self._alpha * width

    def select(self, context: Any) -> int:
        """The arm with the highest upper confidence bound for ``context``."""
        self._ensure_initialised()
        x = self._context(context)
        spread = self.covariance_inverse_ @ x  # (n_actions, n_features)
        scores = self.theta_ @ x + self._exploration(np.sqrt(spread @ x))
        return int(scores.argmax())

    def update(self, action: int, reward: float, context: Any) -> None:
        """Add one observation to arm ``action``'s regression (Sherman-Morrison, O(d^2))."""
        self._ensure_initialised()
        x = self._context(context)
        a, r = check_feedback(action, reward, self.n_actions_)
        inverse = self.covariance_inverse_[a]
        spread = inverse @ x
        inverse -= np.outer(spread, spread) / (1.0 + x @ spread)
        self.covariance_[a] += np.outer(x, x)
        self.response_[a] += r * x
        self.theta_[a] = inverse @ self.response_[a]
        self.counts_[a] += 1.0

    # ------------------------------------------------------------------ batches
    def _select_batch(self, design: np.ndarray) -> np.ndarray:
        """Arms for rows of ``design`` (contexts with the intercept column, if any).

        The squared widths ``x^T A_a^-1 x`` of all arms are one matrix product: the upper
        triangle of ``x x^T`` (one row per context) times that of every ``A_a^-1`` (off-diagonal
        entries counted twice), ``(n, d(d+1)/2) @ (d(d+1)/2, n_actions)``.
        """
        upper, lower = np.triu_indices(design.shape[1])
        packed = self.covariance_inverse_[:, upper, lower] * np.where(upper == lower, 1.0, 2.0)
        step = max(1, 4_000_000 // self.theta_.shape[0])
        chosen = np.empty(design.shape[0], dtype=np.intp)
        for start in range(0, design.shape[0], step):
            x = design[start: start + step]
            width = np.sqrt(np.maximum((x[:, upper] * x[:, lower]) @ packed.T, 0.0))
            chosen[start: start + step] = (x @ self.theta_.T + self._exploration(width)).argmax(axis=1)
        return chosen

    def _update_batch(self, design: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        order = np.argsort(actions, kind="stable")
        touched, starts = np.unique(actions[order], return_index=True)
        for a, rows in zip(touched, np.split(order, starts[1:]), strict=True):
            block = design[rows]
            self.covariance_[a] += block.T @ block
            self.response_[a] += rewards[rows] @ block
            self.counts_[a] += rows.shape[0]
        self.covariance_inverse_[touched] = np.linalg.inv(self.covariance_[touched])
        self.theta_[touched] = np.einsum("kde,ke->kd", self.covariance_inverse_[touched],
                                         self.response_[touched])

    def partial_fit(self, actions: Any, rewards: Any, contexts: Any) -> LinUCB:
        """Add logged decisions: arms, rewards and their (n, n_features) contexts (or state ids)."""
        self._ensure_initialised()
        actions_arr = np.asarray(actions)
        rewards_arr = np.asarray(rewards, dtype=np.float64)
        contexts_arr = np.asarray(contexts)
        if contexts_arr.ndim == 1 and self._features is not None:
            contexts_arr = self._features[contexts_arr.astype(np.intp)]
        contexts_arr = np.asarray(contexts_arr, dtype=np.float64)
        n = actions_arr.shape[0] if actions_arr.ndim == 1 else -1
        if (n < 0 or rewards_arr.shape != (n,) or contexts_arr.shape != (n, self.n_features_)):
            raise ValueError(f"expected actions (n,), rewards (n,) and contexts (n, {self.n_features_}); "
                             f"got {actions_arr.shape}, {rewards_arr.shape}, {contexts_arr.shape}")
        if actions_arr.dtype.kind not in "iu" or (actions_arr < 0).any() or (
                actions_arr >= self.n_actions_).any():
            raise ValueError(f"actions must be arm ids in [0, {self.n_actions_})")
        if not (np.isfinite(rewards_arr).all() and np.isfinite(contexts_arr).all()):
            raise ValueError("rewards and contexts must be finite")
        self._update_batch(self._design(contexts_arr), actions_arr.astype(np.intp), rewards_arr)
        return self

    def fit(self, env_or_actions: Any, rewards: Any = None, contexts: Any = None, *,
            n_steps: int | None = None) -> LinUCB:
        """Learn from an env (``fit(env, n_steps=)``, needs ``features``) or from logged arrays.

        Returns
        -------
        self
            After an env fit also ``learning_curve_`` (``step``, ``mean_reward``) and
            ``policy_``.
        """
        base = getattr(env_or_actions, "unwrapped", env_or_actions)
        if hasattr(base, "step_batch"):
            if n_steps is None:
                raise ValueError("fit(env, n_steps=) needs n_steps")
            n_steps = check_positive_int("n_steps", n_steps)
            if hasattr(base, "context_dim"):
                return self._fit_contextual_env(contextual_env(base), n_steps)
            return self._fit_env(batch_env(env_or_actions), n_steps)
        if rewards is None or contexts is None:
            raise ValueError("fit(actions, rewards, contexts) needs all three, or an env with n_steps=")
        actions_arr = np.asarray(env_or_actions)
        contexts_arr = np.asarray(contexts)
        n_features = (contexts_arr.shape[1] if contexts_arr.ndim == 2
                      else np.asarray(self.features).shape[1] if self.features is not None else 1)
        n_actions = self.n_actions if self.n_actions is not None else int(actions_arr.max()) + 1
        self._initialise(n_actions, n_features)
        return self.partial_fit(actions_arr, rewards, contexts_arr)

    def _fit_env(self, base: Any, n_steps: int) -> LinUCB:
        if self.features is None:
            raise ValueError("fit(env, ...) needs features= (one feature vector per env state)")
        features = np.asarray(self.features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] != int(base.n_states):
            raise ValueError(f"features must have one row per env state ({int(base.n_states)}), "
                             f"got shape {features.shape}")
        self._initialise(int(base.n_actions), features.shape[1])
        n_envs = check_positive_int("n_envs", self.n_envs)
        curve = CurveRecorder(n_steps)
        states = np.asarray(base.reset_batch(n_envs, self._rng), dtype=np.intp)
        done = 0
        while done < n_steps:
            states = states[: n_steps - done]
            if states.shape[0] == 1:
                actions = np.array([self.select(int(states[0]))], dtype=np.intp)
            else:
                actions = self._select_batch(self._design(features[states]))
            rewards, next_states, terminated = base.step_batch(states, actions, self._rng)
            rewards = np.asarray(rewards, dtype=np.float64)
            if states.shape[0] == 1:
                self.update(int(actions[0]), float(rewards[0]), int(states[0]))
            else:
                self._update_batch(self._design(features[states]), actions, rewards)
            done += states.shape[0]
            curve.add(float(rewards.sum()), states.shape[0])
            next_states = np.asarray(next_states, dtype=np.intp).copy()
            terminated = np.asarray(terminated, dtype=bool)
            if terminated.any():
                next_states[terminated] = base.reset_batch(int(terminated.sum()), self._rng)
            states = next_states
        self.learning_curve_ = curve.frame()
        return self

    def _fit_contextual_env(self, base: Any, n_steps: int) -> LinUCB:
        """Serve ``n_envs`` users of a contextual env per round, learning after every round."""
        if self.features is not None:
            raise ValueError("features= is for tabular envs; a contextual env gives the feature vectors")
        self._initialise(int(base.n_actions), int(base.context_dim), intercept=True)
        self.context_columns_ = list(base.context_columns)
        n_envs = check_positive_int("n_envs", self.n_envs)
        curve = CurveRecorder(n_steps)
        contexts = np.asarray(base.reset_batch(n_envs, self._rng), dtype=np.float64)
        done = 0
        while done < n_steps:
            contexts = contexts[: n_steps - done]
            design = self._design(contexts)
            actions = self._select_batch(design)
            rewards, following, terminated = base.step_batch(contexts, actions, self._rng)
            self._update_batch(design, actions, np.asarray(rewards, dtype=np.float64))
            done += contexts.shape[0]
            curve.add(float(np.sum(rewards)), contexts.shape[0])
            terminated = np.asarray(terminated, dtype=bool)
            if terminated.any():
                following[terminated] = base.reset_batch(int(terminated.sum()), self._rng)
            contexts = following
        self.learning_curve_ = curve.frame()
        return self

    @property
    def policy_(self) -> TabularPolicy | LinearPolicy:
        """The ``policy`` kind (greedy by default): a table over env states with ``features``, else a
        ``LinearPolicy`` over raw contexts."""
        if getattr(self, "theta_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")
        if self._features is not None:
            return served_policy(self, self._design(self._features) @ self.theta_.T)
        weights = self.theta_[:, : self.n_features_]
        bias = self.theta_[:, -1] if self.intercept_ else None
        return LinearPolicy(weights, bias, context_columns=self.context_columns_, **served_options(self),
                            metadata={"learner": type(self).__name__})
