"""The embedding estimator (prototype) and the prompt embeddings: values, state, padding, rho rules."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from trl_bots.embedding_estimator import (
    EmbeddingEstimator,
    EmbeddingSelector,
    empirical_logits,
    evidence_fit,
    implicit_weight_from_accuracy,
    standardise,
)
from trl_bots.prompt_embeddings import mean_pooled_hidden_states, middle_layer, prompt_embeddings, reduce_dimension


def linear_world(num_tasks=2000, dim=16, seed=0):
    """Embeddings and true pass rates ``sigmoid(x . w)`` with a known ``w``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_tasks, dim))
    w = rng.normal(0, 0.6, dim)
    return x, 1 / (1 + np.exp(-(x @ w - 0.3))), w


# ------------------------------------------------------------------ pure functions
def test_empirical_logits_are_the_jeffreys_logit_and_its_inverse_variance():
    y, w = empirical_logits(np.array([0.0, 4.0, 8.0]), np.array([8.0, 8.0, 8.0]))
    np.testing.assert_allclose(y, [math.log(0.5 / 8.5), 0.0, math.log(8.5 / 0.5)])
    p = np.array([0.5 / 9, 0.5, 8.5 / 9])
    np.testing.assert_allclose(w, 8 * p * (1 - p))


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


def test_implicit_weight_from_accuracy_matches_the_moment_rule():
    # k = spread / v - 1 = 0.2 / 0.02 - 1 = 9 pseudo rollouts; rho = lambda k / m = 0.1 * 9 / 8.
    assert implicit_weight_from_accuracy(0.02, 0.2, 0.1, 8.0, 1.0) == pytest.approx(0.1125)
    assert implicit_weight_from_accuracy(0.3, 0.2, 0.1, 8.0, 1.0) == 0.0  # worse than the spread: no weight
    assert implicit_weight_from_accuracy(0.0, 0.2, 0.1, 8.0, 0.3) == 0.3  # perfect: the cap
    assert implicit_weight_from_accuracy(math.nan, 0.2, 0.1, 8.0, 0.3) == 0.0


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
    with pytest.raises(ValueError, match="cache must be a finite array of shape"):
        EmbeddingEstimator(x[:100]).load_state_dict(a.state_dict())


def test_bad_embeddings_are_rejected_with_the_row():
    x = np.ones((10, 3))
    x[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"tasks \[7\] are not finite"):
        EmbeddingEstimator(x)


# ------------------------------------------------------------------ the selector and its rho rules
def test_selector_resumes_bit_identically():
    x, truth, _ = linear_world()

    def make():
        return EmbeddingSelector(
            2000, estimator=EmbeddingEstimator(x), rho_rule="pearson", implicit_weight=0.2, seed=3
        )

    a = make()
    feed(a, truth, rounds=5, select=a.select)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    feed(a, truth, rounds=5, select=a.select, seed=4)
    feed(b, truth, rounds=5, select=b.select, seed=4)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.select(16), b.select(16))


@pytest.mark.parametrize("rule", ["pearson", "r2", "moment"])
def test_adaptive_rho_drops_for_uninformative_embeddings_and_not_for_informative_ones(rule):
    x, truth, _ = linear_world()
    noise = np.random.default_rng(5).normal(size=x.shape)
    rhos = {}
    for name, features in (("informative", x), ("noise", noise)):
        selector = EmbeddingSelector(
            2000, estimator=EmbeddingEstimator(features), rho_rule=rule, implicit_weight=0.3, seed=0
        )
        feed(selector, truth, rounds=40, select=selector.select)
        rhos[name] = selector.implicit_weight
    assert rhos["noise"] < 0.05
    assert rhos["informative"] > 2 * rhos["noise"]


# ------------------------------------------------------------------ prompt embeddings
def test_middle_layer():
    assert [middle_layer(n) for n in (1, 2, 3, 28)] == [1, 1, 2, 14]
    with pytest.raises(ValueError):
        middle_layer(0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_prompt_gets_the_same_vector_alone_and_in_a_padded_batch(tiny_model_path, side):
    from tiny import load_tiny

    model, tokenizer = load_tiny(tiny_model_path)
    tokenizer.padding_side = side
    prompts = ["what is 2 plus 2?", "hi", "a much longer prompt, with more tokens than the others."]
    together = mean_pooled_hidden_states(model, tokenizer, prompts, layer=1, batch_size=3)
    alone = np.stack([mean_pooled_hidden_states(model, tokenizer, [p], layer=1)[0] for p in prompts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # The mean of the layer's hidden states over the real tokens, computed by hand for the short prompt.
    ids = tokenizer(prompts[1], return_tensors="pt")
    with torch.no_grad():
        hidden = model.model(**ids, output_hidden_states=True).hidden_states[1][0]
    np.testing.assert_allclose(together[1], hidden.mean(0).numpy(), atol=1e-5)


def test_prompt_embeddings_reduce_and_store_float16(tiny_model_path):
    from tiny import load_tiny

    model, tokenizer = load_tiny(tiny_model_path)
    prompts = [f"task number {i}" for i in range(40)]
    e = prompt_embeddings(model, tokenizer, prompts, dim=4)
    assert e.dtype == np.float16 and e.shape == (40, 4)
    full = mean_pooled_hidden_states(model, tokenizer, prompts)
    np.testing.assert_allclose(e, reduce_dimension(full, 4).astype(np.float16))


def test_pca_keeps_the_leading_directions_of_the_standardised_columns_deterministically():
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(2, 500))
    noise = rng.normal(0, 0.1, (500, 6))
    # Three columns carry f1 (one at a huge scale, as LLM hidden states have), two carry f2, one is noise.
    x = np.stack([1000 * f1, f1, f1, f2, f2, rng.normal(size=500)], axis=1) + noise
    reduced = reduce_dimension(x, 2, "pca")
    assert abs(np.corrcoef(reduced[:, 0], f1)[0, 1]) > 0.99  # the huge column does not take the lead by its scale
    assert abs(np.corrcoef(reduced[:, 1], f2)[0, 1]) > 0.99
    assert reduced[:, 0].var() > reduced[:, 1].var()  # the components keep their variances (3 vs 2 columns)
    np.testing.assert_array_equal(reduced, reduce_dimension(x, 2, "pca"))
    projected = reduce_dimension(x, 3, "random", seed=1)
    assert projected.shape == (500, 3)
    np.testing.assert_array_equal(projected, reduce_dimension(x, 3, "random", seed=1))
    assert not np.array_equal(projected, reduce_dimension(x, 3, "random", seed=2))
    np.testing.assert_allclose(reduce_dimension(x, None).std(axis=0), 1.0, rtol=1e-5)
