"""Memory of BOTS over a stream: the process's resident memory while an active pool reads a stream of 1e6 tasks.

An active pool holds O(pool size) tasks, whatever the stream's length. This runs the pool's bookkeeping with no model
(``pool_rounds.PoolRounds``: select, update with simulated rewards, retire, refill from the stream, replace_tasks)
over a generated ``IterableDataset`` of ``--stream-length`` prompt-like rows (default 1e6, up to 1e7), read once
(``bots_stream_end="stop"``: the run ends when the stream does), and samples the resident memory (VmRSS) every 1% of
the stream.

To read the whole stream in a few thousand rounds, the default strategy is ``uniform``, which retires every task it
serves (B tasks read per round). ``--strategy bots`` uses the retirement rule instead (``--retire-threshold``); at
BOTSConfig's default it retires a few tasks per round, so reading 1e6 tasks would take a very long time: give a high
threshold (e.g. 1.2, which retires most of the pool every round) or ``--max-rounds``.

    python benchmarks/stream_memory.py [--stream-length 1000000] [--pool-size 10000] [--batch-size 256]
        [--strategy uniform] [--tracemalloc] [--output FILE]

Prints JSON to stdout (progress goes to stderr): the resident memory before the pool is filled, at the start (pool
filled), at each 10% of the stream, at the end and its maximum; the slope of a least-squares line through the samples
from 10% of the stream on (bytes per 1e5 tasks read; the first 10% is left out because the allocator's pools and the
libraries' caches settle there) and through all of them; and, for scale, the bytes of one pooled row, which a process
that kept every row it read would add per task. ``--tracemalloc`` also traces the Python heap (its peak, and its size
at each 10%); it slows the rounds and adds its own memory, so the resident numbers of such a run are not the clean ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # pool_rounds beside this script, also when imported
from pool_rounds import DEFAULT_RETIRE_THRESHOLD, PoolRounds  # noqa: E402
from selection_overhead import print_report  # noqa: E402


GENERATIONS = 8  # rollouts per task G
MIB = 2**20
SAMPLES = 100  # resident memory is sampled every 1% of the stream
SETTLED = 0.1  # the share of the stream read before the slope's fit starts


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resident_bytes() -> int:
    """The process's resident memory now (VmRSS of /proc/self/status, Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("/proc/self/status has no VmRSS line: this benchmark reads resident memory the Linux way.")


def row_bytes(row: dict[str, Any]) -> int:
    """Bytes of a row's own Python objects: the dict and its values (the column names are shared by every row)."""
    return sys.getsizeof(row) + sum(sys.getsizeof(value) for value in row.values())


def slope_per_1e5(tasks_read: np.ndarray, memory: np.ndarray) -> float:
    """Bytes per 1e5 tasks read of the least-squares line through the samples."""
    return float(np.polyfit(tasks_read.astype(np.float64), memory.astype(np.float64), 1)[0] * 1e5)


