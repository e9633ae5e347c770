"""Off-policy evaluation of contextual policies (users described by features), in one streaming pass.

A contextual policy (``hfrl.policies.Policy`` over feature rows) has no table to read at cells, so
the estimators' terms are made row by row, from the same formulas (``hfrl.ope.estimators``): each
batch of logged rows is scored (the target's probability of the logged action, and the reward
model's value of the target ``v = sum_a pi(a|x) q(x, a)``), its terms are added into the sums the
inference needs (``hfrl.ope.inference.Sums``) and its ``(weight, term)`` rows into the pooled atoms
of the empirical likelihood. Only one batch of ``(batch_rows, n_actions)`` probabilities is ever in
memory, so a file larger than memory is evaluated on any backend that can stream its rows.

The reward model of DM and DR is ``LinearRewardModel``: a ridge regression per action on the
features, shrunk toward the regression pooled over actions, cross-fitted over two folds of rows
(even and odd row numbers): a row's ``q`` comes from the model fitted on the other fold, so the model
adds no noise of the row's own (the result says ``reward_model="cross-fitted (2 folds)"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import Logs, schema
from hfrl.ope.estimators import Estimator
from hfrl.ope.inference import pool_rows
from hfrl.ope.targets import RowInputs
from hfrl.ope.units import Affine, Units, affine

__all__ = ["ContextualPass", "LinearRewardModel", "context_matrix"]

A, R, P = schema.ACTION, schema.REWARD, schema.PROPENSITY
BATCH_ROWS = 1 << 15


def context_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The context columns of ``frame`` as a float matrix, or a clear error naming the bad column."""
    out = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            from hfrl.errors import LogValidationError

            row = int(np.flatnonzero(bad)[0])
            raise LogValidationError(
                f"context column {column!r}: row {row} is not a finite number; {int(bad.sum()):,} rows "
                "offend", column=column, count=int(bad.sum()))
        out[:, j] = values
    return out


