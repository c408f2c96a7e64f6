"""Reward functions for GRPO, selectable by name from the command line and YAML recipes.

Every function follows TRL's reward signature: ``completions`` (strings, or lists of chat messages) plus the
dataset's columns as keyword arguments; the ground truth comes in the ``solution`` column. A reward of ``None``
means "this completion cannot be scored" (e.g. an unparseable ground truth): GRPO turns it into NaN and BOTS counts
it neither as a success nor as a failure, instead of pretending it is a wrong answer.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable


RewardFunction = Callable[..., list[float | None]]

_THINK_THEN_BOXED = re.compile(r"^\s*<think>(?!.*<think>).*?</think>.*\\boxed\{.*\}", re.DOTALL)


def completion_text(completion: str | list[dict[str, str]]) -> str:
    """The text of one completion, standard (a string) or conversational (a list of messages)."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


# \boxed or \fbox as a whole command (not the start of a longer one such as \boxedfoo).
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced_content(text: str, opening: int) -> str | None:
    r"""The content of the group opened by the ``{`` at ``opening``, or ``None`` if it is never closed.

    Escaped braces (``\{``, ``\}``, as in ``\left\{``) are literal characters, not group delimiters.
    """
    depth, position = 0, opening + 1
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2  # a command character or an escaped brace: never a delimiter
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[opening + 1 : position]
            depth -= 1
        position += 1
    return None


def last_boxed(text: str) -> str | None:
    r"""The content of the last complete ``\boxed`` or ``\fbox`` answer in ``text``, or ``None`` if there is none.

    Like math-verify's extraction and the usual MATH extractors: ``\boxed{...}`` and ``\fbox{...}`` with balanced
    braces (escaped ``\{`` and ``\}`` do not count), and the brace-less ``\boxed 5``, which boxes everything up to
    the next ``$`` or the end of the text. A last box cut off before its closing brace (a completion truncated at the
    length limit) is skipped in favour of the box before it.
    """
    for match in reversed(list(_BOX_COMMAND.finditer(text))):
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        if start < len(text) and text[start] == "{":
            content = _braced_content(text, start)
        else:
            content = text[start:].split("$", 1)[0].strip() or None
        if content is not None:
            return content
    return None


def final_answer(completion: str | list[dict[str, str]]) -> str:
    r"""The last ``\boxed{}`` answer of a completion, or its whole stripped text when it boxes nothing."""
    text = completion_text(completion)
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def math_accuracy_reward(
    completions: list[str | list[dict[str, str]]], solution: list[str], **kwargs
) -> list[float | None]:
    r"""
    1.0 when the completion's last complete ``\boxed{}`` answer (see :func:`last_boxed` for the forms read) is
    mathematically equal to the ground truth (checked with ``math-verify``), 0.0 when it is not or when the completion
    boxes no answer, ``None`` when the ground truth itself cannot be parsed.
    """
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    except ImportError as error:
        raise ImportError("math_accuracy_reward needs math-verify: pip install 'trl-bots[math]'.") from error

    # math-verify times out with signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    answer_config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    rewards: list[float | None] = []
    for completion, truth in zip(completions, solution, strict=True):
        gold = parse(f"\\boxed{{{truth}}}", extraction_config=answer_config, parsing_timeout=timeout)
        if not gold:
            rewards.append(None)
            continue
        boxed = last_boxed(completion_text(completion))
        if boxed is None:
            rewards.append(0.0)
            continue
        answer = parse(f"\\boxed{{{boxed}}}", extraction_config=answer_config, parsing_timeout=timeout)
        rewards.append(float(verify(gold, answer, timeout_seconds=timeout)))
    return rewards


def exact_match_reward(completions: list[str | list[dict[str, str]]], solution: list[str], **kwargs) -> list[float]:
    r"""1.0 when the final answer (last ``\boxed{}`` or the whole completion), stripped, equals the solution."""
    return [float(final_answer(c) == str(s).strip()) for c, s in zip(completions, solution, strict=True)]


