"""The warm start: supervised training on additions (TRL's `SFTTrainer`) until the start criterion holds.

A supervised run on additions sits on a loss plateau and then learns suddenly, and *when* depends on the CPU's
floating-point paths. So the warm start does not train for a fixed number of steps: it measures the start criterion
on the pool every `demo_check_every` steps (:func:`~bots_demo.measure.start_shape`, with a margin) and stops at the
first check where it holds, whenever that happens. Its checkpoints `demo_reference_offset` steps before and after give
the two reference models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainingArguments

from .arguments import OfflineDemoArguments
from .arithmetic import LEVEL_COLUMN, build_model, make_additions
from .console import bar_without_log_lines
from .measure import criterion_failures, sampled_pass_rates, start_shape


class _StartCriterionMonitor(TrainerCallback):
    """Measures the start criterion on the pool every ``check_every`` steps; saves the warm start and the references."""

    def __init__(self, args: OfflineDemoArguments, tokenizer, pool: Dataset, folder: Path, temperature: float):
        self.args, self.tokenizer, self.pool, self.folder = args, tokenizer, pool, folder
        self.temperature = temperature
        self.history: list[dict[str, Any]] = []
        self.start_step: int | None = None
        self.weak_step: int | None = None
        self.strong_step: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.args.demo_check_every:
            return
        state_ = PartialState()
        if state_.is_main_process:
            model.save_pretrained(self.folder / "sft" / f"step-{step}")
        if self.start_step is None:
            samples = self.args.demo_reference_samples
            rates = sampled_pass_rates(model, self.tokenizer, self.pool, samples, self.temperature, seed=step)
            model.train()
            # Every process measures the same weights with the same seed; the main process's shares decide for all,
            # so that all of them stop at the same step.
            shape = broadcast_object_list([start_shape(rates)])[0]
            self.history.append({"step": step, **{k: round(v, 4) for k, v in shape.items()}})
            if state_.is_main_process:  # through tqdm: the progress bar stays whole below the line
                tqdm.write(
                    f"[warm start] step {step}: pool solved always {shape['always']:.2f}, never "
                    f"{shape['never']:.2f}, mixed {shape['mixed']:.2f}"
                )
            if not criterion_failures(shape, self.args, self.args.demo_criterion_margin):
                # The references are the checkpoints demo_reference_offset steps before and after: a weaker and a
                # stronger model than the warm start, as the paper's GURU columns come from a smaller and a larger
                # model; the strong one not past the last checkpoint saved (demo_sft_max_steps ends the training).
                self.start_step = step
                every = self.args.demo_check_every
                self.weak_step = max(every, step - self.args.demo_reference_offset)
                self.strong_step = min(
                    step + self.args.demo_reference_offset, self.args.demo_sft_max_steps // every * every
                )
        if step == self.strong_step:
            control.should_training_stop = True


def warm_start(
    args: OfflineDemoArguments, tokenizer, pool: Dataset, folder: Path, training_args: TrainingArguments
) -> dict:
    from trl import SFTConfig, SFTTrainer

    seed = training_args.seed
    weights = [args.demo_sft_carry_decay**k for k in range(args.demo_digits + 1)]
    sft_data = make_additions(args.demo_sft_examples, args.demo_digits, seed + 3, weights)
    sft_data = sft_data.rename_column("solution", "completion").remove_columns(LEVEL_COLUMN)
    config = SFTConfig(
        output_dir=os.fspath(folder / "sft"),
        max_steps=args.demo_sft_max_steps,
        per_device_train_batch_size=args.demo_sft_batch_size,
        learning_rate=args.demo_sft_learning_rate,
        lr_scheduler_type="constant_with_warmup",  # constant: the criterion, not a schedule, decides where to stop
        warmup_steps=100,
        save_strategy="no",
        logging_steps=args.demo_check_every,
        report_to="none",
        use_cpu=training_args.use_cpu,
        bf16=False,
        seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=training_args.disable_tqdm,
    )
    model = build_model(tokenizer, args.demo_hidden_size, args.demo_num_layers, seed=seed)
    monitor = _StartCriterionMonitor(args, tokenizer, pool, folder, training_args.temperature)
    trainer = SFTTrainer(model=model, args=config, train_dataset=sft_data, processing_class=tokenizer)
    trainer.add_callback(monitor)
    bar_without_log_lines(trainer)
    trainer.train()
    if monitor.start_step is None:
        raise RuntimeError(
            f"The warm start did not reach the start criterion within demo_sft_max_steps={args.demo_sft_max_steps} "
            f"steps; the last measurement: {monitor.history[-1] if monitor.history else 'none'}. Raise "
            "demo_sft_max_steps, or check the criterion's thresholds (demo_min_always_solved, demo_min_never_solved, "
            "demo_max_mixed) against the history in the log."
        )
    return {
        "start_step": monitor.start_step,
        "weak_step": monitor.weak_step,
        "strong_step": monitor.strong_step,
        "criterion_history": monitor.history,
    }
