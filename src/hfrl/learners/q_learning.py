"""Q-learning: off-policy TD control, bootstrapping on the best next action.

    Q(s, a) <- Q(s, a) + lr * (r + gamma * max_a' Q(s', a') * (1 - terminated) - Q(s, a))

Done right: the learning rate and the discount are separate parameters, the learning rate can
shrink with each pair's visits (``learning_rate="visits"``: lr = 1 / N(s, a)**omega, the step
size under which Q converges to Q*), actions are chosen epsilon-greedily with a decaying
schedule that ends above 0 (never pure argmax while learning), and a terminated transition (the
user left) bootstraps nothing, while a truncated one (a time limit) does.
"""

from __future__ import annotations

import numpy as np

from hfrl.learners._td import TabularTDLearner

__all__ = ["QLearning"]


class QLearning(TabularTDLearner):
    """Tabular Q-learning with epsilon-greedy exploration on a schedule.

    Parameters
    ----------
    gamma : float, default 0.95
        Discount factor in [0, 1].
    learning_rate : float or "visits", default 0.1
        Step size. A float in (0, 1] is a constant step: Q follows recent targets quickly but
        keeps a noise floor under noisy rewards or transitions that more steps do not lower.
        ``"visits"`` makes the n-th update of each (s, a) use ``1 / n**omega``: the
        Robbins-Monro conditions hold, so Q converges to Q* (Q-learning) or to the Q of the
        final exploring policy (SARSA variants) as long as every pair keeps being visited.
    epsilon : float, default 0.1
        Exploration rate at the start.
    omega : float, default 0.8
        Exponent of the ``"visits"`` step size, in (0.5, 1]. 1 makes each Q(s, a) the running
        mean of its targets, which forgets its first, badly bootstrapped targets slowly when
        gamma is near 1; values in (0.5, 1) forget faster and converge polynomially (Even-Dar
        and Mansour, 2003, "Learning rates for Q-learning"). Checked even with a constant rate.
    epsilon_final : float, optional
        Exploration rate reached after ``decay_fraction`` of the iterations and kept until the
        end; None means ``epsilon / 10``. Above 0, every pair keeps being tried, which the
        ``"visits"`` rate needs to converge.
    epsilon_decay : {"linear", "exponential", "constant"}, default "linear"
        Shape of the decay from ``epsilon`` to ``epsilon_final``; ``"constant"`` keeps
        ``epsilon`` throughout (``epsilon_final`` must then be None).
    decay_fraction : float, default 0.5
        Fraction of the iterations over which epsilon decays.
    n_envs : int, default 1
        Parallel independent users. 1 runs the classic one-step Gymnasium loop; more steps them
        together through the env's batch API with one vectorised update per batch: k users
        updating one (s, a) in a batch count as k successive steps toward their mean target
        (and as k visits): ``Q += (1 - (1 - learning_rate)**k) * (mean_target - Q)`` at a
        constant rate, ``1 - prod_j (1 - 1 / (n + j)**omega)`` for ``j = 1..k`` after n
        earlier visits with ``"visits"``. Keeps three (n_states, n_actions) tables in memory
        (Q, visit counts and an int index table).
    initial_q : float, default 0.0
        Initial Q-value of every pair (a high value explores optimistically). While learning,
        equal Q-values go to the lowest action id; ``policy_`` shares mass among exact ties.
    policy : {"greedy", "softmax", "epsilon_greedy"}, default "greedy"
        What ``policy_`` serves from ``q_values_`` (``TabularPolicy.from_q_values``). Greedy
        decisions have propensity 1, so logs of them cannot evaluate any other policy;
        ``"softmax"`` (Boltzmann, ``policy_temperature``) or ``"epsilon_greedy"``
        (``policy_epsilon`` spread uniformly) keeps every action possible.
    policy_epsilon : float, default 0.1
        Uniform share of ``policy="epsilon_greedy"``, in [0, 1]; not the training ``epsilon``.
    policy_temperature : float, default 1.0
        Temperature of ``policy="softmax"`` (> 0), in the units of the Q-values.
    random_state : int, Generator or None
        Seed of every random choice (exploration, env resets and transitions).

    Attributes
    ----------
    q_values_ : ndarray of shape (n_states, n_actions)
    visit_counts_ : ndarray of shape (n_states, n_actions)
        Updates each (s, a) received.
    policy_ : TabularPolicy
        ``policy`` over ``q_values_`` (greedy: ties share the mass).
    learning_curve_ : DataFrame
        ``step`` (env steps so far) and ``mean_reward`` (mean reward in that window).
    n_steps_, n_episodes_ : int

    Examples
    --------
    >>> from hfrl.learners import BernoulliBandit, QLearning
    >>> env = BernoulliBandit([0.2, 0.8, 0.5])
    >>> learner = QLearning(gamma=0.0, epsilon=0.2, n_envs=64, random_state=0).fit(env, n_steps=20_000)
    >>> int(learner.policy_.greedy().top_k([0])[0][0, 0])
    1

    Step sizes that shrink with visits make Q the running mean of a bandit arm's rewards
    (``omega=1``), and ``policy="softmax"`` serves every arm with some probability:

    >>> learner = QLearning(gamma=0.0, learning_rate="visits", omega=1.0, policy="softmax",
    ...                     policy_temperature=0.1, random_state=0).fit(env, n_steps=20_000)
    >>> bool(abs(learner.q_values_[0, 1] - 0.8) < 0.02), bool(learner.policy_.table_.min() > 0)
    (True, True)
    """

    def _target(self, rewards, next_states, terminated, next_actions, epsilon):  # type: ignore[override]
        bootstrap = self._best_value.take(next_states)
        return rewards + self._gamma * np.where(terminated, 0.0, bootstrap)

    def _target_one(self, reward, next_state, terminated, next_action, epsilon):  # type: ignore[override]
        if terminated:
            return reward
        return reward + self._gamma * float(self.q_values_[next_state].max())
