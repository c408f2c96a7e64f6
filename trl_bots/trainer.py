"""BOTSGRPOTrainer: TRL's GRPOTrainer with Bayesian Online Task Selection choosing every generation batch."""

from __future__ import annotations

import io
import logging
import os
import textwrap
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from .active_pool import ActivePool
from .checkpoints import (
    POOL_EMBEDDER_FILE,
    ROUND_BUFFER_FILE,
    RoundState,
    bots_settings,
    generation_schedule,
    latest_complete_checkpoint,  # noqa: F401  (its documented place: trl_bots.trainer)
    load_pool_state,
    rank_files,
    resume_refusal,
    save_pool_state,
)
from .config import BOTSConfig
from .implicit import InterpolationEstimator
from .model_card import EffectiveTaskRatios, bots_card_section
from .prompt_embeddings import PromptEmbedder, task_embeddings
from .sampler import BOTSSampler
from .selector import BOTSSelector
from .state import SELECTOR_FILE, write_atomic
from .success import NeverScored, success_columns, success_rule, successes_and_trials, unscored_cause
from .tasks import (
    TASK_ID_COLUMN,
    check_environments,
    check_same_tasks_on_every_process,
    check_train_dataset,
    reference_pass_rates,
    row_reference_pass_rates,
    task_domains,
    task_pool,
    tasks_fingerprint,
    uses_pool,
    with_task_ids,
)
from .validation import HYPERPARAMETERS


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectedRound:
    """One generation batch: the tasks the selector chose for it, and how the choice was made."""

    tasks: np.ndarray  # the B distinct task ids of the selector, in selection order: slot j holds tasks[j]
    task_ids: np.ndarray  # the same tasks' dataset rows, or stream positions with an active pool
    evidence_lag: int  # rounds selected before this one whose rewards the selector had not seen yet
    selection_ms: float  # wall time of the selector's choice


