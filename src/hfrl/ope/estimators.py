"""The off-policy estimators, one class each, its per-row term one line of math.

Notation, for a logged row i with state ``s_i``, action ``a_i``, reward ``r_i`` and logging
propensity ``p_i``, and a target policy ``pi`` (see ``hfrl.ope.targets.RowInputs``)::

    w_i = pi(a_i|s_i) / p_i                      importance weight
    q_i = q(s_i, a_i)                             reward model at the logged pair (cross-fitted)
    v_i = sum_a pi(a|s_i) q(s_i, a)               the model's value of the target in s_i
    model_noise(c)                                how row i's reward moves q, hence the estimate

Every estimate is ``sum_i term_i / sum_i normalizer_i`` (the normalizer is 1 unless stated). The
fast paths never restate a formula: they call ``term`` on the inputs of a whole unit of rows (a
``(state, action)`` cell, say) at r = 0 and r = 1, since every term is affine in the reward
(``hfrl.ope.units``), and the alpha curve mixes the terms of the two end policies, since the terms of
the estimators with ``linear_in_target`` are linear in the target's probabilities
(``hfrl.tune``). The tests check both against a per-row evaluation of these same formulas.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hfrl.ope.targets import RowInputs

__all__ = ["DEFAULT_ESTIMATORS", "ESTIMATORS", "Estimator", "make_estimator"]


class Estimator:
    """One estimator: its per-row ``term``, an optional ``normalizer``, its ``influence``.

    ``influence`` is the per-row term whose variance gives the standard error; it differs from
    ``term`` only when the reward model is fitted on the evaluated rows, whose noise then enters.
    ``weight`` is the per-row importance weight the estimator applies (for ESS and the maximum
    weight).
    """

    name: ClassVar[str]
    uses_propensity: ClassVar[bool] = True
    uses_model: ClassVar[bool] = False
    linear_in_target: ClassVar[bool] = True

    def term(self, x: RowInputs) -> np.ndarray:
        raise NotImplementedError

    def normalizer(self, x: RowInputs) -> np.ndarray | None:
        return None

    def influence(self, x: RowInputs) -> np.ndarray:
        return self.term(x)

    def weight(self, x: RowInputs) -> np.ndarray:
        return x.w


class IPS(Estimator):
    """Inverse propensity scoring (Horvitz & Thompson 1952): ``V = mean_i w_i r_i``.

    Unbiased when the logging policy gives every action the target takes a positive propensity.
    """

    name = "ips"

    def term(self, x: RowInputs) -> np.ndarray:
        return x.w * x.r


class ClippedIPS(Estimator):
    """IPS with weights capped at ``c`` (Ionides 2008): ``V = mean_i min(w_i, c) r_i``.

    Trades a downward bias on heavily weighted rows for less variance.
    """

    name = "clipped_ips"
    linear_in_target = False

    def __init__(self, threshold: float = 10.0) -> None:
        self.threshold = threshold

    def term(self, x: RowInputs) -> np.ndarray:
        return self.weight(x) * x.r

    def weight(self, x: RowInputs) -> np.ndarray:
        return np.minimum(x.w, self.threshold)


class SNIPS(Estimator):
    """Self-normalised IPS (Swaminathan & Joachims 2015): ``V = sum_i w_i r_i / sum_i w_i``.

    Slightly biased, consistent, and bounded by the reward range whatever the weights.
    """

    name = "snips"

    def term(self, x: RowInputs) -> np.ndarray:
        return x.w * x.r

    def normalizer(self, x: RowInputs) -> np.ndarray:
        return x.w


class DM(Estimator):
    """Direct method: ``V = mean_i v_i``, the reward model's value of the target.

    No importance weights: low variance, but biased wherever the model is (here: shrinkage toward
    the parent means, and pairs never logged). Its interval covers the variance only.
    """

    name = "dm"
    uses_propensity = False
    uses_model = True

    def term(self, x: RowInputs) -> np.ndarray:
        return x.v

    def influence(self, x: RowInputs) -> np.ndarray:
        return x.full_value + x.model_noise(0.0)

    def weight(self, x: RowInputs) -> np.ndarray:
        return np.ones_like(x.w)


class DR(Estimator):
    """Doubly robust (Dudik, Langford & Li 2011): ``V = mean_i v_i + w_i (r_i - q_i)``.

    Unbiased when the propensities are right, whatever the model; the model only removes variance.
    """

    name = "dr"
    uses_model = True

    def term(self, x: RowInputs) -> np.ndarray:
        return x.v + x.w * (x.r - x.q)

    def influence(self, x: RowInputs) -> np.ndarray:
        return self.term(x) + x.model_noise(x.w)


class SwitchDR(Estimator):
    """Switch doubly robust (Wang, Agarwal & Dudik 2017):
    ``V = mean_i v_i + [w_i <= tau] w_i (r_i - q_i)``.

    Rows whose weight exceeds ``tau`` keep only the model's value (their correction would dominate
    the variance).
    """

    name = "switch_dr"
    uses_model = True
    linear_in_target = False

    def __init__(self, threshold: float = 10.0) -> None:
        self.threshold = threshold

    def term(self, x: RowInputs) -> np.ndarray:
        return x.v + self.weight(x) * (x.r - x.q)

    def influence(self, x: RowInputs) -> np.ndarray:
        return self.term(x) + x.model_noise(self.weight(x))

    def weight(self, x: RowInputs) -> np.ndarray:
        return np.where(x.w <= self.threshold, x.w, 0.0)


ESTIMATORS = ("ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")
_CLASSES: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (IPS, ClippedIPS, SNIPS, DM, DR, SwitchDR)
}


def make_estimator(name: str, clip_threshold: float = 10.0, switch_threshold: float = 10.0) -> Estimator:
    """The estimator called ``name`` with its threshold."""
    if name == "clipped_ips":
        return ClippedIPS(clip_threshold)
    if name == "switch_dr":
        return SwitchDR(switch_threshold)
    return _CLASSES[name]()
