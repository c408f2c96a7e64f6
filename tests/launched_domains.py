"""Run under `accelerate launch --multi_gpu --num_processes 2` by test_trainer_distributed.py.

Trains 6 steps on a two-domain pool with domain quotas and writes what this rank saw (its reward calls, the selected
rounds, the logged history, the quota lag) to `<out>/rank<i>.json`.
"""

import json
import sys

from accelerate import PartialState
from accelerate.utils import DistributedType
from launching import end_launched_rank, first_letter_reward
from recording import RewardRecorder, SelectionLog
from tiny import load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


DOMAINS = ["x" if i % 3 == 0 else "y" for i in range(12)]


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    dataset = task_dataset(12).add_column("meta", [{"domain": d} for d in DOMAINS])
    args = tiny_args(
        f"{out}/run",
        per_device_train_batch_size=4,  # 2 processes x 4 completions = 4 tasks x 2 generations a round
        max_steps=6,
        bots_domain_column="meta.domain",
        bots_domain_weights={"x": 1, "y": 2},
    )
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(first_letter_reward), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    assert trainer.accelerator.distributed_type == DistributedType.MULTI_CPU, trainer.accelerator.distributed_type
    selections = SelectionLog(trainer)
    trainer.train()
    result = {
        "calls": recorder.calls,
        "rounds": [selection["tasks"] for selection in selections.selections],
        "log_history": trainer.state.log_history,
        "lag": [str(value) for value in trainer.selector.domain_lag],
        "domains": DOMAINS,
    }
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump(result, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
