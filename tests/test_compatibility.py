"""BOTSGRPOTrainer as a drop-in for TRL's GRPOTrainer: the rows of docs/compatibility.md that no other test covers.

Each test trains a tiny model for one or two steps with one TRL feature switched on, then checks what BOTS promises
for it: the refusal message, or that every selected task was trained on and credited.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import trl
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from recording import RewardRecorder, SelectionLog, replay_posterior, total_rewards
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args
from transformers import TrainerCallback

from trl_bots.trainer import BOTSGRPOTrainer


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory and rollout_func are experimental in TRL


class CountingEnv:
    """A TRL environment: `reset` receives the row's columns, `count` is its tool."""

    def reset(self, idx: int, **kwargs) -> str:
        self.task = idx
        return f" (task {idx})"

    def count(self, n: int) -> int:
        """Count to n.

        Args:
            n: The number to count to.

        Returns:
            The same number.
        """
        return n


class EchoEnv(CountingEnv):
    """A second environment, with another tool."""

    def echo(self, text: str) -> str:
        """Repeat the text.

        Args:
            text: The text to repeat.

        Returns:
            The same text.
        """
        return text


class StrictResetEnv(CountingEnv):
    """An environment whose `reset` takes exactly the dataset's own columns, as stock GRPO allows."""

    def reset(self, idx: int, prompt: list) -> None:
        self.task = idx


def tool_tokenizer(model_path):
    """The tiny model and tokenizer, with TRL's Qwen3 chat template: TRL needs one that renders tool calls."""
    model, tokenizer = load_tiny(model_path)
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    return model, tokenizer


def build(
    model_path,
    output_dir,
    dataset,
    reward_funcs=(even_task_reward,),
    model=None,
    tokenizer=None,
    trainer_kwargs=None,
    **overrides,
):
    """A BOTSGRPOTrainer on the tiny model (or `model`), 2 steps unless `overrides` say otherwise."""
    tiny_model, tiny_tokenizer = load_tiny(model_path)
    return BOTSGRPOTrainer(
        model if model is not None else tiny_model,
        list(reward_funcs),
        args=tiny_args(str(output_dir), **{"max_steps": 2, **overrides}),
        train_dataset=dataset,
        processing_class=tokenizer if tokenizer is not None else tiny_tokenizer,
        **(trainer_kwargs or {}),
    )


@pytest.mark.parametrize(
    ("environment_factory", "advice"),
    [
        (None, "Pass the tasks as a datasets.Dataset with a 'prompt' column."),
        (CountingEnv, "makes up its own tasks in reset\\(\\) leaves BOTS nothing to choose among"),
        ({"a": CountingEnv, "b": CountingEnv}, "plus the 'environment' column when environment_factory is a dict"),
    ],
    ids=["no-environment", "environment", "environments"],
)
def test_no_train_dataset_is_refused_with_its_own_message(tiny_model_path, tmp_path, environment_factory, advice):
    """TRL trains an environment that owns its data without a dataset; BOTS has no tasks to select then."""
    kwargs = {} if environment_factory is None else {"environment_factory": environment_factory}
    # max_steps=-1: TRL would ask for max_steps first, a fix that would not make BOTS work.
    with pytest.raises(ValueError, match="needs a train_dataset, got None: BOTS chooses every generation batch") as e:
        build(tiny_model_path, tmp_path, None, trainer_kwargs=kwargs, max_steps=-1)
    assert e.match(advice)


@pytest.mark.parametrize("shuffle_dataset", [False, True])
def test_shuffle_dataset_false_warns_once(tiny_model_path, tmp_path, shuffle_dataset):
    """The selector, not the dataset order, decides what is trained on: an unshuffled order cannot be honoured."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = build(tiny_model_path, tmp_path, task_dataset(10), shuffle_dataset=shuffle_dataset, max_steps=2)
        trainer.train()
    messages = [str(w.message) for w in caught if "shuffle_dataset" in str(w.message)]
    if shuffle_dataset:
        assert messages == []
    else:
        assert messages == [
            "shuffle_dataset=False has no effect with BOTSGRPOTrainer: the selector (bots_strategy='bots') chooses the "
            "tasks of every generation batch, so rows are not read in dataset order. The closest to an unshuffled "
            "GRPO run is bots_strategy='uniform': as there, every task is served once per epoch, but in a random "
            "order (a fresh permutation each epoch, seeded by bots_seed, or seed); bots_strategy='easy2hard' repeats "
            "one fixed order, easiest first by the reference pass rates."
        ]
    assert trainer.selector.round == 2


class RoundReader(TrainerCallback):
    """What a callback can read about the rows trained on: `trainer.bots_round_tasks` before and after each step."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.begin, self.end = [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin.append(self.trainer.bots_round_tasks)

    def on_step_end(self, args, state, control, **kwargs):
        self.end.append(self.trainer.bots_round_tasks.tolist())


