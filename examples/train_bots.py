# Copyright 2025 The trl-bots developers. Licensed under the Apache License, Version 2.0.
"""
GRPO with Bayesian Online Task Selection (BOTS): TRL's GRPO script with `BOTSGRPOTrainer`.

Every option of `BOTSConfig` (GRPO's and the `bots_*` ones), of `ModelConfig` (PEFT/LoRA, quantisation) and of the
script is a flag and a key of a `--config` YAML file:

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml examples/train_bots.py \\
        --config examples/configs/guru_math_qwen2.5_1.5b.yaml

With no dataset (no `dataset_name` from a flag, in any spelling the parser accepts, nor from the `--config` file) it
runs the offline demonstration, on a CPU, with no downloads, using `examples/configs/offline_demo.yaml` for its
defaults (a config file's values and flags override them). Its world is the package `bots_demo` beside this script (a
checkout of the repository has it; `pip install trl-bots` does not):

    python examples/train_bots.py
    python examples/train_bots.py --demo_check_only      # only check the shipped warm start, no training
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml examples/train_bots.py
"""

import copy
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import transformers
import yaml
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer, IntervalStrategy
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from bots_demo.arguments import OfflineDemoArguments
from bots_demo.grpo_runs import steps_to_reach, train_from_setup
from bots_demo.measure import HeldoutEvaluation, check_start, start_shape
from bots_demo.offline_setup import build_offline_setup
from trl_bots import BOTSConfig, BOTSGRPOTrainer
from trl_bots.checkpoints import checkpoint_folders, checkpoint_problems, latest_complete_checkpoint
from trl_bots.data import load_guru, load_tasks, prepare_tasks
from trl_bots.plotting import log_series, plot_comparison, plot_run
from trl_bots.rewards import REWARD_FUNCTIONS, get_reward_function
from trl_bots.validation import default_implicit_weight


logger = logging.getLogger(__name__)

# The demonstration's comparison runs beside the configured one, as its report names them.
DEMO_RUNS = {
    "bots-embedding": "BOTS without the reference columns (implicit evidence from the embedding estimator)",
    "uniform": "uniform sampling (bots_strategy=uniform)",
}
OFFLINE_DEMO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "offline_demo.yaml")
# The demo's numbers as measured over seeds and thread counts (the README quotes them): the demo's last line compares.
DEMO_RANGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "offline_demo_range.json")


@dataclass
class BOTSScriptArguments(ScriptArguments):
    """
    Script arguments: TRL's `ScriptArguments` (`dataset_name` is a Hub name or a local .json/.jsonl/.parquet/.arrow/
    .csv file; leave it unset for the offline demonstration) plus column mapping, rewards and an evaluation file.
    """

    prompt_column: str = field(default="prompt", metadata={"help": "Column with the prompt (text or chat messages)."})
    answer_column: str = field(
        default="solution",
        metadata={"help": "Column with the ground truth; nested fields with dots, e.g. reward_model.ground_truth."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy_reward"],
        metadata={
            "help": f"Reward functions: {', '.join(REWARD_FUNCTIONS)} (trl_bots.rewards), or dotted import paths "
            "(my_package.rewards.my_reward). Weight them with reward_weights."
        },
    )
    eval_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Evaluation dataset (Hub name or local file), read at dataset_test_split. Default: dataset_name "
            "at dataset_test_split, which for a local file is the training data itself (the script warns)."
        },
    )
    load_guru: bool = field(
        default=False,
        metadata={
            "help": "Read dataset_name (a GURU file, a folder of GURU files, or files separated by commas) and "
            "eval_dataset_name with trl_bots.data.load_guru: GURU's columns (prompt_column and answer_column are not "
            "used) plus each task's domain, from its file name, in a 'domain' column."
        },
    )
    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Drop training and evaluation prompts longer than this many tokens (after the chat template)."
        },
    )


