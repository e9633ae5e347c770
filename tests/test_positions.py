"""Tests of hfrl.positions: examination probabilities, position-debiased and per-position HF, the
blend of ranking policies; the truth comes from SlatePage-v0's position click model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from docs_examples import run_docs_example
from hfrl.envs import SlateEnv, collect_slate_logs, slate_policy_value
from hfrl.errors import LogValidationError
from hfrl.frequencies import HistoricalFrequency
from hfrl.policies import RankingPolicy, TabularPolicy
from hfrl.positions import PositionFrequency, blend_rankings, examination_probabilities


def _tilted(env: SlateEnv, strength: float) -> np.ndarray:
    """Item policy tilted toward (strength > 0) or away from (< 0) each segment's attractive items."""
    attraction = env.attraction_rows(np.arange(env.n_segments))
    z = (attraction - attraction.mean(axis=1, keepdims=True)) / attraction.std(axis=1, keepdims=True)
    weights = np.exp(strength * z)
    return weights / weights.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# examination probabilities


@pytest.mark.parametrize("tilt", [0.0, 3.0], ids=["uniform-over-positions", "logging-favours-good-items"])
def test_examination_intervals_cover_the_simulators_truth(tilt: float) -> None:
    # 40 logs x 3 positions = 120 intervals; at 95% nominal, fewer than 88% covering has probability
    # ~0.001, and z-scores whose spread is far from 1 would mean wrong standard errors (too wide too).
    env = SlateEnv(n_segments=3, n_items=12, k=4)
    truth = env.examination / env.examination[0]
    logging = RankingPolicy.from_policy(TabularPolicy(_tilted(env, tilt)), 4)
    covered, z = [], []
    for seed in range(40):
        table = examination_probabilities(collect_slate_logs(env, logging, 3000, seed=seed))
        assert table["theta"][0] == 1.0 and table["std_error"][0] == 0.0
        theta, se = table["theta"].to_numpy()[1:], table["std_error"].to_numpy()[1:]
        low, high = table["ci_low"].to_numpy()[1:], table["ci_high"].to_numpy()[1:]
        covered += list((low <= truth[1:]) & (truth[1:] <= high))
        z += list((np.log(theta) - np.log(truth[1:])) / (se / theta))
    assert np.mean(covered) >= 0.88
    assert 0.75 <= np.std(z) <= 1.3 and abs(np.mean(z)) < 0.35


def test_pooled_click_rates_are_biased_when_logging_favours_items_the_matched_ratio_is_not() -> None:
    env = SlateEnv(n_segments=3, n_items=12, k=4)
    truth = env.examination / env.examination[0]
    logging = RankingPolicy.from_policy(TabularPolicy(_tilted(env, 3.0)), 4)
    naive_error, matched_error = [], []
    for seed in range(5):
        logs = collect_slate_logs(env, logging, 3000, seed=seed)
        rates = logs.groupby("position")["reward"].mean().to_numpy()
        naive_error.append(np.abs(rates / rates[0] - truth).mean())
        matched_error.append(np.abs(examination_probabilities(logs)["theta"].to_numpy() - truth).mean())
    assert np.mean(naive_error) > 3 * np.mean(matched_error)


def test_bootstrap_standard_errors_agree_with_greenland_robins_and_are_deterministic() -> None:
    env = SlateEnv(n_segments=2, n_items=8, k=3)
    logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 8), 3), 5000, seed=1)
    analytic = examination_probabilities(logs)
    boot = examination_probabilities(logs, n_bootstrap=150, random_state=0)
    np.testing.assert_allclose(boot["theta"], analytic["theta"])
    ratio = boot["std_error"].to_numpy()[1:] / analytic["std_error"].to_numpy()[1:]
    assert ((ratio > 0.7) & (ratio < 1.4)).all()
    again = examination_probabilities(logs, n_bootstrap=150, random_state=0)
    pd.testing.assert_frame_equal(boot, again)
    assert boot.attrs["method"] == "bootstrap" and analytic.attrs["method"] == "greenland_robins"


