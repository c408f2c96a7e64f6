"""push_to_hub uploads the model, the selector state and the BOTS model card; only the network calls are replaced."""

import os
import shutil

import numpy as np
import pytest
from huggingface_hub import HfApi, RepoUrl
from huggingface_hub.utils import filter_repo_objects


class FakeHub:
    """Records what `HfApi.create_repo` / `HfApi.upload_folder` receive and copies the files an upload would send."""

    def __init__(self, snapshot_dir):
        self.snapshot_dir = snapshot_dir
        self.created, self.uploads = [], []

    def create_repo(self, api, repo_id, **kwargs):
        self.created.append(repo_id)
        return RepoUrl(f"https://huggingface.co/bots-tester/{repo_id}")

    def upload_folder(self, api, *, repo_id, folder_path, ignore_patterns=None, allow_patterns=None, **kwargs):
        files = [
            os.path.relpath(os.path.join(root, name), folder_path)
            for root, _, names in os.walk(folder_path)
            for name in names
        ]
        # The same filtering huggingface_hub applies before uploading.
        sent = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        for path in sent:
            os.makedirs(os.path.dirname(os.path.join(self.snapshot_dir, path)), exist_ok=True)
            shutil.copy2(os.path.join(folder_path, path), os.path.join(self.snapshot_dir, path))
        self.uploads.append({"repo_id": repo_id, "files": sent, **kwargs})


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    hub = FakeHub(str(tmp_path / "uploaded"))
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: hub.create_repo(api, repo_id, **kw))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: hub.upload_folder(api, **kw))
    return hub


def test_push_to_hub_uploads_model_selector_state_and_bots_card(fake_hub, tiny_model_path, tmp_path):
    from tiny import load_tiny, task_dataset, tiny_args

    from trl_bots import BOTSGRPOTrainer, BOTSSelector
    from trl_bots.rewards import exact_match_reward

    model, tokenizer = load_tiny(tiny_model_path)
    dataset = task_dataset(12, references=True).map(lambda row: {"solution": "a"})
    args = tiny_args(
        str(tmp_path / "bots-run"),
        push_to_hub=True,
        hub_model_id="bots-tiny",
        bots_reference_columns=["weak", "strong"],
        bots_implicit_weight=0.1,
        max_steps=2,
    )
    trainer = BOTSGRPOTrainer(
        model, [exact_match_reward], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    trainer.push_to_hub(dataset_name="tiny tasks")

    assert fake_hub.created == ["bots-tiny"]
    (upload,) = fake_hub.uploads
    assert upload["repo_id"] == "bots-tester/bots-tiny"
    files = set(upload["files"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "bots_selector.safetensors", "README.md"} <= files
    assert not any(path.startswith("checkpoint-") for path in files)

    uploaded = fake_hub.snapshot_dir
    restored = BOTSSelector(12, reference_pass_rates=np.zeros((12, 2)), implicit_weight=0.1)
    restored.load(os.path.join(uploaded, "bots_selector.safetensors"))
    assert restored.round == trainer.selector.round == 2
    np.testing.assert_array_equal(restored.alpha, trainer.selector.alpha)
    np.testing.assert_array_equal(restored.beta, trainer.selector.beta)

    with open(os.path.join(uploaded, "README.md")) as f:
        card = f.read()
    assert "- bots" in card.split("---")[1]  # the tag, in the card's YAML header
    # TRL's card names the method and cites its paper, from BOTSGRPOTrainer._name and _paper: BOTS, once.
    assert (
        "This model was trained with BOTS, a method introduced in [BOTS: A Unified Framework for Bayesian Online Task "
        "Selection in LLM Reinforcement Finetuning](https://huggingface.co/papers/2510.26374)." in card
    )
    assert card.count("@misc{shen2025bots,") == 1 and card.count("eprint        = {arXiv:2510.26374}") == 1
    assert "Cite BOTS as:" in card and "DeepSeekMath" not in card
    section = card[card.index("## BOTS task selection") :]
    assert "| strategy | bots |" in section and "| rounds | 2 |" in section
    assert "| reference columns | ['weak', 'strong'] |" in section
    assert "| implicit evidence | reference |" in section
    assert "| pseudo count | 2.0 |" in section  # bots_pseudo_count=None resolves to num_generations
    assert "2510.26374" in section


def test_the_card_names_the_embedding_plug_in_and_its_final_accuracy(tmp_path):
    from trl_bots import BOTSConfig, BOTSSelector
    from trl_bots.model_card import EffectiveTaskRatios, bots_card_section

    args = BOTSConfig(str(tmp_path), use_cpu=True, bots_embedding_dim=16)
    x = np.random.default_rng(0).normal(size=(200, 16))
    truth = 1 / (1 + np.exp(-2 * x[:, 0]))
    selector = BOTSSelector(200, embeddings=x, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        idx = selector.select(32)
        selector.update(idx, rng.binomial(8, truth[idx]).astype(float), np.full(32, 8.0))
    section = bots_card_section(args, selector, EffectiveTaskRatios())
    correlation = selector.estimator.correlation
    assert correlation > 0.5
    assert (
        f"| implicit evidence | embedding (the policy's middle layer, 16 dimensions; honest correlation of its "
        f"predictions with the observed pass rates at the end: {correlation:.3f}) |" in section
    )
