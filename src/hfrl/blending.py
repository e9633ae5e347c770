"""Fine-tune a learned policy toward the historical frequency: ``pi' = pi + alpha * (HF - pi)``.

Methods
-------
``linear``     ``(1 - alpha) * pi + alpha * HF`` (the method's formula; a mixture of policies).
``geometric``  ``pi' ∝ pi^(1 - alpha) * HF^alpha`` (a log-linear pool: zeros in either stay zero).

``alpha`` is a float in [0, 1], one value per state, or count-based per state via
``count_based_alpha``: ``alpha_s = alpha * n_s / (n_s + kappa)``, so that states with more history
lean more on it. ``blend_q`` is the seed article's literal variant on a Q-table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.policies import TabularPolicy, check_distribution_table

__all__ = ["BLEND_METHODS", "as_table", "blend", "blend_q", "count_based_alpha"]

BLEND_METHODS = ("linear", "geometric")


def as_table(hf: Any, name: str = "hf") -> np.ndarray:
    """The probability table of a fitted ``HistoricalFrequency``, a ``TabularPolicy`` or an array."""
    if isinstance(hf, TabularPolicy):
        return hf.table_
    table = getattr(hf, "probabilities_", None)
    if table is None and hasattr(hf, "fit") and not isinstance(hf, np.ndarray):
        raise ValueError(f"{name} is not fitted: call fit(logs) first")
    return check_distribution_table(hf if table is None else table, name)


def _alpha_vector(alpha: Any, n_states: int) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n_states, float(a))
    elif a.shape != (n_states,):
        raise ValueError(f"alpha must be a float or one value per state ({n_states},), got {a.shape}")
    if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
        bad = int(np.flatnonzero(~np.isfinite(a) | (a < 0) | (a > 1))[0])
        raise ValueError(f"alpha must be in [0, 1]; alpha[{bad}] = {float(a[bad])}")
    return a


def count_based_alpha(alpha: float, state_counts: Any, kappa: float) -> np.ndarray:
    """Per-state alpha ``alpha * n_s / (n_s + kappa)``: more history, more weight on HF.

    Examples
    --------
    >>> count_based_alpha(0.5, [0, 10, 90], kappa=10).tolist()
    [0.0, 0.25, 0.45]
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa!r}")
    n = np.asarray(state_counts, dtype=np.float64)
    if n.ndim != 1 or (n < 0).any():
        raise ValueError("state_counts must be a 1-D array of non-negative counts")
    return alpha * n / (n + kappa)


def blend(policy: Any, hf: Any, alpha: Any, method: str = "linear") -> TabularPolicy:
    """Blend a learned policy toward the historical frequency.

    Parameters
    ----------
    policy : TabularPolicy or array of shape (n_states, n_actions)
        The learned policy pi.
    hf : HistoricalFrequency (fitted), TabularPolicy or array of the same shape
        The historical frequency HF.
    alpha : float in [0, 1] or array of shape (n_states,)
        Weight on HF; 0 gives pi, 1 gives HF.
    method : {"linear", "geometric"}

    Returns
    -------
    TabularPolicy

    Raises
    ------
    ValueError
        alpha outside [0, 1], shapes that differ, or rows that are not distributions.

    Examples
    --------
    >>> import numpy as np
    >>> pi = np.array([[1.0, 0.0], [0.5, 0.5]])
    >>> hf = np.array([[0.0, 1.0], [0.9, 0.1]])
    >>> blend(pi, hf, 0.25).table_.tolist()
    [[0.75, 0.25], [0.6, 0.4]]
    """
    pi_table = as_table(policy, "policy")
    hf_table = as_table(hf, "hf")
    if pi_table.shape != hf_table.shape:
        raise ValueError(
            f"policy has shape {pi_table.shape} but hf has shape {hf_table.shape}; "
            "they must cover the same states and actions"
        )
    a = _alpha_vector(alpha, pi_table.shape[0])[:, None]
    if method == "linear":
        table = pi_table + a * (hf_table - pi_table)
    elif method == "geometric":
        with np.errstate(divide="ignore"):
            log_mix = (1.0 - a) * np.log(pi_table) + a * np.log(hf_table)
        # 0 * log(0) is taken as 0: a source with weight 0 does not veto an action.
        log_mix = np.where((a == 0.0) & (pi_table > 0), np.log(np.where(pi_table > 0, pi_table, 1)), log_mix)
        log_mix = np.where((a == 1.0) & (hf_table > 0), np.log(np.where(hf_table > 0, hf_table, 1)), log_mix)
        row_max = log_mix.max(axis=1, keepdims=True)
        disjoint = ~np.isfinite(row_max[:, 0])
        if disjoint.any():
            row = int(np.flatnonzero(disjoint)[0])
            raise ValueError(
                f"geometric blend: in state {row} pi and HF share no action with positive "
                "probability, so their product is empty; use method='linear'"
            )
        weights = np.exp(log_mix - row_max)
        table = weights / weights.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    metadata = dict(getattr(policy, "metadata", {}) or {})
    metadata.update({"blend_method": method})
    if np.ndim(alpha) == 0:
        metadata["alpha"] = float(alpha)
    return TabularPolicy(np.clip(table, 0.0, None), metadata)


def blend_q(q_values: Any, hf: Any, alpha: float) -> np.ndarray:
    """The seed article's literal variant: ``Q' = Q + alpha * (HF - Q)`` on a Q-table.

    It mixes values with probabilities, so it is only meaningful when rewards live on the
    probability scale; it is kept for reproducing the article. Prefer ``blend`` on policies.
    """
    q = np.asarray(q_values, dtype=np.float64)
    hf_table = as_table(hf, "hf")
    if q.shape != hf_table.shape:
        raise ValueError(f"q_values has shape {q.shape} but hf has shape {hf_table.shape}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return q + alpha * (hf_table - q)
