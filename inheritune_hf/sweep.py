"""Check `inherit` on every decoder-only architecture that transformers registers for causal LM.

For each model type a tiny random model is built from the type's default config (widths shrunk, depth
cut with `inherit_config`), sliced, and checked for the three properties the method relies on:

- exactness: a k-block slice reproduces the reference's hidden states 0..k-1 bit for bit, and a full
  slice (k = L) reproduces its logits bit for bit;
- round trip: `save_pretrained` -> `AutoModelForCausalLM.from_pretrained` gives the same logits;
- generation: greedy `generate` with the KV cache equals step-by-step greedy decoding without it.

`scripts/architecture_sweep.py` runs it over the whole registry and writes `docs/architectures.md`.
"""

from __future__ import annotations

import tempfile
import traceback
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from .architecture import decoder_config, find_decoder_layers
from .inherit import inherit, inherit_config

# Shrunk widths for tiny models. Only keys the config already has are set, so this is a size recipe,
# not a list of architectures.
TINY_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "n_embd": 64,
    "d_model": 64,
    "embed_dim": 64,
    "intermediate_size": 128,
    "n_inner": 128,
    "ffn_dim": 128,
    "ffn_hidden_size": 128,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_heads": 4,
    "num_key_value_heads": 2,
    "num_kv_heads": 2,
    "n_head_kv": 2,
    "multi_query_group_num": 2,
    "head_dim": 16,
    "kv_channels": 16,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "moe_num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_topk": 2,
    "top_k": 2,
    "n_shared_experts": 1,
    "n_group": 1,
    "topk_group": 1,
    "q_lora_rank": 16,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "qk_head_dim": 16,
    "v_head_dim": 16,
    "index_head_dim": 16,
    "index_n_heads": 2,
    "index_topk": 8,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "mamba_d_state": 8,
    "mamba_n_heads": 4,
    "mamba_d_head": 16,
    "mamba_headdim": 16,
    "mamba_expand": 2,
    "state_size": 8,
    "ssm_state_size": 8,
    "time_step_rank": 8,
    "n_groups": 1,
    "mamba_n_groups": 1,
    "hidden_size_per_layer_input": 16,
    "vocab_size_per_layer_input": 128,
    "laurel_rank": 8,
    "num_kv_shared_layers": 0,
}
TINY_LAYERS = 4
MIN_VOCAB = 512


@dataclass
class ArchitectureCheck:
    """Outcome of checking one model type: status is "pass", "fail" or "skip", with the reason."""

    model_type: str
    status: str
    reason: str = ""
    model_class: str = ""


def _shrink(values: dict) -> dict:
    """Apply `TINY_SIZES` to a config dict and to its nested text config, where the keys exist."""
    for key, size in TINY_SIZES.items():
        if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
            values[key] = size
    token_ids = [
        v for k, v in values.items() if k.endswith("token_id") and isinstance(v, int) and not isinstance(v, bool)
    ]
    token_ids += [x for k, v in values.items() if k.endswith("token_id") and isinstance(v, list) for x in v]
    for key in ("vocab_size", "n_vocab"):
        if isinstance(values.get(key), int):
            values[key] = max([MIN_VOCAB] + [t + 1 for t in token_ids if isinstance(t, int)])
    if isinstance(values.get("qk_rope_head_dim"), int) and "head_dim" in values:
        values["head_dim"] = values["qk_rope_head_dim"]  # multi-head latent attention ropes head_dim dims
    if isinstance(values.get("sliding_window"), int):
        values["sliding_window"] = 4  # short enough that the sliding layers really slide in the checks
    for key in ("text_config", "decoder_config"):
        if isinstance(values.get(key), dict):
            values[key] = _shrink(values[key])
    return values


