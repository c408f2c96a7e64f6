"""Selection overhead of BOTSSelector: one full round (update with B results, then select B) for large task pools.

For every N and B, the selector first runs a few warm-up rounds on simulated rollouts (so the posterior has the
shapes of a real run: many tasks whose implicit evidence pins a shape at 1), then times rounds. In the same run it
times a straightforward reference of the same algorithm: fresh dense count arrays every round, the posterior update
in float64, ``numpy.random.Generator.beta`` over all tasks and a full ``torch.topk``. Rollout outcomes are simulated
outside the timed region. Both use strategy "bots" with reference pass rates, Thompson draws and temperature 0.

    python benchmarks/selection_overhead.py [--quick] [--output FILE]

Prints JSON to stdout (progress goes to stderr): per (N, B) the median and min round time of both and the ratio
reference / ours (of the medians), persistent state bytes per task (the arrays of ``state_dict()``), save + load time
and the peak resident memory of the process.

Multi-domain pools: in the same run, a round of the single pool and a round of the same pool split into the six GURU
domains (GURU's domain proportions, ``domain_weights="proportional"``: quotas every round, per-domain diagnostics
every update), side by side at N = 1e6, B = 256 (``--quick``: N = 1e4, B = 64), with the labels in two layouts: at
random (a shuffled mixture) and each domain a contiguous range of tasks (GURU's files concatenated). The three are
timed in alternation, twice each, and each keeps its better median, so a load spike on a shared machine does not land
on one side only.
Then uniform quotas over 6, 32 and 256 equal domains (``--quick``: 2 and 8) against the single pool: one thinned
selection per domain, so the fixed cost of a round grows with the number of domains.

The embedding estimator (no reference columns, float16 embeddings of d = 64 and 128 dimensions) against the single
pool at N = 1e6, B = 256 (``--quick``: N = 1e4, B = 64, d = 16), timed in alternation, with its memory per task and the
bytes it adds to the saved state.

The active pool (tasks from a stream, ``--pool-only`` for this part alone): a pool of 1e5 slots (``--pool-size``;
``--quick``: 1e4, B = 64) over a generated ``IterableDataset`` of prompt-like rows, B = 256, G = 8, with true pass
rates ~ Beta(0.5, 0.5) and successes ~ Binomial(G, p). Each round: select, update, the retirement rule over every slot
(``tasks_to_retire``, ``--pool-retire-threshold``, BOTSConfig's default), the refill of the retired slots from the
stream (``ActivePool.replace``) and ``BOTSSelector.replace_tasks``; the percentiles of each part and of the round, the
tasks retired per round, and the ratio of the round to a plain update + select round of a fixed pool of the same size
(the pool's first fill), the two timed in alternation, twice each, each keeping its better run (by the median).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from trl_bots import BOTSSelector
from trl_bots.implicit import InterpolationEstimator


GENERATIONS = 8  # rollouts per task G
STREAM_WITHOUT_END = 10**12  # the active pool's generated stream: never read to its end
FULL = {
    "sizes": [10**4, 10**5, 10**6, 10**7],
    "batches": [256, 1024],
    "save_load_sizes": [10**6, 10**7],
    "domains": (10**6, 256),
    "domain_counts": [6, 32, 256],
    "embedding": (10**6, 256, [64, 128]),
    "pool": (10**5, 256),
}
QUICK = {
    "sizes": [10**3, 10**4],
    "batches": [16, 64],
    "save_load_sizes": [10**4],
    "domains": (10**4, 64),
    "domain_counts": [2, 8],
    "embedding": (10**4, 64, [16]),
    "pool": (10**4, 64),
}
# GURU's six domains and their share of its 92k tasks (math 54.4k, code 18.1k, science 3.6k, logic 6.3k, simulation
# 3.7k, tabular 6.1k).
GURU_DOMAINS = {"math": 54.4, "code": 18.1, "science": 3.6, "logic": 6.3, "simulation": 3.7, "tabular": 6.1}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_task_pool(num_tasks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference pass rates ``[N, 2]`` (weak <= strong) and the true pass rates.

    As in real data, some tasks are solved by neither reference model (15%) or by both (10%): the plug-in predicts
    exactly 0 or 1 for them, which leaves one posterior shape at exactly 1.
    """
    rng = np.random.default_rng(seed)
    weak = np.clip(rng.beta(0.5, 1.5, num_tasks) - 0.1, 0.0, 1.0)
    strong = np.clip(weak + rng.beta(1.0, 2.0, num_tasks) + 0.05, 0.0, 1.0)
    kind = rng.random(num_tasks)
    weak[kind < 0.15], strong[kind < 0.15] = 0.0, 0.0
    weak[kind > 0.9], strong[kind > 0.9] = 1.0, 1.0
    true = weak + 0.6 * (strong - weak)
    return np.stack([weak, strong], axis=1), true


