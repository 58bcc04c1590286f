"""Shared tiny models for the tests: built from configs in one place, no downloads.

Every test file that needs "a small GPT-2" or "a small Llama" takes it from here, so the same sizes, seeds and
token ids hold everywhere. The factories take config overrides for the few tests that need another shape; the
fixtures of the same names hand the factories to tests that prefer fixtures. (Modules that need a model at import
time, e.g. to parametrize, import the factories: `from conftest import tiny_gpt2`.)
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

#: The vocabulary of the tiny models: prime, so no width divides it by accident.
TINY_VOCAB = 97


def gpt2_config(n_layer: int = 4, **overrides: Any) -> GPT2Config:
    """A GPT-2 config with learned position embeddings and tied embeddings: 4 blocks of width 32, 4 heads."""
    values = dict(
        n_layer=n_layer, n_embd=32, n_head=4, vocab_size=TINY_VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return GPT2Config(**(values | overrides))


def llama_config(num_layers: int = 4, **overrides: Any) -> LlamaConfig:
    """A Llama config (RoPE, RMSNorm, GQA with 2 kv heads, untied head): 4 blocks of width 32."""
    values = dict(
        num_hidden_layers=num_layers,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=TINY_VOCAB,
        tie_word_embeddings=False,
    )
    return LlamaConfig(**(values | overrides))


def tiny_gpt2(n_layer: int = 4, *, seed: int = 0, **overrides: Any) -> GPT2LMHeadModel:
    """A tiny random GPT-2 in eval mode, seeded so that every call builds the same weights."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(n_layer, **overrides)).eval()


def tiny_llama(num_layers: int = 4, *, seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    """A tiny random Llama in eval mode, seeded so that every call builds the same weights."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(num_layers, **overrides)).eval()


@pytest.fixture(name="tiny_gpt2")
def tiny_gpt2_factory():
    return tiny_gpt2


@pytest.fixture(name="tiny_llama")
def tiny_llama_factory():
    return tiny_llama
