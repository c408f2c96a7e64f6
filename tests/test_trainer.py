"""BOTSGRPOTrainer in a single process: real GRPO training loops on a tiny local model."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from datasets import Dataset, IterableDataset
from recording import (
    PosteriorLog,
    RewardRecorder,
    SelectionLog,
    replay_implicit_posterior,
    replay_posterior,
    total_rewards,
)
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args
from trl.trainer.utils import RepeatSampler

from trl_bots.sampler import BOTSSampler
from trl_bots.selector import BOTSSelector
from trl_bots.trainer import SAMPLER_FILE, SELECTOR_FILE, BOTSGRPOTrainer


def make_trainer(model_path, output_dir, dataset=None, reward_funcs=(even_task_reward,), **overrides):
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(*reward_funcs),
        args=tiny_args(str(output_dir), **overrides),
        train_dataset=dataset if dataset is not None else task_dataset(10),
        processing_class=tokenizer,
    )
    log = PosteriorLog(trainer)
    trainer.add_callback(log)
    return trainer, recorder, log


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if name in entry]


@pytest.mark.parametrize(
    ("num_tasks", "generations", "tasks_per_round", "repeats"),
    [(10, 2, 2, 1), (10, 4, 3, 2), (7, 3, 1, 4), (9, 2, 9, 3)],
)
def test_sampler_layout_matches_repeat_sampler(num_tasks, generations, tasks_per_round, repeats):
    sampler = BOTSSampler(num_tasks, mini_repeat_count=generations, batch_size=tasks_per_round, repeat_count=repeats)
    reference = RepeatSampler(list(range(num_tasks)), generations, tasks_per_round, repeats, shuffle=False)
    for _ in range(2):  # two epochs
        stream = np.array(list(sampler))
        assert len(sampler) == len(reference) == len(stream)
        # Unshuffled, RepeatSampler's round k holds tasks k*B .. k*B + B-1: slot j is task k*B + j.
        assert stream.tolist() == (np.array(list(reference)) % tasks_per_round).tolist()
        block = tasks_per_round * generations
        rounds = stream.reshape(-1, repeats, block)
        assert len(rounds) == num_tasks // tasks_per_round
        assert (rounds == np.repeat(np.arange(tasks_per_round), generations)).all()


def test_attribution_metrics_and_lag(tiny_model_path, tmp_path):
    """Reward 1 iff the task index is even: the posterior is exactly the formula applied to those counts."""
    trainer, recorder, log = make_trainer(tiny_model_path, tmp_path, max_steps=6)
    selections = SelectionLog(trainer)
    trainer.train()

    assert len(recorder.calls) == 6
    rounds = []
    for call in recorder.calls:
        idx = np.array(call["idx"])
        groups = idx.reshape(-1, 2)  # B = 4 // 2 tasks, G = 2 each, contiguous
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 2
        rounds.append((idx, total_rewards(call, [1.0])))
    alpha, beta = replay_posterior(10, rounds)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    assert trainer.selector.round == 6 and [s["round"] for s in log.steps] == [1, 2, 3, 4, 5, 6]

    # One generation batch per optimizer step (the default): although the DataLoader reads the next step's batch
    # ahead, every round is selected from a posterior that holds all earlier rounds (6 rounds cross an epoch of 5).
    assert logged(trainer, "bots/evidence_lag") == [0] * 6
    assert [s["round"] for s in selections.selections] == [0, 1, 2, 3, 4, 5]
    for k, selection in enumerate(selections.selections):
        expected_alpha, expected_beta = replay_posterior(10, rounds[:k])
        np.testing.assert_allclose(selection["alpha"], expected_alpha, rtol=1e-6)
        np.testing.assert_allclose(selection["beta"], expected_beta, rtol=1e-6)
    even = [float(np.mean(np.array(c["idx"]) % 2 == 0)) for c in recorder.calls]
    assert logged(trainer, "bots/selected_pass_rate") == pytest.approx(even)
    assert logged(trainer, "bots/effective_task_ratio") == [0.0] * 6  # every group all-solved or none-solved
    assert logged(trainer, "bots/all_solved_ratio") == pytest.approx(even)
    assert all(ms > 0 for ms in logged(trainer, "bots/selection_ms"))
    for name in ("posterior_mean", "cap_coef", "implicit_pearson", "implicit_mae", "implicit_weight"):
        assert len(logged(trainer, f"bots/{name}")) == 6
    # The completions table carries the task id and its posterior mean.
    extra = trainer._logs["extra"]
    assert list(extra["bots_task_id"]) == recorder.calls[-1]["idx"]
    mean = alpha / (alpha + beta)
    np.testing.assert_allclose(list(extra["bots_posterior_mean"]), mean[recorder.calls[-1]["idx"]], rtol=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 2, "max_steps": 4},  # spg = GA = 2
        {"steps_per_generation": 2, "max_steps": 6},  # a round spans 2 optimizer steps
        {"num_iterations": 2, "max_steps": 6},
        {"dataloader_num_workers": 2, "per_device_train_batch_size": 2, "max_steps": 5},  # workers prefetch 4 batches
    ],
    ids=["accumulation", "steps-per-generation", "iterations", "workers"],
)
def test_evidence_lag_is_zero_for_every_schedule(tiny_model_path, tmp_path, schedule):
    """Selection happens when GRPO generates, so no DataLoader read-ahead can hide a round's rewards from the next."""
    trainer, recorder, _ = make_trainer(tiny_model_path, tmp_path, **schedule)
    selections = SelectionLog(trainer)
    trainer.train()
    args = trainer.args
    expected_rounds = (
        args.max_steps * args.gradient_accumulation_steps // (args.steps_per_generation * args.num_iterations)
    )
    assert len(recorder.calls) == trainer.selector.round == expected_rounds
    assert logged(trainer, "bots/evidence_lag") == [0] * expected_rounds  # logged on the steps that generate
    assert [s["round"] for s in selections.selections] == list(range(expected_rounds))
    rounds = [(c["idx"], total_rewards(c, [1.0])) for c in recorder.calls]
    for k, selection in enumerate(selections.selections):
        np.testing.assert_allclose(selection["alpha"], replay_posterior(10, rounds[:k])[0], rtol=1e-6)
    alpha, beta = replay_posterior(10, rounds)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)


