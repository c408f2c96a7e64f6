"""The offline demonstration's setup: a small model warm-started on additions, with reference pass-rate columns.

:func:`build_offline_setup` makes everything ``examples/train_bots.py`` needs with no arguments, on a CPU, with no
downloads: a character-level tokenizer and a small Qwen2 built locally, an addition task set whose difficulty spreads
widely, a short supervised warm start (TRL's ``SFTTrainer``) so that pass rates start spread between 0 and 1, and the
two BOTS reference columns measured with :func:`trl_bots.pass_rates.estimate_pass_rates` on an early (weak) and the
final (strong) warm-start checkpoint. It is reusable as is (a benchmark can train other strategies from the same
setup), and cached in its folder: a second call with the same arguments loads what the first one wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk
from transformers import PreTrainedTokenizerFast, TrainingArguments

from .arithmetic import build_model, build_tokenizer, make_additions
from .pass_rates import GenerationSettings, estimate_pass_rates
from .rewards import exact_match_reward


WEAK_COLUMN, STRONG_COLUMN = "weak_pass_rate", "strong_pass_rate"
ANSWER_TOKENS = 8  # generation budget of an answer: up to 7 digits plus the end-of-sequence token


@dataclass
class OfflineDemoArguments:
    """Sizes of the offline demonstration (used when no ``dataset_name`` is given)."""

    demo_num_tasks: int = field(default=1000, metadata={"help": "Training tasks (additions) that BOTS selects from."})
    demo_num_eval: int = field(default=400, metadata={"help": "Held-out additions for the accuracy before/after."})
    demo_max_digits: int = field(default=3, metadata={"help": "Operands have 1 to this many digits."})
    demo_sft_steps: int = field(default=1500, metadata={"help": "Optimizer steps of the supervised warm start."})
    demo_sft_examples: int = field(
        default=32000, metadata={"help": "Distinct additions the warm start cycles through (fewer tokenize faster)."}
    )
    demo_sft_batch_size: int = field(default=128, metadata={"help": "Batch size of the supervised warm start."})
    demo_sft_learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the warm start."})
    demo_weak_step: int = field(
        default=750, metadata={"help": "Warm-start step whose checkpoint is the weak reference model."}
    )
    demo_reference_samples: int = field(
        default=8, metadata={"help": "Completions per task when measuring the reference pass rates."}
    )
    demo_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the small Qwen2 model."})
    demo_num_layers: int = field(default=2, metadata={"help": "Layers of the small Qwen2 model."})

    def __post_init__(self):
        if not 0 < self.demo_weak_step < self.demo_sft_steps:
            raise ValueError(
                f"demo_weak_step={self.demo_weak_step} must lie strictly between 0 and demo_sft_steps="
                f"{self.demo_sft_steps}: the weak reference is an earlier warm-start checkpoint than the final one."
            )


@dataclass
class OfflineSetup:
    """What :func:`build_offline_setup` returns."""

    model_path: str  # the warm-started model (and its tokenizer)
    tokenizer: PreTrainedTokenizerFast
    train_dataset: Dataset  # prompt, solution, digits, weak_pass_rate, strong_pass_rate
    eval_dataset: Dataset  # held out: never seen by the warm start nor by BOTS


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    # PreTrainedTokenizerFast, not AutoTokenizer, which would pick the Qwen2 tokenizer class for this folder.
    return PreTrainedTokenizerFast.from_pretrained(os.fspath(path))


def heldout_accuracy(model, tokenizer: PreTrainedTokenizerFast, dataset: Dataset, description: str) -> float:
    """Share of ``dataset`` answered exactly right by greedy decoding."""
    settings = GenerationSettings(num_samples=1, temperature=0.0, max_new_tokens=ANSWER_TOKENS, batch_size=200)
    rates = estimate_pass_rates(dataset, model, tokenizer, exact_match_reward, settings, description=description)
    return float(rates.mean())


def _warm_start(
    args: OfflineDemoArguments, tokenizer, sft_data: Dataset, folder: Path, training_args: TrainingArguments
) -> None:
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=os.fspath(folder / "sft"),
        max_steps=args.demo_sft_steps,
        per_device_train_batch_size=args.demo_sft_batch_size,
        learning_rate=args.demo_sft_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        save_strategy="steps",
        save_steps=args.demo_weak_step,
        save_only_model=True,
        logging_steps=max(args.demo_sft_steps // 10, 1),
        report_to="none",
        use_cpu=training_args.use_cpu,
        bf16=False,
        seed=training_args.seed,
        dataloader_num_workers=0,
        disable_tqdm=training_args.disable_tqdm,
    )
    model = build_model(tokenizer, args.demo_hidden_size, args.demo_num_layers, seed=training_args.seed)
    trainer = SFTTrainer(model=model, args=config, train_dataset=sft_data, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(os.fspath(folder / "warm_start"))


def build_offline_setup(args: OfflineDemoArguments, training_args: TrainingArguments) -> OfflineSetup:
    """
    Build (or load from ``{training_args.output_dir}/offline_setup``) the warm-started model and the task sets.

    The warm start trains on all processes (it is distributed like any Trainer); measuring the reference pass rates
    and writing the datasets happen on the main process while the others wait, then every process reads the same
    files, so all of them hold identical reference columns.
    """
    from accelerate import PartialState

    folder = Path(training_args.output_dir) / "offline_setup"
    manifest = folder / "setup.json"
    settings = {**dataclasses.asdict(args), "seed": training_args.seed}
    if not (manifest.is_file() and json.loads(manifest.read_text()) == settings):
        tokenizer = build_tokenizer()
        seed = training_args.seed
        eval_dataset = make_additions(args.demo_num_eval, args.demo_max_digits, seed=seed + 1)
        held_out = set(eval_dataset["prompt"])
        train_dataset = make_additions(args.demo_num_tasks, args.demo_max_digits, seed=seed + 2, exclude=held_out)
        sft_data = make_additions(
            args.demo_sft_examples, args.demo_max_digits, seed=seed + 3, exclude=held_out
        ).rename_column("solution", "completion")
        _warm_start(args, tokenizer, sft_data, folder, training_args)
        with PartialState().main_process_first():
            if PartialState().is_main_process:
                train_dataset = _with_reference_columns(args, train_dataset, folder, settings)
                train_dataset.save_to_disk(os.fspath(folder / "train"))
                eval_dataset.save_to_disk(os.fspath(folder / "eval"))
                manifest.write_text(json.dumps(settings))
    return OfflineSetup(
        model_path=os.fspath(folder / "warm_start"),
        tokenizer=load_tokenizer(folder / "warm_start"),
        train_dataset=load_from_disk(os.fspath(folder / "train")),
        eval_dataset=load_from_disk(os.fspath(folder / "eval")),
    )


def _with_reference_columns(
    args: OfflineDemoArguments, dataset: Dataset, folder: Path, setup_settings: dict
) -> Dataset:
    from transformers import AutoModelForCausalLM

    settings = GenerationSettings(num_samples=args.demo_reference_samples, max_new_tokens=ANSWER_TOKENS, batch_size=64)
    references = {
        WEAK_COLUMN: folder / "sft" / f"checkpoint-{args.demo_weak_step}",
        STRONG_COLUMN: folder / "warm_start",
    }
    for column, path in references.items():
        model = AutoModelForCausalLM.from_pretrained(os.fspath(path)).eval()
        rates = estimate_pass_rates(
            dataset,
            model,
            load_tokenizer(folder / "warm_start"),
            exact_match_reward,
            settings,
            progress_path=folder / f"{column}.partial.jsonl",
            progress_key={"model": path.name, **setup_settings},
            description=f"{column} ({path.name})",
        )
        dataset = dataset.add_column(column, rates.astype(np.float64).tolist())
    return dataset
