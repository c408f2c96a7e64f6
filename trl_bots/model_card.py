"""The BOTS section of a trained model's card: how its training tasks were selected, as a table of settings.

The card itself, with the paper's citation, is TRL's (`BOTSGRPOTrainer._paper`); this section is appended to it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .state import SELECTOR_FILE


RECENT_ROUNDS = 10  # the card's "last rounds"


@dataclass
class EffectiveTaskRatios:
    """The run's effective-task ratios as the card states them: their mean over every round, and over the last
    :data:`RECENT_ROUNDS` (one round's alone says little: it swings from round to round). Kept with the round state of
    every checkpoint, so that a resumed run's card covers the whole run."""

    total: float = 0.0  # sum over the rounds
    rounds: int = 0
    recent: list[float] = field(default_factory=list)  # the last RECENT_ROUNDS, oldest first

    def add(self, ratio: float) -> None:
        self.total += ratio
        self.rounds += 1
        self.recent = [*self.recent, ratio][-RECENT_ROUNDS:]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any] | None) -> EffectiveTaskRatios:
        """From :meth:`as_dict`; empty for a checkpoint written before these were kept (`None`)."""
        return cls() if saved is None else cls(float(saved["total"]), int(saved["rounds"]), list(saved["recent"]))

    def card_text(self) -> str:
        if not self.rounds:
            return "n/a (no round trained)"
        recent = math.fsum(self.recent) / len(self.recent)
        return (
            f"{self.total / self.rounds:.4f} (mean of {self.rounds} rounds); {recent:.4f} (last {len(self.recent)} "
            "rounds)"
        )


def implicit_evidence(args: Any, selector: Any) -> str:
    """Where the implicit evidence came from and, for the embedding plug-in, how well it predicted at the end."""
    if args.bots_implicit_estimator != "embedding":
        return str(args.bots_implicit_estimator)
    source = args.bots_embedding_column or args.bots_embedding_model or "the policy's middle layer"
    correlation = getattr(selector.estimator, "correlation", float("nan"))
    return (
        f"embedding ({source}, {args.bots_embedding_dim} dimensions; honest correlation of its predictions with the "
        f"observed pass rates at the end: {correlation:.3f})"
    )


def bots_card_section(args: Any, selector: Any, ratios: EffectiveTaskRatios, pool: Any = None) -> str:
    """The section for a run with the `BOTSConfig` `args` whose selector (a `BOTSSelector`) is `selector` and whose
    rounds had the effective-task `ratios`; over a stream, `pool` is its `ActivePool`."""
    settings = {
        "strategy": args.bots_strategy,
        "target pass rate": args.bots_target_pass_rate,
        "forgetting": args.bots_forgetting,
        "implicit weight (current)": f"{args.bots_implicit_weight} ({selector.implicit_weight})",
        "Thompson sampling": args.bots_thompson,
        "temperature": args.bots_temperature,
        "prior (alpha0, beta0)": (args.bots_prior_alpha, args.bots_prior_beta),
        "pseudo count": args.bots_pseudo_count,
        "cap momentum": args.bots_cap_momentum,
        "cap fit": args.bots_cap_fit,
        "reference columns": args.bots_reference_columns,
        "implicit evidence": implicit_evidence(args, selector),
        "domain column (weights)": f"{args.bots_domain_column} ({args.bots_domain_weights})",
        "success": f"reward {' + '.join(args.bots_success_reward or ['(weighted total)'])} >= "
        f"{args.bots_success_threshold}" + (" (fractional evidence)" if args.bots_fractional_evidence else ""),
        "tasks": selector.num_tasks
        if pool is None
        else f"an active pool of {pool.size} over a stream: {pool.stream.position} read, {pool.retired} retired "
        f"(retire threshold {args.bots_retire_threshold}, at the stream's end: {args.bots_stream_end})",
        "rounds": selector.round,
        "effective-task ratio": ratios.card_text(),
    }
    rows = "\n".join(f"| {name} | {value} |" for name, value in settings.items())
    return (
        "\n## BOTS task selection\n\n"
        "The training tasks were chosen online by Bayesian Online Task Selection "
        "([BOTS](https://huggingface.co/papers/2510.26374)) with trl-bots: each generation batch took the tasks "
        "whose pass rate was probably closest to the target. The selector state is saved beside the model as "
        f"`{SELECTOR_FILE}`.\n\n| Setting | Value |\n|---|---|\n{rows}\n"
    )
