"""Task datasets: load from the Hub or a local file, and map their columns onto what GRPO and the rewards expect.

After :func:`prepare_tasks` a dataset has a ``prompt`` column (a string, or chat messages) and a ``solution`` column
(the ground truth the rewards compare against); every other column is kept, so reward functions and the BOTS
reference pass-rate columns still see them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets, load_dataset, load_from_disk


logger = logging.getLogger(__name__)


# Builders of `datasets` for local files, by file extension.
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}

# GURU (LLM360/guru-RL-92k) rows: chat-message prompts, the ground truth nested under reward_model, and the offline
# pass rates of two reference models (the paper's weak and strong references).
GURU_ANSWER_COLUMN = "reward_model.ground_truth"
GURU_REFERENCE_COLUMNS = ("qwen2.5_7b_pass_rate", "qwen3_30b_pass_rate")
GURU_DOMAIN_COLUMN = "domain"  # added by load_guru from the file names


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


def arrow_column(dataset: Dataset, name: str) -> pa.ChunkedArray:
    """
    The column ``name`` of ``dataset`` as Arrow values in row order, read without converting a value to Python:
    ``dataset[name]`` formats row after row (about 15 s for a million numbers), the Arrow column is ready at once.
    After ``shuffle`` or ``select`` a dataset's rows are an indices mapping over its table, taken here in one Arrow
    call (``flatten_indices()`` would rewrite the whole table, and ``with_format("arrow")`` turns the indices into a
    Python list: seconds at a million rows).
    """
    values = dataset.data.column(name)
    if dataset._indices is not None:  # datasets' own record of the rows a shuffle or select kept, in order
        values = values.take(dataset._indices.column(0))
    return values


def column_values(dataset: Dataset, column: str, field_name: str, holds: str) -> pa.ChunkedArray:
    """
    Every row's value of ``column``, a column or a dotted path into a nested one (``extra_info.domain``), as Arrow
    values (:func:`arrow_column`); a missing column is an error naming ``field_name`` (the setting that named it) and
    what it should hold.
    """
    _check_column(dataset, field_name, column, holds)
    head, *rest = column.split(".")
    values = arrow_column(dataset, head)
    for key in rest:
        values = pc.struct_field(values, key)  # null where the parent is null
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


def load_guru(
    paths: str | os.PathLike | list[str | os.PathLike], split: str = "train", pass_rates: bool = True
) -> Dataset:
    """
    GURU data ready for BOTS, from one file (e.g. ``math__combined_54.4k.parquet``), a folder of GURU files, or a list
    of files and folders: ``prompt`` (chat messages) as it is, the ground truth from ``reward_model.ground_truth`` in
    ``solution``, the reference pass-rate columns :data:`GURU_REFERENCE_COLUMNS` checked to be present, and each
    task's domain in a ``domain`` column: the part of its file name before ``__`` (GURU names its files
    ``<domain>__<source>.parquet``: math, codegen, logic, simulation, table, stem). Set
    ``bots_domain_column="domain"`` for per-domain metrics and quotas, and use
    :func:`trl_bots.rewards.guru_reward`, which scores each row by its domain.

    Files whose other columns differ in type (GURU's ``extra_info`` differs between domains) or lack a column the
    others have are aligned by storing those columns as JSON text (``null`` where a file lacks the column), with a
    warning naming them; numbers that differ only in type (integer pass rates beside float ones) are read as float64.
    Prompts of different types (plain text beside chat messages; the same messages stored as ``large_string`` are
    cast) and a file named twice (also inside a named folder) are errors. ``pass_rates=False`` skips the pass-rate
    check, for evaluation files (e.g. MATH500), which have none.
    """
    files = _guru_files(paths)
    parts = []
    for file in files:
        dataset = prepare_tasks(load_tasks(os.fspath(file), split=split), "prompt", GURU_ANSWER_COLUMN)
        missing = [column for column in GURU_REFERENCE_COLUMNS if pass_rates and column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{file} lacks the GURU pass-rate columns {missing} (columns: {dataset.column_names}). Compute them "
                "with `trl-bots estimate-pass-rates`, or set bots_reference_columns to the columns the file has."
            )
        if GURU_DOMAIN_COLUMN in dataset.column_names:
            raise ValueError(
                f"{file} already has a {GURU_DOMAIN_COLUMN!r} column, where load_guru puts the domain from the file "
                "name. Rename that column first."
            )
        parts.append(dataset.add_column(GURU_DOMAIN_COLUMN, [file.stem.split("__")[0]] * len(dataset)))
    return concatenate_datasets(_align_columns(parts, files)) if len(parts) > 1 else parts[0]


def _guru_files(paths: str | os.PathLike | list[str | os.PathLike]) -> list[Path]:
    """The data files named by ``paths``: files as given, folders expanded to their data files (sorted by name)."""
    files: list[Path] = []
    for path in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        if path.is_dir():
            found = sorted(file for file in path.iterdir() if file.suffix in LOCAL_FORMATS and file.is_file())
            if not found:
                raise FileNotFoundError(
                    f"{path} holds no data file ({', '.join(sorted(LOCAL_FORMATS))}). Point load_guru at GURU's "
                    "parquet files, e.g. the folder of `huggingface-cli download LLM360/guru-RL-92k`."
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"GURU data {os.fspath(path)!r} does not exist.")
    if not files:
        raise ValueError("load_guru needs at least one file or folder.")
    resolved = [file.resolve() for file in files]
    repeated = sorted(
        {os.fspath(file) for file, real in zip(files, resolved, strict=True) if resolved.count(real) > 1}
    )
    if repeated:
        raise ValueError(
            f"load_guru's paths name files more than once (as a file and inside a folder, or twice over): {repeated}. "
            "Their tasks would be in the pool twice; name every file once."
        )
    return files


def _is_number(feature: Any) -> bool:
    return isinstance(feature, Value) and feature.dtype.startswith(("int", "uint", "float"))


def _align_columns(parts: list[Dataset], files: list[Path]) -> list[Dataset]:
    """Make the parts' features equal: numbers of different types become float64; other columns that differ in type
    or are not in every part become JSON text. The prompt is never turned into text: GRPO would train on it verbatim."""
    names = sorted({name for part in parts for name in part.column_names})
    differing = [
        name
        for name in names
        if any(name not in part.features for part in parts)
        or any(part.features[name] != parts[0].features.get(name) for part in parts)
    ]
    if "prompt" in differing:  # the same messages stored with other Arrow types (large_string) cast; others do not
        try:
            parts = [part.cast_column("prompt", parts[0].features["prompt"]) for part in parts]
        except TypeError as error:
            forms = {file.name: str(part.features["prompt"]) for part, file in zip(parts, files, strict=True)}
            raise ValueError(
                f"load_guru: the prompt column differs in type between the files {forms}; joined as JSON text, the "
                "prompts would be trained on verbatim. Bring the prompts of every file to one form first (chat "
                "messages with the same fields)."
            ) from error
        differing.remove("prompt")
    if not differing:
        return parts
    numbers = [name for name in differing if all(_is_number(part.features.get(name)) for part in parts)]
    texts = [name for name in differing if name not in numbers]
    if numbers:
        logger.warning(
            f"load_guru: the columns {numbers} differ in numeric type between {[f.name for f in files]}; "
            "they are read as float64."
        )
    if texts:
        logger.warning(
            f"load_guru: the columns {texts} differ in type between {[f.name for f in files]} or are missing in some; "
            "they are kept as JSON text (json.loads gives the value back; null where a file lacks the column)."
        )

    def align(part: Dataset) -> Dataset:
        # Explicit types: left to itself, map would keep a number column's type for its JSON text ("0.5" -> 0.5).
        features = Features({**part.features, **dict.fromkeys(numbers, Value("float64"))})
        part = part.cast(features) if numbers else part
        if not texts:
            return part
        features = Features({**features, **dict.fromkeys(texts, Value("string"))})
        return part.map(lambda row: {name: json.dumps(row.get(name)) for name in texts}, features=features)

    aligned = [align(part) for part in parts]
    return [part.select_columns(aligned[0].column_names) for part in aligned]


def task_fingerprint(dataset: Dataset, batch_size: int = 1000) -> str:
    """
    A 16-hex-digit fingerprint of a task list: SHA-256 over every row's values, in row order (columns by name). Two
    datasets with the same rows in the same order have the same fingerprint, however they were built or stored; any
    other row, order or value changes it. Reads the whole dataset once (about a second per 50,000 GURU rows).
    """
    digest = hashlib.sha256()
    for table in dataset.with_format("arrow").iter(batch_size=batch_size):
        digest.update(json.dumps(table.to_pydict(), sort_keys=True, default=_json_value).encode())
    return digest.hexdigest()[:16]


def _json_value(value: Any) -> str:
    """bytes (images, audio) by content; dates and decimals by their text."""
    return value.hex() if isinstance(value, bytes) else str(value)
