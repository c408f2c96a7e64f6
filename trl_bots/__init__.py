"""trl-bots: Bayesian Online Task Selection (BOTS, arXiv:2510.26374) for TRL's GRPO trainer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .implicit import ImplicitEvidence, InterpolationEstimator
from .selector import BOTSSelector, RoundStats


__version__ = "0.1.0"

# The trainer side imports trl, transformers and torch (seconds); load it only when asked for,
# so the selector stays a light, framework-free import.
_LAZY = {"ActivePool": "active_pool", "BOTSConfig": "config", "BOTSGRPOTrainer": "trainer", "BOTSSampler": "sampler"}

if TYPE_CHECKING:
    from .active_pool import ActivePool
    from .config import BOTSConfig
    from .sampler import BOTSSampler
    from .trainer import BOTSGRPOTrainer


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ActivePool",
    "BOTSConfig",
    "BOTSGRPOTrainer",
    "BOTSSampler",
    "BOTSSelector",
    "ImplicitEvidence",
    "InterpolationEstimator",
    "RoundStats",
    "__version__",
]
