"""Argument checks shared by the selector, the config and the trainer.

Every check raises ``ValueError`` with the name of the argument, the value received and
what would be accepted, before any work is done.
"""

from __future__ import annotations

import math
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


def check_hyperparameters(
    *,
    target: float,
    forgetting: float,
    implicit_weight: float,
    temperature: float,
    prior: tuple[float, float],
    pseudo_count: float | None,
    cap_momentum: float,
    names: dict[str, str] | None = None,
) -> None:
    """Check the BOTS hyper-parameters (BOTS.md section 5.6); ``names`` maps them to the caller's field names."""
    names = names or {}
    check_in_interval(names.get("target", "target"), target, 0.0, 1.0, low_open=True, high_open=True)
    check_in_interval(names.get("forgetting", "forgetting"), forgetting, 0.0, 1.0, low_open=True)
    check_in_interval(names.get("implicit_weight", "implicit_weight"), implicit_weight, 0.0, 1.0)
    check_in_interval(names.get("temperature", "temperature"), temperature, 0.0, math.inf, high_open=True)
    check_in_interval(names.get("cap_momentum", "cap_momentum"), cap_momentum, 0.0, 1.0, high_open=True)
    if len(prior) != 2:
        raise ValueError(f"{names.get('prior', 'prior')} must be a pair (alpha0, beta0), got {prior!r}.")
    # The prior and the pseudo count are worth rollouts, like the trials of a round, and share their bound: beyond it
    # the float32 posterior loses whole counts, and past float32's range it overflows to inf (a NaN posterior mean).
    for part, value in zip(("alpha0", "beta0"), prior, strict=True):
        check_in_interval(f"{names.get('prior', 'prior')} {part}", value, 0.0, MAX_TRIALS, low_open=True)
    if pseudo_count is not None:
        check_in_interval(names.get("pseudo_count", "pseudo_count"), pseudo_count, 0.0, MAX_TRIALS)


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
