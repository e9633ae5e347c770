"""Support diagnostics: how much of the target's mass falls on pairs the logs cannot speak for.

The target's mass on ``(state, action)`` pairs absent from the rows (averaged over logged rows) is
split in two. Where the logging policy's support is known and excludes the pair, importance
weighting is biased (``violation_share``, a proven support violation). Elsewhere the pair may have
been possible, merely not drawn: variance, not bias (``unobserved_share``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["SUPPORT_MASS_TOLERANCE", "Support", "SupportWarning", "known_support", "warn_support"]

# observed logging mass at or above which a state's support is taken as fully known
SUPPORT_MASS_TOLERANCE = 1e-6
# unobserved mass at or above which a (variance) warning is given
UNOBSERVED_WARNING_SHARE = 0.5


class SupportWarning(UserWarning):
    """The target policy puts mass on actions the logging policy cannot take in a state (a proven
    support violation: bias), or most of its mass on pairs not seen in the rows (variance)."""


def known_support(counts: np.ndarray, inverse_propensity: np.ndarray | None, propensity_source: str
                  ) -> np.ndarray:
    """Per state: is the logging policy's support known, so that an unseen action is unsupported?

    With logged propensities, the distinct actions seen in a state carry ``sum_a p(a|s)`` of the
    logging policy's mass (``p`` per pair is the harmonic mean ``N_sa / sum(1/p)``: the propensity
    itself when constant, at most the arithmetic mean otherwise, so the seen mass is never
    overstated). Only where that mass is ``>= 1 - 1e-6`` has every action the logging policy could
    take been seen; elsewhere an unseen action may simply not have been drawn. With estimated
    propensities the support IS the observed set; without propensities it is unknown everywhere.
    """
    n_states = counts.shape[0]
    if propensity_source == "estimated":
        return np.ones(n_states, dtype=bool)
    if propensity_source != "logged" or inverse_propensity is None:
        return np.zeros(n_states, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        seen_mass = np.where(counts > 0, counts / inverse_propensity, 0.0).sum(axis=1)
    return seen_mass >= 1.0 - SUPPORT_MASS_TOLERANCE


@dataclass(frozen=True)
class Support:
    """The target's mass (averaged over logged rows) on unsupported and on unobserved pairs."""

    violation_share: float = 0.0
    violation_example: tuple[int, int] | None = None
    unobserved_share: float = 0.0
    unobserved_example: tuple[int, int] | None = None

    @classmethod
    def of(cls, rows: np.ndarray, row_states: np.ndarray, row_count: np.ndarray, counts: np.ndarray,
           known: np.ndarray) -> Support:
        """From distributions ``rows`` (one per group of logged rows: a state's row of a table, or a
        logged row's distribution) with their states and how many logged rows each stands for."""
        unseen = counts[row_states] == 0
        mass = np.einsum("ij,ij->i", rows, unseen)
        total = float(row_count.sum())
        found = []
        for part in (known[row_states], ~known[row_states]):
            weighted = np.where(part, mass, 0.0)
            share = float(weighted @ row_count / total) if total > 0 else 0.0
            example = None
            if share > 0:
                i = int(np.flatnonzero((weighted > 0) & (row_count > 0))[0])
                example = (int(row_states[i]), int(np.argmax(rows[i] * unseen[i])))
            found += [share, example]
        return cls(*found)


def warn_support(support: Support, stacklevel: int = 3) -> None:
    """Warn of proven support violations (bias) and of a mostly unobserved target (variance)."""
    if support.violation_share > 0:
        s, a = support.violation_example or (-1, -1)
        warnings.warn(
            f"support violation: the target policy puts {100 * support.violation_share:.3g}% of "
            f"its mass (averaged over logged rows) on actions the logging policy cannot take in that "
            f"state (e.g. state {s}, action {a}: the propensities of the actions seen there already sum "
            "to 1, or propensities are estimated and the support is the observed set); "
            "importance-weighted estimates ignore that mass and are biased there, DM and DR "
            "extrapolate it with the reward model",
            SupportWarning,
            stacklevel=stacklevel,
        )
    if support.unobserved_share >= UNOBSERVED_WARNING_SHARE:
        s, a = support.unobserved_example or (-1, -1)
        warnings.warn(
            f"the target policy puts {100 * support.unobserved_share:.3g}% of its mass on (state, action) "
            f"pairs not seen in these rows (e.g. state {s}, action {a}) although the logging policy may "
            "take them (their states' seen propensities sum to less than 1): not a support violation "
            "and no bias for importance weighting, but the estimate rests on few rows (high variance; "
            "see ess)",
            SupportWarning,
            stacklevel=stacklevel,
        )
