"""The loop shared by the tabular TD learners (Q-learning, SARSA, Expected SARSA).

Each learner's own file holds its update target in a few lines (``_target`` for a batch of
transitions, ``_target_one`` for one); this module only runs the episodes around it:

* ``n_envs == 1``: the classic one-step loop over the Gymnasium API (``env.step``), so any
  ``Discrete``-observation env works, wrappers included. ``truncated`` (a time limit) still
  bootstraps; ``terminated`` does not.
* ``n_envs > 1``: ``n_envs`` independent users stepped together with the env's batch API
  (``reset_batch``/``step_batch``) and one vectorised update per batch.

Step sizes. ``learning_rate`` is a constant in (0, 1], or ``"visits"``: the n-th update of a pair
uses ``1 / n**omega``, which meets the Robbins-Monro conditions, so Q-learning converges to Q*
as long as every pair keeps being visited (exploration that never reaches 0); a constant step
instead leaves a noise floor that more steps do not lower.

Duplicates in a batch. Several users may update the same (s, a) in one batch (greedy users in
one state all pick the same action). They are combined exactly as ``k`` successive updates toward
a common target would be when that target is their mean: the pair moves
``1 - prod_j (1 - step_j)`` of the way to the mean target, with ``step_j`` the steps those
``k`` updates would have used (``lr`` each for a constant rate, so ``1 - (1 - lr)**k``;
``1 / (n + j)**omega`` for ``j = 1..k`` after ``n`` earlier visits for ``"visits"``, which
counts all ``k``). No sample is discarded, and the step never overshoots, unlike summing ``k``
TD errors. (A plain fancy-index assignment ``Q[idx] += ...`` would keep only one of the ``k``;
``np.add.at`` would sum them.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hfrl.learners._common import (
    CurveRecorder,
    batch_env,
    check_in_range,
    check_policy_options,
    check_positive_int,
    epsilon_schedule,
    served_policy,
)
from hfrl.policies import resolve_rng


class TabularTDLearner:
    """Base of the tabular TD learners; see ``QLearning`` for the parameters."""

    #: SARSA bootstraps on the next action actually taken, so it must choose it before updating.
    _needs_next_action = False
    #: Expected SARSA needs each state's mean Q-value.
    _needs_row_mean = False

    def __init__(
        self,
        gamma: float = 0.95,
        learning_rate: float | str = 0.1,
        epsilon: float = 0.1,
        *,
        omega: float = 0.8,
        epsilon_final: float | None = None,
        epsilon_decay: str = "linear",
        decay_fraction: float = 0.5,
        n_envs: int = 1,
        initial_q: float = 0.0,
        policy: str = "greedy",
        policy_epsilon: float = 0.1,
        policy_temperature: float = 1.0,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.omega = omega
        self.epsilon_final = epsilon_final
        self.epsilon_decay = epsilon_decay
        self.decay_fraction = decay_fraction
        self.n_envs = n_envs
        self.initial_q = initial_q
        self.policy = policy
        self.policy_epsilon = policy_epsilon
        self.policy_temperature = policy_temperature
        self.random_state = random_state

    # ------------------------------------------------------------------ the learner's own rule
    def _target(self, rewards: np.ndarray, next_states: np.ndarray, terminated: np.ndarray,
                next_actions: np.ndarray | None, epsilon: float) -> np.ndarray:
        raise NotImplementedError

    def _target_one(self, reward: float, next_state: int, terminated: bool, next_action: int,
                    epsilon: float) -> float:
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def fit(self, env: Any, n_steps: int = 100_000) -> TabularTDLearner:
        """Learn Q-values by interacting with ``env`` for ``n_steps`` transitions in total.

        Parameters
        ----------
        env : gymnasium.Env or hfrl env
            Discrete states and actions. ``n_envs > 1`` needs the batch API of hfrl envs.
        n_steps : int
            Environment transitions to take, summed over the parallel users.

        Returns
        -------
        self
            With ``q_values_``, ``visit_counts_``, ``policy_`` (built from ``q_values_`` as
            ``policy`` says), ``learning_curve_`` (``step``, ``mean_reward`` per window),
            ``n_steps_`` and ``n_episodes_``.
        """
        n_steps = check_positive_int("n_steps", n_steps)
        n_envs = check_positive_int("n_envs", self.n_envs)
        self._gamma = check_in_range("gamma", self.gamma, 0.0, 1.0)
        self._check_step_size()
        start = check_in_range("epsilon", self.epsilon, 0.0, 1.0)
        final = self._final_epsilon(start)
        fraction = check_in_range("decay_fraction", self.decay_fraction, 0.0, 1.0, low_open=True)
        check_policy_options(self.policy, self.policy_epsilon, self.policy_temperature)
        rng = resolve_rng(self.random_state)
        n_iterations = math.ceil(n_steps / n_envs)
        self._epsilons = epsilon_schedule(start, final, self.epsilon_decay, n_iterations, fraction)
        if n_envs == 1:
            self._fit_one_step(env, n_steps, rng)
        else:
            self._fit_batch(batch_env(env), n_iterations, n_envs, rng)
        self.policy_ = served_policy(self, self.q_values_)
        return self

    def _check_step_size(self) -> None:
        """Set ``_lr`` (a constant step) or, for ``"visits"``, ``_lr = None`` and ``_omega``."""
        self._omega = check_in_range("omega", self.omega, 0.5, 1.0, low_open=True)
        if isinstance(self.learning_rate, str):
            if self.learning_rate != "visits":
                raise ValueError(f"learning_rate must be a number in (0, 1] or 'visits', "
                                 f"got {self.learning_rate!r}")
            self._lr = None
        else:
            self._lr = check_in_range("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)

    def _final_epsilon(self, start: float) -> float | None:
        """The exploration rate the schedule ends at (None: constant ``epsilon``)."""
        if self.epsilon_decay == "constant":
            if self.epsilon_final is not None:
                raise ValueError("epsilon_final has no effect with epsilon_decay='constant'; "
                                 "leave it None or choose 'linear' or 'exponential'")
            return None
        if self.epsilon_final is None:
            return start / 10.0
        return check_in_range("epsilon_final", self.epsilon_final, 0.0, 1.0)

    def _init_tables(self, n_states: int, n_actions: int) -> None:
        self.q_values_ = np.full((n_states, n_actions), float(self.initial_q))
        self.visit_counts_ = np.zeros((n_states, n_actions))
        self._best_action = np.zeros(n_states, dtype=np.intp)
        self._best_value = np.full(n_states, float(self.initial_q))
        self._row_mean = np.full(n_states, float(self.initial_q))

    def _fit_one_step(self, env: Any, n_steps: int, rng: np.random.Generator) -> None:
        base = getattr(env, "unwrapped", env)
        n_states, n_actions = _discrete_sizes(env, base)
        self._init_tables(n_states, n_actions)
        q, visits = self.q_values_, self.visit_counts_
        lr, decay = self._lr, -self._omega
        uniforms = rng.random(n_steps)  # one draw decides explore-or-not and, if so, the action
        curve = CurveRecorder(n_steps)
        state, _ = env.reset(seed=int(rng.integers(2**31)))
        state = int(state)
        episodes = 0

        def choose(s: int, t: int) -> int:
            u, e = uniforms[t], self._epsilons[t]
            return min(int(u / e * n_actions), n_actions - 1) if u < e else int(q[s].argmax())

        action = choose(state, 0)
        for t in range(n_steps):
            next_state, reward, terminated, truncated, _ = env.step(action)
            next_state = int(next_state)
            following = min(t + 1, n_steps - 1)
            next_action = choose(next_state, following) if self._needs_next_action else -1
            target = self._target_one(float(reward), next_state, bool(terminated), next_action,
                                      self._epsilons[t])
            n = visits[state, action] + 1.0
            visits[state, action] = n
            q[state, action] += (n ** decay if lr is None else lr) * (target - q[state, action])
            curve.add(float(reward), 1)
            if terminated or truncated:
                episodes += 1
                next_state, _ = env.reset()
                next_state = int(next_state)
                next_action = choose(next_state, following)
            elif not self._needs_next_action:
                next_action = choose(next_state, following)
            state, action = next_state, next_action
        self._refresh()
        self.learning_curve_ = curve.frame()
        self.n_steps_ = n_steps
        self.n_episodes_ = episodes

    def _fit_batch(self, base: Any, n_iterations: int, n_envs: int, rng: np.random.Generator) -> None:
        n_states, n_actions = int(base.n_states), int(base.n_actions)
        self._init_tables(n_states, n_actions)
        self._start_batches(n_envs)
        touched = np.zeros(n_states, dtype=bool)
        full_refresh = n_envs >= n_states
        curve = CurveRecorder(n_iterations * n_envs)
        states = np.asarray(base.reset_batch(n_envs, rng), dtype=np.intp)
        actions = self._select(states, self._epsilons[0], rng)
        episodes = 0
        for it in range(n_iterations):
            epsilon = self._epsilons[it]
            rewards, next_states, terminated = base.step_batch(states, actions, rng)
            next_states = np.asarray(next_states, dtype=np.intp)
            terminated = np.asarray(terminated, dtype=bool)
            next_actions = self._select(next_states, epsilon, rng) if self._needs_next_action else None
            targets = self._target(rewards, next_states, terminated, next_actions, epsilon)
            self._update(states * n_actions + actions, targets)

            if full_refresh:  # most rows change anyway: one argmax over the whole table
                self._refresh()
            else:
                touched[states] = True
                self._refresh(touched)
                touched[:] = False
            curve.add(float(rewards.sum()), n_envs)

            n_done = int(terminated.sum())
            if n_done:
                episodes += n_done
                if not next_states.flags.writeable:
                    next_states = next_states.copy()
                next_states[terminated] = np.asarray(base.reset_batch(n_done, rng), dtype=np.intp)
            next_epsilon = self._epsilons[min(it + 1, n_iterations - 1)]
            if next_actions is None:
                next_actions = self._select(next_states, next_epsilon, rng)
            elif n_done:
                next_actions[terminated] = self._select(next_states[terminated], next_epsilon, rng)
            states, actions = next_states, next_actions
        self.learning_curve_ = curve.frame()
        self.n_steps_ = n_iterations * n_envs
        self.n_episodes_ = episodes

    # ------------------------------------------------------------------ helpers
    def _start_batches(self, n_envs: int) -> None:
        """Scratch for ``_update`` on batches of ``n_envs`` (after ``_init_tables``)."""
        self._writer = np.zeros(self.q_values_.size, dtype=np.intp)
        self._positions = np.arange(n_envs, dtype=np.intp)
        if self._lr is not None:  # k duplicates at a constant rate: 1 - (1 - lr)**k, tabulated
            self._step_for_count = 1.0 - (1.0 - self._lr) ** np.arange(n_envs + 1)

    def _update(self, index: np.ndarray, targets: np.ndarray) -> None:
        """Move Q[index] toward ``targets``, combining duplicate indices (see the module docstring).

        Each distinct (s, a) is represented by the batch position that wrote it last into
        ``_writer``; grouping by that position makes the per-pair count and target sum two
        ``bincount`` calls of batch length (no table-sized scratch, no ``np.add.at``).
        """
        positions = self._positions
        self._writer[index] = positions
        owner = self._writer.take(index)
        representatives = np.flatnonzero(owner == positions)
        counts = np.bincount(owner, minlength=positions.size).take(representatives)
        sums = np.bincount(owner, weights=targets, minlength=positions.size).take(representatives)
        unique = index.take(representatives)
        visits_flat = self.visit_counts_.reshape(-1)
        earlier = visits_flat.take(unique)
        visits_flat[unique] = earlier + counts
        if self._lr is None:
            step = _visits_step(earlier, counts, self._omega)
        else:
            step = self._step_for_count.take(counts)
        q_flat = self.q_values_.reshape(-1)
        old = q_flat.take(unique)
        q_flat[unique] = old + step * (sums / counts - old)

    def _select(self, states: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy actions: one uniform draw per user decides explore and which action."""
        actions = self._best_action.take(states)
        if epsilon <= 0.0:
            return actions
        n_actions = self.q_values_.shape[1]
        u = rng.random(states.shape[0])
        explore = np.flatnonzero(u < epsilon)
        actions[explore] = np.minimum((u.take(explore) * (n_actions / epsilon)).astype(np.intp),
                                      n_actions - 1)
        return actions

    def _refresh(self, touched: np.ndarray | None = None) -> None:
        """Recompute greedy action, max and (Expected SARSA) mean of the touched states' rows."""
        q = self.q_values_
        rows = None if touched is None else np.flatnonzero(touched)
        if rows is None or rows.size * 2 > q.shape[0]:
            self._best_action = q.argmax(axis=1)
            self._best_value = np.take_along_axis(q, self._best_action[:, None], axis=1)[:, 0]
            if self._needs_row_mean:
                self._row_mean = q.mean(axis=1)
            return
        sub = q[rows]
        best = sub.argmax(axis=1)
        self._best_action[rows] = best
        self._best_value[rows] = np.take_along_axis(sub, best[:, None], axis=1)[:, 0]
        if self._needs_row_mean:
            self._row_mean[rows] = sub.mean(axis=1)


