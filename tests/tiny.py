"""A tiny Qwen2 model and a character-level tokenizer, built locally (no downloads), for the trainer tests."""

from __future__ import annotations

import os

from datasets import Dataset


ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,?!:"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def char_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    """A character-level fast tokenizer over `ALPHABET` (left padding), with `chat_template`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<eos>"]
    vocab = {token: i for i, token in enumerate([*special, *ALPHABET, "\n", "<unk>"])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )
    fast.chat_template = chat_template
    return fast


def build_tiny_model(path: str, hidden_size: int = 16, num_layers: int = 1, seed: int = 0) -> str:
    """Save a Qwen2 (by default 1 layer, hidden size 16) and its tokenizer under `path`; return `path`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = char_tokenizer()
    config = Qwen2Config(
        **tiny_sizes(tokenizer, hidden_size, num_layers),
        num_key_value_heads=1,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return save_tiny(path, tokenizer, Qwen2ForCausalLM, config, seed)


def build_tiny_encoder(path: str, hidden_size: int = 16, num_layers: int = 2) -> str:
    """Save a RoBERTa encoder and the character tokenizer without a chat template (as a sentence encoder has) under
    `path`; return `path`. RoBERTa counts positions from its padding id + 1, not from 0."""
    from transformers import RobertaConfig, RobertaModel

    tokenizer = char_tokenizer(chat_template=None)
    config = RobertaConfig(
        **tiny_sizes(tokenizer, hidden_size, num_layers), max_position_embeddings=130, type_vocab_size=1
    )
    return save_tiny(path, tokenizer, RobertaModel, config, seed=0)


def tiny_sizes(tokenizer, hidden_size: int, num_layers: int) -> dict:
    """The config settings the tiny test models share."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 2,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_tiny(path: str, tokenizer, model_class, config, seed: int) -> str:
    """Save `tokenizer` and a `model_class(config)` initialised from `seed` under `path`; return `path`."""
    import torch

    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    model_class(config).save_pretrained(path)
    return path


def load_tiny(path: str):
    """The model and tokenizer saved by `build_tiny_model` (a fresh copy each call)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    return AutoModelForCausalLM.from_pretrained(path), PreTrainedTokenizerFast.from_pretrained(path)


def task_dataset(num_tasks: int, conversational: bool = False, references: bool = False) -> Dataset:
    """`num_tasks` prompts; `idx` is the task's own index (independent of anything BOTS adds)."""
    rows = {"idx": list(range(num_tasks))}
    texts = [f"task {i}: say a" for i in range(num_tasks)]
    rows["prompt"] = [[{"role": "user", "content": t}] for t in texts] if conversational else texts
    if references:
        rows["weak"] = [(i % 5) / 10 for i in range(num_tasks)]
        rows["strong"] = [0.5 + (i % 5) / 10 for i in range(num_tasks)]
    return Dataset.from_dict(rows)


def signal_dataset(num_tasks: int = 24, conversational: bool = False) -> Dataset:
    """Tasks labelled x (even rows) or y, the label written into the prompt: the embedding carries the pass rate of
    `x_reward`."""
    labels = ["x" if i % 2 == 0 else "y" for i in range(num_tasks)]
    texts = [f"{label * 6} task {i:02d}" for i, label in enumerate(labels)]
    prompts = [[{"role": "user", "content": text}] for text in texts] if conversational else texts
    return Dataset.from_dict({"idx": list(range(num_tasks)), "prompt": prompts, "label": labels})


def x_reward(completions, label, **kwargs):
    """1.0 exactly on the x tasks of `signal_dataset`."""
    return [float(value == "x") for value in label]


def even_task_reward(completions, idx, **kwargs):
    """1.0 exactly when the task index is even."""
    return [float(i % 2 == 0) for i in idx]


def tiny_settings(output_dir: str, **overrides) -> dict:
    """GRPOConfig keyword arguments for fast CPU runs; `overrides` win."""
    settings = {
        "output_dir": output_dir,
        "use_cpu": True,
        "bf16": False,
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 4,
        "max_steps": 4,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    settings.update(overrides)
    return settings


def tiny_args(output_dir: str, **overrides):
    """A BOTSConfig for fast CPU runs, explicit evidence only unless `overrides` say otherwise."""
    from trl_bots.config import BOTSConfig

    return BOTSConfig(**tiny_settings(output_dir, **{"bots_implicit_weight": 0.0, **overrides}))


os.environ.setdefault("HF_HUB_OFFLINE", "1")
