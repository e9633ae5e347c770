"""Off-policy evaluation: what a policy is worth from logged data, with honest uncertainty.

``evaluate`` (IPS, clipped IPS, SNIPS, DM, DR, Switch-DR, each a one-line formula in
``hfrl.ope.estimators``; intervals in ``hfrl.ope.inference``; weight and support diagnostics),
``evaluate_embedded`` (marginalised IPS over item embeddings, for catalogs where per-item weights
are hopeless), ``evaluate_sessions`` (per-decision importance sampling for multi-step sessions) and
``compare`` (the deployment verdict: does a candidate beat the logging policy, paired on the same
rows), and ``confidence_sequence`` (anytime-valid bounds for users who look again as logs arrive),
and ``require_evidence`` (which estimates the rows cannot support, and why). Pass a validated
``hfrl.data.Logs`` to evaluate several policies on one pass over the rows.
"""

from hfrl.ope.compare import Comparison, compare
from hfrl.ope.estimators import DEFAULT_ESTIMATORS, ESTIMATORS
from hfrl.ope.evaluate import DEFAULT_INTERVALS, evaluate
from hfrl.ope.evidence import NoEvidenceError, missing_evidence, require_evidence
from hfrl.ope.inference import INTERVALS
from hfrl.ope.marginalized import EMBEDDED_ESTIMATORS, evaluate_embedded
from hfrl.ope.reward_model import fit_reward_model
from hfrl.ope.sequences import confidence_sequence
from hfrl.ope.sessions import SESSION_ESTIMATORS, evaluate_sessions
from hfrl.ope.slates import SLATE_ESTIMATORS, evaluate_slates
from hfrl.ope.support import SupportWarning

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DEFAULT_INTERVALS",
    "EMBEDDED_ESTIMATORS",
    "ESTIMATORS",
    "INTERVALS",
    "SESSION_ESTIMATORS",
    "SLATE_ESTIMATORS",
    "Comparison",
    "NoEvidenceError",
    "SupportWarning",
    "compare",
    "confidence_sequence",
    "evaluate",
    "evaluate_embedded",
    "evaluate_sessions",
    "evaluate_slates",
    "fit_reward_model",
    "missing_evidence",
    "require_evidence",
]
