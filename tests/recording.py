"""Test-side bookkeeping: what the reward functions saw, and the BOTS posterior recomputed from it."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from transformers import TrainerCallback

from trl_bots.domains import apportion


class RewardRecorder:
    """Wraps reward functions; keeps, per call, the test's own `idx` column and each function's rewards."""

    def __init__(self):
        self.calls: list[dict] = []

    def wrap(self, *funcs):
        recorder = self
        wrapped = []
        for position, func in enumerate(funcs):

            def reward(completions, idx, _func=func, _position=position, **kwargs):
                values = _func(completions=completions, idx=idx, **kwargs)
                if _position == 0:
                    recorder.calls.append({"idx": list(idx), "rewards": []})
                recorder.calls[-1]["rewards"].append(list(values))
                return values

            reward.__name__ = func.__name__
            wrapped.append(reward)
        return wrapped


def total_rewards(call: dict, weights) -> np.ndarray:
    """GRPO's weighted total per completion (NaN terms skipped); NaN (unscored) where no function with a non-zero
    weight scored it."""
    table = np.array([[math.nan if v is None else v for v in values] for values in call["rewards"]], dtype=float)
    weights = np.asarray(weights, dtype=float)
    terms = table[weights != 0] * weights[weights != 0, None]
    return np.where(np.isnan(terms).all(axis=0), math.nan, np.nansum(terms, axis=0))


def replay_posterior(num_tasks, rounds, forgetting=0.1, prior=(1.0, 1.0), threshold=0.5, fractional=False):
    """docs/algorithm.md (Posterior update) with rho = 0, in float64: `rounds` is a list of (idx per completion, reward
    per completion).

    A reward counts as a success when >= `threshold`, or, with `fractional`, as `r` successes and `1 - r` failures.
    """
    alpha = np.full(num_tasks, prior[0])
    beta = np.full(num_tasks, prior[1])
    for idx, rewards in rounds:
        s = np.zeros(num_tasks)
        f = np.zeros(num_tasks)
        for i, r in zip(idx, rewards, strict=True):
            if not math.isnan(r):
                success = r if fractional else float(r >= threshold)
                s[i] += success
                f[i] += 1 - success
        alpha = (1 - forgetting) * alpha + forgetting * prior[0] + s
        beta = (1 - forgetting) * beta + forgetting * prior[1] + f
    return alpha, beta


class PosteriorLog(TrainerCallback):
    """After every optimizer step: the selector's alpha and beta (exact bytes) and its update count."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.steps: list[dict] = []

    def on_step_end(self, args, state, control, **kwargs):
        selector = self.trainer.selector
        self.steps.append(
            {
                "step": state.global_step,
                "round": selector.round,
                "alpha": selector.alpha.tobytes().hex(),
                "beta": selector.beta.tobytes().hex(),
            }
        )


class PoolLog(TrainerCallback):
    """After every optimizer step: the rows trained on, the pool and the selector's posterior (exact bytes)."""

    def __init__(self, trainer):
        self.trainer, self.steps = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        pool, selector = self.trainer.pool, self.trainer.selector
        self.steps.append(
            {
                "round_tasks": self.trainer.bots_round_tasks.tolist(),
                "task_ids": pool.task_ids.tolist(),
                "rows": [dict(row) for row in pool.rows],
                "position": pool.stream.position,
                "retired": pool.retired,
                "alpha": selector.alpha.tobytes().hex(),
                "beta": selector.beta.tobytes().hex(),
            }
        )


class SelectionLog:
    """Wraps `trainer.selector.select`: per selection, the updates the selector had seen, its alpha, beta and choice."""

    def __init__(self, trainer):
        self.selections: list[dict] = []
        selector = trainer.selector
        select = selector.select

        def logged_select(batch_size):
            seen = {
                "round": selector.round,
                "alpha": selector.alpha.astype(float),
                "beta": selector.beta.astype(float),
            }
            tasks = select(batch_size)
            self.selections.append({**seen, "tasks": tasks.tolist()})
            return tasks

        selector.select = logged_select


