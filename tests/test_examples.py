"""examples/train_bots.py: the offline world (additions, setup, start criterion) and the demo end to end (1 and 2 processes)."""

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(
    ROOT, "examples", "train_bots.py"
)  # conftest.py puts examples/ (train_bots, bots_demo) on sys.path

# GRPO scaled down to seconds: 4 tasks x 4 completions per process and step, evaluated at every step.
TINY_GRPO = [
    *("--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "16", "--num_generations", "4"),
    *("--max_completion_length", "4", "--demo_eval_every", "1"),
]
# A world that builds in a second: every phase runs, nothing is learnt (the criterion holds at the first check).
TINY_WORLD = [
    *("--demo_digits", "2", "--demo_num_tasks", "40", "--demo_num_eval", "30", "--demo_pool_level_weights", "1", "1"),
    *("1", "--demo_sft_max_steps", "20", "--demo_check_every", "10", "--demo_criterion_margin", "0"),
    *("--demo_min_always_solved", "0", "--demo_min_never_solved", "0", "--demo_max_mixed", "1"),
    *("--demo_sft_examples", "200", "--demo_sft_batch_size", "16", "--demo_reference_samples", "2"),
    *("--demo_hidden_size", "16", "--demo_num_layers", "1"),
]
# A small but real world: the criterion holds only once the model has learnt to add (the untrained model solves
# nothing, so "always solved >= 0.2" needs learning); it builds in about 10 s.
SMALL_WORLD = [
    *("--demo_digits", "2", "--demo_num_tasks", "60", "--demo_num_eval", "30", "--demo_pool_level_weights", "1", "1"),
    *("1", "--demo_sft_examples", "2000", "--demo_sft_batch_size", "32", "--demo_sft_max_steps", "2000"),
    *("--demo_check_every", "25", "--demo_criterion_margin", "0.03", "--demo_min_always_solved", "0.2"),
    *("--demo_min_never_solved", "0", "--demo_max_mixed", "1", "--demo_reference_samples", "4"),
    *("--demo_hidden_size", "64", "--demo_num_layers", "1"),
]
PNG = b"\x89PNG\r\n\x1a\n"


def demo_arguments(output_dir, *flags: str):
    from train_bots import OFFLINE_DEMO_CONFIG, make_parser

    return make_parser().parse_args_and_config(
        ["--config", OFFLINE_DEMO_CONFIG, "--output_dir", str(output_dir), *flags]
    )


def build(output_dir, *flags: str):
    from bots_demo.offline_setup import build_offline_setup

    _, training_args, _, demo_args = demo_arguments(output_dir, *flags, "--disable_tqdm", "true")
    return build_offline_setup(demo_args, training_args), demo_args, training_args


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tiny"), *TINY_WORLD)


@pytest.fixture(scope="module")
def small_setup(tmp_path_factory):
    return build(tmp_path_factory.mktemp("small"), *SMALL_WORLD)


def assert_files_match_manifest(folder: str) -> dict:
    with open(os.path.join(folder, "setup.json")) as f:
        manifest = json.load(f)
    files = {
        os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
        for parent, _, names in os.walk(folder)
        for name in names
    }
    assert files - {"setup.json"} == set(manifest["sha256"])  # every file listed, nothing else in the folder
    for name, digest in manifest["sha256"].items():
        with open(os.path.join(folder, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    return manifest


# ---------------------------------------------------------------- the script's arguments
def test_script_defaults_are_the_offline_demo_config():
    script_args, training_args, _, demo_args = demo_arguments("x", "--max_steps", "7")
    assert script_args.dataset_name is None and script_args.reward_funcs == ["exact_match_reward"]
    assert training_args.max_steps == 7  # a flag overrides the file
    assert training_args.use_cpu and training_args.bots_strategy == "bots"
    assert training_args.generation_batch_size // training_args.num_generations == 16  # tasks per round
    # the completion has room for the reversed sum and the end-of-sequence token
    assert training_args.max_completion_length >= demo_args.demo_digits + 2
    assert len(demo_args.demo_pool_level_weights) == demo_args.demo_digits + 1
    assert demo_args.demo_reference_run and demo_args.demo_check_every <= demo_args.demo_sft_max_steps


def test_only_the_known_third_party_noise_is_silenced(monkeypatch):
    import logging
    import warnings

    from train_bots import quiet_third_party_noise

    deepspeed = logging.getLogger("DeepSpeed")
    monkeypatch.setattr(deepspeed, "filters", [])  # restored afterwards: the filter stays in this test
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_noise()
        for name in ("gradient_checkpointing", "is_gradient_checkpointing", "gradient_checkpointing_enable"):
            warnings.warn(
                f"`{name}` is deprecated and will be removed in v6. Use `x` instead.", FutureWarning, stacklevel=1
            )
        warnings.warn("`other_option` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1)
        warnings.warn("`gradient_checkpointing` is deprecated", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (FutureWarning, "`other_option` is deprecated and will be removed in v6."),
        (UserWarning, "`gradient_checkpointing` is deprecated"),
    ]

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, message, None, None)

    assert not deepspeed.filter(record("Setting accelerator to CPU. If you have GPU or other accelerator, ..."))
    assert deepspeed.filter(record("ZeRO stage 3 needs more memory"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"demo_min_always_solved": 1.5}, r"demo_min_always_solved=1.5 must be a share in \[0, 1\]"),
        ({"demo_max_mixed": -0.1}, r"demo_max_mixed=-0.1 must be a share in \[0, 1\]"),
        ({"demo_digits": 2}, "demo_pool_level_weights has 9 weights; demo_digits=2 needs 3"),
        ({"demo_sft_carry_decay": 0.0}, r"demo_sft_carry_decay=0.0 must lie in \(0, 1\]"),
        ({"demo_check_every": 50, "demo_sft_max_steps": 40}, "demo_check_every=50 must be >= 1 and at most"),
    ],
)
def test_demo_arguments_reject_bad_settings(settings, message):
    from bots_demo.arguments import OfflineDemoArguments

    with pytest.raises(ValueError, match=message):
        OfflineDemoArguments(**settings)


# ---------------------------------------------------------------- additions with an exact number of carries
def brute_force_carries(digits: int) -> np.ndarray:
    """Carries of every ordered pair of ``digits``-digit operands, column by column (vectorised)."""
    a, b = np.meshgrid(np.arange(10**digits), np.arange(10**digits), indexing="ij")
    carries, carry = np.zeros_like(a), np.zeros_like(a)
    for place in range(digits):
        carry = ((a // 10**place % 10) + (b // 10**place % 10) + carry >= 10).astype(a.dtype)
        carries += carry
    return carries


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_count_additions_matches_brute_force(digits):
    from bots_demo.arithmetic import count_additions, count_carries

    counts = np.bincount(brute_force_carries(digits).ravel(), minlength=digits + 1)
    assert [count_additions(digits, k) for k in range(digits + 1)] == counts.tolist()
    assert sum(count_additions(digits, k) for k in range(digits + 1)) == 100**digits
    pairs = [(45, 718), (999, 1), (12, 34), (5, 5), (0, 0), (99, 1)]
    assert [count_carries(a, b) for a, b in pairs] == [1, 3, 0, 1, 0, 2]


def test_additions_have_exact_levels_correct_sums_and_respect_the_held_out_set():
    from bots_demo.arithmetic import build_tokenizer, count_carries, format_addition, level_counts, make_additions

    assert format_addition(45, 718, 3) == ("045+718=", "3670")
    assert format_addition(999, 999, 3) == ("999+999=", "8991")
    held_out = make_additions(200, 3, seed=1)
    weights = [3, 1, 1, 0.5]
    tasks = make_additions(601, 3, seed=2, level_weights=weights, exclude=set(held_out["prompt"]))
    assert len(set(tasks["prompt"])) == 601 and not set(tasks["prompt"]) & set(held_out["prompt"])
    assert np.bincount(tasks["carries"], minlength=4).tolist() == level_counts(601, weights).tolist()
    assert np.bincount(held_out["carries"], minlength=4).tolist() == [50, 50, 50, 50]  # no weights: levels alike
    for row in itertools.chain(tasks, held_out):
        a, b = (int(x) for x in row["prompt"].rstrip("=").split("+"))
        assert (row["prompt"], row["solution"]) == format_addition(a, b, 3)
        assert int(row["solution"][::-1]) == a + b and row["carries"] == count_carries(a, b)
    assert tasks["carries"][:20] != sorted(tasks["carries"][:20])  # shuffled, not grouped by level
    assert (
        make_additions(601, 3, seed=2, level_weights=weights)["prompt"]
        == make_additions(601, 3, seed=2, level_weights=weights)["prompt"]
    )  # the seed decides
    tokenizer = build_tokenizer()
    ids = tokenizer("045+718=")["input_ids"]
    assert len(ids) == 8 and tokenizer.decode(ids) == "045+718="


def test_additions_can_use_up_a_level_exactly_and_stop_beyond_it():
    from bots_demo.arithmetic import count_additions, make_additions

    # one digit: 55 pairs without a carry, 45 with one
    assert (count_additions(1, 0), count_additions(1, 1)) == (55, 45)
    every_one = make_additions(100, 1, seed=0, level_weights=[55, 45])
    assert len(set(every_one["prompt"])) == 100
    held_out = set(make_additions(10, 1, seed=1, level_weights=[1, 0])["prompt"])  # 10 carry-free prompts
    assert len(make_additions(45, 1, seed=2, level_weights=[1, 0], exclude=held_out)) == 45
    with pytest.raises(ValueError, match=r"46 distinct additions with 0 carries requested, but 1-digit operands give "
                       r"only 45 \(after excluding 10 held-out prompts\)"):  # fmt: skip
        make_additions(46, 1, seed=2, level_weights=[1, 0], exclude=held_out)
    with pytest.raises(ValueError, match="46 distinct additions with 1 carries requested.*only 45"):
        make_additions(46, 1, seed=2, level_weights=[0, 1])


@pytest.mark.parametrize(
    ("digits", "weights", "message"),
    [
        (2, [1, 1], r"level_weights needs one weight per number of carries 0..2 \(3 weights\), got 2: \[1, 1\]"),
        (2, [1, -1, 1], r"level weights must be a non-empty list of non-negative numbers, got \[1.0, -1.0, 1.0\]"),
        (2, [1, float("nan"), 1], "level weights must be a non-empty list of non-negative numbers"),
        (2, [0, 0, 0], r"level weights must not all be zero, got \[0.0, 0.0, 0.0\]"),
        (0, None, "make_additions: digits must be >= 1, got 0"),
    ],
)
def test_additions_reject_bad_settings(digits, weights, message):
    from bots_demo.arithmetic import make_additions

    with pytest.raises(ValueError, match=message):
        make_additions(10, digits, seed=0, level_weights=weights)


def test_level_counts_split_exactly_with_ties_to_lower_levels():
    from bots_demo.arithmetic import level_counts

    assert level_counts(10, [3, 1, 1]).tolist() == [6, 2, 2]
    assert level_counts(7, [1, 1, 1]).tolist() == [3, 2, 2]
    assert level_counts(5, [0, 1, 1]).tolist() == [0, 3, 2]
    assert level_counts(0, [1, 2]).tolist() == [0, 0]
    for num, weights in [(1000, [3, 1, 1, 1, 1, 1, 1, 1, 1]), (999, [0.3**k for k in range(9)])]:
        counts = level_counts(num, weights)
        quota = num * np.asarray(weights) / np.sum(weights)
        assert counts.sum() == num and np.all(np.abs(counts - quota) < 1)


# ---------------------------------------------------------------- the start criterion
def test_start_shape_and_criterion_failures():
    from bots_demo.arguments import OfflineDemoArguments
    from bots_demo.measure import criterion_failures, start_shape

    shape = start_shape(np.array([1.0, 1.0, 0.0, 0.5, 0.25, 1.0, 0.0, 0.0]))
    assert shape == pytest.approx({"always": 3 / 8, "never": 3 / 8, "mixed": 2 / 8})
    args = OfflineDemoArguments(demo_min_always_solved=0.25, demo_min_never_solved=0.25, demo_max_mixed=0.45)
    assert criterion_failures(shape, args) == []
    strict = OfflineDemoArguments(demo_min_always_solved=0.5, demo_min_never_solved=0.4, demo_max_mixed=0.2)
    assert criterion_failures(shape, strict) == [
        "always solved share 0.375 (needs >= demo_min_always_solved=0.5)",
        "never solved share 0.375 (needs >= demo_min_never_solved=0.4)",
        "mixed solved share 0.250 (needs <= demo_max_mixed=0.2)",
    ]
    # the bounds are inclusive
    assert criterion_failures(shape, OfflineDemoArguments(demo_min_always_solved=0.375, demo_max_mixed=0.25)) == []


# ---------------------------------------------------------------- the setup folder
def test_setup_holds_its_files_with_checksums_and_disjoint_data(tiny_setup):
    setup, demo_args, training_args = tiny_setup
    manifest = assert_files_match_manifest(setup.folder)
    assert setup.folder == os.path.join(training_args.output_dir, "offline_setup")
    assert manifest["settings"] == {**demo_args.world_settings(), "seed": 0, "temperature": training_args.temperature}
    assert {"warm_start/model.safetensors", "train.jsonl", "eval.jsonl"} <= set(manifest["sha256"])
    train, held_out = setup.train_dataset, setup.eval_dataset
    assert (len(train), len(held_out)) == (40, 30)
    assert not set(train["prompt"]) & set(held_out["prompt"])  # held out really is held out
    assert np.bincount(train["carries"]).tolist() == [14, 13, 13]  # the pool's level weights, exactly
    for column in ("weak_pass_rate", "strong_pass_rate"):  # measured with 2 samples: multiples of 1/2
        assert set(train[column]) <= {0.0, 0.5, 1.0}
    build = manifest["build"]
    assert (build["start_step"], build["weak_step"], build["strong_step"]) == (10, 10, 20)
    assert build["torch_threads"] >= 1 and build["seconds"] > 0


def test_a_matching_setup_is_loaded_not_rebuilt(tiny_setup, tmp_path, monkeypatch):
    import bots_demo.offline_setup as offline_setup

    setup, _, training_args = tiny_setup
    monkeypatch.setattr(offline_setup, "_build", lambda *a, **k: pytest.fail("a matching setup was rebuilt"))
    # the cache in output_dir
    again, _, _ = build(training_args.output_dir, *TINY_WORLD)
    assert again.folder == setup.folder and again.train_dataset["prompt"] == setup.train_dataset["prompt"]
    # a shipped setup (--demo_setup) whose settings match, whatever the output_dir: nothing is written there
    shipped, _, _ = build(tmp_path / "elsewhere", *TINY_WORLD, "--demo_setup", setup.folder)
    assert shipped.folder == setup.folder and shipped.model_path == os.path.join(setup.folder, "warm_start")
    assert not (tmp_path / "elsewhere").exists()


def test_a_changed_setting_or_rebuild_builds_in_the_output_dir(tiny_setup, tmp_path, monkeypatch):
    import bots_demo.offline_setup as offline_setup

    setup, _, _ = tiny_setup

    class Built(Exception):
        pass

    def fake_build(args, settings, folder, training_args):
        raise Built(settings["seed"], str(folder))

    monkeypatch.setattr(offline_setup, "_build", fake_build)
    expected = str(tmp_path / "offline_setup")
    with pytest.raises(Built) as built:  # another seed: another setup
        build(tmp_path, *TINY_WORLD, "--demo_setup", setup.folder, "--seed", "1")
    assert built.value.args == (1, expected)
    with pytest.raises(Built) as built:  # --demo_rebuild ignores a matching setup
        build(tmp_path, *TINY_WORLD, "--demo_setup", setup.folder, "--demo_rebuild", "true")
    assert built.value.args == (0, expected)


def test_loading_refuses_a_changed_or_missing_file(tiny_setup, tmp_path):
    from bots_demo.arguments import OfflineDemoArguments
    from bots_demo.offline_setup import build_offline_setup

    setup, demo_args, training_args = tiny_setup
    for damage in ("changed", "missing"):
        copy = tmp_path / damage
        shutil.copytree(setup.folder, copy)
        if damage == "changed":
            with open(copy / "train.jsonl", "a") as f:
                f.write("\n")
        else:
            os.remove(copy / "warm_start" / "model.safetensors")
        name = "train.jsonl" if damage == "changed" else "warm_start/model.safetensors"
        shipped = dataclasses.replace(demo_args, demo_setup=str(copy))
        assert isinstance(shipped, OfflineDemoArguments)
        message = (
            f"The offline setup in {copy} does not match its setup.json: ['{name}'] missing or changed. Restore the "
            f"folder (git checkout -- {copy}) or rebuild it with --demo_rebuild."
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            build_offline_setup(shipped, training_args)


def test_check_start_names_the_measured_shares_when_the_criterion_fails(tiny_setup):
    from bots_demo.measure import check_start, start_shape

    setup, demo_args, _ = tiny_setup
    rates = check_start(setup, demo_args)  # the build's criterion (anything goes) holds
    assert rates.shape == (40,) and set(rates.tolist()) <= {0.0, 0.5, 1.0}
    shape = start_shape(rates)
    strict = dataclasses.replace(demo_args, demo_min_always_solved=0.5, demo_max_mixed=0.0)
    failures = [f"always solved share {shape['always']:.3f} (needs >= demo_min_always_solved=0.5)"]
    if shape["mixed"] > 0:
        failures.append(f"mixed solved share {shape['mixed']:.3f} (needs <= demo_max_mixed=0.0)")
    message = (
        f"The warm start in {setup.folder} does not meet the start criterion on the task pool: {'; '.join(failures)}."
    )
    with pytest.raises(RuntimeError, match=re.escape(message)):
        check_start(setup, strict)


def test_the_strong_reference_stays_within_the_warm_start_budget(tmp_path):
    # The criterion holds at the last allowed step: the strong reference cannot train on beyond it (it used to ask for
    # a checkpoint that was never saved, and the build crashed).
    flags = [*TINY_WORLD, "--demo_sft_max_steps", "10"]
    setup, _, _ = build(tmp_path, *flags)
    build_record = setup.manifest["build"]
    assert (build_record["start_step"], build_record["weak_step"], build_record["strong_step"]) == (10, 10, 10)
    np.testing.assert_array_equal(setup.train_dataset["weak_pass_rate"], setup.train_dataset["strong_pass_rate"])


def test_a_small_real_warm_start_stops_where_its_criterion_first_holds(small_setup):
    """Issue 10 item 6: the warm start must learn (the untrained model solves nothing) and stop at the first check
    where the start criterion holds; the references bracket it, the strong one better than the weak one."""
    from bots_demo.measure import criterion_failures

    setup, demo_args, _ = small_setup
    assert demo_args.demo_min_always_solved >= 0.2  # needs real learning: nothing is always solved at the start
    build_record = assert_files_match_manifest(setup.folder)["build"]
    history, start = build_record["criterion_history"], build_record["start_step"]
    every = demo_args.demo_check_every
    assert [point["step"] for point in history] == list(range(every, start + 1, every))  # measured until it held
    margin = demo_args.demo_criterion_margin
    assert margin > 0  # the default: the build stops where the criterion holds with room to spare
    assert all(criterion_failures(point, demo_args, margin) for point in history[:-1])
    assert criterion_failures(history[-1], demo_args, margin) == []
    assert history[0]["always"] < demo_args.demo_min_always_solved
    assert build_record["weak_step"] < start < build_record["strong_step"] <= demo_args.demo_sft_max_steps
    weak, strong = (np.asarray(setup.train_dataset[column]) for column in ("weak_pass_rate", "strong_pass_rate"))
    assert strong.mean() > weak.mean()
    samples = demo_args.demo_reference_samples
    np.testing.assert_allclose(weak * samples, np.round(weak * samples), atol=1e-9)


# ---------------------------------------------------------------- the demo end to end
def run_demo(command: list[str], output_dir, *flags: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "--output_dir", str(output_dir), *TINY_GRPO, *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # What a person reads: no third-party warnings they cannot act on, no log line per step, no bar per model load or
    # dataset conversion; one bar per phase.
    output = result.stdout + result.stderr
    noise = [
        "Warning",
        "deprecated",
        "Setting accelerator",
        "{'loss'",
        "Loading weights",
        "Writing model",
        "examples/s",
    ]
    for text in noise:
        assert text not in output, output[-5000:]
    # One bar for the pool measurement: it starts once (a slow machine may redraw its last state when it closes).
    assert result.stderr.count("warm start on the pool:   0%") == 1 and "warm start on the pool: 100%" in result.stderr
    return result.stdout


HEADER = re.compile(
    r"Offline demonstration: (?P<tasks>\d+) tasks, (?P<steps>\d+) GRPO steps per run; pool at the start: always "
    r"(?P<always>[\d.]+) / mixed (?P<mixed>[\d.]+) / never (?P<never>[\d.]+) solved \((?P<samples>\d+) samples per "
    r"task\)\.\n(?P<table>(?:.*\n)+?)(?P<legend>(?:  [\w-]+: .*\n)*)  figure: (?P<figure>\S+)\n(?P<verdict>.*)"
)
FINISHED = re.compile(r"BOTS run finished on (?P<processes>\d+) process\(es\) \((?P<type>\w+)\)")


def parse_report(stdout: str) -> tuple[re.Match, list[str], dict[str, list[str]]]:
    """The demo's closing report: its header, the strategies (columns) and the rows (label -> one cell per column)."""
    match = HEADER.search(stdout)
    assert match, stdout[-3000:]
    header, *lines = match["table"].rstrip("\n").split("\n")
    columns = header.split()
    rows = {}
    for line in lines:
        label, *cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(columns), line
        rows[label] = cells
    return match, columns, rows


def logged_etr(run_dir: str) -> np.ndarray:
    from trl_bots.plotting import log_series

    with open(os.path.join(run_dir, "trainer_state.json")) as f:
        return log_series(json.load(f)["log_history"], "bots/effective_task_ratio")[1]


def check_report(stdout: str, output_dir, flags: list[str], setup_folder: str, tasks_per_round: int) -> list[str]:
    """
    The report's numbers against what the run folders hold (measured again here where they are measurements); the
    run's demo ``flags`` give the setup (``setup_folder``). Returns the strategies (columns).
    """
    from transformers import AutoModelForCausalLM

    from bots_demo.measure import HeldoutEvaluation, check_start, sampled_pass_rates, start_shape

    report, strategies, rows = parse_report(stdout)
    assert_files_match_manifest(setup_folder)
    setup, demo_args, _ = build(output_dir, *flags)  # loads the run's setup: its settings match
    assert setup.folder == setup_folder
    assert int(report["tasks"]) == len(setup.train_dataset) and int(report["steps"]) == 2
    assert int(report["samples"]) == demo_args.demo_reference_samples
    start = start_shape(check_start(setup, demo_args))
    assert [report[name] for name in ("always", "mixed", "never")] == [
        f"{start[name]:.2f}" for name in ("always", "mixed", "never")
    ]
    evaluation = HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, every=1, temperature=setup.temperature)
    before = evaluation.evaluate(AutoModelForCausalLM.from_pretrained(setup.model_path))["all"]
    run_dirs = {
        "bots": str(output_dir),
        "bots-embedding": os.path.join(output_dir, "bots-embedding", "checkpoint-2"),
        "uniform": os.path.join(output_dir, "uniform-reference", "checkpoint-2"),
    }
    for column, strategy in enumerate(strategies):
        etr = logged_etr(run_dirs[strategy])
        assert etr.shape == (2,)  # one per GRPO step, each a share of the round's tasks
        np.testing.assert_allclose(etr * tasks_per_round, np.round(etr * tasks_per_round), atol=1e-9)
        assert rows["mean effective-task ratio"][column] == f"{etr.mean():.3f}"
        model = AutoModelForCausalLM.from_pretrained(run_dirs[strategy])
        after = evaluation.evaluate(model)["all"]
        assert rows["held-out accuracy, start -> end"][column] == f"{before:.3f} -> {after:.3f}"
        end = start_shape(
            sampled_pass_rates(
                model, setup.tokenizer, setup.train_dataset, demo_args.demo_reference_samples, setup.temperature
            )
        )
        assert rows["pool always / mixed / never solved"][column] == " / ".join(
            f"{end[name]:.2f}" for name in ("always", "mixed", "never")
        )
        assert float(rows["training time (s)"][column]) >= 0
    steps_label = next(label for label in rows if label.startswith("steps to "))
    assert rows[steps_label][-1] in {"1", "2"}  # the reference reaches its own final accuracy
    assert all(cell in {"1", "2", "not in 2"} for cell in rows[steps_label])
    with open(report["figure"], "rb") as f:
        assert f.read(8) == PNG
    assert report["figure"] == os.path.join(output_dir, "plots", "strategies.png")
    # the README's range is for the default settings: a changed run says so instead of a verdict
    assert report["verdict"].startswith("(The README's range is for the default settings; this run changed")
    return strategies


def test_offline_demo_trains_bots_without_and_with_reference_columns_and_the_uniform_reference(small_setup, tmp_path):
    setup, _, _ = small_setup
    output_dir = tmp_path / "demo"
    flags = [*SMALL_WORLD, "--demo_setup", setup.folder]
    stdout = run_demo([sys.executable, SCRIPT], output_dir, *flags)
    finished = FINISHED.search(stdout)
    assert finished and finished["processes"] == "1"
    # the matching setup was loaded, not built again
    assert "[setup] building" not in stdout and not (output_dir / "offline_setup").exists()
    strategies = check_report(stdout, str(output_dir), flags, setup.folder, tasks_per_round=4)
    assert strategies == ["bots", "bots-embedding", "uniform"]
    assert "  bots-embedding: BOTS without the reference columns" in parse_report(stdout)[0]["legend"]
    for run_dir in (output_dir, output_dir / "bots-embedding", output_dir / "uniform-reference"):
        assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (output_dir / "bots_selector.safetensors").is_file()
    # The plain-dataset run used the embedding estimator and no reference column: its saved config says so.
    with open(output_dir / "bots-embedding" / "checkpoint-2" / "bots_selector.safetensors", "rb") as f:
        assert b"estimator/gram" in f.read()


def test_offline_demo_without_the_reference_run_trains_only_bots(tiny_setup, tmp_path):
    setup, _, _ = tiny_setup
    output_dir = tmp_path / "demo"
    flags = [*TINY_WORLD, "--demo_setup", setup.folder]
    stdout = run_demo([sys.executable, SCRIPT], output_dir, *flags, "--demo_reference_run", "false")
    assert "bots_strategy=uniform" not in stdout
    assert not (output_dir / "uniform-reference").exists()
    assert check_report(stdout, str(output_dir), flags, setup.folder, tasks_per_round=4) == ["bots"]
    _, _, rows = parse_report(stdout)
    assert next(label for label in rows if label.startswith("steps to ")).endswith("(bots's final)")


@pytest.mark.slow
def test_offline_demo_builds_its_setup_under_two_processes(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    launch += ["--config_file", os.path.join(ROOT, "configs", "accelerate", "cpu_2proc.yaml"), SCRIPT]
    output_dir = tmp_path / "demo2"
    stdout = run_demo(launch, output_dir, *TINY_WORLD)
    finished = FINISHED.search(stdout)
    assert finished and (finished["processes"], finished["type"]) == ("2", "MULTI_CPU")
    assert stdout.count("[setup] building") == stdout.count("Offline demonstration:") == 1  # the main process says
    # 2 processes x 16 completions / 4 generations = 8 distinct tasks per round
    setup_folder = str(output_dir / "offline_setup")
    strategies = check_report(stdout, str(output_dir), TINY_WORLD, setup_folder, tasks_per_round=8)
    assert strategies == ["bots", "bots-embedding", "uniform"]