@pytest.mark.parametrize("remove_unused_columns", [True, False])
def test_placeholder_rows_become_the_selected_tasks(tiny_model_path, tmp_path, remove_unused_columns):
    """Each generation gets the selected tasks' own rows, with exactly the columns the DataLoader would deliver."""
    seen = []

    def task_reward(prompts, completions, bots_task_id, **kwargs):
        seen.append({"prompts": prompts, "ids": bots_task_id, "columns": sorted(kwargs)})
        return [float(i % 2 == 0) for i in bots_task_id]

    model, tokenizer = load_tiny(tiny_model_path)
    trainer = BOTSGRPOTrainer(
        model,
        task_reward,
        args=tiny_args(str(tmp_path), max_steps=3, remove_unused_columns=remove_unused_columns),
        train_dataset=task_dataset(10, references=True),
        processing_class=tokenizer,
    )
    selections = SelectionLog(trainer)
    trainer.train()
    assert len(seen) == 3
    data_columns = [] if remove_unused_columns else ["idx", "strong", "weak"]
    for call, selection in zip(seen, selections.selections, strict=True):
        assert call["ids"] == np.repeat(selection["tasks"], 2).tolist()
        assert call["prompts"] == [f"task {i}: say a" for i in call["ids"]]
        assert call["columns"] == sorted([*data_columns, "completion_ids", "log_extra", "log_metric", "trainer_state"])


