"""Which checkpoint folders of a run were written to the end, and what is wrong with the others.

Light on purpose (no torch, no transformers): `trl-bots plot` and restart scripts use it as well as the trainer.
"""

from __future__ import annotations

import json
import os
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
    """What keeps `checkpoint` from being a folder written to the end, as phrases; empty when it is complete."""
    checkpoint = Path(checkpoint)
    missing = [name for name in (SAMPLER_FILE, SELECTOR_FILE, TRAINER_STATE_FILE) if not (checkpoint / name).is_file()]
    problems = [f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"] if missing else []
    if TRAINER_STATE_FILE not in missing:
        # Not atomic: a process killed while the Trainer writes it leaves a file cut short.
        try:
            read_json(checkpoint / TRAINER_STATE_FILE)
        except ValueError as error:
            problems.append(f"{error}: it was cut short")
    return problems


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
