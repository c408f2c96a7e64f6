"""BOTS' files in a checkpoint folder: the round state's format, and which folders of a run were written to the end.

A checkpoint of `BOTSGRPOTrainer` holds, besides the Trainer's files, the selector (`bots_selector.safetensors`,
:mod:`trl_bots.state`), the round state (:class:`RoundState`, `bots_sampler.json`) and, when it was taken inside a
round, each process's buffered generation batch (`bots_round_<rank>.pt`, written and read by the trainer with torch).

Light on purpose (no torch, no transformers): `trl-bots plot` and restart scripts use it as well as the trainer.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .state import SELECTOR_FILE, read_state_file, write_atomic, write_state_file


logger = logging.getLogger(__name__)

# The file names are part of the checkpoint format: kept as they are, so that older checkpoints still resume.
ROUND_STATE_FILE = "bots_sampler.json"  # the round state (its name predates the class), written first and atomically
ROUND_STATE_FORMAT = "trl-bots-round/2"
ROUND_BUFFER_FILE = (
    "bots_round_{rank}.pt"  # a process's buffered generation batch, in checkpoints taken inside a round
)
POOL_FILE = "bots_pool.json"  # an active pool's rows, task ids and stream position (runs over a stream)
POOL_EMBEDDER_FILE = "bots_pool_embedder.safetensors"  # the coordinates newcomers are embedded in (embedding plug-in)
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer's state, written last (by process 0)
CHECKPOINT_PREFIX = "checkpoint-"


@dataclass(frozen=True, eq=False)
class RoundState:
    """What a checkpoint holds of BOTS besides the selector: where GRPO stands in its rounds, and what must not change
    when a run resumes from it. :meth:`save` writes it to a checkpoint folder, :meth:`load` reads and checks it."""

    micro_step: int  # GRPO's micro-step counter: with the schedule, where the next round starts
    rounds_selected: int  # over the whole run; equal to the selector's round, since each round is credited at once
    tasks: np.ndarray  # the round GRPO generated last, in slot order (`trainer.bots_round_tasks` after resuming)
    unscored_rounds: int  # consecutive rounds without a scored completion
    rank_files: list[str]  # every process's last files (see `rank_files`): a checkpoint without them is incomplete
    schedule: dict[str, int]  # what decides where rounds start and what they hold (see `generation_schedule`)
    task_fingerprint: str  # of the train dataset's rows (trl_bots.data.task_fingerprint)
    settings: dict[str, Any]  # the bots_* settings (see `bots_settings`)
    effective_task_ratios: dict[str, Any] | None = None  # the model card's summary (None: saved before it was kept)

    def save(self, checkpoint: str | os.PathLike) -> None:
        """Write the round state into the folder `checkpoint`, atomically."""
        state = {
            "format": ROUND_STATE_FORMAT,
            "micro_step": self.micro_step,
            "rounds_selected": self.rounds_selected,
            "tasks": np.asarray(self.tasks).tolist(),
            "unscored_rounds": self.unscored_rounds,
            "rank_files": self.rank_files,
            "schedule": self.schedule,
            "task_fingerprint": self.task_fingerprint,
            "settings": self.settings,
            "effective_task_ratios": self.effective_task_ratios,
        }
        write_atomic(Path(checkpoint) / ROUND_STATE_FILE, json.dumps(state).encode())

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        selector: Any,
        *,
        schedule: dict[str, int],
        task_fingerprint: str,
        settings: dict[str, Any],
        tasks_per_round: int,
    ) -> RoundState:
        """Restore `selector` (a `BOTSSelector`) from the checkpoint and return its round state, refusing a checkpoint
        of another task list or schedule (`ValueError`, saying what to do) and logging the settings that changed: the
        settings given here apply, the learned state is the checkpoint's."""
        paths = {name: os.path.join(checkpoint, name) for name in (SELECTOR_FILE, ROUND_STATE_FILE)}
        for name, path in paths.items():
            if not os.path.isfile(path):
                raise ValueError(
                    f"Cannot resume BOTS from {checkpoint}: {name} is missing, so the selector would restart from the "
                    "prior. Resume from a checkpoint written by BOTSGRPOTrainer, or start a new run."
                )
        try:
            state = read_json(paths[ROUND_STATE_FILE])
        except ValueError as error:
            raise _invalid_round_state(paths[ROUND_STATE_FILE], error) from error
        if state.get("format") == ROUND_STATE_FORMAT:
            if state.get("task_fingerprint") != task_fingerprint:
                raise ValueError(
                    f"Cannot resume BOTS from {checkpoint}: it was trained on a task list with fingerprint "
                    f"{state.get('task_fingerprint')}, and this run's train_dataset has fingerprint "
                    f"{task_fingerprint} (other rows, another order or other values). The posterior is per row: "
                    "resume with the dataset the checkpoint was trained on, in the same order, or start a new run."
                )
            _check_schedule(checkpoint, state.get("schedule"), schedule)
            _check_strategy(checkpoint, state.get("settings"), settings)
            _log_changed_settings(checkpoint, state.get("settings"), settings)
        selector.load(paths[SELECTOR_FILE])
        try:
            micro_step, tasks = _read_round(state, tasks_per_round, selector)
        except (KeyError, TypeError, ValueError) as error:
            raise _invalid_round_state(paths[ROUND_STATE_FILE], error) from error
        return cls(
            micro_step=micro_step,
            rounds_selected=selector.round,  # checked equal to the saved count
            tasks=tasks,
            unscored_rounds=int(state.get("unscored_rounds", 0)),
            rank_files=state.get("rank_files", []),
            schedule=schedule,
            task_fingerprint=task_fingerprint,
            settings=settings,
            effective_task_ratios=state.get("effective_task_ratios"),
        )


