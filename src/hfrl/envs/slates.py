"""SlatePage-v0: a shop page of ``k`` slots over a catalog of up to 1,000,000 items, with a click model.

The exact truth lives beside the environment: ``expected_position_rewards`` for any slates, and
``slate_policy_value`` for a ``RankingPolicy`` (from exact Plackett-Luce position marginals under the
position model, from every slate under the cascade model). ``collect_slate_logs`` writes the ranking
log schema (``hfrl.data.schema``) from a logging ``RankingPolicy``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from hfrl.data import schema
from hfrl.policies import RankingPolicy
from hfrl.rankings import MAX_PREFIX_STATES, enumerate_slates

__all__ = ["CLICK_MODELS", "SlateEnv", "collect_slate_logs", "slate_policy_value"]

CLICK_MODELS = ("position", "cascade")
MAX_ITEMS = 1_000_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SlateEnv(gym.Env):
    """One page per step: a user of a segment sees ``k`` ranked items and may click on some.

    **Generative model.**

    * **Context**: the user's segment ``s`` (the observation), drawn with ``segment_probabilities``.
    * **Action**: ``k`` item ids (``MultiDiscrete``), slot 0 first; a slot that repeats an earlier
      item shows nothing (it is never clicked and a cascade user reads past it).
    * **Attraction** of item ``a`` for segment ``s``: ``sigmoid(bias + user[s] . item[a])`` with
      factors drawn once from ``model_seed`` (``attraction=`` overrides it for small catalogs).
    * **Clicks**, one reward per slot (the step's reward is their sum):

      - ``click_model="position"`` (position-based model): slot ``j`` is examined with probability
        ``examination[j]`` (default ``1 / (j + 1)``), independently, and an examined item is
        clicked with its attraction: ``E[r_j] = examination[j] * attraction(s, a_j)``;
      - ``click_model="cascade"``: the user reads from the top and stops at the first click:
        ``E[r_j] = attraction(s, a_j) * prod_{i<j} (1 - attraction(s, a_i))``.

    Each episode is one page (``terminated=True`` after every step).

    Parameters
    ----------
    n_segments : int, default 4
    n_items : int, default 20
        Up to 1,000,000: only ``n_items x n_factors`` item factors are stored; attractions are
        computed for the items asked.
    k : int, default 3
    click_model : {"position", "cascade"}
    examination : array-like of shape (k,), optional
    bias : float, default -1.5
    n_factors : int, default 4
    attraction : array-like (n_segments, n_items), optional
    segment_probabilities : array-like (n_segments,), optional
    model_seed : int, default 0

    Examples
    --------
    >>> env = SlateEnv(n_segments=2, n_items=5, k=2, click_model="cascade")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step([0, 1])
    >>> terminated, info["clicks"].shape
    (True, (2,))
    >>> a = env.attraction(0, [0, 1])
    >>> bool(np.isclose(env.expected_position_rewards([0], [[0, 1]]).sum(), 1 - (1 - a[0]) * (1 - a[1])))
    True
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        n_segments: int = 4,
        n_items: int = 20,
        k: int = 3,
        *,
        click_model: str = "position",
        examination: Any = None,
        bias: float = -1.5,
        n_factors: int = 4,
        attraction: Any = None,
        segment_probabilities: Any = None,
        model_seed: int = 0,
    ) -> None:
        for name, value, top in (("n_segments", n_segments, None), ("n_items", n_items, MAX_ITEMS),
                                 ("k", k, n_items), ("n_factors", n_factors, None)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1 or (
                    top is not None and value > top):
                raise ValueError(f"{name} must be an integer in [1, {top or 'inf'}], got {value!r}")
        if click_model not in CLICK_MODELS:
            raise ValueError(f"click_model must be one of {CLICK_MODELS}, got {click_model!r}")
        self.n_segments, self.n_items, self.k = int(n_segments), int(n_items), int(k)
        self.click_model = click_model
        exam = 1.0 / np.arange(1, self.k + 1) if examination is None else np.asarray(examination, float)
        if exam.shape != (self.k,) or not np.all((exam >= 0) & (exam <= 1)):
            raise ValueError(f"examination must be {self.k} probabilities in [0, 1]")
        self.examination = exam
        rng = np.random.default_rng(model_seed)
        self._table = None
        if attraction is not None:
            table = np.asarray(attraction, dtype=np.float64)
            if table.shape != (self.n_segments, self.n_items) or not np.all((table >= 0) & (table <= 1)):
                raise ValueError(f"attraction must be ({self.n_segments}, {self.n_items}) probabilities")
            self._table = table
        else:
            self.user_factors = rng.normal(0.0, 1.0, (self.n_segments, n_factors))
            self.item_factors = rng.normal(0.0, 1.0, (self.n_items, n_factors)) / np.sqrt(n_factors)
            self.bias = float(bias)
        seg = (np.full(self.n_segments, 1.0 / self.n_segments) if segment_probabilities is None
               else np.asarray(segment_probabilities, dtype=np.float64))
        if seg.shape != (self.n_segments,) or (seg < 0).any() or abs(seg.sum() - 1.0) > 1e-9:
            raise ValueError("segment_probabilities must be n_segments probabilities summing to 1")
        self.segment_probabilities = seg
        self.observation_space = spaces.Discrete(self.n_segments)
        self.action_space = spaces.MultiDiscrete(np.full(self.k, self.n_items))
        self._segment = 0

    # ------------------------------------------------------------------ the model
    def attraction(self, segments: Any, items: Any) -> np.ndarray:
        """``P(click | examined)`` of ``items`` for ``segments`` (broadcasting)."""
        s, a = np.broadcast_arrays(np.asarray(segments, dtype=np.int64), np.asarray(items, dtype=np.int64))
        if s.size and (s.min() < 0 or s.max() >= self.n_segments):
            raise ValueError(f"segments must be in [0, {self.n_segments})")
        if a.size and (a.min() < 0 or a.max() >= self.n_items):
            raise ValueError(f"items must be in [0, {self.n_items})")
        if self._table is not None:
            return self._table[s, a]
        return _sigmoid(self.bias + np.einsum("...f,...f->...", self.user_factors[s], self.item_factors[a]))

    def attraction_rows(self, segments: Any) -> np.ndarray:
        """Attractions of every item, shape ``(len(segments), n_items)``."""
        s = np.asarray(segments, dtype=np.int64)
        if self._table is not None:
            return self._table[s]
        return _sigmoid(self.bias + self.user_factors[s] @ self.item_factors.T)

    def expected_position_rewards(self, segments: Any, slates: Any) -> np.ndarray:
        """Exact ``E[r_j | s, slate]`` for each slate and slot, shape ``(n, k)``."""
        slates = self._check_slates(slates)
        attraction = self._slot_attractions(segments, slates)
        if self.click_model == "position":
            return attraction * self.examination
        reached = np.cumprod(np.concatenate([np.ones((slates.shape[0], 1)), 1.0 - attraction[:, :-1]], 1), 1)
        return attraction * reached

    def _check_slates(self, slates: Any) -> np.ndarray:
        array = np.asarray(slates, dtype=np.int64)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.k:
            raise ValueError(f"a slate has k={self.k} items, got shape {array.shape}")
        return array

    def _slot_attractions(self, segments: Any, slates: np.ndarray) -> np.ndarray:
        """Attraction of each slot's item, 0 in a slot that repeats an earlier item (it shows nothing)."""
        attraction = self.attraction(np.asarray(segments, dtype=np.int64).reshape(-1, 1), slates)
        for j in range(1, self.k):
            repeated = (slates[:, :j] == slates[:, j : j + 1]).any(axis=1)
            attraction[repeated, j] = 0.0
        return attraction

    # ------------------------------------------------------------------ Gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._segment = int(self.np_random.choice(self.n_segments, p=self.segment_probabilities))
        return self._segment, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        clicks = self.sample_clicks(np.array([self._segment]), np.asarray(action)[None, :], self.np_random)[0]
        segment = self._segment
        self._segment = int(self.np_random.choice(self.n_segments, p=self.segment_probabilities))
        return segment, float(clicks.sum()), True, False, {"clicks": clicks}

    def sample_clicks(self, segments: np.ndarray, slates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clicks ``(n, k)`` of a batch of pages (one generator for the batch)."""
        slates = self._check_slates(slates)
        attraction = self._slot_attractions(segments, slates)
        attracted = rng.random(slates.shape) < attraction
        if self.click_model == "position":
            return (attracted & (rng.random(slates.shape) < self.examination)).astype(np.float64)
        first = np.cumsum(attracted, axis=1) == 1
        return (attracted & first).astype(np.float64)


def slate_policy_value(env: SlateEnv, policy: RankingPolicy, max_states: int = MAX_PREFIX_STATES) -> float:
    """The exact expected page reward of a Plackett-Luce ``policy`` whose contexts are segments.

    Position model: ``sum_s p(s) sum_j examination[j] sum_a P(a at j | s) attraction(s, a)``;
    cascade model: the sum over every ordered slate of its probability times its expected clicks.

    Examples
    --------
    >>> from hfrl.policies import TabularPolicy
    >>> env = SlateEnv(n_segments=1, n_items=3, k=2, attraction=[[0.5, 0.5, 0.5]], examination=[1.0, 0.5])
    >>> round(slate_policy_value(env, RankingPolicy.from_policy(TabularPolicy.uniform(1, 3), 2)), 12)
    0.75
    """
    if policy.k != env.k or policy.n_actions != env.n_items:
        raise ValueError(f"policy ranks k={policy.k} of {policy.n_actions} items; env has k={env.k} of "
                         f"{env.n_items}")
    segments = np.arange(env.n_segments)
    per_segment = np.empty(env.n_segments)
    if env.click_model == "position":
        marginals = policy.position_probabilities(segments, max_states)  # (S, k, n_items)
        attraction = env.attraction_rows(segments)
        per_segment = np.einsum("sja,sa,j->s", marginals, attraction, env.examination)
    else:
        rows = policy.item_probabilities(segments)
        for s in segments:
            slates, probs = enumerate_slates(rows[s], env.k, max_states)
            rewards = env.expected_position_rewards(np.full(len(slates), s), slates)
            per_segment[s] = probs @ rewards.sum(axis=1)
    return float(env.segment_probabilities @ per_segment)


def collect_slate_logs(env: SlateEnv, policy: RankingPolicy, n_slates: int, seed: int | None = None,
                       *, marginals: bool = True) -> pd.DataFrame:
    """Pages drawn from ``policy`` in ``env``, in the ranking log schema (one row per slate and slot).

    Columns ``slate_id``, ``position``, ``state`` (the segment), ``action``, ``reward``,
    ``propensity`` (the marginal probability of the item at its slot; left out with
    ``marginals=False``, for catalogs where it is too costly), ``cascade_propensity``,
    ``slate_propensity``. Deterministic given ``seed``.

    Examples
    --------
    >>> from hfrl.policies import TabularPolicy
    >>> env = SlateEnv(n_segments=2, n_items=5, k=2)
    >>> logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 5), 2), 3, seed=0)
    >>> list(logs.columns), len(logs)
    (['slate_id', 'position', 'state', 'action', 'reward', 'propensity', 'cascade_propensity', \
'slate_propensity'], 6)
    """
    rng = np.random.default_rng(seed)
    segments = rng.choice(env.n_segments, size=int(n_slates), p=env.segment_probabilities)
    slates, cascade = policy.draw(segments, rng)
    clicks = env.sample_clicks(segments, slates, rng)
    k = policy.k
    frame = {
        schema.SLATE_ID: np.repeat(np.arange(n_slates), k),
        schema.POSITION: np.tile(np.arange(k), n_slates),
        schema.STATE: np.repeat(segments, k),
        schema.ACTION: slates.ravel(),
        schema.REWARD: clicks.ravel(),
    }
    if marginals:
        frame[schema.PROPENSITY] = policy.marginal_propensities(segments, slates).ravel()
    frame[schema.CASCADE_PROPENSITY] = cascade.ravel()
    frame[schema.SLATE_PROPENSITY] = np.repeat(cascade[:, -1], k)
    return pd.DataFrame(frame)
