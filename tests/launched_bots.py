"""Run under `accelerate launch --multi_gpu --num_processes 2` by test_trainer_distributed.py.

Trains 4 steps with a checkpoint at step 2, then resumes a second trainer from that checkpoint, then trains a third
trainer whose selector is deliberately changed on rank 1 only (it must stop with the cross-process consistency error),
then builds a fourth from a shuffled dataset on rank 1 only (both ranks must refuse to start), and writes what this rank saw (its reward calls, the selector's posterior after every step, the selected rounds, the
error) to `<out>/rank<i>.json`.
"""

import json
import sys

from accelerate import PartialState
from accelerate.utils import DistributedType
from launching import end_launched_rank
from recording import PosteriorLog, RewardRecorder, SelectionLog
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


def build(model_path, output_dir):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    args = tiny_args(output_dir, per_device_train_batch_size=2, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(even_task_reward), args=args, train_dataset=task_dataset(10), processing_class=tokenizer
    )
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    assert trainer.accelerator.distributed_type == DistributedType.MULTI_CPU, trainer.accelerator.distributed_type
    return trainer, recorder


def run(model_path, output_dir, resume_from=None):
    trainer, recorder = build(model_path, output_dir)
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
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump({"full": full, "resumed": resumed, "desynchronised": desynchronised, "other_rows": other_rows}, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