def quiet_third_party_noise() -> None:
    """
    Silence, in this process only, what the libraries say that a user of this script cannot act on: transformers'
    FutureWarnings about the deprecated ``gradient_checkpointing`` names (TRL's configs default to the old name and its
    trainers call the old methods, at every step) and DeepSpeed's notice that it found no GPU (accelerate imports
    DeepSpeed when it is installed; on a CPU run, no GPU is the plan).
    """
    warnings.filterwarnings(
        "ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning
    )
    logging.getLogger("DeepSpeed").addFilter(lambda record: not record.getMessage().startswith("Setting accelerator"))


def load_datasets(script_args: BOTSScriptArguments, training_args: BOTSConfig):
    def load(name, split):
        if script_args.load_guru:  # evaluation files (e.g. MATH500) carry no reference pass rates
            return load_guru(name.split(","), split, pass_rates=name == script_args.dataset_name)
        return prepare_tasks(
            load_tasks(name, script_args.dataset_config, split), script_args.prompt_column, script_args.answer_column
        )

    train_dataset = load(script_args.dataset_name, script_args.dataset_train_split)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        if script_args.eval_dataset_name is None and training_args.process_index == 0:
            logger.warning(
                f"eval_strategy='{IntervalStrategy(training_args.eval_strategy).value}' but no eval_dataset_name: "
                f"evaluation reads dataset_name={script_args.dataset_name!r} at dataset_test_split="
                f"{script_args.dataset_test_split!r}, which for a local file (or load_guru) is the training data "
                "itself. Set eval_dataset_name to held-out tasks, or eval_strategy='no'."
            )
        eval_dataset = load(script_args.eval_dataset_name or script_args.dataset_name, script_args.dataset_test_split)
    return train_dataset, eval_dataset


def drop_long_prompts(dataset, tokenizer, max_tokens: int):
    from trl.data_utils import maybe_apply_chat_template

    def fits(row):
        text = maybe_apply_chat_template({"prompt": row["prompt"]}, tokenizer)["prompt"]
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_tokens

    return dataset.filter(fits, desc=f"prompts <= {max_tokens} tokens")


def main(script_args: BOTSScriptArguments, training_args: BOTSConfig, model_args: ModelConfig, demo_args) -> None:
    if script_args.dataset_name is None:
        if script_args.load_guru:
            raise ValueError(
                "load_guru=True reads dataset_name, which is not set (without a dataset this script runs the offline "
                "demo). Set dataset_name to a GURU file, a folder of GURU files, or files separated by commas."
            )
        offline_demo(script_args, training_args, demo_args)
        return
    checkpoint = checkpoint_to_resume(training_args)
    model = model_args.model_name_or_path
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    train_dataset, eval_dataset = load_datasets(script_args, training_args)
    if script_args.max_prompt_tokens is not None:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=model_args.model_revision)
        train_dataset, eval_dataset = (
            None if dataset is None else drop_long_prompts(dataset, tokenizer, script_args.max_prompt_tokens)
            for dataset in (train_dataset, eval_dataset)
        )
    trainer = BOTSGRPOTrainer(
        model=model,
        reward_funcs=[get_reward_function(name) for name in script_args.reward_funcs],
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    finish(trainer, training_args, script_args.dataset_name)
    trainer.accelerator.wait_for_everyone()
    trainer.end()  # finishes the trackers and destroys the process group


def checkpoint_to_resume(training_args: BOTSConfig) -> str | None:
    """
    The checkpoint folder `resume_from_checkpoint` names. On the command line it is text, so `true` (any case; or a
    YAML boolean) means what `train(resume_from_checkpoint=True)` intends: the newest checkpoint of `output_dir`, here
    the newest complete one (newer incomplete folders are named in a warning); `false` means none; any other value is
    a path.
    """
    resume_from_checkpoint, output_dir = training_args.resume_from_checkpoint, training_args.output_dir
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "false"):
        spelling, resume = resume_from_checkpoint, resume_from_checkpoint.lower() == "true"
    else:
        spelling, resume = str(resume_from_checkpoint).lower(), resume_from_checkpoint
    if resume is not True:
        return resume or None
    folders, checkpoint = checkpoint_folders(output_dir), latest_complete_checkpoint(output_dir)
    if checkpoint is None:
        if not os.path.isdir(output_dir):
            why = "there is no such folder"
        elif not folders:
            why = "it has no checkpoint-<step> folder"
        else:
            why = "; ".join(f"{folder.name}: {', '.join(checkpoint_problems(folder))}" for folder in folders)
        raise ValueError(
            f"resume_from_checkpoint={spelling} resumes from the newest complete checkpoint in output_dir={output_dir}, "
            f"which holds none ({why}). Start a new run without resume_from_checkpoint, or set it to a checkpoint "
            "folder (<output_dir>/checkpoint-<step>)."
        )
    newer = folders[folders.index(Path(checkpoint)) + 1 :]  # incomplete, or the newest complete would be one of them
    if newer and training_args.process_index == 0:
        logger.warning(
            f"resume_from_checkpoint={spelling}: resuming from {checkpoint}, the newest complete checkpoint in "
            f"{output_dir}; skipping the newer "
            + "; ".join(
                f"{folder}, which is incomplete ({', '.join(checkpoint_problems(folder))})" for folder in newer
            )
            + "."
        )
    return checkpoint


