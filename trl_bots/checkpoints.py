"""Which checkpoint folders of a run were written to the end, and what is wrong with the others.

Light on purpose (no torch, no transformers): `trl-bots plot` and restart scripts use it as well as the trainer.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from .state import SELECTOR_FILE


SAMPLER_FILE = "bots_sampler.json"  # BOTS' round state in a checkpoint, written first and atomically
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer's state, written last (by process 0)
CHECKPOINT_PREFIX = "checkpoint-"


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in `path`; `ValueError` naming the file if it is not one (e.g. cut short by a crash)."""
    try:
        content = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{Path(path).name} is not valid JSON ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{Path(path).name} holds {type(content).__name__}, not a JSON object")
    return content


def checkpoint_problems(checkpoint: str | os.PathLike) -> list[str]:
    """What keeps `checkpoint` from being a folder written to the end, as phrases; empty when it is complete.

    Complete means: the BOTS files, a `trainer_state.json` that parses (it is not written atomically), and the last
    file of every process, its RNG state (process 0 writes `trainer_state.json` without waiting for the others).
    """
    checkpoint = Path(checkpoint)
    missing = [name for name in (SAMPLER_FILE, SELECTOR_FILE, TRAINER_STATE_FILE) if not (checkpoint / name).is_file()]
    # The round state is written atomically, so it is whole when present; an unreadable one is reported when loaded.
    rank_files = _rank_files(checkpoint) if SAMPLER_FILE not in missing else []
    missing += [name for name in rank_files if not (checkpoint / name).is_file()]
    # torch.save writes a zip archive, whose directory comes last: a file cut short is not a zip file.
    problems = [
        f"{name} was cut short"
        for name in rank_files
        if name not in missing and not zipfile.is_zipfile(checkpoint / name)
    ]
    if TRAINER_STATE_FILE not in missing:
        try:
            read_json(checkpoint / TRAINER_STATE_FILE)
        except ValueError as error:
            problems.append(f"{error}: it was cut short")
    if missing:
        names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        problems.insert(0, f"{names} {'is' if len(missing) == 1 else 'are'} missing")
    return problems


def _rank_files(checkpoint: Path) -> list[str]:
    """The last file of every process, as listed in the round state (none if it cannot be read)."""
    try:
        rank_files = read_json(checkpoint / SAMPLER_FILE).get("rank_files")
    except ValueError:
        return []
    return [name for name in rank_files if isinstance(name, str)] if isinstance(rank_files, list) else []


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, oldest step first."""
    folders = [
        path
        for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and path.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(folders, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]))


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-<step>` folder of `output_dir` that was written to the end, or None.

    The Trainer writes a checkpoint folder file by file (BOTS round state, model, BOTS selector, optimizer, scheduler,
    RNG state, `trainer_state.json` last), so a process killed while saving leaves a folder without its last files, or
    with the last one cut short.
    """
    complete = [path for path in checkpoint_folders(output_dir) if not checkpoint_problems(path)]
    return os.fspath(complete[-1]) if complete else None


def resume_refusal(checkpoint: str | os.PathLike) -> str | None:
    """Why a run cannot resume from `checkpoint`, with what to do instead; None if it is a complete BOTS checkpoint."""
    path = Path(checkpoint).absolute()
    if not path.is_dir():
        if not path.parent.is_dir():
            return (
                f"Cannot resume from {checkpoint}: neither it nor its parent folder {path.parent} exists. Check the "
                "path (a checkpoint is <output_dir>/checkpoint-<step>), or start a new run without "
                "resume_from_checkpoint."
            )
        if path.exists():
            return f"Cannot resume from {checkpoint}: it is a file, not a checkpoint folder. {_pick(path.parent)}"
        return f"Cannot resume from {checkpoint}: there is no such folder (a mistyped path?). {_pick(path.parent)}"
    problems = checkpoint_problems(path)
    if not problems:
        return None
    if checkpoint_folders(path) and not (path / TRAINER_STATE_FILE).is_file():
        return (
            f"Cannot resume from {checkpoint}: it is a run's output_dir, not a checkpoint folder. {_pick(path)} "
            f"resume_from_checkpoint=True with output_dir={checkpoint} picks the newest."
        )
    if not (path / SAMPLER_FILE).is_file() and not (path / SELECTOR_FILE).is_file():
        if (path / TRAINER_STATE_FILE).is_file():
            return (
                f"Cannot resume from {checkpoint}: it was not written by BOTSGRPOTrainer (it has {TRAINER_STATE_FILE} "
                f"but no {SELECTOR_FILE} or {SAMPLER_FILE}, e.g. a GRPOTrainer checkpoint), so BOTS cannot restore its "
                "selector. To start BOTS from its weights, load the model from this folder and train without "
                "resume_from_checkpoint; to continue a BOTS run, resume from one of its checkpoints."
            )
        return (
            f"Cannot resume from {checkpoint}: it is not a checkpoint folder (no {TRAINER_STATE_FILE}, "
            f"{SELECTOR_FILE} or {SAMPLER_FILE}). {_pick(path.parent)}"
        )
    return (
        f"Cannot resume from {checkpoint}: it is incomplete, {', '.join(problems)}, most likely because the process "
        f"stopped while writing it. {_pick(path.parent, incomplete=True)}"
    )


def _pick(output_dir: Path, incomplete: bool = False) -> str:
    """What to resume from instead: the newest complete checkpoint of `output_dir`, if it has one."""
    newest = latest_complete_checkpoint(output_dir)
    if newest is not None:
        return (
            f"Resume from the newest complete checkpoint, {newest} (trl_bots.trainer.latest_complete_checkpoint finds "
            f"it){', or delete the incomplete folder' if incomplete else ''}."
        )
    return f"{output_dir} holds no complete checkpoint: start a new run without resume_from_checkpoint."
