import os
import sys

import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny Qwen2 + character tokenizer saved once per test session."""
    from tiny import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen2")))
