"""The offline demonstration's setup: a small model warm-started on additions, a GURU-like task pool, reference columns.

:func:`build_offline_setup` makes everything ``examples/train_bots.py`` and ``benchmarks/grpo_ab.py`` need, on a CPU,
with no downloads: a character-level tokenizer and a small Qwen2 built locally, an addition task pool whose difficulty
(the number of carries, :mod:`bots_demo.arithmetic`) spreads from always solved to never solved, a supervised warm
start (TRL's ``SFTTrainer``) and the two BOTS reference columns, measured with
:func:`trl_bots.pass_rates.estimate_pass_rates` on a weaker (earlier) and a stronger (later) warm-start checkpoint
(:mod:`bots_demo.warm_start`).

**Why it reproduces on any machine.** The warm start does not train for a fixed number of steps: a supervised run on
additions sits on a loss plateau and then learns suddenly, and *when* depends on the CPU's floating-point paths. It
trains until a measured criterion holds (:func:`~bots_demo.measure.start_shape`: the share of pool tasks a model
always, never and sometimes solves, measured on the pool with a margin) and stops there, whenever that happens. The
result is shipped in the repository (``examples/offline_setup``, ~2 MB, with the settings, the criterion measured at
every check and a SHA-256 of every file in ``setup.json``), so the demonstration starts from the same weights
everywhere; ``--demo_rebuild`` remakes it. Whatever its origin, :func:`~bots_demo.measure.check_start` measures the
criterion again on the pool before any GRPO step and stops with the measured values if it does not hold: nothing
trains from a broken start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import PartialState
from datasets import Dataset
from transformers import PreTrainedTokenizerFast, TrainingArguments

from .arguments import OfflineDemoArguments
from .arithmetic import build_tokenizer, make_additions
from .measure import sampled_pass_rates
from .warm_start import warm_start


WEAK_COLUMN, STRONG_COLUMN = "weak_pass_rate", "strong_pass_rate"
MANIFEST = "setup.json"
SETUP_FORMAT = "trl-bots-offline-setup/2"


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
    warm = warm_start(args, tokenizer, train_dataset, folder, training_args)
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
