"""Tests of off-policy evaluation for contextual policies (hfrl.ope.contextual)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from hfrl.ope import evaluate
from hfrl.ope.contextual import LinearRewardModel
from hfrl.policies import Policy

N_ACTIONS, DIM = 4, 3


class SoftmaxPolicy:
    """A linear softmax policy over feature rows, written for the test (the Policy protocol)."""

    def __init__(self, weights: np.ndarray, temperature: float = 1.0) -> None:
        self.weights, self.temperature = weights, temperature
        self.n_actions = weights.shape[1]

    def probabilities(self, contexts):  # noqa: ANN001, ANN201
        scores = np.asarray(contexts, dtype=float) @ self.weights / self.temperature
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def action_probabilities(self, contexts, actions):  # noqa: ANN001, ANN201
        return self.probabilities(contexts)[np.arange(len(actions)), actions]

    def sample(self, contexts, random_state=None):  # noqa: ANN001, ANN201
        rng = np.random.default_rng(random_state)
        p = self.probabilities(contexts)
        actions = (rng.random(len(p))[:, None] > p.cumsum(axis=1)).sum(axis=1)
        return actions, p[np.arange(len(p)), actions]

    def top_k(self, contexts, k=1):  # noqa: ANN001, ANN201
        p = self.probabilities(contexts)
        order = np.argsort(-p, axis=1)[:, :k]
        return order, np.take_along_axis(p, order, axis=1)

    def save(self, path):  # noqa: ANN001, ANN201
        return Path(path)


def problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM))
    theta = np.random.default_rng(99).normal(size=(DIM, N_ACTIONS))
    mean = 1 / (1 + np.exp(-(x @ theta)))  # click probability of each action
    logging = SoftmaxPolicy(np.zeros((DIM, N_ACTIONS)))
    action, propensity = logging.sample(x, random_state=seed)
    reward = (rng.random(n) < mean[np.arange(n), action]).astype(float)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(DIM)])
    frame = frame.assign(state=0, action=action, reward=reward, propensity=propensity)
    target = SoftmaxPolicy(theta, temperature=0.5)
    truth = float((target.probabilities(x) * mean).sum(axis=1).mean())
    return frame, target, truth


COLUMNS = [f"x{i}" for i in range(DIM)]


def test_a_contextual_policy_satisfies_the_protocol_and_matches_the_per_row_array():
    logs, target, _ = problem(3000, 0)
    assert isinstance(target, Policy)
    contextual = evaluate(logs, target, ("ips", "snips"), context_columns=COLUMNS)
    rows = evaluate(logs, target.probabilities(logs[COLUMNS].to_numpy()), ("ips", "snips"))
    np.testing.assert_allclose(contextual["estimate"], rows["estimate"], rtol=1e-12)
    np.testing.assert_allclose(contextual["std_error"], rows["std_error"], rtol=1e-9)
    np.testing.assert_allclose(contextual[["ci_low", "ci_high"]], rows[["ci_low", "ci_high"]], rtol=1e-6)


def test_dr_with_the_cross_fitted_linear_model_is_unbiased():
    estimates, errors, truths = [], [], []
    for seed in range(20):
        logs, target, truth = problem(2000, seed)
        result = evaluate(logs, target, ("dr", "dm", "ips"), context_columns=COLUMNS)
        assert result.loc["dr", "reward_model"] == "cross-fitted (2 folds)"
        estimates.append(result.loc["dr", "estimate"])
        errors.append(result.loc["dr", "std_error"])
        truths.append(truth)
    bias = np.mean(np.array(estimates) - np.array(truths))
    assert abs(bias) < 3 * np.mean(errors) / np.sqrt(20)
    assert np.mean(errors) < result.loc["ips", "std_error"]  # the model removes variance


def test_a_file_is_scored_batch_by_batch_with_the_same_numbers(tmp_path, monkeypatch):
    logs, target, _ = problem(5000, 1)
    path = tmp_path / "contextual.parquet"
    logs.to_parquet(path)
    import hfrl.ope.contextual as contextual

    in_memory = evaluate(logs, target, ("ips", "snips", "dr"), context_columns=COLUMNS)
    monkeypatch.setattr(contextual, "BATCH_ROWS", 700)  # many batches, a last short one
    on_file = evaluate(str(path), target, ("ips", "snips", "dr"), context_columns=COLUMNS, backend="duckdb")
    np.testing.assert_allclose(on_file[["estimate", "std_error"]], in_memory[["estimate", "std_error"]],
                               rtol=1e-9)


def test_the_streamed_ridge_is_sklearns_ridge():
    rng = np.random.default_rng(2)
    n = 400
    x, action = rng.normal(size=(n, DIM)), rng.integers(0, 2, n)
    reward = x @ np.array([1.0, -2.0, 0.5]) + action + rng.normal(0, 0.1, n)
    model = LinearRewardModel(ridge=1e-9).fit(iter([(np.arange(n), x, action, reward)]), 2, DIM)
    other = np.arange(n) % 2 == 1  # rows of fold 0 are predicted by the model of fold 1
    for a in (0, 1):
        keep = other & (action == a)
        reference = Ridge(alpha=1e-9).fit(x[keep], reward[keep])
        np.testing.assert_allclose(model.beta_[0, a], np.r_[reference.intercept_, reference.coef_], atol=1e-5)


def test_contextual_errors_name_what_is_missing():
    logs, target, _ = problem(200, 3)
    with pytest.raises(ValueError, match="context_columns"):
        evaluate(logs, target, ("ips",))
    with pytest.raises(Exception, match="'x9'"):
        evaluate(logs, target, ("ips",), context_columns=["x0", "x9"])
