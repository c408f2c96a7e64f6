"""BOTSGRPOTrainer in a single process: real GRPO training loops on a tiny local model."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from datasets import Dataset, IterableDataset
from launching import weights_digest
from recording import (
    PosteriorLog,
    RewardRecorder,
    SelectionLog,
    replay_implicit_posterior,
    replay_posterior,
    total_rewards,
)
from tiny import even_task_reward, load_tiny, task_dataset, tiny_args
from transformers import TrainerCallback
from trl.trainer.utils import RepeatSampler

from trl_bots.checkpoints import ROUND_STATE_FILE
from trl_bots.data import task_fingerprint
from trl_bots.model_card import EffectiveTaskRatios
from trl_bots.sampler import BOTSSampler
from trl_bots.selector import BOTSSelector
from trl_bots.state import SELECTOR_FILE
from trl_bots.trainer import BOTSGRPOTrainer, latest_complete_checkpoint


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
    """rho > 0 with reference columns: the posterior is docs/algorithm.md's update with the interpolation plug-in."""
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


def test_unscored_accuracy_is_not_a_failure_when_a_side_reward_scores_it(tiny_model_path, tmp_path, caplog):
    """bots_success_reward names the accuracy: a completion it could not grade (None) is not a trial, although a
    format bonus with a non-zero weight scored it (GRPO's weighted total would have made it a 0.1 failure)."""

    def accuracy(completions, idx, **kwargs):  # cannot grade tasks divisible by 3
        return [None if i % 3 == 0 else float(i % 2 == 0) for i in idx]

    def format_bonus(completions, idx, **kwargs):  # scores every completion
        return [1.0] * len(idx)

    def ignored(completions, idx, **kwargs):
        return [None] * len(idx)

    with caplog.at_level("WARNING", logger="trl_bots.trainer"):
        trainer, recorder, _ = make_trainer(
            tiny_model_path,
            tmp_path,
            reward_funcs=(accuracy, format_bonus, ignored),
            max_steps=8,
            reward_weights=[1.0, 0.1, 0.0],
            bots_success_reward="accuracy",
            bots_thompson=False,  # posterior means: the unscored tasks (exactly 0.5) stay the favourites
        )
        trainer.train()
    assert not [record for record in caplog.records if "decides success" in record.getMessage()]  # the user's rule
    assert trainer.args.bots_success_reward == ["accuracy"]
    selected = {i for call in recorder.calls for i in call["idx"]}
    ungraded = sorted(i for i in selected if i % 3 == 0)
    assert ungraded  # the test saw unscorable tasks
    # Never a trial: alpha and beta only decay toward the flat prior, i.e. stay exactly 1.
    assert (
        trainer.selector.alpha[ungraded].tolist() == trainer.selector.beta[ungraded].tolist() == [1.0] * len(ungraded)
    )
    rounds = [(c["idx"], total_rewards(c, [1.0, 0.0, 0.0])) for c in recorder.calls]  # the accuracy alone, unweighted
    alpha, beta = replay_posterior(10, rounds)
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    assert logged(trainer, "bots/scored_ratio") == [float(np.mean(~np.isnan(total))) for _, total in rounds]


def test_each_row_is_scored_by_the_reward_that_applies_to_it(tiny_model_path, tmp_path):
    """A math and a code reward, each None on the other's rows: every completion is scored (GRPO's weighted total),
    and naming both in bots_success_reward decides success the same way."""

    def math_reward(completions, idx, **kwargs):  # even tasks are math: solved when divisible by 4
        return [float(i % 4 == 0) if i % 2 == 0 else None for i in idx]

    def code_reward(completions, idx, **kwargs):  # odd tasks are code: passes when i % 4 == 1
        return [float(i % 4 == 1) if i % 2 else None for i in idx]

    posteriors = []
    for success_reward in (None, ["math_reward", "code_reward"]):
        trainer, recorder, _ = make_trainer(
            tiny_model_path,
            tmp_path / str(success_reward),
            reward_funcs=(math_reward, code_reward),
            max_steps=6,
            bots_success_reward=success_reward,
        )
        trainer.train()
        assert logged(trainer, "bots/scored_ratio") == [1.0] * 6
        alpha, beta = replay_posterior(10, [(c["idx"], total_rewards(c, [1.0, 1.0])) for c in recorder.calls])
        np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
        np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
        posteriors.append((trainer.selector.alpha.tobytes(), trainer.selector.beta.tobytes()))
    assert posteriors[0] == posteriors[1]


