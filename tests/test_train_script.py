"""examples/train_bots.py with a dataset: how its arguments are read, and what it says and does before training."""

import json
import os
import subprocess
import sys
import warnings

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


# ---------------------------------------------------------------- a real run with a dataset
def run_script(*flags: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, SCRIPT, *flags], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture
def tiny_run_config(tiny_model_path, tmp_path):
    """A config file for a seconds-long GRPO run of the script on a local file: 4 tasks x 2 completions per step."""
    from datasets import Dataset

    data = tmp_path / "tasks.jsonl"
    Dataset.from_dict({"prompt": [f"task {i}: say a" for i in range(8)], "solution": ["a"] * 8}).to_json(str(data))
    settings = {
        **{"dataset_name": str(data), "model_name_or_path": tiny_model_path, "reward_funcs": ["exact_match_reward"]},
        **{"output_dir": str(tmp_path / "run"), "use_cpu": True, "bf16": False, "report_to": "none", "seed": 0},
        **{"per_device_train_batch_size": 8, "num_generations": 2, "max_completion_length": 4, "max_steps": 2},
        **{"save_steps": 1, "logging_steps": 1, "learning_rate": 1e-2, "disable_tqdm": True},
        "dataloader_num_workers": 0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path), tmp_path / "run"


def test_resume_from_checkpoint_true_takes_the_newest_complete_checkpoint(tiny_run_config):
    config, run = tiny_run_config
    run_script(f"--config={config}")
    assert sorted(folder.name for folder in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    # checkpoint-2 incomplete (as after a kill while saving); checkpoint-1 marked, to see that the run resumed from it
    (run / "checkpoint-2" / "trainer_state.json").unlink()
    state_file = run / "checkpoint-1" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["marker"] = "checkpoint-1"
    state_file.write_text(json.dumps(state))
    result = run_script(f"--config={config}", "--max_steps", "3", "--resume_from_checkpoint", "true")
    assert (
        f"resume_from_checkpoint=true: resuming from {run}/checkpoint-1, the newest complete checkpoint in {run}; "
        f"skipping the newer {run}/checkpoint-2, which is incomplete (trainer_state.json is missing)." in result.stderr
    )
    final = json.loads((run / "trainer_state.json").read_text())
    assert final["global_step"] == 3 and final["log_history"][0]["marker"] == "checkpoint-1"
    assert [entry["step"] for entry in final["log_history"] if "loss" in entry] == [1, 2, 3]


def test_resume_from_checkpoint_true_without_a_complete_checkpoint_says_what_to_do(tiny_run_config):
    config, run = tiny_run_config
    result = run_script(f"--config={config}", "--resume_from_checkpoint", "true", check=False)
    assert result.returncode != 0
    assert (
        f"ValueError: resume_from_checkpoint=true resumes from the newest complete checkpoint in output_dir={run}, "
        "which holds none (there is no such folder). Start a new run without resume_from_checkpoint, or set it to a "
        "checkpoint folder (<output_dir>/checkpoint-<step>)." in result.stderr
    ), result.stderr[-3000:]
    assert not (run / "checkpoint-1").exists()


def test_resume_from_checkpoint_spellings(tmp_path):
    from train_bots import checkpoint_to_resume

    def resolved(value: str):
        training_args = parse(["--dataset_name", "x.jsonl", "--use_cpu", "true", "--output_dir", str(tmp_path)])[1]
        training_args.resume_from_checkpoint = value
        return checkpoint_to_resume(training_args)

    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    for value in ("True", "TRUE", True):  # True: a YAML boolean
        with pytest.raises(ValueError, match=r"which holds none \(checkpoint-3: bots_sampler.json and "):
            resolved(value)
    assert [resolved(value) for value in ("false", "False", False, None)] == [None] * 4
    assert resolved("runs/checkpoint-7") == "runs/checkpoint-7"  # a path stays a path (train() checks it)


def test_domain_weights_that_are_not_json_name_the_option_and_show_the_form():
    flags = ["--dataset_name", "x.jsonl", "--use_cpu", "true", "--bots_domain_column", "domain"]
    with pytest.raises(ValueError) as refused:
        parse([*flags, "--bots_domain_weights", "{math:1,logic:1}"])
    assert str(refused.value) == (
        "bots_domain_weights='{math:1,logic:1}' is not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)). Write a JSON object with quoted names, in single quotes on a shell command line: "
        '--bots_domain_weights \'{"math": 1, "logic": 1}\'; or proportional or uniform.'
    )
    training_args = parse([*flags, "--bots_domain_weights", '{"math": 1, "logic": 2}'])[1]
    assert training_args.bots_domain_weights == {"math": 1.0, "logic": 2.0}
    with pytest.raises(ValueError, match=r"^lr_scheduler_kwargs='\{min_lr: 0\}' is not valid JSON \(Expecting"):
        parse([*flags, "--lr_scheduler_kwargs", "{min_lr: 0}"])


def test_the_mean_effective_task_ratio_says_when_nothing_was_logged():
    from train_bots import mean_etr

    assert mean_etr([0.25, 0.5]) == "0.375"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        assert mean_etr([]) == "no BOTS metrics were logged"


def test_reward_funcs_help_and_the_readme_list_every_named_reward():
    from train_bots import BOTSScriptArguments

    from trl_bots.rewards import REWARD_FUNCTIONS

    help_text = BOTSScriptArguments.__dataclass_fields__["reward_funcs"].metadata["help"]
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    launching = readme[readme.index("## Launching") : readme.index("| accelerate config |")]
    listed = launching[launching.index("`--reward_funcs` takes") :]
    for name in REWARD_FUNCTIONS:
        assert name in help_text and f"`{name}`" in listed, name