class RawBatchReader(BOTSGRPOTrainer):
    """A subclass that reads the raw batch in `training_step`, the way TRL's own hooks see it."""

    def training_step(self, model, inputs, num_items_in_batch):
        loss = super().training_step(model, inputs, num_items_in_batch)
        slots = [row["bots_task_id"] for row in inputs]  # the placeholders carry the slot, not the task
        self.raw_batches.append({"slots": slots, "rows": self.bots_round_tasks[slots].tolist()})
        return loss


def test_hooks_read_the_selected_rows(tiny_model_path, tmp_path):
    """The DataLoader's rows are placeholders; `bots_round_tasks` and the completions table name the real rows."""
    model, tokenizer = load_tiny(tiny_model_path)
    recorder = RewardRecorder()
    trainer = RawBatchReader(
        model,
        recorder.wrap(even_task_reward),
        args=tiny_args(str(tmp_path), max_steps=3, log_completions=True),
        train_dataset=task_dataset(10),
        processing_class=tokenizer,
    )
    trainer.raw_batches = []
    reader = RoundReader(trainer)
    trainer.add_callback(reader)
    selections = SelectionLog(trainer)
    trainer.train()

    rounds = [selection["tasks"] for selection in selections.selections]
    assert len(rounds) == 3 and len({tuple(tasks) for tasks in rounds}) > 1
    assert reader.end == rounds
    assert reader.begin[0] is None and [tasks.tolist() for tasks in reader.begin[1:]] == rounds[:-1]
    for step, (tasks, call, raw) in enumerate(zip(rounds, recorder.calls, trainer.raw_batches, strict=True), 1):
        trained = np.repeat(tasks, 2).tolist()  # G = 2 completions per task, in slot order
        assert call["idx"] == trained  # the rows the reward function scored (the test's own `idx` column)
        assert raw == {"slots": [0, 0, 1, 1], "rows": trained}
        table = pd.read_parquet(tmp_path / "completions" / f"completions_{step:05d}.parquet")
        assert table["bots_task_id"].tolist() == trained


ENVIRONMENTS = {"count": CountingEnv, "echo": EchoEnv}


@pytest.mark.parametrize(
    ("per_example", "prompt"),
    [(True, True), (False, True), (True, False)],
    ids=["environment-per-row", "one-environment", "environment-per-row-without-prompt"],
)
def test_each_selected_task_gets_its_own_rows_environment(tiny_model_path, tmp_path, per_example, prompt):
    """TRL routes a row to an environment by its `environment` column; that column travels with the row BOTS fills in.
    With an environment the `prompt` column is optional (reset supplies it), in TRL and so in BOTS."""
    names = ["echo" if i % 3 == 0 else "count" for i in range(10)]
    dataset = task_dataset(10, conversational=True).add_column("environment", names)
    dataset = dataset if prompt else dataset.remove_columns("prompt")
    scored = []

    def env_reward(completions, idx, environment, environments, **kwargs):
        scored.append(
            [(i, name, type(env), env.task) for i, name, env in zip(idx, environment, environments, strict=True)]
        )
        return [float(i % 2 == 0) for i in idx]

    model, tokenizer = tool_tokenizer(tiny_model_path)
    trainer = BOTSGRPOTrainer(
        model,
        env_reward,
        args=tiny_args(str(tmp_path), max_steps=4),
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=ENVIRONMENTS if per_example else CountingEnv,
    )
    selections = SelectionLog(trainer)
    trainer.train()

    rounds = [selection["tasks"] for selection in selections.selections]
    assert len(scored) == len(rounds) == 4
    for tasks, completions in zip(rounds, scored, strict=True):
        assert [i for i, *_ in completions] == np.repeat(tasks, 2).tolist()
        for i, name, env_type, reset_task in completions:
            assert name == names[i]  # the row's own column, not its placeholder's
            assert env_type is (ENVIRONMENTS[names[i]] if per_example else CountingEnv)
            assert reset_task == i  # reset(**row) received the selected row
    # The test can fail: some selected task names another environment than the placeholder row of its slot.
    assert any(names[task] != names[slot] for tasks in rounds for slot, task in enumerate(tasks))


