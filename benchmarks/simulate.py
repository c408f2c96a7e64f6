"""Data efficiency of BOTS against its baselines on a synthetic GRPO learner.

Every strategy runs through the real :class:`trl_bots.BOTSSelector` (``uniform``, ``easy2hard``, ``mopps``,
``dots``, ``bots``), plus an ``oracle`` that knows the true current pass rates and takes the B tasks closest to
``p*`` (not realisable: it marks the limit of what selection alone can buy in this model).

The learner, and what it assumes
--------------------------------
* **Tasks.** ``num_tasks`` training tasks and ``num_heldout`` held-out tasks, each in one of ``num_clusters``
  topics. Task i has a difficulty ``d_i = cluster_difficulty[k_i] + N(0, difficulty_std)`` on the logit scale,
  wide enough that at the start many tasks are never solved and many always are, as for a small model on GURU.
* **Policy.** The pass rate of task i is ``sigmoid(s + c[k_i] + u_i - d_i)``: a shared skill ``s``, a per-topic
  skill ``c[k]`` and a per-task offset ``u_i`` (what training on that very task teaches; held-out tasks have
  ``u = 0``, so they improve only through ``s`` and ``c``, i.e. through transfer).
* **Rollouts and learning.** A selected task gets G Bernoulli rollouts. The learner takes one policy-gradient step
  of GRPO with group-normalised advantages on this logit model: for a Bernoulli policy the push on a task's logit
  is ``G * sqrt(p_hat (1 - p_hat))`` (p_hat = successes / G), so an all-success or all-failure group contributes
  exactly nothing and a 50/50 group contributes most. The push is averaged over the B tasks of the batch (the
  loss is normalised over the whole batch, wasted groups included) and applied to ``s``, ``c`` and ``u`` with
  their own learning rates. Topic skills also take a small random walk each step (interference between topics),
  so the pass rates keep moving and old evidence goes stale.
* **Reference columns.** Two offline reference models (weak, strong) share the task difficulties but have
  their own skills, their own per-task noise and their own topic strengths, and their pass rates are measured
  with a finite number of rollouts (binomial noise), like GURU's columns: correlated with the truth, not equal.
  Calibration: with the default ``reference_noise_std = 1`` the columns correlate 0.89 (weak) and 0.78 (strong)
  with the untrained policy's rates over all tasks, and the plug-in's Pearson correlation on the batches BOTS
  selects comes out at 0.46, close to the ~0.5 the paper reports for the same quantity (its Figure 5). That
  batch-level number is the only real-world anchor; the all-task quality is a guess, so ``--ablation reference``
  reruns BOTS and DOTS with noisier columns (all-task correlation down to ~0.6).
* **Evaluation.** Held-out accuracy is the mean *true* pass rate over the held-out tasks (no sampling noise).
* **Task features** (``--features D``, off by default: the worlds are then unchanged). Each task gets a D-dimensional
  vector standing in for its prompt embedding (:func:`make_features`): its squashed difficulty along one direction,
  a vector per topic, and isotropic nuisance (``--feature-noise``). The strategy ``bots-embedding`` (BOTS with
  :class:`trl_bots.embedding_estimator.EmbeddingEstimator` on these features, no reference columns) then joins the
  comparison, and ``--ablation embedding`` runs the estimator's ablations in a 32-dimensional world: rho fixed against
  rho following its measured accuracy, a fixed ridge against the evidence's, label decay, uninformative (pure-noise)
  features, with the reference columns as more features, and worlds of other sizes and noise.

What this model leaves out, on purpose: the value of a task depends only on its current pass rate (no task is
more "instructive" than another at equal pass rate, and training on a task again is worth as much, and transfers
as well, as a fresh one: repeats are not charged for memorisation, which favours strategies that revisit tasks),
rollouts cost the same for every task, and the optimiser has no momentum. It measures selection quality, not
the absolute gains of GRPO.

Metrics (``summary`` per strategy; accuracy curves are averaged over seeds before TTB and best-so-far)
----------------------------------------------------------------------------------------------------
* ``etr``: effective-task ratio, share of selected tasks whose group is mixed, mean over steps and seeds.
* ``ttb50`` / ``ttb100``: first step at which held-out accuracy reaches 50% / 100% of uniform's final accuracy
  *gain* (over the untrained policy, which every strategy shares), as a fraction of the run (``null`` if never).
  Measured on the gain because the untrained policy already has more than half of uniform's final accuracy, so
  "50% of the final accuracy" would be step 0 for everyone; for TTB100 the two readings coincide.
  ``ttb100_seed_std`` is the spread of the same quantity measured per seed (never counts as 1).
* ``best_so_far_ratio``: best held-out accuracy reached in the run over uniform's best.
* ``implicit_pearson``: mean of ``RoundStats.implicit_pearson`` (plug-in prediction vs observed batch rates).
  ``plugin_pearson_all_tasks`` is the same prediction against the true current rates of *all* tasks (a diagnostic
  only a simulator has); ``reference_corr_initial`` the correlation of each column with the untrained policy.
* ``distinct_task_share``: distinct tasks selected / selections; 1 means no task was ever selected twice.
* ``overhead_share``: selector wall time / (selector + simulated learner wall time) per step. The simulated
  learner step (computing true pass rates, drawing rollouts, the parameter update) takes well under a millisecond,
  so this share is a gross *over*-estimate of the share in real GRPO, where a step takes seconds to minutes;
  ``selector_ms_per_step`` is the absolute number to compare against a real step.

Usage::

    python benchmarks/simulate.py --output sim.json --plots docs/figures        # main comparison
    python benchmarks/simulate.py --ablation all --output sim.json --plots docs/figures
    python benchmarks/simulate.py --ablation reference                          # one ablation
    python benchmarks/simulate.py --quick                                       # a few seconds
    python benchmarks/simulate.py --quick --ablation embedding                  # the embedding estimator, ~20 s
    python benchmarks/simulate.py --features 32                                 # bots-embedding joins the main run
    python benchmarks/simulate.py --cap-fit-comparison --output capfit.json     # robust vs paper fit of mu, ~15 s

``targets`` holds the issue's goals measured on the main run: ``ttb100_gap_closed`` =
``(1 - TTB100_bots) / (1 - TTB100_oracle)`` (goal >= 0.9), ``etr_vs_oracle`` (goal >= 0.95) and whether BOTS's
TTB100 beats MoPPS's and DOTS's; every ablation entry carries the first two for its own setting.

JSON goes to stdout (or ``--output``), progress to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trl_bots.embedding_estimator import EmbeddingEstimator
from trl_bots.selector import BOTSSelector
from trl_bots.validation import DEFAULT_IMPLICIT_WEIGHT


STRATEGIES = ("uniform", "easy2hard", "mopps", "dots", "bots", "oracle")
EMBEDDING = "bots-embedding"  # BOTS with the embedding estimator (needs SimConfig.features); only in ablations


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """World, learner and run sizes. The defaults are the full benchmark; :func:`quick_config` shrinks them."""

    num_tasks: int = 8192
    num_heldout: int = 2048
    num_clusters: int = 16
    batch_size: int = 32  # B distinct tasks per step
    group_size: int = 16  # G rollouts per task
    steps: int = 256  # B * steps = one epoch over the training tasks by default
    seeds: int = 6
    difficulty_std: float = 3.0  # spread of task difficulty around its topic's mean (logits)
    cluster_difficulty_std: float = 1.0  # spread of topic mean difficulties
    initial_skill: float = -1.5
    lr_shared: float = 0.02
    lr_cluster: float = 0.15
    lr_task: float = 0.5
    drift_std: float = 0.02  # random walk of topic skills per step
    weak_skill: float = -2.0  # reference models' skills on the same logit scale
    strong_skill: float = 1.0
    reference_noise_std: float = 1.0  # per-task idiosyncrasy of a reference model (logits)
    reference_cluster_std: float = 0.5  # topic strengths of a reference model that the policy does not share
    reference_rollouts: int = 16  # the reference pass rates are measured, hence binomially noisy
    cap_fit: str = "robust"  # how every selector's plug-in fits mu: BOTSSelector(cap_fit=...), "robust" or "paper"
    # Task features (prompt embeddings) for the embedding estimator: 0 = none (the worlds are then exactly as without
    # these fields). See make_features.
    features: int = 0
    feature_noise: float = 1.0  # std of the nuisance part of a feature vector, against 1 for the task's signal


def quick_config() -> SimConfig:
    """A few seconds in all: small world, short run, two seeds."""
    return dataclasses.replace(SimConfig(), num_tasks=1024, num_heldout=512, steps=64, seeds=2)


def cap_fit_config() -> SimConfig:
    """The size of the cap-fit comparison: a quarter of the pool, half the run, eight seeds (seconds per world)."""
    return dataclasses.replace(SimConfig(), num_tasks=2048, num_heldout=512, steps=128, seeds=8)


# Worlds of the cap-fit comparison (overrides of the SimConfig fields). "saturated" is GURU-like: references measured
# from 4 rollouts on a wider spread of difficulties, so about half the tasks have weak = strong = 0 or 1. "saturated,
# close references" adds a weak and a strong model one logit apart (59% of tasks at 0/0 or 1/1), "similar references"
# two equally strong reference models (gaps of either sign around 0): the last two are where the paper's fit explodes.
CAP_FIT_WORLDS = {
    "main": {},
    "saturated": {"difficulty_std": 5.0, "reference_rollouts": 4},
    "saturated, close references": {
        "difficulty_std": 5.0,
        "reference_rollouts": 4,
        "weak_skill": -1.0,
        "strong_skill": 0.0,
    },
    "similar references": {"weak_skill": -1.5, "strong_skill": -1.5},
}


@dataclasses.dataclass
class World:
    """Everything about one seed's tasks that does not change during training."""

    cluster: np.ndarray  # [N] topic of each training task
    difficulty: np.ndarray  # [N]
    heldout_cluster: np.ndarray  # [H]
    heldout_difficulty: np.ndarray  # [H]
    reference: np.ndarray  # [N, 2] measured pass rates of the weak and strong reference models
    features: np.ndarray | None = None  # [N, features] task features (None without --features)


