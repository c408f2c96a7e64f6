"""Implicit evidence: predicted pass rates for every task, without extra rollouts.

A plug-in sees the observed pass rates of the selected batch after each round and predicts
the current pass rate ``q_i`` of every task. The selector turns predictions into pseudo
counts ``m * q_i`` and ``m * (1 - q_i)``. Any object with the methods of
:class:`ImplicitEvidence` can be passed to ``BOTSSelector(estimator=...)``. See docs/algorithm.md
(Implicit evidence).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from .validation import CAP_FITS, check_choice, check_reference_pass_rates, is_real


# The robust fit keeps mu in this range: the policy may sit up to two reference gaps below the weak model or above
# the strong one. Beyond it nearly every prediction is clipped to 0 or 1 and carries no information.
CAP_COEF_BOUNDS = (-2.0, 3.0)
# The robust fit skips a batch whose tasks with differing references have (sum |r - w|)^2 / count below this, e.g.
# fewer than five tasks whose references differ by 0.1. Observed rates are noisy by about 0.25 (binomial noise plus
# what the interpolation cannot explain), so such a batch would give mu_hat a standard error above 1.
MIN_CAP_FIT_INFORMATION = 0.05
# mu of the robust fit until a batch carries enough information: midway between the two reference models.
INITIAL_CAP_COEF = 0.5


@runtime_checkable
class ImplicitEvidence(Protocol):
    """What the selector needs from an implicit-evidence plug-in."""

    def fit(self, indices: np.ndarray, observed_rates: np.ndarray) -> None:
        """Learn from the observed pass rates of the tasks ``indices`` (one round's batch)."""

    def predict(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Predicted pass rates in [0, 1], for ``indices`` or (``None``) for every task."""

    def state_dict(self) -> dict[str, float]:
        """Scalars needed to continue exactly after a restart (arrays come from the constructor)."""

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore what :meth:`state_dict` returned."""


def paper_cap_coefficient(weak: np.ndarray, gap: np.ndarray, observed: np.ndarray) -> float:
    """The paper's ``mu_hat = (mean observed - mean w) / (mean (r - w) + 1e-6)`` over one batch."""
    weak_mean = float(np.mean(weak, dtype=np.float64))
    gap_mean = float(np.mean(gap, dtype=np.float64))
    return (float(np.mean(observed, dtype=np.float64)) - weak_mean) / (gap_mean + 1e-6)


def robust_cap_coefficient(weak: np.ndarray, gap: np.ndarray, observed: np.ndarray) -> float | None:
    """The paper's ``mu_hat`` over the tasks whose references differ, bounded; ``None`` if the batch is uninformative.

    ``mu_hat = sum sign(r - w) (observed - w) / sum |r - w|``: each task's own coefficient ``(observed - w) / (r - w)``
    averaged with weight ``|r - w|``. When every task of the batch has ``r > w`` this is the paper's ratio of batch
    means; a task whose references coincide counts for nothing (its prediction is the same for every mu), and a task
    whose "weak" model beats the strong one pulls in the right direction instead of cancelling another's gap.
    ``None`` when ``(sum |r - w|)^2 / (number of such tasks)`` is below :data:`MIN_CAP_FIT_INFORMATION`; otherwise
    clipped to :data:`CAP_COEF_BOUNDS`.
    """
    differ = gap != 0
    if not differ.any():
        return None
    gap = gap[differ].astype(np.float64)
    total_gap = float(np.sum(np.abs(gap)))
    if total_gap * total_gap / gap.size < MIN_CAP_FIT_INFORMATION:
        return None
    mu_hat = float(np.dot(np.sign(gap), observed[differ] - weak[differ])) / total_gap
    return min(max(mu_hat, CAP_COEF_BOUNDS[0]), CAP_COEF_BOUNDS[1])


class InterpolationEstimator:
    """The interpolation plug-in of the BOTS paper (Section 4).

    Each task has a weak and a strong reference pass rate ``w_i``, ``r_i``. The policy is assumed
    to sit between the two by one global coefficient ``mu``, fitted on each batch and smoothed::

        mu     <- momentum * mu + (1 - momentum) * mu_hat                  (first fit: mu_hat)
        q_i    =  clip(w_i + mu * (r_i - w_i), 0, 1)

    ``fit="paper"`` is the paper's ``mu_hat = (mean observed - mean w) / (mean r - mean w + 1e-6)`` over the batch. It
    explodes when the batch's mean gap is near 0, which is common: many tasks have both reference rates at 0 or 1
    (GURU), two similar reference models have gaps of either sign, and a selection near the target prefers tasks whose
    prediction does not depend on mu. ``fit="robust"`` (the default) is :func:`robust_cap_coefficient`: the same
    ratio over the tasks whose references differ, a batch with too little information leaves mu as it was, and mu
    stays in :data:`CAP_COEF_BOUNDS` = [-2, 3]. Until the first informative batch it predicts with
    :data:`INITIAL_CAP_COEF` = 0.5 (``mu`` stays ``None``).

    Args:
        reference_pass_rates: array of shape ``[num_tasks, 2]``, columns (weak, strong), values in [0, 1].
            Validated by the selector.
        momentum: ``gamma``, the weight of the previous ``mu``.
        fit: ``"robust"`` or ``"paper"``, how ``mu_hat`` is computed.
    """

    def __init__(self, reference_pass_rates: np.ndarray, momentum: float = 0.9, fit: str = "robust") -> None:
        check_choice("fit", fit, CAP_FITS)
        reference = np.asarray(reference_pass_rates, dtype=np.float32)
        self.weak = np.ascontiguousarray(reference[:, 0])
        self.gap = np.ascontiguousarray(reference[:, 1] - reference[:, 0])  # r - w, stored to save an op per round
        self.momentum = momentum
        self.fit_method = fit
        self.mu: float | None = None

    def fit(self, indices: np.ndarray, observed_rates: np.ndarray) -> None:
        weak, gap = self.weak[indices], self.gap[indices]
        if self.fit_method == "paper":
            mu_hat = paper_cap_coefficient(weak, gap, observed_rates)
        else:
            mu_hat = robust_cap_coefficient(weak, gap, observed_rates)
            if mu_hat is None:
                return  # too little information in this batch: keep the previous mu
        self.mu = mu_hat if self.mu is None else self.momentum * self.mu + (1.0 - self.momentum) * mu_hat

    def predict(self, indices: np.ndarray | None = None) -> np.ndarray:
        mu = self.mu
        if mu is None:
            if self.fit_method == "paper":
                raise RuntimeError("InterpolationEstimator.predict() called before the first fit().")
            mu = INITIAL_CAP_COEF
        weak, gap = (self.weak, self.gap) if indices is None else (self.weak[indices], self.gap[indices])
        q = gap * np.float32(mu)
        q += weak
        return np.clip(q, 0.0, 1.0, out=q)

    def replace(self, indices: np.ndarray, reference_pass_rates: np.ndarray) -> None:
        """Rows ``indices`` hold other tasks (an active pool's slots), with these ``[k, 2]`` reference pass rates;
        ``mu`` is a property of the model, not of the tasks, so it stays."""
        reference = check_reference_pass_rates(reference_pass_rates, len(indices))
        self.weak[indices] = reference[:, 0]
        self.gap[indices] = reference[:, 1] - reference[:, 0]

    def state_dict(self) -> dict[str, float]:
        return {} if self.mu is None else {"mu": self.mu}

    def load_state_dict(self, state: dict[str, float]) -> None:
        mu = state.get("mu")
        if mu is not None and not (is_real(mu) and math.isfinite(mu)):
            raise ValueError(
                f"The plug-in state's mu must be a finite number (or absent before the first fit), got {mu!r}."
            )
        self.mu = None if mu is None else float(mu)
