"""Stock GRPO, the baseline of the A/B on a task stream: `trl.GRPOTrainer` with BOTS's effective-task ratio logged."""

from __future__ import annotations

import torch
from trl import GRPOTrainer

from trl_bots.success import effective_task_ratio, success_columns, successes_and_trials


ETR_METRIC = "bots/effective_task_ratio"  # BOTSGRPOTrainer's name: one reader for every run's log


class StockGRPOTrainer(GRPOTrainer):
    """
    [`trl.GRPOTrainer`] as it ships (its data path, generation, rewards, advantages and loss: nothing is overridden
    but to read), which also logs `bots/effective_task_ratio` at every training generation, measured as
    [`trl_bots.BOTSGRPOTrainer`] measures it: successes and scored trials of every group from the same gathered
    rewards by the same rule (`trl_bots.success.successes_and_trials` with the config's `bots_success_*` settings), and
    the share of groups with `0 < successes < trials`. `args` is a `BOTSConfig` for those settings; GRPO reads no
    other `bots_*` field.
    """

    # Overridden to read: this is where GRPO holds every completion's rewards, gathered over all processes, with row
    # k * G + g the g-th completion of the round's k-th prompt (the layout BOTS credits from).
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            successes, trials = successes_and_trials(
                rewards_per_func.detach().to("cpu", torch.float64).numpy(),
                self.reward_weights.to("cpu", torch.float64).numpy(),
                self.num_generations,
                success_columns=success_columns(self.args.bots_success_reward, self.reward_func_names),
                threshold=self.args.bots_success_threshold,
                fractional=self.args.bots_fractional_evidence,
                reward_names=self.reward_func_names,
            )
            self._metrics["train"][ETR_METRIC].append(effective_task_ratio(successes, trials))
        return rewards_per_func
