"""Prompt embeddings for the embedding estimator: one vector per task, identical on every process.

By default the vector of a prompt is the mean, over the prompt's tokens (tokenized as GRPO tokenizes it, chat template
included), of the policy model's hidden states at its middle layer::

    e = (1 / T) * sum_{t : mask_t = 1} h_t^(layer)                 (h^(0): the token embeddings)

computed in batches, the prompts sorted by length so that a batch carries little padding. The batches are padded on
the right and the padding is masked out of the mean: a real token never attends to a pad and keeps the position it has
in the unpadded prompt, so a prompt gets the same vector whatever its batch. The middle layer is the
default (:func:`middle_layer`): the last layers of a causal LM specialise in the next token, the first ones hold little
more than the tokens. Instead of the policy, ``bots_embedding_model`` names another ``transformers`` model (the same
pooling over its hidden states), and ``bots_embedding_column`` reads precomputed vectors from the dataset.

:func:`reduce_dimension` then standardises each column and keeps at most ``bots_embedding_dim`` dimensions by PCA (the
directions of largest variance, fitted on a seeded sample of at most :data:`PCA_SAMPLE` rows), stored as float16.

On several processes each computes a share of the prompts, the shares are gathered, and the main process reduces the
dimension and broadcasts the result, so every process holds the same bytes. The reduced array is cached on disk
(:func:`embedding_cache_path`), keyed by the model and its weights, the layer, the dimension, the task-list fingerprint
and the prompts' token ids: a resumed or repeated run reads it instead of recomputing.

An active pool's tasks arrive over the run: :class:`PromptEmbedder` embeds the first fill, keeps the
:class:`DimensionReduction` fitted on it (its state), and embeds each newcomer from the same source and reduces it by
the same map, so every vector the estimator sees lives in one set of coordinates.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from huggingface_hub.constants import HF_HOME
from tqdm.auto import tqdm

from .embedding_estimator import Standardisation, check_embeddings, standardise
from .state import write_atomic


logger = logging.getLogger(__name__)

# PCA is fitted on at most this many prompts (a seeded sample): the covariance of 20,000 rows pins the leading
# directions, and its cost no longer grows with the pool.
PCA_SAMPLE = 20_000
PCA_SEED = 0
BATCH_SIZE = 32  # prompts per forward pass of the embedding pass
WEIGHT_SAMPLE = 4096  # values of each parameter (besides the input embeddings) in the cache key's weight digest


def middle_layer(num_hidden_layers: int) -> int:
    """The default layer: ``ceil(L / 2)`` of ``L`` decoder layers, an index into ``output_hidden_states`` (0: the
    token embeddings, ``L``: the last layer's output), e.g. 1 of 2, 14 of 28."""
    if num_hidden_layers < 1:
        raise ValueError(f"num_hidden_layers must be >= 1, got {num_hidden_layers}.")
    return (num_hidden_layers + 1) // 2


def tokenize_prompts(processing_class: Any, prompts: Sequence[Any], chat_template_kwargs: dict | None = None):
    """Token ids of each prompt as GRPO tokenizes it for generation: text as it is, a conversation through the chat
    template with the generation prompt. A tokenizer without a chat template (a sentence encoder's, for
    ``bots_embedding_model``) gets a conversation's message texts, one per line."""
    if isinstance(prompts[0], list):  # conversational, as trl.data_utils.is_conversational decides
        if getattr(processing_class, "chat_template", None) is None:
            prompts = ["\n".join(message_text(message) for message in conversation) for conversation in prompts]
        else:
            return processing_class.apply_chat_template(
                conversation=list(prompts),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                **(chat_template_kwargs or {}),
            )["input_ids"]
    return processing_class(text=list(prompts))["input_ids"]


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message: its content, or the text parts of a list of content blocks."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


def token_digest(token_ids: Sequence[Sequence[int]]) -> str:
    """SHA-256 of the prompts' token ids (their lengths, then all ids): what the model reads, whatever the tokenizer,
    chat template or ``chat_template_kwargs`` that produced it."""
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    digest = hashlib.sha256(lengths.tobytes())
    digest.update(np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum())))
    return digest.hexdigest()


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM (a PEFT model's base, LoRA layers included): no logits are computed."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, model.base_model_prefix, model)


@torch.no_grad()
def mean_pooled_hidden_states(
    model: torch.nn.Module,
    token_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    layer: int | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> np.ndarray:
    """``[len(token_ids), hidden_size]`` float32: the mean over each prompt's tokens of the hidden states at ``layer``.

    Args:
        model: a ``transformers`` causal LM (or a PEFT model around one); left in the train/eval mode it had.
        token_ids: the token ids of each prompt (:func:`tokenize_prompts`).
        pad_token_id: the id that pads a batch (masked out: its value does not matter).
        layer: index into the model's ``hidden_states`` (0 = token embeddings, ``num_hidden_layers`` = last layer);
            ``None``: :func:`middle_layer`.
        batch_size: prompts per forward pass.
        progress: show a progress bar.
    """
    num_layers = model.config.num_hidden_layers
    layer = middle_layer(num_layers) if layer is None else layer
    if not 0 <= layer <= num_layers:
        raise ValueError(f"layer={layer} is not a hidden-state index of this model: use 0..{num_layers}.")
    lengths = np.array([len(ids) for ids in token_ids])
    if (lengths == 0).any():
        raise ValueError(f"prompts {np.flatnonzero(lengths == 0)[:10].tolist()} tokenize to no token.")
    decoder = _decoder(model)
    device = next(model.parameters()).device
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding per batch
    out = np.empty((len(token_ids), model.config.hidden_size), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="BOTS prompt embeddings", disable=not progress):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = torch.full((rows.size, width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((rows.size, width), dtype=torch.long)
            # Right padding: every model's default positions (0, 1, ... for a causal LM, from padding id + 1 for
            # RoBERTa) are then those of the unpadded prompt, and a real token never attends to a pad.
            for k, row in enumerate(rows):
                ids[k, : lengths[row]] = torch.as_tensor(token_ids[row])
                mask[k, : lengths[row]] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
            hidden = hidden.hidden_states[layer].float()  # a bfloat16 model's mean is summed in float32
            weights = mask.unsqueeze(-1).float()
            out[rows] = ((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def reduce_dimension(embeddings: np.ndarray, dim: int | None, seed: int = PCA_SEED) -> np.ndarray:
    """``embeddings`` ``[N, h]`` with each column standardised (the constant ones dropped), then projected on the
    ``min(dim, h)`` leading eigenvectors of the correlation matrix of a seeded sample of at most :data:`PCA_SAMPLE`
    rows (float32; ``dim=None``: standardised only); see :func:`principal_components`. Standardising first keeps a few
    huge-activation dimensions of an LLM's hidden states from taking the leading components."""
    check_dim(dim)
    standardised = standardise(embeddings)
    components = principal_components(standardised, dim, seed)
    return standardised if components is None else standardised @ components.astype(np.float32)


def check_dim(dim: Any) -> None:
    """A number of dimensions to keep: ``None`` (all) or a positive integer."""
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")


def principal_components(standardised: np.ndarray, dim: int | None, seed: int = PCA_SEED) -> np.ndarray | None:
    """``[h, dim]`` float64: the ``dim`` leading eigenvectors of ``X^T X`` over a seeded sample of at most
    :data:`PCA_SAMPLE` rows of ``standardised`` ``[N, h]``; ``None`` when ``dim`` is ``None`` or ``>= h`` (nothing to
    project). Each component's sign is fixed so that its largest loading is positive: the result does not depend on
    the eigen-solver's sign choice."""
    if dim is None or dim >= standardised.shape[1]:
        return None
    sample = standardised
    if standardised.shape[0] > PCA_SAMPLE:
        rng = np.random.default_rng(seed)
        sample = standardised[np.sort(rng.choice(standardised.shape[0], PCA_SAMPLE, replace=False))]
    sample = sample.astype(np.float64)
    _, vectors = np.linalg.eigh(sample.T @ sample)
    leading = vectors[:, ::-1][:, :dim]
    leading *= np.sign(leading[np.abs(leading).argmax(axis=0), np.arange(dim)])
    return leading


class DimensionReduction(NamedTuple):
    """The map :func:`reduce_dimension` fits, kept so that vectors embedded later land in the same coordinates: the
    per-column standardisation, then the projection on the principal ``components`` (``None``: standardised only)."""

    standardisation: Standardisation
    components: np.ndarray | None  # [kept columns, dim] float64

    @classmethod
    def fit(cls, embeddings: np.ndarray, dim: int | None, seed: int = PCA_SEED) -> DimensionReduction:
        check_dim(dim)
        standardisation = Standardisation.fit(embeddings)
        return cls(standardisation, principal_components(standardisation.apply(embeddings), dim, seed))

    @property
    def dim(self) -> int:
        """Dimensions of the reduced vectors."""
        return int((self.standardisation.scale != 0).sum()) if self.components is None else self.components.shape[1]

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """``embeddings`` ``[n, h]`` reduced, as float16 ``[n, dim]``. The projection is summed in float64: BLAS may
        sum a row in another order for another number of rows, and float64 keeps that far below float16's
        resolution, so a task gets the same vector whichever tasks are embedded with it."""
        standardised = self.standardisation.apply(embeddings)
        if self.components is None:
            return standardised.astype(np.float16)
        return (standardised.astype(np.float64) @ self.components).astype(np.float16)


def column_embeddings(dataset: Any, column: str, dim: int | None = None) -> np.ndarray:
    """The vectors of the dataset column ``column`` as a ``[rows, d]`` array; ``ValueError`` naming the rows that are
    not a vector of ``d`` finite numbers (missing, of another length, NaN, all zeros) or saying what the column holds
    instead (strings, one number per row, a matrix per row). ``dim``: the rows are new tasks joining vectors of ``dim``
    numbers (see :func:`~trl_bots.embedding_estimator.check_embeddings`)."""
    if column not in dataset.column_names:
        raise ValueError(
            f"bots_embedding_column={column!r} is not a column of train_dataset (columns: {dataset.column_names})."
        )
    name = f"bots_embedding_column {column!r}"
    values = dataset.select_columns([column]).with_format("numpy")[:][column]
    if values.dtype == object and values.ndim == 1:  # rows of different lengths, or rows without a vector
        values = _stack_rows(values, name)
    if values.dtype.kind in "OSU" or not np.issubdtype(values.dtype, np.number):
        strings = values.dtype.kind in "SU" or any(isinstance(value, str) for value in values.flat)
        found = "string values" if strings else f"{values.dtype} values"
    elif values.ndim != 2:
        found = "one number per row" if values.ndim == 1 else f"a {list(values.shape[1:])} array per row"
    else:
        return check_embeddings(values, name=f"{name}: the vectors", dim=dim)
    raise ValueError(f"{name} must hold one vector of numbers per row, got {found}.")


def _stack_rows(values: np.ndarray, name: str) -> np.ndarray:
    """The rows of an object column stacked, or a ``ValueError`` naming the rows without a vector or of another length
    than most rows."""
    lengths = np.array([-1 if value is None else np.size(value) for value in values])
    present = lengths[lengths >= 0]
    common = int(np.bincount(present).argmax()) if present.size else 0
    missing = np.flatnonzero(lengths == -1)
    problems = [f"rows {missing[:10].tolist()} hold no vector (None)"] if missing.size else []
    for length in np.unique(present[present != common]):
        rows = np.flatnonzero(lengths == length)[:10].tolist()
        problems.append(f"rows {rows} have {length} value{'s' if length != 1 else ''}")
    if problems:
        raise ValueError(
            f"{name} must hold one vector of numbers per row, all of one length: {'; '.join(problems)}; the others "
            f"have {common} values."
        )
    return np.stack(list(values))


def embedding_cache_path(key: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the embeddings described by ``key`` (model, layer, dimension, task fingerprint) are cached: in
    ``cache_dir``, by default ``$TRL_BOTS_CACHE/embeddings`` (``TRL_BOTS_CACHE`` defaults to ``$HF_HOME/trl-bots``,
    beside the Hub's own cache)."""
    if cache_dir is None:
        cache_dir = os.path.join(os.environ.get("TRL_BOTS_CACHE", os.path.join(HF_HOME, "trl-bots")), "embeddings")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cache_dir) / f"{digest}.npy"


def _read_cache(path: Path, num_tasks: int) -> np.ndarray | None:
    """The cached embeddings, or None (with a warning if the file is there but unreadable or not ``num_tasks`` finite
    float16 vectors: a run killed while another wrote it, a disk error)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        logger.warning(f"BOTS: ignoring the unreadable embedding cache {path} ({error}); recomputing.")
        return None
    if array.dtype != np.float16 or array.ndim != 2 or array.shape[0] != num_tasks or not np.isfinite(array).all():
        logger.warning(
            f"BOTS: ignoring the embedding cache {path} ({array.dtype} array of shape {array.shape}, not {num_tasks} "
            "finite float16 vectors); recomputing."
        )
        return None
    return array


def _write_cache(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError as error:  # a read-only cache costs the next run a recomputation, not this run its start
        logger.warning(f"BOTS: could not cache the prompt embeddings at {path} ({error}).")


def model_key(model: torch.nn.Module) -> dict[str, Any]:
    """What identifies a model's weights in the cache key: its name or path and revision, its config, and a digest
    of its weights: every value of the input embeddings and an evenly spaced sample of at most :data:`WEIGHT_SAMPLE`
    values of every other parameter (a fine-tuned or merged copy saved under the same path changes them)."""
    digest = hashlib.sha256()
    embeddings = model.get_input_embeddings().weight
    for name, parameter in model.named_parameters():
        with _gathered([parameter]):
            values = parameter.detach().reshape(-1)
            if parameter is not embeddings:
                values = values[:: max(1, values.numel() // WEIGHT_SAMPLE)]
            digest.update(name.encode())
            digest.update(values.float().cpu().numpy().tobytes())
    config = model.config
    return {
        "name_or_path": getattr(config, "_name_or_path", ""),
        "commit": getattr(config, "_commit_hash", None),
        "config": hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest(),
        "weights": digest.hexdigest(),
    }


def _gathered(parameters: list[torch.nn.Parameter]):
    """Under DeepSpeed ZeRO-3 the parameters are partitioned across processes: gather them for the forward pass."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        import deepspeed

        return deepspeed.zero.GatheredParameters(parameters)
    return contextlib.nullcontext()


def model_embeddings(
    model: torch.nn.Module, token_ids: list[list[int]], pad_token_id: int, accelerator: Any, progress: bool = True
):
    """:func:`mean_pooled_hidden_states` of every prompt, each process computing a share; every process returns the
    whole ``[N, hidden]`` array. ``progress``: a progress bar on each machine's main process."""
    rank, world = accelerator.process_index, accelerator.num_processes
    share = np.arange(rank, len(token_ids), world)  # interleaved: every share has prompts of every length
    # Every share padded to one length with prompt 0 (its extra vector dropped): every process runs the same number of
    # forward passes, as DeepSpeed ZeRO-3 requires, even when there are fewer prompts than processes.
    padded = np.concatenate([share, np.zeros(-(-len(token_ids) // world) - share.size, dtype=share.dtype)])
    with _gathered(list(model.parameters())):
        pooled = mean_pooled_hidden_states(
            model,
            [token_ids[i] for i in padded],
            pad_token_id,
            progress=progress and accelerator.is_local_main_process,
        )[: share.size]
    if world == 1:
        return pooled
    out = np.empty((len(token_ids), pooled.shape[1]), dtype=np.float32)
    for other, part in enumerate(gather_object([pooled])):
        out[other::world] = part
    return out


def task_embeddings(
    dataset: Any,
    args: Any,
    model: torch.nn.Module,
    processing_class: Any,
    accelerator: Any,
    fingerprint: str,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """The ``[len(dataset), <= bots_embedding_dim]`` float16 embeddings the selector uses, the same bytes on every
    process: from ``bots_embedding_column``, from the model ``bots_embedding_model``, or from the policy ``model``;
    read from the cache when it holds them."""
    start = time.perf_counter()
    column, source = args.bots_embedding_column, embedding_source(args)
    embeddings = None
    if column is not None:
        vectors = column_embeddings(dataset, column)  # checked on every process: each raises its own error
        if accelerator.is_main_process:
            embeddings = reduce_dimension(vectors, args.bots_embedding_dim).astype(np.float16)
    else:
        encoder, tokenizer = embedding_encoder(args, model, processing_class, accelerator)
        token_ids = tokenize_prompts(tokenizer, dataset["prompt"], getattr(args, "chat_template_kwargs", None))
        key = {
            "model": model_key(encoder),
            "layer": middle_layer(encoder.config.num_hidden_layers),
            "dim": args.bots_embedding_dim,
            "tasks": fingerprint,
            "tokens": token_digest(token_ids),  # the chat template and its keyword arguments are not in the rows
            "pca_sample": PCA_SAMPLE,
        }
        path = embedding_cache_path(key, cache_dir)
        if accelerator.is_main_process:
            embeddings = _read_cache(path, len(dataset))
        cached = broadcast_object_list([embeddings is not None])[0]
        source = f"the cache {path}" if cached else source
        if not cached:
            progress = not getattr(args, "disable_tqdm", False)
            pooled = model_embeddings(encoder, token_ids, padding_id(tokenizer), accelerator, progress)
            if accelerator.is_main_process:
                embeddings = reduce_dimension(pooled, args.bots_embedding_dim).astype(np.float16)
                _write_cache(path, embeddings)
    # The main process's bytes everywhere: NumPy's linear algebra may round differently on other hardware.
    embeddings = broadcast_object_list([embeddings])[0]
    log_embeddings(embeddings, source, start, accelerator)
    return embeddings


def embedding_source(args: Any) -> str:
    """Where the embeddings come from, in words: ``bots_embedding_column``, ``bots_embedding_model`` or the policy."""
    if args.bots_embedding_column is not None:
        return f"column {args.bots_embedding_column!r}"
    return f"model {args.bots_embedding_model}" if args.bots_embedding_model else "the policy model"


def embedding_encoder(args: Any, model: torch.nn.Module, processing_class: Any, accelerator: Any) -> tuple[Any, Any]:
    """The model that embeds the prompts and its tokenizer: ``bots_embedding_model`` (loaded) or the policy."""
    if args.bots_embedding_model is None:
        return model, processing_class
    return load_encoder(args.bots_embedding_model, accelerator.device)


def padding_id(tokenizer: Any) -> int:
    """The id that pads a batch: the pad token, else the end of sequence, else 0. Masked out of the mean and placed
    after every real token, so the padding's id changes no real token."""
    candidates = (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0)
    return next(candidate for candidate in candidates if candidate is not None)


def log_embeddings(embeddings: np.ndarray, source: str, start: float, accelerator: Any) -> None:
    if accelerator.is_main_process:
        logger.info(
            f"BOTS prompt embeddings: {embeddings.shape[0]} tasks x {embeddings.shape[1]} dimensions from {source} "
            f"in {time.perf_counter() - start:.1f} s."
        )


def load_encoder(name: str, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """A ``transformers`` model on ``device`` and its tokenizer, by name or path, for ``bots_embedding_model``."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(name).to(device), AutoTokenizer.from_pretrained(name)


class PromptEmbedder:
    """Embeds an active pool's tasks, which arrive over the run: the first fill fits the dimension reduction, and each
    later task (a newcomer) is embedded by the same source, layer and pooling and reduced by the same map, so that all
    vectors share one set of coordinates, the one the embedding estimator's fit lives in.

    The source is that of :func:`task_embeddings` (``bots_embedding_column``, ``bots_embedding_model``, or the policy
    ``model`` at its weights of the moment); the pool keeps no disk cache (its tasks and the policy change). Every
    process must call :meth:`fit` and :meth:`embed` with the same rows: each computes a share of the forward passes and
    all return the main process's bytes.

    Args:
        args: the trainer's config (``bots_embedding_column``, ``bots_embedding_model``, ``bots_embedding_dim``,
            ``chat_template_kwargs``, ``disable_tqdm``).
        model: the policy (a reference: later calls embed with its weights of that moment).
        processing_class: the policy's tokenizer.
        accelerator: the trainer's ``Accelerator`` (or a ``PartialState``).
    """

    def __init__(self, args: Any, model: torch.nn.Module, processing_class: Any, accelerator: Any) -> None:
        self.args, self.accelerator = args, accelerator
        self.column, self.source = args.bots_embedding_column, embedding_source(args)
        if self.column is None:
            self.encoder, self.tokenizer = embedding_encoder(args, model, processing_class, accelerator)
        self.reduction: DimensionReduction | None = None

    def fit(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """The ``[len(rows), <= bots_embedding_dim]`` float16 embeddings of the first tasks (rows with ``"prompt"`` or
        the embedding column), the same bytes on every process; fits the dimension reduction on them."""
        start = time.perf_counter()
        vectors = self._vectors(rows, None, progress=not getattr(self.args, "disable_tqdm", False))
        reduction = embeddings = None
        if self.accelerator.is_main_process:
            reduction = DimensionReduction.fit(vectors, self.args.bots_embedding_dim)
            embeddings = reduction.apply(vectors)
        self.reduction, embeddings = broadcast_object_list([reduction, embeddings])
        log_embeddings(embeddings, self.source, start, self.accelerator)
        return embeddings

    def embed(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """The ``[len(rows), dim]`` float16 embeddings of newcomers, reduced by the map :meth:`fit` fitted (or
        :meth:`load_state_dict` restored), the same bytes on every process: a row of the first fill gets the vector
        :meth:`fit` gave it (with the model's weights of then)."""
        if self.reduction is None:
            raise ValueError(
                "PromptEmbedder.embed needs the dimension reduction of the first tasks: call fit(first rows) or "
                "load_state_dict(a saved state) first."
            )
        if len(rows) == 0:
            return np.empty((0, self.reduction.dim), dtype=np.float16)
        vectors = self._vectors(rows, self.reduction.standardisation.mean.size, progress=False)
        embeddings = self.reduction.apply(vectors) if self.accelerator.is_main_process else None
        return broadcast_object_list([embeddings])[0]

    def _vectors(self, rows: Sequence[dict[str, Any]], dim: int | None, progress: bool) -> np.ndarray:
        """The rows' vectors before the reduction, on every process: the column's (``dim``: their required length,
        ``None`` for a first fill) or the pooled hidden states of the prompts."""
        if self.column is None:
            prompts = [row["prompt"] for row in rows]
            token_ids = tokenize_prompts(self.tokenizer, prompts, getattr(self.args, "chat_template_kwargs", None))
            return model_embeddings(self.encoder, token_ids, padding_id(self.tokenizer), self.accelerator, progress)
        missing = [i for i, row in enumerate(rows) if self.column not in row]
        if missing:
            raise ValueError(
                f"bots_embedding_column={self.column!r} is not a column of the rows {missing[:10]} (columns: "
                f"{list(rows[missing[0]])})."
            )
        # A one-column dataset: the rows get the checks (and messages) of a dataset's column.
        return column_embeddings(
            Dataset.from_dict({self.column: [row[self.column] for row in rows]}), self.column, dim
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """The dimension reduction as float64 arrays: ``mean`` and ``scale`` of the standardisation (scale 0: a dropped
        column) and, when it projects, ``components``; empty before :meth:`fit`."""
        if self.reduction is None:
            return {}
        state = dict(self.reduction.standardisation._asdict())
        if self.reduction.components is not None:
            state["components"] = self.reduction.components
        return {name: value.copy() for name, value in state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`, so that a resumed run reduces newcomers as the uninterrupted run does;
        ``ValueError`` naming the array that is not one of a reduction (of this model's hidden size)."""
        unknown = sorted(set(state) - {"mean", "scale", "components"})
        if unknown:
            raise ValueError(
                f"The prompt embedder's state holds {unknown}, which are not part of a dimension reduction."
            )
        arrays = {name: np.asarray(value, dtype=np.float64) for name, value in state.items()}
        mean, scale, components = arrays.get("mean"), arrays.get("scale"), arrays.get("components")
        width = None if self.column is not None else self.encoder.config.hidden_size
        if mean is None or scale is None or mean.ndim != 1 or scale.shape != mean.shape:
            raise ValueError("The prompt embedder's state must hold 'mean' and 'scale', two vectors of one length.")
        if width is not None and mean.size != width:
            raise ValueError(
                f"The prompt embedder's mean has {mean.size} values but the embedding model's hidden size is {width}: "
                "the state belongs to another model (bots_embedding_model)."
            )
        kept = int((scale != 0).sum())
        if components is not None and (components.ndim != 2 or components.shape[0] != kept):
            raise ValueError(
                f"The prompt embedder's components must be a [{kept}, dim] array (one row per kept column), got shape "
                f"{components.shape}."
            )
        for name, array in arrays.items():
            if not np.isfinite(array).all() or (name == "scale" and (array < 0).any()):
                raise ValueError(f"The prompt embedder's {name} must be finite (and a scale >= 0).")
        self.reduction = DimensionReduction(Standardisation(mean, scale), components)
