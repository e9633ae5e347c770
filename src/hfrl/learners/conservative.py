"""Conservative offline learning: keep probability mass only on actions the logs actually tried.

An offline learner can only trust its estimates where the logging policy acted. This wrapper
refits any hfrl offline learner (``FittedQIteration``, ``DirectMethodLearner``, ``IPSLearner``)
with ``conservative=True``: its choice — and, for fitted Q iteration, every backup — ranges only
over actions logged at least ``min_count`` times in the state. States never logged keep all
actions (nothing is known there).
"""

from __future__ import annotations

from typing import Any

from hfrl.learners._common import check_in_range
from hfrl.learners._offline import OfflineLearner

__all__ = ["ConservativeLearner"]


class ConservativeLearner:
    """Run an offline learner restricted to actions with support in the logs.

    Parameters
    ----------
    learner : OfflineLearner, optional
        The learner to restrict; ``FittedQIteration()`` when None. It is not modified.
    min_count : float, default 1
        Minimum (weighted) logged count for an action to be kept in a state.

    Attributes
    ----------
    learner_ : OfflineLearner
        The fitted restricted copy; ``policy_`` and ``action_values_`` are its own.

    Examples
    --------
    >>> import pandas as pd
    >>> from hfrl.learners import ConservativeLearner, DirectMethodLearner
    >>> logs = pd.DataFrame({"state": [0, 0], "action": [0, 1], "reward": [0.2, 0.1]})
    >>> ConservativeLearner(DirectMethodLearner()).fit(logs, n_actions=3).policy_.table_.tolist()
    [[1.0, 0.0, 0.0]]
    """

    def __init__(self, learner: OfflineLearner | None = None, min_count: float = 1) -> None:
        self.learner = learner
        self.min_count = min_count

    def fit(self, logs: Any, n_states: int | None = None,
            n_actions: int | None = None) -> ConservativeLearner:
        """Fit the restricted copy of ``learner`` on ``logs``; returns self."""
        from hfrl.learners.fitted_q import FittedQIteration

        check_in_range("min_count", self.min_count, 0.0, float("inf"), low_open=True)
        base = self.learner if self.learner is not None else FittedQIteration()
        if not isinstance(base, OfflineLearner):
            raise TypeError(f"learner must be an hfrl offline learner, got {type(base).__name__}")
        params = {**base.get_params(), "conservative": True, "min_count": self.min_count}
        self.learner_ = type(base)(**params).fit(logs, n_states=n_states, n_actions=n_actions)
        self.policy_ = self.learner_.policy_
        self.action_values_ = self.learner_.action_values_
        self.counts_ = self.learner_.counts_
        return self
