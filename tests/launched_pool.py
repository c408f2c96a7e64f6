"""Run under `accelerate launch --multi_gpu --num_processes 2` by test_trainer_distributed.py.

Both processes train 6 steps on the same stream through an active pool and save their selectors; then they train on
streams that agree on the pool's first fill only (rank 1 reads other rows from position 4 on), which the per-round
check must stop. Writes what this rank saw to `<out>/rank<i>.json` and its selector to `<out>/selector<i>.safetensors`.
"""

import json
import sys

from accelerate import PartialState
from accelerate.utils import DistributedType
from datasets import IterableDataset
from launching import end_launched_rank, first_letter_reward
from recording import PoolLog
from tiny import load_tiny, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


POOL_SIZE = 4


def stream_rows(num_rows: int, other_from: int | None = None):
    """Row i: `idx` = i; from position `other_from` on, other prompts (another stream after the pool's first fill)."""
    for i in range(num_rows):
        other = other_from is not None and i >= other_from
        yield {"idx": i, "prompt": f"{'other' if other else 'task'} {i}: say a"}


def build(model_path, output_dir, other_from=None):
    model, tokenizer = load_tiny(model_path)
    stream = IterableDataset.from_generator(stream_rows, gen_kwargs={"num_rows": 200, "other_from": other_from})
    args = tiny_args(
        output_dir,
        per_device_train_batch_size=2,  # 2 processes x 2 completions = 2 tasks x 2 generations a round
        max_steps=6,
        bots_pool_size=POOL_SIZE,
        bots_retire_threshold=0.95,  # a task whose group was all-solved or all-failed retires after its round
    )
    trainer = BOTSGRPOTrainer(model, first_letter_reward, args=args, train_dataset=stream, processing_class=tokenizer)
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    assert trainer.accelerator.distributed_type == DistributedType.MULTI_CPU, trainer.accelerator.distributed_type
    return trainer


def run(model_path, out):
    trainer = build(model_path, f"{out}/same")
    log = PoolLog(trainer)
    trainer.add_callback(log)
    trainer.train()
    trainer.selector.save(f"{out}/selector{trainer.accelerator.process_index}.safetensors")
    return {
        "world": trainer.accelerator.num_processes,
        "steps": log.steps,
        "retired": trainer.pool.retired,
    }


def run_diverging(model_path, out):
    """Rank 1 reads other rows once the pool's first fill is read: training must stop at the next round's check."""
    rank = PartialState().process_index
    trainer = build(model_path, f"{out}/diverging", other_from=POOL_SIZE if rank == 1 else None)
    try:
        trainer.train()
    except RuntimeError as error:
        return {"error": str(error), "step": trainer.state.global_step, "position": trainer.pool.stream.position}
    return {"error": None, "step": trainer.state.global_step, "position": trainer.pool.stream.position}


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    results = {"same": run(model_path, out), "diverging": run_diverging(model_path, out)}
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump(results, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