def test_a_success_reward_that_never_scores_warns_then_stops(tiny_model_path, tmp_path, caplog):
    def never_scores(completions, idx, **kwargs):
        return [None] * len(idx)

    trainer, recorder, _ = make_trainer(
        tiny_model_path,
        tmp_path,
        reward_funcs=(even_task_reward, never_scores),
        max_steps=6,
        bots_success_reward="never_scores",
        bots_max_unscored_rounds=3,
    )
    with caplog.at_level("WARNING", logger="trl_bots.trainer"), pytest.raises(RuntimeError) as error:
        trainer.train()
    assert str(error.value) == (
        "BOTS stops: no completion was scored in 3 rounds in a row (bots_success_reward='never_scores' returned None "
        "or NaN for every completion), so the selector has learned nothing and selects from its prior. Make the "
        "reward return numbers for these tasks (None means unscorable), choose another bots_success_reward, or raise "
        "bots_max_unscored_rounds."
    )
    assert len(recorder.calls) == trainer.selector.round == 3
    assert [r.getMessage() for r in caplog.records if r.name == "trl_bots.trainer"] == [
        "BOTS round 1: no completion was scored (bots_success_reward='never_scores' returned None or NaN for every "
        "completion), so the round taught the selector nothing. Training stops after 3 such rounds in a row "
        "(bots_max_unscored_rounds)."
    ]  # once, at the first such round
    assert logged(trainer, "bots/scored_ratio") == [0.0, 0.0]  # the third round stopped before its step was logged
    with pytest.raises(ValueError, match="bots_max_unscored_rounds must be a positive integer, got 0"):
        tiny_args(str(tmp_path), bots_max_unscored_rounds=0)


def test_fractional_evidence_rejects_rewards_outside_unit_interval(tiny_model_path, tmp_path):
    def too_big(completions, idx, **kwargs):
        return [2.0] * len(idx)

    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path, reward_funcs=(too_big,), max_steps=1, bots_fractional_evidence=True
    )
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got \[2.0"):
        trainer.train()


def first_letter_reward(completions, idx, **kwargs):  # depends on what the model generates
    return [float(c[:1] < "n") for c in completions]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_exact_resume_and_saved_folder(tiny_model_path, tmp_path, umask_022):
    """2k steps in one go == k steps, checkpoint, resume; the saved folder has the selector and the BOTS card."""

    common = {"reward_funcs": (first_letter_reward,), "max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    full, full_rec, full_log = make_trainer(tiny_model_path, tmp_path / "full", **common)
    full.train()
    resumed, resumed_rec, resumed_log = make_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))

    assert resumed_rec.calls == full_rec.calls[3:]
    assert resumed_log.steps == full_log.steps[3:]  # bit-identical alpha and beta after every step
    assert len({(c["idx"][0], c["idx"][2]) for c in full_rec.calls}) > 1  # the selection really varies

    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert (checkpoint / SELECTOR_FILE).is_file() and (checkpoint / ROUND_STATE_FILE).is_file()
    # BOTS's files get the permissions of the Trainer's own (0o666 less the umask), not a temporary file's 0o600.
    for name in ("trainer_state.json", SELECTOR_FILE, ROUND_STATE_FILE):
        assert (checkpoint / name).stat().st_mode & 0o777 == 0o644
    out = tmp_path / "saved"
    full.save_model(str(out))
    reloaded = BOTSSelector(10, implicit_weight=0.0)
    reloaded.load(out / SELECTOR_FILE)
    assert np.array_equal(reloaded.alpha, full.selector.alpha) and np.array_equal(reloaded.beta, full.selector.beta)
    full.create_model_card(model_name="tiny-bots")
    card = (tmp_path / "full" / "README.md").read_text()
    assert "## BOTS task selection" in card and "2510.26374" in card
    assert "- bots" in card.split("---")[1]  # the tag, in the card's YAML header
    # The card states the run's mean effective-task ratio and the last ten rounds' (here all 6), also when resumed.
    ratios = logged(full, "bots/effective_task_ratio")
    assert len(ratios) == 6 and len(set(ratios)) > 1
    line = (
        f"| effective-task ratio | {np.mean(ratios):.4f} (mean of 6 rounds); {np.mean(ratios):.4f} (last 6 rounds) |"
    )
    assert line in card
    resumed.create_model_card(model_name="tiny-bots")
    assert line in (tmp_path / "resumed" / "README.md").read_text()


