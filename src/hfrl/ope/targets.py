"""A target policy read on the logged rows: what every estimator's per-row term is made of.

``Target`` holds, per unit of logged rows, the target's probability of the logged action, the reward
model's value of the target in the row's state, and the target's total mass on the row's pair (for
the model's noise); ``Target.inputs(r)`` gives the ``RowInputs`` an estimator reads, for rows of
reward ``r``. A tabular policy is read from its table (never expanded to rows); a policy given as one
distribution per logged row is read row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hfrl.ope.reward_model import RewardModel
from hfrl.ope.units import Units
from hfrl.policies import TabularPolicy

__all__ = ["RowInputs", "Target", "policy_table"]


@dataclass(frozen=True)
class RowInputs:
    """What an estimator reads on a logged row ``i`` (arrays with one value per unit).

    Attributes
    ----------
    w : importance weight ``pi(a_i|s_i) / p_i``
    r : reward ``r_i``
    q : reward model at the logged pair, ``q(s_i, a_i)`` (without row i when cross-fitted)
    v : the model's value of the target in ``s_i``, ``sum_a pi(a|s_i) q(s_i, a)`` (the same ``q``)
    full_value : ``v`` with no row left out of ``q`` (for influence terms)
    """

    w: np.ndarray
    r: np.ndarray
    q: np.ndarray
    v: np.ndarray
    target: Target | None
    full_value: np.ndarray | None = None

    def model_noise(self, correction_weight: np.ndarray | float) -> np.ndarray:
        """How a row's reward moves the estimate through a model fitted on these rows.

        ``gain * (r - q(s, a))`` with ``gain = (M_sa - C_sa) / (N_sa + m)``: ``M_sa`` the target's
        mass on the pair over the rows of its state (the model value's use of ``q(s, a)``), ``C_sa``
        the sum over the pair's rows of ``correction_weight`` (the importance-weighted corrections'
        use of it; 0 for DM, ``w`` for DR). 0 for a model fitted elsewhere, or cross-fitted by folds
        (``target`` None: each row's model never saw it).
        """
        t = self.target
        if t is None:
            return np.zeros_like(self.w)
        weight = np.broadcast_to(np.asarray(correction_weight, dtype=np.float64), self.w.shape)
        correction = t.units.pair_totals(weight, t.n_actions)
        gain = t.model.noise_gain(t.units, t.pair_mass, correction)
        q = t.model.table[t.units.state, t.units.action]
        return gain * (self.r - q)


@dataclass(frozen=True)
class Target:
    """A target policy read at the units of the logs (see the module docstring)."""

    units: Units
    model: RewardModel
    n_actions: int
    probability: np.ndarray  # pi(a_i|s_i)
    model_value: np.ndarray  # sum_a pi(a|s_i) q(s_i, a), full model
    pair_mass: np.ndarray  # sum over rows of state s_i of pi(a_i|s), per unit

    @classmethod
    def of_table(cls, table: np.ndarray, units: Units, model: RewardModel, state_rows: np.ndarray) -> Target:
        """A tabular policy; ``state_rows[s]`` is the number of logged rows in state s."""
        probability = table[units.state, units.action]
        value = np.einsum("ij,ij->i", table, model.table)[units.state]
        mass = state_rows[units.state] * probability
        return cls(units, model, table.shape[1], probability, value, mass)

    @classmethod
    def of_rows(cls, rows: np.ndarray, units: Units, model: RewardModel) -> Target:
        """One distribution per logged row (units are rows, in order)."""
        index = np.arange(units.n_units)
        probability = rows[index, units.action]
        value = np.einsum("ij,ij->i", rows, model.table[units.state])
        state_mass = np.zeros(model.table.shape)
        np.add.at(state_mass, units.state, rows)
        return cls(units, model, rows.shape[1], probability, value, state_mass[units.state, units.action])

    @property
    def weight(self) -> np.ndarray:
        """The importance weight ``pi(a|s) / p`` of each unit."""
        return self.probability / self.units.propensity

    def inputs(self, reward: np.ndarray) -> RowInputs:
        """The estimator inputs for rows of these units with rewards ``reward``."""
        q_full = self.model.table[self.units.state, self.units.action]
        q = self.model.at_logged(self.units, reward)
        value = self.model_value - self.probability * (q_full - q)
        return RowInputs(self.weight, reward, q, value, self, self.model_value)


def policy_table(policy: Any, name: str = "policy") -> tuple[np.ndarray, bool]:
    """``(probabilities, row_level)``: a TabularPolicy's table, or a per-row array of distributions."""
    if isinstance(policy, TabularPolicy):
        return policy.table_, False
    if isinstance(policy, pd.DataFrame | pd.Series):
        raise TypeError(f"{name} must be a TabularPolicy or a numpy array, got {type(policy).__name__}")
    array = np.asarray(policy, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a TabularPolicy or an (n_rows, n_actions) array, got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1) | (array < 0).any(axis=1))[0])
        raise ValueError(f"{name} row {row} has a negative, NaN or infinite probability")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-6
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} row {row} sums to {sums[row]:.6g}, expected 1 (rows are distributions)")
    return array, True
