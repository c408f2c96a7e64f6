"""A round's successes and scored trials from GRPO's rewards (trl_bots.success): the counting rule, on arrays."""

import math

import numpy as np
import pytest

from trl_bots.success import successes_and_trials, unscored_cause


NAN = math.nan


def test_weighted_total_counts_a_completion_only_when_every_weighted_reward_scored_it():
    # 2 tasks x 3 completions; columns: accuracy (weight 1), format bonus (weight 0.5), a logged-only reward (weight 0)
    rewards = np.array(
        [
            [1.0, 0.0, NAN],  # 1.0 >= 0.5: success (an unweighted NaN does not matter)
            [0.0, 1.0, 0.0],  # 0.5 >= 0.5: success, at the threshold
            [NAN, 1.0, 0.0],  # accuracy unscorable: not a trial, although the bonus scored
            [0.0, 0.0, 0.0],  # failure
            [0.0, 0.8, 0.0],  # 0.4: failure
            [1.0, NAN, 1.0],  # the bonus unscorable: not a trial
        ]
    )
    successes, trials = successes_and_trials(rewards, np.array([1.0, 0.5, 0.0]), 3)
    assert successes.tolist() == [2.0, 0.0] and trials.tolist() == [2.0, 2.0]
    assert successes.dtype == trials.dtype == np.float64


def test_one_named_reward_decides_with_its_threshold_or_as_a_fraction():
    rewards = np.array([[0.2, 9.0], [0.7, NAN], [NAN, 1.0], [1.0, -3.0]])  # 2 tasks x 2 completions
    weights = np.ones(2)
    assert [a.tolist() for a in successes_and_trials(rewards, weights, 2, success_column=0, threshold=0.6)] == [
        [1.0, 1.0],
        [2.0, 1.0],
    ]
    fractional = successes_and_trials(rewards, weights, 2, success_column=0, fractional=True)
    np.testing.assert_allclose(fractional[0], [0.9, 1.0])
    assert fractional[1].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got \[9.0, -3.0\]"):
        successes_and_trials(rewards, weights, 2, success_column=1, fractional=True)


def test_unscored_cause_names_what_returned_nothing():
    assert unscored_cause("acc", ["acc", "fmt"], [1.0, 1.0]) == (
        "bots_success_reward='acc' returned None or NaN for every completion"
    )
    assert unscored_cause(None, ["acc", "fmt", "log"], [1.0, 0.5, 0.0]) == (
        "every completion lacked a score from at least one reward function with a non-zero weight ['acc', 'fmt']"
    )