def test_the_cards_effective_task_ratio_is_the_runs_mean_and_the_last_ten_rounds():
    ratios = EffectiveTaskRatios()
    assert ratios.card_text() == "n/a (no round trained)"
    for k in range(12):
        ratios.add(k / 16)  # 0, 1/16, ..., 11/16: mean 5.5/16, the last ten 6.5/16
    assert ratios.card_text() == "0.3438 (mean of 12 rounds); 0.4062 (last 10 rounds)"
    assert EffectiveTaskRatios.from_dict(ratios.as_dict()) == ratios  # as a checkpoint keeps it
    assert EffectiveTaskRatios.from_dict(None) == EffectiveTaskRatios()  # a checkpoint from before


class RowsTrainedOn(TrainerCallback):
    """`trainer.bots_round_tasks` at the end of every optimizer step."""

    def __init__(self, trainer):
        self.trainer, self.rows = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.rows.append(self.trainer.bots_round_tasks.tolist())


@pytest.mark.parametrize(
    "schedule", [{"steps_per_generation": 2}, {"num_iterations": 2}], ids=["steps-per-generation", "iterations"]
)
def test_mid_round_resume_is_exact(tiny_model_path, tmp_path, schedule):
    """A checkpoint inside a round (a round spans 2 micro-steps) resumes on the buffered completions, not new ones."""
    common = {"reward_funcs": (first_letter_reward,), "max_steps": 6, "save_strategy": "steps", "save_steps": 1}
    full, full_rec, full_log = make_trainer(tiny_model_path, tmp_path / "full", **common, **schedule)
    full_selections = SelectionLog(full)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-3"  # micro-step 3: the second half of round 2
    assert sorted(p.name for p in checkpoint.glob("bots_round_*")) == ["bots_round_0.pt"]
    assert not list((tmp_path / "full" / "checkpoint-2").glob("bots_round_*"))  # between rounds: nothing to keep
    resumed, resumed_rec, resumed_log = make_trainer(tiny_model_path, tmp_path / "resumed", **common, **schedule)
    rows = RowsTrainedOn(resumed)
    resumed.add_callback(rows)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert rows.rows[0] == full_selections.selections[1]["tasks"]  # step 4 trains on round 2's rows
    # Steps 4-6 of the full run generated rounds 3 (step 5) only; the resumed run trains step 4 on the buffer.
    assert len(full_rec.calls) == 3 and resumed_rec.calls == full_rec.calls[2:]
    assert resumed_log.steps == full_log.steps[3:]  # bit-identical alpha and beta after every step
    assert weights_digest(resumed.model) == weights_digest(full.model)
    assert {r for c in full_rec.calls for r in c["rewards"][0]} == {0.0, 1.0}  # the rewards depend on the text


