"""BOTS over an active pool without a model: the bookkeeping of a round, on a generated stream of tasks.

Shared by ``selection_overhead.py`` (the round's cost at a pool of 1e5 tasks) and ``stream_memory.py`` (memory over a
stream of 1e6 tasks or more). A round does what ``BOTSGRPOTrainer`` does around a generation batch over a stream:
select B slots, fold the simulated rollouts in (update), find the tasks that no longer pay (``tasks_to_retire`` over
every slot, and those served ``bots_max_visits`` times; the baselines retire each task they serve), give their slots the stream's next tasks
(``ActivePool.replace``) and restart those slots' beliefs (``BOTSSelector.replace_tasks``, with the new tasks'
reference pass rates read from their rows as the trainer reads them).

The stream is a ``datasets.IterableDataset`` generated on the fly, nothing held: rows like real prompts (a prompt of
about 200 characters and an integer answer) with two reference pass rates (strategy ``bots`` with reference pass
rates, as in the fixed-pool benchmark) and the task's true pass rate, which only the simulated rollouts read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from datasets import IterableDataset

from trl_bots import BOTSSelector
from trl_bots.active_pool import ActivePool
from trl_bots.config import BOTSConfig
from trl_bots.task_stream import TaskStream
from trl_bots.tasks import row_reference_pass_rates


REFERENCE_COLUMNS = ["weak_pass_rate", "strong_pass_rate"]
TRUE_RATE_COLUMN = "true_pass_rate"
PROMPT_CHARS = 200
# True pass rates: U-shaped, as in real data, many tasks (nearly) always or never solved, which the rule retires.
TRUE_RATE_BETA = (0.5, 0.5)
DEFAULT_RETIRE_THRESHOLD = BOTSConfig.__dataclass_fields__["bots_retire_threshold"].default
DEFAULT_MAX_VISITS = BOTSConfig.__dataclass_fields__["bots_max_visits"].default
PARTS = ("select", "update", "retire", "refill", "replace_tasks")  # the timed parts of a round, in order
_FILLER = (
    "A shop sells pencils in boxes of twelve and erasers in packs of five. A class needs one pencil and one eraser "
    "per student, with as few boxes and packs as possible. How many items are left over? Answer with an integer. "
)
_CHUNK = 1024  # rows drawn at a time: numpy's per-call cost spread over many rows


def prompt(position: int) -> str:
    """A prompt of ``PROMPT_CHARS`` characters, distinct per stream position (the pool keeps distinct rows)."""
    head = f"Problem {position}. "
    return head + _FILLER[: PROMPT_CHARS - len(head)]


def generated_tasks(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """``count`` task rows, drawn as they are read: a true pass rate ``p ~ Beta(TRUE_RATE_BETA)``, reference pass
    rates around it (weak below, strong above: ``p`` is 60% of the way from weak to strong where not clipped), a
    prompt and an integer answer."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, _CHUNK):
        size = min(_CHUNK, count - start)
        true, gap = rng.beta(*TRUE_RATE_BETA, size), rng.beta(1.0, 3.0, size)
        weak, strong = np.clip(true - 0.6 * gap, 0.0, 1.0), np.clip(true + 0.4 * gap, 0.0, 1.0)
        answers = rng.integers(0, 10**6, size)
        for i in range(size):
            yield {
                "prompt": prompt(start + i),
                "answer": int(answers[i]),
                REFERENCE_COLUMNS[0]: float(weak[i]),
                REFERENCE_COLUMNS[1]: float(strong[i]),
                TRUE_RATE_COLUMN: float(true[i]),
            }


def task_stream(count: int, seed: int = 0) -> IterableDataset:
    """A stream of ``count`` generated tasks (:func:`generated_tasks`)."""
    return IterableDataset.from_generator(generated_tasks, gen_kwargs={"count": count, "seed": seed})


@dataclasses.dataclass
class RoundTimes:
    """Seconds of each part of a round (:data:`PARTS`) and the tasks it retired."""

    parts: dict[str, float]
    retired: int

    @property
    def total(self) -> float:
        return sum(self.parts.values())


class PoolRounds:
    """An active pool of ``pool_size`` slots over a stream of ``stream_length`` generated tasks, its selector, and
    simulated rollouts (successes ~ Binomial(G, p) with each task's true pass rate ``p``).

    Args:
        generations: rollouts per task G (the retirement rule's group size).
        strategy: the selector's strategy; ``"uniform"`` retires every task it serves (a stream read once).
        retire_threshold: ``bots_retire_threshold`` for the adaptive strategies.
        max_visits: ``bots_max_visits``, the visit budget of the adaptive strategies.
        restart: read the stream again when it ends (``bots_stream_end="restart"``); otherwise :attr:`exhausted`
            tells when retired tasks could no longer be replaced.
    """

    def __init__(
        self,
        pool_size: int,
        stream_length: int,
        generations: int,
        strategy: str = "bots",
        retire_threshold: float = DEFAULT_RETIRE_THRESHOLD,
        max_visits: int | None = DEFAULT_MAX_VISITS,
        restart: bool = True,
        seed: int = 0,
    ):
        stream = TaskStream(task_stream(stream_length, seed), restart=restart, required=("prompt",))
        self.pool = ActivePool(stream, pool_size)
        self.selector = BOTSSelector(
            self.pool.size,
            reference_pass_rates=row_reference_pass_rates(self.pool.rows, REFERENCE_COLUMNS),
            strategy=strategy,
            seed=seed,
        )
        self.generations, self.retire_threshold, self.max_visits = generations, retire_threshold, max_visits
        self.true_rates = np.array([row[TRUE_RATE_COLUMN] for row in self.pool.rows])
        self.simulation = np.random.default_rng(seed + 1)

    @property
    def exhausted(self) -> bool:
        return self.pool.exhausted

    def initial_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The pool's reference pass rates ``[pool, 2]`` and true pass rates now (a fixed pool to compare with)."""
        return row_reference_pass_rates(self.pool.rows, REFERENCE_COLUMNS), self.true_rates.copy()

    def round(self, batch_size: int) -> RoundTimes:
        """One round; the simulated rollouts and the newcomers' true pass rates are outside the timed parts."""
        selector, pool, clock = self.selector, self.pool, time.perf_counter
        start = clock()
        slots = selector.select(batch_size)
        selected = clock()
        successes = self.simulation.binomial(self.generations, self.true_rates[slots]).astype(np.float64)
        trials = np.full(slots.size, self.generations, dtype=np.float64)
        simulated = clock()
        selector.update(slots, successes, trials)
        updated = clock()
        retire = pool.retirements(selector, slots, self.generations, self.retire_threshold, self.max_visits)
        decided = clock()
        replaced = pool.replace(retire)
        refilled = clock()
        if replaced.size:
            rows = [pool.rows[slot] for slot in replaced.tolist()]
            selector.replace_tasks(replaced, reference_pass_rates=row_reference_pass_rates(rows, REFERENCE_COLUMNS))
        done = clock()
        for slot in replaced.tolist():
            self.true_rates[slot] = pool.rows[slot][TRUE_RATE_COLUMN]
        parts = {
            "select": selected - start,
            "update": updated - simulated,
            "retire": decided - updated,
            "refill": refilled - decided,
            "replace_tasks": done - refilled,
        }
        return RoundTimes(parts, int(retire.size))
