"""shift: a "real shop" whose model differs from a simulator's by a chosen amount, both with exact truth.

A policy trained or tuned on a simulator meets a shop that is not quite the simulator: tastes
differ, fashions move, prices matter more or less than assumed. ``shift`` builds that shop from
the simulator by perturbing its *generative parameters* (not its tables) and rebuilding the env,
so the shifted shop is a model of the same kind, with the same spaces and the same exact truth
(``policy_value``, ``optimal_policy``, ...). Comparing a policy's value in both tells how much it
relied on the simulator being right; ``collect_logs(..., drift_to=shifted)`` makes logs that move
from one to the other over time.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from scipy.special import expit, logit

from hfrl.envs.ad_placement import AdPlacementEnv
from hfrl.envs.recommendation import RecommendationEnv
from hfrl.policies import resolve_rng

__all__ = ["SHIFT_KINDS", "shift"]

SHIFT_KINDS = ("preferences", "trend", "price")


def shift(env: Any, strength: float, kind: str = "preferences",
          seed: int | np.random.Generator | None = None) -> Any:
    """A new shop of the same kind as ``env`` whose model differs from it by ``strength``.

    The perturbation acts on the generative parameters; its direction is drawn from ``seed``
    and does not depend on ``strength``, which only scales it, so ``strength=0`` rebuilds
    exactly ``env``'s model and, for one seed, larger strengths move further along one path.

    * ``"preferences"``: each user segment's taste for each item changes independently.
      Recommendation: ``affinity += strength * N(0, 1)`` (purchase logits). AdPlacement:
      ``logit(affinity) += strength * N(0, 1)`` (the segment-ad affinity stays in [0, 1]).
    * ``"trend"``: a random quarter of the items (at least one) gains appeal and another quarter
      loses it, for every segment. Recommendation: ``affinity[:, rising] += strength``,
      ``affinity[:, falling] -= strength``. AdPlacement: the same on ``logit(quality)``.
    * ``"price"``: users become more price-sensitive: ``price_sensitivity += strength`` (purchase
      logits fall by ``strength * log(1 + price)``; click rates are multiplied by
      ``(1 + bid) ** -strength``), so dear items lose most.

    Parameters
    ----------
    env : RecommendationEnv or AdPlacementEnv, or a Gymnasium wrapper of one
        The simulator.
    strength : float >= 0
        Size of the change, in logit units (``"price"``: units of price sensitivity).
    kind : {"preferences", "trend", "price"}, default "preferences"
    seed : int or Generator, optional
        Seed of the perturbation's direction (which items trend, the taste noise).

    Returns
    -------
    env
        An env of the same class and spaces, made the same way: a Gymnasium-made env (one with a
        ``spec``) comes back from ``gymnasium.make`` with the same registered wrappers (e.g. the
        ``TimeLimit``), a bare env comes back bare. Its ``unwrapped.shift_`` records ``kind``,
        ``strength`` and ``seed``, and for ``"trend"`` the ``rising`` and ``falling`` item ids.

    Raises
    ------
    ValueError
        When ``strength`` is not a finite number >= 0 or ``kind`` is unknown.
    TypeError
        When ``env`` is not a RecommendationEnv or an AdPlacementEnv.

    Examples
    --------
    >>> from hfrl.envs import RecommendationEnv, shift
    >>> simulator = RecommendationEnv()
    >>> shop = shift(simulator, 1.0, "trend", seed=0)
    >>> shop.n_states, shop.n_actions
    (20, 10)
    >>> plan = simulator.optimal_policy(0.9)  # what the simulator recommends
    >>> bool(shop.policy_value(plan, 0.9) <= shop.optimal_value(0.9))
    True
    >>> bool((shift(simulator, 0.0, "trend", seed=0).reward_matrix() == simulator.reward_matrix()).all())
    True
    """
    strength = _check_strength(strength)
    if kind not in SHIFT_KINDS:
        raise ValueError(f"kind must be one of {SHIFT_KINDS}, got {kind!r}")
    inner = env.unwrapped if isinstance(env, gym.Env) else env
    if not isinstance(inner, RecommendationEnv | AdPlacementEnv):
        raise TypeError(f"shift needs a RecommendationEnv or an AdPlacementEnv, got {type(inner).__name__}")
    rng = resolve_rng(seed)
    record: dict[str, Any] = {"kind": kind, "strength": strength, "seed": seed}
    if kind == "price":
        changes: dict[str, Any] = {"price_sensitivity": inner.price_sensitivity + strength}
    elif kind == "preferences":
        noise = strength * rng.standard_normal(inner.affinity.shape)
        changes = {"affinity": _nudge(inner, inner.affinity, noise)}
    else:
        rising, falling = _trend_groups(rng, inner.n_actions)
        delta = np.zeros(inner.n_actions)
        delta[rising], delta[falling] = strength, -strength
        record.update(rising=rising, falling=falling)
        if isinstance(inner, RecommendationEnv):
            changes = {"affinity": inner.affinity + delta[None, :]}
        else:
            changes = {"quality": _nudge(inner, inner.quality, delta)}
    parameters = {**inner.model_parameters(), **changes}
    if env is not inner and getattr(env, "spec", None) is not None:
        shifted = gym.make(env.spec, **parameters)
    else:
        shifted = type(inner)(**parameters, render_mode=inner.render_mode)
    shifted.unwrapped.shift_ = record
    return shifted


def _check_strength(strength: Any) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    return value


def _nudge(env: Any, values: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``values + delta`` on the scale the model reads them on: logits, or probabilities by logit.

    A zero ``delta`` leaves a value exactly as it was.
    """
    if isinstance(env, RecommendationEnv):
        return values + delta
    with np.errstate(divide="ignore"):  # logit(0) = -inf, logit(1) = inf: those stay at 0 and 1
        return np.where(delta == 0, values, expit(logit(values) + delta))


def _trend_groups(rng: np.random.Generator, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random groups of ``max(1, n_items // 4)`` items: the rising and the falling."""
    order = rng.permutation(n_items)
    size = max(1, n_items // 4)
    return np.sort(order[:size]), np.sort(order[size:2 * size])
