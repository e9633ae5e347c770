"""IPS-weighted policy learning: pick, per state, the action with the best importance-weighted value.

    V(s, a) = (1 / n(s)) * sum_{i: s_i = s, a_i = a} w_i * r_i / p_i

is the inverse-propensity estimate of the mean reward of always playing a in s (unbiased when
the logging propensities p_i are right and positive); the learned policy is greedy in it.
``max_weight`` caps 1 / p_i to trade that bias for lower variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.learners._common import check_in_range
from hfrl.learners._offline import OfflineLearner, offline_statistics

__all__ = ["IPSLearner"]


class IPSLearner(OfflineLearner):
    """Greedy policy on per-(state, action) inverse-propensity value estimates.

    Parameters
    ----------
    max_weight : float, optional
        Cap on the importance weight 1 / propensity (None: uncapped).
    conservative : bool, default False
        Choose only among actions logged at least ``min_count`` times in the state.
    min_count : float, default 1
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from ``action_values_``; the two stochastic kinds keep every
        (allowed) action possible, so the decisions they log can evaluate other policies.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1].
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in the units of ``action_values_``.

    Attributes
    ----------
    action_values_ : ndarray of shape (n_states, n_actions)
        IPS estimates; 0 for actions never logged in a state.
    policy_ : TabularPolicy
    counts_ : ndarray

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": [0, 0, 0], "action": [0, 0, 1], "reward": [1.0, 1.0, 1.0],
    ...                      "propensity": [0.9, 0.9, 0.1]})
    >>> IPSLearner().fit(logs).action_values_.round(3).tolist()
    [[0.741, 3.333]]
    """

    _param_names = ("max_weight", "conservative", "min_count")

    def __init__(self, max_weight: float | None = None, *, conservative: bool = False,
                 min_count: float = 1, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0) -> None:
        self.max_weight = max_weight
        self.conservative = conservative
        self.min_count = min_count
        self._set_policy_params(policy, policy_epsilon, policy_temperature)

    def fit(self, logs: Any, n_states: int | None = None, n_actions: int | None = None) -> IPSLearner:
        """Fit from logs with a ``propensity`` column; returns self."""
        self._check_common()
        cap = None if self.max_weight is None else check_in_range(
            "max_weight", self.max_weight, 1.0, float("inf"))
        stats = offline_statistics(logs, n_states, n_actions, need_propensity=True, max_weight=cap)
        state_counts = stats.counts.sum(axis=1, keepdims=True)
        values = np.divide(stats.ips_sums, state_counts, out=np.zeros_like(stats.ips_sums),
                           where=state_counts > 0)
        self._finish(stats, values)
        return self