def measure(
    stream_length: int,
    pool_size: int,
    batch_size: int,
    strategy: str,
    retire_threshold: float | None,
    max_rounds: int | None,
    trace: bool,
) -> dict:
    """Run the pool over the stream to its end (or ``max_rounds``), sampling resident memory every 1% of it."""
    before = resident_bytes()
    if trace:
        tracemalloc.start()
    threshold = DEFAULT_RETIRE_THRESHOLD if retire_threshold is None else retire_threshold
    pooled = PoolRounds(
        pool_size, stream_length, GENERATIONS, strategy=strategy, retire_threshold=threshold, restart=False
    )
    stream = pooled.pool.stream
    # Preallocated: the samples themselves must not grow with the stream.
    tasks_read = np.zeros(SAMPLES + 1, dtype=np.int64)
    rss = np.zeros(SAMPLES + 1, dtype=np.int64)
    heap = np.zeros(SAMPLES + 1, dtype=np.int64)
    taken, rounds = 0, 0

    def sample() -> None:
        nonlocal taken
        tasks_read[taken], rss[taken] = stream.position, resident_bytes()
        heap[taken] = tracemalloc.get_traced_memory()[0] if trace else 0
        taken += 1

    sample()  # the start: the pool filled, its selector built
    marks = [stream_length * k // SAMPLES for k in range(1, SAMPLES + 1)]
    next_mark = sum(mark <= stream.position for mark in marks)  # the pool's first fill may pass the first marks
    tenth = stream.position * 10 // stream_length  # progress: logged at each tenth of the stream
    start = time.perf_counter()
    while not pooled.exhausted and (max_rounds is None or rounds < max_rounds):
        pooled.round(batch_size)
        rounds += 1
        if next_mark < SAMPLES and stream.position >= marks[next_mark]:
            sample()
            while next_mark < SAMPLES and stream.position >= marks[next_mark]:
                next_mark += 1
        if stream.position * 10 // stream_length > tenth:
            tenth = stream.position * 10 // stream_length
            log(
                f"{stream.position:>10} tasks read ({rounds} rounds, {time.perf_counter() - start:.0f} s): "
                f"resident {resident_bytes() / MIB:.1f} MiB"
            )
    seconds = time.perf_counter() - start
    peak_heap = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    tasks_read, rss, heap = tasks_read[:taken], rss[:taken], heap[:taken]
    settled = tasks_read >= SETTLED * stream_length
    tenths = [
        int(np.flatnonzero(tasks_read >= stream_length * k // 10)[0])
        for k in range(1, 11)
        if tasks_read[-1] >= stream_length * k // 10
    ]
    one_row = row_bytes(pooled.pool.rows[0])
    report = {
        "stream_length": stream_length,
        "pool_size": pooled.pool.size,
        "batch_size": batch_size,
        "num_generations": GENERATIONS,
        "strategy": strategy,
        "retire_threshold": None if strategy == "uniform" else pooled.retire_threshold,
        "rounds": rounds,
        "retired": pooled.pool.retired,
        "tasks_read": stream.position,
        "seconds": seconds,
        "rss_before_pool_mib": before / MIB,
        "rss_start_mib": rss[0] / MIB,
        "rss_end_mib": rss[-1] / MIB,
        "rss_max_mib": rss.max() / MIB,
        "at_each_10_percent": [
            {"tasks_read": int(tasks_read[i]), "rss_mib": rss[i] / MIB}
            | ({"python_heap_mib": heap[i] / MIB} if trace else {})
            for i in tenths
        ],
        "slope_bytes_per_1e5_tasks": slope_per_1e5(tasks_read[settled], rss[settled]) if settled.sum() >= 2 else None,
        "slope_all_bytes_per_1e5_tasks": slope_per_1e5(tasks_read, rss) if taken >= 2 else None,
        "row_bytes": one_row,
        "kept_rows_bytes_per_1e5_tasks": one_row * 1e5,  # what keeping every row read would add, at the least
        "samples": {"tasks_read": tasks_read.tolist(), "rss_mib": (rss / MIB).tolist()},
        "tracemalloc": None
        if not trace
        else {
            "peak_mib": peak_heap / MIB,
            "slope_bytes_per_1e5_tasks": slope_per_1e5(tasks_read[settled], heap[settled]),
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kilobytes on Linux
    }
    log(
        f"{stream.position} tasks in {rounds} rounds ({seconds:.0f} s): resident {report['rss_start_mib']:.1f} MiB at "
        f"the start, {report['rss_end_mib']:.1f} at the end, max {report['rss_max_mib']:.1f}; slope "
        f"{report['slope_bytes_per_1e5_tasks']} bytes per 1e5 tasks (keeping the rows: {one_row * 1e5:.0f})"
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream-length", type=int, default=10**6, help="tasks in the generated stream")
    parser.add_argument("--pool-size", type=int, default=10**4, help="the active pool's slots")
    parser.add_argument("--batch-size", type=int, default=256, help="tasks per round B")
    parser.add_argument("--strategy", default="uniform", choices=["uniform", "bots"], help="the selector's strategy")
    parser.add_argument("--retire-threshold", type=float, help="bots: bots_retire_threshold (default: BOTSConfig's)")
    parser.add_argument("--max-rounds", type=int, help="stop after this many rounds (default: the stream's end)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.stream_length < args.pool_size:
        parser.error(f"--stream-length ({args.stream_length}) must be at least --pool-size ({args.pool_size}).")
    report = measure(
        args.stream_length,
        args.pool_size,
        args.batch_size,
        args.strategy,
        args.retire_threshold,
        args.max_rounds,
        args.tracemalloc,
    )
    print_report(report, args.output)


if __name__ == "__main__":
    main()