def finish(trainer: BOTSGRPOTrainer, training_args: BOTSConfig, dataset_name: str) -> None:
    """Save the model with its selector state, push it if asked, plot the run and print where everything is."""
    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
    if trainer.accelerator.is_main_process:
        plots = plot_run(training_args.output_dir)
        _, etr = log_series(trainer.state.log_history, "bots/effective_task_ratio")
        trainer.accelerator.print(
            f"\nBOTS run finished on {trainer.accelerator.num_processes} process(es) "
            f"({trainer.accelerator.distributed_type.value}).\n"
            f"  mean effective-task ratio: {mean_etr(etr)} ({trainer.selector.round} rounds)\n"
            f"  model and selector state:  {training_args.output_dir}\n"
            f"  plots:                     {', '.join(str(p) for p in plots)}"
        )


def mean_etr(etr) -> str:
    """The run's mean effective-task ratio as printed, or that no training log carried it (e.g. logging_steps >
    max_steps): the mean of nothing would print NaN, with a NumPy warning."""
    return f"{np.mean(etr):.3f}" if len(etr) else "no BOTS metrics were logged"


def offline_demo(script_args: BOTSScriptArguments, training_args: BOTSConfig, demo_args: OfflineDemoArguments) -> None:
    """
    The offline demonstration: BOTS, then (unless --demo_reference_run false) BOTS as a dataset without reference
    columns gets it (the embedding estimator) and a uniform-sampling reference, all with the same settings and from
    the same warm start; side by side, in numbers and in one figure.
    """
    # One progress bar per phase (the Trainer's, the pass-rate measurements'): not one per small dataset conversion or
    # per model load and save, of which the demo makes dozens, each done in a blink.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    state = PartialState()
    setup = build_offline_setup(demo_args, training_args)
    warm_start = AutoModelForCausalLM.from_pretrained(setup.model_path)
    start_rates = check_start(setup, demo_args, warm_start)  # stops here if the warm start is not what the demo needs
    if demo_args.demo_check_only:
        start = start_shape(start_rates)
        state.print(
            f"\n[demo] The warm start in {setup.folder} meets the start criterion on the pool of "
            f"{len(setup.train_dataset)} tasks: always {start['always']:.3f} / mixed {start['mixed']:.3f} / never "
            f"{start['never']:.3f} solved ({demo_args.demo_reference_samples} samples per task). No training "
            "(--demo_check_only)."
        )
        return
    reward_funcs = [get_reward_function(name) for name in script_args.reward_funcs]
    evaluation = HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, demo_args.demo_eval_every, setup.temperature)
    before = evaluation.evaluate(warm_start)["all"]
    runs = {}
    for name, args in demo_runs(training_args, demo_args.demo_reference_run):
        state.print(f"\n[demo] GRPO with {DEMO_RUNS.get(name, f'bots_strategy={name}')}: {args.max_steps} steps")
        runs[name] = train_from_setup(
            setup,
            args,
            reward_funcs,
            HeldoutEvaluation(setup.tokenizer, setup.eval_dataset, demo_args.demo_eval_every, setup.temperature),
            demo_args.demo_reference_samples,
        )
        if args is training_args:
            finish(runs[name]["trainer"], args, "offline additions")
    if state.is_main_process:
        report(runs, before, start_shape(start_rates), training_args, demo_args)
    trainer = runs[training_args.bots_strategy]["trainer"]
    trainer.accelerator.wait_for_everyone()
    trainer.end()


