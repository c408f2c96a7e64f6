"""GRPO from the setup's warm start: one run of `BOTSGRPOTrainer` (or of the stock baseline on a task stream), what the
demo and the A/B benchmark train."""

from __future__ import annotations

import time
from typing import Any

from datasets import Dataset, IterableDataset
from trl import GRPOTrainer

from trl_bots.plotting import log_series
from trl_bots.trainer import BOTSGRPOTrainer

from .console import bar_without_log_lines
from .measure import HeldoutEvaluation, sampled_pass_rates, start_shape
from .offline_setup import OfflineSetup


def train_from_setup(
    setup: OfflineSetup,
    args,
    reward_funcs: list,
    evaluation: HeldoutEvaluation,
    samples: int,
    train_dataset: Dataset | IterableDataset | None = None,
    trainer_class: type[GRPOTrainer] = BOTSGRPOTrainer,
) -> dict[str, Any]:
    """
    One GRPO run (``BOTSGRPOTrainer`` with ``args``, any ``bots_strategy``) from the setup's warm start, evaluated on
    the held-out set by ``evaluation``, on the setup's task pool or on ``train_dataset`` (e.g. a task stream,
    :mod:`bots_demo.stream`); ``trainer_class`` is another trainer that logs ``bots/effective_task_ratio``
    (:class:`bots_demo.stock.StockGRPOTrainer`). Returns the run's record: the evaluated steps and accuracies (overall
    and per carry level), the effective-task ratio of every step, the training wall time (evaluations excluded), the
    pool's pass rates at the end (``samples`` completions per task), the trainer and, for an active pool (BOTS on a
    stream), its size, retired tasks and stream position at the end.
    """
    trainer = trainer_class(
        model=setup.model_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=setup.train_dataset if train_dataset is None else train_dataset,
        processing_class=setup.tokenizer,
    )
    trainer.add_callback(evaluation)
    bar_without_log_lines(trainer)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    seconds = time.perf_counter() - start - evaluation.seconds
    model = trainer.accelerator.unwrap_model(trainer.model)
    end_rates = sampled_pass_rates(model, setup.tokenizer, setup.train_dataset, samples, setup.temperature)
    _, etr = log_series(trainer.state.log_history, "bots/effective_task_ratio")
    record = {
        "seed": args.seed,
        "eval_steps": list(evaluation.steps),
        "accuracy": [point["all"] for point in evaluation.accuracy],
        "accuracy_by_level": [{k: v for k, v in point.items() if k != "all"} for point in evaluation.accuracy],
        "etr": etr.tolist(),
        "train_seconds": seconds,
        "end_shape": start_shape(end_rates),
        "trainer": trainer,
    }
    pool = getattr(trainer, "pool", None)
    if pool is not None:  # BOTS on a stream: how many of its tasks the run read, and retired
        record["pool"] = {"size": pool.size, "retired": pool.retired, "stream_position": pool.stream.position}
    return record


def steps_to_reach(steps: list[int], accuracy: list[float], target: float) -> int | None:
    """First evaluated step whose accuracy is at least ``target``; ``None`` if there is none."""
    reached = [step for step, value in zip(steps, accuracy, strict=True) if value >= target]
    return reached[0] if reached else None
