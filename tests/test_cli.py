"""The reusable pieces behind the example and the CLI: rewards, dataset loading, pass-rate estimation, plots."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset

from trl_bots.cli import main as cli_main
from trl_bots.data import GURU_REFERENCE_COLUMNS, load_guru, load_tasks, prepare_tasks
from trl_bots.pass_rates import GenerationSettings, count_successes, estimate_pass_rates, save_tasks
from trl_bots.rewards import (
    exact_match_reward,
    format_reward,
    get_reward_function,
    last_boxed,
    math_accuracy_reward,
    partial_match_reward,
)


# ---------------------------------------------------------------- rewards
def test_math_accuracy_uses_the_last_boxed_answer_and_math_equivalence():
    completions = [
        r"First \boxed{3}, then I correct myself: \boxed{\frac{1}{2}}",
        r"\boxed{0.5}",
        [{"role": "assistant", "content": r"so x = \boxed{\dfrac{2}{4}}"}],
        r"The answer is 1/2",  # no box: no answer
        r"\boxed{\frac{1}{3}}",
    ]
    assert math_accuracy_reward(completions, [r"\frac12"] * 5) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_math_accuracy_marks_an_unparseable_ground_truth_unscorable_not_wrong():
    assert math_accuracy_reward([r"\boxed{1}", r"\boxed{1}"], ["", "1"]) == [None, 1.0]


def test_last_boxed_balances_braces_and_skips_a_truncated_box():
    assert last_boxed(r"a \boxed{\frac{1}{2}} b") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} \boxed{\sqrt{2") == "1"  # the last box was cut off: the one before it counts
    assert last_boxed(r"\boxed{\sqrt{2") is None
    assert last_boxed(r"the answer is \boxed") is None
    assert last_boxed(r"\boxedfoo{3}") is None  # another command, not a box
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    ("completion", "boxed", "truth"),
    [
        (r"so the answer is \boxed 5", "5", "5"),  # brace-less: up to the next $ or the end
        (r"so $\boxed 5$. Done.", "5", "5"),
        (r"\fbox{5}", "5", "5"),
        (r"\boxed {5}", "5", "5"),
        (r"\boxed{5}. Check: \boxed{5", "5", "5"),  # truncated last box, complete one before it
        (r"\boxed{\left\{ x \right.}", r"\left\{ x \right.", None),  # escaped braces are not delimiters
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}", r"\{1,2\}"),
    ],
)
def test_boxed_answer_forms(completion, boxed, truth):
    assert last_boxed(completion) == boxed
    if truth is not None:
        assert math_accuracy_reward([completion], [truth]) == [1.0]


def test_exact_match_partial_match_and_format_rewards():
    assert exact_match_reward(["357", " 357\n", r"so \boxed{357}", "35", "3570"], ["357"] * 5) == [1, 1, 1, 0, 0]
    assert partial_match_reward(["3570", "357", "3", "", "957", "753"], ["357"] * 6) == [
        0.75,
        1,
        1 / 3,
        0,
        2 / 3,
        1 / 3,
    ]
    completions = [r"<think>add</think> \boxed{4}", r"\boxed{4}", "<think>a</think><think>b</think> \\boxed{4}"]
    assert format_reward(completions) == [1.0, 0.0, 0.0]


def test_reward_lookup_by_name_and_import_path():
    assert get_reward_function("exact_match_reward") is exact_match_reward
    assert get_reward_function("trl_bots.rewards.format_reward") is format_reward
    with pytest.raises(ValueError, match="Unknown reward function 'accuracy'.*exact_match_reward"):
        get_reward_function("accuracy")
    with pytest.raises(ValueError, match="could not be imported"):
        get_reward_function("trl_bots.rewards.missing")


# ---------------------------------------------------------------- datasets
def guru_rows(n=4):
    """Rows with GURU's real schema (LLM360/guru-RL-92k)."""
    return [
        {
            "data_source": "math__combined",
            "prompt": [{"role": "user", "content": f"What is {i}+{i}? Put the answer in \\boxed{{}}."}],
            "ability": "math",
            "reward_model": {"ground_truth": str(2 * i), "style": "rule"},
            "extra_info": {"index": i, "split": "train"},
            "qwen2.5_7b_pass_rate": i / 8,
            "qwen3_30b_pass_rate": (i + 1) / 8,
        }
        for i in range(n)
    ]


