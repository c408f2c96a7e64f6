"""Non-adaptive baselines: a fresh random permutation each epoch, or a fixed easy-to-hard order.

See docs/algorithm.md (Strategies and baselines).
"""

from __future__ import annotations

import numpy as np


class CyclicOrder:
    """Serves batches of distinct tasks by walking through an order of all tasks, cyclically.

    Every task is served exactly once per pass. With ``reshuffle`` the next pass is a fresh
    permutation (uniform sampling without replacement within an epoch); without it the same
    order repeats (curriculum). A batch that straddles two passes takes the rest of the old
    pass and the first unseen tasks of the new one, so it never holds a task twice.
    """

    def __init__(self, order: np.ndarray, reshuffle: bool) -> None:
        self.order = np.asarray(order, dtype=np.int64)
        self.reshuffle = reshuffle
        self.cursor = 0

    def take(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        num_tasks = self.order.size
        head = self.order[self.cursor : self.cursor + batch_size]
        self.cursor += head.size
        if head.size == batch_size:
            return head.copy()
        if self.reshuffle:
            fresh = rng.permutation(num_tasks)
            # The tasks just served go to the end of the new pass, so they are not repeated in this batch.
            just_served = np.zeros(num_tasks, dtype=bool)
            just_served[head] = True
            self.order = np.concatenate([fresh[~just_served[fresh]], fresh[just_served[fresh]]])
        self.cursor = batch_size - head.size
        return np.concatenate([head, self.order[: self.cursor]])

    def state_dict(self) -> dict[str, np.ndarray | int]:
        return {"order": self.order, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        order, cursor = np.asarray(state["order"]), state["cursor"]
        num_tasks = self.order.size
        # Anything but a permutation of every task would serve some tasks twice and others never, without an error.
        if order.shape != (num_tasks,) or not np.issubdtype(order.dtype, np.integer):
            raise ValueError(f"The saved task order must hold {num_tasks} task ids, got {order.dtype} {order.shape}.")
        if not np.array_equal(np.sort(order), np.arange(num_tasks)):
            raise ValueError(f"The saved task order must be a permutation of the {num_tasks} tasks: each once.")
        if isinstance(cursor, bool) or not isinstance(cursor, (int, np.integer)) or not 0 <= cursor <= num_tasks:
            raise ValueError(f"The saved order cursor must be an integer in [0, {num_tasks}], got {cursor!r}.")
        self.order, self.cursor = order.astype(np.int64), int(cursor)


def uniform_order(num_tasks: int, rng: np.random.Generator) -> CyclicOrder:
    """Uniform sampling without replacement, a fresh permutation every epoch."""
    return CyclicOrder(rng.permutation(num_tasks), reshuffle=True)


def easy_to_hard_order(reference_pass_rates: np.ndarray) -> CyclicOrder:
    """Offline curriculum: tasks by decreasing mean reference pass rate (easiest first), ties by index."""
    ease = np.asarray(reference_pass_rates, dtype=np.float64).mean(axis=1)
    return CyclicOrder(np.argsort(-ease, kind="stable"), reshuffle=False)
