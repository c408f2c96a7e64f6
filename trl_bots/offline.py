"""The offline demonstration's setup: a small model warm-started on additions, a GURU-like task pool, reference columns.

:func:`build_offline_setup` makes everything ``examples/train_bots.py`` and ``benchmarks/grpo_ab.py`` need, on a CPU,
with no downloads: a character-level tokenizer and a small Qwen2 built locally, an addition task pool whose difficulty
(the number of carries, :mod:`trl_bots.arithmetic`) spreads from always solved to never solved, a supervised warm
start (TRL's ``SFTTrainer``) and the two BOTS reference columns, measured with
:func:`trl_bots.pass_rates.estimate_pass_rates` on a weaker (earlier) and a stronger (later) warm-start checkpoint.

**Why it reproduces on any machine.** The warm start does not train for a fixed number of steps: a supervised run on
additions sits on a loss plateau and then learns suddenly, and *when* depends on the CPU's floating-point paths. It
trains until a measured criterion holds (:func:`start_shape`: the share of pool tasks a model always, never and
sometimes solves, measured on the pool with a margin) and stops there, whenever that happens. The result is
shipped in the repository (``examples/offline_setup``, ~2 MB, with the settings, the criterion measured at every check
and a SHA-256 of every file in ``setup.json``), so the demonstration starts from the same weights everywhere;
``--demo_rebuild`` remakes it. Whatever its origin, :func:`check_start` measures the criterion again on the pool before
any GRPO step and stops with the measured values if it does not hold: nothing trains from a broken start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from .arithmetic import build_model, build_tokenizer, make_additions
from .pass_rates import GenerationSettings, estimate_pass_rates
from .rewards import exact_match_reward


WEAK_COLUMN, STRONG_COLUMN = "weak_pass_rate", "strong_pass_rate"
LEVEL_COLUMN = "carries"
SHIPPED_SETUP = Path(__file__).resolve().parent.parent / "examples" / "offline_setup"
MANIFEST = "setup.json"
SETUP_FORMAT = "trl-bots-offline-setup/2"


@dataclass
class OfflineDemoArguments:
    """The offline demonstration's world and warm start (used when no ``dataset_name`` is given)."""

    demo_setup: str = field(
        default=os.fspath(SHIPPED_SETUP),
        metadata={
            "help": "The shipped, warm-started setup. Used when its settings equal these (and not --demo_rebuild); "
            "otherwise the setup is built (and cached) in {output_dir}/offline_setup."
        },
    )
    demo_rebuild: bool = field(
        default=False,
        metadata={"help": "Build the setup in {output_dir}/offline_setup even if a matching one exists."},
    )
    demo_reference_run: bool = field(
        default=True,
        metadata={"help": "After BOTS, train a uniform-sampling reference from the same warm start, for comparison."},
    )
    demo_eval_every: int = field(
        default=10, metadata={"help": "GRPO steps between two held-out evaluations (and one at the last step)."}
    )
    demo_digits: int = field(
        default=8, metadata={"help": "Digits of each operand (tasks have 0 to this many carries)."}
    )
    demo_num_tasks: int = field(default=1000, metadata={"help": "Training tasks (additions) that BOTS selects from."})
    demo_num_eval: int = field(
        default=2700, metadata={"help": "Held-out additions (the same number per carry level) for the evaluations."}
    )
    demo_pool_level_weights: list[float] = field(
        default_factory=lambda: [3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        metadata={
            "help": "Share of pool tasks with 0, 1, ... demo_digits carries (demo_digits + 1 weights): GURU-like, many "
            "easy tasks (no carry) and many hard ones."
        },
    )
    demo_sft_carry_decay: float = field(
        default=0.3,
        metadata={
            "help": "Warm-start data has k carries with weight decay**k: carrying is seen rarely, so it is learnt "
            "partly and the pass rates spread from always to never solved."
        },
    )
    demo_sft_examples: int = field(
        default=20000, metadata={"help": "Distinct additions the warm start cycles through."}
    )
    demo_sft_batch_size: int = field(default=128, metadata={"help": "Batch size of the supervised warm start."})
    demo_sft_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the warm start."})
    demo_sft_max_steps: int = field(
        default=4000, metadata={"help": "Most warm-start steps; not reaching the start criterion by then is an error."}
    )
    demo_check_every: int = field(
        default=50, metadata={"help": "Warm-start steps between two measurements of the start criterion."}
    )
    demo_criterion_margin: float = field(
        default=0.03,
        metadata={
            "help": "The warm start stops at the first check where the start criterion holds on the pool by this "
            "margin (two standard errors of a share over 1,000 tasks), so that the check before GRPO, which measures "
            "it again with other random numbers, does not fall just short of it."
        },
    )
    demo_min_always_solved: float = field(
        default=0.25, metadata={"help": "Start criterion: at least this share of pool tasks solved by all samples."}
    )
    demo_min_never_solved: float = field(
        default=0.25, metadata={"help": "Start criterion: at least this share of pool tasks solved by no sample."}
    )
    demo_max_mixed: float = field(
        default=0.45,
        metadata={"help": "Start criterion: at most this share of pool tasks with mixed outcomes (what GRPO learns)."},
    )
    demo_reference_offset: int = field(
        default=100,
        metadata={
            "help": "The weak reference is the warm start's checkpoint this many steps before the start, the strong "
            "one this many steps after (a multiple of demo_check_every): close enough to the policy that their pass "
            "rates tell the tasks apart, as GURU's 7B and 30B columns do."
        },
    )
    demo_reference_samples: int = field(
        default=8, metadata={"help": "Completions per task when measuring pass rates (references and criterion)."}
    )
    demo_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the small Qwen2 model."})
    demo_num_layers: int = field(default=2, metadata={"help": "Layers of the small Qwen2 model."})

    def __post_init__(self):
        for name in ("demo_min_always_solved", "demo_min_never_solved", "demo_max_mixed", "demo_criterion_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be a share in [0, 1].")
        if len(self.demo_pool_level_weights) != self.demo_digits + 1:
            raise ValueError(
                f"demo_pool_level_weights has {len(self.demo_pool_level_weights)} weights; demo_digits="
                f"{self.demo_digits} needs {self.demo_digits + 1} (one per number of carries 0..{self.demo_digits})."
            )
        if not 0.0 < self.demo_sft_carry_decay <= 1.0:
            raise ValueError(f"demo_sft_carry_decay={self.demo_sft_carry_decay} must lie in (0, 1].")
        if self.demo_check_every < 1 or self.demo_sft_max_steps < self.demo_check_every:
            raise ValueError(
                f"demo_check_every={self.demo_check_every} must be >= 1 and at most demo_sft_max_steps="
                f"{self.demo_sft_max_steps}."
            )
        if self.demo_reference_offset < 1 or self.demo_reference_offset % self.demo_check_every:
            raise ValueError(
                f"demo_reference_offset={self.demo_reference_offset} must be a positive multiple of demo_check_every="
                f"{self.demo_check_every}: the references are warm-start checkpoints, saved at every check."
            )

    def world_settings(self) -> dict[str, Any]:
        """The settings that change the setup (the run-time switches excluded), as stored in ``setup.json``."""
        switches = {"demo_setup", "demo_rebuild", "demo_reference_run", "demo_eval_every"}
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in switches}