def test_rewards_for_other_tasks_than_the_round_are_not_credited(tiny_model_path, tmp_path):
    """If GRPO scored the round's rows in another order (a TRL change), crediting stops instead of misattributing."""
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path, max_steps=2)
    fill_round = trainer._fill_round
    trainer._fill_round = lambda placeholders: fill_round(placeholders)[::-1]
    with pytest.raises(RuntimeError) as error:
        trainer.train()
    tasks = trainer._bots_tasks.tolist()
    assert str(error.value) == (
        f"BOTS selected tasks {tasks} for round 1, each 2 times in a row, but the first rewards computed after that "
        f"selection are for the task ids {[tasks[1]] * 2 + [tasks[0]] * 2}. GRPOTrainer no longer scores a round the "
        "way BOTS expects (an unsupported TRL version, or an override of _generate_and_score_completions or "
        "_calculate_rewards); the round is not credited."
    )
    assert trainer.selector.round == 0


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
    with pytest.raises(ValueError, match=r"stream \(IterableDataset\).*needs max_steps > 0 \(got max_steps=-1\)"):
        build(stream, max_steps=-1, num_train_epochs=1)
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
        tiny_args(str(tmp_path), bots_implicit_estimator="none", bots_implicit_weight=0.1)
    with pytest.raises(ValueError, match=r"bots_forgetting must be a number in \(0.0, 1.0\], got 0"):
        tiny_args(str(tmp_path), bots_forgetting=0)
    with pytest.raises(ValueError, match="bots_target_pass_rate"):
        tiny_args(str(tmp_path), bots_target_pass_rate=1.0)
    with pytest.raises(ValueError, match="bots_temperature"):
        tiny_args(str(tmp_path), bots_temperature=-1.0)
    with pytest.raises(ValueError, match=r"bots_prior_alpha/bots_prior_beta alpha0 must be .* got 1e\+39"):
        tiny_args(str(tmp_path), bots_prior_alpha=1e39)
    with pytest.raises(ValueError, match=r"bots_pseudo_count must be a number in \[0.0, 1000000.0\], got 1e\+39"):
        tiny_args(str(tmp_path), bots_pseudo_count=1e39)
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
    with pytest.raises(ValueError, match="trained on a task list with fingerprint"):
        build(task_dataset(12), max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    round_state = json.loads((checkpoint / ROUND_STATE_FILE).read_text())
    (checkpoint / ROUND_STATE_FILE).write_text(json.dumps({**round_state, "tasks": [0, 10]}))
    with pytest.raises(ValueError, match=r"saved round \[0, 10\] is not 2 distinct task ids in \[0, 10\)"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / ROUND_STATE_FILE).write_text(json.dumps({**round_state, "rounds_selected": 2}))
    with pytest.raises(ValueError, match=f"2 selected rounds but {SELECTOR_FILE} has been updated 1 times"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    (checkpoint / ROUND_STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a valid BOTS round state"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    os.remove(checkpoint / SELECTOR_FILE)
    with pytest.raises(ValueError, match=f"{SELECTOR_FILE} is missing"):
        build(max_steps=2).train(resume_from_checkpoint=str(checkpoint))


@pytest.fixture
def two_checkpoints(tiny_model_path, tmp_path):
    """A run folder with checkpoint-1 and checkpoint-2, as BOTSGRPOTrainer wrote them."""
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=1)
    trainer.train()
    return tmp_path / "run"


def resume_error(tiny_model_path, output_dir, resume_from) -> str:
    trainer, _, _ = make_trainer(tiny_model_path, output_dir, max_steps=3)
    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=resume_from)
    return str(error.value)


def test_trainer_state_cut_short_is_incomplete(tiny_model_path, two_checkpoints):
    state = two_checkpoints / "checkpoint-2" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    assert latest_complete_checkpoint(two_checkpoints) == str(two_checkpoints / "checkpoint-1")
    assert resume_error(tiny_model_path, two_checkpoints, True) == (
        f"Cannot resume from {two_checkpoints}/checkpoint-2: it is incomplete, trainer_state.json is not valid JSON "
        "(Expecting ',' delimiter: line 5 column 15 (char 100)): it was cut short, most likely because the process "
        f"stopped while writing it. Resume from the newest complete checkpoint, {two_checkpoints}/checkpoint-1 "
        "(trl_bots.trainer.latest_complete_checkpoint finds it), or delete the incomplete folder."
    )


def test_checkpoint_without_a_process_rng_state_is_incomplete(tiny_model_path, two_checkpoints):
    """Process 0 writes trainer_state.json without waiting for the others: every process's last file must be there."""
    checkpoint = two_checkpoints / "checkpoint-2"
    assert json.loads((checkpoint / ROUND_STATE_FILE).read_text())["rank_files"] == ["rng_state.pth"]
    rng_state = (checkpoint / "rng_state.pth").read_bytes()
    (checkpoint / "rng_state.pth").write_bytes(rng_state[: len(rng_state) // 2])
    assert latest_complete_checkpoint(two_checkpoints) == str(two_checkpoints / "checkpoint-1")
    assert "checkpoint-2: it is incomplete, rng_state.pth was cut short, most likely" in resume_error(
        tiny_model_path, two_checkpoints, True
    )
    # Two processes: process 1's RNG state (written after process 0's trainer_state.json) is missing.
    round_state = json.loads((checkpoint / ROUND_STATE_FILE).read_text())
    (checkpoint / ROUND_STATE_FILE).write_text(
        json.dumps({**round_state, "rank_files": ["rng_state_0.pth", "rng_state_1.pth"]})
    )
    (checkpoint / "rng_state_0.pth").write_bytes(rng_state)
    assert latest_complete_checkpoint(two_checkpoints) == str(two_checkpoints / "checkpoint-1")
    assert "checkpoint-2: it is incomplete, rng_state_1.pth is missing, most likely" in resume_error(
        tiny_model_path, two_checkpoints, str(checkpoint)
    )


def test_resume_errors_say_which_case_it_is(tiny_model_path, two_checkpoints, tmp_path):
    def error(resume_from):
        return resume_error(tiny_model_path, tmp_path / "new", str(resume_from))

    newest = (
        f"Resume from the newest complete checkpoint, {two_checkpoints}/checkpoint-2 "
        "(trl_bots.trainer.latest_complete_checkpoint finds it)."
    )
    assert error(two_checkpoints / "checkpoint-20") == (
        f"Cannot resume from {two_checkpoints}/checkpoint-20: there is no such folder (a mistyped path?). {newest}"
    )
    assert error(tmp_path / "nowhere" / "checkpoint-2") == (
        f"Cannot resume from {tmp_path}/nowhere/checkpoint-2: neither it nor its parent folder {tmp_path}/nowhere "
        "exists. Check the path (a checkpoint is <output_dir>/checkpoint-<step>), or start a new run without "
        "resume_from_checkpoint."
    )
    assert error(two_checkpoints) == (
        f"Cannot resume from {two_checkpoints}: it is a run's output_dir, not a checkpoint folder. {newest} "
        f"resume_from_checkpoint=True with output_dir={two_checkpoints} picks the newest."
    )
    stock = two_checkpoints / "checkpoint-1"  # what GRPOTrainer writes: no BOTS files
    for name in (ROUND_STATE_FILE, SELECTOR_FILE):
        os.remove(stock / name)
    assert error(stock) == (
        f"Cannot resume from {stock}: it was not written by BOTSGRPOTrainer (it has trainer_state.json but no "
        f"{SELECTOR_FILE} or {ROUND_STATE_FILE}, e.g. a GRPOTrainer checkpoint), so BOTS cannot restore its selector. To "
        "start BOTS from its weights, load the model from this folder and train without resume_from_checkpoint; to "
        "continue a BOTS run, resume from one of its checkpoints."
    )
    os.remove(two_checkpoints / "checkpoint-2" / "trainer_state.json")  # no complete checkpoint left
    assert error(two_checkpoints / "checkpoint-2") == (
        f"Cannot resume from {two_checkpoints}/checkpoint-2: it is incomplete, trainer_state.json is missing, most "
        f"likely because the process stopped while writing it. {two_checkpoints} holds no complete checkpoint: start "
        "a new run without resume_from_checkpoint."
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps_per_generation": 2}, "steps_per_generation=1 in the checkpoint, 2 now"),
        ({"num_iterations": 2}, "num_iterations=1 in the checkpoint, 2 now"),
        ({"gradient_accumulation_steps": 2, "per_device_train_batch_size": 2}, "gradient_accumulation_steps=1 in"),
        (
            {"num_generations": 4},
            "num_generations=2 in the checkpoint, 4 now)",  # B = 1 task per round instead of 2
        ),
        (
            {"generation_batch_size": 8, "steps_per_generation": None},
            "steps_per_generation=1 in the checkpoint, 2 now; generation_batch_size=4 in the checkpoint, 8 now)",
        ),
    ],
    ids=["steps-per-generation", "iterations", "accumulation", "generations", "generation-batch"],
)
def test_resume_under_a_changed_schedule_is_refused(tiny_model_path, two_checkpoints, tmp_path, change, message):
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path / "new", max_steps=4, **change)
    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=str(two_checkpoints / "checkpoint-1"))
    assert str(error.value).startswith(
        f"Cannot resume BOTS from {two_checkpoints}/checkpoint-1: the generation schedule changed ("
    )
    assert message in str(error.value)
    assert str(error.value).endswith(
        "The restored micro-step counter would put round boundaries elsewhere than in the run that saved it. Resume "
        "with the checkpoint's settings (number of processes included), or start a new run."
    )


