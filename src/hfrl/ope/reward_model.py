"""The reward model q(s, a) of the direct-method and doubly robust estimators.

By default it is fitted on the logs being evaluated, with the same shrinkage as the direct-method
learner (``hfrl.data.shrunk_means``: a pair's mean reward pulled toward its state's mean, itself
pulled toward the global mean, by ``m`` pseudo-rows), and cross-fitted: on a logged row, ``q`` of
that row's pair leaves the row out of its own pair mean, ``(R_sa - r + m mu_s) / (N_sa - 1 + m)``
(the row stays in its parents, a second-order effect), so the row's correction ``r - q`` is not
shrunk toward itself. A model fitted on another split can be given instead (``RewardModel.given``).

A model fitted on the evaluated rows adds its own noise to the estimate; ``noise_gain`` is how much
one row's reward moves the estimate through the model, used by the estimators' influence terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hfrl.data import CellStatistics, shrink, shrunk_means
from hfrl.ope.units import Units

__all__ = ["RewardModel", "fit_reward_model"]


@dataclass(frozen=True)
class RewardModel:
    """``table[s, a]`` = q(s, a); pair counts, sums and state means when cross-fitted."""

    table: np.ndarray
    strength: float = 0.0
    count: np.ndarray | None = None
    total: np.ndarray | None = None
    state_mean: np.ndarray | None = None

    @classmethod
    def fit(cls, cells: CellStatistics, strength: float, shape: tuple[int, int]) -> RewardModel:
        """The shrunk means of these cells, to be cross-fitted on the same rows."""
        count, total = cells.table(cells.count, shape), cells.table(cells.reward, shape)
        n = float(count.sum())
        overall = float(total.sum()) / n if n > 0 else 0.0
        state_mean = shrink(total.sum(axis=1), count.sum(axis=1), np.array(overall), strength)
        return cls(shrunk_means(count, total, strength), strength, count, total, state_mean)

    @classmethod
    def given(cls, table: Any, shape: tuple[int, int]) -> RewardModel:
        """A model fitted elsewhere (an ``(n_states, n_actions)`` table), used as it is."""
        values = np.asarray(table, dtype=np.float64)
        if values.shape != shape:
            raise ValueError(
                f"reward_model must be an (n_states, n_actions) = {shape} table, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("reward_model has a NaN or infinite entry")
        return cls(values)

    @property
    def cross_fitted(self) -> bool:
        return self.count is not None

    @property
    def description(self) -> str:
        return "cross-fitted (leave-one-out)" if self.cross_fitted else "given"

    def at_logged(self, units: Units, reward: np.ndarray) -> np.ndarray:
        """q at each unit's pair, leaving out a row with this ``reward`` when cross-fitted."""
        q = self.table[units.state, units.action]
        if not self.cross_fitted:
            return np.broadcast_to(q, reward.shape)
        assert self.count is not None and self.total is not None and self.state_mean is not None
        n = self.count[units.state, units.action]
        r_sum = self.total[units.state, units.action]
        mean = self.state_mean[units.state]
        return (r_sum - reward + self.strength * mean) / (n - 1.0 + self.strength)

    def noise_gain(self, units: Units, target_mass: np.ndarray, correction: np.ndarray) -> np.ndarray:
        """Per unit, the derivative of the estimate (times the row count) by one reward of the pair.

        A row of pair (s, a) enters ``q(s, a)`` with weight ``1 / (N_sa + m)``, and ``q(s, a)`` enters
        the estimate through the model value of every row in state s (their total target mass on a,
        ``target_mass``) minus the importance-weighted corrections of the pair's rows
        (``correction``, the sum of their weights): 0 when the model is given.
        """
        if not self.cross_fitted:
            return np.zeros(units.n_units)
        assert self.count is not None
        return (target_mass - correction) / (self.count[units.state, units.action] + self.strength)


def fit_reward_model(
    logs: Any,
    n_states: int,
    n_actions: int,
    reward_prior: float = 1.0,
    backend: Any = None,
) -> np.ndarray:
    """The reward model of ``logs`` as a table, for ``evaluate(..., reward_model=)`` on another split.

    ``q(s, a)``: the pair's mean reward shrunk toward its state's mean, shrunk toward the global
    mean (``hfrl.data.shrunk_means`` with ``m = reward_prior``).

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"state": [0, 0, 1], "action": [1, 1, 0], "reward": [1.0, 0.0, 1.0]})
    >>> fit_reward_model(train, n_states=2, n_actions=2, reward_prior=1.0).round(3).tolist()
    [[0.556, 0.519], [0.917, 0.833]]
    """
    from hfrl.data import as_logs

    validated = as_logs(logs, backend, n_states=n_states, n_actions=n_actions)
    return RewardModel.fit(validated.statistics(), float(reward_prior), (n_states, n_actions)).table
