# Copyright 2025 The trl-bots developers. Licensed under the Apache License, Version 2.0.
"""
GRPO with Bayesian Online Task Selection (BOTS): TRL's GRPO script with `BOTSGRPOTrainer`.

Every option of `BOTSConfig` (GRPO's and the `bots_*` ones), of `ModelConfig` (PEFT/LoRA, quantisation) and of the
script is a flag and a key of a `--config` YAML file:

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml examples/train_bots.py \\
        --config examples/configs/guru_math_qwen2.5_1.5b.yaml

With no dataset (no `--dataset_name`, no `--config`) it runs the offline demonstration, on a CPU, with no downloads,
using `examples/configs/offline_demo.yaml` for its defaults (flags still override them):

    python examples/train_bots.py
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml examples/train_bots.py
"""

import os
import sys
from dataclasses import dataclass, field

from transformers import AutoTokenizer
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from trl_bots import BOTSConfig, BOTSGRPOTrainer
from trl_bots.data import load_guru, load_tasks, prepare_tasks
from trl_bots.offline import OfflineDemoArguments, build_offline_setup, heldout_accuracy
from trl_bots.plotting import log_series, plot_run
from trl_bots.rewards import get_reward_function


OFFLINE_DEMO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "offline_demo.yaml")


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
            "help": "Reward functions: math_accuracy_reward, exact_match_reward, partial_match_reward, format_reward, "
            "or dotted import paths (my_package.rewards.my_reward). Weight them with reward_weights."
        },
    )
    eval_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Evaluation dataset (Hub name or local file), read at dataset_test_split; default: dataset_name."
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


def offline_demo_requested(argv: list[str]) -> bool:
    """No dataset on the command line nor in a config file: the offline demonstration."""
    return "--config" not in argv and not any(arg.split("=")[0] == "--dataset_name" for arg in argv)


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
        eval_dataset = load(script_args.eval_dataset_name or script_args.dataset_name, script_args.dataset_test_split)
    return train_dataset, eval_dataset


def drop_long_prompts(dataset, tokenizer, max_tokens: int):
    from trl.data_utils import maybe_apply_chat_template

    def fits(row):
        text = maybe_apply_chat_template({"prompt": row["prompt"]}, tokenizer)["prompt"]
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_tokens

    return dataset.filter(fits, desc=f"prompts <= {max_tokens} tokens")


def main(script_args: BOTSScriptArguments, training_args: BOTSConfig, model_args: ModelConfig, demo_args):
    offline = script_args.dataset_name is None
    processing_class = None
    if offline:
        setup = build_offline_setup(demo_args, training_args)
        model, processing_class = setup.model_path, setup.tokenizer
        train_dataset, eval_dataset = setup.train_dataset, None
    else:
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

    reward_funcs = [get_reward_function(name) for name in script_args.reward_funcs]
    trainer = BOTSGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing_class,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    is_main = trainer.accelerator.is_main_process
    accuracy_before = None
    if offline and is_main:
        accuracy_before = heldout_accuracy(trainer.model, processing_class, setup.eval_dataset, "held-out before")

    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name or "offline additions")

    if is_main:
        plots = plot_run(training_args.output_dir)
        _, etr = log_series(trainer.state.log_history, "bots/effective_task_ratio")
        trainer.accelerator.print(
            f"\nBOTS run finished on {trainer.accelerator.num_processes} process(es) "
            f"({trainer.accelerator.distributed_type.value}).\n"
            f"  mean effective-task ratio: {etr.mean():.3f} over {trainer.selector.round} rounds\n"
            f"  model and selector state:  {training_args.output_dir}\n"
            f"  plots:                     {', '.join(str(p) for p in plots)}"
        )
        if offline:
            accuracy_after = heldout_accuracy(
                trainer.accelerator.unwrap_model(trainer.model), processing_class, setup.eval_dataset, "held-out after"
            )
            trainer.accelerator.print(
                f"  held-out accuracy (greedy, {len(setup.eval_dataset)} additions): "
                f"{accuracy_before:.3f} before -> {accuracy_after:.3f} after"
            )
    trainer.accelerator.wait_for_everyone()
    trainer.end()  # finishes the trackers and destroys the process group


def make_parser() -> TrlParser:
    return TrlParser((BOTSScriptArguments, BOTSConfig, ModelConfig, OfflineDemoArguments))


if __name__ == "__main__":
    argv = sys.argv[1:]
    if offline_demo_requested(argv):
        argv = ["--config", OFFLINE_DEMO_CONFIG, *argv]
    main(*make_parser().parse_args_and_config(argv))
