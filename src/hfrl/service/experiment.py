"""Champion and challenger: split decisions between two policies and log what was actually served.

An ``Experiment`` sends a share ``traffic`` of the decisions to the challenger, at random per
decision, or sticky per user when the request carries a ``user_id`` (a hash of the experiment id
and the user id decides, so a user sees one arm on every replica and after a restart).

What the log records (``mixture``): the propensity of each slot under the *mixture actually
served*, not under the arm that happened to decide. With champion rule pi_0, challenger rule pi_1
and joint probabilities J_i(a_0..a_j) of the slate's first j + 1 slots under each rule,

    propensity_j = M_j / M_{j-1},   M_j = (1 - traffic) J_0(a_0..a_j) + traffic J_1(a_0..a_j),

so for ``k = 1``: ``(1 - traffic) pi_0(a|s) + traffic pi_1(a|s)``. Importance weights
``pi_i(a|s) / propensity`` are then bounded by ``1 / (1 - traffic)`` and ``1 / traffic``, and the
logs evaluate either arm, or any other policy, with every decision of both arms
(``hfrl.service.monitor`` does this as feedback arrives). Each row also keeps each arm's own
probability of the slot (``champion_probability``, ``challenger_probability``) and which arm
decided (``policy``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from hfrl.errors import ArtifactError
from hfrl.service.model import ServedModel

__all__ = ["CHALLENGER", "CHAMPION", "Experiment", "mixture"]

CHAMPION = "champion"
CHALLENGER = "challenger"


def mixture(champion: np.ndarray, challenger: np.ndarray, traffic: float) -> np.ndarray:
    """The slot propensities (n, k) under the mixture, from each rule's slot probabilities (n, k).

    Examples
    --------
    >>> mixture(np.array([[0.5]]), np.array([[1.0]]), 0.1).tolist()
    [[0.55]]
    >>> mixture(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]]), 0.5).round(3).tolist()
    [[1.0, 0.5]]
    """
    joint = (1.0 - traffic) * np.cumprod(champion, axis=1) + traffic * np.cumprod(challenger, axis=1)
    before = np.concatenate([np.ones((joint.shape[0], 1)), joint[:, :-1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(before > 0, joint / np.where(before > 0, before, 1.0), 0.0)


class Experiment:
    """A challenger served to a share of the traffic next to the champion.

    Parameters
    ----------
    champion : ServedModel
        The model served when the experiment starts (its version is part of the experiment id).
    challenger : ServedModel
        Must decide over the same states, actions and contexts as the champion.
    traffic : float
        The challenger's share of decisions, in (0, 1).

    Attributes
    ----------
    id : str
        16 hex digits naming the experiment in the log (``decisions.experiment``): the same
        champion, challenger and share on any replica, or after a restart, continue one experiment.

    Examples
    --------
    >>> from hfrl.policies import TabularPolicy
    >>> a = ServedModel(TabularPolicy(np.array([[0.5, 0.5]])), version="a")
    >>> b = ServedModel(TabularPolicy(np.array([[0.0, 1.0]])), version="b")
    >>> experiment = Experiment(a, b, traffic=0.25)
    >>> arms = experiment.assign([None] * 1000, np.random.default_rng(0))
    >>> bool(0.2 < arms.mean() < 0.3), experiment.assign(["user-7"] * 3, None).tolist()
    (True, [False, False, False])
    """

    def __init__(self, champion: ServedModel, challenger: ServedModel, traffic: float) -> None:
        if isinstance(traffic, bool) or not isinstance(traffic, int | float) or not 0.0 < traffic < 1.0:
            raise ValueError(f"traffic must be a share strictly between 0 and 1, got {traffic!r}")
        check_compatible(champion, challenger)
        self.challenger = challenger
        self.traffic = float(traffic)
        self.champion_version = champion.version
        key = f"{champion.version}:{challenger.version}:{self.traffic!r}".encode()
        self.id = hashlib.sha256(key).hexdigest()[:16]

    def assign(self, user_ids: Sequence[str | None], rng: np.random.Generator | None) -> np.ndarray:
        """True where the challenger decides: a fresh draw per decision, a hash per ``user_id``."""
        draws = (rng if rng is not None else np.random.default_rng()).random(len(user_ids))
        for i, user in enumerate(user_ids):
            if user is not None:
                digest = hashlib.blake2b(f"{self.id}:{user}".encode(), digest_size=8).digest()
                draws[i] = int.from_bytes(digest, "big") / 2.0**64
        return draws < self.traffic

    def describe(self) -> dict[str, object]:
        return {
            "experiment": self.id,
            "traffic": self.traffic,
            "challenger_version": self.challenger.version,
            "challenger_artifact": self.challenger.path,
        }


def check_compatible(champion: ServedModel, challenger: ServedModel) -> None:
    """Refuse a challenger that cannot decide the champion's requests (``ArtifactError`` naming why)."""
    if (challenger.n_states, challenger.n_actions) != (champion.n_states, champion.n_actions):
        raise ArtifactError(
            f"the challenger {challenger.path or challenger.version} has {challenger.n_states} states x "
            f"{challenger.n_actions} actions; the champion has {champion.n_states} x {champion.n_actions}"
        )
    if champion.policy.metadata.get("state_encoder") != challenger.policy.metadata.get("state_encoder"):
        raise ArtifactError(
            f"the challenger {challenger.path or challenger.version} encodes contexts differently from "
            "the champion (state_encoder); both must map a context to the same state"
        )