def generation_schedule(args: Any) -> dict[str, int]:
    """What decides where GRPO's rounds start in its micro-step count, and what a round holds (from a `BOTSConfig`)."""
    return {
        "num_processes": args.world_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "steps_per_generation": args.steps_per_generation,
        "num_iterations": args.num_iterations,
        "num_generations": args.num_generations,
        "generation_batch_size": args.generation_batch_size,
    }


def bots_settings(args: Any) -> dict[str, Any]:
    """The `bots_*` settings of a `BOTSConfig`."""
    return {name: getattr(args, name) for name in sorted(vars(args)) if name.startswith("bots_")}


def rank_files(world_size: int, in_round: bool, save_only_model: bool) -> list[str]:
    """The checkpoint files of every process: its buffered round, if any, and last its RNG state (named as
    `Trainer._save_rng_state` names it). Process 0 writes `trainer_state.json` without waiting for them."""
    ranks = range(world_size)
    files = [ROUND_BUFFER_FILE.format(rank=rank) for rank in ranks] if in_round else []
    if not save_only_model:
        files += ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{rank}.pth" for rank in ranks]
    return files


def _read_round(state: dict[str, Any], tasks_per_round: int, selector: Any) -> tuple[int, np.ndarray]:
    """Validate a round state file's content against the restored selector; return (micro-step, round's tasks)."""
    if state.get("format") != ROUND_STATE_FORMAT:
        raise ValueError(f"format is {state.get('format')!r}, expected {ROUND_STATE_FORMAT!r}")
    micro_step, rounds = state["micro_step"], state["rounds_selected"]
    for name, value in (("micro_step", micro_step), ("rounds_selected", rounds)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if rounds != selector.round:
        # Every selected round is credited within the same training step, so a checkpoint always holds both equal.
        raise ValueError(
            f"it records {rounds} selected rounds but {SELECTOR_FILE} has been updated {selector.round} times: the "
            "two files come from different checkpoints"
        )
    tasks = np.asarray(state["tasks"], dtype=np.int64)
    if (
        tasks.shape != (tasks_per_round,)
        or tasks.min() < 0
        or tasks.max() >= selector.num_tasks
        or np.unique(tasks).size != tasks.size
    ):
        raise ValueError(
            f"the saved round {tasks.tolist()} is not {tasks_per_round} distinct task ids in "
            f"[0, {selector.num_tasks}): it was saved with another dataset or generation_batch_size"
        )
    return micro_step, tasks


def _invalid_round_state(path: str, error: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a valid BOTS round state ({error}). Resume from the checkpoint folder as BOTSGRPOTrainer wrote "
        "it, or from an earlier one."
    )


def _differences(saved: Any, current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(name, saved value, current value)` of every entry of `current` that the checkpoint's `saved` (a JSON object,
    or anything if the file was edited) holds otherwise, compared as the checkpoint stores them (tuples are lists)."""
    saved = saved if isinstance(saved, dict) else {}
    return [
        (name, saved.get(name), value)
        for name, value in current.items()
        if json.loads(json.dumps(value)) != saved.get(name)
    ]


def _check_schedule(checkpoint: str | os.PathLike, saved: Any, schedule: dict[str, int]) -> None:
    changed = [f"{name}={old} in the checkpoint, {new} now" for name, old, new in _differences(saved, schedule)]
    if changed:
        raise ValueError(
            f"Cannot resume BOTS from {checkpoint}: the generation schedule changed ({'; '.join(changed)}). The "
            "restored micro-step counter would put round boundaries elsewhere than in the run that saved it. "
            "Resume with the checkpoint's settings (number of processes included), or start a new run."
        )


def _check_strategy(checkpoint: str | os.PathLike, saved: Any, settings: dict[str, Any]) -> None:
    """A selector's learned state belongs to its strategy (the baselines' serving order, the adaptive strategies'
    evidence), so unlike the other settings the strategy cannot change on resume."""
    saved_strategy = saved.get("bots_strategy") if isinstance(saved, dict) else None
    strategy = settings["bots_strategy"]
    if saved_strategy is not None and saved_strategy != strategy:
        raise ValueError(
            f"Cannot resume BOTS from {checkpoint} with bots_strategy={strategy!r}: the setting differs from the "
            f"checkpoint's, and its saved selector belongs to bots_strategy={saved_strategy!r}. Resume with "
            f"bots_strategy={saved_strategy!r}, or start a new run with {strategy!r} (to start it from this "
            "checkpoint's weights, load the model from the checkpoint folder and train without "
            "resume_from_checkpoint)."
        )


def _log_changed_settings(checkpoint: str | os.PathLike, saved: Any, settings: dict[str, Any]) -> None:
    """On resume the settings are the config's and the learned state the checkpoint's: say which settings changed."""
    if isinstance(saved, dict) and isinstance(saved.get("bots_success_reward"), str):
        # Saved before bots_success_reward could list several functions: a name is the list of that name.
        saved = {**saved, "bots_success_reward": [saved["bots_success_reward"]]}
    changed = [f"{name} {old!r} -> {new!r}" for name, old, new in _differences(saved, settings)]
    if changed:
        logger.warning(
            "Resuming BOTS from %s with settings that differ from the checkpoint's (the config's apply; alpha, "
            "beta, mu, round and random state continue from the checkpoint): %s.",
            checkpoint,
            ", ".join(changed),
        )


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in `path`; `ValueError` naming the file if it is not one (e.g. cut short by a crash)."""
    try:
        content = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{Path(path).name} is not valid JSON ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{Path(path).name} holds {type(content).__name__}, not a JSON object")
    return content


def save_pool_state(
    checkpoint: str | os.PathLike, state: dict[str, Any], embedder: dict[str, np.ndarray] | None = None
) -> None:
    """Write an active pool's state (:meth:`trl_bots.active_pool.ActivePool.state_dict` and the trainer's round) as
    JSON, atomically, and the prompt embedder's arrays beside it; a row JSON cannot hold exactly is refused by name
    rather than saved changed."""
    if embedder is not None:
        write_state_file(Path(checkpoint) / POOL_EMBEDDER_FILE, embedder, {})
    try:
        content = json.dumps(state, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Cannot checkpoint the active pool: its rows must be JSON values (text, numbers, lists, dicts) so that a "
            f"resumed run reads them back unchanged, but {error}. Turn such columns into text or numbers in the stream "
            "(IterableDataset.map), or save without the pool (save_strategy='no')."
        ) from error
    write_atomic(Path(checkpoint) / POOL_FILE, content.encode())


def load_pool_state(
    checkpoint: str | os.PathLike, uses_pool: bool
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray] | None]:
    """The pool state of `checkpoint` and its embedder's arrays (None where absent); refuses a checkpoint of the other
    kind of run."""
    path = Path(checkpoint) / POOL_FILE
    if path.is_file() != uses_pool:
        runs = {
            True: f"over a stream (an active pool: {POOL_FILE})",
            False: "over a map-style dataset (no active pool)",
        }
        raise ValueError(
            f"Cannot resume BOTS from {checkpoint}: it was written by a run {runs[path.is_file()]}, and this run is "
            f"one {runs[uses_pool]}: the selector's task ids are pool slots in one and dataset rows in the other. "
            "Resume with the train_dataset and bots_pool_size the checkpoint was written with, or start a new run."
        )
    if not uses_pool:
        return None, None
    embedder = Path(checkpoint) / POOL_EMBEDDER_FILE
    return read_json(path), read_state_file(embedder)[0] if embedder.is_file() else None


def checkpoint_problems(checkpoint: str | os.PathLike) -> list[str]:
    """What keeps `checkpoint` from being a folder written to the end, as phrases; empty when it is complete.

    Complete means: the BOTS files, a `trainer_state.json` that parses (it is not written atomically), and the last
    file of every process, its RNG state (process 0 writes `trainer_state.json` without waiting for the others).
    """
    checkpoint = Path(checkpoint)
    missing = [
        name for name in (ROUND_STATE_FILE, SELECTOR_FILE, TRAINER_STATE_FILE) if not (checkpoint / name).is_file()
    ]
    # The round state is written atomically, so it is whole when present; an unreadable one is reported when loaded.
    listed = _listed_rank_files(checkpoint) if ROUND_STATE_FILE not in missing else []
    missing += [name for name in listed if not (checkpoint / name).is_file()]
    # torch.save writes a zip archive, whose directory comes last: a file cut short is not a zip file.
    problems = [
        f"{name} was cut short" for name in listed if name not in missing and not zipfile.is_zipfile(checkpoint / name)
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


def _listed_rank_files(checkpoint: Path) -> list[str]:
    """The last file of every process, as the round state lists them (none if it cannot be read)."""
    try:
        listed = read_json(checkpoint / ROUND_STATE_FILE).get("rank_files")
    except ValueError:
        return []
    return [name for name in listed if isinstance(name, str)] if isinstance(listed, list) else []


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
    if not (path / ROUND_STATE_FILE).is_file() and not (path / SELECTOR_FILE).is_file():
        if (path / TRAINER_STATE_FILE).is_file():
            return (
                f"Cannot resume from {checkpoint}: it was not written by BOTSGRPOTrainer (it has {TRAINER_STATE_FILE} "
                f"but no {SELECTOR_FILE} or {ROUND_STATE_FILE}, e.g. a GRPOTrainer checkpoint), so BOTS cannot restore its "
                "selector. To start BOTS from its weights, load the model from this folder and train without "
                "resume_from_checkpoint; to continue a BOTS run, resume from one of its checkpoints."
            )
        return (
            f"Cannot resume from {checkpoint}: it is not a checkpoint folder (no {TRAINER_STATE_FILE}, "
            f"{SELECTOR_FILE} or {ROUND_STATE_FILE}). {_pick(path.parent)}"
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