def test_resume_with_another_strategy_is_refused_with_one_message(tiny_model_path, two_checkpoints, tmp_path, caplog):
    """Before: a warning that the config's bots_strategy applies, then the selector's bare 'state is for strategy'."""
    checkpoint = two_checkpoints / "checkpoint-1"
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path / "new", max_steps=4, bots_strategy="uniform")
    with caplog.at_level("WARNING", logger="trl_bots.checkpoints"), pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert str(error.value) == (
        f"Cannot resume BOTS from {checkpoint} with bots_strategy='uniform': the setting differs from the "
        "checkpoint's, and its saved selector belongs to bots_strategy='bots'. Resume with bots_strategy='bots', or "
        "start a new run with 'uniform' (to start it from this checkpoint's weights, load the model from the "
        "checkpoint folder and train without resume_from_checkpoint)."
    )
    assert not [record for record in caplog.records if record.name == "trl_bots.checkpoints"]


def test_resume_with_another_task_list_is_refused(tiny_model_path, two_checkpoints, tmp_path):
    """Same size, other order: the task ids would name other rows, so the posterior would belong to other tasks."""
    original, shuffled = task_dataset(10), task_dataset(10).shuffle(seed=7)
    assert task_fingerprint(original) == task_fingerprint(Dataset.from_dict(original.to_dict()))  # however built
    assert task_fingerprint(shuffled) != task_fingerprint(original)
    trainer, _, _ = make_trainer(tiny_model_path, tmp_path / "new", dataset=shuffled, max_steps=3)
    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=str(two_checkpoints / "checkpoint-1"))
    assert str(error.value) == (
        f"Cannot resume BOTS from {two_checkpoints}/checkpoint-1: it was trained on a task list with fingerprint "
        f"{task_fingerprint(original)}, and this run's train_dataset has fingerprint {task_fingerprint(shuffled)} "
        "(other rows, another order or other values). The posterior is per row: resume with the dataset the "
        "checkpoint was trained on, in the same order, or start a new run."
    )