def test_guru_loader_reads_the_real_schema(tmp_path):
    path = str(tmp_path / "math__combined.parquet")
    Dataset.from_list(guru_rows()).to_parquet(path)
    dataset = load_guru(path)
    assert dataset["solution"] == ["0", "2", "4", "6"]
    assert dataset[1]["prompt"] == [{"role": "user", "content": "What is 1+1? Put the answer in \\boxed{}."}]
    assert dataset["qwen2.5_7b_pass_rate"] == [0.0, 0.125, 0.25, 0.375]
    assert set(GURU_REFERENCE_COLUMNS) <= set(dataset.column_names)
    assert dataset[2]["extra_info"] == {"index": 2, "split": "train"} and dataset[0]["ability"] == "math"


def test_guru_loader_names_missing_pass_rate_columns(tmp_path):
    path = str(tmp_path / "no_rates.parquet")
    Dataset.from_list(guru_rows()).remove_columns("qwen3_30b_pass_rate").to_parquet(path)
    with pytest.raises(ValueError, match=r"\['qwen3_30b_pass_rate'\].*estimate-pass-rates"):
        load_guru(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv", ""])
def test_local_files_round_trip(tmp_path, suffix):
    rows = Dataset.from_dict({"question": ["1+1=", "2+2="], "answer": [2, 4]})
    path = str(tmp_path / f"tasks{suffix}")
    save_tasks(rows, path)  # "" -> a save_to_disk folder
    dataset = prepare_tasks(load_tasks(path), prompt_column="question", answer_column="answer")
    assert dataset["prompt"] == ["1+1=", "2+2="] and dataset["solution"] == ["2", "4"]


def test_missing_column_error_names_the_field_and_the_columns():
    with pytest.raises(ValueError, match=r"answer_column='reward_model.truth'.*\['prompt', 'reward_model'\]"):
        prepare_tasks(
            Dataset.from_list([{"prompt": "x", "reward_model": {"ground_truth": "1"}}]), "prompt", "reward_model.truth"
        )


# ---------------------------------------------------------------- pass rates
def test_count_successes_counts_per_prompt_and_refuses_unscorable_rows():
    dataset = Dataset.from_dict({"prompt": ["1+1=", "2+2="], "solution": ["2", "4"]})
    counts = count_successes(dataset, [0, 1], ["2", "3", "4", "4"], exact_match_reward, 2, 0.5)
    assert counts == {0: (1.0, 2), 1: (2.0, 2)}
    bad = Dataset.from_dict({"prompt": ["q"], "solution": [""]})
    with pytest.raises(ValueError, match=r"Row 0 .*cannot be scored.*\[None, None\]"):
        count_successes(bad, [0], [r"\boxed{1}", r"\boxed{2}"], math_accuracy_reward, 2, 0.5)


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from tiny import load_tiny

    model, tokenizer = load_tiny(tiny_model_path)
    return model.eval(), tokenizer


def _letter_tasks(n=6):
    return Dataset.from_dict({"prompt": [f"task {i}: say a" for i in range(n)], "solution": ["a"] * n})


def contains_a(completions, **kwargs):
    return [float("a" in c) for c in completions]


def test_estimate_resumes_to_exactly_the_uninterrupted_numbers(tiny, tmp_path):
    model, tokenizer = tiny
    tasks = _letter_tasks()
    settings = GenerationSettings(num_samples=4, max_new_tokens=4, batch_size=2, seed=3)
    full = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings)
    assert full.shape == (6,) and np.all((full >= 0) & (full <= 1)) and len(set(full.tolist())) > 1
    progress = tmp_path / "rates.partial.jsonl"
    first = estimate_pass_rates(tasks.select(range(6)), model, tokenizer, contains_a, settings, progress_path=progress)
    lines = progress.read_text().splitlines()
    # Interrupt: keep the header and the first batch only, then resume.
    progress.write_text("\n".join(lines[:3]) + "\n")
    resumed = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings, progress_path=progress)
    np.testing.assert_array_equal(first, full)
    np.testing.assert_array_equal(resumed, full)
    assert len(progress.read_text().splitlines()) == 7  # header + 6 rows, none computed twice


