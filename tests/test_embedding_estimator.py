"""The embedding estimator: its fit, its honest accuracy, its state, and the selector that uses it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

from trl_bots import BOTSSelector
from trl_bots.embedding_estimator import EmbeddingEstimator, empirical_logits, evidence_fit, standardise


def linear_world(num_tasks=2000, dim=16, seed=0):
    """Embeddings and true pass rates ``sigmoid(x . w)`` with a known ``w``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_tasks, dim))
    w = rng.normal(0, 0.6, dim)
    return x, 1 / (1 + np.exp(-(x @ w - 0.3))), w


# ------------------------------------------------------------------ pure functions
def test_empirical_logits_are_finite_jeffreys_logits():
    y = empirical_logits(np.array([0.0, 4.0, 8.0]), np.array([8.0, 8.0, 8.0]))
    np.testing.assert_allclose(y, [math.log(0.5 / 8.5), 0.0, math.log(8.5 / 0.5)])


def test_standardise_drops_constant_columns_and_matches_float64():
    x = np.random.default_rng(0).normal(3, 2, (1000, 5)).astype(np.float16)
    x[:, 2] = 7
    z = standardise(x, chunk=64)
    kept = x[:, [0, 1, 3, 4]].astype(np.float64)
    np.testing.assert_allclose(z, (kept - kept.mean(0)) / kept.std(0), atol=1e-6)


def test_evidence_fit_recovers_a_linear_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 8))
    w = rng.normal(size=8)
    y = x @ w + rng.normal(0, 0.5, 4000)
    g, h, c = x.T @ x, x.T @ y, float(y @ y)  # centred already (mean ~ 0); the fit takes the statistics
    theta, alpha, beta = evidence_fit(g - np.outer(x.sum(0), x.mean(0)), h - x.sum(0) * y.mean(), c, 4000, 1.0, 1.0)
    np.testing.assert_allclose(theta, w, atol=0.03)
    assert beta == pytest.approx(1 / 0.25, rel=0.1)  # noise precision of N(0, 0.5^2)


# ------------------------------------------------------------------ the estimator
def feed(estimator_or_selector, truth, rounds, batch=32, trials=8, seed=0, select=None):
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        idx = select(batch) if select else rng.choice(truth.size, batch, replace=False)
        s = rng.binomial(trials, truth[idx]).astype(float)
        if select:
            estimator_or_selector.update(idx, s, np.full(batch, float(trials)))
        else:
            estimator_or_selector.fit(idx, s / trials, np.full(batch, float(trials)))


@pytest.mark.parametrize("ridge", ["evidence", 10.0])
def test_estimator_learns_the_pass_rates_from_noisy_rounds(ridge):
    x, truth, _ = linear_world()
    estimator = EmbeddingEstimator(x, ridge=ridge)
    feed(estimator, truth, rounds=20)
    q = estimator.predict()
    assert q.dtype == np.float32 and q.shape == (2000,)
    assert np.corrcoef(q, truth)[0, 1] > 0.9
    assert estimator.correlation > 0.8  # honest: each round scored before it was fitted
    np.testing.assert_array_equal(estimator.predict(np.array([3, 5])), q[[3, 5]])


def test_rolling_refresh_bounds_the_cost_and_ends_at_the_full_prediction():
    x, truth, _ = linear_world()
    full, rolling = EmbeddingEstimator(x), EmbeddingEstimator(x, refresh_rows=700)
    feed(full, truth, rounds=5)
    feed(rolling, truth, rounds=5)
    # Fits 1..5 refreshed rows 0:700, 700:1400, 1400:2000 + 0:100, 100:800, 800:1500: only the last with the final
    # coefficients.
    final = full.predict()
    np.testing.assert_array_equal(rolling.predict()[800:1500], final[800:1500])
    assert not np.array_equal(rolling.predict()[100:800], final[100:800])
    assert rolling.cursor == 1500


def test_state_dict_restores_the_estimator_bit_identically():
    x, truth, _ = linear_world()
    a = EmbeddingEstimator(x, refresh_rows=500)
    feed(a, truth, rounds=6)
    b = EmbeddingEstimator(x, refresh_rows=500)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    feed(a, truth, rounds=4, seed=9)
    feed(b, truth, rounds=4, seed=9)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


def test_state_dict_of_another_pool_is_rejected():
    x, truth, _ = linear_world()
    a = EmbeddingEstimator(x)
    feed(a, truth, rounds=2)
    with pytest.raises(ValueError, match=r"cache must be a finite array of shape \(100,\)"):
        EmbeddingEstimator(x[:100]).load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: x.__setitem__((7, 1), np.nan), r"tasks \[7\] hold NaN or infinite"),
        (lambda x: x.__setitem__((4, slice(None)), 0.0), r"tasks \[4\] are all zeros"),
        (lambda x: x.__setitem__(slice(None), 1.0), "the same vector for every task"),
    ],
)
def test_bad_embeddings_are_rejected_with_the_row(change, message):
    x = np.random.default_rng(0).normal(size=(10, 3))
    change(x)
    with pytest.raises(ValueError, match=message):
        EmbeddingEstimator(x)
    with pytest.raises(ValueError, match=message):
        BOTSSelector(10, embeddings=x)


def test_embeddings_of_another_shape_are_rejected():
    with pytest.raises(ValueError, match="rows of different lengths"):
        EmbeddingEstimator(np.array([[1.0, 2.0], [3.0]], dtype=object))
    with pytest.raises(ValueError, match=r"got shape \(10,\)"):
        EmbeddingEstimator(np.ones(10))
    with pytest.raises(ValueError, match="12 rows but there are 10 tasks"):
        BOTSSelector(10, embeddings=np.random.default_rng(0).normal(size=(12, 3)))


