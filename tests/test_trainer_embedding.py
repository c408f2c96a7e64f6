"""BOTSGRPOTrainer with the embedding estimator: a plain dataset, a column of vectors, another encoder, the cache,
exact resume, domain quotas, two processes (DDP, DeepSpeed ZeRO-3); real GRPO loops on the tiny model."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from accelerate import PartialState
from launching import EstimatorLog, accelerate_launch, read_ranks
from recording import PosteriorLog, RewardRecorder, SelectionLog, expected_quotas
from safetensors.numpy import load_file
from test_deepspeed import zero_config
from tiny import build_tiny_encoder, build_tiny_model, load_tiny, signal_dataset, tiny_args, x_reward
from transformers import AutoModel, AutoTokenizer

from trl_bots import trainer as trainer_module
from trl_bots.embedding_estimator import STATE_ARRAYS, EmbeddingEstimator
from trl_bots.prompt_embeddings import middle_layer, reduce_dimension, task_embeddings, tokenize_prompts
from trl_bots.state import SELECTOR_FILE
from trl_bots.trainer import BOTSGRPOTrainer


class EmbeddingsSeen:
    """Records the embeddings each trainer built (`trl_bots.trainer.task_embeddings`, patched)."""

    def __init__(self, monkeypatch):
        self.arrays: list[np.ndarray] = []
        build = trainer_module.task_embeddings

        def recorded(*args, **kwargs):
            self.arrays.append(build(*args, **kwargs))
            return self.arrays[-1]

        monkeypatch.setattr(trainer_module, "task_embeddings", recorded)


def make_trainer(model_path, output_dir, dataset=None, **overrides):
    """A trainer with the defaults a plain dataset gets (the implicit weight left to BOTSConfig), B = 4 tasks."""
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    settings = {"bots_implicit_weight": None, "per_device_train_batch_size": 8, "max_steps": 8, **overrides}
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(x_reward),
        args=tiny_args(str(output_dir), **settings),
        train_dataset=dataset if dataset is not None else signal_dataset(),
        processing_class=tokenizer,
    )
    log = PosteriorLog(trainer)
    trainer.add_callback(log)
    return trainer, recorder, log


def logged(trainer, name):
    """The values of a metric, one per step (NaN where the Trainer's log holds None for it)."""
    return [math.nan if entry[name] is None else entry[name] for entry in trainer.state.log_history if name in entry]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own."""
    monkeypatch.setenv("TRL_BOTS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


# ------------------------------------------------------------------ the default on a plain dataset
def test_a_plain_dataset_gets_the_embedding_estimator_and_learns_from_it(tiny_model_path, tmp_path, cache):
    dataset = signal_dataset(40)
    trainer, recorder, _ = make_trainer(tiny_model_path, tmp_path, dataset)
    assert trainer.args.bots_implicit_estimator == "embedding" and trainer.args.bots_implicit_weight == 0.2
    estimator = trainer.selector.estimator
    assert isinstance(estimator, EmbeddingEstimator) and trainer.selector.implicit_weight == 0.2
    assert estimator.features.shape == (40, 16)  # the tiny model's hidden size: nothing to reduce below 64
    assert len(list(cache.glob("*.npy"))) == 1
    trainer.train()

    pearson, mae, weight = (logged(trainer, f"bots/implicit_{name}") for name in ("pearson", "mae", "weight"))
    assert len(pearson) == len(mae) == len(weight) == 8
    # Round 1: nothing to predict with; rho stays 0 until the predictions have been scored against a round.
    assert weight[0] == 0.0 and math.isnan(pearson[0]) and math.isnan(mae[0])
    # From round 2 the predictions (made before the round's rewards) are scored: their correlation with the observed
    # rates is undefined (NaN) exactly in the rounds whose tasks are all of one kind.
    mixed = [len({i % 2 for i in call["idx"]}) == 2 for call in recorder.calls]
    assert [math.isfinite(value) for value in pearson[1:]] == mixed[1:] and sum(mixed[2:]) >= 4
    assert all(value > 0.9 for value, both in zip(pearson[2:], mixed[2:], strict=True) if both)
    assert all(math.isfinite(value) for value in mae[1:]) and max(mae[2:]) < 0.3
    # rho follows the honest accuracy: 0.2 times the running correlation of the scored predictions, > 0 from the
    # first round that could score them.
    first_scored = mixed.index(True, 1)
    assert weight[1:first_scored] == [0.0] * (first_scored - 1) and all(0 < w <= 0.2 for w in weight[first_scored:])
    assert weight[-1] == pytest.approx(0.2 * estimator.correlation)

    # The predictions separate the two kinds of task, and reach the tasks never rolled out through the posterior.
    x_tasks = np.arange(40) % 2 == 0
    predicted = estimator.predict()
    assert predicted[x_tasks].min() > 0.5 > predicted[~x_tasks].max()
    selected = np.zeros(40, dtype=bool)
    selected[[i for call in recorder.calls for i in call["idx"]]] = True
    assert (~selected).sum() >= 8
    mean = trainer.selector.posterior_mean()
    unseen_x, unseen_y = mean[~selected & x_tasks], mean[~selected & ~x_tasks]
    assert (unseen_x > 0.5).all() and (unseen_y < 0.5).all() and unseen_x.size + unseen_y.size == (~selected).sum()


def test_a_second_trainer_reads_the_cache(tiny_model_path, tmp_path, cache, monkeypatch, caplog, capsys):
    seen = EmbeddingsSeen(monkeypatch)
    with caplog.at_level(logging.INFO, logger="trl_bots.prompt_embeddings"):
        first = make_trainer(tiny_model_path, tmp_path / "first")[0]
        assert "24 tasks x 16 dimensions from the policy model in" in caplog.text
        assert "BOTS prompt embeddings" not in capsys.readouterr().err  # no progress bar: disable_tqdm=True
        caplog.clear()
        second = make_trainer(tiny_model_path, tmp_path / "second")[0]
    (path,) = cache.glob("*.npy")
    assert f"24 tasks x 16 dimensions from the cache {path} in" in caplog.text
    assert seen.arrays[0].dtype == np.float16 and seen.arrays[0].tobytes() == seen.arrays[1].tobytes()
    np.testing.assert_array_equal(first.selector.estimator.features, second.selector.estimator.features)


# ------------------------------------------------------------------ a column of vectors
def test_a_column_of_vectors_feeds_the_estimator(tiny_model_path, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(24, 10)) * np.linspace(0.1, 3.0, 10)
    vectors[:, :5] += np.where(np.arange(24) % 2 == 0, 1.5, -1.5)[:, None]  # the label: the leading component
    dataset = signal_dataset().add_column("emb", vectors.tolist())
    seen = EmbeddingsSeen(monkeypatch)
    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path, dataset, bots_embedding_column="emb", bots_embedding_dim=3, max_steps=4
    )
    # By hand: standardise, project on the 3 leading right-singular vectors (largest loading positive), float16;
    # the estimator then centres the columns and divides them by one common scale.
    column = np.asarray(dataset.with_format("numpy")["emb"][:], dtype=np.float64)
    z = (column - column.mean(axis=0)) / column.std(axis=0)
    vt = np.linalg.svd(z, full_matrices=False)[2][:3].T
    vt *= np.sign(vt[np.abs(vt).argmax(axis=0), np.arange(3)])
    reduced = (z @ vt).astype(np.float16)
    np.testing.assert_allclose(seen.arrays[0], reduced, atol=4e-3)
    centred = reduced - reduced.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(
        trainer.selector.estimator.features, centred / np.sqrt(centred.var(axis=0).mean()), atol=4e-3
    )
    trainer.train()
    assert logged(trainer, "bots/implicit_weight")[-1] > 0  # the column's label direction is learned


@pytest.mark.parametrize(
    ("row", "value", "message"),
    [
        (3, [0.5, float("nan"), 0.1], "bots_embedding_column 'emb': the vectors of tasks [3] hold NaN or infinite"),
        (5, [0.5, 0.1], "rows [5] have 2 values; the others have 3 values."),
        (2, None, "rows [2] hold no vector (None); the others have 3 values."),
        (4, [0.0, 0.0, 0.0], "bots_embedding_column 'emb': the vectors of tasks [4] are all zeros"),
    ],
    ids=["nan", "ragged", "none", "zeros"],
)
def test_a_hostile_column_stops_the_build_naming_the_row(tiny_model_path, tmp_path, row, value, message):
    vectors = np.random.default_rng(0).normal(size=(24, 3)).tolist()
    vectors[row] = value
    with pytest.raises(ValueError) as error:
        make_trainer(
            tiny_model_path, tmp_path, signal_dataset().add_column("emb", vectors), bots_embedding_column="emb"
        )
    assert message in str(error.value)


# ------------------------------------------------------------------ another encoder
def by_hand(model_path: str, prompts: list[str], dim: int) -> np.ndarray:
    """Each prompt alone through the encoder (its own tokenizer), its middle layer averaged, then reduced."""
    model, tokenizer = AutoModel.from_pretrained(model_path).eval(), AutoTokenizer.from_pretrained(model_path)
    layer = middle_layer(model.config.num_hidden_layers)
    pooled = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            pooled.append(model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0].mean(0).numpy())
    return reduce_dimension(np.stack(pooled), dim).astype(np.float16)


@pytest.mark.parametrize("encoder", ["qwen2", "roberta"])
def test_another_encoder_by_path(tiny_model_path, tmp_path, cache, monkeypatch, encoder):
    """A second causal LM (3 layers, hidden size 24) on text prompts; a RoBERTa sentence encoder, which has no chat
    template, on conversations (it reads the messages' texts)."""
    if encoder == "qwen2":
        path, dataset = (
            build_tiny_model(str(tmp_path / encoder), hidden_size=24, num_layers=3, seed=1),
            signal_dataset(),
        )
        texts = dataset["prompt"]
    else:
        path, dataset = build_tiny_encoder(str(tmp_path / encoder)), signal_dataset(conversational=True)
        texts = [conversation[0]["content"] for conversation in dataset["prompt"]]
    seen = EmbeddingsSeen(monkeypatch)
    make_trainer(tiny_model_path, tmp_path / "policy", dataset, bots_embedding_dim=5)
    make_trainer(tiny_model_path, tmp_path / "encoder", dataset, bots_embedding_model=path, bots_embedding_dim=5)
    policy, encoded = seen.arrays
    assert encoded.shape == (24, 5) and policy.shape == (24, 5)
    np.testing.assert_allclose(encoded, by_hand(path, texts, 5), atol=4e-3)
    assert np.abs(encoded.astype(np.float32) - policy).max() > 0.5  # not the policy's embeddings
    assert len(list(cache.glob("*.npy"))) == 2


# ------------------------------------------------------------------ resume
def test_exact_resume_with_the_embedding_estimator(tiny_model_path, tmp_path, monkeypatch):
    """6 steps in one go == 3 steps, checkpoint, resume (embeddings recomputed: an empty cache); the selector file
    holds the estimator's arrays."""
    common = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    monkeypatch.setenv("TRL_BOTS_CACHE", str(tmp_path / "cache-full"))
    full, full_recorder, full_log = make_trainer(tiny_model_path, tmp_path / "full", **common)
    full_estimator, full_selections = EstimatorLog(full), SelectionLog(full)
    full.add_callback(full_estimator)
    full.train()
    monkeypatch.setenv("TRL_BOTS_CACHE", str(tmp_path / "cache-resumed"))
    resumed, resumed_recorder, resumed_log = make_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed_estimator, resumed_selections = EstimatorLog(resumed), SelectionLog(resumed)
    resumed.add_callback(resumed_estimator)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))

    assert [s["tasks"] for s in resumed_selections.selections] == [s["tasks"] for s in full_selections.selections[3:]]
    assert resumed_recorder.calls == full_recorder.calls[3:]
    assert resumed_log.steps == full_log.steps[3:]  # bit-identical alpha and beta after every step
    assert resumed_estimator.steps == full_estimator.steps[3:]  # theta, cache, ... bit-identical after every step
    # The resumed log holds the checkpoint's first 3 steps, then its own.
    assert logged(resumed, "bots/implicit_weight") == logged(full, "bots/implicit_weight")
    assert min(logged(resumed, "bots/implicit_weight")[3:]) > 0  # the predictions weigh in every resumed round

    # The selector file: the estimator's arrays as tensors named estimator/<name>, equal to the state at step 3.
    tensors = load_file(str(tmp_path / "full" / "checkpoint-3" / SELECTOR_FILE))
    assert sorted(name for name in tensors if name.startswith("estimator/")) == sorted(
        f"estimator/{name}" for name in STATE_ARRAYS
    )
    for name in STATE_ARRAYS:
        assert tensors[f"estimator/{name}"].tobytes().hex() == full_estimator.steps[2][name], name
    assert tensors["estimator/cache"].shape == (24,) and tensors["estimator/theta"].shape == (17,)


