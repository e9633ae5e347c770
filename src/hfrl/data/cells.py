"""Cell statistics: the per-(state, action) sums that every tabular consumer needs, from one pass.

Historical frequency needs events and exposure per cell, the offline learners counts and reward
sums, the off-policy estimators and the alpha curve the sums of ``1, r, r^2, 1/p, 1/p^2`` per cell.
All are sums of per-row expressions grouped by ``(state, action)``, so one ``Backend.group_sums``
computes them together (mergeable sums, as a SQL ``GROUP BY``), whatever the engine; everything after
runs in numpy on small tables.

``Atoms`` are the finer grain: distinct ``(state, action, reward, propensity)`` rows with their
counts, for what the cell sums cannot give (the bootstrap, empirical likelihood, propensities that
vary inside a cell).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hfrl.data import schema

__all__ = ["STANDARD_SUMS", "Atoms", "CellStatistics"]

S, A, R, P = schema.STATE, schema.ACTION, schema.REWARD, schema.PROPENSITY

# what one pass reads for every consumer; the propensity sums only when the column exists
STANDARD_SUMS: dict[str, str] = {
    "count": "1",
    "reward": R,
    "reward_sq": f"cast_double({R}) * cast_double({R})",
}
PROPENSITY_SUMS: dict[str, str] = {
    "inv_propensity": f"1 / {P}",
    "inv_propensity_sq": f"1 / ({P} * {P})",
}
# relative tolerance below which a cell's propensity counts as constant
CONSTANT_TOLERANCE = 1e-10


@dataclass(frozen=True, eq=False)
class CellStatistics:
    """Per-``(state, action)`` sums of one validated log source, sorted by state then action.

    Attributes
    ----------
    state, action : int64 arrays of shape (n_cells,)
        The logged pairs (cells with no row are absent).
    count : float64 array
        Rows per cell.
    reward, reward_sq : float64 arrays or None
        Sums of rewards and of squared rewards per cell (None when the logs have no reward column).
    inv_propensity, inv_propensity_sq : float64 arrays or None
        Sums of ``1/p`` and ``1/p^2`` (None when the logs have no propensity column).
    extra : dict of name -> float64 array
        Sums a consumer asked for in the same pass (HF's decayed events, weights, ...).
    n_states, n_actions : int
        The id ranges the logs were validated against.

    Examples
    --------
    >>> import pandas as pd
    >>> from hfrl.data import Logs
    >>> logs = Logs.open(pd.DataFrame({"state": [0, 0, 1], "action": [1, 1, 0],
    ...                                "reward": [1.0, 0.0, 1.0], "propensity": [0.5, 0.5, 0.25]}))
    >>> cells = logs.statistics()
    >>> cells.count.tolist(), cells.reward.tolist(), cells.propensity.tolist()
    ([2.0, 1.0], [1.0, 1.0], [0.5, 0.25])
    """

    state: np.ndarray
    action: np.ndarray
    count: np.ndarray
    reward: np.ndarray | None
    reward_sq: np.ndarray | None
    inv_propensity: np.ndarray | None
    inv_propensity_sq: np.ndarray | None
    n_states: int
    n_actions: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_sums(cls, frame, n_states: int, n_actions: int, expressions: Mapping[str, str]  # noqa: ANN001
                  ) -> CellStatistics:
        """Build from ``group_sums`` output (key columns then one column per expression)."""
        def column(name: str) -> np.ndarray | None:
            return frame[name].to_numpy(np.float64) if name in frame.columns else None

        standard = {*STANDARD_SUMS, *PROPENSITY_SUMS}
        extra = {name: column(name) for name in expressions if name not in standard}
        return cls(
            state=frame[S].to_numpy(np.int64), action=frame[A].to_numpy(np.int64),
            count=column("count"), reward=column("reward"), reward_sq=column("reward_sq"),
            inv_propensity=column("inv_propensity"), inv_propensity_sq=column("inv_propensity_sq"),
            n_states=n_states, n_actions=n_actions, extra=extra,  # type: ignore[arg-type]
            expressions={k: v for k, v in expressions.items() if k not in standard},
        )

    @property
    def n_cells(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_rows(self) -> int:
        return int(round(float(self.count.sum())))

    @property
    def has_propensity(self) -> bool:
        return self.inv_propensity is not None

    @property
    def propensity(self) -> np.ndarray:
        """Each cell's propensity where it is constant in the cell, NaN where it varies.

        Constant means ``n sum(1/p^2) = sum(1/p)^2`` to a relative 1e-10 (zero variance of 1/p).
        """
        if self.inv_propensity is None or self.inv_propensity_sq is None:
            raise ValueError("these statistics have no propensity column")
        n, first, second = self.count, self.inv_propensity, self.inv_propensity_sq
        spread = n * second - first * first
        constant = np.abs(spread) <= CONSTANT_TOLERANCE * first * first
        return np.where(constant, n / first, np.nan)

    @property
    def constant_propensity(self) -> bool:
        """Whether every cell has one propensity (a tabular logging policy)."""
        return bool(not np.isnan(self.propensity).any())

    @property
    def binary_reward(self) -> bool:
        """Whether every reward is 0 or 1 (rewards in [0, 1] with sum r^2 = sum r in every cell)."""
        if self.reward is None or self.reward_sq is None:
            return False
        return bool(np.all(self.reward_sq == self.reward) and (self.reward >= 0).all()
                    and (self.reward <= self.count).all())

    def table(self, values: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Per-cell values as a dense table, 0 where no row; ``shape`` (default
        ``(n_states, n_actions)``) may be larger, for a consumer's table."""
        out = np.zeros(shape or (self.n_states, self.n_actions), dtype=np.float64)
        out[self.state, self.action] = values
        return out

    def fingerprint(self) -> tuple:
        """``hfrl.backends.fingerprint`` of the logs, from these sums (no other pass)."""
        from hfrl.backends import fingerprint_from_sums

        n = self.count
        reward = None if self.reward is None else float(self.reward.sum())
        return fingerprint_from_sums(float(n.sum()), float(self.state @ n), float(self.action @ n), reward)


@dataclass(frozen=True, eq=False)
class Atoms:
    """Distinct ``(state, action, reward, propensity)`` rows of the logs and how often each occurs.

    Rows of one atom are exchangeable, so anything that resamples or reweights rows (the Poisson
    bootstrap, empirical likelihood) works on atoms with their counts. ``propensity`` is NaN-free
    when the logs have propensities, all ones otherwise.
    """

    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    count: np.ndarray

    @classmethod
    def from_cells(cls, cells: CellStatistics) -> Atoms:
        """The atoms of binary-reward logs with one propensity per cell, exactly, from the cell sums."""
        propensity = cells.propensity if cells.has_propensity else np.ones(cells.n_cells)
        ones, zeros = cells.reward, cells.count - cells.reward
        keep = np.concatenate([zeros, ones]) > 0
        return cls(
            state=np.tile(cells.state, 2)[keep], action=np.tile(cells.action, 2)[keep],
            reward=np.repeat([0.0, 1.0], cells.n_cells)[keep], propensity=np.tile(propensity, 2)[keep],
            count=np.concatenate([zeros, ones])[keep],
        )

    @property
    def n_atoms(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_rows(self) -> int:
        return int(round(float(self.count.sum())))
