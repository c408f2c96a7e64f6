"""Offline pass rates: sample k completions per prompt, score them, write the share of successes as a column.

This is how the BOTS reference columns (a weak and a strong model's pass rates) are made for a dataset that does not
ship them. Generation is batched with ``transformers`` (or vLLM), progress is appended to a ``.partial.jsonl`` file
beside the output after every batch so an interrupted run resumes where it stopped, and a prompt whose completions
cannot be scored stops the run with an error: a made-up 0.0 would tell BOTS that the task is impossible.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import is_conversational, maybe_apply_chat_template

from .data import task_fingerprint
from .rewards import RewardFunction


logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    """How completions are sampled for pass-rate estimation."""

    num_samples: int = field(default=8, metadata={"help": "Completions sampled per prompt (k)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Maximum tokens per completion."})
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature; 0 decodes greedily (then num_samples must be 1)."},
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling probability mass."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generation call."})
    seed: int = field(
        default=0,
        metadata={
            "help": "Seed. vLLM samples row i with seed + i, whatever the batching; transformers samples each batch of "
            "batch_size rows (rows [k * batch_size, (k + 1) * batch_size)) with seed + its first row."
        },
    )

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}.")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}.")
        if self.temperature == 0 and self.num_samples != 1:
            raise ValueError(
                f"temperature=0 decodes greedily, so its {self.num_samples} samples would be identical; set "
                "num_samples=1 or a temperature > 0."
            )


_NOT_RECORDED = "(not recorded)"
_FINGERPRINT = "dataset_fingerprint"  # trl_bots.data.task_fingerprint of the rows the partial file's counts belong to


@dataclass
class _Progress:
    """Per-prompt counts already computed, kept in a JSON-lines file so that a run can resume.

    The first line is the header: every setting that changes a result, and the dataset's content fingerprint (rows are
    saved by index, so they hold only for the exact rows they were computed on). A run on other rows (edited, added,
    removed or reordered) or with other settings refuses the file, naming what differs. A last line cut short (the process stopped while appending) is dropped, with a
    warning; any other line that is not valid JSON stops the run.
    """

    path: Path | None
    header: dict[str, Any]
    done: dict[int, tuple[float, int]] = field(default_factory=dict)

    def load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            try:
                json.loads(lines[-1])
            except json.JSONDecodeError:
                logger.warning(
                    "%s: dropping its last line, %r, which was cut short (the run stopped while writing it); the "
                    "rows it held will be computed again.",
                    self.path,
                    lines[-1][:80],
                )
                with self.path.open("r+") as f:
                    f.truncate(len(text.encode()) - len(lines.pop().encode()))
            else:
                with self.path.open("a") as f:  # complete but for its newline: the next row must start a new line
                    f.write("\n")
        rows = []
        for number, line in enumerate(lines, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{self.path} line {number} is not valid JSON ({error}): {line[:80]!r}. Only a last line cut "
                    "short is dropped automatically; delete the file to start afresh."
                ) from error
        if not rows:
            return  # empty (stopped before the header was complete): start afresh
        self._check_header(rows[0])
        self.done = {row["index"]: (row["successes"], row["trials"]) for row in rows[1:]}

    def _check_header(self, saved: dict[str, Any]) -> None:
        differing = {
            key: f"{key}={saved.get(key, _NOT_RECORDED)!r} there, {self.header.get(key, _NOT_RECORDED)!r} now"
            for key in sorted(set(saved) | set(self.header))
            if saved.get(key, _NOT_RECORDED) != self.header.get(key, _NOT_RECORDED)
        }
        if differing and differing.keys() <= {_FINGERPRINT, "num_rows"}:
            raise ValueError(
                f"{self.path} holds partial results for other data: its rows were computed on a dataset with content "
                f"fingerprint {saved.get(_FINGERPRINT, _NOT_RECORDED)}, this one has {self.header[_FINGERPRINT]} "
                "(rows edited, added, removed or reordered since). Its saved rows, matched by index, would be "
                "credited to other prompts. Delete it to start afresh, or rerun on the dataset it was written for."
            )
        if differing:  # a setting changed (e.g. answer_column, which changes the data too): name every difference
            raise ValueError(
                f"{self.path} holds partial results of a run with other settings ({'; '.join(differing.values())}), "
                "which would change the pass rates. Rerun with the settings it was written with, or delete it to "
                "start afresh."
            )

    def record(self, rows: dict[int, tuple[float, int]]) -> None:
        self.done.update(rows)
        if self.path is None:
            return
        is_new = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            if is_new:
                f.write(json.dumps(self.header) + "\n")
            for index, (successes, trials) in rows.items():
                f.write(json.dumps({"index": index, "successes": successes, "trials": trials}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _prompt_texts(prompts: Sequence[Any], tokenizer: PreTrainedTokenizerBase) -> list[str]:
    return [maybe_apply_chat_template({"prompt": prompt}, tokenizer)["prompt"] for prompt in prompts]


def _generate_transformers(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], settings: GenerationSettings
) -> list[str]:
    """``num_samples`` completions per prompt, grouped by prompt."""
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    inputs = inputs.to(model.device)
    sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": None}
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=settings.max_new_tokens,
            num_return_sequences=settings.num_samples,
            pad_token_id=tokenizer.pad_token_id,
            **(sampling if settings.temperature > 0 else {"do_sample": False}),
        )
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _generate_vllm(llm: Any, texts: list[str], indices: list[int], settings: GenerationSettings) -> list[str]:
    """``num_samples`` completions per prompt, grouped by prompt; row ``i`` is sampled with ``seed + i``."""
    from vllm import SamplingParams

    params = [
        SamplingParams(
            n=settings.num_samples,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_new_tokens,
            seed=settings.seed + index,
        )
        for index in indices
    ]
    return [
        completion.text for request in llm.generate(texts, params, use_tqdm=False) for completion in request.outputs
    ]


def _uses_vllm(model: Any) -> bool:
    return type(model).__module__.startswith("vllm")


def _batches(num_rows: int, done: dict[int, Any], size: int) -> Iterator[tuple[list[int], list[int]]]:
    """``(batch, missing)`` for every batch of the fixed grid ``[k * size, (k + 1) * size)`` with a row not ``done``.

    The whole batch is generated again even if some of its rows were recorded before its end was cut off: in
    ``transformers`` the rows of a batch share one sampler, so only the same batch gives the same numbers.
    """
    for start in range(0, num_rows, size):
        batch = list(range(start, min(start + size, num_rows)))
        missing = [index for index in batch if index not in done]
        if missing:
            yield batch, missing


def count_successes(
    dataset: Dataset,
    indices: list[int],
    completions: list[str],
    reward_func: RewardFunction,
    num_samples: int,
    success_threshold: float,
) -> dict[int, tuple[float, int]]:
    """Score ``num_samples`` completions per row of ``indices``; ``ValueError`` for a row that cannot be scored."""
    rows = dataset.select(indices)
    conversational = is_conversational({"prompt": rows[0]["prompt"]})
    # The call GRPO makes: `prompts`, `completions` and every other column, one entry per completion.
    repeated = {column: [value for value in rows[column] for _ in range(num_samples)] for column in rows.column_names}
    wrapped = [[{"role": "assistant", "content": text}] for text in completions] if conversational else completions
    rewards = reward_func(prompts=repeated.pop("prompt"), completions=wrapped, **repeated)
    counts = {}
    for position, index in enumerate(indices):
        group = rewards[position * num_samples : (position + 1) * num_samples]
        if any(reward is None or math.isnan(reward) for reward in group):
            raise ValueError(
                f"Row {index} (prompt {str(rows[position]['prompt'])[:80]!r}) cannot be scored by "
                f"{getattr(reward_func, '__name__', reward_func)}: it returned {group}. Fix or drop that row (e.g. an "
                "empty or unparseable ground truth) and rerun; finished rows are kept in the partial file."
            )
        counts[index] = (float(sum(reward >= success_threshold for reward in group)), len(group))
    return counts


def estimate_pass_rates(
    dataset: Dataset,
    model: PreTrainedModel | Any,
    tokenizer: PreTrainedTokenizerBase,
    reward_func: RewardFunction,
    settings: GenerationSettings,
    success_threshold: float = 0.5,
    progress_path: str | os.PathLike | None = None,
    progress_key: dict[str, Any] | None = None,
    description: str = "pass rates",
    show_progress: bool = True,
) -> np.ndarray:
    """
    Pass rate of every row of ``dataset`` (which needs a ``prompt`` column): the share of ``settings.num_samples``
    sampled completions whose reward is ``>= success_threshold``.

    ``model`` is a ``transformers`` model (left in eval mode), or a ``vllm.LLM``. With ``progress_path`` every finished
    batch is appended there and a rerun skips the rows it already holds. vLLM samples row ``i`` with ``settings.seed +
    i``; ``transformers`` samples each batch of the fixed grid of ``settings.batch_size`` rows with ``settings.seed`` +
    its first row. So a resumed run gives exactly the numbers of an uninterrupted one. The file's first line records
    the content fingerprint of ``dataset`` (:func:`trl_bots.data.task_fingerprint`) and every setting that changes a
    result (the generation settings, ``success_threshold``, the backend and ``progress_key``, JSON-able, e.g. the
    dataset, model and reward names): a run on other rows or whose settings differ refuses it.
    """
    uses_vllm = _uses_vllm(model)
    header = {
        _FINGERPRINT: task_fingerprint(dataset),
        "num_rows": len(dataset),
        **{name: getattr(settings, name) for name in GenerationSettings.__dataclass_fields__},
        "success_threshold": success_threshold,
        "backend": "vllm" if uses_vllm else "transformers",
        **(progress_key or {}),
    }
    progress = _Progress(Path(progress_path) if progress_path is not None else None, header)
    progress.load()
    if not uses_vllm:
        # Train mode would generate with dropout and, with gradient checkpointing on, without a KV cache.
        model.eval()
    with tqdm(
        total=len(dataset), initial=len(progress.done), desc=description, unit="prompt", disable=not show_progress
    ) as bar:
        for batch, missing in _batches(len(dataset), progress.done, settings.batch_size):
            texts = _prompt_texts(dataset.select(batch)["prompt"], tokenizer)
            if uses_vllm:
                completions = _generate_vllm(model, texts, batch, settings)
            else:
                torch.manual_seed(settings.seed + batch[0])
                completions = _generate_transformers(model, tokenizer, texts, settings)
            counts = count_successes(dataset, batch, completions, reward_func, settings.num_samples, success_threshold)
            progress.record({index: counts[index] for index in missing})
            bar.update(len(missing))
    return np.array([progress.done[i][0] / progress.done[i][1] for i in range(len(dataset))], dtype=np.float64)


def save_tasks(dataset: Dataset, path: str | os.PathLike) -> None:
    """Write ``dataset`` to ``path`` in the format its extension names (a folder for ``save_to_disk`` otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        dataset.to_parquet(os.fspath(path))
    elif path.suffix in (".json", ".jsonl"):
        dataset.to_json(os.fspath(path), lines=True)  # what `datasets` reads back for both
    elif path.suffix == ".csv":
        dataset.to_csv(os.fspath(path), index=False)
    else:
        dataset.save_to_disk(os.fspath(path))


@dataclass(kw_only=True)
class EstimatePassRatesArguments(GenerationSettings):
    """Arguments of ``trl-bots estimate-pass-rates``."""

    dataset_name: str = field(
        metadata={
            "help": "Dataset: a local .json/.jsonl/.parquet/.arrow/.csv file, a save_to_disk folder or a Hub name."
        }
    )
    model_name_or_path: str = field(metadata={"help": "Model to sample from: a Hub name or a local folder."})
    output_path: str = field(
        metadata={
            "help": "Where to write the dataset with the new column; the format follows the extension (.parquet, "
            ".jsonl, .json, .csv, anything else: a save_to_disk folder). Progress is kept in OUTPUT_PATH.partial.jsonl."
        }
    )
    column: str = field(default="pass_rate", metadata={"help": "Name of the pass-rate column to write."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Dataset split."})
    prompt_column: str = field(default="prompt", metadata={"help": "Column with the prompt (text or chat messages)."})
    answer_column: str = field(
        default="solution",
        metadata={"help": "Column with the ground truth; nested fields with dots, e.g. reward_model.ground_truth."},
    )
    reward: str = field(
        default="math_accuracy_reward",
        metadata={"help": "Reward function: a name from trl_bots.rewards.REWARD_FUNCTIONS or a dotted import path."},
    )
    success_threshold: float = field(default=0.5, metadata={"help": "A completion succeeds when its reward >= this."})
    use_vllm: bool | None = field(
        default=None,
        metadata={"help": "Generate with vLLM. Default: when vLLM is installed and a GPU is available."},
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype for transformers: auto, bfloat16, float32..."})


def _load_generator(args: EstimatePassRatesArguments) -> tuple[Any, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.import_utils import is_vllm_available

    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    use_vllm = args.use_vllm if args.use_vllm is not None else is_vllm_available() and torch.cuda.is_available()
    if use_vllm:
        from vllm import LLM

        return LLM(model=args.model_name_or_path, seed=args.seed), tokenizer
    model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=args.dtype)
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), tokenizer


def estimate_pass_rate_column(args: EstimatePassRatesArguments) -> Dataset:
    """``trl-bots estimate-pass-rates``: the dataset with ``args.column`` added, written to ``args.output_path``."""
    from .data import load_tasks, prepare_tasks
    from .rewards import get_reward_function

    dataset = load_tasks(args.dataset_name, args.dataset_config, args.dataset_split)
    tasks = prepare_tasks(dataset, args.prompt_column, args.answer_column)
    reward_func = get_reward_function(args.reward)
    model, tokenizer = _load_generator(args)
    progress_path = f"{args.output_path}.partial.jsonl"
    key = {
        "dataset": args.dataset_name,
        "dataset_config": args.dataset_config,
        "dataset_split": args.dataset_split,
        "prompt_column": args.prompt_column,
        "answer_column": args.answer_column,
        "model": args.model_name_or_path,
        "reward": args.reward,
    }
    if not _uses_vllm(model):
        key["dtype"] = args.dtype  # vLLM picks its own dtype
    rates = estimate_pass_rates(
        tasks, model, tokenizer, reward_func, args, args.success_threshold, progress_path, key, description=args.column
    )
    if args.column in dataset.column_names:
        dataset = dataset.remove_columns(args.column)
    dataset = dataset.add_column(args.column, rates.tolist())
    save_tasks(dataset, args.output_path)
    Path(progress_path).unlink()
    return dataset
