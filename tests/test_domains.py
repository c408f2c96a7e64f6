"""Multi-domain pools: quotas (exact every round, fair over rounds), selection inside domains, per-domain
diagnostics, resume, and the errors for bad domain labels and weights."""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np
import pytest

from trl_bots import BOTSSelector
from trl_bots.domains import MAX_DOMAINS, apportion, domain_quotas, short_of_rounded_share
from trl_bots.posterior import CHUNK_SIZE


def labelled_pool(sizes: dict[str, int], seed: int = 0) -> np.ndarray:
    """Domain labels for sum(sizes) tasks, interleaved in a random order."""
    labels = np.concatenate([[name] * size for name, size in sizes.items()])
    return np.random.default_rng(seed).permutation(labels)


def play(selector: BOTSSelector, rounds: int, batch_size: int, seed: int = 0):
    """Select, roll out (8 trials a task) and update; return each round's quotas (asked before selecting), tasks and
    per-domain diagnostics."""
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(rounds):
        quotas = selector.domain_quotas(batch_size)
        tasks = selector.select(batch_size)
        selector.update(tasks, rng.integers(0, 9, tasks.size), np.full(tasks.size, 8))
        history.append((quotas, tasks, selector.last_domain_stats))
    return history


def rounds_of_quotas(seats: int, weights: np.ndarray, rounds: int) -> np.ndarray:
    lag, history = [Fraction(0)] * len(weights), []
    for _ in range(rounds):
        quotas, lag = apportion(seats, weights, lag)
        history.append(quotas)
    return np.array(history)


@pytest.mark.parametrize("seed", range(6))
def test_apportion_is_exact_every_round_and_fair_over_rounds(seed):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0, 1, rng.integers(2, 9)) * (1e-3 if seed % 2 else 1.0)
    weights[rng.integers(0, weights.size)] = 0.0  # a weight of 0 never gets a seat
    seats = int(rng.integers(1, 300))
    exact = seats * weights / weights.sum()
    quotas = rounds_of_quotas(seats, weights, 1000)
    assert (quotas.sum(axis=1) == seats).all()
    # Every round: the whole part of seats * share, or one more (the quota property of largest remainder).
    assert ((quotas == np.floor(exact)) | (quotas == np.floor(exact) + 1)).all()
    assert (quotas[:, weights == 0] == 0).all()
    # After every round, every domain's total is within one seat of its exact share: none is favoured.
    drift = np.cumsum(quotas, axis=0) - np.arange(1, 1001)[:, None] * exact
    assert np.abs(drift).max() < 1 + 1e-9


def test_equal_weights_pass_the_extra_seat_round():
    quotas = rounds_of_quotas(10, np.ones(3), 12)
    assert quotas.tolist() == [[4, 3, 3], [3, 4, 3], [3, 3, 4]] * 4
    # Exact shares 4/3, 4/3, 4/3 and 4: the whole parts leave one seat, which cycles among the first three.
    quotas = rounds_of_quotas(8, np.array([1.0, 1.0, 1.0, 3.0]), 6)
    assert quotas.tolist() == [[2, 1, 1, 4], [1, 2, 1, 4], [1, 1, 2, 4]] * 2


def test_small_domain_gives_its_remainder_in_proportion_to_the_other_weights():
    # Exact shares 4, 4, 8 of 16; the first domain has 1 task: its 3 seats go 1:2 to the others (5 and 10).
    no_lag = [Fraction(0)] * 3
    quotas, capped, lag = domain_quotas(16, np.array([1.0, 1.0, 2.0]), np.array([1, 100, 100]), no_lag)
    assert quotas.tolist() == [1, 5, 10] and capped.tolist() == [True, False, False]
    assert lag == [0, 0, 0]  # the capped domain's lag is kept; 15 seats at 1:2 are exactly 5 and 10
    # A cascade: freeing seats can push another domain over its size as well.
    quotas, capped, _ = domain_quotas(16, np.array([1.0, 1.0, 2.0]), np.array([1, 4, 100]), no_lag)
    assert quotas.tolist() == [1, 4, 11] and capped.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="batch_size=7 distinct tasks cannot be drawn .* hold 6 tasks"):
        domain_quotas(7, np.array([1.0, 1.0, 0.0]), np.array([1, 5, 100]), no_lag)


