"""The domain-quotas GRPO benchmark (benchmarks/domain_quotas.py): its pure parts, its arguments, a --quick run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset


_BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
sys.path.insert(0, _BENCHMARKS)  # the script imports grpo_ab, its neighbour
import domain_quotas  # noqa: E402


_PATH = os.path.join(_BENCHMARKS, "domain_quotas.py")


def test_domains_split_the_pool_by_carries():
    dataset = Dataset.from_dict({"carries": [0, 3, 4, 8, 2]})
    assert domain_quotas.with_domains(dataset, 4)["difficulty"] == ["easy", "easy", "hard", "hard", "easy"]


def test_accuracy_by_domain_weighs_levels_by_their_held_out_counts():
    levels = np.array([0, 0, 0, 1, 2, 2])
    by_level = {"all": 0.5, "0": 1.0, "1": 0.0, "2": 0.25}
    result = domain_quotas.accuracy_by_domain(by_level, levels, split=1)
    assert result == {"all": 0.5, "easy": 1.0, "hard": pytest.approx((0.0 + 2 * 0.25) / 3)}


def test_replayed_quotas_rotate_the_remainder_seat():
    sizes = np.array([500, 500])
    assert domain_quotas.replayed_quotas("uniform", sizes, 3, 16) == [[8, 8]] * 3
    quotas = np.array(domain_quotas.replayed_quotas({"easy": 1, "hard": 2}, sizes, 3, 16))
    assert (quotas.sum(axis=1) == 16).all()
    assert quotas[:, 0].tolist() != [quotas[0, 0]] * 3  # 16 / 3 = 5.33 seats: the extra seat moves
    assert quotas.sum(axis=0).tolist() == [16, 32]  # exact over three rounds


def test_quotas_held_compares_every_round():
    expected = [[5, 11], [6, 10]]
    shares = {"easy": np.array([5, 6]) / 16, "hard": np.array([11, 10]) / 16}
    assert domain_quotas.quotas_held(shares, expected, 16)
    assert not domain_quotas.quotas_held({"easy": shares["easy"][::-1], "hard": shares["hard"][::-1]}, expected, 16)
    assert not domain_quotas.quotas_held({d: v[:1] for d, v in shares.items()}, expected, 16)  # a round missing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "0"], "--split must lie in"),
        (["--weights", "{easy: 1}"], "--weights must be uniform, proportional or a JSON object"),
        (["--seeds", "1", "1"], "--seeds must be distinct"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),  # refused, not read as "the demo's max_steps"
        (["--quick", "--steps", "0"], "--steps must be >= 1, got 0"),
        # Two rounds per optimizer step: one log line would average them, and the shares could not be checked.
        (
            ["--gradient_accumulation_steps", "2", "--steps_per_generation", "1"],
            "one generation batch per optimizer step at most",
        ),
    ],
)
def test_bad_arguments_stop_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit):
        domain_quotas.parse(argv)
    assert message in capsys.readouterr().err


def test_json_weights_and_rounds_of_several_micro_steps(tmp_path):
    options = domain_quotas.parse(
        ["--weights", '{"easy": 1, "hard": 3}', "--gradient_accumulation_steps", "2", "--workdir", str(tmp_path)]
    )
    assert options.weights == {"easy": 1, "hard": 3}
    # A mapping reaches BOTSConfig as JSON (its repr, with single quotes, is not JSON and was refused).
    _, args, _, _ = domain_quotas.run_arguments(
        options.example,
        options,
        "bots-quotas",
        0,
        bots_domain_column="difficulty",
        bots_domain_weights=options.weights,
    )
    assert args.bots_domain_weights == {"easy": 1.0, "hard": 3.0}
    # One round is a generation batch: 128 completions x 2 accumulation steps / 8 per task, not 128 / 8.
    assert domain_quotas.tasks_per_round(args) == 32


@pytest.mark.slow
def test_quick_run_holds_the_quotas_in_every_round(tmp_path):
    result = subprocess.run(
        [sys.executable, _PATH, "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    batch = report["config"]["tasks_per_step"]
    assert batch == 4 and report["config"]["split"] == 1
    for name, runs in report["runs"].items():
        assert [run["seed"] for run in runs] == [0, 1]
        for run in runs:
            shares = np.array([run["shares"][d] for d in domain_quotas.DOMAINS])
            assert shares.shape == (2, 4)  # every one of the 4 rounds logged, for both domains
            np.testing.assert_allclose(shares.sum(axis=0), 1.0)
            if name == "bots-quotas":  # uniform weights: 2 + 2 of 4 tasks, every round
                assert run["quotas_held_every_round"] is True
                np.testing.assert_array_equal(shares * batch, 2.0)
        share_means = [run["share_mean"]["easy"] for run in runs]
        assert report["summary"][name]["share"]["easy"]["mean"] == pytest.approx(np.mean(share_means))
    assert report["summary"]["bots-quotas"]["quotas_held_every_round"] is True
    assert "the logged shares equal the quotas in every round of every seed: True" in result.stderr
