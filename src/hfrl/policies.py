"""Policies: anything that gives action probabilities for a batch of contexts.

``Policy`` is the protocol every consumer (blend, evaluate, tune, compare, the service, the report)
relies on: probabilities for a batch of contexts, the probability of given actions, sampling with
propensities, top-k and save. ``TabularPolicy`` is one implementation, a ``(n_states,
n_actions)`` table whose contexts are state ids: dense (sampling precomputes one flat cumulative
table so that a batch of decisions is a single vectorised binary search) or, for large catalogs,
a ``hfrl.sparse.SparseTable`` (explicit cells plus shared backoff rows) with the same methods.
``RankingPolicy`` turns a policy into slates of ``k`` distinct items (Plackett-Luce, arithmetic
in ``hfrl.rankings``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from hfrl.errors import ArtifactError
from hfrl.rankings import (
    MAX_PREFIX_STATES,
    check_slate_size,
    check_support,
    conditional_propensities,
    draw_slates,
    plackett_luce_marginals,
)
from hfrl.sparse import SparseTable, top_k_of_rows

__all__ = [
    "DEFAULT_EXPLORATION",
    "ArtifactError",
    "Policy",
    "RankingPolicy",
    "TabularPolicy",
    "check_distribution_table",
    "default_min_propensity",
    "resolve_rng",
]

#: The exploration every policy artifact hfrl writes for serving keeps unless told otherwise: each
#: action has probability at least ``DEFAULT_EXPLORATION / n_actions`` (0.005 with 10 actions), so
#: that a deterministic policy becomes 95% itself and 5% uniform. Served decisions then carry real
#: propensities and their log can evaluate the next policy (importance weights at most
#: ``n_actions / DEFAULT_EXPLORATION``). Pass ``min_propensity=0`` to serve a policy as it is.
DEFAULT_EXPLORATION = 0.05

ARTIFACT_FORMAT = "hfrl.tabular_policy"
ARTIFACT_VERSION = 1  # a dense table
SPARSE_ARTIFACT_VERSION = 2  # a SparseTable's parts
#: A sparse policy's ``table_`` (its dense form, for consumers that need one) is refused above this
#: many cells (512 MiB of float64); top_k, sampling, lookups, blend and save never need it.
MAX_DENSE_CELLS = 1 << 26
_ROW_SUM_TOLERANCE = 1e-6


def resolve_rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """Turn a seed, a Generator or None into a ``numpy.random.Generator`` (resolved once)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def default_min_propensity(n_actions: int) -> float:
    """The default exploration floor of a served policy over ``n_actions`` actions.

    Examples
    --------
    >>> default_min_propensity(10)
    0.005
    """
    if isinstance(n_actions, bool) or not isinstance(n_actions, int | np.integer) or n_actions < 1:
        raise ValueError(f"n_actions must be a positive integer, got {n_actions!r}")
    return DEFAULT_EXPLORATION / int(n_actions)


def check_distribution_table(table: Any, name: str = "probabilities") -> np.ndarray:
    """Return ``table`` as a float64 2-D array whose rows are distributions, or raise ValueError.

    The error names the first offending row and what was expected.
    """
    array = np.asarray(table, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_states, n_actions) array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one state and one action, got {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} row {row} has a NaN or infinite entry; rows must be distributions")
    negative = (array < 0).any(axis=1)
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise ValueError(
            f"{name} row {row} has a negative entry ({array[row].min():g}); "
            f"{int(negative.sum())} rows have one; rows must be distributions"
        )
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name} row {row} sums to {sums[row]:.6g}, expected 1; "
            f"{int(off.sum())} rows are not distributions"
        )
    return array


