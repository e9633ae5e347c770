"""hfrl: reinforcement learning fine-tuned toward historical frequency.

``pi' = (1 - alpha) * pi + alpha * HF``, with alpha chosen by off-policy evaluation.
The names below are imported lazily so that ``import hfrl`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "HistoricalFrequency": "hfrl.frequencies",
    "TabularPolicy": "hfrl.policies",
    "blend": "hfrl.blending",
    "evaluate": "hfrl.ope",
    "tune_alpha": "hfrl.tune",
    # rankings: Plackett-Luce policies, HF per position or position-debiased, their blend
    "RankingPolicy": "hfrl.policies",
    "PositionFrequency": "hfrl.positions",
    "examination_probabilities": "hfrl.positions",
    "blend_rankings": "hfrl.positions",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfrl' has no attribute {name!r}")