@dataclass
class OfflineSetup:
    """What :func:`build_offline_setup` returns."""

    folder: str
    model_path: str  # the warm-started model (and its tokenizer)
    tokenizer: PreTrainedTokenizerFast
    train_dataset: Dataset  # prompt, solution, carries, weak_pass_rate, strong_pass_rate
    eval_dataset: Dataset  # held out: never seen by the warm start nor by GRPO
    manifest: dict[str, Any]

    @property
    def temperature(self) -> float:
        """The sampling temperature every pass rate of the setup was measured at (GRPO's)."""
        return self.manifest["settings"]["temperature"]


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    # PreTrainedTokenizerFast, not AutoTokenizer, which would pick the Qwen2 tokenizer class for this folder.
    return PreTrainedTokenizerFast.from_pretrained(os.fspath(path))


# ------------------------------------------------------------------ measuring a model on the task set
def sampled_pass_rates(
    model,
    tokenizer,
    dataset: Dataset,
    samples: int,
    temperature: float,
    seed: int = 0,
    description: str | None = None,
) -> np.ndarray:
    """Per-task share of ``samples`` completions at ``temperature`` that are exactly right (``model`` left in eval)."""
    settings = GenerationSettings(
        num_samples=samples, temperature=temperature, max_new_tokens=_answer_tokens(dataset), batch_size=256, seed=seed
    )
    return estimate_pass_rates(
        dataset,
        model,
        tokenizer,
        exact_match_reward,
        settings,
        description=description,
        show_progress=description is not None and PartialState().is_local_main_process,  # one bar, not one per process
    )


