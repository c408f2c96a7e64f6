"""Exact Beta draws for millions of tasks per round.

Thompson sampling draws one Beta variate per task per round, which dominates the cost of a round on a large task
pool: ``numpy.random.Generator.beta`` runs a scalar rejection loop per element (about 90 ns per draw on a 2-core
machine). Here Cheng's exact algorithm BB (1978) runs as whole-array NumPy passes instead: every element is
attempted at once and only the rejected ones (about 1 in 7) are retried.

BB is stated for shapes > 1, but its envelope and both of its tests are continuous in the shapes, so it stays exact
at a shape of exactly 1 (the limit of its parameter ``lambda`` there is 1, which reproduces Cheng's algorithm BC);
at ``Beta(1, 1)`` it returns its uniform proposal unchanged. That matters because the interpolation plug-in clips
its predictions to 0 or 1, which leaves many shapes at exactly 1: they take the same branch-free path as the rest.
Shapes below 1 (only possible with a prior below 1) use NumPy's own sampler.

The tasks are cut into fixed chunks of :data:`CHUNK_SIZE`, each with its own generator seeded from the selector's
generator, and the chunks run on a thread pool (NumPy releases the GIL in these loops; a chunk's arrays fit in the
CPU cache). The chunking does not depend on the number of threads, so the draws are a deterministic function of the
selector's generator state and the parameters: what exact resume and rank consistency need.

Top-B selection does not need every draw: the B draws closest to the target lie in a small window around it, and
every draw outside the window is farther away. :func:`draws_in_window` draws the same law but reveals only the draws
that fall in a window: which tasks land there, and where. By thinning (Lewis and Shedler, 1979) it costs time in
proportion to the number of tasks flagged for the window, not to the number of tasks (NumPy only, single-threaded).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np


CHUNK_SIZE = 1 << 15  # tasks per independent stream; part of the draws' definition, not a per-machine tuning knob
SCALAR_BELOW = 1 << 14  # fewer tasks than this: NumPy's scalar sampler beats the fixed cost of the vectorised passes
_LOG_4 = math.log(4.0)
_ONE_PLUS_LOG_5 = 1.0 + math.log(5.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@cache
def _thread_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8), thread_name_prefix="trl-bots-beta")


def cheng_bb(rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cheng's algorithm BB: ``W`` with ``W / (b + W) ~ Beta(a, b)``, per element; needs ``1 <= a <= b`` (float64).

    The acceptance test adds and subtracts terms of the size of the shapes (``a + r - W``, with ``r`` about
    ``(a + lambda^-1) v``) to decide on a difference of order 1, so it runs in float64: in float32, whose spacing at
    1e6 is 0.06, Beta(1e6, 1e6) draws came out with a variance 1% too high. The uniforms stay float32: their spacing
    moves a proposal by far less than the law's spread.
    """
    total = a + b
    w = np.empty_like(a)
    todo = None  # None: every element (spares the gathers on the first pass); then the rejected positions
    # A uniform of exactly 0 (probability 2^-24) gives log(0) = -inf: the tests below then accept W = 0.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # lambda = sqrt((total - 2) / (2ab - total)) is 0 / 0 at a = b = 1, where its limit is 1; it is <= 1 elsewhere.
        scale = np.fmin((total - 2) / (2 * a * b - total), 1.0)
        np.sqrt(scale, out=scale)
        shift = 1 / scale
        shift += a
        while todo is None or todo.size:
            a_t, b_t, total_t, scale_t, shift_t = (
                (a, b, total, scale, shift)
                if todo is None
                else (a[todo], b[todo], total[todo], scale[todo], shift[todo])
            )
            uniforms = rng.random(2 * a_t.size, dtype=np.float32).astype(np.float64)
            u1, z = uniforms[: a_t.size], uniforms[a_t.size :]
            v = np.subtract(1, u1)
            np.divide(u1, v, out=v)
            np.log(v, out=v)
            v *= scale_t
            w_t = np.exp(v)
            w_t *= a_t
            z *= u1
            z *= u1
            r = v
            r *= shift_t
            r -= _LOG_4
            s = a_t + r
            s -= w_t
            # Squeeze (log z <= 5z - 1 - log 5) accepts about half; the exact test with its logs runs on the rest.
            undecided = np.flatnonzero(s + _ONE_PLUS_LOG_5 < 5 * z)
            t = np.log(z[undecided])
            s_u = s[undecided]
            maybe = np.flatnonzero(s_u <= t)  # s > t accepts: s is a lower bound of the exact test's left side
            undecided = undecided[maybe]
            total_u = total_t[undecided]
            exact = np.log(total_u / (b_t[undecided] + w_t[undecided]))
            exact *= total_u
            exact += r[undecided]
            rejected = undecided[exact < t[maybe]]
            if todo is None:
                w[:] = w_t
                todo = rejected
            else:
                w[todo] = w_t
                todo = todo[rejected]
    return w


