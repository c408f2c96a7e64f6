"""Argument checks shared by the selector, the config and the trainer.

Every check raises ``ValueError`` with the name of the argument, the value received and
what would be accepted, before any work is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


STRATEGIES = ("bots", "mopps", "dots", "uniform", "easy2hard")
# How the interpolation plug-in fits its coefficient mu on a batch (trl_bots.implicit.InterpolationEstimator).
CAP_FITS = ("robust", "paper")
# Rollouts of one task in one round. Far above any real group size, and low enough that float32 posteriors stay exact
# integers in the counts' range and can never overflow.
MAX_TRIALS = 1e6


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number, Python or NumPy, and not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_in_interval(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise unless ``value`` is a real number (Python or NumPy, not a bool) with ``low (<|<=) value (<|<=) high``."""
    inside = (
        is_real(value)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not inside:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")


def check_strategy(name: str, strategy: str) -> None:
    check_choice(name, strategy, STRATEGIES)


# ------------------------------------------------------------------ the selector's hyper-parameters
@dataclass(frozen=True)
class Interval:
    """The real numbers from ``low`` to ``high``, each end open or closed."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value: Any) -> None:
        """Raise unless ``value`` is a real number (Python or NumPy, not a bool) inside the interval."""
        check_in_interval(name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open)


@dataclass(frozen=True)
class Hyperparameter:
    """One hyper-parameter of :class:`~trl_bots.BOTSSelector`: its argument, its ``BOTSConfig`` field(s), its interval.

    A pair (the prior) is one argument held in two fields, one per part, each part checked on the interval.
    """

    argument: str  # the BOTSSelector argument, and its name in the selector's messages
    fields: tuple[str, ...]  # the BOTSConfig field, or one field per part of a pair
    interval: Interval
    parts: tuple[str, ...] = ()  # a pair's parts, as messages name them
    optional: bool = False  # None is allowed (a default resolved elsewhere)

    @property
    def field_label(self) -> str:
        """Its name in the config's messages."""
        return "/".join(self.fields)

    def config_value(self, config: Any) -> Any:
        """Its value in a ``BOTSConfig``: the field's, or a pair's parts as a tuple."""
        values = tuple(getattr(config, field) for field in self.fields)
        return values if self.parts else values[0]

    def check(self, value: Any, name: str | None = None) -> None:
        """Raise unless ``value`` is allowed; messages call it ``name`` (default: the selector argument)."""
        name = self.argument if name is None else name
        if value is None and self.optional:
            return
        if not self.parts:
            self.interval.check(name, value)
            return
        if len(value) != len(self.parts):
            raise ValueError(f"{name} must be a pair ({', '.join(self.parts)}), got {value!r}.")
        for part, part_value in zip(self.parts, value, strict=True):
            self.interval.check(f"{name} {part}", part_value)


# Checked in this order, by BOTSSelector on its arguments and by BOTSConfig on its fields. The prior and the pseudo
# count are worth rollouts, like the trials of a round, and share their bound: beyond it the float32 posterior loses
# whole counts, and past float32's range it overflows to inf (a NaN posterior mean).
HYPERPARAMETERS = (
    Hyperparameter("target", ("bots_target_pass_rate",), Interval(0.0, 1.0, low_open=True, high_open=True)),
    Hyperparameter("forgetting", ("bots_forgetting",), Interval(0.0, 1.0, low_open=True)),
    Hyperparameter("implicit_weight", ("bots_implicit_weight",), Interval(0.0, 1.0)),
    Hyperparameter("temperature", ("bots_temperature",), Interval(0.0, math.inf, high_open=True)),
    Hyperparameter("cap_momentum", ("bots_cap_momentum",), Interval(0.0, 1.0, high_open=True)),
    Hyperparameter(
        "prior",
        ("bots_prior_alpha", "bots_prior_beta"),
        Interval(0.0, MAX_TRIALS, low_open=True),
        parts=("alpha0", "beta0"),
    ),
    Hyperparameter("pseudo_count", ("bots_pseudo_count",), Interval(0.0, MAX_TRIALS), optional=True),
)


# ------------------------------------------------------------------ what a strategy needs
# The strategies that select by the posterior; the others serve a fixed order of all tasks (docs/algorithm.md).
ADAPTIVE_STRATEGIES = ("bots", "mopps", "dots")


def missing_evidence(strategy: str, implicit_weight: float, has_reference: bool, has_estimator: bool) -> str | None:
    """What ``strategy`` lacks: ``"reference"`` (easy2hard orders the tasks by their reference pass rates),
    ``"implicit"`` (dots, and bots with ``implicit_weight > 0``, need an implicit-evidence plug-in: reference pass
    rates or a custom estimator), or ``None``. mopps and uniform need neither."""
    if strategy == "easy2hard" and not has_reference:
        return "reference"
    needs_implicit = strategy == "dots" or (strategy == "bots" and implicit_weight > 0)
    if needs_implicit and not (has_reference or has_estimator):
        return "implicit"
    return None


def domain_weights_problem(strategy: str, has_domains: bool, weights: Any) -> str | None:
    """What is wrong with asking for domain ``weights``: ``"no domains"`` (quotas need every task's domain),
    ``"fixed order"`` (the baselines serve a fixed order of all tasks), or ``None``."""
    if weights is None:
        return None
    if not has_domains:
        return "no domains"
    if strategy not in ADAPTIVE_STRATEGIES:
        return "fixed order"
    return None


def check_enough_tasks(batch_size: int, available: int, message: str, **fields: Any) -> None:
    """A batch holds distinct tasks: raise ``ValueError`` unless ``available`` tasks can fill one of ``batch_size``.

    ``message`` says it in the caller's terms: a template with the fields ``{batch_size}``, ``{available}`` and
    ``fields``.
    """
    if batch_size > available:
        raise ValueError(message.format(batch_size=batch_size, available=available, **fields))


def check_reference_pass_rates(
    reference: np.ndarray, num_tasks: int, name: str = "reference_pass_rates"
) -> np.ndarray:
    """Return the reference pass rates as a float32 ``[num_tasks, 2]`` array, or raise naming the bad entries."""
    array = np.asarray(reference, dtype=np.float64)
    if array.shape != (num_tasks, 2):
        raise ValueError(
            f"{name} must have shape (num_tasks, 2) = ({num_tasks}, 2) with columns (weak, strong), got shape "
            f"{array.shape}."
        )
    bad = ~np.isfinite(array) | (array < 0) | (array > 1)
    if bad.any():
        rows, cols = np.nonzero(bad)
        examples = ", ".join(
            f"task {r} {'weak' if c == 0 else 'strong'}={float(array[r, c])}"
            for r, c in zip(rows[:5], cols[:5], strict=True)
        )
        raise ValueError(
            f"{name} must be pass rates in [0, 1] with no NaN or inf; {rows.size} entries are not ({examples}"
            f"{', ...' if rows.size > 5 else ''}). Fix or drop these tasks before training."
        )
    return array.astype(np.float32)


def check_task_ids(name: str, ids: Any, num_tasks: int) -> np.ndarray:
    """``ids`` as int64 task ids in ``[0, num_tasks)``; ``ValueError`` naming ``name`` for anything else."""
    array = np.asarray(ids)
    # A boolean mask would read as the ids 0 and 1, floats would be truncated: refused, not misread.
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer task ids, got dtype {array.dtype}: pass ids, not a mask or floats.")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_tasks):
        bad = array[(array < 0) | (array >= num_tasks)]
        raise ValueError(f"{name} must be task ids in [0, {num_tasks}), got {bad[:5].tolist()}.")
    return array


def check_round(
    num_tasks: int, indices: np.ndarray, successes: np.ndarray, trials: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one round's explicit evidence; return it as (int64, float64, float64) arrays."""
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be a 1-D array of integer task ids, got shape {idx.shape}.")
    idx = check_task_ids("indices", idx, num_tasks)
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if s.shape != idx.shape or n.shape != idx.shape:
        raise ValueError(f"successes {s.shape} and trials {n.shape} must have the same shape as indices {idx.shape}.")
    unique, counts = np.unique(idx, return_counts=True)
    if unique.size != idx.size:
        raise ValueError(
            f"indices must be distinct within one update; repeated: {unique[counts > 1][:5].tolist()}. "
            "Add up the counts of each task first."
        )
    if not (np.isfinite(s).all() and np.isfinite(n).all()):
        raise ValueError("successes and trials must be finite numbers (count NaN rewards as neither, not as NaN).")
    if n.size and n.max() > MAX_TRIALS:
        raise ValueError(
            f"trials must be at most {MAX_TRIALS:g} per task and round (rollouts of one task in one batch), got "
            f"{n.max():g}. Pass counts, not rewards or token numbers."
        )
    if (s < 0).any() or (n < 0).any():
        raise ValueError(f"successes and trials must be >= 0, got min successes {s.min()} and min trials {n.min()}.")
    over = s > n
    if over.any():
        i = int(np.argmax(over))
        raise ValueError(f"successes must be <= trials, but task {idx[i]} has {s[i]} successes in {n[i]} trials.")
    return idx, s, n
