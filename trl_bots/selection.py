"""Scoring and batch selection: pick the tasks whose (sampled) pass rate is closest to the target.

A task's score is ``-|p_i - p*|``. With temperature 0 the batch is the top-B scores; with
temperature ``tau > 0`` it is B draws without replacement from ``softmax(score / tau)``,
done exactly with the Gumbel-top-k trick (perturb each logit with Gumbel noise, keep the B
largest). Both return the batch ordered from best to worst, ties broken by task id, so the
order is a deterministic function of the inputs.

Thompson draws at temperature 0 go through :func:`select_thompson_top`, which has the law of
drawing every task and taking the top B but reveals only the draws near the target.

:func:`select_tasks` applies a :class:`SelectionRule` to all tasks, :func:`select_by_quotas` to each domain's quota of
a round; what makes them fast (the density bound, the densities per domain, a reused buffer) stays in this module.
The math is in docs/algorithm.md (Selection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .posterior import posterior_mean
from .sampling import beta_log_pdf, density_bound, draws_in_window, sample_beta


# Thinning pays while a task is flagged with probability at most this (a flagged task costs about twice a full draw,
# which every task costs otherwise); beyond it every task is drawn in full.
MAX_FLAG_PROBABILITY = 0.6
# The first window is sized to hold this many times the batch in expectation, so that it rarely has to double.
WINDOW_MARGIN = 1.5
# Tasks on which the mean density at the target is estimated (evenly spaced): a deterministic function of the state.
DENSITY_PROBES = 256


@dataclass(frozen=True)
class SelectionRule:
    """How a round scores its tasks: by a Thompson draw or the posterior mean, its distance to ``target``, and
    ``temperature`` (0: the best scores; > 0: a softmax sample)."""

    target: float
    thompson: bool
    temperature: float

    @property
    def thompson_top(self) -> bool:
        """Thompson draws at temperature 0, selected by :func:`select_thompson_top` without drawing every task."""
        return self.thompson and self.temperature == 0


def distance_to_target(pass_rates: np.ndarray, target: float, out: np.ndarray | None = None) -> np.ndarray:
    """``|p_i - p*|``: the negated score, smaller is better (into ``out`` if given, which may be ``pass_rates``)."""
    distance = np.subtract(pass_rates, pass_rates.dtype.type(target), out=out)
    return np.abs(distance, out=distance)


def smallest_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest values, ascending by value then by index."""
    candidates = np.argpartition(values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return candidates[np.lexsort((candidates, values[candidates]))]


def select_top(distance: np.ndarray, batch_size: int) -> np.ndarray:
    """Temperature 0: the ``batch_size`` tasks closest to the target."""
    return smallest_k(distance, batch_size)


def select_softmax(distance: np.ndarray, batch_size: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Temperature > 0: ``batch_size`` draws without replacement from ``softmax(-distance / temperature)``."""
    uniforms = rng.random(distance.size)
    # Gumbel-top-k: the k largest of logit + Gumbel noise are a sample without replacement from softmax(logits).
    # Negated here so that smaller is better, as for distances: -(logit + g) = distance / tau + log(-log U).
    # Scaled by tau rather than dividing the distances by it: the same order, and no overflow for a tiny tau.
    perturbed = distance + temperature * np.log(-np.log(uniforms))
    return smallest_k(perturbed, batch_size)


def _window(target: float, half_width: float) -> tuple[float, float]:
    return max(0.0, target - half_width), min(1.0, target + half_width)


def _mean_density_at(alpha: np.ndarray, beta: np.ndarray, target: float, pool: np.ndarray | None) -> float:
    size = alpha.size if pool is None else pool.size
    probes = np.linspace(0, size - 1, min(size, DENSITY_PROBES)).astype(np.int64)
    probes = probes if pool is None else pool[probes]
    return float(np.exp(beta_log_pdf(np.float64(target), alpha[probes], beta[probes])).mean())


def mean_densities_by_group(
    alpha: np.ndarray, beta: np.ndarray, target: float, groups: np.ndarray, num_groups: int
) -> np.ndarray:
    """Each group's mean density at ``target``, estimated on one set of evenly spaced probes over all tasks.

    One evaluation serves every group (a domain's own probes would cost one per domain); NaN for a group without a
    probe. The estimate only sizes the first window of :func:`select_thompson_top_in_pool`, never the law of the draws.
    """
    probes = np.linspace(0, alpha.size - 1, min(alpha.size, DENSITY_PROBES)).astype(np.int64)
    densities = np.exp(beta_log_pdf(np.float64(target), alpha[probes], beta[probes]))
    counts = np.bincount(groups[probes], minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(groups[probes], weights=densities, minlength=num_groups) / counts


def _nearest(tasks: np.ndarray, draws: np.ndarray, target: float, batch_size: int) -> np.ndarray:
    distance = np.abs(draws - target)
    return tasks[np.lexsort((tasks, distance))[:batch_size]]


def select_thompson_top(
    rng: np.random.Generator, alpha: np.ndarray, beta: np.ndarray, target: float, batch_size: int
) -> np.ndarray:
    """The ``batch_size`` tasks whose Thompson draw ``X_i ~ Beta(alpha_i, beta_i)`` is closest to ``target``.

    Exactly the law of drawing every task and keeping the top ``batch_size`` (best first, ties by id), without
    drawing every task. The nearest draws lie in a window around the target, so only draws in windows are revealed
    (:func:`trl_bots.sampling.draws_in_window`), from a first window sized to hold about ``WINDOW_MARGIN`` batches.
    If it holds fewer than a batch, the window doubles: each task not yet placed has so far revealed only that its
    draw is outside the old window, so it is drawn afresh from its law conditioned on that (redrawn while it lands
    in the old window) and revealed on the new one. When windows grow too wide for thinning to pay (or a shape is
    below 1, or the pool is small), the remaining tasks are drawn in full, again conditioned on the last window.
    """
    return select_thompson_top_in_pool(rng, alpha, beta, target, batch_size, None, density_bound(alpha, beta))


def select_thompson_top_in_pool(
    rng: np.random.Generator,
    alpha: np.ndarray,
    beta: np.ndarray,
    target: float,
    batch_size: int,
    pool: np.ndarray | None,
    bound: float | None,
    density: float = math.nan,
) -> np.ndarray:
    """:func:`select_thompson_top` among the tasks of ``pool`` only (sorted task ids; ``None``: all tasks).

    ``bound`` is :func:`trl_bots.sampling.density_bound` of a superset of the pool: a caller choosing from several
    pools (the domains of a round) computes it once over all tasks, and may pass the pool's mean ``density`` at the
    target (see :func:`mean_densities_by_group`; NaN: estimated here). Costs time in proportion to the draws
    revealed, not to the size of the pool, which is never copied.
    """
    num_tasks = alpha.size if pool is None else pool.size
    if bound is None:
        density = 0.0
    elif math.isnan(density):
        density = _mean_density_at(alpha, beta, target, pool)
    half_width = WINDOW_MARGIN * batch_size / (2 * num_tasks * density) if density > 0 else math.inf
    tasks, draws = np.empty(0, dtype=np.int64), np.empty(0)
    previous = None  # the last window revealed: every task outside ``tasks`` has its draw outside it
    while bound is not None and half_width < 1:
        window = _window(target, half_width)
        if (window[1] - window[0]) * bound > MAX_FLAG_PROBABILITY:
            break
        new_tasks, new_draws = draws_in_window(rng, alpha, beta, window, bound, pool=pool)
        if previous is not None:
            unplaced = ~np.isin(new_tasks, tasks, assume_unique=True)
            new_tasks, new_draws = _redraw_outside(
                rng, alpha, beta, window, bound, previous, new_tasks[unplaced], new_draws[unplaced]
            )
        tasks, draws = np.concatenate([tasks, new_tasks]), np.concatenate([draws, new_draws])
        if tasks.size >= batch_size:
            return _nearest(tasks, draws, target, batch_size)
        previous, half_width = window, 2 * half_width
    return _nearest_drawing_all(rng, alpha, beta, target, batch_size, tasks, draws, previous, pool)


def _inside(draws: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return (draws >= window[0]) & (draws <= window[1])


def _redraw_outside(rng, alpha, beta, window, bound, previous, tasks, draws):
    """Redraw (on ``window``) the tasks whose draw fell in ``previous``: their law is conditioned on landing outside."""
    placed_tasks, placed_draws = [], []
    while tasks.size:
        again = _inside(draws, previous)
        placed_tasks.append(tasks[~again])
        placed_draws.append(draws[~again])
        # A redrawn task that lands outside ``window`` is settled too: outside both windows, never revealed.
        tasks, draws = draws_in_window(rng, alpha, beta, window, bound, tasks=tasks[again])
    if not placed_tasks:
        return tasks, draws
    return np.concatenate(placed_tasks), np.concatenate(placed_draws)


def _nearest_drawing_all(rng, alpha, beta, target, batch_size, tasks, draws, previous, pool):
    """Draw every task not placed yet, conditioned on landing outside ``previous`` (if any), and take the nearest."""
    if pool is not None:  # positions in the pool stand for its tasks; the pool is sorted, so ties still go by task id
        alpha, beta, tasks = alpha[pool], beta[pool], np.searchsorted(pool, tasks)
        return pool[_nearest_drawing_all(rng, alpha, beta, target, batch_size, tasks, draws, previous, None)]
    if previous is None:
        return select_top(distance_to_target(sample_beta(rng, alpha, beta), target), batch_size)
    rest = np.ones(alpha.size, dtype=bool)
    rest[tasks] = False
    rest = np.flatnonzero(rest)
    rest_draws = sample_beta(rng, alpha[rest], beta[rest]).astype(np.float64)
    again = np.flatnonzero(_inside(rest_draws, previous))
    while again.size:
        rest_draws[again] = sample_beta(rng, alpha[rest[again]], beta[rest[again]])
        again = again[_inside(rest_draws[again], previous)]
    distance = np.empty(alpha.size)
    distance[rest] = np.abs(rest_draws - target)
    distance[tasks] = np.abs(draws - target)
    return select_top(distance, batch_size)


# ------------------------------------------------------------------ a round's selection
def select_tasks(
    rng: np.random.Generator,
    alpha: np.ndarray,
    beta: np.ndarray,
    rule: SelectionRule,
    batch_size: int,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """``batch_size`` distinct tasks by ``rule`` among all tasks, best first; ``scratch`` (float32, one per task) is
    reused for the draws or means instead of a fresh array."""
    bound = density_bound(alpha, beta) if rule.thompson_top else None
    return _select_in_pool(rng, alpha, beta, rule, batch_size, None, bound, math.nan, scratch)


def select_by_quotas(
    rng: np.random.Generator,
    alpha: np.ndarray,
    beta: np.ndarray,
    rule: SelectionRule,
    quotas: np.ndarray,
    pools: list[np.ndarray],
    groups: np.ndarray,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """``quotas[d]`` tasks by ``rule`` inside each domain's pool (``pools[d]``: its sorted task ids; ``groups``: each
    task's domain), domains in order, each best first.

    What Thompson top-B selection needs to know of the posteriors, the density bound and each domain's mean density at
    the target, is computed once for all domains.
    """
    bound = density_bound(alpha, beta) if rule.thompson_top else None
    densities = np.full(len(quotas), math.nan)
    if bound is not None:
        densities = mean_densities_by_group(alpha, beta, rule.target, groups, len(quotas))
    chosen = [
        _select_in_pool(rng, alpha, beta, rule, int(k), pool, bound, density, scratch)
        for pool, k, density in zip(pools, quotas, densities, strict=True)
        if k
    ]
    return np.concatenate(chosen)


def _select_in_pool(rng, alpha, beta, rule, batch_size, pool, bound, density, scratch) -> np.ndarray:
    """The rule among the tasks of ``pool`` (sorted ids; None: all), ``bound`` and ``density`` as
    :func:`select_thompson_top_in_pool` takes them."""
    if rule.thompson_top:
        return select_thompson_top_in_pool(rng, alpha, beta, rule.target, batch_size, pool, bound, density)
    alpha, beta = (alpha, beta) if pool is None else (alpha[pool], beta[pool])
    out = None if scratch is None else scratch[: alpha.size]
    pass_rates = sample_beta(rng, alpha, beta, out=out) if rule.thompson else posterior_mean(alpha, beta, out=out)
    distance = distance_to_target(pass_rates, rule.target, out=pass_rates)
    if rule.temperature > 0:
        chosen = select_softmax(distance, batch_size, rule.temperature, rng)
    else:
        chosen = select_top(distance, batch_size)
    return chosen if pool is None else pool[chosen]
