"""The simulation benchmark (benchmarks/simulate.py) in quick mode: structure of its report and real properties."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "simulate.py")
_SPEC = importlib.util.spec_from_file_location("simulate", _PATH)
simulate = importlib.util.module_from_spec(_SPEC)
sys.modules["simulate"] = simulate  # dataclasses look their module up there
_SPEC.loader.exec_module(simulate)


@pytest.fixture(scope="module")
def report():
    cfg = dataclasses.replace(simulate.quick_config(), seeds=1)  # one seed keeps the file well under 30 s
    return simulate.run_benchmark(cfg, ablations=["rho", "reference", "pool"])


def test_report_structure(report):
    json.dumps(report, allow_nan=False)  # valid JSON: no NaN, only plain types
    assert set(report["summary"]) == set(simulate.STRATEGIES)
    keys = {"etr", "final_accuracy", "ttb50", "ttb100", "best_so_far_ratio", "implicit_pearson", "overhead_share"}
    steps = report["config"]["steps"]
    for name, metrics in report["summary"].items():
        assert keys <= set(metrics), name
        assert 0.0 <= metrics["etr"] <= 1.0
        assert 0.0 < metrics["overhead_share"] < 1.0
        for key in ("ttb50", "ttb100"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
        assert len(report["curves"][name]["accuracy_mean"]) == steps + 1
        assert len(report["curves"][name]["etr_mean"]) == steps
    assert report["summary"]["uniform"]["best_so_far_ratio"] == 1.0
    # The plug-in exists for bots and dots, not for mopps (explicit evidence only).
    assert report["summary"]["mopps"]["implicit_pearson"] is None
    assert math.isfinite(report["summary"]["bots"]["implicit_pearson"])
    assert list(report["ablations"]["rho"]) == [f"rho={v}" for v in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)]
    default = report["ablations"]["rho"]["rho=0.1"]  # the paper's default reuses the main run
    assert {key: default[key] for key in report["summary"]["bots"]} == report["summary"]["bots"]
    assert default["etr_vs_oracle"] == pytest.approx(report["targets"]["etr_vs_oracle"])
    assert set(report["targets"]) >= {"ttb100_gap_closed", "etr_vs_oracle", "bots_beats_mopps_ttb100"}


def test_reference_ablation_degrades_the_plug_in(report):
    entries = report["ablations"]["reference"]
    for name in ("bots", "dots"):  # the default noise is the main run's world: reused, not rerun
        main = report["summary"][name]
        assert {key: entries[f"{name} ref_noise=1.0"][key] for key in main} == main
    # Noisier columns: less correlated with the truth, and a worse plug-in, for every strategy that uses them.
    for name in ("bots", "bots thompson=False", "dots"):
        quality = [entries[f"{name} ref_noise={v}"]["plugin_pearson_all_tasks"] for v in (1.0, 2.0, 3.0)]
        assert quality[0] > quality[1] > quality[2], name
    corr = [np.mean(entries[f"bots ref_noise={v}"]["reference_corr_initial"]) for v in (1.0, 2.0, 3.0)]
    assert corr[0] > corr[1] > corr[2] > 0.3


def test_pool_ablation_measures_against_its_own_world(report):
    entries = report["ablations"]["pool"]
    small, full = report["config"]["num_tasks"] // 8, report["config"]["num_tasks"]
    assert entries[f"oracle N={small}"]["ttb100_gap_closed"] == 1.0  # its own oracle, not the main one
    assert entries[f"oracle N={full}"]["ttb100"] == report["summary"]["oracle"]["ttb100"]
    assert entries[f"oracle N={small}"]["ttb100"] != report["summary"]["oracle"]["ttb100"]
    for name in ("mopps", "bots", "dots"):
        assert entries[f"{name} N={full}"]["etr"] == report["summary"][name]["etr"]


def test_reference_columns_do_not_change_uniform_or_oracle_runs():
    """The premise of reusing the main baseline and oracle for the reference ablation."""
    cfg = dataclasses.replace(simulate.quick_config(), steps=16)
    noisy = dataclasses.replace(cfg, reference_noise_std=3.0, strong_skill=2.0)
    assert simulate.learner_world(noisy) == simulate.learner_world(cfg)
    for strategy in ("uniform", "oracle"):
        a, b = simulate.run_one(cfg, strategy, seed=0), simulate.run_one(noisy, strategy, seed=0)
        np.testing.assert_array_equal(a["accuracy"], b["accuracy"])
        np.testing.assert_array_equal(a["etr"], b["etr"])


def test_uniform_covers_the_pool_before_repeating(report):
    cfg = report["config"]
    selections = cfg["steps"] * cfg["batch_size"]
    expected = min(1.0, cfg["num_tasks"] / selections)
    assert report["summary"]["uniform"]["distinct_task_share"] == pytest.approx(expected)
    for metrics in report["summary"].values():
        assert 0.0 < metrics["distinct_task_share"] <= 1.0


def test_oracle_wastes_fewer_groups_than_uniform(report):
    assert report["summary"]["oracle"]["etr"] >= report["summary"]["uniform"]["etr"]
    assert report["summary"]["oracle"]["etr"] > 0.95


def test_heldout_accuracy_rises_under_every_strategy(report):
    for name, curve in report["curves"].items():
        accuracy = np.array(curve["accuracy_mean"])
        assert accuracy[-1] > accuracy[0] + 0.01, name


def test_all_same_groups_teach_nothing():
    cfg = simulate.quick_config()
    rng = np.random.default_rng(0)
    world = simulate.make_world(cfg, rng)
    policy = simulate.initial_policy(cfg)
    before = dataclasses.replace(policy, cluster=policy.cluster.copy(), task=policy.task.copy())
    indices = rng.choice(cfg.num_tasks, cfg.batch_size, replace=False)
    all_same = np.where(np.arange(cfg.batch_size) % 2 == 0, 0.0, float(cfg.group_size))
    signal = simulate.grpo_signal(all_same, cfg.group_size)
    assert not signal.any()
    quiet = dataclasses.replace(cfg, drift_std=0.0)  # isolate learning from the topic random walk
    for _ in range(10):
        simulate.learner_step(policy, world, quiet, indices, signal, rng)
    assert policy.shared == before.shared
    np.testing.assert_array_equal(policy.cluster, before.cluster)
    np.testing.assert_array_equal(policy.task, before.task)
    assert simulate.heldout_accuracy(policy, world) == simulate.heldout_accuracy(before, world)
    # A mixed group does move it, and most for a 50/50 group.
    mixed = simulate.grpo_signal(np.array([1.0, cfg.group_size / 2]), cfg.group_size)
    assert 0 < mixed[0] < mixed[1]


@pytest.mark.parametrize("strategy", ["uniform", "bots", "oracle"])
def test_no_mixed_group_no_learning(strategy):
    """A policy that fails every task (every group all-failure) must not move, whatever the selection."""
    cfg = dataclasses.replace(simulate.quick_config(), initial_skill=-60.0, drift_std=0.0, steps=16)
    run = simulate.run_one(cfg, strategy, seed=0)
    assert not run["etr"].any()
    np.testing.assert_array_equal(run["accuracy"], run["accuracy"][0])


def test_reference_columns_are_noisy_but_informative():
    cfg = simulate.quick_config()
    world = simulate.make_world(cfg, np.random.default_rng(0))
    truth = simulate.train_pass_rates(simulate.initial_policy(cfg), world)
    weak, strong = world.reference.T
    assert weak.mean() < truth.mean() < strong.mean()
    for column in (weak, strong):
        r = np.corrcoef(column, truth)[0, 1]
        assert 0.5 < r < 0.99


def test_cli_writes_json_and_plots(tmp_path):
    out = tmp_path / "sim.json"
    small = ["--quick", "--seeds", "1", "--output", str(out), "--plots", str(tmp_path / "fig")]
    assert simulate.main(small) == 0
    data = json.loads(out.read_text())
    assert set(data["summary"]) == set(simulate.STRATEGIES)
    for name in ("sim_accuracy.png", "sim_etr.png", "sim_ttb.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 1000


def test_domain_quotas_hold_and_what_they_cost():
    result = simulate.run_domains(seeds=1, steps=120)
    settings, pool = result["settings"], result["pool_share"]
    # Without quotas BOTS crowds the batch with the domain near p*; the hard domain falls below its pool share.
    free = settings["bots, no quotas"]["share"]
    assert free["near"] > 1.5 * pool["near"] and free["hard"] < pool["hard"]
    # With quotas every round holds floor or ceil of B x share (32 x 0.2 = 6.4), and the mean is the share.
    for name, share in pool.items():
        low, high = settings["bots, proportional quotas"]["share_range"][name]
        assert (low, high) == (math.floor(32 * share) / 32, math.ceil(32 * share) / 32)
        assert settings["bots, proportional quotas"]["share"][name] == pytest.approx(share, abs=1e-3)
        assert settings["bots, uniform quotas"]["share"][name] == pytest.approx(1 / 3, abs=1e-3)
    # The cost: fewer mixed groups than a free choice, still more than uniform sampling.
    etr = {name: setting["etr"] for name, setting in settings.items()}
    assert etr["bots, no quotas"] > etr["bots, proportional quotas"] > etr["uniform sampling"]


def test_cli_domains_mode_writes_json(tmp_path):
    output = tmp_path / "domains.json"
    assert simulate.main(["--domains", "--seeds", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert set(report["domains"]["settings"]) == set(simulate.DOMAIN_SETTINGS)
    with pytest.raises(SystemExit):  # it has no plots: --plots is refused, not ignored
        simulate.main(["--domains", "--plots", str(tmp_path)])


def test_cap_fit_comparison_robust_fit_holds_where_the_paper_fit_explodes():
    cfg = dataclasses.replace(simulate.cap_fit_config(), seeds=2)
    report = simulate.cap_fit_comparison(cfg)
    json.dumps(report, allow_nan=False)
    assert list(report["worlds"]) == list(simulate.CAP_FIT_WORLDS)
    assert report["worlds"]["saturated"]["saturated_share"] > 0.4  # GURU-like: many tasks at 0/0 or 1/1
    for name, entry in report["worlds"].items():
        for strategy in ("bots", "dots"):
            paper, robust = entry[strategy]["paper"], entry[strategy]["robust"]
            assert set(robust) == set(simulate.CAP_FIT_METRICS)
            assert robust["max_abs_cap_coef"] <= 3.0, (name, strategy)  # the documented bound
            difference = entry[strategy]["robust_minus_paper"]
            assert difference["etr"] == pytest.approx(robust["etr"] - paper["etr"])
    for name in ("saturated, close references", "similar references"):
        for strategy in ("bots", "dots"):
            paper, robust = report["worlds"][name][strategy]["paper"], report["worlds"][name][strategy]["robust"]
            assert paper["max_abs_cap_coef"] > 100, (name, strategy)  # the paper's formula explodes here ...
            assert robust["plugin_mae_all_tasks"] < paper["plugin_mae_all_tasks"] - 0.03, (name, strategy)
            assert robust["etr"] > paper["etr"], (name, strategy)  # ... and the robust fit selects better


def test_cap_fit_comparison_runs_on_its_own():
    with pytest.raises(SystemExit):
        simulate.main(["--cap-fit-comparison", "--quick"])
