"""Time to build BOTSGRPOTrainer against TRL's GRPOTrainer on large pools of short prompts.

Each pool has one short prompt per task, two reference pass-rate columns and a domain column (6 labels, interleaved);
BOTS reads the reference and domain columns, fingerprints the rows and adds its task-id column when it is built. Both
trainers get the same locally built tiny Qwen2 (tests/tiny.py) and settings; repetitions alternate between the two in
one process, and the dataset is built before the clock starts. Torch runs one intra-op thread.

    HF_HUB_OFFLINE=1 python benchmarks/trainer_construction.py [--sizes 10000 100000 1000000] [--repetitions 3]

Prints JSON: per size, the median seconds to build each trainer and the difference (target: at most 2 s at 1e6).
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

import numpy as np
import torch
from datasets import Dataset


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from tiny import build_tiny_model, even_task_reward, load_tiny, tiny_settings  # noqa: E402


DOMAINS = ["math", "codegen", "logic", "simulation", "table", "stem"]


def task_pool(num_tasks: int) -> Dataset:
    """`num_tasks` short prompts with two reference columns and an interleaved domain column."""
    rng = np.random.default_rng(0)
    weak = rng.uniform(0.0, 0.8, num_tasks)
    return Dataset.from_dict(
        {
            "idx": np.arange(num_tasks),
            "prompt": [f"task {i}: say a" for i in range(num_tasks)],
            "weak": weak,
            "strong": np.minimum(weak + rng.uniform(0.0, 0.2, num_tasks), 1.0),
            "domain": [DOMAINS[i % len(DOMAINS)] for i in range(num_tasks)],
        }
    )


def build_seconds(kind: str, model_path: str, output_dir: str, dataset: Dataset) -> float:
    from trl import GRPOConfig, GRPOTrainer

    from trl_bots.config import BOTSConfig
    from trl_bots.trainer import BOTSGRPOTrainer

    model, tokenizer = load_tiny(model_path)
    settings = tiny_settings(output_dir)
    if kind == "stock":
        args, trainer_class = GRPOConfig(**settings), GRPOTrainer
    else:
        args = BOTSConfig(
            **settings,
            bots_reference_columns=["weak", "strong"],
            bots_domain_column="domain",
            bots_domain_weights="uniform",
        )
        trainer_class = BOTSGRPOTrainer
    start = time.perf_counter()
    trainer_class(model, even_task_reward, args=args, train_dataset=dataset, processing_class=tokenizer)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="tasks per pool")
    parser.add_argument("--repetitions", type=int, default=3, help="builds of each trainer per size, alternating")
    options = parser.parse_args()
    if options.repetitions < 1:
        parser.error(f"--repetitions must be >= 1, got {options.repetitions}")
    if min(options.sizes) < 2:
        parser.error(f"--sizes must be >= 2 (the tasks of one round of the tiny settings), got {min(options.sizes)}")
    torch.set_num_threads(1)
    results = []
    # stdout carries only the JSON: what the libraries print goes to stderr.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        model_path = build_tiny_model(os.path.join(tmp, "model"))
        for size in options.sizes:
            dataset = task_pool(size)
            seconds = {"stock": [], "bots": []}
            for repetition in range(options.repetitions):
                for kind in ("stock", "bots") if repetition % 2 == 0 else ("bots", "stock"):
                    out = os.path.join(tmp, f"{kind}-{size}-{repetition}")
                    seconds[kind].append(build_seconds(kind, model_path, out, dataset))
            stock, bots = statistics.median(seconds["stock"]), statistics.median(seconds["bots"])
            results.append(
                {
                    "tasks": size,
                    "stock_s": stock,
                    "bots_s": bots,
                    "difference_s": bots - stock,
                    "stock_runs_s": seconds["stock"],
                    "bots_runs_s": seconds["bots"],
                }
            )
    print(json.dumps({"repetitions": options.repetitions, "target_difference_s": 2.0, "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