def tiny_config(model_type: str, num_layers: int = TINY_LAYERS) -> PretrainedConfig:
    """A tiny config of `model_type`: default config, widths shrunk, depth cut to `num_layers` by `inherit_config`."""
    config = AutoConfig.for_model(model_type)
    values = _shrink(config.to_dict())
    config = type(config).from_dict(values)
    depth = getattr(decoder_config(config), "num_hidden_layers", None)
    if isinstance(depth, int) and depth > num_layers:
        config = inherit_config(config, num_layers)
    return config


def _greedy_without_cache(model, input_ids: torch.Tensor, steps: int) -> torch.Tensor:
    ids = input_ids
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=-1)
    return ids


def _forward(model, ids: torch.Tensor):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, use_cache=False)


def check_architecture(model_type: str, seed: int = 0, seq_len: int = 12, new_tokens: int = 6) -> ArchitectureCheck:
    """Build a tiny `model_type`, slice it, and check exactness, round trip and generation."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, "")
    try:
        if getattr(AutoConfig.for_model(model_type), "is_encoder_decoder", False):
            return ArchitectureCheck(model_type, "skip", "encoder-decoder model type", model_class)
        torch.manual_seed(seed)
        config = tiny_config(model_type)
        if getattr(config, "is_decoder", None) is False and hasattr(config, "add_cross_attention"):
            return ArchitectureCheck(model_type, "skip", "encoder-only (bidirectional unless is_decoder)", model_class)
        reference = AutoModelForCausalLM.from_config(config).eval()
        vocab = reference.get_input_embeddings().weight.shape[0]
        ids = torch.randint(3, min(vocab, MIN_VOCAB), (2, seq_len))
        ref_out = _forward(reference, ids)
        perturbed = ids.clone()
        perturbed[:, -1] = (perturbed[:, -1] + 1) % min(vocab, MIN_VOCAB)
        # A tolerance, not equality: MoE layers batch tokens by expert, so changing one token can move the
        # float round-off of others without any information flowing backwards.
        if not torch.allclose(_forward(reference, perturbed).logits[:, :-1], ref_out.logits[:, :-1], atol=1e-4):
            return ArchitectureCheck(model_type, "skip", "not causal: earlier logits see later tokens", model_class)
    except Exception as err:  # the architecture itself cannot build or run tiny: not ours to pass or fail
        return ArchitectureCheck(model_type, "skip", f"cannot build/run tiny: {_short(err)}", model_class)

    try:
        find_decoder_layers(reference)
    except Exception as err:
        return ArchitectureCheck(model_type, "fail", f"block stack: {_short(err)}", model_class)
    try:
        n = len(find_decoder_layers(reference))
        k = max(1, n // 2)
        half = inherit(reference, k).eval()
        half_out = _forward(half, ids)
        for i in range(k):
            if not torch.equal(half_out.hidden_states[i], ref_out.hidden_states[i]):
                return ArchitectureCheck(model_type, "fail", f"hidden state {i} differs after slicing", model_class)
        full = inherit(reference, n).eval()
        if not torch.equal(_forward(full, ids).logits, ref_out.logits):
            return ArchitectureCheck(model_type, "fail", "k = L logits differ from the reference", model_class)
        with tempfile.TemporaryDirectory() as tmp:
            half.save_pretrained(tmp)
            loaded = AutoModelForCausalLM.from_pretrained(tmp).eval()
        if not torch.equal(_forward(loaded, ids).logits, half_out.logits):
            return ArchitectureCheck(model_type, "fail", "logits differ after save/load round trip", model_class)
        prompt = ids[:1, :4]
        with torch.no_grad():
            cached = half.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
                eos_token_id=None,
            )
        uncached = _greedy_without_cache(half, prompt, new_tokens)
        if not torch.equal(cached, uncached):
            return ArchitectureCheck(model_type, "fail", "cached greedy generation differs from uncached", model_class)
    except Exception as err:
        return ArchitectureCheck(model_type, "fail", _short(err) + "\n" + traceback.format_exc(limit=-2), model_class)
    return ArchitectureCheck(model_type, "pass", f"{k} of {n} blocks", model_class)


def _short(err: BaseException, limit: int = 160) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."
