"""A tiny causal LM whose attention is its own module, outside transformers' attention interface.

Which architectures a transformers release routes through `AttentionInterface` changes from release to release
(GPT-J moved in 5.24), so the test of `analyze_attention`'s forward-hook fallback builds its own model instead
of assuming one. Like the older transformers models, its attention returns `(output, probabilities)` when asked
for `output_attentions`, and transformers' own heuristic (`_can_set_attn_implementation`) finds no interface in
this module's source.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast


class LegacyConfig(PretrainedConfig):
    model_type = "inheritune_legacy_test"

    def __init__(
        self,
        vocab_size: int = 300,
        hidden_size: int = 64,
        num_attention_heads: int = 4,
        num_hidden_layers: int = 2,
        max_position_embeddings: int = 64,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class LegacyAttention(nn.Module):
    def __init__(self, config: LegacyConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, output_attentions: bool = False):
        batch, length, width = hidden.shape
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in self.qkv(hidden).split(width, -1))
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        causal = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
        probs = scores.masked_fill(~causal, torch.finfo(scores.dtype).min).softmax(-1)
        out = self.out((probs @ v).transpose(1, 2).reshape(batch, length, width))
        return out, (probs if output_attentions else None)


class LegacyBlock(nn.Module):
    def __init__(self, config: LegacyConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size)
        self.attention = LegacyAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.hidden_size, 2 * config.hidden_size), nn.GELU())
        self.down = nn.Linear(2 * config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, output_attentions: bool = False):
        attended, probs = self.attention(self.norm(hidden), output_attentions=output_attentions)
        hidden = hidden + attended
        return hidden + self.down(self.mlp(hidden)), probs


class LegacyPreTrainedModel(PreTrainedModel):
    config_class = LegacyConfig
    base_model_prefix = "model"
    _no_split_modules = ["LegacyBlock"]


class LegacyModel(LegacyPreTrainedModel):
    def __init__(self, config: LegacyConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(LegacyBlock(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, output_attentions: bool = False, **kwargs) -> BaseModelOutputWithPast:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed(input_ids) + self.positions(positions)
        attentions = []
        for block in self.layers:
            hidden, probs = block(hidden, output_attentions=output_attentions)
            attentions.append(probs)
        return BaseModelOutputWithPast(
            last_hidden_state=self.final_norm(hidden), attentions=tuple(attentions) if output_attentions else None
        )


class LegacyForCausalLM(LegacyPreTrainedModel):
    def __init__(self, config: LegacyConfig) -> None:
        super().__init__(config)
        self.model = LegacyModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, output_attentions: bool = False, **kwargs) -> CausalLMOutputWithPast:
        outputs = self.model(input_ids, output_attentions=output_attentions)
        return CausalLMOutputWithPast(logits=self.lm_head(outputs.last_hidden_state), attentions=outputs.attentions)
