"""Contextual policies: action probabilities from a user's features, for users never seen before.

A contextual policy satisfies :class:`hfrl.policies.Policy` with contexts that are rows of
features: a DataFrame holding the policy's ``context_columns``, a mapping ``{column: value(s)}``
or an array whose columns are in that order. Each policy turns a context into one score per action
and the scores into probabilities (``kind="softmax"`` with a ``temperature``, or ``"greedy"``, ties
sharing the mass), then mixes in a uniform share ``epsilon``:

    pi(a | x) = (1 - epsilon) * base(a | scores(x)) + epsilon / n_actions

``LinearPolicy`` scores ``x @ weights.T + bias``; ``NeuralPolicy`` scores through a small
multi-layer perceptron evaluated in numpy (torch trains it, serving needs only numpy).
Large batches are processed in chunks, so no more than a few million scores exist at once.

Artifacts hold the weights as ``.npy`` arrays (no pickle) and a JSON header with each array's
SHA-256 checksum, like ``TabularPolicy.save``; ``load_policy`` reads either kind of artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from hfrl.errors import ArtifactError
from hfrl.policies import TabularPolicy, resolve_rng

__all__ = ["ContextualPolicy", "LinearPolicy", "NeuralPolicy", "load_policy"]

ARTIFACT_FORMAT = "hfrl.contextual_policy"
ARTIFACT_VERSION = 1
KINDS = ("softmax", "greedy")
ACTIVATIONS = ("relu", "tanh")
# Rows per chunk are chosen so that one chunk holds about this many (row, action) scores.
_CHUNK_CELLS = 2_000_000


class ContextualPolicy:
    """Base of the contextual policies: contexts -> scores -> probabilities, sampling, artifacts.

    Subclasses provide ``_scores(features)`` (an ``(n, n_actions)`` array for an ``(n,
    n_features)`` float array), ``_arrays()`` and ``_parameters()`` (what ``save`` writes) and
    ``_from_artifact``. Contexts are checked once, here (``features``).

    Parameters
    ----------
    n_actions, n_features : int
    context_columns : sequence of str, optional
        Names of the features in order; needed to read contexts from a DataFrame or a mapping.
    kind : {"softmax", "greedy"}, default "softmax"
    temperature : float > 0, default 1.0
        Softmax temperature, in score units.
    epsilon : float in [0, 1], default 0.0
        Uniform share mixed into every distribution (a floor of ``epsilon / n_actions``).
    metadata : mapping, optional
        JSON-serialisable facts saved with the artifact.
    """

    artifact_kind = ""

    def __init__(self, n_actions: int, n_features: int, *, context_columns: Sequence[str] | None = None,
                 kind: str = "softmax", temperature: float = 1.0, epsilon: float = 0.0,
                 metadata: Mapping[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        temperature, epsilon = float(temperature), float(epsilon)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        columns = None if context_columns is None else [str(c) for c in context_columns]
        if columns is not None:
            if len(columns) != n_features:
                raise ValueError(f"context_columns names {len(columns)} columns, the policy has "
                                 f"{n_features} features")
            if len(set(columns)) != len(columns):
                raise ValueError(f"context_columns must be distinct, got {columns}")
        self._n_actions, self._n_features = int(n_actions), int(n_features)
        self.context_columns = columns
        self.kind, self.temperature, self.epsilon = kind, temperature, epsilon
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------------ shape
    @property
    def n_actions(self) -> int:
        return self._n_actions

    @property
    def n_features(self) -> int:
        return self._n_features

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_features={self.n_features}, n_actions={self.n_actions}, "
                f"kind={self.kind!r}, epsilon={self.epsilon:g})")

    # ------------------------------------------------------------------ contexts
    def features(self, contexts: Any) -> np.ndarray:
        """``contexts`` as a finite float64 ``(n, n_features)`` array in ``context_columns`` order.

        Accepts a DataFrame holding the context columns (other columns are ignored), a mapping
        ``{column: value or values}``, a 2-D array in column order or one 1-D context.
        """
        if hasattr(contexts, "columns") or isinstance(contexts, Mapping):
            array = self._named_features(contexts)
        else:
            array = np.asarray(contexts, dtype=np.float64)
            if array.ndim == 1:
                array = array.reshape(1, -1)
            if array.ndim != 2 or array.shape[1] != self.n_features:
                raise ValueError(f"contexts must have {self.n_features} features per row "
                                 f"({self._column_list()}), got shape {np.shape(contexts)}")
        finite = np.isfinite(array)
        if not finite.all():
            row, column = (int(i) for i in np.argwhere(~finite)[0])
            name = self.context_columns[column] if self.context_columns else f"feature {column}"
            raise ValueError(f"context {name!r}: row {row} has {float(array[row, column])!r}, expected a "
                             f"finite number; {int((~finite).any(axis=1).sum())} rows have one")
        return array

    def _named_features(self, contexts: Any) -> np.ndarray:
        if self.context_columns is None:
            raise ValueError("this policy has no context_columns, so it cannot read contexts by name; "
                             f"pass an array of {self.n_features} features per row")
        present = set(map(str, contexts.keys() if isinstance(contexts, Mapping) else contexts.columns))
        missing = [c for c in self.context_columns if c not in present]
        if missing:
            raise ValueError(f"contexts lack the context columns {missing} (expected {self._column_list()})")
        if isinstance(contexts, Mapping):
            columns = [np.atleast_1d(np.asarray(contexts[c], dtype=np.float64)) for c in self.context_columns]
            if len({column.shape for column in columns}) != 1 or columns[0].ndim != 1:
                raise ValueError("every context column must hold one value or a 1-D list of equal length")
            return np.column_stack(columns)
        try:
            return contexts[self.context_columns].to_numpy(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"context columns {self.context_columns} must hold numbers: {exc}") from None

    def _column_list(self) -> str:
        if self.context_columns is None:
            return f"{self.n_features} unnamed features"
        shown = self.context_columns if self.n_features <= 6 else [*self.context_columns[:3], "...",
                                                                   *self.context_columns[-2:]]
        return ", ".join(shown)

    def _chunks(self, n: int) -> Iterator[slice]:
        step = max(1, _CHUNK_CELLS // self.n_actions)
        for start in range(0, n, step):
            yield slice(start, min(n, start + step))

    def _actions(self, actions: Any, n: int) -> np.ndarray:
        a = np.asarray(actions)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.shape != (n,):
            raise ValueError(f"contexts and actions differ in length: {n} vs {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            if a.dtype.kind != "f" or not np.all(np.mod(a, 1) == 0):
                raise ValueError(f"actions must be integer ids, got dtype {a.dtype}")
        a = a.astype(np.intp)
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            bad = int(np.flatnonzero((a < 0) | (a >= self.n_actions))[0])
            raise ValueError(f"action id {int(a[bad])} at position {bad} is outside [0, {self.n_actions})")
        return a

    # ------------------------------------------------------------------ scores -> probabilities
    def _scores(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def scores(self, contexts: Any) -> np.ndarray:
        """The per-action scores (before softmax/greedy), shape ``(n, n_actions)``."""
        return self._scores(self.features(contexts))

    def _probabilities(self, features: np.ndarray) -> np.ndarray:
        scores = self._scores(features)
        top = scores.max(axis=1, keepdims=True)
        if self.kind == "softmax":
            base = np.exp((scores - top) / self.temperature)
        else:
            base = np.isclose(scores, top, rtol=1e-12, atol=1e-12).astype(np.float64)
        base /= base.sum(axis=1, keepdims=True)
        if self.epsilon:
            base *= 1.0 - self.epsilon
            base += self.epsilon / self.n_actions
        return base

    def probabilities(self, contexts: Any) -> np.ndarray:
        """pi(. | x) for every context: shape ``(n, n_actions)``, rows are distributions."""
        x = self.features(contexts)
        if x.shape[0] * self.n_actions <= _CHUNK_CELLS:
            return self._probabilities(x)
        out = np.empty((x.shape[0], self.n_actions))
        for rows in self._chunks(x.shape[0]):
            out[rows] = self._probabilities(x[rows])
        return out

    def action_probabilities(self, contexts: Any, actions: Any) -> np.ndarray:
        """pi(actions[i] | contexts[i]), shape ``(n,)``; chunked, never a full ``(n, n_actions)`` array."""
        x = self.features(contexts)
        a = self._actions(actions, x.shape[0])
        out = np.empty(x.shape[0])
        for rows in self._chunks(x.shape[0]):
            out[rows] = np.take_along_axis(self._probabilities(x[rows]), a[rows, None], axis=1)[:, 0]
        return out

    def sample(self, contexts: Any, random_state: int | np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one action per context; return ``(actions, propensities)`` (propensities > 0)."""
        x = self.features(contexts)
        rng = resolve_rng(random_state)
        u = rng.random(x.shape[0])
        actions = np.empty(x.shape[0], dtype=np.int64)
        propensities = np.empty(x.shape[0])
        for rows in self._chunks(x.shape[0]):
            p = self._probabilities(x[rows])
            cdf = np.cumsum(p, axis=1)
            drawn = (cdf <= u[rows, None] * cdf[:, -1:]).sum(axis=1)
            # rounding can land past the last positive entry: step back to it
            last_positive = self.n_actions - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
            drawn = np.minimum(drawn, last_positive)
            actions[rows] = drawn
            propensities[rows] = p[np.arange(p.shape[0]), drawn]
        return actions, propensities

    def top_k(self, contexts: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable actions per context, ties broken by lower id; ``(n, k)`` each."""
        if not 1 <= k <= self.n_actions:
            raise ValueError(f"k must be in [1, {self.n_actions}], got {k}")
        x = self.features(contexts)
        actions = np.empty((x.shape[0], k), dtype=np.int64)
        probabilities = np.empty((x.shape[0], k))
        for rows in self._chunks(x.shape[0]):
            p = self._probabilities(x[rows])
            part = (np.argpartition(-p, k - 1, axis=1)[:, :k] if k < self.n_actions
                    else np.broadcast_to(np.arange(self.n_actions), p.shape).copy())
            picked = np.take_along_axis(p, part, axis=1)
            order = np.lexsort((part, -picked), axis=1)
            actions[rows] = np.take_along_axis(part, order, axis=1)
            probabilities[rows] = np.take_along_axis(picked, order, axis=1)
        return actions, probabilities

    # ------------------------------------------------------------------ variants
    def _with(self, **changes: Any) -> ContextualPolicy:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def greedy(self) -> ContextualPolicy:
        """The deterministic policy on the same scores (no uniform share)."""
        return self._with(kind="greedy", epsilon=0.0)

    def with_exploration(self, min_propensity: float) -> ContextualPolicy:
        """This policy with enough uniform share that every action has ``min_propensity``.

        Whatever the context, ``(1 - epsilon) * base + epsilon / n_actions >= epsilon /
        n_actions``, so the share becomes ``max(epsilon, min_propensity * n_actions)``; the
        metadata records ``min_propensity`` and the resulting ``exploration_epsilon``.
        """
        ceiling = 1.0 / self.n_actions
        floor = float(min_propensity)
        if not 0.0 <= floor <= ceiling:
            raise ValueError(f"min_propensity must be in [0, 1 / n_actions] = [0, {ceiling:.6g}], "
                             f"got {min_propensity!r}")
        epsilon = max(self.epsilon, min(1.0, floor * self.n_actions))
        return self._with(epsilon=epsilon, metadata={**self.metadata, "min_propensity": floor,
                                                     "exploration_epsilon": epsilon})

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def _parameters(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | PathLike[str]) -> Path:
        """Write a versioned artifact: the weights as ``.npy`` files and a JSON header in one zip.

        The header records the format, the policy's kind, the context columns, the settings and
        a SHA-256 checksum, shape and dtype per array, so ``load_policy`` refuses a corrupt or
        mismatched file. Nothing is pickled.
        """
        from hfrl import __version__

        arrays = {name: np.ascontiguousarray(value, dtype=np.float64)
                  for name, value in self._arrays().items()}
        blobs: dict[str, bytes] = {}
        listing: dict[str, dict[str, Any]] = {}
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            blobs[name] = buffer.getvalue()
            listing[name] = {"shape": list(value.shape), "dtype": "float64",
                             "sha256": hashlib.sha256(blobs[name]).hexdigest()}
        header = {
            "format": ARTIFACT_FORMAT, "format_version": ARTIFACT_VERSION, "hfrl_version": __version__,
            "policy": self.artifact_kind, "n_actions": self.n_actions, "n_features": self.n_features,
            "context_columns": self.context_columns, "kind": self.kind, "temperature": self.temperature,
            "epsilon": self.epsilon, "parameters": self._parameters(), "arrays": listing,
            "metadata": self.metadata,
        }
        try:
            header_bytes = json.dumps(header, sort_keys=True).encode()
        except TypeError as exc:
            raise ValueError(f"policy metadata is not JSON-serialisable: {exc}") from exc
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.json", header_bytes)
            for name, blob in blobs.items():
                archive.writestr(f"arrays/{name}.npy", blob)
        tmp.replace(path)
        return path

    @classmethod
    def _from_artifact(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]
                       ) -> ContextualPolicy:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | PathLike[str]) -> ContextualPolicy:
        """Read an artifact written by ``save`` (of this class); raise ``ArtifactError`` if unsound."""
        policy = load_policy(path)
        if not isinstance(policy, cls):
            raise ArtifactError(f"{path}: holds a {type(policy).__name__}, not a {cls.__name__}")
        return policy


def _common_options(header: dict[str, Any]) -> dict[str, Any]:
    return {"context_columns": header.get("context_columns"), "kind": header.get("kind", "softmax"),
            "temperature": header.get("temperature", 1.0), "epsilon": header.get("epsilon", 0.0),
            "metadata": header.get("metadata") or {}}


class LinearPolicy(ContextualPolicy):
    """Scores linear in the features: ``scores(x) = x @ weights.T + bias``.

    The policy of LinUCB, linear Thompson sampling and the direct method on features (greedy on
    the estimated reward), and a softmax policy in its own right (a logging policy, the start of a
    policy-gradient learner).

    Parameters
    ----------
    weights : array-like of shape (n_actions, n_features)
    bias : array-like of shape (n_actions,), optional
        Default zeros.
    context_columns, kind, temperature, epsilon, metadata
        As in ``ContextualPolicy``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> policy = LinearPolicy(np.array([[1.0, 0.0], [0.0, 1.0]]), context_columns=["age", "spend"],
    ...                       kind="greedy", epsilon=0.2)
    >>> policy.probabilities(pd.DataFrame({"age": [2.0, 0.0], "spend": [1.0, 3.0]})).tolist()
    [[0.9, 0.1], [0.1, 0.9]]
    >>> policy.action_probabilities({"age": 2.0, "spend": 1.0}, [1]).round(3).tolist()
    [0.1]
    >>> actions, propensities = policy.sample(np.array([[2.0, 1.0]] * 4), random_state=0)
    >>> actions.shape, bool((propensities > 0).all())
    ((4,), True)
    """

    artifact_kind = "linear"

    def __init__(self, weights: Any, bias: Any = None, *, context_columns: Sequence[str] | None = None,
                 kind: str = "softmax", temperature: float = 1.0, epsilon: float = 0.0,
                 metadata: Mapping[str, Any] | None = None) -> None:
        w = np.array(weights, dtype=np.float64)
        if w.ndim != 2 or w.size == 0 or not np.isfinite(w).all():
            raise ValueError(f"weights must be a finite, non-empty (n_actions, n_features) array, "
                             f"got shape {np.shape(weights)}")
        b = np.zeros(w.shape[0]) if bias is None else np.array(bias, dtype=np.float64)
        if b.shape != (w.shape[0],) or not np.isfinite(b).all():
            raise ValueError(f"bias must be a finite array of shape ({w.shape[0]},), got shape {b.shape}")
        super().__init__(w.shape[0], w.shape[1], context_columns=context_columns, kind=kind,
                         temperature=temperature, epsilon=epsilon, metadata=metadata)
        w.setflags(write=False)
        b.setflags(write=False)
        self.weights_, self.bias_ = w, b

    @classmethod
    def uniform(cls, n_actions: int, n_features: int, *, context_columns: Sequence[str] | None = None
                ) -> LinearPolicy:
        """The uniform random policy (zero scores)."""
        return cls(np.zeros((n_actions, n_features)), context_columns=context_columns)

    def _scores(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weights_.T + self.bias_

    def _with(self, **changes: Any) -> LinearPolicy:
        options = {"context_columns": self.context_columns, "kind": self.kind,
                   "temperature": self.temperature, "epsilon": self.epsilon, "metadata": self.metadata,
                   **changes}
        return LinearPolicy(self.weights_, self.bias_, **options)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_, "bias": self.bias_}

    @classmethod
    def _from_artifact(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearPolicy:
        return cls(arrays["weights"], arrays["bias"], **_common_options(header))


class NeuralPolicy(ContextualPolicy):
    """Scores from a multi-layer perceptron, evaluated in numpy.

    ``h_0 = (x - input_shift) / input_scale``, ``h_{i+1} = activation(h_i @ W_i.T + b_i)`` for the
    hidden layers and ``scores = h_L @ W_L.T + b_L`` (no activation on the output). The weights
    have PyTorch's ``nn.Linear`` layout ``(out_features, in_features)``, so a trained torch model
    exports without conversion; serving needs no torch.

    Parameters
    ----------
    layers : sequence of (weight, bias) pairs
        ``weight`` of shape ``(out, in)``, ``bias`` of shape ``(out,)``; the first layer's ``in``
        is the number of features, the last layer's ``out`` the number of actions.
    activation : {"relu", "tanh"}, default "relu"
    input_shift, input_scale : array-like of shape (n_features,), optional
        Standardisation applied to the features first (default 0 and 1).
    context_columns, kind, temperature, epsilon, metadata
        As in ``ContextualPolicy``.

    Examples
    --------
    >>> import numpy as np
    >>> hidden = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2))
    >>> output = (np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]]), np.zeros(3))
    >>> policy = NeuralPolicy([hidden, output], kind="greedy")
    >>> policy.probabilities([[2.0, -1.0], [0.0, 0.0]]).tolist()
    [[1.0, 0.0, 0.0], [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]]
    """

    artifact_kind = "neural"

    def __init__(self, layers: Sequence[tuple[Any, Any]], *, activation: str = "relu",
                 input_shift: Any = None, input_scale: Any = None,
                 context_columns: Sequence[str] | None = None, kind: str = "softmax",
                 temperature: float = 1.0, epsilon: float = 0.0,
                 metadata: Mapping[str, Any] | None = None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        checked: list[tuple[np.ndarray, np.ndarray]] = []
        for i, pair in enumerate(layers):
            weight, bias = (np.array(part, dtype=np.float64) for part in pair)
            expected_in = checked[-1][0].shape[0] if checked else None
            if (weight.ndim != 2 or weight.size == 0 or bias.shape != (weight.shape[0],)
                    or (expected_in is not None and weight.shape[1] != expected_in)):
                raise ValueError(f"layer {i}: weight {weight.shape} and bias {bias.shape} do not chain "
                                 f"(expected weight (out, {expected_in or 'n_features'}) and bias (out,))")
            if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
                raise ValueError(f"layer {i} has a NaN or infinite weight")
            weight.setflags(write=False)
            bias.setflags(write=False)
            checked.append((weight, bias))
        if not checked:
            raise ValueError("layers must hold at least one (weight, bias) pair")
        n_features = checked[0][0].shape[1]
        shift = np.zeros(n_features) if input_shift is None else np.array(input_shift, dtype=np.float64)
        scale = np.ones(n_features) if input_scale is None else np.array(input_scale, dtype=np.float64)
        if shift.shape != (n_features,) or scale.shape != (n_features,) or not (
                np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"input_shift and input_scale must be finite arrays of shape ({n_features},), "
                             "input_scale > 0")
        super().__init__(checked[-1][0].shape[0], n_features, context_columns=context_columns, kind=kind,
                         temperature=temperature, epsilon=epsilon, metadata=metadata)
        self.layers_ = checked
        self.activation = activation
        self.input_shift_, self.input_scale_ = shift, scale

    def _scores(self, features: np.ndarray) -> np.ndarray:
        h = (features - self.input_shift_) / self.input_scale_
        for weight, bias in self.layers_[:-1]:
            h = h @ weight.T + bias
            h = np.maximum(h, 0.0, out=h) if self.activation == "relu" else np.tanh(h, out=h)
        weight, bias = self.layers_[-1]
        return h @ weight.T + bias

    def _with(self, **changes: Any) -> NeuralPolicy:
        options = {"activation": self.activation, "input_shift": self.input_shift_,
                   "input_scale": self.input_scale_, "context_columns": self.context_columns,
                   "kind": self.kind, "temperature": self.temperature, "epsilon": self.epsilon,
                   "metadata": self.metadata, **changes}
        return NeuralPolicy(self.layers_, **options)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"input_shift": self.input_shift_, "input_scale": self.input_scale_}
        for i, (weight, bias) in enumerate(self.layers_):
            arrays[f"layer_{i}_weight"], arrays[f"layer_{i}_bias"] = weight, bias
        return arrays

    def _parameters(self) -> dict[str, Any]:
        return {"activation": self.activation, "n_layers": len(self.layers_)}

    @classmethod
    def _from_artifact(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> NeuralPolicy:
        n_layers = int(header["parameters"]["n_layers"])
        layers = [(arrays[f"layer_{i}_weight"], arrays[f"layer_{i}_bias"]) for i in range(n_layers)]
        return cls(layers, activation=header["parameters"]["activation"], input_shift=arrays["input_shift"],
                   input_scale=arrays["input_scale"], **_common_options(header))


_POLICY_TYPES: dict[str, type[ContextualPolicy]] = {"linear": LinearPolicy, "neural": NeuralPolicy}


def load_policy(path: str | PathLike[str]) -> TabularPolicy | ContextualPolicy:
    """Read any hfrl policy artifact: a ``TabularPolicy`` or a contextual policy.

    The format recorded in the artifact's ``metadata.json`` decides which; checksums, shapes and
    the format version are checked, and anything unsound raises ``ArtifactError``.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> LinearPolicy(np.eye(2), context_columns=["a", "b"]).save(os.path.join(folder, "p.zip")).name
    'p.zip'
    >>> load_policy(os.path.join(folder, "p.zip"))
    LinearPolicy(n_features=2, n_actions=2, kind='softmax', epsilon=0)
    """
    path = Path(path)
    header, read = _open_artifact(path)
    if header.get("format") == "hfrl.tabular_policy":
        return TabularPolicy.load(path)
    if header.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: format is {header.get('format')!r}, expected "
                            f"'hfrl.tabular_policy' or {ARTIFACT_FORMAT!r}")
    if header.get("format_version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{path}: format_version {header.get('format_version')!r} is not supported "
                            f"(this hfrl reads version {ARTIFACT_VERSION})")
    policy_type = _POLICY_TYPES.get(header.get("policy", ""))
    if policy_type is None:
        raise ArtifactError(f"{path}: unknown contextual policy {header.get('policy')!r} "
                            f"(known: {sorted(_POLICY_TYPES)})")
    arrays: dict[str, np.ndarray] = {}
    for name, facts in (header.get("arrays") or {}).items():
        blob = read(f"arrays/{name}.npy")
        if hashlib.sha256(blob).hexdigest() != facts.get("sha256"):
            raise ArtifactError(f"{path}: checksum mismatch, array {name!r} is corrupt")
        try:
            arrays[name] = np.load(io.BytesIO(blob), allow_pickle=False)
        except ValueError as exc:
            raise ArtifactError(f"{path}: array {name!r} is unreadable ({exc})") from exc
        if list(arrays[name].shape) != facts.get("shape"):
            raise ArtifactError(f"{path}: array {name!r} has shape {list(arrays[name].shape)}, "
                                f"metadata says {facts.get('shape')}")
    try:
        policy = policy_type._from_artifact(header, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if (policy.n_actions, policy.n_features) != (header.get("n_actions"), header.get("n_features")):
        raise ArtifactError(f"{path}: weights give {policy.n_features} features x {policy.n_actions} "
                            f"actions, metadata says {header.get('n_features')} x {header.get('n_actions')}")
    return policy


def _open_artifact(path: Path) -> tuple[dict[str, Any], Any]:
    """The artifact's JSON header and a reader of its other members; ``ArtifactError`` if unreadable."""
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArtifactError(f"{path}: not a readable hfrl artifact ({exc})") from exc
    if "metadata.json" not in members:
        raise ArtifactError(f"{path}: artifact lacks metadata.json")
    try:
        header = json.loads(members["metadata.json"])
    except ValueError as exc:
        raise ArtifactError(f"{path}: metadata.json is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: metadata.json must hold an object")

    def read(name: str) -> bytes:
        if name not in members:
            raise ArtifactError(f"{path}: artifact lacks {name}")
        return members[name]

    return header, read