def test_examination_table_counts_and_unmatched_positions() -> None:
    logs = pd.DataFrame({"slate_id": [0, 0, 1, 1, 2, 2], "position": [0, 1, 0, 1, 0, 1],
                         "action": [0, 1, 1, 0, 2, 3], "reward": [1, 0, 1, 1, 0, 1]})
    table = examination_probabilities(logs, n_positions=3)
    assert table["impressions"].tolist() == [3, 3, 0] and table["clicks"].tolist() == [2.0, 2.0, 0.0]
    assert table["matched_items"].tolist() == [3, 2, 0]  # items 0 and 1 were shown at 0 and 1
    assert np.isnan(table["theta"][2])
    # item 0: 1 click of 1 at both; item 1: 1 of 1 at 0, 0 of 1 at 1 -> R = 1/2 + 0, S = 1/2 + 1/2
    assert table["theta"][1] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# PositionFrequency


def test_a_click_at_position_j_counts_one_over_theta_j_through_historical_frequency() -> None:
    env = SlateEnv(n_segments=2, n_items=6, k=3)
    logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 6), 3), 500, seed=0)
    theta = np.array([1.0, 0.4, 0.2])
    hf = PositionFrequency(theta=theta, prior_strength=2.0).fit(logs)
    weighted = logs.assign(w=logs["reward"] / theta[logs["position"]])
    expected = weighted.pivot_table(index="state", columns="action", values="w", aggfunc="sum", fill_value=0)
    np.testing.assert_allclose(hf.counts_, expected.to_numpy())
    reference = HistoricalFrequency(prior_strength=2.0, weight_column="w").fit(
        logs.assign(w=1.0 / theta[logs["position"]]))
    np.testing.assert_allclose(hf.probabilities_, reference.probabilities_)
    np.testing.assert_allclose(hf.to_policy().table_, hf.probabilities_)
    assert hf.examination_ is None and hf.to_policy().metadata["theta"] == theta.tolist()


def test_debiased_share_recovers_relevance_when_a_past_ranker_put_weak_items_on_top() -> None:
    # Every item is on every page (k = n_items), so a share differs only by the slots items got.
    env = SlateEnv(n_segments=3, n_items=6, k=6, examination=np.linspace(1.0, 0.2, 6))
    attraction = env.attraction_rows(np.arange(3))
    logging = RankingPolicy.from_policy(TabularPolicy(_tilted(env, -2.0)), 6)
    for seed in range(3):
        logs = collect_slate_logs(env, logging, 20_000, seed=seed)
        raw = HistoricalFrequency(prior_strength=0).fit(logs).probabilities_
        debiased = PositionFrequency(prior_strength=0).fit(logs)
        assert debiased.examination_ is not None
        rho = [np.mean([stats.spearmanr(p[s], attraction[s])[0] for s in range(3)])
               for p in (raw, debiased.probabilities_)]
        value = [slate_policy_value(env, RankingPolicy.from_policy(TabularPolicy(p), 6))
                 for p in (raw, debiased.probabilities_)]
        assert rho[1] > 0.9 and rho[1] > rho[0] + 0.5
        assert value[1] > value[0] + 0.02


def test_debiased_rate_estimates_relevance_raw_rate_does_not() -> None:
    env = SlateEnv(n_segments=3, n_items=12, k=3)  # examination 1, 1/2, 1/3
    attraction = env.attraction_rows(np.arange(3))
    logging = RankingPolicy.from_policy(TabularPolicy(_tilted(env, -2.0)), 3)
    logs = collect_slate_logs(env, logging, 20_000, seed=0)
    raw = HistoricalFrequency("rate", prior_strength=0).fit(logs, n_actions=12)
    estimated = PositionFrequency("rate", prior_strength=0).fit(logs, n_actions=12)
    known = PositionFrequency("rate", theta=env.examination, prior_strength=0).fit(logs, n_actions=12)
    raw_error = np.abs(raw.rates_ - attraction).mean()
    assert np.abs(known.hf_.rates_ - attraction).mean() < raw_error / 2
    assert np.abs(estimated.hf_.rates_ - attraction).mean() < raw_error / 2


