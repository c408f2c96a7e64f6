import os
import sys

import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))
# The demo's script (train_bots) and its world (bots_demo) live in examples/, outside the package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny Qwen2 + character tokenizer saved once per test session."""
    from tiny import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen2")))
