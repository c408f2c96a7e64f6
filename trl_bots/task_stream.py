"""TaskStream: the rows of a task source read in order, one pass after another, with a position to resume from.

The source is a `datasets.IterableDataset` (streamed from the Hub, or generated on the fly) or a map-style
`datasets.Dataset` read as a stream. Every process reads the same source in the same order, so every process sees the
same rows at the same positions (the trainer checks it every round).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from datasets import Dataset, IterableDataset
from datasets.iterable_dataset import BufferShuffledExamplesIterable


logger = logging.getLogger(__name__)

STREAM_ENDS = ("restart", "stop")


class StreamEnded(Exception):
    """Raised by :meth:`TaskStream.next_row` when the source has no more rows and the stream does not restart."""


class TaskStream:
    """Rows of ``source`` in its order; at its end, another pass (``restart=True``, as the Trainer does with
    ``max_steps``) or :class:`StreamEnded`.

    Every row must be a mapping with the same columns as the first one, and hold ``required`` columns: a malformed row
    stops the run with an error naming its position, before anything selects it.

    Args:
        source: a `datasets.IterableDataset`, or a map-style `datasets.Dataset` read in row order.
        restart: read the source again from its start when it ends (a shuffled `IterableDataset` is reshuffled for
            the new pass through `set_epoch`); ``False``: the stream ends.
        required: columns every row must have (e.g. ``("prompt",)``).
        name: how errors name the source (e.g. ``"train_dataset"``).
    """

    def __init__(self, source: Any, restart: bool, required: tuple[str, ...] = (), name: str = "train_dataset"):
        if not isinstance(source, (IterableDataset, Dataset)):
            raise TypeError(f"{name} must be a datasets.IterableDataset or Dataset, got {type(source).__name__}.")
        self.source, self.restart, self.required, self.name = source, bool(restart), tuple(required), name
        self.position = 0  # rows read over all passes: the next row's task id
        self.passes = 0  # passes completed
        self.row_in_pass = 0  # rows read in the current pass
        self.columns: tuple[str, ...] | None = None  # the first row's, which every row must have
        self._rows: Iterator[Any] | None = None

    @property
    def exact_resume(self) -> bool:
        """Whether :meth:`load_state_dict` continues with exactly the rows the uninterrupted stream would read: a
        map-style dataset (read by index) or an `IterableDataset` without a shuffle buffer, whose content its state
        does not hold (datasets refills it on resume, so the rows after the position differ)."""
        return isinstance(self.source, Dataset) or not _has_shuffle_buffer(self.source._ex_iterable)

    def next_row(self) -> tuple[dict[str, Any], int]:
        """The next row and its index in the current pass; :class:`StreamEnded` at the end of a stream that does not
        restart, and ``ValueError`` for a source that yields no row in a whole pass."""
        if self.passes and not self.restart:
            raise StreamEnded(f"{self.name} ended after {self.position} rows.")
        while True:
            row = next(self._iterator(), None)
            if row is not None:
                break
            if self.row_in_pass == 0:
                raise ValueError(
                    f"{self.name} yielded no row in pass {self.passes + 1}: the stream is empty. Check the data source."
                )
            self._rows, self.passes, self.row_in_pass = None, self.passes + 1, 0
            if not self.restart:
                raise StreamEnded(f"{self.name} ended after {self.position} rows.")
            logger.info("BOTS: %s ended after %d rows; pass %d starts.", self.name, self.position, self.passes + 1)
        row = self._checked(row)
        index, self.position, self.row_in_pass = self.row_in_pass, self.position + 1, self.row_in_pass + 1
        return row, index

    def _iterator(self) -> Iterator[Any]:
        if self._rows is None:
            if isinstance(self.source, Dataset):
                self._rows = (self.source[i] for i in range(self.row_in_pass, len(self.source)))
            else:
                self.source.set_epoch(self.passes)  # a shuffled stream: another order each pass, as the Trainer does
                self._rows = iter(self.source)
        return self._rows

    def _checked(self, row: Any) -> dict[str, Any]:
        where = f"{self.name}'s row {self.row_in_pass} of pass {self.passes + 1} (stream position {self.position})"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where} is a {type(row).__name__}, not a row of named columns (a dict).")
        columns = tuple(row)
        if self.columns is None:
            missing = [column for column in self.required if column not in columns]
            if missing:
                raise ValueError(f"{where} has no column {missing} (its columns: {list(columns)}); BOTS needs them.")
            self.columns = columns
        elif set(columns) != set(self.columns):
            raise ValueError(
                f"{where} has the columns {sorted(columns)}, but the stream's first row has {sorted(self.columns)}: "
                "every task must have the same columns. Fix or filter the malformed rows of the source."
            )
        for column in self.required:
            if row[column] is None:
                raise ValueError(f"{where} has no value in its column {column!r} (None). Fill or drop the row.")
        return dict(row)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: rows read, passes completed, and the source's own position (an `IterableDataset`'s
        `state_dict()`, which resumes without reading the rows again)."""
        state = {"position": self.position, "passes": self.passes, "row_in_pass": self.row_in_pass}
        state["columns"] = None if self.columns is None else list(self.columns)
        if isinstance(self.source, IterableDataset):
            state["source"] = self.source.state_dict() if self._rows is not None else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next row read is the one the saved stream would have read next
        (see :attr:`exact_resume` for the one exception, a shuffle buffer)."""
        self.position, self.passes, self.row_in_pass = (
            int(state[key]) for key in ("position", "passes", "row_in_pass")
        )
        self.columns = None if state.get("columns") is None else tuple(state["columns"])
        self._rows = None
        if isinstance(self.source, IterableDataset):
            self.source.set_epoch(self.passes)
            if state.get("source") is not None:
                self.source.load_state_dict(state["source"])
            self._rows = iter(self.source)


def _has_shuffle_buffer(examples: Any) -> bool:
    """Whether a chain of datasets' example iterables (an `IterableDataset`'s source and the maps, filters, shuffles
    and interleavings over it) holds the buffer of `IterableDataset.shuffle`."""
    if isinstance(examples, BufferShuffledExamplesIterable):
        return True
    inner = getattr(examples, "ex_iterables", None) or [getattr(examples, "ex_iterable", None)]
    return any(_has_shuffle_buffer(part) for part in inner if part is not None)
