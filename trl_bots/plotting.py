"""PNG plots of a BOTS run from what the trainer writes: ``trainer_state.json`` (its log history) and the selector state.

A run folder is a trainer's ``output_dir``: the newest ``checkpoint-*`` folder, or the folder itself when it holds
``trainer_state.json`` / ``bots_selector.safetensors`` (written by ``trainer.save_state()`` / ``save_model()``),
provides the data.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .posterior import posterior_mean
from .state import SELECTOR_FILE, read_state_file


TRAINER_STATE_FILE = "trainer_state.json"
DOMAIN_PREFIX = "bots/domain/"  # per-domain metrics: bots/domain/<name>/<metric>


def _newest(run_dir: Path, name: str) -> Path:
    """``run_dir/name`` if it exists, else the one in the checkpoint with the highest step."""
    if (run_dir / name).is_file():
        return run_dir / name
    checkpoints = sorted(
        (p for p in run_dir.glob("checkpoint-*") if (p / name).is_file() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    if not checkpoints:
        raise FileNotFoundError(
            f"No {name} in {run_dir} or its checkpoint-* folders. Pass the output_dir of a BOTSGRPOTrainer run that "
            "saved a checkpoint or called save_state()/save_model()."
        )
    return checkpoints[-1] / name


def log_series(log_history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and finite values of ``key`` in a Trainer log history."""
    points = [
        (entry["step"], entry[key])
        for entry in log_history
        if isinstance(entry.get(key), (int, float)) and math.isfinite(entry[key])  # None/NaN: undefined that round
    ]
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[:, 0].astype(np.int64), points[:, 1]


def plot_run(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[Path]:
    """
    Write ``training_curves.png`` (effective-task ratio and reward over steps), ``posterior_pass_rates.png``
    (histogram of the posterior mean pass rates at the last checkpoint), ``implicit_estimator.png`` (Pearson
    correlation and mean absolute error of the implicit plug-in on each batch, when the run had one) and
    ``domains.png`` (each domain's share of the selected tasks and its effective-task ratio, when the run had
    ``bots_domain_column``) into ``output_dir`` (default: ``run_dir/plots``). Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display and in subprocesses
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "plots"
    output_dir.mkdir(parents=True, exist_ok=True)
    history = json.loads(_newest(run_dir, TRAINER_STATE_FILE).read_text())["log_history"]
    written = []

    figure, (etr_axis, reward_axis) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    steps, etr = log_series(history, "bots/effective_task_ratio")
    etr_axis.plot(steps, etr, marker=".")
    etr_axis.set(
        ylabel="effective-task ratio", ylim=(-0.02, 1.02), title="Share of selected tasks with mixed outcomes"
    )
    steps, reward = log_series(history, "reward")
    reward_axis.plot(steps, reward, marker=".", color="tab:green")
    reward_axis.set(xlabel="step", ylabel="mean reward")
    written.append(_save(figure, output_dir / "training_curves.png"))

    arrays, _ = read_state_file(_newest(run_dir, SELECTOR_FILE))
    means = posterior_mean(arrays["alpha"], arrays["beta"])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(means, bins=np.linspace(0, 1, 21), edgecolor="white")
    axis.set(xlabel="posterior mean pass rate", ylabel="tasks", title=f"Posterior over {means.size} tasks")
    written.append(_save(figure, output_dir / "posterior_pass_rates.png"))

    mae_steps, mae = log_series(history, "bots/implicit_mae")
    if mae_steps.size:  # the run had implicit evidence (the correlation alone is NaN on a batch of equal rates)
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot(*log_series(history, "bots/implicit_pearson"), marker=".", label="Pearson correlation")
        axis.plot(mae_steps, mae, marker=".", label="mean absolute error")
        axis.set(xlabel="step", title="Implicit estimator vs observed pass rates of the selected tasks")
        axis.legend()
        written.append(_save(figure, output_dir / "implicit_estimator.png"))

    domains = domain_names(history)
    if domains:
        figure, (share_axis, etr_axis) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
        for name in domains:
            share_axis.plot(*log_series(history, f"{DOMAIN_PREFIX}{name}/share"), marker=".", label=name)
            etr_axis.plot(*log_series(history, f"{DOMAIN_PREFIX}{name}/effective_task_ratio"), marker=".", label=name)
        share_axis.set(ylabel="share of the batch", ylim=(-0.02, 1.02), title="Selected tasks per domain")
        etr_axis.set(xlabel="step", ylabel="effective-task ratio", ylim=(-0.02, 1.02))
        share_axis.legend()
        written.append(_save(figure, output_dir / "domains.png"))
    return written


def domain_names(log_history: list[dict]) -> list[str]:
    """The domains of a run with ``bots_domain_column``, from its ``bots/domain/<name>/share`` metrics, sorted."""
    suffix = "/share"
    return sorted(
        {
            key[len(DOMAIN_PREFIX) : -len(suffix)]
            for entry in log_history
            for key in entry
            if key.startswith(DOMAIN_PREFIX) and key.endswith(suffix)
        }
    )


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
