"""The HF blend: linear, geometric, per-state alpha, and the Q-table variant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import hfrl
from hfrl.blending import blend, blend_q, count_based_alpha
from hfrl.policies import TabularPolicy

shapes = st.tuples(st.integers(1, 5), st.integers(1, 5))


@st.composite
def table_pairs(draw):
    shape = draw(shapes)
    raw = [draw(arrays(np.float64, shape, elements=st.floats(0, 1))) + 1e-3 for _ in range(2)]
    return [r / r.sum(axis=1, keepdims=True) for r in raw]


@settings(max_examples=100, deadline=None)
@given(table_pairs(), st.floats(0, 1), st.sampled_from(["linear", "geometric"]))
def test_rows_are_distributions_and_endpoints_hold(pair, alpha, method):
    pi, hf = pair
    out = blend(pi, hf, alpha, method=method).table_
    assert (out >= 0).all()
    assert np.allclose(out.sum(axis=1), 1.0)
    assert np.allclose(blend(pi, hf, 0.0, method=method).table_, pi)
    assert np.allclose(blend(pi, hf, 1.0, method=method).table_, hf)


@settings(max_examples=100, deadline=None)
@given(table_pairs(), st.floats(0, 1), st.floats(0, 1))
def test_linear_entries_move_monotonically_toward_hf(pair, a1, a2):
    pi, hf = pair
    low, high = sorted((a1, a2))
    p_low, p_high = blend(pi, hf, low).table_, blend(pi, hf, high).table_
    up = hf >= pi
    assert (p_high[up] >= p_low[up] - 1e-12).all()
    assert (p_high[~up] <= p_low[~up] + 1e-12).all()


def test_linear_value_matches_formula_and_accepts_policies_and_fitted_objects():
    pi = TabularPolicy(np.array([[0.2, 0.8], [1.0, 0.0]]))

    class Fitted:  # anything with probabilities_ counts as a fitted HistoricalFrequency
        probabilities_ = np.array([[0.6, 0.4], [0.5, 0.5]])

    out = blend(pi, Fitted(), 0.5)
    assert np.allclose(out.table_, [[0.4, 0.6], [0.75, 0.25]])
    assert out.metadata["alpha"] == 0.5
    assert np.allclose(hfrl.blend(pi, Fitted(), 0.5).table_, out.table_)


def test_geometric_blend_is_a_normalised_product():
    pi = np.array([[0.5, 0.5, 0.0]])
    hf = np.array([[0.2, 0.3, 0.5]])
    out = blend(pi, hf, 0.5, method="geometric").table_
    weights = np.sqrt(pi * hf)
    assert np.allclose(out, weights / weights.sum())
    with pytest.raises(ValueError, match="share no action"):
        blend(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), 0.5, method="geometric")


def test_per_state_and_count_based_alpha():
    pi = np.array([[1.0, 0.0], [1.0, 0.0]])
    hf = np.array([[0.0, 1.0], [0.0, 1.0]])
    out = blend(pi, hf, np.array([0.0, 1.0])).table_
    assert np.allclose(out, [[1, 0], [0, 1]])
    alpha = count_based_alpha(0.8, [0, 30], kappa=10)
    assert np.allclose(alpha, [0.0, 0.6])
    assert np.allclose(blend(pi, hf, alpha).table_[1], [0.4, 0.6])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]; alpha\[0\] = 1.5"),
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
        ({"alpha": np.array([0.1, 0.2, 0.3])}, "one value per state"),
        ({"alpha": 0.5, "hf": np.ones((2, 3)) / 3}, "same states and actions"),
        ({"alpha": 0.5, "hf": np.array([[0.9, 0.9], [0.5, 0.5]])}, "hf row 0 sums to 1.8"),
        ({"alpha": 0.5, "method": "harmonic"}, "method must be one of"),
    ],
)
def test_bad_inputs_are_refused_with_reason(kwargs, message):
    args = {"policy": np.eye(2), "hf": np.full((2, 2), 0.5), **kwargs}
    with pytest.raises(ValueError, match=message):
        blend(args.pop("policy"), args.pop("hf"), args.pop("alpha"), **args)


def test_unfitted_estimator_is_refused():
    class Unfitted:
        def fit(self, logs):
            return self

    with pytest.raises(ValueError, match="not fitted"):
        blend(np.eye(2), Unfitted(), 0.5)


def test_blend_q_literal_variant():
    q = np.array([[2.0, 0.0]])
    hf = np.array([[0.5, 0.5]])
    assert np.allclose(blend_q(q, hf, 0.5), [[1.25, 0.25]])
    with pytest.raises(ValueError, match="alpha"):
        blend_q(q, hf, 2.0)
