"""Gymnasium environments with exact ground truth, log simulation and simulators fitted to logs.

``import hfrl.envs`` registers ``hfrl/Recommendation-v0``, ``hfrl/AdPlacement-v0`` and
``hfrl/ContextualRecommendation-v0`` (users as feature vectors, items as embeddings; see
:class:`ContextualRecommendationEnv`) and ``hfrl/SlatePage-v0`` (slates with a position or cascade
click model, ``hfrl.envs.slates``) with Gymnasium
(``gymnasium.make("hfrl.envs:hfrl/Recommendation-v0")`` imports this module itself).
Every tabular env is a :class:`TabularMDPEnv`: besides ``reset``/``step`` and the vectorised batch API
(``reset_batch``, ``step_batch``) for many independent users at once -- one sampler behind both --
it exposes its exact model (``reward_matrix``, ``transition_matrix``, ``initial_distribution``,
``expected_reward``). The exact truth of a model (``policy_value``, ``q_values``, ``optimal_q``,
``optimal_policy``, ...) is computed by the functions of :mod:`hfrl.envs.exact`, which the envs'
methods of the same names call.

``shift(env, strength, kind)`` builds a "real shop" that differs from a simulator by a chosen
amount (tastes, a trend, price sensitivity), with the same exact truth, and
``collect_logs(..., drift_to=shop)`` logs a shop drifting from one to the other over time.
"""

from __future__ import annotations

import gymnasium as gym

from hfrl.envs import exact
from hfrl.envs.ad_placement import AdPlacementEnv
from hfrl.envs.contextual_recommendation import ContextualRecommendationEnv, MonteCarloReturn
from hfrl.envs.fitted import fit_env
from hfrl.envs.logs import collect_logs, logging_policy
from hfrl.envs.recommendation import RecommendationEnv
from hfrl.envs.shifts import SHIFT_KINDS, shift
from hfrl.envs.slates import CLICK_MODELS, SlateEnv, collect_slate_logs, slate_policy_value
from hfrl.envs.tabular import TabularMDPEnv

__all__ = [
    "CLICK_MODELS",
    "SHIFT_KINDS",
    "AdPlacementEnv",
    "ContextualRecommendationEnv",
    "MonteCarloReturn",
    "RecommendationEnv",
    "SlateEnv",
    "TabularMDPEnv",
    "collect_logs",
    "collect_slate_logs",
    "exact",
    "fit_env",
    "logging_policy",
    "shift",
    "slate_policy_value",
]

# The time limit of Recommendation-v0 is a TimeLimit wrapper, not part of the exact truth: see
# RecommendationEnv.truncation_error_bound (negligible at 1,000 steps with 10% churn).
RECOMMENDATION_MAX_STEPS = 1000

_REGISTRATIONS = {
    "hfrl/Recommendation-v0": ("hfrl.envs.recommendation:RecommendationEnv", RECOMMENDATION_MAX_STEPS),
    "hfrl/AdPlacement-v0": ("hfrl.envs.ad_placement:AdPlacementEnv", None),
    "hfrl/ContextualRecommendation-v0": ("hfrl.envs.contextual_recommendation:ContextualRecommendationEnv",
                                         RECOMMENDATION_MAX_STEPS),
    "hfrl/SlatePage-v0": ("hfrl.envs.slates:SlateEnv", None),
}

for _env_id, (_entry_point, _limit) in _REGISTRATIONS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_limit)
