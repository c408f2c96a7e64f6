"""What a round taught the selector: successes and scored trials per task, from GRPO's rewards (NumPy in and out).

GRPO scores every completion with each reward function; BOTS turns one round's scores into explicit evidence
(docs/algorithm.md, Explicit evidence). A completion that no deciding reward function scored (each returned `None`,
NaN in GRPO's tensor) is not a trial: it counts as neither a success nor a failure.
"""

from __future__ import annotations

import numpy as np


def effective_task_ratio(successes: np.ndarray, trials: np.ndarray) -> float:
    """Share of a round's tasks whose group is mixed, ``0 < successes < trials``: the ones with a GRPO advantage
    (0 for an empty round)."""
    successes, trials = np.asarray(successes), np.asarray(trials)
    return float(np.sum((successes > 0) & (successes < trials))) / max(successes.size, 1)


def success_reward_names(value: str | list[str] | None) -> list[str] | None:
    """`bots_success_reward` as a list of names (a single name is the list of that name), or None; `ValueError`
    if it is neither."""
    names = [value] if isinstance(value, str) else value
    if names is not None and (
        not isinstance(names, (list, tuple))
        or not names
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"bots_success_reward must name the reward function that decides success, or list distinct reward "
            f"functions, got {value!r}. Example: bots_success_reward='math_accuracy_reward', or "
            "['guru_reward', 'code_reward'] when each scores its own rows; None for GRPO's weighted total."
        )
    return None if names is None else list(names)


def success_reward_label(names: list[str]) -> str:
    """`bots_success_reward` as messages show it: the name when there is one, else the list."""
    return repr(names[0]) if len(names) == 1 else repr(names)


def success_columns(success_reward: list[str] | None, reward_names: list[str]) -> list[int] | None:
    """The columns of GRPO's rewards that `bots_success_reward` names (None: the weighted total); `ValueError` for a
    name that is not a reward function's."""
    if success_reward is None:
        return None
    unknown = [name for name in success_reward if name not in reward_names]
    if unknown:
        raise ValueError(
            f"bots_success_reward={success_reward_label(success_reward)}: {success_reward_label(unknown)} is not one "
            f"of the reward functions {reward_names}. Use their names, or None for the weighted total reward."
        )
    return [reward_names.index(name) for name in success_reward]


