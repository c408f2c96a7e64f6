"""BOTSSelector: the update formula, the plug-in, strategies, selection behaviour, state, validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trl_bots import BOTSSelector, InterpolationEstimator


def make_reference(num_tasks: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weak = rng.uniform(0.0, 0.8, num_tasks)
    strong = np.clip(weak + rng.uniform(0.0, 0.4, num_tasks), 0.0, 1.0)
    return np.stack([weak, strong], axis=1)


def random_round(rng: np.random.Generator, indices: np.ndarray, group_size: int = 8):
    trials = np.full(indices.size, group_size)
    return rng.integers(0, group_size + 1, indices.size), trials


def reference_cap_coefficient(reference, observed, cap_fit):
    """mu_hat of one batch (``observed``: task id -> rate); None where the robust fit skips the batch."""
    if cap_fit == "paper":
        batch_weak = sum(reference[i][0] for i in observed) / len(observed)
        batch_strong = sum(reference[i][1] for i in observed) / len(observed)
        return (sum(observed.values()) / len(observed) - batch_weak) / (batch_strong - batch_weak + 1e-6)
    differ = [i for i in observed if reference[i][1] != reference[i][0]]
    total_gap = sum(abs(reference[i][1] - reference[i][0]) for i in differ)
    if not differ or total_gap**2 / len(differ) < 0.05:
        return None
    signed = sum((observed[i] - reference[i][0]) * (1 if reference[i][1] > reference[i][0] else -1) for i in differ)
    return min(max(signed / total_gap, -2.0), 3.0)


def reference_rounds(
    reference, rounds, *, forgetting, implicit_weight, prior, pseudo_count, momentum, dots=False, cap_fit="robust"
):
    """The BOTS update written task by task from the formulas of docs/algorithm.md (Posterior update, Implicit
    evidence), in float64."""
    num_tasks = len(reference)
    alpha, beta = [prior[0]] * num_tasks, [prior[1]] * num_tasks
    mu = None
    for indices, successes, trials in rounds:
        observed = {int(i): s / n for i, s, n in zip(indices, successes, trials, strict=True)}
        mu_hat = reference_cap_coefficient(reference, observed, cap_fit)
        if mu_hat is not None:
            mu = mu_hat if mu is None else momentum * mu + (1 - momentum) * mu_hat
        counts = {int(i): (s, n - s) for i, s, n in zip(indices, successes, trials, strict=True)}
        for i in range(num_tasks):
            weak, strong = reference[i]
            q = min(max(weak + (0.5 if mu is None else mu) * (strong - weak), 0.0), 1.0)
            s, f = counts.get(i, (0.0, 0.0))
            pseudo_s, pseudo_f = pseudo_count * q, pseudo_count * (1 - q)
            if i in counts and not dots:
                pseudo_s, pseudo_f = s, f  # the observed rate replaces the plug-in's prediction
            alpha[i] = (1 - forgetting) * alpha[i] + forgetting * prior[0] + (1 - implicit_weight) * s
            alpha[i] += implicit_weight * pseudo_s
            beta[i] = (1 - forgetting) * beta[i] + forgetting * prior[1] + (1 - implicit_weight) * f
            beta[i] += implicit_weight * pseudo_f
    return np.array(alpha), np.array(beta), mu


@pytest.mark.parametrize(
    ("strategy", "forgetting", "implicit_weight", "prior", "pseudo_count", "cap_fit"),
    [
        ("bots", 0.1, 0.1, (1.0, 1.0), None, "robust"),
        ("bots", 0.1, 0.1, (1.0, 1.0), None, "paper"),
        ("bots", 0.3, 0.5, (2.0, 0.5), 4.0, "robust"),
        ("bots", 1.0, 1.0, (1.0, 1.0), None, "robust"),
        ("dots", 0.1, 1.0, (1.0, 1.0), None, "robust"),
        ("dots", 0.1, 1.0, (1.0, 1.0), None, "paper"),
    ],
)
def test_vectorised_update_matches_per_task_formulas(
    strategy, forgetting, implicit_weight, prior, pseudo_count, cap_fit
):
    num_tasks, group_size = 40, 8
    reference = make_reference(num_tasks)
    reference[:8, 1] = reference[:8, 0]  # tasks whose references coincide: the robust fit leaves them out
    reference[8:12] = reference[8:12, ::-1]  # "weak" above strong: a negative gap
    selector = BOTSSelector(
        num_tasks,
        reference,
        forgetting=forgetting,
        implicit_weight=implicit_weight,
        prior=prior,
        pseudo_count=pseudo_count,
        cap_momentum=0.9,
        cap_fit=cap_fit,
        strategy=strategy,
        seed=3,
    )
    rng = np.random.default_rng(1)
    rounds = []
    for _ in range(12):
        indices = selector.select(6)
        successes, trials = random_round(rng, indices, group_size)
        selector.update(indices, successes, trials)
        rounds.append((indices, successes, trials))

    alpha, beta, mu = reference_rounds(
        reference.astype(np.float32).astype(np.float64).tolist(),
        rounds,
        forgetting=forgetting,
        implicit_weight=implicit_weight,
        prior=prior,
        pseudo_count=pseudo_count if pseudo_count is not None else group_size,
        momentum=0.9,
        dots=strategy == "dots",
        cap_fit=cap_fit,
    )
    np.testing.assert_allclose(selector.alpha, alpha, rtol=2e-5)
    np.testing.assert_allclose(selector.beta, beta, rtol=2e-5)
    assert selector.last_stats.cap_coef == pytest.approx(mu, rel=1e-6)
    assert selector.round == 12


def test_explicit_only_update_by_hand():
    selector = BOTSSelector(3, forgetting=0.5, implicit_weight=0.0, prior=(1.0, 1.0))
    selector.update(np.array([2, 0]), np.array([3, 0]), np.array([4, 4]))
    # alpha = 0.5 * 1 + 0.5 * 1 + s ; beta = 1 + f
    np.testing.assert_allclose(selector.alpha, [1.0, 1.0, 4.0])
    np.testing.assert_allclose(selector.beta, [5.0, 1.0, 2.0])
    selector.update(np.array([1]), np.array([2.5]), np.array([5]))  # fractional evidence is allowed
    np.testing.assert_allclose(selector.alpha, [1.0, 3.5, 2.5])
    np.testing.assert_allclose(selector.beta, [3.0, 3.5, 1.5])
    np.testing.assert_allclose(selector.posterior_mean(), [0.25, 0.5, 2.5 / 4.0])


def test_posterior_mean_of_some_tasks_takes_task_ids_only():
    selector = BOTSSelector(3, forgetting=0.5, implicit_weight=0.0)
    selector.update(np.array([2, 0]), np.array([3, 0]), np.array([4, 4]))
    np.testing.assert_allclose(selector.posterior_mean([2, 0, 2]), [4 / 6, 1 / 6, 4 / 6])
    np.testing.assert_allclose(selector.posterior_mean(np.array([], dtype=np.int64)), [])
    # A boolean mask would read as the ids 0 and 1, fractional ids would be truncated: refused, not misread.
    for tasks, shown in (([True, False, True], "bool"), ([1.7, 0.2], "float64"), (["1"], "<U1")):
        with pytest.raises(ValueError, match=f"tasks must be integer task ids, got dtype {shown}"):
            selector.posterior_mean(tasks)


def test_interpolation_plugin_hand_worked_example():
    reference = np.array([[0.2, 0.6], [0.4, 0.8], [0.0, 0.5], [0.9, 1.0]])
    estimator = InterpolationEstimator(reference, momentum=0.9, fit="paper")
    # Batch {0, 1} observed at 0.5 and 0.7: mu_hat = (0.6 - 0.3) / (0.7 - 0.3 + 1e-6) = 0.75 (first round: mu = mu_hat).
    estimator.fit(np.array([0, 1]), np.array([0.5, 0.7]))
    assert estimator.mu == pytest.approx(0.3 / 0.400001, rel=1e-6)
    np.testing.assert_allclose(estimator.predict(), [0.5, 0.7, 0.375, 0.975], atol=1e-5)
    # Batch {2} observed at 0.5: mu_hat = 0.5 / 0.500001 ~ 1, mu = 0.9 * 0.75 + 0.1 * 1 = 0.775.
    estimator.fit(np.array([2]), np.array([0.5]))
    assert estimator.mu == pytest.approx(0.9 * 0.3 / 0.400001 + 0.1 * 0.5 / 0.500001, rel=1e-6)
    np.testing.assert_allclose(estimator.predict(np.array([0, 2])), [0.51, 0.3875], atol=1e-5)
    # Extrapolation beyond the strong model is clipped to a valid pass rate.
    estimator.fit(np.array([3]), np.array([1.0]))
    estimator.mu = 3.0
    assert estimator.predict()[3] == 1.0
    estimator.mu = -2.0
    np.testing.assert_allclose(estimator.predict(), [0.0, 0.0, 0.0, 0.7], atol=1e-6)


def test_robust_cap_fit_hand_worked_example():
    # Tasks 0-1: references coincide (0/0 and 1/1, as on GURU); task 2: "weak" above strong; tasks 3-4: ordinary.
    reference = np.array([[0.0, 0.0], [1.0, 1.0], [0.6, 0.2], [0.2, 0.6], [0.1, 0.9]])
    estimator = InterpolationEstimator(reference, momentum=0.9)
    assert estimator.fit_method == "robust"
    # Before any informative batch: mu is unknown and predictions sit midway between the references.
    np.testing.assert_allclose(estimator.predict(), [0.0, 1.0, 0.4, 0.4, 0.5], atol=1e-6)
    # Only tasks 0-1 in the batch: nothing to learn about mu, the batch is skipped.
    estimator.fit(np.array([0, 1]), np.array([0.5, 0.5]))
    assert estimator.mu is None
    # The paper's formula on the same batch: (0.5 - 0.5) / (0 + 1e-6) = 0 here, but any deviation explodes.
    paper = InterpolationEstimator(reference, fit="paper")
    paper.fit(np.array([0, 1]), np.array([0.75, 0.5]))
    assert paper.mu == pytest.approx(0.125 / 1e-6)
    # Tasks 0-4 observed at 0.5, 0.5, 0.3, 0.4, 0.5: the coinciding tasks count for nothing, task 2's gap counts
    # with its sign. mu_hat = (-(0.3 - 0.6) + (0.4 - 0.2) + (0.5 - 0.1)) / (0.4 + 0.4 + 0.8) = 0.9 / 1.6.
    estimator.fit(np.arange(5), np.array([0.5, 0.5, 0.3, 0.4, 0.5]))
    assert estimator.mu == pytest.approx(0.9 / 1.6, rel=1e-6)
    # A batch whose only informative task has a gap of 0.2: (0.2)^2 / 1 = 0.04 < 0.05, skipped, mu kept.
    small = InterpolationEstimator(np.array([[0.4, 0.6], [0.0, 0.0]]))
    small.fit(np.array([0, 1]), np.array([1.0, 0.0]))
    assert small.mu is None
    # mu_hat is bounded to [-2, 3]: task 3 alone (gap 0.4, information 0.16) observed at 1.0 gives 2 (inside),
    # task 4 observed at 1.0 gives 1.125, and task 2 observed at 1.0 gives -1; observed 0 on task 3 gives -0.5.
    bounded = InterpolationEstimator(np.array([[0.0, 0.3], [0.0, 0.0]]))
    bounded.fit(np.array([0]), np.array([1.0]))  # mu_hat = 1 / 0.3 = 3.33: clipped to 3
    assert bounded.mu == 3.0
    bounded = InterpolationEstimator(np.array([[0.7, 1.0]]))
    bounded.fit(np.array([0]), np.array([0.0]))  # mu_hat = -0.7 / 0.3 = -2.33: clipped to -2
    assert bounded.mu == -2.0
    with pytest.raises(ValueError, match="fit must be one of 'robust', 'paper', got 'exact'"):
        InterpolationEstimator(reference, fit="exact")


def test_robust_cap_fit_stays_bounded_where_the_paper_formula_explodes():
    """Near-identical references (gaps of either sign around 0) and many tasks at 0/0 or 1/1, under dots."""
    rng = np.random.default_rng(0)
    num_tasks = 400
    weak = rng.uniform(0.2, 0.8, num_tasks)
    reference = np.stack([weak, np.clip(weak + rng.normal(0.0, 0.02, num_tasks), 0, 1)], axis=1)
    reference[: num_tasks // 2] = rng.integers(0, 2, (num_tasks // 2, 1))  # half the tasks: 0/0 or 1/1
    true_rates = np.clip(reference.mean(axis=1) + rng.normal(0.0, 0.1, num_tasks), 0.0, 1.0)
    mus, errors = {}, {}
    for cap_fit in ("paper", "robust"):
        selector = BOTSSelector(num_tasks, reference, strategy="dots", cap_fit=cap_fit, seed=0)
        trace = []
        for _ in range(60):
            indices = selector.select(16)
            successes = rng.binomial(16, true_rates[indices])
            trace.append(selector.update(indices, successes, np.full(16, 16)).cap_coef)
        mus[cap_fit] = np.array(trace)
        errors[cap_fit] = float(np.mean(np.abs(selector.estimator.predict() - true_rates)))
    assert np.nanmax(np.abs(mus["paper"])) > 20  # what the paper's formula does here
    # Gaps of 0.02 never carry enough information: mu stays unfitted (NaN) and q stays within 0.06 of w.
    robust = mus["robust"]
    assert np.all(np.isnan(robust) | ((robust >= -2.0) & (robust <= 3.0)))
    assert errors["robust"] < errors["paper"] - 0.05  # and its predictions of every task are better for it
    assert BOTSSelector(num_tasks, reference, seed=0).estimator.fit_method == "robust"  # the default


def test_numpy_scalar_hyperparameters_are_accepted_and_bools_refused(tmp_path):
    selector = BOTSSelector(
        10,
        make_reference(10),
        target=np.float32(0.5),
        forgetting=np.float64(0.1),
        implicit_weight=np.float32(0.25),
        temperature=np.int64(0),
        prior=(np.float32(1.0), np.int32(2)),
        pseudo_count=np.float32(4.0),
        cap_momentum=np.float32(0.5),
    )
    assert selector.target == 0.5 and selector.prior == (1.0, 2.0)
    indices = selector.select(3)
    selector.update(indices, np.array([1, 2, 3]), np.array([4, 4, 4]))
    selector.update(selector.select(3), np.array([0, 2, 4]), np.array([4, 4, 4]))
    selector.save(tmp_path / "state.safetensors")  # the state is JSON-able: no NumPy scalar leaked into it
    for name, value in (("forgetting", True), ("target", np.bool_(True)), ("implicit_weight", False)):
        with pytest.raises(ValueError, match=f"{name} must be a number in .*, got {value!r}"):
            BOTSSelector(10, make_reference(10), **{name: value})


def test_cap_fit_argument_is_checked():
    with pytest.raises(ValueError, match="cap_fit must be one of 'robust', 'paper', got 'Paper'"):
        BOTSSelector(10, make_reference(10), cap_fit="Paper")


def run_rounds(selector: BOTSSelector, rounds: int, batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(rounds):
        indices = selector.select(batch_size)
        successes, trials = random_round(rng, indices)
        selector.update(indices, successes, trials)
        history.append(indices)
    return history


def test_rho_zero_equals_explicit_only_strategy():
    reference = make_reference(200)
    bots = BOTSSelector(200, reference, implicit_weight=0.0, seed=5)
    mopps = BOTSSelector(200, reference, strategy="mopps", seed=5)
    for a, b in zip(run_rounds(bots, 30, 16), run_rounds(mopps, 30, 16), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bots.alpha, mopps.alpha)
    np.testing.assert_array_equal(bots.beta, mopps.beta)
    assert mopps.last_stats.implicit_weight == 0.0


def set_posterior(selector: BOTSSelector, alpha: np.ndarray, beta: np.ndarray) -> None:
    selector.alpha, selector.beta = alpha.astype(np.float32), beta.astype(np.float32)


def test_thompson_selection_prefers_tasks_near_target():
    # Three groups of 100 tasks whose beliefs concentrate at 0.02, 0.5 and 0.98.
    selector = BOTSSelector(300, implicit_weight=0.0, seed=0)
    alpha = np.repeat([1.0, 50.0, 99.0], 100)
    set_posterior(selector, alpha, 100.0 - alpha)
    counts = np.zeros(300)
    for _ in range(200):
        counts[selector.select(20)] += 1
    near_target, extremes = counts[100:200].sum(), counts[:100].sum() + counts[200:].sum()
    assert near_target == 200 * 20  # a draw from Beta(50, 50) is always closer to 0.5 than one from Beta(2, 98)
    assert extremes == 0
    # Within the middle group Thompson sampling explores: most tasks get picked at some point.
    assert (counts[100:200] > 0).mean() > 0.9


def test_thompson_explores_uncertain_tasks():
    # Task 0 is known to sit at 0.3; task 1 is unknown (flat prior). Thompson picks each a fair share of the time.
    selector = BOTSSelector(2, implicit_weight=0.0, seed=1)
    set_posterior(selector, np.array([300.0, 1.0]), np.array([700.0, 1.0]))
    picks = np.array([selector.select(1)[0] for _ in range(4000)])
    # P(|U - 0.5| < |0.3 - 0.5|) = 0.4 for the flat task (its draw is within 0.2 of the target).
    assert np.mean(picks == 1) == pytest.approx(0.4, abs=0.03)
    greedy = BOTSSelector(2, implicit_weight=0.0, thompson=False)
    set_posterior(greedy, np.array([300.0, 1.0]), np.array([700.0, 1.0]))
    assert {int(greedy.select(1)[0]) for _ in range(50)} == {1}  # posterior mean 0.5 always wins


def test_temperature_zero_is_top_b_and_positive_temperature_is_softmax():
    means = np.array([0.5, 0.45, 0.3, 0.1, 0.9])
    distance = np.abs(means - 0.5)
    greedy = BOTSSelector(5, implicit_weight=0.0, thompson=False)
    set_posterior(greedy, 1000 * means, 1000 * (1 - means))
    np.testing.assert_array_equal(greedy.select(3), [0, 1, 2])  # best first

    temperature = 0.1
    soft = BOTSSelector(5, implicit_weight=0.0, thompson=False, temperature=temperature, seed=2)
    set_posterior(soft, 1000 * means, 1000 * (1 - means))
    first = np.array([soft.select(2)[0] for _ in range(20000)])
    expected = np.exp(-distance / temperature) / np.exp(-distance / temperature).sum()
    np.testing.assert_allclose(np.bincount(first, minlength=5) / first.size, expected, atol=0.012)
    batches = [soft.select(4) for _ in range(200)]
    assert all(len(set(batch.tolist())) == 4 for batch in batches)  # without replacement

    cold = BOTSSelector(5, implicit_weight=0.0, thompson=False, temperature=1e-300, seed=2)
    set_posterior(cold, 1000 * means, 1000 * (1 - means))
    np.testing.assert_array_equal(cold.select(3), [0, 1, 2])  # a vanishing temperature is the top-B, no overflow

    hot = BOTSSelector(5, implicit_weight=0.0, thompson=False, temperature=100.0, seed=2)
    set_posterior(hot, 1000 * means, 1000 * (1 - means))
    first = np.array([hot.select(1)[0] for _ in range(5000)])
    np.testing.assert_allclose(np.bincount(first, minlength=5) / first.size, 0.2, atol=0.03)


def test_same_seed_same_selections_other_seed_differs():
    reference = make_reference(500)
    a = run_rounds(BOTSSelector(500, reference, seed=11), 20, 32)
    b = run_rounds(BOTSSelector(500, reference, seed=11), 20, 32)
    c = run_rounds(BOTSSelector(500, reference, seed=12), 20, 32)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "bots", "temperature": 0.05, "adaptive_implicit_weight": True},
        {"strategy": "mopps"},
        {"strategy": "dots"},
        {"strategy": "uniform"},
        {"strategy": "easy2hard"},
    ],
)
def test_save_load_mid_run_continues_bit_identically(tmp_path, kwargs):
    reference = make_reference(300)
    uninterrupted = BOTSSelector(300, reference, seed=4, **kwargs)
    run_rounds(uninterrupted, 17, 40, seed=1)  # 17 x 40 > 300: the baselines wrap into a second epoch
    path = tmp_path / "selector.safetensors"
    uninterrupted.save(path)
    resumed = BOTSSelector(300, reference, seed=999, **kwargs)  # the seed is restored from the file
    resumed.load(path)
    after_a = run_rounds(uninterrupted, 50, 40, seed=2)
    after_b = run_rounds(resumed, 50, 40, seed=2)
    for x, y in zip(after_a, after_b, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(uninterrupted.alpha, resumed.alpha)
    np.testing.assert_array_equal(uninterrupted.beta, resumed.beta)
    assert uninterrupted.last_stats == resumed.last_stats or math.isnan(uninterrupted.last_stats.implicit_pearson)
    assert resumed.round == 67


def test_state_dict_roundtrip_in_memory():
    reference = make_reference(50)
    a = BOTSSelector(50, reference, seed=1)
    run_rounds(a, 5, 8)
    b = BOTSSelector(50, reference, seed=1)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.select(8), b.select(8))


@pytest.mark.parametrize(
    "corrupt",
    [
        {"domain_lag": ["1/2"]},  # one entry for two domains: found after alpha, beta, round and the rng are read
        {"last_stats": {"round": 3}},  # the last thing read, incomplete
        {"estimator": {"mu": "not a number"}},
    ],
)
def test_a_state_that_fails_part_way_leaves_the_selector_as_it_was(corrupt):
    reference = make_reference(60)
    labels = np.array(["a", "b"] * 30)
    settings = {"domains": labels, "domain_weights": "uniform", "seed": 3}
    target, twin = BOTSSelector(60, reference, **settings), BOTSSelector(60, reference, **settings)
    run_rounds(target, 4, 8, seed=1)
    run_rounds(twin, 4, 8, seed=1)
    other = BOTSSelector(60, reference, **{**settings, "seed": 5})
    run_rounds(other, 9, 8, seed=2)
    with pytest.raises((ValueError, TypeError, KeyError)):
        target.load_state_dict({**other.state_dict(), **corrupt})
    assert target.round == twin.round == 4
    np.testing.assert_array_equal(target.alpha, twin.alpha)
    assert target.domain_lag == twin.domain_lag and target.last_stats == twin.last_stats
    np.testing.assert_array_equal(target.select(8), twin.select(8))  # same rng, same plug-in fit


class LiveStateEstimator:
    """A custom plug-in whose state_dict returns its live state, and whose load_state_dict updates it in place."""

    def __init__(self, num_tasks: int) -> None:
        self.num_tasks, self.state = num_tasks, {"fits": 0.0}

    def fit(self, indices, observed_rates) -> None:
        self.state["fits"] += 1

    def predict(self, indices=None):
        return np.full(self.num_tasks if indices is None else len(indices), 0.5, dtype=np.float32)

    def state_dict(self) -> dict[str, float]:
        return self.state

    def load_state_dict(self, state) -> None:
        self.state.update(state)


def test_state_dict_is_a_snapshot_of_a_custom_plug_in_too():
    """A plug-in returning its live state must not change a state taken earlier, nor survive a failed load."""
    selector = BOTSSelector(40, estimator=LiveStateEstimator(40), seed=1)
    run_rounds(selector, 3, 8)
    saved = selector.state_dict()
    run_rounds(selector, 2, 8)
    assert saved["estimator"] == {"fits": 3.0}  # taken after 3 fits, not the 5 of now
    with pytest.raises(ValueError, match="PCG64"):  # fails after the plug-in's state is read
        selector.load_state_dict({**saved, "estimator": {"fits": 99.0}, "rng": {"bit_generator": "MT19937"}})
    assert selector.estimator.state == {"fits": 5.0}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        ({"order": np.array([0, 1, 2, 3, 3, 5, 6, 7, 8, 9])}, "permutation of the 10 tasks"),  # 3 twice, 4 never
        ({"order": np.arange(9)}, "must hold 10 task ids"),
        ({"order_cursor": 11}, r"cursor must be an integer in \[0, 10\], got 11"),
        ({"order_cursor": -1}, "got -1"),
    ],
)
def test_a_baseline_refuses_a_task_order_that_is_not_a_permutation(corrupt, message):
    saved = BOTSSelector(10, strategy="uniform", seed=0)
    saved.select(4)
    selector = BOTSSelector(10, strategy="uniform", seed=0)
    with pytest.raises(ValueError, match=message):
        selector.load_state_dict({**saved.state_dict(), **corrupt})
    assert selector.order.cursor == 0  # left as it was


def test_load_keeps_the_constructor_implicit_weight_unless_it_adapts():
    """rho is a setting, restored only as learned state when it adapts (and adapted in the saved run)."""
    reference = make_reference(50)
    saved = BOTSSelector(50, reference, implicit_weight=0.1, adaptive_implicit_weight=True, seed=1)
    saved.implicit_weight = 0.025  # halved twice
    state = saved.state_dict()
    fixed = BOTSSelector(50, reference, implicit_weight=0.3)
    fixed.load_state_dict(state)
    assert fixed.implicit_weight == 0.3
    adaptive = BOTSSelector(50, reference, implicit_weight=0.3, adaptive_implicit_weight=True)
    adaptive.load_state_dict(state)
    assert adaptive.implicit_weight == 0.025
    fresh = BOTSSelector(50, reference, implicit_weight=0.3, adaptive_implicit_weight=True)
    fresh.load_state_dict({**state, "adaptive_implicit_weight": False})  # saved by a run that did not adapt
    assert fresh.implicit_weight == 0.3  # nothing learned to restore


def test_uniform_covers_every_task_once_per_epoch():
    selector = BOTSSelector(10, strategy="uniform", seed=0)
    served = np.concatenate([selector.select(4) for _ in range(10)])  # 40 picks = 4 epochs
    for epoch in range(4):
        assert sorted(served[epoch * 10 : (epoch + 1) * 10].tolist()) == list(range(10))
    batches = [selector.select(4) for _ in range(50)]
    assert all(len(set(b.tolist())) == 4 for b in batches)  # distinct even across epoch boundaries
    assert not np.array_equal(served[:10], served[10:20])  # a fresh permutation each epoch


def test_easy2hard_serves_easiest_first_and_cycles():
    reference = np.array([[0.1, 0.3], [0.9, 1.0], [0.5, 0.5], [0.0, 0.0]])
    selector = BOTSSelector(4, reference, strategy="easy2hard")
    np.testing.assert_array_equal(selector.select(3), [1, 2, 0])
    np.testing.assert_array_equal(selector.select(3), [3, 1, 2])


def test_round_diagnostics():
    reference = make_reference(20)
    selector = BOTSSelector(20, reference, seed=0)
    indices = np.array([0, 1, 2, 3, 4])
    stats = selector.update(indices, np.array([0, 4, 2, 1, 0]), np.array([4, 4, 4, 4, 0]))
    assert stats.effective_task_ratio == pytest.approx(2 / 5)
    assert stats.all_solved_ratio == pytest.approx(1 / 5)
    assert stats.none_solved_ratio == pytest.approx(1 / 5)  # task 4 had no scored rollout: neither
    assert stats.selected_pass_rate == pytest.approx(7 / 16)
    assert math.isnan(stats.implicit_pearson)  # no prediction existed before the first batch
    assert stats.posterior_mean == pytest.approx(float(np.mean(selector.posterior_mean())))
    assert stats.implicit_weight == 0.1
    # The second round is scored against the prediction made from the first.
    expected_q = selector.estimator.predict(np.array([5, 6, 7]))
    stats = selector.update(np.array([5, 6, 7]), np.array([1, 2, 3]), np.array([4, 4, 4]))
    observed = np.array([0.25, 0.5, 0.75])
    assert stats.implicit_mae == pytest.approx(float(np.mean(np.abs(expected_q - observed))), rel=1e-5)
    assert stats.implicit_pearson == pytest.approx(float(np.corrcoef(expected_q, observed)[0, 1]), rel=1e-5)


def test_adaptive_implicit_weight_halves_on_large_error():
    reference = np.tile([[0.0, 0.1]], (10, 1))  # the plug-in will predict ~0.05 ...
    selector = BOTSSelector(10, reference, adaptive_implicit_weight=True, seed=0)
    selector.update(np.array([0, 1]), np.array([0, 0]), np.array([8, 8]))
    # ... and then the policy solves everything: error ~0.95 >= 0.25.
    stats = selector.update(np.array([2, 3]), np.array([8, 8]), np.array([8, 8]))
    assert stats.implicit_mae > 0.25
    assert stats.implicit_weight == 0.05
    assert selector.implicit_weight == 0.05
    fixed = BOTSSelector(10, reference, seed=0)
    fixed.update(np.array([0, 1]), np.array([0, 0]), np.array([8, 8]))
    assert fixed.update(np.array([2, 3]), np.array([8, 8]), np.array([8, 8])).implicit_weight == 0.1


def test_cap_coefficient_of_zero_is_reported():
    reference = np.zeros((8, 2))
    reference[:, 1] = 0.5
    selector = BOTSSelector(8, reference, seed=0)
    stats = selector.update(np.array([0, 1, 2, 3]), np.zeros(4), np.full(4, 16.0))  # observed = weak: mu = 0
    assert selector.estimator.mu == 0.0
    assert stats.cap_coef == 0.0


def test_custom_estimator_plugs_in():
    class ConstantEstimator:
        def __init__(self):
            self.fits = 0

        def fit(self, indices, observed_rates):
            self.fits += 1

        def predict(self, indices=None):
            return np.full(4 if indices is None else len(indices), 0.25, dtype=np.float32)

        def state_dict(self):
            return {"fits": self.fits}

        def load_state_dict(self, state):
            self.fits = state["fits"]

    estimator = ConstantEstimator()
    selector = BOTSSelector(4, forgetting=1.0, implicit_weight=1.0, estimator=estimator, pseudo_count=4)
    selector.update(np.array([0]), np.array([1]), np.array([2]))
    # forgetting 1: alpha = alpha0 + counts. Unselected tasks get m * q = 1 success and 3 failures.
    np.testing.assert_allclose(selector.alpha, [2.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(selector.beta, [2.0, 4.0, 4.0, 4.0])
    assert estimator.fits == 1


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 0.0}, "target"),
        ({"target": 1.0}, "target"),
        ({"forgetting": 0.0}, "forgetting"),
        ({"forgetting": 1.5}, "forgetting"),
        ({"implicit_weight": -0.1}, "implicit_weight"),
        ({"implicit_weight": 1.1}, "implicit_weight"),
        ({"temperature": -1.0}, "temperature"),
        ({"prior": (0.0, 1.0)}, "prior"),
        ({"prior": (1.0,)}, "prior"),
        ({"cap_momentum": 1.0}, "cap_momentum"),
        ({"pseudo_count": -1}, "pseudo_count"),
        ({"prior": (1e39, 1.0)}, r"prior alpha0 must be a number in \(0.0, 1000000.0\], got 1e\+39"),
        ({"prior": (1.0, 3.5e38)}, "prior beta0"),  # finite in float32, but alpha + beta is not
        ({"pseudo_count": 1e39}, r"pseudo_count must be a number in \[0.0, 1000000.0\], got 1e\+39"),
        ({"strategy": "greedy"}, "strategy"),
        ({"target": float("nan")}, "target"),
    ],
)
def test_invalid_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BOTSSelector(10, make_reference(10), **kwargs)


def test_largest_prior_and_pseudo_count_keep_a_finite_posterior(tmp_path):
    """At the bound (1e6 rollouts), every update keeps a finite float32 posterior that saves and loads."""
    selector = BOTSSelector(10, make_reference(10), prior=(1e6, 1e6), pseudo_count=1e6, implicit_weight=1.0, seed=0)
    for _ in range(3):
        tasks = selector.select(4)
        selector.update(tasks, np.full(4, 1e6), np.full(4, 1e6))
    assert np.isfinite(selector.alpha).all() and np.isfinite(selector.beta).all()
    assert np.isfinite(selector.posterior_mean()).all()
    selector.save(tmp_path / "state.safetensors")
    reloaded = BOTSSelector(10, make_reference(10), prior=(1e6, 1e6), pseudo_count=1e6, implicit_weight=1.0)
    reloaded.load(tmp_path / "state.safetensors")
    assert np.array_equal(reloaded.alpha, selector.alpha)


def test_reference_and_strategy_errors():
    with pytest.raises(ValueError, match=r"shape \(num_tasks, 2\) = \(10, 2\)"):
        BOTSSelector(10, np.zeros((10, 3)))
    bad = make_reference(10)
    bad[3, 1] = np.nan
    bad[7, 0] = 1.5
    with pytest.raises(ValueError, match=r"2 entries.*task 3 strong=nan.*task 7 weak=1.5"):
        BOTSSelector(10, bad)
    with pytest.raises(ValueError, match="implicit_weight=0.1 needs implicit evidence"):
        BOTSSelector(10, implicit_weight=0.1)
    assert BOTSSelector(10).implicit_weight == 0.0  # the config's rule: no implicit evidence, no weight
    assert BOTSSelector(10, make_reference(10)).implicit_weight == 0.1
    embedded = BOTSSelector(10, embeddings=np.random.default_rng(0).normal(size=(10, 3)))
    assert embedded.implicit_weight == 0.2 and type(embedded.estimator).__name__ == "EmbeddingEstimator"
    with pytest.raises(ValueError, match="either estimator or embeddings"):
        BOTSSelector(10, estimator=embedded.estimator, embeddings=np.ones((10, 3)))
    with pytest.raises(ValueError, match="dots"):
        BOTSSelector(10, strategy="dots")
    with pytest.raises(ValueError, match="easy2hard"):
        BOTSSelector(10, strategy="easy2hard", implicit_weight=0.0)
    with pytest.raises(ValueError, match="num_tasks"):
        BOTSSelector(0)
    BOTSSelector(10, strategy="uniform")  # the baselines track the posterior with explicit evidence only


def test_update_and_select_errors():
    selector = BOTSSelector(10, implicit_weight=0.0)
    with pytest.raises(ValueError, match="larger than the number of tasks"):
        selector.select(11)
    with pytest.raises(ValueError, match="batch_size"):
        selector.select(0)
    with pytest.raises(ValueError, match="repeated: \\[2\\]"):
        selector.update(np.array([2, 2]), np.array([1, 1]), np.array([2, 2]))
    with pytest.raises(ValueError, match=r"task ids in \[0, 10\), got \[10\]"):
        selector.update(np.array([10]), np.array([1]), np.array([2]))
    with pytest.raises(ValueError, match="task 1 has 3.0 successes in 2.0 trials"):
        selector.update(np.array([1]), np.array([3]), np.array([2]))
    with pytest.raises(ValueError, match=">= 0"):
        selector.update(np.array([1]), np.array([-1]), np.array([2]))
    with pytest.raises(ValueError, match="finite"):
        selector.update(np.array([1]), np.array([np.nan]), np.array([2]))
    with pytest.raises(ValueError, match="trials must be at most 1e"):
        selector.update(np.array([1]), np.array([1]), np.array([3.4e38]))
    with pytest.raises(ValueError, match="same shape"):
        selector.update(np.array([1, 2]), np.array([1]), np.array([2, 2]))
    assert selector.round == 0  # nothing was applied


def test_state_file_errors(tmp_path):
    selector = BOTSSelector(10, implicit_weight=0.0)
    run_rounds(selector, 3, 4)
    path = tmp_path / "state.safetensors"
    selector.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]  # no temporary file left behind

    with pytest.raises(ValueError, match="for 10 tasks but this selector has 11"):
        BOTSSelector(11, implicit_weight=0.0).load(path)
    with pytest.raises(ValueError, match="strategy 'bots', not 'uniform'.*built with strategy='bots'"):
        BOTSSelector(10, strategy="uniform").load(path)

    raw = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a valid BOTS selector state file"):
        BOTSSelector(10, implicit_weight=0.0).load(truncated)

    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF  # inside the beta array
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        BOTSSelector(10, implicit_weight=0.0).load(corrupt)

    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(raw.replace(b'\\"round\\": 3', b'\\"round\\": 7'))
    assert edited.read_bytes() != raw  # the round counter was changed in the JSON header
    with pytest.raises(ValueError, match="corrupt"):
        BOTSSelector(10, implicit_weight=0.0).load(edited)

    with pytest.raises(FileNotFoundError):
        BOTSSelector(10, implicit_weight=0.0).load(tmp_path / "missing.safetensors")

    # docs/reliability.md quotes this message and no longer lists the JSON scalars as unchecked.
    with pytest.raises(ValueError) as raised:
        BOTSSelector(10, implicit_weight=0.0).load(edited)
    reliability = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    assert f"`ValueError: {str(raised.value).replace(str(edited), '{path}')}`" in reliability
    assert "Known gap" not in reliability


def continues_identically(original: BOTSSelector, restored: BOTSSelector, rounds: int = 5, batch_size: int = 6):
    """Both selectors hold the same learned state and select the same batches from here on."""
    assert restored.num_tasks == original.num_tasks and restored.strategy == original.strategy
    assert restored.round == original.round and restored.implicit_weight == original.implicit_weight
    assert restored.alpha.tobytes() == original.alpha.tobytes() and restored.beta.tobytes() == original.beta.tobytes()
    for a, b in zip(run_rounds(original, rounds, batch_size), run_rounds(restored, rounds, batch_size), strict=True):
        assert a.tolist() == b.tolist()
    assert restored.alpha.tobytes() == original.alpha.tobytes()


@pytest.mark.parametrize(
    ("settings", "given"),
    [
        ({"forgetting": 0.2, "seed": 3}, {"forgetting": 0.2}),  # implicit weight 0.1 from the file
        ({"implicit_weight": 0.3, "adaptive_implicit_weight": True}, {"adaptive_implicit_weight": True}),
        ({"strategy": "dots"}, {}),
        ({"strategy": "uniform", "seed": 4}, {}),  # the serving order and its cursor from the file
        ({"strategy": "easy2hard"}, {}),
        ({"strategy": "mopps", "implicit_weight": 0.0, "target": 0.3}, {"target": 0.3}),
    ],
    ids=["bots", "adaptive", "dots", "uniform", "easy2hard", "mopps"],
)
def test_from_file_builds_the_saved_selector(tmp_path, settings, given):
    reference = make_reference(40)
    original = BOTSSelector(40, reference, **settings)
    run_rounds(original, 7, 6)
    path = tmp_path / "state.safetensors"
    original.save(path)
    continues_identically(original, BOTSSelector.from_file(path, reference_pass_rates=reference, **given))


def test_from_file_takes_domains_weights_from_the_file_and_asks_for_what_it_lacks(tmp_path):
    labels = np.array(["a", "b", "c", "c"] * 10)
    original = BOTSSelector(40, implicit_weight=0.0, domains=labels, domain_weights={"a": 1, "b": 2, "c": 3})
    run_rounds(original, 7, 6)
    path = tmp_path / "state.safetensors"
    original.save(path)
    continues_identically(original, BOTSSelector.from_file(path, domains=labels))
    with pytest.raises(ValueError) as error:
        BOTSSelector.from_file(path)
    assert str(error.value) == (
        f"{path} was saved with the domains ['a', 'b', 'c'], which it holds only a checksum of: pass domains= (the "
        "domain label of every task, as when it was saved)."
    )


def test_from_file_refuses_another_size_or_strategy_and_missing_evidence(tmp_path):
    original = BOTSSelector(40, make_reference(40))
    run_rounds(original, 2, 6)
    path = tmp_path / "state.safetensors"
    original.save(path)
    with pytest.raises(ValueError) as error:
        BOTSSelector.from_file(path, num_tasks=41, strategy="bots")
    assert str(error.value) == (
        f"{path} holds the state of a selector of num_tasks=40 and strategy='bots', but from_file got "
        "num_tasks=41. Leave them out: the file decides them."
    )
    # The state was learned with implicit evidence (rho = 0.1): continuing it needs the reference pass rates.
    with pytest.raises(ValueError, match="implicit_weight=0.1 needs implicit evidence"):
        BOTSSelector.from_file(path)
    with pytest.raises(FileNotFoundError):
        BOTSSelector.from_file(tmp_path / "missing.safetensors")


def test_repr_is_short_and_says_what_the_selector_is():
    selector = BOTSSelector(40, make_reference(40), forgetting=0.2)
    run_rounds(selector, 3, 6)
    assert repr(selector) == (
        "BOTSSelector(num_tasks=40, strategy='bots', round=3, target=0.5, forgetting=0.2, implicit_weight=0.1)"
    )
    labels = ["a", "b"] * 20
    weighted = BOTSSelector(40, implicit_weight=0.0, strategy="mopps", domains=labels, domain_weights="uniform")
    assert repr(weighted) == (
        "BOTSSelector(num_tasks=40, strategy='mopps', round=0, target=0.5, forgetting=0.1, implicit_weight=0, "
        "domains=2 (weighted))"
    )
