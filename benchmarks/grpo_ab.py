"""Data efficiency of BOTS in real GRPO training: BOTSGRPOTrainer with bots, uniform and mopps on the offline task.

Every run starts from the offline demonstration's warm-started model and task set (``trl_bots.offline``, built once
and cached under ``--workdir``) and trains the same number of GRPO steps with the demonstration's settings
(``examples/configs/offline_demo.yaml``, read with the example's own ``TrlParser``); only ``bots_strategy`` and the
seed change from run to run. The runs are single-process on the CPU, one after the other.

Measured per run:

* held-out accuracy: greedy exact-match accuracy on the held-out additions (never trained on, neither in the warm
  start nor by GRPO) at step 0 and every ``--eval-every`` steps;
* ETR: the trainer's ``bots/effective_task_ratio`` (share of the step's tasks whose group of completions is mixed,
  so that GRPO's advantages are not all zero), logged at every step;
* steps to target: the first evaluated step at which held-out accuracy reaches the target, by default the seed-mean
  final accuracy of ``uniform`` (TTB100 in the paper's terms); ``None`` when a run never reaches it, counted as
  ``steps`` in the seed mean (a lower bound for that run, flagged by ``target_reached``);
* wall time of training, evaluation excluded.

``targets`` holds the issue's goals: BOTS's mean ETR at least 1.5x uniform's, and its mean steps to target at most
0.75x uniform's. Usage::

    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --output grpo_ab.json --plots docs/figures   # ~17 min, 2 cores
    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --quick                                     # about a minute
    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --seeds 1 --steps 60 --learning_rate 5e-5   # any demo flag

Flags the script does not define go to the example's parser, so every ``BOTSConfig`` field and every ``demo_*``
setting can be overridden. JSON goes to stdout (or ``--output``), progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback


ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("bots", "uniform", "mopps")
# --quick: a small model, warm start and task set, a few steps; enough to run every code path in about a minute.
QUICK_DEMO = [
    "--demo_num_tasks", "64", "--demo_num_eval", "50", "--demo_max_digits", "2", "--demo_sft_steps", "400",
    "--demo_sft_examples", "2000", "--demo_sft_batch_size", "64", "--demo_weak_step", "150",
    "--demo_reference_samples", "4", "--demo_hidden_size", "64", "--demo_num_layers", "1",
    "--per_device_train_batch_size", "32",
]  # fmt: skip


def load_example():
    """``examples/train_bots.py`` as a module: its parser, reward lookup and offline-demo config are the benchmark's."""
    spec = importlib.util.spec_from_file_location("train_bots", ROOT / "examples" / "train_bots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HeldoutAccuracy(TrainerCallback):
    """Greedy held-out accuracy every ``every`` steps (and at the last step), with the time it took."""

    def __init__(self, tokenizer, dataset, every: int):
        self.tokenizer, self.dataset, self.every = tokenizer, dataset, every
        self.steps: list[int] = []
        self.accuracy: list[float] = []
        self.seconds = 0.0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every and state.global_step != state.max_steps:
            return
        from trl_bots.offline import heldout_accuracy

        start = time.perf_counter()
        accuracy = heldout_accuracy(model, self.tokenizer, self.dataset, f"held-out at step {state.global_step}")
        model.train()  # heldout_accuracy leaves the model in eval mode
        self.seconds += time.perf_counter() - start
        self.steps.append(state.global_step)
        self.accuracy.append(accuracy)


def demo_arguments(example, overrides: list[str], **settings: Any):
    """(script, BOTSConfig, model, demo) arguments of the offline demonstration, with ``overrides`` and ``settings``."""
    flags = [item for name, value in settings.items() for item in (f"--{name}", str(value))]
    return example.make_parser().parse_args_and_config(["--config", example.OFFLINE_DEMO_CONFIG, *overrides, *flags])


def train_one(example, setup, overrides: list[str], strategy: str, seed: int, options: argparse.Namespace) -> dict:
    """One GRPO run from the warm-started model; its held-out accuracy curve, per-step ETR and wall time."""
    from trl_bots import BOTSGRPOTrainer
    from trl_bots.plotting import log_series

    script_args, args, _, _ = demo_arguments(
        example,
        overrides,
        output_dir=Path(options.workdir) / "runs" / f"{strategy}-seed{seed}",
        bots_strategy=strategy,
        seed=seed,
        max_steps=options.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    trainer = BOTSGRPOTrainer(
        model=setup.model_path,
        reward_funcs=[example.get_reward_function(name) for name in script_args.reward_funcs],
        args=args,
        train_dataset=setup.train_dataset,
        processing_class=setup.tokenizer,
    )
    evaluation = HeldoutAccuracy(setup.tokenizer, setup.eval_dataset, options.eval_every)
    trainer.add_callback(evaluation)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start - evaluation.seconds
    etr_steps, etr = log_series(trainer.state.log_history, "bots/effective_task_ratio")
    if not np.array_equal(etr_steps, np.arange(1, options.steps + 1)):
        raise RuntimeError(f"{strategy} seed {seed}: expected an ETR at every step, got steps {etr_steps.tolist()}")
    return {
        "seed": seed,
        "eval_steps": evaluation.steps,
        "accuracy": evaluation.accuracy,
        "etr": etr.tolist(),
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / options.steps,
    }


def steps_to_target(steps: list[int], accuracy: list[float], target: float) -> int | None:
    """First evaluated step whose accuracy is at least ``target``; ``None`` if there is none."""
    reached = [step for step, value in zip(steps, accuracy, strict=True) if value >= target]
    return reached[0] if reached else None


def summarise(runs: list[dict], accuracy_before: float, target: float, budget: int) -> dict[str, Any]:
    """Seed means (and spreads) of one strategy's runs."""
    curves = np.array([[accuracy_before, *run["accuracy"]] for run in runs])
    etr = np.array([np.mean(run["etr"]) for run in runs])
    reached = [steps_to_target(run["eval_steps"], run["accuracy"], target) for run in runs]
    return {
        "etr": float(etr.mean()),
        "etr_seed_std": float(etr.std()),
        "final_accuracy": float(curves[:, -1].mean()),
        "final_accuracy_seed_std": float(curves[:, -1].std()),
        "best_accuracy": float(curves.max(axis=1).mean()),
        "steps_to_target_per_seed": reached,
        "steps_to_target": float(np.mean([budget if step is None else step for step in reached])),
        "target_reached": sum(step is not None for step in reached),
        "seconds_per_step": float(np.mean([run["seconds_per_step"] for run in runs])),
        "train_seconds": float(np.sum([run["train_seconds"] for run in runs])),
        "accuracy_curve": curves.mean(axis=0).round(5).tolist(),
        "accuracy_curve_min": curves.min(axis=0).round(5).tolist(),
        "accuracy_curve_max": curves.max(axis=0).round(5).tolist(),
        "etr_curve": np.mean([run["etr"] for run in runs], axis=0).round(5).tolist(),
    }


def targets(summary: dict[str, dict]) -> dict[str, Any]:
    """The issue's goals for real GRPO, measured: BOTS against uniform."""
    bots, uniform = summary["bots"], summary["uniform"]
    etr_ratio = bots["etr"] / uniform["etr"] if uniform["etr"] > 0 else None
    steps_ratio = bots["steps_to_target"] / uniform["steps_to_target"] if uniform["steps_to_target"] > 0 else None
    return {
        "etr_vs_uniform": etr_ratio,
        "etr_vs_uniform_met": etr_ratio is not None and etr_ratio >= 1.5,
        "steps_to_target_vs_uniform": steps_ratio,
        "steps_to_target_vs_uniform_met": steps_ratio is not None and steps_ratio <= 0.75,
    }


def plot(report: dict[str, Any], directory: str) -> list[str]:
    """``grpo_ab_accuracy.png`` (held-out accuracy over steps, seed mean and range) and ``grpo_ab_etr.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    eval_steps = [0, *report["runs"][report["config"]["strategies"][0]][0]["eval_steps"]]
    paths = []
    for name, ylabel in (("accuracy", "held-out accuracy (greedy)"), ("etr", "effective-task ratio")):
        figure, axis = plt.subplots(figsize=(6, 4))
        for strategy, metrics in report["summary"].items():
            if name == "accuracy":
                (line,) = axis.plot(eval_steps, metrics["accuracy_curve"], label=strategy)
                low, high = metrics["accuracy_curve_min"], metrics["accuracy_curve_max"]
                axis.fill_between(eval_steps, low, high, color=line.get_color(), alpha=0.15)
            else:
                etr = np.asarray(metrics["etr_curve"])
                window = max(1, etr.size // 20)  # a moving average: the per-step ratio is a noisy share of B tasks
                smooth = np.convolve(etr, np.ones(window) / window, mode="valid")
                axis.plot(np.arange(window, etr.size + 1), smooth, label=f"{strategy} (mean {metrics['etr']:.2f})")
        if name == "accuracy":
            axis.axhline(report["target_accuracy"], color="grey", linestyle=":", label="target (uniform's final)")
        seeds = report["config"]["seeds"]
        axis.set(xlabel="GRPO step", ylabel=ylabel, title=f"Real GRPO on additions, {seeds} seed(s) per strategy")
        axis.legend()
        figure.tight_layout()
        path = os.path.join(directory, f"grpo_ab_{name}.png")
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags (any BOTSConfig or demo_* option of examples/train_bots.py) override the demo's settings.",
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--seeds", type=int, default=3, help="Runs per strategy, seeds 0..seeds-1 (default 3).")
    parser.add_argument("--steps", type=int, default=200, help="GRPO steps per run (default 200, the demo's).")
    parser.add_argument("--eval-every", type=int, default=10, help="Held-out evaluation interval in steps.")
    parser.add_argument(
        "--target-accuracy", type=float, default=None, help="Held-out accuracy to reach; default: uniform's final."
    )
    parser.add_argument("--workdir", default="runs/grpo_ab", help="Cached setup and run folders.")
    parser.add_argument("--output", help="Write the JSON report here as well as to stdout.")
    parser.add_argument("--plots", help="Folder for grpo_ab_accuracy.png and grpo_ab_etr.png.")
    parser.add_argument("--quick", action="store_true", help="A small setup and 4 steps per run: a smoke run.")
    options, overrides = parser.parse_known_args(argv)
    if options.quick:
        options.seeds, options.steps, options.eval_every = 1, 4, 2
        overrides = [*QUICK_DEMO, *overrides]
    for name in ("seeds", "steps", "eval_every"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(options, name)}")
    if "bots" not in options.strategies or "uniform" not in options.strategies:
        parser.error("--strategies must include bots and uniform (the comparison the report is about)")
    return options, overrides


def run_benchmark(options: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from trl_bots.offline import build_offline_setup, heldout_accuracy

    example = load_example()
    _, training_args, _, demo_args = demo_arguments(example, overrides, output_dir=options.workdir, report_to="none")
    setup = build_offline_setup(demo_args, training_args)  # cached: built once per setting, with the demo's seed

    accuracy_before = heldout_accuracy(
        AutoModelForCausalLM.from_pretrained(setup.model_path), setup.tokenizer, setup.eval_dataset, "held-out, step 0"
    )
    runs: dict[str, list[dict]] = {}
    for seed in range(options.seeds):  # seed-major: a load drift on the machine touches every strategy alike
        for strategy in options.strategies:
            print(f"[grpo_ab] {strategy}, seed {seed}: {options.steps} steps", file=sys.stderr, flush=True)
            run = train_one(example, setup, overrides, strategy, seed, options)
            runs.setdefault(strategy, []).append(run)
            print(
                f"[grpo_ab] {strategy}, seed {seed}: accuracy {accuracy_before:.3f} -> {run['accuracy'][-1]:.3f}, "
                f"ETR {np.mean(run['etr']):.3f}, {run['seconds_per_step']:.2f} s/step",
                file=sys.stderr,
                flush=True,
            )
    target = options.target_accuracy
    if target is None:
        target = float(np.mean([run["accuracy"][-1] for run in runs["uniform"]]))
    summary = {name: summarise(runs[name], accuracy_before, target, options.steps) for name in options.strategies}
    return {
        "config": {
            "strategies": options.strategies,
            "seeds": options.seeds,
            "steps": options.steps,
            "eval_every": options.eval_every,
            "quick": options.quick,
            "heldout_tasks": len(setup.eval_dataset),
            "train_tasks": len(setup.train_dataset),
            "tasks_per_step": training_args.per_device_train_batch_size // training_args.num_generations,
            "num_generations": training_args.num_generations,
            "learning_rate": training_args.learning_rate,
            "overrides": overrides,
        },
        "accuracy_before": accuracy_before,
        "target_accuracy": target,
        "summary": summary,
        "targets": targets(summary),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    options, overrides = parse(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries only the JSON
        report = run_benchmark(options, overrides)
        paths = plot(report, options.plots) if options.plots else []
    text = json.dumps(report, indent=2, allow_nan=False)
    if options.output:
        Path(options.output).write_text(text + "\n")
    print(text)
    for path in paths:
        print(f"[grpo_ab] wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
