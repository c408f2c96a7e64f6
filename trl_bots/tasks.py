"""The train dataset as the selector's input: one row per task, checked, with its reference pass rates and domains.

BOTS identifies a task by its row number, added to every row as the column :data:`TASK_ID_COLUMN`; the rows must be the
same on every process and when a run resumes (:func:`tasks_fingerprint`).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from torch.utils.data import IterableDataset as TorchIterableDataset

from .active_pool import ActivePool
from .config import BOTSConfig
from .data import arrow_column, column_values, task_fingerprint
from .domains import TaskDomains
from .task_stream import TaskStream
from .validation import check_enough_tasks


logger = logging.getLogger(__name__)


TASK_ID_COLUMN = "bots_task_id"
TOO_FEW_ROWS = (
    "One generation batch needs {batch_size} distinct tasks (generation_batch_size={generation_batch_size} // "
    "num_generations={num_generations}), but train_dataset has only {available} rows. Use more tasks or a smaller "
    "generation_batch_size."
)
TOO_FEW_WEIGHTED_ROWS = (
    "One generation batch needs {batch_size} distinct tasks (generation_batch_size // num_generations), but the "
    "domains with a positive weight in bots_domain_weights hold only {available} tasks. Give weight to more domains "
    "or use a smaller batch."
)


def check_train_dataset(train_dataset: Any, args: BOTSConfig, environment_factory: Any = None) -> Dataset:
    """The train dataset if BOTS can select among its rows, otherwise an error saying what to pass instead; a warning
    if `shuffle_dataset=False` asks for an order that the selector does not follow."""
    # Checked before TRL's own checks for a missing dataset (environment_factory, max_steps): none of their fixes
    # gives BOTS a pool of tasks, so they would only lead to this message one fix later.
    if train_dataset is None:
        instead = (
            "An environment that makes up its own tasks in reset() leaves BOTS nothing to choose among: pass "
            "train_dataset with one row per task (e.g. a seed or task-id column that reset(**row) reads, plus the "
            "'environment' column when environment_factory is a dict), or train with trl.GRPOTrainer."
            if environment_factory is not None
            else "Pass the tasks as a datasets.Dataset with a 'prompt' column."
        )
        raise ValueError(
            "BOTSGRPOTrainer needs a train_dataset, got None: BOTS chooses every generation batch among the rows "
            f"of train_dataset (one row per task). {instead}"
        )
    if isinstance(train_dataset, TorchIterableDataset):
        raise TypeError(
            f"train_dataset must be a datasets.Dataset or datasets.IterableDataset, got {type(train_dataset).__name__}"
            " (a torch IterableDataset). Wrap the stream with datasets.IterableDataset.from_generator."
        )
    if not isinstance(train_dataset, Dataset):
        raise TypeError(f"train_dataset must be a datasets.Dataset, got {type(train_dataset).__name__}.")
    # GRPO reads every row's `prompt` at generation; only an environment may supply it (TRL defaults it then).
    if environment_factory is None and "prompt" not in train_dataset.column_names:
        raise ValueError(
            f"train_dataset has no 'prompt' column, which GRPO reads for every task (its columns: "
            f"{train_dataset.column_names}). Name the column holding the prompts 'prompt' "
            "(dataset.rename_column(...), or trl_bots.data.prepare_tasks(dataset, prompt_column=...))."
        )
    if TASK_ID_COLUMN in train_dataset.column_names:
        raise ValueError(
            f"train_dataset already has a column {TASK_ID_COLUMN!r}, which BOTS adds itself; rename or remove it."
        )
    check_enough_tasks(
        args.tasks_per_round,
        len(train_dataset),
        TOO_FEW_ROWS,
        generation_batch_size=args.generation_batch_size,
        num_generations=args.num_generations,
    )
    if not args.shuffle_dataset:
        warnings.warn(
            f"shuffle_dataset=False has no effect with BOTSGRPOTrainer: the selector (bots_strategy="
            f"{args.bots_strategy!r}) chooses the tasks of every generation batch, so rows are not read in dataset "
            "order. The closest to an unshuffled GRPO run is bots_strategy='uniform': as there, every task is "
            "served once per epoch, but in a random order (a fresh permutation each epoch, seeded by bots_seed, or "
            "seed); bots_strategy='easy2hard' repeats one fixed order, easiest first by the reference pass rates.",
            UserWarning,
            stacklevel=3,  # the user's BOTSGRPOTrainer(...) call
        )
    return train_dataset


def uses_pool(train_dataset: Any, args: BOTSConfig) -> bool:
    """Whether BOTS keeps an active pool: a stream (`IterableDataset`), or a map-style dataset with `bots_pool_size`."""
    return isinstance(train_dataset, IterableDataset) or (
        isinstance(train_dataset, Dataset) and args.bots_pool_size is not None
    )


def task_pool(
    train_dataset: Dataset | IterableDataset, args: BOTSConfig, environment_factory: Any = None
) -> ActivePool:
    """The active pool, filled from the start of the stream: `args.pool_size` tasks, or the whole stream if shorter."""
    if isinstance(train_dataset, IterableDataset) and args.max_steps <= 0:
        raise ValueError(
            f"train_dataset is a stream (IterableDataset), which has no length, so training needs max_steps > 0 (got "
            f"max_steps={args.max_steps}), as in TRL. Set max_steps."
        )
    if isinstance(train_dataset, IterableDataset) and args.accelerator_config.dispatch_batches:
        # TRL's refusal, which GRPO no longer sees: its DataLoader gets BOTS's map-style placeholders, on which the
        # setting fails at the first step.
        raise ValueError(
            "Iterable datasets require `dispatch_batches=False`, but it is set to `True` in `accelerator_config`. "
            "Please set it to `False`."
        )
    refusals = {  # a setting an active pool cannot follow -> why, and what to do
        "bots_domain_column": (
            args.bots_domain_column is not None,
            "domain quotas need every task's domain up front. Train on a map-style dataset without bots_pool_size, or "
            "leave bots_domain_column out.",
        ),
        "bots_strategy='easy2hard'": (
            args.bots_strategy == "easy2hard",
            "its fixed order needs every task up front. Use bots_strategy='uniform' as the baseline.",
        ),
    }
    for name, (given, reason) in refusals.items():
        if given:
            raise ValueError(f"{name} is not supported with an active pool (a stream, or bots_pool_size): {reason}")
    required = () if environment_factory is not None else ("prompt",)
    stream = TaskStream(train_dataset, restart=args.bots_stream_end == "restart", required=required)
    pool = ActivePool(stream, args.pool_size)
    if pool.size and TASK_ID_COLUMN in pool.rows[0]:
        raise ValueError(
            f"train_dataset's rows already have a column {TASK_ID_COLUMN!r}, which BOTS adds itself; rename or remove it."
        )
    check_enough_tasks(
        args.tasks_per_round,
        pool.size,
        TOO_FEW_ROWS,
        generation_batch_size=args.generation_batch_size,
        num_generations=args.num_generations,
    )
    if pool.size < args.pool_size:
        logger.warning(
            "BOTS: the stream holds %d tasks, fewer than the pool's %d (bots_pool_size): the pool holds them all.",
            pool.size,
            args.pool_size,
        )
    return pool


def row_reference_pass_rates(rows: list[dict[str, Any]], columns: list[str] | None) -> np.ndarray | None:
    """The `[rows, 2]` reference pass rates of stream rows (newcomers to an active pool), or None without columns."""
    if columns is None:
        return None
    try:
        return np.asarray([[row[column] for column in columns] for row in rows], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"bots_reference_columns {columns} must hold one number per row (a pass rate in [0, 1]), but a row of the "
            f"stream could not be read as numbers: {error}. Fill missing values or drop those rows."
        ) from error


def reference_pass_rates(dataset: Dataset, columns: list[str] | None) -> np.ndarray | None:
    """The `[tasks, 2]` reference pass rates (weak, strong) from `bots_reference_columns`, or None without them."""
    if columns is None:
        return None
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"bots_reference_columns names {missing}, which the train dataset does not have (its columns: "
            f"{dataset.column_names}). Add the reference pass-rate columns or fix bots_reference_columns."
        )
    try:
        # Numbers come as they are (missing values as NaN); text is parsed as numbers, or an error.
        return np.stack(
            [
                np.asarray(arrow_column(dataset, column).to_numpy(zero_copy_only=False), dtype=np.float64)
                for column in columns
            ],
            axis=1,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"bots_reference_columns {columns} must hold one number per row (a pass rate in [0, 1]), but they could "
            f"not be read as numbers: {error}. Fill missing values or drop those rows."
        ) from error


def task_domains(dataset: Dataset, args: BOTSConfig) -> TaskDomains | None:
    """Each task's domain from `bots_domain_column`, with `bots_domain_weights`, checked under the config's names."""
    if args.bots_domain_column is None:
        return None
    labels = column_values(dataset, args.bots_domain_column, "bots_domain_column", "domain of each task")
    domains = TaskDomains.from_labels(labels, len(dataset), name=f"bots_domain_column={args.bots_domain_column!r}")
    if args.bots_domain_weights is None:
        return domains
    domains = domains.with_weights(args.bots_domain_weights, name="bots_domain_weights")
    check_enough_tasks(args.tasks_per_round, domains.weighted_tasks, TOO_FEW_WEIGHTED_ROWS)
    return domains


def tasks_fingerprint(dataset: Dataset, args: BOTSConfig) -> str:
    """The fingerprint of the task list: the rows, without the reference pass rates, which feed only the implicit
    evidence and may be added or recomputed between runs."""
    return task_fingerprint(dataset.remove_columns(args.bots_reference_columns or []))


def check_same_tasks_on_every_process(accelerator: Any, fingerprint: str) -> None:
    """Every process must hold the same rows in the same order: a task id means the same row on every rank."""
    value = int.from_bytes(bytes.fromhex(fingerprint), "big", signed=True)
    values = accelerator.gather(torch.tensor([value], device=accelerator.device)).cpu().tolist()
    fingerprints = [(value % 2**64).to_bytes(8, "big").hex() for value in values]
    differing = [rank for rank, value in enumerate(fingerprints) if value != fingerprints[0]]
    if differing:
        raise ValueError(
            f"The train_dataset differs across processes: task-list fingerprints per rank {fingerprints}, ranks "
            f"{differing} differ from rank 0. BOTS identifies a task by its row number, so every process must "
            "build the same rows in the same order (e.g. shuffle with the same seed on every process, or not at "
            "all)."
        )


def with_task_ids(dataset: Dataset) -> Dataset:
    """The dataset with each row's index in :data:`TASK_ID_COLUMN`."""
    return dataset.add_column(TASK_ID_COLUMN, np.arange(len(dataset), dtype=np.int64))


def check_environments(environment_pool: dict[str | None, list[Any]]) -> None:
    """Refuse environments whose `reset` cannot take the task id column, before the first round calls it.

    `environment_pool` is `GRPOTrainer._environment_pool`: TRL probed one instance of each environment (by name).
    """
    # GRPO calls `reset(**row)` with every column of the row.
    for name, (environment, *_) in environment_pool.items():
        parameters = inspect.signature(environment.reset).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD or p.name == TASK_ID_COLUMN for p in parameters):
            label = "environment_factory" if name is None else f"environment_factory[{name!r}]"
            raise TypeError(
                f"{label} builds {type(environment).__name__}, whose reset{inspect.signature(environment.reset)} "
                f"cannot take the column {TASK_ID_COLUMN!r}: GRPO calls reset(**row) with every column of the "
                f"row, and BOTS adds {TASK_ID_COLUMN!r} (the row's index) to each. Add **kwargs (or a "
                f"{TASK_ID_COLUMN} parameter) to reset."
            )
