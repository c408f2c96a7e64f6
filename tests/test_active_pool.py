"""The active pool's parts, without a trainer: the retirement rule, TaskStream, ActivePool and
BOTSSelector.replace_tasks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasets import Dataset, IterableDataset, interleave_datasets

from trl_bots.active_pool import ActivePool, tasks_to_retire
from trl_bots.posterior import informative_group_probability
from trl_bots.selector import BOTSSelector
from trl_bots.task_stream import StreamEnded, TaskStream


def rows(num_rows: int):
    """The stream's rows: `idx` is the row's position in one pass."""
    for i in range(num_rows):
        yield {"idx": i, "prompt": f"task {i}: say a"}


def stream_of(num_rows: int) -> IterableDataset:
    return IterableDataset.from_generator(rows, gen_kwargs={"num_rows": num_rows})


def dataset_of(num_rows: int) -> Dataset:
    return Dataset.from_list(list(rows(num_rows)))


def read(stream: TaskStream, count: int) -> list[int]:
    return [stream.next_row()[0]["idx"] for _ in range(count)]


def with_row(source: IterableDataset, position: int, row) -> IterableDataset:
    """`source`, yielding `row` in place of its row at `position` (a stream that goes bad mid-way)."""

    class OneRowReplaced(type(source)):
        def __iter__(self):
            for index, original in enumerate(super().__iter__()):
                yield row if index == position else original

    source.__class__ = OneRowReplaced
    return source


# ------------------------------------------------------------------ informative_group_probability
def beta_moment(a: float, b: float, power: int) -> float:
    """E[p^power] under Beta(a, b): B(a + power, b) / B(a, b), through log-gamma."""
    log_beta = math.lgamma(a + power) + math.lgamma(b) - math.lgamma(a + b + power)
    return math.exp(log_beta - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))


@pytest.mark.parametrize("group_size", [1, 2, 3, 8, 16])
def test_informative_group_probability_is_the_beta_expectation(group_size):
    alpha = np.array([1.0, 0.5, 3.0, 20.0, 1.2, 0.3], dtype=np.float32)
    beta = np.array([1.0, 0.5, 1.0, 2.0, 7.5, 40.0], dtype=np.float32)
    got = informative_group_probability(alpha, beta, group_size)
    closed = [
        1.0 - beta_moment(a, b, group_size) - beta_moment(b, a, group_size)
        for a, b in zip(alpha.astype(float), beta.astype(float), strict=True)
    ]
    np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-12)  # lgamma round-off
    assert got.dtype == np.float64
    # Monte Carlo over the posterior: within 5 standard errors of 200k draws.
    draws = np.random.default_rng(0).beta(alpha, beta, size=(200_000, alpha.size))
    mixed = 1.0 - draws**group_size - (1.0 - draws) ** group_size
    tolerance = 5 * mixed.std(axis=0).max() / math.sqrt(200_000) + 1e-12
    np.testing.assert_allclose(got, mixed.mean(axis=0), rtol=0, atol=tolerance)
    if group_size == 1:  # one rollout is never a mixed group
        np.testing.assert_allclose(got, 0.0, atol=1e-15)


def test_informative_group_probability_of_a_flat_prior():
    """Under Beta(1, 1), E[p^G] = 1 / (G + 1): a new task's group is mixed with probability (G - 1) / (G + 1)."""
    for group_size in (2, 4, 8):
        assert informative_group_probability(np.ones(1), np.ones(1), group_size)[0] == pytest.approx(
            (group_size - 1) / (group_size + 1), rel=1e-14
        )


# ------------------------------------------------------------------ tasks_to_retire
def test_a_task_nothing_is_known_about_is_never_retired():
    prior = np.ones(4, dtype=np.float32)
    for threshold in (0.0, 0.5, 0.999):
        assert tasks_to_retire(prior, prior, (1.0, 1.0), 8, threshold).tolist() == []
    other_prior = np.full(3, 2.0, dtype=np.float32), np.full(3, 0.5, dtype=np.float32)
    assert tasks_to_retire(*other_prior, (2.0, 0.5), 4, 0.99).tolist() == []


