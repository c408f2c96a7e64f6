"""Domain quotas in real GRPO: the offline world split into two domains, BOTS with and without quotas, and uniform.

The offline demonstration's pool (:mod:`bots_demo.offline_setup`: additions with 0 to 8 carries, from its shipped warm start)
gets a domain column by difficulty: ``easy`` (fewer than ``--split`` carries, default half the digits: 0-3) and
``hard`` (the rest, 4-8). Three runs per seed, everything else the demo's configuration
(``examples/configs/offline_demo.yaml``, 16 tasks x 8 completions a step):

* ``uniform``: uniform sampling, the domains only logged;
* ``bots``: BOTS with the domains only logged (``bots_domain_column``): one selection over the whole pool;
* ``bots-quotas``: BOTS with ``bots_domain_weights`` (default ``uniform``: 8 + 8 tasks every round).

Measured per run, from the trainer's own log: each round's share of every domain (``bots/domain/<name>/share``) and,
for ``bots-quotas``, whether it equals that round's quota in every round (the quotas replayed with
:func:`trl_bots.domains.domain_quotas` from the weights); the effective-task ratio overall and per domain; held-out
accuracy (one sample per held-out task, as in ``benchmarks/grpo_ab.py``) at the start and at the end, overall and per
domain. Across seeds: the mean and a 95% Student-t interval.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/domain_quotas.py --seeds 200 201 202 --output docs/results-domain-quotas.json
    HF_HUB_OFFLINE=1 python benchmarks/domain_quotas.py --quick      # a tiny world, 2 seeds, 4 steps: a smoke run

Flags the script does not define go to the example's parser (any ``BOTSConfig`` or ``demo_*`` option). The JSON
report goes to stdout (and ``--output``); progress and a summary table go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from fractions import Fraction
from typing import Any

import numpy as np
from grpo_ab import QUICK_DEMO, attach_demo, mean_interval, print_report, run_arguments  # puts examples/ on sys.path
from transformers import AutoModelForCausalLM

from bots_demo.arithmetic import LEVEL_COLUMN
from bots_demo.grpo_runs import train_from_setup
from bots_demo.measure import HeldoutEvaluation, check_start
from bots_demo.offline_setup import build_offline_setup
from trl_bots.domains import domain_quotas, resolve_domain_weights


DOMAIN_COLUMN = "difficulty"
DOMAINS = ("easy", "hard")  # sorted, as the selector orders them
RUNS: dict[str, dict[str, Any]] = {
    "uniform": {"bots_strategy": "uniform"},
    "bots": {"bots_strategy": "bots"},
    "bots-quotas": {"bots_strategy": "bots"},  # + bots_domain_weights from --weights
}
DEFAULT_SEEDS = [0, 1, 2]
QUICK_SEEDS, QUICK_STEPS = [0, 1], 4


def log(message: str) -> None:
    print(f"[domain_quotas] {message}", file=sys.stderr, flush=True)


def with_domains(dataset, split: int):
    """``dataset`` with a ``difficulty`` column: ``easy`` below ``split`` carries, ``hard`` from it on."""
    levels = np.asarray(dataset[LEVEL_COLUMN])
    return dataset.add_column(DOMAIN_COLUMN, np.where(levels < split, DOMAINS[0], DOMAINS[1]).tolist())


def accuracy_by_domain(by_level: dict[str, float], levels: np.ndarray, split: int) -> dict[str, float]:
    """Overall and per-domain held-out accuracy from the per-level accuracies and the held-out set's levels."""
    result = {"all": by_level["all"]}
    for name, members in zip(DOMAINS, (levels < split, levels >= split), strict=True):
        counts = {str(level): int(np.sum(levels == level)) for level in np.unique(levels[members])}
        result[name] = sum(by_level[level] * count for level, count in counts.items()) / int(members.sum())
    return result


def replayed_quotas(weights, sizes: np.ndarray, rounds: int, batch_size: int) -> list[list[int]]:
    """The quota of every domain in each of ``rounds`` rounds, replayed from the weights as the selector rotates them."""
    resolved = resolve_domain_weights(weights, DOMAINS, sizes)
    lag, history = [Fraction(0)] * len(DOMAINS), []
    for _ in range(rounds):
        quotas, _, lag = domain_quotas(batch_size, resolved, sizes, lag)
        history.append(quotas.tolist())
    return history


def quotas_held(shares: dict[str, np.ndarray], expected: list[list[int]], batch_size: int) -> bool:
    """Whether every round's logged shares (per domain, over rounds) are exactly the expected quotas (tasks per round)."""
    if any(len(values) != len(expected) for values in shares.values()):
        return False
    taken = np.stack([np.asarray(shares[d]) for d in DOMAINS], axis=1) * batch_size
    return bool(np.abs(taken - np.asarray(expected)).max() < 1e-9)  # shares are k / B in floating point


