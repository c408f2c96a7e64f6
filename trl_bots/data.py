"""Task datasets: load from the Hub or a local file, and map their columns onto what GRPO and the rewards expect.

After :func:`prepare_tasks` a dataset has a ``prompt`` column (a string, or chat messages) and a ``solution`` column
(the ground truth the rewards compare against); every other column is kept, so reward functions and the BOTS
reference pass-rate columns still see them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk


# Builders of `datasets` for local files, by file extension.
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}

# GURU (LLM360/guru-RL-92k) rows: chat-message prompts, the ground truth nested under reward_model, and the offline
# pass rates of two reference models (the paper's weak and strong references).
GURU_ANSWER_COLUMN = "reward_model.ground_truth"
GURU_REFERENCE_COLUMNS = ("qwen2.5_7b_pass_rate", "qwen3_30b_pass_rate")


def load_tasks(name_or_path: str, config: str | None = None, split: str = "train") -> Dataset:
    """
    Load one split of a dataset: a local ``.json``/``.jsonl``/``.parquet``/``.arrow``/``.csv`` file, a folder written
    by ``Dataset.save_to_disk``, or a Hub dataset name.
    """
    path = Path(name_or_path)
    if path.is_dir() and any((path / marker).is_file() for marker in ("dataset_info.json", "dataset_dict.json")):
        dataset = load_from_disk(os.fspath(path))
        return dataset[split] if isinstance(dataset, DatasetDict) else dataset
    if path.suffix in LOCAL_FORMATS:
        if not path.is_file():
            raise FileNotFoundError(f"dataset file {name_or_path!r} does not exist.")
        return load_dataset(LOCAL_FORMATS[path.suffix], data_files={split: os.fspath(path)}, split=split)
    return load_dataset(name_or_path, name=config, split=split)


def _lookup(row: dict[str, Any], dotted: str) -> Any:
    value = row
    for key in dotted.split("."):
        value = value[key]
    return value


def _has_column(dataset: Dataset, dotted: str) -> bool:
    head, *rest = dotted.split(".")
    if head not in dataset.column_names:
        return False
    feature = dataset.features[head]
    for key in rest:
        if not isinstance(feature, dict) or key not in feature:
            return False
        feature = feature[key]
    return True


def _check_column(dataset: Dataset, field_name: str, column: str, holds: str) -> None:
    if not _has_column(dataset, column):
        raise ValueError(
            f"{field_name}={column!r} is not a column of the dataset (columns: {dataset.column_names}). Set "
            f"{field_name} to the column that holds the {holds}; nested fields are written with dots, e.g. "
            "reward_model.ground_truth."
        )


def column_values(dataset: Dataset, column: str, field_name: str, holds: str) -> list[Any]:
    """
    Every row's value of ``column``, a column or a dotted path into a nested one (``extra_info.domain``); a missing
    column is an error naming ``field_name`` (the setting that named it) and what it should hold.
    """
    _check_column(dataset, field_name, column, holds)
    head, *rest = column.split(".")
    values = dataset[head]
    for key in rest:
        values = [None if value is None else value[key] for value in values]
    return values


def prepare_tasks(dataset: Dataset, prompt_column: str = "prompt", answer_column: str | None = "solution") -> Dataset:
    """
    Copy ``prompt_column`` into ``prompt`` and ``answer_column`` (a column, or a dotted path into a nested one such
    as ``reward_model.ground_truth``) into ``solution``, as text. ``answer_column=None`` keeps no solution (for
    rewards that need none).
    """
    for field_name, column in (("prompt_column", prompt_column), ("answer_column", answer_column)):
        if column is not None:
            _check_column(dataset, field_name, column, field_name.split("_")[0])
    if prompt_column != "prompt":
        dataset = dataset.map(lambda row: {"prompt": _lookup(row, prompt_column)})
    if answer_column is not None and answer_column != "solution":
        dataset = dataset.map(lambda row: {"solution": str(_lookup(row, answer_column))})
    return dataset


def load_guru(path: str, split: str = "train") -> Dataset:
    """
    A GURU split (e.g. ``math__combined_54.4k.parquet``) ready for BOTS: ``prompt`` (chat messages) as it is, the
    ground truth from ``reward_model.ground_truth`` in ``solution``, and the reference pass-rate columns
    :data:`GURU_REFERENCE_COLUMNS` checked to be present.
    """
    dataset = prepare_tasks(load_tasks(path, split=split), prompt_column="prompt", answer_column=GURU_ANSWER_COLUMN)
    missing = [column for column in GURU_REFERENCE_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{path} lacks the GURU pass-rate columns {missing} (columns: {dataset.column_names}). Compute them with "
            "`trl-bots estimate-pass-rates`, or set bots_reference_columns to the columns the file has."
        )
    return dataset
