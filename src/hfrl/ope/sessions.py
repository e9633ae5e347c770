"""Per-decision importance sampling for multi-step session logs.

A session is the rows sharing a ``session_id``, ordered by ``timestamp`` (or by row order when
there is none). With ``w_t = pi(a_t|s_t) / p_t`` and ``rho_t = w_0 ... w_t``:

* ``pdis``  (per-decision IS): the mean over sessions of ``G = sum_t gamma^t rho_t r_t``;
  standard error = sample std of ``G`` / sqrt(n_sessions).
* ``wpdis`` (per-decision weighted IS): ``sum_t gamma^t (sum_i rho_it r_it) / (sum_i rho_it)``.
  A session that has ended keeps its last ``rho`` (and reward 0) in later steps' denominators, so
  sessions of different lengths are averaged consistently. Standard error by the delta method
  (per-session influence terms).

Censored sessions, cut off by the end of the logs before they ended (their last row has ``done``
False, like the last sessions ``hfrl.envs.collect_logs`` writes), would bias both estimators low:
their later rewards are missing. Each observed step ``t`` is therefore weighted by ``1 / G(t)``,
``G(t)`` the Kaplan-Meier probability that a session still going at step ``t`` was not yet cut off
(inverse probability of censoring weighting, Robins & Rotnitzky 1992), and a censored session does
not keep its last ``rho`` in later denominators. Without a ``done`` column every session is taken
as complete.

Sessions are independent units: the bootstrap gives each session a Poisson(1) weight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import as_logs, schema
from hfrl.ope.inference import bootstrap_interval, check_level, normal_quantile
from hfrl.ope.support import Support, known_support, warn_support
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["SESSION_ESTIMATORS", "evaluate_sessions"]

SESSION_ESTIMATORS = ("pdis", "wpdis")


def _order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order (by session, then time or row position) and the session code of each ordered row."""
    codes, _ = pd.factorize(frame[schema.SESSION_ID], sort=False)
    keys = [np.arange(len(frame))]
    if schema.TIMESTAMP in frame.columns:
        keys.append(frame[schema.TIMESTAMP].dt.tz_localize(None).to_numpy("datetime64[ns]"))
    order = np.lexsort((*keys, codes))
    return order, codes[order]


def censoring_survival(lengths: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """``G(t)``, t = 0 .. max length - 1: the Kaplan-Meier probability that a session that goes on
    to step t is still in the logs there. A censored session of ``L`` observed steps was cut off
    at step ``L``; at risk at step ``k`` are the sessions observed beyond ``k`` and those cut at ``k``.

    Examples
    --------
    >>> censoring_survival(np.array([2, 2, 1, 3]), np.array([False, True, False, False])).tolist()
    [1.0, 1.0, 0.5]
    """
    top = int(lengths.max())
    cut = np.bincount(lengths[censored], minlength=top + 1).astype(np.float64)
    beyond = np.cumsum(np.bincount(lengths, minlength=top + 1)[::-1])[::-1]  # sessions with L >= k
    at_risk = np.r_[beyond[1:], 0.0] + cut  # L > k, or cut at k
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, cut / at_risk, 0.0)
    return np.cumprod(1.0 - hazard)[:top]


def _session_terms(rho, reward, step, session, n_sessions, gamma, final_rho):  # noqa: ANN001, ANN202
    """Per-session PDIS returns and WPDIS value, influence terms and per-step arrays."""
    discount = gamma ** step
    n_steps = int(step.max()) + 1
    returns = np.bincount(session, weights=discount * rho * reward, minlength=n_sessions)
    lengths = np.bincount(session, minlength=n_sessions)
    alive = np.bincount(step, weights=rho, minlength=n_steps)
    ended = np.bincount(lengths, weights=final_rho, minlength=n_steps + 1)[:n_steps]
    denominator = alive + np.cumsum(ended)  # sessions that ended before t keep their last rho
    numerator = np.bincount(step, weights=rho * reward, minlength=n_steps)
    with np.errstate(invalid="ignore", divide="ignore"):
        step_value = np.where(denominator > 0, numerator / denominator, 0.0)
    discounts = gamma ** np.arange(n_steps)
    value = float(discounts @ step_value)
    mean_denominator = denominator / n_sessions
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(mean_denominator > 0, discounts / mean_denominator, 0.0)
    row_influence = scale[step] * rho * (reward - step_value[step])
    influence = np.bincount(session, weights=row_influence, minlength=n_sessions)
    tail = np.concatenate([np.cumsum((scale * step_value)[::-1])[::-1], [0.0]])
    influence -= final_rho * tail[lengths]
    return returns, value, influence, final_rho, lengths


