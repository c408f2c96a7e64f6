"""Run under `accelerate launch --multi_gpu --num_processes 2` by test_trainer_distributed.py.

Trains 4 steps with a checkpoint at step 2, then resumes a second trainer from that checkpoint, then trains a third
trainer whose selector is deliberately changed on rank 1 only (it must stop with the cross-process consistency error),
then builds a fourth from a shuffled dataset on rank 1 only (both ranks must refuse to start), then leaves out rank
1's RNG state of the last checkpoint and resumes, then resumes a run from inside a round, and writes what this rank saw (its reward calls, the selector's posterior after every step, the selected rounds, the
error) to `<out>/rank<i>.json`.
"""

import json
import sys

from accelerate import PartialState
from accelerate.utils import DistributedType
from launching import end_launched_rank, first_letter_reward
from recording import PosteriorLog, RewardRecorder, SelectionLog
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer, latest_complete_checkpoint


def build(model_path, output_dir, reward=even_task_reward, **overrides):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    settings = {"per_device_train_batch_size": 2, "max_steps": 4, "save_strategy": "steps", "save_steps": 2}
    args = tiny_args(output_dir, **{**settings, **overrides})
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(reward), args=args, train_dataset=task_dataset(10), processing_class=tokenizer
    )
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    assert trainer.accelerator.distributed_type == DistributedType.MULTI_CPU, trainer.accelerator.distributed_type
    return trainer, recorder


def run(model_path, output_dir, resume_from=None, **overrides):
    trainer, recorder = build(model_path, output_dir, **overrides)
    log = PosteriorLog(trainer)
    trainer.add_callback(log)
    selections = SelectionLog(trainer)
    trainer.train(resume_from_checkpoint=resume_from)
    rounds = [selection["tasks"] for selection in selections.selections]
    return {"calls": recorder.calls, "steps": log.steps, "rounds": rounds, "world": trainer.accelerator.num_processes}


def run_desynchronised(model_path, output_dir):
    """Rank 1's selector gets one extra success on task 3 before training: the first round must stop training."""
    trainer, _ = build(model_path, output_dir)
    if trainer.accelerator.process_index == 1:
        trainer.selector.alpha[3] += 1.0
    try:
        trainer.train()
    except RuntimeError as error:
        return {"error": str(error), "step": trainer.state.global_step}
    return {"error": None, "step": trainer.state.global_step}


def run_late_rank(model_path, output_dir):
    """Process 1's RNG state of checkpoint-4 never reaches the disk, as when it is killed while process 0 writes
    trainer_state.json; then resume as a restart script would."""
    trainer, _ = build(model_path, output_dir)
    if trainer.accelerator.process_index == 1:
        save_rng_state = trainer._save_rng_state
        trainer._save_rng_state = lambda folder: None if folder.endswith("checkpoint-4") else save_rng_state(folder)
    trainer.train()
    trainer.accelerator.wait_for_everyone()
    result = {"latest_complete": latest_complete_checkpoint(output_dir)}
    try:
        run(model_path, output_dir, resume_from=True)
    except ValueError as error:
        result["resume_latest_error"] = str(error)
    result["resumed"] = run(model_path, output_dir, resume_from=result["latest_complete"])
    return result


def build_on_other_rows(model_path, output_dir):
    """Rank 1 builds its trainer from the same tasks shuffled: both ranks must refuse to start."""
    dataset = task_dataset(10)
    if PartialState().process_index == 1:
        dataset = dataset.shuffle(seed=7)
    model, tokenizer = load_tiny(model_path)
    try:
        BOTSGRPOTrainer(model, even_task_reward, args=tiny_args(output_dir), train_dataset=dataset)
    except ValueError as error:
        return {"error": str(error)}
    return {"error": None}


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    full = run(model_path, f"{out}/full")
    resumed = run(model_path, f"{out}/resumed", resume_from=f"{out}/full/checkpoint-2")
    desynchronised = run_desynchronised(model_path, f"{out}/desynchronised")
    other_rows = build_on_other_rows(model_path, f"{out}/other-rows")
    late_rank = run_late_rank(model_path, f"{out}/late-rank")
    # A round spans 2 optimizer steps and the reward depends on the completions: resume from inside round 2.
    mid_round = {"reward": first_letter_reward, "steps_per_generation": 2, "save_steps": 1, "max_steps": 6}
    mid_full = run(model_path, f"{out}/mid-round", **mid_round)
    mid_resumed = run(model_path, f"{out}/mid-round-resumed", resume_from=f"{out}/mid-round/checkpoint-3", **mid_round)
    results = {
        "full": full,
        "resumed": resumed,
        "desynchronised": desynchronised,
        "other_rows": other_rows,
        "late_rank": late_rank,
        "mid_round": {"full": mid_full, "resumed": mid_resumed},
    }
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump(results, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
