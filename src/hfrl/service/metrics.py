"""Prometheus text exposition for the service, hand-rolled (no extra dependency).

Counters and histograms live in plain dicts and numpy arrays updated on the event-loop thread; the
``/metrics`` endpoint renders them in the text format 0.0.4.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

import numpy as np

__all__ = ["LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class Metrics:
    """Request counts, latency histograms, decisions per action and feedback counts.

    Examples
    --------
    >>> metrics = Metrics()
    >>> metrics.observe_request("/v1/decide", 200, 0.002)
    >>> 'hfrl_requests_total{route="/v1/decide",status="200"} 1' in metrics.render({})
    True
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sums: dict[str, float] = defaultdict(float)
        self.decisions_per_action = np.zeros(0, dtype=np.int64)
        self.decisions_by_mode: dict[str, int] = defaultdict(int)
        self.feedback: dict[str, int] = defaultdict(int)
        self.reloads: dict[str, int] = defaultdict(int)
        self.decisions_by_policy: dict[str, int] = defaultdict(int)
        self.conclusions: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        counts = self.latency_counts.get(route)
        if counts is None:
            counts = self.latency_counts[route] = [0] * (len(LATENCY_BUCKETS) + 1)
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sums[route] += seconds

    def observe_decisions(self, actions: np.ndarray, mode: str) -> None:
        flat = actions.ravel()
        if flat.size == 1:
            action = int(flat[0])
            if action >= self.decisions_per_action.shape[0]:
                self._grow(action + 1)
            self.decisions_per_action[action] += 1
        elif flat.size:
            largest = int(flat.max())
            if largest >= self.decisions_per_action.shape[0]:
                self._grow(largest + 1)
            np.add.at(self.decisions_per_action, flat, 1)  # not bincount: a catalog has 10^5 items
        self.decisions_by_mode[mode] += actions.shape[0]

    def _grow(self, size: int) -> None:
        grown = np.zeros(size, dtype=np.int64)
        grown[: self.decisions_per_action.shape[0]] = self.decisions_per_action
        self.decisions_per_action = grown

    def observe_feedback(self, outcome: str) -> None:
        self.feedback[outcome] += 1

    def observe_reload(self, outcome: str) -> None:
        self.reloads[outcome] += 1

    def observe_arm(self, policy: str, decisions: int) -> None:
        self.decisions_by_policy[policy] += decisions

    def observe_conclusion(self, decision: str, how: str) -> None:
        self.conclusions[(decision, how)] += 1

    def render(self, gauges: dict[str, tuple[str, Any]]) -> str:
        """The exposition text; ``gauges`` maps a metric name to ``(help, value)``."""
        lines: list[str] = []

        def header(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        header("hfrl_requests_total", "counter", "HTTP requests by route and status code.")
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'hfrl_requests_total{{route="{route}",status="{status}"}} {n}')
        header("hfrl_request_duration_seconds", "histogram", "Request latency by route.")
        for route, counts in sorted(self.latency_counts.items()):
            cumulative = 0
            name = "hfrl_request_duration_seconds"
            for bound, n in zip(LATENCY_BUCKETS, counts, strict=False):
                cumulative += n
                lines.append(f'{name}_bucket{{route="{route}",le="{bound}"}} {cumulative}')
            cumulative += counts[-1]
            lines.append(f'{name}_bucket{{route="{route}",le="+Inf"}} {cumulative}')
            lines.append(f'{name}_sum{{route="{route}"}} {self.latency_sums[route]:.6f}')
            lines.append(f'{name}_count{{route="{route}"}} {cumulative}')
        header("hfrl_decisions_total", "counter", "Decisions served by mode.")
        for mode, n in sorted(self.decisions_by_mode.items()):
            lines.append(f'hfrl_decisions_total{{mode="{mode}"}} {n}')
        header("hfrl_decisions_per_action_total", "counter", "Chosen slots per action id (if chosen).")
        per_action = self.decisions_per_action
        for action in np.flatnonzero(per_action).tolist():
            lines.append(f'hfrl_decisions_per_action_total{{action="{action}"}} {per_action[action]}')
        header("hfrl_feedback_total", "counter", "Feedback by outcome (rate() = feedback rate).")
        for outcome, n in sorted(self.feedback.items()):
            lines.append(f'hfrl_feedback_total{{outcome="{outcome}"}} {n}')
        header("hfrl_reloads_total", "counter", "Model reloads by outcome.")
        for outcome, n in sorted(self.reloads.items()):
            lines.append(f'hfrl_reloads_total{{outcome="{outcome}"}} {n}')
        if self.decisions_by_policy:
            header("hfrl_experiment_decisions_total", "counter", "Decisions by arm (this process).")
            for policy, n in sorted(self.decisions_by_policy.items()):
                lines.append(f'hfrl_experiment_decisions_total{{policy="{policy}"}} {n}')
        if self.conclusions:
            header("hfrl_experiment_conclusions_total", "counter", "Experiments concluded, by decision, how.")
            for (decision, how), n in sorted(self.conclusions.items()):
                lines.append(f'hfrl_experiment_conclusions_total{{decision="{decision}",how="{how}"}} {n}')
        for name, (text, value) in gauges.items():
            header(name, "gauge", text)
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"