def demo_runs(training_args: BOTSConfig, reference_runs: bool) -> list[tuple[str, BOTSConfig]]:
    """The runs of the demonstration, each a name and its config: the configured one first; with ``reference_runs``,
    then BOTS without the reference columns (when the configured run is BOTS with them) and uniform sampling last."""
    runs = [(training_args.bots_strategy, training_args)]
    if not reference_runs or training_args.bots_strategy == "uniform":
        return runs
    if training_args.bots_strategy == "bots" and training_args.bots_implicit_estimator == "reference":
        plain = reference_copy(training_args, "bots-embedding")
        plain.bots_reference_columns, plain.bots_implicit_estimator = None, "embedding"
        plain.bots_implicit_weight = default_implicit_weight("embedding")
        runs.append(("bots-embedding", plain))
    uniform = reference_copy(training_args, "uniform-reference")
    uniform.bots_strategy = "uniform"
    return [*runs, ("uniform", uniform)]


def reference_copy(training_args: BOTSConfig, folder: str) -> BOTSConfig:
    """The config of a comparison run: the same settings, its own folder under output_dir, never pushed."""
    args = copy.deepcopy(training_args)
    args.output_dir, args.push_to_hub = os.path.join(training_args.output_dir, folder), False
    return args


def report(runs: dict, before: float, start: dict, training_args: BOTSConfig, demo_args: OfflineDemoArguments) -> None:
    """Print the runs side by side, draw them in one figure, and say whether this run lies in the README's range."""
    names = list(runs)
    reference = runs[names[-1]]
    target = reference["accuracy"][-1]
    rows = {
        "mean effective-task ratio": [mean_etr(run["etr"]) for run in runs.values()],
        "held-out accuracy, start -> end": [f"{before:.3f} -> {run['accuracy'][-1]:.3f}" for run in runs.values()],
        f"steps to {target:.3f} ({names[-1]}'s final)": [
            str(steps_to_reach(run["eval_steps"], run["accuracy"], target) or f"not in {training_args.max_steps}")
            for run in runs.values()
        ],
        "pool always / mixed / never solved": [
            f"{run['end_shape']['always']:.2f} / {run['end_shape']['mixed']:.2f} / {run['end_shape']['never']:.2f}"
            for run in runs.values()
        ],
        "training time (s)": [f"{run['train_seconds']:.0f}" for run in runs.values()],
    }
    width = max(map(len, rows)) + 2
    lines = [f"{'':{width}}" + "".join(f"{name:>22}" for name in names)]
    lines += [f"{label:{width}}" + "".join(f"{value:>22}" for value in values) for label, values in rows.items()]
    figure = plot_comparison(
        {
            name: {"eval_steps": [0, *run["eval_steps"]], "accuracy": [before, *run["accuracy"]], "etr": run["etr"]}
            for name, run in runs.items()
        },
        os.path.join(training_args.output_dir, "plots", "strategies.png"),
        f"Real GRPO from the same warm start, seed {training_args.seed}",
    )
    legend = "".join(f"\n  {name}: {DEMO_RUNS[name]}" for name in names if name in DEMO_RUNS)
    print(
        f"\nOffline demonstration: {len(runs[names[0]]['trainer'].train_dataset)} tasks, "
        f"{training_args.max_steps} GRPO steps per run; pool at the start: always {start['always']:.2f} / mixed "
        f"{start['mixed']:.2f} / never {start['never']:.2f} solved ({demo_args.demo_reference_samples} samples per "
        "task).\n"
        + "\n".join(lines)
        + legend
        + f"\n  figure: {figure}\n{range_verdict(runs, before, training_args, demo_args)}"
    )