def _sample_chunk(rng: np.random.Generator, alpha: np.ndarray, beta: np.ndarray, out: np.ndarray) -> None:
    low = np.minimum(alpha, beta)
    if low.min(initial=1) < 1:
        below_one = np.flatnonzero(low < 1)
        out[below_one] = rng.beta(alpha[below_one], beta[below_one])
        regular = np.flatnonzero(low >= 1)
        draws = np.empty(regular.size, dtype=np.float32)
        _sample_chunk(rng, alpha[regular], beta[regular], draws)
        out[regular] = draws
        return
    high = np.maximum(alpha, beta).astype(np.float64)
    w = cheng_bb(rng, low.astype(np.float64), high)
    # BB draws the variate of the smaller shape: W / (b + W) ~ Beta(a, b); flip where alpha is the larger shape.
    numerator = np.where(alpha > beta, high, w)
    high += w
    np.divide(numerator, high, out=out, casting="same_kind")


def sample_beta(
    rng: np.random.Generator, alpha: np.ndarray, beta: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Draw one Beta(alpha_i, beta_i) variate per task, exactly (float32 arrays in and out; ``out`` may be given).

    Consumes one draw of ``rng`` per chunk of :data:`CHUNK_SIZE` tasks (the chunk's seed); below
    :data:`SCALAR_BELOW` tasks it draws with ``rng.beta`` directly.
    """
    n = alpha.size
    out = np.empty(n, dtype=np.float32) if out is None else out
    if n < SCALAR_BELOW:
        out[:] = rng.beta(alpha, beta)
        return out
    starts = range(0, n, CHUNK_SIZE)
    seeds = rng.integers(0, 2**63, size=len(starts))

    def draw_chunk(k: int) -> None:
        chunk = slice(starts[k], starts[k] + CHUNK_SIZE)
        _sample_chunk(np.random.default_rng(seeds[k]), alpha[chunk], beta[chunk], out[chunk])

    if len(starts) == 1:
        draw_chunk(0)
    else:
        for future in [_thread_pool().submit(draw_chunk, k) for k in range(len(starts))]:
            future.result()
    return out


# ------------------------------------------------------------------ draws revealed only in a window
def _stirling(y: np.ndarray) -> np.ndarray:
    """``log Gamma(y) - (y - 1/2) log y + y - log(2 pi) / 2`` for ``y >= 9``: Stirling's series, error < 3e-12."""
    inv = 1.0 / y
    inv2 = inv * inv
    return inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))


