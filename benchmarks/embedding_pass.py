"""Cost of the embedding pass: the prompt embeddings BOTS computes once, before training, without reference columns.

Times :func:`trl_bots.prompt_embeddings.task_embeddings` (one process, cache off) on two models built locally from a
``transformers`` config, with random weights (the cost does not depend on them):

* ``demo``: the offline demonstration's model and pool (``examples/offline_setup``: 1,000 additions);
* ``qwen2.5-0.5b``: Qwen2.5-0.5B's architecture (24 layers, hidden size 896) on ``--prompts`` synthetic prompts of
  about ``--prompt-tokens`` tokens (default 2,000 prompts of ~100 tokens), the pass extrapolated to 1e5 prompts
  (it is linear in the number of prompts: one batched forward pass per prompt, up to the middle layer's output).

    HF_HUB_OFFLINE=1 python benchmarks/embedding_pass.py [--quick] [--output FILE]

Prints JSON: per model the seconds of the pass, prompts per second, and the seconds per 1e5 prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from trl_bots.prompt_embeddings import task_embeddings


ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "examples" / "offline_setup"
QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


def time_pass(model, tokenizer, prompts: list, dim: int) -> dict:
    """Seconds of one embedding pass over ``prompts`` (a fresh cache folder: nothing is read from a cache)."""
    args = SimpleNamespace(
        bots_embedding_column=None, bots_embedding_model=None, bots_embedding_dim=dim, chat_template_kwargs=None
    )
    dataset = Dataset.from_dict({"prompt": prompts})
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        embeddings = task_embeddings(dataset, args, model, tokenizer, PartialState(), "benchmark", cache_dir=cache)
        seconds = time.perf_counter() - start
    return {
        "prompts": len(prompts),
        "dimensions": int(embeddings.shape[1]),
        "seconds": seconds,
        "prompts_per_second": len(prompts) / seconds,
        "seconds_per_1e5_prompts": seconds * 1e5 / len(prompts),
    }


def demo_model() -> dict:
    """The demonstration's shipped warm start on its own pool."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(SETUP / "warm_start")
    tokenizer = AutoTokenizer.from_pretrained(SETUP / "warm_start")
    prompts = Dataset.from_json(str(SETUP / "train.jsonl"))["prompt"]
    return {"model": "demo", "parameters": model.num_parameters(), **time_pass(model, tokenizer, prompts, 64)}


def qwen_like(num_prompts: int, prompt_tokens: int) -> dict:
    """Qwen2.5-0.5B's architecture with random weights, on synthetic prompts of about ``prompt_tokens`` tokens."""
    tokenizer = AutoTokenizer.from_pretrained(SETUP / "warm_start")  # any tokenizer: only the token counts matter
    config = Qwen2Config(vocab_size=len(tokenizer), **QWEN_05B)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    rng = np.random.default_rng(0)
    alphabet = np.array(list("0123456789+= "))
    prompts = ["".join(rng.choice(alphabet, prompt_tokens)) for _ in range(num_prompts)]
    return {
        "model": "qwen2.5-0.5b architecture, random weights",
        "parameters": model.num_parameters(),
        "prompt_tokens": prompt_tokens,
        **time_pass(model, tokenizer, prompts, 64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000, help="synthetic prompts for the 0.5B architecture")
    parser.add_argument("--prompt-tokens", type=int, default=100, help="tokens per synthetic prompt")
    parser.add_argument("--quick", action="store_true", help="40 synthetic prompts of 20 tokens (a smoke test)")
    parser.add_argument("--output", help="also write the JSON to this file")
    options = parser.parse_args(argv)
    if options.quick:
        options.prompts, options.prompt_tokens = 40, 20
    report = {"torch_threads": torch.get_num_threads(), "runs": []}
    for run in (demo_model, lambda: qwen_like(options.prompts, options.prompt_tokens)):
        report["runs"].append(run())
        row = report["runs"][-1]
        print(f"[embedding_pass] {row['model']}: {row['prompts']} prompts in {row['seconds']:.1f} s", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if options.output:
        Path(options.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
