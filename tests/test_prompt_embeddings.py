"""Prompt embeddings (trl_bots.prompt_embeddings): pooling, layer, tokenization, dimension reduction, dataset columns
and the on-disk cache, each against a value computed here by other means."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import PartialState
from datasets import Dataset
from tiny import build_tiny_encoder, build_tiny_model, char_tokenizer, load_tiny, tiny_settings
from transformers import AutoModel

from trl_bots import prompt_embeddings
from trl_bots.prompt_embeddings import (
    PromptEmbedder,
    column_embeddings,
    embedding_cache_path,
    mean_pooled_hidden_states,
    middle_layer,
    reduce_dimension,
    task_embeddings,
    tokenize_prompts,
)


PROMPTS = [f"task {i}: say {'ab' * (i % 5)}{'?' * (i % 3)}" for i in range(13)]  # 14 to 27 characters


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    """A 3-layer Qwen2 (hidden size 32): its middle layer is neither the embeddings nor the last layer."""
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen2-3")), hidden_size=32, num_layers=3)


def hidden_states_by_hand(model, ids: list[int], layer: int) -> np.ndarray:
    """The full model's own `output_hidden_states` for one unpadded prompt, averaged over its tokens."""
    model.eval()
    with torch.no_grad():
        output = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return output.hidden_states[layer][0].mean(0).numpy()


# ------------------------------------------------------------------ pooling
def test_middle_layer_index():
    assert [middle_layer(layers) for layers in (1, 2, 3, 4, 28)] == [1, 1, 2, 2, 14]
    with pytest.raises(ValueError, match="num_hidden_layers must be >= 1, got 0"):
        middle_layer(0)


def test_each_prompt_gets_the_middle_layer_mean_of_the_full_model(three_layers):
    model, tokenizer = load_tiny(three_layers)
    model.train()
    ids = tokenize_prompts(tokenizer, PROMPTS)
    pooled = mean_pooled_hidden_states(model, ids, tokenizer.pad_token_id, batch_size=4)
    assert model.training  # left in the mode it had
    assert pooled.shape == (13, 32) and pooled.dtype == np.float32
    for row in (0, 6, 12):
        np.testing.assert_allclose(pooled[row], hidden_states_by_hand(model, ids[row], layer=2), rtol=1e-5, atol=1e-6)
    # Layer 0 is the token embeddings, layer 3 the last (normed) output.
    for layer in (0, 3):
        np.testing.assert_allclose(
            mean_pooled_hidden_states(model, ids[:1], tokenizer.pad_token_id, layer=layer)[0],
            hidden_states_by_hand(model, ids[0], layer),
            rtol=1e-5,
            atol=1e-6,
        )
    np.testing.assert_array_equal(
        mean_pooled_hidden_states(model, ids[:1], tokenizer.pad_token_id, layer=0)[0],
        model.get_input_embeddings().weight[ids[0]].mean(0).detach().numpy(),
    )


def test_a_prompts_vector_does_not_depend_on_its_batch_mates_or_padding(three_layers):
    model, tokenizer = load_tiny(three_layers)
    assert tokenizer.padding_side == "left"
    ids = tokenize_prompts(tokenizer, PROMPTS)
    assert len({len(row) for row in ids}) > 5  # batches with padding
    one_by_one = np.stack([mean_pooled_hidden_states(model, [row], tokenizer.pad_token_id)[0] for row in ids])
    batched = mean_pooled_hidden_states(model, ids, tokenizer.pad_token_id, batch_size=5)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
    # Another order, another batch size, another padding id: other batch mates and other padding for every prompt.
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = mean_pooled_hidden_states(model, [ids[i] for i in order], pad_token_id=7, batch_size=3)
    np.testing.assert_allclose(shuffled, one_by_one[order], rtol=1e-5, atol=1e-6)