@pytest.mark.parametrize("per_example", [True, False], ids=["environment-per-row", "one-environment"])
def test_environment_reset_without_room_for_the_task_id_is_refused(tiny_model_path, tmp_path, per_example):
    """GRPO calls reset(**row); BOTS adds `bots_task_id` to every row, so a reset with fixed parameters would crash."""
    model, tokenizer = tool_tokenizer(tiny_model_path)
    factory = {"count": CountingEnv, "strict": StrictResetEnv} if per_example else StrictResetEnv
    label = "environment_factory\\['strict'\\]" if per_example else "environment_factory"
    message = f"^{label} builds StrictResetEnv, whose reset\\(idx: .*\\) .*cannot take the column 'bots_task_id'"
    with pytest.raises(TypeError, match=message + ".*Add \\*\\*kwargs \\(or a bots_task_id parameter\\) to reset.$"):
        BOTSGRPOTrainer(
            model,
            even_task_reward,
            args=tiny_args(str(tmp_path)),
            train_dataset=task_dataset(10, conversational=True).add_column("environment", ["strict"] * 10),
            processing_class=tokenizer,
            environment_factory=factory,
        )


# ----------------------------------------------------------------------------------------------- "works" rows
def assert_credited(trainer, calls, weights=(1.0,), num_tasks=10):
    """Every round was selected, scored and credited exactly: the posterior is docs/algorithm.md's update of the
    rewards."""
    rounds = [(call["idx"], total_rewards(call, weights)) for call in calls]
    assert trainer.selector.round == len(rounds) > 0
    alpha, beta = replay_posterior(num_tasks, rounds)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if entry.get(name) is not None]


LOSS_TYPES = ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        *[({"loss_type": loss_type}, "loss") for loss_type in LOSS_TYPES],
        ({"beta": 0.1}, "kl"),  # a reference model
        ({"beta": 0.1, "sync_ref_model": True, "ref_model_sync_steps": 1}, "kl"),
        ({"top_entropy_quantile": 0.5}, "entropy"),
        ({"entropy_coef": 0.01, "use_adaptive_entropy": True}, "entropy"),
        (
            {
                "scale_rewards": "batch",
                "mask_truncated_completions": True,
                "importance_sampling_level": "sequence",
                "multi_objective_aggregation": "normalize_then_sum",
            },
            "loss",
        ),
        (
            {
                "temperature": 0.7,
                "top_k": 5,
                "top_p": 0.9,
                "repetition_penalty": 1.1,
                "disable_dropout": True,
                "gradient_checkpointing": True,
            },
            "loss",
        ),
        ({"use_transformers_continuous_batching": True}, "loss"),
    ],
    ids=[
        *[f"loss-{loss_type}" for loss_type in LOSS_TYPES],
        "reference-model",
        "sync-ref-model",
        "entropy-filtering",
        "adaptive-entropy-bonus",
        "advantage-options",
        "generation-options",
        "continuous-batching",
    ],
)
def test_grpo_option_works(tiny_model_path, tmp_path, overrides, metric):
    model, tokenizer = load_tiny(tiny_model_path)
    recorder = RewardRecorder()
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(even_task_reward),
        args=tiny_args(str(tmp_path), max_steps=2, **overrides),
        train_dataset=task_dataset(10),
        processing_class=tokenizer,
    )
    trainer.train()
    assert_credited(trainer, recorder.calls)
    assert len(logged(trainer, metric)) == 2  # the option's own metric, from GRPO


def train_tiny(model_path, output_dir, reward_funcs, dataset=None, **kwargs):
    """Train for 2 steps with BOTS (see `build`); return the trainer."""
    trainer = build(
        model_path, output_dir, dataset if dataset is not None else task_dataset(10), reward_funcs, **kwargs
    )
    trainer.train()
    return trainer


