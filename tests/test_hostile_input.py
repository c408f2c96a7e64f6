"""Hostile input through the public trainer: bad reference columns, degenerate datasets, misbehaving reward functions.

Building a trainer takes about a second, so the property-based tests draw only a few examples each; the selector's own
properties are covered in test_selector_properties.py. docs/reliability.md lists every case and what it produces.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset
from hypothesis import example, given, settings
from hypothesis import strategies as st
from recording import replay_posterior, total_rewards
from test_trainer import make_trainer
from tiny import task_dataset


FEW = settings(max_examples=4, deadline=None)
REFERENCES = {"bots_reference_columns": ["weak", "strong"], "bots_implicit_weight": 0.1}


def with_reference(column: str, row: int, value) -> Dataset:
    rows = task_dataset(10, references=True).to_dict()
    rows[column] = [*rows[column][:row], value, *rows[column][row + 1 :]]
    return Dataset.from_dict(rows)


@FEW
@given(
    column=st.sampled_from(["weak", "strong"]),
    row=st.integers(0, 9),
    value=st.sampled_from([math.nan, math.inf, -math.inf])
    | st.floats(max_value=-0.5, width=32, allow_infinity=False)
    | st.floats(min_value=1.5, width=32, allow_infinity=False),
)
def test_reference_value_outside_unit_interval_is_named(tiny_model_path, tmp_path_factory, column, row, value):
    with pytest.raises(ValueError) as error:
        make_trainer(
            tiny_model_path, tmp_path_factory.mktemp("refs"), with_reference(column, row, value), **REFERENCES
        )
    assert str(error.value) == (
        "reference_pass_rates must be pass rates in [0, 1] with no NaN or inf; 1 entries are not "
        f"(task {row} {column}={value}). Fix or drop these tasks before training."
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["0.1"] * 9 + ["high"], r"could not be read as numbers: could not convert string to float: 'high'"),
        ([None] * 10, r"task 0 weak=nan"),  # an all-missing column is read as NaN
    ],
    ids=["non-numeric-string", "all-missing"],
)
def test_unreadable_reference_column_is_named(tiny_model_path, tmp_path, values, message):
    rows = {**task_dataset(10, references=True).to_dict(), "weak": values}
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_model_path, tmp_path, Dataset.from_dict(rows), **REFERENCES)


def test_numeric_strings_are_read_as_pass_rates(tiny_model_path, tmp_path):
    rows = task_dataset(10, references=True).to_dict()
    rows["weak"] = [str(value) for value in rows["weak"]]
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path, Dataset.from_dict(rows), **REFERENCES)
    np.testing.assert_allclose(trainer.selector.estimator.weak, [(i % 5) / 10 for i in range(10)], rtol=1e-6)


@FEW
@given(num_tasks=st.integers(0, 3), tasks_per_round=st.integers(1, 6))
@example(num_tasks=0, tasks_per_round=1)  # an empty dataset
@example(num_tasks=1, tasks_per_round=1)  # one task: every round is that task
def test_too_few_tasks_for_a_round(tiny_model_path, tmp_path_factory, num_tasks, tasks_per_round):
    """Empty datasets and datasets smaller than one round are refused; exactly enough tasks train."""
    output_dir = tmp_path_factory.mktemp("size")
    overrides = {"per_device_train_batch_size": 2 * tasks_per_round, "max_steps": 2}
    if num_tasks < tasks_per_round:
        with pytest.raises(ValueError) as error:
            make_trainer(tiny_model_path, output_dir, task_dataset(10).select(range(num_tasks)), **overrides)
        assert str(error.value) == (
            f"One generation batch needs {tasks_per_round} distinct tasks (generation_batch_size={2 * tasks_per_round}"
            f" // num_generations=2), but train_dataset has only {num_tasks} rows. Use more tasks or a smaller "
            "generation_batch_size."
        )
    else:
        trainer, recorder, _ = make_trainer(tiny_model_path, output_dir, task_dataset(num_tasks), **overrides)
        trainer.train()
        assert trainer.selector.round == 2
        assert all(
            len(set(call["idx"])) == tasks_per_round and max(call["idx"]) < num_tasks for call in recorder.calls
        )


def test_a_dataset_without_a_prompt_column_is_refused_when_the_trainer_is_built(tiny_model_path, tmp_path):
    """GRPO would fail at the first step with a bare KeyError: 'prompt'."""
    questions = task_dataset(10).rename_column("prompt", "question")
    with pytest.raises(ValueError) as error:
        make_trainer(tiny_model_path, tmp_path, questions)
    assert str(error.value) == (
        "train_dataset has no 'prompt' column, which GRPO reads for every task (its columns: ['idx', 'question']). "
        "Name the column holding the prompts 'prompt' (dataset.rename_column(...), or "
        "trl_bots.data.prepare_tasks(dataset, prompt_column=...))."
    )


def test_duplicate_prompts_are_separate_tasks(tiny_model_path, tmp_path):
    """Every row is a task, whatever its prompt: duplicates are credited separately, by row."""
    dataset = Dataset.from_dict({"idx": list(range(6)), "prompt": ["the same prompt"] * 6})
    trainer, recorder, _ = make_trainer(tiny_model_path, tmp_path, dataset, max_steps=3)
    trainer.train()
    alpha, beta = replay_posterior(6, [(call["idx"], total_rewards(call, [1.0])) for call in recorder.calls])
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    assert not np.allclose(alpha[0::2], alpha[1::2])  # same prompt, different rewards, different posteriors


@FEW
@given(rewards=st.lists(st.sampled_from([math.nan, -1.0, 0.0, 0.49, 0.5, 1.0, 7.0]), min_size=10, max_size=10))
def test_success_counts_from_any_reward_values(tiny_model_path, tmp_path_factory, rewards):
    """Whatever a reward returns per task (NaN for the whole group included), the posterior is the counting rule."""

    def table_reward(completions, idx, **kwargs):
        return [rewards[i] for i in idx]

    trainer, recorder, _ = make_trainer(
        tiny_model_path, tmp_path_factory.mktemp("counts"), reward_funcs=(table_reward,), max_steps=3
    )
    trainer.train()
    alpha, beta = replay_posterior(10, [(call["idx"], total_rewards(call, [1.0])) for call in recorder.calls])
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)


@FEW
@given(delta=st.integers(-3, 3).filter(bool))
def test_reward_of_wrong_length_is_named(tiny_model_path, tmp_path_factory, delta):
    def wrong_length(completions, **kwargs):
        return [1.0] * (len(completions) + delta)

    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path_factory.mktemp("length"), reward_funcs=(wrong_length,), max_steps=1
    )
    with pytest.raises(ValueError) as error:
        trainer.train()
    assert str(error.value) == (
        f"The reward function 'wrong_length' returned {4 + delta} rewards, but 4 were expected (one per "
        "prompt-completion pair). Make sure the reward function returns exactly one reward per completion."
    )
    assert trainer.selector.round == 0


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_reward_stops_training_with_its_function_named(tiny_model_path, tmp_path, value):
    """Before: +inf counted as a success without a word (and GRPO's advantages of the group became NaN)."""

    def grader(completions, idx, **kwargs):
        return [value if i == idx[0] else 1.0 for i in idx]

    def logged_only(completions, idx, **kwargs):  # weight 0: its inf is GRPO's NaN term, ignored, as GRPO does
        return [math.inf] * len(idx)

    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path, reward_funcs=(grader, logged_only), reward_weights=[1.0, 0.0], max_steps=1
    )
    with pytest.raises(ValueError) as error:
        trainer.train()
    assert str(error.value) == (
        f"Reward function 'grader' returned {value} for 2 completions of the round (completions [0, 1]), which is "
        "neither a score nor None: BOTS cannot count it as a success or a failure, and GRPO's advantages of its group "
        "would be NaN. Return a finite number, or None where the reward does not apply."
    )
    assert trainer.selector.round == 0


def test_reward_that_raises_propagates_and_leaves_the_selector_alone(tiny_model_path, tmp_path):
    calls = []

    def crashing_grader(completions, idx, **kwargs):
        calls.append(idx)
        if len(calls) == 3:
            raise RuntimeError("grader crashed in round 3")
        return [1.0] * len(idx)

    trainer, recorder, _ = make_trainer(tiny_model_path, tmp_path, reward_funcs=(crashing_grader,), max_steps=5)
    with pytest.raises(RuntimeError, match="grader crashed in round 3"):
        trainer.train()
    # The two rounds scored before the crash are credited; the crashing round is not.
    rounds = [(call["idx"], total_rewards(call, [1.0])) for call in recorder.calls]
    assert len(rounds) == trainer.selector.round == 2
    np.testing.assert_allclose(trainer.selector.alpha, replay_posterior(10, rounds)[0], rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, replay_posterior(10, rounds)[1], rtol=1e-6)
