"""PyTorch for the neural learners: imported on first use, with an error naming the extra to install.

Torch is an optional dependency (``pip install 'hfrl[torch]'``): importing ``hfrl.learners`` never
imports it, only ``fit`` of a neural learner does. A trained network leaves torch as a
``NeuralPolicy`` (numpy weights), so serving and evaluating need no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hfrl.contextual import ACTIVATIONS, NeuralPolicy
from hfrl.policies import resolve_rng

EXTRA = "pip install 'hfrl[torch]'"


def import_torch(learner: str) -> Any:
    """The ``torch`` module, or ImportError saying that ``learner`` needs the ``hfrl[torch]`` extra."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{learner} needs PyTorch, an optional dependency of hfrl: install it with "
                          f"{EXTRA} (torch==2.13.0, the CPU build is enough)") from exc
    return torch


def check_hidden(hidden: Any) -> tuple[int, ...]:
    """Hidden layer sizes as a tuple of positive ints (empty: a linear model)."""
    sizes = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in sizes):
        raise ValueError(f"hidden must be a sequence of positive layer sizes, got {hidden!r}")
    return tuple(int(h) for h in sizes)


def check_activation(activation: Any) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return str(activation)


def build_mlp(torch: Any, n_inputs: int, hidden: Sequence[int], n_outputs: int, activation: str,
              seed: int) -> Any:
    """``nn.Sequential`` of Linear layers with ``activation`` between them, initialised from ``seed``."""
    nn = torch.nn
    layers: list[Any] = []
    width = n_inputs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for size in hidden:
            layers += [nn.Linear(width, size),
                       nn.ReLU() if activation == "relu" else nn.Tanh()]
            width = size
        layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def to_policy(model: Any, *, activation: str, shift: np.ndarray, scale: np.ndarray,
              context_columns: Sequence[str] | None, options: dict[str, Any], learner: str) -> NeuralPolicy:
    """The trained ``model`` as a numpy ``NeuralPolicy`` (same layout as ``nn.Linear``)."""
    linear = [m for m in model if hasattr(m, "weight")]
    layers = [(_numpy(m.weight), _numpy(m.bias)) for m in linear]
    return NeuralPolicy(layers, activation=activation, input_shift=shift, input_scale=scale,
                        context_columns=context_columns, metadata={"learner": learner}, **options)


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


def standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (1 where a feature is constant)."""
    shift = features.mean(axis=0)
    scale = features.std(axis=0)
    return shift, np.where(scale > 1e-12, scale, 1.0)


def seed_of(random_state: int | np.random.Generator | None) -> tuple[np.random.Generator, int]:
    """A numpy Generator and an integer seed for torch, both from ``random_state`` (resolved once)."""
    rng = resolve_rng(random_state)
    return rng, int(rng.integers(2 ** 62))


__all__ = ["EXTRA", "build_mlp", "check_activation", "check_hidden", "import_torch", "seed_of",
           "standardisation", "to_policy"]