@pytest.mark.parametrize(
    "rule",
    [
        {},  # Thompson draws, temperature 0 (draws revealed only near the target)
        {"temperature": 0.1},
        {"thompson": False},
        {"strategy": "mopps"},
        {"strategy": "dots"},
    ],
)
@pytest.mark.parametrize("weights", [{"a": 1.0, "b": 2.0, "c": 0.5}, "proportional", "uniform"])
def test_quotas_hold_exactly_every_round(rule, weights):
    sizes = {"a": 300, "b": 120, "c": 2500}
    labels = labelled_pool(sizes)
    reference = np.random.default_rng(1).uniform(0, 1, (labels.size, 2))
    reference.sort(axis=1)
    selector = BOTSSelector(labels.size, reference, seed=3, domains=labels, domain_weights=weights, **rule)
    names = sorted(sizes)
    resolved = (
        {"proportional": sizes, "uniform": dict.fromkeys(sizes, 1.0)}[weights] if isinstance(weights, str) else weights
    )
    expected = np.array([resolved[name] for name in names], dtype=float)
    totals = np.zeros(3)
    expected_quotas = rounds_of_quotas(37, expected, 40)
    for t, (quotas, tasks, stats) in enumerate(play(selector, 40, 37)):
        assert quotas == dict(zip(names, expected_quotas[t].tolist(), strict=True))
        assert np.unique(tasks).size == 37
        counts = {name: int(np.sum(labels[tasks] == name)) for name in names}
        assert counts == quotas
        shares = {name: values["share"] for name, values in stats.items()}
        assert shares == {name: quotas[name] / 37 for name in names}
        totals += [counts[name] for name in names]
    np.testing.assert_allclose(totals, 40 * 37 * expected / expected.sum(), atol=1)


@pytest.mark.parametrize("rule", [{}, {"temperature": 0.2}, {"thompson": False}])
def test_one_domain_selects_exactly_as_the_global_rule(rule):
    """The same selection code runs inside a domain: one domain holding every task gives the global batches."""
    num_tasks = 40_000  # large enough for the draws revealed only near the target
    reference = np.random.default_rng(1).uniform(0, 1, (num_tasks, 2))
    reference.sort(axis=1)
    plain = BOTSSelector(num_tasks, reference, seed=5, **rule)
    pooled = BOTSSelector(num_tasks, reference, seed=5, domains=["all"] * num_tasks, domain_weights="uniform", **rule)
    for (_, a, _), (_, b, _) in zip(play(plain, 6, 64), play(pooled, 6, 64), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain.alpha, pooled.alpha)


def test_each_domain_takes_its_tasks_closest_to_the_target():
    labels = labelled_pool({"x": 30, "y": 30}, seed=2)
    selector = BOTSSelector(60, implicit_weight=0.0, thompson=False, domains=labels, domain_weights={"x": 1, "y": 3})
    means = np.random.default_rng(4).uniform(0.05, 0.95, 60)
    selector.alpha, selector.beta = (100 * means).astype(np.float32), (100 * (1 - means)).astype(np.float32)
    tasks = selector.select(8)
    mean = selector.posterior_mean()
    for name, quota in (("x", 2), ("y", 6)):
        members = np.flatnonzero(labels == name)
        closest = members[np.argsort(np.abs(mean[members] - 0.5), kind="stable")[:quota]]
        assert sorted(tasks[labels[tasks] == name].tolist()) == sorted(closest.tolist())
    # Domains come in the order of their sorted names, each best first.
    assert (labels[tasks] == ["x"] * 2 + ["y"] * 6).all()