def test_async_reward_function_works(tiny_model_path, tmp_path):
    calls = []

    async def async_even_reward(completions, idx, **kwargs):
        rewards = [float(i % 2 == 0) for i in idx]
        calls.append({"idx": list(idx), "rewards": [rewards]})
        return rewards

    trainer = train_tiny(tiny_model_path, tmp_path, [async_even_reward])
    assert_credited(trainer, calls)


def test_train_multiple_reward_funcs_with_None_output(tiny_model_path, tmp_path, caplog):  # noqa: N802 (TRL's name)
    """TRL's test of the same name: one reward function scores every completion, the other returns None for all
    ("not applicable to this sample"). GRPO trains on the first; so must BOTS, and credit every completion."""
    recorder = RewardRecorder()

    def applicable_reward_func(completions, **kwargs):  # rewards longer completions
        return [float(len(completion)) for completion in completions]

    def non_applicable_reward_func(completions, **kwargs):
        return [None] * len(completions)

    model, _ = load_tiny(tiny_model_path)
    before = {name: parameter.clone() for name, parameter in model.named_parameters()}
    with caplog.at_level("WARNING", logger="trl_bots.trainer"):
        trainer = train_tiny(
            tiny_model_path,
            tmp_path,
            recorder.wrap(applicable_reward_func, non_applicable_reward_func),
            model=model,
            max_steps=12,  # more rounds than bots_max_unscored_rounds (10), after which BOTS used to stop
            learning_rate=0.1,  # TRL's: gradients are tiny
        )
    assert trainer.state.log_history[-1]["train_loss"] is not None
    changed = [name for name, parameter in model.named_parameters() if not torch.equal(parameter, before[name])]
    assert changed
    assert logged(trainer, "bots/scored_ratio") == [1.0] * 12
    assert_credited(trainer, recorder.calls, weights=(1.0, 1.0))
    assert [record.getMessage() for record in caplog.records if record.name == "trl_bots.trainer"] == [
        "BOTS decides success on GRPO's weighted total reward of applicable_reward_func (x1), "
        "non_applicable_reward_func (x1): a completion is a trial when at least one of them returned a number (None: "
        "this reward does not apply), and a success when the weighted sum of the numbers returned is >= "
        "bots_success_threshold=0.5. A shaping reward (e.g. a format bonus) therefore also scores completions that "
        "the accuracy reward returned None for, and counts toward success; to decide success by some reward functions "
        "only, set bots_success_reward to their names."
    ]  # once, at the start


def test_evaluation_works_and_is_not_selected_or_credited(tiny_model_path, tmp_path):
    """Evaluation walks the whole eval set as in GRPO; only training rounds are selected and credited."""
    recorder = RewardRecorder()
    eval_dataset = Dataset.from_dict({"idx": [100, 101, 102], "prompt": [f"eval {i}: say a" for i in range(3)]})
    trainer = train_tiny(
        tiny_model_path,
        tmp_path,
        recorder.wrap(even_task_reward),
        trainer_kwargs={"eval_dataset": eval_dataset},
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=3,
        num_generations_eval=3,
    )
    train_calls = [call for call in recorder.calls if max(call["idx"]) < 10]
    eval_calls = [call for call in recorder.calls if min(call["idx"]) >= 100]
    assert len(train_calls) == 2 and len(train_calls) + len(eval_calls) == len(recorder.calls)
    evaluated = sorted(i for call in eval_calls for i in call["idx"])
    assert evaluated == sorted([100, 101, 102] * 3 * 2)  # every eval row, 3 completions each, at both steps
    assert_credited(trainer, train_calls)
    assert len(logged(trainer, "eval_loss")) == 2


def test_log_extra_and_log_metric_work_beside_bots_columns(tiny_model_path, tmp_path):
    recorder = RewardRecorder()

    def logging_reward(completions, idx, log_extra, log_metric, **kwargs):
        log_extra("my_task", list(idx))
        log_metric("my_metric", 1.5)
        return even_task_reward(completions, idx)

    trainer = train_tiny(tiny_model_path, tmp_path, recorder.wrap(logging_reward), log_completions=True)
    assert_credited(trainer, recorder.calls)
    assert logged(trainer, "my_metric") == [1.5, 1.5]
    table = pd.read_parquet(tmp_path / "completions" / "completions_00002.parquet")
    assert table["my_task"].tolist() == table["bots_task_id"].tolist() == recorder.calls[-1]["idx"]


def count_to(n: int) -> int:
    """Count to n.

    Args:
        n: The number to count to.

    Returns:
        The same number.
    """
    return n


