"""Linear Thompson sampling (Agrawal & Goyal, 2013): LinUCB's regressions, a posterior draw for a bonus.

Each arm a keeps the ridge regression of LinUCB (A_a = ridge * I + sum x x^T, b_a = sum r x,
theta_a = A_a^-1 b_a). The posterior of theta_a is N(theta_a, v^2 A_a^-1), so for a context x the
sampled reward of arm a is

    x . theta_a + v * sqrt(x^T A_a^-1 x) * z_a,    z_a ~ N(0, 1) independently per arm and context,

and the arm with the largest draw is played. Drawing the scalar score directly is exact for one
context (it is the distribution of x . theta~_a) and costs what LinUCB's bonus costs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfrl.learners._common import check_in_range
from hfrl.learners.linucb import LinUCB

__all__ = ["LinearThompsonSampling"]


class LinearThompsonSampling(LinUCB):
    """Contextual bandit with linear reward models and posterior sampling for exploration.

    Everything but the exploration is ``LinUCB``'s: ``fit(env, n_steps=)`` on a contextual env
    (or a tabular one with ``features=``), ``fit(actions, rewards, contexts)``, ``select`` /
    ``update`` one decision at a time, and ``policy_`` (greedy on the posterior mean by default).

    Parameters
    ----------
    scale : float, default 0.5
        Posterior scale ``v`` (the reward noise's standard deviation in the Bayesian model).
    ridge : float, default 1.0
    features, n_actions, n_features, n_envs, fit_intercept, policy, policy_epsilon,
    policy_temperature, random_state
        As in ``LinUCB``.

    Examples
    --------
    >>> import numpy as np
    >>> bandit = LinearThompsonSampling(scale=0.3, n_actions=2, n_features=2, random_state=0)
    >>> for _ in range(100):
    ...     for x in ([1.0, 0.0], [0.0, 1.0]):
    ...         arm = bandit.select(x)
    ...         bandit.update(arm, float(arm == int(x[1])), x)
    >>> bandit.policy_.probabilities([[1.0, 0.0], [0.0, 1.0]]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, scale: float = 0.5, ridge: float = 1.0, *, features: Any = None,
                 n_actions: int | None = None, n_features: int | None = None, n_envs: int = 1,
                 fit_intercept: bool | None = None, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        # LinUCB's parameters but its ``alpha``: this learner's exploration is ``scale``
        self.scale = scale
        self.ridge = ridge
        self.features = features
        self.n_actions = n_actions
        self.n_features = n_features
        self.n_envs = n_envs
        self.fit_intercept = fit_intercept
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    def _check_exploration(self) -> None:
        self._scale = check_in_range("scale", self.scale, 0.0, float("inf"))

    def _exploration(self, width: np.ndarray) -> np.ndarray:
        return self._scale * width * self._rng.standard_normal(width.shape)