def mean_over_rounds(values: np.ndarray) -> float | None:
    """Mean over the rounds in which a domain had tasks (its ETR is NaN in the others); None if it never had any."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def tasks_per_round(args) -> int:
    """Tasks of one round (one generation batch): the batch the quotas split, and each logged share's denominator."""
    return args.generation_batch_size // args.num_generations


def train_one(example, setup, options, name: str, seed: int) -> dict[str, Any]:
    settings = dict(RUNS[name], bots_domain_column=DOMAIN_COLUMN)
    if name == "bots-quotas":
        settings["bots_domain_weights"] = options.weights
    script_args, args, _, _ = run_arguments(example, options, name, seed, **settings)
    evaluation = HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, options.steps, setup.temperature)
    record = train_from_setup(
        setup, args, [example.get_reward_function(n) for n in script_args.reward_funcs], evaluation, 1
    )
    history = record["trainer"].state.log_history
    batch_size = tasks_per_round(args)

    def series(key: str) -> np.ndarray:
        return np.array([entry[key] for entry in history if key in entry], dtype=np.float64)

    shares = {domain: series(f"bots/domain/{domain}/share") for domain in DOMAINS}
    run = {
        "seed": seed,
        "shares": {domain: values.tolist() for domain, values in shares.items()},
        "share_mean": {domain: float(values.mean()) for domain, values in shares.items()},
        "etr": float(np.mean(record["etr"])),
        "etr_by_domain": {d: mean_over_rounds(series(f"bots/domain/{d}/effective_task_ratio")) for d in DOMAINS},
        "final_accuracy": accuracy_by_domain(
            {"all": record["accuracy"][-1], **record["accuracy_by_level"][-1]}, evaluation.levels, options.split
        ),
    }
    if name == "bots-quotas":
        sizes = np.array([np.sum(np.asarray(setup.train_dataset[DOMAIN_COLUMN]) == d) for d in DOMAINS])
        expected = replayed_quotas(options.weights, sizes, len(shares[DOMAINS[0]]), batch_size)
        run["quotas_held_every_round"] = quotas_held(shares, expected, batch_size)
        run["rounds"] = len(expected)
    return run


def _interval_of_known(values: list[float | None]) -> dict[str, float | None] | None:
    known = [value for value in values if value is not None]
    return mean_interval(known) if known else None


def summarise(runs: list[dict]) -> dict[str, Any]:
    summary = {
        "share": {d: mean_interval([run["share_mean"][d] for run in runs]) for d in DOMAINS},
        "etr": mean_interval([run["etr"] for run in runs]),
        "etr_by_domain": {d: _interval_of_known([run["etr_by_domain"][d] for run in runs]) for d in DOMAINS},
        "final_accuracy": {k: mean_interval([run["final_accuracy"][k] for run in runs]) for k in ("all", *DOMAINS)},
    }
    if "quotas_held_every_round" in runs[0]:
        summary["quotas_held_every_round"] = all(run["quotas_held_every_round"] for run in runs)
    return summary


def run_benchmark(options) -> dict[str, Any]:
    started = time.perf_counter()
    setup = build_offline_setup(options.demo_args, options.training_args)
    setup.train_dataset = with_domains(setup.train_dataset, options.split)
    warm_start = AutoModelForCausalLM.from_pretrained(setup.model_path)
    check_start(setup, options.demo_args, warm_start)
    evaluation = HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, options.steps, setup.temperature)
    start_accuracy = accuracy_by_domain(evaluation.evaluate(warm_start), evaluation.levels, options.split)
    pool = np.asarray(setup.train_dataset[DOMAIN_COLUMN])
    runs: dict[str, list[dict]] = {name: [] for name in RUNS}
    for seed in options.seeds:  # seed-major, as in grpo_ab: a drift of the machine's load touches every run alike
        for name in RUNS:
            run = train_one(options.example, setup, options, name, seed)
            runs[name].append(run)
            shares = ", ".join(f"{d} {run['share_mean'][d]:.3f}" for d in DOMAINS)
            log(
                f"{name}, seed {seed}: mean shares {shares}; ETR {run['etr']:.3f}; held-out "
                f"{start_accuracy['all']:.3f} -> {run['final_accuracy']['all']:.3f}; "
                f"{(time.perf_counter() - started) / 60:.1f} min so far"
            )
    return {
        "config": {
            "seeds": options.seeds,
            "steps": options.steps,
            "split": options.split,
            "weights": options.weights,
            "pool_share": {d: float(np.mean(pool == d)) for d in DOMAINS},
            "tasks_per_step": tasks_per_round(options.training_args),
            "overrides": options.overrides,
        },
        "start_accuracy": start_accuracy,
        "summary": {name: summarise(runs[name]) for name in RUNS},
        "wall_seconds": time.perf_counter() - started,
        "runs": runs,
    }