@dataclasses.dataclass
class Policy:
    """The learner's parameters: shared skill, topic skills, per-task offsets."""

    shared: float
    cluster: np.ndarray  # [K]
    task: np.ndarray  # [N]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def make_world(cfg: SimConfig, rng: np.random.Generator) -> World:
    """Draw task topics, difficulties and the two reference columns."""
    topic_difficulty = rng.normal(0.0, cfg.cluster_difficulty_std, cfg.num_clusters)
    cluster = rng.integers(0, cfg.num_clusters, cfg.num_tasks)
    heldout_cluster = rng.integers(0, cfg.num_clusters, cfg.num_heldout)
    difficulty = topic_difficulty[cluster] + rng.normal(0.0, cfg.difficulty_std, cfg.num_tasks)
    heldout_difficulty = topic_difficulty[heldout_cluster] + rng.normal(0.0, cfg.difficulty_std, cfg.num_heldout)
    columns = []
    for skill in (cfg.weak_skill, cfg.strong_skill):
        topic_strength = rng.normal(0.0, cfg.reference_cluster_std, cfg.num_clusters)
        logit = skill + topic_strength[cluster] - difficulty + rng.normal(0.0, cfg.reference_noise_std, cfg.num_tasks)
        columns.append(rng.binomial(cfg.reference_rollouts, sigmoid(logit)) / cfg.reference_rollouts)
    # Drawn last: without features the stream, and so every world, is what it was before features existed.
    features = make_features(cfg, cluster, difficulty, rng) if cfg.features else None
    return World(cluster, difficulty, heldout_cluster, heldout_difficulty, np.stack(columns, axis=1), features)