class ReferenceRound:
    """The same algorithm written plainly: dense counts, float64 update, ``Generator.beta`` and ``torch.topk``."""

    def __init__(self, reference: np.ndarray, target: float = 0.5, forgetting: float = 0.1, rho: float = 0.1):
        self.estimator = InterpolationEstimator(reference)
        self.target, self.forgetting, self.rho = target, forgetting, rho
        self.alpha = np.ones(len(reference))
        self.beta = np.ones(len(reference))
        self.rng = np.random.default_rng(0)

    def update(self, indices: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        n = self.alpha.size
        explicit_s, explicit_f = np.zeros(n), np.zeros(n)
        explicit_s[indices], explicit_f[indices] = successes, trials - successes
        self.estimator.fit(indices, successes / trials)
        q = self.estimator.predict().astype(np.float64)
        pseudo_s, pseudo_f = GENERATIONS * q, GENERATIONS * (1 - q)
        pseudo_s[indices], pseudo_f[indices] = explicit_s[indices], explicit_f[indices]
        keep, lam, rho = 1 - self.forgetting, self.forgetting, self.rho
        self.alpha = keep * self.alpha + lam + (1 - rho) * explicit_s + rho * pseudo_s
        self.beta = keep * self.beta + lam + (1 - rho) * explicit_f + rho * pseudo_f
        self.mean = float(np.mean(self.alpha / (self.alpha + self.beta)))  # the diagnostic BOTSSelector reports

    def select(self, batch_size: int) -> np.ndarray:
        draws = self.rng.beta(self.alpha, self.beta)
        scores = torch.from_numpy(-np.abs(draws - self.target))
        return torch.topk(scores, batch_size).indices.numpy()


def time_rounds(runner, true_rates: np.ndarray, batch_size: int, warmup: int, budget_s: float, max_rounds: int):
    """Run ``warmup`` untimed rounds, then timed rounds until ``budget_s`` or ``max_rounds``; return the times."""
    sim = np.random.default_rng(1)
    indices = runner.select(batch_size)
    times: list[float] = []
    spent = 0.0
    for step in range(warmup + max_rounds):
        trials = np.full(batch_size, GENERATIONS, dtype=np.float64)
        successes = sim.binomial(GENERATIONS, true_rates[indices]).astype(np.float64)
        start = time.perf_counter()
        runner.update(indices, successes, trials)
        indices = runner.select(batch_size)
        elapsed = time.perf_counter() - start
        if step >= warmup:
            times.append(elapsed)
            spent += elapsed
            if spent > budget_s and len(times) >= 3:
                break
    return times


def summary(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "min_ms": float(ms.min()),
        "p90_ms": float(np.percentile(ms, 90)),
        "max_ms": float(ms.max()),
        "rounds": len(times),
    }


def state_bytes_per_task(selector: BOTSSelector) -> float:
    arrays = [v for v in selector.state_dict().values() if isinstance(v, np.ndarray)]
    return sum(a.nbytes for a in arrays) / selector.num_tasks


def save_load_seconds(selector: BOTSSelector, reference: np.ndarray, repeats: int = 3) -> float:
    """Best of ``repeats`` of save to a file and load it into a fresh selector."""
    fresh = BOTSSelector(selector.num_tasks, reference_pass_rates=reference)
    best = math.inf
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "selector")
        for _ in range(repeats):
            start = time.perf_counter()
            selector.save(path)
            fresh.load(path)
            best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def domain_labels(num_tasks: int, seed: int = 2) -> np.ndarray:
    """GURU's domains in GURU's proportions, in random order (no domain is a contiguous range)."""
    shares = np.array(list(GURU_DOMAINS.values()))
    return np.random.default_rng(seed).choice(list(GURU_DOMAINS), size=num_tasks, p=shares / shares.sum())


def alternating_medians(
    settings: dict[str, dict], true_rates: np.ndarray, batch_size: int, timing: tuple
) -> dict[str, float]:
    """Median round time (ms) of a selector per setting (its BOTSSelector arguments), the settings timed in
    alternation, twice each, each keeping its better median: a load spike does not land on one side only."""
    medians: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(2):
        for name, arguments in settings.items():
            selector = BOTSSelector(len(true_rates), seed=0, **arguments)
            medians[name].append(statistics.median(time_rounds(selector, true_rates, batch_size, *timing)))
    return {name: min(values) * 1e3 for name, values in medians.items()}


