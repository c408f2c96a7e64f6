"""Run under `accelerate launch --multi_gpu --num_processes N` (N = 3, 4) by test_many_processes.py: `<model> <out>`.

Every round spans `steps_per_generation = 2` steps, each trained `num_iterations = 2` times, and rank r's reward
function sleeps 50 * r ms more than rank 0's, so the ranks reach every collective at different times. Asserts the world
size and writes what this rank saw (its reward calls and their wall time, the posterior after every step, the selected
rounds) to `<out>/rank<i>.json`.
"""

import json
import sys
import time

import torch
from accelerate.utils import DistributedType
from launching import end_launched_rank
from recording import PosteriorLog, RewardRecorder, SelectionLog
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


SLEEP_PER_RANK = 0.05


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    reward_seconds = []

    def uneven_reward(completions, idx, **kwargs):
        start = time.perf_counter()
        time.sleep(SLEEP_PER_RANK * torch.distributed.get_rank())
        rewards = even_task_reward(completions, idx)
        reward_seconds.append(time.perf_counter() - start)
        return rewards

    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    args = tiny_args(
        f"{out}/run", per_device_train_batch_size=2, steps_per_generation=2, num_iterations=2, max_steps=12
    )
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(uneven_reward), args=args, train_dataset=task_dataset(12), processing_class=tokenizer
    )
    world = trainer.accelerator.num_processes
    assert world == torch.distributed.get_world_size() and world in (3, 4), world
    assert trainer.accelerator.distributed_type == DistributedType.MULTI_CPU, trainer.accelerator.distributed_type
    log = PosteriorLog(trainer)
    trainer.add_callback(log)
    selections = SelectionLog(trainer)
    trainer.train()
    with open(f"{out}/rank{trainer.accelerator.process_index}.json", "w") as f:
        json.dump(
            {
                "world": world,
                "calls": recorder.calls,
                "reward_seconds": reward_seconds,
                "steps": log.steps,
                "rounds": [selection["tasks"] for selection in selections.selections],
            },
            f,
        )
    end_launched_rank()


if __name__ == "__main__":
    main()
