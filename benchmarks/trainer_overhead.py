"""Per-step overhead of BOTSGRPOTrainer over TRL's GRPOTrainer on the same tiny CPU run.

Both trainers train the same locally built tiny Qwen2 (tests/tiny.py) with the same settings; repetitions alternate
between the two in one process so that machine load drifts affect both alike. The time of every optimizer step is
taken by a callback; the first step of each run (warm-up) is dropped and the medians are compared. Torch runs\none intra-op thread to keep the numbers steady on a small shared machine.

    HF_HUB_OFFLINE=1 python benchmarks/trainer_overhead.py [--repetitions 5] [--steps 12] [--tasks 2000]

Prints JSON; `ratio` (BOTS median step time / stock median step time) should be at most 1.02.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from transformers import TrainerCallback


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from tiny import build_tiny_model, even_task_reward, load_tiny, task_dataset, tiny_args, tiny_settings  # noqa: E402


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def step_times(kind: str, model_path: str, output_dir: str, steps: int, tasks: int) -> list[float]:
    from trl import GRPOConfig, GRPOTrainer

    from trl_bots.trainer import BOTSGRPOTrainer

    model, tokenizer = load_tiny(model_path)
    settings = tiny_settings(output_dir, max_steps=steps, logging_steps=steps)
    if kind == "stock":
        args, trainer_class = GRPOConfig(**settings), GRPOTrainer
    else:
        args, trainer_class = tiny_args(**settings), BOTSGRPOTrainer
    trainer = trainer_class(
        model, even_task_reward, args=args, train_dataset=task_dataset(tasks), processing_class=tokenizer
    )
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer.times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5, help="runs of each trainer, alternating")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (the first is dropped)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in the training dataset")
    options = parser.parse_args()
    # The first step of every run is dropped as warm-up; a round holds 2 distinct tasks (tests/tiny.py's settings).
    for name, least in (("repetitions", 1), ("steps", 2), ("tasks", 2)):
        if getattr(options, name) < least:
            parser.error(f"--{name} must be >= {least}, got {getattr(options, name)}")
    # One intra-op thread: on a small shared CPU, thread contention is the largest source of noise in step times.
    torch.set_num_threads(1)
    # Everything that may print goes to stderr, stdout carries only the JSON: the Trainer's logs, and DeepSpeed's
    # notice that it found no GPU, whose logger keeps the stdout it sees when TRL first imports it (in step_times).
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        model_path = build_tiny_model(os.path.join(tmp, "model"))
        times = {"stock": [], "bots": []}
        for repetition in range(options.repetitions):
            order = ("stock", "bots") if repetition % 2 == 0 else ("bots", "stock")
            for kind in order:
                out = os.path.join(tmp, f"{kind}-{repetition}")
                times[kind] += step_times(kind, model_path, out, options.steps, options.tasks)
    stock, bots = statistics.median(times["stock"]), statistics.median(times["bots"])
    print(
        json.dumps(
            {
                "stock_step_s": stock,
                "bots_step_s": bots,
                "ratio": bots / stock,
                "target": 1.02,
                "steps_per_kind": len(times["bots"]),
                "repetitions": options.repetitions,
                "tasks": options.tasks,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
