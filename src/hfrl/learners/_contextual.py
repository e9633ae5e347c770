"""What the learners on features share: logged rows with their context columns, a contextual env,
the per-action ridge regression of rewards on features, and the served policy's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hfrl.data import as_logs, schema
from hfrl.learners._common import check_policy_options

A, R, P, W = schema.ACTION, schema.REWARD, schema.PROPENSITY, schema.WEIGHT
CONTEXTUAL_API = ("context_dim", "context_columns", "n_actions", "reset_batch", "step_batch")
HINTS = {P: "importance weighting needs the logging propensities; without them use the direct method "
            "(DirectMethodLearner(...).fit(logs, context_columns=...))"}


@dataclass
class ContextualRows:
    """Logged decisions in memory: features ``(n, d)`` in ``context_columns`` order and their outcome."""

    features: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray | None
    weights: np.ndarray | None
    context_columns: list[str]
    n_actions: int


def check_context_columns(context_columns: Any) -> list[str]:
    """``context_columns`` as a non-empty list of distinct names, or ValueError saying what is wrong."""
    if isinstance(context_columns, str) or context_columns is None:
        raise ValueError(f"context_columns must be a list of column names, got {context_columns!r}")
    columns = [str(c) for c in context_columns]
    if not columns or len(set(columns)) != len(columns):
        raise ValueError(f"context_columns must name at least one column, each once; got {columns}")
    reserved = set(schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS) - {schema.STATE}
    clash = [c for c in columns if c in reserved]
    if clash:
        raise ValueError(f"context_columns {clash} are log-schema columns, not features")
    return columns


def contextual_rows(logs: Any, context_columns: Any, n_actions: int | None = None, *,
                    need_propensity: bool = False) -> ContextualRows:
    """Validate ``logs`` (unless already ``Logs``) and read the rows a learner on features needs.

    The schema columns are checked by the one validator; the feature columns must hold finite
    numbers (the error names the column, the first bad row and how many rows are bad).
    """
    columns = check_context_columns(context_columns)
    required = [A, R] + ([P] if need_propensity else [])
    logs = as_logs(logs, n_actions=n_actions, required=required + columns, hints=HINTS)
    optional = [c for c in (P, W) if logs.has(c) and c not in required]
    frame = logs.frame(required + optional + columns)
    try:
        features = frame[columns].to_numpy(np.float64)
    except (TypeError, ValueError):
        bad = next(c for c in columns if not _numeric(frame[c]))
        raise ValueError(f"{logs.describe()}context column {bad!r} must hold numbers, got dtype "
                         f"{frame[bad].dtype}") from None
    finite = np.isfinite(features)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{logs.describe()}context column {columns[column]!r}: row {row} has "
                         f"{float(features[row, column])!r}, expected a finite number; "
                         f"{int((~finite[:, column]).sum())} rows have one")
    return ContextualRows(
        features=features,
        actions=frame[A].to_numpy(np.intp),
        rewards=frame[R].to_numpy(np.float64),
        propensities=frame[P].to_numpy(np.float64) if logs.has(P) else None,
        weights=frame[W].to_numpy(np.float64) if logs.has(W) else None,
        context_columns=columns,
        n_actions=int(n_actions or logs.n_actions),
    )


def _numeric(values: Any) -> bool:
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def per_action_ridge(features: np.ndarray, actions: np.ndarray, rewards: np.ndarray, n_actions: int, *,
                     ridge: float, shrinkage: float, sample_weight: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One ridge regression of reward on features per action: ``(coef (A, d), intercept (A,))``.

    For action ``a`` it minimises ``sum_i w_i (r_i - m - c_a - x_i . beta_a)^2 + ridge * |beta_a|^2
    + shrinkage * c_a^2`` with ``m`` the weighted mean reward: the intercept is shrunk toward the
    global mean with ``shrinkage`` pseudo-observations (0 leaves it free, as scikit-learn's
    ``Ridge(alpha=ridge)`` does), so an action never logged predicts ``m``. Solved in closed form
    from each action's Gram matrix (one pass over the rows, sorted by action).
    """
    n, d = features.shape
    weights = np.ones(n) if sample_weight is None else sample_weight
    mean = float(weights @ rewards / weights.sum()) if weights.sum() > 0 else 0.0
    design = np.hstack([features, np.ones((n, 1))])
    order = np.argsort(actions, kind="stable")
    bounds = np.searchsorted(actions[order], np.arange(n_actions + 1))
    gram = np.zeros((n_actions, d + 1, d + 1))
    moment = np.zeros((n_actions, d + 1))
    centred = weights * (rewards - mean)
    for a in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[a]: bounds[a + 1]]
        block = design[rows]
        gram[a] = (block * weights[rows, None]).T @ block
        moment[a] = centred[rows] @ block
    penalty = np.diag(np.r_[np.full(d, ridge), shrinkage])
    logged = np.diff(bounds) > 0
    solution = np.zeros((n_actions, d + 1))
    if logged.any():
        solution[logged] = np.linalg.solve(gram[logged] + penalty, moment[logged][..., None])[..., 0]
    return solution[:, :d], solution[:, d] + mean


def served_options(learner: Any) -> dict[str, Any]:
    """``kind``/``epsilon``/``temperature`` of a contextual ``policy_`` from the learner's
    ``policy`` (greedy, softmax or epsilon_greedy), ``policy_epsilon`` and ``policy_temperature``."""
    kind, epsilon, temperature = check_policy_options(learner.policy, learner.policy_epsilon,
                                                      learner.policy_temperature)
    if kind == "epsilon_greedy":
        return {"kind": "greedy", "epsilon": epsilon, "temperature": 1.0}
    return {"kind": kind, "epsilon": 0.0, "temperature": temperature}


def contextual_env(env: Any) -> Any:
    """The unwrapped env when it offers contexts in batches (``ContextualRecommendationEnv``), else raise."""
    base = getattr(env, "unwrapped", env)
    missing = [name for name in CONTEXTUAL_API if not hasattr(base, name)]
    if missing:
        raise TypeError(f"{type(base).__name__} lacks {missing}; this learner steps a contextual env such as "
                        "hfrl/ContextualRecommendation-v0 (contexts are feature vectors)")
    return base


__all__ = ["ContextualRows", "check_context_columns", "contextual_env", "contextual_rows", "per_action_ridge",
           "served_options"]