def partial_match_reward(completions: list[str | list[dict[str, str]]], solution: list[str], **kwargs) -> list[float]:
    r"""
    Partial credit: the share of characters of the final answer that equal the solution's at the same position, over
    the longer of the two (so extra or missing characters cost). A dense companion of :func:`exact_match_reward` for
    answers made of many tokens, such as numbers; 1.0 exactly when the answers match.
    """
    rewards = []
    for completion, truth in zip(completions, solution, strict=True):
        answer, truth = final_answer(completion), str(truth).strip()
        matches = sum(a == b for a, b in zip(answer, truth, strict=False))
        rewards.append(matches / max(len(answer), len(truth), 1))
    return rewards


def format_reward(completions: list[str | list[dict[str, str]]], **kwargs) -> list[float]:
    r"""1.0 when the completion reasons inside one ``<think>...</think>`` block and then boxes an answer, else 0.0."""
    return [float(bool(_THINK_THEN_BOXED.match(completion_text(c)))) for c in completions]


# How `guru_reward` scores each GURU domain (the `domain` column of `trl_bots.data.load_guru`): by name of the reward
# function, or None for a domain it cannot score (code needs a sandbox to run its tests).
GURU_DOMAIN_REWARDS: dict[str, str | None] = {
    "math": "math_accuracy_reward",
    "stem": "math_accuracy_reward",  # GURU's science split: numeric and symbolic answers
    "science": "math_accuracy_reward",
    "logic": "exact_match_reward",
    "simulation": "exact_match_reward",
    "table": "exact_match_reward",  # GURU's tabular split
    "tabular": "exact_match_reward",
    "codegen": None,
    "code": None,
}


def guru_reward(
    completions: list[str | list[dict[str, str]]], solution: list[str], domain: list[str], **kwargs
) -> list[float | None]:
    r"""
    A reward router for GURU mixtures: each completion is scored by the reward of its row's ``domain`` (see
    :data:`GURU_DOMAIN_REWARDS`): ``math_accuracy_reward`` for math and science, ``exact_match_reward`` for logic,
    simulation and tabular, ``None`` for code (no sandbox here), which GRPO and BOTS then leave unscored. A domain
    not in the table is an error, not a silent ``None``. Pass a sandboxed code reward as a second reward function to
    score code.
    """
    if len(domain) != len(completions):
        raise ValueError(f"guru_reward needs one domain per completion ({len(completions)}), got {len(domain)}.")
    unknown = sorted(set(domain) - set(GURU_DOMAIN_REWARDS), key=repr)  # repr: a missing domain (None) sorts too
    if unknown:
        raise ValueError(
            f"guru_reward does not know the domains {unknown}; it routes {sorted(GURU_DOMAIN_REWARDS)}. Add the domain "
            "to trl_bots.rewards.GURU_DOMAIN_REWARDS, or pass your own reward function."
        )
    rewards: list[float | None] = [None] * len(completions)
    for name in {GURU_DOMAIN_REWARDS[label] for label in domain} - {None}:
        rows = [i for i, label in enumerate(domain) if GURU_DOMAIN_REWARDS[label] == name]
        scores = REWARD_FUNCTIONS[name]([completions[i] for i in rows], [solution[i] for i in rows])
        for i, score in zip(rows, scores, strict=True):
            rewards[i] = score
    return rewards


REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "math_accuracy_reward": math_accuracy_reward,
    "exact_match_reward": exact_match_reward,
    "partial_match_reward": partial_match_reward,
    "format_reward": format_reward,
    "guru_reward": guru_reward,
}


def get_reward_function(name: str) -> RewardFunction:
    """A reward function by its name in :data:`REWARD_FUNCTIONS` or by a dotted import path (``my_pkg.rewards.f``)."""
    if name in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[name]
    if "." in name:
        module_name, attribute = name.rsplit(".", 1)
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"reward function {name!r} could not be imported: {error}.") from error
    raise ValueError(
        f"Unknown reward function {name!r}. Use one of {sorted(REWARD_FUNCTIONS)} or a dotted import path such as "
        "'my_package.rewards.my_reward'."
    )
