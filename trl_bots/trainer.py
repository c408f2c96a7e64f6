"""BOTSGRPOTrainer: TRL's GRPOTrainer with Bayesian Online Task Selection choosing every generation batch."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import textwrap
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from torch.utils.data import IterableDataset as TorchIterableDataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from .checkpoints import (
    SAMPLER_FILE,
    latest_complete_checkpoint,  # noqa: F401  (its documented place: trl_bots.trainer)
    read_json,
    resume_refusal,
)
from .config import BOTSConfig
from .data import column_values, task_fingerprint
from .domains import encode_domains, resolve_domain_weights
from .sampler import BOTSSampler
from .selector import BOTSSelector
from .state import SELECTOR_FILE, write_atomic


logger = logging.getLogger(__name__)

TASK_ID_COLUMN = "bots_task_id"
ROUND_STATE_FORMAT = "trl-bots-round/2"
# A checkpoint taken inside a round holds each process's buffered generation batch (GRPO's `_buffered_inputs`).
ROUND_BUFFER_FILE = "bots_round_{rank}.pt"

BOTS_CITATION = textwrap.dedent("""\
    @misc{shen2025bots,
        title         = {{BOTS: A Unified Framework for Bayesian Online Task Selection in LLM Reinforcement Finetuning}},
        author        = {Qianli Shen and Daoyuan Chen and Yilun Huang and Zhenqing Ling and Yaliang Li and Bolin Ding and Jingren Zhou},
        year          = 2025,
        eprint        = {arXiv:2510.26374},
    }""")


def _reference_pass_rates(dataset: Dataset, columns: list[str] | None) -> np.ndarray | None:
    if columns is None:
        return None
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"bots_reference_columns names {missing}, which the train dataset does not have (its columns: "
            f"{dataset.column_names}). Add the reference pass-rate columns or fix bots_reference_columns."
        )
    try:
        return np.stack([np.asarray(dataset[column], dtype=np.float64) for column in columns], axis=1)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"bots_reference_columns {columns} must hold one number per row (a pass rate in [0, 1]), but they could "
            f"not be read as numbers: {error}. Fill missing values or drop those rows."
        ) from error


def _domain_labels(dataset: Dataset, args: BOTSConfig) -> list[str] | None:
    """Each task's domain from `bots_domain_column`, checked (with `bots_domain_weights`) under the config's names."""
    if args.bots_domain_column is None:
        return None
    labels = column_values(dataset, args.bots_domain_column, "bots_domain_column", "domain of each task")
    name = f"bots_domain_column={args.bots_domain_column!r}"
    names, codes = encode_domains(labels, len(dataset), name=name)
    sizes = np.bincount(codes, minlength=len(names))
    if args.bots_domain_weights is not None:
        weights = resolve_domain_weights(args.bots_domain_weights, names, sizes, name="bots_domain_weights")
        tasks_per_batch = args.generation_batch_size // args.num_generations
        if tasks_per_batch > sizes[weights > 0].sum():
            raise ValueError(
                f"One generation batch needs {tasks_per_batch} distinct tasks (generation_batch_size // "
                f"num_generations), but the domains with a positive weight in bots_domain_weights hold only "
                f"{int(sizes[weights > 0].sum())} tasks. Give weight to more domains or use a smaller batch."
            )
    return labels


@dataclass(frozen=True)
class SelectedRound:
    """One generation batch: the tasks the selector chose for it, and how the choice was made."""

    tasks: np.ndarray  # the B distinct task ids, in selection order: slot j holds tasks[j]
    evidence_lag: int  # rounds selected before this one whose rewards the selector had not seen yet
    selection_ms: float  # wall time of the selector's choice


def _read_round_state(state: dict[str, Any], tasks_per_round: int, selector: BOTSSelector) -> tuple[int, np.ndarray]:
    """Validate a round state file's content against the restored selector; return (micro-step, round's tasks)."""
    if state.get("format") != ROUND_STATE_FORMAT:
        raise ValueError(f"format is {state.get('format')!r}, expected {ROUND_STATE_FORMAT!r}")
    micro_step, rounds = state["micro_step"], state["rounds_selected"]
    for name, value in (("micro_step", micro_step), ("rounds_selected", rounds)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if rounds != selector.round:
        # Every selected round is credited within the same training step, so a checkpoint always holds both equal.
        raise ValueError(
            f"it records {rounds} selected rounds but {SELECTOR_FILE} has been updated {selector.round} times: the "
            "two files come from different checkpoints"
        )
    tasks = np.asarray(state["tasks"], dtype=np.int64)
    if (
        tasks.shape != (tasks_per_round,)
        or tasks.min() < 0
        or tasks.max() >= selector.num_tasks
        or np.unique(tasks).size != tasks.size
    ):
        raise ValueError(
            f"the saved round {tasks.tolist()} is not {tasks_per_round} distinct task ids in "
            f"[0, {selector.num_tasks}): it was saved with another dataset or generation_batch_size"
        )
    return micro_step, tasks


def _invalid_round_state(path: str, error: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a valid BOTS round state ({error}). Resume from the checkpoint folder as BOTSGRPOTrainer wrote "
        "it, or from an earlier one."
    )


class BOTSGRPOTrainer(GRPOTrainer):
    """
    [`trl.GRPOTrainer`] whose generation batches are chosen by Bayesian Online Task Selection
    ([BOTS](https://huggingface.co/papers/2510.26374)).

    Each dataset row is a task. Every generation batch, a [`BOTSSelector`] (the live one is `trainer.selector`, on
    every process) picks the `generation_batch_size // num_generations` tasks whose pass rate is probably closest to
    `bots_target_pass_rate`; after GRPO scores the completions, the selector is updated with every task's successes
    and scored trials, gathered over all processes.

    Changes with respect to [`trl.GRPOTrainer`], everything else (generation, rewards, advantages, loss, logging,
    evaluation) is inherited unchanged:

    - `__init__`: validates the dataset (and that environments' `reset` can take the row's columns), adds a
      `bots_task_id` column (the row index), builds the selector.
    - `_set_signature_columns_if_needed`: keeps `bots_task_id` when `remove_unused_columns=True`.
    - `_get_train_sampler`: returns a [`BOTSSampler`], which yields *slots* ("the j-th task of the current round") in
      RepeatSampler's layout and length; the DataLoader fetches rows `0..B-1` as placeholders. Hooks that read the
      raw batch find the rows trained on in `trainer.bots_round_tasks` (see there).
    - `_generate_and_score_completions`: in training, when GRPO is about to generate a round, asks the selector for
      the round's B tasks and replaces every placeholder row by its task's dataset row (same keys). Evaluation is
      untouched.
    - `_calculate_rewards`: after the inherited (already gathered) rewards, credits each task's successes, checks that
      all processes hold the same selector, and logs the `bots/*` metrics and the task id / posterior mean columns of
      the completions table.
    - `_save_checkpoint`, `_load_optimizer_and_scheduler`: save and restore the selector, GRPO's micro-step counter
      and, inside a round, each process's buffered generation batch (`bots_selector.safetensors`, `bots_sampler.json`,
      `bots_round_<rank>.pt`).
    - `save_model`: writes the selector state (`bots_selector.safetensors`) beside the model.
    - `create_model_card`: appends a BOTS section; the card carries the `bots` tag.

    Freshness: a round is selected when GRPO generates it, not when the DataLoader reads it. Accelerate reads one batch
    ahead, the Trainer reads all `gradient_accumulation_steps` batches of an optimizer step at once, and DataLoader
    workers prefetch more; all of that read-ahead fetches only placeholders. GRPO generates rounds one after the
    other, and a round's rewards are credited within the same `_generate_and_score_completions` call that selected
    it, so every earlier round is credited before the next is selected: `bots/evidence_lag` (rounds selected minus
    rounds credited, at selection time) is 0 by construction, for every schedule and any `dataloader_num_workers`.

    Resuming from a checkpoint continues the selection bit-identically. A checkpoint taken in the middle of a round
    (`num_iterations * steps_per_generation > gradient_accumulation_steps`) holds the completions GRPO had buffered
    for the rest of the round, and the resumed run trains on them instead of generating other ones (about 16-24 bytes
    per prompt-plus-completion token of each process's share of the round, only in such checkpoints). With several
    processes, a round is credited only after a cross-process checksum of the selector: a process that diverged stops
    training with an error naming it.
    """

    _tag_names = ["trl", "grpo", "bots"]

    def __init__(self, model, reward_funcs=None, args: BOTSConfig | None = None, train_dataset=None, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = BOTSConfig(f"{model_name.split('/')[-1]}-BOTS")
        if not isinstance(args, BOTSConfig):
            raise TypeError(f"args must be a BOTSConfig, got {type(args).__name__}. Build a BOTSConfig instead.")
        train_dataset = self._check_train_dataset(train_dataset, args, kwargs.get("environment_factory"))
        if not args.shuffle_dataset:
            warnings.warn(
                f"shuffle_dataset=False has no effect with BOTSGRPOTrainer: the selector (bots_strategy="
                f"{args.bots_strategy!r}) chooses the tasks of every generation batch, so rows are not read in dataset "
                "order. The closest to an unshuffled GRPO run is bots_strategy='uniform': as there, every task is "
                "served once per epoch, but in a random order (a fresh permutation each epoch, seeded by bots_seed, or "
                "seed); bots_strategy='easy2hard' repeats one fixed order, easiest first by the reference pass rates.",
                UserWarning,
                stacklevel=2,
            )
        self.selector = BOTSSelector(
            len(train_dataset),
            reference_pass_rates=_reference_pass_rates(train_dataset, args.bots_reference_columns),
            target=args.bots_target_pass_rate,
            forgetting=args.bots_forgetting,
            implicit_weight=args.bots_implicit_weight,
            thompson=args.bots_thompson,
            temperature=args.bots_temperature,
            prior=(args.bots_prior_alpha, args.bots_prior_beta),
            pseudo_count=args.bots_pseudo_count if args.bots_pseudo_count is not None else args.num_generations,
            cap_momentum=args.bots_cap_momentum,
            cap_fit=args.bots_cap_fit,
            seed=args.bots_seed if args.bots_seed is not None else args.seed,
            strategy=args.bots_strategy,
            adaptive_implicit_weight=args.bots_adaptive_implicit_weight,
            domains=_domain_labels(train_dataset, args),
            domain_weights=args.bots_domain_weights,
        )
        # Task ids are row numbers: the rows must match across processes and on resume. The reference pass rates feed
        # only the implicit evidence and may be added or recomputed between runs.
        self.task_fingerprint = task_fingerprint(train_dataset.remove_columns(args.bots_reference_columns or []))
        train_dataset = train_dataset.add_column(TASK_ID_COLUMN, np.arange(len(train_dataset), dtype=np.int64))
        self._bots_rounds_selected = 0  # over the whole run, restored on resume
        self._bots_unscored_rounds = 0  # consecutive rounds without a scored completion, restored on resume
        self._bots_warned_unscored = False
        self._bots_tasks: np.ndarray | None = None  # the task of each slot of the round GRPO generates or trains on
        self._bots_uncredited: SelectedRound | None = None  # the round just selected, until its rewards are credited
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if self.accelerator.num_processes > 1:
            self._check_same_tasks_on_every_process()
        self._check_environments()
        if args.bots_success_reward is not None and args.bots_success_reward not in self.reward_func_names:
            raise ValueError(
                f"bots_success_reward={args.bots_success_reward!r} is not one of the reward functions "
                f"{self.reward_func_names}. Use one of these names, or None for the weighted total reward."
            )

    def _check_same_tasks_on_every_process(self) -> None:
        """Every process must hold the same rows in the same order: a task id means the same row on every rank."""
        value = int.from_bytes(bytes.fromhex(self.task_fingerprint), "big", signed=True)
        values = self.accelerator.gather(torch.tensor([value], device=self.accelerator.device)).cpu().tolist()
        fingerprints = [(value % 2**64).to_bytes(8, "big").hex() for value in values]
        differing = [rank for rank, value in enumerate(fingerprints) if value != fingerprints[0]]
        if differing:
            raise ValueError(
                f"The train_dataset differs across processes: task-list fingerprints per rank {fingerprints}, ranks "
                f"{differing} differ from rank 0. BOTS identifies a task by its row number, so every process must "
                "build the same rows in the same order (e.g. shuffle with the same seed on every process, or not at "
                "all)."
            )

    @property
    def bots_round_tasks(self) -> np.ndarray | None:
        """
        The dataset rows of the round GRPO generated last, in slot order (`None` before the first round): the rows
        trained on. Read it from callbacks (`on_step_end`), reward functions or after `super().training_step()`.

        The train DataLoader delivers placeholder rows `0..B-1` whose `bots_task_id` is the slot `j`; BOTS selects the
        round and puts row `bots_round_tasks[j]` in its place when GRPO generates, i.e. inside `training_step`. Before
        that call (in `on_step_begin`, or a `training_step` override before `super()`) a generating step still shows
        the previous round. The completions table (`log_completions=True`) has the row per completion in its
        `bots_task_id` column.
        """
        return None if self._bots_tasks is None else self._bots_tasks.copy()

    # Overridden to refuse, up front and by name, a folder that cannot be resumed from: an incomplete checkpoint (a
    # process killed while saving leaves one behind, and `resume_from_checkpoint=True` picks it, being the newest), a
    # checkpoint without BOTS state, a mistyped or missing path. The Trainer would load the model first, then stop with
    # a bare FileNotFoundError or JSONDecodeError, or resume with the selector at its prior.
    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        if resume_from_checkpoint is True:  # the Trainer's own choice, the newest folder; if none, it raises itself
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True
        if isinstance(resume_from_checkpoint, (str, os.PathLike)) and (
            refusal := resume_refusal(resume_from_checkpoint)
        ):
            raise ValueError(refusal)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    @staticmethod
    def _check_train_dataset(train_dataset, args: BOTSConfig, environment_factory=None) -> Dataset:
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
        if isinstance(train_dataset, (IterableDataset, TorchIterableDataset)):
            raise ValueError(
                f"BOTS selects tasks by index, so train_dataset must be a map-style datasets.Dataset, got "
                f"{type(train_dataset).__name__}. Load the data without streaming (or call "
                "Dataset.from_generator on the stream)."
            )
        if not isinstance(train_dataset, Dataset):
            raise TypeError(f"train_dataset must be a datasets.Dataset, got {type(train_dataset).__name__}.")
        if TASK_ID_COLUMN in train_dataset.column_names:
            raise ValueError(
                f"train_dataset already has a column {TASK_ID_COLUMN!r}, which BOTS adds itself; rename or remove it."
            )
        tasks_per_batch = args.generation_batch_size // args.num_generations
        if len(train_dataset) < tasks_per_batch:
            raise ValueError(
                f"One generation batch needs {tasks_per_batch} distinct tasks (generation_batch_size="
                f"{args.generation_batch_size} // num_generations={args.num_generations}), but train_dataset has "
                f"only {len(train_dataset)} rows. Use more tasks or a smaller generation_batch_size."
            )
        return train_dataset

    def _check_environments(self) -> None:
        """Refuse environments whose `reset` cannot take the task id column, before the first round calls it."""
        if self.environment_factories is None:
            return
        # TRL probed one instance of each environment; GRPO calls `reset(**row)` with every column of the row.
        for name, (environment, *_) in self._environment_pool.items():
            parameters = inspect.signature(environment.reset).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD or p.name == TASK_ID_COLUMN for p in parameters):
                label = "environment_factory" if name is None else f"environment_factory[{name!r}]"
                raise TypeError(
                    f"{label} builds {type(environment).__name__}, whose reset{inspect.signature(environment.reset)} "
                    f"cannot take the column {TASK_ID_COLUMN!r}: GRPO calls reset(**row) with every column of the "
                    f"row, and BOTS adds {TASK_ID_COLUMN!r} (the row's index) to each. Add **kwargs (or a "
                    f"{TASK_ID_COLUMN} parameter) to reset."
                )

    # Overridden so that `remove_unused_columns=True` does not drop the task id column.
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if TASK_ID_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TASK_ID_COLUMN]

    # Overridden to read slots instead of tasks: the DataLoader reads ahead of training, so choosing tasks when it
    # reads them would ignore the rewards of the rounds still in flight. The layout is RepeatSampler's.
    def _get_train_sampler(self, dataset=None) -> BOTSSampler:
        return BOTSSampler(
            len(dataset if dataset is not None else self.train_dataset),
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
        )

    # Overridden because GRPO calls it exactly when it generates a round (from `_prepare_inputs`, once per
    # `steps_per_generation * num_iterations` micro-steps, or right after resuming), i.e. after every earlier round's
    # rewards were credited: the latest moment to choose the round's tasks, and the only one that sees all evidence.
    def _generate_and_score_completions(self, inputs):
        if self.model.training:
            inputs = self._fill_round(inputs)
        return super()._generate_and_score_completions(inputs)

    def _fill_round(self, placeholders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the DataLoader's placeholder rows (one per slot) by the dataset rows of the round's tasks."""
        slots = [int(row[TASK_ID_COLUMN]) for row in placeholders]
        tasks_per_round = self.args.generation_batch_size // self.num_generations
        gathered = self.accelerator.gather(torch.tensor(slots, device=self.accelerator.device)).cpu().numpy()
        if not np.array_equal(gathered, np.repeat(np.arange(tasks_per_round), self.num_generations)):
            raise RuntimeError(
                f"BOTS expected the generation batch to hold slots 0..{tasks_per_round - 1}, each "
                f"{self.num_generations} times in a row, over all processes, but got {gathered.tolist()}. The train "
                "DataLoader reorders or drops samples (e.g. a custom sampler, split_batches or dispatch_batches); "
                "BOTS needs GRPO's layout."
            )
        if self._in_round():
            raise RuntimeError(
                f"GRPO generates in the middle of a round (micro-step {self._step}), which BOTS cannot select or "
                "credit: the round's buffered generation batch is missing. Resume from a checkpoint written by "
                "BOTSGRPOTrainer, which holds it."
            )
        self._bots_uncredited = self._select_round(tasks_per_round)
        self._bots_tasks = self._bots_uncredited.tasks
        tasks = self._bots_tasks[slots].tolist()
        rows = self.train_dataset[tasks]
        return [{key: rows[key][position] for key in placeholder} for position, placeholder in enumerate(placeholders)]

    def _in_round(self) -> bool:
        """Whether GRPO's next micro-step trains on a buffered round instead of generating a new one."""
        return self._step % (self.args.steps_per_generation * self.num_iterations) != 0

    def _select_round(self, tasks_per_round: int) -> SelectedRound:
        evidence_lag = self._bots_rounds_selected - self.selector.round
        start = time.perf_counter()
        tasks = np.asarray(self.selector.select(tasks_per_round), dtype=np.int64)
        selection_ms = (time.perf_counter() - start) * 1000.0
        self._bots_rounds_selected += 1
        return SelectedRound(tasks, evidence_lag, selection_ms)

    # Overridden because this is where GRPO holds the rewards of every completion, gathered over all processes.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._credit_round(inputs, rewards_per_func)
        return rewards_per_func

    def _credit_round(self, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor) -> None:
        local_ids = [int(example[TASK_ID_COLUMN]) for example in inputs]
        if self._bots_uncredited is not None:
            selected, self._bots_uncredited = self._bots_uncredited, None
            self._check_round(selected, local_ids)
            successes, trials = self._count_successes(rewards_per_func)
            stats = self.selector.update(selected.tasks, successes, trials)
            metrics = self._metrics["train"]
            for name, value in stats.as_dict().items():
                if name != "round":
                    metrics[f"bots/{name}"].append(value)
            metrics["bots/selection_ms"].append(selected.selection_ms)
            metrics["bots/evidence_lag"].append(selected.evidence_lag)
            for domain, domain_stats in (self.selector.last_domain_stats or {}).items():
                for name, value in domain_stats.items():
                    metrics[f"bots/domain/{domain}/{name}"].append(value)
            metrics["bots/scored_ratio"].append(float(trials.sum()) / len(rewards_per_func))
            self._watch_unscored_rounds(trials.sum() > 0)
        self._log_completion_extra(TASK_ID_COLUMN, local_ids)
        self._log_completion_extra("bots_posterior_mean", self.selector.posterior_mean(local_ids).tolist())
        if self.selector.domain_names is not None:
            domains = self.selector.domain_names
            self._log_completion_extra(
                "bots_domain", [domains[code] for code in self.selector.domain_codes[local_ids]]
            )

    def _watch_unscored_rounds(self, scored: bool) -> None:
        """Warn at the first round without a scored completion; stop after `bots_max_unscored_rounds` in a row."""
        self._bots_unscored_rounds = 0 if scored else self._bots_unscored_rounds + 1
        if scored:
            return
        args = self.args
        if args.bots_success_reward is not None:
            cause = f"bots_success_reward={args.bots_success_reward!r} returned None or NaN for every completion"
        else:
            weights = self.reward_weights.tolist()
            weighted = [name for name, w in zip(self.reward_func_names, weights, strict=True) if w != 0]
            cause = (
                f"every completion lacked a score from at least one reward function with a non-zero weight {weighted}"
            )
        if self._bots_unscored_rounds >= args.bots_max_unscored_rounds:
            raise RuntimeError(
                f"BOTS stops: no completion was scored in {self._bots_unscored_rounds} rounds in a row ({cause}), so "
                "the selector has learned nothing and selects from its prior. Make the reward return numbers for "
                "these tasks (None means unscorable), choose another bots_success_reward, or raise "
                "bots_max_unscored_rounds."
            )
        if not self._bots_warned_unscored:
            self._bots_warned_unscored = True
            logger.warning(
                "BOTS round %d: no completion was scored (%s), so the round taught the selector nothing. Training "
                "stops after %d such rounds in a row (bots_max_unscored_rounds).",
                self.selector.round,
                cause,
                args.bots_max_unscored_rounds,
            )

    def _check_round(self, selected: SelectedRound, local_ids: list[int]) -> None:
        """Before crediting a round, with one gather: every process holds the same selector and selection as process 0
        (BOTS.md invariant 2), and the rewards are for the selected tasks in slot order (row k * G + g is task k), so
        that a TRL that scores other rows here, or in another order, stops instead of crediting the wrong tasks."""
        selector, checksum = self.selector, 0
        if self.accelerator.num_processes > 1:
            checksum = zlib.crc32(selector.alpha.tobytes())
            checksum = zlib.crc32(selector.beta.tobytes(), checksum)
            checksum = zlib.crc32(np.array([selector.round, *selected.tasks], dtype=np.int64).tobytes(), checksum)
        local = torch.tensor([[*local_ids, checksum]], dtype=torch.int64, device=self.accelerator.device)
        gathered = self.accelerator.gather(local).cpu().numpy()
        checksums, ids = gathered[:, -1].tolist(), gathered[:, :-1].ravel()
        diverged = [rank for rank, value in enumerate(checksums) if value != checksums[0]]
        if diverged:  # every process sees it and raises, so none is left waiting in a later collective
            raise RuntimeError(
                f"BOTS selector out of sync across processes in round {selector.round + 1}: ranks {diverged} hold a "
                f"different posterior or selection than rank 0 (CRC-32 per rank: {checksums}). Every process must "
                "build the trainer from the same dataset, BOTSConfig (seed, bots_seed) and checkpoint, and nothing "
                "may change trainer.selector on one process only."
            )
        if not np.array_equal(ids, np.repeat(selected.tasks, self.num_generations)):
            raise RuntimeError(
                f"BOTS selected tasks {selected.tasks.tolist()} for round {selector.round + 1}, each "
                f"{self.num_generations} times in a row, but the first rewards computed after that selection are "
                f"for the task ids {ids.tolist()}. GRPOTrainer no longer scores a round the way BOTS expects "
                "(an unsupported TRL version, or an override of _generate_and_score_completions or "
                "_calculate_rewards); the round is not credited."
            )

    def _count_successes(self, rewards_per_func: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Successes and scored trials per task of the round, from the gathered `[B * G, num_reward_funcs]` rewards."""
        args = self.args
        rewards_per_func = rewards_per_func.detach().to("cpu", torch.float64)
        if args.bots_success_reward is None:
            # A completion is scored only when every reward function with a non-zero weight scored it: GRPO's total
            # would count a `None` as 0, so an unscorable answer with a scored side reward (e.g. a format bonus) would
            # otherwise be a failure. A NaN term makes the sum NaN, i.e. unscored.
            weights = self.reward_weights.to("cpu", torch.float64)
            weighted = weights != 0
            rewards = (rewards_per_func[:, weighted] * weights[weighted]).sum(dim=1)
        else:
            rewards = rewards_per_func[:, self.reward_func_names.index(args.bots_success_reward)]
        rewards = rewards.numpy().reshape(-1, self.num_generations)
        scored = ~np.isnan(rewards)
        if args.bots_fractional_evidence:
            outside = scored & ((rewards < 0) | (rewards > 1))
            if outside.any():
                raise ValueError(
                    f"bots_fractional_evidence counts rewards as fractional successes, so they must lie in [0, 1]; "
                    f"got {rewards[outside][:5].tolist()}. Rescale the reward (or bots_success_reward) to [0, 1], or "
                    "turn bots_fractional_evidence off to threshold it at bots_success_threshold."
                )
            successes = np.where(scored, rewards, 0.0).sum(axis=1)
        else:
            successes = (scored & (rewards >= args.bots_success_threshold)).sum(axis=1).astype(np.float64)
        return successes, scored.sum(axis=1).astype(np.float64)

    # Overridden to put BOTS' round state in every checkpoint (the model and selector files are written by the
    # inherited method through `save_model`). A checkpoint taken inside a round also holds each process's buffered
    # generation batch: without it GRPO would regenerate the round on resume, with the checkpoint's model and another
    # random state, and so train on (and credit) other completions than the uninterrupted run.
    def _save_checkpoint(self, model, trial):
        output_dir = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        os.makedirs(output_dir, exist_ok=True)
        if self._in_round():
            buffer = io.BytesIO()
            torch.save(self._buffered_inputs, buffer)
            path = os.path.join(output_dir, ROUND_BUFFER_FILE.format(rank=self.args.process_index))
            write_atomic(path, buffer.getvalue())
        if self.args.should_save:
            state = {
                "format": ROUND_STATE_FORMAT,
                "micro_step": self._step,
                "rounds_selected": self._bots_rounds_selected,
                "tasks": self._bots_tasks.tolist(),  # for `bots_round_tasks` after resuming inside a round
                "unscored_rounds": self._bots_unscored_rounds,
                "rank_files": self._rank_files(),
                "schedule": self._schedule(),
                "task_fingerprint": self.task_fingerprint,
                "settings": self._bots_settings(),
            }
            write_atomic(os.path.join(output_dir, SAMPLER_FILE), json.dumps(state).encode())
        super()._save_checkpoint(model, trial)

    def _rank_files(self) -> list[str]:
        """The checkpoint files of every process: its buffered round, if any, and last its RNG state (named as
        `Trainer._save_rng_state` names it). Process 0 writes `trainer_state.json` without waiting for them."""
        ranks = range(self.args.world_size)
        files = [ROUND_BUFFER_FILE.format(rank=rank) for rank in ranks] if self._in_round() else []
        if not self.args.save_only_model:
            files += ["rng_state.pth"] if self.args.world_size <= 1 else [f"rng_state_{rank}.pth" for rank in ranks]
        return files

    # Overridden because this is the Trainer's hook for restoring non-model state on resume (GRPO uses it likewise).
    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_bots_state(checkpoint)

    def _load_bots_state(self, checkpoint: str) -> None:
        paths = {name: os.path.join(checkpoint, name) for name in (SELECTOR_FILE, SAMPLER_FILE)}
        for name, path in paths.items():
            if not os.path.isfile(path):
                raise ValueError(
                    f"Cannot resume BOTS from {checkpoint}: {name} is missing, so the selector would restart from the "
                    "prior. Resume from a checkpoint written by BOTSGRPOTrainer, or start a new run."
                )
        try:
            state = read_json(paths[SAMPLER_FILE])
        except ValueError as error:
            raise _invalid_round_state(paths[SAMPLER_FILE], error) from error
        if state.get("format") == ROUND_STATE_FORMAT:
            if state.get("task_fingerprint") != self.task_fingerprint:
                raise ValueError(
                    f"Cannot resume BOTS from {checkpoint}: it was trained on a task list with fingerprint "
                    f"{state.get('task_fingerprint')}, and this run's train_dataset has fingerprint "
                    f"{self.task_fingerprint} (other rows, another order or other values). The posterior is per row: "
                    "resume with the dataset the checkpoint was trained on, in the same order, or start a new run."
                )
            self._check_schedule(checkpoint, state.get("schedule"))
            self._log_changed_settings(checkpoint, state.get("settings"))
        self.selector.load(paths[SELECTOR_FILE])
        try:
            tasks_per_round = self.args.generation_batch_size // self.num_generations
            micro_step, self._bots_tasks = _read_round_state(state, tasks_per_round, self.selector)
        except (KeyError, TypeError, ValueError) as error:
            raise _invalid_round_state(paths[SAMPLER_FILE], error) from error
        self._bots_rounds_selected = self.selector.round  # checked equal to the saved count
        self._bots_unscored_rounds = int(state.get("unscored_rounds", 0))
        self._bots_uncredited = None
        # A new trainer starts GRPO's micro-step counter at 0. Restoring it keeps GRPO's generation schedule that of
        # the uninterrupted run; inside a round, GRPO then trains on the restored buffer instead of generating.
        self._step = micro_step
        if self._in_round():
            path = os.path.join(checkpoint, ROUND_BUFFER_FILE.format(rank=self.args.process_index))
            device = self.accelerator.device  # torch.load cannot map to "cpu:0", which multi-process CPU runs use
            device = "cpu" if device.type == "cpu" else device
            self._buffered_inputs = torch.load(path, map_location=device, weights_only=True)

    def _schedule(self) -> dict[str, int]:
        """What decides where GRPO's rounds start in its micro-step count, and what a round holds."""
        args = self.args
        return {
            "num_processes": args.world_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "steps_per_generation": args.steps_per_generation,
            "num_iterations": self.num_iterations,
            "num_generations": self.num_generations,
            "generation_batch_size": args.generation_batch_size,
        }

    def _check_schedule(self, checkpoint: str, saved: Any) -> None:
        saved = saved if isinstance(saved, dict) else {}
        changed = [
            f"{name}={saved.get(name)} in the checkpoint, {value} now"
            for name, value in self._schedule().items()
            if saved.get(name) != value
        ]
        if changed:
            raise ValueError(
                f"Cannot resume BOTS from {checkpoint}: the generation schedule changed ({'; '.join(changed)}). The "
                "restored micro-step counter would put round boundaries elsewhere than in the run that saved it. "
                "Resume with the checkpoint's settings (number of processes included), or start a new run."
            )

    def _bots_settings(self) -> dict[str, Any]:
        return {name: getattr(self.args, name) for name in sorted(vars(self.args)) if name.startswith("bots_")}

    def _log_changed_settings(self, checkpoint: str, saved: Any) -> None:
        """On resume the settings are the config's and the learned state the checkpoint's: say which settings changed."""
        saved = saved if isinstance(saved, dict) else {}
        changed = [
            f"{name} {saved.get(name)!r} -> {value!r}"
            for name, value in self._bots_settings().items()
            if json.loads(json.dumps(value)) != saved.get(name)  # as the checkpoint stores it: tuples are lists
        ]
        if changed:
            logger.warning(
                "Resuming BOTS from %s with settings that differ from the checkpoint's (the config's apply; alpha, "
                "beta, mu, round and random state continue from the checkpoint): %s.",
                checkpoint,
                ", ".join(changed),
            )

    # Overridden so that the saved model folder carries the selector state (and `push_to_hub` publishes it).
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.selector.save(os.path.join(output_dir, SELECTOR_FILE))

    # Overridden to add the BOTS section (settings, final effective-task ratio, citation) to the generated card.
    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "a") as f:
                f.write(self._model_card_section())

    def _model_card_section(self) -> str:
        args, selector = self.args, self.selector
        stats = selector.last_stats
        effective = "n/a (no round trained)" if stats is None else f"{stats.effective_task_ratio:.4f}"
        settings = {
            "strategy": args.bots_strategy,
            "target pass rate": args.bots_target_pass_rate,
            "forgetting": args.bots_forgetting,
            "implicit weight (current)": f"{args.bots_implicit_weight} ({selector.implicit_weight})",
            "Thompson sampling": args.bots_thompson,
            "temperature": args.bots_temperature,
            "prior (alpha0, beta0)": (args.bots_prior_alpha, args.bots_prior_beta),
            "pseudo count": args.bots_pseudo_count if args.bots_pseudo_count is not None else args.num_generations,
            "cap momentum": args.bots_cap_momentum,
            "cap fit": args.bots_cap_fit,
            "reference columns": args.bots_reference_columns,
            "domain column (weights)": f"{args.bots_domain_column} ({args.bots_domain_weights})",
            "success": f"reward {args.bots_success_reward or '(weighted total)'} >= {args.bots_success_threshold}"
            + (" (fractional evidence)" if args.bots_fractional_evidence else ""),
            "tasks": selector.num_tasks,
            "rounds": selector.round,
            "final effective-task ratio": effective,
        }
        rows = "\n".join(f"| {name} | {value} |" for name, value in settings.items())
        return (
            "\n## BOTS task selection\n\n"
            "The training tasks were chosen online by Bayesian Online Task Selection "
            "([BOTS](https://huggingface.co/papers/2510.26374)) with trl-bots: each generation batch took the tasks "
            "whose pass rate was "
            "probably closest to the target. The selector state is saved beside the model as "
            f"`{SELECTOR_FILE}`.\n\n| Setting | Value |\n|---|---|\n{rows}\n\n"
            f"Cite BOTS as:\n\n```bibtex\n{BOTS_CITATION}\n```\n"
        )