def test_all_failed_groups_retire_a_task_after_the_rounds_worked_out_by_hand():
    """G = 2, forgetting 0.1, prior Beta(1, 1), threshold 0.5. A task failing both rollouts each round keeps alpha = 1
    and gets beta_k = 0.9 beta_{k-1} + 0.1 + 2: 3, 4.8, 6.42, 7.878, 9.1902. Under Beta(1, b) the probability of a mixed
    pair is 1 - 2 / ((1 + b)(2 + b)) - b / (2 + b) = 2b / ((1 + b)(2 + b)), 1/3 for the prior; relative to it 0.9,
    0.730, 0.617, 0.539, 0.484: retired after the fifth round, not the fourth. Task 1 solves both rollouts each
    round (the mirror image, retired with it); task 2 solves one of two (a mixed group: it stays); task 3 is never
    selected (it stays at the prior)."""
    selector = BOTSSelector(4, forgetting=0.1, implicit_weight=0.0)
    expected_beta, retired_after = 1.0, None
    for k in range(1, 7):
        selector.update(np.array([0, 1, 2]), np.array([0.0, 2.0, 1.0]), np.array([2.0, 2.0, 2.0]))
        expected_beta = 0.9 * expected_beta + 0.1 + 2.0
        assert selector.alpha[0] == pytest.approx(1.0) and selector.beta[0] == pytest.approx(expected_beta, rel=1e-6)
        relative = (2 * expected_beta / ((1 + expected_beta) * (2 + expected_beta))) / (1 / 3)
        retired = tasks_to_retire(selector.alpha, selector.beta, selector.prior, 2, 0.5).tolist()
        assert retired == ([0, 1] if relative < 0.5 else [])
        if retired and retired_after is None:
            retired_after = k
    assert retired_after == 5
    assert tasks_to_retire(selector.alpha, selector.beta, selector.prior, 2, 0.0).tolist() == []  # 0 never retires


# ------------------------------------------------------------------ TaskStream
@pytest.mark.parametrize("source", [stream_of(5), dataset_of(5)], ids=["iterable", "map-style"])
def test_stream_reads_in_order_then_restarts(source):
    stream = TaskStream(source, restart=True, required=("prompt",))
    assert [stream.next_row() for _ in range(5)] == [({"idx": i, "prompt": f"task {i}: say a"}, i) for i in range(5)]
    assert (stream.position, stream.passes) == (5, 0)
    assert [stream.next_row()[1] for _ in range(7)] == [0, 1, 2, 3, 4, 0, 1]  # indices in the pass
    assert (stream.position, stream.passes, stream.row_in_pass) == (12, 2, 2)


def test_a_shuffled_stream_is_reshuffled_every_pass():
    def shuffled():
        return stream_of(12).shuffle(seed=3, buffer_size=100)

    stream = TaskStream(shuffled(), restart=True)
    first, second = read(stream, 12), read(stream, 12)
    assert sorted(first) == sorted(second) == list(range(12))  # each pass is a permutation of the rows
    assert first != second
    expected = shuffled()
    expected.set_epoch(1)  # the order the Trainer's own reading of the second epoch gives
    assert second == [row["idx"] for row in expected]


@pytest.mark.parametrize("source", [stream_of(3), dataset_of(3)], ids=["iterable", "map-style"])
def test_a_stream_that_does_not_restart_ends(source):
    stream = TaskStream(source, restart=False)
    assert read(stream, 3) == [0, 1, 2]
    for _ in range(2):  # and stays ended
        with pytest.raises(StreamEnded, match="train_dataset ended after 3 rows"):
            stream.next_row()
    assert stream.position == 3


@pytest.mark.parametrize("restart", [True, False])
def test_an_empty_stream_is_refused(restart):
    stream = TaskStream(stream_of(0), restart=restart)
    with pytest.raises(ValueError, match="train_dataset yielded no row in pass 1: the stream is empty"):
        stream.next_row()
    with pytest.raises(TypeError, match="must be a datasets.IterableDataset or Dataset, got list"):
        TaskStream([{"prompt": "a"}], restart=True)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (["task 3", 3], "is a list, not a row of named columns"),
        ({"idx": 3, "prompt": "task 3", "answer": "b"}, r"has the columns \['answer', 'idx', 'prompt'\], but the"),
        ({"idx": 3}, r"has the columns \['idx'\], but the stream's first row has \['idx', 'prompt'\]"),
        ({"idx": 3, "prompt": None}, "has no value in its column 'prompt' \\(None\\)"),
    ],
    ids=["not-a-dict", "other-columns", "missing-column", "none-prompt"],
)
def test_a_malformed_row_is_refused_naming_its_position(bad_row, message):
    stream = TaskStream(with_row(stream_of(6), 3, bad_row), restart=True, required=("prompt",))
    assert read(stream, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match=message) as error:
        stream.next_row()
    assert error.match(r"^train_dataset's row 3 of pass 1 \(stream position 3\) ")


