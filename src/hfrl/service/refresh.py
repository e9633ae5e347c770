"""Refresh a blended artifact: HF recomputed from recent logs, pi' = blend(pi, HF, alpha) rebuilt.

Users' behaviour moves; the HF a blended policy leans on should follow it. ``refresh_artifact``
recomputes HF with the artifact's own HF settings (its half-life above all, so recent rows weigh
more) from the service's decision log and any other logs, rebuilds ``pi' = (1 - alpha) pi + alpha HF``
with the same pi and method, and keeps alpha, or re-tunes it on the newest rows with the
lower-confidence-bound criterion (the safe choice: alpha moves only where the bound improves).
``hfrl refresh`` calls it; the service calls it periodically (``--refresh-every``) or on
``POST /v1/admin/refresh``, and hot-swaps the result like a reload.

What a refreshable artifact carries
-----------------------------------
A blended artifact (written by ``hfrl tune``) carries alpha and the blend method in its metadata.
To rebuild it, refresh also needs pi and HF's settings: give them once (``pi=`` the learned
policy's artifact, ``hf=`` the HF artifact ``hfrl frequencies`` wrote, whose metadata holds the
settings); the refreshed artifact then carries both (pi's table as the zip member ``pi.npy``, its
checksum and the HF settings under the metadata key ``refresh``), so later refreshes need neither.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.data import schema
from hfrl.errors import ArtifactError, LogValidationError
from hfrl.policies import TabularPolicy

__all__ = [
    "BlendRecipe", "RefreshResult", "RefreshSettings", "embedded_parents", "gather_logs", "refresh_artifact",
    "save_refreshable",
]

RECIPE_KEY = "refresh"
PI_MEMBER = "pi.npy"
HF_MEMBER = "hf.npy"
# the HistoricalFrequency parameters an HF artifact's metadata may record
HF_PARAMETERS = ("kind", "prior_strength", "count", "smoothing", "prior_fit", "normalization", "temperature",
                 "group_column", "weight_column", "half_life")
DECISION_LOG_SUFFIXES = (".sqlite", ".sqlite3", ".db")
MIN_RETUNE_ROWS = 200


@dataclass
class BlendRecipe:
    """What rebuilds a blended policy: pi, alpha, the blend method and HF's settings.

    Attributes
    ----------
    pi : TabularPolicy
        The learned policy.
    alpha : float
        The weight on HF.
    method : str
        ``"linear"`` or ``"geometric"`` (``hfrl.blending``).
    hf_settings : dict
        ``HistoricalFrequency`` parameters (``kind``, ``prior_strength``, ``half_life``, ...).
    metadata : dict
        The blended artifact's own metadata (name, encoders), kept on the refreshed artifact.
    """

    pi: TabularPolicy
    alpha: float
    method: str
    hf_settings: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_artifact(cls, artifact: str | PathLike[str], *, pi: str | PathLike[str] | None = None,
                      hf: str | PathLike[str] | None = None) -> BlendRecipe:
        """The recipe of a blended artifact: pi and HF's settings from the artifact when it carries
        them, else from ``pi`` (an artifact) and ``hf`` (the HF artifact, for its settings).

        Raises
        ------
        ArtifactError
            The artifact records no alpha, or pi or HF's settings are neither carried nor given
            (the message says which option to pass), or the shapes differ.
        """
        policy = TabularPolicy.load(artifact)
        metadata = dict(policy.metadata)
        recipe = metadata.pop(RECIPE_KEY, None) or {}
        alpha = metadata.get("alpha", recipe.get("alpha"))
        if alpha is None or not isinstance(alpha, int | float) or not 0.0 <= float(alpha) <= 1.0:
            raise ArtifactError(f"{artifact}: no scalar alpha in [0, 1] in its metadata; refresh rebuilds "
                                "the blended artifacts hfrl tune writes")
        method = str(metadata.get("blend_method", metadata.get("method", recipe.get("method", "linear"))))
        if pi is not None:
            learned = TabularPolicy.load(pi)
        elif recipe.get("pi_sha256"):
            learned = _embedded_pi(artifact, recipe["pi_sha256"])
        else:
            raise ArtifactError(f"{artifact} does not carry pi; give the learned policy once with --pi PATH "
                                "(the refreshed artifact then carries it)")
        if hf is not None:
            hf_settings = {k: v for k, v in TabularPolicy.load(hf).metadata.items() if k in HF_PARAMETERS}
        elif "hf" in recipe:
            hf_settings = dict(recipe["hf"])
        else:
            raise ArtifactError(f"{artifact} does not carry HF's settings; give the HF artifact once with "
                                "--hf PATH (hfrl frequencies wrote it; the refreshed artifact then carries "
                                "them)")
        if learned.table_.shape != policy.table_.shape:
            raise ArtifactError(
                f"pi has shape {learned.table_.shape} but {artifact} has {policy.table_.shape}")
        return cls(learned, float(alpha), method, hf_settings, metadata)


def _embedded_pi(artifact: str | PathLike[str], checksum: str) -> TabularPolicy:
    return _embedded_table(artifact, PI_MEMBER, checksum, "pi", "--pi")


def _embedded_table(artifact: str | PathLike[str], member: str, checksum: str, name: str,
                    option: str) -> TabularPolicy:
    try:
        with zipfile.ZipFile(artifact) as archive:
            table_bytes = archive.read(member)
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{artifact}: its metadata names an embedded {name} but {member} is unreadable "
                            f"({exc}); give {option} PATH") from exc
    if hashlib.sha256(table_bytes).hexdigest() != checksum:
        raise ArtifactError(f"{artifact}: checksum mismatch, the embedded {name} is corrupt; "
                            f"give {option} PATH")
    return TabularPolicy(np.load(io.BytesIO(table_bytes), allow_pickle=False))


def embedded_parents(artifact: str | PathLike[str]) -> tuple[TabularPolicy | None, TabularPolicy | None]:
    """The pi and HF a blended artifact carries (``hfrl tune``'s, or a refreshed one); None for
    each it does not carry.

    Raises
    ------
    ArtifactError
        A carried table is unreadable or its checksum does not match.
    """
    recipe = TabularPolicy.load(artifact).metadata.get(RECIPE_KEY) or {}
    pi = _embedded_pi(artifact, recipe["pi_sha256"]) if recipe.get("pi_sha256") else None
    hf = (_embedded_table(artifact, HF_MEMBER, recipe["hf_sha256"], "HF", "--hf")
          if recipe.get("hf_sha256") else None)
    return pi, hf


def _npy_bytes(table: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(table, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


def save_refreshable(policy: TabularPolicy, recipe: BlendRecipe, path: str | PathLike[str],
                     hf: np.ndarray | None = None) -> Path:
    """Save ``policy`` with what refreshes it again: pi's table (zip member) and the recipe (metadata).

    With ``hf`` (the HF table blended in), the artifact also carries it, so that ``hfrl evaluate
    --verdict`` can compare the blend with each of its parents. The artifact stays an ordinary one
    (``TabularPolicy.load`` and ``hfrl serve`` read it; its version is its own table's checksum).
    """
    pi_bytes = _npy_bytes(recipe.pi.table_)
    hf_bytes = None if hf is None else _npy_bytes(hf)
    carried = {"pi_sha256": hashlib.sha256(pi_bytes).hexdigest()}
    if hf_bytes is not None:
        carried["hf_sha256"] = hashlib.sha256(hf_bytes).hexdigest()
    metadata = {
        **recipe.metadata,
        "alpha": recipe.alpha,
        "blend_method": recipe.method,
        RECIPE_KEY: {**carried, "hf": recipe.hf_settings, "alpha": recipe.alpha, "method": recipe.method,
                     "refreshed_at": time.time()},
    }
    path = Path(path)
    partial = path.with_name(path.name + ".refresh")
    TabularPolicy(policy.table_, metadata).save(partial)
    with zipfile.ZipFile(partial, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(PI_MEMBER, pi_bytes)
        if hf_bytes is not None:
            archive.writestr(HF_MEMBER, hf_bytes)
    partial.replace(path)
    return path


# ---------------------------------------------------------------------- the logs
def _read_source(source: str | PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """State, action, reward (0 for decisions without feedback), timestamp and propensity when present."""
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        text = str(source)
        from hfrl.service.log import is_database_url, read_decision_log

        if is_database_url(text) or Path(text).suffix.lower() in DECISION_LOG_SUFFIXES:
            frame = read_decision_log(text, missing_reward=0.0)
        else:
            from hfrl.backends.files import read_frame

            frame = read_frame(text)
    name = "a DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    for column in (schema.STATE, schema.ACTION, schema.REWARD):
        if column not in frame.columns:
            raise LogValidationError(f"{name} has no {column!r} column, which HF needs", column=column,
                                     source=name)
    wanted = [c for c in (schema.STATE, schema.ACTION, schema.REWARD, schema.TIMESTAMP, schema.PROPENSITY)
              if c in frame.columns]
    frame = frame[wanted].copy()
    if schema.TIMESTAMP in frame.columns and not pd.api.types.is_numeric_dtype(frame[schema.TIMESTAMP]):
        moments = pd.to_datetime(frame[schema.TIMESTAMP], utc=True, errors="coerce")
        frame[schema.TIMESTAMP] = (moments - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame


def gather_logs(sources: Sequence[str | PathLike[str] | pd.DataFrame], *,
                need_time: bool = False) -> pd.DataFrame:
    """One frame of ``state``, ``action``, ``reward`` (and ``timestamp`` in seconds, ``propensity``
    where every source has them) from decision logs (SQLite files, PostgreSQL URLs) and log files.

    Raises
    ------
    LogValidationError
        No source, or ``need_time`` (HF decays with a half-life) and a source without ``timestamp``.
    """
    if not sources:
        raise LogValidationError("refresh needs at least one log (the decision log or a log file)")
    frames = []
    for source in sources:
        frame = _read_source(source)
        if need_time and schema.TIMESTAMP not in frame.columns:
            name = "a DataFrame" if isinstance(source, pd.DataFrame) else str(source)
            raise LogValidationError(f"{name} has no timestamp column, which HF's half-life needs",
                                     column=schema.TIMESTAMP, source=name)
        frames.append(frame)
    shared = [c for c in frames[0].columns if all(c in f.columns for f in frames)]
    return pd.concat([f[shared] for f in frames], ignore_index=True)


# ---------------------------------------------------------------------- rebuilding
@dataclass(frozen=True)
class RefreshSettings:
    """How a service refreshes its champion (``hfrl serve --refresh-every ...``).

    Attributes
    ----------
    logs : tuple of str
        Logs read besides the service's own decision log.
    every : float, optional
        Seconds between periodic refreshes (None: only on ``POST /v1/admin/refresh``).
    out : str, optional
        Where the refreshed artifact is written (default ``<artifact>.refreshed.zip`` beside it).
    pi, hf, half_life, retune
        As in ``refresh_artifact``.
    """

    logs: tuple[str, ...] = ()
    every: float | None = None
    out: str | None = None
    pi: str | None = None
    hf: str | None = None
    half_life: Any = None
    retune: bool = False

    def __post_init__(self) -> None:
        if self.every is not None and not (math.isfinite(self.every) and self.every > 0):
            raise ValueError(f"the refresh period must be a positive number of seconds, got {self.every!r}")

    def out_for(self, artifact: str) -> Path:
        """Where the refresh of ``artifact`` is written."""
        if self.out is not None:
            return Path(self.out)
        path = Path(artifact)
        stem = path.name[: -len(".refreshed.zip")] if path.name.endswith(".refreshed.zip") else path.stem
        return path.with_name(f"{stem}.refreshed.zip")


@dataclass
class RefreshResult:
    """A refreshed artifact and how it was made."""

    path: Path
    policy: TabularPolicy
    alpha: float
    previous_alpha: float
    retuned: bool
    rows: int
    seconds: float
    note: str = ""


def _fit_hf(settings: dict[str, Any], frame: pd.DataFrame, shape: tuple[int, int]) -> Any:
    from hfrl.frequencies import HistoricalFrequency

    return HistoricalFrequency(**settings).fit(frame, n_states=shape[0], n_actions=shape[1])


def _retuned_alpha(recipe: BlendRecipe, settings: dict[str, Any], frame: pd.DataFrame,
                   level: float) -> tuple[float, str]:
    """alpha chosen by the lower confidence bound on the newest 30% of the rows with propensities
    (HF fitted on the others), or the kept alpha with the reason when those rows are too few."""
    from hfrl.tune import tune_alpha

    if schema.PROPENSITY not in frame.columns:
        return recipe.alpha, "alpha kept: the logs have no propensity column to re-tune on"
    order = np.argsort(frame[schema.TIMESTAMP].to_numpy(), kind="stable") if schema.TIMESTAMP in frame \
        else np.arange(len(frame))
    cut = int(math.floor(0.7 * len(order)))
    validation = frame.iloc[order[cut:]].reset_index(drop=True)
    if len(validation) < MIN_RETUNE_ROWS:
        return recipe.alpha, (f"alpha kept: {len(validation)} validation rows "
                              f"(re-tuning needs {MIN_RETUNE_ROWS})")
    hf = _fit_hf(settings, frame.iloc[order[:cut]].reset_index(drop=True), recipe.pi.table_.shape)
    result = tune_alpha(recipe.pi, hf, validation.drop(columns=[schema.TIMESTAMP], errors="ignore"),
                        estimator="snips", criterion="lower_bound", level=level, method=recipe.method)
    return float(result.alpha), f"alpha re-tuned by the {level:.0%} lower bound on {len(validation):,} rows"


def _keep_floor(policy: TabularPolicy, recipe: BlendRecipe) -> TabularPolicy:
    """The rebuilt blend with the exploration floor the artifact was served with (its metadata's
    ``min_propensity``), recording the uniform share now mixed in."""
    floor = float(recipe.metadata.get("min_propensity", 0.0))
    if floor <= 0.0:
        return policy
    floored = TabularPolicy(policy.table_).with_exploration(min(floor, 1.0 / policy.n_actions))
    recipe.metadata["exploration_epsilon"] = floored.metadata["exploration_epsilon"]
    return floored


def refresh_artifact(
    artifact: str | PathLike[str],
    logs: Sequence[str | PathLike[str] | pd.DataFrame],
    out: str | PathLike[str],
    *,
    pi: str | PathLike[str] | None = None,
    hf: str | PathLike[str] | None = None,
    half_life: Any = None,
    retune: bool = False,
    level: float = 0.95,
) -> RefreshResult:
    """Recompute HF from ``logs``, rebuild the blended policy and save it (refreshable) at ``out``.

    Parameters
    ----------
    artifact : path
        A blended artifact (``hfrl tune``'s, or a refreshed one).
    logs : sequence of paths, URLs or DataFrames
        Decision logs (``.sqlite`` files, ``postgresql://`` URLs; decisions without feedback count
        as reward 0) and log files (CSV/Parquet) over the same state and action ids.
    out : path
        Where the refreshed artifact is written (atomically).
    pi, hf : path, optional
        The learned policy and the HF artifact, when ``artifact`` does not carry them yet.
    half_life : str or float, optional
        Overrides HF's half-life (``"7D"``, seconds).
    retune : bool
        Re-tune alpha (lower-bound criterion, SNIPS) on the newest rows instead of keeping it.
    level : float
        The confidence level of that lower bound.

    Returns
    -------
    RefreshResult

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from hfrl.blending import blend
    >>> folder = Path(tempfile.mkdtemp())
    >>> pi = TabularPolicy(np.array([[0.9, 0.1], [0.5, 0.5]]))
    >>> hf = TabularPolicy(np.array([[0.5, 0.5], [0.5, 0.5]]), {"kind": "share", "prior_strength": 0.0})
    >>> _ = pi.save(folder / "pi.zip"), hf.save(folder / "hf.zip")
    >>> _ = blend(pi, hf, 0.5).save(folder / "blend.zip")
    >>> logs = pd.DataFrame({"state": [0, 0, 1], "action": [1, 1, 0], "reward": [1.0, 1.0, 1.0]})
    >>> result = refresh_artifact(folder / "blend.zip", [logs], folder / "new.zip",
    ...                           pi=folder / "pi.zip", hf=folder / "hf.zip")
    >>> result.policy.table_.tolist()
    [[0.45, 0.55], [0.75, 0.25]]
    >>> refresh_artifact(folder / "new.zip", [logs], folder / "again.zip").policy.table_.tolist()
    [[0.45, 0.55], [0.75, 0.25]]
    """
    start = time.perf_counter()
    recipe = BlendRecipe.from_artifact(artifact, pi=pi, hf=hf)
    settings = dict(recipe.hf_settings)
    if half_life is not None:
        settings["half_life"] = half_life
    frame = gather_logs(logs, need_time=settings.get("half_life") is not None)
    previous = recipe.alpha
    note = "alpha kept"
    if retune:
        recipe.alpha, note = _retuned_alpha(recipe, settings, frame, level)
    counted = frame.drop(columns=[schema.PROPENSITY], errors="ignore")
    fitted = _fit_hf(settings, counted, recipe.pi.table_.shape)
    from hfrl.blending import blend

    recipe.hf_settings = settings
    policy = _keep_floor(blend(recipe.pi, fitted.probabilities_, recipe.alpha, recipe.method), recipe)
    path = save_refreshable(policy, recipe, out, hf=fitted.probabilities_)
    return RefreshResult(path, TabularPolicy.load(path), recipe.alpha, previous, retune, len(frame),
                         time.perf_counter() - start, note)