def test_per_domain_stats_against_counts():
    labels = np.array(["math", "logic", "math", "code", "logic", "math"])
    selector = BOTSSelector(6, implicit_weight=0.0, forgetting=0.5, domains=labels)
    tasks = np.array([0, 1, 2, 4])
    successes, trials = np.array([1, 0, 4, 2]), np.array([4, 4, 4, 3])
    selector.update(tasks, successes, trials)
    alpha, beta = np.ones(6), np.ones(6)
    alpha[tasks] += successes
    beta[tasks] += trials - successes
    mean = alpha / (alpha + beta)
    stats = selector.last_domain_stats
    assert list(stats) == ["code", "logic", "math"]
    assert stats["math"]["share"] == 2 / 4 and stats["logic"]["share"] == 2 / 4 and stats["code"]["share"] == 0
    assert stats["math"]["effective_task_ratio"] == 1 / 2  # task 0 mixed, task 2 all solved
    assert stats["logic"]["effective_task_ratio"] == 1 / 2  # task 1 none solved, task 4 mixed
    assert math.isnan(stats["code"]["effective_task_ratio"])  # no task of the domain selected
    for name in stats:
        assert stats[name]["posterior_mean"] == pytest.approx(mean[labels == name].mean(), rel=1e-6)
    assert selector.last_stats.posterior_mean == pytest.approx(mean.mean(), rel=1e-6)
    assert selector.domain_quotas(4) is None  # labels without weights: metrics only, one global selection


def test_per_domain_posterior_means_across_chunks():
    """Pools larger than the posterior's chunk: chunks holding only the largest domain, chunks missing a domain."""
    chunk = CHUNK_SIZE
    rng = np.random.default_rng(7)
    codes = rng.choice(3, size=3 * chunk + 123, p=[0.6, 0.3, 0.1])
    codes[:chunk] = 0  # the first chunk holds only the largest domain
    codes[chunk : 2 * chunk][codes[chunk : 2 * chunk] == 2] = 1  # the second has no task of the smallest
    labels = np.array(["a", "b", "c"])[codes]
    selector = BOTSSelector(labels.size, implicit_weight=0.0, domains=labels)
    selector.alpha = rng.uniform(1, 30, labels.size).astype(np.float32)
    selector.beta = rng.uniform(1, 30, labels.size).astype(np.float32)
    tasks = rng.choice(labels.size, 64, replace=False)
    selector.update(tasks, np.zeros(64), np.full(64, 8))
    mean = selector.alpha.astype(np.float64) / (selector.alpha.astype(np.float64) + selector.beta)
    for name in "abc":
        assert selector.last_domain_stats[name]["posterior_mean"] == pytest.approx(
            mean[labels == name].mean(), rel=1e-6
        )
    assert selector.last_stats.posterior_mean == pytest.approx(mean.mean(), rel=1e-6)
    np.testing.assert_allclose(selector.posterior_mean(tasks), mean[tasks], rtol=1e-6)
    with pytest.raises(ValueError, match=r"task ids in \[0, "):
        selector.posterior_mean([labels.size])


def test_small_domain_is_logged_once(caplog):
    labels = labelled_pool({"big": 200, "tiny": 2})
    selector = BOTSSelector(202, implicit_weight=0.0, domains=labels, domain_weights="uniform")
    with caplog.at_level(logging.WARNING, logger="trl_bots.selector"):
        history = play(selector, 5, 20)
    assert all(quotas == {"big": 18, "tiny": 2} for quotas, _, _ in history)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "{'tiny': 2}" in warnings[0] and "fewer tasks than their quota" in warnings[0]


def test_a_domain_that_fills_its_rounded_share_is_not_logged(caplog):
    """7 seats over 3 equal domains: exact shares of 2.33, so the rotating extra seat goes to each domain in turn; a
    domain of 2 tasks gives its rounded share, 2, and only the extra seat goes elsewhere: no warning. With 9 seats
    (a share of 3) it is short, and said once."""
    labels = labelled_pool({"a": 50, "b": 50, "tiny": 2})
    selector = BOTSSelector(102, implicit_weight=0.0, domains=labels, domain_weights="uniform")
    with caplog.at_level(logging.WARNING, logger="trl_bots.selector"):
        history = play(selector, 6, 7)
    assert {quotas["tiny"] for quotas, _, _ in history} == {2}
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="trl_bots.selector"):
        play(selector, 2, 9)
    assert len(caplog.records) == 1 and "{'tiny': 2}" in caplog.records[0].getMessage()
    assert short_of_rounded_share(7, np.ones(3), np.array([50, 50, 2])).tolist() == [False, False, False]
    assert short_of_rounded_share(8, np.ones(3), np.array([50, 50, 2])).tolist() == [False, False, True]  # 2.67 -> 3
    assert short_of_rounded_share(9, np.array([1.0, 1.0, 0.0]), np.array([4, 50, 0])).tolist() == [True, False, False]