def test_a_first_row_without_a_required_column_is_refused():
    stream = TaskStream(Dataset.from_list([{"idx": 0, "text": "a"}]), restart=True, required=("prompt",))
    with pytest.raises(ValueError) as error:
        stream.next_row()
    assert str(error.value) == (
        "train_dataset's row 0 of pass 1 (stream position 0) has no column ['prompt'] (its columns: ['idx', "
        "'text']); BOTS needs them."
    )


def resumed(make_source, restart: bool, state: dict) -> TaskStream:
    """A new stream over a fresh copy of the source, continued from `state` after a JSON round trip (a checkpoint)."""
    stream = TaskStream(make_source(), restart=restart)
    stream.load_state_dict(json.loads(json.dumps(state)))
    return stream


@pytest.mark.parametrize("make_source", [lambda: stream_of(5), lambda: dataset_of(5)], ids=["iterable", "map-style"])
@pytest.mark.parametrize("saved_after", [0, 2, 5, 6, 11], ids=lambda n: f"after-{n}-rows")
def test_a_stream_resumes_with_the_rows_it_would_have_read(make_source, saved_after):
    """Mid-pass, at the pass boundary (5: the pass's last row read, its end not yet seen), and in later passes."""
    stream = TaskStream(make_source(), restart=True)
    read(stream, saved_after)
    state = stream.state_dict()
    expected = read(stream, 8)
    assert expected == [(saved_after + k) % 5 for k in range(8)]
    again = resumed(make_source, True, state)
    assert (again.position, again.passes, again.row_in_pass) == (saved_after, state["passes"], state["row_in_pass"])
    assert read(again, 8) == expected
    assert again.position == stream.position and again.passes == stream.passes


def test_a_stream_that_does_not_restart_resumes_ended():
    stream = TaskStream(stream_of(3), restart=False)
    read(stream, 3)
    with pytest.raises(StreamEnded):
        stream.next_row()
    again = resumed(lambda: stream_of(3), False, stream.state_dict())
    with pytest.raises(StreamEnded):
        again.next_row()


def test_exact_resume_only_without_a_shuffle_buffer():
    assert TaskStream(stream_of(4), restart=True).exact_resume
    assert TaskStream(dataset_of(4), restart=True).exact_resume
    assert TaskStream(dataset_of(4).shuffle(seed=0), restart=True).exact_resume  # a permutation: read by index
    assert TaskStream(dataset_of(4).shuffle(seed=0).to_iterable_dataset(), restart=True).exact_resume
    assert not TaskStream(stream_of(4).shuffle(seed=0, buffer_size=10), restart=True).exact_resume
    buffered_then_mapped = stream_of(4).shuffle(seed=0, buffer_size=10).map(lambda row: {"idx": row["idx"] + 1})
    assert not TaskStream(buffered_then_mapped, restart=True).exact_resume
    mixed = interleave_datasets([stream_of(4), stream_of(3).shuffle(seed=0, buffer_size=10)])
    assert not TaskStream(mixed, restart=True).exact_resume
    assert TaskStream(interleave_datasets([stream_of(4), stream_of(3)]), restart=True).exact_resume


# ------------------------------------------------------------------ ActivePool
def pool_over(num_rows: int, size: int, restart: bool = True) -> ActivePool:
    return ActivePool(TaskStream(stream_of(num_rows), restart=restart, required=("prompt",)), size)


def pooled_idx(pool: ActivePool) -> list[int]:
    return [row["idx"] for row in pool.rows]


def test_a_pool_fills_from_the_start_of_the_stream():
    pool = pool_over(10, 4)
    assert pool.size == 4 and pooled_idx(pool) == [0, 1, 2, 3]
    assert pool.task_ids.tolist() == [0, 1, 2, 3] and pool.task_ids.dtype == np.int64
    assert (pool.stream.position, pool.retired, pool.exhausted) == (4, 0, False)


