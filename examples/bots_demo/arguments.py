"""The offline demonstration's settings: its world, its warm start and its start criterion (the `demo_*` flags)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


# The setup shipped beside this package (examples/offline_setup): a checkout has it, an installed trl-bots does not.
SHIPPED_SETUP = Path(__file__).resolve().parent.parent / "offline_setup"


@dataclass
class OfflineDemoArguments:
    """The offline demonstration's world and warm start (used when no ``dataset_name`` is given)."""

    demo_setup: str = field(
        default=os.fspath(SHIPPED_SETUP),
        metadata={
            "help": "The shipped, warm-started setup. Used when its settings equal these (and not --demo_rebuild); "
            "otherwise the setup is built (and cached) in {output_dir}/offline_setup."
        },
    )
    demo_rebuild: bool = field(
        default=False,
        metadata={"help": "Build the setup in {output_dir}/offline_setup even if a matching one exists."},
    )
    demo_check_only: bool = field(
        default=False,
        metadata={
            "help": "Only load (or build) the setup, check the start criterion on the pool, print the measured shares "
            "and exit: no GRPO. A quick check that the demo runs here."
        },
    )
    demo_reference_run: bool = field(
        default=True,
        metadata={"help": "After BOTS, train a uniform-sampling reference from the same warm start, for comparison."},
    )
    demo_eval_every: int = field(
        default=10, metadata={"help": "GRPO steps between two held-out evaluations (and one at the last step)."}
    )
    demo_digits: int = field(
        default=8, metadata={"help": "Digits of each operand (tasks have 0 to this many carries)."}
    )
    demo_num_tasks: int = field(default=1000, metadata={"help": "Training tasks (additions) that BOTS selects from."})
    demo_num_eval: int = field(
        default=2700, metadata={"help": "Held-out additions (the same number per carry level) for the evaluations."}
    )
    demo_pool_level_weights: list[float] = field(
        default_factory=lambda: [3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        metadata={
            "help": "Share of pool tasks with 0, 1, ... demo_digits carries (demo_digits + 1 weights): GURU-like, many "
            "easy tasks (no carry) and many hard ones."
        },
    )
    demo_sft_carry_decay: float = field(
        default=0.3,
        metadata={
            "help": "Warm-start data has k carries with weight decay**k: carrying is seen rarely, so it is learnt "
            "partly and the pass rates spread from always to never solved."
        },
    )
    demo_sft_examples: int = field(
        default=20000, metadata={"help": "Distinct additions the warm start cycles through."}
    )
    demo_sft_batch_size: int = field(default=128, metadata={"help": "Batch size of the supervised warm start."})
    demo_sft_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the warm start."})
    demo_sft_max_steps: int = field(
        default=4000, metadata={"help": "Most warm-start steps; not reaching the start criterion by then is an error."}
    )
    demo_check_every: int = field(
        default=50, metadata={"help": "Warm-start steps between two measurements of the start criterion."}
    )
    demo_criterion_margin: float = field(
        default=0.03,
        metadata={
            "help": "The warm start stops at the first check where the start criterion holds on the pool by this "
            "margin (two standard errors of a share over 1,000 tasks), so that the check before GRPO, which measures "
            "it again with other random numbers, does not fall just short of it."
        },
    )
    demo_min_always_solved: float = field(
        default=0.25, metadata={"help": "Start criterion: at least this share of pool tasks solved by all samples."}
    )
    demo_min_never_solved: float = field(
        default=0.25, metadata={"help": "Start criterion: at least this share of pool tasks solved by no sample."}
    )
    demo_max_mixed: float = field(
        default=0.45,
        metadata={"help": "Start criterion: at most this share of pool tasks with mixed outcomes (what GRPO learns)."},
    )
    demo_reference_offset: int = field(
        default=100,
        metadata={
            "help": "The weak reference is the warm start's checkpoint this many steps before the start, the strong "
            "one this many steps after (a multiple of demo_check_every): close enough to the policy that their pass "
            "rates tell the tasks apart, as GURU's 7B and 30B columns do."
        },
    )
    demo_reference_samples: int = field(
        default=8, metadata={"help": "Completions per task when measuring pass rates (references and criterion)."}
    )
    demo_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the small Qwen2 model."})
    demo_num_layers: int = field(default=2, metadata={"help": "Layers of the small Qwen2 model."})

    def __post_init__(self):
        for name in ("demo_min_always_solved", "demo_min_never_solved", "demo_max_mixed", "demo_criterion_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be a share in [0, 1].")
        if len(self.demo_pool_level_weights) != self.demo_digits + 1:
            raise ValueError(
                f"demo_pool_level_weights has {len(self.demo_pool_level_weights)} weights; demo_digits="
                f"{self.demo_digits} needs {self.demo_digits + 1} (one per number of carries 0..{self.demo_digits})."
            )
        if not 0.0 < self.demo_sft_carry_decay <= 1.0:
            raise ValueError(f"demo_sft_carry_decay={self.demo_sft_carry_decay} must lie in (0, 1].")
        if self.demo_check_every < 1 or self.demo_sft_max_steps < self.demo_check_every:
            raise ValueError(
                f"demo_check_every={self.demo_check_every} must be >= 1 and at most demo_sft_max_steps="
                f"{self.demo_sft_max_steps}."
            )
        if self.demo_reference_offset < 1 or self.demo_reference_offset % self.demo_check_every:
            raise ValueError(
                f"demo_reference_offset={self.demo_reference_offset} must be a positive multiple of demo_check_every="
                f"{self.demo_check_every}: the references are warm-start checkpoints, saved at every check."
            )

    def world_settings(self) -> dict[str, Any]:
        """The settings that change the setup (the run-time switches excluded), as stored in ``setup.json``."""
        switches = {"demo_setup", "demo_rebuild", "demo_check_only", "demo_reference_run", "demo_eval_every"}
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in switches}
