"""Direct method: model the reward of each (state, action) from logs and act greedily on it.

    r(s, a) = (sum(s, a) + k * r(s)) / (n(s, a) + k),   r(s) = (sum(s) + k * r) / (n(s) + k)

Shrinking toward the state mean, then the global mean, keeps a lucky action logged twice from
beating a good one logged a thousand times. A one-step (contextual bandit) learner: it ignores
next states.
"""

from __future__ import annotations

from typing import Any

from hfrl.data import shrunk_means
from hfrl.learners._common import check_in_range
from hfrl.learners._offline import OfflineLearner, offline_statistics

__all__ = ["DirectMethodLearner"]


class DirectMethodLearner(OfflineLearner):
    """Greedy policy on a shrunk per-(state, action) reward model.

    Parameters
    ----------
    shrinkage : float, default 1.0
        Pseudo-observations ``k`` pulling each mean toward its state's mean (0 = raw means).
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
        The shrunk mean rewards.
    policy_ : TabularPolicy
    counts_ : ndarray

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": 0, "action": [0] * 10 + [1] + [2] * 10,
    ...                      "reward": [1.0] * 7 + [0.0] * 3 + [1.0] + [0.0] * 10})
    >>> DirectMethodLearner(shrinkage=0.0).fit(logs).policy_.table_.tolist()  # the lucky arm 1
    [[0.0, 1.0, 0.0]]
    >>> DirectMethodLearner(shrinkage=5.0).fit(logs).policy_.table_.tolist()
    [[1.0, 0.0, 0.0]]
    """

    _param_names = ("shrinkage", "conservative", "min_count")

    def __init__(self, shrinkage: float = 1.0, *, conservative: bool = False,
                 min_count: float = 1, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0) -> None:
        self.shrinkage = shrinkage
        self.conservative = conservative
        self.min_count = min_count
        self._set_policy_params(policy, policy_epsilon, policy_temperature)

    def fit(self, logs: Any, n_states: int | None = None,
            n_actions: int | None = None) -> DirectMethodLearner:
        """Fit the reward model from logs (state, action, reward); returns self."""
        shrinkage = check_in_range("shrinkage", self.shrinkage, 0.0, float("inf"))
        self._check_common()
        stats = offline_statistics(logs, n_states, n_actions)
        self._finish(stats, shrunk_means(stats.counts, stats.reward_sums, shrinkage))
        return self
