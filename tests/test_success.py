"""A round's successes and scored trials from GRPO's rewards (trl_bots.success): the counting rule, on arrays."""

import math

import numpy as np
import pytest

from trl_bots.success import (
    NeverScored,
    success_columns,
    success_reward_names,
    successes_and_trials,
    unscored_cause,
)


NAN = math.nan


def test_weighted_total_counts_a_completion_that_any_weighted_reward_scored():
    """GRPO's semantics: None means "this reward does not apply"; the total is the weighted nansum of the rest."""
    # 2 tasks x 3 completions; columns: accuracy (weight 1), format bonus (weight 0.5), a logged-only reward (weight 0)
    rewards = np.array(
        [
            [1.0, 0.0, NAN],  # 1.0 >= 0.5: success (an unweighted NaN does not matter)
            [0.0, 1.0, 0.0],  # 0.5 >= 0.5: success, at the threshold
            [NAN, 1.0, 0.0],  # accuracy does not apply: the bonus alone scores it, 0.5, a success
            [0.0, 0.0, 0.0],  # failure
            [NAN, 0.8, 0.0],  # the bonus alone: 0.4, a failure
            [NAN, NAN, 1.0],  # no weighted reward applies: not a trial (the weight-0 reward does not count)
        ]
    )
    successes, trials = successes_and_trials(rewards, np.array([1.0, 0.5, 0.0]), 3)
    assert successes.tolist() == [3.0, 0.0] and trials.tolist() == [3.0, 2.0]
    assert successes.dtype == trials.dtype == np.float64


def test_a_math_and_a_code_reward_each_none_on_the_others_rows_score_every_row():
    """The everyday multi-task setup: each row is scored by the reward that applies to it."""
    math_reward = [1.0, 0.0, NAN, NAN]  # task 0: math, task 1: code (2 completions each)
    code_reward = [NAN, NAN, 1.0, 1.0]
    rewards = np.stack([math_reward, code_reward], axis=1)
    for columns in (None, [0, 1]):  # the weighted total, or both named as deciding success
        successes, trials = successes_and_trials(rewards, np.ones(2), 2, success_columns=columns)
        assert successes.tolist() == [1.0, 2.0] and trials.tolist() == [2.0, 2.0]
    successes, trials = successes_and_trials(rewards, np.ones(2), 2, success_columns=[0])  # math decides alone
    assert successes.tolist() == [1.0, 0.0] and trials.tolist() == [2.0, 0.0]


def test_one_named_reward_decides_with_its_threshold_or_as_a_fraction():
    rewards = np.array([[0.2, 9.0], [0.7, NAN], [NAN, 1.0], [1.0, -3.0]])  # 2 tasks x 2 completions
    weights = np.ones(2)
    assert [a.tolist() for a in successes_and_trials(rewards, weights, 2, success_columns=[0], threshold=0.6)] == [
        [1.0, 1.0],
        [2.0, 1.0],
    ]
    fractional = successes_and_trials(rewards, weights, 2, success_columns=[0], fractional=True)
    np.testing.assert_allclose(fractional[0], [0.9, 1.0])
    assert fractional[1].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got \[9.0, -3.0\]"):
        successes_and_trials(rewards, weights, 2, success_columns=[1], fractional=True)


def test_named_rewards_are_summed_unweighted_so_a_weight_zero_reward_can_decide():
    rewards = np.array([[0.3, 0.3, 1.0], [NAN, 0.6, 0.0], [NAN, NAN, 1.0]])  # 3 tasks x 1 completion
    weights = np.array([1.0, 0.0, 2.0])
    successes, trials = successes_and_trials(rewards, weights, 1, success_columns=[0, 1])
    assert successes.tolist() == [1.0, 1.0, 0.0] and trials.tolist() == [1.0, 1.0, 0.0]  # 0.6 and 0.6; unscored


def test_an_infinite_deciding_reward_is_an_error_and_an_ignored_one_is_not():
    rewards = np.array([[1.0, math.inf], [0.0, 1.0], [-math.inf, 0.0], [1.0, 0.0]])  # 2 tasks x 2 completions
    with pytest.raises(
        ValueError, match=r"^Reward function 'acc' returned -inf for 1 completions .*\(completions \[2\]\)"
    ):
        successes_and_trials(rewards, np.array([1.0, 0.0]), 2, reward_names=["acc", "log"])
    with pytest.raises(ValueError, match=r"^Reward function number 1 returned inf for 1 completions"):
        successes_and_trials(rewards, np.ones(2), 2, success_columns=[1])
    successes, trials = successes_and_trials(rewards[[0, 1, 3, 3]], np.array([1.0, 0.0]), 2)  # inf has weight 0
    assert successes.tolist() == [1.0, 2.0] and trials.tolist() == [2.0, 2.0]


