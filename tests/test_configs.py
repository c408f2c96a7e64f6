"""The accelerate configs load with accelerate's own loader, and every recipe parses with the example's TrlParser."""

import glob
import os
import sys

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

# file -> (distributed type, processes, machines, ZeRO stage or None)
ACCELERATE_CONFIGS = {
    "single_gpu.yaml": (DistributedType.NO, 1, 1, None),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 8, 1, None),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 8, 1, 2),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, 8, 1, 3),
    "deepspeed_zero3_multinode.yaml": (DistributedType.DEEPSPEED, 16, 2, 3),
    # MULTI_GPU, not MULTI_CPU: on a CPU machine that is what starts two gloo processes (CPU_DISTRIBUTED.md)
    "cpu_2proc.yaml": (DistributedType.MULTI_GPU, 2, 1, None),
    "cpu_2proc_zero2.yaml": (DistributedType.DEEPSPEED, 2, 1, 2),
}
RECIPES = sorted(glob.glob(os.path.join(ROOT, "examples", "configs", "*.yaml")))


def test_every_accelerate_config_is_listed():
    found = {os.path.basename(path) for path in glob.glob(os.path.join(ROOT, "configs", "accelerate", "*.yaml"))}
    assert found == set(ACCELERATE_CONFIGS)


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_loads(name):
    distributed_type, processes, machines, zero_stage = ACCELERATE_CONFIGS[name]
    config = load_config_from_file(os.path.join(ROOT, "configs", "accelerate", name))
    assert (config.distributed_type, config.num_processes, config.num_machines) == (
        distributed_type,
        processes,
        machines,
    )
    assert config.use_cpu is False  # --cpu / use_cpu in the launcher starts a single process; see CPU_DISTRIBUTED.md
    if zero_stage is None:
        assert not config.deepspeed_config
        return
    options = {k: v for k, v in config.deepspeed_config.items() if k != "deepspeed_multinode_launcher"}
    plugin = DeepSpeedPlugin(**options)
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == zero_stage
    assert plugin.deepspeed_config["zero_optimization"]["offload_optimizer"]["device"] == "none"


def test_there_are_recipes_for_both_model_sizes_and_logic():
    names = {os.path.basename(path) for path in RECIPES}
    assert {
        "guru_math_qwen2.5_1.5b.yaml",
        "guru_math_qwen2.5_7b.yaml",
        "guru_logic_qwen2.5_7b.yaml",
        "guru_mixture_qwen2.5_7b.yaml",
    } <= names
    assert "offline_demo.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_recipe_parses_with_trl_parser(path):
    import torch
    import yaml
    from train_bots import make_parser

    with open(path) as f:
        text = f.read()
    header, recipe = text.split("\n\n")[0], yaml.safe_load(text)
    # bf16 is checked against the hardware when the config is built: parse the GPU recipes as they would run on CPU.
    cpu = [] if torch.cuda.is_available() or not recipe.get("bf16") else ["--bf16", "false"]
    script_args, training_args, model_args, demo_args = make_parser().parse_args_and_config(["--config", path, *cpu])
    if os.path.basename(path) == "offline_demo.yaml":
        assert script_args.dataset_name is None and training_args.use_cpu
        assert training_args.bots_reference_columns == ["weak_pass_rate", "strong_pass_rate"]
        return
    # Each real-hardware recipe names its accelerate config (which must exist) and its GPU count.
    launch = [word for word in header.split() if word.startswith("configs/accelerate/")]
    assert launch and all(os.path.isfile(os.path.join(ROOT, word)) for word in launch)
    assert "GPUs" in header
    # The paper's settings (README.md, Recipes).
    assert training_args.num_generations == 16
    # 32 tasks per generation batch on the recipe's 8 GPUs (the parse here sees one process)
    completions_per_step = training_args.per_device_train_batch_size * 8 * training_args.gradient_accumulation_steps
    assert completions_per_step // training_args.num_generations == 32
    assert training_args.learning_rate == 1e-6 and training_args.max_grad_norm == 1.0
    assert training_args.temperature == 1.0 and training_args.max_completion_length == 8192
    assert (training_args.bots_target_pass_rate, training_args.bots_forgetting) == (0.5, 0.1)
    assert (training_args.bots_implicit_weight, training_args.bots_temperature) == (0.1, 0.0)
    assert training_args.bots_thompson and training_args.bots_pseudo_count == 16
    assert training_args.bots_reference_columns == ["qwen2.5_7b_pass_rate", "qwen3_30b_pass_rate"]
    assert script_args.answer_column == "reward_model.ground_truth" and script_args.max_prompt_tokens == 4096
    assert model_args.model_name_or_path.startswith("Qwen/Qwen2.5-") and recipe["bf16"] is True
    if os.path.basename(path) == "guru_mixture_qwen2.5_7b.yaml":
        assert script_args.load_guru and script_args.reward_funcs == ["guru_reward"]
        # Success is the weighted total, so that a code reward added as the header says scores the code rows.
        assert training_args.bots_success_reward is None and "run_tests]" in header
        assert (training_args.bots_domain_column, training_args.bots_domain_weights) == ("domain", "proportional")
        # The baseline command in the header parses too, and turns the quotas off.
        baseline = header.split("Uniform baseline")[1].split("train_bots.py")[1].replace("\\", " ").replace("#", " ")
        _, baseline_args, _, _ = make_parser().parse_args_and_config(baseline.split() + cpu)
        assert baseline_args.bots_strategy == "uniform" and baseline_args.bots_domain_weights is None