def compare_domains(num_tasks: int, batch_size: int, warmup: int, budget_s: float, max_rounds: int) -> dict:
    """Round times of the single pool and of the six-domain pool with proportional quotas, its labels at random and
    in contiguous ranges, timed in alternation."""
    reference, true_rates = make_task_pool(num_tasks)
    labels = domain_labels(num_tasks)
    settings = {
        "single_pool": {"reference_pass_rates": reference},
        "six_domains": {"reference_pass_rates": reference, "domains": labels, "domain_weights": "proportional"},
        "six_contiguous_domains": {
            "reference_pass_rates": reference,
            "domains": np.sort(labels),
            "domain_weights": "proportional",
        },
    }
    timing = (warmup, budget_s, max_rounds)
    single, domains, contiguous = alternating_medians(settings, true_rates, batch_size, timing).values()
    row = {
        "num_tasks": num_tasks,
        "batch_size": batch_size,
        "num_domains": len(GURU_DOMAINS),
        "single_pool_median_ms": single,
        "six_domains_median_ms": domains,
        "ratio": domains / single,
        "six_contiguous_domains_median_ms": contiguous,
        "contiguous_ratio": contiguous / single,
    }
    log(
        f"N={num_tasks:>9} B={batch_size:>5}: single pool {single:.2f} ms, six domains {domains:.2f} ms at random "
        f"({row['ratio']:.2f}x), {contiguous:.2f} ms contiguous ({row['contiguous_ratio']:.2f}x)"
    )
    return row


def compare_embedding(
    num_tasks: int, batch_size: int, dims: list[int], warmup: int, budget_s: float, max_rounds: int
) -> dict:
    """Round times of the single pool (interpolation plug-in) and of the embedding estimator at each of ``dims``
    (float16 embeddings that carry the tasks' pass rates plus noise, no reference columns), timed in alternation;
    the estimator's memory per task (its float32 features and prediction cache) and the bytes it adds to the state."""
    reference, true_rates = make_task_pool(num_tasks)
    rng = np.random.default_rng(4)
    rates = np.clip(true_rates, 1e-3, 1 - 1e-3)  # the pool has rates of exactly 0 and 1
    logits = np.log(rates / (1 - rates))
    settings: dict[str, dict] = {"single_pool": {"reference_pass_rates": reference}}
    for dim in dims:  # no reference pass rates: a plain dataset's setting
        embeddings = rng.normal(size=(num_tasks, dim)).astype(np.float16)
        embeddings[:, 0] += logits.astype(np.float16)
        settings[f"embedding_d{dim}"] = {"embeddings": embeddings}
    timed = alternating_medians(settings, true_rates, batch_size, (warmup, budget_s, max_rounds))
    rows = {"num_tasks": num_tasks, "batch_size": batch_size, "single_pool_median_ms": timed["single_pool"]}
    for dim in dims:
        selector = BOTSSelector(num_tasks, embeddings=settings[f"embedding_d{dim}"]["embeddings"], seed=0)
        estimator = selector.estimator
        rows[f"d{dim}"] = {
            "median_ms": timed[f"embedding_d{dim}"],
            "ratio": timed[f"embedding_d{dim}"] / timed["single_pool"],
            "memory_bytes_per_task": (estimator.features.nbytes + estimator.cache.nbytes) / num_tasks,
            "added_state_bytes_per_task": sum(
                value.nbytes for value in estimator.state_dict().values() if isinstance(value, np.ndarray)
            )
            / num_tasks,
        }
        log(
            f"N={num_tasks:>9} B={batch_size:>5}: embedding estimator d={dim} {timed[f'embedding_d{dim}']:.2f} ms, "
            f"{rows[f'd{dim}']['ratio']:.2f}x the single pool"
        )
    return rows


def domain_count_sweep(
    num_tasks: int, batch_size: int, counts: list[int], warmup: int, budget_s: float, max_rounds: int
) -> list[dict]:
    """Round time with uniform quotas over ``counts`` equal domains (labels at random), against the single pool.

    Each domain with a quota is one thinned selection of its own, so the round's fixed cost grows with the number
    of domains; the metrics alone (labels without weights) cost about the same at any count.
    """
    reference, true_rates = make_task_pool(num_tasks)
    single = BOTSSelector(num_tasks, reference_pass_rates=reference, seed=0)
    single_ms = statistics.median(time_rounds(single, true_rates, batch_size, warmup, budget_s, max_rounds)) * 1e3
    rows = []
    for count in counts:
        labels = np.random.default_rng(3).integers(0, count, num_tasks).astype(str)
        selector = BOTSSelector(
            num_tasks, reference_pass_rates=reference, seed=0, domains=labels, domain_weights="uniform"
        )
        ms = statistics.median(time_rounds(selector, true_rates, batch_size, warmup, budget_s, max_rounds)) * 1e3
        rows.append(
            {"num_domains": count, "median_ms": ms, "single_pool_median_ms": single_ms, "ratio": ms / single_ms}
        )
        log(
            f"N={num_tasks:>9} B={batch_size:>5}: {count:>3} domains with uniform quotas {ms:.2f} ms, {ms / single_ms:.2f}x"
        )
    return rows