def test_estimate_refuses_partial_results_of_another_run(tiny, tmp_path):
    model, tokenizer = tiny
    progress = tmp_path / "p.partial.jsonl"
    settings = GenerationSettings(num_samples=2, max_new_tokens=2, batch_size=3)
    estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, settings, progress_path=progress)
    other = GenerationSettings(num_samples=3, max_new_tokens=2, batch_size=3)
    with pytest.raises(ValueError, match=r"other settings \(num_samples=2 there, 3 now\)"):
        estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, other, progress_path=progress)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"temperature": 0.5}, "temperature=1.0 there, 0.5 now"),
        ({"top_p": 0.9}, "top_p=1.0 there, 0.9 now"),
        ({"max_new_tokens": 3}, "max_new_tokens=2 there, 3 now"),
        ({"batch_size": 2}, "batch_size=3 there, 2 now"),
        ({"success_threshold": 2.0}, "success_threshold=0.5 there, 2.0 now"),
    ],
)
def test_estimate_refuses_a_partial_file_written_with_other_settings(tiny, tmp_path, change, named):
    model, tokenizer = tiny
    progress = tmp_path / "p.partial.jsonl"
    settings = {"num_samples": 2, "max_new_tokens": 2, "batch_size": 3}
    estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, GenerationSettings(**settings), 0.5, progress)
    threshold = change.pop("success_threshold", 0.5)
    other = GenerationSettings(**{**settings, **change})
    with pytest.raises(ValueError, match=f"other settings \\({named}\\)"):
        estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, other, threshold, progress)


def test_estimate_resumes_exactly_after_a_last_line_cut_mid_batch(tiny, tmp_path, caplog):
    model, tokenizer = tiny
    tasks = _letter_tasks()
    settings = GenerationSettings(num_samples=4, max_new_tokens=4, batch_size=3, seed=5)
    full = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings)
    progress = tmp_path / "rates.partial.jsonl"
    estimate_pass_rates(tasks, model, tokenizer, contains_a, settings, progress_path=progress)
    lines = progress.read_text().splitlines(keepends=True)
    # The process stopped while appending the second batch: rows 3 and 4 written, row 5 cut off mid-line.
    progress.write_text("".join(lines[:6]) + lines[6][:9])
    with caplog.at_level("WARNING", logger="trl_bots.pass_rates"):
        resumed = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings, progress_path=progress)
    np.testing.assert_array_equal(resumed, full)  # the whole second batch was generated again, with its own seed
    assert "dropping its last line" in caplog.text and "cut short" in caplog.text
    rows = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [row["index"] for row in rows[1:]] == [0, 1, 2, 3, 4, 5]  # only the cut row again, on a line of its own
    # A complete last row that lost only its newline is kept, and the next row goes on a line of its own.
    progress.write_text("".join(lines[:6]).rstrip("\n"))
    caplog.clear()
    resumed = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings, progress_path=progress)
    np.testing.assert_array_equal(resumed, full)
    assert not caplog.text
    assert [json.loads(line)["index"] for line in progress.read_text().splitlines()[1:]] == [0, 1, 2, 3, 4, 5]


def test_estimate_refuses_a_partial_file_of_other_rows(tiny, tmp_path):
    """Issue 20 item 2: rows are saved by index, so a partial file is valid only for the exact rows it was written for."""
    model, tokenizer = tiny
    settings = GenerationSettings(num_samples=4, max_new_tokens=4, batch_size=2, seed=3)
    tasks = _letter_tasks()
    progress = tmp_path / "p.partial.jsonl"
    rates = estimate_pass_rates(tasks, model, tokenizer, contains_a, settings, progress_path=progress)
    assert len(set(rates.tolist())) > 1  # reusing rows by index would give the reversed file the wrong rates
    saved = progress.read_text()
    edits = {
        "reversed": tasks.select(range(5, -1, -1)),
        "one prompt edited": tasks.map(lambda row, i: {"prompt": row["prompt"] + "!" * (i == 4)}, with_indices=True),
        "a row dropped": tasks.select(range(5)),
    }
    for edit, other in edits.items():
        with pytest.raises(ValueError) as refused:
            estimate_pass_rates(other, model, tokenizer, contains_a, settings, progress_path=progress)
        message = str(refused.value)
        assert message.startswith(f"{progress} holds partial results for other data: "), edit
        assert "Delete it to start afresh" in message and "rerun on the dataset it was written for" in message, edit
        assert progress.read_text() == saved, edit  # untouched
    progress.unlink()
    reversed_rates = estimate_pass_rates(edits["reversed"], model, tokenizer, contains_a, settings)
    assert reversed_rates.shape == (6,)


