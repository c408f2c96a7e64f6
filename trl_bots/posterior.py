"""The generalised Beta-Bernoulli update of BOTS (paper, Proposition 1), over all tasks at once.

One round tempers every belief toward the base prior (forgetting ``lambda``), then adds the
evidence: explicit success/failure counts for the tasks that were rolled out, weighted by
``1 - rho``, and implicit pseudo counts from a plug-in, weighted by ``rho``::

    alpha_i <- (1 - lambda) alpha_i + lambda alpha_0 + (1 - rho) s_i + rho s~_i
    beta_i  <- (1 - lambda) beta_i  + lambda beta_0  + (1 - rho) f_i + rho f~_i

The result is again a Beta distribution. Unselected tasks have ``s_i = f_i = 0``. See docs/algorithm.md
(Posterior update).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


# Elements per step of the in-place update: a step's slices of the five arrays stay in the CPU cache, so the
# update's several passes read the large arrays from memory about once instead of once per pass.
CHUNK_SIZE = 1 << 16


def update_posterior(
    alpha: np.ndarray,
    beta: np.ndarray,
    *,
    prior: tuple[float, float],
    forgetting: float,
    implicit_weight: float,
    indices: np.ndarray,
    successes: np.ndarray,
    failures: np.ndarray,
    pseudo_successes: np.ndarray | None = None,
    pseudo_failures: np.ndarray | None = None,
) -> None:
    """Apply one round's update to ``alpha`` and ``beta`` in place (nothing of length N is allocated).

    ``indices``, ``successes`` and ``failures`` describe the explicit evidence of the selected
    tasks. ``pseudo_successes`` / ``pseudo_failures`` are the implicit counts of every task
    (length N); they are required when ``implicit_weight > 0``.
    """
    dtype = alpha.dtype.type
    keep, rho = dtype(1.0 - forgetting), dtype(implicit_weight)
    tempered = dtype(forgetting * prior[0]), dtype(forgetting * prior[1])
    scratch = np.empty(min(CHUNK_SIZE, alpha.size), dtype=alpha.dtype)
    for start in range(0, alpha.size, CHUNK_SIZE):
        chunk = slice(start, start + CHUNK_SIZE)
        tmp = scratch[: alpha[chunk].size]
        for belief, base, pseudo in ((alpha, tempered[0], pseudo_successes), (beta, tempered[1], pseudo_failures)):
            part = belief[chunk]
            part *= keep
            part += base
            if implicit_weight > 0:
                part += np.multiply(pseudo[chunk], rho, out=tmp)
    # Indices are distinct (validated by the caller), so fancy-index += adds each count once.
    alpha[indices] += (1.0 - implicit_weight) * successes
    beta[indices] += (1.0 - implicit_weight) * failures


def posterior_mean(alpha: np.ndarray, beta: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Mean pass rate ``alpha / (alpha + beta)`` of each task's Beta belief (into ``out`` if given)."""
    total = np.add(alpha, beta, out=out)
    return np.divide(alpha, total, out=total)


def _chunked_posterior_means(alpha: np.ndarray, beta: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """:func:`posterior_mean` chunk by chunk, in one reused buffer: no array of length N is allocated."""
    scratch = np.empty(min(CHUNK_SIZE, alpha.size), dtype=alpha.dtype)
    for start in range(0, alpha.size, CHUNK_SIZE):
        chunk = slice(start, start + CHUNK_SIZE)
        mean = np.add(alpha[chunk], beta[chunk], out=scratch[: alpha[chunk].size])
        yield chunk, np.divide(alpha[chunk], mean, out=mean)


def average_posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> float:
    """The average over tasks of :func:`posterior_mean`."""
    # Pairwise float32 sums of <= 65536 terms, added up in float64.
    return sum(float(mean.sum()) for _, mean in _chunked_posterior_means(alpha, beta)) / alpha.size


class ChunkedGroups:
    """Tasks split into groups (e.g. domains), laid out chunk by chunk for per-group sums in one pass.

    A scatter-add over all N tasks (``np.bincount`` with weights) costs several times a plain sum. Here every chunk of
    :data:`CHUNK_SIZE` tasks keeps the positions of its tasks sorted by group, so a chunk's values, still in the
    cache, are gathered in group order and summed per run (``np.add.reduceat``). The largest group is left out of the
    gather: its sum is the chunk's total less the others'. Built once; costs 8 bytes per task outside that group.
    """

    def __init__(self, groups: np.ndarray, num_groups: int):
        groups = np.asarray(groups)
        self.sizes = np.bincount(groups, minlength=num_groups)
        self.largest = int(np.argmax(self.sizes))
        # Per chunk: positions (in the chunk) of the tasks outside the largest group, sorted by group; the groups
        # present among them; and where each one's run starts.
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, groups.size, CHUNK_SIZE):
            local = groups[start : start + CHUNK_SIZE]
            others = np.flatnonzero(local != self.largest)
            positions = others[np.argsort(local[others], kind="stable")]
            present, starts = np.unique(local[positions], return_index=True)
            self.chunks.append((positions.astype(np.intp), present, starts))


def group_posterior_means(alpha: np.ndarray, beta: np.ndarray, groups: ChunkedGroups) -> np.ndarray:
    """The average of :func:`posterior_mean` over the tasks of each group."""
    sums = np.zeros(len(groups.sizes))
    gathered = np.empty(min(CHUNK_SIZE, alpha.size), dtype=alpha.dtype)
    for (_, mean), (positions, present, starts) in zip(
        _chunked_posterior_means(alpha, beta), groups.chunks, strict=True
    ):
        # Positions lie in the chunk by construction: mode="clip" never clips, it only skips take's bounds check.
        in_order = np.take(mean, positions, out=gathered[: positions.size], mode="clip")
        # Pairwise float32 sums of <= 65536 terms, as in average_posterior_mean; the runs are summed in float64.
        runs = np.add.reduceat(in_order, starts, dtype=np.float64)
        sums[present] += runs
        sums[groups.largest] += float(mean.sum()) - float(runs.sum())
    return sums / groups.sizes


def informative_group_probability(alpha: np.ndarray, beta: np.ndarray, group_size: int) -> np.ndarray:
    """The posterior probability that a task's next group of ``group_size`` rollouts has mixed outcomes.

    GRPO learns only from a group whose rewards differ; with pass rate ``p`` that happens with probability
    ``1 - p^G - (1 - p)^G``. Under ``Beta(alpha, beta)`` its expectation is exact: ``E[p^G]`` is the product over
    ``j < G`` of ``(alpha + j) / (alpha + beta + j)``, and ``E[(1 - p)^G]`` the same with ``beta``. float64, one value
    per task (the products over ``G`` small factors stay well inside float64's range), computed in place: four arrays of
    the tasks' length, whatever ``G``.
    """
    alpha, beta = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    all_solved, none_solved = np.ones_like(alpha), np.ones_like(alpha)
    total, factor = alpha + beta, np.empty_like(alpha)
    for j in range(int(group_size)):
        for product, shape in ((all_solved, alpha), (none_solved, beta)):
            np.add(shape, j, out=factor)
            factor /= total
            product *= factor
        total += 1.0  # the next factor's denominator, alpha + beta + j + 1
    all_solved += none_solved
    return np.subtract(1.0, all_solved, out=all_solved)
