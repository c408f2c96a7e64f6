"""Run on 2 CPU processes by test_trainer_embedding.py: `launched_embedding.py <ddp|zero3> <model> <out>`.

Trains 4 steps of BOTS with the embedding estimator on `tiny.signal_dataset`, the embeddings computed from the policy
at start (each process a share). `ddp`: the model is loaded before the trainer, then a second trainer on the same
model and tasks reads the embeddings from the cache. `zero3` (DeepSpeed ZeRO-3): the trainer loads the model from its
path, so it is partitioned across the processes when the embeddings are computed; then a second trainer embeds the
prompts with `bots_embedding_model` (the same path, loaded by `AutoModel`, partitioned as well). Asserts the world size and the
distributed type on every rank, and writes what this rank saw (the prompts it embedded, whether its parameters were
partitioned, the embeddings each trainer got, the selector after every step, the selected rounds) to
`<out>/rank<i>.json`.
"""

import json
import sys

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from launching import EstimatorLog, end_launched_rank
from recording import PosteriorLog, SelectionLog
from tiny import load_tiny, signal_dataset, tiny_args, x_reward

from trl_bots import prompt_embeddings
from trl_bots import trainer as trainer_module
from trl_bots.trainer import BOTSGRPOTrainer


class EmbeddingPass:
    """Wraps the embedding pass: the token ids this process embedded and whether the model's parameters were
    partitioned (ZeRO-3) and gathered whole around the pass; the embeddings each trainer got (hex)."""

    def __init__(self):
        self.shares: list[list[list[int]]] = []
        self.partitioned: list[bool] = []
        self.gathered_whole: list[bool] = []
        self.embeddings: list[str] = []
        pool, build = prompt_embeddings.mean_pooled_hidden_states, trainer_module.task_embeddings

        def pooled(model, token_ids, *args, **kwargs):
            parameters = list(model.parameters())
            self.shares.append([list(ids) for ids in token_ids])
            self.partitioned.append(all(hasattr(parameter, "ds_id") for parameter in parameters))
            self.gathered_whole.append(
                all(parameter.numel() == getattr(parameter, "ds_numel", parameter.numel()) for parameter in parameters)
            )
            return pool(model, token_ids, *args, **kwargs)

        def built(*args, **kwargs):
            embeddings = build(*args, **kwargs)
            self.embeddings.append(embeddings.tobytes().hex())
            return embeddings

        prompt_embeddings.mean_pooled_hidden_states = pooled
        trainer_module.task_embeddings = built


def build(mode: str, model_path: str, output_dir: str, **overrides) -> BOTSGRPOTrainer:
    settings = {"bots_implicit_weight": None, "per_device_train_batch_size": 4, "max_steps": 4, **overrides}
    args = tiny_args(output_dir, **settings)
    model, tokenizer = load_tiny(model_path)
    if mode == "zero3":
        model = model_path  # loaded by the trainer, after the DeepSpeed config is known: partitioned at load
    trainer = BOTSGRPOTrainer(model, x_reward, args=args, train_dataset=signal_dataset(), processing_class=tokenizer)
    expected = DistributedType.DEEPSPEED if mode == "zero3" else DistributedType.MULTI_CPU
    assert trainer.accelerator.distributed_type == expected, trainer.accelerator.distributed_type
    assert trainer.accelerator.num_processes == torch.distributed.get_world_size() == 2
    return trainer


def main():
    mode, model_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    embedding_pass = EmbeddingPass()
    trainer = build(mode, model_path, f"{out}/run")
    posterior, estimator, selections = PosteriorLog(trainer), EstimatorLog(trainer), SelectionLog(trainer)
    trainer.add_callback(posterior)
    trainer.add_callback(estimator)
    trainer.train()
    if mode == "zero3":
        engine = trainer.model_wrapped
        assert type(engine).__name__ == "DeepSpeedEngine" and engine.zero_optimization_stage() == 3
        build(mode, model_path, f"{out}/encoder", bots_embedding_model=model_path)  # loaded, hence partitioned, too
    else:
        build(mode, model_path, f"{out}/again")  # reads the cache
    result = {
        "world": trainer.accelerator.num_processes,
        "shares": embedding_pass.shares,
        "partitioned": embedding_pass.partitioned,
        "gathered_whole": embedding_pass.gathered_whole,
        "embeddings": embedding_pass.embeddings,
        "steps": posterior.steps,
        "estimator": estimator.steps,
        "rounds": [selection["tasks"] for selection in selections.selections],
        "implicit_weight": [
            entry["bots/implicit_weight"] for entry in trainer.state.log_history if "bots/implicit_weight" in entry
        ],
    }
    with open(f"{out}/rank{PartialState().process_index}.json", "w") as f:
        json.dump(result, f)
    end_launched_rank()


if __name__ == "__main__":
    main()
