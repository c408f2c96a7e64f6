"""Property-based tests: every input is either accepted with a valid posterior, or rejected with ValueError."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trl_bots import BOTSSelector


NUM_TASKS = 12
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)


def valid_round(indices, successes, trials) -> bool:
    if len(indices) != len(successes) or len(indices) != len(trials):
        return False
    if any(i < 0 or i >= NUM_TASKS for i in indices) or len(set(indices)) != len(indices):
        return False
    pairs = zip(successes, trials, strict=True)
    return all(math.isfinite(s) and math.isfinite(n) and 0 <= s <= n <= 1e6 for s, n in pairs)


@settings(max_examples=300, deadline=None)
@given(
    indices=st.lists(st.integers(-3, NUM_TASKS + 3), max_size=8),
    successes=st.lists(st.one_of(st.integers(-2, 10).map(float), finite_or_not), max_size=8),
    trials=st.lists(st.one_of(st.integers(-2, 10).map(float), finite_or_not), max_size=8),
)
def test_update_accepts_exactly_the_valid_rounds(indices, successes, trials):
    selector = BOTSSelector(NUM_TASKS, np.full((NUM_TASKS, 2), 0.5), seed=0)
    try:
        selector.update(np.array(indices, dtype=np.int64), np.array(successes), np.array(trials))
    except ValueError:
        assert not valid_round(indices, successes, trials)
        assert selector.round == 0
        np.testing.assert_array_equal(selector.alpha, 1.0)  # a rejected round changes nothing
        return
    assert valid_round(indices, successes, trials)
    assert selector.round == 1
    assert np.isfinite(selector.alpha).all() and (selector.alpha > 0).all()
    assert np.isfinite(selector.beta).all() and (selector.beta > 0).all()
    assert 0.0 <= selector.last_stats.effective_task_ratio <= 1.0


@settings(max_examples=200, deadline=None)
@given(reference=hnp.arrays(np.float64, (NUM_TASKS, 2), elements=st.floats(-1.0, 2.0) | finite_or_not))
def test_reference_pass_rates_are_validated(reference):
    valid = bool(np.all(np.isfinite(reference) & (reference >= 0) & (reference <= 1)))
    try:
        selector = BOTSSelector(NUM_TASKS, reference)
    except ValueError as error:
        assert not valid
        assert "reference_pass_rates" in str(error)
        return
    assert valid
    indices = selector.select(4)
    selector.update(indices, np.array([1, 2, 3, 4]), np.array([4, 4, 4, 4]))
    assert np.all((selector.posterior_mean() > 0) & (selector.posterior_mean() < 1))


@settings(max_examples=300, deadline=None)
@given(
    target=finite_or_not,
    forgetting=finite_or_not,
    implicit_weight=finite_or_not,
    temperature=finite_or_not,
)
def test_hyperparameters_are_validated(target, forgetting, implicit_weight, temperature):
    valid = (
        0 < target < 1
        and 0 < forgetting <= 1
        and 0 <= implicit_weight <= 1
        and math.isfinite(temperature)
        and temperature >= 0
    )
    try:
        selector = BOTSSelector(
            NUM_TASKS,
            np.full((NUM_TASKS, 2), 0.5),
            target=target,
            forgetting=forgetting,
            implicit_weight=implicit_weight,
            temperature=temperature,
        )
    except ValueError:
        assert not valid
        return
    assert valid
    assert len(set(selector.select(NUM_TASKS).tolist())) == NUM_TASKS


@settings(max_examples=100, deadline=None)
@given(batch_size=st.integers(-2, NUM_TASKS + 2), strategy=st.sampled_from(["bots", "uniform", "mopps"]))
def test_batches_are_distinct_or_rejected(batch_size, strategy):
    selector = BOTSSelector(NUM_TASKS, np.full((NUM_TASKS, 2), 0.5), strategy=strategy)
    if not 1 <= batch_size <= NUM_TASKS:
        try:
            selector.select(batch_size)
        except ValueError as error:
            assert "batch_size" in str(error)
            return
        raise AssertionError(f"batch_size={batch_size} was accepted")
    for _ in range(5):
        batch = selector.select(batch_size)
        assert len(set(batch.tolist())) == batch_size
        assert batch.min() >= 0 and batch.max() < NUM_TASKS
