"""Small pieces every learner shares: parameter checks, env access, schedules, learning curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hfrl.policies import TabularPolicy

BATCH_API = ("n_states", "n_actions", "reset_batch", "step_batch")
POLICY_KINDS = ("greedy", "softmax", "epsilon_greedy")


def check_in_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """Return ``value`` as a float or raise ValueError naming the parameter and the range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return number


def check_feedback(action: Any, reward: Any, n_actions: int) -> tuple[int, float]:
    """One decision's ``(action, reward)`` as ``(int, float)``, or ValueError naming which is bad."""
    a = int(action)
    if a != action or not 0 <= a < n_actions:
        raise ValueError(f"action must be an arm id in [0, {n_actions}), got {action!r}")
    r = float(reward)
    if not math.isfinite(r):
        raise ValueError(f"reward must be a finite number, got {reward!r}")
    return a, r


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int >= 1 or raise ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def batch_env(env: Any) -> Any:
    """The unwrapped env when it offers the batch API (``reset_batch``/``step_batch``), else raise."""
    base = getattr(env, "unwrapped", env)
    missing = [name for name in BATCH_API if not hasattr(base, name)]
    if missing:
        raise TypeError(
            f"{type(base).__name__} lacks {missing}; learners step hfrl envs (or any env with "
            f"n_states, n_actions, reset_batch(n, rng) and step_batch(states, actions, rng))"
        )
    return base


def expected_rewards(env: Any) -> np.ndarray | None:
    """The env's exact (n_states, n_actions) mean rewards when it exposes them, else None."""
    base = getattr(env, "unwrapped", env)
    if hasattr(base, "reward_matrix"):
        return np.asarray(base.reward_matrix(), dtype=np.float64)
    return None


def epsilon_schedule(start: float, final: float | None, decay: str, n_iterations: int,
                     decay_fraction: float) -> np.ndarray:
    """Exploration rate for each iteration: constant, or a linear/exponential decay to ``final``.

    The decay runs over the first ``decay_fraction`` of the iterations; afterwards epsilon stays at
    ``final`` (every action keeps being tried when ``final > 0``). ``final=None`` keeps ``start``.
    """
    if final is None or decay == "constant":
        return np.full(n_iterations, start)
    horizon = max(1, int(round(decay_fraction * (n_iterations - 1))))  # fraction 1: final at the end
    progress = np.minimum(np.arange(n_iterations) / horizon, 1.0)
    if decay == "linear":
        return start + (final - start) * progress
    if decay == "exponential":
        if start <= 0 or final <= 0:
            raise ValueError("exponential epsilon decay needs epsilon > 0 and epsilon_final > 0")
        return start * (final / start) ** progress
    raise ValueError(f"epsilon_decay must be 'constant', 'linear' or 'exponential', got {decay!r}")


class CurveRecorder:
    """Accumulates rewards into windows of about ``window`` env steps; ``frame()`` is the curve."""

    def __init__(self, n_steps: int, n_windows: int = 100) -> None:
        self.window = max(1, n_steps // n_windows)
        self.steps: list[int] = []
        self.means: list[float] = []
        self._sum = 0.0
        self._count = 0
        self._done = 0

    def add(self, reward_sum: float, count: int) -> None:
        self._sum += reward_sum
        self._count += count
        self._done += count
        if self._count >= self.window:
            self.flush()

    def flush(self) -> None:
        if self._count:
            self.steps.append(self._done)
            self.means.append(self._sum / self._count)
            self._sum = 0.0
            self._count = 0

    def frame(self) -> pd.DataFrame:
        self.flush()
        return pd.DataFrame({"step": np.asarray(self.steps, dtype=np.int64),
                             "mean_reward": np.asarray(self.means, dtype=np.float64)})


def check_policy_options(policy: Any, epsilon: Any, temperature: Any) -> tuple[str, float, float]:
    """The served-policy options of an online learner, checked: ``(policy, epsilon, temperature)``."""
    if policy not in POLICY_KINDS:
        raise ValueError(f"policy must be one of {POLICY_KINDS}, got {policy!r}")
    return (policy, check_in_range("policy_epsilon", epsilon, 0.0, 1.0),
            check_in_range("policy_temperature", temperature, 0.0, float("inf"), low_open=True))


def served_policy(estimator: Any, values: np.ndarray) -> TabularPolicy:
    """``estimator.policy_``: its ``policy`` kind (greedy, softmax, epsilon-greedy) over ``values``.

    The metadata names the learner and, for a stochastic kind, the kind and its parameter.
    """
    kind, epsilon, temperature = check_policy_options(
        estimator.policy, estimator.policy_epsilon, estimator.policy_temperature)
    metadata: dict[str, Any] = {"learner": type(estimator).__name__}
    if kind == "softmax":
        metadata.update(policy=kind, temperature=temperature)
    elif kind == "epsilon_greedy":
        metadata.update(policy=kind, epsilon=epsilon)
    return TabularPolicy.from_q_values(values, kind, epsilon=epsilon, temperature=temperature,
                                       metadata=metadata)
