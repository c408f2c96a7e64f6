"""PNG plots of a BOTS run from what the trainer writes: ``trainer_state.json`` (its log history) and the selector state.

A run folder is a trainer's ``output_dir``: the newest ``checkpoint-*`` folder, or the folder itself when it holds
``trainer_state.json`` / ``bots_selector.safetensors`` (written by ``trainer.save_state()`` / ``save_model()``),
provides the data.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from .checkpoints import TRAINER_STATE_FILE, checkpoint_folders, read_json
from .posterior import posterior_mean
from .state import SELECTOR_FILE, read_state_file


logger = logging.getLogger(__name__)

DOMAIN_PREFIX = "bots/domain/"  # per-domain metrics: bots/domain/<name>/<metric>


def _candidates(run_dir: Path, name: str) -> list[Path]:
    """``run_dir/name`` if it exists, then the ones in the checkpoint folders, highest step first."""
    paths = [run_dir / name, *(folder / name for folder in reversed(checkpoint_folders(run_dir)))]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise FileNotFoundError(
            f"No {name} in {run_dir} or its checkpoint-* folders. Pass the output_dir of a BOTSGRPOTrainer run that "
            "saved a checkpoint or called save_state()/save_model()."
        )
    return paths


def _newest_log_history(run_dir: Path) -> list[dict]:
    """The log history of the newest readable trainer state; a file cut short by a crash is skipped, with a warning."""
    for path in _candidates(run_dir, TRAINER_STATE_FILE):
        try:
            return read_json(path)["log_history"]
        except ValueError as error:
            logger.warning("Skipping %s: %s, most likely cut short by a crash while saving.", path, error)
    raise ValueError(f"No readable {TRAINER_STATE_FILE} in {run_dir} or its checkpoint-* folders (see the warnings).")


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
    (histogram of the posterior mean pass rates at the last checkpoint: of the active pool's tasks in a run over a
    stream), ``active_pool.png`` (tasks read from the stream and retired over steps, in a run over a stream),
    ``implicit_estimator.png`` (Pearson
    correlation and mean absolute error of the implicit plug-in on each batch, and the implicit weight rho, when the
    run had one), ``predicted_pass_rates.png`` (the embedding plug-in's predicted pass rate of every task against its
    posterior mean, when the run had that plug-in) and
    ``domains.png`` (each domain's share of the selected tasks and its effective-task ratio, when the run had
    ``bots_domain_column``) into ``output_dir`` (default: ``run_dir/plots``). Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display and in subprocesses
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} does not exist{' as a folder' if run_dir.exists() else ''}. Pass the output_dir of a "
            "BOTSGRPOTrainer run (the folder holding its checkpoint-* folders)."
        )
    history = _newest_log_history(run_dir)
    selector_file = _candidates(run_dir, SELECTOR_FILE)[0]
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "plots"
    output_dir.mkdir(parents=True, exist_ok=True)  # once the run's files are found: no empty folder otherwise
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

    arrays, _ = read_state_file(selector_file)
    means = posterior_mean(arrays["alpha"], arrays["beta"])
    retired_steps, retired = log_series(history, "bots/retired")
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(means, bins=np.linspace(0, 1, 21), edgecolor="white")
    tasks = f"the {means.size} tasks of the active pool" if retired_steps.size else f"{means.size} tasks"
    axis.set(xlabel="posterior mean pass rate", ylabel="tasks", title=f"Posterior over {tasks}")
    written.append(_save(figure, output_dir / "posterior_pass_rates.png"))

    if retired_steps.size:  # a run over a stream: how fast the pool turns over
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot(*log_series(history, "bots/stream_position"), marker=".", label="tasks read from the stream")
        axis.plot(retired_steps, retired, marker=".", label="tasks retired")
        axis.set(xlabel="step", ylabel="tasks", title="Active pool")
        axis.legend()
        written.append(_save(figure, output_dir / "active_pool.png"))

    mae_steps, mae = log_series(history, "bots/implicit_mae")
    if mae_steps.size:  # the run had implicit evidence (the correlation alone is NaN on a batch of equal rates)
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot(*log_series(history, "bots/implicit_pearson"), marker=".", label="Pearson correlation")
        axis.plot(mae_steps, mae, marker=".", label="mean absolute error")
        axis.plot(*log_series(history, "bots/implicit_weight"), marker=".", label="implicit weight rho")
        axis.set(xlabel="step", title="Implicit estimator vs observed pass rates of the selected tasks")
        axis.legend()
        written.append(_save(figure, output_dir / "implicit_estimator.png"))

    if "estimator/cache" in arrays:  # the embedding plug-in's predictions, as the posterior last received them
        figure, axis = plt.subplots(figsize=(5, 5))
        axis.scatter(arrays["estimator/cache"], means, s=4, alpha=0.4)
        axis.plot([0, 1], [0, 1], color="grey", linewidth=1)
        axis.set(
            xlabel="predicted pass rate (embedding plug-in)",
            ylabel="posterior mean pass rate",
            xlim=(0, 1),
            ylim=(0, 1),
            title=f"Predicted vs posterior, {means.size} tasks",
        )
        written.append(_save(figure, output_dir / "predicted_pass_rates.png"))

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


def plot_comparison(curves: dict[str, dict], path: str | os.PathLike, title: str) -> Path:
    """
    One figure, two panels: held-out accuracy over steps and the effective-task ratio over steps, a line per strategy.

    ``curves[name]`` holds ``eval_steps`` and ``accuracy`` (optionally ``accuracy_low``/``accuracy_high``, drawn as a
    band: an interval over seeds) and ``etr`` (one value per step, drawn as a moving average: the per-step ratio is a
    noisy share of the step's tasks).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy_axis, etr_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
        (line,) = accuracy_axis.plot(curve["eval_steps"], curve["accuracy"], marker=".", label=name)
        if "accuracy_low" in curve:
            accuracy_axis.fill_between(
                curve["eval_steps"], curve["accuracy_low"], curve["accuracy_high"], color=line.get_color(), alpha=0.15
            )
        etr = np.asarray(curve["etr"], dtype=np.float64)
        window = max(1, etr.size // 15)
        smooth = np.convolve(etr, np.ones(window) / window, mode="valid")
        etr_axis.plot(
            np.arange(window, etr.size + 1), smooth, color=line.get_color(), label=f"{name} (mean {etr.mean():.2f})"
        )
    accuracy_axis.set(xlabel="GRPO step", ylabel="held-out accuracy", title="Held-out accuracy")
    etr_axis.set(
        xlabel="GRPO step", ylabel="effective-task ratio", ylim=(0, 1.02), title="Share of tasks with mixed outcomes"
    )
    accuracy_axis.legend()
    etr_axis.legend()
    figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
