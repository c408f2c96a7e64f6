"""An unbounded task stream of the offline world: additions made one at a time, as a `datasets.IterableDataset`.

The demo's task pool (:func:`bots_demo.arithmetic.make_additions`) is a fixed set of additions whose levels (numbers of
carries) follow ``demo_pool_level_weights`` exactly. :func:`addition_stream` is its unbounded counterpart, what a
procedural task generator feeds a trainer: each row's level is drawn independently with probability ``w_k / sum(w)``
(the pool's mix), then an addition with exactly that many carries, made as the pool's are
(:func:`~bots_demo.arithmetic.addition_with_carries`), in the pool's columns (``prompt``, ``solution``, ``carries``) and
without its reference pass-rate columns: a plain stream.

Prompts of the held-out set are never yielded: one drawn is replaced by another of the same level, so the mix stays
the pool's and held-out accuracy stays a measure of generalisation. Other repeats are not tracked (the stream holds
nothing but its random state: constant memory); with the demo's 8-digit operands there are 10**16 additions, so a
repeat is rare. The stream is a function of its seed: every iteration of the dataset yields the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from datasets import Features, IterableDataset, Value

from .arithmetic import (
    LEVEL_COLUMN,
    addition_task,
    addition_with_carries,
    checked_level_weights,
    count_additions,
    excluded_per_level,
    level_shares,
)


if TYPE_CHECKING:
    from .offline_setup import OfflineSetup


# The pool's columns, typed as its rows read back from train.jsonl.
TASK_FEATURES = Features({"prompt": Value("string"), "solution": Value("string"), LEVEL_COLUMN: Value("int64")})


def additions_forever(
    digits: int, shares: tuple[float, ...], seed: int, exclude: frozenset[str]
) -> Iterator[dict[str, str | int]]:
    """The stream's rows, without end: levels drawn with probabilities ``shares``, prompts in ``exclude`` redrawn."""
    rng, levels, cumulative = random.Random(seed), range(digits + 1), list(accumulate(shares))
    while True:
        carries = rng.choices(levels, cum_weights=cumulative)[0]
        row = addition_task(*addition_with_carries(rng, digits, carries), digits)
        while row["prompt"] in exclude:
            row = addition_task(*addition_with_carries(rng, digits, carries), digits)
        yield row


def addition_stream(
    digits: int, level_weights: Sequence[float] | None, seed: int, exclude: Iterable[str] = ()
) -> IterableDataset:
    """
    An unbounded ``IterableDataset`` of ``digits``-digit additions (see the module docstring): each row's number of
    carries is ``k`` with probability ``level_weights[k] / sum(level_weights)`` (``digits + 1`` weights; None: every
    level alike), independently of the other rows; prompts in ``exclude`` never appear. Deterministic given ``seed``.
    """
    weights = checked_level_weights("addition_stream", digits, level_weights)
    shares, exclude = level_shares(weights), frozenset(exclude)
    excluded = excluded_per_level(exclude, digits)
    for carries, share in enumerate(shares):
        if share > 0 and excluded[carries] >= count_additions(digits, carries):
            raise ValueError(
                f"addition_stream: every {digits}-digit addition with {carries} carries is excluded "
                f"({excluded[carries]} held-out prompts), but level_weights[{carries}]={weights[carries]} asks for "
                "some. Give that level the weight 0, hold out fewer of its additions or allow more digits."
            )
    # Tuples and a frozenset, not lists: datasets would shard list arguments over the stream's workers.
    gen_kwargs = {"digits": digits, "shares": tuple(shares.tolist()), "seed": seed, "exclude": exclude}
    return IterableDataset.from_generator(additions_forever, features=TASK_FEATURES, gen_kwargs=gen_kwargs)


def setup_stream(setup: OfflineSetup, seed: int) -> IterableDataset:
    """The stream of ``setup``'s world: its operands' digits, its pool's level mix, its held-out prompts excluded."""
    settings = setup.manifest["settings"]
    return addition_stream(
        settings["demo_digits"], settings["demo_pool_level_weights"], seed, exclude=setup.eval_dataset["prompt"]
    )