def successes_and_trials(
    rewards_per_func: np.ndarray,
    reward_weights: np.ndarray,
    num_generations: int,
    *,
    success_columns: list[int] | None = None,
    threshold: float = 0.5,
    fractional: bool = False,
    reward_names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Successes and scored trials of each task of a round, from its `[B * G, reward functions]` rewards, in which row
    `k * G + g` is the `g`-th completion of the round's `k`-th task.

    A completion is scored when at least one deciding reward function returned a number for it (GRPO's `None`, "this
    reward does not apply", is NaN here); its success reward is then the sum of the numbers returned (NaN terms
    skipped, as GRPO's `nansum` does). The deciding functions are, by default, those with a non-zero weight, each
    term weighted as GRPO weighs it: success is judged on GRPO's own total reward. An infinite reward from a deciding
    function is an error (`ValueError`): it is neither "does not apply" nor a score to threshold, and GRPO's advantages
    of its group would be NaN.

    Args:
        rewards_per_func: the rewards of every completion by every reward function (NaN: not scored).
        reward_weights: GRPO's weight of each reward function.
        num_generations: completions per task, G.
        success_columns: the columns of the reward functions that decide success (`bots_success_reward`), summed
            without GRPO's weights (so a function of weight 0, logged only, can decide); `None`: the weighted total
            of the reward functions with a non-zero weight.
        threshold: a completion succeeds when its success reward is `>= threshold` (`bots_success_threshold`).
        fractional: count the success reward itself, which must lie in [0, 1], as a fractional success
            (`bots_fractional_evidence`).
        reward_names: the reward functions' names, for messages.
    """
    rewards_per_func = np.asarray(rewards_per_func, dtype=np.float64)
    weights = np.asarray(reward_weights, dtype=np.float64)
    columns = np.flatnonzero(weights != 0) if success_columns is None else np.asarray(success_columns, dtype=np.int64)
    terms = rewards_per_func[:, columns]
    infinite = np.isinf(terms)
    if infinite.any():
        position = int(np.flatnonzero(infinite.any(axis=0))[0])
        column, rows = int(columns[position]), np.flatnonzero(infinite[:, position])
        name = repr(reward_names[column]) if reward_names is not None else f"number {column}"
        raise ValueError(
            f"Reward function {name} returned {terms[rows[0], position]} for {rows.size} completions of the round "
            f"(completions {rows[:5].tolist()}), which is neither a score nor None: BOTS cannot count it as a success "
            "or a failure, and GRPO's advantages of its group would be NaN. Return a finite number, or None where the "
            "reward does not apply."
        )
    if success_columns is None:
        terms = terms * weights[columns]
    scored = ~np.isnan(terms).all(axis=1)
    rewards = np.where(scored, np.nansum(terms, axis=1), np.nan).reshape(-1, num_generations)
    scored = scored.reshape(-1, num_generations)
    if fractional:
        outside = scored & ((rewards < 0) | (rewards > 1))
        if outside.any():
            raise ValueError(
                f"bots_fractional_evidence counts rewards as fractional successes, so they must lie in [0, 1]; "
                f"got {rewards[outside][:5].tolist()}. Rescale the reward (or bots_success_reward) to [0, 1], or "
                "turn bots_fractional_evidence off to threshold it at bots_success_threshold."
            )
        successes = np.where(scored, rewards, 0.0).sum(axis=1)
    else:
        successes = (scored & (rewards >= threshold)).sum(axis=1).astype(np.float64)
    return successes, scored.sum(axis=1).astype(np.float64)


def success_rule(reward_names: list[str], reward_weights: list[float], threshold: float) -> str:
    """How the weighted total decides success, in words, for the log at the start of a run with several reward
    functions and no `bots_success_reward`."""
    weighted = [f"{name} (x{weight:g})" for name, weight in zip(reward_names, reward_weights, strict=True) if weight]
    ignored = [name for name, weight in zip(reward_names, reward_weights, strict=True) if not weight]
    return (
        f"BOTS decides success on GRPO's weighted total reward of {', '.join(weighted) or 'no reward function'}"
        + (f" ({', '.join(ignored)}: weight 0, ignored)" if ignored else "")
        + ": a completion is a trial when at least one of them returned a number (None: this reward does not "
        f"apply), and a success when the weighted sum of the numbers returned is >= bots_success_threshold="
        f"{threshold:g}. A shaping reward (e.g. a format bonus) therefore also scores completions that the accuracy "
        "reward returned None for, and counts toward success; to decide success by some reward functions only, set "
        "bots_success_reward to their names."
    )


def unscored_cause(success_reward: list[str] | None, reward_names: list[str], reward_weights: list[float]) -> str:
    """Why a round had no scored completion, in words: what the deciding reward functions returned."""
    if success_reward is not None:
        return f"bots_success_reward={success_reward_label(success_reward)} returned None or NaN for every completion"
    weighted = [name for name, weight in zip(reward_names, reward_weights, strict=True) if weight != 0]
    return f"no reward function with a non-zero weight {weighted} returned a number for any completion"


NEVER_SCORED_AFTER = 3  # servings without a scored completion after which a task, or a domain, is reported


class NeverScored:
    """Tasks and domains served again and again without one scored completion, each reported once, in words.

    A round with no score at all warns and in the end stops training (`bots_max_unscored_rounds`), but rows that no
    deciding reward scores go unnoticed while the other rows of their rounds are scored: their tasks keep the prior,
    and every time they are served (with domain quotas, every round) their rollouts teach the selector nothing. Counted
    since the trainer was built: a resumed run counts afresh.
    """

    def __init__(
        self,
        num_tasks: int,
        success_reward: list[str] | None,
        domain_codes: np.ndarray | None = None,
        domain_names: tuple[str, ...] | None = None,
        after: int = NEVER_SCORED_AFTER,
    ) -> None:
        self.after = after
        self.served = np.zeros(num_tasks, dtype=np.uint32)
        self.scored = np.zeros(num_tasks, dtype=bool)
        self.domain_codes, self.domain_names = domain_codes, domain_names
        num_domains = 0 if domain_names is None else len(domain_names)
        self.domain_rounds = np.zeros(num_domains, dtype=np.int64)  # rounds that served the domain
        self.domain_scored = np.zeros(num_domains, dtype=bool)
        self.reported_domains: set[int] = set()
        self.reported_tasks = False
        if success_reward is None:
            self._source = "no reward function with a non-zero weight returned a number for them"
            self._fix = "Make a reward function return numbers for these rows"
        else:
            self._source = f"bots_success_reward={success_reward_label(success_reward)} returned None or NaN for them"
            self._fix = "Make a reward function return numbers for these rows and list it in bots_success_reward"

    def forget(self, tasks: np.ndarray) -> None:
        """The ids ``tasks`` now stand for other tasks (an active pool's refilled slots): their counts restart."""
        self.served[tasks] = 0
        self.scored[tasks] = False

    def observe(self, tasks: np.ndarray, trials: np.ndarray) -> list[str]:
        """Count one round (its task ids and the scored trials of each); return the newly reportable findings."""
        self.served[tasks] += 1
        self.scored[tasks[trials > 0]] = True
        findings = []
        if self.domain_names is not None:
            codes = self.domain_codes[tasks]
            served = np.unique(codes)
            self.domain_rounds[served] += 1
            self.domain_scored[codes[trials > 0]] = True
            never = served[(self.domain_rounds[served] >= self.after) & ~self.domain_scored[served]]
            for code in sorted(set(never.tolist()) - self.reported_domains):
                self.reported_domains.add(code)
                findings.append(self._domain_finding(code))
        never = tasks[(self.served[tasks] >= self.after) & ~self.scored[tasks]]
        if self.reported_domains:  # tasks of a domain already reported are said once, with it
            never = never[~np.isin(self.domain_codes[never], list(self.reported_domains))]
        if never.size and not self.reported_tasks:
            self.reported_tasks = True
            findings.append(
                f"BOTS: tasks {sorted(never.tolist())[:5]} were served {self.after} or more times and never scored "
                f"({self._source}): they keep the prior, and their rollouts teach the selector nothing whenever they "
                f"are selected. {self._fix}, or drop these rows. (Reported once.)"
            )
        return findings

    def _domain_finding(self, code: int) -> str:
        name, rounds = self.domain_names[code], int(self.domain_rounds[code])
        return (
            f"BOTS: domain {name!r} was served in {rounds} rounds and none of its completions was ever scored "
            f"({self._source}): its tasks keep the prior, and its share of every batch teaches the selector nothing. "
            f"{self._fix} (e.g. a code reward that returns None for the other domains, beside guru_reward), or give "
            f"{name!r} the weight 0 in bots_domain_weights."
        )