def time_pool_rounds(pooled, batch_size: int, warmup: int, budget_s: float, max_rounds: int) -> list:
    """Run ``warmup`` untimed rounds of an active pool (``pool_rounds.PoolRounds``), then rounds until ``budget_s``
    of timed parts or ``max_rounds``; return their ``RoundTimes``."""
    for _ in range(warmup):
        pooled.round(batch_size)
    rounds, spent = [], 0.0
    while len(rounds) < max_rounds and (spent <= budget_s or len(rounds) < 3):
        rounds.append(pooled.round(batch_size))
        spent += rounds[-1].total
    return rounds


def compare_pool(
    pool_size: int, batch_size: int, retire_threshold: float | None, warmup: int, budget_s: float, max_rounds: int
) -> dict:
    """Round times of an active pool (select, update, retire, refill, replace_tasks) and of a fixed pool of the same
    size (its first fill: update + select), timed in alternation, twice each, each keeping its better run."""
    # Imported here: pool_rounds loads trl (seconds, and memory the other parts' peak RSS should not count).
    from pool_rounds import DEFAULT_RETIRE_THRESHOLD, PARTS, PoolRounds

    threshold = DEFAULT_RETIRE_THRESHOLD if retire_threshold is None else retire_threshold
    pooled_runs, fixed_runs = [], []
    for _ in range(2):
        pooled = PoolRounds(pool_size, STREAM_WITHOUT_END, GENERATIONS, retire_threshold=threshold)
        reference, true_rates = pooled.initial_pool()
        rounds = time_pool_rounds(pooled, batch_size, warmup, budget_s, max_rounds)
        pooled_runs.append((pooled, rounds))
        fixed = BOTSSelector(pool_size, reference_pass_rates=reference, seed=0)
        fixed_runs.append(time_rounds(fixed, true_rates, batch_size, warmup, budget_s, max_rounds))
    pooled, rounds = min(pooled_runs, key=lambda run: statistics.median(r.total for r in run[1]))
    fixed = min(fixed_runs, key=statistics.median)
    row = {
        "pool_size": pool_size,
        "batch_size": batch_size,
        "num_generations": GENERATIONS,
        "retire_threshold": threshold,
        "max_visits": pooled.max_visits,
        "round": summary([r.total for r in rounds]),
        "parts": {part: summary([r.parts[part] for r in rounds]) for part in PARTS},
        "fixed_pool_round": summary(fixed),
        "retired_per_round": statistics.mean(r.retired for r in rounds),
        "retired": pooled.pool.retired,  # over the warm-up and timed rounds
        "rounds": warmup + len(rounds),
        "stream_position": pooled.pool.stream.position,
    }
    row["ratio"] = row["round"]["median_ms"] / row["fixed_pool_round"]["median_ms"]
    parts = ", ".join(f"{part} {row['parts'][part]['median_ms']:.2f}" for part in PARTS)
    log(
        f"pool={pool_size:>9} B={batch_size:>5}: active pool round {row['round']['median_ms']:.2f} ms ({parts}), "
        f"fixed pool {row['fixed_pool_round']['median_ms']:.2f} ms, {row['ratio']:.2f}x; "
        f"{row['retired_per_round']:.2f} retired per round"
    )
    return row


def check_targets(results: list[dict], save_load: list[dict], domains: dict, embedding: dict) -> dict:
    """The targets of the selection-overhead work item: each measured value, its limit and whether it is met."""
    by_size = {(row["num_tasks"], row["batch_size"]): row for row in results}
    big, mid = by_size[(10**6, 256)], by_size[(10**5, 256)]
    save_load_1e6 = next(entry["seconds"] for entry in save_load if entry["num_tasks"] == 10**6)
    targets = [
        ("round_1e6_b256_median_ms", big["ours"]["median_ms"], "<=", 40),
        ("speedup_1e6_b256", big["speedup"], ">=", 2),
        ("round_1e5_b256_median_ms", mid["ours"]["median_ms"], "<=", 5),
        ("state_bytes_per_task", big["state_bytes_per_task"], "<=", 40),
        ("save_load_1e6_s", save_load_1e6, "<", 1),
        ("six_domains_vs_single_pool_1e6_b256", domains["ratio"], "<=", 1.5),
        ("embedding_d128_vs_single_pool_1e6_b256", embedding["d128"]["ratio"], "<=", 4),
    ]
    compare = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}
    return {
        name: {"value": value, "limit": f"{op} {limit}", "met": compare[op](value, limit)}
        for name, value, op, limit in targets
    }


