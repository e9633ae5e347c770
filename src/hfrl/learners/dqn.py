"""Double DQN on sessions of a contextual env, in one readable file (after CleanRL's ``dqn.py``).

A Q-network maps features x to Q(x, .) over all actions. Users are served ``n_envs`` at a time
with an epsilon-greedy policy whose epsilon falls linearly from ``epsilon_start`` to
``epsilon_final`` over the first ``exploration_fraction`` of the steps. Transitions (x, a, r, x',
done) fill a replay buffer; after ``learning_starts`` steps, each round takes ``gradient_steps``
Adam steps on minibatches, minimising the squared TD error with the double-DQN target

    a*  = argmax_a Q_online(x', a)                 (the online network picks the action)
    y   = r + gamma * (1 - done) * Q_target(x', a*) (the target network values it)
    loss = mean (Q_online(x, a) - y)^2

and the target network follows the online one every ``target_network_frequency`` steps
(``tau`` = 1 copies it; smaller values move it part of the way, Polyak averaging).
References: Mnih et al. (2015); van Hasselt, Guez & Silver (2016), "Deep RL with double Q-learning".
"""

from __future__ import annotations

import copy
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

__all__ = ["DQN"]


class DQN:
    """Double deep Q-learning for the return of a session, on a contextual env.

    Parameters
    ----------
    hidden : sequence of int, default (128, 128)
    activation : {"relu", "tanh"}, default "relu"
    gamma : float in [0, 1), default 0.9
    learning_rate : float, default 5e-4
    buffer_size : int, default 200_000
    batch_size : int, default 256
    n_envs : int, default 64
        Users served per round.
    learning_starts : int, default 5_000
        Steps of pure exploration-driven collection before the first update.
    gradient_steps : int, default 1
        Updates per round.
    target_network_frequency : int, default 2_000
        Steps between target-network updates.
    tau : float in (0, 1], default 1.0
    epsilon_start, epsilon_final : float, default 1.0, 0.05
    exploration_fraction : float in (0, 1], default 0.5
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from the learned Q-values.
    policy_epsilon, policy_temperature : float, default 0.1, 1.0
    random_state : int, Generator or None

    Attributes
    ----------
    policy_ : NeuralPolicy
        Over the env's ``context_columns``; its scores are the Q-values.
    model_ : torch.nn.Sequential
        The online Q-network (on standardised features).
    learning_curve_ : DataFrame
        ``step`` and ``mean_reward`` (per decision) while learning.

    Examples
    --------
    >>> import gymnasium as gym, hfrl.envs
    >>> env = gym.make("hfrl/ContextualRecommendation-v0", n_items=10, context_dim=4)
    >>> dqn = DQN(hidden=(32,), learning_starts=500, random_state=0).fit(env, n_steps=5000)
    >>> dqn.policy_.probabilities(env.unwrapped.sample_contexts(3, seed=0)).shape
    (3, 10)
    """

    def __init__(self, hidden: Any = (128, 128), *, activation: str = "relu", gamma: float = 0.9,
                 learning_rate: float = 5e-4, buffer_size: int = 200_000, batch_size: int = 256,
                 n_envs: int = 64, learning_starts: int = 5_000, gradient_steps: int = 1,
                 target_network_frequency: int = 2_000, tau: float = 1.0, epsilon_start: float = 1.0,
                 epsilon_final: float = 0.05, exploration_fraction: float = 0.5, policy: str = "greedy",
                 policy_epsilon: float = 0.1, policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.hidden = hidden
        self.activation = activation
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.n_envs = n_envs
        self.learning_starts = learning_starts
        self.gradient_steps = gradient_steps
        self.target_network_frequency = target_network_frequency
        self.tau = tau
        self.epsilon_start = epsilon_start
        self.epsilon_final = epsilon_final
        self.exploration_fraction = exploration_fraction
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    def _check(self) -> dict[str, Any]:
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        return {
            "hidden": check_hidden(self.hidden), "activation": check_activation(self.activation),
            "gamma": check_in_range("gamma", self.gamma, 0.0, 1.0 - 1e-12),
            "learning_rate": check_in_range("learning_rate", self.learning_rate, 0.0, 1e3, low_open=True),
            "buffer_size": check_positive_int("buffer_size", self.buffer_size),
            "batch_size": check_positive_int("batch_size", self.batch_size),
            "n_envs": check_positive_int("n_envs", self.n_envs),
            "learning_starts": check_in_range("learning_starts", self.learning_starts, 0, float("inf")),
            "gradient_steps": check_positive_int("gradient_steps", self.gradient_steps),
            "target_network_frequency": check_positive_int("target_network_frequency",
                                                           self.target_network_frequency),
            "tau": check_in_range("tau", self.tau, 0.0, 1.0, low_open=True),
            "epsilon_start": check_in_range("epsilon_start", self.epsilon_start, 0.0, 1.0),
            "epsilon_final": check_in_range("epsilon_final", self.epsilon_final, 0.0, 1.0),
            "exploration_fraction": check_in_range("exploration_fraction", self.exploration_fraction,
                                                   0.0, 1.0, low_open=True),
        }

    def fit(self, env: Any, n_steps: int) -> DQN:
        """Learn from ``n_steps`` decisions on a contextual env's sessions; returns self."""
        torch = import_torch(type(self).__name__)
        base = contextual_env(env)
        n_steps = check_positive_int("n_steps", n_steps)
        args = self._check()
        rng, seed = seed_of(self.random_state)
        n_actions, dim = int(base.n_actions), int(base.context_dim)
        shift, scale = standardisation(base.reset_batch(10_000, rng))

        def standardise(contexts: np.ndarray) -> Any:
            return torch.from_numpy(((contexts - shift) / scale).astype(np.float32))

        q_network = build_mlp(torch, dim, args["hidden"], n_actions, args["activation"], seed)
        target_network = copy.deepcopy(q_network)
        optimiser = torch.optim.Adam(q_network.parameters(), lr=args["learning_rate"])
        capacity = min(args["buffer_size"], n_steps)
        buffer = {"x": np.empty((capacity, dim)), "a": np.empty(capacity, dtype=np.int64),
                  "r": np.empty(capacity), "next": np.empty((capacity, dim)), "done": np.empty(capacity)}
        stored = 0
        curve = CurveRecorder(n_steps)
        horizon = max(1.0, args["exploration_fraction"] * n_steps)
        contexts = np.asarray(base.reset_batch(args["n_envs"], rng), dtype=np.float64)
        done_steps, next_target_update = 0, args["target_network_frequency"]
        while done_steps < n_steps:
            # act: epsilon-greedy on the online network
            contexts = contexts[: n_steps - done_steps]
            progress = min(1.0, done_steps / horizon)
            epsilon = args["epsilon_start"] + progress * (args["epsilon_final"] - args["epsilon_start"])
            with torch.no_grad():
                actions = q_network(standardise(contexts)).argmax(dim=1).numpy()
            explore = rng.random(actions.shape[0]) < epsilon
            actions[explore] = rng.integers(0, n_actions, int(explore.sum()))
            rewards, following, terminated = base.step_batch(contexts, actions, rng)

            # remember the transitions
            slots = (stored + np.arange(actions.shape[0])) % capacity
            for key, value in (("x", contexts), ("a", actions), ("r", rewards), ("next", following),
                               ("done", terminated)):
                buffer[key][slots] = value
            stored += actions.shape[0]
            done_steps += actions.shape[0]
            curve.add(float(np.sum(rewards)), actions.shape[0])

            # learn: double-DQN targets from the target network
            if done_steps >= args["learning_starts"]:
                filled = min(stored, capacity)
                for _ in range(args["gradient_steps"]):
                    batch = rng.integers(0, filled, min(args["batch_size"], filled))
                    next_x = standardise(buffer["next"][batch])
                    with torch.no_grad():
                        best_next = q_network(next_x).argmax(dim=1, keepdim=True)
                        next_value = target_network(next_x).gather(1, best_next)[:, 0]
                        target = (torch.from_numpy(buffer["r"][batch]).float() + args["gamma"]
                                  * (1.0 - torch.from_numpy(buffer["done"][batch]).float()) * next_value)
                    chosen = torch.from_numpy(buffer["a"][batch])[:, None]
                    predicted = q_network(standardise(buffer["x"][batch])).gather(1, chosen)[:, 0]
                    loss = torch.mean((predicted - target) ** 2)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if done_steps >= next_target_update:
                    with torch.no_grad():
                        for online, target_p in zip(q_network.parameters(), target_network.parameters(),
                                                    strict=True):
                            target_p.mul_(1.0 - args["tau"]).add_(args["tau"] * online)
                    next_target_update += args["target_network_frequency"]

            # users who left are replaced by new ones
            if np.any(terminated):
                following[terminated] = base.reset_batch(int(np.sum(terminated)), rng)
            contexts = following

        self.n_actions_, self.context_columns_ = n_actions, list(base.context_columns)
        self.model_ = q_network
        self.learning_curve_ = curve.frame()
        self.policy_ = to_policy(q_network, activation=args["activation"], shift=shift, scale=scale,
                                 context_columns=self.context_columns_, options=served_options(self),
                                 learner=type(self).__name__)
        return self
