"""BOTSSampler: TRL's RepeatSampler layout over the task slots of a round, filled in at generation time."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from .validation import check_enough_tasks


TOO_FEW_TASKS = (
    "One generation batch needs {batch_size} distinct tasks but the dataset has only {available}. Use a larger "
    "dataset, or a smaller generation_batch_size (or more num_generations per task)."
)


class BOTSSampler(Sampler[int]):
    """
    Yields **slot** numbers in exactly [`trl.trainer.utils.RepeatSampler`]'s layout and length.

    Slot `j` in `[0, batch_size)` stands for "the j-th task of the current round". Every round repeats each slot
    `mini_repeat_count` times contiguously, and the whole block `repeat_count` times. An epoch has
    `num_tasks // batch_size` rounds, as RepeatSampler has, so `len(sampler)` is the same.

    The sampler does not choose tasks: the DataLoader fetches dataset rows `0..batch_size-1` as placeholders, and
    [`BOTSGRPOTrainer`] replaces them by the tasks the selector picks when GRPO is about to generate. Choosing then,
    not when the DataLoader reads ahead, is what lets every round use the rewards of all earlier rounds. The stream is
    the same on every process and in every epoch, so resuming (which fast-forwards the DataLoader) needs no state here.

    Args:
        num_tasks (`int`):
            Number of tasks (dataset rows); sets the number of rounds per epoch.
        mini_repeat_count (`int`):
            Completions per task (`num_generations`).
        batch_size (`int`):
            Distinct tasks per round (`generation_batch_size // num_generations`).
        repeat_count (`int`, *optional*, defaults to `1`):
            Times each round is repeated (`num_iterations * steps_per_generation`).
    """

    def __init__(self, num_tasks: int, mini_repeat_count: int, batch_size: int, repeat_count: int = 1):
        check_enough_tasks(batch_size, num_tasks, TOO_FEW_TASKS)
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.rounds_per_epoch = num_tasks // batch_size

    def __len__(self) -> int:
        return self.rounds_per_epoch * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        block = [slot for slot in range(self.batch_size) for _ in range(self.mini_repeat_count)]
        for _ in range(self.rounds_per_epoch * self.repeat_count):
            yield from block