class BOTSGRPOTrainer(GRPOTrainer):
    """
    [`trl.GRPOTrainer`] whose generation batches are chosen by Bayesian Online Task Selection
    ([BOTS](https://huggingface.co/papers/2510.26374)).

    Each dataset row is a task. Every generation batch, a [`BOTSSelector`] (the live one is `trainer.selector`, on
    every process) picks the `generation_batch_size // num_generations` tasks whose pass rate is probably closest to
    `bots_target_pass_rate`; after GRPO scores the completions, the selector is updated with every task's successes
    and scored trials, gathered over all processes.

    A `datasets.IterableDataset` (or a map-style dataset with `bots_pool_size`) is read as a stream into an active
    pool (`trainer.pool`, an [`ActivePool`]): the selector's task ids are then the pool's slots, and after every round
    the tasks that no longer pay are retired and replaced by the stream's next ones.

    The only changes with respect to [`trl.GRPOTrainer`] are the methods below, each overridden for the reason given;
    everything else (generation, rewards, advantages, loss, logging, evaluation) is inherited unchanged:

    - `__init__`: validates the dataset (and that environments' `reset` can take the row's columns), adds a
      `bots_task_id` column (the row index), builds the selector; over a stream, fills the pool first and gives GRPO
      `B` of its rows as the slots' placeholders.
    - `_set_signature_columns_if_needed`: keeps `bots_task_id` when `remove_unused_columns=True`.
    - `_get_train_sampler`: returns a [`BOTSSampler`], which yields *slots* ("the j-th task of the current round") in
      RepeatSampler's layout and length (over a stream, an epoch is one round: training needs `max_steps`); the
      DataLoader fetches rows `0..B-1` as placeholders. Hooks that read the raw batch find the rows trained on in
      `trainer.bots_round_tasks` (see there).
    - `_generate_and_score_completions`: in training, when GRPO is about to generate a round, asks the selector for
      the round's B tasks and replaces every placeholder row by its task's dataset row (same keys). Evaluation is
      untouched.
    - `_calculate_rewards`: after the inherited (already gathered) rewards, credits each task's successes, checks that
      all processes hold the same selector (and pool), logs the `bots/*` metrics and the task id / posterior mean
      columns of the completions table, and over a stream retires and refills the pool.
    - `_save_checkpoint`, `_load_optimizer_and_scheduler`: save and restore the selector, GRPO's micro-step counter
      and, inside a round, each process's buffered generation batch (`bots_selector.safetensors`, `bots_sampler.json`,
      `bots_round_<rank>.pt`); over a stream, the pool and the stream's position (`bots_pool.json`).
    - `save_model`: writes the selector state (`bots_selector.safetensors`) beside the model.
    - `create_model_card`: appends a table of the BOTS settings to TRL's card, which cites BOTS (`_paper`) and
      carries the `bots` tag.
    - `train`: refuses, before loading anything, a `resume_from_checkpoint` folder that cannot be resumed from.

    Why a round is selected when GRPO generates it, and how every process selects the same one:
    [docs/distributed.md](../docs/distributed.md); what a checkpoint holds and what resuming does:
    [docs/reliability.md](../docs/reliability.md); the algorithm: [docs/algorithm.md](../docs/algorithm.md).
    """

    _tag_names = ["trl", "grpo", "bots"]
    _name = "BOTS"
    _paper = {
        "title": "BOTS: A Unified Framework for Bayesian Online Task Selection in LLM Reinforcement Finetuning",
        "id": "2510.26374",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @misc{shen2025bots,
                title         = {{BOTS: A Unified Framework for Bayesian Online Task Selection in LLM Reinforcement Finetuning}},
                author        = {Qianli Shen and Daoyuan Chen and Yilun Huang and Zhenqing Ling and Yaliang Li and Bolin Ding and Jingren Zhou},
                year          = 2025,
                eprint        = {arXiv:2510.26374},
            }"""),
    }

    def __init__(self, model, reward_funcs=None, args: BOTSConfig | None = None, train_dataset=None, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = BOTSConfig(f"{model_name.split('/')[-1]}-BOTS")
        if not isinstance(args, BOTSConfig):
            raise TypeError(f"args must be a BOTSConfig, got {type(args).__name__}. Build a BOTSConfig instead.")
        self.pool: ActivePool | None = None  # the tasks in memory when they come as a stream
        if uses_pool(train_dataset, args):
            self.pool = task_pool(train_dataset, args, kwargs.get("environment_factory"))
            tasks = Dataset.from_list(self.pool.rows)  # its first fill, which the selector starts from
            train_dataset = with_task_ids(tasks.select(range(args.tasks_per_round)))  # the slots' placeholders
        else:
            tasks = check_train_dataset(train_dataset, args, kwargs.get("environment_factory"))
            train_dataset = with_task_ids(tasks)
        reference, domains = reference_pass_rates(tasks, args.bots_reference_columns), task_domains(tasks, args)
        # Task ids are row numbers (or slots of a pool first filled from the stream's start): the rows must match
        # across processes and on resume.
        self.task_fingerprint = tasks_fingerprint(tasks, args)
        self._bots_rounds_selected = 0  # over the whole run, restored on resume
        self._bots_unscored_rounds = 0  # consecutive rounds without a scored completion, restored on resume
        self._bots_warned_unscored = False
        self._bots_tasks: np.ndarray | None = None  # the task of each slot of the round GRPO generates or trains on
        self._bots_slots: np.ndarray | None = None  # the same tasks as the selector's ids (pool slots)
        self._bots_uncredited: SelectedRound | None = None  # the round just selected, until its rewards are credited
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if self.accelerator.num_processes > 1:
            check_same_tasks_on_every_process(self.accelerator, self.task_fingerprint)
        embeddings = None  # built with the model: the default embeds the prompts with the policy's hidden states
        self._bots_embedder: PromptEmbedder | None = None  # embeds the tasks that join an active pool
        if args.bots_implicit_estimator == "embedding" and self.pool is not None:
            self._bots_embedder = PromptEmbedder(args, self.model, self.processing_class, self.accelerator)
            embeddings = self._bots_embedder.fit(self.pool.rows)
        elif args.bots_implicit_estimator == "embedding":
            embeddings = task_embeddings(
                tasks, args, self.model, self.processing_class, self.accelerator, self.task_fingerprint
            )
        self.selector = BOTSSelector(
            len(tasks),
            reference_pass_rates=reference,
            **{parameter.argument: parameter.config_value(args) for parameter in HYPERPARAMETERS},
            thompson=args.bots_thompson,
            cap_fit=args.bots_cap_fit,
            seed=args.bots_seed,
            strategy=args.bots_strategy,
            adaptive_implicit_weight=args.bots_adaptive_implicit_weight,
            domains=domains,
            embeddings=embeddings,
            replaceable_tasks=self.pool is not None,
        )
        if self.environment_factories is not None:
            check_environments(self._environment_pool)
        self._bots_success_columns = success_columns(args.bots_success_reward, self.reward_func_names)
        if self._bots_success_columns is None and len(self.reward_func_names) > 1 and self.is_world_process_zero():
            logger.warning(
                success_rule(self.reward_func_names, self.reward_weights.tolist(), args.bots_success_threshold)
            )
        selector = self.selector
        self._bots_never_scored = NeverScored(
            selector.num_tasks, args.bots_success_reward, selector.domain_codes, selector.domain_names
        )
        self._bots_ratios = EffectiveTaskRatios()  # for the model card; restored on resume

    @property
    def bots_round_tasks(self) -> np.ndarray | None:
        """
        The dataset rows of the round GRPO generated last, in slot order (`None` before the first round): the rows
        trained on (over a stream, the tasks' stream positions; `trainer.pool` holds the rows). Read it from callbacks
        (`on_step_end`), reward functions or after `super().training_step()`.

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

    # Overridden so that `remove_unused_columns=True` does not drop the task id column.
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if TASK_ID_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TASK_ID_COLUMN]

    # Overridden to read slots instead of tasks: the DataLoader reads ahead of training, so choosing tasks when it
    # reads them would ignore the rewards of the rounds still in flight. The layout is RepeatSampler's.
    def _get_train_sampler(self, dataset=None) -> BOTSSampler:
        dataset = dataset if dataset is not None else self.train_dataset
        if self.pool is not None:  # an epoch is a pass over a map-style source; a stream's is one round (max_steps)
            source = self.pool.stream.source
            dataset = source if isinstance(source, Dataset) else dataset
        return BOTSSampler(
            len(dataset),
            mini_repeat_count=self.num_generations,
            batch_size=self.args.tasks_per_round,
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
        tasks_per_round = self.args.tasks_per_round
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
        selected = self._bots_uncredited = self._select_round(tasks_per_round)
        self._bots_slots, self._bots_tasks = selected.tasks, selected.task_ids
        if self.pool is None:
            rows = self.train_dataset[selected.tasks[slots].tolist()]
            return [
                {key: rows[key][position] for key in placeholder} for position, placeholder in enumerate(placeholders)
            ]
        rows = [
            {**self.pool.rows[task], TASK_ID_COLUMN: task_id}
            for task, task_id in zip(selected.tasks, selected.task_ids, strict=True)
        ]
        return [
            {key: rows[slot][key] for key in placeholder}
            for slot, placeholder in zip(slots, placeholders, strict=True)
        ]

    def _in_round(self) -> bool:
        """Whether GRPO's next micro-step trains on a buffered round instead of generating a new one."""
        return self._step % (self.args.steps_per_generation * self.num_iterations) != 0

    def _select_round(self, tasks_per_round: int) -> SelectedRound:
        evidence_lag = self._bots_rounds_selected - self.selector.round
        start = time.perf_counter()
        tasks = np.asarray(self.selector.select(tasks_per_round), dtype=np.int64)
        selection_ms = (time.perf_counter() - start) * 1000.0
        self._bots_rounds_selected += 1
        task_ids = tasks if self.pool is None else self.pool.task_ids[tasks]
        return SelectedRound(tasks, task_ids, evidence_lag, selection_ms)

    # Overridden because this is where GRPO holds the rewards of every completion, gathered over all processes.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._credit_round(inputs, rewards_per_func)
        return rewards_per_func

    def _credit_round(self, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor) -> None:
        local_ids = [int(example[TASK_ID_COLUMN]) for example in inputs]
        selected, self._bots_uncredited = self._bots_uncredited, None
        if selected is not None:
            self._check_round(selected, local_ids)
            successes, trials = successes_and_trials(
                rewards_per_func.detach().to("cpu", torch.float64).numpy(),
                self.reward_weights.to("cpu", torch.float64).numpy(),
                self.num_generations,
                success_columns=self._bots_success_columns,
                threshold=self.args.bots_success_threshold,
                fractional=self.args.bots_fractional_evidence,
                reward_names=self.reward_func_names,
            )
            stats = self.selector.update(selected.tasks, successes, trials)
            self._bots_ratios.add(stats.effective_task_ratio)
            for finding in self._bots_never_scored.observe(selected.tasks, trials):
                if self.is_world_process_zero():
                    logger.warning(finding)
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
        local_tasks = local_ids
        if self.pool is not None:  # the selector's ids are the pool's slots
            slot_of = dict(zip(self._bots_tasks.tolist(), self._bots_slots.tolist(), strict=True))
            local_tasks = [slot_of[task_id] for task_id in local_ids]
        self._log_completion_extra(TASK_ID_COLUMN, local_ids)
        self._log_completion_extra("bots_posterior_mean", self.selector.posterior_mean(local_tasks).tolist())
        if self.selector.domain_names is not None:
            domains = self.selector.domain_names
            self._log_completion_extra(
                "bots_domain", [domains[code] for code in self.selector.domain_codes[local_tasks]]
            )
        if selected is not None and self.pool is not None:
            self._refresh_pool(selected)

    def _refresh_pool(self, selected: SelectedRound) -> None:
        """Retire the pool's tasks that no longer pay and give their slots the stream's next tasks (docs/algorithm.md,
        "Active pool"); at the end of a stream that does not restart, stop training."""
        selector, pool, args = self.selector, self.pool, self.args
        retire = pool.retirements(
            selector, selected.tasks, self.num_generations, args.bots_retire_threshold, args.bots_max_visits
        )
        replaced = pool.replace(retire)
        if replaced.size:
            selector.replace_tasks(replaced, **self._newcomer_inputs(replaced))
            self._bots_never_scored.forget(replaced)
        metrics = self._metrics["train"]
        metrics["bots/pool_size"].append(pool.size)
        metrics["bots/retired"].append(pool.retired)
        metrics["bots/stream_position"].append(pool.stream.position)
        if pool.exhausted and not self.control.should_training_stop:
            self.control.should_training_stop = True
            if self.is_world_process_zero():
                logger.warning(
                    "BOTS: the stream ended (bots_stream_end='stop') after %d tasks and the pool cannot replace its "
                    "retired tasks: training stops after this step.",
                    pool.stream.position,
                )

    def _newcomer_inputs(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """What the selector's plug-in reads of the tasks that just joined the pool in ``slots``."""
        rows = [self.pool.rows[slot] for slot in slots.tolist()]
        inputs = {}
        if self.args.bots_reference_columns is not None:
            inputs["reference_pass_rates"] = row_reference_pass_rates(rows, self.args.bots_reference_columns)
        if self._bots_embedder is not None:
            inputs["embeddings"] = self._bots_embedder.embed(rows)
        return inputs

    def _watch_unscored_rounds(self, scored: bool) -> None:
        """Warn at the first round without a scored completion; stop after `bots_max_unscored_rounds` in a row."""
        self._bots_unscored_rounds = 0 if scored else self._bots_unscored_rounds + 1
        if scored:
            return
        args = self.args
        cause = unscored_cause(args.bots_success_reward, self.reward_func_names, self.reward_weights.tolist())
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
        (docs/distributed.md), and the rewards are for the selected tasks in slot order (row k * G + g is task k), so
        that a TRL that scores other rows here, or in another order, stops instead of crediting the wrong tasks."""
        selector, checksum = self.selector, 0
        if self.accelerator.num_processes > 1:
            checksum = zlib.crc32(np.asarray(selected.tasks, dtype=np.int64).tobytes(), selector.checksum())
            if self.pool is not None:  # the pool's tasks and their rows: every process must have read the same stream
                checksum = zlib.crc32(self.pool.keys.tobytes(), zlib.crc32(self.pool.task_ids.tobytes(), checksum))
        local = torch.tensor([[*local_ids, checksum]], dtype=torch.int64, device=self.accelerator.device)
        gathered = self.accelerator.gather(local).cpu().numpy()
        checksums, ids = gathered[:, -1].tolist(), gathered[:, :-1].ravel()
        diverged = [rank for rank, value in enumerate(checksums) if value != checksums[0]]
        if diverged:  # every process sees it and raises, so none is left waiting in a later collective
            raise RuntimeError(
                f"BOTS selector out of sync across processes in round {selector.round + 1}: ranks {diverged} hold a "
                f"different posterior, predictor or selection than rank 0 (CRC-32 per rank: {checksums}). Every process must "
                "build the trainer from the same dataset, BOTSConfig (seed, bots_seed) and checkpoint, and nothing "
                "may change trainer.selector on one process only."
            )
        if not np.array_equal(ids, np.repeat(selected.task_ids, self.num_generations)):
            raise RuntimeError(
                f"BOTS selected tasks {selected.task_ids.tolist()} for round {selector.round + 1}, each "
                f"{self.num_generations} times in a row, but the first rewards computed after that selection are "
                f"for the task ids {ids.tolist()}. GRPOTrainer no longer scores a round the way BOTS expects "
                "(an unsupported TRL version, or an override of _generate_and_score_completions or "
                "_calculate_rewards); the round is not credited."
            )

    # Overridden to put BOTS' round state in every checkpoint (the model and selector files are written by the
    # inherited method through `save_model`). A checkpoint taken inside a round also holds each process's buffered
    # generation batch: without it GRPO would regenerate the round on resume, with the checkpoint's model and another
    # random state, and so train on (and credit) other completions than the uninterrupted run.
    def _save_checkpoint(self, model, trial):
        output_dir = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        os.makedirs(output_dir, exist_ok=True)
        args = self.args
        if self._in_round():
            buffer = io.BytesIO()
            torch.save(self._buffered_inputs, buffer)
            write_atomic(
                os.path.join(output_dir, ROUND_BUFFER_FILE.format(rank=args.process_index)), buffer.getvalue()
            )
        if args.should_save and self.pool is not None:  # first: the round state's file marks BOTS' part complete
            round_task_ids = None if self._bots_tasks is None else self._bots_tasks.tolist()
            embedder = None if self._bots_embedder is None else self._bots_embedder.state_dict()
            save_pool_state(output_dir, {**self.pool.state_dict(), "round_task_ids": round_task_ids}, embedder)
        if args.should_save:
            RoundState(
                micro_step=self._step,
                rounds_selected=self._bots_rounds_selected,
                tasks=self._bots_slots,  # for `bots_round_tasks` after resuming inside a round
                unscored_rounds=self._bots_unscored_rounds,
                rank_files=rank_files(args.world_size, self._in_round(), args.save_only_model),
                schedule=generation_schedule(args),
                task_fingerprint=self.task_fingerprint,
                settings=bots_settings(args),
                effective_task_ratios=self._bots_ratios.as_dict(),
            ).save(output_dir)
        super()._save_checkpoint(model, trial)

    # Overridden because this is the Trainer's hook for restoring non-model state on resume (GRPO uses it likewise).
    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        state = RoundState.load(
            checkpoint,
            self.selector,
            schedule=generation_schedule(self.args),
            task_fingerprint=self.task_fingerprint,
            settings=bots_settings(self.args),
            tasks_per_round=self.args.tasks_per_round,
        )
        self._bots_slots = self._bots_tasks = state.tasks
        pool_state, embedder_state = load_pool_state(checkpoint, self.pool is not None)
        if pool_state is not None:
            self._load_pool(pool_state, embedder_state)
        self._bots_rounds_selected = state.rounds_selected
        self._bots_unscored_rounds = state.unscored_rounds
        self._bots_ratios = EffectiveTaskRatios.from_dict(state.effective_task_ratios)
        self._bots_uncredited = None
        # A new trainer starts GRPO's micro-step counter at 0. Restoring it keeps GRPO's generation schedule that of
        # the uninterrupted run; inside a round, GRPO then trains on the restored buffer instead of generating.
        self._step = state.micro_step
        if self._in_round():
            path = os.path.join(checkpoint, ROUND_BUFFER_FILE.format(rank=self.args.process_index))
            device = self.accelerator.device  # torch.load cannot map to "cpu:0", which multi-process CPU runs use
            device = "cpu" if device.type == "cpu" else device
            self._buffered_inputs = torch.load(path, map_location=device, weights_only=True)

    def _load_pool(self, state: dict[str, Any], embedder_state: dict[str, np.ndarray] | None) -> None:
        """Restore the pool (rows, task ids, stream position), the embedder's coordinates, and what the selector's
        plug-in reads of the pool's rows."""
        pool, estimator = self.pool, self.selector.estimator
        pool.load_state_dict(state)
        if self._bots_embedder is not None:  # (the embedding plug-in's features are in the selector's state)
            if embedder_state is None:
                raise ValueError(
                    "Cannot resume BOTS: the checkpoint's pool was saved without the embedding estimator's coordinates "
                    f"({POOL_EMBEDDER_FILE}), which this run's bots_implicit_estimator='embedding' needs. Resume "
                    "with the implicit evidence the checkpoint was written with."
                )
            self._bots_embedder.load_state_dict(embedder_state)
        if state.get("round_task_ids") is not None:
            self._bots_tasks = np.asarray(state["round_task_ids"], dtype=np.int64)
        if not pool.stream.exact_resume and self.is_world_process_zero():
            logger.warning(
                "BOTS resumes the stream at position %d, but the dataset shuffles with a buffer, which datasets refills "
                "on resume: the tasks read from here differ from the uninterrupted run's. For an exact resume, "
                "shuffle the source before streaming it (e.g. Dataset.shuffle, then to_iterable_dataset).",
                pool.stream.position,
            )
        if isinstance(estimator, InterpolationEstimator):  # its reference rows are the pool's, not in its state
            estimator.replace(np.arange(pool.size), **self._newcomer_inputs(np.arange(pool.size)))

    # Overridden so that the saved model folder carries the selector state (and `push_to_hub` publishes it).
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.selector.save(os.path.join(output_dir, SELECTOR_FILE))

    # Overridden to append the table of BOTS settings to TRL's card (which `_name` and `_paper` make cite BOTS).
    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "a") as f:
                f.write(bots_card_section(self.args, self.selector, self._bots_ratios, self.pool))
