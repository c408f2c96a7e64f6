"""BOTSSelector: Bayesian online task selection, framework-free.

Glue between the pieces, each in its own module: the Beta posterior update
(:mod:`trl_bots.posterior`), exact Thompson draws (:mod:`trl_bots.sampling`), scoring and
batch selection (:mod:`trl_bots.selection`), implicit evidence (:mod:`trl_bots.implicit`),
the non-adaptive baselines (:mod:`trl_bots.baselines`), domain quotas (:mod:`trl_bots.domains`)
and the state file (:mod:`trl_bots.state`). The algorithm, with what is exact and what is
approximate, is described in docs/algorithm.md and in the paper, arXiv:2510.26374.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .baselines import CyclicOrder, easy_to_hard_order, uniform_order
from .domains import TaskDomains, domain_quotas, domain_round_stats, exact_shares, short_of_rounded_share
from .embedding_estimator import EmbeddingEstimator
from .implicit import ImplicitEvidence, InterpolationEstimator
from .posterior import ChunkedGroups, average_posterior_mean, group_posterior_means, posterior_mean, update_posterior
from .selection import SelectionRule, select_by_quotas, select_tasks
from .state import read_state_file, write_state_file
from .success import effective_task_ratio
from .validation import (
    CAP_FITS,
    HYPERPARAMETERS,
    check_choice,
    check_enough_tasks,
    check_reference_pass_rates,
    check_round,
    check_strategy,
    check_task_ids,
    default_implicit_weight,
    domain_weights_problem,
    is_real,
    missing_evidence,
)


logger = logging.getLogger(__name__)

# Tensors of the state file that hold the plug-in's arrays are named with this prefix, e.g. "estimator/gram".
ESTIMATOR_PREFIX = "estimator/"
# Mean absolute error of the plug-in on a batch at or above which adaptive rho is halved (paper, Section 4).
ADAPTIVE_MAE_THRESHOLD = 0.25
TOO_FEW_TASKS = (
    "batch_size={batch_size} is larger than the number of tasks ({available}); a batch holds distinct tasks. Use a "
    "smaller batch or more tasks."
)


@dataclasses.dataclass(frozen=True)
class RoundStats:
    """Diagnostics of one :meth:`BOTSSelector.update` (NaN where a value is undefined for that round)."""

    round: int
    effective_task_ratio: float  # share of selected tasks with 0 < successes < trials: the ones GRPO learns from
    all_solved_ratio: float  # share with successes == trials > 0
    none_solved_ratio: float  # share with successes == 0 < trials
    selected_pass_rate: float  # successes / trials over the whole batch
    posterior_mean: float  # mean posterior pass rate over all tasks, after the update
    cap_coef: float  # mu of the interpolation plug-in (NaN without one)
    implicit_pearson: float  # plug-in prediction (made before seeing the batch) vs observed rates
    implicit_mae: float  # mean absolute error of the same prediction
    implicit_weight: float  # rho used in this update

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _same_domains(saved: Any, own: dict[str, Any] | None) -> bool:
    """Whether a saved domain signature matches this selector's: the same labels, and weights with the same shares
    (``{a: 2, b: 1}`` and ``{a: 4, b: 2}`` give the same quotas every round), compared exactly as fractions."""
    if not isinstance(saved, dict) or own is None or saved.get("weights") is None or own["weights"] is None:
        return saved == own
    saved_weights = saved["weights"]
    return (
        {**saved, "weights": None} == {**own, "weights": None}
        and isinstance(saved_weights, list)
        and _shares(saved_weights) == _shares(own["weights"])
    )


def _shares(weights: list[Any]) -> list[Fraction] | None:
    """:func:`~trl_bots.domains.exact_shares`; None for what no selector saves (a negative, non-finite or zero sum)."""
    if not all(is_real(weight) and math.isfinite(weight) and weight >= 0 for weight in weights) or sum(weights) <= 0:
        return None
    return exact_shares(weights)


class BOTSSelector:
    """Keeps a Beta belief about every task's pass rate and picks batches of tasks near a target pass rate.

    Each round: :meth:`select` a batch, roll it out, :meth:`update` with the success counts.

    Args:
        num_tasks: number of tasks N.
        reference_pass_rates: optional ``[N, 2]`` array of offline pass rates (weak model, strong model) in
            [0, 1]; enables the interpolation plug-in (implicit evidence) and the ``easy2hard`` order.
        target: target pass rate ``p*`` in (0, 1).
        forgetting: ``lambda`` in (0, 1], how fast old evidence decays toward the prior.
        implicit_weight: ``rho`` in [0, 1], the weight of implicit evidence; with ``embeddings`` its ceiling, scaled
            each round by the estimator's honest accuracy. ``None``: 0.2 with ``embeddings``, 0.1 (the paper's) with
            ``reference_pass_rates`` or ``estimator``, else 0.
        thompson: score a Thompson draw from each posterior (True) or the posterior mean (False).
        temperature: ``tau >= 0``; 0 takes the top-B scores, > 0 samples B tasks from ``softmax(score / tau)``.
        prior: base prior ``(alpha0, beta0)``, both > 0.
        pseudo_count: ``m``, the weight of one plug-in prediction in rollouts. ``None`` uses the largest number of
            trials in each update, i.e. the number of rollouts per task G.
        cap_momentum: ``gamma`` in [0, 1), smoothing of the plug-in's coefficient ``mu``.
        cap_fit: how the plug-in fits ``mu`` on a batch: ``"robust"`` (the paper's ratio over the tasks whose
            references differ, a batch with too little information skipped, ``mu`` kept in [-2, 3]) or ``"paper"``
            (the paper's exact ratio of batch means, which explodes when the batch's weak and strong means nearly
            coincide). See :class:`trl_bots.implicit.InterpolationEstimator`.
        seed: seed of the selector's own random generator (Thompson draws, temperature sampling, permutations).
        strategy: ``"bots"`` (explicit + implicit evidence), ``"mopps"`` (explicit only: rho is 0),
            ``"dots"`` (implicit only: every task, the selected ones included, gets the plug-in's prediction; rho
            is 1), ``"uniform"`` (a fresh permutation each epoch) or ``"easy2hard"`` (by decreasing mean reference
            pass rate). The two baselines ignore the posterior when selecting but keep updating it (with implicit
            evidence when reference pass rates are given), so their diagnostics stay comparable.
        adaptive_implicit_weight: halve rho whenever the plug-in's mean absolute error on a batch is >= 0.25.
        estimator: a custom implicit-evidence plug-in (see :class:`trl_bots.implicit.ImplicitEvidence`) used
            instead of the interpolation plug-in.
        embeddings: optional ``[N, d]`` array, one vector per task (e.g. the prompt's mean hidden state): implicit
            evidence from :class:`trl_bots.embedding_estimator.EmbeddingEstimator`, a Bayesian linear model of the pass
            rate learned from the run's own rollouts, with ``reference_pass_rates`` as two more features when given.
        domains: optional domain label of every task (non-empty strings, at most 256 distinct), or a
            :class:`~trl_bots.domains.TaskDomains` that already holds them encoded, with its weights (then leave
            ``domain_weights`` out). Each update then records per-domain diagnostics in :attr:`last_domain_stats`.
        domain_weights: with ``domains``, the share of every round each domain gets: a mapping label -> weight
            (every domain of ``domains``, weights >= 0, not all 0), ``"proportional"`` (to the domain's number of
            tasks) or ``"uniform"``. Each round takes each domain's quota (:meth:`domain_quotas`) and selects that many
            tasks inside the domain by the same rule as the global selection. ``None``: one selection over all tasks.
        replaceable_tasks: the ids will stand for other tasks over the run (an active pool's slots,
            :meth:`replace_tasks`): with ``embeddings``, the embedding plug-in then keeps its features in its state, so
            that a resumed run holds the newcomers' features too.
    """

    def __init__(
        self,
        num_tasks: int,
        reference_pass_rates: np.ndarray | None = None,
        target: float = 0.5,
        forgetting: float = 0.1,
        implicit_weight: float | None = None,
        thompson: bool = True,
        temperature: float = 0.0,
        prior: tuple[float, float] = (1.0, 1.0),
        pseudo_count: float | None = None,
        cap_momentum: float = 0.9,
        cap_fit: str = "robust",
        seed: int = 0,
        strategy: str = "bots",
        adaptive_implicit_weight: bool = False,
        estimator: ImplicitEvidence | None = None,
        domains: Sequence[str] | np.ndarray | TaskDomains | None = None,
        domain_weights: Mapping[str, float] | str | None = None,
        embeddings: np.ndarray | None = None,
        replaceable_tasks: bool = False,
    ) -> None:
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}.")
        check_strategy("strategy", strategy)
        check_choice("cap_fit", cap_fit, CAP_FITS)
        values = {
            "target": target,
            "forgetting": forgetting,
            "implicit_weight": implicit_weight,
            "temperature": temperature,
            "cap_momentum": cap_momentum,
            "prior": tuple(prior),
            "pseudo_count": pseudo_count,
        }
        for parameter in HYPERPARAMETERS:
            parameter.check(values[parameter.argument])
        self.num_tasks = int(num_tasks)
        self.strategy = strategy
        self.target = float(target)
        self.forgetting = float(forgetting)
        self.thompson = bool(thompson)
        self.temperature = float(temperature)
        self.prior = (float(prior[0]), float(prior[1]))
        self.pseudo_count = None if pseudo_count is None else float(pseudo_count)
        self.adaptive_implicit_weight = bool(adaptive_implicit_weight)
        self.seed = seed

        reference = None
        if reference_pass_rates is not None:
            reference = check_reference_pass_rates(reference_pass_rates, self.num_tasks)
        if estimator is not None and embeddings is not None:
            raise ValueError("Pass either estimator or embeddings (which builds an EmbeddingEstimator), not both.")
        if embeddings is not None and strategy != "mopps":
            estimator = EmbeddingEstimator(
                embeddings, reference_pass_rates=reference, num_tasks=self.num_tasks, replaceable=replaceable_tasks
            )
        elif estimator is None and reference is not None and strategy != "mopps":
            estimator = InterpolationEstimator(reference, momentum=float(cap_momentum), fit=cap_fit)
        self.estimator = estimator
        # Plug-ins written for the two-argument fit() keep working; the embedding estimator weighs labels by trials.
        self._fit_takes_trials = estimator is not None and "trials" in inspect.signature(estimator.fit).parameters
        if implicit_weight is None:
            kind = "embedding" if embeddings is not None else "reference" if estimator is not None else None
            implicit_weight = default_implicit_weight(kind)
        self.implicit_weight = self._strategy_implicit_weight(implicit_weight, reference is not None)

        self.rng = np.random.default_rng(seed)
        self.order: CyclicOrder | None = None
        if strategy == "uniform":
            self.order = uniform_order(self.num_tasks, self.rng)
        elif strategy == "easy2hard":
            if missing_evidence(strategy, self.implicit_weight, reference is not None, estimator is not None):
                raise ValueError(
                    "strategy='easy2hard' orders tasks by their reference pass rates; pass reference_pass_rates."
                )
            self.order = easy_to_hard_order(reference)

        self.alpha = np.full(self.num_tasks, self.prior[0], dtype=np.float32)
        self.beta = np.full(self.num_tasks, self.prior[1], dtype=np.float32)
        self._scratch = np.empty(self.num_tasks, dtype=np.float32)  # reused every round: draws, means, distances
        # Pseudo counts of every task, also reused (scratch, not state): spares two fresh arrays of length N a round.
        self._pseudo_counts_buffer = np.empty((2, self.num_tasks), dtype=np.float32)
        self.round = 0
        self.estimator_rounds = 0  # rounds the plug-in has been fitted on; it cannot predict before the first
        self.implicit_count = 0.0  # m of the last update's implicit evidence: newcomers' informed prior weighs as much
        self.last_stats: RoundStats | None = None
        self._init_domains(domains, domain_weights)

    def _init_domains(
        self,
        domains: Sequence[str] | np.ndarray | TaskDomains | None,
        domain_weights: Mapping[str, float] | str | None,
    ) -> None:
        self.domains: TaskDomains | None = None  # encoded once; its parts are also the attributes below
        self.domain_names: tuple[str, ...] | None = None
        self.domain_codes: np.ndarray | None = None  # each task's index into domain_names
        self.domain_sizes: np.ndarray | None = None
        self.domain_weights: np.ndarray | None = None  # resolved, in the order of domain_names
        self.last_domain_stats: dict[str, dict[str, float]] | None = None
        self._reported_capped: set[str] = set()  # domains already logged as smaller than their quota
        encoded = isinstance(domains, TaskDomains)
        requested = domains.weights if encoded else domain_weights
        problem = domain_weights_problem(self.strategy, domains is not None, requested)
        if problem == "no domains":
            raise ValueError("domain_weights needs domains: pass the domain label of every task as domains=.")
        if domains is None:
            return
        if not encoded:
            domains = TaskDomains.from_labels(domains, self.num_tasks)
        elif domain_weights is not None or domains.codes.shape != (self.num_tasks,):
            raise ValueError(
                f"domains=TaskDomains(...) must hold the domain of each of the {self.num_tasks} tasks, with its weights "
                "(domain_weights is then left out)."
            )
        if problem == "fixed order":
            raise ValueError(
                f"domain_weights apply to the adaptive strategies (bots, mopps, dots); strategy={self.strategy!r} "
                "serves a fixed order of all tasks. Leave domain_weights out for this baseline."
            )
        if domain_weights is not None:
            domains = domains.with_weights(domain_weights)
        if domains.weights is not None:
            # How far each domain is behind its exact shares over the rounds so far: rotates the remainder seats.
            self.domain_lag = [Fraction(0)] * len(domains.names)
            self._domain_pools = domains.pools()  # searched in place when selecting
        self.domains, self.domain_names, self.domain_codes = domains, domains.names, domains.codes
        self.domain_sizes, self.domain_weights = domains.sizes, domains.weights
        self._domain_groups = ChunkedGroups(domains.codes, len(domains.names))

    def _strategy_implicit_weight(self, implicit_weight: float, has_reference: bool) -> float:
        has_estimator = self.estimator is not None
        if self.strategy == "mopps":
            return 0.0
        if missing_evidence(self.strategy, implicit_weight, has_reference, has_estimator) == "implicit":
            if self.strategy == "dots":
                raise ValueError(
                    "strategy='dots' uses only implicit evidence; pass reference_pass_rates, embeddings or estimator."
                )
            raise ValueError(
                f"implicit_weight={implicit_weight} needs implicit evidence, but no reference_pass_rates (weak, strong), "
                "embeddings or estimator was given. Pass one of them, or set implicit_weight=0 for explicit evidence "
                "only."
            )
        if self.strategy == "dots":
            return 1.0
        if not has_estimator:
            return 0.0  # the baselines only track the posterior for diagnostics; explicit evidence suffices
        return float(implicit_weight)

    # ------------------------------------------------------------------ selection
    @property
    def rule(self) -> SelectionRule:
        """How :meth:`select` scores the tasks (``target``, ``thompson``, ``temperature``)."""
        return SelectionRule(self.target, self.thompson, self.temperature)

    def select(self, batch_size: int) -> np.ndarray:
        """Return ``batch_size`` distinct task ids for the next round, best first."""
        self._check_batch_size(batch_size)
        if self.order is not None:
            return self.order.take(int(batch_size), self.rng)
        if self.domain_weights is None:
            return select_tasks(self.rng, self.alpha, self.beta, self.rule, int(batch_size), self._scratch)
        # Each domain's quota by the same rule, domains in the order of domain_names, each best first.
        quotas, self.domain_lag = self._round_quotas(int(batch_size))
        return select_by_quotas(
            self.rng, self.alpha, self.beta, self.rule, quotas, self._domain_pools, self.domain_codes, self._scratch
        )

    def _check_batch_size(self, batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        check_enough_tasks(batch_size, self.num_tasks, TOO_FEW_TASKS)

    def domain_quotas(self, batch_size: int) -> dict[str, int] | None:
        """Tasks per domain that the next :meth:`select` of ``batch_size`` takes (``None`` without domain weights).

        Largest-remainder rounding of ``batch_size * weight``, the remainder seats rotated to the domains furthest
        behind their exact shares so far (see :func:`trl_bots.domains.apportion`); a domain smaller than its quota
        gives all its tasks and the rest goes to the other domains in proportion to their weights.
        """
        if self.domain_weights is None:
            return None
        self._check_batch_size(batch_size)
        return dict(zip(self.domain_names, self._round_quotas(int(batch_size))[0].tolist(), strict=True))

    def _round_quotas(self, batch_size: int) -> tuple[np.ndarray, list[Fraction]]:
        quotas, capped, lag = domain_quotas(batch_size, self.domain_weights, self.domain_sizes, self.domain_lag)
        capped &= short_of_rounded_share(batch_size, self.domain_weights, self.domain_sizes)  # worth a warning
        newly_capped = [name for name, cap in zip(self.domain_names, capped, strict=True) if cap]
        newly_capped = [name for name in newly_capped if name not in self._reported_capped]
        if newly_capped:
            self._reported_capped.update(newly_capped)
            sizes = {name: int(self.domain_sizes[self.domain_names.index(name)]) for name in newly_capped}
            logger.warning(
                f"BOTS domain quotas: the domains {sizes} (name: tasks) have fewer tasks than their quota of a "
                f"{batch_size}-task round; each gives all its tasks, and the other domains take the rest in proportion "
                "to their weights. Reported once."
            )
        return quotas, lag

    # ------------------------------------------------------------------ evidence
    def update(self, indices: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> RoundStats:
        """Fold one round's results into the posterior.

        Args:
            indices: distinct task ids that were rolled out.
            successes: successes per task (may be fractional), ``0 <= successes <= trials``.
            trials: scored rollouts per task (completions whose reward could not be scored are not trials).
        """
        idx, successes, trials = check_round(self.num_tasks, indices, successes, trials)
        failures = trials - successes
        scored = trials > 0
        observed = successes[scored] / trials[scored]

        cap_coef = pearson = mae = math.nan
        pseudo_successes = pseudo_failures = None
        rho = self.implicit_weight
        if self.estimator is not None and rho > 0:
            if self.estimator_rounds and scored.any():
                predicted = self.estimator.predict(idx[scored])
                pearson, mae = _pearson(predicted, observed), float(np.mean(np.abs(predicted - observed)))
                if self.adaptive_implicit_weight and mae >= ADAPTIVE_MAE_THRESHOLD:
                    rho = self.implicit_weight = rho / 2
            if scored.any():
                if self._fit_takes_trials:
                    self.estimator.fit(idx[scored], observed, trials[scored])
                else:
                    self.estimator.fit(idx[scored], observed)
                self.estimator_rounds += 1
            # A plug-in that measures its own accuracy gets the share of rho it has earned (0 until it is scored).
            scale = getattr(self.estimator, "implicit_weight_scale", None)
            if scale is not None:
                rho = rho * float(scale())
            mu = getattr(self.estimator, "mu", None)  # a fitted mu of exactly 0 is a value, not a missing one
            cap_coef = math.nan if mu is None else float(mu)
            if self.estimator_rounds:
                pseudo_successes, pseudo_failures = self._pseudo_counts(idx, successes, failures, trials)
        if pseudo_successes is None or rho == 0:
            pseudo_successes = pseudo_failures = None
            rho = 0.0  # nothing to weigh yet: the plug-in has not seen a scored rollout

        update_posterior(
            self.alpha,
            self.beta,
            prior=self.prior,
            forgetting=self.forgetting,
            implicit_weight=rho,
            indices=idx,
            successes=successes,
            failures=failures,
            pseudo_successes=pseudo_successes,
            pseudo_failures=pseudo_failures,
        )
        self.round += 1
        batch = max(idx.size, 1)
        if self.domain_codes is None:
            mean = average_posterior_mean(self.alpha, self.beta)
        else:  # one pass gives both the per-domain means and the overall one
            domain_means = group_posterior_means(self.alpha, self.beta, self._domain_groups)
            mean = float(domain_means @ self.domain_sizes) / self.num_tasks
            per_domain = domain_round_stats(
                self.domain_codes[idx], len(self.domain_names), successes, trials, domain_means
            )
            self.last_domain_stats = {
                name: {key: float(values[d]) for key, values in per_domain.items()}
                for d, name in enumerate(self.domain_names)
            }
        self.last_stats = RoundStats(
            round=self.round,
            effective_task_ratio=effective_task_ratio(successes, trials),
            all_solved_ratio=float(np.sum(scored & (successes == trials))) / batch,
            none_solved_ratio=float(np.sum(scored & (successes == 0))) / batch,
            selected_pass_rate=float(successes.sum() / trials.sum()) if trials.sum() > 0 else math.nan,
            posterior_mean=mean,
            cap_coef=cap_coef,
            implicit_pearson=pearson,
            implicit_mae=mae,
            implicit_weight=rho,
        )
        return self.last_stats

    def _pseudo_counts(
        self, idx: np.ndarray, successes: np.ndarray, failures: np.ndarray, trials: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Implicit counts ``m q_i`` and ``m (1 - q_i)`` for every task; observed counts for the selected (bots)."""
        m = self.pseudo_count if self.pseudo_count is not None else float(trials.max(initial=0.0))
        self.implicit_count = m
        pseudo_successes, pseudo_failures = self._pseudo_counts_buffer
        np.multiply(self.estimator.predict(), np.float32(m), out=pseudo_successes)
        np.subtract(np.float32(m), pseudo_successes, out=pseudo_failures)
        if self.strategy != "dots":  # dots trusts the plug-in everywhere, the selected tasks included
            pseudo_successes[idx] = successes
            pseudo_failures[idx] = failures
        return pseudo_successes, pseudo_failures

    def posterior_mean(self, tasks: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Posterior mean pass rate of every task, or of the ``tasks`` given (ids), without touching the others."""
        if tasks is None:
            return posterior_mean(self.alpha, self.beta)
        tasks = check_task_ids("tasks", tasks, self.num_tasks)
        return posterior_mean(self.alpha[tasks], self.beta[tasks])

    def replace_tasks(self, tasks: np.ndarray | Sequence[int], **inputs: np.ndarray) -> None:
        """The ids ``tasks`` now stand for other tasks (an active pool's slots, refilled from a stream).

        Their beliefs restart from the prior, informed by the plug-in when it has been fitted: the new task gets the
        implicit evidence one update gives it, ``rho * m * q`` successes and ``rho * m * (1 - q)`` failures, with
        the last update's ``rho`` and ``m`` and the plug-in's prediction ``q`` for it. ``inputs`` are the new tasks'
        rows of what the plug-in reads, passed to its ``replace(tasks, **inputs)`` (``embeddings``,
        ``reference_pass_rates``): a plug-in without ``replace`` cannot follow a pool.
        """
        tasks = check_task_ids("tasks", tasks, self.num_tasks)
        if np.unique(tasks).size != tasks.size:
            raise ValueError(f"tasks must be distinct ids, got {tasks.tolist()}.")
        if self.estimator is not None:
            replace = getattr(self.estimator, "replace", None)
            if replace is None:
                raise ValueError(
                    f"The implicit-evidence plug-in {type(self.estimator).__name__} has no replace(tasks, ...) "
                    "method, so it cannot predict for tasks that join an active pool. Add one, or use explicit "
                    "evidence only."
                )
            replace(tasks, **inputs)
        elif inputs:
            raise ValueError(
                f"replace_tasks got {sorted(inputs)}, but this selector has no implicit-evidence plug-in."
            )
        self.alpha[tasks], self.beta[tasks] = self.prior
        rho = 0.0 if self.last_stats is None else self.last_stats.implicit_weight
        if self.estimator is not None and self.estimator_rounds and rho > 0:
            weight = np.float32(rho * self.implicit_count)
            predicted = np.asarray(self.estimator.predict(tasks), dtype=np.float32)
            self.alpha[tasks] += weight * predicted
            self.beta[tasks] += weight * (np.float32(1.0) - predicted)

    # ------------------------------------------------------------------ state
    def checksum(self) -> int:
        """CRC-32 of what every process must hold alike: the posterior, the round and the plug-in's state."""
        value = zlib.crc32(self.alpha.tobytes())
        value = zlib.crc32(self.beta.tobytes(), value)
        value = zlib.crc32(np.int64(self.round).tobytes(), value)
        if self.estimator is not None:
            for name, item in sorted(self.estimator.state_dict().items()):
                data = item.tobytes() if isinstance(item, np.ndarray) else json.dumps([name, item]).encode()
                value = zlib.crc32(data, value)
        return value

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: arrays under their names, scalars as JSON-able values."""
        state: dict[str, Any] = {
            "alpha": self.alpha.copy(),
            "beta": self.beta.copy(),
            "num_tasks": self.num_tasks,
            "strategy": self.strategy,
            "round": self.round,
            "implicit_weight": self.implicit_weight,
            "adaptive_implicit_weight": self.adaptive_implicit_weight,
            "estimator_rounds": self.estimator_rounds,
            "implicit_count": self.implicit_count,
            "estimator_type": None if self.estimator is None else type(self.estimator).__name__,
            # A snapshot: a custom plug-in may return (and load into) its live state.
            "estimator": copy.deepcopy(self.estimator.state_dict()) if self.estimator is not None else {},
            "rng": self.rng.bit_generator.state,
            "last_stats": self.last_stats.as_dict() if self.last_stats is not None else None,
        }
        if self.order is not None:
            state["order"] = self.order.order.copy()
            state["order_cursor"] = self.order.cursor
        if self.domain_names is not None:
            state["domains"] = self._domain_signature()
        if self.domain_weights is not None:
            state["domain_lag"] = [str(value) for value in self.domain_lag]  # exact fractions, e.g. "-2/3"
        return state

    def _domain_signature(self) -> dict[str, Any] | None:
        """What a saved state must share with this selector's domains (the quotas follow from it and the round)."""
        if self.domain_names is None:
            return None
        return {
            "names": list(self.domain_names),
            "codes_crc32": zlib.crc32(self.domain_codes.tobytes()),
            "weights": None if self.domain_weights is None else self.domain_weights.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ``ValueError`` if it belongs to another task set or strategy, or to other
        domains or domain weights (the quotas' rotation, ``domain_lag``, is only meaningful for the same ones).

        Restores what was learned (alpha, beta, round, the plug-in's fit, the random generator, the domain lag, and the
        implicit weight when it adapts and adapted in the saved run); the hyper-parameters stay those given to the
        constructor. A state that fails part-way leaves the selector as it was, never half loaded.
        """
        kept = self.state_dict()
        try:
            self._load_state_dict(state)
        except BaseException:
            self._load_state_dict(kept)
            raise

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("num_tasks") != self.num_tasks:
            raise ValueError(
                f"The selector state is for {state.get('num_tasks')} tasks but this selector has {self.num_tasks}: "
                "it belongs to another dataset. Resume with the dataset it was saved with."
            )
        if state.get("strategy") != self.strategy:
            raise ValueError(
                f"The selector state is for strategy {state.get('strategy')!r}, not {self.strategy!r}: a state "
                f"belongs to its strategy. Load it into a selector built with strategy={state.get('strategy')!r}."
            )
        if not _same_domains(state.get("domains"), self._domain_signature()):
            raise ValueError(
                f"The selector state was saved with other domains or domain weights ({state.get('domains')}) than this "
                f"selector has ({self._domain_signature()}). Resume with the same domain labels and weights."
            )
        own_type = None if self.estimator is None else type(self.estimator).__name__
        # Files saved before the type was recorded lack it; the plug-in then checks its own state. A plug-in added (or
        # removed) on resume starts afresh (or is dropped), as the config's settings apply on resume.
        saved_type = state.get("estimator_type", own_type)
        if saved_type is not None and own_type is not None and saved_type != own_type:
            raise ValueError(
                f"The selector state's implicit evidence came from {saved_type}, this selector's from "
                f"{own_type}: its learned state cannot continue in another plug-in. Resume with the same implicit "
                "evidence (bots_implicit_estimator, bots_reference_columns), or start a new run."
            )
        alpha, beta = (np.asarray(state[k], dtype=np.float32) for k in ("alpha", "beta"))
        for name, array in (("alpha", alpha), ("beta", beta)):
            if array.shape != (self.num_tasks,) or not np.isfinite(array).all() or (array <= 0).any():
                raise ValueError(f"The selector state's {name} must be {self.num_tasks} finite positive numbers.")
        if self.order is not None:
            self.order.load_state_dict({"order": state["order"], "cursor": state["order_cursor"]})
        self.alpha, self.beta = alpha.copy(), beta.copy()
        self.round = int(state["round"])
        if self.adaptive_implicit_weight and state.get("adaptive_implicit_weight"):
            # Learned: the weight halved so far. Otherwise rho is a setting, and the constructor's value applies.
            self.implicit_weight = float(state["implicit_weight"])
        self.estimator_rounds = 0 if saved_type is None else int(state["estimator_rounds"])
        self.implicit_count = float(state.get("implicit_count", 0.0))  # files saved before pools lack it
        if self.estimator is not None and saved_type is not None:
            self.estimator.load_state_dict(state["estimator"])
        self.rng.bit_generator.state = state["rng"]
        if self.domain_weights is not None:
            lag = [Fraction(value) for value in state["domain_lag"]]
            if len(lag) != len(self.domain_names):
                raise ValueError(f"The selector state's domain_lag must have {len(self.domain_names)} entries.")
            self.domain_lag = lag
        self.last_stats = RoundStats(**state["last_stats"]) if state.get("last_stats") else None

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to one file, atomically and without pickle (see :mod:`trl_bots.state`)."""
        state = self.state_dict()
        arrays = {name: state.pop(name) for name in ("alpha", "beta", "order") if name in state}
        plug_in = state["estimator"] = dict(state["estimator"])
        for name in [name for name, value in plug_in.items() if isinstance(value, np.ndarray)]:
            arrays[f"{ESTIMATOR_PREFIX}{name}"] = plug_in.pop(name)
        write_state_file(path, arrays, state)

    def load(self, path: str | os.PathLike) -> None:
        """Load a file written by :meth:`save` into this selector."""
        arrays, scalars = read_state_file(path)
        plug_in = {
            name.removeprefix(ESTIMATOR_PREFIX): arrays.pop(name)
            for name in list(arrays)
            if name.startswith(ESTIMATOR_PREFIX)
        }
        try:
            self.load_state_dict({**scalars, **arrays, "estimator": {**scalars.get("estimator", {}), **plug_in}})
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a complete BOTS selector state (missing or malformed {error})."
            ) from error

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> BOTSSelector:
        """A selector continuing the state saved in ``path`` (by :meth:`save`: a checkpoint's or a saved model's
        ``bots_selector.safetensors``), built with the file's size and strategy.

        From the file: ``num_tasks`` and ``strategy`` (giving them in ``kwargs`` is an error unless they match),
        everything :meth:`load` restores (alpha, beta, round, the plug-in's fit, the random generator, the serving
        order, the domain lag) and, unless ``kwargs`` give them, ``implicit_weight`` (the value in use when the state
        was saved) and, with ``domains``, ``domain_weights``.

        From ``kwargs`` (the constructor's arguments; its defaults for those left out): every other hyper-parameter,
        which the file does not hold (``target``, ``forgetting``, ``prior``, ``pseudo_count``, ``thompson``,
        ``temperature``, ``cap_momentum``, ``cap_fit``, ``adaptive_implicit_weight``, ``seed``), and the inputs the file
        holds nothing or only a checksum of: ``reference_pass_rates``, ``embeddings`` or ``estimator`` (needed by a state saved with
        implicit evidence, and by ``dots`` and ``easy2hard``; without them a plug-in's saved fit is not restored) and
        ``domains`` (each task's label; needed by a state saved with domains).
        """
        _, scalars = read_state_file(path)
        saved = {"num_tasks": scalars.get("num_tasks"), "strategy": scalars.get("strategy")}
        given = {name: kwargs.pop(name) for name in saved if name in kwargs}
        clashes = [f"{name}={value!r}" for name, value in given.items() if value != saved[name]]
        if clashes:
            raise ValueError(
                f"{path} holds the state of a selector of num_tasks={saved['num_tasks']!r} and strategy="
                f"{saved['strategy']!r}, but from_file got {', '.join(clashes)}. Leave them out: the file decides them."
            )
        kwargs.update(saved)
        kwargs.setdefault("implicit_weight", scalars.get("implicit_weight"))
        domains = scalars.get("domains")
        if isinstance(domains, dict) and kwargs.get("domains") is None:
            raise ValueError(
                f"{path} was saved with the domains {domains.get('names')}, which it holds only a checksum of: pass "
                "domains= (the domain label of every task, as when it was saved)."
            )
        weights = domains.get("weights") if isinstance(domains, dict) else None
        if weights is not None and "domain_weights" not in kwargs and not isinstance(kwargs["domains"], TaskDomains):
            kwargs["domain_weights"] = dict(zip(domains["names"], weights, strict=True))
        selector = cls(**kwargs)
        selector.load(path)
        return selector

    def __repr__(self) -> str:
        domains = "" if self.domain_names is None else f", domains={len(self.domain_names)}"
        weighted = "" if self.domain_weights is None else " (weighted)"
        return (
            f"BOTSSelector(num_tasks={self.num_tasks}, strategy={self.strategy!r}, round={self.round}, "
            f"target={self.target:g}, forgetting={self.forgetting:g}, implicit_weight={self.implicit_weight:g}"
            f"{domains}{weighted})"
        )
