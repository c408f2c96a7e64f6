"""examples/train_bots.py with a dataset: how its arguments are read, and what it says and does before training."""

import os
import sys

import pytest
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_bots.py")
sys.path.insert(0, os.path.join(ROOT, "examples"))

# What no run with a dataset may inherit from examples/configs/offline_demo.yaml (checked against that file below).
DEMO_ONLY = {
    "output_dir": "bots-offline-demo",
    "learning_rate": 1e-4,
    "temperature": 0.5,
    "lr_scheduler_type": "constant",
    "save_steps": 50,
    "bots_reference_columns": ["weak_pass_rate", "strong_pass_rate"],
}


def parse(argv: list[str]):
    from train_bots import make_parser

    return make_parser().parse_args_and_config(argv)


def test_the_demo_only_settings_are_the_demo_configs():
    from train_bots import OFFLINE_DEMO_CONFIG

    with open(OFFLINE_DEMO_CONFIG) as f:
        demo = yaml.safe_load(f)
    assert {name: demo[name] for name in DEMO_ONLY} == DEMO_ONLY


def assert_not_the_demo(training_args) -> None:
    from trl_bots import BOTSConfig

    defaults = BOTSConfig(output_dir="unused", use_cpu=True)
    for name in DEMO_ONLY:
        value = getattr(training_args, name)
        if name != "output_dir":
            assert value == getattr(defaults, name), name
        assert value != DEMO_ONLY[name] and str(value) != DEMO_ONLY[name], name


@pytest.fixture
def dataset_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"dataset_name": "data.jsonl", "use_cpu": True, "max_steps": 3}))
    return str(path)


@pytest.mark.parametrize(
    "flags",
    [
        ["--dataset_name", "data.jsonl"],
        ["--dataset-name", "data.jsonl"],
        ["--dataset_name=data.jsonl"],
        ["--dataset-name=data.jsonl"],
        ["--config", "CONFIG"],
        ["--config=CONFIG"],
    ],
    ids=["underscore", "hyphen", "underscore=", "hyphen=", "config", "config="],
)
def test_a_dataset_in_any_spelling_is_not_the_offline_demo(flags, dataset_config):
    flags = [dataset_config if flag == "CONFIG" else flag.replace("CONFIG", dataset_config) for flag in flags]
    script_args, training_args, _, _ = parse([*flags, "--use_cpu", "true"])
    assert script_args.dataset_name == "data.jsonl"
    assert_not_the_demo(training_args)
    if "--config" in flags[0]:
        assert training_args.max_steps == 3  # the config file was read


def test_without_a_dataset_the_demo_config_sits_under_the_config_file_and_the_flags(tmp_path):
    script_args, training_args, _, _ = parse(["--max_steps", "7"])
    assert script_args.dataset_name is None and training_args.max_steps == 7
    assert {name: getattr(training_args, name) for name in DEMO_ONLY} == DEMO_ONLY
    # A config file without a dataset is the demo too: its values over the demo's, flags over both.
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"learning_rate": 3e-4, "max_steps": 5, "bots_strategy": "mopps"}))
    for flags in (["--config", str(config)], [f"--config={config}"]):
        script_args, training_args, _, _ = parse([*flags, "--max_steps", "9"])
        assert script_args.dataset_name is None
        assert (training_args.learning_rate, training_args.bots_strategy, training_args.max_steps) == (
            3e-4,
            "mopps",
            9,
        )
        assert training_args.output_dir == "bots-offline-demo" and training_args.temperature == 0.5


def test_evaluating_without_an_eval_dataset_says_it_reads_the_training_data(tmp_path, caplog):
    from datasets import Dataset

    from train_bots import load_datasets

    data = tmp_path / "tasks.jsonl"
    Dataset.from_dict({"prompt": ["1+1=", "2+2="], "solution": ["2", "4"]}).to_json(str(data))
    flags = ["--dataset_name", str(data), "--use_cpu", "true", "--output_dir", str(tmp_path / "out")]
    with caplog.at_level("WARNING"):
        train, evaluation = load_datasets(*parse([*flags, "--eval_strategy", "steps"])[:2])
    assert evaluation["prompt"] == train["prompt"]  # what the warning is about
    assert caplog.messages == [
        f"eval_strategy='steps' but no eval_dataset_name: evaluation reads dataset_name='{data}' at "
        "dataset_test_split='test', which for a local file (or load_guru) is the training data itself. Set "
        "eval_dataset_name to held-out tasks, or eval_strategy='no'."
    ]
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_datasets(*parse([*flags, "--eval_strategy", "steps", "--eval_dataset_name", str(data)])[:2])
        load_datasets(*parse(flags)[:2])
    assert caplog.messages == []
