"""Thompson sampling: play each arm with the posterior probability that it is the best.

Beta-Bernoulli (rewards in [0, 1]; a fractional reward counts as that fraction of a success):

    theta(s, a) ~ Beta(prior_alpha + successes, prior_beta + failures),  a_t = argmax theta

Gaussian (any real reward, known noise ``noise_std``, prior N(0, noise_std**2)):

    theta(s, a) ~ N(sum / (n + 1), noise_std**2 / (n + 1)),  a_t = argmax theta
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._bandit import TabularBandit
from hfrl.learners._common import check_in_range

__all__ = ["ThompsonSampling"]


class ThompsonSampling(TabularBandit):
    """Thompson sampling with a Beta-Bernoulli or a Gaussian model.

    Parameters
    ----------
    prior : {"beta", "gaussian"}, default "beta"
        Reward model. ``"beta"`` needs rewards in [0, 1].
    prior_alpha, prior_beta : float, default 1.0
        Beta prior pseudo-counts of successes and failures.
    noise_std : float, default 1.0
        Reward noise standard deviation of the Gaussian model.
    n_actions, n_states, n_envs, random_state
        As in ``EpsilonGreedy``.
    policy, policy_epsilon, policy_temperature
        What ``policy_`` serves from ``means_``: ``"greedy"`` (default), ``"softmax"`` or
        ``"epsilon_greedy"``, as in ``EpsilonGreedy``. (``select`` keeps sampling the posterior.)

    Examples
    --------
    >>> from hfrl.learners import BernoulliBandit, ThompsonSampling
    >>> bandit = ThompsonSampling(random_state=0).fit(BernoulliBandit([0.1, 0.5, 0.9]), n_steps=2000)
    >>> int(bandit.counts_.argmax()), bandit.regret_ < 100
    (2, True)
    """

    def __init__(self, prior: str = "beta", *, prior_alpha: float = 1.0, prior_beta: float = 1.0,
                 noise_std: float = 1.0, n_actions: int | None = None, n_states: int = 1,
                 n_envs: int = 1, policy: str = "greedy", policy_epsilon: float = 0.1,
                 policy_temperature: float = 1.0,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(n_actions=n_actions, n_states=n_states, n_envs=n_envs, policy=policy,
                         policy_epsilon=policy_epsilon, policy_temperature=policy_temperature,
                         random_state=random_state)
        self.prior = prior
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.noise_std = noise_std

    def _check_params(self) -> None:
        if self.prior not in ("beta", "gaussian"):
            raise ValueError(f"prior must be 'beta' or 'gaussian', got {self.prior!r}")
        self._a0 = check_in_range("prior_alpha", self.prior_alpha, 0.0, float("inf"), low_open=True)
        self._b0 = check_in_range("prior_beta", self.prior_beta, 0.0, float("inf"), low_open=True)
        self._noise = check_in_range("noise_std", self.noise_std, 0.0, float("inf"), low_open=True)

    def _check_reward_one(self, reward: float) -> None:
        if self.prior == "beta" and not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1] for the Beta-Bernoulli model, got {float(reward):g}; "
                             "use prior='gaussian' (--option prior=gaussian) for other rewards")

    def _check_rewards(self, rewards: np.ndarray) -> None:
        if self.prior == "beta":
            bad = (rewards < 0.0) | (rewards > 1.0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"rewards: row {row} has {float(rewards[row]):g}, expected a value in "
                                 "[0, 1] for the Beta-Bernoulli model; use prior='gaussian' (--option "
                                 "prior=gaussian) otherwise")

    def _sample(self, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
        if self.prior == "beta":
            return self._rng.beta(self._a0 + sums, self._b0 + counts - sums)
        scale = self._noise / np.sqrt(counts + 1.0)
        return sums / (counts + 1.0) + scale * self._rng.standard_normal(counts.shape)

    def _select_one(self, s: int) -> int:
        return int(self._sample(self.counts_[s], self.reward_sums_[s]).argmax())

    def _select_batch(self, states: np.ndarray) -> np.ndarray:
        return self._sample(self.counts_[states], self.reward_sums_[states]).argmax(axis=1)
