"""Faults: SIGKILL during and between checkpoints, then resume; partial selector files are never read as valid."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from launching import run_script

from trl_bots import BOTSSelector
from trl_bots.checkpoints import ROUND_STATE_FILE
from trl_bots.state import SELECTOR_FILE, read_state_file


INVALID = "is not a valid BOTS selector state file"


def trained_selector() -> BOTSSelector:
    selector = BOTSSelector(10, implicit_weight=0.0, seed=0)
    selector.update(selector.select(3), np.array([1.0, 2.0, 0.0]), np.array([2.0, 2.0, 2.0]))
    return selector


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_every_truncation_of_a_state_file_is_rejected(tmp_path_factory, cut):
    """A state file cut anywhere (a write that stopped early) is reported, never read as a valid state."""
    path = tmp_path_factory.mktemp("cut") / "state.safetensors"
    trained_selector().save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(cut * len(raw))])
    with pytest.raises(ValueError, match=INVALID):
        read_state_file(path)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """An error between writing the temporary file and renaming it leaves the previous state file untouched."""
    path = tmp_path / "state.safetensors"
    first = BOTSSelector(10, implicit_weight=0.0, seed=0)
    first.save(path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trained_selector().save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["state.safetensors"]
    reloaded = BOTSSelector(10, implicit_weight=0.0, seed=0)
    reloaded.load(path)
    assert reloaded.round == 0 and np.array_equal(reloaded.alpha, first.alpha)


def same_run(resumed: dict, reference: dict, from_step: int) -> None:
    """The resumed run repeats the reference run's steps after `from_step` exactly: rewards, rounds, posterior, model."""
    assert resumed["calls"] == reference["calls"][from_step:]
    assert resumed["rounds"] == reference["rounds"][from_step:]
    assert resumed["steps"] == reference["steps"][from_step:]  # bit-identical alpha and beta after every step
    assert resumed["weights"] == reference["weights"]  # model and optimizer restored exactly


@pytest.mark.slow
def test_sigkill_during_and_between_checkpoints_then_resume(tiny_model_path, tmp_path):
    # One thread per process: the children are forked from a process that has imported torch (see the script).
    run_script("launched_faults.py", tiny_model_path, tmp_path, env={"OMP_NUM_THREADS": "1"})
    results = json.loads((tmp_path / "results.json").read_text())
    assert {fault: result["signal"] for fault, result in results.items() if "signal" in result} == dict.fromkeys(
        ("selector-write", "before-trainer-state", "between-checkpoints", "overwrite"), signal.SIGKILL
    )
    reference = results["reference"]
    assert len(reference["steps"]) == 6 and len({tuple(tasks) for tasks in reference["rounds"]}) > 1
    assert reference["weights"] != reference["initial_weights"]  # the model really trained

    # Killed half-way through checkpoint-4's selector file: the final name never appears, only the temporary file
    # with half the bytes, which is not readable as a state; resuming from the newest folder is refused by name.
    killed = results["selector-write"]
    files = killed["files"]
    partial = [name for name in files if name.startswith("checkpoint-4/.") and name.endswith(".tmp")]
    # Half of a selector file: checkpoint-2's is the yardstick, whose JSON header (round, last statistics as decimal
    # text, padded to 8 bytes by safetensors) may be a padding step shorter or longer than checkpoint-4's would be.
    assert len(partial) == 1 and abs(2 * files[partial[0]] - files[f"checkpoint-2/{SELECTOR_FILE}"]) <= 16
    assert f"checkpoint-4/{SELECTOR_FILE}" not in files and f"checkpoint-4/{ROUND_STATE_FILE}" in files
    assert killed["read_errors"][partial[0]] == (
        f"{tmp_path}/selector-write/{partial[0]} {INVALID} (Error while deserializing: invalid header length). It may "
        "be truncated or from another program; resume from an earlier checkpoint or delete the file to start the "
        "selector afresh."
    )
    assert killed["read_errors"][f"checkpoint-2/{SELECTOR_FILE}"] is None
    assert killed["resume_latest_error"] == (
        f"Cannot resume from {tmp_path}/selector-write/checkpoint-4: it is incomplete, {SELECTOR_FILE}, "
        "trainer_state.json and rng_state.pth are missing, most likely because the process stopped while writing it. Resume from the "
        f"newest complete checkpoint, {tmp_path}/selector-write/checkpoint-2 "
        "(trl_bots.trainer.latest_complete_checkpoint finds it), or delete the incomplete folder."
    )

    # Killed after the selector, model and optimizer files of checkpoint-4, before the Trainer's state file.
    late = results["before-trainer-state"]
    assert {f"checkpoint-4/{SELECTOR_FILE}", "checkpoint-4/optimizer.pt"} <= set(late["files"])
    assert (
        "checkpoint-4/trainer_state.json" not in late["files"]
        and late["read_errors"][f"checkpoint-4/{SELECTOR_FILE}"] is None
    )
    assert (
        "checkpoint-4: it is incomplete, trainer_state.json and rng_state.pth are missing"
        in late["resume_latest_error"]
    )

    # Killed at the end of step 3: checkpoint-2 is the newest folder and is complete, so `resume_from_checkpoint=True`
    # just works.
    between = results["between-checkpoints"]
    assert not any(name.startswith("checkpoint-4") for name in between["files"])
    assert between["resume_latest_error"] is None

    for fault in ("selector-write", "before-trainer-state", "between-checkpoints"):
        assert results[fault]["latest_complete"] == "checkpoint-2"
        same_run(results[fault]["resumed"], reference, from_step=2)

    # A bare selector killed while rewriting its state file: the previous file is intact, the half file is rejected.
    overwrite = results["overwrite"]
    assert overwrite["kept_round"] == 0 and overwrite["read_errors"]["selector.safetensors"] is None
    (partial,) = [name for name in overwrite["files"] if name.endswith(".tmp")]
    assert INVALID in overwrite["read_errors"][partial]
