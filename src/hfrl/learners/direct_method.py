"""Direct method: model the reward of each (state, action) from logs and act greedily on it.

    r(s, a) = (sum(s, a) + k * r(s)) / (n(s, a) + k),   r(s) = (sum(s) + k * r) / (n(s) + k)

Shrinking toward the state mean, then the global mean, keeps a lucky action logged twice from
beating a good one logged a thousand times. A one-step (contextual bandit) learner: it ignores
next states.

With ``context_columns`` the reward model is over features instead of state ids: one ridge
regression per action, ``r(x, a) = m + c_a + x . beta_a``, its intercept ``c_a`` shrunk toward
the global mean ``m`` with the same ``shrinkage`` pseudo-observations (see
``hfrl.learners._contextual.per_action_ridge``), and the policy is greedy on it: a
``LinearPolicy`` that decides for users never seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.contextual import LinearPolicy
from hfrl.data import shrunk_means
from hfrl.learners._common import check_in_range
from hfrl.learners._contextual import contextual_rows, per_action_ridge, served_options
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
    ridge : float, default 1.0
        Ridge penalty of the feature weights (only with ``context_columns``).
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from ``action_values_`` (or the feature model's scores); the two
        stochastic kinds keep every (allowed) action possible, so the decisions they log can
        evaluate other policies.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1].
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in the units of ``action_values_``.

    Attributes
    ----------
    action_values_ : ndarray of shape (n_states, n_actions)
        The shrunk mean rewards (tabular fit).
    coef_ : ndarray of shape (n_actions, n_features)
        Feature weights of the reward model (fit with ``context_columns``).
    intercept_ : ndarray of shape (n_actions,)
        Intercepts of the reward model, the global mean included (fit with ``context_columns``).
    policy_ : TabularPolicy or LinearPolicy
        Greedy on the reward model; a ``LinearPolicy`` over ``context_columns`` when fitted on them.
    counts_ : ndarray
        Logged (weighted) decisions per (state, action), or per action with ``context_columns``.

    Examples
    --------
    >>> import pandas as pd
    >>> logs = pd.DataFrame({"state": 0, "action": [0] * 10 + [1] + [2] * 10,
    ...                      "reward": [1.0] * 7 + [0.0] * 3 + [1.0] + [0.0] * 10})
    >>> DirectMethodLearner(shrinkage=0.0).fit(logs).policy_.table_.tolist()  # the lucky arm 1
    [[0.0, 1.0, 0.0]]
    >>> DirectMethodLearner(shrinkage=5.0).fit(logs).policy_.table_.tolist()
    [[1.0, 0.0, 0.0]]

    On features, the logged users' best action for each new user:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = pd.DataFrame({"age": rng.normal(size=2000), "spend": rng.normal(size=2000)})
    >>> actions = rng.integers(0, 2, 2000)
    >>> rewards = np.where(actions == 1, features["age"], -features["age"]) + rng.normal(size=2000)
    >>> logs = features.assign(action=actions, reward=rewards, state=0)
    >>> learner = DirectMethodLearner().fit(logs, context_columns=["age", "spend"], n_actions=2)
    >>> learner.policy_.probabilities(pd.DataFrame({"age": [-1.0, 1.0], "spend": [0.0, 0.0]})).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    _param_names = ("shrinkage", "conservative", "min_count", "ridge")

    def __init__(self, shrinkage: float = 1.0, *, conservative: bool = False,
                 min_count: float = 1, ridge: float = 1.0, policy: str = "greedy",
                 policy_epsilon: float = 0.1, policy_temperature: float = 1.0) -> None:
        self.shrinkage = shrinkage
        self.conservative = conservative
        self.min_count = min_count
        self.ridge = ridge
        self._set_policy_params(policy, policy_epsilon, policy_temperature)

    def fit(self, logs: Any, n_states: int | None = None, n_actions: int | None = None, *,
            context_columns: Any = None) -> DirectMethodLearner:
        """Fit the reward model from logs (state, action, reward) and return self.

        With ``context_columns`` (the logs' feature columns), fit one ridge regression of the
        reward on the features per action instead; ``n_states`` is then not used.
        """
        shrinkage = check_in_range("shrinkage", self.shrinkage, 0.0, float("inf"))
        self._check_common()
        if context_columns is not None:
            return self._fit_features(logs, context_columns, n_actions, shrinkage)
        stats = offline_statistics(logs, n_states, n_actions)
        self._finish(stats, shrunk_means(stats.counts, stats.reward_sums, shrinkage))
        return self

    def _fit_features(self, logs: Any, context_columns: Any, n_actions: int | None,
                      shrinkage: float) -> DirectMethodLearner:
        if self.conservative:
            raise ValueError("conservative=True restricts actions per logged state; it has no meaning "
                             "with context_columns (every user is new)")
        ridge = check_in_range("ridge", self.ridge, 0.0, float("inf"), low_open=True)
        rows = contextual_rows(logs, context_columns, n_actions)
        self.coef_, self.intercept_ = per_action_ridge(
            rows.features, rows.actions, rows.rewards, rows.n_actions, ridge=ridge, shrinkage=shrinkage,
            sample_weight=rows.weights)
        self.n_actions_, self.context_columns_ = rows.n_actions, rows.context_columns
        weights = np.ones(rows.actions.shape[0]) if rows.weights is None else rows.weights
        self.counts_ = np.bincount(rows.actions, weights=weights, minlength=rows.n_actions)
        self.policy_ = LinearPolicy(self.coef_, self.intercept_, context_columns=rows.context_columns,
                                    **served_options(self), metadata={"learner": type(self).__name__,
                                                                      "ridge": ridge, "shrinkage": shrinkage})
        return self
