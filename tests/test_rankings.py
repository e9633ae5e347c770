"""Tests of hfrl.rankings and hfrl.policies.RankingPolicy: Plackett-Luce slates and their exact
probabilities, against enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfrl.policies import RankingPolicy, TabularPolicy
from hfrl.rankings import enumerate_slates, plackett_luce_marginals


def brute_force_slates(p: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """Every ordered slate and its Plackett-Luce probability, one product per slate."""
    out = {}
    for slate in itertools.permutations(range(p.size), k):
        prob, left = 1.0, 1.0
        for item in slate:
            prob *= p[item] / left if left > 0 else 0.0
            left -= p[item]
        if prob > 0:
            out[slate] = prob
    return out


distributions = st.integers(2, 6).flatmap(
    lambda n: st.lists(st.integers(0, 4), min_size=n, max_size=n).filter(lambda w: sum(x > 0 for x in w) >= 2)
)


@settings(max_examples=60, deadline=None)
@given(weights=distributions, k=st.integers(1, 4))
def test_marginals_equal_the_brute_force_sum_over_slates(weights: list[int], k: int) -> None:
    p = np.asarray(weights, dtype=float) / sum(weights)
    k = min(k, int((p > 0).sum()))
    brute = np.zeros((k, p.size))
    for slate, prob in brute_force_slates(p, k).items():
        brute[np.arange(k), list(slate)] += prob
    marginals = plackett_luce_marginals(p, k)
    np.testing.assert_allclose(marginals, brute, atol=1e-12)
    np.testing.assert_allclose(marginals.sum(axis=1), 1.0, atol=1e-12)  # each position holds one item
    assert (marginals.sum(axis=0) <= 1.0 + 1e-12).all()  # an item appears at most once


@settings(max_examples=30, deadline=None)
@given(weights=distributions, k=st.integers(1, 3))
def test_enumerate_slates_matches_brute_force(weights: list[int], k: int) -> None:
    p = np.asarray(weights, dtype=float) / sum(weights)
    k = min(k, int((p > 0).sum()))
    slates, probs = enumerate_slates(p, k)
    brute = brute_force_slates(p, k)
    assert len(slates) == len(brute)
    for slate, prob in zip(slates.tolist(), probs, strict=True):
        assert prob == pytest.approx(brute[tuple(slate)], abs=1e-14)


def test_ties_are_exact_and_cheap_for_a_large_uniform_catalog() -> None:
    marginals = plackett_luce_marginals(np.full(100_000, 1e-5), 10)
    np.testing.assert_allclose(marginals, 1e-5, rtol=1e-9)


def test_too_many_prefix_states_are_refused_with_the_cost() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(2000))
    with pytest.raises(ValueError, match="prefix states"):
        plackett_luce_marginals(p, 4, max_states=1_000_000)


def test_ranking_policy_probabilities_agree_with_each_other() -> None:
    rng = np.random.default_rng(1)
    table = rng.dirichlet(np.ones(5), 3)
    ranking = RankingPolicy.from_policy(TabularPolicy(table), 3)
    states = np.array([0, 2, 2, 1])
    slates, slate_p, position_p = ranking.sample_slates(states, random_state=0)
    ordered = np.sort(slates, axis=1)
    assert slates.shape == (4, 3) and (ordered[:, 1:] != ordered[:, :-1]).all()
    for i, s in enumerate(states):
        brute = brute_force_slates(table[s], 3)
        assert slate_p[i] == pytest.approx(brute[tuple(slates[i])], rel=1e-12)
        marginal = plackett_luce_marginals(table[s], 3)
        np.testing.assert_allclose(position_p[i], marginal[np.arange(3), slates[i]], rtol=1e-12)
    cascade = ranking.cascade_propensities(states, slates)
    np.testing.assert_allclose(cascade[:, -1], slate_p, rtol=1e-12)
    np.testing.assert_allclose(cascade[:, 0], table[states, slates[:, 0]], rtol=1e-12)
    assert ranking.position_probabilities(states).shape == (4, 3, 5)


def test_sampling_follows_the_slate_probabilities() -> None:
    table = np.array([[0.5, 0.3, 0.15, 0.05]])
    ranking = RankingPolicy.from_policy(TabularPolicy(table), 2)
    slates, _, _ = ranking.sample_slates(np.zeros(200_000, dtype=int), random_state=3)
    brute = brute_force_slates(table[0], 2)
    keys, counts = np.unique(slates, axis=0, return_counts=True)
    for slate, count in zip(keys.tolist(), counts, strict=True):
        share, prob = count / 200_000, brute[tuple(slate)]
        assert abs(share - prob) < 5 * np.sqrt(prob * (1 - prob) / 200_000)


def test_a_context_with_too_few_items_is_named() -> None:
    ranking = RankingPolicy.from_policy(TabularPolicy(np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])), 2)
    with pytest.raises(ValueError, match="context 0 gives only 1 items"):
        ranking.sample_slates([0, 1])
    with pytest.raises(ValueError, match="k \\(the slate size\\)"):
        RankingPolicy.from_policy(TabularPolicy.uniform(1, 3), 4)


def test_repeated_items_have_probability_zero() -> None:
    ranking = RankingPolicy.from_policy(TabularPolicy.uniform(1, 3), 2)
    assert ranking.cascade_propensities([0], [[1, 1]]).tolist() == [[pytest.approx(1 / 3), 0.0]]