def evaluate_sessions(
    logs: Any,
    policy: TabularPolicy,
    estimators: str | Iterable[str] = SESSION_ESTIMATORS,
    gamma: float = 1.0,
    level: float = 0.95,
    n_bootstrap: int = 0,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Value of ``policy`` over multi-step sessions: (weighted) per-decision importance sampling.

    Parameters
    ----------
    logs : DataFrame or path
        Columns ``session_id``, ``state``, ``action``, ``reward``, ``propensity`` and optionally
        ``timestamp`` (the order within a session; row order otherwise).
    policy : TabularPolicy
    estimators : "pdis", "wpdis" or both
    gamma : float in [0, 1]
        Discount of later steps.
    level, n_bootstrap, random_state
        As in ``evaluate``; the bootstrap resamples sessions with Poisson(1) weights.

    Returns
    -------
    DataFrame
        One row per estimator with ``estimate`` (discounted return per session), ``std_error``,
        ``ci_low``, ``ci_high``, ``ess`` and ``max_weight`` (of the sessions' final weights
        ``rho_T``), ``n_rows``, ``n_sessions``, ``support_violation_share`` and
        ``unobserved_share`` (as in ``evaluate``: proven unsupported mass, and mass on pairs
        merely not seen), ``level`` (and
        ``boot_*`` columns with a bootstrap).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hfrl.policies import TabularPolicy
    >>> logs = pd.DataFrame({"session_id": [0, 0, 1, 1], "state": [0, 1, 0, 1],
    ...                      "action": [0, 1, 1, 0], "reward": [1.0, 1.0, 0.0, 1.0],
    ...                      "propensity": [0.5, 0.5, 0.5, 0.5]})
    >>> target = TabularPolicy(np.array([[1.0, 0.0], [0.5, 0.5]]))
    >>> evaluate_sessions(logs, target)["estimate"].round(3).tolist()
    [2.0, 2.0]
    """
    names = (estimators,) if isinstance(estimators, str) else tuple(estimators)
    names = tuple(n.lower() for n in names)
    unknown = [n for n in names if n not in SESSION_ESTIMATORS]
    if unknown or not names:
        raise ValueError(f"unknown session estimator(s) {unknown}; choose from {SESSION_ESTIMATORS}")
    level = check_level(level)
    if not isinstance(gamma, int | float) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    if not isinstance(policy, TabularPolicy):
        raise TypeError(f"policy must be a TabularPolicy, got {type(policy).__name__}")
    validated = as_logs(logs, n_states=policy.n_states, n_actions=policy.n_actions,
                        required=(schema.SESSION_ID, schema.STATE, schema.ACTION, schema.REWARD,
                                  schema.PROPENSITY))
    frame = validated.frame()

    order, session = _order(frame)
    state = frame[schema.STATE].to_numpy().astype(np.int64)[order]
    action = frame[schema.ACTION].to_numpy().astype(np.int64)[order]
    reward = frame[schema.REWARD].to_numpy(np.float64)[order]
    propensity = frame[schema.PROPENSITY].to_numpy(np.float64)[order]
    # renumber sessions by first appearance in the sorted order so that they are contiguous
    _, session = np.unique(session, return_inverse=True)
    n_sessions = int(session.max()) + 1
    starts = np.r_[0, np.flatnonzero(np.diff(session)) + 1]
    step = np.arange(len(session)) - np.repeat(starts, np.diff(np.r_[starts, len(session)]))
    weight = policy.action_probabilities(state, action) / propensity
    rho = pd.Series(weight).groupby(session).cumprod().to_numpy()
    lengths = np.bincount(session, minlength=n_sessions)
    last = np.cumsum(lengths) - 1  # rows are ordered by session then step
    censored = np.zeros(n_sessions, dtype=bool)
    if schema.DONE in frame.columns:
        censored = ~frame[schema.DONE].to_numpy(dtype=bool)[order][last]
    survival = censoring_survival(lengths, censored)
    final_rho = np.where(censored, 0.0, rho[last] / survival[lengths - 1])
    rho = rho / survival[step]  # inverse probability of censoring weights

    returns, wpdis_value, wpdis_influence, final_rho, lengths = _session_terms(
        rho, reward, step, session, n_sessions, gamma, final_rho
    )
    shape = (policy.n_states, policy.n_actions)
    key = state * policy.n_actions + action
    counts = np.bincount(key, minlength=shape[0] * shape[1]).reshape(shape)
    inverse = np.bincount(key, weights=1.0 / propensity, minlength=shape[0] * shape[1]).reshape(shape)
    known = known_support(counts, inverse, "logged")  # as in evaluate: proven vs merely unobserved
    support = Support.of(policy.table_, np.arange(shape[0]), counts.sum(axis=1), counts, known)
    warn_support(support)

    z = normal_quantile(level)
    ess = float(final_rho.sum() ** 2 / (final_rho**2).sum()) if (final_rho > 0).any() else 0.0
    common = {
        "ess": ess,
        "max_weight": float(final_rho.max()),
        "n_rows": len(frame),
        "n_sessions": n_sessions,
        "censored_sessions": int(censored.sum()),
        "support_violation_share": support.violation_share,
        "unobserved_share": support.unobserved_share,
        "propensity_source": "logged",
        "level": level,
    }
    values = {
        "pdis": (float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(n_sessions))),
        "wpdis": (wpdis_value, _influence_se(wpdis_influence)),
    }
    rows = []
    for name in names:
        estimate, se = values[name]
        rows.append({"estimate": estimate, "std_error": se, "ci_low": estimate - z * se,
                     "ci_high": estimate + z * se, **common})
    result = pd.DataFrame(rows, index=pd.Index(names, name="estimator"))
    if n_bootstrap:
        rng = resolve_rng(random_state)
        replicates = np.empty((int(n_bootstrap), len(names)))
        for b in range(int(n_bootstrap)):
            draws = rng.poisson(1.0, n_sessions).astype(np.float64)
            row_draws = draws[session]
            for j, name in enumerate(names):
                if name == "pdis":
                    replicates[b, j] = draws @ returns / draws.sum() if draws.sum() > 0 else np.nan
                else:
                    replicates[b, j] = _weighted_wpdis(rho * row_draws, reward, step, session,
                                                       draws, final_rho, lengths, gamma)
        low, high, spread = bootstrap_interval(replicates, level)
        result["boot_std_error"] = spread
        result["boot_ci_low"] = low
        result["boot_ci_high"] = high
        result["n_bootstrap"] = int(n_bootstrap)
    return result


def _influence_se(influence: np.ndarray) -> float:
    n = influence.shape[0]
    return float(np.sqrt((influence**2).sum() / (n * (n - 1.0)))) if n > 1 else float("nan")


def _weighted_wpdis(weighted_rho, reward, step, session, draws, final_rho, lengths, gamma) -> float:  # noqa: ANN001
    """WPDIS with session weights (one bootstrap resample)."""
    n_steps = int(step.max()) + 1
    alive = np.bincount(step, weights=weighted_rho, minlength=n_steps)
    ended = np.bincount(lengths, weights=draws * final_rho, minlength=n_steps + 1)[:n_steps]
    denominator = alive + np.cumsum(ended)
    numerator = np.bincount(step, weights=weighted_rho * reward, minlength=n_steps)
    with np.errstate(invalid="ignore", divide="ignore"):
        step_value = np.where(denominator > 0, numerator / denominator, 0.0)
    return float((gamma ** np.arange(n_steps)) @ step_value)
