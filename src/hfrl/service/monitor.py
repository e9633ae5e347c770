"""Watch policies as feedback arrives, with anytime-valid confidence sequences that may be peeked at.

Each monitor turns the decisions whose feedback arrived (read from the decision log, so every
replica of a shared log computes the same numbers) into importance-weighted terms and adds them to
a ``hfrl.ope.RunningSequence``: the stitched empirical-Bernstein confidence sequence of
``hfrl.ope.confidence_sequence``, which covers the truth at every count at once. Looking after
every feedback, and stopping the first time it excludes 0, keeps the error rate at ``1 - level``
(a fixed-horizon test checked that often does not; ``bench/bench_loop.py`` measures both).

``ExperimentMonitor`` (champion vs challenger, both served)
    terms ``(q_1 - q_0) / mu * r`` with ``q_i`` each arm's probability of the logged slot-0 action
    and ``mu`` the mixture propensity (``hfrl.service.experiment``): an unbiased estimate of
    ``value(challenger) - value(champion)`` from the decisions of both arms, with terms in
    ``[-1 / (1 - traffic), 1 / traffic] x reward``. State ``promote`` once the lower bound is above
    0, ``rollback`` once the upper bound is below 0 or the challenger's own value (terms
    ``q_1 / mu * r``) has an upper bound below the guardrail floor; the state then stays.
``CandidateMonitor`` (off-policy: a candidate artifact nobody is served)
    the same difference, candidate minus champion, from the champion's logged propensities
    (explore decisions only: an exploit decision is deterministic and says nothing about other
    actions). The weights are bounded by the largest ``candidate / logging`` probability ratio of the
    tables, fixed when the monitor starts; a candidate that plays an action the champion never
    plays cannot be watched (give the champion an exploration floor,
    ``TabularPolicy.with_exploration``). A swap of the champion restarts candidate monitors.

Rewards are taken per decision from one feedback ``event``; a decision enters when its feedback
does. The guarantee needs every decision's feedback to come, whatever its value (send reward 0
for "no click"), and rewards inside the declared ``reward_range`` (the service refuses others).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hfrl.ope.sequences import RunningSequence
from hfrl.service.experiment import CHALLENGER, CHAMPION, Experiment
from hfrl.service.log import DEFAULT_EVENT, QueuedLog
from hfrl.service.model import EXPLORE, ServedModel

__all__ = ["PROMOTE", "ROLLBACK", "RUNNING", "CandidateMonitor", "ExperimentMonitor", "MonitorSettings"]

RUNNING = "running"
PROMOTE = "promote"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class MonitorSettings:
    """How the monitors read and judge feedback.

    Parameters
    ----------
    level : float
        Coverage of the confidence sequences, simultaneously over time.
    reward_range : (low, high)
        Bounds of every monitored reward (default (0, 1): clicks, conversions).
    event : str
        The feedback event whose reward is monitored.
    guardrail_floor : float, optional
        Roll back once the challenger's value is confidently below this (e.g. a click-rate floor).
    lag : float
        Seconds a feedback row waits before a monitor reads it, so rows committed late by another
        writer or replica are not skipped (the read window is ``(last, now - lag]``).
    """

    level: float = 0.95
    reward_range: tuple[float, float] = (0.0, 1.0)
    event: str = DEFAULT_EVENT
    guardrail_floor: float | None = None
    lag: float = 1.0

    def __post_init__(self) -> None:
        low, high = self.reward_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"reward_range must be two finite numbers, low < high; got {self.reward_range!r}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}")

    def check_reward(self, reward: float) -> str | None:
        """Why ``reward`` cannot be monitored, or None."""
        low, high = self.reward_range
        if low <= reward <= high:
            return None
        return (f"reward {reward!r} is outside the monitored reward range [{low!r}, {high!r}] "
                "(--reward-range); the confidence sequences rest on it")


def _product_range(weights: tuple[float, float], rewards: tuple[float, float]) -> tuple[float, float]:
    """The range of ``w * r`` for ``w`` and ``r`` in the given intervals."""
    corners = [w * r for w in weights for r in rewards]
    return min(corners), max(corners)


class _Difference:
    """A sequence of ``value(target) - value(baseline)`` and the state it implies."""

    def __init__(self, weight_range: tuple[float, float], settings: MonitorSettings) -> None:
        low, high = settings.reward_range
        self.settings = settings
        self.sequence = RunningSequence(_product_range(weight_range, (low, high)),
                                        value_range=(low - high, high - low), level=settings.level)
        self.state = RUNNING
        self.reason: str | None = None
        self.ignored = 0

    def add(self, target: np.ndarray, baseline: np.ndarray, propensity: np.ndarray,
            reward: np.ndarray) -> np.ndarray:
        """Add the rows' terms; return the mask of rows used (finite, rewards in range)."""
        low, high = self.settings.reward_range
        usable = np.isfinite(reward) & (reward >= low) & (reward <= high) & (propensity > 0)
        self.ignored += int((~usable).sum())
        terms = (target[usable] - baseline[usable]) / propensity[usable] * reward[usable]
        self.sequence.update(np.clip(terms, *self.sequence.term_range))  # rounding at the bounds only
        return usable

    def judge(self) -> None:
        """Latch ``promote`` / ``rollback`` the first time the sequence excludes 0."""
        if self.state != RUNNING or self.sequence.n == 0:
            return
        if self.sequence.ci_low > 0:
            self.state, self.reason = PROMOTE, "the confidence sequence's lower bound is above 0"
        elif self.sequence.ci_high < 0:
            self.state, self.reason = ROLLBACK, "the confidence sequence's upper bound is below 0"

    def report(self) -> dict[str, Any]:
        sequence = self.sequence
        return {
            "state": self.state,
            "reason": self.reason,
            "difference": sequence.estimate if sequence.n else None,
            "ci_low": sequence.ci_low,
            "ci_high": sequence.ci_high,
            "level": self.settings.level,
            "rows": sequence.n,
            "ignored_rows": self.ignored,
        }