def test_resume_takes_settings_from_the_config_and_says_which_changed(
    tiny_model_path, two_checkpoints, tmp_path, caplog
):
    """Reference columns and an implicit weight added on resume take effect; the learned state is the checkpoint's."""
    checkpoint = two_checkpoints / "checkpoint-1"
    trainer, _, _ = make_trainer(
        tiny_model_path,
        tmp_path / "new",
        dataset=task_dataset(10, references=True),  # the same rows, plus reference columns
        max_steps=3,
        bots_reference_columns=["weak", "strong"],
        bots_implicit_weight=0.3,
        bots_forgetting=0.2,
    )
    with caplog.at_level("WARNING", logger="trl_bots.checkpoints"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert [r.getMessage() for r in caplog.records if r.name == "trl_bots.checkpoints"] == [
        f"Resuming BOTS from {checkpoint} with settings that differ from the checkpoint's (the config's apply; alpha, "
        "beta, mu, round and random state continue from the checkpoint): bots_forgetting 0.1 -> 0.2, "
        "bots_implicit_estimator None -> 'reference', bots_implicit_weight 0.0 -> 0.3, bots_reference_columns None -> "
        "['weak', 'strong']."
    ]
    assert trainer.selector.round == 3 and trainer.selector.forgetting == 0.2
    # Round 1 (from the checkpoint's log) had no implicit evidence; round 2 fits the plug-in, and rounds 2 and 3 weigh
    # its evidence with the config's rho (before: the checkpoint's 0).
    assert logged(trainer, "bots/implicit_weight") == [0.0, 0.3, 0.3]
    assert not math.isnan(logged(trainer, "bots/cap_coef")[-1])


def test_a_checkpoint_with_a_success_reward_name_resumes_under_the_list_of_that_name(
    tiny_model_path, two_checkpoints, tmp_path, caplog
):
    """Checkpoints saved before bots_success_reward could be a list hold the name: the same setting, not a change."""
    checkpoint = two_checkpoints / "checkpoint-1"
    state = json.loads((checkpoint / ROUND_STATE_FILE).read_text())
    state["settings"]["bots_success_reward"] = "even_task_reward"
    (checkpoint / ROUND_STATE_FILE).write_text(json.dumps(state))
    trainer, _, _ = make_trainer(
        tiny_model_path, tmp_path / "new", max_steps=2, bots_success_reward="even_task_reward"
    )
    with caplog.at_level("WARNING", logger="trl_bots.checkpoints"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.selector.round == 2
    assert not [record.getMessage() for record in caplog.records if record.name == "trl_bots.checkpoints"]


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


def test_success_reward_is_one_name_or_several_from_yaml_or_the_command_line(tmp_path):
    from trl import TrlParser

    from trl_bots.config import BOTSConfig

    config = tmp_path / "bots.yaml"
    config.write_text(f"output_dir: {tmp_path}\nuse_cpu: true\nbf16: false\nbots_success_reward: guru_reward\n")
    (args,) = TrlParser((BOTSConfig,)).parse_args_and_config(["--config", str(config)])
    assert args.bots_success_reward == ["guru_reward"]
    (args,) = TrlParser((BOTSConfig,)).parse_args_and_config(
        ["--config", str(config), "--bots_success_reward", "guru_reward", "code_reward"]
    )
    assert args.bots_success_reward == ["guru_reward", "code_reward"]
    with pytest.raises(ValueError, match=r"bots_success_reward must name the reward function .*got \[\]"):
        tiny_args(str(tmp_path), bots_success_reward=[])