def test_multi_node_command_in_the_docs_keeps_32_tasks_per_round():
    """docs/distributed.md's 2 x 8 GPU command: twice the processes must not double the tasks per round."""
    import re
    import shlex

    import torch
    from train_bots import make_parser

    with open(os.path.join(ROOT, "docs", "distributed.md")) as f:
        section = f.read().split("## Multi-node ZeRO-3")[1].split("\n## ")[0]
    block = section.split("```bash")[1].split("```")[0].replace("\\\n", " ")
    commands = [shlex.split(line) for line in block.splitlines() if line.strip().startswith("accelerate launch")]
    assert len(commands) == 2  # one per node, the same but for --machine_rank
    assert [re.sub(r"--machine_rank \d", "", shlex.join(c)) for c in commands] == [
        re.sub(r"--machine_rank \d", "", shlex.join(commands[0]))
    ] * 2
    for command in commands:
        launcher_config = load_config_from_file(os.path.join(ROOT, command[command.index("--config_file") + 1]))
        script_args = command[command.index("examples/train_bots.py") + 1 :]
        cpu = [] if torch.cuda.is_available() else ["--bf16", "false"]
        training_args = make_parser().parse_args_and_config([*script_args, *cpu])[1]
        completions = (
            training_args.per_device_train_batch_size
            * launcher_config.num_processes
            * training_args.gradient_accumulation_steps
        )
        assert launcher_config.num_processes == 16
        assert completions // training_args.num_generations == 32


def test_the_demo_range_is_for_the_offline_demo_defaults():
    """The demo's last line compares a run with offline_demo_range.json: the range's settings must be the defaults'."""
    import json

    from train_bots import DEMO_RANGE, OFFLINE_DEMO_CONFIG, make_parser

    with open(DEMO_RANGE) as f:
        expected = json.load(f)
    _, training_args, _, demo_args = make_parser().parse_args_and_config(["--config", OFFLINE_DEMO_CONFIG])
    assert expected["settings"].pop("num_processes") == 1  # measured on one process; the verdict checks it too
    for name, value in expected["settings"].items():
        assert getattr(demo_args if name.startswith("demo_") else training_args, name) == value, name
    assert set(expected["range"]) == {
        "bots_etr",
        "uniform_etr",
        "accuracy_before",
        "bots_accuracy_after",
        "uniform_accuracy_after",
        "bots_embedding_etr",
        "bots_embedding_accuracy_after",
    }
    for low, high in expected["range"].values():
        assert 0.0 <= low <= high <= 1.0
