"""BOTSGRPOTrainer with a multi-domain pool: quotas every round, per-domain metrics, completions table, resume, errors."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset
from launching import first_letter_reward
from recording import PosteriorLog, RewardRecorder, check_domain_metrics
from tiny import load_tiny, task_dataset, tiny_args

from trl_bots.trainer import BOTSGRPOTrainer


DOMAINS = ["x" if i % 3 == 0 else "y" for i in range(12)]  # x: tasks 0, 3, 6, 9; y: the other 8


def domain_dataset(domains=DOMAINS) -> Dataset:
    """12 tasks whose domain sits in a nested field, `meta.domain`, as in GURU's `extra_info`."""
    return task_dataset(len(domains)).add_column("meta", [{"domain": d, "source": "test"} for d in domains])


def make_trainer(model_path, output_dir, dataset=None, **overrides):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    settings = {"per_device_train_batch_size": 6, "bots_domain_column": "meta.domain", **overrides}
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(first_letter_reward),  # depends on the sampled completion: mixed groups occur
        args=tiny_args(str(output_dir), **settings),
        train_dataset=dataset if dataset is not None else domain_dataset(),
        processing_class=tokenizer,
    )
    trainer.add_callback(PosteriorLog(trainer))
    return trainer, recorder


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if name in entry]


@pytest.mark.parametrize(
    ("weights", "resolved"), [({"x": 1.0, "y": 1.0}, [1.0, 1.0]), ("proportional", [4.0, 8.0]), (None, None)]
)
def test_quotas_and_per_domain_metrics_every_round(tiny_model_path, tmp_path, weights, resolved):
    trainer, recorder = make_trainer(tiny_model_path, tmp_path, max_steps=6, bots_domain_weights=weights)
    trainer.train()
    assert len(recorder.calls) == 6
    check_domain_metrics(trainer.state.log_history, recorder.calls, DOMAINS, resolved, batch_size=3)
    # The completions table names each completion's domain.
    extra = trainer._logs["extra"]
    assert list(extra["bots_domain"]) == [DOMAINS[i] for i in recorder.calls[-1]["idx"]]


def test_resume_with_quotas_continues_exactly(tiny_model_path, tmp_path):
    settings = {"max_steps": 5, "save_strategy": "steps", "save_steps": 2, "bots_domain_weights": {"x": 2, "y": 1}}
    full, full_recorder = make_trainer(tiny_model_path, tmp_path / "full", **settings)
    full.train()
    resumed, resumed_recorder = make_trainer(tiny_model_path, tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed_recorder.calls == full_recorder.calls[2:]
    assert resumed.selector.domain_lag == full.selector.domain_lag
    np.testing.assert_array_equal(resumed.selector.alpha, full.selector.alpha)
    for name in ("x", "y"):
        key = f"bots/domain/{name}/share"
        assert logged(resumed, key) == logged(full, key)  # steps 1-2 come from the checkpoint's log history

    # Domains are fixed for a run. Other weights: the selector state (its quota rotation) refuses them.
    checkpoint = str(tmp_path / "full" / "checkpoint-2")
    changed, _ = make_trainer(tiny_model_path, tmp_path / "changed", **{**settings, "bots_domain_weights": "uniform"})
    with pytest.raises(ValueError, match=r"saved with other domains or domain weights .*'weights': \[2.0, 1.0\]"):
        changed.train(resume_from_checkpoint=checkpoint)
    # Other labels: the domain column is part of the task list, so its fingerprint refuses them first.
    relabelled, _ = make_trainer(
        tiny_model_path, tmp_path / "relabelled", dataset=domain_dataset(["y", *DOMAINS[1:]]), **settings
    )
    with pytest.raises(ValueError, match="trained on a task list with fingerprint"):
        relabelled.train(resume_from_checkpoint=checkpoint)


@pytest.mark.parametrize(
    ("overrides", "dataset", "message"),
    [
        ({"bots_domain_column": "meta.topic"}, None, r"bots_domain_column='meta.topic' is not a column"),
        (
            {},
            domain_dataset(["x"] * 11 + [""]),
            r"bots_domain_column='meta.domain' must be non-empty strings.*task 11",
        ),
        ({}, domain_dataset(["x"] * 11 + [None]), r"task 11: None"),
        ({}, domain_dataset(["x"] * 11 + ["X "]), r"meta.domain' has labels that differ only in case .*\['X ', 'x'\]"),
        ({"bots_domain_weights": {"x": 1, "z": 1}}, None, r"the data has no domain \['z'\]"),
        ({"bots_domain_weights": {"x": 1, "y": -1}}, None, r"bots_domain_weights must be finite numbers >= 0"),
        ({"bots_domain_weights": {"x": 0, "y": 0}}, None, "bots_domain_weights are all zero"),
        ({"bots_domain_weights": {"x": 1, "y": 0}, "per_device_train_batch_size": 10}, None, "hold only 4 tasks"),
    ],
)
def test_bad_domain_input_stops_before_training(tiny_model_path, tmp_path, overrides, dataset, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_model_path, tmp_path, dataset=dataset, **overrides)


def test_more_than_256_domains_is_refused(tiny_model_path, tmp_path):
    dataset = domain_dataset([f"id{i}" for i in range(300)])
    with pytest.raises(ValueError, match="300 distinct labels, more than 256"):
        make_trainer(tiny_model_path, tmp_path, dataset=dataset)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bots_domain_column": None, "bots_domain_weights": "uniform"}, "needs bots_domain_column"),
        ({"bots_domain_weights": "by_size"}, r"'proportional' or 'uniform', got 'by_size'"),
        ({"bots_domain_weights": "uniform", "bots_strategy": "uniform"}, "bots_strategy='uniform' serves a fixed"),
    ],
)
def test_bad_domain_settings_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_args(str(tmp_path), **{"bots_domain_column": "meta.domain", **overrides})


def test_a_shuffled_or_selected_dataset_gives_each_row_its_own_domain_and_references(tiny_model_path, tmp_path):
    """The reference and domain columns are read in Arrow: after shuffle/select they must follow the rows kept, in
    their new order (the table underneath keeps the old order)."""
    rows = domain_dataset().add_column("weak", [i / 20 for i in range(12)]).add_column("strong", [0.9] * 12)
    dataset = rows.shuffle(seed=3).select([10, 2, 7, 0, 5, 11, 1, 8, 4, 9])
    trainer, _ = make_trainer(
        tiny_model_path,
        tmp_path,
        dataset=dataset,
        bots_reference_columns=["weak", "strong"],
        bots_domain_weights="uniform",
    )
    selector = trainer.selector
    idx = dataset["idx"]
    assert [selector.domain_names[code] for code in selector.domain_codes] == [DOMAINS[i] for i in idx]
    np.testing.assert_array_equal(
        selector.estimator.weak, np.array([i / 20 for i in idx], dtype=selector.estimator.weak.dtype)
    )
    assert selector.domain_sizes.tolist() == [sum(DOMAINS[i] == "x" for i in idx), sum(DOMAINS[i] == "y" for i in idx)]