def log_beta_function(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log B(a, b)`` for shapes ``>= 1`` in float64 (NumPy has no log-gamma): off by < 1e-11 for shapes up to 1e4.

    Stirling's series at ``a + 8``, ``b + 8`` and ``a + b + 8``, brought back by
    ``Gamma(x + 8) = x (x + 1) ... (x + 7) Gamma(x)``; the three rising products share one log.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    total = a + b
    # (prod a)(prod b) / (prod a + b), term by term so that it cannot overflow: row k holds (a + k)(b + k) / (a + b + k),
    # and the product over the rows runs in row order, exactly as a loop over k would multiply (few calls, not 35).
    k = np.arange(8.0).reshape(-1, *[1] * total.ndim)
    ratio = np.prod((a + k) * (b + k) / (total + k), axis=0)
    ya, yb, yt = a + 8.0, b + 8.0, total + 8.0
    main = (ya - 0.5) * np.log(ya) + (yb - 0.5) * np.log(yb) - (yt - 0.5) * np.log(yt) - 8.0 + _HALF_LOG_2PI
    return main + _stirling(ya) + _stirling(yb) - _stirling(yt) - np.log(ratio)


def beta_log_pdf(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Log density of Beta(a, b) at ``x`` in [0, 1], for shapes ``>= 1`` (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A shape of exactly 1 contributes x^0 = 1, also at x = 0 or 1 where the log is -inf.
        left = np.where(a == 1, 0.0, (a - 1) * np.log(x))
        right = np.where(b == 1, 0.0, (b - 1) * np.log1p(-x))
    return left + right - log_beta_function(a, b)


def inverse_std(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 / sigma`` of Beta(a, b): for shapes >= 1 (log-concave) an upper bound of its density (float64)."""
    total = np.asarray(a, dtype=np.float64) + b
    return total * np.sqrt((total + 1) / (np.asarray(a, dtype=np.float64) * b))


def density_bound(alpha: np.ndarray, beta: np.ndarray) -> float | None:
    """An upper bound of every task's Beta density, or ``None`` if some shape is below 1.

    With both shapes >= 1 a Beta density is log-concave, and a log-concave density never exceeds
    ``1 / sigma`` (Bobkov and Chistyakov, 2015: ``sigma^2 sup f^2 <= 1``). Here, with ``n = a + b``
    and ``l <= min(a, b)``, ``1 / sigma^2 = n^2 (n + 1) / (a b) <= n^2 (n + 1) / (l (n - l))``, which
    grows with ``n`` (as ``n >= 2 l``): the smallest shape and the largest ``n`` over all tasks bound
    every task, for four reductions instead of a pass of arithmetic per task.
    """
    low = float(min(alpha.min(), beta.min()))
    if low < 1:
        return None
    n = float(alpha.max()) + float(beta.max())
    return math.sqrt(n * n * (n + 1) / (low * (n - low))) * (1 + 1e-6)  # margin for float32 rounding of the shapes


def bernoulli_positions(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Sorted positions of the successes among ``n`` Bernoulli(p) trials, in time proportional to their number.

    The gaps between successes are geometric: only they are drawn, never one uniform per trial.
    """
    if p >= 1:
        return np.arange(n)
    if p <= 0:
        return np.empty(0, dtype=np.int64)
    blocks, end = [], -1
    expected = n * p
    while end < n - 1:
        gaps = rng.geometric(p, size=int(expected + 4 * math.sqrt(expected) + 16))
        block = np.cumsum(gaps)
        block += end
        blocks.append(block)
        end = int(block[-1])
    positions = np.concatenate(blocks)
    return positions[: np.searchsorted(positions, n)]


def draws_in_window(
    rng: np.random.Generator,
    alpha: np.ndarray,
    beta: np.ndarray,
    window: tuple[float, float],
    bound: float,
    tasks: np.ndarray | None = None,
    pool: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``X_i ~ Beta(alpha_i, beta_i)`` for the ``tasks`` (default: all) and reveal those in ``window``.

    ``tasks`` is a small set, flagged with one uniform each; ``pool`` (instead) a large one, e.g. one domain's tasks,
    searched by geometric skips like the whole pool.

    Returns the tasks whose draw lies in ``window = (lo, hi)`` and their draws (float64); every other
    task's draw lies outside the window, with the exact conditional law (never materialised).
    ``bound`` must bound every density on the window (see :func:`density_bound`), with
    ``(hi - lo) * bound <= 1``.

    Thinning: a task is flagged with probability ``p = (hi - lo) * bound``, a flagged task proposes
    ``X ~ Uniform(lo, hi)`` and keeps it with probability ``f_i(X) / bound``. So a task keeps a value
    in ``[x, x + dx]`` with probability ``p * dx / (hi - lo) * f_i(x) / bound = f_i(x) dx``: its Beta law
    on the window. Only flagged tasks cost work, and with the whole pool they are found by geometric
    skips (:func:`bernoulli_positions`).
    """
    lo, hi = window
    flag_probability = (hi - lo) * bound
    if not 0 <= flag_probability <= 1:
        raise ValueError(f"The window {window} is too wide for thinning under the density bound {bound}.")
    if tasks is None and pool is None:
        flagged = bernoulli_positions(rng, alpha.size, flag_probability)
    elif tasks is None:
        flagged = pool[bernoulli_positions(rng, pool.size, flag_probability)]
    else:
        flagged = tasks[rng.random(tasks.size) < flag_probability]
    proposals = lo + (hi - lo) * rng.random(flagged.size)
    heights = bound * rng.random(flagged.size)  # keep the proposal iff height < f_i(proposal)
    a, b = alpha[flagged].astype(np.float64), beta[flagged].astype(np.float64)
    # Squeeze: f_i <= 1 / sigma_i rejects most proposals before the exact density is needed.
    maybe = np.flatnonzero(heights < inverse_std(a, b))
    with np.errstate(divide="ignore"):
        kept = maybe[np.log(heights[maybe]) < beta_log_pdf(proposals[maybe], a[maybe], b[maybe])]
    return flagged[kept], proposals[kept]
