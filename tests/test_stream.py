"""The offline world's task stream (bots_demo.stream) and the stock GRPO baseline that trains on it (bots_demo.stock)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest


STREAM_ROWS = 20_000


def first_rows(dataset, count: int) -> list[dict]:
    return list(itertools.islice(dataset, count))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped setup and the demo's settings, with GRPO scaled down to 3 steps of 4 tasks x 8 completions."""
    from train_bots import OFFLINE_DEMO_CONFIG, make_parser

    from bots_demo.offline_setup import build_offline_setup

    flags = ["--config", OFFLINE_DEMO_CONFIG, "--output_dir", str(tmp_path_factory.mktemp("shipped"))]
    flags += ["--max_steps", "3", "--per_device_train_batch_size", "32", "--save_strategy", "no"]
    _, training_args, _, demo_args = make_parser().parse_args_and_config([*flags, "--disable_tqdm", "true"])
    return build_offline_setup(demo_args, training_args), demo_args, training_args


def test_the_setup_stream_has_the_pool_mix_and_rows_and_never_a_held_out_prompt(shipped):
    from bots_demo.arguments import OfflineDemoArguments
    from bots_demo.arithmetic import count_carries, format_addition
    from bots_demo.stream import setup_stream

    setup, _, _ = shipped
    stream = setup_stream(setup, seed=500)
    # The pool's columns, without its reference pass-rate columns: a plain stream.
    assert stream.column_names == ["prompt", "solution", "carries"]
    assert set(setup.train_dataset.column_names) - set(stream.column_names) == {"weak_pass_rate", "strong_pass_rate"}
    rows = first_rows(stream, STREAM_ROWS)
    assert len(rows) == STREAM_ROWS  # 20 times the demo's pool of 1,000 tasks: the stream goes on
    held_out = set(setup.eval_dataset["prompt"])
    assert not held_out & {row["prompt"] for row in rows}
    for row in rows[:2000]:
        a, b = (int(x) for x in row["prompt"].rstrip("=").split("+"))
        assert (row["prompt"], row["solution"]) == format_addition(a, b, 8)
        assert row["carries"] == count_carries(a, b)
    # The mix: the demo's pool weights (3 for no carry, 1 for each of 1..8 carries), i.e. 3/11 and 1/11 each; every
    # level's count within 4 binomial standard deviations of its expectation.
    weights = np.asarray(OfflineDemoArguments().demo_pool_level_weights)
    assert weights.tolist() == [3.0] + [1.0] * 8
    expected = STREAM_ROWS * weights / weights.sum()
    counts = np.bincount([row["carries"] for row in rows], minlength=9)
    tolerance = 4 * np.sqrt(expected * (1 - weights / weights.sum()))
    assert np.all(np.abs(counts - expected) <= tolerance), (counts.tolist(), expected.round(1).tolist())


def test_the_stream_is_a_function_of_its_seed():
    from bots_demo.stream import addition_stream

    def prompts(seed):
        return [row["prompt"] for row in first_rows(addition_stream(3, [1, 2, 1, 1], seed), 500)]

    stream = addition_stream(3, [1, 2, 1, 1], seed=7)
    assert first_rows(stream, 500) == first_rows(stream, 500)  # every iteration starts the same sequence
    assert prompts(7) == [row["prompt"] for row in first_rows(stream, 500)]
    assert prompts(8) != prompts(7)


def test_the_stream_redraws_held_out_prompts_within_their_level():
    from bots_demo.arithmetic import make_additions
    from bots_demo.stream import addition_stream

    # One digit: 55 carry-free additions, 40 of them held out, so most carry-free draws hit the held-out set.
    held_out = set(make_additions(40, 1, seed=1, level_weights=[1, 0])["prompt"])
    rows = first_rows(addition_stream(1, [1, 1], seed=3, exclude=held_out), 4000)
    prompts = [row["prompt"] for row in rows]
    assert not held_out & set(prompts)
    assert len({p for p, row in zip(prompts, rows, strict=True) if row["carries"] == 0}) == 55 - 40  # all the rest
    # Redrawn at the same level: the mix is still half and half.
    carry_free = sum(row["carries"] == 0 for row in rows)
    assert abs(carry_free - 2000) <= 4 * np.sqrt(4000 * 0.25)


@pytest.mark.parametrize(
    ("digits", "weights", "exclude", "message"),
    [
        (2, [1, 1], (), r"addition_stream: level_weights needs one weight per number of carries 0..2 \(3 weights\)"),
        (2, [1, -1, 1], (), "level weights must be a non-empty list of non-negative numbers"),
        (2, [0, 0, 0], (), "level weights must not all be zero"),
        (0, None, (), "addition_stream: digits must be >= 1, got 0"),
        # Every carry-free 1-digit addition held out, but the level has a weight: nothing left to draw.
        (1, [1, 1], "every", r"every 1-digit addition with 0 carries is excluded \(55 held-out prompts\)"),
    ],
)
def test_the_stream_rejects_bad_settings(digits, weights, exclude, message):
    from bots_demo.arithmetic import format_addition
    from bots_demo.stream import addition_stream

    if exclude == "every":
        exclude = {format_addition(a, b, 1)[0] for a in range(10) for b in range(10) if a + b < 10}
    with pytest.raises(ValueError, match=message):
        addition_stream(digits, weights, seed=0, exclude=exclude)


def test_stock_effective_task_ratio_is_the_selectors():
    from bots_demo.stock import effective_task_ratio
    from trl_bots import BOTSSelector

    rng = np.random.default_rng(0)
    for _ in range(20):
        trials = rng.integers(0, 9, size=16).astype(np.float64)  # some groups partly or wholly unscored
        successes = np.floor(rng.random(16) * (trials + 1))
        selector = BOTSSelector(16, strategy="uniform")
        expected = selector.update(np.arange(16), successes, trials).effective_task_ratio
        assert effective_task_ratio(successes, trials) == expected
    # Counted by hand: of 0/8, 3/8, 8/8, 5/8, 0/0 (unscored) and 1/2, three groups are mixed.
    assert effective_task_ratio(np.array([0, 3, 8, 5, 0, 1]), np.array([8, 8, 8, 8, 0, 2])) == 0.5


def test_stock_grpo_trains_on_the_stream_and_logs_the_mixed_share_of_its_groups(shipped):
    from bots_demo.stock import ETR_METRIC, StockGRPOTrainer
    from bots_demo.stream import setup_stream
    from trl_bots.rewards import exact_match_reward

    setup, _, training_args = shipped
    trainer = StockGRPOTrainer(
        model=setup.model_path,
        reward_funcs=[exact_match_reward],
        args=training_args,
        train_dataset=setup_stream(setup, seed=1),
        processing_class=setup.tokenizer,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if ETR_METRIC in entry]
    assert len(logs) == 3
    etr = np.array([entry[ETR_METRIC] for entry in logs])
    # The exact-match reward is 0 or 1, so a group is mixed exactly when TRL finds its reward spread non-zero.
    np.testing.assert_allclose(etr, [1 - entry["frac_reward_zero_std"] for entry in logs], atol=1e-6)
    np.testing.assert_allclose(etr * 4, np.round(etr * 4), atol=1e-9)  # a share of 4 groups
    assert etr.sum() > 0