def make_features(cfg: SimConfig, cluster: np.ndarray, difficulty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each task's feature vector: what a prompt embedding knows about it, plus what it does not care about.

    ``f_i = tanh(z_i) * a + t[k_i] + n_i`` in ``features`` dimensions, where ``z_i`` is the standardised difficulty
    (squashed: an embedding is not linear in difficulty), ``a`` a random unit direction, ``t[k]`` a topic vector of
    norm ~1 per topic (so a linear model can learn each topic's skill) and ``n_i`` isotropic nuisance of total standard
    deviation ``feature_noise``. The per-task offsets that training adds (``u_i``) are in no feature: only explicit
    evidence tells them.
    """
    dim = cfg.features
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    topics = rng.normal(0.0, 1.0 / np.sqrt(dim), (cfg.num_clusters, dim))
    z = (difficulty - difficulty.mean()) / difficulty.std()
    nuisance = rng.normal(0.0, cfg.feature_noise / np.sqrt(dim), (difficulty.size, dim))
    return np.tanh(z)[:, None] * direction + topics[cluster] + nuisance


def initial_policy(cfg: SimConfig) -> Policy:
    """The untrained policy: shared skill only."""
    return Policy(cfg.initial_skill, np.zeros(cfg.num_clusters), np.zeros(cfg.num_tasks))


def train_pass_rates(policy: Policy, world: World) -> np.ndarray:
    """True current pass rate of every training task."""
    return sigmoid(policy.shared + policy.cluster[world.cluster] + policy.task - world.difficulty)


def heldout_accuracy(policy: Policy, world: World) -> float:
    """Mean true pass rate over the held-out tasks (they have no per-task offset: only transfer helps them)."""
    return float(np.mean(sigmoid(policy.shared + policy.cluster[world.heldout_cluster] - world.heldout_difficulty)))


def grpo_signal(successes: np.ndarray, group_size: int) -> np.ndarray:
    """Push of one GRPO step on each task's logit, per rollout: ``sqrt(p_hat (1 - p_hat))``; 0 for all-same groups.

    With group-normalised advantages ``A = (r - p_hat) / std`` and a Bernoulli policy with logit theta, the sum over
    the group of ``A * d log pi / d theta`` is ``G * p_hat (1 - p_hat) / std = G * sqrt(p_hat (1 - p_hat))``.
    """
    rate = successes / group_size
    return np.sqrt(rate * (1.0 - rate))


def learner_step(
    policy: Policy, world: World, cfg: SimConfig, indices: np.ndarray, signal: np.ndarray, rng: np.random.Generator
) -> None:
    """Apply one GRPO step in place: the batch-averaged push on s and c, the per-task push on u, topic drift."""
    batch = indices.size
    policy.shared += cfg.lr_shared * float(signal.sum()) / batch
    policy.cluster += cfg.lr_cluster * np.bincount(world.cluster[indices], signal, cfg.num_clusters) / batch
    policy.cluster += rng.normal(0.0, cfg.drift_std, cfg.num_clusters)
    policy.task[indices] += cfg.lr_task * signal


def oracle_select(pass_rates: np.ndarray, batch_size: int, target: float) -> np.ndarray:
    """The B tasks whose true pass rate is closest to the target."""
    return np.argpartition(np.abs(pass_rates - target), batch_size - 1)[:batch_size]


def run_one(cfg: SimConfig, strategy: str, seed: int, selector_kwargs: dict[str, Any] | None = None) -> dict:
    """Train one learner from scratch with one strategy; return its per-step traces and timings.

    The world and the rollout stream depend only on the seed, so all strategies of a seed face the same tasks.
    """
    world = make_world(cfg, np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    policy = initial_policy(cfg)
    kwargs = dict(selector_kwargs or {})
    target = kwargs.get("target", 0.5)
    selector = None
    if strategy == EMBEDDING:
        selector = embedding_selector(cfg, world, seed, kwargs)
    elif strategy != "oracle":
        kwargs.setdefault("cap_fit", cfg.cap_fit)
        selector = BOTSSelector(
            cfg.num_tasks, reference_pass_rates=world.reference, strategy=strategy, seed=seed, **kwargs
        )
    accuracy = [heldout_accuracy(policy, world)]
    initial_rates = train_pass_rates(policy, world)
    reference_corr = [float(np.corrcoef(column, initial_rates)[0, 1]) for column in world.reference.T]
    etr, pearson, pearson_all, mae, mae_all, cap_coef = [], [], [], [], [], []
    times_selected = np.zeros(cfg.num_tasks, dtype=np.int64)
    selector_time = learner_time = 0.0
    for _ in range(cfg.steps):
        start = time.perf_counter()
        pass_rates = train_pass_rates(policy, world)
        learner_time += time.perf_counter() - start
        if selector is not None and selector.estimator is not None and selector.estimator_rounds:
            # Diagnostic only, untimed: the plug-in's prediction for every task against the true current rates.
            predicted = selector.estimator.predict()
            pearson_all.append(float(np.corrcoef(predicted, pass_rates)[0, 1]))
            mae_all.append(float(np.mean(np.abs(predicted - pass_rates))))
        mid = time.perf_counter()
        indices = (
            oracle_select(pass_rates, cfg.batch_size, target) if selector is None else selector.select(cfg.batch_size)
        )
        selected = time.perf_counter()
        successes = rng.binomial(cfg.group_size, pass_rates[indices]).astype(np.float64)
        learner_step(policy, world, cfg, indices, grpo_signal(successes, cfg.group_size), rng)
        learned = time.perf_counter()
        if selector is not None:
            stats = selector.update(indices, successes, np.full(indices.size, float(cfg.group_size)))
            pearson.append(stats.implicit_pearson)
            mae.append(stats.implicit_mae)
            cap_coef.append(stats.cap_coef)
        done = time.perf_counter()
        selector_time += (selected - mid) + (done - learned)
        learner_time += learned - selected
        etr.append(float(np.mean((successes > 0) & (successes < cfg.group_size))))
        times_selected[indices] += 1
        accuracy.append(heldout_accuracy(policy, world))
    missing = np.full(cfg.steps, np.nan)  # strategies without a plug-in (oracle, mopps)
    return {
        "accuracy": np.array(accuracy),
        "etr": np.array(etr),
        "pearson": np.array(pearson) if pearson else missing,
        "pearson_all": np.array(pearson_all) if pearson_all else missing,
        "mae": np.array(mae) if mae else missing,
        "mae_all": np.array(mae_all) if mae_all else missing,
        "cap_coef": np.array(cap_coef) if cap_coef else missing,
        "reference_corr": reference_corr,
        "distinct_share": float(np.count_nonzero(times_selected)) / times_selected.sum(),
        "selector_time": selector_time,
        "learner_time": learner_time,
    }


def embedding_selector(cfg: SimConfig, world: World, seed: int, kwargs: dict[str, Any]) -> BOTSSelector:
    """BOTS with the embedding estimator on the world's features (``kwargs``: selector arguments, plus ``estimator``
    (EmbeddingEstimator arguments) and ``features`` ("world", "noise": pure noise of the same shape, or "reference":
    the world's features and its reference columns))."""
    if world.features is None:
        raise ValueError("the bots-embedding strategy needs task features: set SimConfig.features (--features D).")
    kwargs = dict(kwargs)
    estimator_args = kwargs.pop("estimator", {})
    which = kwargs.pop("features", "world")
    features = world.features
    if which == "noise":
        features = np.random.default_rng([seed, 2]).normal(size=world.features.shape)
    estimator = EmbeddingEstimator(
        features, reference_pass_rates=world.reference if which == "reference" else None, **estimator_args
    )
    kwargs.setdefault("implicit_weight", DEFAULT_IMPLICIT_WEIGHT["embedding"])
    return BOTSSelector(cfg.num_tasks, estimator=estimator, seed=seed, **kwargs)


def time_to_baseline(curve: np.ndarray, baseline: np.ndarray, share: float) -> float | None:
    """First step (as a fraction of the run) at which ``curve`` has ``share`` of the baseline's final gain.

    ``None`` if it never does. Both curves start from the same untrained policy, ``baseline[0] == curve[0]``.
    """
    level = baseline[0] + share * (baseline[-1] - baseline[0])
    reached = np.flatnonzero(curve >= level - 1e-12)
    return None if reached.size == 0 else float(reached[0]) / (curve.size - 1)


def nanmean_or_none(values: np.ndarray) -> float | None:
    """Mean of the finite values (rounds where a correlation is undefined are NaN), ``None`` if there are none."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def summarise(runs: list[dict], baseline_curve: np.ndarray) -> dict[str, Any]:
    """Metrics of one strategy over its seeds, against uniform's seed-mean accuracy curve."""
    curves = np.stack([r["accuracy"] for r in runs])
    mean_curve = curves.mean(axis=0)
    etr_per_seed = np.array([r["etr"].mean() for r in runs])
    pearson = np.concatenate([r["pearson"] for r in runs])
    pearson_all = np.concatenate([r["pearson_all"] for r in runs])
    cap_coef = np.concatenate([r["cap_coef"] for r in runs])
    selector_time = sum(r["selector_time"] for r in runs)
    learner_time = sum(r["learner_time"] for r in runs)
    steps = sum(r["etr"].size for r in runs)
    per_seed = [time_to_baseline(c, baseline_curve, 1.0) for c in curves]
    return {
        "etr": float(etr_per_seed.mean()),
        "etr_seed_std": float(etr_per_seed.std()),
        "final_accuracy": float(mean_curve[-1]),
        "final_accuracy_seed_std": float(curves[:, -1].std()),
        "ttb50": time_to_baseline(mean_curve, baseline_curve, 0.5),
        "ttb100": time_to_baseline(mean_curve, baseline_curve, 1.0),
        "ttb100_seed_std": float(np.std([1.0 if t is None else t for t in per_seed])),
        "best_so_far_ratio": float(mean_curve.max() / baseline_curve.max()),
        "implicit_pearson": nanmean_or_none(pearson),
        "plugin_pearson_all_tasks": nanmean_or_none(pearson_all),
        "implicit_mae": nanmean_or_none(np.concatenate([r["mae"] for r in runs])),
        "plugin_mae_all_tasks": nanmean_or_none(np.concatenate([r["mae_all"] for r in runs])),
        "max_abs_cap_coef": float(np.nanmax(np.abs(cap_coef))) if np.isfinite(cap_coef).any() else None,
        "distinct_task_share": float(np.mean([r["distinct_share"] for r in runs])),
        "reference_corr_initial": np.mean([r["reference_corr"] for r in runs], axis=0).round(4).tolist(),
        "overhead_share": selector_time / (selector_time + learner_time),
        "selector_ms_per_step": 1000.0 * selector_time / steps,
    }


def curves_of(runs: list[dict]) -> dict[str, list]:
    """Seed-mean, min and max accuracy and the seed-mean ETR per step, for the plots and the JSON."""
    accuracy = np.stack([r["accuracy"] for r in runs])
    return {
        "accuracy_mean": accuracy.mean(axis=0).round(5).tolist(),
        "accuracy_min": accuracy.min(axis=0).round(5).tolist(),
        "accuracy_max": accuracy.max(axis=0).round(5).tolist(),
        "etr_mean": np.stack([r["etr"] for r in runs]).mean(axis=0).round(5).tolist(),
    }


def run_strategy(
    cfg: SimConfig, strategy: str, selector_kwargs: dict[str, Any] | None, log: Callable[[str], None]
) -> list[dict]:
    """All seeds of one strategy/setting."""
    start = time.perf_counter()
    runs = [run_one(cfg, strategy, seed, selector_kwargs) for seed in range(cfg.seeds)]
    world = f"num_tasks={cfg.num_tasks} reference_noise_std={cfg.reference_noise_std} cap_fit={cfg.cap_fit}"
    log(f"{strategy} {selector_kwargs or ''} {world}: {time.perf_counter() - start:.1f}s")
    return runs


def vs_oracle(metrics: dict[str, Any], oracle: dict[str, Any]) -> dict[str, float | None]:
    """Share of the oracle's TTB100 gain, ``(1 - TTB100) / (1 - TTB100_oracle)``, and ETR over the oracle's."""
    oracle_gain = 1.0 - (1.0 if oracle["ttb100"] is None else oracle["ttb100"])
    own_gain = 1.0 - (1.0 if metrics["ttb100"] is None else metrics["ttb100"])
    return {
        "ttb100_gap_closed": own_gain / oracle_gain if oracle_gain > 0 else None,
        "etr_vs_oracle": metrics["etr"] / oracle["etr"],
    }


def targets(summary: dict[str, dict]) -> dict[str, Any]:
    """The issue's simulation targets, measured (a TTB of None, never reached, counts as 1)."""

    def ttb(name: str) -> float:
        value = summary[name]["ttb100"]
        return 1.0 if value is None else value

    gap_closed, etr_ratio = vs_oracle(summary["bots"], summary["oracle"]).values()
    return {
        "ttb100_gap_closed": gap_closed,
        "ttb100_gap_closed_met": gap_closed is not None and gap_closed >= 0.9,
        "etr_vs_oracle": etr_ratio,
        "etr_vs_oracle_met": etr_ratio >= 0.95,
        "bots_beats_mopps_ttb100": ttb("bots") < ttb("mopps"),
        "bots_beats_dots_ttb100": ttb("bots") < ttb("dots"),
    }


def paper_defaults(cfg: SimConfig) -> dict[str, Any]:
    """BOTSSelector's defaults (the paper's), with the pseudo count spelled out as G."""
    return {
        "implicit_weight": 0.1,
        "forgetting": 0.1,
        "target": 0.5,
        "thompson": True,
        "temperature": 0.0,
        "pseudo_count": float(cfg.group_size),
    }


@dataclasses.dataclass(frozen=True)
class Setting:
    """One ablation run: a strategy, selector arguments off the paper's defaults, and world/learner overrides."""

    label: str
    selector: dict[str, Any] = dataclasses.field(default_factory=dict)
    world: dict[str, Any] = dataclasses.field(default_factory=dict)
    strategy: str = "bots"


def ablation_settings(cfg: SimConfig) -> dict[str, list[Setting]]:
    """The settings of each ablation; everything not named stays at the paper's defaults and ``cfg``.

    Two are not selector settings. ``reference`` makes both reference columns noisier (per-task logit noise) and
    runs BOTS, BOTS without Thompson sampling and DOTS on that world, because which of them wins depends on how
    good the plug-in is. ``pool`` shrinks the task pool eightfold, so the run covers it eight times instead of
    once: tasks come back, trained tasks drift from what the reference columns say, and explicit evidence about a
    task can be used again.
    """
    g = cfg.group_size
    contenders = (("bots", "bots", {}), ("bots thompson=False", "bots", {"thompson": False}), ("dots", "dots", {}))
    return {
        "rho": [Setting(f"rho={v}", {"implicit_weight": v}) for v in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)],
        "lambda": [Setting(f"lambda={v}", {"forgetting": v}) for v in (0.02, 0.1, 0.3)],
        "target": [Setting(f"p*={v}", {"target": v}) for v in (0.3, 0.5, 0.7)],
        "thompson": [Setting(f"thompson={v}", {"thompson": v}) for v in (True, False)],
        "temperature": [Setting(f"tau={v}", {"temperature": v}) for v in (0.0, 0.05)],
        "pseudo_count": [Setting(f"m={v:g}", {"pseudo_count": float(v)}) for v in (g / 4, g, 4 * g)],
        "reference": [
            Setting(f"{name} ref_noise={v}", selector, {"reference_noise_std": v}, strategy)
            for v in (1.0, 2.0, 3.0)
            for name, strategy, selector in contenders
        ],
        "embedding": embedding_settings(),
        "pool": [
            Setting(f"{name} N={n}", selector, {"num_tasks": n}, strategy)
            for n in (cfg.num_tasks // 8, cfg.num_tasks)
            for name, strategy, selector in (("oracle", "oracle", {}), ("mopps", "mopps", {}), *contenders)
        ],
    }


FIXED_RHO = {"follow_accuracy": False}
# The world of the embedding ablation: 32-dimensional task features, nuisance of the same size as the signal.
EMBEDDING_WORLD = {"features": 32, "feature_noise": 1.0}


def embedding_settings() -> list[Setting]:
    """The embedding estimator's ablation: against explicit-only and reference BOTS in the same world, its predictor
    settings, the rule for rho, uninformative features (pure noise), and feature worlds of other sizes and noise."""
    world = EMBEDDING_WORLD
    emb = EMBEDDING

    def setting(label: str, selector: dict[str, Any] | None = None, **world_changes: Any) -> Setting:
        return Setting(f"embedding {label}", selector or {}, {**world, **world_changes}, emb)

    return [
        Setting("bots-explicit", {"implicit_weight": 0.0}, dict(world)),
        Setting("bots (reference)", {}, dict(world)),
        setting("defaults (rho <= 0.2 following the accuracy)"),
        setting("fixed rho=0.1", {"implicit_weight": 0.1, "estimator": FIXED_RHO}),
        setting("fixed rho=0.2", {"estimator": FIXED_RHO}),
        setting("rho <= 0.3 following the accuracy", {"implicit_weight": 0.3}),
        setting("ridge=10", {"estimator": {"ridge": 10.0}}),
        setting("decay=0.9", {"estimator": {"decay": 0.9}}),
        setting("decay=0.99", {"estimator": {"decay": 0.99}}),
        setting(
            "noise features, fixed rho=0.1", {"features": "noise", "implicit_weight": 0.1, "estimator": FIXED_RHO}
        ),
        setting("noise features, defaults", {"features": "noise"}),
        setting("with reference columns", {"features": "reference"}),
        setting("D=8", features=8),
        setting("D=128", features=128),
        setting("feature_noise=0.5", feature_noise=0.5),
        setting("feature_noise=2", feature_noise=2.0),
    ]


def is_main_run(cfg: SimConfig, setting: Setting) -> bool:
    """Whether a setting is exactly a run of the main comparison (same strategy, defaults, world and seeds)."""
    defaults = paper_defaults(cfg)
    return (
        setting.strategy in STRATEGIES
        and all(defaults[key] == value for key, value in setting.selector.items())
        and all(getattr(cfg, key) == value for key, value in setting.world.items())
    )


# Fields that only shape the reference columns and the task features. make_world draws them last, and neither uniform
# (its order comes from the selector's own generator) nor the oracle selects by them, so their runs do not depend on
# these.
REFERENCE_FIELDS = (
    "weak_skill",
    "strong_skill",
    "reference_noise_std",
    "reference_cluster_std",
    "reference_rollouts",
    "features",
    "feature_noise",
)


def config_of(cfg: SimConfig) -> dict[str, Any]:
    """``cfg`` for the report; without task features, without their fields (the report is what it was before)."""
    config = dataclasses.asdict(cfg)
    if not cfg.features:
        for name in ("features", "feature_noise"):
            del config[name]
    return config


def learner_world(cfg: SimConfig) -> SimConfig:
    """``cfg`` with the reference fields at their defaults: the key of the uniform baseline and the oracle."""
    return dataclasses.replace(cfg, **{name: getattr(SimConfig(), name) for name in REFERENCE_FIELDS})


def run_benchmark(
    cfg: SimConfig, ablations: list[str] | None = None, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Main comparison (every strategy) and the requested ablations; returns the JSON-able report.

    Every ablation entry is measured against the uniform baseline and the oracle of its own world: the main
    ones unless the setting changes the learner's world (``pool``), then both are run in that world too.
    """
    started = time.perf_counter()
    strategies = (*STRATEGIES, EMBEDDING) if cfg.features else STRATEGIES
    runs = {name: run_strategy(cfg, name, None, log) for name in strategies}
    baseline = np.stack([r["accuracy"] for r in runs["uniform"]]).mean(axis=0)
    summary = {name: summarise(r, baseline) for name, r in runs.items()}
    report: dict[str, Any] = {
        "config": config_of(cfg),
        "summary": summary,
        "targets": targets(summary),
        "curves": {name: curves_of(r) for name, r in runs.items()},
        "ablations": {},
    }
    yardsticks = {learner_world(cfg): (baseline, summary["oracle"])}  # per learner world: uniform curve, oracle

    def yardstick(world_cfg: SimConfig) -> tuple[np.ndarray, dict[str, Any]]:
        key = learner_world(world_cfg)
        if key not in yardsticks:
            curve = np.stack([r["accuracy"] for r in run_strategy(world_cfg, "uniform", None, log)]).mean(axis=0)
            yardsticks[key] = (curve, summarise(run_strategy(world_cfg, "oracle", None, log), curve))
        return yardsticks[key]

    settings = ablation_settings(cfg)
    done: dict[tuple, dict[str, Any]] = {}  # a setting that two ablations share (thompson=False) runs once
    for name in ablations or []:
        results = {}
        for setting in settings[name]:
            world_cfg = dataclasses.replace(cfg, **setting.world)
            world_baseline, oracle = yardstick(world_cfg)
            key = (setting.strategy, json.dumps(setting.selector, sort_keys=True), world_cfg)
            if is_main_run(cfg, setting):
                done[key] = summary[setting.strategy]  # same strategy, settings and seeds: the same result
            elif setting.strategy == "oracle" and not setting.selector:
                done[key] = oracle
            elif key not in done:
                done[key] = summarise(run_strategy(world_cfg, setting.strategy, setting.selector, log), world_baseline)
            results[setting.label] = {**done[key], **vs_oracle(done[key], oracle)}
        report["ablations"][name] = results
    report["wall_seconds"] = time.perf_counter() - started
    return report


# What the cap-fit comparison reports per strategy and fit: the plug-in's error and coefficient, and selection quality.
CAP_FIT_METRICS = (
    "implicit_mae",
    "plugin_mae_all_tasks",
    "max_abs_cap_coef",
    "etr",
    "final_accuracy",
    "ttb100",
)


def saturated_share(cfg: SimConfig) -> float:
    """Share of tasks whose weak and strong reference rates are both 0 or both 1, over the seeds' worlds."""
    shares = []
    for seed in range(cfg.seeds):
        weak, strong = make_world(cfg, np.random.default_rng([seed, 0])).reference.T
        shares.append(np.mean((weak == strong) & ((weak == 0) | (weak == 1))))
    return float(np.mean(shares))


def cap_fit_comparison(cfg: SimConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """BOTS and DOTS with the robust and with the paper's fit of the plug-in's ``mu`` in each of ``CAP_FIT_WORLDS``.

    Both fits of a strategy face the same worlds and rollout streams (same seeds). ``robust_minus_paper`` holds the
    differences of the two fits' metrics: negative is better for the errors, positive for ETR and accuracy.
    """
    started = time.perf_counter()
    report: dict[str, Any] = {"config": config_of(cfg), "worlds": {}}
    for name, overrides in CAP_FIT_WORLDS.items():
        world_cfg = dataclasses.replace(cfg, **overrides)
        baseline = np.stack([r["accuracy"] for r in run_strategy(world_cfg, "uniform", None, log)]).mean(axis=0)
        entry: dict[str, Any] = {"overrides": overrides, "saturated_share": saturated_share(world_cfg)}
        for strategy in ("bots", "dots"):
            fits = {}
            for fit in ("paper", "robust"):
                runs = run_strategy(dataclasses.replace(world_cfg, cap_fit=fit), strategy, None, log)
                metrics = summarise(runs, baseline)
                fits[fit] = {key: metrics[key] for key in CAP_FIT_METRICS}
            entry[strategy] = {
                **fits,
                "robust_minus_paper": {
                    key: fits["robust"][key] - fits["paper"][key]
                    for key in ("implicit_mae", "plugin_mae_all_tasks", "etr", "final_accuracy")
                },
            }
        report["worlds"][name] = entry
    report["wall_seconds"] = time.perf_counter() - started
    return report


def plot(report: dict[str, Any], directory: str) -> list[str]:
    """Accuracy with seed bands, ETR, TTB bars and (if any) ablation TTB100 bars; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    steps = report["config"]["steps"]
    colors = dict(zip((*STRATEGIES, EMBEDDING), plt.get_cmap("tab10").colors, strict=False))
    paths = []

    def save(fig, name: str) -> None:
        path = os.path.join(directory, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(steps + 1)
    for name, curve in report["curves"].items():
        ax.plot(x, curve["accuracy_mean"], label=name, color=colors[name], lw=1.5)
        ax.fill_between(x, curve["accuracy_min"], curve["accuracy_max"], color=colors[name], alpha=0.2, lw=0)
    ax.axhline(report["curves"]["uniform"]["accuracy_mean"][-1], color="grey", ls=":", lw=1)
    ax.set(xlabel="step", ylabel="held-out accuracy", title="Held-out accuracy (mean, band: min-max over seeds)")
    ax.legend(fontsize=8)
    save(fig, "sim_accuracy.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    window = max(1, steps // 32)
    kernel = np.ones(window) / window
    for name, curve in report["curves"].items():
        smooth = np.convolve(curve["etr_mean"], kernel, mode="valid")
        ax.plot(np.arange(smooth.size) + window, smooth, label=name, color=colors[name], lw=1.5)
    ax.set(xlabel="step", ylabel="effective-task ratio", ylim=(0, 1.02), title=f"ETR ({window}-step moving average)")
    ax.legend(fontsize=8)
    save(fig, "sim_etr.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(report["summary"])
    width = 0.38
    for offset, key in ((-width / 2, "ttb50"), (width / 2, "ttb100")):
        values = [report["summary"][n][key] for n in names]
        bars = ax.bar(np.arange(len(names)) + offset, [1.05 if v is None else v for v in values], width, label=key)
        for bar, value in zip(bars, values, strict=True):
            if value is None:
                bar.set_hatch("//")
                bar.set_alpha(0.4)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set(ylabel="fraction of the run", title="Steps to reach uniform's final accuracy (hatched: never)")
    ax.legend(fontsize=8)
    save(fig, "sim_ttb.png")

    if report["ablations"]:
        groups = report["ablations"]
        cols = min(4, len(groups))
        rows = -(-len(groups) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False)
        for ax, (name, entries) in zip(axes.flat, groups.items(), strict=False):
            values = [entry["ttb100"] for entry in entries.values()]
            # Strategy colours as in the other plots where a label names one (reference, pool); BOTS otherwise.
            hues = [colors.get(label.split()[0], colors["bots"]) for label in entries]
            ax.bar(np.arange(len(values)), [1.05 if v is None else v for v in values], color=hues)
            if name != "pool":  # the pool ablation carries its own oracles as bars
                ax.axhline(report["summary"]["oracle"]["ttb100"] or 1.0, color="grey", ls=":", lw=1)
            ax.axhline(1.0, color="black", lw=0.6)
            short = [label.replace(" thompson=False", " (mean)").replace("ref_noise=", "noise ") for label in entries]
            ax.set_xticks(np.arange(len(values)), short, rotation=60, ha="right", fontsize=7)
            ax.set_ylim(0, 1.1)
            ax.set_title(name, fontsize=9)
        for ax in list(axes.flat)[len(groups) :]:
            ax.axis("off")
        fig.suptitle("BOTS ablations: TTB100 (lower is better; dotted: oracle, solid: uniform)", fontsize=10)
        save(fig, "sim_ablations.png")
    return paths


# Multi-domain pool: three domains of fixed true pass rates. "near" sits around p*, "solved" is mostly solved and
# "hard" mostly unsolved; the pool is 20% / 60% / 20%. (name, tasks, Beta shape of the pass rates)
DOMAIN_POOL = (("near", 100, (5.0, 5.0)), ("solved", 300, (12.0, 1.0)), ("hard", 100, (1.0, 12.0)))
DOMAIN_SETTINGS = {
    "uniform sampling": {"strategy": "uniform"},
    "bots, no quotas": {},
    "bots, proportional quotas": {"domain_weights": "proportional"},
    "bots, uniform quotas": {"domain_weights": "uniform"},
}


def run_domains(seeds: int, steps: int = 200, batch_size: int = 32, group_size: int = 16) -> dict[str, Any]:
    """Per-domain shares of the selected tasks and the effective-task ratio, with and without domain quotas.

    The pass rates stay fixed (no learner), so the numbers isolate what selection does: where BOTS puts the batch
    when one domain has many tasks near p*, and what holding each domain to its quota costs in mixed groups.
    """
    names = [name for name, _, _ in DOMAIN_POOL]
    results: dict[str, Any] = {}
    for setting, extra in DOMAIN_SETTINGS.items():
        shares, etr, etr_by_domain = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 7])
            labels = np.concatenate([[name] * size for name, size, _ in DOMAIN_POOL])
            rates = np.concatenate([rng.beta(*shape, size) for _, size, shape in DOMAIN_POOL])
            order = rng.permutation(labels.size)
            labels, rates = labels[order], rates[order]
            selector = BOTSSelector(labels.size, implicit_weight=0.0, seed=seed, domains=labels, **extra)
            for _ in range(steps):
                indices = selector.select(batch_size)
                successes = rng.binomial(group_size, rates[indices]).astype(np.float64)
                selector.update(indices, successes, np.full(batch_size, float(group_size)))
                stats = selector.last_domain_stats
                shares.append([stats[name]["share"] for name in names])
                etr.append(selector.last_stats.effective_task_ratio)
                etr_by_domain.append([stats[name]["effective_task_ratio"] for name in names])
        shares_array = np.array(shares)
        results[setting] = {
            "share": dict(zip(names, shares_array.mean(axis=0).round(4).tolist(), strict=True)),
            "share_range": {
                n: [float(lo), float(hi)]
                for n, lo, hi in zip(names, shares_array.min(0), shares_array.max(0), strict=True)
            },
            "etr": round(float(np.mean(etr)), 4),
            "etr_by_domain": dict(
                zip(names, np.nanmean(np.array(etr_by_domain), axis=0).round(4).tolist(), strict=True)
            ),
        }
    pool = {name: size / sum(size for _, size, _ in DOMAIN_POOL) for name, size, _ in DOMAIN_POOL}
    return {"pool_share": pool, "steps": steps, "seeds": seeds, "batch_size": batch_size, "settings": results}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small world, short run, two seeds (a few seconds)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: 6, quick: 2)")
    parser.add_argument("--num-tasks", type=int, help="tasks in the pool (default: 8,192, quick: 1,024)")
    parser.add_argument("--steps", type=int, help="GRPO steps per run (default: 256, quick: 64)")
    parser.add_argument(
        "--features",
        type=int,
        default=0,
        help="give every task a D-dimensional feature vector (make_features: its difficulty and topic plus nuisance) "
        "and add bots-embedding (BOTS with the embedding estimator on them) to the comparison; 0: none",
    )
    parser.add_argument(
        "--feature-noise",
        type=float,
        default=SimConfig.feature_noise,
        help="standard deviation of the features' nuisance part, against 1 for the task's signal",
    )
    parser.add_argument(
        "--ablation",
        choices=["none", "all", *ablation_settings(SimConfig())],
        default="none",
        help="also run BOTS with each setting of one hyper-parameter, or in worlds with worse reference columns "
        "(reference) or a smaller task pool (pool); 'all' runs every ablation",
    )
    parser.add_argument(
        "--cap-fit",
        choices=["robust", "paper"],
        default="robust",
        help="how every selector's plug-in fits its coefficient mu (BOTSSelector(cap_fit=...))",
    )
    parser.add_argument(
        "--cap-fit-comparison",
        action="store_true",
        help="instead of the comparison of strategies: BOTS and DOTS with the robust and the paper's fit of mu, in "
        "worlds with many reference rates at 0/0 or 1/1 and with similar references (2,048 tasks, 128 steps, 8 "
        "seeds; under a minute)",
    )
    parser.add_argument(
        "--domains",
        action="store_true",
        help="instead of the comparison of strategies: per-domain shares and ETR with and without domain quotas in a "
        "three-domain pool (seconds)",
    )
    parser.add_argument("--output", help="write the JSON here instead of stdout")
    parser.add_argument("--plots", help="write PNG plots into this directory")
    args = parser.parse_args(argv)

    if args.cap_fit_comparison and (args.quick or args.plots or args.ablation != "none"):
        parser.error("--cap-fit-comparison runs on its own: drop --quick, --plots and --ablation.")
    if args.domains and (args.cap_fit_comparison or args.quick or args.plots or args.ablation != "none"):
        parser.error("--domains runs on its own: drop --cap-fit-comparison, --quick, --plots and --ablation.")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    cfg = cap_fit_config() if args.cap_fit_comparison else quick_config() if args.quick else SimConfig()
    cfg = dataclasses.replace(cfg, cap_fit=args.cap_fit)
    if args.features < 0 or args.feature_noise < 0:
        parser.error(f"--features and --feature-noise must be >= 0, got {args.features} and {args.feature_noise}.")
    cfg = dataclasses.replace(cfg, features=args.features, feature_noise=args.feature_noise)
    for name, value in (("seeds", args.seeds), ("num_tasks", args.num_tasks), ("steps", args.steps)):
        if value is not None:
            if value < 1:
                parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
            cfg = dataclasses.replace(cfg, **{name: value})
    if args.domains:
        start = time.perf_counter()
        report = {"domains": run_domains(args.seeds or 3), "wall_seconds": 0.0}
        report["wall_seconds"] = time.perf_counter() - start
    elif args.cap_fit_comparison:
        report = cap_fit_comparison(cfg, log)
    else:
        names = {"none": [], "all": list(ablation_settings(cfg))}.get(args.ablation, [args.ablation])
        report = run_benchmark(cfg, names, log=log)
    if args.plots:
        report["plots"] = plot(report, args.plots)
    text = json.dumps(report, indent=1)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    print(f"done in {report['wall_seconds']:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
