"""RunningSequence: the confidence sequence of ``confidence_sequence``, updated in place."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.ope.sequences import RunningSequence, _sequence, confidence_sequence
from hfrl.policies import TabularPolicy


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-2.0, 3.0), min_size=1, max_size=300),
    st.lists(st.integers(1, 50), min_size=1, max_size=10),
    st.sampled_from([0.8, 0.95, 0.99]),
)
def test_any_split_of_the_stream_gives_the_batch_sequence(terms, chunks, level):
    terms = np.asarray(terms)
    running = RunningSequence((-2.0, 3.0), value_range=(-2.0, 3.0), level=level)
    start = 0
    for size in chunks:
        running.update(terms[start:start + size])
        start += size
    running.update(terms[start:])
    batch = _sequence(terms, (-2.0, 3.0), (-2.0, 3.0), 1.0 - level, 1, None).iloc[-1]
    assert running.n == terms.size
    assert running.estimate == pytest.approx(batch["estimate"], rel=1e-9, abs=1e-12)
    assert running.ci_low == pytest.approx(batch["ci_low"], rel=1e-9, abs=1e-12)
    assert running.ci_high == pytest.approx(batch["ci_high"], rel=1e-9, abs=1e-12)


def test_it_matches_confidence_sequence_on_logs_and_refuses_terms_outside_the_range():
    rng = np.random.default_rng(3)
    action = rng.integers(0, 2, 4000)
    reward = (rng.random(4000) < np.where(action == 1, 0.6, 0.4)) * 1.0
    logs = pd.DataFrame({"state": 0, "action": action, "propensity": 0.5, "reward": reward})
    policy = TabularPolicy(np.array([[0.0, 1.0]]))
    expected = confidence_sequence(logs, policy, n_points=1).iloc[-1]
    running = RunningSequence((0.0, 2.0), value_range=(0.0, 1.0)).update(action * 2.0 * reward)
    assert running.estimate == pytest.approx(expected["estimate"])
    assert (running.ci_low, running.ci_high) == pytest.approx((expected["ci_low"], expected["ci_high"]))
    with pytest.raises(ValueError, match=r"term 2\.5 \(at 1\) is outside the declared range"):
        running.update([1.0, 2.5])
    assert running.n == 4000  # a refused update changes nothing
    empty = RunningSequence((0.0, 1.0))
    assert np.isnan(empty.estimate) and (empty.ci_low, empty.ci_high) == (0.0, 1.0)
