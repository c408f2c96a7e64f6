"""GURU mixtures: load_guru over several files or a folder keeps each task's domain; guru_reward routes by domain."""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset
from recording import RewardRecorder, replay_posterior, total_rewards
from tiny import load_tiny, task_dataset, tiny_args

from trl_bots.data import load_guru
from trl_bots.rewards import format_reward, get_reward_function, guru_reward
from trl_bots.trainer import BOTSGRPOTrainer


def guru_file(folder, name, ability, answers, extra):
    """A small file with GURU's schema: chat prompt, reward_model.ground_truth, ability, data_source, pass rates."""
    rows = [
        {
            "data_source": name.split(".")[0],
            "prompt": [{"role": "user", "content": f"{ability} task {i}"}],
            "ability": ability,
            "reward_model": {"ground_truth": answer, "style": "rule"},
            "extra_info": extra(i),
            "qwen2.5_7b_pass_rate": i / 10,
            "qwen3_30b_pass_rate": (i + 5) / 10,
        }
        for i, answer in enumerate(answers)
    ]
    path = folder / name
    Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.fixture
def guru_folder(tmp_path):
    folder = tmp_path / "guru"
    folder.mkdir()
    guru_file(folder, "math__combined_3.parquet", "math", ["2", "\\frac{1}{2}", "4"], lambda i: {"index": i})
    # Logic's extra_info has another structure than math's, as in GURU.
    guru_file(folder, "logic__ordering_2.parquet", "logic", ["A,B", "C"], lambda i: {"index": i, "answer_list": ["x"]})
    guru_file(folder, "codegen__leetcode_2.parquet", "codegen", ["def f(): pass", "x"], lambda i: {"index": i})
    (folder / "README.md").write_text("not data")
    return folder


def test_folder_and_file_list_keep_the_domain(guru_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="trl_bots.data"):
        dataset = load_guru(guru_folder)
    # Files in name order: codegen, logic, math.
    assert dataset["domain"] == ["codegen"] * 2 + ["logic"] * 2 + ["math"] * 3
    assert dataset["ability"] == dataset["domain"]  # the original columns are kept
    assert dataset["solution"] == ["def f(): pass", "x", "A,B", "C", "2", "\\frac{1}{2}", "4"]
    assert dataset[5]["prompt"] == [{"role": "user", "content": "math task 1"}]
    assert dataset["qwen3_30b_pass_rate"] == [0.5, 0.6, 0.5, 0.6, 0.5, 0.6, 0.7]
    # extra_info differs in structure between the files: kept as JSON text, and said so.
    assert [json.loads(value) for value in dataset["extra_info"][2:5]] == [
        {"index": 0, "answer_list": ["x"]},
        {"index": 1, "answer_list": ["x"]},
        {"index": 0},
    ]
    assert any("['extra_info']" in record.getMessage() for record in caplog.records)

    files = [guru_folder / "math__combined_3.parquet", guru_folder / "logic__ordering_2.parquet"]
    mixed = load_guru([str(f) for f in files])
    assert mixed["domain"] == ["math"] * 3 + ["logic"] * 2
    single = load_guru(files[0])  # one file: its domain, its columns as they are
    assert single["domain"] == ["math"] * 3 and single[0]["extra_info"] == {"index": 0}


