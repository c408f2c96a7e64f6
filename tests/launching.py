"""Shared by the multi-process and fault tests: start a launched script, and what the launched scripts record."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
from transformers import TrainerCallback


HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    """A TCP port nothing listens on right now, for the rendezvous of a launched job."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_script(
    script: str, *args: str, launcher: list[str] | None = None, env: dict | None = None, timeout: int = 600
) -> None:
    """Run `tests/<script> args...` (through `launcher`, e.g. accelerate's, if given); fail showing its output."""
    command = [*(launcher or [sys.executable]), os.path.join(HERE, script), *map(str, args)]
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **(env or {}),
    }
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n"
        f"--- stderr ---\n{result.stderr[-6000:]}"
    )


def accelerate_launch(
    script: str, *args: str, num_processes: int = 2, config_file: str | None = None, env: dict | None = None
) -> None:
    """`accelerate launch` with `num_processes` CPU processes: DDP over gloo, or the DeepSpeed `config_file`."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port())]
    if config_file is None:
        launcher += ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1"]
        launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    else:
        launcher += ["--config_file", config_file]
    run_script(script, *args, launcher=launcher, env=env)


def end_launched_rank() -> NoReturn:
    """The last call of a launched script: wait for every rank, shut the process group down, exit with status 0.

    The exit skips interpreter teardown (``os._exit``): gloo's C++ threads can otherwise abort a rank that has
    finished all its work ("terminate called without an active exception", SIGABRT) while Python finalises, which
    would fail the job after every result was written.
    """
    import torch.distributed

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def read_ranks(out: Path, world_size: int) -> list[dict]:
    """The `rank<i>.json` files a launched job wrote, one per process."""
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def posterior(step: dict) -> tuple[np.ndarray, np.ndarray]:
    """alpha and beta from one `recording.PosteriorLog` entry."""
    return tuple(np.frombuffer(bytes.fromhex(step[name]), np.float32) for name in ("alpha", "beta"))


def weights_digest(model) -> str:
    """SHA-256 of every parameter's bytes, in name order; on every rank, after gathering ZeRO-3 shards (a collective)."""
    parameters = dict(model.named_parameters())
    gather = contextlib.nullcontext()
    if any(hasattr(parameter, "ds_id") for parameter in parameters.values()):  # partitioned by ZeRO-3
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(parameters.values()), modifier_rank=None)
    digest = hashlib.sha256()
    with gather:
        for name in sorted(parameters):
            digest.update(parameters[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class EstimatorLog(TrainerCallback):
    """After every optimizer step: the selector's checksum, and the bytes of every array of its implicit-evidence
    plug-in's state (hex) with its scalars."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.steps: list[dict] = []

    def on_step_end(self, args, state, control, **kwargs):
        selector = self.trainer.selector
        plug_in = {
            name: value.tobytes().hex() if isinstance(value, np.ndarray) else value
            for name, value in selector.estimator.state_dict().items()
        }
        self.steps.append({"checksum": selector.checksum(), **plug_in})


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, in seconds."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def first_letter_reward(completions, **kwargs):
    """1.0 when the completion starts before "n" in the alphabet: depends on the model, so on its exact weights."""
    return [float(completion[:1] < "n") for completion in completions]
