"""Run under DeepSpeed on 2 CPU processes by test_deepspeed.py: `launched_deepspeed.py <zero stage> <model> <out>`.

Trains 4 steps with a reward that depends on what the model generates. Under ZeRO-3 it saves a checkpoint at step 2
and then resumes a second trainer from it. Asserts on every rank that the model runs in a DeepSpeedEngine at the
expected ZeRO stage with 2 processes, and writes what this rank saw (posterior after every step, selected rounds,
reward calls, final weights, step times) to `<out>/rank<i>.json`.
"""

import json
import sys

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from deepspeed import DeepSpeedEngine
from launching import StepTimer, end_launched_rank, first_letter_reward, weights_digest
from recording import PosteriorLog, RewardRecorder, SelectionLog
from tiny import load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


def run(stage, model_path, output_dir, resume_from=None):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    args = tiny_args(
        output_dir,
        per_device_train_batch_size=2,
        max_steps=4,
        save_strategy="steps" if stage == 3 else "no",
        save_steps=2,
    )
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(first_letter_reward),
        args=args,
        train_dataset=task_dataset(10),
        processing_class=tokenizer,
    )
    log, timer, selections = PosteriorLog(trainer), StepTimer(), SelectionLog(trainer)
    trainer.add_callback(log)
    trainer.add_callback(timer)
    initial_weights = weights_digest(trainer.model)
    trainer.train(resume_from_checkpoint=resume_from)
    engine = trainer.model_wrapped
    assert trainer.accelerator.distributed_type == DistributedType.DEEPSPEED, trainer.accelerator.distributed_type
    assert isinstance(engine, DeepSpeedEngine), type(engine)
    assert engine.zero_optimization_stage() == stage, engine.zero_optimization_stage()
    assert torch.distributed.get_world_size() == trainer.accelerator.num_processes == 2
    return {
        "engine": type(engine).__name__,
        "stage": engine.zero_optimization_stage(),
        "world": torch.distributed.get_world_size(),
        "calls": recorder.calls,
        "steps": log.steps,
        "rounds": [selection["tasks"] for selection in selections.selections],
        "initial_weights": initial_weights,
        "weights": weights_digest(trainer.model),
        "step_seconds": timer.seconds,
    }


def main():
    stage, model_path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    result = {"full": run(stage, model_path, f"{out}/full")}
    if stage == 3:
        result["resumed"] = run(stage, model_path, f"{out}/resumed", resume_from=f"{out}/full/checkpoint-2")
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump(result, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
