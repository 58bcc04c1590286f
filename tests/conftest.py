"""Fixtures shared by the tests, as pytest intends: test functions take them by name.

`tiny_model` hands out the one tiny-model factory (`tests/tiny_models.py`): `tiny_model("gpt2", 4)` or
`tiny_model("llama", 4, hidden_size=64)`, built from configs, no downloads.
"""

from __future__ import annotations

import pytest
import tiny_models


@pytest.fixture(name="tiny_model")
def tiny_model_factory():
    return tiny_models.tiny_model
