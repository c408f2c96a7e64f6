"""The simulation's task features (benchmarks/simulate.py --features) and its embedding ablation."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys

import numpy as np


_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "simulate.py")
_SPEC = importlib.util.spec_from_file_location("simulate", _PATH)
simulate = importlib.util.module_from_spec(_SPEC)
sys.modules["simulate"] = simulate
_SPEC.loader.exec_module(simulate)


def test_features_are_drawn_last_so_the_rest_of_the_world_is_unchanged():
    cfg = simulate.quick_config()
    plain = simulate.make_world(cfg, np.random.default_rng([3, 0]))
    featured = simulate.make_world(dataclasses.replace(cfg, features=16), np.random.default_rng([3, 0]))
    assert plain.features is None and featured.features.shape == (cfg.num_tasks, 16)
    for name in ("cluster", "difficulty", "heldout_cluster", "heldout_difficulty", "reference"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(featured, name))


def test_features_carry_difficulty_less_so_with_more_noise():
    cfg = dataclasses.replace(simulate.quick_config(), num_tasks=4000, features=32)

    def r2(noise):
        world = simulate.make_world(dataclasses.replace(cfg, feature_noise=noise), np.random.default_rng([0, 0]))
        x = np.column_stack([np.ones(cfg.num_tasks), world.features])
        target = np.tanh((world.difficulty - world.difficulty.mean()) / world.difficulty.std())
        residual = target - x @ np.linalg.lstsq(x, target, rcond=None)[0]
        return 1 - residual.var() / target.var()

    clean, noisy = r2(0.25), r2(2.0)
    assert clean > 0.9
    assert noisy < clean - 0.2


def test_config_without_features_reports_no_feature_fields():
    assert "features" not in simulate.config_of(simulate.quick_config())
    assert simulate.config_of(dataclasses.replace(simulate.quick_config(), features=8))["features"] == 8


def test_bots_embedding_beats_explicit_only_and_falls_back_on_noise_features():
    cfg = dataclasses.replace(simulate.quick_config(), features=32, steps=48)
    explicit = simulate.run_one(cfg, "bots", 0, {"implicit_weight": 0.0})
    embedding = simulate.run_one(cfg, simulate.EMBEDDING, 0, {})
    assert embedding["etr"].mean() > explicit["etr"].mean() + 0.1
    assert np.nanmean(embedding["pearson"][-16:]) > 0.3
    noise = simulate.run_one(cfg, simulate.EMBEDDING, 0, {"features": "noise"})
    assert np.nanmean(noise["pearson"][-16:]) < 0.2
    assert abs(noise["etr"].mean() - explicit["etr"].mean()) < 0.05  # rho near 0: explicit evidence only
