"""BOTSGRPOTrainer with an active pool (tasks from a stream): real GRPO training loops on a tiny local model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from datasets import IterableDataset
from launching import first_letter_reward, weights_digest
from recording import PoolLog
from tiny import load_tiny, task_dataset, tiny_args
from transformers import TrainerCallback

from trl_bots.trainer import BOTSGRPOTrainer


def stream_rows(num_rows: int, bad_at: int | None = None, references: bool = False, counter: dict | None = None):
    """Row i of the stream: `idx` = i, its prompt names it; row `bad_at` has no prompt (None). `counter["rows"]`
    counts the rows the generator has produced."""
    for i in range(num_rows):
        if counter is not None:
            counter["rows"] += 1
        row = {"idx": i, "prompt": None if i == bad_at else f"task {i}: say a"}
        if references:  # reference pass rates that differ from row to row
            row["weak"] = (i % 7) / 10
            row["strong"] = row["weak"] + (i % 3 + 1) / 10
        yield row


def stream(num_rows: int, **kwargs) -> IterableDataset:
    return IterableDataset.from_generator(stream_rows, gen_kwargs={"num_rows": num_rows, **kwargs})


class RoundRecorder:
    """A reward function (1 on even `idx`, or `reward`'s values) that keeps, per call, the columns GRPO gave it."""

    def __init__(self, reward=None):
        self.calls: list[dict] = []
        recorder = self

        def stream_reward(prompts, completions, idx, bots_task_id, **kwargs):
            rewards = reward(completions) if reward is not None else [float(i % 2 == 0) for i in idx]
            task_ids = [int(task) for task in bots_task_id]
            recorder.calls.append({"idx": list(idx), "task_ids": task_ids, "prompts": prompts, "rewards": rewards})
            return rewards

        self.reward = stream_reward


# A group of 2 all-solved (or all-failed) completions takes a new task's chance of a mixed next group from 1/3 to
# 0.3 (Beta(3, 1)): 0.9 of what it was, below this threshold. So every task served is retired after its round, and
# the tasks not served, still at the prior, stay.
RETIRE_AFTER_ONE_ROUND = 0.95
# Unless a test says otherwise: a pool of 4 tasks, from which every task served retires.
POOL = {"bots_pool_size": 4, "bots_retire_threshold": RETIRE_AFTER_ONE_ROUND}


def pool_trainer(model_path, output_dir, dataset, reward=None, **overrides):
    """A BOTSGRPOTrainer over `dataset` (B = 2 tasks a round, G = 2, `POOL` unless overridden), its reward recorder
    and pool log."""
    model, tokenizer = load_tiny(model_path)
    recorder = RoundRecorder(reward)
    trainer = BOTSGRPOTrainer(
        model,
        recorder.reward,
        args=tiny_args(str(output_dir), **{**POOL, **overrides}),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    log = PoolLog(trainer)
    if trainer.pool is not None:
        trainer.add_callback(log)
    return trainer, recorder, log


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if name in entry]


def test_the_pool_trains_on_the_stream_rows_of_its_tasks_and_retires_the_decided_ones(tiny_model_path, tmp_path):
    trainer, recorder, log = pool_trainer(
        tiny_model_path,
        tmp_path,
        stream(1000),
        max_steps=5,
        bots_pool_size=6,
    )
    assert trainer.selector.num_tasks == 6 and trainer.pool.task_ids.tolist() == list(range(6))
    trainer.train()

    task_ids = list(range(6))
    for step, (call, logged_step) in enumerate(zip(recorder.calls, log.steps, strict=True), start=1):
        served = logged_step["round_tasks"]
        # GRPO generated for the round's tasks, G = 2 completions each, and each is the stream's row at its position.
        assert call["task_ids"] == np.repeat(served, 2).tolist()
        assert call["idx"] == call["task_ids"]
        assert call["prompts"] == [f"task {i}: say a" for i in call["idx"]]
        assert set(served) <= set(task_ids)  # selected among the pool's tasks
        # Both served tasks were all-solved or all-failed: retired; their slots, in ascending order, took the next
        # two rows of the stream.
        slots = sorted(task_ids.index(task) for task in served)
        for k, slot in enumerate(slots):
            task_ids[slot] = 6 + 2 * (step - 1) + k
        assert logged_step["task_ids"] == task_ids
        assert [row["idx"] for row in logged_step["rows"]] == task_ids
        assert (logged_step["position"], logged_step["retired"]) == (6 + 2 * step, 2 * step)
        # The newcomers start from the prior; the others were never selected and stay at it (rho = 0).
        alpha, beta = (np.frombuffer(bytes.fromhex(logged_step[name]), np.float32) for name in ("alpha", "beta"))
        np.testing.assert_allclose(alpha, 1.0, rtol=1e-6)
        np.testing.assert_allclose(beta, 1.0, rtol=1e-6)
    assert len(recorder.calls) == trainer.selector.round == 5
    assert logged(trainer, "bots/pool_size") == [6] * 5
    assert logged(trainer, "bots/retired") == [2, 4, 6, 8, 10]
    assert logged(trainer, "bots/stream_position") == [8, 10, 12, 14, 16]
    assert list(trainer._logs["extra"]["bots_task_id"]) == recorder.calls[-1]["task_ids"]


def test_the_pool_holds_at_most_its_size_while_reading_a_long_stream(tiny_model_path, tmp_path):
    counter = {"rows": 0}
    held = []

    class Held(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            held.append((len(trainer.pool.rows), trainer.pool.task_ids.size, trainer.selector.alpha.size))

    trainer, _, log = pool_trainer(
        tiny_model_path,
        tmp_path,
        stream(10**9, counter=counter),  # read lazily: never materialised
        max_steps=8,
    )
    trainer.add_callback(Held())
    trainer.train()
    assert held == [(4, 4, 4)] * 8
    assert log.steps[-1]["position"] == 4 + 2 * 8
    assert counter["rows"] <= 4 + 2 * 8 + 1  # the rows read, and at most one ahead


def test_a_map_style_dataset_with_a_pool_size_is_read_in_order_one_epoch_a_pass(tiny_model_path, tmp_path):
    trainer, recorder, log = pool_trainer(
        tiny_model_path,
        tmp_path,
        task_dataset(10),
        max_steps=-1,
        num_train_epochs=1,
    )
    trainer.train()
    # One epoch is a pass over the dataset's 10 rows: 5 rounds of B = 2.
    assert trainer.state.global_step == len(recorder.calls) == 5 and trainer.state.epoch == 1.0
    # Two rows a round join the pool, read in the dataset's order: every position read since the last step joined,
    # except, in the second pass (positions 10 on), a row still pooled under its first-pass task id.
    previous = {"task_ids": [0, 1, 2, 3], "position": 4}
    for logged_step in log.steps:
        kept = set(logged_step["task_ids"]) & set(previous["task_ids"])
        read = range(previous["position"], logged_step["position"])
        skipped = [position for position in read if position % 10 in {task % 10 for task in kept}]
        assert sorted(set(logged_step["task_ids"]) - kept) == [p for p in read if p not in skipped]
        assert len(set(logged_step["task_ids"]) - kept) == 2
        assert [row["idx"] for row in logged_step["rows"]] == [task % 10 for task in logged_step["task_ids"]]
        previous = logged_step
    for call in recorder.calls:
        assert call["idx"] == [task % 10 for task in call["task_ids"]]
    assert [step["position"] for step in log.steps][:4] == [6, 8, 10, 12]  # no skip in the first pass
    assert trainer.pool.stream.passes == 1 and trainer.pool.stream.position == 15  # row 2 (position 12) skipped


@pytest.mark.slow
@pytest.mark.parametrize(
    ("schedule", "checkpoint"),
    [({}, 3), ({"steps_per_generation": 2}, 3)],
    ids=["between-rounds", "inside-a-round"],
)
def test_resume_mid_stream_is_exact(tiny_model_path, tmp_path, schedule, checkpoint):
    """The reward depends on the completions, so which tasks retire depends on the exact weights; the plug-in reads
    the pool's reference columns. Resumed from checkpoint-3 (between rounds 3 and 4, or with 2 steps a round inside
    round 2), every later step equals the uninterrupted run's."""
    common = {
        "reward": first_letter_reward,
        "max_steps": 6,
        "save_strategy": "steps",
        "save_steps": 1,
        "bots_reference_columns": ["weak", "strong"],
        "bots_implicit_weight": 0.3,
        **schedule,
    }
    full, full_recorder, full_log = pool_trainer(
        tiny_model_path, tmp_path / "full", stream(500, references=True), **common
    )
    full.train()
    resumed, resumed_recorder, resumed_log = pool_trainer(
        tiny_model_path, tmp_path / "resumed", stream(500, references=True), **common
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{checkpoint}"))

    assert resumed_log.steps == full_log.steps[checkpoint:]  # rows trained on, pool, stream position, alpha, beta
    rounds_done = -(-checkpoint // full.args.steps_per_generation)  # begun: inside a round, its buffer is saved
    assert resumed_recorder.calls == full_recorder.calls[rounds_done:]
    assert weights_digest(resumed.model) == weights_digest(full.model)
    np.testing.assert_array_equal(resumed.selector.estimator.weak, full.selector.estimator.weak)
    np.testing.assert_array_equal(resumed.selector.estimator.gap, full.selector.estimator.gap)
    assert resumed.pool.retired == full.pool.retired > 0
    assert {r for call in full_recorder.calls for r in call["rewards"]} == {0.0, 1.0}  # the rewards depend on the text
    assert len({step["position"] for step in full_log.steps}) > 1  # the stream moved on


def test_a_stream_that_stops_ends_training_when_it_runs_out(tiny_model_path, tmp_path, caplog):
    """8 rows, a pool of 4, 2 tasks retired a round: rounds 1 and 2 read rows 4-7; round 3 finds the stream ended."""
    trainer, recorder, log = pool_trainer(tiny_model_path, tmp_path, stream(8), max_steps=10, bots_stream_end="stop")
    with caplog.at_level("WARNING", logger="trl_bots.trainer"):
        trainer.train()
    assert trainer.state.global_step == 3 < trainer.args.max_steps
    assert len(recorder.calls) == 3 and trainer.pool.exhausted
    assert [step["position"] for step in log.steps] == [6, 8, 8]
    served = [task for step in log.steps for task in step["round_tasks"]]
    assert len(set(served)) == 6 and set(served) <= set(range(8))
    assert [r.getMessage() for r in caplog.records if r.name == "trl_bots.trainer"] == [
        "BOTS: the stream ended (bots_stream_end='stop') after 8 tasks and the pool cannot replace its retired tasks: "
        "training stops after this step."
    ]
    # Four tasks left the pool (rounds 1 and 2); round 3's two stayed, for want of rows. The model card says so.
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert (
        "| tasks | an active pool of 4 over a stream: 8 read, 4 retired (retire threshold 0.95, at the stream's end: "
        "stop) |" in card
    )


def test_a_pool_larger_than_the_stream_holds_it_all(tiny_model_path, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="trl_bots.tasks"):
        trainer, recorder, log = pool_trainer(tiny_model_path, tmp_path, stream(6), max_steps=4, bots_pool_size=None)
    assert [r.getMessage() for r in caplog.records if r.name == "trl_bots.tasks"] == [
        "BOTS: the stream holds 6 tasks, fewer than the pool's 128 (bots_pool_size): the pool holds them all."
    ]
    assert trainer.pool.size == trainer.selector.num_tasks == 6
    trainer.train()
    for step in log.steps:  # every row of the stream once, each under a task id of its own
        assert sorted(row["idx"] for row in step["rows"]) == list(range(6))
        assert len(set(step["task_ids"])) == 6
        assert [row["idx"] for row in step["rows"]] == [task % 6 for task in step["task_ids"]]
    assert trainer.pool.retired == 8 and trainer.pool.stream.passes >= 1


def train_error(trainer, **train_kwargs) -> str:
    """The message of the ValueError that stops `trainer.train(**train_kwargs)`."""
    with pytest.raises(ValueError) as error:
        trainer.train(**train_kwargs)
    return str(error.value)


def test_a_malformed_row_mid_stream_stops_training_naming_its_position(tiny_model_path, tmp_path):
    trainer, recorder, _ = pool_trainer(tiny_model_path, tmp_path, stream(50, bad_at=7), max_steps=5)
    assert train_error(trainer) == (
        "train_dataset's row 7 of pass 1 (stream position 7) has no value in its column 'prompt' (None). Fill or "
        "drop the row."
    )
    assert len(recorder.calls) == 2 and trainer.state.global_step == 1  # found while refreshing after round 2


def test_uniform_with_a_pool_reads_the_stream_once(tiny_model_path, tmp_path):
    """The baseline serves every task once, like GRPO over a stream: each served task retires, whatever the
    threshold (0: BOTS would never retire one)."""
    settings = {"max_steps": 4, "bots_strategy": "uniform", "bots_retire_threshold": 0.0}
    trainer, recorder, log = pool_trainer(tiny_model_path, tmp_path, stream(100), **settings)
    trainer.train()
    assert [step["position"] for step in log.steps] == [6, 8, 10, 12]
    assert [step["retired"] for step in log.steps] == [2, 4, 6, 8]
    served = [task for step in log.steps for task in step["round_tasks"]]
    assert sorted(served) == list(range(8))  # the first 8 rows of the stream, each once
    assert [task for call in recorder.calls for task in call["task_ids"][::2]] == served


def test_the_plug_in_reads_the_references_of_the_tasks_that_join(tiny_model_path, tmp_path):
    seen = []

    class References(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            estimator = trainer.selector.estimator
            seen.append((estimator.weak.copy(), estimator.gap.copy(), [dict(row) for row in trainer.pool.rows]))

    trainer, _, log = pool_trainer(
        tiny_model_path,
        tmp_path,
        stream(100, references=True),
        max_steps=4,
        bots_reference_columns=["weak", "strong"],
        bots_implicit_weight=0.3,
    )
    trainer.add_callback(References())
    trainer.train()
    assert trainer.pool.retired > 0 and max(trainer.pool.task_ids) >= 4  # tasks joined
    for weak, gap, rows in seen:
        np.testing.assert_allclose(weak, [row["weak"] for row in rows], rtol=1e-6)
        np.testing.assert_allclose(gap, [row["strong"] - row["weak"] for row in rows], rtol=1e-5)
    assert [s["task_ids"] for s in log.steps] != [list(range(4))] * 4


def build_error(tiny_model_path, output_dir, dataset, **overrides) -> str:
    with pytest.raises(ValueError) as error:
        pool_trainer(tiny_model_path, output_dir, dataset, **overrides)
    return str(error.value)


def test_what_a_pool_refuses(tiny_model_path, tmp_path):
    assert build_error(tiny_model_path, tmp_path, stream(20), max_steps=-1) == (
        "train_dataset is a stream (IterableDataset), which has no length, so training needs max_steps > 0 (got "
        "max_steps=-1), as in TRL. Set max_steps."
    )
    assert build_error(tiny_model_path, tmp_path, stream(20), bots_domain_column="idx").startswith(
        "bots_domain_column is not supported with an active pool (a stream, or bots_pool_size): domain quotas need "
    )
    references = {"bots_reference_columns": ["weak", "strong"]}
    assert build_error(
        tiny_model_path, tmp_path, stream(20, references=True), bots_strategy="easy2hard", **references
    ) == (
        "bots_strategy='easy2hard' is not supported with an active pool (a stream, or bots_pool_size): its fixed "
        "order needs every task up front. Use bots_strategy='uniform' as the baseline."
    )
    for dataset in (task_dataset(20), stream(20)):  # map-style read as a stream too
        assert "bots_pool_size must be an integer of at least the tasks of one generation batch (2" in build_error(
            tiny_model_path, tmp_path, dataset, bots_pool_size=1
        )


def blob_rows(num_rows: int):
    for i in range(num_rows):
        yield {"idx": i, "prompt": f"task {i}: say a", "blob": bytes([i])}


def test_a_checkpoint_of_rows_json_cannot_hold_is_refused(tiny_model_path, tmp_path):
    trainer, _, _ = pool_trainer(
        tiny_model_path,
        tmp_path,
        IterableDataset.from_generator(blob_rows, gen_kwargs={"num_rows": 20}),
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
    )
    assert train_error(trainer) == (
        "Cannot checkpoint the active pool: its rows must be JSON values (text, numbers, lists, dicts) so that a "
        "resumed run reads them back unchanged, but Object of type bytes is not JSON serializable. Turn such columns "
        "into text or numbers in the stream (IterableDataset.map), or save without the pool (save_strategy='no')."
    )


def test_a_pool_checkpoint_resumes_only_with_a_pool_and_the_other_way_round(tiny_model_path, tmp_path):
    """The same 4 rows either way (so the task lists' fingerprints agree): a map-style run of those rows, and a run
    that reads them as a stream into a pool of 4."""
    rows = task_dataset(4)
    runs = {"pool": {}, "rows": {"bots_pool_size": None}}
    for name, settings in runs.items():
        trainer, _, _ = pool_trainer(
            tiny_model_path, tmp_path / name, rows, max_steps=1, save_strategy="steps", save_steps=1, **settings
        )
        trainer.train()
    pool_checkpoint, rows_checkpoint = tmp_path / "pool" / "checkpoint-1", tmp_path / "rows" / "checkpoint-1"
    assert (pool_checkpoint / "bots_pool.json").is_file() and not (rows_checkpoint / "bots_pool.json").exists()

    def resume_error(checkpoint, **settings) -> str:
        trainer, _, _ = pool_trainer(tiny_model_path, tmp_path / "new", rows, max_steps=2, **settings)
        return train_error(trainer, resume_from_checkpoint=str(checkpoint))

    stream_run, rows_run = (
        "over a stream (an active pool: bots_pool.json)",
        "over a map-style dataset (no active pool)",
    )
    advice = (
        ": the selector's task ids are pool slots in one and dataset rows in the other. Resume with the train_dataset "
        "and bots_pool_size the checkpoint was written with, or start a new run."
    )
    assert resume_error(pool_checkpoint, bots_pool_size=None) == (
        f"Cannot resume BOTS from {pool_checkpoint}: it was written by a run {stream_run}, and this run is one "
        f"{rows_run}{advice}"
    )
    assert resume_error(rows_checkpoint) == (
        f"Cannot resume BOTS from {rows_checkpoint}: it was written by a run {rows_run}, and this run is one "
        f"{stream_run}{advice}"
    )


def test_a_shuffle_buffer_warns_on_resume(tiny_model_path, tmp_path, caplog):
    common = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1}
    trainer, _, _ = pool_trainer(
        tiny_model_path, tmp_path / "run", stream(50).shuffle(seed=0, buffer_size=8), **common
    )
    trainer.train()
    resumed, _, _ = pool_trainer(
        tiny_model_path, tmp_path / "run", stream(50).shuffle(seed=0, buffer_size=8), **common
    )
    checkpoint = tmp_path / "run" / "checkpoint-1"
    with caplog.at_level(logging.WARNING, logger="trl_bots.trainer"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    position = json.loads((checkpoint / "bots_pool.json").read_text())["stream"]["position"]
    assert [r.getMessage() for r in caplog.records if r.name == "trl_bots.trainer"] == [
        f"BOTS resumes the stream at position {position}, "
        "but the dataset shuffles with a buffer, which datasets refills on resume: the tasks read from here differ "
        "from the uninterrupted run's. For an exact resume, shuffle the source before streaming it (e.g. "
        "Dataset.shuffle, then to_iterable_dataset)."
    ]
