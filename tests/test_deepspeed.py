"""BOTSGRPOTrainer under real DeepSpeed ZeRO-2 and ZeRO-3, 2 CPU processes, through `accelerate launch`.

CPU_DISTRIBUTED.md has the recipe: an accelerate config with `distributed_type: DEEPSPEED`, `DS_ACCELERATOR=cpu`, and
`use_cpu=True` in the training arguments. The first DeepSpeed launch on a machine JIT-compiles DeepSpeed's
shared-memory op (~45 s) into the torch extensions cache.
"""

from __future__ import annotations

import os

import pytest
import yaml
from launching import accelerate_launch, read_ranks


CPU_ZERO2 = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "accelerate", "cpu_2proc_zero2.yaml")


def zero_config(tmp_path, stage: int) -> str:
    """The repository's 2-process CPU ZeRO-2 config, at `stage`."""
    with open(CPU_ZERO2) as f:
        config = yaml.safe_load(f)
    assert config["distributed_type"] == "DEEPSPEED" and config["num_processes"] == 2
    config["deepspeed_config"]["zero_stage"] = stage
    path = tmp_path / f"cpu_2proc_zero{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def assert_ranks_agree(ranks: list[dict], run: str, stage: int) -> None:
    for rank in ranks:
        assert (rank[run]["engine"], rank[run]["stage"], rank[run]["world"]) == ("DeepSpeedEngine", stage, 2)
    # Same selected rounds, bit-identical posterior after every step, same weights on both ranks.
    assert ranks[0][run]["rounds"] == ranks[1][run]["rounds"]
    assert ranks[0][run]["steps"] == ranks[1][run]["steps"]
    assert ranks[0][run]["weights"] == ranks[1][run]["weights"]
    # Each rank scored its own half of every round: together, both completions of both selected tasks.
    for round_tasks, call0, call1 in zip(
        ranks[0][run]["rounds"], ranks[0][run]["calls"], ranks[1][run]["calls"], strict=True
    ):
        assert sorted(call0["idx"] + call1["idx"]) == sorted(round_tasks * 2)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_two_processes(tiny_model_path, tmp_path, stage):
    """ZeRO-2: 4 steps. ZeRO-3: 4 steps with a checkpoint at step 2, then a resume from it, compared exactly."""
    out = tmp_path / "out"
    out.mkdir()
    accelerate_launch(
        "launched_deepspeed.py", stage, tiny_model_path, out, config_file=zero_config(tmp_path, stage),
        env={"DS_ACCELERATOR": "cpu"},
    )  # fmt: skip
    ranks = read_ranks(out, 2)
    assert_ranks_agree(ranks, "full", stage)
    full = ranks[0]["full"]
    assert [step["round"] for step in full["steps"]] == [1, 2, 3, 4]
    assert full["weights"] != full["initial_weights"]  # the model really trained
    if stage == 3:
        assert_ranks_agree(ranks, "resumed", stage)
        # A real DeepSpeed checkpoint: one ZeRO-3 optimizer shard per rank, beside the BOTS files.
        checkpoint = out / "full" / "checkpoint-2"
        shards = sorted(path.name for path in checkpoint.glob("global_step2/*optim_states.pt"))
        assert shards == [f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)], shards
        assert (checkpoint / "bots_selector.safetensors").is_file() and (checkpoint / "bots_sampler.json").is_file()
        for rank in ranks:
            resumed, uninterrupted = rank["resumed"], rank["full"]
            assert resumed["calls"] == uninterrupted["calls"][2:]  # the model generated the same completions
            assert resumed["rounds"] == uninterrupted["rounds"][2:]
            assert resumed["steps"] == uninterrupted["steps"][2:]  # bit-identical posterior after every step
            assert resumed["weights"] == uninterrupted["weights"]  # model and optimizer state restored exactly
