"""Units: groups of logged rows that share state, action and propensity, with their reward sums.

Every estimator in ``hfrl.ope.estimators`` reads a row only through its state, action, propensity
and reward, and its per-row term is affine in the reward (``term = a + b r`` with ``a``, ``b`` fixed
within a unit). So sums over rows of terms, and of products of terms, need per unit only the row
count, the reward sum and the squared-reward sum, whatever the grain:

* a ``(state, action)`` cell whose propensity is constant (a tabular logging policy, estimated
  propensities): the cell statistics of one pass, exact for every estimator;
* an atom: distinct ``(state, action, reward, propensity)`` rows (propensities varying in a cell,
  and the bootstrap, whose resampling treats an atom's rows as exchangeable);
* a row: policies given as one distribution per logged row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hfrl.data import Atoms, CellStatistics, schema

__all__ = ["Affine", "Units", "affine"]


@dataclass(frozen=True)
class Affine:
    """A per-row term ``const + slope * r``, one ``(const, slope)`` per unit."""

    const: np.ndarray
    slope: np.ndarray

    def __add__(self, other: Affine) -> Affine:
        return Affine(self.const + other.const, self.slope + other.slope)

    def __sub__(self, other: Affine) -> Affine:
        return Affine(self.const - other.const, self.slope - other.slope)

    def scaled(self, factor: float | np.ndarray) -> Affine:
        return Affine(self.const * factor, self.slope * factor)


def affine(term: Callable[[np.ndarray], np.ndarray], n_units: int) -> Affine:
    """The ``(const, slope)`` of a term that is affine in the reward, from its values at r = 0 and 1."""
    at_zero = np.broadcast_to(np.asarray(term(np.zeros(n_units)), dtype=np.float64), (n_units,))
    at_one = np.broadcast_to(np.asarray(term(np.ones(n_units)), dtype=np.float64), (n_units,))
    return Affine(at_zero.copy(), at_one - at_zero)


@dataclass(frozen=True)
class Units:
    """Groups of rows sharing ``(state, action, propensity)``: count, reward sum, squared-reward sum.

    ``pair`` is each unit's index among the logged ``(state, action)`` pairs (the cells), so that
    per-pair totals (the reward model's counts, a target's mass) can be read at any grain.
    """

    state: np.ndarray
    action: np.ndarray
    propensity: np.ndarray
    count: np.ndarray
    reward: np.ndarray
    reward_sq: np.ndarray
    grain: str

    @classmethod
    def from_cells(cls, cells: CellStatistics, propensity: np.ndarray) -> Units:
        """One unit per cell, with one propensity per cell (logged and constant, or estimated)."""
        return cls(cells.state, cells.action, np.asarray(propensity, dtype=np.float64), cells.count,
                   cells.reward, cells.reward_sq, "cell")

    @classmethod
    def from_atoms(cls, atoms: Atoms, propensity: np.ndarray | None = None) -> Units:
        """One unit per atom (``propensity`` replaces the logged one, e.g. when estimated)."""
        p = atoms.propensity if propensity is None else propensity
        return cls(atoms.state, atoms.action, np.asarray(p, dtype=np.float64), atoms.count,
                   atoms.count * atoms.reward, atoms.count * atoms.reward**2, "atom")

    @classmethod
    def from_rows(cls, frame: pd.DataFrame, propensity: np.ndarray) -> Units:
        """One unit per row, in row order."""
        reward = frame[schema.REWARD].to_numpy(np.float64)
        return cls(frame[schema.STATE].to_numpy(np.int64), frame[schema.ACTION].to_numpy(np.int64),
                   np.asarray(propensity, dtype=np.float64), np.ones_like(reward), reward, reward**2, "row")

    @property
    def n_units(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_rows(self) -> int:
        return int(round(float(self.count.sum())))

    def total(self, term: Affine) -> float:
        """Sum over rows of the term."""
        return float(term.const @ self.count + term.slope @ self.reward)

    def cross(self, first: Affine, second: Affine) -> float:
        """Sum over rows of the product of two terms."""
        return float(
            (first.const * second.const) @ self.count
            + (first.const * second.slope + first.slope * second.const) @ self.reward
            + (first.slope * second.slope) @ self.reward_sq
        )

    def gram(self, terms: list[Affine]) -> np.ndarray:
        """Sums over rows of the products of every pair of terms (a symmetric matrix)."""
        size = len(terms)
        out = np.empty((size, size))
        for i in range(size):
            for j in range(i, size):
                out[i, j] = out[j, i] = self.cross(terms[i], terms[j])
        return out

    def per_row(self, term: Affine) -> np.ndarray:
        """The term's value on one row of each unit whose rows share a reward (atoms, rows)."""
        return term.const + term.slope * self.reward / self.count

    def pair_totals(self, values: np.ndarray, n_actions: int) -> np.ndarray:
        """Per unit, the sum over all rows of its ``(state, action)`` pair of ``values`` (per row)."""
        key = self.state * n_actions + self.action
        if self.grain == "cell":
            return values * self.count
        unique, inverse = np.unique(key, return_inverse=True)
        totals = np.bincount(inverse, weights=values * self.count, minlength=unique.size)
        return totals[inverse]