def range_verdict(runs: dict, before: float, training_args: BOTSConfig, demo_args: OfflineDemoArguments) -> str:
    """Whether this run's numbers lie in the range the README states (measured over seeds and thread counts)."""
    expected = json.loads(Path(DEMO_RANGE).read_text())
    settings = {name: getattr(training_args, name, None) for name in expected["settings"]}
    settings.update({name: getattr(demo_args, name) for name in expected["settings"] if hasattr(demo_args, name)})
    settings["num_processes"] = PartialState().num_processes
    changed = [name for name, value in expected["settings"].items() if settings[name] != value]
    if changed or list(runs) != ["bots", "bots-embedding", "uniform"]:
        return f"(The README's range is for the default settings; this run changed {changed or 'the strategies'}.)"
    measured = {
        "accuracy_before": before,
        **{f"{name.replace('-', '_')}_etr": np.mean(run["etr"]) for name, run in runs.items()},
        **{f"{name.replace('-', '_')}_accuracy_after": run["accuracy"][-1] for name, run in runs.items()},
    }
    outside = [
        f"{name} {value:.3f} not in [{low}, {high}]"
        for name, value in measured.items()
        for low, high in [expected["range"][name]]
        if not low <= value <= high
    ]
    if outside:
        return f"OUTSIDE the README's range: {'; '.join(outside)}. Please report it, with this output."
    return f"Inside the README's range ({expected['measured_over']})."


class ScriptParser(TrlParser):
    """
    TrlParser with the script's two additions. `--config=PATH` is read as `--config PATH` (TrlParser looks for the
    latter only). And a run without a dataset, the offline demonstration, takes its defaults from the demo's YAML,
    under the config file's values and the flags; whether there is a dataset is decided on what argparse parsed, so
    every spelling it accepts counts (`--dataset_name X`, `--dataset-name=X`, an abbreviation, a config file's key).
    """

    _config_keys: frozenset[str] = frozenset()  # the settings the config file gave

    def parse_args_and_config(self, args: list[str] | None = None, *rest, **kwargs):
        args = sys.argv[1:] if args is None else list(args)
        args = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
        self._config_keys = frozenset()
        return super().parse_args_and_config(args, *rest, **kwargs)

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        self._config_keys = frozenset(kwargs)  # the demo's defaults go under these
        return super().set_defaults_with_config(**kwargs)

    # The one place every argument source (flags, config file, `.args` file) has been read: decide here.
    def parse_known_args(self, args: list[str] | None = None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        probe, _ = super().parse_known_args([arg for arg in args if arg not in ("-h", "--help")])
        if probe.dataset_name is None:
            with open(OFFLINE_DEMO_CONFIG) as f:
                demo = yaml.safe_load(f)
            super().set_defaults_with_config(
                **{key: value for key, value in demo.items() if key not in self._config_keys}
            )
        return super().parse_known_args(args, namespace)


def make_parser() -> ScriptParser:
    return ScriptParser((BOTSScriptArguments, BOTSConfig, ModelConfig, OfflineDemoArguments))


if __name__ == "__main__":
    quiet_third_party_noise()
    main(*make_parser().parse_args_and_config())
