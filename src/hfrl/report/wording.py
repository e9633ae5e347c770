"""Numbers and verdicts written for people: the one place the CLI and the report format them.

Counts get thousands separators (``200,000``), estimates three significant digits (``2.42``,
``1,140``, ``0.00457``), intervals as many digits as it takes to tell their ends apart, and a
verdict reads as the difference with its interval and the relative uplift with its interval.
Machine-readable output (``--json``, ``metrics.json``) keeps the full numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "alpha_meaning",
    "alpha_sentence",
    "count",
    "interval",
    "number",
    "percent",
    "relative_uplift",
    "verdict_sentence",
]

MISSING = "–"


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def count(value: Any) -> str:
    """A count with thousands separators.

    Examples
    --------
    >>> count(200000), count(21360.0), count(None)
    ('200,000', '21,360', '–')
    """
    x = _finite(value)
    return MISSING if x is None else f"{round(x):,}"


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """``value`` to ``digits`` significant digits, thousands separated, without trailing zeros.

    Examples
    --------
    >>> number(2.3395843489482733), number(21360.0), number(0.0045678), number(1.0), number(-0.5)
    ('2.34', '21,400', '0.00457', '1', '-0.5')
    >>> number(1.07, signed=True), number(float("nan")), number(0.0000123)
    ('+1.07', '–', '1.23e-05')
    """
    x = _finite(value)
    if x is None:
        return MISSING
    sign = "+" if signed and x > 0 else ""
    if x == 0:
        return "0"
    if abs(x) < 1e-4:
        return f"{sign}{x:.{digits - 1}e}"
    places = digits - 1 - math.floor(math.log10(abs(x)))  # negative: round to tens, hundreds, ...
    text = f"{round(x, places):,.{max(0, places)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return sign + text


def interval(low: Any, high: Any, digits: int = 3, signed: bool = False, unit: str = "") -> str:
    """``[low, high]`` with enough digits that the two ends differ (up to 7); ``unit`` follows each.

    Examples
    --------
    >>> interval(1.1181, 1.1583), interval(1.11812, 1.11834), interval(None, 2.0)
    ('[1.12, 1.16]', '[1.1181, 1.1183]', '[–, 2]')
    >>> interval(79.2, 109.0, signed=True, unit="%")
    '[+79.2%, +109%]'
    """
    lo, hi = _finite(low), _finite(high)

    def shown(d: int) -> tuple[str, str]:
        return tuple(number(v, d, signed) + (unit if v is not None else "") for v in (lo, hi))  # type: ignore[return-value]

    ends = shown(digits)
    while lo is not None and hi is not None and lo != hi and ends[0] == ends[1] and digits < 7:
        digits += 1
        ends = shown(digits)
    return f"[{ends[0]}, {ends[1]}]"


def percent(value: Any, signed: bool = True) -> str:
    """A share as a percentage with three significant digits (``+94.1%``).

    Examples
    --------
    >>> percent(0.9412), percent(-0.05), percent(0.0213, signed=False)
    ('+94.1%', '-5%', '2.13%')
    """
    x = _finite(value)
    return MISSING if x is None else number(100 * x, signed=signed) + "%"


def relative_uplift(difference: Any, low: Any, high: Any, baseline: Any) -> tuple[float, float, float] | None:
    """``difference / baseline`` and its interval (the difference's, over the baseline's value).

    The baseline's own uncertainty is not in this interval; with a baseline estimated from the
    same rows (the logging policy's mean reward) it is the smaller part. None when the baseline
    is not a positive number.

    Examples
    --------
    >>> [round(x, 3) for x in relative_uplift(1.07, 0.9, 1.24, 1.14)]
    [0.939, 0.789, 1.088]
    """
    base, diff = _finite(baseline), _finite(difference)
    if base is None or base <= 0 or diff is None:
        return None
    lo, hi = (math.nan if v is None else v / base for v in (_finite(low), _finite(high)))
    return diff / base, lo, hi


def verdict_sentence(verdict: Mapping[str, Any], level: float = 0.95, candidate: str = "pi'",
                     baseline: str = "the logging policy", unit: str = "per decision") -> str:
    """One line for a deployment verdict: what it is, the difference and the relative uplift.

    ``verdict`` holds ``verdict``, ``difference``, ``ci_low``, ``ci_high``, ``reason`` and, for
    the relative uplift, ``baseline_value`` (``hfrl.ope.compare``'s fields). Notes that follow the
    reason's first clause (unobserved mass, unsupported actions) are kept. ``unit`` says what the
    values are (``"per session"`` for a discounted return).

    Examples
    --------
    >>> print(verdict_sentence({"verdict": "ship", "difference": 1.07, "ci_low": 0.903, "ci_high": 1.24,
    ...                         "baseline_value": 1.14, "reason": "the 95% interval ... lies above 0"}))
    ship: pi' earns +1.07 per decision [+0.903, +1.24] more than the logging policy's 1.14, a relative
    uplift of +93.9% [+79.2%, +109%] (95% intervals)
    >>> print(verdict_sentence({"verdict": "unreliable", "reason": "effective sample size 3 is below 100"}))
    unreliable: effective sample size 3 is below 100
    """
    kind = str(verdict.get("verdict", ""))
    reason = str(verdict.get("reason", ""))
    if kind == "unreliable" or _finite(verdict.get("difference")) is None:
        return f"{kind}: {reason}" if reason else kind
    diff, low, high = (verdict.get(k) for k in ("difference", "ci_low", "ci_high"))
    base = verdict.get("baseline_value")
    against = f"{baseline}'s {number(base)}" if _finite(base) is not None else baseline
    verb = {"ship": "earns", "worse": "earns", "no evidence": "differs by"}.get(kind, "differs by")
    text = (f"{kind}: {candidate} {verb} {number(diff, signed=True)} {unit} "
            f"{interval(low, high, signed=True)} {'more than' if verb == 'earns' else 'from'} {against}")
    relative = relative_uplift(diff, low, high, base)
    if relative is not None:
        text += (f", a relative uplift of {percent(relative[0])} "
                 f"{interval(100 * relative[1], 100 * relative[2], signed=True, unit='%')}")
    text += f" ({level:.0%} intervals)"
    if kind == "no evidence":
        text += ": the interval contains 0"
    notes = reason.split("; ")[1:]
    return "; ".join([text, *notes])


def alpha_meaning(alpha: float) -> str:
    """What a blend weight means: ``pi' = pi``, ``pi' = HF`` or the mixture.

    Examples
    --------
    >>> print(alpha_meaning(0.0), alpha_meaning(1.0), alpha_meaning(0.25), sep="\\n")
    pi' = pi (the learned policy alone)
    pi' = HF (the historical frequency alone)
    pi' = 0.75 pi + 0.25 HF
    """
    if alpha <= 0:
        return "pi' = pi (the learned policy alone)"
    if alpha >= 1:
        return "pi' = HF (the historical frequency alone)"
    return f"pi' = {number(1 - alpha)} pi + {number(alpha)} HF"


def alpha_sentence(alpha: float, criterion: str, estimator: str, level: float,
                   curve: Sequence[Mapping[str, Any]] | None = None, rows: str = "the validation split"
                   ) -> str:
    """Why the chosen alpha won, in one sentence, with the two ends of the curve for comparison.

    ``curve`` lists ``{alpha, estimate, ci_low, ci_high}`` points (the alpha curve); the chosen
    point is the nearest one.

    Examples
    --------
    >>> curve = [{"alpha": 0.0, "estimate": 1.5, "ci_low": 1.0, "ci_high": 2.1},
    ...          {"alpha": 0.6, "estimate": 1.7, "ci_low": 1.35, "ci_high": 2.1},
    ...          {"alpha": 1.0, "estimate": 1.8, "ci_low": 1.3, "ci_high": 2.3}]
    >>> print(alpha_sentence(0.6, "lower_bound", "snips", 0.95, curve))
    alpha = 0.6 (pi' = 0.4 pi + 0.6 HF) has the highest lower 95% bound of the SNIPS value on the
    validation split: 1.7 [1.35, 2.1], against 1.5 [1, 2.1] for pi alone (alpha = 0) and
    1.8 [1.3, 2.3] for HF alone (alpha = 1).
    >>> curve[0]["estimate"] = float("nan")  # pi puts no mass on a logged action
    >>> print(alpha_sentence(1.0, "estimate", "snips", 0.95, curve))
    alpha = 1 (pi' = HF (the historical frequency alone)) has the highest SNIPS estimate of the value
    on the validation split: 1.8 [1.3, 2.3], against no evidence for pi alone (alpha = 0).
    """
    name = estimator.upper()
    goal = (f"the highest lower {level:.0%} bound of the {name} value" if criterion == "lower_bound"
            else f"the highest {name} estimate of the value")
    text = f"alpha = {number(alpha)} ({alpha_meaning(alpha)}) has {goal} on {rows}"
    points = [p for p in (curve or []) if _finite(p.get("alpha")) is not None]
    if not points:
        return text + "."

    def at(a: float) -> Mapping[str, Any]:
        return min(points, key=lambda p: abs(float(p["alpha"]) - a))

    def shown(point: Mapping[str, Any]) -> str:
        if _finite(point.get("estimate")) is None:
            return "no evidence"
        return f"{number(point.get('estimate'))} {interval(point.get('ci_low'), point.get('ci_high'))}"

    chosen, pi_end, hf_end = at(alpha), at(0.0), at(1.0)
    text += f": {shown(chosen)}"
    others = [f"{shown(p)} for {who}" for p, who, a in ((pi_end, "pi alone (alpha = 0)", 0.0),
                                                         (hf_end, "HF alone (alpha = 1)", 1.0))
              if p is not chosen and abs(float(p["alpha"]) - a) < 1e-9]
    if others:
        text += ", against " + " and ".join(others)
    return text + "."
