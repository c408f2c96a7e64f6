"""Does BOTS help in real GRPO? An A/B of task-selection strategies on the offline world, with intervals over seeds.

Every run trains the real ``BOTSGRPOTrainer`` from the same warm-started model and task pool (the offline
demonstration's setup, :func:`bots_demo.offline_setup.build_offline_setup`: the shipped one when the settings match, else built
once and cached under ``--workdir``) with the same GRPO settings (``examples/configs/offline_demo.yaml``, read with the
example's own ``TrlParser``); only the selection strategy and the seed change from run to run:

* ``bots``, ``uniform``, ``mopps`` (explicit evidence only), ``dots`` (implicit evidence only) and ``bots-no-thompson``
  (``bots`` with ``bots_thompson=False``, scoring the posterior mean).

Before any GRPO step the warm start is checked against the setup's start criterion on the whole pool
(:func:`bots_demo.measure.check_start`; the run stops if it does not hold). The runs are single-process on the CPU,
one after the other, seed-major (every strategy for one seed, then the next seed), so that a drift of the machine's load
touches every strategy alike. Measured per run:

* held-out accuracy (:class:`bots_demo.measure.HeldoutEvaluation`): one sample per held-out task at GRPO's sampling temperature, exact
  match, overall and per carry level, with the same sampling seed at every evaluation and in every run; at step 0
  (the shared warm start, evaluated once) and every ``--eval-every`` steps. Its standard error is at most
  ``0.5 / sqrt(tasks)``: 0.0096 on the default 2,700 tasks;
* ETR: the mean over steps of the trainer's ``bots/effective_task_ratio`` (share of a step's tasks whose group of
  completions is mixed, so that GRPO's advantages are not all zero);
* steps to target: the first evaluated step with held-out accuracy >= the target, uniform's seed-mean final accuracy;
  a run that never gets there counts as the whole budget (``--steps``, a lower bound) and is counted in ``reached``;
* the pool's pass-rate shape (share of tasks always / sometimes / never solved) at the start and after each run;
* wall time of training (evaluations excluded); ``wall_seconds`` in the report is the whole A/B, setup included.

Statistics across seeds: mean and a 95% Student-t interval (:func:`mean_interval`; the t quantile is computed exactly,
without scipy, by :func:`t_quantile`). Against uniform, paired by seed: the final-accuracy difference (t-interval of
the per-seed differences) and the ETR and steps ratios (geometric mean of the per-seed ratios, t-interval on their
logarithms). The issue's three targets, for every strategy against uniform:

* ETR >= 1.5x uniform's;
* steps to uniform's final accuracy <= 0.7x uniform's, the interval excluding 1 (and every run reaching it: a run
  that never does would enter at the budget, which flatters the ratio);
* final accuracy above uniform's, the interval of the difference excluding 0.

**On a task stream** (``--stream``), every run trains on an unbounded stream of the setup's additions instead of its
pool (:func:`bots_demo.stream.setup_stream`: the pool's level mix, the held-out prompts excluded, no reference columns),
seeded by the run's seed, so that every strategy of a seed reads the same stream. The strategies:

* ``stock``: ``trl.GRPOTrainer`` as it ships, on TRL's own path for an ``IterableDataset`` (a buffered shuffle of the
  stream); its ETR is measured as BOTS measures it, from the same rewards (:class:`bots_demo.stock.StockGRPOTrainer`);
* ``uniform-pool`` and ``bots-pool``: ``BOTSGRPOTrainer`` with ``bots_strategy`` uniform and bots, each keeping an
  active pool of the stream's tasks (its default settings).

The reference is ``stock``: the targets, steps to target and paired differences above are against it. The pool's
pass-rate shape is measured on the setup's task pool, a sample of the stream's mix.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --seeds 100 101 102 103 104 --output docs/results-grpo-ab.json \\
        --plots docs/figures --markdown
    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --quick                    # every code path, under a minute
    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --strategies bots uniform --learning_rate 5e-5  # any demo flag
    HF_HUB_OFFLINE=1 python benchmarks/grpo_ab.py --stream --seeds 500 501 502 503 504  # on a task stream

Flags the script does not define go to the example's parser, so every ``BOTSConfig`` field and every ``demo_*``
setting can be overridden. The JSON report goes to stdout (and ``--output``); progress and a readable summary (the
tables and the targets, met or missed with the measured values; in Markdown with ``--markdown``) go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForCausalLM

from trl_bots.plotting import plot_comparison
from trl_bots.trainer import BOTSGRPOTrainer


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))  # the demo's world, the package bots_demo beside examples/train_bots.py
from bots_demo.grpo_runs import steps_to_reach, train_from_setup  # noqa: E402
from bots_demo.measure import HeldoutEvaluation, check_start, start_shape  # noqa: E402
from bots_demo.offline_setup import build_offline_setup  # noqa: E402
from bots_demo.stock import StockGRPOTrainer  # noqa: E402
from bots_demo.stream import setup_stream  # noqa: E402


# Each strategy's BOTSConfig settings; everything else is the demo's configuration.
STRATEGIES: dict[str, dict[str, Any]] = {
    "bots": {"bots_strategy": "bots"},
    "uniform": {"bots_strategy": "uniform"},
    "mopps": {"bots_strategy": "mopps"},
    "dots": {"bots_strategy": "dots"},
    "bots-no-thompson": {"bots_strategy": "bots", "bots_thompson": False},
    # A plain dataset: the pool's reference columns are not given to BOTS.
    "bots-explicit": {"bots_strategy": "bots", "bots_reference_columns": "none", "bots_implicit_estimator": "none"},
    "bots-embedding": {
        "bots_strategy": "bots",
        "bots_reference_columns": "none",
        "bots_implicit_estimator": "embedding",
    },
    # The embedding estimator with the reference columns as two more features.
    "bots-embedding-refs": {"bots_strategy": "bots", "bots_implicit_estimator": "embedding"},
}
REFERENCE = "uniform"
# --stream: every strategy trains on the same unbounded task stream (bots_demo.stream, no reference columns).
STOCK = "stock"  # trl.GRPOTrainer as it ships (bots_demo.stock); it reads no bots_* setting
STREAM_STRATEGIES: dict[str, dict[str, Any]] = {
    STOCK: {},
    # BOTSGRPOTrainer on the stream keeps an active pool (its default size); a plain stream: no reference columns.
    "uniform-pool": {"bots_strategy": "uniform", "bots_reference_columns": "none"},
    "bots-pool": {"bots_strategy": "bots", "bots_reference_columns": "none"},
}
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
CONFIDENCE = 0.95
# The targets against the reference strategy (uniform; stock on a stream).
ETR_RATIO_TARGET, STEPS_RATIO_TARGET = 1.5, 0.7

# --quick: a tiny model and world (2-digit additions), a criterion every warm start meets (thresholds 0 / 0 / 1),
# 2 seeds (the least that gives an interval) and 4 steps: every code path in under a minute.
QUICK_SEEDS, QUICK_STEPS, QUICK_EVAL_EVERY = [0, 1], 4, 2
QUICK_DEMO = [
    "--demo_digits", "2", "--demo_pool_level_weights", "1", "1", "1", "--demo_num_tasks", "48",
    "--demo_num_eval", "60", "--demo_sft_examples", "1000", "--demo_sft_batch_size", "64",
    "--demo_sft_learning_rate", "3e-3", "--demo_check_every", "400", "--demo_reference_offset", "400",
    "--demo_sft_max_steps", "800",
    "--demo_criterion_margin", "0", "--demo_min_always_solved", "0", "--demo_min_never_solved", "0",
    "--demo_max_mixed", "1", "--demo_reference_samples", "4", "--demo_hidden_size", "64", "--demo_num_layers", "1",
    "--per_device_train_batch_size", "32", "--disable_tqdm", "true",
]  # fmt: skip


# ------------------------------------------------------------------ statistics (pure functions)
def _t_central_mass(theta: float, df: int) -> float:
    """
    P(|T| <= sqrt(df) * tan(theta)) for Student's t with ``df`` degrees of freedom: the finite sums of Abramowitz &
    Stegun 26.7.3 (odd ``df``) and 26.7.4 (even ``df``), exact for integer ``df``.
    """
    cos2 = math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for j in range(1, df // 2):
            term *= cos2 * (2 * j - 1) / (2 * j)
            total += term
        return math.sin(theta) * total
    term = total = math.cos(theta) if df > 1 else 0.0
    for j in range(1, (df - 1) // 2):
        term *= cos2 * (2 * j) / (2 * j + 1)
        total += term
    return 2.0 / math.pi * (theta + math.sin(theta) * total)


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """
    The two-sided critical value of Student's t: ``P(|T| <= t) = confidence`` (2.776 for df 4 at 95%). The central mass
    rises monotonically with the angle ``atan(t / sqrt(df))``, so bisection on that angle in (0, pi/2) converges to
    double precision whatever ``df``; no scipy (a dev dependency only) needed.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"t_quantile: df must be an integer >= 1, got {df!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"t_quantile: confidence must lie in (0, 1), got {confidence!r}.")
    low, high = 0.0, math.pi / 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_central_mass(middle, df) < confidence else (low, middle)
    return math.sqrt(df) * math.tan((low + high) / 2)


