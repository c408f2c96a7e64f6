"""Robustness of the offline demonstration's warm start: the setup built with several seeds and torch thread counts.

The warm start trains until a measured start criterion holds (``bots_demo.warm_start``), so where it stops depends on the
machine's floating-point paths; different thread counts change the order of the reductions and stand in for different
machines. Each build runs in a fresh Python process (``torch.set_num_threads`` and ``OMP_NUM_THREADS`` set before any
work, so the thread count takes effect cleanly) and records:

* ``start_step``, ``weak_step``, ``strong_step``: where the warm start stopped and the two reference checkpoints;
* ``criterion_history``: the start criterion (always / never / mixed shares on the pool) at every check;
* ``pool``: the same shares measured on the whole task pool with ``check_start``'s measurement, and
  ``pool_criterion_failures`` (empty when the criterion holds there too, as the demonstration requires);
* ``weak_mean`` and ``strong_mean``: the mean reference pass rates over the pool;
* ``build_seconds`` (the setup's own record) and ``torch_threads`` (what the build ran with).

A build that never reaches the criterion is recorded with its ``error``. ``summary`` gives the min and max of every
number over the builds that finished. Usage::

    HF_HUB_OFFLINE=1 python benchmarks/warm_start.py --seeds 0 1 2 --threads 1 2 --output warm_start.json
    HF_HUB_OFFLINE=1 python benchmarks/warm_start.py --quick                  # a tiny setup, two builds
    HF_HUB_OFFLINE=1 python benchmarks/warm_start.py --demo_digits 6 ...      # any demo_* or BOTSConfig flag

Flags the script does not define go to the example's parser (``examples/train_bots.py``). JSON goes to stdout (or
``--output``), progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpo_ab import demo_arguments, load_example  # noqa: E402


# --quick: a smoke run, every phase of a build in seconds; the criterion holds at once (nothing needs to be learnt).
QUICK_DEMO = [
    "--demo_digits", "2", "--demo_num_tasks", "32", "--demo_num_eval", "20", "--demo_pool_level_weights", "2", "1",
    "1", "--demo_sft_examples", "160", "--demo_sft_batch_size", "16", "--demo_sft_max_steps", "20",
    "--demo_check_every", "10", "--demo_criterion_margin", "0", "--demo_min_always_solved", "0",
    "--demo_min_never_solved", "0", "--demo_max_mixed", "1", "--demo_reference_samples", "2",
    "--demo_hidden_size", "16", "--demo_num_layers", "1",
]  # fmt: skip
SUMMARISED = ("start_step", "weak_step", "strong_step", "build_seconds", "weak_mean", "strong_mean")
SHARES = ("always", "mixed", "never")


def build_one(seed: int, threads: int, folder: Path, overrides: list[str]) -> dict[str, Any]:
    """Build the setup once in this process (a child of :func:`run_benchmark`) and measure it."""
    import torch

    from bots_demo.measure import check_start, criterion_failures, start_shape
    from bots_demo.offline_setup import build_offline_setup

    torch.set_num_threads(threads)
    example = load_example()
    _, training_args, _, demo_args = demo_arguments(
        example, overrides, output_dir=folder, seed=seed, demo_rebuild=True, report_to="none", disable_tqdm=True
    )
    record: dict[str, Any] = {"seed": seed, "threads": threads}
    try:
        setup = build_offline_setup(demo_args, training_args)
    except RuntimeError as error:  # the warm start did not reach the criterion within demo_sft_max_steps
        return {**record, "error": str(error)}
    build = setup.manifest["build"]
    # check_start's measurement of the pool, with thresholds that always pass, so that failing shares are recorded too.
    permissive = dataclasses.replace(
        demo_args, demo_min_always_solved=0.0, demo_min_never_solved=0.0, demo_max_mixed=1.0
    )
    pool = start_shape(check_start(setup, permissive))
    return {
        **record,
        "torch_threads": build["torch_threads"],
        **{name: build[name] for name in ("start_step", "weak_step", "strong_step", "criterion_history")},
        "pool": {name: round(pool[name], 4) for name in SHARES},
        "pool_criterion_failures": criterion_failures(pool, demo_args),
        "weak_mean": float(np.mean(setup.train_dataset["weak_pass_rate"])),
        "strong_mean": float(np.mean(setup.train_dataset["strong_pass_rate"])),
        "build_seconds": build["seconds"],
    }


def summarise(builds: list[dict[str, Any]]) -> dict[str, Any]:
    """Min and max of every measured number over the builds that finished."""
    done = [build for build in builds if "error" not in build]
    summary: dict[str, Any] = {
        "builds": len(builds),
        "failed_builds": len(builds) - len(done),
        "pool_criterion_met": sum(not build["pool_criterion_failures"] for build in done),
    }
    values = {name: [build[name] for build in done] for name in SUMMARISED}
    values.update({f"pool_{name}": [build["pool"][name] for build in done] for name in SHARES})
    for name, series in values.items():
        summary[name] = {"min": min(series), "max": max(series)} if series else None
    return summary


def run_benchmark(options: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    builds = []
    for seed in options.seeds:
        for threads in options.threads:
            folder = Path(options.workdir) / f"seed{seed}-threads{threads}"
            print(f"[warm_start] seed {seed}, {threads} thread(s): building in {folder}", file=sys.stderr, flush=True)
            result = folder / "build.json"
            result.unlink(missing_ok=True)
            command = [sys.executable, os.path.abspath(__file__), "--child", str(seed), str(threads), str(folder)]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            # The child's own output (the warm start's log) goes to stderr: stdout carries only the JSON.
            done = subprocess.run([*command, *overrides], env=env, stdout=sys.stderr.fileno(), check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"The build for seed {seed} with {threads} thread(s) failed (exit {done.returncode})."
                )
            build = json.loads(result.read_text())
            builds.append(build)
            status = build.get("error") or (
                f"stopped at step {build['start_step']}, pool {build['pool']}, {build['build_seconds']} s"
            )
            print(f"[warm_start] seed {seed}, {threads} thread(s): {status}", file=sys.stderr, flush=True)
    return {
        "config": {
            "seeds": options.seeds,
            "threads": options.threads,
            "quick": options.quick,
            "overrides": overrides,
        },
        "summary": summarise(builds),
        "builds": builds,
    }


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags (any demo_* or BOTSConfig option of examples/train_bots.py) change the setup's settings.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Build seeds (default 0 1 2).")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch thread counts, each with every seed (default 1 2)."
    )
    parser.add_argument("--workdir", default="runs/warm_start", help="One folder per build.")
    parser.add_argument("--output", help="Write the JSON report here as well as to stdout.")
    parser.add_argument("--quick", action="store_true", help="A tiny setup (a smoke run), seed 0, 1 and 2 threads.")
    # Internal: one build in this process (what run_benchmark starts for every seed and thread count).
    parser.add_argument("--child", nargs=3, metavar=("SEED", "THREADS", "FOLDER"), help=argparse.SUPPRESS)
    options, overrides = parser.parse_known_args(argv)
    if options.quick:
        overrides = [*QUICK_DEMO, *overrides]
    options.seeds = options.seeds or ([0] if options.quick else [0, 1, 2])
    options.threads = options.threads or [1, 2]
    if any(threads < 1 for threads in options.threads):
        parser.error(f"--threads must all be >= 1, got {options.threads}")
    if len(set(options.seeds)) != len(options.seeds) or len(set(options.threads)) != len(options.threads):
        parser.error(f"--seeds and --threads must not repeat a value, got {options.seeds} and {options.threads}")
    return options, overrides


def main(argv: list[str] | None = None) -> int:
    options, overrides = parse(argv)
    if options.child:
        seed, threads, folder = int(options.child[0]), int(options.child[1]), Path(options.child[2])
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs
            build = build_one(seed, threads, folder, overrides)
        (folder / "build.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "build.json").write_text(json.dumps(build, indent=1) + "\n")
        return 0
    report = run_benchmark(options, overrides)
    text = json.dumps(report, indent=2, allow_nan=False)
    if options.output:
        Path(options.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