def test_tools_work(tiny_model_path, tmp_path):
    recorder = RewardRecorder()
    model, tokenizer = tool_tokenizer(tiny_model_path)
    trainer = train_tiny(
        tiny_model_path,
        tmp_path,
        recorder.wrap(even_task_reward),
        dataset=task_dataset(10, conversational=True),
        model=model,
        tokenizer=tokenizer,
        trainer_kwargs={"tools": [count_to]},
        max_tool_calling_iterations=1,
    )
    assert_credited(trainer, recorder.calls)
    assert len(logged(trainer, "tools/call_frequency")) == 2


def test_rollout_func_generates_the_selected_rows(tiny_model_path, tmp_path):
    """A custom rollout_func receives the prompts of the tasks BOTS selected."""
    recorder = RewardRecorder()
    seen_prompts = []

    def rollout(prompts, trainer):
        seen_prompts.append(list(prompts))
        prompt_ids = [trainer.processing_class.encode(prompt) for prompt in prompts]
        completion_ids = [trainer.processing_class.encode("a") for _ in prompts]
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": [[0.0]] * len(prompts)}

    trainer = train_tiny(
        tiny_model_path, tmp_path, recorder.wrap(even_task_reward), trainer_kwargs={"rollout_func": rollout}
    )
    assert_credited(trainer, recorder.calls)
    assert seen_prompts == [[f"task {i}: say a" for i in call["idx"]] for call in recorder.calls]


def test_mixture_of_experts_model_works(tiny_model_path, tmp_path):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    tiny_model, tokenizer = load_tiny(tiny_model_path)
    dense = tiny_model.config
    config = Qwen3MoeConfig(
        vocab_size=dense.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_experts=4,
        num_experts_per_tok=2,
        output_router_logits=True,
        router_aux_loss_coef=0.01,
        pad_token_id=dense.pad_token_id,
        eos_token_id=dense.eos_token_id,
        bos_token_id=None,
    )
    recorder = RewardRecorder()
    trainer = train_tiny(
        tiny_model_path,
        tmp_path,
        recorder.wrap(even_task_reward),
        model=Qwen3MoeForCausalLM(config),
        tokenizer=tokenizer,
    )
    assert_credited(trainer, recorder.calls)
    assert len(logged(trainer, "aux_loss")) == 2


def test_reward_model_works(tiny_model_path, tmp_path):
    """A sequence-classification reward model: every completion is scored, so each selected task gets G trials."""
    from transformers import AutoModelForSequenceClassification

    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    _, tokenizer = load_tiny(tiny_model_path)
    trainer = build(
        tiny_model_path,
        tmp_path,
        task_dataset(10),
        [reward_model],
        trainer_kwargs={"reward_processing_classes": [tokenizer]},
    )
    selections = SelectionLog(trainer)
    trainer.train()
    # Whatever the scores, alpha + beta only depends on the trials: (1 - lambda)(alpha + beta) + lambda * 2 + trials.
    rounds = [(np.repeat(selection["tasks"], 2), np.zeros(4)) for selection in selections.selections]
    alpha, beta = replay_posterior(10, rounds)
    assert trainer.selector.round == len(rounds) == 2
    np.testing.assert_allclose(trainer.selector.alpha + trainer.selector.beta, alpha + beta, rtol=1e-6)


# ------------------------------------------------------------------ TRL's tests of IterableDataset support
# Ported from TRL's tests/test_grpo_trainer.py (huggingface/trl at f2cd57710, the tests that came with "Support
# iterable datasets in GRPO and RLOO", #6351, whose code TRL 1.16 ships): the zen dataset and Hub models replaced by
# task_dataset (streamed with to_iterable_dataset) and the tiny local model. BOTS reads a train stream itself, into its
# active pool, and hands GRPO's DataLoader map-style placeholder rows: where that changes TRL's assertion, the test
# says so.


def length_reward(completions, **kwargs):
    """Longer completions score higher: the rewards within a group differ, so GRPO's gradients are not zero."""
    return [float(len(completion)) for completion in completions]


def eval_rows(streaming: bool) -> Dataset:
    rows = Dataset.from_dict({"idx": [100, 101, 102], "prompt": [f"eval {i}: say a" for i in range(3)]})
    return rows.to_iterable_dataset() if streaming else rows


