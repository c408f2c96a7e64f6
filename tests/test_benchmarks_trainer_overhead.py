"""benchmarks/trainer_overhead.py: JSON alone on stdout (nothing a library prints), and its arguments checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "trainer_overhead.py")


def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, _PATH, *argv], capture_output=True, text=True, env=env, timeout=600)


def test_a_short_run_prints_only_json_on_stdout():
    result = run("--repetitions", "2", "--steps", "3", "--tasks", "40")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # fails on any line a library printed to stdout
    assert report["steps_per_kind"] == 2 * 2  # two runs of each trainer, the first of their three steps dropped
    assert report["ratio"] == report["bots_step_s"] / report["stock_step_s"]
    assert 0 < report["stock_step_s"] < 10 and 0 < report["bots_step_s"] < 10


def test_too_few_steps_is_refused():
    result = run("--steps", "1")
    assert result.returncode == 2 and "--steps must be >= 2, got 1" in result.stderr
