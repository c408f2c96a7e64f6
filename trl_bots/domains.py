"""Multi-domain task pools: domain labels, domain weights, per-round quotas and per-domain diagnostics.

A pool may mix sources (GURU has math, code, science, logic, simulation and tabular tasks). With domain weights,
every round takes each domain's quota of the batch and selects that many tasks inside the domain by the BOTS rule,
so one domain with many tasks near the target cannot crowd out the others. Everything here is a pure function of
its arguments: the quotas of a round depend only on the batch size, the weights, the domain sizes and each domain's
lag behind its exact share (exact fractions, kept in the selector state), so every process computes the same quotas
and a resumed run continues with the same ones. See docs/algorithm.md (Domain quotas).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .validation import check_enough_tasks, is_real


MAX_DOMAINS = 256  # far above any real mixture; keeps per-domain metrics and the quota arithmetic small
DOMAIN_WEIGHT_MODES = ("proportional", "uniform")
TOO_FEW_WEIGHTED_TASKS = (
    "batch_size={batch_size} distinct tasks cannot be drawn from the domains with a positive weight, which hold "
    "{available} tasks. Use a smaller batch, or give weight to more domains."
)


def encode_domains(
    labels: Sequence[str] | np.ndarray | pa.Array | pa.ChunkedArray, num_tasks: int, name: str = "domains"
) -> tuple[tuple[str, ...], np.ndarray]:
    """Validate one label per task; return the sorted distinct names and each task's code (index into the names).

    Encoded in Arrow, once over the labels (a dataset column is passed as its Arrow values): only the few distinct
    labels are checked and sorted in Python, so a million tasks take a fraction of a second.
    """
    if not isinstance(labels, (np.ndarray, pa.Array, pa.ChunkedArray)):
        labels = list(labels)
    if len(labels) != num_tasks:
        raise ValueError(f"{name} must hold one label per task ({num_tasks}), got {len(labels)} labels.")
    array = _string_array(labels)
    encoded = None if array is None else pc.dictionary_encode(array)
    distinct = [] if encoded is None else encoded.dictionary.to_pylist()  # the labels that occur, each once
    if encoded is None or encoded.indices.null_count or any(not label.strip() for label in distinct):
        values = labels.to_pylist() if isinstance(labels, (pa.Array, pa.ChunkedArray)) else labels
        bad = [(i, label) for i, label in enumerate(values) if not isinstance(label, str) or not label.strip()]
        examples = ", ".join(f"task {i}: {label!r}" for i, label in bad[:5])
        raise ValueError(
            f"{name} must be non-empty strings; {len(bad)} tasks have another value ({examples}"
            f"{', ...' if len(bad) > 5 else ''}). Fill in the domain of these tasks or drop them; write numbers (e.g. "
            "the ids of a ClassLabel column) as their names."
        )
    names = sorted(distinct)
    if len(names) > MAX_DOMAINS:
        raise ValueError(
            f"{name} has {len(names)} distinct labels, more than {MAX_DOMAINS}: it looks like a per-task field (an id "
            f"or a prompt), not a domain. First labels: {names[:5]}. Name a column with a few domain labels."
        )
    # "Math" beside "math" (or "logic " beside "logic") is one domain spelled twice: as two, it would split the
    # domain's metrics and quotas without a word.
    spellings: dict[str, list[str]] = {}
    for label in names:
        spellings.setdefault(label.strip().casefold(), []).append(label)
    clashes = [group for group in spellings.values() if len(group) > 1]
    if clashes:
        raise ValueError(
            f"{name} has labels that differ only in case or surrounding spaces: {clashes}. Each would be a domain of "
            "its own; write every domain one way (e.g. strip and lower-case the labels)."
        )
    code_of = {label: code for code, label in enumerate(names)}
    recode = np.array([code_of[label] for label in distinct], dtype=np.uint8)  # MAX_DOMAINS labels fit in a byte
    return tuple(names), recode[encoded.indices.to_numpy()]


def _string_array(labels: list[Any] | np.ndarray | pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """The labels as one Arrow string array (None kept as null), or None if some label is neither text nor None."""
    if isinstance(labels, (pa.Array, pa.ChunkedArray)):
        if not (pa.types.is_string(labels.type) or pa.types.is_large_string(labels.type)):
            return None
        return labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    try:
        return pa.array(labels, type=pa.string())
    except pa.ArrowException:  # a number, a list, ...: reported label by label
        return None


def resolve_domain_weights(
    weights: Mapping[str, float] | str, names: Sequence[str], sizes: np.ndarray, name: str = "domain_weights"
) -> np.ndarray:
    """The weight of every domain (in the order of ``names``) from a mapping, ``"proportional"`` or ``"uniform"``."""
    if isinstance(weights, str):
        if weights == "proportional":
            return np.asarray(sizes, dtype=np.float64)
        if weights == "uniform":
            return np.ones(len(names))
        raise ValueError(f"{name} must be a mapping domain -> weight, 'proportional' or 'uniform', got {weights!r}.")
    if not isinstance(weights, Mapping):
        raise ValueError(
            f"{name} must be a mapping domain -> weight, 'proportional' or 'uniform', got {type(weights).__name__}."
        )
    unknown = sorted(set(weights) - set(names), key=str)
    missing = [domain for domain in names if domain not in weights]
    if unknown or missing:
        raise ValueError(
            f"{name} must give a weight to exactly the domains of the data {list(names)}; "
            + (f"the data has no domain {unknown}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"no weight for {missing} (give 0 to leave a domain out)" if missing else "")
            + "."
        )
    values = [weights[domain] for domain in names]
    bad = {
        domain: value
        for domain, value in zip(names, values, strict=True)
        if not is_real(value) or not math.isfinite(value) or value < 0
    }
    if bad:
        raise ValueError(f"{name} must be finite numbers >= 0, got {bad}.")
    array = np.asarray(values, dtype=np.float64)
    if array.sum() <= 0:
        raise ValueError(f"{name} are all zero ({dict(weights)}): at least one domain needs a positive weight.")
    return array


@dataclass(frozen=True, eq=False)
class TaskDomains:
    """Every task's domain, encoded once: the distinct names (sorted), each task's code and, with domain weights, each
    domain's resolved weight. Build it with :meth:`from_labels` (and :meth:`with_weights`); messages name the
    arguments as the caller calls them."""

    names: tuple[str, ...]
    codes: np.ndarray  # each task's index into names
    weights: np.ndarray | None = None  # resolved, in the order of names; None: no quotas, one selection over all tasks

    @classmethod
    def from_labels(
        cls, labels: Sequence[str] | np.ndarray | pa.Array | pa.ChunkedArray, num_tasks: int, name: str = "domains"
    ) -> TaskDomains:
        """:func:`encode_domains` of one label per task."""
        return cls(*encode_domains(labels, num_tasks, name=name))

    def with_weights(self, weights: Mapping[str, float] | str, name: str = "domain_weights") -> TaskDomains:
        """These domains with quotas: :func:`resolve_domain_weights` of ``weights``."""
        return dataclasses.replace(self, weights=resolve_domain_weights(weights, self.names, self.sizes, name=name))

    @cached_property
    def sizes(self) -> np.ndarray:
        """Tasks per domain."""
        return np.bincount(self.codes, minlength=len(self.names))

    @property
    def weighted_tasks(self) -> int:
        """Tasks in the domains with a positive weight: all a round with quotas can draw from."""
        return int(self.sizes[self.weights > 0].sum())

    def pools(self) -> list[np.ndarray]:
        """Each domain's task ids, sorted: views into one stable argsort."""
        order = np.argsort(self.codes, kind="stable")
        return np.split(order, np.cumsum(self.sizes)[:-1])