def render(report: dict[str, Any]) -> str:
    def cell(value: dict | None) -> str:
        if value is None:
            return "-"
        low = "" if value["low"] is None else f" [{value['low']:.3f}, {value['high']:.3f}]"
        return f"{value['mean']:.3f}{low}"

    lines = [
        f"pool share: {report['config']['pool_share']}; {len(report['config']['seeds'])} seeds, mean [95% interval]",
        "| run | " + " | ".join(f"share {d}" for d in DOMAINS) + " | ETR | "
        + " | ".join(f"ETR {d}" for d in DOMAINS) + " | held-out | " + " | ".join(f"held-out {d}" for d in DOMAINS) + " |",
        "|---" * (4 + 2 * len(DOMAINS) + 1) + "|",
    ]  # fmt: skip
    for name, summary in report["summary"].items():
        cells = (
            [summary["share"][d] for d in DOMAINS] + [summary["etr"]] + [summary["etr_by_domain"][d] for d in DOMAINS]
        )
        cells += [summary["final_accuracy"][k] for k in ("all", *DOMAINS)]
        lines.append(f"| {name} | " + " | ".join(cell(value) for value in cells) + " |")
    held = report["summary"]["bots-quotas"]["quotas_held_every_round"]
    lines.append(f"bots-quotas: the logged shares equal the quotas in every round of every seed: {held}")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, help=f"Seeds, three runs each (default {DEFAULT_SEEDS}).")
    parser.add_argument("--steps", type=int, help="GRPO steps per run (default: the demo's max_steps).")
    parser.add_argument("--split", type=int, help="Carries from which a task is 'hard' (default: half the digits).")
    parser.add_argument(
        "--weights", default="uniform", help="bots_domain_weights of bots-quotas: uniform, proportional or JSON."
    )
    parser.add_argument("--workdir", default="runs/domain_quotas", help="Setup cache and run folders.")
    parser.add_argument("--output", help="Write the JSON report here as well as to stdout.")
    parser.add_argument("--quick", action="store_true", help="A tiny world, 2 seeds and 4 steps: a smoke run.")
    options, overrides = parser.parse_known_args(argv)
    if options.quick:
        overrides = [*QUICK_DEMO, *overrides]
        options.seeds = options.seeds or QUICK_SEEDS
        options.steps = options.steps if options.steps is not None else QUICK_STEPS
    options.seeds = options.seeds or DEFAULT_SEEDS
    if len(set(options.seeds)) != len(options.seeds) or min(options.seeds) < 0:
        parser.error(f"--seeds must be distinct non-negative integers, got {options.seeds}")
    if options.weights not in ("uniform", "proportional"):
        try:
            options.weights = json.loads(options.weights)
        except json.JSONDecodeError as error:
            parser.error(f"--weights must be uniform, proportional or a JSON object such as "
                         f'\'{{"easy": 1, "hard": 3}}\', got {options.weights!r} ({error})')  # fmt: skip
    training_args, demo_args = attach_demo(options, overrides)
    options.steps = options.steps if options.steps is not None else training_args.max_steps
    options.split = options.split if options.split is not None else (demo_args.demo_digits + 1) // 2
    if not 1 <= options.split <= demo_args.demo_digits:
        parser.error(f"--split must lie in [1, {demo_args.demo_digits}] (demo_digits), got {options.split}")
    if options.steps < 1:
        parser.error(f"--steps must be >= 1, got {options.steps}")
    # The shares are read from the log, a line per optimizer step: a line must not average several rounds.
    micro_steps_per_round = training_args.steps_per_generation * training_args.num_iterations
    if micro_steps_per_round < training_args.gradient_accumulation_steps:
        parser.error(
            "the shares are read per round from a log line per optimizer step, so the run needs one generation batch "
            f"per optimizer step at most: steps_per_generation ({training_args.steps_per_generation}) x num_iterations "
            f"({training_args.num_iterations}) must be >= gradient_accumulation_steps "
            f"({training_args.gradient_accumulation_steps})"
        )
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries only the JSON
        report = run_benchmark(options)
    print_report(report, options.output)
    print(f"\n{render(report)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
