"""The model a service decides with: a loaded artifact, its version, its encoders, vectorised decisions.

A ``ServedModel`` is immutable once built; hot reload builds a new one and swaps one reference, so a
request that picked up the old model finishes on it.

Propensities recorded (the contract the decision log keeps)
-----------------------------------------------------------
``explore`` with ``k = 1``
    one action drawn from pi(.|s); its propensity is pi(a|s).
``explore`` with ``k > 1``
    ``k`` distinct actions drawn sequentially without replacement (each pick from pi(.|s)
    renormalised over the actions not yet picked; done in one vectorised step with the Gumbel-top-k
    trick, which has exactly that distribution). The propensity at slot ``j`` is the probability of
    that item at that slot given the earlier picks, pi(a_j|s) / (1 - sum_{i<j} pi(a_i|s)); slot 0's
    propensity is therefore pi(a_0|s). ``policy_probabilities`` carries the marginal first-pick
    probability pi(a_j|s) of every slot. The product of the slot propensities up to slot ``j`` is
    the probability of the list's first ``j + 1`` items (the cascade propensity of the ranking log
    schema), and over all slots the probability of the whole list (its slate propensity).
``exploit``
    the ``k`` most probable actions (ties to the lower id), a deterministic rule, so every slot's
    propensity is 1.0; ``policy_probabilities`` again carries pi(a_j|s).

A contextual artifact (``hfrl.contextual.LinearPolicy`` / ``NeuralPolicy``) is served by
``ServedContextualModel`` with the same rules, ``s`` being the request's feature vector x:
pi(.|x) is computed for the batch of requests at hand. ``load_served_model`` reads either kind.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.contextual import ContextualPolicy, load_policy
from hfrl.data import CategoryEncoder
from hfrl.errors import ArtifactError
from hfrl.policies import TabularPolicy

__all__ = ["Decisions", "ServedContextualModel", "ServedModel", "artifact_version", "load_served_model"]

EXPLORE = "explore"
EXPLOIT = "exploit"
_CONTEXT_CACHE_SIZE = 100_000
_SORT_BATCHES_FROM = 256


def artifact_version(path: str | PathLike[str]) -> str:
    """The model version of an artifact: the first 16 hex digits of its table's SHA-256.

    The checksum written by ``TabularPolicy.save`` is the one source of truth; it is read from the
    zip's ``metadata.json`` without loading the table.
    A contextual artifact checksums each array in its ``metadata.json``, so its version is the
    SHA-256 of that header (weights and settings).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> path = TabularPolicy(np.array([[0.5, 0.5]])).save(tempfile.mkdtemp() + "/p.zip")
    >>> len(artifact_version(path))
    16
    """
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("metadata.json")
        header = json.loads(raw)
        if isinstance(header, dict) and "sha256" not in header and "arrays" in header:
            return hashlib.sha256(raw).hexdigest()[:16]
        return str(header["sha256"])[:16]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: cannot read the artifact checksum ({exc})") from exc


class Decisions:
    """The result of one vectorised decide: arrays of shape ``(n, k)``.

    Attributes
    ----------
    states : ndarray of int64, shape (n,)
    actions : ndarray of int64, shape (n, k)
    propensities : ndarray of float64, shape (n, k)
        What the log records (see the module docstring for the exact rule per mode).
    policy_probabilities : ndarray of float64, shape (n, k)
        pi(a|s) of each chosen action.
    """

    __slots__ = ("actions", "policy_probabilities", "propensities", "states")

    def __init__(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        propensities: np.ndarray,
        policy_probabilities: np.ndarray,
    ) -> None:
        self.states = states
        self.actions = actions
        self.propensities = propensities
        self.policy_probabilities = policy_probabilities


class ServedModel:
    """A policy ready to serve: table, version, encoders and precomputed sampling tables.

    Parameters
    ----------
    policy : TabularPolicy
    version : str
        The model version reported with every decision (see ``artifact_version``).
    path : path, optional
        Where the artifact was loaded from (reported by ``GET /v1/model``).

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> model = ServedModel(TabularPolicy(np.array([[0.2, 0.8], [1.0, 0.0]])), version="v1")
    >>> out = model.decide(np.array([0, 1]), k=1, mode="explore", rng=np.random.default_rng(0))
    >>> out.actions[:, 0].tolist(), float(out.propensities[1, 0])
    ([1, 0], 1.0)
    >>> model.decide(np.array([0]), k=2, mode="exploit", rng=None).actions.tolist()
    [[1, 0]]
    """

    def __init__(self, policy: TabularPolicy, version: str, path: str | None = None) -> None:
        self.policy = policy
        self.version = version
        self.path = path
        self.name = str(policy.metadata.get("name", Path(path).stem if path else "policy"))
        meta = policy.metadata
        self.state_encoder = (
            CategoryEncoder.from_dict(meta["state_encoder"]) if meta.get("state_encoder") else None
        )
        self.action_encoder = (
            CategoryEncoder.from_dict(meta["action_encoder"]) if meta.get("action_encoder") else None
        )
        if self.state_encoder is not None and self.state_encoder.n_ids > policy.n_states:
            raise ArtifactError(
                f"state_encoder emits {self.state_encoder.n_ids} ids but the policy has "
                f"{policy.n_states} states"
            )
        self._item_labels = (
            np.asarray([str(c) for c in self.action_encoder.categories_], dtype=object)
            if self.action_encoder is not None
            else None
        )
        self._log_table: np.ndarray | None = None  # log pi, built on the first k > 1 explore
        self._positive = (policy.sparse_.support_sizes() if policy.sparse_ is not None
                          else (policy.table_ > 0).sum(axis=1))
        self._context_cache: dict[tuple[tuple[str, Any], ...], int] = {}
        policy._sampling_tables()  # precompute the flat CDF before the first request

    @classmethod
    def load(cls, path: str | PathLike[str]) -> ServedModel:
        """Load an artifact written by ``TabularPolicy.save``; raise ``ArtifactError`` when unsound."""
        policy = TabularPolicy.load(path)
        return cls(policy, artifact_version(path), str(path))

    # ------------------------------------------------------------------ shape
    @property
    def n_states(self) -> int:
        return self.policy.n_states

    @property
    def n_actions(self) -> int:
        return self.policy.n_actions

    @property
    def context_columns(self) -> list[str] | None:
        return list(self.state_encoder.columns) if self.state_encoder is not None else None

    # ------------------------------------------------------------------ contexts
    def encode_contexts(self, contexts: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """State ids for raw contexts via the artifact's ``state_encoder``.

        Unseen values go to the encoder's unknown bucket. Raises ``KeyError`` naming the first
        missing context field and ``LookupError`` when the model has no encoder.
        """
        encoder = self.state_encoder
        if encoder is None:
            raise LookupError("this model has no state_encoder; send 'state' (an integer id) instead")
        columns = encoder.columns
        keys = []
        for context in contexts:
            missing = [c for c in columns if c not in context]
            if missing:
                raise KeyError(missing[0])
            # the type is part of the key: 1, True and "1" may encode differently
            keys.append(tuple((type(context[c]).__name__, context[c]) for c in columns))
        ids = np.empty(len(keys), dtype=np.int64)
        unseen = [i for i, key in enumerate(keys) if key not in self._context_cache]
        if unseen:
            frame = pd.DataFrame(
                {c: pd.Series([contexts[i][c] for i in unseen], dtype=object) for c in columns}
            )
            encoded = encoder.transform(frame)  # the encoder is the one source of truth
            if len(self._context_cache) > _CONTEXT_CACHE_SIZE:
                self._context_cache.clear()
            for i, state in zip(unseen, encoded.tolist(), strict=True):
                self._context_cache[keys[i]] = state
        for i, key in enumerate(keys):
            ids[i] = self._context_cache[key]
        return ids

    def item_labels(self, actions: np.ndarray) -> list[list[str]] | None:
        """Raw item ids for action ids when the artifact has an ``action_encoder``, else None."""
        if self._item_labels is None:
            return None
        labels = np.append(self._item_labels, "<unknown>")
        return labels[np.clip(actions, 0, len(labels) - 1)].tolist()

    # ------------------------------------------------------------------ decisions
    def check_k(self, states: np.ndarray, k: int, mode: str) -> None:
        """Raise ``ValueError`` when ``k`` distinct actions cannot be chosen in some state."""
        if not 1 <= k <= self.n_actions:
            raise ValueError(f"k must be between 1 and {self.n_actions} (the number of actions), got {k}")
        if mode == EXPLORE and k > 1:
            short = self._positive[states] < k
            if short.any():
                state = int(states[np.flatnonzero(short)[0]])
                raise ValueError(
                    f"k={k} exceeds the {int(self._positive[state])} actions with positive probability "
                    f"in state {state}; explore cannot sample k distinct actions there"
                )

    def decide(
        self, states: np.ndarray, k: int, mode: str, rng: np.random.Generator | None
    ) -> Decisions:
        """Choose ``k`` actions for each state in one vectorised step.

        ``states`` must be valid int64 ids (checked at the edge); ``mode`` is ``"explore"`` or
        ``"exploit"``; ``rng`` is used only when exploring.
        """
        states = np.asarray(states, dtype=np.int64)
        self.check_k(states, k, mode)
        if mode == EXPLOIT:
            actions, probs = self.policy.top_k(states, k)
            return Decisions(states, actions, np.ones_like(probs), probs)
        if mode != EXPLORE:
            raise ValueError(f"mode must be 'explore' or 'exploit', got {mode!r}")
        if rng is None:
            rng = np.random.default_rng()
        if k == 1:
            if states.shape[0] >= _SORT_BATCHES_FROM:
                # sorted states make the flat-CDF binary searches monotone and cache friendly (~3x)
                order = np.argsort(states, kind="stable")
                sorted_actions, sorted_probs = self.policy.sample(states[order], random_state=rng)
                actions = np.empty_like(sorted_actions)
                probs = np.empty_like(sorted_probs)
                actions[order] = sorted_actions
                probs[order] = sorted_probs
            else:
                actions, probs = self.policy.sample(states, random_state=rng)
            actions = actions[:, None]
            probs = probs[:, None]
            return Decisions(states, actions, probs.copy(), probs)
        if self.policy.is_sparse:
            actions = self._sample_distinct(states, k, rng)
            probs = self._probabilities(states, actions)
            return Decisions(states, actions, _sequential(probs), probs)
        # Gumbel-top-k: argmax-k of log pi + Gumbel noise is sequential sampling without replacement
        table = self.policy.table_
        if self._log_table is None:
            with np.errstate(divide="ignore"):
                self._log_table = np.log(table)  # -inf where pi = 0: never picked
        keys = self._log_table[states] + rng.gumbel(size=(states.shape[0], self.n_actions))
        part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1)
        actions = np.take_along_axis(part, order, axis=1).astype(np.int64)
        probs = table[states[:, None], actions]
        return Decisions(states, actions, _sequential(probs), probs)

    def rule_probabilities(self, states: np.ndarray, actions: np.ndarray, mode: str) -> np.ndarray:
        """The probability of each slot of ``actions`` (n, k) given the earlier slots, under this
        model's rule in ``mode``: what ``decide`` logs as the propensity when this model decided.

        For a slate another model chose it is 0 from the first slot this model's rule could not
        have produced (exploit: the first slot that leaves this model's top k).

        Examples
        --------
        >>> import numpy as np
        >>> from hfrl.policies import TabularPolicy
        >>> model = ServedModel(TabularPolicy(np.array([[0.5, 0.25, 0.25]])), version="v1")
        >>> model.rule_probabilities(np.array([0]), np.array([[1, 0]]), "explore").tolist()
        [[0.25, 0.6666666666666666]]
        >>> model.rule_probabilities(np.array([0]), np.array([[0, 2]]), "exploit").tolist()
        [[1.0, 0.0]]
        """
        states = np.asarray(states, dtype=np.int64)
        actions = np.asarray(actions, dtype=np.int64)
        if mode == EXPLOIT:
            top, _ = self.policy.top_k(states, actions.shape[1])
            return np.cumprod(top == actions, axis=1).astype(np.float64)
        return _sequential(self._probabilities(states, actions))

    def _probabilities(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """pi(actions[i, j] | states[i]), shape of ``actions``."""
        flat = self.policy.action_probabilities(np.repeat(states, actions.shape[1]), actions.ravel())
        return flat.reshape(actions.shape)

    def _sample_distinct(self, states: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct actions per state drawn in sequence without replacement, without a dense
        row: the first ``k`` distinct actions of a stream of draws from pi (the same law as drawing
        each slot from pi renormalised over the actions left). Draws come ``2k`` per state at a
        time; a state still short after ``_MAX_REDRAWS`` rounds is finished from its dense row."""
        n = states.shape[0]
        actions = np.full((n, k), -1, dtype=np.int64)
        filled = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        for _ in range(_MAX_REDRAWS):
            drawn, _ = self.policy.sample(np.repeat(states[todo], 2 * k), random_state=rng)
            for i, stream in zip(todo.tolist(), drawn.reshape(todo.size, 2 * k).tolist(), strict=True):
                chosen = actions[i, :filled[i]].tolist()
                for action in dict.fromkeys(stream):
                    if filled[i] == k:
                        break
                    if action not in chosen:
                        actions[i, filled[i]] = action
                        filled[i] += 1
            todo = np.flatnonzero(filled < k)
            if not todo.size:
                return actions
        for i in todo:
            row = self.policy.probabilities(states[i:i + 1])[0]
            row[actions[i, :filled[i]]] = 0.0
            for j in range(filled[i], k):
                actions[i, j] = rng.choice(row.size, p=row / row.sum())
                row[actions[i, j]] = 0.0
        return actions

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports."""
        return {
            "name": self.name,
            "model_version": self.version,
            "n_states": self.n_states,
            "n_actions": self.n_actions,
            "context_columns": self.context_columns,
            "unknown_state": (
                self.state_encoder.unknown_id if self.state_encoder is not None else None
            ),
            "has_item_ids": self.action_encoder is not None,
            "artifact": self.path,
        }


_MAX_REDRAWS = 64


def _sequential(probs: np.ndarray) -> np.ndarray:
    """Slot probabilities of sampling without replacement: pi(a_j|s) / (1 - sum_{i<j} pi(a_i|s))."""
    taken_before = np.cumsum(probs, axis=1) - probs
    remaining = np.clip(1.0 - taken_before, np.finfo(np.float64).tiny, None)
    return np.minimum(probs / remaining, 1.0)


class ServedContextualModel:
    """A contextual policy ready to serve: decisions for batches of feature vectors.

    Same rules and propensities as ``ServedModel`` (see the module docstring), with pi(.|x)
    computed from each request's features; there are no states (``n_states`` is None) and no
    encoders.

    Parameters
    ----------
    policy : hfrl.contextual.ContextualPolicy
        Its ``context_columns`` name the features a request sends (by name or in order).
    version : str
    path : path, optional

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.contextual import LinearPolicy
    >>> policy = LinearPolicy(np.eye(2), context_columns=["age", "spend"], kind="greedy", epsilon=0.2)
    >>> model = ServedContextualModel(policy, version="v1")
    >>> x = model.features([{"age": 2.0, "spend": 1.0}, [0.0, 3.0]])
    >>> model.decide(x, k=1, mode="exploit", rng=None).actions.tolist()
    [[0], [1]]
    """

    n_states = None
    state_encoder = None

    def __init__(self, policy: ContextualPolicy, version: str, path: str | None = None) -> None:
        if policy.context_columns is None:
            raise ArtifactError("a served contextual policy needs context_columns (the request's feature "
                                "names)")
        self.policy, self.version, self.path = policy, version, path
        self.name = str(policy.metadata.get("name", Path(path).stem if path else "policy"))

    @property
    def n_actions(self) -> int:
        return self.policy.n_actions

    @property
    def context_columns(self) -> list[str]:
        return list(self.policy.context_columns or [])

    def features(self, rows: Sequence[Mapping[str, Any] | Sequence[float]]) -> np.ndarray:
        """An ``(n, n_features)`` array from feature objects (by name) or lists (in column order).

        Raises ``KeyError`` (the row and the first missing or unknown name) or ``ValueError`` (the
        row and what is wrong with its length or values).
        """
        columns = self.context_columns
        out = np.empty((len(rows), len(columns)))
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                missing = [c for c in columns if c not in row]
                unknown = [c for c in row if c not in columns]
                if missing or unknown:
                    name = (missing or unknown)[0]
                    raise KeyError(i, name, "missing" if missing else "unknown")
                values = [row[c] for c in columns]
            else:
                values = list(row)
                if len(values) != len(columns):
                    shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
                    raise ValueError(i, f"{len(values)} values given, the model reads {len(columns)} "
                                        f"features ({shown})")
            out[i] = values
        return out

    def item_labels(self, actions: np.ndarray) -> None:
        """No item ids: a contextual artifact has no action encoder."""
        return None

    def decide(self, features: np.ndarray, k: int, mode: str, rng: np.random.Generator | None) -> Decisions:
        """Choose ``k`` actions for each feature row in one vectorised step (rules as ``ServedModel``)."""
        if not 1 <= k <= self.n_actions:
            raise ValueError(f"k must be between 1 and {self.n_actions} (the number of actions), got {k}")
        if mode == EXPLOIT:
            actions, probs = self.policy.top_k(features, k)
            return Decisions(None, actions, np.ones_like(probs), probs)
        if mode != EXPLORE:
            raise ValueError(f"mode must be 'explore' or 'exploit', got {mode!r}")
        if rng is None:
            rng = np.random.default_rng()
        if k == 1:
            actions, probs = self.policy.sample(features, random_state=rng)
            return Decisions(None, actions[:, None], probs[:, None].copy(), probs[:, None])
        p = self.policy.probabilities(features)
        positive = (p > 0).sum(axis=1)
        if (positive < k).any():
            row = int(np.flatnonzero(positive < k)[0])
            raise ValueError(f"k={k} exceeds the {int(positive[row])} actions with positive probability "
                             f"for request {row}; explore cannot sample k distinct actions there")
        # Gumbel-top-k: argmax-k of log pi + Gumbel noise is sequential sampling without replacement
        with np.errstate(divide="ignore"):
            keys = np.log(p) + rng.gumbel(size=p.shape)
        part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1)
        actions = np.take_along_axis(part, order, axis=1).astype(np.int64)
        probs = np.take_along_axis(p, actions, axis=1)
        return Decisions(None, actions, _sequential(probs), probs)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports."""
        return {"name": self.name, "model_version": self.version, "n_states": None,
                "n_actions": self.n_actions, "context_columns": self.context_columns,
                "unknown_state": None, "has_item_ids": False, "artifact": self.path}


def load_served_model(path: str | PathLike[str]) -> ServedModel | ServedContextualModel:
    """Load any policy artifact (tabular or contextual) as a served model; ``ArtifactError`` if unsound."""
    policy = load_policy(path)
    if isinstance(policy, TabularPolicy):
        return ServedModel(policy, artifact_version(path), str(path))
    return ServedContextualModel(policy, artifact_version(path), str(path))