def _visits_step(earlier: np.ndarray, counts: np.ndarray, omega: float) -> np.ndarray:
    """Fraction of the way to the target that ``counts`` successive ``1 / n**omega`` steps go.

    A pair with ``earlier`` visits updated ``k`` more times moves ``1 - prod_{j=1..k} (1 - 1 /
    (earlier + j)**omega)``; the product is a sum of logs over one flat run of batch length
    (the first visit, ``1 - 1/1 = 0``, makes it 0: the pair lands on the target).
    """
    if counts.size == 0 or counts.max() == 1:
        return (earlier + 1.0) ** -omega
    ends = np.cumsum(counts)
    starts = ends - counts
    visit_number = np.arange(ends[-1]) - np.repeat(starts - earlier - 1.0, counts)
    with np.errstate(divide="ignore"):
        log_keep = np.log1p(-(visit_number ** -omega))
    return -np.expm1(np.add.reduceat(log_keep, starts))


def _discrete_sizes(env: Any, base: Any) -> tuple[int, int]:
    n_states = getattr(base, "n_states", None)
    n_actions = getattr(base, "n_actions", None)
    if n_states is None:
        n_states = getattr(env.observation_space, "n", None)
    if n_actions is None:
        n_actions = getattr(env.action_space, "n", None)
    if n_states is None or n_actions is None:
        raise TypeError("tabular TD learners need Discrete observation and action spaces")
    return int(n_states), int(n_actions)
