"""Neural epsilon-greedy contextual bandit: a network predicts every arm's reward from the features.

Each round ``n_envs`` users arrive; with probability ``epsilon`` a user gets a uniformly random
arm, otherwise the arm with the highest predicted reward. The observations (x, a, r) enter a
replay buffer, and ``updates_per_round`` Adam steps on random minibatches of it minimise

    mean_i (f(x_i)_{a_i} - r_i)^2

(the squared error of the played arm's output only). Reference: Riquelme, Tucker & Snoek (2018),
"Deep Bayesian bandits showdown", whose neural greedy baseline this is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.learners._common import CurveRecorder, check_in_range, check_policy_options, check_positive_int
from hfrl.learners._contextual import contextual_env, served_options
from hfrl.learners._torch import (
    build_mlp,
    check_activation,
    check_hidden,
    import_torch,
    seed_of,
    standardisation,
    to_policy,
)

__all__ = ["NeuralBandit"]


class NeuralBandit:
    """Online epsilon-greedy bandit on a reward network, for a contextual env.

    Parameters
    ----------
    hidden : sequence of int, default (64,)
    activation : {"relu", "tanh"}, default "relu"
    epsilon : float in [0, 1], default 0.1
        Exploration rate while learning.
    learning_rate : float, default 1e-3
    batch_size : int, default 256
    updates_per_round : int, default 1
    buffer_size : int, default 1_000_000
        Most recent observations kept for replay.
    n_envs : int, default 256
        Users served per round.
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from the predicted rewards.
    policy_epsilon, policy_temperature : float, default 0.1, 1.0
    random_state : int, Generator or None

    Attributes
    ----------
    policy_ : NeuralPolicy
        Over the env's ``context_columns``; its scores are the predicted rewards.
    model_ : torch.nn.Sequential
    learning_curve_ : DataFrame
        ``step`` and ``mean_reward`` while learning.

    Examples
    --------
    >>> import gymnasium as gym, hfrl.envs
    >>> env = gym.make("hfrl/ContextualRecommendation-v0", n_items=20, context_dim=4)
    >>> bandit = NeuralBandit(hidden=(16,), n_envs=64, random_state=0).fit(env, n_steps=6400)
    >>> shop, contexts = env.unwrapped, env.unwrapped.sample_contexts(2000, seed=1)
    >>> bool(shop.policy_value(bandit.policy_, contexts) > shop.policy_value(shop.uniform_policy(), contexts))
    True
    """

    def __init__(self, hidden: Any = (64,), *, activation: str = "relu", epsilon: float = 0.1,
                 learning_rate: float = 1e-3, batch_size: int = 256, updates_per_round: int = 1,
                 buffer_size: int = 1_000_000, n_envs: int = 256, policy: str = "greedy",
                 policy_epsilon: float = 0.1, policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.hidden = hidden
        self.activation = activation
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.updates_per_round = updates_per_round
        self.buffer_size = buffer_size
        self.n_envs = n_envs
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    def fit(self, env: Any, n_steps: int) -> NeuralBandit:
        """Learn online for ``n_steps`` decisions on a contextual env; returns self."""
        torch = import_torch(type(self).__name__)
        base = contextual_env(env)
        n_steps = check_positive_int("n_steps", n_steps)
        hidden, activation = check_hidden(self.hidden), check_activation(self.activation)
        epsilon = check_in_range("epsilon", self.epsilon, 0.0, 1.0)
        learning_rate = check_in_range("learning_rate", self.learning_rate, 0.0, 1e3, low_open=True)
        batch_size = check_positive_int("batch_size", self.batch_size)
        updates = check_positive_int("updates_per_round", self.updates_per_round)
        capacity = check_positive_int("buffer_size", self.buffer_size)
        n_envs = check_positive_int("n_envs", self.n_envs)
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        rng, seed = seed_of(self.random_state)
        n_actions, dim = int(base.n_actions), int(base.context_dim)

        shift, scale = standardisation(base.reset_batch(10_000, rng))
        model = build_mlp(torch, dim, hidden, n_actions, activation, seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
        buffer_x = np.empty((min(capacity, n_steps), dim), dtype=np.float32)
        buffer_a = np.empty(buffer_x.shape[0], dtype=np.int64)
        buffer_r = np.empty(buffer_x.shape[0], dtype=np.float32)
        stored = 0  # observations ever added; slot = count modulo the capacity

        curve = CurveRecorder(n_steps)
        contexts = np.asarray(base.reset_batch(n_envs, rng), dtype=np.float64)
        done = 0
        while done < n_steps:
            contexts = contexts[: n_steps - done]
            standard = ((contexts - shift) / scale).astype(np.float32)
            with torch.no_grad():
                actions = model(torch.from_numpy(standard)).argmax(dim=1).numpy()
            explore = rng.random(actions.shape[0]) < epsilon
            actions[explore] = rng.integers(0, n_actions, int(explore.sum()))
            rewards, following, terminated = base.step_batch(contexts, actions, rng)

            slots = (stored + np.arange(actions.shape[0])) % buffer_x.shape[0]
            buffer_x[slots], buffer_a[slots], buffer_r[slots] = standard, actions, rewards
            stored += actions.shape[0]
            filled = min(stored, buffer_x.shape[0])
            for _ in range(updates):
                batch = rng.integers(0, filled, min(batch_size, filled))
                predicted = model(torch.from_numpy(buffer_x[batch]))
                taken = predicted.gather(1, torch.from_numpy(buffer_a[batch])[:, None])[:, 0]
                loss = torch.mean((taken - torch.from_numpy(buffer_r[batch])) ** 2)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

            done += actions.shape[0]
            curve.add(float(np.sum(rewards)), actions.shape[0])
            if np.any(terminated):
                following[terminated] = base.reset_batch(int(np.sum(terminated)), rng)
            contexts = following

        self.n_actions_, self.context_columns_ = n_actions, list(base.context_columns)
        self.model_ = model
        self.learning_curve_ = curve.frame()
        self.policy_ = to_policy(model, activation=activation, shift=shift, scale=scale,
                                 context_columns=self.context_columns_, options=served_options(self),
                                 learner=type(self).__name__)
        return self