def test_a_bfloat16_model_is_averaged_in_float32(three_layers):
    model, tokenizer = load_tiny(three_layers)
    model.to(torch.bfloat16).eval()
    ids = tokenize_prompts(tokenizer, PROMPTS[-1:])
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(ids), output_hidden_states=True).hidden_states[2][0]
    pooled = mean_pooled_hidden_states(model, ids, tokenizer.pad_token_id)[0]
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, hidden.double().mean(0).numpy(), rtol=1e-6, atol=1e-7)  # not rounded to bf16


def test_an_encoder_gets_its_own_positions(tmp_path):
    """RoBERTa counts positions from its padding id + 1: the pooled vector is what the model itself computes."""
    model = AutoModel.from_pretrained(build_tiny_encoder(str(tmp_path)))
    ids = char_tokenizer()(PROMPTS[:4])["input_ids"]
    pooled = mean_pooled_hidden_states(model, ids, pad_token_id=0, batch_size=4)
    for row in range(4):
        np.testing.assert_allclose(pooled[row], hidden_states_by_hand(model, ids[row], layer=1), rtol=1e-5, atol=1e-6)


def test_bad_layer_and_empty_prompt_errors(three_layers):
    model, tokenizer = load_tiny(three_layers)
    with pytest.raises(ValueError, match=r"layer=4 is not a hidden-state index of this model: use 0\.\.3"):
        mean_pooled_hidden_states(model, [[3, 4]], 0, layer=4)
    with pytest.raises(ValueError, match=r"prompts \[1\] tokenize to no token"):
        mean_pooled_hidden_states(model, [[3, 4], []], 0)


# ------------------------------------------------------------------ tokenization
SEEDED_TEMPLATE = (
    "{% if greeting %}system: {{ greeting }}\n{% endif %}"
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


@pytest.mark.parametrize("conversational", [False, True])
def test_prompts_are_tokenized_as_grpo_tokenizes_them(tiny_model_path, tmp_path, conversational):
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_tiny(tiny_model_path)
    tokenizer.chat_template = SEEDED_TEMPLATE
    texts = PROMPTS[:5]
    prompts = [[{"role": "user", "content": text}] for text in texts] if conversational else texts
    kwargs = {"greeting": "be brief"}
    args = GRPOConfig(**tiny_settings(str(tmp_path)), chat_template_kwargs=kwargs)
    dataset = Dataset.from_dict({"prompt": prompts})
    trainer = GRPOTrainer(
        model, lambda completions, **_: [0.0] * len(completions), args, dataset, processing_class=tokenizer
    )
    expected = trainer._tokenize_prompts(prompts)[0]
    assert tokenize_prompts(tokenizer, prompts, kwargs) == expected
    if conversational:  # the template and its keyword arguments are applied
        assert expected[0] == tokenizer(f"system: be brief\nuser: {texts[0]}\nassistant: ")["input_ids"]
        assert tokenize_prompts(tokenizer, prompts) != expected


def test_a_conversation_for_a_tokenizer_without_chat_template_is_its_message_texts():
    tokenizer = char_tokenizer(chat_template=None)
    conversation = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "add 2"}, {"type": "image"}, {"type": "text", "text": "3"}],
        },
    ]
    assert tokenize_prompts(tokenizer, [conversation]) == tokenizer(["be brief\nadd 2 3"])["input_ids"]