@pytest.mark.parametrize("cap_fit", ["robust", "paper"])
def test_implicit_evidence_posterior_matches_formulas(tiny_model_path, tmp_path, cap_fit):
    """rho > 0 with reference columns: the posterior is BOTS.md's update with the interpolation plug-in."""
    dataset = task_dataset(10, references=True)
    trainer, recorder, _ = make_trainer(
        tiny_model_path,
        tmp_path,
        dataset=dataset,
        max_steps=5,
        bots_reference_columns=["weak", "strong"],
        bots_implicit_weight=0.3,
        bots_pseudo_count=3.0,
        bots_cap_fit=cap_fit,
    )
    trainer.train()
    rounds = []
    for call in recorder.calls:
        idx = call["idx"]
        rounds.append((idx[:: trainer.num_generations], idx, total_rewards(call, [1.0])))
    reference = np.stack([np.array(dataset["weak"]), np.array(dataset["strong"])], axis=1)
    alpha, beta, mu = replay_implicit_posterior(reference, rounds, rho=0.3, pseudo_count=3.0, cap_fit=cap_fit)
    assert trainer.selector.round == 5
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-5)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-5)
    assert logged(trainer, "bots/cap_coef")[-1] == pytest.approx(mu, rel=1e-6)
    assert logged(trainer, "bots/implicit_weight") == [0.3] * 5


@pytest.mark.parametrize(
    "case",
    [
        {"num_iterations": 2, "gradient_accumulation_steps": 2, "steps_per_generation": 2, "max_steps": 4},
        {"conversational": True, "peft": True, "max_steps": 3},
        {"multi_reward": True, "max_steps": 12, "per_device_train_batch_size": 8, "num_generations": 4},
    ],
    ids=["iterations-accumulation", "conversational-lora", "weighted-none-nan-epochs"],
)
def test_training_variants_credit_every_completion(tiny_model_path, tmp_path, case):
    case = dict(case)
    conversational = case.pop("conversational", False)
    multi_reward = case.pop("multi_reward", False)
    extra = {}
    if case.pop("peft", False):
        from peft import LoraConfig

        extra["peft_config"] = LoraConfig(
            r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        )
    reward_funcs, weights = (even_task_reward,), [1.0]
    if multi_reward:

        def sometimes_none(completions, idx, **kwargs):  # unscorable for tasks divisible by 3: neither s nor f
            return [None if i % 3 == 0 else float(i % 2 == 0) for i in idx]

        def half_nan(completions, idx, **kwargs):  # NaN for the second completion of each group
            return [math.nan if k % 2 else 0.4 for k in range(len(idx))]

        reward_funcs, weights = (sometimes_none, half_nan), [2.0, 0.5]
        case["reward_weights"] = weights
    model, tokenizer = load_tiny(tiny_model_path)
    recorder = RewardRecorder()
    trainer = BOTSGRPOTrainer(
        model,
        recorder.wrap(*reward_funcs),
        args=tiny_args(str(tmp_path), **case),
        train_dataset=task_dataset(10, conversational=conversational),
        processing_class=tokenizer,
        **extra,
    )
    trainer.train()
    generations = trainer.num_generations
    tasks_per_round = trainer.args.generation_batch_size // generations
    expected_rounds = math.ceil(
        trainer.args.max_steps
        * trainer.args.gradient_accumulation_steps
        / (trainer.args.steps_per_generation * trainer.args.num_iterations)
    )
    assert len(recorder.calls) == trainer.selector.round == expected_rounds
    for call in recorder.calls:
        groups = np.array(call["idx"]).reshape(tasks_per_round, generations)
        assert (groups == groups[:, :1]).all()
    rounds = [(c["idx"], total_rewards(c, weights)) for c in recorder.calls]
    alpha, beta = replay_posterior(10, rounds)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    if multi_reward:  # 12 rounds of 2 tasks > one epoch of 10 tasks: the second epoch keeps selecting
        assert trainer.state.epoch > 1
        # Some completions were unscorable (no function scored them) and so were neither successes nor failures.
        assert any(np.isnan(total).any() for _, total in rounds)


def quarter_reward(completions, idx, **kwargs):
    return [0.25 if i % 2 else 1.0 for i in idx]


def always_one(completions, idx, **kwargs):
    return [1.0] * len(idx)