def _answer_tokens(dataset: Dataset) -> int:
    return len(dataset[0]["solution"]) + 1  # the digits of the sum and the end-of-sequence token


def start_shape(pass_rates: np.ndarray) -> dict[str, float]:
    """Shares of tasks solved by every sample (``always``), by none (``never``) and by some (``mixed``)."""
    rates = np.asarray(pass_rates, dtype=np.float64)
    always, never = float(np.mean(rates >= 1.0)), float(np.mean(rates <= 0.0))
    return {"always": always, "never": never, "mixed": 1.0 - always - never}


def criterion_failures(shape: dict[str, float], args: OfflineDemoArguments, margin: float = 0.0) -> list[str]:
    """The parts of the start criterion ``shape`` misses (by ``margin``), in words (empty when it holds)."""
    shape = {"always": shape["always"] - margin, "never": shape["never"] - margin, "mixed": shape["mixed"] + margin}
    checks = [
        (
            "always",
            shape["always"] >= args.demo_min_always_solved,
            f">= demo_min_always_solved={args.demo_min_always_solved}",
        ),
        (
            "never",
            shape["never"] >= args.demo_min_never_solved,
            f">= demo_min_never_solved={args.demo_min_never_solved}",
        ),
        ("mixed", shape["mixed"] <= args.demo_max_mixed, f"<= demo_max_mixed={args.demo_max_mixed}"),
    ]
    return [f"{name} solved share {shape[name]:.3f} (needs {need})" for name, ok, need in checks if not ok]


def accuracy_by_level(correct: np.ndarray, levels: np.ndarray) -> dict[str, float]:
    """Overall and per-level mean of ``correct`` (keys ``"all"``, ``"0"``, ``"1"``, ...)."""
    result = {"all": float(np.mean(correct))}
    result.update({str(level): float(np.mean(correct[levels == level])) for level in np.unique(levels)})
    return result


class HeldoutEvaluation(TrainerCallback):
    """
    Held-out accuracy every ``every`` steps and at the last step: one completion per held-out task at ``temperature``
    (GRPO's: the policy it trains), exact match, overall and per carry level. The sampling seed is the same at every
    evaluation and in every run, so two runs are compared on the same random numbers.
    """

    def __init__(self, tokenizer, dataset: Dataset, every: int, temperature: float, seed: int = 1234):
        self.tokenizer, self.dataset, self.every, self.seed = tokenizer, dataset, every, seed
        self.temperature = temperature
        self.levels = np.asarray(dataset[LEVEL_COLUMN])
        self.steps: list[int] = []
        self.accuracy: list[dict[str, float]] = []
        self.seconds = 0.0

    def evaluate(self, model) -> dict[str, float]:
        start = time.perf_counter()
        was_training = model.training
        rates = sampled_pass_rates(model, self.tokenizer, self.dataset, 1, self.temperature, seed=self.seed)
        model.train(was_training)
        self.seconds += time.perf_counter() - start
        return accuracy_by_level(rates, self.levels)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.steps.append(state.global_step)
            self.accuracy.append(self.evaluate(model))