# ------------------------------------------------------------------ domains
def test_domain_quotas_hold_with_the_embedding_estimator(tiny_model_path, tmp_path):
    dataset = signal_dataset().add_column("domain", ["a" if i % 3 == 0 else "b" for i in range(24)])
    trainer, recorder, _ = make_trainer(
        tiny_model_path, tmp_path, dataset, bots_domain_column="domain", bots_domain_weights={"a": 1, "b": 3}
    )
    assert isinstance(trainer.selector.estimator, EmbeddingEstimator)
    trainer.train()
    domains = np.array(dataset["domain"])
    counts = [[int((domains[call["idx"][::2]] == name).sum()) for name in ("a", "b")] for call in recorder.calls]
    assert counts == expected_quotas([1.0, 3.0], 8, batch_size=4)
    assert logged(trainer, "bots/implicit_weight")[-1] > 0


# ------------------------------------------------------------------ two processes
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "zero3"])
def test_two_processes_share_the_embedding_pass_and_hold_the_same_bytes(tiny_model_path, tmp_path, mode):
    """2 CPU processes, DDP over gloo (then a second trainer reads the cache) or DeepSpeed ZeRO-3 (the trainer loads
    the model: its parameters are partitioned, and gathered whole for the pass)."""
    out = tmp_path / "out"
    out.mkdir()
    env = {"TRL_BOTS_CACHE": str(tmp_path / "cache")}
    if mode == "zero3":
        env["DS_ACCELERATOR"] = "cpu"
    config = zero_config(tmp_path, 3) if mode == "zero3" else None
    accelerate_launch("launched_embedding.py", mode, tiny_model_path, out, config_file=config, env=env)
    ranks = read_ranks(out, 2)
    assert ranks[0]["world"] == ranks[1]["world"] == 2

    # Each process embedded its own half of the prompts, rows rank, rank + 2, ..., with its parameters whole; once.
    model, tokenizer = load_tiny(tiny_model_path)
    dataset = signal_dataset()
    token_ids = tokenize_prompts(tokenizer, dataset["prompt"])
    # ZeRO-3's second trainer embeds with bots_embedding_model, the same path through AutoModel and AutoTokenizer.
    encoder_ids = (
        [AutoTokenizer.from_pretrained(tiny_model_path)(list(dataset["prompt"]))["input_ids"]]
        if mode == "zero3"
        else []
    )
    for rank, record in enumerate(ranks):
        assert record["shares"] == [ids[rank::2] for ids in [token_ids, *encoder_ids]]
        assert record["partitioned"] == [mode == "zero3"] * len(record["shares"])
        assert record["gathered_whole"] == [True] * len(record["shares"])
    # Every trainer on every process got the same bytes (with DDP the second trainer's came from the cache) ...
    assert ranks[0]["embeddings"] == ranks[1]["embeddings"] and len(ranks[0]["embeddings"]) == 2
    if mode == "ddp":
        assert ranks[0]["embeddings"][0] == ranks[0]["embeddings"][1]
    # ... which one process computes too, but for the rounding of other batches (float16 keeps 11 bits).
    sources = [{}, {"bots_embedding_model": tiny_model_path} if mode == "zero3" else {}]
    for k, source in enumerate(sources):
        args = tiny_args(str(tmp_path / "one"), bots_implicit_weight=None, **source)
        alone = task_embeddings(dataset, args, model, tokenizer, PartialState(), "alone", cache_dir=tmp_path / "one")
        shared = np.frombuffer(bytes.fromhex(ranks[0]["embeddings"][k]), np.float16).reshape(alone.shape)
        np.testing.assert_allclose(shared, alone, atol=4e-3)

    # The same rounds, and the same selector bytes (posterior, estimator state, checksum) after every step.
    assert ranks[0]["rounds"] == ranks[1]["rounds"] and len(ranks[0]["rounds"]) == 4
    assert ranks[0]["steps"] == ranks[1]["steps"] and ranks[0]["estimator"] == ranks[1]["estimator"]
    assert ranks[0]["implicit_weight"] == ranks[1]["implicit_weight"] and ranks[0]["implicit_weight"][-1] > 0