def stop_after_the_first_row(rows: dict, tiny_model_path: str, tmp_path) -> list[str]:
    """Run `estimate-pass-rates` on `rows` (row 1 unscorable: an empty solution) one row per batch: it stops with
    row 0 kept in the partial file. Returns the command's arguments, to run it again."""
    source = tmp_path / "tasks.jsonl"
    save_tasks(Dataset.from_dict(rows), source)
    argv = ["estimate-pass-rates", "--dataset_name", str(source), "--model_name_or_path", tiny_model_path]
    argv += ["--output_path", str(tmp_path / "rates.jsonl"), "--num_samples", "2", "--max_new_tokens", "2"]
    argv += ["--batch_size", "1"]
    with pytest.raises(ValueError, match="cannot be scored"):
        cli_main(argv)
    assert len((tmp_path / "rates.jsonl.partial.jsonl").read_text().splitlines()) == 2  # the header and row 0
    return argv


def test_cli_estimate_pass_rates_refuses_to_resume_on_a_reordered_file(tiny_model_path, tmp_path):
    rows = {"prompt": ["task 0: say a", "task 1: say a"], "solution": ["1", ""]}
    argv = stop_after_the_first_row(rows, tiny_model_path, tmp_path)
    # The user fixes the file by putting the bad row first: row 0's saved count belongs to the other prompt now.
    save_tasks(Dataset.from_dict({name: values[::-1] for name, values in rows.items()}), tmp_path / "tasks.jsonl")
    with pytest.raises(ValueError, match=r"rates\.jsonl\.partial\.jsonl holds partial results for other data"):
        cli_main(argv)
    assert not (tmp_path / "rates.jsonl").exists()


def test_estimate_stops_on_a_corrupt_line_that_is_not_the_last(tiny, tmp_path):
    model, tokenizer = tiny
    settings = GenerationSettings(num_samples=2, max_new_tokens=2, batch_size=2)
    progress = tmp_path / "p.partial.jsonl"
    estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, settings, progress_path=progress)
    lines = progress.read_text().splitlines(keepends=True)
    lines[2] = '{"index": 1, "succ\n'
    progress.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"p.partial.jsonl line 3 is not valid JSON .*Only a last line cut short"):
        estimate_pass_rates(_letter_tasks(), model, tokenizer, contains_a, settings, progress_path=progress)


def test_vllm_samples_each_row_with_its_own_seed(monkeypatch):
    """Row i gets seed + i, so a row's completions do not depend on which rows share its batch."""
    from types import SimpleNamespace

    from trl_bots.pass_rates import _generate_vllm

    class SamplingParams(SimpleNamespace):
        pass

    class FakeLLM:
        def generate(self, texts, params, use_tqdm):
            self.seeds = [p.seed for p in params]
            return [
                SimpleNamespace(outputs=[SimpleNamespace(text=f"{t}/{p.seed}")] * p.n)
                for t, p in zip(texts, params, strict=True)
            ]

    monkeypatch.setitem(__import__("sys").modules, "vllm", SimpleNamespace(SamplingParams=SamplingParams))
    llm = FakeLLM()
    settings = GenerationSettings(num_samples=2, seed=100)
    assert _generate_vllm(llm, ["a", "b"], [7, 8], settings) == ["a/107", "a/107", "b/108", "b/108"]
    assert llm.seeds == [107, 108]


def test_cli_estimate_pass_rates_refuses_a_partial_file_of_another_answer_column(tiny_model_path, tmp_path):
    rows = {"prompt": ["task 0: say a", "task 1: say a"], "solution": ["1", ""], "answer": ["1", "2"]}
    argv = stop_after_the_first_row(rows, tiny_model_path, tmp_path)
    with pytest.raises(ValueError, match="answer_column='solution' there, 'answer' now"):
        cli_main([*argv, "--answer_column", "answer"])