def exact_shares(weights: Sequence[float] | np.ndarray) -> list[Fraction]:
    """Each weight's share of their sum, as exact fractions (weights >= 0 with a positive sum): all the quotas depend
    on, so weights at another scale (``{a: 2, b: 1}``, ``{a: 4, b: 2}``) give the same quotas."""
    fractions = [Fraction(float(weight)) for weight in weights]
    total = sum(fractions)
    return [weight / total for weight in fractions]


def apportion(seats: int, weights: np.ndarray, lag: list[Fraction]) -> tuple[np.ndarray, list[Fraction]]:
    """Split ``seats`` among domains in proportion to ``weights`` (>= 0, positive sum) for one round, exactly.

    Largest-remainder rounding: each domain gets the whole part of its exact share ``seats * weight / sum``, and the
    ``r`` seats left go one each to ``r`` domains with a fractional part. Which ones rotates: ``lag`` holds how far
    each domain is behind its exact shares summed over past rounds, and the seats go to the domains furthest behind
    once this round's whole parts are given (ties to the first in order). Every round a quota is thus the whole part
    or one more, and over rounds each domain keeps within about a seat of its exact total: with equal weights the
    extra seat goes round the domains. Fractions keep this exact, so every process gets the same quotas.

    Returns the quotas and the new lag.
    """
    exact = [seats * share for share in exact_shares(weights)]
    quotas = [math.floor(value) for value in exact]
    behind = [lag[d] + exact[d] - quotas[d] for d in range(len(exact))]
    with_fraction = [d for d in range(len(exact)) if exact[d] != quotas[d]]
    for d in sorted(with_fraction, key=lambda d: -behind[d])[: seats - sum(quotas)]:  # sorted() is stable
        quotas[d] += 1
    return np.asarray(quotas, dtype=np.int64), [lag[d] + exact[d] - quotas[d] for d in range(len(exact))]