def mean_interval(values, confidence: float = CONFIDENCE) -> dict[str, float | None]:
    """
    Mean of ``values`` (one per seed) and its Student-t interval ``mean +- t * sd / sqrt(n)``; ``low`` and ``high``
    are None for a single value (no spread to measure).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"mean_interval needs a non-empty list of finite numbers, got {values.tolist()}.")
    mean = float(values.mean())
    if values.size == 1:
        return {"mean": mean, "low": None, "high": None}
    half = t_quantile(values.size - 1, confidence) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def ratio_interval(numerators, denominators, confidence: float = CONFIDENCE) -> dict[str, float | None] | None:
    """
    Paired ratios ``numerators[i] / denominators[i]`` (same seed): their geometric mean and the t-interval of their
    logarithms, mapped back (a ratio of 0.5 and one of 2 cancel out). None when a value is not positive (no ratio).
    """
    numerators, denominators = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    if numerators.shape != denominators.shape:
        raise ValueError(f"ratio_interval: {numerators.size} numerators for {denominators.size} denominators.")
    if np.any(numerators <= 0) or np.any(denominators <= 0):
        return None
    logs = mean_interval(np.log(numerators / denominators), confidence)
    return {key: None if value is None else math.exp(value) for key, value in logs.items()}


def targets(reference: str) -> dict[str, str]:
    """The issue's three targets against ``reference``, in words."""
    return {
        "etr": f"ETR >= {ETR_RATIO_TARGET}x {reference}'s (geometric mean of the per-seed ratios)",
        "steps": f"steps to {reference}'s final accuracy <= {STEPS_RATIO_TARGET}x {reference}'s, the ratio's interval "
        "excluding 1 and every run reaching it",
        "accuracy": f"final accuracy above {reference}'s, the interval of the per-seed difference excluding 0",
    }


