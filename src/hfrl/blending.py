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

from hfrl.policies import Policy, TabularPolicy, check_distribution_table, resolve_rng
from hfrl.sparse import SparseTable

__all__ = ["BLEND_METHODS", "BlendedPolicy", "as_table", "blend", "blend_q", "count_based_alpha"]

BLEND_METHODS = ("linear", "geometric")


def as_table(hf: Any, name: str = "hf") -> np.ndarray:
    """The dense probability table of a fitted ``HistoricalFrequency``, a ``TabularPolicy`` or an
    array (a sparse one's dense form, within ``hfrl.policies.MAX_DENSE_CELLS``)."""
    if isinstance(hf, TabularPolicy):
        return hf.table_
    table = hf if isinstance(hf, SparseTable) else getattr(hf, "probabilities_", None)
    if isinstance(table, SparseTable):
        return TabularPolicy(table).table_
    if table is None and hasattr(hf, "fit") and not isinstance(hf, np.ndarray):
        raise ValueError(f"{name} is not fitted: call fit(logs) first")
    return check_distribution_table(hf if table is None else table, name)


def _sparse_or_none(source: Any) -> SparseTable | None:
    """The ``SparseTable`` itself, or behind a sparse TabularPolicy or a sparse fitted HF, else None."""
    if isinstance(source, SparseTable):
        return source
    if isinstance(source, TabularPolicy):
        return source.sparse_
    table = getattr(source, "probabilities_", None)
    return table if isinstance(table, SparseTable) else None


def _as_sparse(source: Any, name: str) -> SparseTable:
    table = _sparse_or_none(source)
    return table if table is not None else SparseTable.from_dense(as_table(source, name))


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


def blend(policy: Any, hf: Any, alpha: Any, method: str = "linear") -> TabularPolicy | BlendedPolicy:
    """Blend a learned policy toward the historical frequency.

    Parameters
    ----------
    policy : TabularPolicy, array of shape (n_states, n_actions), or a contextual ``Policy``
        The learned policy pi.
    hf : HistoricalFrequency (fitted), TabularPolicy, array of the same shape, or a contextual
        ``Policy`` (e.g. HF by segment, ``hfrl.frequencies.SegmentFrequency``)
        The historical frequency HF. When either is contextual the result is a ``BlendedPolicy``
        computing ``(1 - alpha) pi(.|x) + alpha HF(.|x)`` on the fly (linear, one alpha).
    alpha : float in [0, 1] or array of shape (n_states,)
        Weight on HF; 0 gives pi, 1 gives HF.
    method : {"linear", "geometric"}

    Returns
    -------
    TabularPolicy
        Sparse when pi or HF is (``TabularPolicy.is_sparse``, or an HF fitted sparse): its
        explicit cells are the union of both, and each row's remaining mass is the formula's
        mix of their backoff rows, so every cell equals the dense blend's.

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
    if _contextual(policy) or _contextual(hf):
        if method != "linear" or np.ndim(alpha) != 0:
            raise ValueError("a contextual blend is linear with one alpha (method='linear', a float)")
        return BlendedPolicy(policy, hf, float(alpha))
    if _sparse_or_none(policy) is not None or _sparse_or_none(hf) is not None:
        return _sparse_blend(policy, hf, alpha, method)
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


def _sparse_blend(policy: Any, hf: Any, alpha: Any, method: str) -> TabularPolicy:
    """The linear blend of tables of which one is sparse: sparse, exact (``SparseTable.mix``)."""
    if method != "linear":
        raise ValueError(f"method={method!r} on a sparse table: only the linear blend keeps a sparse table "
                         "exact (a geometric pool renormalises every cell); use method='linear'")
    pi_table, hf_table = _as_sparse(policy, "policy"), _as_sparse(hf, "hf")
    if pi_table.shape != hf_table.shape:
        raise ValueError(f"policy has shape {pi_table.shape} but hf has shape {hf_table.shape}; "
                         "they must cover the same states and actions")
    a = _alpha_vector(alpha, pi_table.shape[0])
    metadata = dict(getattr(policy, "metadata", {}) or {})
    metadata.update({"blend_method": method})
    if np.ndim(alpha) == 0:
        metadata["alpha"] = float(alpha)
    return TabularPolicy(pi_table.mix(hf_table, a), metadata)


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


def _contextual(policy: Any) -> bool:
    return isinstance(policy, Policy) and not isinstance(policy, TabularPolicy)


class BlendedPolicy:
    """``pi'(.|x) = (1 - alpha) pi(.|x) + alpha HF(.|x)`` for contextual policies, computed on the fly
    for each batch of contexts (never materialised per user). A ``Policy``.

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> pi, hf = TabularPolicy(np.array([[1.0, 0.0]])), TabularPolicy(np.array([[0.0, 1.0]]))
    >>> BlendedPolicy(pi, hf, 0.25).probabilities([0]).tolist()
    [[0.75, 0.25]]
    """

    def __init__(self, policy: Any, hf: Any, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if policy.n_actions != hf.n_actions:
            raise ValueError(f"policy has {policy.n_actions} actions but hf has {hf.n_actions}")
        self.policy, self.hf, self.alpha = policy, hf, float(alpha)
        self.n_actions = policy.n_actions
        self.metadata = {"blend_method": "linear", "alpha": self.alpha}

    def probabilities(self, contexts: Any) -> np.ndarray:
        pi = np.asarray(self.policy.probabilities(contexts), dtype=np.float64)
        return pi + self.alpha * (np.asarray(self.hf.probabilities(contexts), dtype=np.float64) - pi)

    def action_probabilities(self, contexts: Any, actions: Any) -> np.ndarray:
        pi = np.asarray(self.policy.action_probabilities(contexts, actions), dtype=np.float64)
        return pi + self.alpha * (np.asarray(self.hf.action_probabilities(contexts, actions)) - pi)

    def sample(self, contexts: Any, random_state: int | np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self.probabilities(contexts)
        draws = resolve_rng(random_state).random(len(probabilities))
        above = (draws[:, None] > probabilities.cumsum(axis=1)).sum(axis=1)
        actions = np.minimum(above, self.n_actions - 1)
        return actions, probabilities[np.arange(len(actions)), actions]

    def top_k(self, contexts: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self.probabilities(contexts)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(probabilities, order, axis=1)

    def save(self, path: Any) -> Any:
        """Save both parts and alpha in one folder (``pi/``, ``hf/``, ``blend.json``)."""
        import json
        from pathlib import Path

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.policy.save(folder / "pi.hfrl")
        self.hf.save(folder / "hf.hfrl")
        settings = {"format": "hfrl.blended_policy", "alpha": self.alpha}
        (folder / "blend.json").write_text(json.dumps(settings))
        return folder