def test_per_position_rows_are_distributions_one_per_state_and_position() -> None:
    env = SlateEnv(n_segments=2, n_items=6, k=3)
    logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 6), 3), 2000, seed=0)
    hf = PositionFrequency(per_position=True, prior_strength=0).fit(logs)
    assert hf.probabilities_.shape == (6, 6) and hf.position_table_.shape == (2, 3, 6)
    np.testing.assert_allclose(hf.probabilities_.sum(axis=1), 1.0)
    assert (hf.probabilities_ >= 0).all() and hf.theta_ is None
    for j in range(3):  # without smoothing, row (s, j) is HF of the rows at position j alone
        alone = HistoricalFrequency(prior_strength=0).fit(logs[logs["position"] == j], n_states=2,
                                                          n_actions=6)
        np.testing.assert_allclose(hf.position_table_[:, j], alone.probabilities_)
        np.testing.assert_allclose(hf.probabilities_[hf.context_ids([0, 1], j)], alone.probabilities_)
    smoothed = PositionFrequency(per_position=True, prior_strength=5.0).fit(logs)
    np.testing.assert_allclose(smoothed.probabilities_.sum(axis=1), 1.0)
    assert not np.allclose(smoothed.probabilities_, hf.probabilities_)
    assert smoothed.to_policy().n_states == 6


def test_bad_ranking_logs_and_parameters_name_what_is_wrong() -> None:
    logs = pd.DataFrame({"slate_id": [0, 0, 0], "position": [0, 1, 2], "action": [0, 1, 2],
                         "reward": [1, 0, 1]})
    with pytest.raises(LogValidationError, match="'position'") as missing:
        PositionFrequency(theta=[1.0, 0.5, 0.2]).fit(logs.drop(columns="position"))
    assert missing.value.column == "position"
    with pytest.raises(LogValidationError, match=r"column 'position': row 2 has 2") as beyond:
        PositionFrequency(theta=[1.0, 0.5]).fit(logs)
    assert beyond.value.column == "position" and beyond.value.first_row == 2
    with pytest.raises(LogValidationError, match="row 2"):
        examination_probabilities(logs, n_positions=2)
    with pytest.raises(ValueError, match=r"theta\[1\] = 0.0"):
        PositionFrequency(theta=[1.0, 0.0, 0.2]).fit(logs)
    with pytest.raises(ValueError, match=r"theta\[2\] = -1.0"):
        PositionFrequency(theta=[1.0, 0.5, -1.0]).fit(logs)
    with pytest.raises(LogValidationError, match="column 'reward': row 1") as negative:
        PositionFrequency(theta=[1.0, 0.5, 0.2]).fit(logs.assign(reward=[1, -1, 0]))
    assert negative.value.column == "reward"
    with pytest.raises(ValueError, match="per_position"):
        PositionFrequency(theta=[1.0, 0.5, 0.2], per_position=True).fit(logs)
    with pytest.raises(ValueError, match="position 1"):  # no item shown at both 0 and 1: theta unknown
        PositionFrequency().fit(logs)


# ---------------------------------------------------------------------------------------------
# blend_rankings


def _fitted_hf_and_pi() -> tuple[PositionFrequency, RankingPolicy]:
    env = SlateEnv(n_segments=2, n_items=5, k=3)
    logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 5), 3), 3000, seed=2)
    hf = PositionFrequency().fit(logs)
    pi = RankingPolicy.from_policy(TabularPolicy(_tilted(env, 1.0)), 3)
    return hf, pi


def test_blend_rankings_at_alpha_0_and_1_is_pi_and_hf() -> None:
    hf, pi = _fitted_hf_and_pi()
    states = [0, 1]
    hf_ranking = RankingPolicy.from_policy(hf.to_policy(), 3)
    for alpha, end in ((0.0, pi), (1.0, hf_ranking)):
        blended = blend_rankings(pi, hf, alpha)
        assert blended.k == 3
        np.testing.assert_allclose(blended.item_probabilities(states), end.item_probabilities(states))
        np.testing.assert_allclose(blended.position_probabilities(states), end.position_probabilities(states))
    middle = blend_rankings(pi.policy, hf_ranking, 0.3, k=2)  # an item policy and a ranking as HF
    np.testing.assert_allclose(middle.item_probabilities(states),
                               0.7 * pi.item_probabilities(states) + 0.3 * hf.probabilities_)
    assert middle.k == 2