@pytest.mark.parametrize(
    ("reward_funcs", "overrides", "fractional"),
    [
        ((quarter_reward,), {"bots_fractional_evidence": True}, True),  # rewards count as fractional successes
        # Success decided by even_task_reward alone, although the weighted total is always >= 1:
        ((even_task_reward, always_one), {"bots_success_reward": "even_task_reward"}, False),
    ],
    ids=["fractional", "named-reward"],
)
def test_success_definition(tiny_model_path, tmp_path, reward_funcs, overrides, fractional):
    trainer, recorder, _ = make_trainer(tiny_model_path, tmp_path, reward_funcs=reward_funcs, max_steps=3, **overrides)
    trainer.train()
    rounds = [(c["idx"], np.array(c["rewards"][0], dtype=float)) for c in recorder.calls]
    alpha, beta = replay_posterior(10, rounds, fractional=fractional)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)


def test_fractional_evidence_rejects_rewards_outside_unit_interval(tiny_model_path, tmp_path):
    def too_big(completions, idx, **kwargs):
        return [2.0] * len(idx)

    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path, reward_funcs=(too_big,), max_steps=1, bots_fractional_evidence=True
    )
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got \[2.0"):
        trainer.train()


def test_exact_resume_and_saved_folder(tiny_model_path, tmp_path):
    """2k steps in one go == k steps, checkpoint, resume; the saved folder has the selector and the BOTS card."""

    def first_letter_reward(completions, idx, **kwargs):  # depends on what the model generates
        return [float(c[:1] < "n") for c in completions]

    common = {"reward_funcs": (first_letter_reward,), "max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    full, full_rec, full_log = make_trainer(tiny_model_path, tmp_path / "full", **common)
    full.train()
    resumed, resumed_rec, resumed_log = make_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))

    assert resumed_rec.calls == full_rec.calls[3:]
    assert resumed_log.steps == full_log.steps[3:]  # bit-identical alpha and beta after every step
    assert len({(c["idx"][0], c["idx"][2]) for c in full_rec.calls}) > 1  # the selection really varies

    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert (checkpoint / SELECTOR_FILE).is_file() and (checkpoint / SAMPLER_FILE).is_file()
    out = tmp_path / "saved"
    full.save_model(str(out))
    reloaded = BOTSSelector(10, implicit_weight=0.0)
    reloaded.load(out / SELECTOR_FILE)
    assert np.array_equal(reloaded.alpha, full.selector.alpha) and np.array_equal(reloaded.beta, full.selector.beta)
    full.create_model_card(model_name="tiny-bots")
    card = (tmp_path / "full" / "README.md").read_text()
    assert "## BOTS task selection" in card and "2510.26374" in card
    assert "- bots" in card.split("---")[1]  # the tag, in the card's YAML header
    ratio = full.selector.last_stats.effective_task_ratio
    assert f"| final effective-task ratio | {ratio:.4f} |" in card


