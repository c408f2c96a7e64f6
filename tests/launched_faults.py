"""Run by test_faults.py as one plain process: training processes killed with SIGKILL at chosen moments, then resumed.

Each fault runs in a forked child that kills itself with SIGKILL (nothing can catch it: no `finally`, no atexit):

- `selector-write`: while checkpoint-4's selector file is written, once half of its bytes are in the temporary file;
- `before-trainer-state`: at checkpoint-4 after the model, selector, optimizer and scheduler files, before the RNG
  state and `trainer_state.json`;
- `between-checkpoints`: at the end of step 3 (checkpoint-2 is the newest checkpoint);
- `overwrite`: a bare selector rewriting an existing state file, half of the new bytes written.

The parent then (in-process) reads every selector file left behind, resumes each training fault as a restart script
would (`resume_from_checkpoint=True`; if that is refused, from `latest_complete_checkpoint`) to the end, and runs the
uninterrupted reference; everything goes to `<out>/results.json`. A plain process: it has no process group to destroy.
"""

import json
import os
import signal
import sys

import numpy as np
from launching import first_letter_reward, weights_digest
from recording import PosteriorLog, RewardRecorder, SelectionLog
from tiny import load_tiny, task_dataset, tiny_args
from transformers import TrainerCallback

import trl_bots.selector as selector_module
from trl_bots import BOTSSelector
from trl_bots.state import read_state_file
from trl_bots.trainer import BOTSGRPOTrainer, latest_complete_checkpoint


MAX_STEPS, SAVE_STEPS, NUM_TASKS = 6, 2, 10


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class HalfWriteThenDie:
    """A binary file whose first `write` stores half of the bytes, reaches the disk, then SIGKILLs the process."""

    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        os.fsync(self.file.fileno())
        die()

    def __getattr__(self, name):
        return getattr(self.file, name)


def die_in_selector_write(after_writes: int) -> None:
    """The selector write after `after_writes` complete ones runs the real atomic write, killed half-way."""
    real_write = selector_module.write_state_file
    writes = 0

    def write_state_file(path, arrays, scalars):
        nonlocal writes
        writes += 1
        if writes > after_writes:
            real_fdopen = os.fdopen
            os.fdopen = lambda fd, mode="r", *args, **kwargs: HalfWriteThenDie(real_fdopen(fd, mode, *args, **kwargs))
        real_write(path, arrays, scalars)

    selector_module.write_state_file = write_state_file


class DieAtStep(TrainerCallback):
    """SIGKILL at the end of optimizer step `step`, before anything of that step is saved."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            die()


def build(model_path, output_dir):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    args = tiny_args(output_dir, max_steps=MAX_STEPS, save_strategy="steps", save_steps=SAVE_STEPS)
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(first_letter_reward), args=args, train_dataset=task_dataset(NUM_TASKS),
        processing_class=tokenizer,
    )  # fmt: skip
    return trainer, recorder


def train_and_die(fault, model_path, output_dir):
    """The body of a forked child: train until the fault kills it."""
    if fault == "overwrite":
        selector = BOTSSelector(NUM_TASKS, implicit_weight=0.0, seed=0)
        selector.save(f"{output_dir}/selector.safetensors")
        selector.update(selector.select(3), np.array([1.0, 2.0, 0.0]), np.array([2.0, 2.0, 2.0]))
        die_in_selector_write(after_writes=0)
        selector.save(f"{output_dir}/selector.safetensors")
        return
    trainer, _ = build(model_path, output_dir)
    if fault == "selector-write":
        die_in_selector_write(after_writes=MAX_STEPS // SAVE_STEPS - 2)  # checkpoint-2 complete, checkpoint-4 not
    elif fault == "before-trainer-state":
        real_save_rng_state = trainer._save_rng_state

        def save_rng_state(checkpoint):
            if checkpoint.endswith("checkpoint-4"):
                die()
            real_save_rng_state(checkpoint)

        trainer._save_rng_state = save_rng_state
    elif fault == "between-checkpoints":
        trainer.add_callback(DieAtStep(3))
    trainer.train()


def killed_by(fault, model_path, output_dir) -> int | None:
    """Run `fault` in a forked child; the signal that ended it (None if it exited)."""
    os.makedirs(output_dir, exist_ok=True)
    pid = os.fork()
    if pid == 0:
        try:
            train_and_die(fault, model_path, output_dir)
        finally:
            os._exit(1)  # reached only if the fault did not fire
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def listing(folder):
    """Every file under `folder` (relative path -> size), so the test can see what a killed run left behind."""
    return {
        os.path.relpath(os.path.join(root, name), folder): os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    }


def train(model_path, output_dir, resume_from=None):
    trainer, recorder = build(model_path, output_dir)
    log = PosteriorLog(trainer)
    trainer.add_callback(log)
    selections = SelectionLog(trainer)
    initial_weights = weights_digest(trainer.model)
    trainer.train(resume_from_checkpoint=resume_from)
    return {
        "initial_weights": initial_weights,
        "calls": recorder.calls,
        "steps": log.steps,
        "rounds": [selection["tasks"] for selection in selections.selections],
        "weights": weights_digest(trainer.model),
    }


def read_error(path):
    """What reading `path` as a selector state file gives: the error, or None if it is read as valid."""
    try:
        read_state_file(path)
    except ValueError as error:
        return str(error)
    return None


def main():
    model_path, out = sys.argv[1], sys.argv[2]
    results = {}
    for fault in ("selector-write", "before-trainer-state", "between-checkpoints", "overwrite"):
        folder = f"{out}/{fault}"
        results[fault] = {"signal": killed_by(fault, model_path, folder), "files": listing(folder)}
    overwrite = results["overwrite"]
    overwrite["read_errors"] = {name: read_error(f"{out}/overwrite/{name}") for name in overwrite["files"]}
    kept = BOTSSelector(NUM_TASKS, implicit_weight=0.0, seed=0)
    kept.load(f"{out}/overwrite/selector.safetensors")
    overwrite["kept_round"] = kept.round
    for fault in ("selector-write", "before-trainer-state", "between-checkpoints"):
        folder, result = f"{out}/{fault}", results[fault]
        result["read_errors"] = {
            name: read_error(f"{folder}/{name}") for name in result["files"] if "selector" in name
        }
        result["latest_complete"] = os.path.relpath(latest_complete_checkpoint(folder), folder)
        result["resume_latest_error"] = None
        try:  # what a restart script does: resume from the newest checkpoint folder
            result["resumed"] = train(model_path, folder, resume_from=True)
        except ValueError as error:
            result["resume_latest_error"] = str(error)
            result["resumed"] = train(model_path, folder, resume_from=latest_complete_checkpoint(folder))
    results["reference"] = train(model_path, f"{out}/reference")
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