def test_a_pool_larger_than_the_stream_holds_the_stream_once():
    pool = pool_over(6, 20)
    assert pool.size == 6 and pooled_idx(pool) == list(range(6)) and pool.task_ids.tolist() == list(range(6))
    assert pool.stream.restart  # restored: only the first fill reads a single pass
    # The stream restarts; the retired rows 1 and 4 are the only ones not pooled, so they come back as new tasks.
    assert pool.replace(np.array([4, 1])).tolist() == [1, 4]  # given unsorted
    assert pooled_idx(pool) == list(range(6)) and pool.task_ids.tolist() == [0, 7, 2, 3, 10, 5]
    assert (pool.retired, pool.stream.position, pool.stream.passes) == (2, 11, 1)


def test_replacing_reads_on_and_skips_rows_still_pooled_after_a_restart():
    pool = pool_over(6, 4)
    assert pool.replace(np.array([1, 3])).tolist() == [1, 3]
    assert pooled_idx(pool) == [0, 4, 2, 5] and pool.task_ids.tolist() == [0, 4, 2, 5]
    # The stream restarts: row 0 (position 6) is still pooled in slot 0, so slot 2 takes row 1 (position 7).
    assert pool.replace(np.array([2])).tolist() == [2]
    assert pooled_idx(pool) == [0, 4, 1, 5] and pool.task_ids.tolist() == [0, 4, 7, 5]
    assert (pool.stream.position, pool.stream.passes, pool.retired) == (8, 1, 3)
    # Row 4, retired from slot 1 in this call, is no longer pooled: slot 3 takes it as a new task.
    assert pool.replace(np.array([0, 1, 3])).tolist() == [0, 1, 3]
    assert pooled_idx(pool) == [2, 3, 1, 4] and pool.task_ids.tolist() == [8, 9, 7, 10]


def test_at_the_end_of_a_stream_that_stops_the_pool_fills_what_it_can():
    pool = pool_over(6, 4, restart=False)
    assert pool.replace(np.array([0, 1, 2])).tolist() == [0, 1]
    assert pool.exhausted
    assert pooled_idx(pool) == [4, 5, 2, 3] and pool.task_ids.tolist() == [4, 5, 2, 3]  # slot 2 keeps its task
    assert pool.retired == 2  # the tasks that left the pool
    assert pool.replace(np.array([3])).tolist() == [] and pool.exhausted and pool.retired == 2


def test_a_visit_budget_wears_out_the_tasks_served_that_often_and_a_new_task_starts_at_zero():
    pool = pool_over(20, 4)
    assert pool.worn_out(None).tolist() == [] and pool.worn_out(1).tolist() == []
    pool.serve(np.array([0, 2]))
    pool.serve(np.array([2, 3]))
    assert pool.visits.tolist() == [1, 0, 2, 1]
    assert pool.worn_out(2).tolist() == [2] and pool.worn_out(1).tolist() == [0, 2, 3]
    pool.replace(np.array([2]))
    assert pool.visits.tolist() == [1, 0, 0, 1] and pool.worn_out(2).tolist() == []


@pytest.mark.parametrize("restart", [True, False])
def test_a_pool_state_round_trip_continues_exactly(restart):
    pool = pool_over(7, 4, restart=restart)
    pool.serve(np.array([1, 2]))
    pool.replace(np.array([0, 2]))
    state = json.loads(json.dumps(pool.state_dict()))
    assert state["task_ids"] == [4, 1, 5, 3] and state["retired"] == 2 and state["stream"]["position"] == 6
    again = ActivePool(TaskStream(stream_of(7), restart=restart, required=("prompt",)), 4)
    again.load_state_dict(state)
    assert again.rows == pool.rows and again.task_ids.tolist() == pool.task_ids.tolist()
    assert again.keys.tolist() == pool.keys.tolist() and again.retired == pool.retired
    assert again.visits.tolist() == pool.visits.tolist() == [0, 1, 0, 0]
    for _ in range(3):
        assert again.replace(np.array([1, 3])).tolist() == pool.replace(np.array([1, 3])).tolist()
        assert again.rows == pool.rows and again.task_ids.tolist() == pool.task_ids.tolist()
        assert (again.exhausted, again.retired, again.stream.position) == (
            pool.exhausted,
            pool.retired,
            pool.stream.position,
        )
    assert pool.exhausted != restart
    with pytest.raises(ValueError, match="The saved pool holds 4 tasks, this one 3: resume with the same"):
        pool_over(7, 3).load_state_dict(state)