def test_load_guru_errors(tmp_path, guru_folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_guru(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no data file"):
        load_guru(tmp_path / "empty")
    dataset = Dataset.from_parquet(str(guru_folder / "math__combined_3.parquet"))
    dataset.add_column("domain", ["x"] * 3).to_parquet(str(tmp_path / "math__with_domain.parquet"))
    with pytest.raises(ValueError, match="already has a 'domain' column"):
        load_guru(tmp_path / "math__with_domain.parquet")


def test_load_guru_aligns_numbers_and_refuses_two_prompt_forms(tmp_path, guru_folder, caplog):
    """Columns the training reads stay what they are: numbers stay numbers, a prompt never becomes JSON text."""
    math_file = guru_folder / "math__combined_3.parquet"
    rows = Dataset.from_parquet(str(guru_folder / "logic__ordering_2.parquet")).to_list()
    # Integer pass rates in one file (float in the others), and a numeric column only this file has.
    integers = [{**row, "qwen2.5_7b_pass_rate": i, "difficulty": 0.5} for i, row in enumerate(rows)]
    Dataset.from_list(integers).to_parquet(str(tmp_path / "logic__int_rates.parquet"))
    with caplog.at_level(logging.WARNING, logger="trl_bots.data"):
        dataset = load_guru([math_file, tmp_path / "logic__int_rates.parquet"])
    assert dataset.features["qwen2.5_7b_pass_rate"].dtype == "float64"
    assert dataset["qwen2.5_7b_pass_rate"] == [0.0, 0.1, 0.2, 0.0, 1.0]
    assert dataset["difficulty"] == ["null"] * 3 + ["0.5"] * 2  # JSON text, null where a file lacks the column
    assert any("['qwen2.5_7b_pass_rate'] differ in numeric type" in record.getMessage() for record in caplog.records)

    # The same messages stored as Arrow large_string (as some writers do): cast to the first file's type.
    messages = pa.struct([("role", pa.large_string()), ("content", pa.large_string())])
    table = Dataset.from_list(rows).data.table
    table = table.set_column(
        table.schema.get_field_index("prompt"), "prompt", table["prompt"].cast(pa.list_(messages))
    )
    pq.write_table(table, tmp_path / "logic__large.parquet")
    dataset = load_guru([math_file, tmp_path / "logic__large.parquet"])
    assert dataset["prompt"][3:] == [row["prompt"] for row in rows]

    # Plain-text prompts beside chat prompts: as JSON text they would be trained on verbatim, so they are refused.
    plain = [{**row, "prompt": row["prompt"][0]["content"]} for row in rows]
    Dataset.from_list(plain).to_parquet(str(tmp_path / "logic__plain.parquet"))
    with pytest.raises(
        ValueError, match=r"the prompt column differs in type between the files .*logic__plain.parquet"
    ):
        load_guru([math_file, tmp_path / "logic__plain.parquet"])

    # A file named twice (here: in its folder and by name) would put its tasks in the pool twice.
    with pytest.raises(ValueError, match=r"name files more than once .*math__combined_3.parquet'\]"):
        load_guru([guru_folder, math_file])


def test_guru_reward_routes_by_domain(guru_folder):
    dataset = load_guru(guru_folder)
    completions = [
        "```python\ndef f(): pass\n```",  # code: no sandbox, unscored
        "x",
        "The order is \\boxed{A,B}",  # logic: exact match of the boxed answer
        "\\boxed{D}",
        "\\boxed{2}",  # math: math-verify, so 0.5 equals 1/2
        "\\boxed{0.5}",
        "\\boxed{5}",
    ]
    rewards = get_reward_function("guru_reward")(completions, solution=dataset["solution"], domain=dataset["domain"])
    assert rewards == [None, None, 1.0, 0.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"does not know the domains \['poetry'\]"):
        guru_reward(["x"], solution=["x"], domain=["poetry"])
    with pytest.raises(ValueError, match=r"does not know the domains \['poetry', None\]"):
        guru_reward(["x", "y"], solution=["x", "y"], domain=["poetry", None])
    # One domain per completion: a shorter list would leave the last completions unscored without a word.
    with pytest.raises(ValueError, match=r"one domain per completion \(2\), got 1"):
        guru_reward(["x", "y"], solution=["x", "y"], domain=["logic"])


def test_example_script_loads_a_guru_folder_and_its_eval_file(guru_folder, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    from train_bots import load_datasets, main, make_parser

    eval_file = tmp_path / "math__math_500.parquet"  # evaluation files carry no pass rates
    Dataset.from_parquet(str(guru_folder / "math__combined_3.parquet")).remove_columns(
        ["qwen2.5_7b_pass_rate", "qwen3_30b_pass_rate"]
    ).to_parquet(str(eval_file))
    argv = ["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--report_to", "none", "--load_guru", "true"]
    argv += ["--dataset_name", str(guru_folder), "--eval_dataset_name", str(eval_file), "--eval_strategy", "steps"]
    argv += ["--bots_domain_column", "domain", "--bots_domain_weights", '{"codegen": 0, "logic": 1, "math": 2}']
    script_args, training_args, _, _ = make_parser().parse_args_and_config(argv)
    assert training_args.bots_domain_weights == {"codegen": 0, "logic": 1, "math": 2}  # JSON on the command line
    train, evaluation = load_datasets(script_args, training_args)
    assert train["domain"] == ["codegen"] * 2 + ["logic"] * 2 + ["math"] * 3
    assert evaluation["domain"] == ["math"] * 3 and "qwen3_30b_pass_rate" not in evaluation.column_names
    # Without a dataset the script runs the offline demo: --load_guru there is refused, not ignored.
    without_dataset = make_parser().parse_args_and_config(argv[:8])
    with pytest.raises(ValueError, match="load_guru=True reads dataset_name, which is not set"):
        main(*without_dataset)


MIXTURE_DOMAINS = ["codegen" if i % 3 == 0 else "logic" for i in range(12)]


def train_mixture(model_path, output_dir, reward_funcs, weights, **overrides):
    """4 rounds of 3 tasks (one code task, two logic tasks) on 12 rows with guru_reward's columns."""
    dataset = task_dataset(12).add_column("domain", MIXTURE_DOMAINS)
    dataset = dataset.add_column("solution", [str(i) for i in range(12)])
    model, tokenizer = load_tiny(model_path)
    recorder = RewardRecorder()
    args = tiny_args(
        str(output_dir),
        per_device_train_batch_size=6,
        max_steps=4,
        reward_weights=weights,
        bots_domain_column="domain",
        bots_domain_weights={"codegen": 1, "logic": 2},
        **overrides,
    )
    trainer = BOTSGRPOTrainer(
        model, recorder.wrap(*reward_funcs), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    return trainer, recorder


def test_code_rows_stay_unscored_beside_a_format_reward(tiny_model_path, tmp_path, caplog):
    """With bots_success_reward='guru_reward', its None for code rows is neither success nor failure, though
    format_reward (weight 0.1) scores them; after 3 rounds BOTS says that the code domain is never scored."""
    with caplog.at_level("WARNING", logger="trl_bots.trainer"):
        trainer, recorder = train_mixture(
            tiny_model_path, tmp_path, (guru_reward, format_reward), [1.0, 0.1], bots_success_reward="guru_reward"
        )
    code = sorted({i for call in recorder.calls for i in call["idx"] if MIXTURE_DOMAINS[i] == "codegen"})
    assert len(recorder.calls) == 4 and code
    assert all(r is not None for call in recorder.calls for r in call["rewards"][1])  # format scored every row
    # Code tasks never got a trial: alpha and beta stay at the flat prior (a failure would have raised beta).
    assert trainer.selector.alpha[code].tolist() == trainer.selector.beta[code].tolist() == [1.0] * len(code)
    alpha, beta = replay_posterior(12, [(call["idx"], total_rewards(call, [1.0, 0.0])) for call in recorder.calls])
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    history = trainer.state.log_history
    assert [e["bots/scored_ratio"] for e in history if "bots/scored_ratio" in e] == [4 / 6] * 4
    code_etr = [e["bots/domain/codegen/effective_task_ratio"] for e in history if "bots/domain/codegen/share" in e]
    assert code_etr == [0.0] * 4
    assert [record.getMessage() for record in caplog.records if record.getMessage().startswith("BOTS: ")] == [
        "BOTS: domain 'codegen' was served in 3 rounds and none of its completions was ever scored "
        "(bots_success_reward='guru_reward' returned None or NaN for them): its tasks keep the prior, and its share of "
        "every batch teaches the selector nothing. Make a reward function return numbers for these rows and list it in "
        "bots_success_reward (e.g. a code reward that returns None for the other domains, beside guru_reward), or give "
        "'codegen' the weight 0 in bots_domain_weights."
    ]


def code_tests_reward(completions, domain, **kwargs):
    """A stand-in for a sandboxed code reward: a number for code rows (the tests pass when the answer starts with
    'a'), None for the rows of the other domains."""
    return [
        float(str(completion).strip().startswith("a")) if label == "codegen" else None
        for completion, label in zip(completions, domain, strict=True)
    ]


def test_the_mixture_recipes_advice_for_code_credits_code_tasks(tiny_model_path, tmp_path, caplog):
    """The recipe's comment: add a code reward beside guru_reward (no bots_success_reward): code rows are scored."""
    with caplog.at_level("WARNING", logger="trl_bots.trainer"):
        trainer, recorder = train_mixture(tiny_model_path, tmp_path, (guru_reward, code_tests_reward), [1.0, 1.0])
    code = sorted({i for call in recorder.calls for i in call["idx"] if MIXTURE_DOMAINS[i] == "codegen"})
    assert len(recorder.calls) == 4 and code
    alpha, beta = replay_posterior(12, [(call["idx"], total_rewards(call, [1.0, 1.0])) for call in recorder.calls])
    np.testing.assert_allclose(trainer.selector.alpha, alpha, rtol=1e-6)
    np.testing.assert_allclose(trainer.selector.beta, beta, rtol=1e-6)
    assert (trainer.selector.alpha[code] + trainer.selector.beta[code] > 2.0).all()  # every code task got trials
    history = trainer.state.log_history
    assert [e["bots/scored_ratio"] for e in history if "bots/scored_ratio" in e] == [1.0] * 4
    assert not [record for record in caplog.records if record.getMessage().startswith("BOTS: ")]