def pool_timing(quick: bool) -> tuple[int, float, int]:
    """Warm-up rounds, budget and most rounds of the active pool: its retirement rate settles over tens of rounds
    (the plug-in's evidence builds up at the forgetting rate), and its parts' percentiles need more rounds."""
    return (40, 0.5, 20) if quick else (30, 3.0, 200)


def run(config: dict, quick: bool) -> dict:
    warmup, budget_s, max_rounds = (2, 0.2, 5) if quick else (10, 3.0, 40)
    results, save_load = [], []
    for num_tasks in config["sizes"]:
        reference, true_rates = make_task_pool(num_tasks)
        for batch_size in config["batches"]:
            selector = BOTSSelector(num_tasks, reference_pass_rates=reference, seed=0)
            ours = time_rounds(selector, true_rates, batch_size, warmup, budget_s, max_rounds)
            # The reference's cost hardly depends on the posterior's shape: fewer warm-up rounds spare minutes at 1e7.
            plain = time_rounds(
                ReferenceRound(reference), true_rates, batch_size, min(warmup, 3), budget_s, max_rounds
            )
            row = {
                "num_tasks": num_tasks,
                "batch_size": batch_size,
                "ours": summary(ours),
                "reference": summary(plain),
                "speedup": statistics.median(plain) / statistics.median(ours),
                "state_bytes_per_task": state_bytes_per_task(selector),
                "peak_rss_mib": peak_rss_mib(),
            }
            results.append(row)
            log(
                f"N={num_tasks:>9} B={batch_size:>5}: ours {row['ours']['median_ms']:8.2f} ms "
                f"(min {row['ours']['min_ms']:.2f}), reference {row['reference']['median_ms']:8.2f} ms, "
                f"speedup {row['speedup']:.2f}x"
            )
        if num_tasks in config["save_load_sizes"]:
            seconds = save_load_seconds(selector, reference)
            save_load.append({"num_tasks": num_tasks, "seconds": seconds})
            log(f"N={num_tasks:>9} save + load {seconds:.3f} s")
    domains = compare_domains(*config["domains"], warmup, budget_s, max_rounds)
    sweep = domain_count_sweep(*config["domains"], config["domain_counts"], warmup, budget_s, max_rounds)
    embedding = compare_embedding(*config["embedding"], warmup, budget_s, max_rounds)
    pool = compare_pool(*config["pool"], *pool_timing(quick))
    return {
        "targets": check_targets(results, save_load, domains, embedding) if not quick else {},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "rounds": results,
        "save_load": save_load,
        "domains": domains,
        "domain_counts": sweep,
        "embedding": embedding,
        "pool": pool,
        "peak_rss_mib": peak_rss_mib(),
    }


def print_report(report: dict, output: str | None) -> None:
    """The JSON report to stdout, and to ``output`` if given."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        with open(output, "w") as handle:
            handle.write(text + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds (a smoke test)")
    parser.add_argument("--output", help="also write the JSON to this file")
    parser.add_argument(
        "--embedding-only", action="store_true", help="only the embedding estimator against the single pool (minutes)"
    )
    parser.add_argument("--pool-only", action="store_true", help="only the active pool against a fixed pool")
    parser.add_argument("--pool-size", type=int, help="the active pool's slots (default 1e5; --quick: 1e4)")
    parser.add_argument(
        "--pool-retire-threshold", type=float, help="the active pool's bots_retire_threshold (default: BOTSConfig's)"
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    pool_size, pool_batch = config["pool"]
    config = {**config, "pool": (args.pool_size or pool_size, pool_batch, args.pool_retire_threshold)}
    if args.embedding_only:
        warmup, budget_s, max_rounds = (2, 0.2, 5) if args.quick else (10, 3.0, 40)
        report = {"embedding": compare_embedding(*config["embedding"], warmup, budget_s, max_rounds)}
    elif args.pool_only:
        report = {"pool": compare_pool(*config["pool"], *pool_timing(args.quick))}
    else:
        report = run(config, args.quick)
    print_report(report, args.output)


if __name__ == "__main__":
    main()
