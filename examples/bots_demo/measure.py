"""Measuring a model on the demo's tasks: pass rates, the start criterion's shares, held-out accuracy.

The start criterion is what makes the demonstration's world GURU-like: at least a share of the pool always solved, at
least a share never solved, and at most a share in between (the tasks GRPO learns from). The warm start trains until
it holds (:mod:`bots_demo.warm_start`), and :func:`check_start` measures it again before any GRPO step.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from accelerate import PartialState
from datasets import Dataset
from transformers import TrainerCallback

from trl_bots.pass_rates import GenerationSettings, estimate_pass_rates
from trl_bots.rewards import exact_match_reward

from .arguments import OfflineDemoArguments
from .arithmetic import LEVEL_COLUMN


if TYPE_CHECKING:
    from .offline_setup import OfflineSetup


def sampled_pass_rates(
    model,
    tokenizer,
    dataset: Dataset,
    samples: int,
    temperature: float,
    seed: int = 0,
    description: str | None = None,
) -> np.ndarray:
    """Per-task share of ``samples`` completions at ``temperature`` that are exactly right (``model`` left in eval)."""
    settings = GenerationSettings(
        num_samples=samples, temperature=temperature, max_new_tokens=_answer_tokens(dataset), batch_size=256, seed=seed
    )
    return estimate_pass_rates(
        dataset,
        model,
        tokenizer,
        exact_match_reward,
        settings,
        description=description,
        show_progress=description is not None and PartialState().is_local_main_process,  # one bar, not one per process
    )


def _answer_tokens(dataset: Dataset) -> int:
    return len(dataset[0]["solution"]) + 1  # the digits of the sum and the end-of-sequence token


def start_shape(pass_rates: np.ndarray) -> dict[str, float]:
    """Shares of tasks solved by every sample (``always``), by none (``never``) and by some (``mixed``)."""
    rates = np.asarray(pass_rates, dtype=np.float64)
    always, never = float(np.mean(rates >= 1.0)), float(np.mean(rates <= 0.0))
    return {"always": always, "never": never, "mixed": 1.0 - always - never}


def criterion_failures(shape: dict[str, float], args: OfflineDemoArguments, margin: float = 0.0) -> list[str]:
    """The parts of the start criterion ``shape`` misses (by ``margin``), in words (empty when it holds)."""
    shape = {"always": shape["always"] - margin, "never": shape["never"] - margin, "mixed": shape["mixed"] + margin}
    checks = [
        (
            "always",
            shape["always"] >= args.demo_min_always_solved,
            f">= demo_min_always_solved={args.demo_min_always_solved}",
        ),
        (
            "never",
            shape["never"] >= args.demo_min_never_solved,
            f">= demo_min_never_solved={args.demo_min_never_solved}",
        ),
        ("mixed", shape["mixed"] <= args.demo_max_mixed, f"<= demo_max_mixed={args.demo_max_mixed}"),
    ]
    return [f"{name} solved share {shape[name]:.3f} (needs {need})" for name, ok, need in checks if not ok]


def accuracy_by_level(correct: np.ndarray, levels: np.ndarray) -> dict[str, float]:
    """Overall and per-level mean of ``correct`` (keys ``"all"``, ``"0"``, ``"1"``, ...)."""
    result = {"all": float(np.mean(correct))}
    result.update({str(level): float(np.mean(correct[levels == level])) for level in np.unique(levels)})
    return result


class HeldoutEvaluation(TrainerCallback):
    """
    Held-out accuracy every ``every`` steps and at the last step: one completion per held-out task at ``temperature``
    (GRPO's: the policy it trains), exact match, overall and per carry level. The sampling seed is the same at every
    evaluation and in every run, so two runs are compared on the same random numbers.
    """

    def __init__(self, tokenizer, dataset: Dataset, every: int, temperature: float, seed: int = 1234):
        self.tokenizer, self.dataset, self.every, self.seed = tokenizer, dataset, every, seed
        self.temperature = temperature
        self.levels = np.asarray(dataset[LEVEL_COLUMN])
        self.steps: list[int] = []
        self.accuracy: list[dict[str, float]] = []
        self.seconds = 0.0

    def evaluate(self, model) -> dict[str, float]:
        start = time.perf_counter()
        was_training = model.training
        rates = sampled_pass_rates(model, self.tokenizer, self.dataset, 1, self.temperature, seed=self.seed)
        model.train(was_training)
        self.seconds += time.perf_counter() - start
        return accuracy_by_level(rates, self.levels)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.steps.append(state.global_step)
            self.accuracy.append(self.evaluate(model))


def check_start(setup: OfflineSetup, args: OfflineDemoArguments, model=None) -> np.ndarray:
    """
    Measure the warm start's pass rates on the whole pool and check the start criterion on them; ``RuntimeError``
    naming the measured shares if it does not hold. Returns the pass rates (the start of the pass-rate histogram).
    """
    from transformers import AutoModelForCausalLM

    model = model if model is not None else AutoModelForCausalLM.from_pretrained(setup.model_path)
    rates = sampled_pass_rates(
        model,
        setup.tokenizer,
        setup.train_dataset,
        args.demo_reference_samples,
        setup.temperature,
        description="warm start on the pool",
    )
    failures = criterion_failures(start_shape(rates), args)
    if failures:
        raise RuntimeError(
            f"The warm start in {setup.folder} does not meet the start criterion on the task pool: "
            f"{'; '.join(failures)}. GRPO from it would not show what BOTS does. Rebuild it with --demo_rebuild (the "
            f"build trains until the criterion holds), or restore the shipped setup (git checkout -- {setup.folder})."
        )
    return rates
