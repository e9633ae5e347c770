"""No estimate without evidence: when the rows cannot support a value, say so and why.

``evaluate`` always returns numbers; some of them rest on nothing. A single row gives no standard
error; a policy that puts no probability on any logged action has importance weights that are all
zero (IPS says 0 with a standard error of 0); the direct method then extrapolates the reward
model to pairs never seen; rewards that are all equal, with no declared reward range, give an
interval of zero width. ``missing_evidence`` names the reason for one ``evaluate`` row and
``require_evidence`` refuses a whole result with ``NoEvidenceError``, so that callers (the CLI)
never print such a number as if it were one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hfrl.errors import HfrlError

__all__ = ["NoEvidenceError", "missing_evidence", "require_evidence"]


class NoEvidenceError(HfrlError):
    """The logged rows cannot support the estimate asked for; the message says why."""


def missing_evidence(row: Mapping[str, Any]) -> str | None:
    """Why one row of ``hfrl.ope.evaluate``'s result is no evidence of the value, or None.

    Examples
    --------
    >>> missing_evidence({"n_rows": 1, "ess": 1.0, "ci_low": 3.0, "ci_high": 3.0})
    '1 row cannot give an interval (at least 2 are needed)'
    >>> missing_evidence({"n_rows": 200, "ess": 0.0, "propensity_source": "logged",
    ...                   "ci_low": 0.0, "ci_high": 1.0, "unobserved_share": 1.0})
    'the policy puts no probability on any logged action in its state (no overlap with the logging policy)'
    >>> missing_evidence({"n_rows": 500, "ess": 480.0, "ci_low": 0.2, "ci_high": 0.3}) is None
    True
    """
    n_rows = int(row.get("n_rows", 0))
    if n_rows < 2:
        return f"{n_rows} row{'s' if n_rows != 1 else ''} cannot give an interval (at least 2 are needed)"
    weighted = row.get("propensity_source", "logged") != "not used"
    ess = float(row.get("ess", math.nan))
    if weighted and not ess > 0:
        return ("the policy puts no probability on any logged action in its state (no overlap with the "
                "logging policy)")
    if not weighted and float(row.get("unobserved_share", 0.0)) >= 1.0 - 1e-9:
        return ("every action the policy takes is unseen in its state in these rows: the reward model "
                "would only extrapolate")
    low, high = float(row.get("ci_low", math.nan)), float(row.get("ci_high", math.nan))
    if not (math.isfinite(low) and math.isfinite(high)):
        return "the interval cannot be formed from these rows"
    if high <= low:
        return ("the interval has zero width: every logged reward is the same; declare the reward range "
                "(reward_range=, --reward-range LOW,HIGH) to bound what unseen rewards could be")
    return None


def require_evidence(result: pd.DataFrame, source: str | None = None) -> dict[str, str]:
    """The rows of ``evaluate``'s ``result`` that are no evidence, by estimator, with the reason.

    Raises ``NoEvidenceError`` when no row is evidence (the message names ``source``, a file, and
    the reasons); returns the reasons of the rows left out otherwise (empty when all are evidence).

    Examples
    --------
    >>> frame = pd.DataFrame({"n_rows": [1], "ess": [1.0], "ci_low": [3.0], "ci_high": [3.0]},
    ...                      index=pd.Index(["ips"], name="estimator"))
    >>> require_evidence(frame, "one_line.csv")
    Traceback (most recent call last):
    ...
    hfrl.ope.evidence.NoEvidenceError: one_line.csv: no evidence for any estimator: 1 row cannot give ...
    """
    reasons = {str(name): why for name, row in result.iterrows()
               if (why := missing_evidence(row.to_dict())) is not None}
    if reasons and len(reasons) == len(result):
        distinct = list(dict.fromkeys(reasons.values()))
        prefix = f"{source}: " if source else ""
        raise NoEvidenceError(f"{prefix}no evidence for any estimator: " + "; ".join(distinct))
    return reasons
