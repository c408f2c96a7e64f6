"""The real-GRPO A/B benchmark (benchmarks/grpo_ab.py): its statistics, its arguments, and a --quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "grpo_ab.py")
_SPEC = importlib.util.spec_from_file_location("grpo_ab", _PATH)
grpo_ab = importlib.util.module_from_spec(_SPEC)
sys.modules["grpo_ab"] = grpo_ab
_SPEC.loader.exec_module(grpo_ab)

STRATEGIES = [
    "bots",
    "uniform",
    "mopps",
    "dots",
    "bots-no-thompson",
    "bots-explicit",
    "bots-embedding",
    "bots-embedding-refs",
]


# The end-to-end quick run: the reference, BOTS, a setting of it, and a plain dataset's BOTS (8 runs of 4 steps).
QUICK_STRATEGIES = ["uniform", "bots", "bots-no-thompson", "bots-embedding"]


# ------------------------------------------------------------------ statistics
def test_t_quantile_matches_the_closed_forms_and_scipy():
    # df 1 and 2 have closed forms: tan(pi/2 * c) and c * sqrt(2 / (1 - c^2)).
    assert grpo_ab.t_quantile(1) == pytest.approx(math.tan(math.pi / 2 * 0.95), rel=1e-12)
    assert grpo_ab.t_quantile(2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)), rel=1e-12)
    assert grpo_ab.t_quantile(4) == pytest.approx(2.7764451051977987, rel=1e-12)  # five seeds
    for df in [*range(1, 41), 57, 100, 250]:
        for confidence in (0.8, 0.95, 0.99):
            expected = stats.t.ppf(0.5 + confidence / 2, df)
            assert grpo_ab.t_quantile(df, confidence) == pytest.approx(expected, rel=1e-9), (df, confidence)


@pytest.mark.parametrize(("df", "confidence"), [(0, 0.95), (2.5, 0.95), (True, 0.95), (3, 1.0), (3, 0.0)])
def test_t_quantile_rejects_bad_input(df, confidence):
    with pytest.raises(ValueError, match="t_quantile"):
        grpo_ab.t_quantile(df, confidence)


def test_mean_interval_is_the_student_t_interval():
    values = [0.61, 0.64, 0.58, 0.66, 0.63]
    interval = grpo_ab.mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert interval == pytest.approx({"mean": np.mean(values), "low": low, "high": high}, rel=1e-10)
    # By hand: mean 0.624, sd 0.030496, t(4) = 2.776445 -> half-width 0.037866.
    assert interval["high"] - interval["mean"] == pytest.approx(0.0378656, abs=1e-6)
    assert grpo_ab.mean_interval([0.5, 0.5]) == {"mean": 0.5, "low": 0.5, "high": 0.5}
    assert grpo_ab.mean_interval([0.7]) == {"mean": 0.7, "low": None, "high": None}  # one seed: no spread
    for bad in ([], [0.1, float("nan")]):
        with pytest.raises(ValueError, match="mean_interval needs a non-empty list of finite numbers"):
            grpo_ab.mean_interval(bad)


def test_ratio_interval_is_a_geometric_mean_of_paired_ratios():
    # Per-seed ratios 2 and 4: geometric mean sqrt(8); the interval is the t-interval of log 2 and log 4, mapped back.
    ratio = grpo_ab.ratio_interval([2.0, 8.0], [1.0, 2.0])
    logs = np.log([2.0, 4.0])
    low, high = stats.t.interval(0.95, 1, loc=logs.mean(), scale=stats.sem(logs))
    assert ratio == pytest.approx({"mean": math.sqrt(8), "low": math.exp(low), "high": math.exp(high)}, rel=1e-10)
    assert grpo_ab.ratio_interval([1.0, 4.0], [2.0, 2.0])["mean"] == pytest.approx(1.0)  # 0.5x and 2x cancel out
    assert grpo_ab.ratio_interval([3.0], [2.0]) == {"mean": 1.5, "low": None, "high": None}
    assert grpo_ab.ratio_interval([0.0, 1.0], [1.0, 1.0]) is None  # a zero: no ratio on the log scale
    with pytest.raises(ValueError, match="2 numerators for 3 denominators"):
        grpo_ab.ratio_interval([1.0, 2.0], [1.0, 2.0, 3.0])


def test_steps_to_target_counts_a_run_that_never_gets_there_as_the_budget():
    runs = [
        {"eval_steps": [10, 20, 30], "accuracy": [0.5, 0.7, 0.8]},
        {"eval_steps": [10, 20, 30], "accuracy": [0.5, 0.6, 0.65]},
        {"eval_steps": [10, 20, 30], "accuracy": [0.75, 0.6, 0.7]},
    ]
    assert grpo_ab.steps_to_target(runs, 0.7, budget=30) == ([20, 30, 10], [True, False, True])


@pytest.mark.parametrize(
    ("etr", "steps", "all_reached", "difference", "expected"),
    [
        # Everything comfortably met.
        ((1.6, 1.4, 1.8), (0.5, 0.4, 0.6), True, (0.02, 0.01, 0.03), (True, True, True)),
        # ETR just under 1.5x; steps ratio <= 0.7 but its interval reaches 1; the difference's interval touches 0.
        ((1.49, 1.3, 1.7), (0.6, 0.3, 1.0), True, (0.02, 0.0, 0.04), (False, False, False)),
        # A strategy run that never reached the target: the steps target is missed whatever the ratio.
        ((1.5, 1.4, 1.6), (0.5, 0.4, 0.6), False, (-0.01, -0.02, 0.0), (True, False, False)),
        # One seed: no intervals, so neither interval condition can hold; an undefined ETR ratio is missed.
        (None, (0.5, None, None), True, (0.02, None, None), (False, False, False)),
    ],
)
def test_targets_met_follows_the_issue(etr, steps, all_reached, difference, expected):
    def interval(values):
        return None if values is None else dict(zip(("mean", "low", "high"), values, strict=True))

    met = grpo_ab.targets_met(interval(etr), interval(steps), all_reached, interval(difference))
    assert (met["etr"], met["steps"], met["accuracy"]) == expected


def test_accuracy_differences_are_paired_by_seed():
    def runs(*finals):
        return [{"seed": seed, "accuracy": [0.3, final]} for seed, final in enumerate(finals)]

    differences = grpo_ab.accuracy_differences({"a": runs(0.5, 0.6, 0.7), "b": runs(0.4, 0.5, 0.6)})
    assert set(differences) == {"a", "b"} and set(differences["a"]) == {"b"}
    assert differences["a"]["b"]["mean"] == pytest.approx(0.1)
    assert differences["a"]["b"]["low"] == pytest.approx(0.1) == differences["a"]["b"]["high"]  # no spread
    assert differences["b"]["a"]["mean"] == pytest.approx(-0.1)


def test_compare_needs_the_same_seeds():
    run = {"seed": 1, "eval_steps": [10], "accuracy": [0.5], "etr_mean": 0.5}
    with pytest.raises(ValueError, match="same seeds in the same order"):
        grpo_ab.compare([run], [{**run, "seed": 2}], target=0.5, budget=10)


# ------------------------------------------------------------------ arguments
def test_defaults_come_from_the_demo_config_and_flags_reach_its_parser(tmp_path):
    options = grpo_ab.parse(["--workdir", str(tmp_path)])
    assert options.strategies == STRATEGIES
    assert options.seeds == [0, 1, 2, 3, 4]
    assert (options.steps, options.eval_every) == (100, 10)  # offline_demo.yaml: max_steps, demo_eval_every
    options = grpo_ab.parse(["--seeds", "100", "101", "102", "--max_steps", "40", "--learning_rate", "5e-5"])
    assert options.seeds == [100, 101, 102]
    assert options.steps == 40 and options.training_args.learning_rate == 5e-5
    assert grpo_ab.parse(["--quick", "--steps", "6"]).steps == 6  # an explicit value wins over --quick's


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "1", "1"], "--seeds must be distinct non-negative integers, got [1, 1]"),
        (["--seeds", "-3"], "--seeds must be distinct non-negative integers, got [-3]"),
        (["--seeds"], "--seeds: expected at least one argument"),
        (["--strategies", "bots", "mopps"], "--strategies must include uniform"),
        (["--strategies", "uniform"], "--strategies must include uniform (the reference) and at least one other"),
        (["--strategies", "bots", "uniform", "bots"], "--strategies must not repeat a strategy"),
        (["--strategies", "bots", "oracle"], "invalid choice: 'oracle'"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--quick", "--eval-every", "0"], "--eval-every must be >= 1, got 0"),
        (["--max_steps", "0"], "--steps must be >= 1, got 0"),
    ],
)
def test_bad_arguments_stop_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        grpo_ab.parse(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_stream_mode_has_its_own_strategies_and_compares_with_stock(tmp_path):
    options = grpo_ab.parse(["--stream", "--workdir", str(tmp_path)])
    assert options.stream and options.strategies == ["stock", "uniform-pool", "bots-pool"]
    assert grpo_ab.parse(["--stream", "--strategies", "stock"]).strategies == ["stock"]  # the baseline alone
    assert not grpo_ab.parse(["--strategies", "bots", "uniform"]).stream
    # The BOTS strategies read the stream as a plain dataset: the demo's reference columns are dropped.
    for name in ("uniform-pool", "bots-pool"):
        assert grpo_ab.STREAM_STRATEGIES[name]["bots_reference_columns"] == "none"
    assert grpo_ab.reference_of({"config": {"reference": "stock"}}) == "stock"
    assert grpo_ab.reference_of({"config": {}}) == "uniform"  # a report on the task pool does not name it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stream", "--strategies", "bots-pool"], "--strategies must include stock (the reference) with --stream"),
        (
            ["--stream", "--strategies", "stock", "bots"],
            "--strategies bots do not train on the task stream (--stream)",
        ),
        (["--strategies", "uniform", "stock"], "--strategies stock do not train on the task pool (no --stream)"),
        (["--stream", "--strategies", "stock", "stock"], "--strategies must not repeat a strategy"),
    ],
)
def test_bad_stream_arguments_stop_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        grpo_ab.parse(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_flag_is_named_by_the_demo_parser():
    with pytest.raises(ValueError, match="--no_such_flag"):
        grpo_ab.parse(["--no_such_flag", "3"])


# ------------------------------------------------------------------ --quick, end to end
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo_ab")
    argv = ["--quick", "--workdir", str(folder / "work"), "--output", str(folder / "report.json")]
    argv += ["--strategies", *QUICK_STRATEGIES]
    result = subprocess.run(
        [sys.executable, _PATH, *argv, "--plots", str(folder / "plots"), "--markdown"],
        capture_output=True,
        text=True,
        check=True,
    )
    return folder, json.loads((folder / "report.json").read_text()), result


@pytest.mark.slow
def test_quick_run_reports_json_on_stdout_and_a_summary_on_stderr(quick):
    folder, report, result = quick
    assert json.loads(result.stdout) == report  # stdout carries the JSON only
    assert "[grpo_ab] run 8/8: bots-embedding, seed 1" in result.stderr
    assert "| strategy | ETR | final acc [95% CI] | steps to uniform's final [CI] | s/step |" in result.stderr
    assert grpo_ab.render(report, markdown=True) in result.stderr
    # The targets table says met/missed as the flags do, in the ETR, steps, accuracy order.
    text = grpo_ab.render(report).splitlines()
    first = next(i for i, line in enumerate(text) if line.startswith("Targets against uniform")) + 3
    for name, paired in report["paired"].items():
        row = text[first + list(report["paired"]).index(name)]
        words = [word for word in row.split() if word in ("met", "missed")]
        flags = paired["targets_met"]
        assert row.startswith(name + " ")
        assert words == ["met" if flags[key] else "missed" for key in ("etr", "steps", "accuracy")]
    data = (folder / "plots" / "grpo_ab_accuracy.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert report["wall_seconds"] >= report["setup"]["seconds"] > 0


@pytest.mark.slow
def test_quick_run_keeps_the_runs_layout(quick):
    _, report, _ = quick
    config = report["config"]
    assert list(report["runs"]) == list(report["summary"]) == list(config["strategies"]) == QUICK_STRATEGIES
    assert config["strategies"]["bots-no-thompson"] == {"bots_strategy": "bots", "bots_thompson": False}
    assert config["seeds"] == [0, 1] and config["steps"] == 4
    assert config["heldout_standard_error"] == pytest.approx(0.5 / math.sqrt(config["heldout_tasks"]))
    tasks_per_step = config["tasks_per_step"]
    for runs in report["runs"].values():
        assert [run["seed"] for run in runs] == [0, 1]  # the same seeds, in order, for every strategy
        for run in runs:
            assert {"seed", "eval_steps", "accuracy", "etr", "accuracy_by_level", "end_shape"} <= set(run)
            assert "trainer" not in run
            assert run["eval_steps"] == [2, 4]
            # One ETR per step, each a share of the step's tasks.
            etr = np.asarray(run["etr"])
            assert etr.shape == (4,)
            np.testing.assert_allclose(etr * tasks_per_step, np.round(etr * tasks_per_step), atol=1e-9)
            assert run["etr_mean"] == pytest.approx(etr.mean())
            # The held-out set has the same number of tasks per carry level: overall = mean of the levels.
            for overall, levels in zip(run["accuracy"], run["accuracy_by_level"], strict=True):
                assert list(levels) == ["0", "1", "2"]
                assert overall == pytest.approx(np.mean(list(levels.values())))
            assert sum(run["end_shape"].values()) == pytest.approx(1.0)
    start = report["start"]
    assert start["accuracy"] == pytest.approx(np.mean(list(start["accuracy_by_level"].values())))
    assert sum(start["pool_shape"].values()) == pytest.approx(1.0)


def t_interval(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if np.ptp(values) == 0:
        return {"mean": values[0], "low": values[0], "high": values[0]}
    low, high = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    return {"mean": values.mean(), "low": low, "high": high}


@pytest.mark.slow
def test_quick_run_summary_follows_from_the_runs(quick):
    assert_summary_follows_from_the_runs(quick[1], "uniform")


def assert_summary_follows_from_the_runs(report: dict, reference: str) -> None:
    """Every summary and paired comparison of ``report``, recomputed from its runs with scipy, against ``reference``."""
    runs, steps = report["runs"], report["config"]["steps"]
    target = np.mean([run["accuracy"][-1] for run in runs[reference]])
    assert report["target_accuracy"] == pytest.approx(target)

    def steps_needed(run):
        hits = [s for s, accuracy in zip(run["eval_steps"], run["accuracy"], strict=True) if accuracy >= target]
        return hits[0] if hits else steps

    for name, strategy_runs in runs.items():
        summary = report["summary"][name]
        assert summary["etr"] == pytest.approx(t_interval([np.mean(run["etr"]) for run in strategy_runs]))
        finals = [run["accuracy"][-1] for run in strategy_runs]
        assert summary["final_accuracy"] == pytest.approx(t_interval(finals))
        curve = summary["accuracy_curve"]
        assert curve["eval_steps"] == [0, 2, 4]
        for i, step_accuracy in enumerate(zip(*(run["accuracy"] for run in strategy_runs), strict=True)):
            expected = t_interval(step_accuracy)
            assert [curve[key][i + 1] for key in ("mean", "low", "high")] == pytest.approx(list(expected.values()))
        assert curve["mean"][0] == curve["low"][0] == report["start"]["accuracy"]  # the shared warm start
        needed = [steps_needed(run) for run in strategy_runs]
        assert summary["steps_to_target_per_seed"] == needed
        assert summary["steps_to_target"] == pytest.approx(t_interval(needed))
        for level in ("0", "1", "2"):
            by_level = [run["accuracy_by_level"][-1][level] for run in strategy_runs]
            assert summary["final_accuracy_by_level"][level] == pytest.approx(t_interval(by_level))

    for name, paired in report["paired"].items():
        pairs = list(zip(runs[name], runs[reference], strict=True))
        difference = t_interval([run["accuracy"][-1] - ref["accuracy"][-1] for run, ref in pairs])
        assert paired["final_accuracy_difference"] == pytest.approx(difference)
        logs = t_interval([math.log(steps_needed(run) / steps_needed(ref)) for run, ref in pairs])
        assert paired["steps_ratio"] == pytest.approx({key: math.exp(value) for key, value in logs.items()})
        etr = [(np.mean(run["etr"]), np.mean(ref["etr"])) for run, ref in pairs]
        if min(min(pair) for pair in etr) > 0:
            logs = t_interval([math.log(a / b) for a, b in etr])
            assert paired["etr_ratio"] == pytest.approx({key: math.exp(value) for key, value in logs.items()})
        else:
            assert paired["etr_ratio"] is None
        met = paired["targets_met"]
        assert met["etr"] == (paired["etr_ratio"] is not None and paired["etr_ratio"]["mean"] >= 1.5)
        all_reached = all(max(run["accuracy"]) >= target for run in runs[name])
        ratio = paired["steps_ratio"]
        assert met["steps"] == (all_reached and ratio["mean"] <= 0.7 and ratio["high"] < 1)
        assert met["accuracy"] == (difference["low"] > 0)
    assert set(report["targets"]) == {"etr", "steps", "accuracy"}
    assert list(report["paired"]) == [name for name in runs if name != reference]


# ------------------------------------------------------------------ --quick --stream, end to end
STREAM_STRATEGIES = ["stock", "uniform-pool", "bots-pool"]


@pytest.fixture(scope="module")
def quick_stream(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo_ab_stream")
    argv = ["--quick", "--stream", "--workdir", str(folder / "work"), "--output", str(folder / "report.json")]
    result = subprocess.run(
        [sys.executable, _PATH, *argv, "--strategies", *STREAM_STRATEGIES], capture_output=True, text=True, check=True
    )
    return json.loads((folder / "report.json").read_text()), result


@pytest.mark.slow
def test_quick_stream_run_compares_with_stock(quick_stream):
    report, result = quick_stream
    config = report["config"]
    assert config["reference"] == "stock" and list(report["runs"]) == STREAM_STRATEGIES
    assert config["strategies"]["stock"] == {} and config["train_tasks"] is None
    assert config["stream"]["digits"] == 2 and config["stream"]["level_weights"] == [1.0, 1.0, 1.0]  # --quick's world
    assert report["targets"]["etr"].startswith("ETR >= 1.5x stock's")
    tasks_per_step = config["tasks_per_step"]
    for name, runs in report["runs"].items():
        assert [run["seed"] for run in runs] == [0, 1]
        for run in runs:
            assert run["eval_steps"] == [2, 4] and len(run["etr"]) == 4  # an ETR at every step, measured on stock too
            etr = np.asarray(run["etr"])
            np.testing.assert_allclose(etr * tasks_per_step, np.round(etr * tasks_per_step), atol=1e-9)
            assert run["etr_mean"] == pytest.approx(etr.mean())
            if name == "stock":  # TRL's trainer: no pool
                assert "pool" not in run
                continue
            # BOTS's active pool, 64 rounds of tasks by default: every task it read is pooled or retired.
            pool = run["pool"]
            assert pool["size"] == 64 * tasks_per_step
            assert pool["stream_position"] == pool["size"] + pool["retired"]
            if name == "uniform-pool":  # a non-adaptive strategy retires every task it served: the stream read once
                assert pool["retired"] == 4 * tasks_per_step
    assert_summary_follows_from_the_runs(report, "stock")
    assert result.stderr.count("GRPO A/B on an unbounded task stream: ") == 1
    assert "steps to stock's final [CI]" in result.stderr and "Targets against stock, paired by seed" in result.stderr
    assert grpo_ab.render(report) in result.stderr


def test_pooled_report_concatenates_the_runs_of_the_common_strategies():
    def report(seeds, finals, strategies):
        runs = {
            name: [
                {
                    "seed": seed,
                    "eval_steps": [10],
                    "accuracy": [final + offset],
                    "accuracy_by_level": [{"0": final}],
                    "etr": [0.3],
                    "etr_mean": 0.3 + offset,
                    "train_seconds": 1.0,
                    "seconds_per_step": 0.1,
                    "end_shape": {"always": 0.3, "mixed": 0.3, "never": 0.4},
                }
                for seed, final in zip(seeds, finals, strict=True)
            ]
            for name, offset in strategies.items()
        }
        start = {"accuracy": 0.3, "accuracy_by_level": {"0": 0.3}, "pool_shape": {"always": 0.3, "mixed": 0.3}}
        config = {"seeds": seeds, "steps": 10, "strategies": {name: {"bots_strategy": name} for name in strategies}}
        return {"config": config, "start": start, "wall_seconds": 60.0, "runs": runs}

    first = report([1, 2], [0.4, 0.5], {"uniform": 0.0, "bots": 0.1, "dots": 0.2})
    second = report([3, 4], [0.45, 0.55], {"uniform": 0.0, "bots": 0.1})
    pooled = grpo_ab.pooled_report([first, second])
    assert list(pooled["runs"]) == ["uniform", "bots"]  # dots is only in the first
    assert list(pooled["config"]["strategies"]) == list(pooled["summary"]) == ["uniform", "bots"]
    assert pooled["config"]["seeds"] == [1, 2, 3, 4] and pooled["wall_seconds"] == 120.0
    assert pooled["target_accuracy"] == pytest.approx(0.475)
    assert pooled["accuracy_differences"]["bots"]["uniform"]["mean"] == pytest.approx(0.1)
    assert pooled["paired"]["bots"]["etr_ratio"]["mean"] == pytest.approx(0.4 / 0.3)
    with pytest.raises(ValueError, match="distinct seeds"):
        grpo_ab.pooled_report([first, first])
    # On a stream the reference is stock; a stream's report does not pool with one on the task pool.
    streamed = report([5, 6], [0.4, 0.5], {"stock": 0.0, "bots-pool": 0.1})
    streamed["config"].update(reference="stock", stream={"digits": 2})
    other = report([7, 8], [0.5, 0.6], {"stock": 0.0, "bots-pool": 0.1})
    other["config"].update(reference="stock", stream={"digits": 2})
    pooled = grpo_ab.pooled_report([streamed, other])
    assert list(pooled["paired"]) == ["bots-pool"] and pooled["config"]["seeds"] == [5, 6, 7, 8]
    assert pooled["target_accuracy"] == pytest.approx(0.5)  # stock's mean final accuracy
    with pytest.raises(ValueError, match="the same data"):
        grpo_ab.pooled_report([first, {**streamed, "start": first["start"]}])


def test_report_draws_the_pooled_runs_when_asked(tmp_path, capsys):
    """`--report A B --plots DIR` draws the pooled runs, as a run does with `--plots` (here the stream A/B's saved
    reports, ten seeds between them)."""
    from matplotlib.image import imread

    docs = Path(__file__).parents[1] / "docs"
    reports = [str(docs / name) for name in ("results-grpo-ab-stream.json", "results-grpo-ab-stream-replication.json")]
    assert grpo_ab.main(["--report", *reports, "--plots", str(tmp_path / "plots")]) == 0
    assert imread(tmp_path / "plots" / "grpo_ab_accuracy.png").ndim == 3
    assert "2 strategies x 10 seeds" in capsys.readouterr().out