# ------------------------------------------------------------------ BOTSSelector.replace_tasks
def test_replaced_tasks_restart_from_the_prior():
    selector = BOTSSelector(5, forgetting=0.1, implicit_weight=0.0, prior=(2.0, 3.0))
    for _ in range(3):
        selector.update(np.array([0, 1, 3]), np.array([2.0, 0.0, 1.0]), np.array([2.0, 2.0, 2.0]))
    alpha, beta = selector.alpha.copy(), selector.beta.copy()
    selector.replace_tasks([3, 1])
    assert selector.alpha[[1, 3]].tolist() == [2.0, 2.0] and selector.beta[[1, 3]].tolist() == [3.0, 3.0]
    kept = [0, 2, 4]
    assert (
        selector.alpha[kept].tolist() == alpha[kept].tolist() and selector.beta[kept].tolist() == beta[kept].tolist()
    )
    selector.replace_tasks(np.array([], dtype=np.int64))  # nothing to replace: nothing changes
    assert selector.alpha[kept].tolist() == alpha[kept].tolist()


def test_replaced_tasks_get_the_plug_ins_prediction_for_their_references():
    """alpha = prior + rho m q, beta = prior + rho m (1 - q), with q = clip(w + mu (r - w), 0, 1) for the newcomer's
    references, m the last update's pseudo count (the largest trial count, 4) and rho = 0.3."""
    reference = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.9], [0.0, 0.4]])
    selector = BOTSSelector(4, reference_pass_rates=reference, implicit_weight=0.3, forgetting=0.1)
    selector.replace_tasks([1], reference_pass_rates=np.array([[0.4, 0.8]]))  # before any update: the bare prior
    assert (selector.alpha[1], selector.beta[1]) == (1.0, 1.0)
    assert selector.estimator.weak[1] == np.float32(0.4) and selector.estimator.gap[1] == pytest.approx(0.4)
    selector.update(np.array([0, 1, 2]), np.array([3.0, 1.0, 4.0]), np.array([4.0, 4.0, 4.0]))
    mu = selector.estimator.mu
    assert mu is not None and selector.last_stats.implicit_weight == 0.3
    alpha, beta = selector.alpha.copy(), selector.beta.copy()
    newcomers = np.array([[0.25, 0.75], [0.9, 1.0]])
    selector.replace_tasks([3, 0], reference_pass_rates=newcomers)
    for slot, (weak, strong) in zip([3, 0], newcomers, strict=True):
        q = min(max(weak + mu * (strong - weak), 0.0), 1.0)
        assert selector.estimator.predict(np.array([slot]))[0] == pytest.approx(q, rel=1e-6)
        assert selector.alpha[slot] == pytest.approx(1.0 + 0.3 * 4 * q, rel=1e-6)
        assert selector.beta[slot] == pytest.approx(1.0 + 0.3 * 4 * (1 - q), rel=1e-6)
    assert selector.alpha[[1, 2]].tolist() == alpha[[1, 2]].tolist()
    assert selector.beta[[1, 2]].tolist() == beta[[1, 2]].tolist()


class PlugInWithoutReplace:
    """An implicit-evidence plug-in written before active pools: no replace()."""

    def fit(self, indices, observed_rates):
        pass

    def predict(self, indices=None):
        return np.full(3 if indices is None else len(indices), 0.5, dtype=np.float32)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_replace_tasks_errors():
    selector = BOTSSelector(4, implicit_weight=0.0)
    with pytest.raises(ValueError, match=r"tasks must be distinct ids, got \[1, 1\]"):
        selector.replace_tasks([1, 1])
    with pytest.raises(ValueError, match=r"tasks must be task ids in \[0, 4\), got \[4\]"):
        selector.replace_tasks([0, 4])
    with pytest.raises(ValueError, match=r"replace_tasks got \['reference_pass_rates'\], but this selector has no"):
        selector.replace_tasks([0], reference_pass_rates=np.array([[0.1, 0.2]]))
    custom = BOTSSelector(3, estimator=PlugInWithoutReplace(), implicit_weight=0.2)
    with pytest.raises(ValueError, match="plug-in PlugInWithoutReplace has no replace\\(tasks, ...\\) method"):
        custom.replace_tasks([0])
    with_references = BOTSSelector(3, reference_pass_rates=np.full((3, 2), 0.5), implicit_weight=0.2)
    with pytest.raises(ValueError, match=r"must have shape \(num_tasks, 2\) = \(2, 2\)"):
        with_references.replace_tasks([0, 1], reference_pass_rates=np.array([[0.1, 0.2]]))
    assert selector.alpha.tolist() == [1.0] * 4  # nothing changed by a refused call