@runtime_checkable
class Policy(Protocol):
    """A stochastic policy pi(a|x) over ``n_actions`` actions, for batches of contexts ``x``.

    What a context is belongs to the implementation: a state id for ``TabularPolicy``, a row of
    features (a DataFrame holding the context columns, or an array in their order) for contextual
    policies. Every method takes a batch of ``n`` contexts.
    """

    n_actions: int

    def probabilities(self, contexts: Any) -> np.ndarray:
        """Action probabilities, shape ``(n, n_actions)``; rows are distributions."""

    def action_probabilities(self, contexts: Any, actions: Any) -> np.ndarray:
        """pi(actions[i] | contexts[i]), shape ``(n,)``."""

    def sample(self, contexts: Any, random_state: int | np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """One action per context drawn from the policy, with its probability (the propensity)."""

    def top_k(self, contexts: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable actions per context, ``(n, k)``, with their probabilities."""

    def save(self, path: str | PathLike[str]) -> Path:
        """Write a checksummed artifact that ``hfrl serve`` loads."""


class TabularPolicy:
    """A stochastic policy pi(a|s) stored as a table (a ``Policy`` whose contexts are state ids).

    Parameters
    ----------
    probabilities : array-like of shape (n_states, n_actions), or a ``hfrl.sparse.SparseTable``
        Row ``s`` is the distribution over actions in state ``s``. Rows are renormalised to sum
        to exactly 1 after validation (they must already sum to 1 within 1e-6). A
        ``SparseTable`` (explicit cells plus shared backoff rows, for catalogs where most cells
        are empty) is kept sparse: ``top_k``, ``sample``, ``action_probabilities``,
        ``with_exploration``, ``hfrl.blend`` and ``save``/``load`` work on it without a dense
        table; ``table_`` builds the dense form on request (refused above ``MAX_DENSE_CELLS``).
    metadata : mapping, optional
        JSON-serialisable facts saved with the artifact (encoders, name, training settings).

    Examples
    --------
    >>> import numpy as np
    >>> policy = TabularPolicy(np.array([[0.5, 0.5], [0.9, 0.1]]))
    >>> policy.probabilities([1]).tolist()
    [[0.9, 0.1]]
    >>> actions, propensities = policy.sample([0, 1, 1], random_state=0)
    >>> actions.shape, propensities.shape
    ((3,), (3,))
    """

    def __init__(self, probabilities: Any, metadata: Mapping[str, Any] | None = None) -> None:
        self.sparse_: SparseTable | None = None
        self._dense: np.ndarray | None = None
        if isinstance(probabilities, SparseTable):
            self.sparse_ = probabilities
        else:
            table = check_distribution_table(probabilities)
            table = table / table.sum(axis=1, keepdims=True)
            table.setflags(write=False)
            self._dense = table
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._flat_cdf: np.ndarray | None = None
        self._last_positive: np.ndarray | None = None

    @property
    def table_(self) -> np.ndarray:
        """The dense ``(n_states, n_actions)`` table (built once from a sparse table, within
        ``MAX_DENSE_CELLS``)."""
        if self._dense is None:
            assert self.sparse_ is not None
            cells = self.n_states * self.n_actions
            if cells > MAX_DENSE_CELLS:
                raise MemoryError(
                    f"this policy is sparse ({self.n_states} states x {self.n_actions} actions, "
                    f"{self.sparse_.nnz} explicit cells); its dense table would take "
                    f"{8 * cells / 2**30:.1f} GiB, above hfrl.policies.MAX_DENSE_CELLS; "
                    "use top_k, sample, action_probabilities or probabilities(states) on it")
            dense = self.sparse_.to_dense()
            dense.setflags(write=False)
            self._dense = dense
        return self._dense

    @property
    def is_sparse(self) -> bool:
        """Whether the table is stored sparse (``sparse_``)."""
        return self.sparse_ is not None

    def to_sparse(self) -> TabularPolicy:
        """The same policy stored as a ``SparseTable`` (its non-zero cells; exact)."""
        if self.sparse_ is not None:
            return self
        return TabularPolicy(SparseTable.from_dense(self.table_), self.metadata)

    @classmethod
    def from_candidates(cls, states: Any, actions: Any, probabilities: Any, n_states: int, n_actions: int,
                        metadata: Mapping[str, Any] | None = None) -> TabularPolicy:
        """A sparse policy from each state's candidate items; each state's remaining mass
        ``1 - sum(candidates)`` is spread uniformly over all ``n_actions`` items.

        The candidates keep their probability plus their share ``rest / n_actions`` of the rest,
        so rows are distributions and every item keeps a positive probability when ``rest > 0``.
        States without candidates are uniform.

        Examples
        --------
        >>> policy = TabularPolicy.from_candidates([0, 0, 1], [2, 0, 1], [0.6, 0.2, 1.0], 2, 4)
        >>> policy.probabilities([0, 1]).round(3).tolist()
        [[0.25, 0.05, 0.65, 0.05], [0.0, 1.0, 0.0, 0.0]]
        """
        s = np.asarray(states, dtype=np.int64).reshape(-1)
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if not s.shape == a.shape == p.shape:
            raise ValueError("states, actions and probabilities differ in length: "
                             f"{s.size}, {a.size}, {p.size}")
        for name, ids, bound in (("states", s, n_states), ("actions", a, n_actions)):
            bad = (ids < 0) | (ids >= bound)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}[{i}] = {int(ids[i])} is outside [0, {bound})")
        if not (np.isfinite(p) & (p >= 0)).all():
            i = int(np.flatnonzero(~(np.isfinite(p) & (p >= 0)))[0])
            raise ValueError(f"probabilities[{i}] = {p[i]!r}; candidate probabilities must be >= 0")
        explicit = sp.csr_array((p, (s, a)), shape=(n_states, n_actions))
        rest = 1.0 - np.asarray(explicit.sum(axis=1)).ravel()
        if (rest < -_ROW_SUM_TOLERANCE).any():
            row = int(np.flatnonzero(rest < -_ROW_SUM_TOLERANCE)[0])
            raise ValueError(f"the candidates of state {row} sum to {1 - rest[row]:.6g}, more than 1")
        table = SparseTable.build(explicit, np.full((1, n_actions), 1.0 / n_actions),
                                  np.clip(rest, 0.0, None)[:, None])
        return cls(table, metadata)

    def sparsify(self, n_candidates: int) -> TabularPolicy:
        """Keep each state's ``n_candidates`` most probable actions exactly and spread the rest of
        its mass uniformly over all actions (``from_candidates``): the kept cells and every row's
        total are preserved, the tail's shape is not (each tail action gets the tail's mean)."""
        if not 1 <= n_candidates <= self.n_actions:
            raise ValueError(f"n_candidates must be in [1, {self.n_actions}], got {n_candidates}")
        actions, probabilities = self.top_k(np.arange(self.n_states), n_candidates)
        tail = self.n_actions - n_candidates
        tail_mean = (1.0 - probabilities.sum(axis=1, keepdims=True)) / tail if tail else 0.0
        states = np.repeat(np.arange(self.n_states), n_candidates)
        # from_candidates adds the rest's uniform share to every item: the tail's mean here
        kept = np.clip(probabilities - tail_mean, 0.0, None)
        return TabularPolicy.from_candidates(states, actions.ravel(), kept.ravel(), self.n_states,
                                             self.n_actions, self.metadata)

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, n_states: int, n_actions: int) -> TabularPolicy:
        """The uniform random policy."""
        return cls(np.full((n_states, n_actions), 1.0 / n_actions))

    @classmethod
    def from_q_values(
        cls,
        q_values: Any,
        method: str = "greedy",
        *,
        epsilon: float = 0.1,
        temperature: float = 1.0,
        metadata: Mapping[str, Any] | None = None,
    ) -> TabularPolicy:
        """Build a policy from a Q-table.

        ``method`` is ``"greedy"`` (ties share the mass equally), ``"epsilon_greedy"``
        (``epsilon`` spread uniformly, the rest on the greedy actions) or ``"softmax"``
        (Boltzmann with ``temperature``).
        """
        q = np.asarray(q_values, dtype=np.float64)
        if q.ndim != 2 or q.size == 0:
            raise ValueError(f"q_values must be a non-empty 2-D array, got shape {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("q_values has a NaN or infinite entry")
        n_actions = q.shape[1]
        if method in ("greedy", "epsilon_greedy"):
            is_max = np.isclose(q, q.max(axis=1, keepdims=True), rtol=1e-12, atol=1e-12)
            greedy = is_max / is_max.sum(axis=1, keepdims=True)
            if method == "greedy":
                return cls(greedy, metadata)
            if not 0.0 <= epsilon <= 1.0:
                raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
            return cls((1.0 - epsilon) * greedy + epsilon / n_actions, metadata)
        if method == "softmax":
            if not temperature > 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
            z = (q - q.max(axis=1, keepdims=True)) / temperature
            e = np.exp(z)
            return cls(e / e.sum(axis=1, keepdims=True), metadata)
        raise ValueError(
            f"method must be 'greedy', 'epsilon_greedy' or 'softmax', got {method!r}"
        )

    # ------------------------------------------------------------------ shape
    @property
    def n_states(self) -> int:
        return int(self.sparse_.shape[0] if self.sparse_ is not None else self.table_.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.sparse_.shape[1] if self.sparse_ is not None else self.table_.shape[1])

    def __repr__(self) -> str:
        sparse = ", sparse" if self.sparse_ is not None else ""
        return f"TabularPolicy(n_states={self.n_states}, n_actions={self.n_actions}{sparse})"

    def _states(self, states: Any) -> np.ndarray:
        s = np.asarray(states)
        if s.ndim == 0:
            s = s.reshape(1)
        if s.dtype.kind not in "iu":
            if s.dtype.kind == "f" and np.all(np.mod(s, 1) == 0):
                s = s.astype(np.int64)
            else:
                raise ValueError(f"states must be integer ids, got dtype {s.dtype}")
        if s.size and (s.min() < 0 or s.max() >= self.n_states):
            bad = int(np.flatnonzero((s < 0) | (s >= self.n_states))[0])
            raise ValueError(
                f"state id {int(s[bad])} at position {bad} is outside [0, {self.n_states})"
            )
        return s.astype(np.intp, copy=False)

    # ------------------------------------------------------------------ queries
    def probabilities(self, states: Any) -> np.ndarray:
        """Rows of the table for ``states``: shape ``(len(states), n_actions)``."""
        if self.sparse_ is not None:
            return self.sparse_.to_dense(self._states(states))
        return self.table_[self._states(states)]

    def action_probabilities(self, states: Any, actions: Any) -> np.ndarray:
        """pi(a_i | s_i) for paired arrays of states and actions, without materialising rows."""
        s = self._states(states)
        a = np.asarray(actions, dtype=np.intp)
        if a.shape != s.shape:
            raise ValueError(f"states and actions differ in shape: {s.shape} vs {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            bad = int(np.flatnonzero((a < 0) | (a >= self.n_actions))[0])
            raise ValueError(
                f"action id {int(a[bad])} at position {bad} is outside [0, {self.n_actions})"
            )
        if self.sparse_ is not None:
            return self.sparse_.values(s, a)
        return self.table_.ravel()[s * self.n_actions + a]

    def _sampling_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self.sparse_ is not None:  # precompute the sparse sampler's tables
            self.sparse_.sample(np.zeros(0, dtype=np.intp), np.random.default_rng(0))
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        if self._flat_cdf is None:
            cdf = np.cumsum(self.table_, axis=1)
            cdf[:, -1] = 1.0
            positive = self.table_ > 0
            last_positive = self.n_actions - 1 - np.argmax(positive[:, ::-1], axis=1)
            self._flat_cdf = (cdf + np.arange(self.n_states)[:, None]).ravel()
            self._last_positive = last_positive
        assert self._last_positive is not None
        return self._flat_cdf, self._last_positive

    def sample(
        self, states: Any, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one action per state; return ``(actions, propensities)``.

        Inverse-CDF sampling on a flat cumulative table: one ``searchsorted`` for the batch.
        The propensity is the policy's probability of the drawn action, never zero.
        """
        s = self._states(states)
        rng = resolve_rng(random_state)
        if self.sparse_ is not None:
            return self.sparse_.sample(s, rng)
        flat_cdf, last_positive = self._sampling_tables()
        u = rng.random(s.shape[0])
        index = np.searchsorted(flat_cdf, s + u, side="right")
        actions = np.clip(index - s * self.n_actions, 0, None)
        actions = np.minimum(actions, last_positive[s])
        propensities = self.table_[s, actions]
        zero = propensities <= 0  # only from floating-point ties; redraw exactly
        for i in np.flatnonzero(zero):
            actions[i] = rng.choice(self.n_actions, p=self.table_[s[i]])
            propensities[i] = self.table_[s[i], actions[i]]
        return actions.astype(np.int64), propensities

    def top_k(self, states: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable actions per state (ties broken by lower id).

        Returns ``(actions, probabilities)``, each of shape ``(len(states), k)``.
        """
        if not 1 <= k <= self.n_actions:
            raise ValueError(f"k must be in [1, {self.n_actions}], got {k}")
        s = self._states(states)
        if self.sparse_ is not None:
            return self.sparse_.top_k(s, k)
        return top_k_of_rows(self.table_[s], k)

    def greedy(self) -> TabularPolicy:
        """The deterministic policy that takes each state's most probable action (ties share the
        mass; a sparse policy takes the lowest id among tied actions and stays sparse)."""
        if self.sparse_ is not None:
            actions, _ = self.top_k(np.arange(self.n_states), 1)
            states = np.arange(self.n_states)
            return TabularPolicy.from_candidates(states, actions[:, 0], np.ones(self.n_states),
                                                 self.n_states, self.n_actions, self.metadata)
        return TabularPolicy.from_q_values(self.table_, "greedy", metadata=self.metadata)

    def with_exploration(self, min_propensity: float) -> TabularPolicy:
        """This policy mixed with the uniform one so that every action has ``min_propensity``.

        The result is ``(1 - eps) * pi + eps / n_actions`` with the smallest ``eps`` (one for
        the whole table) that lifts the table's smallest entry to ``min_propensity``. Served
        decisions then all have propensity >= ``min_propensity``, so their logs can evaluate
        other policies (importance weights stay below ``1 / min_propensity``), whereas a
        greedy policy's logs show one action per state.

        Parameters
        ----------
        min_propensity : float
            The floor, in [0, 1 / n_actions]; 0 returns an equal copy.

        Returns
        -------
        TabularPolicy
            A new policy. Its metadata keeps this one's and records ``min_propensity`` (the
            largest floor asked for so far) and ``exploration_epsilon``: the total uniform share
            mixed in, so that after several calls it is still ``(1 - exploration_epsilon) * pi
            + exploration_epsilon / n_actions`` of the policy before the first call.

        Examples
        --------
        >>> policy = TabularPolicy(np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]))
        >>> explored = policy.with_exploration(0.05)
        >>> explored.probabilities([0, 1]).round(3).tolist()
        [[0.9, 0.05, 0.05], [0.05, 0.475, 0.475]]
        >>> round(explored.metadata["exploration_epsilon"], 6)
        0.15
        """
        ceiling = 1.0 / self.n_actions
        try:
            floor = float(min_propensity)
        except (TypeError, ValueError):
            raise ValueError(f"min_propensity must be a number, got {min_propensity!r}") from None
        if not 0.0 <= floor <= ceiling:  # also refuses NaN
            raise ValueError(f"min_propensity must be in [0, 1 / n_actions] = [0, {ceiling:.6g}] "
                             f"for {self.n_actions} actions, got {min_propensity!r}")
        # sparse: a lower bound on the smallest cell (exact unless a row's base mix is smallest on
        # one of its explicit cells), so eps may be slightly above the smallest that suffices
        lowest = float(self.table_.min()) if self.sparse_ is None else self.sparse_.min_value()
        # (1 - eps) * p + eps / n >= floor for every p: binding at the smallest p, when below floor
        eps = 0.0 if lowest >= floor else min(1.0, (floor - lowest) / (ceiling - lowest))
        if self.sparse_ is not None:
            table: Any = self.sparse_.mix(SparseTable.uniform(self.n_states, self.n_actions), eps)
        else:
            table = (1.0 - eps) * self.table_ + eps * ceiling
        previous_eps = float(self.metadata.get("exploration_epsilon", 0.0))
        metadata = {
            **self.metadata,
            "min_propensity": max(floor, float(self.metadata.get("min_propensity", 0.0))),
            "exploration_epsilon": 1.0 - (1.0 - previous_eps) * (1.0 - eps),
        }
        return TabularPolicy(table, metadata)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | PathLike[str]) -> Path:
        """Write a versioned artifact: the table (``.npy``, or a sparse table's parts in ``.npz``)
        and JSON metadata in one zip file.

        The metadata records the format version, the library version, the shape and a
        SHA-256 checksum of the table, so ``load`` can refuse a corrupt or mismatched file.
        """
        from hfrl import __version__

        path = Path(path)
        buffer = io.BytesIO()
        if self.sparse_ is not None:
            np.savez(buffer, allow_pickle=False, **self.sparse_.arrays())
            member, version = "sparse.npz", SPARSE_ARTIFACT_VERSION
        else:
            np.save(buffer, np.ascontiguousarray(self.table_), allow_pickle=False)
            member, version = "probabilities.npy", ARTIFACT_VERSION
        table_bytes = buffer.getvalue()
        header = {
            "format": ARTIFACT_FORMAT,
            "format_version": version,
            "hfrl_version": __version__,
            "shape": [self.n_states, self.n_actions],
            "dtype": "float64",
            "sha256": hashlib.sha256(table_bytes).hexdigest(),
            "metadata": self.metadata,
        }
        try:
            header_bytes = json.dumps(header, sort_keys=True).encode()
        except TypeError as exc:
            raise ValueError(f"policy metadata is not JSON-serialisable: {exc}") from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.json", header_bytes)
            archive.writestr(member, table_bytes)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | PathLike[str]) -> TabularPolicy:
        """Read an artifact written by ``save``; raise ``ArtifactError`` when it is not sound."""
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such artifact file")
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "metadata.json" not in names:
                    raise ArtifactError(f"{path}: artifact lacks ['metadata.json']")
                header_bytes = archive.read("metadata.json")
                try:
                    header = json.loads(header_bytes)
                except ValueError as exc:
                    raise ArtifactError(f"{path}: metadata.json is not valid JSON ({exc})") from exc
                if header.get("format") != ARTIFACT_FORMAT:
                    raise ArtifactError(
                        f"{path}: format is {header.get('format')!r}, expected {ARTIFACT_FORMAT!r}"
                    )
                version = header.get("format_version")
                members = {ARTIFACT_VERSION: "probabilities.npy", SPARSE_ARTIFACT_VERSION: "sparse.npz"}
                if version not in members:
                    raise ArtifactError(
                        f"{path}: format_version {version!r} is not supported "
                        f"(this hfrl reads versions {sorted(members)})"
                    )
                if members[version] not in names:
                    raise ArtifactError(f"{path}: artifact lacks {[members[version]]}")
                table_bytes = archive.read(members[version])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArtifactError(f"{path}: not a readable hfrl artifact ({exc})") from exc
        if hashlib.sha256(table_bytes).hexdigest() != header.get("sha256"):
            raise ArtifactError(f"{path}: checksum mismatch, the table is corrupt")
        try:
            if version == SPARSE_ARTIFACT_VERSION:
                with np.load(io.BytesIO(table_bytes), allow_pickle=False) as parts:
                    arrays = {name: parts[name] for name in parts.files}
                shape = tuple(header.get("shape") or ())
                if len(shape) != 2:
                    raise ArtifactError(
                        f"{path}: metadata shape {header.get('shape')} is not (n_states, n_actions)")
                table: Any = SparseTable.from_arrays(arrays, (int(shape[0]), int(shape[1])))
            else:
                table = np.load(io.BytesIO(table_bytes), allow_pickle=False)
                if list(table.shape) != header.get("shape"):
                    raise ArtifactError(f"{path}: table shape {list(table.shape)} does not match "
                                        f"metadata {header.get('shape')}")
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"{path}: the table is unreadable ({exc})") from exc
        try:
            return cls(table, header.get("metadata") or {})
        except ValueError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc


class RankingPolicy:
    """Slates of ``k`` distinct items drawn from a policy by Plackett-Luce (without replacement).

    Build it with ``RankingPolicy.from_policy(policy, k)``. Contexts are whatever ``policy`` takes
    (state ids for a ``TabularPolicy``).

    Parameters
    ----------
    policy : Policy
        The item policy pi(a|x): position 0 is drawn from it, each later position from it
        renormalised over the items not yet in the slate.
    k : int
        The slate size.

    Examples
    --------
    >>> import numpy as np
    >>> from hfrl.policies import TabularPolicy
    >>> ranking = RankingPolicy.from_policy(TabularPolicy(np.array([[0.5, 0.25, 0.25]])), k=2)
    >>> slates, slate_p, position_p = ranking.sample_slates([0, 0], random_state=0)
    >>> slates.shape, slate_p.shape, position_p.shape
    ((2, 2), (2,), (2, 2))
    >>> ranking.cascade_propensities([0], [[0, 1]]).round(4).tolist()
    [[0.5, 0.25]]
    >>> ranking.position_probabilities([0]).round(4).tolist()
    [[[0.5, 0.25, 0.25], [0.3333, 0.3333, 0.3333]]]
    """

    def __init__(self, policy: Policy, k: int) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must satisfy hfrl.policies.Policy, got {type(policy).__name__}")
        self.policy = policy
        self.k = check_slate_size(k, int(policy.n_actions))

    @classmethod
    def from_policy(cls, policy: Policy, k: int) -> RankingPolicy:
        """Plackett-Luce ranking of ``k`` items with weights ``policy.probabilities``."""
        return cls(policy, k)

    @property
    def n_actions(self) -> int:
        return int(self.policy.n_actions)

    def __repr__(self) -> str:
        return f"RankingPolicy(k={self.k}, policy={self.policy!r})"

    # ------------------------------------------------------------------ probabilities
    def item_probabilities(self, contexts: Any) -> np.ndarray:
        """The item policy's rows ``pi(.|x)``, shape ``(n, n_actions)``, checked to fill a slate."""
        rows = np.asarray(self.policy.probabilities(contexts), dtype=np.float64)
        check_support(rows, self.k)
        return rows

    def _distinct_rows(self, contexts: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, where)``: the item rows of the distinct contexts and each context's index among them
        (integer ids are de-duplicated before the policy is read, other contexts by their rows)."""
        ids = np.asarray(contexts)
        if ids.ndim == 1 and ids.dtype.kind in "iu":
            distinct, where = np.unique(ids, return_inverse=True)
            return self.item_probabilities(distinct), where.ravel()
        rows, where = np.unique(self.item_probabilities(contexts), axis=0, return_inverse=True)
        return rows, where.ravel()

    def cascade_propensities(self, contexts: Any, slates: Any) -> np.ndarray:
        """``P(slate[:j+1] | x)`` for every ``j``: shape ``(n, k)``; the last column is the slate's.

        Slates that repeat an item have probability 0 from the repeat on.
        """
        slates = self._slates(slates)
        rows, where = self._distinct_rows(contexts)
        if where.shape[0] != slates.shape[0]:
            raise ValueError(f"{where.shape[0]} contexts but {slates.shape[0]} slates")
        picked = rows[where[:, None], slates]
        return np.cumprod(conditional_propensities(picked, slates), axis=1)

    def position_probabilities(self, contexts: Any, max_states: int = MAX_PREFIX_STATES) -> np.ndarray:
        """Exact ``P(item a at position j | x)``, shape ``(n, k, n_actions)`` (``plackett_luce_marginals``).

        Contexts with the same item distribution are computed once.
        """
        rows, where = self._distinct_rows(contexts)
        table = np.stack([plackett_luce_marginals(row, self.k, max_states) for row in rows])
        return table[where]

    def marginal_propensities(self, contexts: Any, slates: Any, max_states: int = MAX_PREFIX_STATES
                              ) -> np.ndarray:
        """``P(slates[i, j] at position j | x_i)``, shape ``(n, k)``."""
        slates = self._slates(slates)
        rows, where = self._distinct_rows(contexts)
        table = np.stack([plackett_luce_marginals(row, self.k, max_states) for row in rows])
        return table[where[:, None], np.arange(self.k)[None, :], slates]

    # ------------------------------------------------------------------ sampling
    def draw(self, contexts: Any, random_state: int | np.random.Generator | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Slates ``(n, k)`` and their cascade propensities ``(n, k)`` (cheap at any catalog size)."""
        rows, where = self._distinct_rows(contexts)
        slates = draw_slates(rows, where, self.k, resolve_rng(random_state))
        picked = rows[where[:, None], slates]
        return slates, np.cumprod(conditional_propensities(picked, slates), axis=1)

    def sample_slates(self, contexts: Any, random_state: int | np.random.Generator | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one slate per context.

        Returns
        -------
        slates : ndarray of int64, shape (n, k)
        slate_propensities : ndarray, shape (n,)
            Each slate's probability.
        position_propensities : ndarray, shape (n, k)
            The marginal probability of each drawn item at its position (exact; see
            ``position_probabilities`` for the cost on large catalogs, and ``draw`` for slates with
            their cascade propensities only).
        """
        slates, cascade = self.draw(contexts, random_state)
        return slates, cascade[:, -1].copy(), self.marginal_propensities(contexts, slates)

    def _slates(self, slates: Any) -> np.ndarray:
        array = np.asarray(slates)
        if array.ndim != 2 or array.shape[1] != self.k:
            raise ValueError(f"slates must have shape (n, k={self.k}), got {array.shape}")
        if array.size and (array.dtype.kind not in "iu" or array.min() < 0 or array.max() >= self.n_actions):
            raise ValueError(f"slates must hold item ids in [0, {self.n_actions})")
        return array.astype(np.int64, copy=False)
