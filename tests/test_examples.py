"""examples/train_bots.py: the offline default end to end (1 and 2 processes) and the pieces it is built from."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from datasets import load_from_disk


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_bots.py")
sys.path.insert(0, os.path.join(ROOT, "examples"))

# The offline default scaled down to seconds: same phases, tiny sizes.
TINY_DEMO_FLAGS = [
    *("--max_steps", "2", "--logging_steps", "1", "--save_steps", "1"),
    *("--per_device_train_batch_size", "16", "--num_generations", "4"),
    *("--demo_num_tasks", "40", "--demo_num_eval", "20", "--demo_max_digits", "2"),
    *("--demo_sft_steps", "4", "--demo_weak_step", "2", "--demo_sft_examples", "128", "--demo_sft_batch_size", "16"),
    *("--demo_reference_samples", "2", "--demo_hidden_size", "16", "--demo_num_layers", "1"),
]
SUMMARY = re.compile(
    r"BOTS run finished on (?P<processes>\d+) process\(es\) \((?P<type>\w+)\).*"
    r"mean effective-task ratio: (?P<etr>[\d.]+) over (?P<rounds>\d+) rounds.*"
    r"held-out accuracy \(greedy, 20 additions\): (?P<before>[\d.]+) before -> (?P<after>[\d.]+) after",
    re.DOTALL,
)


def run_demo(command: list[str], output_dir: str) -> re.Match:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "--output_dir", output_dir, *TINY_DEMO_FLAGS],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    match = SUMMARY.search(result.stdout)
    assert match, result.stdout[-3000:]
    return match


def check_run_folder(output_dir: str, rounds: int, tasks_per_round: int) -> None:
    from trl_bots import BOTSSelector

    setup = os.path.join(output_dir, "offline_setup")
    train, held_out = load_from_disk(os.path.join(setup, "train")), load_from_disk(os.path.join(setup, "eval"))
    assert len(train) == 40 and len(held_out) == 20
    assert not set(train["prompt"]) & set(held_out["prompt"])  # held out really is held out
    for column in ("weak_pass_rate", "strong_pass_rate"):  # measured with k=2 samples: multiples of 1/2
        assert set(train[column]) <= {0.0, 0.5, 1.0}
    selector = BOTSSelector(40, reference_pass_rates=np.zeros((40, 2)))
    selector.load(os.path.join(output_dir, "bots_selector.safetensors"))
    assert selector.round == rounds
    evidence = (selector.alpha + selector.beta) - 2.0  # pseudo counts beyond the flat prior
    assert np.count_nonzero(np.abs(evidence) > 1e-6) >= tasks_per_round
    plots = sorted(os.listdir(os.path.join(output_dir, "plots")))
    assert plots == ["implicit_estimator.png", "posterior_pass_rates.png", "training_curves.png"]
    assert os.path.isfile(os.path.join(setup, "warm_start", "model.safetensors"))
    assert os.path.isdir(os.path.join(setup, "sft", "checkpoint-2"))  # the weak reference


# ---------------------------------------------------------------- fast
def test_offline_demo_is_chosen_only_without_a_dataset():
    from train_bots import offline_demo_requested

    assert offline_demo_requested([])
    assert offline_demo_requested(["--max_steps", "3", "--output_dir", "x"])
    assert not offline_demo_requested(["--dataset_name", "data.parquet"])
    assert not offline_demo_requested(["--dataset_name=data.parquet"])
    assert not offline_demo_requested(["--config", "examples/configs/guru_math_qwen2.5_1.5b.yaml"])


def test_script_defaults_are_the_offline_demo_config():
    from train_bots import OFFLINE_DEMO_CONFIG, make_parser

    script_args, training_args, _, demo_args = make_parser().parse_args_and_config(
        ["--config", OFFLINE_DEMO_CONFIG, "--max_steps", "7"]
    )
    assert script_args.dataset_name is None
    assert training_args.max_steps == 7  # a flag overrides the file
    assert training_args.use_cpu and training_args.bots_strategy == "bots"
    assert training_args.generation_batch_size // training_args.num_generations == 16  # tasks per round
    assert demo_args.demo_weak_step < demo_args.demo_sft_steps


def test_demo_arguments_reject_a_weak_reference_after_the_warm_start():
    from trl_bots.offline import OfflineDemoArguments

    with pytest.raises(ValueError, match="demo_weak_step=50 must lie strictly between 0 and demo_sft_steps=50"):
        OfflineDemoArguments(demo_sft_steps=50, demo_weak_step=50)


def test_additions_are_aligned_reversed_distinct_and_respect_the_held_out_set():
    from trl_bots.arithmetic import build_tokenizer, count_carries, format_addition, make_additions

    assert format_addition(45, 718, 3) == ("045+718=", "3670")
    assert format_addition(999, 999, 3) == ("999+999=", "8991")
    assert [count_carries(*pair) for pair in [(45, 718), (999, 1), (12, 34), (5, 5)]] == [1, 3, 0, 1]
    held_out = make_additions(50, 3, seed=1)
    tasks = make_additions(300, 3, seed=2, exclude=set(held_out["prompt"]))
    assert len(set(tasks["prompt"])) == 300 and not set(tasks["prompt"]) & set(held_out["prompt"])
    for prompt, solution in zip(tasks["prompt"], tasks["solution"], strict=True):
        a, b = (int(x) for x in prompt.rstrip("=").split("+"))
        assert int(solution[::-1]) == a + b
    assert set(tasks["carries"]) == {0, 1, 2, 3}  # difficulty spreads
    tokenizer = build_tokenizer()
    ids = tokenizer("045+718=")["input_ids"]
    assert len(ids) == 8 and tokenizer.decode(ids) == "045+718="


def test_additions_beyond_the_distinct_supply_fail_instead_of_looping():
    from trl_bots.arithmetic import make_additions

    every_one_digit = make_additions(100, 1, seed=0)  # 10 x 10 ordered pairs of one-digit operands
    assert len(set(every_one_digit["prompt"])) == 100
    held_out = set(make_additions(10, 1, seed=1)["prompt"])
    assert len(make_additions(90, 1, seed=2, exclude=held_out)) == 90
    with pytest.raises(ValueError, match=r"num=91 distinct additions requested.*only 90 \(after excluding 10"):
        make_additions(91, 1, seed=2, exclude=held_out)


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_offline_default_runs_every_phase_and_reuses_its_setup(tmp_path, monkeypatch):
    output_dir = str(tmp_path / "demo")
    summary = run_demo([sys.executable, SCRIPT], output_dir)
    assert summary["processes"] == "1" and summary["rounds"] == "2"
    assert 0.0 <= float(summary["etr"]) <= 1.0
    assert 0.0 <= float(summary["before"]) <= 1.0 and 0.0 <= float(summary["after"]) <= 1.0
    check_run_folder(output_dir, rounds=2, tasks_per_round=4)

    # A second call with the same arguments loads the setup instead of training again.
    from train_bots import make_parser

    import trl_bots.offline as offline

    monkeypatch.setattr(offline, "_warm_start", lambda *a, **k: pytest.fail("the cached setup was rebuilt"))
    _, training_args, _, demo_args = make_parser().parse_args_and_config(
        ["--config", os.path.join(ROOT, "examples", "configs", "offline_demo.yaml"), "--output_dir", output_dir]
        + TINY_DEMO_FLAGS
    )
    setup = offline.build_offline_setup(demo_args, training_args)
    assert len(setup.train_dataset) == 40 and setup.model_path.endswith("warm_start")


@pytest.mark.slow
def test_offline_default_under_two_processes(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    launch += ["--config_file", os.path.join(ROOT, "configs", "accelerate", "cpu_2proc.yaml"), SCRIPT]
    output_dir = str(tmp_path / "demo2")
    summary = run_demo(launch, output_dir)
    assert summary["processes"] == "2" and summary["type"] == "MULTI_CPU"
    # 2 processes x 16 completions / 4 generations = 8 distinct tasks per round
    check_run_folder(output_dir, rounds=2, tasks_per_round=8)
