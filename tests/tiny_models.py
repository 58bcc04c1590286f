"""The tiny models of the tests: built from configs in one place, no downloads.

`tiny_model("gpt2")` or `tiny_model("llama")` is "a small GPT-2" or "a small Llama" everywhere, with the same sizes,
seeds and token ids; config overrides give the few tests that need another shape. Tests take the factory as the
`tiny_model` fixture (conftest.py); modules that need a model at import time, to parametrize, import it from here.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

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


def qwen2_config(num_layers: int = 4, **overrides: Any) -> Qwen2Config:
    """A third family with grouped-query attention (4 query heads share 1 key/value head) and qkv biases."""
    values = dict(
        num_hidden_layers=num_layers,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=TINY_VOCAB,
        max_position_embeddings=64,
    )
    return Qwen2Config(**(values | overrides))


#: Each tiny architecture: its config builder (depth first) and its causal-LM class.
ARCHITECTURES: dict[str, tuple[Any, type[PreTrainedModel]]] = {
    "gpt2": (gpt2_config, GPT2LMHeadModel),
    "llama": (llama_config, LlamaForCausalLM),
    "qwen2": (qwen2_config, Qwen2ForCausalLM),
}


def tiny_model(architecture: str = "gpt2", num_layers: int = 4, *, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A tiny random `architecture` (a key of `ARCHITECTURES`) in eval mode, seeded so that every call builds the same
    weights."""
    build_config, model_class = ARCHITECTURES[architecture]
    config = build_config(num_layers, **overrides)
    torch.manual_seed(seed)
    return model_class(config).eval()
