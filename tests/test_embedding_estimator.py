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


# ------------------------------------------------------------------ replaced tasks (an active pool's slots)
def features_by_hand(first, new):
    """Features of ``new`` standardised as the estimator standardises ``first``: centred by the column means of
    ``first``, divided by the root mean variance of its columns (float64)."""
    first = np.asarray(first, dtype=np.float64)
    return (np.asarray(new, dtype=np.float64) - first.mean(0)) / np.sqrt(first.var(0).mean())


def predictions_by_hand(features, theta):
    return 1 / (1 + np.exp(-(theta[0] + features @ theta[1:])))


def test_replace_recomputes_exactly_the_rows_given_with_the_current_fit():
    x, truth, _ = linear_world()
    estimator = EmbeddingEstimator(x, refresh_rows=700, replaceable=True)
    feed(estimator, truth, rounds=5)
    before = copy.deepcopy(estimator.state_dict())
    slots = np.array([1999, 3, 17])
    newcomers = np.random.default_rng(7).normal(1.0, 2.0, (3, x.shape[1]))
    estimator.replace(slots, newcomers)
    features = features_by_hand(x, newcomers)
    np.testing.assert_allclose(estimator.features[slots], features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(estimator.predict(slots), predictions_by_hand(features, before["theta"]), rtol=1e-5)
    others = np.setdiff1d(np.arange(2000), slots)
    np.testing.assert_array_equal(estimator.predict(others), before["cache"][others])
    np.testing.assert_array_equal(
        np.delete(estimator.features, slots, axis=0), np.delete(before["features"], slots, 0)
    )
    for name in ("gram", "moment", "theta", "error_sums", "square", "rows", "cursor"):  # sums over rounds: kept
        np.testing.assert_array_equal(estimator.state_dict()[name], before[name])
    # The next fit labels the newcomers with their own features: the gram gains w x x^T of the new rows.
    estimator.fit(slots, np.array([0.25, 0.5, 1.0]), np.full(3, 8.0))
    x1 = np.concatenate([np.ones((3, 1)), features], axis=1)
    np.testing.assert_allclose(estimator.gram, 0.97 * before["gram"] + 2.0 * x1.T @ x1, rtol=1e-6, atol=1e-5)


def test_replace_before_any_fit_predicts_the_flat_start():
    x, _, _ = linear_world(num_tasks=50)
    estimator = EmbeddingEstimator(x, replaceable=True)
    estimator.replace([4, 9], x[[7, 8]] * 3.0)
    np.testing.assert_array_equal(estimator.predict(), np.full(50, 0.5, dtype=np.float32))
    np.testing.assert_allclose(estimator.features[[4, 9]], features_by_hand(x, x[[7, 8]] * 3.0), rtol=1e-5)


def test_replace_with_reference_pass_rates_standardises_them_as_the_first_tasks():
    x, truth, _ = linear_world(num_tasks=300)
    reference = np.stack([truth * 0.5, truth**0.5], axis=1)
    estimator = EmbeddingEstimator(x, reference_pass_rates=reference, replaceable=True)
    feed(estimator, truth, rounds=3)
    theta = estimator.theta.copy()
    new_reference = np.array([[0.1, 0.3], [0.6, 0.9]])
    estimator.replace([0, 5], x[[10, 11]], new_reference)
    reference_features = (new_reference - reference.mean(0)) / reference.std(0)
    features = np.concatenate([features_by_hand(x, x[[10, 11]]), reference_features], axis=1)
    np.testing.assert_allclose(estimator.features[[0, 5]], features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(estimator.predict(np.array([0, 5])), predictions_by_hand(features, theta), rtol=1e-5)
    with pytest.raises(ValueError, match="exactly when the estimator was built with them .it was built with."):
        estimator.replace([1], x[[12]])
    with pytest.raises(ValueError, match="it was built without"):
        EmbeddingEstimator(x, replaceable=True).replace([1], x[[12]], new_reference[:1])
    with pytest.raises(ValueError, match=r"reference_pass_rates must be pass rates in \[0, 1\]"):
        estimator.replace([1], x[[12]], [[0.2, 1.5]])


@pytest.mark.parametrize(
    ("slots", "rows", "message"),
    [
        ([3, 8], lambda x: np.stack([x[0], np.full(16, np.nan)]), r"embeddings of tasks \[8\] hold NaN or infinite"),
        ([3, 8], lambda x: np.stack([np.zeros(16), x[1]]), r"embeddings of tasks \[3\] are all zeros"),
        ([3], lambda x: x[:1, :15], "embeddings of the new tasks have 15 dimensions, the other tasks' 16"),
        ([3, 8], lambda x: x[:3], "embeddings has 3 rows but there are 2 tasks"),
        ([3, 3], lambda x: x[:2], r"distinct task ids, got shape \(2,\) with repeated \[3\]"),
        ([3, 50], lambda x: x[:2], r"indices must be task ids in \[0, 50\), got \[50\]"),
    ],
    ids=["nan", "zeros", "dimension", "rows", "repeated", "range"],
)
def test_replace_refuses_bad_newcomers_naming_the_row(slots, rows, message):
    x, _, _ = linear_world(num_tasks=50)
    estimator = EmbeddingEstimator(x, replaceable=True)
    before = copy.deepcopy(estimator.state_dict())
    with pytest.raises(ValueError, match=message):
        estimator.replace(slots, rows(x))
    for name, value in estimator.state_dict().items():  # refused before anything changed
        np.testing.assert_array_equal(value, before[name])


def test_replace_needs_a_replaceable_estimator_whose_features_are_state():
    x, _, _ = linear_world(num_tasks=50)
    assert "features" not in EmbeddingEstimator(x).state_dict()  # a fixed set does not save what it can rebuild
    with pytest.raises(ValueError, match="replace\\(\\) needs an EmbeddingEstimator built with replaceable=True"):
        EmbeddingEstimator(x).replace([0], x[:1])
    state = EmbeddingEstimator(x, replaceable=True).state_dict()
    with pytest.raises(ValueError, match="saved with replaceable=True but this estimator has replaceable=False"):
        EmbeddingEstimator(x).load_state_dict(state)
    with pytest.raises(ValueError, match="saved with replaceable=False but this estimator has replaceable=True"):
        EmbeddingEstimator(x, replaceable=True).load_state_dict(EmbeddingEstimator(x).state_dict())


def pool_selector(embeddings, reference=None):
    estimator = EmbeddingEstimator(embeddings, reference_pass_rates=reference, refresh_rows=300, replaceable=True)
    return BOTSSelector(embeddings.shape[0], estimator=estimator, implicit_weight=0.2, seed=3)


@pytest.mark.parametrize("with_reference", [False, True])
def test_replaced_tasks_resume_bit_identically_through_the_selector_file(tmp_path, with_reference):
    x, truth, _ = linear_world(num_tasks=1000)
    reference = np.stack([truth * 0.5, truth**0.5], axis=1) if with_reference else None
    stream = np.random.default_rng(11).normal(size=(40, x.shape[1]))  # the tasks that replace pool tasks
    stream_reference = np.random.default_rng(12).uniform(size=(40, 2)) if with_reference else None
    a = pool_selector(x, reference)
    feed(a, truth, rounds=4, select=a.select)
    slots = np.array([5, 900, 41, 2])
    a.estimator.replace(slots, stream[:4], None if reference is None else stream_reference[:4])
    a.save(tmp_path / "selector.safetensors")
    tensors = load_file(tmp_path / "selector.safetensors")
    np.testing.assert_array_equal(tensors["estimator/features"], a.estimator.features)
    # Built from other embeddings (a resumed pool holds other tasks): the file decides features and scales.
    b = pool_selector(x[::-1] * 2.0 + 1.0, None if reference is None else reference[::-1])
    b.load(tmp_path / "selector.safetensors")
    assert b.checksum() == a.checksum()
    np.testing.assert_array_equal(b.estimator.predict(), a.estimator.predict())
    for selector in (a, b):
        feed(selector, truth, rounds=3, select=selector.select, seed=4)
        selector.estimator.replace([7, 8], stream[4:6], None if reference is None else stream_reference[4:6])
        feed(selector, truth, rounds=2, select=selector.select, seed=5)
    for name, value in a.estimator.state_dict().items():
        np.testing.assert_array_equal(b.estimator.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.select(16), b.select(16))