@dataclass
class LinearRewardModel:
    """``q(x, a) = [1, x] . beta_a``, ridge per action toward the pooled regression, cross-fitted.

    ``fit`` accumulates ``X'X`` and ``X'r`` per fold and action in one pass over the rows (so it
    streams); ``beta[f]`` is fitted on the other fold than ``f``: the closed-form ridge
    ``(X_a'X_a + m I) beta_a = X_a'r_a + m beta_pooled`` (``m = ridge``, the intercept shrunk too),
    with ``beta_pooled`` the ridge of all actions together.
    """

    ridge: float = 1.0
    beta_: np.ndarray | None = field(default=None, repr=False)  # (2 folds, n_actions, 1 + d)

    def fit(self, batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
            n_actions: int, dimension: int) -> LinearRewardModel:
        """Fit from batches of ``(row numbers, contexts, actions, rewards)``; returns self."""
        size = dimension + 1
        gram = np.zeros((2, n_actions, size, size))
        target = np.zeros((2, n_actions, size))
        for rows, contexts, actions, rewards in batches:
            design = np.hstack([np.ones((len(actions), 1)), contexts])
            # rows grouped by (fold, action): one matrix product per group, not an outer product per row
            group = (rows % 2) * n_actions + actions
            order = np.argsort(group, kind="stable")
            bounds = np.searchsorted(group[order], np.arange(2 * n_actions + 1))
            for g in np.flatnonzero(np.diff(bounds)):
                chosen = order[bounds[g]:bounds[g + 1]]
                x = design[chosen]
                gram[g // n_actions, g % n_actions] += x.T @ x
                target[g // n_actions, g % n_actions] += x.T @ rewards[chosen]
        eye = self.ridge * np.eye(size)
        self.beta_ = np.empty((2, n_actions, size))
        for f in (0, 1):
            other = 1 - f  # the model for fold f's rows never saw them
            pooled = np.linalg.solve(gram[other].sum(axis=0) + eye, target[other].sum(axis=0))
            right = (target[other] + self.ridge * pooled)[..., None]
            self.beta_[f] = np.linalg.solve(gram[other] + eye, right)[..., 0]
        return self

    def predict(self, contexts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``q(x_i, a)`` for every action, ``(n, n_actions)``, each row from its other fold's model."""
        assert self.beta_ is not None
        design = np.hstack([np.ones((len(contexts), 1)), contexts])
        fold = rows % 2
        out = np.empty((len(contexts), self.beta_.shape[1]))
        for f in (0, 1):
            keep = fold == f
            out[keep] = design[keep] @ self.beta_[f].T
        return out


class ContextualPass:
    """One pass over the logs scoring several contextual policies for several estimators.

    For each estimator it keeps the sums over rows of the products of ``(1, term, normalizer,
    influence, weight)`` of every policy and of the reward last (``full_gram``, basis ``1`` then
    four terms per policy, in the order of ``hfrl.ope.inference.Sums``, then ``r``: the paired
    difference against the logging policy needs it; ``gram`` is the same without the reward), and
    the pooled ``(weight, term)`` rows of every policy and the reward for the empirical likelihood;
    for each policy the largest weight any row could have (``max_weight``) and, per estimator, the
    largest weight a logged row has (``logged_weight``).
    """

    def __init__(self, logs: Logs, policies: Sequence[Any], estimators: Sequence[Estimator],
                 context_columns: Sequence[str], n_actions: int, reward_model: Any = None,
                 batch_rows: int = BATCH_ROWS) -> None:
        self.logs, self.policies, self.estimators = logs, list(policies), list(estimators)
        self.columns, self.n_actions, self.batch_rows = list(context_columns), n_actions, batch_rows
        size = 2 + 4 * len(self.policies)
        self.full_gram = {e.name: np.zeros((size, size)) for e in self.estimators}
        self.rows: dict[str, list[tuple[list[np.ndarray], np.ndarray]]] = {
            e.name: [] for e in self.estimators}
        self.max_weight = np.zeros(len(self.policies))
        self.logged_weight = {e.name: np.zeros(len(self.policies)) for e in self.estimators}
        self.n_rows = 0
        self.reward_min, self.reward_max = np.inf, -np.inf
        self.model_min, self.model_max = np.inf, -np.inf
        needs_model = any(e.uses_model for e in self.estimators)
        self.model = reward_model
        self.cross_fitted = needs_model and reward_model is None
        if self.cross_fitted:
            self.model = LinearRewardModel().fit(self._training_batches(), n_actions, len(self.columns))
        self._run()
        self.gram = {name: full[:-1, :-1] for name, full in self.full_gram.items()}

    @property
    def description(self) -> str:
        return "cross-fitted (2 folds)" if self.cross_fitted else "given"

    def _batches(self) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        start = 0
        needed = [*self.columns, A, R] + ([P] if self.logs.has(P) else [])
        for batch in self.logs.batches(needed, self.batch_rows):
            yield np.arange(start, start + len(batch)), batch
            start += len(batch)

    def _training_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        for rows, batch in self._batches():
            yield (rows, context_matrix(batch, self.columns), batch[A].to_numpy(np.int64),
                   batch[R].to_numpy(np.float64))

    def _predict(self, contexts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.zeros((len(contexts), self.n_actions))
        if isinstance(self.model, LinearRewardModel):
            return self.model.predict(contexts, rows)
        return np.asarray(self.model.predict(contexts), dtype=np.float64)

    def _run(self) -> None:
        for rows, batch in self._batches():
            contexts = context_matrix(batch, self.columns)
            features = batch[self.columns]  # each policy reads its columns by name (or all, in order)
            action = batch[A].to_numpy(np.int64)
            reward = batch[R].to_numpy(np.float64)
            propensity = batch[P].to_numpy(np.float64) if self.logs.has(P) else np.ones(len(batch))
            q = self._predict(contexts, rows)
            self.model_min, self.model_max = min(self.model_min, q.min()), max(self.model_max, q.max())
            units = Units(np.zeros_like(action), action, propensity, np.ones(len(batch)), reward, reward**2,
                          "row")
            index = np.arange(len(batch))
            q_logged = q[index, action]
            inputs = []
            for j, policy in enumerate(self.policies):
                probabilities = np.asarray(policy.probabilities(features), dtype=np.float64)
                weight = probabilities[index, action] / propensity
                value = np.einsum("ij,ij->i", probabilities, q)
                largest = float((probabilities.max(axis=1) / propensity).max())
                self.max_weight[j] = max(self.max_weight[j], largest)
                inputs.append({r: RowInputs(weight, np.full(len(batch), r), q_logged, value, None, value)
                               for r in (0.0, 1.0)})
            for estimator in self.estimators:
                basis, pooled = [Affine(np.ones(len(batch)), np.zeros(len(batch)))], []
                largest_logged = self.logged_weight[estimator.name]
                for j, x in enumerate(inputs):
                    basis += _four(basis[0], estimator, x)
                    pooled += [x[0.0].w, units.per_row(basis[-4])]
                    largest_logged[j] = max(largest_logged[j], float(estimator.weight(x[0.0]).max()))
                basis.append(Affine(np.zeros(len(batch)), np.ones(len(batch))))
                pooled.append(reward)
                self.full_gram[estimator.name] += units.gram(basis)
                self.rows[estimator.name].append(pool_rows(pooled, np.ones(len(batch))))
            self.n_rows += len(batch)
            self.reward_min = min(self.reward_min, float(reward.min()))
            self.reward_max = max(self.reward_max, float(reward.max()))

    def pooled(self, name: str, with_reward: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
        """The pooled ``(weight_j, term_j)`` columns of every policy (then the reward column with
        ``with_reward``) and their counts, for estimator ``name``."""
        parts = self.rows[name]
        width = len(parts[0][0]) - (0 if with_reward else 1)
        columns = [np.concatenate([p[0][k] for p in parts]) for k in range(width)]
        return pool_rows(columns, np.concatenate([p[1] for p in parts]))


def _four(one: Affine, estimator: Estimator, x: dict) -> list[Affine]:
    """``(term, normalizer, influence, weight)``: the normalizer is 1 when the estimator has none."""
    term = affine(lambda r: estimator.term(x[float(r[0])]), len(one.const))
    normalizer = one
    if estimator.normalizer(x[0.0]) is not None:
        normalizer = affine(lambda r: estimator.normalizer(x[float(r[0])]), len(one.const))
    influence = affine(lambda r: estimator.influence(x[float(r[0])]), len(one.const))
    weight = affine(lambda r: estimator.weight(x[float(r[0])]), len(one.const))
    return [term, normalizer, influence, weight]