# ------------------------------------------------------------------ in the selector
def make_selector(features, **kwargs):
    return BOTSSelector(features.shape[0], embeddings=features, seed=3, **kwargs)


def test_selector_resumes_bit_identically_through_its_file(tmp_path):
    x, truth, _ = linear_world()
    a = make_selector(x)
    feed(a, truth, rounds=5, select=a.select)
    a.save(tmp_path / "selector.safetensors")
    tensors = load_file(tmp_path / "selector.safetensors")
    for name in ("gram", "moment", "theta", "cache", "error_sums"):  # arrays as tensors, not JSON
        np.testing.assert_array_equal(tensors[f"estimator/{name}"], a.estimator.state_dict()[name])
    b = make_selector(x)
    b.load(tmp_path / "selector.safetensors")
    assert b.checksum() == a.checksum()
    feed(a, truth, rounds=5, select=a.select, seed=4)
    feed(b, truth, rounds=5, select=b.select, seed=4)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.estimator.cache, b.estimator.cache)
    np.testing.assert_array_equal(a.select(16), b.select(16))


def test_the_checksum_covers_the_predictor():
    x, truth, _ = linear_world()
    a, b = make_selector(x), make_selector(x)
    feed(a, truth, rounds=3, select=a.select)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert a.checksum() == b.checksum()
    b.estimator.theta[2] += 1e-12  # same posterior, another predictor
    assert a.checksum() != b.checksum()


def test_a_mismatched_embedding_state_is_refused_and_leaves_the_selector_as_it_was():
    x, truth, _ = linear_world()
    a = make_selector(x)
    feed(a, truth, rounds=2, select=a.select)
    narrow = make_selector(x[:, :8])
    before = narrow.checksum()
    with pytest.raises(ValueError, match=r"gram must be a finite array of shape \(9, 9\)"):
        narrow.load_state_dict(a.state_dict())
    assert narrow.checksum() == before


def test_rho_follows_the_honest_accuracy_informative_versus_noise():
    x, truth, _ = linear_world()
    noise = np.random.default_rng(5).normal(size=x.shape)
    weights = {}
    for name, features in (("informative", x), ("noise", noise)):
        selector = make_selector(features)
        rounds = []
        for seed in range(40):
            feed(selector, truth, rounds=1, select=selector.select, seed=seed)
            rounds.append(selector.last_stats.implicit_weight)
        assert rounds[0] == 0.0  # nothing scored yet: no weight
        weights[name] = np.mean(rounds[-10:])
    assert weights["noise"] < 0.02
    assert 0.1 < weights["informative"] <= 0.2  # the ceiling times a correlation near 1


def test_a_fixed_rho_ignores_the_accuracy():
    x, truth, _ = linear_world()
    estimator = EmbeddingEstimator(np.random.default_rng(5).normal(size=x.shape), follow_accuracy=False)
    selector = BOTSSelector(x.shape[0], estimator=estimator, implicit_weight=0.2, seed=0)
    feed(selector, truth, rounds=3, select=selector.select)
    assert selector.last_stats.implicit_weight == 0.2


def test_an_informative_embedding_informs_the_tasks_never_rolled_out():
    x, truth, _ = linear_world()
    rng = np.random.default_rng(0)
    selectors = {"embedding": make_selector(x), "explicit": BOTSSelector(x.shape[0], implicit_weight=0.0, seed=3)}
    for name, selector in selectors.items():
        seen = np.zeros(x.shape[0], dtype=bool)
        for _ in range(30):
            idx = selector.select(32)
            seen[idx] = True
            selector.update(idx, rng.binomial(8, truth[idx]).astype(float), np.full(32, 8.0))
        unseen = selector.posterior_mean()[~seen]
        if name == "explicit":
            assert np.ptp(unseen) == 0  # still the prior: explicit evidence alone knows nothing about them
        else:  # moved from the prior toward each task's own rate
            assert np.corrcoef(unseen, truth[~seen])[0, 1] > 0.8


def test_a_state_of_another_plug_in_is_refused_with_what_to_do():
    x, truth, _ = linear_world()
    reference = np.stack([truth * 0.5, np.minimum(truth * 1.5, 1.0)], axis=1)
    interpolation = BOTSSelector(x.shape[0], reference_pass_rates=reference, seed=3)
    feed(interpolation, truth, rounds=2, select=interpolation.select)
    with pytest.raises(ValueError, match="came from InterpolationEstimator, this selector's from EmbeddingEstimator"):
        make_selector(x).load_state_dict(interpolation.state_dict())


def test_a_plug_in_added_on_resume_starts_afresh_and_one_removed_is_dropped():
    x, truth, _ = linear_world()
    explicit = BOTSSelector(x.shape[0], implicit_weight=0.0, seed=3)
    feed(explicit, truth, rounds=2, select=explicit.select)
    added = make_selector(x)
    added.load_state_dict(explicit.state_dict())
    np.testing.assert_array_equal(added.alpha, explicit.alpha)
    assert added.estimator_rounds == 0 and added.estimator.rows == 0  # no fit yet: it learns from the next round
    dropped = BOTSSelector(x.shape[0], implicit_weight=0.0, seed=3)
    dropped.load_state_dict(added.state_dict())
    assert dropped.estimator is None and dropped.round == 2
