"""BOTSGRPOTrainer on 2 CPU processes (gloo), started by `accelerate launch` as CPU_DISTRIBUTED.md prescribes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from launching import accelerate_launch, read_ranks
from recording import check_domain_metrics, replay_posterior, total_rewards
from tiny import task_dataset

from trl_bots.data import task_fingerprint


@pytest.mark.slow
def test_two_processes_agree_count_both_ranks_resume_exactly_and_detect_divergence(tiny_model_path, tmp_path):
    accelerate_launch("launched_bots.py", tiny_model_path, tmp_path)
    ranks = read_ranks(tmp_path, 2)

    for run in ("full", "resumed"):
        assert ranks[0][run]["world"] == ranks[1][run]["world"] == 2
        # Same selections, bit-identical posterior after every step, on both ranks.
        assert ranks[0][run]["rounds"] == ranks[1][run]["rounds"]
        assert ranks[0][run]["steps"] == ranks[1][run]["steps"]
    full = [rank["full"] for rank in ranks]
    assert len(full[0]["steps"]) == 4 and full[0]["steps"][-1]["round"] == 4

    # Each rank scored only its own completions (one task of the round's two); the posterior counts both ranks'.
    rounds = []
    for call0, call1 in zip(full[0]["calls"], full[1]["calls"], strict=True):
        assert len(call0["idx"]) == len(call1["idx"]) == 2 and set(call0["idx"]).isdisjoint(call1["idx"])
        rounds.append((call0["idx"] + call1["idx"], np.concatenate([total_rewards(c, [1.0]) for c in (call0, call1)])))
    alpha, beta = replay_posterior(10, rounds)
    final = full[0]["steps"][-1]
    np.testing.assert_allclose(np.frombuffer(bytes.fromhex(final["alpha"]), np.float32), alpha, rtol=1e-6)
    np.testing.assert_allclose(np.frombuffer(bytes.fromhex(final["beta"]), np.float32), beta, rtol=1e-6)

    # Resume from checkpoint-2 under 2 processes: the same rounds and posterior as the uninterrupted run.
    assert len(full[0]["rounds"]) == 4
    for rank in ranks:
        assert rank["resumed"]["calls"] == rank["full"]["calls"][2:]
        assert rank["resumed"]["steps"] == rank["full"]["steps"][2:]
        assert rank["resumed"]["rounds"] == rank["full"]["rounds"][2:]

    # A selector changed on rank 1 only: both ranks stop in the first round with the error naming rank 1.
    for rank in ranks:
        error = rank["desynchronised"]["error"]
        assert error is not None and rank["desynchronised"]["step"] == 0
        assert "out of sync across processes in round 1: ranks [1]" in error

    # Rank 1 built from the same tasks shuffled (same size, other rows per id): both ranks refuse to start.
    fingerprints = [task_fingerprint(task_dataset(10)), task_fingerprint(task_dataset(10).shuffle(seed=7))]
    for rank in ranks:
        assert rank["other_rows"]["error"] == (
            f"The train_dataset differs across processes: task-list fingerprints per rank {fingerprints}, ranks [1] "
            "differ from rank 0. BOTS identifies a task by its row number, so every process must build the same rows "
            "in the same order (e.g. shuffle with the same seed on every process, or not at all)."
        )

    # Process 1's last file of checkpoint-4 is missing although trainer_state.json is there: not complete.
    for rank in ranks:
        late = rank["late_rank"]
        assert late["latest_complete"] == f"{tmp_path}/late-rank/checkpoint-2"
        assert late["resume_latest_error"].startswith(
            f"Cannot resume from {tmp_path}/late-rank/checkpoint-4: it is incomplete, rng_state_1.pth is missing, "
        )
        assert late["resumed"]["steps"] == rank["full"]["steps"][2:]  # same settings as the full run
        assert late["resumed"]["calls"] == rank["full"]["calls"][2:]

    # Resumed from inside a round on 2 processes: each trains on its own saved completions, as the full run did.
    for rank in ranks:
        mid = rank["mid_round"]
        # Rounds at steps 1, 3, 5; from checkpoint-3 (inside round 2) the resumed run generates round 3 only.
        assert len(mid["full"]["calls"]) == 3 and mid["resumed"]["calls"] == mid["full"]["calls"][2:]
        assert mid["resumed"]["steps"] == mid["full"]["steps"][3:]
        assert mid["resumed"]["rounds"] == mid["full"]["rounds"][2:]
    assert sorted(p.name for p in (tmp_path / "mid-round" / "checkpoint-3").glob("bots_round_*")) == [
        "bots_round_0.pt",
        "bots_round_1.pt",
    ]


@pytest.mark.slow
def test_two_processes_hold_domain_quotas_every_round(tiny_model_path, tmp_path):
    accelerate_launch("launched_domains.py", tiny_model_path, tmp_path)
    ranks = read_ranks(tmp_path, 2)
    assert ranks[0]["rounds"] == ranks[1]["rounds"] and len(ranks[0]["rounds"]) == 6
    assert ranks[0]["lag"] == ranks[1]["lag"]
    history = [
        json.dumps([{k: v for k, v in entry.items() if k.startswith("bots/domain/")} for entry in rank["log_history"]])
        for rank in ranks
    ]
    assert history[0] == history[1]  # the same per-domain metrics logged on both processes (NaN included)
    # Each rank scored its own half of a round's completions; together, in rank order, they are the round's slots.
    calls = [
        {
            "idx": c0["idx"] + c1["idx"],
            "rewards": [r0 + r1 for r0, r1 in zip(c0["rewards"], c1["rewards"], strict=True)],
        }
        for c0, c1 in zip(ranks[0]["calls"], ranks[1]["calls"], strict=True)
    ]
    # Shares equal to the quotas of weights 1:2 over 4 tasks, every round; ETR and posterior means per domain.
    check_domain_metrics(ranks[0]["log_history"], calls, ranks[0]["domains"], [1.0, 2.0], batch_size=4)


@pytest.mark.slow
def test_two_processes_read_one_stream_into_the_same_pool_and_catch_a_rank_reading_another(tiny_model_path, tmp_path):
    accelerate_launch("launched_pool.py", tiny_model_path, tmp_path)
    ranks = read_ranks(tmp_path, 2)
    same = [rank["same"] for rank in ranks]
    assert same[0]["world"] == same[1]["world"] == 2
    # After every step: the same rows trained on, pool rows and task ids, stream position and posterior bytes.
    assert same[0]["steps"] == same[1]["steps"] and len(same[0]["steps"]) == 6
    assert (tmp_path / "selector0.safetensors").read_bytes() == (tmp_path / "selector1.safetensors").read_bytes()
    last = same[0]["steps"][-1]
    assert same[0]["retired"] == last["retired"] > 0 and last["position"] == 4 + last["retired"]
    assert [row["idx"] for row in last["rows"]] == last["task_ids"]

    # Rank 1 read other rows after the pool's first fill: round 1 (on the first fill) is credited, and the check
    # before crediting round 2 stops both ranks.
    for rank in ranks:
        diverging = rank["diverging"]
        assert diverging["step"] == 1 and diverging["position"] > 4
        assert diverging["error"] is not None
        assert "out of sync across processes in round 2: ranks [1]" in diverging["error"]
