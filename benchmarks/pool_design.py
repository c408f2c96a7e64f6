"""The active pool's two settings, measured: retirement threshold and pool size, on a synthetic stream.

Every strategy runs the real :class:`trl_bots.BOTSSelector` and :func:`trl_bots.active_pool.tasks_to_retire` (the
trainer's own rule and calls, without a model): a stream of tasks, each with a fixed true pass rate drawn from a
difficulty ``mix``; every round selects B pool tasks, rolls each G times (binomial), credits the round, retires and
refills. ``hard``: 45% nearly never solved (Beta(0.5, 12)), 30% nearly always (Beta(12, 0.5)), 25% anywhere (as a small
model on a broad corpus: a stream read in order has an effective-task ratio of about 0.37 at G = 8); ``uniform``: pass
rates uniform on [0, 1] (0.78). Pass rates do not move with training, so the numbers rank the settings by how well
they find and keep mixed tasks; what training on a task again is worth is left to the GRPO A/B (``grpo_ab.py
--stream``).

Prints one JSON object: per mix, threshold and pool size (in rounds of B tasks), the effective-task ratio (mean over
rounds and seeds, with its range over seeds), the tasks read from the stream and the share of servings that were a
task's first. ``python benchmarks/pool_design.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from trl_bots.active_pool import tasks_to_retire
from trl_bots.selector import BOTSSelector


MIXES = ("hard", "uniform")


def stream_pass_rates(rng: np.random.Generator, size: int, mix: str) -> np.ndarray:
    """True pass rates of the next ``size`` tasks of the stream."""
    if mix == "uniform":
        return rng.random(size)
    kind = rng.choice(3, size=size, p=[0.45, 0.30, 0.25])
    return np.select([kind == 0, kind == 1], [rng.beta(0.5, 12, size), rng.beta(12, 0.5, size)], rng.random(size))


def run_pool(mix: str, threshold: float, pool_rounds: int, seed: int, batch: int, group: int, rounds: int) -> dict:
    """One run: the pool's effective-task ratio, tasks read, and first servings over all servings."""
    rng = np.random.default_rng(seed)
    size = pool_rounds * batch
    pass_rates = stream_pass_rates(rng, size, mix)
    served = np.zeros(size, dtype=bool)  # whether the slot's current task has been served
    selector = BOTSSelector(size, implicit_weight=0.0, seed=seed)
    mixed = first = 0
    read = size
    for _ in range(rounds):
        tasks = selector.select(batch)
        successes = rng.binomial(group, pass_rates[tasks]).astype(np.float64)
        selector.update(tasks, successes, np.full(batch, float(group)))
        mixed += int(np.sum((successes > 0) & (successes < group)))
        first += int(np.sum(~served[tasks]))
        served[tasks] = True
        retired = tasks_to_retire(selector.alpha, selector.beta, selector.prior, group, threshold)
        if retired.size:
            pass_rates[retired] = stream_pass_rates(rng, retired.size, mix)
            served[retired] = False
            selector.replace_tasks(retired)
            read += retired.size
    servings = rounds * batch
    return {"etr": mixed / servings, "tasks_read": read, "first_servings": first / servings}


def read_in_order_etr(mix: str, group: int) -> float:
    """The effective-task ratio of the stream served in order (as stock GRPO reads it), over 1e6 tasks."""
    pass_rates = stream_pass_rates(np.random.default_rng(0), 10**6, mix)
    return float(np.mean(1 - pass_rates**group - (1 - pass_rates) ** group))


def measure(options: argparse.Namespace) -> dict:
    results = []
    for mix in options.mixes:
        stream_etr = read_in_order_etr(mix, options.group)
        for threshold in options.thresholds:
            for pool_rounds in options.pool_rounds:
                runs = [
                    run_pool(mix, threshold, pool_rounds, seed, options.batch, options.group, options.rounds)
                    for seed in options.seeds
                ]
                etr = [run["etr"] for run in runs]
                results.append(
                    {
                        "mix": mix,
                        "stream_etr": stream_etr,
                        "threshold": threshold,
                        "pool_rounds": pool_rounds,
                        "etr": float(np.mean(etr)),
                        "etr_range": [min(etr), max(etr)],
                        "tasks_read": float(np.mean([run["tasks_read"] for run in runs])),
                        "first_servings": float(np.mean([run["first_servings"] for run in runs])),
                    }
                )
                print(f"[pool_design] {results[-1]}", file=sys.stderr, flush=True)
    return {"benchmark": "pool_design", "settings": vars(options), "results": results}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=MIXES)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.0, 0.5, 0.75, 0.9, 1.0])
    parser.add_argument("--pool-rounds", nargs="+", type=int, default=[4, 8, 16], help="Pool sizes, in rounds of B.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=32, help="B, tasks per round.")
    parser.add_argument("--group", type=int, default=8, help="G, rollouts per task.")
    parser.add_argument("--rounds", type=int, default=300)
    options = parser.parse_args(argv)
    if any(not 0 <= threshold <= 1 for threshold in options.thresholds) or min(options.pool_rounds) < 1:
        parser.error("--thresholds must lie in [0, 1] and --pool-rounds be positive")
    return options


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(measure(parse(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