@pytest.mark.parametrize("rule", [{}, {"temperature": 0.1, "strategy": "mopps"}])
def test_resume_with_quotas_is_exact(tmp_path, rule):
    labels = labelled_pool({"a": 400, "b": 50, "c": 900})
    reference = np.sort(np.random.default_rng(1).uniform(0, 1, (labels.size, 2)), axis=1)
    kwargs = {"domains": labels, "domain_weights": {"a": 2, "b": 1, "c": 1}, **rule}
    uninterrupted = BOTSSelector(labels.size, reference, seed=4, **kwargs)
    play(uninterrupted, 7, 25, seed=1)
    path = tmp_path / "selector.safetensors"
    uninterrupted.save(path)
    resumed = BOTSSelector(labels.size, reference, seed=999, **kwargs)
    resumed.load(path)
    after_a, after_b = play(uninterrupted, 9, 25, seed=2), play(resumed, 9, 25, seed=2)
    for (quotas_a, tasks_a, stats_a), (quotas_b, tasks_b, stats_b) in zip(after_a, after_b, strict=True):
        assert quotas_a == quotas_b and stats_a == stats_b
        np.testing.assert_array_equal(tasks_a, tasks_b)
    np.testing.assert_array_equal(uninterrupted.alpha, resumed.alpha)

    # Another domain assignment, other weights, or none at all: refused, not silently continued.
    others = [
        {"domains": labels[::-1].copy(), "domain_weights": kwargs["domain_weights"]},
        {"domains": labels, "domain_weights": {"a": 1, "b": 1, "c": 1}},
        {"domains": labels},
        {},
    ]
    for other in others:
        with pytest.raises(ValueError, match="other domains or domain weights"):
            BOTSSelector(labels.size, reference, **rule, **other).load(path)

    # The same shares at another scale give the same quotas every round: accepted, and the run continues exactly.
    rescaled = BOTSSelector(
        labels.size, reference, seed=999, **{**kwargs, "domain_weights": {"a": 0.5, "b": 0.25, "c": 0.25}}
    )
    rescaled.load(path)
    uninterrupted.load(path)
    for (quotas_a, tasks_a, _), (quotas_b, tasks_b, _) in zip(
        play(uninterrupted, 5, 25), play(rescaled, 5, 25), strict=True
    ):
        assert quotas_a == quotas_b
        np.testing.assert_array_equal(tasks_a, tasks_b)


@pytest.mark.parametrize(
    ("domains", "weights", "message"),
    [
        (["a", "b"], {"a": 1, "b": 1, "z": 1}, r"the data has no domain \['z'\]"),
        (["a", "b"], {"a": 1}, r"no weight for \['b'\] \(give 0 to leave a domain out\)"),
        (["a", "b"], {"a": 1, "b": -1}, r"finite numbers >= 0, got \{'b': -1\}"),
        (["a", "b"], {"a": 1, "b": math.nan}, "finite numbers >= 0"),
        (["a", "b"], {"a": 0, "b": 0.0}, "all zero"),
        (["a", "b"], "by_size", "'proportional' or 'uniform', got 'by_size'"),
        (["a", "b"], [1, 1], "got list"),
        (["a", ""], None, r"non-empty strings; 1 tasks have another value \(task 1: ''\)"),
        (["a", None], None, r"task 1: None"),
        (
            [3, "b"],
            "uniform",
            r"task 0: 3\)\. .* write numbers \(e\.g\. the ids of a ClassLabel column\) as their names",
        ),
        (["a"], None, r"one label per task \(2\), got 1"),
        ([f"d{i}" for i in range(MAX_DOMAINS + 1)], None, "257 distinct labels, more than 256"),
        # Spellings of one domain that differ only in case or surrounding spaces: refused, not two domains.
        (
            ["math", "Math", "logic", "logic "],
            None,
            r"differ only in case or surrounding spaces: \[\['Math', 'math'\], \['logic', 'logic '\]\]",
        ),
        (None, "uniform", "domain_weights needs domains"),
    ],
)
def test_bad_domains_and_weights_are_named(domains, weights, message):
    num_tasks = 2 if domains is None or len(domains) <= 2 else len(domains)
    with pytest.raises(ValueError, match=message):
        BOTSSelector(num_tasks, implicit_weight=0.0, domains=domains, domain_weights=weights)