def reference_of(report: dict[str, Any]) -> str:
    """The strategy a report compares every other with: its config's ``reference`` (stock on a stream), else uniform
    (a report on the task pool, which does not name it)."""
    return report["config"].get("reference", REFERENCE)


def targets_met(
    etr_ratio: dict | None, steps_ratio: dict | None, all_reached: bool, difference: dict
) -> dict[str, bool]:
    """The issue's three targets (:func:`targets`) from a strategy's paired comparison with the reference."""
    return {
        "etr": etr_ratio is not None and etr_ratio["mean"] >= ETR_RATIO_TARGET,
        "steps": steps_ratio is not None
        and all_reached
        and steps_ratio["mean"] <= STEPS_RATIO_TARGET
        and steps_ratio["high"] is not None
        and steps_ratio["high"] < 1.0,
        "accuracy": difference["mean"] > 0 and difference["low"] is not None and difference["low"] > 0,
    }


def steps_to_target(runs: list[dict], target: float, budget: int) -> tuple[list[int], list[bool]]:
    """
    Per run, the first evaluated step with held-out accuracy >= ``target``, and whether the run got there at all; a run
    that never does counts as the whole ``budget`` (a lower bound on its true number of steps).
    """
    steps = [steps_to_reach(run["eval_steps"], run["accuracy"], target) for run in runs]
    return [budget if step is None else step for step in steps], [step is not None for step in steps]