def domain_quotas(
    batch_size: int, weights: np.ndarray, sizes: np.ndarray, lag: list[Fraction]
) -> tuple[np.ndarray, np.ndarray, list[Fraction]]:
    """Each domain's number of tasks in a round of ``batch_size``, which domains were capped, and the new lag.

    :func:`apportion` among the domains with a positive weight. A domain with fewer tasks than its quota gives all its
    tasks, and the seats it cannot fill are apportioned again among the other domains in proportion to their weights
    (repeated until every quota fits); a capped domain's lag stays as it was.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    positive = weights > 0
    check_enough_tasks(batch_size, int(sizes[positive].sum()), TOO_FEW_WEIGHTED_TASKS)
    quotas = np.zeros(len(sizes), dtype=np.int64)
    capped = np.zeros(len(sizes), dtype=bool)
    while True:
        active = np.flatnonzero(positive & ~capped)
        seats = batch_size - int(quotas[capped].sum())
        active_quotas, active_lag = apportion(seats, weights[active], [lag[d] for d in active])
        quotas[active] = active_quotas
        over = np.zeros(len(sizes), dtype=bool)
        over[active] = active_quotas > sizes[active]
        if not over.any():
            new_lag = list(lag)
            for d, value in zip(active, active_lag, strict=True):
                new_lag[d] = value
            return quotas, capped, new_lag
        quotas[over] = sizes[over]
        capped |= over


def short_of_rounded_share(batch_size: int, weights: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Which domains have fewer tasks than their exact share of a round rounded to the nearest whole number (halves
    up): they cannot give their share. A domain that can is capped only in the rounds whose rotating extra seat it
    cannot take, which is not worth a warning."""
    weights = np.asarray(weights, dtype=np.float64)
    short = np.zeros(len(weights), dtype=bool)
    positive = np.flatnonzero(weights > 0)
    for d, share in zip(positive, exact_shares(weights[positive]), strict=True):
        short[d] = int(sizes[d]) < math.floor(batch_size * share + Fraction(1, 2))
    return short


def domain_round_stats(
    codes: np.ndarray, num_domains: int, successes: np.ndarray, trials: np.ndarray, posterior_means: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-domain diagnostics of one round, each an array over the domains (NaN where a domain had no task).

    ``codes`` are the domains of the selected tasks (aligned with ``successes`` and ``trials``); ``posterior_means``
    is the mean posterior pass rate of every domain over all its tasks.
    """
    selected = np.bincount(codes, minlength=num_domains).astype(np.float64)
    effective = np.bincount(codes, weights=(successes > 0) & (successes < trials), minlength=num_domains)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "share": selected / max(codes.size, 1),
            "effective_task_ratio": np.where(selected > 0, effective / selected, math.nan),
            "posterior_mean": np.asarray(posterior_means, dtype=np.float64),
        }