def test_domain_weights_refused_for_fixed_orders_and_oversized_batches():
    with pytest.raises(ValueError, match="strategy='uniform' serves a fixed order"):
        BOTSSelector(4, strategy="uniform", domains=["a", "a", "b", "b"], domain_weights="uniform")
    BOTSSelector(4, strategy="uniform", domains=["a", "a", "b", "b"])  # labels alone: metrics only, allowed
    selector = BOTSSelector(4, implicit_weight=0.0, domains=["a", "a", "b", "b"], domain_weights={"a": 1, "b": 0})
    with pytest.raises(ValueError, match="batch_size=3 distinct tasks cannot be drawn"):
        selector.select(3)


def test_domain_quotas_checks_the_batch_size_as_select_does():
    selector = BOTSSelector(6, implicit_weight=0.0, domains=list("aabbcc"), domain_weights="uniform")
    for batch_size in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match=rf"batch_size must be a positive integer, got {batch_size!r}"):
            selector.domain_quotas(batch_size)
    with pytest.raises(ValueError, match="batch_size=7 is larger than the number of tasks"):
        selector.domain_quotas(7)
    assert selector.domain_quotas(np.int64(4)) == {"a": 2, "b": 1, "c": 1}
    assert selector.domain_lag == [0, 0, 0]  # asking changes nothing: select takes the same quotas
    assert sorted(np.asarray(list("aabbcc"))[selector.select(4)].tolist()) == ["a", "a", "b", "c"]


@pytest.mark.parametrize("weights", [[0, 0], [math.nan, 1], [-2, -1], "2,1", [2]])
def test_a_state_with_weights_no_selector_saves_is_refused(weights):
    labels = np.array(["a", "b"] * 5)
    settings = {"domains": labels, "domain_weights": {"a": 2, "b": 1}, "implicit_weight": 0.0}
    state = BOTSSelector(10, **settings).state_dict()
    with pytest.raises(ValueError, match="other domains or domain weights"):
        BOTSSelector(10, **settings).load_state_dict({**state, "domains": {**state["domains"], "weights": weights}})


def test_encoded_domains_select_as_the_labels_do_and_are_not_weighted_twice():
    """The trainer hands the selector its domains encoded and weighted once (TaskDomains): the same selector as from
    the labels and weights, and the same saved state."""
    from trl_bots.domains import TaskDomains

    labels = labelled_pool({"a": 300, "b": 120, "c": 700}, seed=4)
    weights = {"a": 2.0, "b": 1.0, "c": 1.0}
    encoded = TaskDomains.from_labels(labels, labels.size).with_weights(weights)
    assert encoded.names == ("a", "b", "c") and encoded.sizes.tolist() == [300, 120, 700]
    assert encoded.weights.tolist() == [2.0, 1.0, 1.0] and encoded.weighted_tasks == 1120
    from_labels = BOTSSelector(labels.size, implicit_weight=0.0, seed=2, domains=labels, domain_weights=weights)
    from_encoded = BOTSSelector(labels.size, implicit_weight=0.0, seed=2, domains=encoded)
    for (quotas_a, tasks_a, _), (quotas_b, tasks_b, _) in zip(
        play(from_labels, 5, 24), play(from_encoded, 5, 24), strict=True
    ):
        assert quotas_a == quotas_b
        np.testing.assert_array_equal(tasks_a, tasks_b)
    assert from_labels._domain_signature() == from_encoded._domain_signature()
    with pytest.raises(ValueError, match=r"domains=TaskDomains\(...\) must hold the domain of each of the 1120 tasks"):
        BOTSSelector(labels.size, implicit_weight=0.0, domains=encoded, domain_weights=weights)
    with pytest.raises(ValueError, match="must hold the domain of each of the 1000 tasks"):
        BOTSSelector(1000, implicit_weight=0.0, domains=encoded)
    with pytest.raises(ValueError, match="domain_weights apply to the adaptive strategies"):
        BOTSSelector(labels.size, strategy="uniform", domains=encoded)