def test_mid_round_checkpoint_is_not_credited_twice(tiny_model_path, tmp_path):
    """A checkpoint inside a round (R = 2, one step each) makes GRPO regenerate; BOTS must not count it again."""
    common = {"steps_per_generation": 2, "max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    full, full_rec, full_log = make_trainer(tiny_model_path, tmp_path / "full", **common)
    full.train()
    resumed, resumed_rec, resumed_log = make_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    # Steps 4-6 of the full run generated once (round 3, at step 5); the resumed run regenerates round 2 at step 4.
    assert resumed_rec.calls[0]["idx"] == full_rec.calls[1]["idx"]
    assert resumed_rec.calls[1:] == full_rec.calls[2:]
    assert resumed_log.steps == full_log.steps[3:]


def test_bad_input_errors(tiny_model_path, tmp_path):
    def build(dataset=None, **overrides):
        model, tokenizer = load_tiny(tiny_model_path)
        return BOTSGRPOTrainer(
            model,
            even_task_reward,
            args=tiny_args(str(tmp_path / "bad"), **overrides),
            train_dataset=dataset if dataset is not None else task_dataset(10),
            processing_class=tokenizer,
        )

    stream = IterableDataset.from_generator(lambda: ({"prompt": "a", "idx": i} for i in range(10)))
    with pytest.raises(ValueError, match="map-style"):
        build(stream)
    with pytest.raises(ValueError, match="needs 4 distinct tasks.*only 3 rows"):
        build(task_dataset(3), per_device_train_batch_size=8)
    with pytest.raises(ValueError, match=r"\['strong'\].*does not have"):
        build(bots_reference_columns=["idx", "strong"])
    refs = task_dataset(10, references=True)
    nan_refs = Dataset.from_dict({**refs.to_dict(), "weak": [math.nan] + refs["weak"][1:]})
    with pytest.raises(ValueError, match="task 0 weak=nan"):
        build(nan_refs, bots_reference_columns=["weak", "strong"], bots_implicit_weight=0.1)
    with pytest.raises(ValueError, match="task 0 weak=3.0"):
        build(refs.map(lambda r: {"weak": 3.0}), bots_reference_columns=["weak", "strong"])
    with pytest.raises(ValueError, match="bots_implicit_weight=0.1 needs implicit evidence.*bots_reference_columns"):
        tiny_args(str(tmp_path), bots_implicit_weight=0.1)
    with pytest.raises(ValueError, match=r"bots_forgetting must be a number in \(0.0, 1.0\], got 0"):
        tiny_args(str(tmp_path), bots_forgetting=0)
    with pytest.raises(ValueError, match="bots_target_pass_rate"):
        tiny_args(str(tmp_path), bots_target_pass_rate=1.0)
    with pytest.raises(ValueError, match="bots_temperature"):
        tiny_args(str(tmp_path), bots_temperature=-1.0)
    with pytest.raises(ValueError, match="bots_reference_columns must name two"):
        tiny_args(str(tmp_path), bots_reference_columns=["weak"])
    with pytest.raises(ValueError, match="bots_success_reward='nope'"):
        build(bots_success_reward="nope")

    # A run with a checkpoint, then resumes from broken copies of it.
    trainer = build(max_steps=1, save_strategy="steps", save_steps=1)
    trainer.train()
    checkpoint = tmp_path / "bad" / "checkpoint-1"
    selector_bytes = (checkpoint / SELECTOR_FILE).read_bytes()
    (checkpoint / SELECTOR_FILE).write_bytes(selector_bytes[:-7] + b"garbage")
    with pytest.raises(ValueError, match="corrupt|not a valid"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / SELECTOR_FILE).write_bytes(selector_bytes)
    with pytest.raises(ValueError, match="state is for 10 tasks but this selector has 12"):
        build(task_dataset(12), max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    round_state = json.loads((checkpoint / SAMPLER_FILE).read_text())
    (checkpoint / SAMPLER_FILE).write_text(json.dumps({**round_state, "tasks": [0, 10]}))
    with pytest.raises(ValueError, match=r"saved round \[0, 10\] is not 2 distinct task ids in \[0, 10\)"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / SAMPLER_FILE).write_text(json.dumps({**round_state, "rounds_selected": 2}))
    with pytest.raises(ValueError, match=f"2 selected rounds but {SELECTOR_FILE} has been updated 1 times"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / SAMPLER_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a valid BOTS round state"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    os.remove(checkpoint / SELECTOR_FILE)
    with pytest.raises(ValueError, match=f"{SELECTOR_FILE} is missing"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))


def test_config_is_read_by_trl_parser(tmp_path):
    from trl import TrlParser

    from trl_bots.config import BOTSConfig

    config = tmp_path / "bots.yaml"
    config.write_text(
        f"output_dir: {tmp_path}\nuse_cpu: true\nbf16: false\nbots_forgetting: 0.2\n"
        "bots_reference_columns: [weak, strong]\nbots_strategy: mopps\n"
    )
    (args,) = TrlParser((BOTSConfig,)).parse_args_and_config(
        ["--config", str(config), "--no_bots_thompson", "--bots_target_pass_rate", "0.3"]
    )
    assert (args.bots_forgetting, args.bots_reference_columns, args.bots_strategy) == (
        0.2,
        ["weak", "strong"],
        "mopps",
    )
    assert (args.bots_thompson, args.bots_target_pass_rate) == (False, 0.3)
    help_text = TrlParser((BOTSConfig,)).format_help()
    for field in BOTSConfig.__dataclass_fields__:
        if field.startswith("bots_"):
            assert f"--{field}" in help_text
