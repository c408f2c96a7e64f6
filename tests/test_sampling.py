"""Exact Beta draws (trl_bots.sampling) and exact Thompson top-B selection: the laws against scipy and brute force,
determinism, independence of the thread count."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import numpy as np
import pytest
from scipy import special, stats

from trl_bots import BOTSSelector, sampling, selection
from trl_bots.sampling import (
    CHUNK_SIZE,
    bernoulli_positions,
    beta_log_pdf,
    density_bound,
    draws_in_window,
    inverse_std,
    log_beta_function,
    sample_beta,
)
from trl_bots.selection import select_thompson_top


# For the tests of the thinned draws and of selection, which run many tests at once: a p-value below this flags a
# wrong law, while chance alone trips one about once in 1e5 runs of this file (seeds are fixed: a pass stays a pass).
P_MIN = 1e-6


SHAPES = [
    (1.0, 1.0),
    (1.0, 3.0),
    (4.0, 1.0),
    (1.0, 5000.0),
    (5000.0, 1.0),
    (1.0001, 2.0),
    (1.5, 1.0000001),
    (2.0, 2.0),
    (1.5, 30.0),
    (200.0, 3.0),
    (5000.0, 5000.0),
    (4999.0, 17.0),
    (0.5, 0.5),
    (0.3, 4.0),
    (0.9, 1.0),
    (1.0, 0.3),  # much smaller shapes put most draws within float32 rounding of 0 or 1
]


def draws(alpha: float, beta: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return sample_beta(rng, np.full(n, alpha, dtype=np.float32), np.full(n, beta, dtype=np.float32))


@pytest.mark.parametrize(("alpha", "beta"), SHAPES)
def test_draws_follow_the_beta_law(alpha, beta):
    x = draws(alpha, beta, 100_000)
    assert x.dtype == np.float32 and ((x >= 0) & (x <= 1)).all()
    assert stats.kstest(x, stats.beta(alpha, beta).cdf).pvalue > 1e-4


def test_mixed_shapes_in_one_array_follow_their_own_laws():
    # Shapes below, at and above 1 interleaved, across several chunks: each one's draws must follow its own Beta.
    per_shape = 20_000
    alpha = np.repeat(np.array([a for a, _ in SHAPES], dtype=np.float32), per_shape)
    beta = np.repeat(np.array([b for _, b in SHAPES], dtype=np.float32), per_shape)
    order = np.random.default_rng(1).permutation(alpha.size)
    x = sample_beta(np.random.default_rng(2), alpha[order], beta[order])
    for k, (a, b) in enumerate(SHAPES):
        mine = x[np.flatnonzero((order >= k * per_shape) & (order < (k + 1) * per_shape))]
        assert stats.kstest(mine, stats.beta(a, b).cdf).pvalue > 1e-4, (a, b)


def test_mean_and_variance_of_large_shapes_are_right():
    # KS tests at 1e5 draws cannot see a bias of the acceptance test that float32 cancellation would cause here.
    a, b = 3000.0, 2000.0
    x = draws(a, b, 400_000).astype(np.float64)
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / x.size)
    assert abs(x.var() / var - 1) < 0.02


@pytest.mark.parametrize(("a", "b"), [(1e6, 1e6), (1e6, 3e5), (2.0, 1e6)])
def test_mean_and_variance_at_the_largest_shapes_are_right(a, b):
    # Shapes up to 1e6 are reachable (1e6 trials per round). A float32 acceptance test gave Beta(1e6, 1e6) a variance
    # 1% too high, 8 standard errors at 2^20 draws; each bound here is 5 standard errors.
    n = 1 << 20
    x = draws(a, b, n, seed=11).astype(np.float64)
    mean, var, excess_kurtosis = (float(v) for v in stats.beta(a, b).stats("mvk"))
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / n)
    assert abs(x.var() / var - 1) < 5 * np.sqrt((2 + excess_kurtosis) / n)


def test_same_seed_same_draws_and_generator_state():
    alpha = np.random.default_rng(3).uniform(0.5, 40, 3 * CHUNK_SIZE + 17).astype(np.float32)
    beta = np.random.default_rng(4).uniform(1.0, 40, alpha.size).astype(np.float32)
    first, second = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(sample_beta(first, alpha, beta), sample_beta(second, alpha, beta))
    assert first.bit_generator.state == second.bit_generator.state
    assert not np.array_equal(sample_beta(first, alpha, beta), sample_beta(np.random.default_rng(8), alpha, beta))


@pytest.mark.parametrize("workers", [1, 3])
def test_draws_do_not_depend_on_the_thread_count(workers):
    alpha = np.random.default_rng(5).uniform(1.0, 9, 4 * CHUNK_SIZE + 5).astype(np.float32)
    beta = np.ones_like(alpha)
    expected = sample_beta(np.random.default_rng(9), alpha, beta)
    with mock.patch.object(sampling, "_thread_pool", return_value=ThreadPoolExecutor(max_workers=workers)):
        np.testing.assert_array_equal(sample_beta(np.random.default_rng(9), alpha, beta), expected)


def test_out_buffer_is_filled_and_returned():
    alpha = np.full(10, 2.0, dtype=np.float32)
    out = np.empty(10, dtype=np.float32)
    result = sample_beta(np.random.default_rng(0), alpha, alpha, out=out)
    assert result is out
    np.testing.assert_array_equal(out, sample_beta(np.random.default_rng(0), alpha, alpha))


def test_log_beta_function_and_density_match_scipy():
    a = np.array([1.0, 1.0, 1.5, 2.0, 7.3, 5000.0, 4999.0, 1.0001, 300.0])
    b = np.array([1.0, 3.0, 30.0, 2.0, 1.0, 5000.0, 17.0, 7.0, 2.5])
    np.testing.assert_allclose(log_beta_function(a, b), special.betaln(a, b), rtol=1e-12, atol=1e-10)
    x = np.array([0.5, 0.0, 0.01, 0.99, 1.0, 0.5, 0.77, 0.2, 0.99])
    expected = stats.beta.logpdf(x, a, b)
    np.testing.assert_allclose(beta_log_pdf(x, a, b), expected, rtol=1e-10, atol=1e-9)


def test_density_bound_bounds_every_density():
    grid = np.array([1.0, 1.0001, 1.3, 2.0, 5.0, 17.0, 120.0, 5000.0])
    a, b = (m.ravel() for m in np.meshgrid(grid, grid))
    x = np.linspace(0, 1, 20_001)
    peak = stats.beta.pdf(x[:, None], a, b).max(axis=0)
    assert np.all(peak <= inverse_std(a, b))  # log-concave densities: sup f <= 1 / sigma
    for a_i, b_i, peak_i in zip(a, b, peak, strict=True):
        bound = density_bound(np.array([a_i, 2.0], np.float32), np.array([b_i, 3.0], np.float32))
        assert bound >= peak_i
    assert density_bound(np.array([0.9, 2.0], np.float32), np.array([2.0, 2.0], np.float32)) is None


def test_bernoulli_positions_are_bernoulli_trials():
    rng = np.random.default_rng(5)
    n, p = 200_000, 0.003
    counts = np.zeros(n // 1000)
    total = 0
    for _ in range(50):
        positions = bernoulli_positions(rng, n, p)
        assert np.all(np.diff(positions) > 0) and positions[0] >= 0 and positions[-1] < n
        total += positions.size
        counts += np.bincount(positions // 1000, minlength=counts.size)
    assert stats.binomtest(total, 50 * n, p).pvalue > P_MIN
    assert stats.chisquare(counts).pvalue > P_MIN  # uniform over the positions
    np.testing.assert_array_equal(bernoulli_positions(rng, 10, 1.0), np.arange(10))


@pytest.mark.parametrize(
    ("a", "b", "window"),
    [
        (1.0, 1.0, (0.4, 0.6)),
        (3.0, 9.0, (0.2, 0.3)),
        (1.0, 8.0, (0.0, 0.05)),
        (12.0, 1.0, (0.95, 1.0)),
        (40.0, 40.0, (0.49, 0.53)),
        (2.5, 1.7, (0.0, 0.2)),
    ],
)
def test_draws_in_window_follow_the_law_restricted_to_the_window(a, b, window):
    """Which tasks land in the window is Bernoulli(P(window)); where they land is the Beta law truncated to it."""
    n = 400_000
    alpha, beta = np.full(n, a, np.float32), np.full(n, b, np.float32)
    assert (window[1] - window[0]) * density_bound(alpha, beta) <= 1  # the precondition of thinning
    law = stats.beta(a, b)
    mass = law.cdf(window[1]) - law.cdf(window[0])
    tasks, draws = draws_in_window(np.random.default_rng(6), alpha, beta, window, density_bound(alpha, beta))
    assert np.all(np.diff(tasks) > 0) and np.all((draws >= window[0]) & (draws <= window[1]))
    assert stats.binomtest(tasks.size, n, mass).pvalue > P_MIN
    truncated = lambda x: (law.cdf(x) - law.cdf(window[0])) / mass  # noqa: E731
    assert stats.kstest(draws, truncated).pvalue > P_MIN
    assert stats.chisquare(np.bincount(tasks // 4000, minlength=n // 4000)).pvalue > P_MIN


# Six kinds of task, ten of each: small enough for brute force, large enough for windows that are worth thinning.
KINDS = np.array([(2.0, 2.0), (6.0, 5.0), (1.0, 4.0), (4.0, 1.5), (1.0, 1.0), (3.0, 7.0)], np.float32)
POOL_KIND = np.repeat(np.arange(len(KINDS)), 10)


@pytest.mark.parametrize(
    ("margin", "max_flag"),
    [(2.0, 1.0), (0.2, 1.0), (0.2, 0.3), (2.0, 0.0)],
    ids=["one-window", "doubling-windows", "windows-then-all", "all-drawn"],
)
def test_thompson_top_has_the_law_of_drawing_every_task(monkeypatch, margin, max_flag):
    """The kinds of the first and second pick, against brute force, through each path of the selection."""
    monkeypatch.setattr(selection, "WINDOW_MARGIN", margin)
    monkeypatch.setattr(selection, "MAX_FLAG_PROBABILITY", max_flag)
    alpha, beta = KINDS[POOL_KIND, 0], KINDS[POOL_KIND, 1]
    rng, repeats, target, kinds = np.random.default_rng(7), 3000, 0.45, len(KINDS)
    ours = np.array([select_thompson_top(rng, alpha, beta, target, 2) for _ in range(repeats)])
    draws = np.random.default_rng(8).beta(alpha, beta, size=(repeats, alpha.size))
    reference = np.argsort(np.abs(draws - target), axis=1, kind="stable")[:, :2]
    cells = [
        np.bincount(kinds * POOL_KIND[p[:, 0]] + POOL_KIND[p[:, 1]], minlength=kinds**2) for p in (ours, reference)
    ]
    table = np.stack(cells)
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_thompson_top_on_a_large_pool_picks_like_brute_force():
    """Selection frequencies per group of tasks on a pool large enough for thinning, against brute force."""
    rng = np.random.default_rng(9)
    groups = np.array([(1.0, 9.0), (5.0, 5.0), (2.0, 2.0), (9.0, 1.0), (20.0, 30.0)], np.float32)
    group = rng.integers(0, len(groups), 50_000)
    alpha, beta = groups[group, 0], groups[group, 1]
    ours = np.concatenate([select_thompson_top(rng, alpha, beta, 0.5, 32) for _ in range(300)])
    reference = np.concatenate(
        [np.argsort(np.abs(rng.beta(alpha, beta) - 0.5), kind="stable")[:32] for _ in range(300)]
    )
    table = np.stack([np.bincount(group[ours], minlength=5), np.bincount(group[reference], minlength=5)])
    assert stats.chi2_contingency(table).pvalue > P_MIN
    # Tasks concentrated near the target are picked far more often than tasks near 0 or 1.
    assert table[0, 1] > 5 * (table[0, 0] + table[0, 3])


def test_thompson_top_is_a_deterministic_function_of_the_generator_state():
    rng = np.random.default_rng(10)
    alpha = rng.uniform(1.0, 20.0, 200_000).astype(np.float32)
    beta = rng.uniform(1.0, 20.0, 200_000).astype(np.float32)
    first, second = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(3):
        picked = select_thompson_top(first, alpha, beta, 0.5, 64)
        np.testing.assert_array_equal(picked, select_thompson_top(second, alpha, beta, 0.5, 64))
        assert np.unique(picked).size == 64
    assert first.bit_generator.state == second.bit_generator.state


def test_selector_resumes_bit_identically_on_the_thinning_path():
    """Save mid-run and load into a fresh selector: the next rounds match, with a pool large enough for windows."""
    rng = np.random.default_rng(12)
    weak = rng.uniform(0.0, 0.7, 50_000)
    reference = np.stack([weak, np.clip(weak + 0.3, 0, 1)], axis=1)
    first, second = (BOTSSelector(50_000, reference, seed=3) for _ in range(2))
    outcomes = np.random.default_rng(13)

    def play(selector, indices, rounds):
        picked = []
        for _ in range(rounds):
            successes = outcomes.binomial(8, reference[indices, 0]).astype(float)
            selector.update(indices, successes, np.full(indices.size, 8.0))
            indices = selector.select(64)
            picked.append(indices)
        return picked

    start = play(first, first.select(64), 5)[-1]
    second.load_state_dict(first.state_dict())
    state = outcomes.bit_generator.state
    runs = []
    for selector in (first, second):
        outcomes.bit_generator.state = state
        runs.append(play(selector, start, 5))
    for ours, resumed in zip(*runs, strict=True):
        np.testing.assert_array_equal(ours, resumed)
