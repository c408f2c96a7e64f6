"""The selection-overhead benchmark runs (``--quick``) and reports every number it promises (structure, not speed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from trl_bots import BOTSConfig


SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "selection_overhead.py")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_benchmark_prints_complete_json(tmp_path):
    output = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--output", str(output)], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert report == json.loads(output.read_text())
    assert "speedup" in result.stderr  # progress goes to stderr, not into the JSON
    rows = report["rounds"]
    assert {(row["num_tasks"], row["batch_size"]) for row in rows} == {
        (n, b) for n in (10**3, 10**4) for b in (16, 64)
    }
    for row in rows:
        for side in ("ours", "reference"):
            assert positive(row[side]["median_ms"]) and positive(row[side]["min_ms"])
            assert row[side]["min_ms"] <= row[side]["median_ms"] and row[side]["rounds"] >= 3
        assert positive(row["speedup"]) and positive(row["peak_rss_mib"])
        assert row["state_bytes_per_task"] == 8.0  # alpha and beta in float32
    assert [entry["num_tasks"] for entry in report["save_load"]] == [10**4]
    assert all(positive(entry["seconds"]) for entry in report["save_load"])
    assert positive(report["peak_rss_mib"])
    domains = report["domains"]  # the six-domain pool beside the single pool, in the same run
    assert (domains["num_tasks"], domains["batch_size"], domains["num_domains"]) == (10**4, 64, 6)
    assert positive(domains["single_pool_median_ms"]) and positive(domains["six_domains_median_ms"])
    assert domains["ratio"] == domains["six_domains_median_ms"] / domains["single_pool_median_ms"]
    contiguous = domains["six_contiguous_domains_median_ms"]  # the same labels, each domain a range of tasks
    assert positive(contiguous) and domains["contiguous_ratio"] == contiguous / domains["single_pool_median_ms"]
    assert "six domains" in result.stderr
    sweep = report["domain_counts"]  # uniform quotas over more and more domains, against the single pool
    assert [row["num_domains"] for row in sweep] == [2, 8]
    for row in sweep:
        assert positive(row["median_ms"]) and positive(row["single_pool_median_ms"])
        assert row["ratio"] == row["median_ms"] / row["single_pool_median_ms"]
    assert "8 domains with uniform quotas" in result.stderr
    embedding = report["embedding"]  # the embedding estimator (no reference columns) beside the single pool
    assert (embedding["num_tasks"], embedding["batch_size"]) == (10**4, 64)
    d16 = embedding["d16"]
    assert positive(d16["median_ms"]) and d16["ratio"] == d16["median_ms"] / embedding["single_pool_median_ms"]
    assert d16["memory_bytes_per_task"] == 4 * 16 + 4  # float32 features and prediction cache
    assert 4 < d16["added_state_bytes_per_task"] < 5  # the float32 cache, plus O(d^2) statistics over 1e4 tasks
    assert "embedding estimator d=16" in result.stderr
    # The active pool at BOTSConfig's threshold: a few tasks retired in its 40 warm-up rounds (the seeds are fixed).
    check_pool(report["pool"], 10**4, 64, BOTSConfig.__dataclass_fields__["bots_retire_threshold"].default)
    assert report["pool"]["retired"] > 0


def check_pool(pool: dict, pool_size: int, batch_size: int, retire_threshold: float) -> None:
    """The active pool's report: its settings, each part's and the round's percentiles, the ratio to the fixed pool,
    and the tasks retired, which the endless generated stream replaced one for one."""
    assert (pool["pool_size"], pool["batch_size"], pool["num_generations"]) == (pool_size, batch_size, 8)
    assert pool["retire_threshold"] == retire_threshold
    rounds, parts = pool["round"], pool["parts"]
    assert list(parts) == ["select", "update", "retire", "refill", "replace_tasks"]
    for times in [rounds, pool["fixed_pool_round"], *parts.values()]:
        assert (
            positive(times["min_ms"]) and times["min_ms"] <= times["median_ms"] <= times["p90_ms"] <= times["max_ms"]
        )
    assert all(times["rounds"] == rounds["rounds"] >= 3 for times in parts.values())
    # A round is its parts: each of its order statistics is at least that of any part, its fastest at least the sum
    # of the parts' fastest.
    assert all(rounds["median_ms"] >= times["median_ms"] for times in parts.values())
    assert rounds["min_ms"] >= sum(times["min_ms"] for times in parts.values()) * (1 - 1e-9)
    assert pool["ratio"] == rounds["median_ms"] / pool["fixed_pool_round"]["median_ms"]
    assert pool["rounds"] == 40 + rounds["rounds"]  # the warm-up rounds, then the timed ones
    assert pool["retired"] == pool["stream_position"] - pool_size
    assert 0 <= pool["retired_per_round"] * rounds["rounds"] <= pool["retired"]


def test_quick_benchmark_times_the_active_pool_beside_a_fixed_one(tmp_path):
    result = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--pool-only", "--pool-size", "2000", "--pool-retire-threshold", "0.9"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert list(report) == ["pool"]
    check_pool(report["pool"], 2000, 64, 0.9)
    assert report["pool"]["retired_per_round"] > 1  # a high threshold retires tasks every round
    assert "active pool round" in result.stderr