class _ProgressBar(ProgressCallback):
    """The Trainer's progress bar without a printed line per log: the logs (some 35 metrics at every GRPO step) are in
    trainer_state.json and the plots, and on the console they would bury the bar and the demo's report."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def _bar_without_log_lines(trainer) -> None:
    if trainer.pop_callback(ProgressCallback) is not None:  # absent with disable_tqdm: then the user asked for lines
        trainer.add_callback(_ProgressBar)


# ------------------------------------------------------------------ the warm start
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


def _warm_start(
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
    _bar_without_log_lines(trainer)
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


# ------------------------------------------------------------------ building, shipping and loading the setup
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return manifest if manifest.get("format") == SETUP_FORMAT else None


def _load(folder: Path) -> OfflineSetup:
    manifest = _read_manifest(folder)
    changed = [
        name
        for name, digest in manifest["sha256"].items()
        if not (folder / name).is_file() or _sha256(folder / name) != digest
    ]
    if changed:
        raise ValueError(
            f"The offline setup in {folder} does not match its {MANIFEST}: {changed} missing or changed. Restore the "
            f"folder (git checkout -- {folder}) or rebuild it with --demo_rebuild."
        )
    return OfflineSetup(
        folder=os.fspath(folder),
        model_path=os.fspath(folder / "warm_start"),
        tokenizer=load_tokenizer(folder / "warm_start"),
        train_dataset=Dataset.from_json(os.fspath(folder / "train.jsonl")),
        eval_dataset=Dataset.from_json(os.fspath(folder / "eval.jsonl")),
        manifest=manifest,
    )


def build_offline_setup(args: OfflineDemoArguments, training_args: TrainingArguments) -> OfflineSetup:
    """
    The shipped setup (``args.demo_setup``) when its settings are ``args``'s; otherwise the one built (or cached) in
    ``{training_args.output_dir}/offline_setup``. The warm start trains on all processes (it is distributed like any
    Trainer); the reference columns are measured and the files written by the main process while the others wait,
    then every process loads the same files, so all of them hold identical tasks and reference columns.
    """
    # GRPO's sampling temperature is part of the world: pass rates, and so the criterion, are measured at it.
    settings = {**args.world_settings(), "seed": training_args.seed, "temperature": training_args.temperature}
    shipped = _read_manifest(Path(args.demo_setup))
    if not args.demo_rebuild and shipped is not None and shipped["settings"] == settings:
        return _load(Path(args.demo_setup))
    folder = Path(training_args.output_dir) / "offline_setup"
    cached = _read_manifest(folder)
    if args.demo_rebuild or cached is None or cached["settings"] != settings:
        _build(args, settings, folder, training_args)
    return _load(folder)


def _build(args: OfflineDemoArguments, settings: dict, folder: Path, training_args: TrainingArguments) -> None:
    started, state = time.perf_counter(), PartialState()
    state.print(f"[setup] building the offline setup in {folder}: a warm start until the start criterion holds")
    if state.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    state.wait_for_everyone()
    tokenizer, seed = build_tokenizer(), training_args.seed
    eval_dataset = make_additions(args.demo_num_eval, args.demo_digits, seed + 1)
    train_dataset = make_additions(
        args.demo_num_tasks,
        args.demo_digits,
        seed + 2,
        args.demo_pool_level_weights,
        exclude=set(eval_dataset["prompt"]),
    )
    warm = _warm_start(args, tokenizer, train_dataset, folder, training_args)
    with state.main_process_first():
        if state.is_main_process:
            _finish_build(args, settings, folder, tokenizer, train_dataset, eval_dataset, warm, started)


def _finish_build(args, settings, folder, tokenizer, train_dataset, eval_dataset, warm, started) -> None:
    """Reference columns, the files and the manifest (main process)."""
    import torch
    from transformers import AutoModelForCausalLM

    seed = settings["seed"]
    references = {WEAK_COLUMN: warm["weak_step"], STRONG_COLUMN: warm["strong_step"]}
    for column, step in references.items():
        model = AutoModelForCausalLM.from_pretrained(os.fspath(folder / "sft" / f"step-{step}"))
        rates = sampled_pass_rates(
            model,
            tokenizer,
            train_dataset,
            args.demo_reference_samples,
            settings["temperature"],
            seed=seed,
            description=f"{column} (step {step})",
        )
        train_dataset = train_dataset.add_column(column, rates.tolist())
    warm_start = folder / "warm_start"
    shutil.move(folder / "sft" / f"step-{warm['start_step']}", warm_start)
    shutil.rmtree(folder / "sft")  # the intermediate checkpoints: the references' pass rates are in the data now
    tokenizer.save_pretrained(warm_start)
    train_dataset.to_json(os.fspath(folder / "train.jsonl"))
    eval_dataset.to_json(os.fspath(folder / "eval.jsonl"))
    manifest = {
        "format": SETUP_FORMAT,
        "settings": settings,
        "build": {
            **warm,
            "command": f"python examples/train_bots.py --demo_rebuild --seed {seed} --temperature {settings['temperature']}",
            "seconds": round(time.perf_counter() - started, 1),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "sha256": _file_hashes(folder),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def check_start(setup: OfflineSetup, args: OfflineDemoArguments, model=None) -> np.ndarray:
    """
    Measure the warm start's pass rates on the whole pool and check the start criterion on them; ``RuntimeError``
    naming the measured shares if it does not hold. Returns the pass rates (the start of the pass-rate histogram).
    """
    from transformers import AutoModelForCausalLM

    model = model if model is not None else AutoModelForCausalLM.from_pretrained(setup.model_path)
    rates = sampled_pass_rates(
        model,
        setup.tokenizer,
        setup.train_dataset,
        args.demo_reference_samples,
        setup.temperature,
        description="warm start on the pool",
    )
    failures = criterion_failures(start_shape(rates), args)
    if failures:
        raise RuntimeError(
            f"The warm start in {setup.folder} does not meet the start criterion on the task pool: "
            f"{'; '.join(failures)}. GRPO from it would not show what BOTS does. Rebuild it with --demo_rebuild (the "
            f"build trains until the criterion holds), or restore the shipped setup (git checkout -- {setup.folder})."
        )
    return rates


# ------------------------------------------------------------------ GRPO from the setup: what the demo and the A/B run
def train_from_setup(
    setup: OfflineSetup, args, reward_funcs: list, evaluation: HeldoutEvaluation, samples: int
) -> dict[str, Any]:
    """
    One GRPO run (``BOTSGRPOTrainer`` with ``args``, any ``bots_strategy``) from the setup's warm start, evaluated on
    the held-out set by ``evaluation``. Returns the run's record: the evaluated steps and accuracies (overall and per
    carry level), the effective-task ratio of every step, the training wall time (evaluations excluded), the pool's
    pass rates at the end (``samples`` completions per task) and the trainer.
    """
    from .plotting import log_series
    from .trainer import BOTSGRPOTrainer

    trainer = BOTSGRPOTrainer(
        model=setup.model_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=setup.train_dataset,
        processing_class=setup.tokenizer,
    )
    trainer.add_callback(evaluation)
    _bar_without_log_lines(trainer)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    seconds = time.perf_counter() - start - evaluation.seconds
    model = trainer.accelerator.unwrap_model(trainer.model)
    end_rates = sampled_pass_rates(model, setup.tokenizer, setup.train_dataset, samples, setup.temperature)
    _, etr = log_series(trainer.state.log_history, "bots/effective_task_ratio")
    return {
        "seed": args.seed,
        "eval_steps": list(evaluation.steps),
        "accuracy": [point["all"] for point in evaluation.accuracy],
        "accuracy_by_level": [{k: v for k, v in point.items() if k != "all"} for point in evaluation.accuracy],
        "etr": etr.tolist(),
        "train_seconds": seconds,
        "end_shape": start_shape(end_rates),
        "trainer": trainer,
    }


def steps_to_reach(steps: list[int], accuracy: list[float], target: float) -> int | None:
    """First evaluated step whose accuracy is at least ``target``; ``None`` if there is none."""
    reached = [step for step, value in zip(steps, accuracy, strict=True) if value >= target]
    return reached[0] if reached else None