def summarise(runs: list[dict], start: dict[str, Any], target: float, budget: int) -> dict[str, Any]:
    """One strategy's runs across seeds: means and intervals of every measured quantity."""
    steps = [0, *runs[0]["eval_steps"]]
    curves = np.array([[start["accuracy"], *run["accuracy"]] for run in runs])
    steps_needed, reached = steps_to_target(runs, target, budget)
    levels = list(runs[0]["accuracy_by_level"][-1])
    at_each_step = [mean_interval(curves[:, i]) for i in range(len(steps))]
    return {
        "etr": mean_interval([run["etr_mean"] for run in runs]),
        "final_accuracy": mean_interval(curves[:, -1]),
        "accuracy_curve": {
            "eval_steps": steps,
            **{key: [point[key] for point in at_each_step] for key in ("mean", "low", "high")},
        },
        "final_accuracy_by_level": {
            level: mean_interval([run["accuracy_by_level"][-1][level] for run in runs]) for level in levels
        },
        "steps_to_target": mean_interval(steps_needed),
        "steps_to_target_per_seed": steps_needed,
        "reached": sum(reached),
        "train_seconds": mean_interval([run["train_seconds"] for run in runs]),
        "seconds_per_step": mean_interval([run["seconds_per_step"] for run in runs]),
        "end_shape": {
            part: mean_interval([run["end_shape"][part] for run in runs]) for part in ("always", "mixed", "never")
        },
        "etr_curve": np.mean([run["etr"] for run in runs], axis=0).tolist(),
    }


def compare(runs: list[dict], reference: list[dict], target: float, budget: int) -> dict[str, Any]:
    """A strategy against the reference, paired by seed: accuracy difference, steps and ETR ratios, the targets."""
    if [run["seed"] for run in runs] != [run["seed"] for run in reference]:
        raise ValueError("compare: the two strategies' runs must have the same seeds in the same order.")

    difference = mean_interval(
        [run["accuracy"][-1] - ref["accuracy"][-1] for run, ref in zip(runs, reference, strict=True)]
    )
    steps_needed, reached = steps_to_target(runs, target, budget)
    steps_ratio = ratio_interval(steps_needed, steps_to_target(reference, target, budget)[0])
    etr_ratio = ratio_interval([run["etr_mean"] for run in runs], [ref["etr_mean"] for ref in reference])
    return {
        "final_accuracy_difference": difference,
        "steps_ratio": steps_ratio,
        "etr_ratio": etr_ratio,
        "targets_met": targets_met(etr_ratio, steps_ratio, all(reached), difference),
    }


