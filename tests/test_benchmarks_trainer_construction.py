"""benchmarks/trainer_construction.py: JSON alone on stdout (nothing a library prints), and its arguments checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "trainer_construction.py")


def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, _PATH, *argv], capture_output=True, text=True, env=env, timeout=600)


def test_a_short_run_prints_only_json_on_stdout():
    result = run("--sizes", "20", "400", "--repetitions", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # fails on any line a library printed to stdout
    assert [size["tasks"] for size in report["sizes"]] == [20, 400] and report["repetitions"] == 2
    for size in report["sizes"]:
        assert len(size["stock_runs_s"]) == len(size["bots_runs_s"]) == 2
        assert size["difference_s"] == size["bots_s"] - size["stock_s"]
        assert 0 < size["stock_s"] < 60 and 0 < size["bots_s"] < 60


def test_bad_arguments_are_refused():
    result = run("--repetitions", "0")
    assert result.returncode == 2 and "--repetitions must be >= 1, got 0" in result.stderr
    result = run("--sizes", "1")
    assert result.returncode == 2 and "--sizes must be >= 2 (the tasks of one round of the tiny settings), got 1" in (
        result.stderr
    )
