"""AdPlacement-v0: choose the ad for an impression; a contextual bandit with exact click rates."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from hfrl.envs.tabular import TabularMDPEnv

__all__ = ["AdPlacementEnv"]


class AdPlacementEnv(TabularMDPEnv):
    """An ad server: for each impression (slot, segment, time of day) pick one of ``n_ads`` ads.

    **Generative model.**

    * **State** ``s = (slot * n_segments + segment) * n_times + time``: the ad slot (position on
      the page), the user segment and the time-of-day bucket, drawn independently at the start
      of each impression (slots uniformly, segments with ``segment_probabilities``, times
      uniformly). ``decode_state`` gives ``{"slot", "segment", "time_of_day"}``.
    * **Action**: an ad id in ``[0, n_ads)`` with bid ``bids[a]`` (paid per click).
    * **Click** ~ Bernoulli(``position_effect[slot] * quality[a] * affinity[segment, a] *
      time_effect[time] * (1 + bids[a]) ** -price_sensitivity``), each factor in [0, 1]
      (defaults: ``1 / log2(slot + 2)``, Beta(2, 8), Uniform(0.3, 1), ``0.75 + 0.25 * cos(2 pi
      (time - peak) / n_times)``, and 1 at the default ``price_sensitivity=0``: the bid stands for
      the price of the advertised offer, which may deter price-sensitive users).
    * **Reward** = click x ``bids[a]`` (``reward="revenue"``) or click (``"click"``).
    * **Each impression is a one-step episode** (``terminated=True`` after every step): the
      transition matrix is all zeros and ``policy_value`` is the expected reward per impression.
    * **Budgets** (optional ``daily_budgets``): ``step`` tracks each ad's spend (bid per click)
      over a day of ``impressions_per_day`` steps; an ad whose spend has reached its budget is
      paused -- it gets no click, reward 0, and ``info["budget_exhausted"] = True``.
      ``reset(seed=...)`` with a seed starts a fresh day. The exact truth and the batch API
      **ignore budgets** (they describe the unconstrained model), so with budgets the realised
      mean reward of ``step`` can be lower than ``expected_reward``.

    Parameters
    ----------
    n_slots, n_segments, n_times, n_ads : int, default 4, 5, 1, 10
        20 states x 10 ads by default.
    reward : {"revenue", "click"}, default "revenue"
    position_effect, quality, affinity, time_effect, bids, segment_probabilities : array-like, optional
        Override the random model drawn from ``model_seed``.
    price_sensitivity : float >= 0, default 0.0
        Exponent of the click factor ``(1 + bid) ** -price_sensitivity``.
    daily_budgets : array-like of shape (n_ads,), optional
    impressions_per_day : int, default 10_000
    model_seed : int, default 0
    render_mode : {"ansi"}, optional

    Examples
    --------
    >>> import gymnasium as gym
    >>> import hfrl.envs
    >>> env = gym.make("hfrl/AdPlacement-v0")
    >>> obs, info = env.reset(seed=1)
    >>> obs, reward, terminated, truncated, info = env.step(3)
    >>> terminated
    True
    >>> ctr = env.unwrapped.click_probability(0, 3)
    >>> 0.0 < ctr < 1.0
    True
    """

    def __init__(
        self,
        n_slots: int = 4,
        n_segments: int = 5,
        n_times: int = 1,
        n_ads: int = 10,
        *,
        reward: str = "revenue",
        position_effect: Any = None,
        quality: Any = None,
        affinity: Any = None,
        time_effect: Any = None,
        bids: Any = None,
        segment_probabilities: Any = None,
        price_sensitivity: float = 0.0,
        daily_budgets: Any = None,
        impressions_per_day: int = 10_000,
        model_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        for name, value in (("n_slots", n_slots), ("n_segments", n_segments), ("n_times", n_times),
                            ("n_ads", n_ads)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if reward not in ("revenue", "click"):
            raise ValueError(f"reward must be 'revenue' or 'click', got {reward!r}")
        self.n_slots, self.n_segments = int(n_slots), int(n_segments)
        self.n_times, self.n_ads = int(n_times), int(n_ads)
        if not (np.isfinite(price_sensitivity) and price_sensitivity >= 0):
            raise ValueError(f"price_sensitivity must be a finite number >= 0, got {price_sensitivity!r}")
        self.reward = reward
        self.price_sensitivity = float(price_sensitivity)
        self.model_seed = model_seed
        self._setup(self.n_slots * self.n_segments * self.n_times, self.n_ads, render_mode)

        rng = np.random.default_rng(model_seed)
        if position_effect is None:
            position_effect = 1.0 / np.log2(np.arange(self.n_slots) + 2.0)
        if quality is None:
            quality = rng.beta(2.0, 8.0, self.n_ads)
        if affinity is None:
            affinity = rng.uniform(0.3, 1.0, (self.n_segments, self.n_ads))
        if time_effect is None:
            peak = rng.integers(self.n_times)
            time_effect = 0.75 + 0.25 * np.cos(2 * np.pi * (np.arange(self.n_times) - peak) / self.n_times)
        if bids is None:
            bids = np.round(rng.lognormal(0.0, 0.5, self.n_ads), 2)
        if segment_probabilities is None:
            segment_probabilities = np.full(self.n_segments, 1.0 / self.n_segments)
        self.position_effect = _unit(position_effect, (self.n_slots,), "position_effect")
        self.quality = _unit(quality, (self.n_ads,), "quality")
        self.affinity = _unit(affinity, (self.n_segments, self.n_ads), "affinity")
        self.time_effect = _unit(time_effect, (self.n_times,), "time_effect")
        self.bids = _unit(bids, (self.n_ads,), "bids", upper=np.inf)
        self.segment_probabilities = _unit(segment_probabilities, (self.n_segments,), "segment_probabilities")
        if abs(self.segment_probabilities.sum() - 1.0) > 1e-6:
            raise ValueError("segment_probabilities must sum to 1")
        self._payoff = self.bids if reward == "revenue" else np.ones(self.n_ads)
        self._click_table = self._build_click_table()
        self._click_flat = self._click_table.reshape(-1)

        if daily_budgets is not None:
            self.daily_budgets: np.ndarray | None = _unit(daily_budgets, (self.n_ads,), "daily_budgets",
                                                          upper=np.inf)
        else:
            self.daily_budgets = None
        if int(impressions_per_day) < 1:
            raise ValueError(f"impressions_per_day must be >= 1, got {impressions_per_day}")
        self.impressions_per_day = int(impressions_per_day)
        self._spend = np.zeros(self.n_ads)
        self._impressions = 0

    def model_parameters(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model exactly, every random part realised.

        ``AdPlacementEnv(**env.model_parameters())`` has the same tables as ``env``;
        ``hfrl.envs.shift`` changes some of them to build a shifted ad market.

        Examples
        --------
        >>> env = AdPlacementEnv(model_seed=3)
        >>> copy = AdPlacementEnv(**env.model_parameters())
        >>> bool((copy.reward_matrix() == env.reward_matrix()).all())
        True
        """
        return {
            "n_slots": self.n_slots, "n_segments": self.n_segments, "n_times": self.n_times,
            "n_ads": self.n_ads, "reward": self.reward, "position_effect": self.position_effect,
            "quality": self.quality, "affinity": self.affinity, "time_effect": self.time_effect,
            "bids": self.bids, "segment_probabilities": self.segment_probabilities,
            "price_sensitivity": self.price_sensitivity, "daily_budgets": self.daily_budgets,
            "impressions_per_day": self.impressions_per_day, "model_seed": self.model_seed,
        }

    def _build_click_table(self) -> np.ndarray:
        slot, segment, time = self._parts(np.arange(self.n_states))
        price_factor = (1.0 + self.bids) ** -self.price_sensitivity  # exactly 1 at zero sensitivity
        table = (self.position_effect[slot, None] * self.quality[None, :] * self.affinity[segment]
                 * self.time_effect[time, None] * price_factor[None, :])
        table.setflags(write=False)
        return table

    def _parts(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rest, time = np.divmod(states, self.n_times)
        slot, segment = np.divmod(rest, self.n_segments)
        return slot, segment, time

    def decode_state(self, s: int) -> dict[str, Any]:
        """``{"slot": k, "segment": g, "time_of_day": t}`` for state id ``s``."""
        self._check_ids(np.asarray(s), self.n_states, "state")
        slot, segment, time = self._parts(np.asarray(int(s)))
        return {"slot": int(slot), "segment": int(segment), "time_of_day": int(time)}

    def encode_state(self, slot: Any, segment: Any, time_of_day: Any = 0) -> Any:
        """State id of ``(slot, segment, time_of_day)``."""
        flat = np.asarray(slot) * self.n_segments + np.asarray(segment)
        return flat * self.n_times + np.asarray(time_of_day)

    def click_probability(self, s: Any, a: Any) -> Any:
        """Exact click probability of ad ``a`` in state ``s`` (broadcasting)."""
        states = self._check_ids(np.asarray(s), self.n_states, "state")
        ads = self._check_ids(np.asarray(a), self.n_ads, "ad")
        values = self._click_table[states, ads]
        return float(values) if values.ndim == 0 else values

    def popularity_matrix(self) -> np.ndarray:
        """Click probabilities (bid-free), the weights of the ``"popularity"`` logging policy."""
        return self._click_table

    def _build_reward_matrix(self) -> np.ndarray:
        return self._click_table * self._payoff[None, :]

    def _build_transition_matrix(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.n_states * self.n_actions, self.n_states))

    def _build_initial_distribution(self) -> np.ndarray:
        slot, segment, time = self._parts(np.arange(self.n_states))
        return self.segment_probabilities[segment] / (self.n_slots * self.n_times)

    def _sample_step(self, states: Any, actions: Any, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        """One click draw per impression; every impression ends its episode."""
        click = rng.random(states.shape or None) < self._click_flat[states * self.n_ads + actions]
        return self._payoff[actions] * click, states.copy(), np.ones(states.shape, dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Draw the next impression; a seed (or ``options={"new_day": True}``) starts a fresh day."""
        if seed is not None or (options or {}).get("new_day"):
            self._spend = np.zeros(self.n_ads)
            self._impressions = 0
        return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Show ad ``action`` for the current impression; the episode always ends."""
        if self.daily_budgets is None:
            return super().step(action)
        self._check_action(action)
        if self._impressions and self._impressions % self.impressions_per_day == 0:
            self._spend = np.zeros(self.n_ads)
        self._impressions += 1
        ad = int(action)
        exhausted = bool(self._spend[ad] >= self.daily_budgets[ad])
        clicked_reward, _, _ = self._sample_step(np.intp(self._state), np.intp(ad), self.np_random)
        reward = 0.0 if exhausted else float(clicked_reward)
        if reward > 0:
            self._spend[ad] += self.bids[ad]
        self._last_action, self._last_reward = ad, reward
        return self._state, reward, True, False, {"budget_exhausted": exhausted}


def _unit(values: Any, shape: tuple[int, ...], name: str, upper: float = 1.0) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any() or (array > upper).any():
        bound = "[0, 1]" if upper == 1.0 else ">= 0 and finite"
        raise ValueError(f"{name} entries must be {bound}")
    array = array.copy()
    array.setflags(write=False)
    return array