# ------------------------------------------------------------------ the readable summary
def accuracy_differences(runs: dict[str, list[dict]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Every strategy's final held-out accuracy minus every other's, paired by seed, with its interval."""
    return {
        name: {
            other: mean_interval(
                [run["accuracy"][-1] - ref["accuracy"][-1] for run, ref in zip(runs[name], runs[other], strict=True)]
            )
            for other in runs
            if other != name
        }
        for name in runs
    }


def _interval(value: dict | None, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "undefined"
    if value["low"] is None:
        return f"{value['mean']:.{digits}f}{suffix}"
    return f"{value['mean']:.{digits}f}{suffix} [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    )


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """The report as text: the README table, accuracy per carry level, the pool's shape, the targets."""
    config, summary, start, reference = report["config"], report["summary"], report["start"], reference_of(report)
    seeds = len(config["seeds"])
    main = [
        [
            name,
            _interval(metrics["etr"]),
            _interval(metrics["final_accuracy"]),
            _interval(metrics["steps_to_target"], 0)
            + ("" if metrics["reached"] == seeds else f" ({metrics['reached']}/{seeds} reached)"),
            f"{metrics['seconds_per_step']['mean']:.2f}",
        ]
        for name, metrics in summary.items()
    ]
    header = ["strategy", "ETR", "final acc [95% CI]", f"steps to {reference}'s final [CI]", "s/step"]
    curves = [metrics["accuracy_curve"] for metrics in summary.values()]
    over_steps = [
        [str(step), *(_interval({key: curve[key][i] for key in ("mean", "low", "high")}) for curve in curves)]
        for i, step in enumerate(curves[0]["eval_steps"])
    ]
    levels = list(start["accuracy_by_level"])
    by_level = [
        [level, f"{start['accuracy_by_level'][level]:.3f}"]
        + [f"{summary[name]['final_accuracy_by_level'][level]['mean']:.3f}" for name in summary]
        for level in levels
    ]
    by_level.append(
        ["all", f"{start['accuracy']:.3f}"] + [f"{m['final_accuracy']['mean']:.3f}" for m in summary.values()]
    )
    shapes = [["start", *(f"{start['pool_shape'][part]:.3f}" for part in ("always", "mixed", "never"))]]
    shapes += [
        [name, *(f"{metrics['end_shape'][part]['mean']:.3f}" for part in ("always", "mixed", "never"))]
        for name, metrics in summary.items()
    ]
    lines = [
        f"GRPO A/B{' on an unbounded task stream' if 'stream' in config else ''}: {len(summary)} strategies x {seeds} seeds ({' '.join(map(str, config['seeds']))}), "
        f"{config['steps']} steps per run, {config['heldout_tasks']} held-out tasks (standard error <= "
        f"{config['heldout_standard_error']:.4f}); total wall time {report['wall_seconds'] / 60:.1f} min.",
        f"Seed means with 95% t-intervals; steps to {reference}'s final accuracy ({report['target_accuracy']:.3f}); "
        f"a run that never reaches it counts as {config['steps']}.",
        "",
        _table(header, main, markdown),
        "",
        "Held-out accuracy at each evaluation (seed mean [95% CI]):",
        "",
        _table(["step", *summary], over_steps, markdown),
        "",
        "Held-out accuracy per carry level, at the start and at the end (seed means):",
        "",
        _table(["carries", "start", *summary], by_level, markdown),
        "",
        "Pool pass-rate shape (share of tasks always / sometimes / never solved), at the start and at the end:",
        "",
        _table(["", "always", "mixed", "never"], shapes, markdown),
        "",
        f"Targets against {reference}, paired by seed (geometric-mean ratios; difference of final accuracies):",
        "",
        _table(
            [
                "strategy",
                f"ETR ratio (>= {ETR_RATIO_TARGET}x)",
                f"steps ratio (<= {STEPS_RATIO_TARGET}x, CI < 1)",
                "final acc. difference (CI > 0)",
            ],
            [
                [
                    name,
                    *(
                        f"{_interval(paired[key], digits, suffix)} {'met' if paired['targets_met'][target] else 'missed'}"
                        for key, target, digits, suffix in (
                            ("etr_ratio", "etr", 2, "x"),
                            ("steps_ratio", "steps", 2, "x"),
                            ("final_accuracy_difference", "accuracy", 3, ""),
                        )
                    ),
                ]
                for name, paired in report["paired"].items()
            ],
            markdown,
        ),
        "",
        "Final held-out accuracy of the row's strategy minus the column's, paired by seed (mean [95% CI]):",
        "",
        _table(
            ["", *summary],
            [
                [name, *("" if other == name else _interval(row[other]) for other in summary)]
                for name, row in report["accuracy_differences"].items()
            ],
            markdown,
        ),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ running the A/B
def load_example():
    """``examples/train_bots.py`` as a module: its parser, reward lookup and offline-demo config are the benchmark's."""
    spec = importlib.util.spec_from_file_location("train_bots", ROOT / "examples" / "train_bots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_arguments(example, overrides: list[str], **settings: Any):
    """(script, BOTSConfig, model, demo) arguments of the offline demonstration, with ``overrides`` and ``settings``."""
    # A mapping (e.g. bots_domain_weights) goes as JSON, which BOTSConfig reads; its str() has single quotes.
    flags = [
        item
        for name, value in settings.items()
        for item in (f"--{name}", json.dumps(value) if isinstance(value, dict) else str(value))
    ]
    return example.make_parser().parse_args_and_config(["--config", example.OFFLINE_DEMO_CONFIG, *overrides, *flags])


def run_arguments(example, options: argparse.Namespace, name: str, seed: int, **settings: Any):
    """The demo's arguments for one run named ``name`` (its folder under ``--workdir``): ``options.steps`` steps, a log
    line per step, no checkpoints, plus ``settings``."""
    return demo_arguments(
        example,
        options.overrides,
        output_dir=Path(options.workdir) / "runs" / f"{name}-seed{seed}",
        seed=seed,
        max_steps=options.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        **settings,
    )


def strategy_settings(stream: bool) -> dict[str, dict[str, Any]]:
    """The strategies of a mode and their BOTSConfig settings: on the task stream, or on the setup's task pool."""
    return STREAM_STRATEGIES if stream else STRATEGIES


def train_one(example, setup, options: argparse.Namespace, strategy: str, seed: int) -> dict[str, Any]:
    """One GRPO run from the setup's warm start, on its task pool or (``--stream``) on the task stream of ``seed``,
    the same for every strategy: its record without the trainer, plus mean ETR and seconds per step."""
    settings = strategy_settings(options.stream)[strategy]
    script_args, args, _, demo_args = run_arguments(example, options, strategy, seed, **settings)
    data = {}
    if options.stream:
        trainer_class = StockGRPOTrainer if strategy == STOCK else BOTSGRPOTrainer
        data = {"train_dataset": setup_stream(setup, seed), "trainer_class": trainer_class}
    record = train_from_setup(
        setup,
        args,
        [example.get_reward_function(name) for name in script_args.reward_funcs],
        HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, options.eval_every, setup.temperature),
        demo_args.demo_reference_samples,
        **data,
    )
    del record["trainer"]  # frees the model; the record is what the report keeps
    record["etr_mean"] = float(np.mean(record["etr"]))
    record["seconds_per_step"] = record["train_seconds"] / options.steps
    return record


def run_benchmark(options: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    example, training_args, demo_args = options.example, options.training_args, options.demo_args
    setup = build_offline_setup(demo_args, training_args)  # the demo's seed: one setup for every run
    warm_start = AutoModelForCausalLM.from_pretrained(setup.model_path)
    start_rates = check_start(setup, demo_args, warm_start)  # stops here if the warm start is not what the A/B needs
    evaluation = HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, options.eval_every, setup.temperature)
    at_start = evaluation.evaluate(warm_start)
    start = {
        "accuracy": at_start.pop("all"),
        "accuracy_by_level": at_start,
        "pool_shape": start_shape(start_rates),
    }
    setup_seconds = time.perf_counter() - started
    runs: dict[str, list[dict]] = {name: [] for name in options.strategies}
    total = len(options.seeds) * len(options.strategies)
    for seed in options.seeds:  # seed-major: a drift of the machine's load touches every strategy alike
        for strategy in options.strategies:
            done = sum(map(len, runs.values()))
            print(f"[grpo_ab] run {done + 1}/{total}: {strategy}, seed {seed}", file=sys.stderr, flush=True)
            run = train_one(example, setup, options, strategy, seed)
            runs[strategy].append(run)
            print(
                f"[grpo_ab] {strategy}, seed {seed}: held-out {start['accuracy']:.3f} -> {run['accuracy'][-1]:.3f}, "
                f"ETR {run['etr_mean']:.3f}, {run['seconds_per_step']:.2f} s/step; "
                f"{(time.perf_counter() - started) / 60:.1f} min so far",
                file=sys.stderr,
                flush=True,
            )
    tasks, settings = len(setup.eval_dataset), strategy_settings(options.stream)
    config = {
        "strategies": {name: settings[name] for name in options.strategies},
        "seeds": options.seeds,
        "steps": options.steps,
        "eval_every": options.eval_every,
        "quick": options.quick,
        "confidence": CONFIDENCE,
        "heldout_tasks": tasks,
        "heldout_standard_error": 0.5 / math.sqrt(tasks),  # the largest, at accuracy 0.5
        "train_tasks": None if options.stream else len(setup.train_dataset),  # a stream has no end
        "tasks_per_step": training_args.generation_batch_size // training_args.num_generations,
        "num_generations": training_args.num_generations,
        "learning_rate": training_args.learning_rate,
        "overrides": options.overrides,
    }
    if options.stream:
        config.update(reference=STOCK, stream=stream_settings(setup))
    return {
        "config": config,
        "setup": {"folder": setup.folder, "build": setup.manifest["build"], "seconds": setup_seconds},
        "start": start,
        "targets": targets(reference_of({"config": config})),
        **comparisons(runs, start, options.steps, reference_of({"config": config})),
        "wall_seconds": time.perf_counter() - started,
        "runs": runs,
    }


def stream_settings(setup) -> dict[str, Any]:
    """What a report says of the task stream (``bots_demo.stream.setup_stream``): the setup's world."""
    settings = setup.manifest["settings"]
    return {
        "seed": "each run's seed: every strategy of a seed reads the same stream",
        "digits": settings["demo_digits"],
        "level_weights": settings["demo_pool_level_weights"],
        "excluded": f"the {len(setup.eval_dataset)} held-out prompts",
        "pool_shape_measured_on": f"the setup's task pool ({len(setup.train_dataset)} tasks of the stream's mix)",
    }


def plot(report: dict[str, Any], directory: str) -> Path:
    """``grpo_ab_accuracy.png``: held-out accuracy over steps (seed mean, 95% band) and ETR, every strategy."""
    curves = {}
    for name, metrics in report["summary"].items():
        curve = metrics["accuracy_curve"]
        curves[name] = {"eval_steps": curve["eval_steps"], "accuracy": curve["mean"], "etr": metrics["etr_curve"]}
        if curve["low"][-1] is not None:  # one seed: no band
            curves[name].update(accuracy_low=curve["low"], accuracy_high=curve["high"])
    seeds = len(report["config"]["seeds"])
    title = f"Real GRPO from one warm start: seed mean and 95% interval over {seeds} seed(s)"
    return plot_comparison(curves, Path(directory) / "grpo_ab_accuracy.png", title)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The script's options, with the demo's parsed settings; bad input stops here, before any work."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags (any BOTSConfig or demo_* option of examples/train_bots.py) override the demo's settings.",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=[*STRATEGIES, *STREAM_STRATEGIES],
        help=f"Strategies to run (default: every one of the mode: {', '.join(STRATEGIES)}; with --stream "
        f"{', '.join(STREAM_STRATEGIES)}).",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, help=f"Seeds, one run per strategy each (default {DEFAULT_SEEDS})."
    )
    parser.add_argument("--steps", type=int, help="GRPO steps per run (default: the demo's max_steps).")
    parser.add_argument("--eval-every", type=int, help="Steps between evaluations (default: the demo's).")
    parser.add_argument("--workdir", default="runs/grpo_ab", help="Setup cache and run folders.")
    parser.add_argument("--output", help="Write the JSON report here as well as to stdout.")
    parser.add_argument("--plots", help="Folder for grpo_ab_accuracy.png.")
    parser.add_argument("--markdown", action="store_true", help="Print the summary's tables in Markdown (README).")
    parser.add_argument("--quick", action="store_true", help="A tiny world, 2 seeds and 4 steps: a smoke run.")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="Train every run on an unbounded task stream of the setup's world (each run's seed seeds it) instead of "
        f"its task pool: strategies {', '.join(STREAM_STRATEGIES)}, compared with {STOCK} (trl.GRPOTrainer).",
    )
    parser.add_argument(
        "--report",
        nargs="+",
        help="No run: print the tables of JSON reports written before, their runs pooled (the strategies they all "
        "have; every summary and comparison recomputed from the runs), e.g. a first set of seeds and a replication.",
    )
    options, overrides = parser.parse_known_args(argv)
    if options.report is not None:
        return options
    if options.quick:
        overrides = [*QUICK_DEMO, *overrides]
        for name, value in (("seeds", QUICK_SEEDS), ("steps", QUICK_STEPS), ("eval_every", QUICK_EVAL_EVERY)):
            if getattr(options, name) is None:
                setattr(options, name, value)
    if options.seeds is None:
        options.seeds = DEFAULT_SEEDS
    if len(set(options.seeds)) != len(options.seeds) or min(options.seeds) < 0:
        parser.error(f"--seeds must be distinct non-negative integers, got {options.seeds}")
    catalogue = strategy_settings(options.stream)
    if options.strategies is None:
        options.strategies = list(catalogue)
    other_mode = [name for name in options.strategies if name not in catalogue]
    if other_mode:
        where = "the task stream (--stream)" if options.stream else "the task pool (no --stream)"
        parser.error(
            f"--strategies {' '.join(other_mode)} do not train on {where}; choose from {', '.join(catalogue)}"
        )
    if options.stream:  # stock alone is a run of TRL's trainer: the baseline, measured
        if STOCK not in options.strategies:
            parser.error(f"--strategies must include {STOCK} (the reference) with --stream")
    elif REFERENCE not in options.strategies or len(set(options.strategies)) < 2:
        parser.error(f"--strategies must include {REFERENCE} (the reference) and at least one other strategy")
    if len(set(options.strategies)) != len(options.strategies):
        parser.error(f"--strategies must not repeat a strategy, got {options.strategies}")
    training_args, demo_args = attach_demo(options, overrides)
    options.steps = options.steps if options.steps is not None else training_args.max_steps
    options.eval_every = options.eval_every if options.eval_every is not None else demo_args.demo_eval_every
    for name in ("steps", "eval_every"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(options, name)}")
    return options


def attach_demo(options: argparse.Namespace, overrides: list[str]):
    """Parse the demo's settings with ``overrides`` (the flags the script does not define) into ``options``
    (``example``, ``overrides``, ``training_args``, ``demo_args``); returns the BOTSConfig and the demo arguments."""
    example = load_example()
    _, training_args, _, demo_args = demo_arguments(example, overrides, output_dir=options.workdir, report_to="none")
    options.overrides, options.example = overrides, example
    options.training_args, options.demo_args = training_args, demo_args
    return training_args, demo_args


def pooled_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from ``reports`` of the same setup, steps and training data (the task pool, or the same task
    stream): the strategies all of them ran (in the first's order), their runs concatenated, and every summary and
    comparison recomputed from the runs."""
    first = reports[0]
    for other in reports[1:]:
        if other["start"] != first["start"] or other["config"]["steps"] != first["config"]["steps"]:
            raise ValueError("--report: the reports must come from the same setup and number of steps.")
        if other["config"].get("stream") != first["config"].get("stream"):
            raise ValueError(
                "--report: the reports must train on the same data: the setup's task pool, or the same task stream "
                "(--stream); pool them separately."
            )
    seeds = [seed for report in reports for seed in report["config"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--report: the reports must have distinct seeds, got {seeds}.")
    strategies = [name for name in first["runs"] if all(name in report["runs"] for report in reports)]
    runs = {name: [run for report in reports for run in report["runs"][name]] for name in strategies}
    config, reference = first["config"], reference_of(first)
    return {
        **first,
        "config": {
            **config,
            "strategies": {name: config["strategies"][name] for name in strategies},
            "seeds": [run["seed"] for run in runs[reference]],
        },
        **comparisons(runs, first["start"], config["steps"], reference),
        "wall_seconds": sum(report["wall_seconds"] for report in reports),
    }


def comparisons(runs: dict[str, list[dict]], start: dict[str, Any], steps: int, reference: str) -> dict[str, Any]:
    """What a report computes from its runs: the target (the ``reference`` strategy's final accuracy), every
    strategy's summary, its paired comparison with the reference, the accuracy differences of every pair, and the runs
    themselves."""
    target = float(np.mean([run["accuracy"][-1] for run in runs[reference]]))
    return {
        "target_accuracy": target,
        "summary": {name: summarise(strategy_runs, start, target, steps) for name, strategy_runs in runs.items()},
        "paired": {
            name: compare(strategy_runs, runs[reference], target, steps)
            for name, strategy_runs in runs.items()
            if name != reference
        },
        "accuracy_differences": accuracy_differences(runs),
        "runs": runs,
    }


def print_report(report: dict[str, Any], output: str | None) -> None:
    """The JSON report to stdout, and to ``output`` if given."""
    text = json.dumps(report, indent=2, allow_nan=False)
    if output:
        Path(output).write_text(text + "\n")
    print(text)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options.report is not None:
        report = pooled_report([json.loads(Path(path).read_text()) for path in options.report])
        if options.output:
            Path(options.output).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        print(render(report, options.markdown))
        if options.plots:
            print(f"[grpo_ab] wrote {plot(report, options.plots)}", file=sys.stderr)
        return 0
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries only the JSON
        report = run_benchmark(options)
        figure = plot(report, options.plots) if options.plots else None
    print_report(report, options.output)
    print(f"\n{render(report, options.markdown)}", file=sys.stderr)
    if figure is not None:
        print(f"[grpo_ab] wrote {figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
