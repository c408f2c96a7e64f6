"""The BOTS section of a trained model's card: how its training tasks were selected, as a table of settings.

The card itself, with the paper's citation, is TRL's (`BOTSGRPOTrainer._paper`); this section is appended to it.
"""

from __future__ import annotations

from typing import Any

from .state import SELECTOR_FILE


def bots_card_section(args: Any, selector: Any) -> str:
    """The section for a run with the `BOTSConfig` `args` whose selector (a `BOTSSelector`) is `selector`."""
    stats = selector.last_stats
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
        "domain column (weights)": f"{args.bots_domain_column} ({args.bots_domain_weights})",
        "success": f"reward {' + '.join(args.bots_success_reward or ['(weighted total)'])} >= "
        f"{args.bots_success_threshold}" + (" (fractional evidence)" if args.bots_fractional_evidence else ""),
        "tasks": selector.num_tasks,
        "rounds": selector.round,
        "final effective-task ratio": "n/a (no round trained)"
        if stats is None
        else f"{stats.effective_task_ratio:.4f}",
    }
    rows = "\n".join(f"| {name} | {value} |" for name, value in settings.items())
    return (
        "\n## BOTS task selection\n\n"
        "The training tasks were chosen online by Bayesian Online Task Selection "
        "([BOTS](https://huggingface.co/papers/2510.26374)) with trl-bots: each generation batch took the tasks "
        "whose pass rate was probably closest to the target. The selector state is saved beside the model as "
        f"`{SELECTOR_FILE}`.\n\n| Setting | Value |\n|---|---|\n{rows}\n"
    )