def test_the_blend_of_rankings_is_not_the_mixture_of_their_position_marginals() -> None:
    hf, pi = _fitted_hf_and_pi()
    alpha, states = 0.5, [0, 1]
    blended = blend_rankings(pi, hf, alpha).position_probabilities(states)
    mixture = ((1 - alpha) * pi.position_probabilities(states)
               + alpha * RankingPolicy.from_policy(hf.to_policy(), 3).position_probabilities(states))
    np.testing.assert_allclose(blended[:, 0], mixture[:, 0])  # the top slot is the formula
    assert np.abs(blended[:, 1:] - mixture[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(blended.sum(axis=2), 1.0)


def test_blend_rankings_refuses_what_is_not_an_item_policy() -> None:
    hf, pi = _fitted_hf_and_pi()
    env = SlateEnv(n_segments=2, n_items=5, k=3)
    logs = collect_slate_logs(env, pi, 500, seed=0)
    per_position = PositionFrequency(per_position=True).fit(logs)
    with pytest.raises(ValueError, match="per-position HF"):
        blend_rankings(pi, per_position, 0.5)
    with pytest.raises(ValueError, match="k is required"):
        blend_rankings(pi.policy, hf, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        blend_rankings(pi, hf, 1.5)


def test_the_docs_example_runs_and_its_numbers_are_the_ones_quoted(capsys: pytest.CaptureFixture) -> None:
    section = run_docs_example("rankings.md", "HF and the blend for rankings")
    printed = capsys.readouterr().out
    values = {name: float(v) for name, v in re.findall(r"^(raw HF|debiased HF) ([0-9.]+)$", printed, re.M)}
    assert values["debiased HF"] > values["raw HF"]
    for value in values.values():
        assert f"{value:.3f}" in section
    thetas = re.findall(r"^\d+\s+\d+\s+([0-9.]+)\s", printed, re.M)[1:]
    assert thetas and all(theta in section for theta in thetas)


def test_a_file_through_duckdb_and_a_log_without_state_give_the_same_tables(tmp_path: Path) -> None:
    env = SlateEnv(n_segments=2, n_items=6, k=3)
    logs = collect_slate_logs(env, RankingPolicy.from_policy(TabularPolicy.uniform(2, 6), 3), 2000, seed=0)
    path = tmp_path / "ranking.csv"
    logs.to_csv(path, index=False)
    pd.testing.assert_frame_equal(examination_probabilities(path), examination_probabilities(logs))
    from_file, in_memory = PositionFrequency().fit(path), PositionFrequency().fit(logs)
    np.testing.assert_allclose(from_file.probabilities_, in_memory.probabilities_)
    assert from_file.fingerprint_ == in_memory.fingerprint_
    one_state = PositionFrequency(theta=[1.0, 0.5, 0.3], prior_strength=0).fit(logs.drop(columns="state"))
    pooled = PositionFrequency(theta=[1.0, 0.5, 0.3], prior_strength=0).fit(logs.assign(state=0))
    assert one_state.probabilities_.shape == (1, 6)
    np.testing.assert_allclose(one_state.probabilities_, pooled.probabilities_)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
       st.sampled_from(["share", "rate"]), st.floats(0.0, 5.0))
def test_rows_are_distributions_and_debiased_clicks_add_up(seed: int, theta: list[float], kind: str,
                                                           prior_strength: float) -> None:
    rng = np.random.default_rng(seed)
    n_slates = 20
    logs = pd.DataFrame({"slate_id": np.repeat(np.arange(n_slates), 3),
                         "position": np.tile(np.arange(3), n_slates),
                         "state": np.repeat(rng.integers(0, 3, n_slates), 3),
                         "action": np.concatenate([rng.permutation(5)[:3] for _ in range(n_slates)]),
                         "reward": rng.integers(0, 2, 3 * n_slates)})
    hf = PositionFrequency(kind, theta=theta, prior_strength=prior_strength)
    hf.fit(logs, n_states=3, n_actions=5)
    np.testing.assert_allclose(hf.probabilities_.sum(axis=1), 1.0)
    assert (hf.probabilities_ >= 0).all()
    clicks = logs["reward"].to_numpy()
    position_theta = np.asarray(theta)[logs["position"]]
    expected = (clicks / position_theta).sum() if kind == "share" else clicks.sum()
    assert hf.counts_.sum() == pytest.approx(expected)
