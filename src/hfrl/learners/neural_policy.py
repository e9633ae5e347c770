"""Off-policy policy learning with a neural network (like Open Bandit Pipeline's NNPolicyLearner).

A network maps features x to logits; pi(a | x) = softmax(logits)_a. Trained from logged
(x_i, a_i, r_i, p_i) to maximise an off-policy estimate of its own value, by minibatch Adam on

    IPS:  V(pi) = mean_i  w_i r_i,                                   w_i = pi(a_i | x_i) / p_i
    DR:   V(pi) = mean_i  [ sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ]

with q the direct method's per-action ridge regression of the reward on the features
(``DirectMethodLearner(...).fit(logs, context_columns=...)``, fitted on the same logs). DR keeps
the gradient informative for actions the logs rarely show; ``max_weight`` caps ``1 / p_i``.
Reference: Swaminathan & Joachims (2015), counterfactual risk minimisation; Dudik et al. (2011).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hfrl.learners._common import check_in_range, check_policy_options, check_positive_int
from hfrl.learners._contextual import contextual_rows, per_action_ridge, served_options
from hfrl.learners._torch import (
    build_mlp,
    check_activation,
    check_hidden,
    import_torch,
    seed_of,
    standardisation,
    to_policy,
)

__all__ = ["NeuralPolicyLearner"]

OBJECTIVES = ("ips", "dr")


class NeuralPolicyLearner:
    """A softmax policy network trained on logs to maximise its IPS or DR value estimate.

    Parameters
    ----------
    hidden : sequence of int, default (100,)
        Hidden layer sizes (empty: a linear softmax policy).
    activation : {"relu", "tanh"}, default "relu"
    objective : {"dr", "ips"}, default "dr"
    n_epochs : int, default 10
    batch_size : int, default 1024
    learning_rate : float, default 1e-3
    weight_decay : float, default 0.0
        L2 penalty of Adam.
    max_weight : float, optional
        Cap on the inverse propensity ``1 / p_i``.
    ridge, shrinkage : float, default 1.0
        The DR reward model's penalties (``DirectMethodLearner``'s).
    policy : {"softmax", "greedy", "epsilon_greedy"}, default "softmax"
        What ``policy_`` serves: the trained distribution, or its most probable action.
    policy_epsilon, policy_temperature : float, default 0.1, 1.0
    random_state : int, Generator or None

    Attributes
    ----------
    policy_ : NeuralPolicy
        Over ``context_columns``; numpy weights, saved without pickle.
    model_ : torch.nn.Sequential
        The trained network (on standardised features).
    training_curve_ : DataFrame
        ``epoch`` and ``objective`` (the estimate of the policy's value over the epoch's batches).
    reward_coef_, reward_intercept_ : ndarray
        The DR reward model (``objective="dr"``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(4000, 2))
    >>> actions = rng.integers(0, 2, 4000)
    >>> rewards = (rng.random(4000) < np.where(actions == (x[:, 0] > 0), 0.8, 0.2)).astype(float)
    >>> logs = pd.DataFrame({"state": 0, "action": actions, "reward": rewards, "propensity": 0.5,
    ...                      "f0": x[:, 0], "f1": x[:, 1]})
    >>> learner = NeuralPolicyLearner(hidden=(16,), n_epochs=20, batch_size=256, learning_rate=0.01,
    ...                               random_state=0).fit(logs, context_columns=["f0", "f1"])
    >>> learner.policy_.greedy().probabilities([[-2.0, 0.0], [2.0, 0.0]]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, hidden: Any = (100,), *, activation: str = "relu", objective: str = "dr",
                 n_epochs: int = 10, batch_size: int = 1024, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, max_weight: float | None = None, ridge: float = 1.0,
                 shrinkage: float = 1.0, policy: str = "softmax", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.hidden = hidden
        self.activation = activation
        self.objective = objective
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_weight = max_weight
        self.ridge = ridge
        self.shrinkage = shrinkage
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    def fit(self, logs: Any, context_columns: Any, n_actions: int | None = None) -> NeuralPolicyLearner:
        """Train on logs with ``action``, ``reward``, ``propensity`` and the ``context_columns``."""
        torch = import_torch(type(self).__name__)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        hidden, activation = check_hidden(self.hidden), check_activation(self.activation)
        n_epochs = check_positive_int("n_epochs", self.n_epochs)
        batch_size = check_positive_int("batch_size", self.batch_size)
        learning_rate = check_in_range("learning_rate", self.learning_rate, 0.0, 1e3, low_open=True)
        weight_decay = check_in_range("weight_decay", self.weight_decay, 0.0, 1e3)
        max_weight = (None if self.max_weight is None
                      else check_in_range("max_weight", self.max_weight, 1.0, float("inf")))
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        rows = contextual_rows(logs, context_columns, n_actions, need_propensity=True)
        assert rows.propensities is not None
        rng, seed = seed_of(self.random_state)
        shift, scale = standardisation(rows.features)

        inverse = 1.0 / rows.propensities if max_weight is None else np.minimum(1.0 / rows.propensities,
                                                                                max_weight)
        if rows.weights is not None:
            inverse = inverse * rows.weights
        x = torch.as_tensor((rows.features - shift) / scale, dtype=torch.float32)
        actions = torch.tensor(rows.actions, dtype=torch.int64)
        rewards = torch.tensor(rows.rewards, dtype=torch.float32)
        inverse_t = torch.as_tensor(inverse, dtype=torch.float32)
        reward_model = None
        if self.objective == "dr":
            self.reward_coef_, self.reward_intercept_ = per_action_ridge(
                rows.features, rows.actions, rows.rewards, rows.n_actions,
                ridge=check_in_range("ridge", self.ridge, 0.0, float("inf"), low_open=True),
                shrinkage=check_in_range("shrinkage", self.shrinkage, 0.0, float("inf")),
                sample_weight=rows.weights)
            # q(x, .) on standardised inputs: (x_std * scale + shift) @ coef.T + intercept
            reward_model = (torch.as_tensor((self.reward_coef_ * scale).T, dtype=torch.float32),
                            torch.as_tensor(self.reward_intercept_ + self.reward_coef_ @ shift,
                                            dtype=torch.float32))

        model = build_mlp(torch, x.shape[1], hidden, rows.n_actions, activation, seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
        curve = []
        n = x.shape[0]
        for epoch in range(n_epochs):
            order = torch.as_tensor(rng.permutation(n))
            total = 0.0
            for start in range(0, n, batch_size):
                batch = order[start: start + batch_size]
                pi = torch.softmax(model(x[batch]), dim=1)
                taken = pi.gather(1, actions[batch, None])[:, 0]
                weight = taken * inverse_t[batch]
                if reward_model is None:
                    value = weight * rewards[batch]
                else:
                    q = x[batch] @ reward_model[0] + reward_model[1]
                    q_taken = q.gather(1, actions[batch, None])[:, 0]
                    value = (pi * q).sum(dim=1) + weight * (rewards[batch] - q_taken)
                loss = -value.mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(value.detach().sum())
            curve.append((epoch + 1, total / n))

        self.n_actions_, self.context_columns_ = rows.n_actions, rows.context_columns
        self.training_curve_ = pd.DataFrame(curve, columns=["epoch", "objective"])
        self.model_ = model
        self.policy_ = to_policy(model, activation=activation, shift=shift, scale=scale,
                                 context_columns=rows.context_columns, options=served_options(self),
                                 learner=type(self).__name__)
        return self