def eval_dataset_of_type(eval_dataset_type: str):
    """TRL's parametrization: a dataset, a DatasetDict or a dict of them, streamed or not."""
    if eval_dataset_type == "none":
        return None
    split = eval_rows(streaming="iterable" in eval_dataset_type)
    if eval_dataset_type in ("dataset", "iterable_dataset"):
        return split
    if eval_dataset_type in ("dataset_dict", "iterable_dataset_dict"):
        return (IterableDatasetDict if "iterable" in eval_dataset_type else DatasetDict)(
            {"data1": split, "data2": split}
        )
    return {"data1": split, "data2": split}


EVAL_DATASET_TYPES = [
    "dataset",
    "iterable_dataset",
    "dataset_dict",
    "iterable_dataset_dict",
    "dict_of_dataset",
    "dict_of_iterable_dataset",
]


def test_train_with_iterable_dataset(tiny_model_path, tmp_path):
    """TRL: a stream trains with max_steps, and every parameter changes. BOTS trains on the stream's rows through
    its pool; TRL's `dispatch_batches is False` (GRPO forces it for a stream in its DataLoader) does not apply, as
    GRPO's DataLoader reads BOTS's map-style placeholders: the setting stays the user's."""
    model, _ = load_tiny(tiny_model_path)
    previous_trainable_params = {n: param.clone() for n, param in model.named_parameters()}
    trainer = build(
        tiny_model_path,
        tmp_path,
        task_dataset(12).to_iterable_dataset(),
        [length_reward],
        model=model,
        learning_rate=0.1,  # TRL's: gradients are tiny
        per_device_train_batch_size=3,
        num_generations=3,
        max_completion_length=8,
        max_steps=4,
    )
    assert trainer.pool is not None and trainer.pool.size == 12  # the whole stream: fewer than 64 rounds of B = 1
    assert trainer.args.accelerator_config.dispatch_batches is None  # left as configured
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, param in previous_trainable_params.items():
        new_param = trainer.model.get_parameter(n)
        assert not torch.equal(param, new_param), f"Parameter {n} has not changed."
    assert trainer.selector.round == 4 and trainer.pool.stream.position >= 12


@pytest.mark.parametrize("eval_dataset_type", [*EVAL_DATASET_TYPES, "none"])
def test_init_with_eval_dataset(tiny_model_path, tmp_path, eval_dataset_type):
    eval_dataset = eval_dataset_of_type(eval_dataset_type)
    trainer = build(tiny_model_path, tmp_path, task_dataset(10), trainer_kwargs={"eval_dataset": eval_dataset})
    if eval_dataset_type == "none":
        assert trainer.eval_dataset is None
    elif isinstance(trainer.eval_dataset, dict):
        assert set(trainer.eval_dataset.keys()) == {"data1", "data2"}
    else:
        assert trainer.eval_dataset is eval_dataset


def test_iterable_dataset_requires_dispatch_batches_false(tiny_model_path, tmp_path):
    """`dispatch_batches=True` with a train stream is refused when the trainer is built, as in TRL. GRPO's DataLoader
    reads BOTS's map-style placeholders instead of the stream, and with those the setting fails at the first step
    (`TypeError: Can only find the batch size of tensors ...`, as GRPO fails on a map-style dataset)."""
    with pytest.raises(ValueError, match="Iterable datasets require `dispatch_batches=False`"):
        build(
            tiny_model_path,
            tmp_path,
            task_dataset(10).to_iterable_dataset(),
            accelerator_config={"dispatch_batches": True},
        )


def test_iterable_dataset_forces_num_workers_zero(tiny_model_path, tmp_path):
    """TRL sets `dataloader_num_workers` to 0 for a train stream, whose prompt repeats workers would interleave.
    BOTS keeps the workers: they read the placeholder rows, while BOTS reads the stream in the main process."""
    trainer = build(
        tiny_model_path, tmp_path, task_dataset(10).to_iterable_dataset(), dataloader_num_workers=4, max_steps=1
    )
    assert trainer.args.dataloader_num_workers == 4
    trainer.train()
    assert trainer.selector.round == 1 and trainer.get_train_dataloader().num_workers == 4