def test_success_reward_names_and_columns():
    assert success_reward_names(None) is None
    assert success_reward_names("acc") == ["acc"] == success_reward_names(("acc",))
    for bad in ([], "", ["acc", "acc"], ["acc", 3], 3):
        with pytest.raises(ValueError, match=r"bots_success_reward must name the reward function .*got "):
            success_reward_names(bad)
    assert success_columns(None, ["acc", "fmt"]) is None
    assert success_columns(["fmt", "acc"], ["acc", "fmt"]) == [1, 0]
    with pytest.raises(ValueError) as error:
        success_columns(["acc", "code"], ["acc", "fmt"])
    assert str(error.value) == (
        "bots_success_reward=['acc', 'code']: 'code' is not one of the reward functions ['acc', 'fmt']. Use their "
        "names, or None for the weighted total reward."
    )


def test_unscored_cause_names_what_returned_nothing():
    assert unscored_cause(["acc"], ["acc", "fmt"], [1.0, 1.0]) == (
        "bots_success_reward='acc' returned None or NaN for every completion"
    )
    assert unscored_cause(["acc", "code"], ["acc", "code"], [1.0, 1.0]) == (
        "bots_success_reward=['acc', 'code'] returned None or NaN for every completion"
    )
    assert unscored_cause(None, ["acc", "fmt", "log"], [1.0, 0.5, 0.0]) == (
        "no reward function with a non-zero weight ['acc', 'fmt'] returned a number for any completion"
    )


def test_never_scored_tasks_are_reported_once_after_three_servings():
    watch = NeverScored(5, None)
    rounds = [([0, 1], [2, 0]), ([1, 2], [0, 2]), ([3, 4], [2, 2]), ([1, 0], [0, 0])]
    findings = [watch.observe(np.array(tasks), np.array(trials, dtype=float)) for tasks, trials in rounds]
    assert findings[:3] == [[], [], []]  # task 1 served twice, task 0 scored once: nothing yet
    assert findings[3] == [
        "BOTS: tasks [1] were served 3 or more times and never scored (no reward function with a non-zero weight "
        "returned a number for them): they keep the prior, and their rollouts teach the selector nothing whenever "
        "they are selected. Make a reward function return numbers for these rows, or drop these rows. (Reported once.)"
    ]
    assert watch.observe(np.array([1, 2]), np.zeros(2)) == []  # once


def test_a_domain_never_scored_is_reported_once_and_its_tasks_with_it():
    names, codes = ("code", "math"), np.array([0, 0, 0, 1, 1, 1], dtype=np.uint8)
    watch = NeverScored(6, ["guru_reward"], codes, names)
    findings = [watch.observe(np.array([k % 3, 3 + k % 3]), np.array([0.0, 2.0])) for k in range(3)]
    assert findings[:2] == [[], []]
    assert findings[2] == [
        "BOTS: domain 'code' was served in 3 rounds and none of its completions was ever scored "
        "(bots_success_reward='guru_reward' returned None or NaN for them): its tasks keep the prior, and its share of "
        "every batch teaches the selector nothing. Make a reward function return numbers for these rows and list it in "
        "bots_success_reward (e.g. a code reward that returns None for the other domains, beside guru_reward), or give "
        "'code' the weight 0 in bots_domain_weights."
    ]
    # Task 0 reaches 3 servings unscored, but its domain was reported: said once, with it. Math is scored.
    assert [watch.observe(np.array([0, 3]), np.array([0.0, 2.0])) for _ in range(3)] == [[], [], []]
    # A domain scored once is not reported; a task of it never scored still is.
    scored_once = NeverScored(6, None, codes, names)
    scored_once.observe(np.array([0, 3]), np.array([1.0, 2.0]))
    findings = [scored_once.observe(np.array([1, 4]), np.array([0.0, 2.0])) for _ in range(4)]
    assert [len(found) for found in findings] == [0, 0, 1, 0] and findings[2][0].startswith("BOTS: tasks [1] were")