def test_cli_estimate_pass_rates_writes_the_column_to_the_given_path(tiny_model_path, tmp_path):
    source = tmp_path / "in" / "tasks.jsonl"
    save_tasks(_letter_tasks(4).rename_column("solution", "answer"), source)
    output = tmp_path / "out" / "with_rates.parquet"
    argv = [
        "estimate-pass-rates",
        *("--dataset_name", str(source), "--model_name_or_path", tiny_model_path, "--output_path", str(output)),
        *("--answer_column", "answer", "--reward", "exact_match_reward", "--column", "weak_pass_rate"),
        *("--num_samples", "3", "--max_new_tokens", "2", "--batch_size", "2"),
    ]
    assert cli_main(argv) == 0
    written = load_tasks(str(output))
    assert written.column_names == ["prompt", "answer", "weak_pass_rate"]  # the input's schema, plus the column
    assert all(rate in (0.0, 1 / 3, 2 / 3, 1.0) for rate in written["weak_pass_rate"])
    assert not os.path.exists(f"{output}.partial.jsonl")  # removed once the output is complete


def test_cli_estimate_pass_rates_fails_loudly_on_an_unscorable_prompt(tiny_model_path, tmp_path):
    source = tmp_path / "tasks.jsonl"
    save_tasks(Dataset.from_dict({"prompt": ["task 0: say a"], "solution": [""]}), source)
    output = tmp_path / "rates.jsonl"
    argv = ["estimate-pass-rates", "--dataset_name", str(source), "--model_name_or_path", tiny_model_path]
    argv += ["--output_path", str(output), "--num_samples", "2", "--max_new_tokens", "2"]
    with pytest.raises(ValueError, match="cannot be scored by math_accuracy_reward"):
        cli_main(argv)
    assert not output.exists()