class ExperimentMonitor:
    """The running comparison of an experiment's challenger with its champion (module docstring).

    Parameters
    ----------
    experiment : Experiment
    settings : MonitorSettings
    """

    def __init__(self, experiment: Experiment, settings: MonitorSettings) -> None:
        traffic = experiment.traffic
        self.experiment = experiment
        self.settings = settings
        self.difference = _Difference((-1.0 / (1.0 - traffic), 1.0 / traffic), settings)
        low, high = settings.reward_range
        self.challenger_value = RunningSequence(_product_range((0.0, 1.0 / traffic), (low, high)),
                                                value_range=(low, high), level=settings.level)
        self.decisions = {CHAMPION: 0, CHALLENGER: 0}
        self.feedbacks = {CHAMPION: 0, CHALLENGER: 0}
        self.cursor = 0.0  # feedback and decisions up to this time are counted
        self.concluded: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return self.difference.state

    def poll(self, log: QueuedLog, now: float | None = None) -> str:
        """Read what arrived since the last poll, update the sequences, return the state."""
        until = min((time.time() if now is None else now) - self.settings.lag, log.settled_until())
        if until <= self.cursor or self.concluded is not None:
            return self.state
        rows = log.monitor_rows(self.settings.event, self.cursor, until, self.experiment.id)
        for policy, n in log.arm_counts(self.experiment.id, self.cursor, until).items():
            self.decisions[policy] = self.decisions.get(policy, 0) + n
        self.cursor = until
        self.add(rows)
        return self.state

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Add the monitored rows (``QueuedLog.monitor_rows`` arrays) of this experiment."""
        if rows["reward"].size == 0:
            return
        used = self.difference.add(rows["challenger_probability"], rows["champion_probability"],
                                   rows["propensity"], rows["reward"])
        for policy in (CHAMPION, CHALLENGER):
            self.feedbacks[policy] += int((rows["policy"][used] == policy).sum())
        value = rows["challenger_probability"][used] / rows["propensity"][used] * rows["reward"][used]
        self.challenger_value.update(np.clip(value, *self.challenger_value.term_range))
        self.difference.judge()
        floor = self.settings.guardrail_floor
        if self.state == RUNNING and floor is not None and self.challenger_value.ci_high < floor:
            self.difference.state = ROLLBACK
            self.difference.reason = (f"guardrail: the challenger's value is below {floor!r} "
                                      f"(upper bound {self.challenger_value.ci_high:.4g})")

    def report(self) -> dict[str, Any]:
        """What ``GET /v1/experiment`` answers."""
        value = self.challenger_value
        return {
            **self.difference.report(),
            **self.experiment.describe(),
            "decisions": dict(self.decisions),
            "feedbacks": dict(self.feedbacks),
            "challenger_value": {"estimate": value.estimate if value.n else None,
                                 "ci_low": value.ci_low, "ci_high": value.ci_high},
            "guardrail_floor": self.settings.guardrail_floor,
            "reward_range": list(self.settings.reward_range),
            "event": self.settings.event,
            "concluded": self.concluded,
        }


class CandidateMonitor:
    """Off-policy: a candidate artifact against the champion, from the champion's logged propensities.

    Parameters
    ----------
    candidate : ServedModel
    champion : ServedModel
        The champion served while this monitor runs (its table bounds the weights).
    settings : MonitorSettings
    experiment : Experiment, optional
        The running experiment, whose mixture is the logging policy.
    started : float, optional
        Only decisions made from this time on are used (default now).

    Raises
    ------
    ValueError
        The candidate plays an action the logging policy never plays (no weight bound exists).
    """

    def __init__(self, candidate: ServedModel, champion: ServedModel, settings: MonitorSettings,
                 experiment: Experiment | None = None, started: float | None = None) -> None:
        from hfrl.service.experiment import check_compatible

        check_compatible(champion, candidate)
        logging = champion.policy.table_
        baseline_weight = 1.0
        if experiment is not None:
            traffic = experiment.traffic
            logging = (1.0 - traffic) * logging + traffic * experiment.challenger.policy.table_
            baseline_weight = 1.0 / (1.0 - traffic)
        target = candidate.policy.table_
        unsupported = (target > 0) & (logging <= 0)
        if unsupported.any():
            state, action = (int(x[0]) for x in np.nonzero(unsupported))
            raise ValueError(
                f"candidate {candidate.path or candidate.version} plays action {action} in state {state}, "
                "which the served policy never plays: its value cannot be estimated from these logs. "
                "Serve a champion with an exploration floor (TabularPolicy.with_exploration)."
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            largest = float(np.max(np.where(target > 0, target / np.where(logging > 0, logging, 1.0), 0.0)))
        self.candidate = candidate
        self.champion_version = champion.version
        self.settings = settings
        self.difference = _Difference((-baseline_weight, largest), settings)
        self.max_weight = largest
        self.started = time.time() if started is None else started
        self.cursor = self.started

    @property
    def state(self) -> str:
        return self.difference.state

    def poll(self, log: QueuedLog, now: float | None = None) -> str:
        until = min((time.time() if now is None else now) - self.settings.lag, log.settled_until())
        if until > self.cursor:
            rows = log.monitor_rows(self.settings.event, self.cursor, until)
            self.cursor = until
            self.add(rows)
        return self.state

    def add(self, rows: dict[str, np.ndarray]) -> None:
        keep = (rows["mode"] == EXPLORE) & (rows["decided_at"] >= self.started)
        if not keep.any():
            return
        target = self.candidate.policy.action_probabilities(rows["state"][keep], rows["action"][keep])
        self.difference.add(target, rows["champion_probability"][keep], rows["propensity"][keep],
                            rows["reward"][keep])
        self.difference.judge()

    def report(self) -> dict[str, Any]:
        return {
            **self.difference.report(),
            "candidate_artifact": self.candidate.path,
            "candidate_version": self.candidate.version,
            "champion_version": self.champion_version,
            "max_weight": self.max_weight,
            "since": self.started,
        }
