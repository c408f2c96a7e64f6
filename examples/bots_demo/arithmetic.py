"""A local arithmetic task set and a character-level model for it: the offline demonstration's world, no downloads.

Additions of two ``digits``-digit numbers (zero-padded, so that digits of the same place line up), the sum written
least-significant digit first, the way people add by hand: ``"00045+00718="`` is answered ``"367000"`` (763, reversed
and padded to one more digit). Each task is made with an exact number of **carries**, its difficulty level: a model
that handles one carry with probability ``s`` solves a task with ``k`` carries with probability about ``s ** k``, so a
model that has mastered digit-wise addition but not yet carrying always solves the carry-free tasks, never solves the
long carry chains and sits in between on the rest; and as reinforcement learning sharpens carrying on the tasks in
between, the long chains become solvable too. That is the GURU-like pool the demonstration needs: many tasks always
solved, many never solved, and a frontier that moves.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


ALPHABET = "0123456789+="
PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
LEVEL_COLUMN = "carries"  # a task's difficulty level: the number of carries of its addition


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of :data:`ALPHABET`, plus padding and end-of-sequence tokens."""
    vocab = {token: i for i, token in enumerate([PAD_TOKEN, EOS_TOKEN, *ALPHABET])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters join back without spaces
    # PreTrainedTokenizerFast, not AutoTokenizer: the latter would pick the model type's tokenizer class.
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, padding_side="left"
    )


def build_model(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 128, num_layers: int = 2, seed: int = 0):
    """A small Qwen2 causal LM, randomly initialised."""
    from transformers import set_seed

    set_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def format_addition(a: int, b: int, digits: int) -> tuple[str, str]:
    """The prompt and the answer of ``a + b`` (see the module docstring): ``(45, 718, 3) -> ("045+718=", "3670")``."""
    return f"{a:0{digits}d}+{b:0{digits}d}=", f"{a + b:0{digits + 1}d}"[::-1]


def addition_task(a: int, b: int, digits: int) -> dict[str, str | int]:
    """The task row of ``a + b``: its ``prompt`` and ``solution`` (:func:`format_addition`) and its level."""
    prompt, solution = format_addition(a, b, digits)
    return {"prompt": prompt, "solution": solution, LEVEL_COLUMN: count_carries(a, b)}


def count_carries(a: int, b: int) -> int:
    """Number of carries in the column addition of ``a`` and ``b``: the difficulty level."""
    carries = carry = 0
    while a or b:
        carry = int(a % 10 + b % 10 + carry >= 10)
        carries += carry
        a, b = a // 10, b // 10
    return carries


@cache
def count_additions(digits: int, carries: int) -> int:
    """How many ordered pairs of ``digits``-digit operands (leading zeros allowed) make exactly ``carries`` carries."""
    # ways[c][k]: digit pairs of the places seen so far that end with carry c after k carries.
    ways = [[1] + [0] * digits, [0] * (digits + 1)]
    for _ in range(digits):
        new = [[0] * (digits + 1), [0] * (digits + 1)]
        for carry_in in (0, 1):
            with_carry = 45 + 10 * carry_in  # pairs x + y + carry_in >= 10 out of 100
            for k, n in enumerate(ways[carry_in]):
                new[0][k] += n * (100 - with_carry)
                if k < digits:
                    new[1][k + 1] += n * with_carry
        ways = new
    return ways[0][carries] + ways[1][carries]


def addition_with_carries(rng: random.Random, digits: int, carries: int) -> tuple[int, int]:
    """Operands with exactly ``carries`` carries: the carrying places drawn uniformly, then each place's digits."""
    carrying = set(rng.sample(range(digits), carries))
    a = b = carry = 0
    for place in range(digits):
        while True:
            x, y = rng.randrange(10), rng.randrange(10)
            if (x + y + carry >= 10) == (place in carrying):
                break
        a, b, carry = a + x * 10**place, b + y * 10**place, int(place in carrying)
    return a, b


def level_shares(weights: Sequence[float]) -> np.ndarray:
    """``weights`` normalised to shares of the levels; ``ValueError`` unless they are non-negative, finite and not all
    zero."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0 or np.any(weights < 0) or not np.isfinite(weights).all():
        raise ValueError(f"level weights must be a non-empty list of non-negative numbers, got {weights.tolist()}.")
    if weights.sum() <= 0:
        raise ValueError(f"level weights must not all be zero, got {weights.tolist()}.")
    return weights / weights.sum()


def level_counts(num: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``num`` rows over levels in proportion to ``weights`` exactly (largest remainder, ties to lower levels)."""
    quota = num * level_shares(weights)
    counts = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: num - counts.sum()]] += 1
    return counts


def checked_level_weights(caller: str, digits: int, level_weights: Sequence[float] | None) -> list[float]:
    """``level_weights`` as a list of ``digits + 1`` weights (None: every level alike); ``ValueError`` naming
    ``caller`` for digits below 1 or another number of weights."""
    if digits < 1:
        raise ValueError(f"{caller}: digits must be >= 1, got {digits}.")
    weights = [1.0] * (digits + 1) if level_weights is None else list(level_weights)
    if len(weights) != digits + 1:
        raise ValueError(
            f"{caller}: level_weights needs one weight per number of carries 0..{digits} ({digits + 1} "
            f"weights), got {len(weights)}: {weights}."
        )
    return weights


def excluded_per_level(exclude: Iterable[str], digits: int) -> np.ndarray:
    """How many of the prompts in ``exclude`` are ``digits``-digit additions with 0, 1, ... ``digits`` carries."""
    excluded = np.zeros(digits + 1, dtype=np.int64)
    for prompt in exclude:
        if len(prompt) == 2 * digits + 2:
            a, b = (int(x) for x in prompt.rstrip("=").split("+"))
            excluded[count_carries(a, b)] += 1
    return excluded


def make_additions(
    num: int,
    digits: int,
    seed: int,
    level_weights: Sequence[float] | None = None,
    exclude: set[str] = frozenset(),
) -> Dataset:
    """
    ``num`` distinct additions of ``digits``-digit operands, shuffled, with ``level_weights[k]`` setting the share of
    tasks with exactly ``k`` carries (``digits + 1`` weights; None: every level alike). The shares are exact (see
    :func:`level_counts`). Columns: ``prompt``, ``solution`` (see :func:`format_addition`) and ``carries``. Prompts in
    ``exclude`` are never produced, so a held-out set stays held out.
    """
    weights = checked_level_weights("make_additions", digits, level_weights)
    counts = level_counts(num, weights)
    excluded = excluded_per_level(exclude, digits)
    for carries, wanted in enumerate(counts):
        available = count_additions(digits, carries) - excluded[carries]
        if wanted > available:
            raise ValueError(
                f"make_additions: {wanted} distinct additions with {carries} carries requested, but {digits}-digit "
                f"operands give only {available} (after excluding {excluded[carries]} held-out prompts). Ask for "
                "fewer additions, shift level_weights or allow more digits."
            )
    rng = random.Random(seed)
    rows, seen = [], set(exclude)
    for carries, wanted in enumerate(counts):
        made = 0
        while made < wanted:
            row = addition_task(*addition_with_carries(rng, digits, carries), digits)
            if row["prompt"] not in seen:
                seen.add(row["prompt"])
                rows.append(row)
                made += 1
    rng.shuffle(rows)
    return Dataset.from_list(rows)
