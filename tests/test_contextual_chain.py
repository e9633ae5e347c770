"""The contextual chain end to end: simulated logs -> learner -> blend with HF by segment -> evaluate."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import hfrl.envs  # noqa: F401  (registers the envs)
from hfrl.blending import BlendedPolicy
from hfrl.envs import collect_logs
from hfrl.frequencies import SegmentFrequency
from hfrl.learners import DirectMethodLearner, LinUCB
from hfrl.ope import evaluate
from hfrl.policies import Policy

N_ITEMS, DIM = 10, 6


@pytest.fixture(scope="module")
def shop_and_logs():
    env = gym.make("hfrl/ContextualRecommendation-v0", n_items=N_ITEMS, context_dim=DIM, bias_mean=-1.0)
    shop = env.unwrapped
    logs = collect_logs(env, shop.logging_policy(seed=0, epsilon=0.3), 40_000, seed=0)
    return shop, logs


def test_learner_blended_with_segment_hf_is_evaluated_near_its_exact_value(shop_and_logs):
    shop, logs = shop_and_logs
    columns = logs.attrs["context_columns"]
    train, test = logs.iloc[:20_000], logs.iloc[20_000:].reset_index(drop=True)
    learner = DirectMethodLearner().fit(train, context_columns=columns, n_actions=N_ITEMS)
    hf = SegmentFrequency(columns, n_segments=8, random_state=0).fit(train, n_actions=N_ITEMS)
    blended = BlendedPolicy(learner.policy_, hf, 0.3)
    assert isinstance(learner.policy_, Policy) and isinstance(hf, Policy) and isinstance(blended, Policy)

    x = test[columns].to_numpy()
    np.testing.assert_allclose(blended.probabilities(x),
                               0.7 * learner.policy_.probabilities(x) + 0.3 * hf.probabilities(x))
    truth = shop.policy_value(blended, x)
    # the learner's greedy policy beats the logging policy and HF; the blend's value mixes its parts'
    learned, by_segment = shop.policy_value(learner.policy_, x), shop.policy_value(hf, x)
    assert learned > max(shop.policy_value(shop.logging_policy(seed=0, epsilon=0.3), x), by_segment)
    assert truth == pytest.approx(0.7 * learned + 0.3 * by_segment, rel=1e-12)

    result = evaluate(test, blended, ("ips", "snips", "dm", "dr"), context_columns=columns)
    assert result.loc["dr", "reward_model"] == "cross-fitted (2 folds)"
    for name in ("ips", "snips", "dr"):
        row = result.loc[name]
        assert abs(row["estimate"] - truth) <= 4 * row["std_error"], (name, row["estimate"], truth)
        assert row["ci_low"] <= truth <= row["ci_high"], name
    per_row = evaluate(test, blended.probabilities(test[columns]), ("ips", "snips"))
    np.testing.assert_allclose(result.loc[["ips", "snips"], "estimate"], per_row["estimate"], rtol=1e-12)


def test_an_online_learner_policy_is_evaluated_on_collected_logs(shop_and_logs):
    shop, logs = shop_and_logs
    columns = logs.attrs["context_columns"]
    bandit = LinUCB(alpha=0.5, n_envs=32, random_state=0).fit(shop, n_steps=8_000)
    policy = bandit.policy_.with_exploration(0.01)
    assert isinstance(policy, Policy)
    truth = shop.policy_value(policy, logs[columns])
    snips = evaluate(logs, policy, "snips", context_columns=columns).loc["snips"]
    assert abs(snips["estimate"] - truth) <= 4 * snips["std_error"]
    with pytest.raises(ValueError, match="context_columns"):
        evaluate(logs, policy, "snips")
