"""A local arithmetic task set and a character-level model for it: the offline demonstration's world, no downloads.

Additions of numbers with 1 to ``max_digits`` digits, written the way a small transformer learns them fastest (as
people add by hand): both operands zero-padded to ``max_digits`` so that digits of the same place line up, and the
sum written least-significant digit first, so that each answer digit depends only on digits already seen and on the
carry. ``"045+718="`` is answered ``"3670"`` (763, reversed and padded to one more digit). Sums without carries are
learnt early and long carry chains late, so the pass rates of a briefly trained model spread between 0 and 1: the
spread that task selection needs.
"""

from __future__ import annotations

import random

from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


ALPHABET = "0123456789+="
PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"


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


def build_model(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 128, num_layers: int = 4, seed: int = 0):
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


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits)


def format_addition(a: int, b: int, max_digits: int) -> tuple[str, str]:
    """The prompt and the answer of ``a + b`` (see the module docstring): ``(45, 718, 3) -> ("045+718=", "3670")``."""
    return f"{a:0{max_digits}d}+{b:0{max_digits}d}=", f"{a + b:0{max_digits + 1}d}"[::-1]


def count_carries(a: int, b: int) -> int:
    """Number of carries in the column addition of ``a`` and ``b``: the main source of difficulty."""
    carries = carry = 0
    while a or b:
        carry = int(a % 10 + b % 10 + carry >= 10)
        carries += carry
        a, b = a // 10, b // 10
    return carries


def make_additions(num: int, max_digits: int, seed: int, exclude: set[str] = frozenset()) -> Dataset:
    """``num`` distinct additions whose operands have 1 to ``max_digits`` digits each (lengths drawn uniformly).

    Columns: ``prompt``, ``solution`` (see :func:`format_addition`) and ``carries`` (:func:`count_carries`). Prompts
    in ``exclude`` are never produced, so a held-out set stays held out.
    """
    # Operands run over 0 .. 10**max_digits - 1, so there are 10**(2 * max_digits) ordered pairs, less the excluded
    # prompts of this format ("a+b=", both operands zero-padded to max_digits).
    excluded = sum(len(prompt) == 2 * max_digits + 2 for prompt in exclude)
    available = 10 ** (2 * max_digits) - excluded
    if num > available:
        raise ValueError(
            f"make_additions: num={num} distinct additions requested, but operands of at most max_digits={max_digits} "
            f"digit(s) give only {available} (after excluding {excluded} held-out prompts). Ask for fewer additions "
            "or allow more digits."
        )
    rng = random.Random(seed)
    rows, seen = [], set(exclude)
    while len(rows) < num:
        a, b = _operand(rng, rng.randint(1, max_digits)), _operand(rng, rng.randint(1, max_digits))
        prompt, solution = format_addition(a, b, max_digits)
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"prompt": prompt, "solution": solution, "carries": count_carries(a, b)})
    return Dataset.from_list(rows)
