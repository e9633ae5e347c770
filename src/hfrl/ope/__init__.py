"""Off-policy evaluation: what a policy is worth from logged data, with honest uncertainty.

``evaluate`` (IPS, clipped IPS, SNIPS, DM, DR, Switch-DR with normal and Poisson-bootstrap
intervals and weight/support diagnostics), ``evaluate_sessions`` (per-decision importance sampling
for multi-step sessions) and ``compare`` (the deployment verdict: does a candidate beat the logging
policy, paired on the same rows). ``LogStatistics`` holds the per-(state, action) sums of one set of
logs, computed in one pass, to share between ``evaluate``, ``compare`` and ``hfrl.tune``.
"""

from hfrl.ope.compare import Comparison, compare
from hfrl.ope.estimators import (
    DEFAULT_ESTIMATORS,
    ESTIMATORS,
    LogStatistics,
    SupportWarning,
    evaluate,
    fit_reward_model,
)
from hfrl.ope.sessions import SESSION_ESTIMATORS, evaluate_sessions

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "SESSION_ESTIMATORS",
    "Comparison",
    "LogStatistics",
    "SupportWarning",
    "compare",
    "evaluate",
    "evaluate_sessions",
    "fit_reward_model",
]
