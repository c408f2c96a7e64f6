"""GURU mixtures: load_guru over several files or a folder keeps each task's domain; guru_reward routes by domain."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest
from datasets import Dataset

from trl_bots.data import load_guru
from trl_bots.rewards import get_reward_function, guru_reward


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


def test_example_script_loads_a_guru_folder_and_its_eval_file(guru_folder, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    from train_bots import load_datasets, make_parser

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
