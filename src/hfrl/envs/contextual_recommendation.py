"""ContextualRecommendation-v0: users known by their features, items by their embeddings."""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from hfrl.contextual import LinearPolicy
from hfrl.data import schema
from hfrl.policies import resolve_rng

__all__ = ["ContextualRecommendationEnv", "MonteCarloReturn", "collect_contextual_logs"]

# Rows per chunk of the exact truth are chosen so that one chunk holds about this many (user, item) cells.
_CHUNK_CELLS = 2_000_000
_LOG_START = pd.Timestamp("2026-01-01", tz="UTC")
MAX_ITEMS = 100_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class MonteCarloReturn(NamedTuple):
    """A seeded Monte Carlo estimate of a policy's expected (discounted) return per session."""

    value: float
    std_error: float
    n_episodes: int


class ContextualRecommendationEnv(gym.Env):
    """A shop whose users are feature vectors and whose items are embeddings.

    **Generative model** (every parameter drawn once from ``model_seed``).

    * **Users.** A user belongs to one of ``n_segments`` segments (probabilities
      ``segment_probabilities``) and has a profile ``p = centre[segment] + segment_spread * z``,
      ``z ~ N(0, I)``, of ``n_profile = context_dim - n_session`` features; centres are
      ``N(0, (1 - segment_spread^2) I)``, so every profile feature has variance about 1 across the
      population. The session interest ``s`` (``n_session`` features) starts at 0.
    * **Context** (the observation) ``x = [p, s]``, of ``context_dim`` features named
      ``context_columns`` (``user_0, ...``, ``session_0, ...``). It is the whole user state, so
      the one-step truth below is exact for any context.
    * **Items.** Item ``i`` has an embedding ``v_i ~ N(0, I)`` of ``item_dim`` features, a
      popularity bias ``b_i ~ N(bias_mean, bias_std^2)`` and a direction ``u_i``, the unit vector
      of ``B v_i`` (``B`` a fixed random ``(n_session, item_dim)`` map). Its feature vector is
      ``e_i = [taste_scale * A v_i / sqrt(n_profile), session_weight * u_i]`` with ``A`` a fixed
      ``(n_profile, item_dim)`` map of ``N(0, 1 / item_dim)`` entries.
    * **Purchase** of recommended item ``a`` ~ Bernoulli(``sigmoid(x . e_a + b_a)``); the reward is
      the purchase (0 or 1): ``expected_reward(x, a)`` is this probability, exactly.
    * **Session.** A purchase of ``a`` moves the interest toward the item:
      ``s <- (1 - session_rate) * s + session_rate * u_a`` (so similar items become likelier
      buys); without a purchase nothing changes. Then the user leaves (the episode terminates)
      with probability ``churn_probability``, independently of the purchase.

    The one-step optimum is linear: ``sigmoid`` is increasing, so the best item for ``x`` maximises
    ``x . e_a + b_a`` and ``optimal_policy()`` is a greedy ``LinearPolicy``. Session returns
    depend on the interest dynamics and are estimated by seeded Monte Carlo (``policy_return``),
    with their standard error. ``reset``/``step`` (Gymnasium, one user, ``self.np_random``) and
    ``reset_batch``/``step_batch`` (many users, a given generator) use one sampler.
    ``gymnasium.make`` adds a ``TimeLimit`` of 1,000 steps, negligible at the default churn.

    Parameters
    ----------
    n_items : int, default 1000
        Catalog size, up to 100,000.
    context_dim : int, default 32
        Features per context (at least 2).
    n_session : int, optional
        Session-interest features among them; default ``max(1, context_dim // 4)``.
    n_segments : int, default 8
    item_dim : int, default 16
    taste_scale : float, default 1.5
        Standard deviation of the profile part of the purchase logit across users and items.
    session_weight : float, default 1.0
        Largest logit bonus of the session interest.
    session_rate : float in [0, 1], default 0.5
    bias_mean, bias_std : float, default -3.0, 0.5
    segment_spread : float in [0, 1], default 0.5
    segment_probabilities : array-like of shape (n_segments,), optional
    churn_probability : float in (0, 1], default 0.1
    model_seed : int, default 0
    render_mode : {"ansi"}, optional

    Examples
    --------
    >>> import gymnasium as gym
    >>> import hfrl.envs
    >>> env = gym.make("hfrl/ContextualRecommendation-v0", n_items=50, context_dim=8)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, sorted(info)
    ((8,), ['segment'])
    >>> shop = env.unwrapped
    >>> contexts = shop.sample_contexts(1000, seed=1)
    >>> best = shop.policy_value(shop.optimal_policy(), contexts)
    >>> bool(best > shop.policy_value(shop.uniform_policy(), contexts))
    True
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, n_items: int = 1000, context_dim: int = 32, *, n_session: int | None = None,
                 n_segments: int = 8, item_dim: int = 16, taste_scale: float = 1.5,
                 session_weight: float = 1.0, session_rate: float = 0.5, bias_mean: float = -3.0,
                 bias_std: float = 0.5, segment_spread: float = 0.5, segment_probabilities: Any = None,
                 churn_probability: float = 0.1, model_seed: int = 0, render_mode: str | None = None) -> None:
        n_items, context_dim = _positive("n_items", n_items), _positive("context_dim", context_dim)
        if n_items > MAX_ITEMS:
            raise ValueError(f"n_items must be at most {MAX_ITEMS:,}, got {n_items:,}")
        if context_dim < 2:
            raise ValueError(f"context_dim must be >= 2 (profile and session features), got {context_dim}")
        n_session = max(1, context_dim // 4) if n_session is None else _positive("n_session", n_session)
        if n_session >= context_dim:
            raise ValueError(f"n_session must be < context_dim ({context_dim}), got {n_session}")
        n_segments, item_dim = _positive("n_segments", n_segments), _positive("item_dim", item_dim)
        for name, value, low, high in (("session_rate", session_rate, 0.0, 1.0),
                                       ("segment_spread", segment_spread, 0.0, 1.0),
                                       ("churn_probability", churn_probability, 1e-12, 1.0)):
            if not low <= float(value) <= high:
                raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
        for name, value in (("taste_scale", taste_scale), ("session_weight", session_weight),
                            ("bias_mean", bias_mean), ("bias_std", bias_std)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.n_items, self.context_dim, self.n_session = n_items, context_dim, n_session
        self.n_profile = context_dim - n_session
        self.n_segments, self.item_dim = n_segments, item_dim
        self.session_rate, self.churn_probability = float(session_rate), float(churn_probability)
        self.segment_spread, self.model_seed = float(segment_spread), model_seed
        self.render_mode = render_mode
        self.context_columns = ([f"user_{j}" for j in range(self.n_profile)]
                                + [f"session_{j}" for j in range(n_session)])

        rng = np.random.default_rng(model_seed)
        self.segment_centres = rng.normal(0.0, np.sqrt(1.0 - self.segment_spread ** 2),
                                          (n_segments, self.n_profile))
        if segment_probabilities is None:
            segment_probabilities = np.full(n_segments, 1.0 / n_segments)
        weights = np.asarray(segment_probabilities, dtype=np.float64)
        if weights.shape != (n_segments,) or (weights < 0).any() or abs(weights.sum() - 1.0) > 1e-6:
            raise ValueError(f"segment_probabilities must be {n_segments} non-negative numbers summing to 1")
        self.segment_probabilities = weights
        self.item_embeddings = rng.normal(0.0, 1.0, (n_items, item_dim))
        taste_map = rng.normal(0.0, 1.0 / np.sqrt(item_dim), (self.n_profile, item_dim))
        session_map = rng.normal(0.0, 1.0, (n_session, item_dim))
        directions = self.item_embeddings @ session_map.T
        lengths = np.linalg.norm(directions, axis=1, keepdims=True)
        self.item_directions = directions / np.maximum(lengths, 1e-12)
        self.item_bias = rng.normal(bias_mean, bias_std, n_items)
        self.item_features = np.hstack([
            taste_scale * self.item_embeddings @ taste_map.T / np.sqrt(self.n_profile),
            session_weight * self.item_directions,
        ])
        for array in (self.segment_centres, self.segment_probabilities, self.item_embeddings,
                      self.item_directions, self.item_bias, self.item_features):
            array.setflags(write=False)

        self.observation_space = spaces.Box(-np.inf, np.inf, (context_dim,), np.float64)
        self.action_space = spaces.Discrete(n_items)
        self._context: np.ndarray | None = None
        self._segment = 0
        self._last: tuple[int, float] | None = None

    # ------------------------------------------------------------------ shape
    @property
    def n_actions(self) -> int:
        return self.n_items

    # ------------------------------------------------------------------ the sampler
    def sample_users(self, n: int, random_state: int | np.random.Generator | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` new users at the start of a session: contexts ``(n, context_dim)`` and segments ``(n,)``."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        rng = resolve_rng(random_state)
        segments = np.minimum(np.searchsorted(np.cumsum(self.segment_probabilities), rng.random(int(n)),
                                              side="right"), self.n_segments - 1)
        contexts = np.zeros((int(n), self.context_dim))
        spread = self.segment_spread * rng.standard_normal((int(n), self.n_profile))
        contexts[:, : self.n_profile] = self.segment_centres[segments] + spread
        return contexts, segments.astype(np.int64)

    def sample_contexts(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Contexts ``(n, context_dim)`` of ``n`` users from the population, at the start of a session."""
        return self.sample_users(n, seed)[0]

    def reset_batch(self, n: int, rng: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` independent first contexts, ``(n, context_dim)`` (the batch API of the learners)."""
        return self.sample_contexts(n, rng)

    def step_batch(self, contexts: Any, actions: Any, rng: int | np.random.Generator | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``len(contexts)`` independent users: ``(rewards, next_contexts, terminated)``.

        ``next_contexts`` is a new array; rows of terminated users carry their last context.
        """
        x = self._check_contexts(contexts)
        a = self._check_actions(actions, x.shape[0])
        return self._sample_step(x, a, resolve_rng(rng))

    def _sample_step(self, contexts: np.ndarray, actions: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one sampler: a purchase draw, then a churn draw, per user."""
        bought = rng.random(actions.shape[0]) < self._expected_reward(contexts, actions)
        terminated = rng.random(actions.shape[0]) < self.churn_probability
        following = contexts.copy()
        interest = following[bought, self.n_profile:]
        following[bought, self.n_profile:] = ((1.0 - self.session_rate) * interest
                                              + self.session_rate * self.item_directions[actions[bought]])
        return bought.astype(np.float64), following, terminated

    # ------------------------------------------------------------------ exact one-step truth
    def _expected_reward(self, contexts: np.ndarray, actions: np.ndarray) -> np.ndarray:
        logits = np.einsum("nd,nd->n", contexts, self.item_features[actions]) + self.item_bias[actions]
        return _sigmoid(logits)

    def expected_reward(self, contexts: Any, actions: Any) -> np.ndarray:
        """Exact purchase probability of ``actions[i]`` for ``contexts[i]``, shape ``(n,)``."""
        x = self._check_contexts(contexts)
        return self._expected_reward(x, self._check_actions(actions, x.shape[0]))

    def expected_rewards(self, contexts: Any) -> np.ndarray:
        """Exact purchase probability of every item for every context, shape ``(n, n_items)``."""
        x = self._check_contexts(contexts)
        return _sigmoid(x @ self.item_features.T + self.item_bias)

    def _row_chunks(self, n: int) -> list[slice]:
        step = max(1, _CHUNK_CELLS // self.n_items)
        return [slice(start, min(n, start + step)) for start in range(0, n, step)]

    def policy_value(self, policy: Any, contexts: Any) -> float:
        """Exact one-step value of ``policy`` on ``contexts``: ``mean_i sum_a pi(a|x_i) r(x_i, a)``.

        ``policy.probabilities`` receives arrays of contexts in ``context_columns`` order, in
        chunks (never more than a few million (context, item) cells at once).
        """
        x = self._check_contexts(contexts)
        self._check_policy(policy)
        total = 0.0
        for rows in self._row_chunks(x.shape[0]):
            p = np.asarray(policy.probabilities(x[rows]), dtype=np.float64)
            total += float(np.einsum("na,na->", p, self.expected_rewards(x[rows])))
        return total / x.shape[0]

    def optimal_value(self, contexts: Any) -> float:
        """Exact one-step value of the best item for each context, averaged over ``contexts``."""
        x = self._check_contexts(contexts)
        return float(sum(self.expected_rewards(x[rows]).max(axis=1).sum()
                         for rows in self._row_chunks(x.shape[0])) / x.shape[0])

    def optimal_policy(self) -> LinearPolicy:
        """The one-step optimal policy: greedy on the purchase logit ``x . e_a + b_a`` (exact)."""
        return LinearPolicy(self.item_features, self.item_bias, context_columns=self.context_columns,
                            kind="greedy", metadata={"source": "ContextualRecommendationEnv.optimal_policy"})

    def uniform_policy(self) -> LinearPolicy:
        """Every item equally likely."""
        return LinearPolicy.uniform(self.n_items, self.context_dim, context_columns=self.context_columns)

    def logging_policy(self, *, temperature: float = 1.0, epsilon: float = 0.1, noise: float = 1.0,
                       seed: int = 0) -> LinearPolicy:
        """A known, imperfect logging policy: a softmax over noisy logits plus a uniform share.

        Its scores are the exact logits with every weight and bias perturbed by ``N(0, noise^2)``
        times its own scale (a shop whose model is off), ``temperature`` softens them and
        ``epsilon`` keeps every item possible (propensities >= ``epsilon / n_items``).
        """
        rng = np.random.default_rng(seed)
        weights = self.item_features * (1.0 + noise * rng.standard_normal(self.item_features.shape))
        bias = self.item_bias + noise * self.item_bias.std() * rng.standard_normal(self.n_items)
        return LinearPolicy(weights, bias, context_columns=self.context_columns, temperature=temperature,
                            epsilon=epsilon, metadata={"source": "ContextualRecommendationEnv.logging_policy",
                                                       "noise": noise, "seed": seed})

    def policy_return(self, policy: Any, *, gamma: float = 1.0, n_episodes: int = 10_000,
                      seed: int | np.random.Generator | None = 0, max_steps: int = 1000) -> MonteCarloReturn:
        """Expected (discounted) purchases per session under ``policy``, by seeded Monte Carlo.

        ``n_episodes`` sessions run side by side until they end (churn) or ``max_steps``; the
        result is their mean return and its standard error (sample standard deviation over
        ``sqrt(n_episodes)``).
        """
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        n_episodes, max_steps = _positive("n_episodes", n_episodes), _positive("max_steps", max_steps)
        self._check_policy(policy)
        rng = resolve_rng(seed)
        contexts = self.sample_contexts(n_episodes, rng)
        returns = np.zeros(n_episodes)
        alive = np.arange(n_episodes)
        discount = 1.0
        for _ in range(max_steps):
            actions, _ = policy.sample(contexts, rng)
            rewards, contexts, terminated = self._sample_step(contexts, np.asarray(actions, np.intp), rng)
            returns[alive] += discount * rewards
            discount *= gamma
            alive, contexts = alive[~terminated], contexts[~terminated]
            if alive.size == 0:
                break
        spread = returns.std(ddof=1) if n_episodes > 1 else float("nan")
        return MonteCarloReturn(float(returns.mean()), float(spread / np.sqrt(n_episodes)), n_episodes)

    # ------------------------------------------------------------------ checks
    def _check_contexts(self, contexts: Any) -> np.ndarray:
        if hasattr(contexts, "columns"):
            missing = [c for c in self.context_columns if c not in contexts.columns]
            if missing:
                raise ValueError(f"contexts lack the context columns {missing}")
            contexts = contexts[self.context_columns]
        x = np.asarray(contexts, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.context_dim:
            raise ValueError(f"contexts must have shape (n, {self.context_dim}), got {np.shape(contexts)}")
        if not np.isfinite(x).all():
            row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(f"contexts row {row} has a NaN or infinite feature")
        return x

    def _check_actions(self, actions: Any, n: int) -> np.ndarray:
        a = np.asarray(actions).reshape(-1)
        if a.shape[0] != n:
            raise ValueError(f"contexts and actions differ in length: {n} vs {a.shape[0]}")
        if a.size and a.dtype.kind not in "iu" and (a.dtype.kind != "f" or not np.all(np.mod(a, 1) == 0)):
            raise ValueError(f"actions must be integer item ids, got dtype {a.dtype}")
        a = a.astype(np.intp)
        outside = (a < 0) | (a >= self.n_items)
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            raise ValueError(f"action {int(a[bad])} at position {bad} is not an item id in "
                             f"[0, {self.n_items})")
        return a

    def _check_policy(self, policy: Any) -> None:
        if getattr(policy, "n_actions", self.n_items) != self.n_items:
            raise ValueError(f"policy has {policy.n_actions} actions, the env has {self.n_items} items")
        columns = getattr(policy, "context_columns", None)
        if columns is not None and list(columns) != self.context_columns:
            raise ValueError(f"policy reads the context columns {list(columns)[:4]}..., the env's are "
                             f"{self.context_columns[:4]}...; they must be the same, in order")

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a session: a new user drawn from the population (``info["segment"]``)."""
        super().reset(seed=seed)
        contexts, segments = self.sample_users(1, self.np_random)
        self._context, self._segment, self._last = contexts, int(segments[0]), None
        return contexts[0].copy(), {"segment": self._segment}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Recommend item ``action``: ``(context, purchase, terminated, False, info)``."""
        if self._context is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        actions = np.array([int(action)], dtype=np.intp)
        probability = float(self._expected_reward(self._context, actions)[0])
        rewards, self._context, terminated = self._sample_step(self._context, actions, self.np_random)
        self._last = (int(action), float(rewards[0]))
        return (self._context[0].copy(), float(rewards[0]), bool(terminated[0]), False,
                {"segment": self._segment, "purchase_probability": probability})

    def render(self) -> str | None:
        """ANSI text: the user's segment, session interest and the last recommendation."""
        if self.render_mode != "ansi" or self._context is None:
            return None
        interest = np.round(self._context[0, self.n_profile:], 2).tolist()
        return f"segment {self._segment} interest {interest} last (item, reward) {self._last}\n"


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def collect_contextual_logs(env: Any, policy: Any, n: int, seed: int | np.random.Generator | None = None,
                            *, n_parallel: int | None = None, max_steps: int | None = None) -> pd.DataFrame:
    """Simulate ``n`` logged decisions of ``policy`` in a ``ContextualRecommendationEnv``.

    Sessions run side by side (``n_parallel`` users); a user whose session ends is replaced by a
    new one. Called by ``hfrl.envs.collect_logs`` for this env.

    Returns
    -------
    DataFrame
        ``state`` (the user's segment, a segment column the shop knows), ``action``, ``reward``,
        ``propensity``, ``timestamp``, ``session_id``, ``done`` and the context columns (the
        features the decision saw), named in ``attrs["context_columns"]``.
    """
    inner = env.unwrapped if isinstance(env, gym.Env) else env
    inner._check_policy(policy)
    n = _positive("n", n)
    width = int(np.clip(n // 64, 1, 4096)) if n_parallel is None else _positive("n_parallel", n_parallel)
    width = min(n, width)
    if max_steps is None:
        limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
        max_steps = int(limit) if limit else None
    rng = resolve_rng(seed)
    n_rounds = -(-n // width)
    contexts_out = np.empty((n_rounds, width, inner.context_dim))
    segments_out = np.empty((n_rounds, width), dtype=np.int64)
    actions_out = np.empty((n_rounds, width), dtype=np.int64)
    rewards_out = np.empty((n_rounds, width))
    propensities_out = np.empty((n_rounds, width))
    sessions_out = np.empty((n_rounds, width), dtype=np.int64)
    done_out = np.empty((n_rounds, width), dtype=bool)

    contexts, segments = inner.sample_users(width, rng)
    sessions, steps, next_session = np.arange(width), np.zeros(width, dtype=np.int64), width
    for t in range(n_rounds):
        actions, propensities = policy.sample(contexts, rng)
        actions = np.asarray(actions, dtype=np.intp)
        rewards, following, terminated = inner._sample_step(contexts, actions, rng)
        contexts_out[t], segments_out[t], actions_out[t] = contexts, segments, actions
        rewards_out[t], propensities_out[t], sessions_out[t], done_out[t] = (
            rewards, propensities, sessions, terminated)
        steps += 1
        ended = terminated | ((steps >= max_steps) if max_steps is not None else False)
        n_ended = int(ended.sum())
        if n_ended:
            following[ended], segments[ended] = inner.sample_users(n_ended, rng)
            sessions[ended] = np.arange(next_session, next_session + n_ended)
            steps[ended] = 0
            next_session += n_ended
        contexts = following

    logs = pd.DataFrame({
        schema.STATE: segments_out.ravel()[:n],
        schema.ACTION: actions_out.ravel()[:n],
        schema.REWARD: rewards_out.ravel()[:n],
        schema.PROPENSITY: propensities_out.ravel()[:n],
        schema.TIMESTAMP: _LOG_START + pd.to_timedelta(np.arange(n), unit="s"),
        schema.SESSION_ID: sessions_out.ravel()[:n],
        schema.DONE: done_out.ravel()[:n],
    })
    features = pd.DataFrame(contexts_out.reshape(-1, inner.context_dim)[:n], columns=inner.context_columns)
    logs = pd.concat([logs, features], axis=1)
    logs.attrs["context_columns"] = list(inner.context_columns)
    logs.attrs["generator"] = {"env": type(inner).__name__, "n_parallel": width, "max_steps": max_steps,
                               "drift_to": None}
    return logs
