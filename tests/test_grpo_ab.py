"""The real-GRPO A/B benchmark (benchmarks/grpo_ab.py) in quick mode: what it trains, measures and reports."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "grpo_ab.py")
_SPEC = importlib.util.spec_from_file_location("grpo_ab", _PATH)
grpo_ab = importlib.util.module_from_spec(_SPEC)
sys.modules["grpo_ab"] = grpo_ab
_SPEC.loader.exec_module(grpo_ab)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo_ab")
    argv = ["--quick", "--workdir", str(folder / "work"), "--output", str(folder / "report.json")]
    assert grpo_ab.main([*argv, "--plots", str(folder / "plots")]) == 0
    return folder, json.loads((folder / "report.json").read_text())


@pytest.mark.slow
def test_quick_run_trains_every_strategy_from_the_same_start(quick):
    _, report = quick
    json.dumps(report, allow_nan=False)
    assert list(report["summary"]) == list(report["runs"]) == ["bots", "uniform", "mopps"]
    tasks_per_step = report["config"]["tasks_per_step"]
    assert tasks_per_step == 32 // 8
    for strategy, runs in report["runs"].items():
        assert len(runs) == report["config"]["seeds"] == 1
        for run in runs:
            assert run["eval_steps"] == [2, 4]  # --quick: 4 steps, evaluated every 2
            assert all(0.0 <= value <= 1.0 for value in run["accuracy"])
            # One ETR per step, each a share of the step's tasks: a multiple of 1 / tasks_per_step.
            etr = np.asarray(run["etr"])
            assert etr.shape == (4,)
            np.testing.assert_allclose(etr * tasks_per_step, np.round(etr * tasks_per_step), atol=1e-9)
            assert run["seconds_per_step"] > 0
        summary = report["summary"][strategy]
        assert summary["etr"] == pytest.approx(np.mean([np.mean(run["etr"]) for run in runs]))
        # Every curve starts at the one step-0 evaluation of the shared warm start, then follows the run's own.
        assert summary["accuracy_curve"][0] == pytest.approx(report["accuracy_before"])


@pytest.mark.slow
def test_steps_to_target_and_the_targets_follow_their_definitions(quick):
    _, report = quick
    runs, summary, steps = report["runs"], report["summary"], report["config"]["steps"]
    # The default target is uniform's seed-mean final held-out accuracy.
    assert report["target_accuracy"] == pytest.approx(np.mean([run["accuracy"][-1] for run in runs["uniform"]]))
    for strategy, strategy_runs in runs.items():
        expected = []
        for run in strategy_runs:
            pairs = zip(run["eval_steps"], run["accuracy"], strict=True)
            hits = [step for step, accuracy in pairs if accuracy >= report["target_accuracy"]]
            expected.append(hits[0] if hits else None)
        assert summary[strategy]["steps_to_target_per_seed"] == expected
        mean = np.mean([steps if step is None else step for step in expected])
        assert summary[strategy]["steps_to_target"] == pytest.approx(mean)
    ratio = summary["bots"]["steps_to_target"] / summary["uniform"]["steps_to_target"]
    assert report["targets"]["steps_to_target_vs_uniform"] == pytest.approx(ratio)
    assert report["targets"]["steps_to_target_vs_uniform_met"] == (ratio <= 0.75)


@pytest.mark.slow
def test_plots_are_written(quick):
    folder, _ = quick
    for name in ("grpo_ab_accuracy.png", "grpo_ab_etr.png"):
        data = (folder / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--strategies", "bots", "mopps"], "--strategies must include bots and uniform"),
        (["--strategies", "bots", "oracle"], "invalid choice: 'oracle'"),
    ],
)
def test_bad_arguments_stop_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        grpo_ab.parse(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