# ---------------------------------------------------------------- plots
def test_cli_plot_writes_the_pngs_from_logs_and_the_last_checkpoint(tmp_path, capsys):
    from trl_bots import BOTSSelector

    run = tmp_path / "run"
    history = [
        {
            "step": s,
            "reward": s / 10,
            "bots/effective_task_ratio": 0.5,
            "bots/implicit_pearson": 0.4,
            "bots/implicit_mae": 0.2,
            "bots/domain/math/share": 0.75,
            "bots/domain/math/effective_task_ratio": 0.5,
            "bots/domain/logic/share": 0.25,
            "bots/domain/logic/effective_task_ratio": math.nan,
        }
        for s in (1, 2, 3)
    ] + [{"step": 3, "train_runtime": 1.0}]
    selector = BOTSSelector(50, implicit_weight=0.0)
    for step in (1, 2):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"log_history": history[:step]}))
        selector.update(selector.select(10), np.full(10, 8.0), np.full(10, 8.0))
        selector.save(run / f"checkpoint-{step}" / "bots_selector.safetensors")
    assert cli_main(["plot", str(run)]) == 0
    written = capsys.readouterr().out.split()
    names = [os.path.basename(p) for p in written]
    assert names == ["training_curves.png", "posterior_pass_rates.png", "implicit_estimator.png", "domains.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_the_embedding_plug_ins_predictions_against_the_posterior(tmp_path, capsys):
    from matplotlib.image import imread

    from trl_bots import BOTSSelector

    run = tmp_path / "run"
    (run / "checkpoint-1").mkdir(parents=True)
    history = [{"step": 1, "reward": 0.5, "bots/effective_task_ratio": 0.5, "bots/implicit_mae": 0.2}]
    (run / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    rng = np.random.default_rng(0)
    selector = BOTSSelector(40, embeddings=rng.normal(size=(40, 4)), seed=0)
    for _ in range(3):
        selector.update(selector.select(8), rng.integers(0, 9, 8).astype(float), np.full(8, 8.0))
    selector.save(run / "checkpoint-1" / "bots_selector.safetensors")
    assert cli_main(["plot", str(run)]) == 0
    written = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in written] == [
        "training_curves.png",
        "posterior_pass_rates.png",
        "implicit_estimator.png",
        "predicted_pass_rates.png",
    ]
    assert imread(written[3]).shape[:2] == (500, 500)  # the square scatter


def test_plot_of_a_run_over_a_stream_draws_the_pools_turnover(tmp_path, capsys, monkeypatch):
    import matplotlib.axes

    from trl_bots import BOTSSelector

    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    history = [
        {
            "step": s,
            "reward": 0.5,
            "bots/effective_task_ratio": 0.5,
            "bots/retired": 2 * s,
            "bots/stream_position": 8 + 2 * s,
        }
        for s in (1, 2, 3)
    ]
    (run / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    BOTSSelector(8, implicit_weight=0.0).save(run / "checkpoint-3" / "bots_selector.safetensors")
    titles, lines = [], []  # what the figures show, recorded as matplotlib draws it
    set_title, plot = matplotlib.axes.Axes.set_title, matplotlib.axes.Axes.plot

    def recording_set_title(axis, title, *args, **kwargs):
        titles.append(title)
        return set_title(axis, title, *args, **kwargs)

    def recording_plot(axis, *args, **kwargs):
        lines.append((kwargs.get("label"), [float(y) for y in args[1]]))
        return plot(axis, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", recording_set_title)
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    assert cli_main(["plot", str(run)]) == 0
    written = [os.path.basename(p) for p in capsys.readouterr().out.split()]
    assert written == ["training_curves.png", "posterior_pass_rates.png", "active_pool.png"]
    assert "Posterior over the 8 tasks of the active pool" in titles
    assert ("tasks read from the stream", [10.0, 12.0, 14.0]) in lines and ("tasks retired", [2.0, 4.0, 6.0]) in lines


def test_plot_skips_a_trainer_state_cut_short_and_says_so(tmp_path, capsys, caplog):
    from trl_bots import BOTSSelector

    run = tmp_path / "run"
    for step in (1, 2):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        BOTSSelector(10, implicit_weight=0.0).save(run / f"checkpoint-{step}" / "bots_selector.safetensors")
    history = [{"step": 1, "reward": 0.5, "bots/effective_task_ratio": 0.5}]
    (run / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": history * 2})[:20])
    assert cli_main(["plot", str(run)]) == 0
    assert [os.path.basename(p) for p in capsys.readouterr().out.split()] == [
        "training_curves.png",
        "posterior_pass_rates.png",
    ]
    assert caplog.messages == [
        f"Skipping {run}/checkpoint-2/trainer_state.json: trainer_state.json is not valid JSON (Unterminated string "
        "starting at: line 1 column 19 (char 18)), most likely cut short by a crash while saving."
    ]


def test_plot_without_a_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        cli_main(["plot", str(tmp_path)])
    assert str(missing.value) == (
        f"No trainer_state.json in {tmp_path} or its checkpoint-* folders. Pass the output_dir of a BOTSGRPOTrainer "
        "run that saved a checkpoint or called save_state()/save_model()."
    )
    assert list(tmp_path.iterdir()) == []  # no empty plots folder left behind
    absent = tmp_path / "no-such-run"
    with pytest.raises(FileNotFoundError) as missing:
        cli_main(["plot", str(absent)])
    assert str(missing.value) == (
        f"{absent} does not exist. Pass the output_dir of a BOTSGRPOTrainer run (the folder holding its checkpoint-* "
        "folders)."
    )
    assert not absent.exists()


def test_python_m_trl_bots_cli_is_the_trl_bots_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    run = [sys.executable, "-m", "trl_bots.cli"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: trl-bots ")
    assert "estimate-pass-rates" in shown.stdout and "plot" in shown.stdout
    failed = subprocess.run([*run, "plot", str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=120)
    assert failed.returncode == 1 and f"FileNotFoundError: {tmp_path / 'x'} does not exist." in failed.stderr


def test_log_series_skips_nan_none_and_other_entries():
    from trl_bots.plotting import log_series

    history = [{"step": 1, "x": 0.5}, {"step": 2, "x": math.nan}, {"step": 3, "y": 1}, {"step": 4, "x": None}]
    steps, values = log_series(history, "x")
    assert steps.tolist() == [1] and values.tolist() == [0.5]


def test_domain_names_come_from_the_share_metrics():
    from trl_bots.plotting import domain_names

    history = [{"step": 1, "bots/domain/b/share": 0.5, "bots/domain/a/share": 0.5, "bots/domain/c/posterior_mean": 1}]
    assert domain_names(history) == ["a", "b"]
    assert domain_names([{"step": 1, "bots/effective_task_ratio": 0.5}]) == []  # no domains: no domains.png