def replay_implicit_posterior(
    reference,
    rounds,
    rho,
    pseudo_count,
    forgetting=0.1,
    prior=(1.0, 1.0),
    momentum=0.9,
    threshold=0.5,
    cap_fit="robust",
):
    """docs/algorithm.md (Posterior update, Implicit evidence) with the interpolation plug-in, in float64, written
    independently of trl_bots.

    `reference` is `[N, 2]` (weak, strong); `rounds` is a list of (selected task ids, idx per completion, reward per
    completion). `cap_fit="paper"` fits mu with the paper's ratio of batch means, `"robust"` with the same ratio over
    the tasks whose references differ (gaps taken with their sign), skipping a batch whose (sum |gap|)^2 / count is
    below 0.05 and bounding mu_hat to [-2, 3]. Returns (alpha, beta, mu) after all rounds.
    """
    weak, strong = reference[:, 0].astype(float), reference[:, 1].astype(float)
    num_tasks = len(weak)
    alpha = np.full(num_tasks, prior[0])
    beta = np.full(num_tasks, prior[1])
    mu = None
    for selected, idx, rewards in rounds:
        s = np.zeros(num_tasks)
        n = np.zeros(num_tasks)
        for i, r in zip(idx, rewards, strict=True):
            if not math.isnan(r):
                s[i] += float(r >= threshold)
                n[i] += 1
        f = n - s
        chosen = np.asarray(selected)
        observed = s[chosen] / n[chosen]
        gap = strong[chosen] - weak[chosen]
        if cap_fit == "paper":
            mu_hat = (observed.mean() - weak[chosen].mean()) / (gap.mean() + 1e-6)
        else:
            differ = gap != 0
            informative = differ.any() and np.abs(gap[differ]).sum() ** 2 / differ.sum() >= 0.05
            mu_hat = None
            if informative:
                signed = np.sign(gap[differ]) * (observed[differ] - weak[chosen][differ])
                mu_hat = float(np.clip(signed.sum() / np.abs(gap[differ]).sum(), -2.0, 3.0))
        if mu_hat is not None:
            mu = mu_hat if mu is None else momentum * mu + (1 - momentum) * mu_hat
        q = np.clip(weak + (0.5 if mu is None else mu) * (strong - weak), 0, 1)
        pseudo_s, pseudo_f = pseudo_count * q, pseudo_count * (1 - q)
        pseudo_s[chosen], pseudo_f[chosen] = s[chosen], f[chosen]  # the selected tasks: their observed counts
        alpha = (1 - forgetting) * alpha + forgetting * prior[0] + (1 - rho) * s + rho * pseudo_s
        beta = (1 - forgetting) * beta + forgetting * prior[1] + (1 - rho) * f + rho * pseudo_f
    return alpha, beta, mu


def expected_quotas(weights: list[float], rounds: int, batch_size: int) -> list[list[int]]:
    """The quotas of `rounds` successive rounds (domains in sorted order), from the pure apportionment function."""
    lag, quotas = [Fraction(0)] * len(weights), []
    for _ in range(rounds):
        round_quotas, lag = apportion(batch_size, np.array(weights), lag)
        quotas.append(round_quotas.tolist())
    return quotas


def check_domain_metrics(log_history, calls, domains, weights, batch_size, generations=2):
    """Every round's logged `bots/domain/*` metrics against counts computed here from the rewards seen (rho = 0).

    `calls` holds one entry per round with every completion of the round (all processes) in slot order; `domains`
    is each task's label, `weights` the resolved weight per domain in sorted order (None: no quotas to check).
    """
    labels, names = np.array(domains), sorted(set(domains))
    rounds = [(call["idx"], total_rewards(call, [1.0])) for call in calls]
    quotas = expected_quotas(weights, len(calls), batch_size) if weights is not None else None

    def logged(key):
        return [entry[key] for entry in log_history if key in entry]

    for k, (idx, rewards) in enumerate(rounds):
        tasks = np.array(idx[::generations])  # completions of a task are contiguous
        assert np.unique(tasks).size == batch_size
        successes = (np.array(rewards) >= 0.5).reshape(-1, generations).sum(axis=1)
        alpha, beta = replay_posterior(len(domains), rounds[: k + 1])
        mean = alpha / (alpha + beta)
        for d, name in enumerate(names):
            in_domain = labels[tasks] == name
            if quotas is not None:
                assert in_domain.sum() == quotas[k][d], (k, name)
            assert logged(f"bots/domain/{name}/share")[k] == in_domain.sum() / batch_size
            effective = logged(f"bots/domain/{name}/effective_task_ratio")[k]
            mixed = (successes[in_domain] > 0) & (successes[in_domain] < generations)
            assert math.isnan(effective) if not in_domain.any() else effective == pytest.approx(mixed.mean())
            posterior = logged(f"bots/domain/{name}/posterior_mean")[k]
            assert posterior == pytest.approx(mean[labels == name].mean(), rel=1e-5)