def test_iterable_eval_keeps_map_style_train_workers(tiny_model_path, tmp_path):
    trainer = build(
        tiny_model_path,
        tmp_path,
        task_dataset(10),
        trainer_kwargs={"eval_dataset": eval_rows(streaming=True)},
        per_device_train_batch_size=3,
        per_device_eval_batch_size=3,
        num_generations=3,
        dataloader_num_workers=4,
    )
    assert trainer.args.dataloader_num_workers == 4  # not disabled by the iterable eval set
    assert trainer.get_train_dataloader().num_workers == 4  # map-style train keeps its workers
    assert trainer.get_eval_dataloader().num_workers == 0  # iterable eval loader uses a single worker
    assert trainer.args.dataloader_num_workers == 4  # override is scoped, not persisted


@pytest.mark.parametrize("eval_dataset_type", EVAL_DATASET_TYPES)
def test_evaluate_with_eval_dataset(tiny_model_path, tmp_path, eval_dataset_type):
    """TRL: `evaluate` takes a dataset passed directly. BOTS: and credits nothing (evaluation is not selected)."""
    trainer = build(
        tiny_model_path,
        tmp_path,
        task_dataset(10),
        per_device_train_batch_size=3,
        per_device_eval_batch_size=3,
        num_generations=3,
        max_completion_length=8,
    )
    metrics = trainer.evaluate(eval_dataset=eval_dataset_of_type(eval_dataset_type))
    if eval_dataset_type in ("dataset", "iterable_dataset"):
        assert metrics["eval_loss"] is not None
    else:
        assert metrics["eval_data1_loss"] is not None
        assert metrics["eval_data2_loss"] is not None
    assert trainer.selector.round == 0


def test_every_test_named_in_the_compatibility_table_exists():
    """docs/compatibility.md names a test per row; a renamed or removed test must not leave a row unbacked."""
    tests = Path(__file__).parent
    table = (tests.parent / "docs" / "compatibility.md").read_text()
    named = re.findall(r"`(?:(test_\w+\.py)(?:::)?)?(test_\w+)?(?:\[[^\]]*\])?`", table)
    assert len(named) > 30
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and " | " in line]
    for feature, verdict, test in (row[:3] for row in rows if not row[0].startswith("| **")):
        verdict = re.match(r"works|refused|differs|not tested|With BOTS", verdict)
        assert verdict, feature
        assert verdict[0] == "not tested" or test.strip(" |"), f"{feature}: a '{verdict[0]}' row needs a test"
    for file, function in named:
        source = (tests / (file or "test_compatibility.py")).read_text()
        assert function == "" or f"def {function}(" in source, f"{file or 'test_compatibility.py'}::{function}"


@pytest.mark.parametrize("per_example", [True, False], ids=["environment-per-row", "one-environment"])
def test_an_environment_fed_by_a_stream_of_rows(tiny_model_path, tmp_path, per_example):
    """An `environment_factory` fed by a generated stream of rows (a seed per task, routed by its `environment`
    column): every selected task's environment is reset with that task's own row, read from the active pool."""

    def rows():
        for i in range(1000):
            yield {"idx": i, "environment": "echo" if i % 3 == 0 else "count"}

    scored = []

    def env_reward(completions, idx, environment, environments, bots_task_id, **kwargs):
        scored.extend(
            (i, name, type(env), env.task, task_id)
            for i, name, env, task_id in zip(idx, environment, environments, bots_task_id, strict=True)
        )
        return [float(i % 2 == 0) for i in idx]

    model, tokenizer = tool_tokenizer(tiny_model_path)
    trainer = BOTSGRPOTrainer(
        model,
        env_reward,
        args=tiny_args(str(tmp_path), max_steps=6, bots_pool_size=4, bots_retire_threshold=0.9),
        train_dataset=IterableDataset.from_generator(rows),
        processing_class=tokenizer,
        environment_factory=ENVIRONMENTS if per_example else CountingEnv,
    )
    trainer.train()

    assert len(scored) == 6 * 4 and trainer.pool.stream.position > 4  # tasks were retired and read from the stream
    for i, name, env_type, reset_task, task_id in scored:
        assert i == task_id  # the stream's row at that position (idx is its position here)
        assert name == ("echo" if i % 3 == 0 else "count")
        assert env_type is (ENVIRONMENTS[name] if per_example else CountingEnv)
        assert reset_task == i  # reset(**row) received the selected row
    assert max(task_id for *_, task_id in scored) >= 4  # some task came from beyond the first fill