# ------------------------------------------------------------------ dimension reduction
def latent_data(rows=2000, seed=0):
    """Six columns on very different scales, driven by three latent factors of variances 9, 4 and 1, plus a constant
    column and a little noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, 3)) * np.array([3.0, 2.0, 1.0])
    mixing = rng.normal(size=(3, 6))
    data = (latent @ mixing + 0.01 * rng.normal(size=(rows, 6))) * np.array([1e-3, 1.0, 10.0, 1e3, 1.0, 0.1])
    return np.insert(data, 2, 5.0, axis=1).astype(np.float32)  # column 2 is constant


def standardised_by_hand(data):
    varying = data[:, data.std(axis=0) > 0].astype(np.float64)
    return (varying - varying.mean(axis=0)) / varying.std(axis=0)


def test_reduce_dimension_without_dim_standardises_every_column_and_drops_constant_ones():
    data = latent_data()
    expected = standardised_by_hand(data)
    for dim in (None, 6, 7, 100):  # dim >= the 6 varying columns: nothing to project
        reduced = reduce_dimension(data, dim)
        assert reduced.shape == (2000, 6) and reduced.dtype == np.float32
        np.testing.assert_allclose(reduced, expected, atol=2e-5)


def test_pca_keeps_the_leading_variance_with_deterministic_signs():
    data = latent_data()
    reduced = reduce_dimension(data, 3)
    assert reduced.shape == (2000, 3) and reduced.dtype == np.float32
    # The projection on the 3 leading right-singular vectors of the standardised data (an SVD, computed here).
    z = standardised_by_hand(data)
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    np.testing.assert_allclose(reduced.var(axis=0), singular[:3] ** 2 / 2000, rtol=1e-4)
    np.testing.assert_allclose(np.abs(reduced), np.abs(z @ vt[:3].T), atol=1e-3)
    assert reduced.var(axis=0).sum() > 0.999 * 6  # three factors carry all but the noise of the 6 unit variances
    np.testing.assert_allclose(np.corrcoef(reduced.T), np.eye(3), atol=1e-4)  # uncorrelated components
    # Each component's largest loading is positive, so the result does not depend on the solver's sign choice:
    # the same columns in another order give the same components.
    loadings = np.linalg.lstsq(z, reduced, rcond=None)[0]
    assert (loadings[np.abs(loadings).argmax(axis=0), np.arange(3)] > 0).all()
    permutation = np.array([5, 3, 0, 6, 1, 2, 4])
    np.testing.assert_allclose(reduce_dimension(data[:, permutation], 3), reduced, atol=1e-4)
    np.testing.assert_array_equal(reduce_dimension(data, 3), reduced)  # deterministic


def test_pca_is_fitted_on_a_seeded_sample_of_a_large_pool(monkeypatch):
    data = latent_data(rows=3000)
    full = reduce_dimension(data, 2)
    monkeypatch.setattr(prompt_embeddings, "PCA_SAMPLE", 500)
    sampled = reduce_dimension(data, 2)
    np.testing.assert_array_equal(reduce_dimension(data, 2), sampled)  # the same sample every time
    assert not np.array_equal(sampled, full)
    assert np.abs(np.corrcoef(sampled.T, full.T)[[0, 1], [2, 3]]).min() > 0.99  # nearly the same directions


@pytest.mark.parametrize("dim", [0, -3, 2.5, True, "4"])
def test_reduce_dimension_refuses_a_bad_dim(dim):
    with pytest.raises(ValueError, match=f"dim must be a positive integer, got {dim!r}"):
        reduce_dimension(latent_data(rows=10), dim)


# ------------------------------------------------------------------ dataset columns
def vectors(rows=6, width=3):
    return np.random.default_rng(1).normal(size=(rows, width)).round(3).tolist()


def test_a_column_of_vectors_is_read_as_a_2d_array():
    values = vectors()
    dataset = Dataset.from_dict({"prompt": ["p"] * 6, "emb": values})
    np.testing.assert_allclose(column_embeddings(dataset, "emb"), values, rtol=1e-6)
    ints = Dataset.from_dict({"emb": [[1, 2], [3, 4], [5, 7]]})
    np.testing.assert_array_equal(column_embeddings(ints, "emb"), [[1, 2], [3, 4], [5, 7]])


def with_row(row, value, rows=6):
    values = vectors(rows)
    values[row] = value
    return Dataset.from_dict({"emb": values})


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (with_row(2, [0.1, float("nan"), 0.3]), "bots_embedding_column 'emb': the vectors of tasks [2] hold NaN"),
        (with_row(4, [0.0, 0.0, 0.0]), "bots_embedding_column 'emb': the vectors of tasks [4] are all zeros"),
        (with_row(1, [0.5, 0.5]), "all of one length: rows [1] have 2 values; the others have 3 values."),
        (with_row(5, [1.0, 2.0, 3.0, 4.0]), "rows [5] have 4 values; the others have 3 values."),
        (with_row(3, None), "rows [3] hold no vector (None); the others have 3 values."),
        (
            Dataset.from_dict({"emb": [[1.0, 2.0], None, [3.0], [4.0, 5.0]]}),
            "rows [1] hold no vector (None); rows [2] have 1 value; the others have 2 values.",
        ),
        (Dataset.from_dict({"emb": ["a", "b", "c"]}), "must hold one vector of numbers per row, got string values"),
        (
            Dataset.from_dict({"emb": [1.0, 2.0, 3.0]}),
            "must hold one vector of numbers per row, got one number per row.",
        ),
        (Dataset.from_dict({"emb": [["a", "b"], ["c", "d"]]}), "must hold one vector of numbers per row, got string"),
        (
            Dataset.from_dict({"emb": [[[1.0, 2.0]], [[3.0, 4.0]]]}),
            "must hold one vector of numbers per row, got a [1, 2] array per row.",
        ),
    ],
    ids=["nan", "zeros", "short", "long", "none", "none-and-short", "strings", "numbers", "string-lists", "nested"],
)
def test_a_bad_column_is_refused_naming_the_rows(dataset, message):
    with pytest.raises(ValueError) as error:
        column_embeddings(dataset, "emb")
    assert message in str(error.value)


def test_a_missing_column_is_refused_naming_the_columns():
    with pytest.raises(ValueError) as error:
        column_embeddings(Dataset.from_dict({"prompt": ["a", "b"], "emb": [[1.0], [2.0]]}), "vectors")
    assert str(error.value) == (
        "bots_embedding_column='vectors' is not a column of train_dataset (columns: ['prompt', 'emb'])."
    )


# ------------------------------------------------------------------ cache
def embedding_args(**overrides):
    settings = {"bots_embedding_column": None, "bots_embedding_model": None, "bots_embedding_dim": 4}
    return SimpleNamespace(**{**settings, "chat_template_kwargs": None, **overrides})


def embed(model, tokenizer, cache_dir, dataset=None, fingerprint="f0", **overrides):
    dataset = dataset if dataset is not None else Dataset.from_dict({"prompt": PROMPTS})
    return task_embeddings(
        dataset, embedding_args(**overrides), model, tokenizer, PartialState(), fingerprint, cache_dir=cache_dir
    )


class ForwardCounter:
    """Counts the prompts `mean_pooled_hidden_states` embeds (patched into the module)."""

    def __init__(self, monkeypatch):
        self.prompts = 0
        pool = prompt_embeddings.mean_pooled_hidden_states

        def counted(model, token_ids, *args, **kwargs):
            self.prompts += len(token_ids)
            return pool(model, token_ids, *args, **kwargs)

        monkeypatch.setattr(prompt_embeddings, "mean_pooled_hidden_states", counted)


def test_the_cache_is_read_instead_of_recomputing(three_layers, tmp_path, monkeypatch, caplog):
    model, tokenizer = load_tiny(three_layers)
    counter = ForwardCounter(monkeypatch)
    with caplog.at_level(logging.INFO, logger="trl_bots.prompt_embeddings"):
        first = embed(model, tokenizer, tmp_path)
        assert counter.prompts == 13 and "from the policy model in" in caplog.text
        caplog.clear()
        second = embed(*load_tiny(three_layers), tmp_path)
    assert counter.prompts == 13  # no forward pass
    assert "13 tasks x 4 dimensions from the cache" in caplog.text
    assert first.dtype == np.float16 and first.shape == (13, 4) and first.tobytes() == second.tobytes()
    # The cached array is the reduced pooled hidden states, computed here from the pieces.
    pooled = mean_pooled_hidden_states(model, tokenize_prompts(tokenizer, PROMPTS), tokenizer.pad_token_id)
    np.testing.assert_array_equal(first, reduce_dimension(pooled, 4).astype(np.float16))
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_what_changes_the_embeddings_changes_the_cache_file(three_layers, tmp_path, monkeypatch):
    model, tokenizer = load_tiny(three_layers)
    counter = ForwardCounter(monkeypatch)
    base = embed(model, tokenizer, tmp_path)
    other_prompts = Dataset.from_dict({"prompt": [p.replace("say", "sing") for p in PROMPTS]})
    conversational = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    tokenizer.chat_template = SEEDED_TEMPLATE
    tuned = load_tiny(three_layers)[0]
    with torch.no_grad():  # a fine-tuned copy under the same name: only a middle-layer weight differs
        tuned.model.layers[1].mlp.down_proj.weight.mul_(1.01)
    variants = {
        "dataset": embed(model, tokenizer, tmp_path, other_prompts, fingerprint="f1"),
        "dim": embed(model, tokenizer, tmp_path, bots_embedding_dim=3),
        "weights": embed(tuned, tokenizer, tmp_path),
        "template": embed(model, tokenizer, tmp_path, conversational, fingerprint="f2"),
        "template kwargs": embed(
            model, tokenizer, tmp_path, conversational, fingerprint="f2", chat_template_kwargs={"greeting": "hi"}
        ),
    }
    assert counter.prompts == 13 * 6  # every variant was computed, none read from another's file
    assert len(list(tmp_path.glob("*.npy"))) == 6
    for name, array in variants.items():
        assert array.shape[0] == 13 and array.tobytes() != base.tobytes(), name


def npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not an array at all",
        npy_bytes(np.ones((13, 4), np.float16))[:-7],
        npy_bytes(np.ones((12, 4), np.float16)),
        npy_bytes(np.full((13, 4), np.nan, np.float16)),
        npy_bytes(np.ones(13 * 4, np.float16)),
        npy_bytes(np.array(["x"] * 13)),
    ],
    ids=["empty", "garbage", "truncated", "other-tasks", "nan", "1d", "strings"],
)
def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(three_layers, tmp_path, caplog, content):
    model, tokenizer = load_tiny(three_layers)
    fresh = embed(model, tokenizer, tmp_path / "fresh")
    (path,) = (tmp_path / "fresh").glob("*.npy")
    corrupt = tmp_path / "corrupt" / path.name  # the same key, another folder
    corrupt.parent.mkdir()
    corrupt.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="trl_bots.prompt_embeddings"):
        again = embed(model, tokenizer, tmp_path / "corrupt")
    assert again.tobytes() == fresh.tobytes()
    assert "BOTS: ignoring the" in caplog.text and str(corrupt) in caplog.text and "recomputing" in caplog.text
    assert corrupt.read_bytes() == path.read_bytes()  # replaced by a good one


def test_an_unwritable_cache_folder_only_warns(three_layers, tmp_path, caplog):
    model, tokenizer = load_tiny(three_layers)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="trl_bots.prompt_embeddings"):
        embeddings = embed(model, tokenizer, blocker / "embeddings")
    assert embeddings.shape == (13, 4) and "BOTS: could not cache the prompt embeddings at" in caplog.text
    np.testing.assert_array_equal(embeddings, embed(model, tokenizer, tmp_path / "writable"))


def test_the_default_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_BOTS_CACHE", str(tmp_path))
    path = embedding_cache_path({"model": "m", "dim": 4})
    assert path.parent == tmp_path / "embeddings" and path.suffix == ".npy"
    assert embedding_cache_path({"dim": 4, "model": "m"}) == path  # the key's order does not matter
    assert embedding_cache_path({"model": "m", "dim": 5}) != path


# ------------------------------------------------------------------ an active pool's newcomers
def reduced_by_hand(first, new, dim):
    """``new`` standardised by the column means and standard deviations of ``first`` (its constant columns dropped),
    projected on the ``dim`` leading right-singular vectors of standardised ``first``, each signed so that its largest
    loading is positive (float64)."""
    first, new = np.asarray(first, dtype=np.float64), np.asarray(new, dtype=np.float64)
    varying = first.std(axis=0) > 0
    mean, std = first[:, varying].mean(axis=0), first[:, varying].std(axis=0)
    vt = np.linalg.svd((first[:, varying] - mean) / std, full_matrices=False)[2][:dim]
    vt *= np.sign(vt[np.arange(dim), np.abs(vt).argmax(axis=1)])[:, None]
    return (new[:, varying] - mean) / std @ vt.T


def pooled_by_hand(model, tokenizer, prompts, layer):
    return np.stack([hidden_states_by_hand(model, ids, layer) for ids in tokenize_prompts(tokenizer, prompts)])


def pool_rows(prompts=PROMPTS, **columns):
    return [
        {"prompt": prompt, **{name: values[i] for name, values in columns.items()}} for i, prompt in enumerate(prompts)
    ]


def test_newcomers_are_reduced_by_the_first_fills_basis_with_the_policys_current_weights(three_layers):
    model, tokenizer = load_tiny(three_layers)
    embedder = PromptEmbedder(embedding_args(), model, tokenizer, PartialState())
    rows = pool_rows()
    first = embedder.fit(rows[:10])
    assert first.dtype == np.float16 and first.shape == (10, 4)
    again = embedder.embed([rows[7], rows[2], rows[9]])  # other batch mates, the same vectors
    assert again.dtype == np.float16 and again.tobytes() == first[[7, 2, 9]].tobytes()
    pooled = pooled_by_hand(model, tokenizer, PROMPTS, layer=2)
    np.testing.assert_allclose(first, reduced_by_hand(pooled[:10], pooled[:10], 4), rtol=2e-3, atol=2e-3)
    newcomers = embedder.embed(rows[10:])
    np.testing.assert_allclose(newcomers, reduced_by_hand(pooled[:10], pooled[10:], 4), rtol=2e-3, atol=2e-3)
    assert np.abs(newcomers - reduced_by_hand(pooled, pooled[10:], 4)).max() > 0.05  # not a basis refitted on all
    with torch.no_grad():  # the policy trains: newcomers are embedded with its weights of the moment, the old basis
        model.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    tuned = pooled_by_hand(model, tokenizer, PROMPTS[10:], layer=2)
    np.testing.assert_allclose(embedder.embed(rows[10:]), reduced_by_hand(pooled[:10], tuned, 4), rtol=2e-3, atol=2e-3)
    assert embedder.embed([]).shape == (0, 4)


def test_the_embedders_state_resumes_its_reduction(three_layers, tmp_path):
    from safetensors.numpy import load_file, save_file

    model, tokenizer = load_tiny(three_layers)
    rows = pool_rows()
    embedder = PromptEmbedder(embedding_args(), model, tokenizer, PartialState())
    assert embedder.state_dict() == {}
    with pytest.raises(ValueError, match=r"embed needs the dimension reduction of the first tasks: call fit"):
        embedder.embed(rows[10:])
    embedder.fit(rows[:10])
    state = embedder.state_dict()
    assert sorted(state) == ["components", "mean", "scale"] and state["components"].shape == (32, 4)
    save_file(state, tmp_path / "embedder.safetensors")  # as a checkpoint holds it
    resumed = PromptEmbedder(embedding_args(), model, tokenizer, PartialState())
    resumed.load_state_dict(load_file(tmp_path / "embedder.safetensors"))
    assert resumed.embed(rows[10:]).tobytes() == embedder.embed(rows[10:]).tobytes()
    with pytest.raises(ValueError, match="mean has 31 values but the embedding model's hidden size is 32"):
        resumed.load_state_dict({name: value[:-1] for name, value in state.items()})
    with pytest.raises(ValueError, match=r"components must be a \[32, dim\] array .* got shape \(31, 4\)"):
        resumed.load_state_dict({**state, "components": state["components"][1:]})
    with pytest.raises(ValueError, match=r"state holds \['pca'\], which are not part"):
        resumed.load_state_dict({**state, "pca": state["mean"]})


def test_newcomers_of_a_column_are_reduced_by_the_first_fills_basis():
    data = latent_data(rows=60)  # column 2 is constant: dropped for the newcomers too
    args = embedding_args(bots_embedding_column="emb", bots_embedding_dim=3)
    embedder = PromptEmbedder(args, None, None, PartialState())
    rows = pool_rows(["p"] * 60, emb=data.tolist())
    first = embedder.fit(rows[:50])
    np.testing.assert_allclose(first, reduce_dimension(data[:50], 3), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(
        embedder.embed(rows[50:]), reduced_by_hand(data[:50], data[50:], 3), rtol=2e-3, atol=2e-3
    )
    assert embedder.embed(rows[4:5]).tobytes() == first[4:5].tobytes()  # one newcomer is enough
    bad = [{**rows[50], "emb": [1.0] * 6}, {**rows[51], "emb": [np.nan] * 7}]
    with pytest.raises(ValueError, match="the vectors of the new tasks have 6 dimensions, the other tasks' 7"):
        embedder.embed(bad[:1])
    with pytest.raises(ValueError, match=r"the vectors of tasks \[1\] hold NaN"):
        embedder.embed([rows[50], bad[1]])
    with pytest.raises(ValueError, match=r"bots_embedding_column='emb' is not a column of the rows \[1\]"):
        embedder.embed([rows[50], {"prompt": "p"}])


def test_newcomers_embedded_by_another_model(three_layers, tmp_path):
    path = build_tiny_encoder(str(tmp_path))
    model, tokenizer = load_tiny(three_layers)
    embedder = PromptEmbedder(embedding_args(bots_embedding_model=path), model, tokenizer, PartialState())
    rows = pool_rows()
    embedder.fit(rows[:10])
    encoder = AutoModel.from_pretrained(path)
    pooled = pooled_by_hand(encoder, char_tokenizer(chat_template=None), PROMPTS, layer=1)  # 2 layers: middle is 1
    np.testing.assert_allclose(
        embedder.embed(rows[10:]), reduced_by_hand(pooled[:10], pooled[10:], 4), rtol=2e-3, atol=2e-3
    )


class Gathered(Exception):
    """Raised by a stand-in for gather_object once a process's share is computed."""


@pytest.mark.parametrize("prompts", [2, 7])
def test_every_process_runs_the_same_forward_passes(three_layers, monkeypatch, prompts):
    """Under DeepSpeed ZeRO-3 each process must run as many forward passes as the others, even with fewer prompts than
    processes: each of 3 simulated processes embeds ceil(prompts / 3) prompts and keeps its own share's vectors."""
    model, tokenizer = load_tiny(three_layers)
    ids = tokenize_prompts(tokenizer, PROMPTS[:prompts])
    counter = ForwardCounter(monkeypatch)
    shares = []

    def gather(obj):
        shares.append(obj[0])
        raise Gathered

    monkeypatch.setattr(prompt_embeddings, "gather_object", gather)
    for rank in range(3):
        counter.prompts = 0
        process = SimpleNamespace(process_index=rank, num_processes=3, is_local_main_process=rank == 0)
        with pytest.raises(Gathered):
            prompt_embeddings.model_embeddings(model, ids, tokenizer.pad_token_id, process, progress=False)
        assert counter.prompts == -(-prompts // 3)
        expected = mean_pooled_hidden_states(model, ids[rank::3], tokenizer.pad_token_id)
        np.testing.assert_allclose(shares[rank], expected, rtol=1e-5, atol=1e-6)
