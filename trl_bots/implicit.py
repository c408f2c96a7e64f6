"""Implicit evidence: predicted pass rates for every task, without extra rollouts.

A plug-in sees the observed pass rates of the selected batch after each round and predicts
the current pass rate ``q_i`` of every task. The selector turns predictions into pseudo
counts ``m * q_i`` and ``m * (1 - q_i)``. Any object with the methods of
:class:`ImplicitEvidence` can be passed to ``BOTSSelector(estimator=...)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


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


class InterpolationEstimator:
    """The interpolation plug-in of the BOTS paper (Section 4).

    Each task has a weak and a strong reference pass rate ``w_i``, ``r_i``. The policy is assumed
    to sit between the two by one global coefficient ``mu``, fitted on each batch and smoothed::

        mu_hat = (mean observed - mean w) / (mean r - mean w + 1e-6)      over the batch
        mu     <- momentum * mu + (1 - momentum) * mu_hat                  (first round: mu_hat)
        q_i    =  clip(w_i + mu * (r_i - w_i), 0, 1)

    Args:
        reference_pass_rates: array of shape ``[num_tasks, 2]``, columns (weak, strong), values in [0, 1].
            Validated by the selector.
        momentum: ``gamma``, the weight of the previous ``mu``.
    """

    def __init__(self, reference_pass_rates: np.ndarray, momentum: float = 0.9) -> None:
        reference = np.asarray(reference_pass_rates, dtype=np.float32)
        self.weak = np.ascontiguousarray(reference[:, 0])
        self.gap = np.ascontiguousarray(reference[:, 1] - reference[:, 0])  # r - w, stored to save an op per round
        self.momentum = momentum
        self.mu: float | None = None

    def fit(self, indices: np.ndarray, observed_rates: np.ndarray) -> None:
        weak_mean = float(np.mean(self.weak[indices], dtype=np.float64))
        gap_mean = float(np.mean(self.gap[indices], dtype=np.float64))
        mu_hat = (float(np.mean(observed_rates, dtype=np.float64)) - weak_mean) / (gap_mean + 1e-6)
        self.mu = mu_hat if self.mu is None else self.momentum * self.mu + (1.0 - self.momentum) * mu_hat

    def predict(self, indices: np.ndarray | None = None) -> np.ndarray:
        if self.mu is None:
            raise RuntimeError("InterpolationEstimator.predict() called before the first fit().")
        weak, gap = (self.weak, self.gap) if indices is None else (self.weak[indices], self.gap[indices])
        q = gap * np.float32(self.mu)
        q += weak
        return np.clip(q, 0.0, 1.0, out=q)

    def state_dict(self) -> dict[str, float]:
        return {} if self.mu is None else {"mu": self.mu}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mu = state.get("mu")
