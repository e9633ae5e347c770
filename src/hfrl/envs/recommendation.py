"""Recommendation-v0: a shop where each recommendation may be bought and shapes the next one."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from gymnasium import spaces

from hfrl.envs.tabular import TabularMDPEnv

__all__ = ["RecommendationEnv"]

# Above this many (state, item) cells the purchase probabilities are computed per step from their
# factors instead of being gathered from a precomputed table (keeps 10,000 x 10,000 light).
_DENSE_CELLS = 4_000_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class RecommendationEnv(TabularMDPEnv):
    """A shop session: recommend an item (or a slate), the user may buy it, then may leave.

    **Generative model.**

    * **Users** belong to one of ``n_segments`` segments, drawn at the start of a session with
      probabilities ``segment_probabilities``.
    * **State** ``s = segment * (n_categories + 1) + (last_category + 1)``: the segment and the
      category of the user's last purchase in this session (``last_category = -1``, "none", at
      the start). ``n_states = n_segments * (n_categories + 1)``; ``decode_state`` gives the parts.
    * **Action**: an item id in ``[0, n_items)``; item ``i`` has category ``item_categories[i]``
      and price ``prices[i]``.
    * **Purchase** ~ Bernoulli(``sigmoid(affinity[segment, i] - price_sensitivity * log(1 +
      prices[i]) + repeat_bonus * [category(i) == last_category])``); ``affinity`` defaults to
      ``bias + user_factors @ item_factors.T`` drawn once from ``model_seed``;
      ``price_sensitivity`` defaults to 0 (prices do not deter buying).
    * **Reward** = purchase x ``prices[i]`` (``reward="revenue"``) or purchase (``"purchase"``).
    * **Transition**: a purchase moves the state to ``(segment, category(i))``; otherwise the
      state is unchanged. Then the user churns (the episode terminates) with probability
      ``churn_probability``, independently of the purchase.
    * **Slate mode** (``slate_size=k``): the action is ``k`` items (``MultiDiscrete``); with a
      position-based examination model the user examines position ``j`` with probability
      ``examination[j]`` (default ``1 / (j + 1)``) and buys an examined item with the purchase
      probability above, independently per position (a repeated item is an independent chance);
      the reward is the sum over positions; the state moves to the category of the top-most
      purchased item. ``expected_slate_reward`` is exact; the tabular truth (``reward_matrix``,
      ``policy_value``, ``optimal_policy``, ...) is for single-item mode only and raises in
      slate mode.

    The time limit is **not** part of the exact truth: ``policy_value`` is the infinite-horizon
    discounted value with churn as the only ending. ``gymnasium.make`` wraps the env in a
    ``TimeLimit`` of 1,000 steps (``truncated=True``), a cut whose effect on values is bounded by
    ``truncation_error_bound(gamma, 1000)`` (below 2e-45 times the largest expected reward for
    any ``gamma <= 1`` at the default churn).

    Parameters
    ----------
    n_segments, n_categories, n_items : int, default 4, 4, 10
        Sizes (20 states x 10 items by default). Up to 10,000 states x 10,000 items: ``step``,
        the batch API and ``expected_reward`` work from the factors (no table larger than
        ``n_segments x n_items``). The exact truth materialises dense ``(n_states, n_items)``
        tables and a CSR transition matrix with two entries per ``(s, a)`` row: at 10,000 x
        10,000 ``optimal_policy`` + ``policy_value`` took 6.8 GB peak memory and about one
        CPU-minute (a policy table there is 0.8 GB by itself); 10,000 states x 1,000 items
        solves exactly in seconds.
    reward : {"revenue", "purchase"}, default "revenue"
    churn_probability : float in (0, 1], default 0.1
    repeat_bonus : float, default 1.0
        Logit bonus for an item in the category of the last purchase.
    price_sensitivity : float >= 0, default 0.0
        Logit penalty per unit of ``log(1 + price)``: how much dearer items deter buying.
    slate_size : int, optional
    affinity : array-like (n_segments, n_items), optional
        Purchase logits; overrides the random factor model.
    prices, item_categories, segment_probabilities, examination : array-like, optional
    n_factors : int, default 4
    model_seed : int, default 0
        Seed of the random model parameters (not of episodes: use ``reset(seed=...)``).
    render_mode : {"ansi"}, optional

    Examples
    --------
    >>> import gymnasium as gym
    >>> import hfrl.envs
    >>> env = gym.make("hfrl/Recommendation-v0")
    >>> obs, info = env.reset(seed=0)
    >>> env.unwrapped.decode_state(obs)
    {'segment': 2, 'last_category': None}
    >>> best = env.unwrapped.optimal_policy(gamma=0.9)
    >>> env.unwrapped.policy_value(best, 0.9) > env.unwrapped.policy_value(
    ...     hfrl.envs.logging_policy(env, "uniform"), 0.9)
    True
    """

    def __init__(
        self,
        n_segments: int = 4,
        n_categories: int = 4,
        n_items: int = 10,
        *,
        reward: str = "revenue",
        churn_probability: float = 0.1,
        repeat_bonus: float = 1.0,
        price_sensitivity: float = 0.0,
        slate_size: int | None = None,
        affinity: Any = None,
        prices: Any = None,
        item_categories: Any = None,
        segment_probabilities: Any = None,
        examination: Any = None,
        n_factors: int = 4,
        model_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        for name, value in (("n_segments", n_segments), ("n_categories", n_categories), ("n_items", n_items)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if reward not in ("revenue", "purchase"):
            raise ValueError(f"reward must be 'revenue' or 'purchase', got {reward!r}")
        if not 0.0 < churn_probability <= 1.0:
            raise ValueError(f"churn_probability must be in (0, 1], got {churn_probability}")
        if not (np.isfinite(price_sensitivity) and price_sensitivity >= 0):
            raise ValueError(f"price_sensitivity must be a finite number >= 0, got {price_sensitivity!r}")
        self.n_segments = int(n_segments)
        self.n_categories = int(n_categories)
        self.n_items = int(n_items)
        self.reward = reward
        self.churn_probability = float(churn_probability)
        self.repeat_bonus = float(repeat_bonus)
        self.price_sensitivity = float(price_sensitivity)
        self.model_seed = model_seed
        n_states = self.n_segments * (self.n_categories + 1)
        self._setup(n_states, self.n_items, render_mode)

        model_rng = np.random.default_rng(model_seed)
        if affinity is None:
            user = model_rng.normal(0.0, 1.0, (self.n_segments, n_factors))
            item = model_rng.normal(0.0, 1.0, (self.n_items, n_factors)) / np.sqrt(max(n_factors, 1))
            affinity = -1.5 + user @ item.T
        self.affinity = _fixed(affinity, (self.n_segments, self.n_items), "affinity")
        if prices is None:
            prices = np.round(np.exp(model_rng.uniform(np.log(1.0), np.log(20.0), self.n_items)), 2)
        self.prices = _fixed(prices, (self.n_items,), "prices")
        if (self.prices < 0).any():
            raise ValueError("prices must be >= 0")
        if item_categories is None:
            item_categories = np.arange(self.n_items) % self.n_categories
        categories = np.asarray(item_categories)
        if categories.shape != (self.n_items,) or categories.dtype.kind not in "iu" or (
            categories.size and (categories.min() < 0 or categories.max() >= self.n_categories)
        ):
            raise ValueError(
                f"item_categories must be {self.n_items} integer ids in [0, {self.n_categories})"
            )
        self.item_categories = categories.astype(np.int64)
        self.item_categories.setflags(write=False)
        if segment_probabilities is None:
            segment_probabilities = np.full(self.n_segments, 1.0 / self.n_segments)
        seg_p = _fixed(segment_probabilities, (self.n_segments,), "segment_probabilities")
        if (seg_p < 0).any() or abs(seg_p.sum() - 1.0) > 1e-6:
            raise ValueError("segment_probabilities must be non-negative and sum to 1")
        self.segment_probabilities = seg_p
        self._segment_cdf = np.cumsum(seg_p)
        self._segment_cdf[-1] = np.inf
        self._payoff = self.prices if reward == "revenue" else np.ones(self.n_items)
        # Purchase logits before the repeat bonus (exactly ``affinity`` at zero price sensitivity).
        self._appeal = self.affinity - self.price_sensitivity * np.log1p(self.prices)
        self._purchase_table: np.ndarray | None = None
        # State after a purchase: the user's segment start plus the item's category slot.
        self._segment_start = np.repeat(np.arange(self.n_segments) * (self.n_categories + 1),
                                        self.n_categories + 1).astype(np.int64)
        self._category_slot = self.item_categories + 1

        self.slate_size = None if slate_size is None else int(slate_size)
        if self.slate_size is not None:
            if self.slate_size < 1:
                raise ValueError(f"slate_size must be >= 1, got {slate_size}")
            if examination is None:
                examination = 1.0 / np.arange(1, self.slate_size + 1)
            self.examination = _fixed(examination, (self.slate_size,), "examination")
            if (self.examination < 0).any() or (self.examination > 1).any():
                raise ValueError("examination probabilities must be in [0, 1]")
            self.action_space = spaces.MultiDiscrete(np.full(self.slate_size, self.n_items))
        else:
            self.examination = None

    def model_parameters(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model exactly, every random part realised.

        ``RecommendationEnv(**env.model_parameters())`` has the same tables as ``env``;
        ``hfrl.envs.shift`` changes some of them to build a shifted shop.

        Examples
        --------
        >>> env = RecommendationEnv(model_seed=3)
        >>> copy = RecommendationEnv(**env.model_parameters())
        >>> bool((copy.reward_matrix() == env.reward_matrix()).all())
        True
        """
        return {
            "n_segments": self.n_segments, "n_categories": self.n_categories, "n_items": self.n_items,
            "reward": self.reward, "churn_probability": self.churn_probability,
            "repeat_bonus": self.repeat_bonus, "price_sensitivity": self.price_sensitivity,
            "slate_size": self.slate_size, "affinity": self.affinity, "prices": self.prices,
            "item_categories": self.item_categories, "segment_probabilities": self.segment_probabilities,
            "examination": self.examination, "model_seed": self.model_seed,
        }

    # ------------------------------------------------------------------ state encoding
    def encode_state(self, segment: Any, last_category: Any) -> Any:
        """State id of ``(segment, last_category)``; ``last_category=-1`` means no purchase yet."""
        return np.asarray(segment) * (self.n_categories + 1) + np.asarray(last_category) + 1

    def decode_state(self, s: int) -> dict[str, Any]:
        """``{"segment": g, "last_category": c or None}`` for state id ``s``."""
        self._check_ids(np.asarray(s), self.n_states, "state")
        segment, slot = divmod(int(s), self.n_categories + 1)
        return {"segment": segment, "last_category": None if slot == 0 else slot - 1}

    # ------------------------------------------------------------------ the model
    def purchase_probability(self, s: Any, a: Any) -> np.ndarray:
        """Probability that a user in state ``s`` buys item ``a`` (broadcasting)."""
        states = self._check_ids(np.asarray(s), self.n_states, "state")
        items = self._check_ids(np.asarray(a), self.n_items, "item")
        states, items = np.broadcast_arrays(states, items)
        return self._purchase(states, items)

    def _purchase(self, states: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self._purchase_table is None and self.n_states * self.n_items <= _DENSE_CELLS:
            self._purchase_table = self._purchase_rows(np.arange(self.n_states))
        if self._purchase_table is not None:
            return self._purchase_table.reshape(-1)[states * self.n_items + items]
        segment, slot = np.divmod(states, self.n_categories + 1)
        logits = self._appeal[segment, items] + self.repeat_bonus * (self.item_categories[items] == slot - 1)
        return _sigmoid(logits)

    def _all_purchase_rows(self) -> np.ndarray:
        if self._purchase_table is not None:
            return self._purchase_table
        return self._purchase_rows(np.arange(self.n_states))

    def _purchase_rows(self, states: np.ndarray) -> np.ndarray:
        segment, slot = np.divmod(states, self.n_categories + 1)
        same = self.item_categories[None, :] == (slot - 1)[:, None]
        table = _sigmoid(self._appeal[segment] + self.repeat_bonus * same)
        table.setflags(write=False)
        return table

    def _require_single(self) -> None:
        if self.slate_size is not None:
            raise NotImplementedError(
                "the exact tabular truth is for single-item mode (slate_size=None); in slate mode use "
                "expected_slate_reward for the one-step truth"
            )

    def _expected_reward(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self._purchase(states, actions) * self._payoff[actions]

    def expected_reward(self, s: Any, a: Any) -> Any:
        """``E[reward | s, item a]`` (single item; ``purchase probability x price`` or ``x 1``)."""
        return super().expected_reward(s, a)

    def expected_slate_reward(self, s: Any, slate: Any) -> np.ndarray:
        """Exact expected reward of showing ``slate`` (shape (..., slate_size)) in state ``s``."""
        if self.slate_size is None:
            raise ValueError("expected_slate_reward needs slate_size")
        items = self._check_ids(np.asarray(slate), self.n_items, "item")
        states = self._check_ids(np.asarray(s), self.n_states, "state")[..., None]
        states, items = np.broadcast_arrays(states, items)
        per_position = self._purchase(states, items) * self._payoff[items] * self.examination
        return per_position.sum(axis=-1)

    def _build_reward_matrix(self) -> np.ndarray:
        self._require_single()
        return self._all_purchase_rows() * self._payoff[None, :]

    def _build_transition_matrix(self) -> sp.csr_matrix:
        self._require_single()
        n_s, n_a = self.n_states, self.n_items
        index = np.int32 if n_s < 2**31 and 2 * n_s * n_a < 2**31 else np.int64
        states = np.repeat(np.arange(n_s, dtype=index), n_a)
        bought_state = states - states % (self.n_categories + 1)
        bought_state += np.tile((self.item_categories + 1).astype(index), n_s)
        buy = self._all_purchase_rows().ravel()
        stay = 1.0 - self.churn_probability
        # Two entries per row (s * n_a + a): "bought, moved to the item's category" and "stayed".
        indices = np.empty(2 * n_s * n_a, dtype=index)
        data = np.empty(2 * n_s * n_a)
        indices[0::2], indices[1::2] = bought_state, states
        data[0::2], data[1::2] = stay * buy, stay * (1.0 - buy)
        same = bought_state == states  # buying from the last category keeps the state
        data[0::2][same], data[1::2][same] = stay, 0.0
        indptr = np.arange(0, 2 * n_s * n_a + 1, 2, dtype=index)
        return sp.csr_matrix((data, indices, indptr), shape=(n_s * n_a, n_s))

    def _build_initial_distribution(self) -> np.ndarray:
        mu = np.zeros(self.n_states)
        mu[np.arange(self.n_segments) * (self.n_categories + 1)] = self.segment_probabilities
        return mu

    def reward_matrix(self) -> np.ndarray:
        self._require_single()
        return super().reward_matrix()

    def popularity_matrix(self) -> np.ndarray:
        """Price-free purchase probabilities, the weights of the ``"popularity"`` logging policy."""
        return self._all_purchase_rows()

    # ------------------------------------------------------------------ sampling
    def _check_batch_actions(self, actions: Any, n: int) -> np.ndarray:
        if self.slate_size is None:
            return super()._check_batch_actions(actions, n)
        a = self._check_ids(np.asarray(actions), self.n_items, "item")
        if a.shape != (n, self.slate_size):
            raise ValueError(f"slate actions must have shape ({n}, {self.slate_size}), got {a.shape}")
        return a

    def _sample_step(self, states: Any, actions: Any, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        """Purchase draws (one per shown item), then one churn draw per user."""
        size = states.shape or None
        if self.slate_size is None:
            bought = rng.random(size) < self._purchase(states, actions)
            rewards = self._payoff[actions] * bought
            top = actions
        else:
            assert self.examination is not None
            shown = np.broadcast_to(states[..., None], actions.shape)
            bought_each = rng.random(actions.shape) < self.examination * self._purchase(shown, actions)
            rewards = (bought_each * self._payoff[actions]).sum(axis=-1)
            bought = bought_each.any(axis=-1)
            top = np.take_along_axis(actions, bought_each.argmax(axis=-1)[..., None], axis=-1)[..., 0]
        terminated = rng.random(size) < self.churn_probability
        moved = self._segment_start[states] + self._category_slot[top]  # the top-most purchase
        return rewards, states + (moved - states) * bought, terminated

    def _sample_initial(self, n: int | None, rng: np.random.Generator) -> Any:
        """``n`` start states (one when ``n`` is None): a segment each (one draw), no purchase yet."""
        return self._segment_cdf.searchsorted(rng.random(n), side="right") * (self.n_categories + 1)


def _fixed(values: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has a NaN or infinite entry")
    array = array.copy()
    array.setflags(write=False)
    return array
