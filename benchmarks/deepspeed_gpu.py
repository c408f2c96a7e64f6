"""A short GRPO job under DeepSpeed ZeRO on a GPU: per-step time with and without BOTS, and checkpoint + resume.

Run one phase per `accelerate launch` (a fresh DeepSpeed engine each), with an accelerate config whose
`distributed_type` is DEEPSPEED (e.g. `configs/accelerate/deepspeed_zero2.yaml` with `num_processes: 1`):

    accelerate launch --config_file ds.yaml benchmarks/deepspeed_gpu.py --phase stock  --out run/
    accelerate launch --config_file ds.yaml benchmarks/deepspeed_gpu.py --phase bots   --out run/
    accelerate launch --config_file ds.yaml benchmarks/deepspeed_gpu.py --phase first  --out run/   # half, checkpoint
    accelerate launch --config_file ds.yaml benchmarks/deepspeed_gpu.py --phase resume --out run/   # resume to the end
    python benchmarks/deepspeed_gpu.py --phase report --out run/

`report` prints JSON: the median step time of stock GRPO and of BOTS, their ratio, and whether the resumed run ends
with the same selected tasks and a bit-identical posterior as the uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from tiny import build_tiny_model, even_task_reward, load_tiny, task_dataset  # noqa: E402
from trainer_overhead import StepTimer  # noqa: E402


def settings(output_dir: str, steps: int) -> dict:
    return {
        "output_dir": output_dir,
        "bf16": True,
        "per_device_train_batch_size": 64,
        "num_generations": 8,
        "max_completion_length": 32,
        "max_steps": steps,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": steps // 2,
        "report_to": "none",
        "seed": 0,
        "disable_tqdm": True,
    }


def train(phase: str, out: str, steps: int) -> None:
    from trl import GRPOConfig, GRPOTrainer

    from trl_bots import BOTSConfig, BOTSGRPOTrainer

    model, tokenizer = load_tiny(os.path.join(out, "model"))
    run_dir = os.path.join(out, "bots-resumed" if phase in ("first", "resume") else phase)
    if phase == "stock":
        args, trainer_class = GRPOConfig(**settings(run_dir, steps)), GRPOTrainer
    else:
        args, trainer_class = BOTSConfig(**settings(run_dir, steps)), BOTSGRPOTrainer
        if phase == "first":
            args.max_steps = steps // 2
    trainer = trainer_class(
        model, even_task_reward, args=args, train_dataset=task_dataset(4096), processing_class=tokenizer
    )
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train(resume_from_checkpoint=phase == "resume" or None)
    if trainer.accelerator.is_main_process:
        record = {"step_s": timer.times[1:], "engine": type(trainer.model_wrapped).__name__}
        if phase != "stock":
            record["zero_stage"] = trainer.accelerator.state.deepspeed_plugin.zero_stage
            record["alpha"] = trainer.selector.alpha.tolist()
            record["beta"] = trainer.selector.beta.tolist()
            record["rounds"] = trainer.selector.round
        with open(os.path.join(out, f"{phase}.json"), "w") as f:
            json.dump(record, f)


def report(out: str) -> dict:
    runs = {}
    for phase in ("stock", "bots", "resume"):
        with open(os.path.join(out, f"{phase}.json")) as f:
            runs[phase] = json.load(f)
    stock, bots = statistics.median(runs["stock"]["step_s"]), statistics.median(runs["bots"]["step_s"])
    return {
        "engine": runs["bots"]["engine"],
        "zero_stage": runs["bots"]["zero_stage"],
        "stock_step_s": stock,
        "bots_step_s": bots,
        "ratio": bots / stock,
        "rounds": runs["bots"]["rounds"],
        "resume_rounds": runs["resume"]["rounds"],
        "resume_posterior_identical": bool(
            np.array_equal(runs["bots"]["alpha"], runs["resume"]["alpha"])
            and np.array_equal(runs["bots"]["beta"], runs["resume"]["beta"])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", required=True, choices=["model", "stock", "bots", "first", "resume", "report"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    options = parser.parse_args()
    if options.phase == "model":
        build_tiny_model(os.path.join(options.out, "model"), hidden_size=512, num_layers=8)
    elif options.phase == "report":
        print(json.dumps(report(options.out), indent=2))
    else:
        train(options.phase, options.out, options.steps)


if __name__ == "__main__":
    main()
