"""Rank consistency with 3 and 4 CPU processes (sharing 2 cores), uneven work per rank, multi-step rounds."""

from __future__ import annotations

import numpy as np
import pytest
from launched_many import SLEEP_PER_RANK
from launching import accelerate_launch, posterior, read_ranks
from recording import replay_posterior, total_rewards


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [3, 4])
def test_ranks_agree_with_uneven_work(tiny_model_path, tmp_path, world_size):
    accelerate_launch("launched_many.py", tiny_model_path, tmp_path, num_processes=world_size)
    ranks = read_ranks(tmp_path, world_size)
    assert [rank["world"] for rank in ranks] == [world_size] * world_size
    # The work really was uneven: the last rank spent longer in every reward call than rank 0 by its extra sleep.
    extra = (world_size - 1) * SLEEP_PER_RANK
    assert all(
        last - first >= extra * 0.9
        for first, last in zip(ranks[0]["reward_seconds"], ranks[-1]["reward_seconds"], strict=True)
    )

    # 12 steps, a round every steps_per_generation * num_iterations = 4 steps: 3 rounds, the same on every rank, and
    # a bit-identical posterior after every step on every rank.
    reference = ranks[0]
    assert (
        len(reference["rounds"]) == 3 and [step["round"] for step in reference["steps"]] == [1] * 4 + [2] * 4 + [3] * 4
    )
    for rank in ranks[1:]:
        assert rank["rounds"] == reference["rounds"]
        assert rank["steps"] == reference["steps"]

    # Each round's 2N tasks x 2 completions are split over the ranks in order; the posterior counts all of them.
    rounds = []
    for k, tasks in enumerate(reference["rounds"]):
        calls = [rank["calls"][k] for rank in ranks]
        idx = sum((call["idx"] for call in calls), [])
        assert len(tasks) == 2 * world_size and idx == np.repeat(tasks, 2).tolist()
        rounds.append((idx, np.concatenate([total_rewards(call, [1.0]) for call in calls])))
    alpha, beta = replay_posterior(12, rounds)
    final_alpha, final_beta = posterior(reference["steps"][-1])
    np.testing.assert_allclose(final_alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(final_beta, beta, rtol=1e-6)
