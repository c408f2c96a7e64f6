"""benchmarks/warm_start.py: builds the offline setup per seed and thread count and reports each build (structure only)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "warm_start.py")
_SPEC = importlib.util.spec_from_file_location("warm_start", SCRIPT)
warm_start = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(warm_start)


@pytest.mark.slow
def test_quick_run_builds_once_per_thread_count_in_its_own_process(tmp_path):
    output = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--workdir", str(tmp_path / "work"), "--output", str(output)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout)  # stdout is only the JSON
    assert report == json.loads(output.read_text())
    assert "[warm_start] seed 0, 2 thread(s): stopped at step 10" in result.stderr  # progress on stderr
    assert (report["config"]["seeds"], report["config"]["threads"]) == ([0], [1, 2])
    builds = report["builds"]
    assert [(build["seed"], build["threads"]) for build in builds] == [(0, 1), (0, 2)]
    for build in builds:
        assert build["torch_threads"] == build["threads"]  # the thread count took effect in the build's process
        history = build["criterion_history"]
        assert history[-1]["step"] == build["start_step"]  # it stopped where the criterion was last measured
        assert build["weak_step"] <= build["start_step"] <= build["strong_step"]
        pool = np.array([build["pool"][name] for name in ("always", "mixed", "never")])
        assert pool.sum() == pytest.approx(1.0) and np.allclose(pool * 32, np.round(pool * 32), atol=1e-3)
        assert build["pool_criterion_failures"] == []  # --quick's criterion accepts any start
        assert 0.0 <= build["weak_mean"] <= 1.0 and 0.0 <= build["strong_mean"] <= 1.0
        assert build["build_seconds"] > 0
        manifest = json.loads(
            (tmp_path / "work" / f"seed0-threads{build['threads']}" / "offline_setup" / "setup.json").read_text()
        )
        assert manifest["build"]["start_step"] == build["start_step"] and manifest["settings"]["seed"] == 0
    summary = report["summary"]
    assert (summary["builds"], summary["failed_builds"], summary["pool_criterion_met"]) == (2, 0, 2)
    for name in warm_start.SUMMARISED:
        values = [build[name] for build in builds]
        assert summary[name] == {"min": min(values), "max": max(values)}
    assert summary["pool_always"]["min"] == min(build["pool"]["always"] for build in builds)


def test_a_build_that_misses_its_criterion_is_recorded_with_the_error(tmp_path):
    overrides = [*warm_start.QUICK_DEMO, "--demo_min_always_solved", "1"]  # nothing is learnt in 20 steps
    build = warm_start.build_one(0, torch.get_num_threads(), tmp_path / "build", overrides)
    assert set(build) == {"seed", "threads", "error"}
    assert "did not reach the start criterion within demo_sft_max_steps=20 steps" in build["error"]
    summary = warm_start.summarise([build])
    assert (summary["builds"], summary["failed_builds"], summary["pool_criterion_met"]) == (1, 1, 0)
    assert summary["start_step"] is None and summary["pool_always"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "--threads must all be >= 1, got [0]"),
        (["--seeds", "1", "1"], "--seeds and --threads must not repeat a value, got [1, 1] and [1, 2]"),
    ],
)
def test_bad_arguments_stop_before_any_build(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        warm_start.parse(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_and_quick_choose_the_builds():
    options, overrides = warm_start.parse(["--demo_digits", "6"])
    assert (options.seeds, options.threads, overrides) == ([0, 1, 2], [1, 2], ["--demo_digits", "6"])
    options, overrides = warm_start.parse(["--quick", "--seeds", "4"])
    assert (options.seeds, options.threads) == ([4], [1, 2])
    assert overrides == warm_start.QUICK_DEMO
