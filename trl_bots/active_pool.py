"""ActivePool: the tasks BOTS keeps in memory when they come as a stream, and the rule that retires them.

The pool has a fixed number of *slots*; the selector's task ids are slots. After every credited round, the tasks that
no longer pay are retired and their slots take the stream's next tasks, so memory is O(pool size) whatever the stream's
length. The rule (docs/algorithm.md, "Active pool"): a task is retired when the posterior probability that its next
group of rollouts has mixed outcomes, the only groups GRPO learns from, falls below a share of what it is for a task
nothing is known about.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from .posterior import informative_group_probability
from .task_stream import StreamEnded, TaskStream


def tasks_to_retire(
    alpha: np.ndarray, beta: np.ndarray, prior: tuple[float, float], group_size: int, threshold: float
) -> np.ndarray:
    """The slots whose task no longer pays: the posterior probability that its next group of ``group_size`` rollouts
    has mixed outcomes, ``E[1 - p^G - (1 - p)^G]`` under ``Beta(alpha, beta)``, is below ``threshold`` times that
    probability for a task nothing is known about (under the base ``prior``). Relative, because the probability's
    scale depends on ``G``: 1/3 for a new task at G = 2, 7/9 at G = 8."""
    unknown = informative_group_probability(np.array([prior[0]]), np.array([prior[1]]), group_size)[0]
    return np.flatnonzero(informative_group_probability(alpha, beta, group_size) < threshold * unknown)


def row_key(row: dict[str, Any]) -> int:
    """A checksum of a row's content: a row read again after the stream restarts is recognised while still pooled."""
    return zlib.crc32(repr(sorted(row.items())).encode())


class ActivePool:
    """``size`` tasks read from ``stream`` in its order (fewer if the stream's first pass is shorter).

    Attributes:
        rows: each slot's row, as the stream gave it.
        task_ids: each slot's task id, the stream position it was read at (unique over the run: a row read again in
            a later pass is another task, with a fresh belief).
        retired: tasks retired so far (replaced by the stream's next ones).
        visits: how many rounds served each slot's task.
        exhausted: the stream ended (``bots_stream_end="stop"``) and a retired task could not be replaced.
    """

    def __init__(self, stream: TaskStream, size: int):
        self.stream = stream
        self.rows: list[dict[str, Any]] = []
        ids, keys = [], []
        restart, stream.restart = stream.restart, False  # the pool holds at most one pass: no task twice
        try:
            while len(self.rows) < size:
                row, _ = stream.next_row()
                ids.append(stream.position - 1)
                keys.append(row_key(row))
                self.rows.append(row)
        except StreamEnded:
            pass  # a first pass shorter than the pool: the pool holds the whole stream
        finally:
            stream.restart = restart
        self.task_ids = np.asarray(ids, dtype=np.int64)
        self.keys = np.asarray(keys, dtype=np.int64)
        self._pooled = set(keys)  # the keys of the rows in the pool, kept so that a refill costs per row
        self.visits = np.zeros(len(self.rows), dtype=np.int64)  # rounds that served each slot's task
        self.retired = 0
        self.exhausted = False

    @property
    def size(self) -> int:
        return len(self.rows)

    def serve(self, slots: np.ndarray) -> None:
        """Count one serving of the tasks of ``slots`` (a round's)."""
        self.visits[slots] += 1

    def worn_out(self, max_visits: int | None) -> np.ndarray:
        """The slots whose task has been served ``max_visits`` times (none without a budget)."""
        return np.flatnonzero(self.visits >= max_visits) if max_visits is not None else np.empty(0, dtype=np.int64)

    def retirements(
        self, selector: Any, served: np.ndarray, group_size: int, threshold: float, max_visits: int | None
    ) -> np.ndarray:
        """Count a credited round's servings (``served``: its slots) and return the slots to retire, ascending: for a
        baseline with a serving order (uniform), every task it served, as GRPO reads a stream once; otherwise the tasks
        that no longer pay under ``selector``'s posterior (:func:`tasks_to_retire`) and those that used up their visit
        budget."""
        self.serve(served)
        if selector.order is not None:
            return np.sort(np.asarray(served, dtype=np.int64))
        no_longer_pay = tasks_to_retire(selector.alpha, selector.beta, selector.prior, group_size, threshold)
        return np.union1d(no_longer_pay, self.worn_out(max_visits))

    def replace(self, slots: np.ndarray) -> np.ndarray:
        """Retire the tasks of ``slots`` and give each slot the stream's next row not already pooled. Returns the slots
        that got a new task, ascending; at the end of a stream that does not restart, the rest keep their task and
        :attr:`exhausted` is set."""
        slots = np.sort(np.asarray(slots, dtype=np.int64))
        leaving = self.keys[slots].tolist()
        self._pooled.difference_update(leaving)
        for count, slot in enumerate(slots.tolist()):
            try:
                row, key = self._next_unpooled()
            except StreamEnded:
                self.exhausted = True
                self._pooled.update(leaving[count:])  # the tasks kept
                slots = slots[:count]
                break
            self._pooled.add(key)
            self.rows[slot], self.keys[slot], self.task_ids[slot] = row, key, self.stream.position - 1
            self.visits[slot] = 0
        self.retired += slots.size  # the tasks that left the pool
        return slots

    def _next_unpooled(self) -> tuple[dict[str, Any], int]:
        while True:
            row, _ = self.stream.next_row()
            key = row_key(row)
            if key not in self._pooled:
                return row, key

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The pool's rows, task ids and counters, and the stream's position (JSON-able when the rows are)."""
        return {
            "rows": self.rows,
            "task_ids": self.task_ids.tolist(),
            "keys": self.keys.tolist(),
            "visits": self.visits.tolist(),
            "retired": self.retired,
            "exhausted": self.exhausted,
            "stream": self.stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a pool of the same size over the same stream."""
        if len(state["rows"]) != self.size or len(state["task_ids"]) != self.size:
            raise ValueError(
                f"The saved pool holds {len(state['rows'])} tasks, this one {self.size}: resume with the same "
                "bots_pool_size and stream."
            )
        self.rows = [dict(row) for row in state["rows"]]
        self.task_ids = np.asarray(state["task_ids"], dtype=np.int64)
        self.keys = np.asarray(state["keys"], dtype=np.int64)
        self._pooled = set(self.keys.tolist())
        self.visits = np.asarray(state["visits"], dtype=np.int64)
        self.retired, self.exhausted = int(state["retired"]), bool(state["exhausted"])
        self.stream.load_state_dict(state["stream"])
