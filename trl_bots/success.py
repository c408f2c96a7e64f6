"""What a round taught the selector: successes and scored trials per task, from GRPO's rewards (NumPy in and out).

GRPO scores every completion with each reward function; BOTS turns one round's scores into explicit evidence
(docs/algorithm.md, Explicit evidence). A completion whose success reward is missing (`None` from a reward
function, NaN in GRPO's tensor) is not a trial: it counts as neither a success nor a failure.
"""

from __future__ import annotations

import numpy as np


def successes_and_trials(
    rewards_per_func: np.ndarray,
    reward_weights: np.ndarray,
    num_generations: int,
    *,
    success_column: int | None = None,
    threshold: float = 0.5,
    fractional: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Successes and scored trials of each task of a round, from its `[B * G, reward functions]` rewards, in which row
    `k * G + g` is the `g`-th completion of the round's `k`-th task.

    Args:
        rewards_per_func: the rewards of every completion by every reward function (NaN: not scored).
        reward_weights: GRPO's weight of each reward function.
        num_generations: completions per task, G.
        success_column: the column of the reward function that decides success (`bots_success_reward`); `None`: the
            weighted total of the reward functions with a non-zero weight.
        threshold: a completion succeeds when that reward is `>= threshold` (`bots_success_threshold`).
        fractional: count the reward itself, which must lie in [0, 1], as a fractional success
            (`bots_fractional_evidence`).
    """
    rewards_per_func = np.asarray(rewards_per_func, dtype=np.float64)
    if success_column is None:
        # A completion is scored only when every reward function with a non-zero weight scored it: GRPO's total
        # would count a `None` as 0, so an unscorable answer with a scored side reward (e.g. a format bonus) would
        # otherwise be a failure. A NaN term makes the sum NaN, i.e. unscored.
        weights = np.asarray(reward_weights, dtype=np.float64)
        weighted = weights != 0
        rewards = (rewards_per_func[:, weighted] * weights[weighted]).sum(axis=1)
    else:
        rewards = rewards_per_func[:, success_column]
    rewards = rewards.reshape(-1, num_generations)
    scored = ~np.isnan(rewards)
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


def unscored_cause(success_reward: str | None, reward_names: list[str], reward_weights: list[float]) -> str:
    """Why a round had no scored completion, in words: what the success reward returned."""
    if success_reward is not None:
        return f"bots_success_reward={success_reward!r} returned None or NaN for every completion"
    weighted = [name for name, weight in zip(reward_names, reward_weights, strict=True) if weight != 0]
    return f"every completion lacked a score from at least one reward function with a non-zero weight {weighted}"
