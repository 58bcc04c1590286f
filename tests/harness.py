"""The test harness (not shipped in the wheel): check `inherit` on every decoder-only architecture that transformers registers for causal LM.

For each model type a tiny random model is built from the type's default config (widths shrunk, depth
cut to at least 6 blocks with `inherit_config`, trailing counts such as `num_kv_shared_layers` switched on),
sliced, and checked for the three properties the method relies on:

- exactness: a k-block slice reproduces the reference's hidden states 0..k-1 bit for bit, and a full
  slice (k = L) reproduces its logits bit for bit. k is a valid number of layers (`valid_num_layers`) with
  L/2 <= k < L that cuts inside as many per-layer patterns as possible (not a convenient pattern boundary);
- round trip: `save_pretrained` -> `AutoModelForCausalLM.from_pretrained` gives the same logits;
- generation: greedy `generate` with the KV cache equals step-by-step greedy decoding without it;
- a non-prefix selection (`layers=[0, .., k-2, k]`, block k-1 skipped): `layer_idx` renumbered, hidden states
  of the shared prefix equal, cached generation equal to uncached; or refused with a `ConfigSliceError` where
  the config's layer pattern cannot express it (named in the result).

`scripts/architecture_sweep.py` runs it over the whole registry and writes `docs/architectures.md`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from inheritune_hf.architecture import (
    block_outputs,
    decoder_config,
    find_decoder_layers,
    meta_model,
    num_layers_of,
)
from inheritune_hf.errors import ConfigSliceError
from inheritune_hf.inherit import inherit
from inheritune_hf.slicing import inherit_config, per_layer_fields, valid_num_layers

# Shrunk widths for tiny models. Only keys the config already has are set, so this is a size recipe,
# not a list of architectures.
TINY_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "n_embd": 64,
    "d_model": 64,
    "embed_dim": 64,
    "embedding_dim": 64,
    "intermediate_size": 128,
    "n_inner": 128,
    "ffn_dim": 128,
    "ffn_hidden_size": 128,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "expert_ffn_hidden_size": 32,
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
    "num_experts_per_token": 2,
    "moe_k": 2,
    "moe_topk": 2,
    "top_k": 2,
    "num_expert_group": 1,
    "n_shared_experts": 1,
    "n_group": 1,
    "topk_group": 1,
    "q_lora_rank": 16,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "rotary_dim": 8,
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
    "linear_head_dim": 16,
    "linear_num_heads": 4,
    "mamba_d_state": 8,
    "mamba_n_heads": 4,
    "mamba_d_head": 16,
    "mamba_headdim": 16,
    "mamba_d_ssm": 64,
    "mamba_num_heads": 4,
    # a Mamba-2 mixer is expand * hidden wide and split into heads: 1 * 64 = 4 heads of 16
    "mamba_expand": 1,
    "expand": 1,
    "state_size": 8,
    "ssm_state_size": 8,
    "time_step_rank": 8,
    "n_groups": 1,
    "mamba_n_groups": 1,
    "hidden_size_per_layer_input": 16,
    "laurel_rank": 8,
}
# Counts of trailing blocks, set after the depth is cut (cutting the default depth drops the default count):
# the last blocks reuse earlier blocks' KV caches, so a slice that cuts the tail must shrink the count.
TINY_TRAILING: dict[str, int] = {"num_kv_shared_layers": 2}
TINY_LAYERS = 6
# Depths tried in turn when a config class rejects a shallower layer pattern, or offers no k with L/2 <= k < L.
TINY_DEPTHS = (TINY_LAYERS, 12)
MIN_VOCAB = 512
_BASE_KEYS = frozenset(PretrainedConfig().to_dict())
# The sweep checks four copies of each model at once; keep each well inside a 24 GiB machine.
MAX_TINY_PARAMETERS = 200_000_000


@dataclass
class ArchitectureCheck:
    """Outcome of checking one model type: status is "pass", "fail" or "skip", with the reason."""

    model_type: str
    status: str
    reason: str = ""
    model_class: str = ""


# Sizes some default configs leave unset although their model cannot be built without them.
REQUIRED_SIZES = (
    "head_dim",
    "num_key_value_heads",
    "num_experts_per_tok",
    "n_routed_experts",
    "n_shared_experts",
    "n_group",
    "topk_group",
)


def shrink_sizes(values: dict) -> dict:
    """Apply `TINY_SIZES` to a config dict and to its nested text config, where the keys exist."""
    for key, size in TINY_SIZES.items():
        value = values.get(key, False)
        # a 0 switches a feature off (no per-layer inputs, no shared experts): keep it off
        if (isinstance(value, int) and not isinstance(value, bool) and value != 0) or (
            value is None and key in REQUIRED_SIZES
        ):
            values[key] = size
    token_ids = [
        v for k, v in values.items() if k.endswith("token_id") and isinstance(v, int) and not isinstance(v, bool)
    ]
    token_ids += [x for k, v in values.items() if k.endswith("token_id") and isinstance(v, list) for x in v]
    # per-layer input embeddings (gemma3n, gemma4) are indexed by the same token ids as the main embeddings
    for key in ("vocab_size", "n_vocab", "vocab_size_per_layer_input"):
        if isinstance(values.get(key), int):
            values[key] = max([MIN_VOCAB] + [t + 1 for t in token_ids if isinstance(t, int)])
    if isinstance(values.get("qk_rope_head_dim"), int) and "head_dim" in values:
        values["head_dim"] = values["qk_rope_head_dim"]  # multi-head latent attention ropes head_dim dims
    if isinstance(values.get("kv_lora_rank"), int) and isinstance(values.get("num_key_value_heads"), int):
        # latent attention: one kv head per head
        values["num_key_value_heads"] = values.get("num_attention_heads", values["num_key_value_heads"])
    if isinstance(values.get("sliding_window"), int):
        values["sliding_window"] = 4  # short enough that the sliding layers really slide in the checks
    for key, value in values.items():  # sub-configs (text, vision, audio towers) shrink the same way
        if isinstance(value, dict) and "model_type" in value:
            values[key] = shrink_sizes(value)
    return values


def _derived_keys(config: PretrainedConfig) -> list[str]:
    """`to_dict()` keys that are not fields of the config class: values its `__post_init__` derives from fields.

    Passed back to `from_dict` they would override what the class derives from the shrunk fields (a linear
    attention head size copied from the default `head_dim`, say), so the tiny config drops them.
    """
    if not dataclasses.is_dataclass(config):
        return []
    # attribute_map targets are stored under their own name (`num_experts` behind `num_local_experts`)
    fields = {field.name for field in dataclasses.fields(config)} | set(getattr(config, "attribute_map", {}).values())
    return [key for key in config.to_dict() if key not in fields and key not in _BASE_KEYS]


def _rebuilt(config: PretrainedConfig, values: dict) -> PretrainedConfig:
    """`values` built through the config's class, with the derived keys re-derived where the class accepts it."""
    derived = set(_derived_keys(config))
    if derived:
        try:
            return type(config).from_dict({k: v for k, v in values.items() if k not in derived})
        except Exception:  # the class needs them passed in: keep them as they are
            pass
    return type(config).from_dict(values)


def tiny_config(model_type: str, num_layers: int = TINY_LAYERS, shrink: bool = True) -> PretrainedConfig:
    """A tiny config of `model_type`: default config, widths shrunk, depth cut to `num_layers` by `inherit_config`.

    With `shrink=False` the default widths are kept and only the vocabulary and the depth are cut: slower,
    but it builds for architectures whose width constraints the generic shrink recipe violates.
    """
    config = AutoConfig.for_model(model_type)
    values = config.to_dict()
    if shrink:
        values = shrink_sizes(values)
    config = _rebuilt(config, values)
    depth = getattr(decoder_config(config), "num_hidden_layers", None)
    if isinstance(depth, int) and depth > num_layers:
        config = inherit_config(config, num_layers)
    for key, count in TINY_TRAILING.items():
        decoder = decoder_config(config)
        if not isinstance(getattr(decoder, key, None), int):
            continue
        try:
            rebuilt = type(decoder).from_dict({**decoder.to_dict(), key: count})
        except Exception as err:
            raise ConfigSliceError(f"{key}={count} is not accepted at depth {num_layers}: {err}") from err
        if decoder is config:
            config = rebuilt
        else:
            holder = next(name for name in config.sub_configs if getattr(config, name, None) is decoder)
            setattr(config, holder, rebuilt)
        if meta_model(config) is None:  # e.g. a shared block type that no earlier block produces at this depth
            raise ConfigSliceError(f"{key}={count} does not build at depth {num_layers}")
    return config


def _forward(model, ids: torch.Tensor):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, use_cache=False)


def _greedy_without_cache(model, input_ids: torch.Tensor, steps: int) -> torch.Tensor:
    ids = input_ids
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=-1)
    return ids


def _build_tiny(model_type: str, seed: int, min_depth: int = TINY_LAYERS) -> PreTrainedModel:
    """Build and run a tiny reference: shrunk widths if the architecture allows it, else default widths; the
    smallest of `TINY_DEPTHS` (at least `min_depth`) whose layer pattern the config class accepts."""
    errors: list[Exception] = []  # the last error of each width mode: the deepest depth it reached
    for shrink in (True, False):
        for depth in [d for d in TINY_DEPTHS if d >= min_depth]:
            try:
                config = tiny_config(model_type, depth, shrink=shrink)
            except ConfigSliceError as err:  # the class rewrites this depth's pattern: try a deeper one
                if depth == max(TINY_DEPTHS):
                    errors.append(err)
                continue
            try:
                torch.manual_seed(seed)
                with torch.device("meta"):
                    size = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
                if size > MAX_TINY_PARAMETERS:
                    raise MemoryError(f"{size / 1e6:.0f}M parameters at {'shrunk' if shrink else 'default'} widths")
                model = AutoModelForCausalLM.from_config(config).eval()
                vocab = model.get_input_embeddings().weight.shape[0]
                with torch.no_grad():
                    model(input_ids=torch.randint(3, min(vocab, MIN_VOCAB), (1, 4)), use_cache=False)
                return model
            except Exception as err:
                errors.append(err)
                break
    if len(errors) > 1 and _short(errors[0]) != _short(errors[-1]):
        raise RuntimeError(f"shrunk: {_short(errors[0], 90)}; default widths: {_short(errors[-1], 90)}")
    raise errors[0]


def _round_trip_differs(model: PreTrainedModel, ids: torch.Tensor) -> str:
    """Empty if `save_pretrained` -> `from_pretrained` reproduces the logits bit for bit, else why not."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            loaded = AutoModelForCausalLM.from_pretrained(tmp).eval()
    except Exception as err:
        return _short(err)
    same = torch.equal(_forward(loaded, ids).logits, _forward(model, ids).logits)
    return "" if same else "logits differ after save/load round trip"


def _generation_differs(model: PreTrainedModel, prompt: torch.Tensor, new_tokens: int) -> str:
    """Empty if cached greedy `generate` equals step-by-step greedy decoding without the cache, else why not."""
    try:
        with torch.no_grad():
            cached = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
                eos_token_id=None,
            )
    except Exception as err:
        return _short(err)
    same = torch.equal(cached, _greedy_without_cache(model, prompt, new_tokens))
    return "" if same else GENERATION_DIFFERS


def _period(values: list) -> int:
    """Length of the shortest repeating unit of a per-layer list (its length if it does not repeat)."""
    return next(p for p in range(1, len(values) + 1) if all(values[i] == values[i % p] for i in range(len(values))))


def slice_points(config: PretrainedConfig) -> list[int]:
    """The valid k with L/2 <= k < L, those that cut inside the most per-layer patterns first.

    A k cuts inside a per-layer list when it is not a multiple of the list's period, inside a count of leading
    blocks when it keeps blocks on both sides of it, and inside a count of trailing blocks when it keeps some
    of them: the slices that exercise the field, not a convenient boundary.
    """
    n = num_layers_of(config)
    decoder = decoder_config(config)
    fields = per_layer_fields(decoder)
    values = decoder.to_dict()

    def cuts(k: int) -> int:
        score = 0
        for key, kind in fields.items():
            value = values[key]
            if kind == "per_layer":
                score += len(set(value)) > 1 and k % _period(list(value)) != 0
            elif kind == "threshold":
                score += 0 < value < k
            elif kind == "trailing":
                score += n - value < k
        return score

    candidates = [k for k in valid_num_layers(config) if max(1, n // 2) <= k < n]
    return sorted(candidates, key=lambda k: (-cuts(k), k))


def _check_slice(reference, k: int, n: int, ids, ref_out, new_tokens: int) -> tuple[str, str]:
    """(status, reason) of the three properties for a k-block slice; the reference is the control."""
    half = inherit(reference, k).eval()
    half_out = _forward(half, ids)
    for i in range(k):
        if not torch.equal(half_out.hidden_states[i], ref_out.hidden_states[i]):
            return "fail", f"hidden state {i} differs after slicing"
    want, got = block_outputs(reference, ids), block_outputs(half, ids)
    for i in range(k):  # hidden states stop at the input of the last kept block (or its norm); check its output
        if not torch.equal(got[i], want[i]):
            return "fail", f"output of block {i} differs after slicing"
    if not torch.equal(_forward(inherit(reference, n).eval(), ids).logits, ref_out.logits):
        return "fail", "k = L logits differ from the reference"
    why = _round_trip_differs(half, ids)
    if why:
        control = _round_trip_differs(reference, ids)
        return ("skip", f"the reference itself does not round-trip: {control}") if control else ("fail", why)
    prompt = ids[:1, :4]
    why = _generation_differs(half, prompt, new_tokens)
    if why:
        control = _generation_differs(reference, prompt, new_tokens)
        if control:
            return "skip", f"the reference itself: {control}"
        return "retry", why  # e.g. a slice with no attention layer left, which transformers cannot generate with
    return "pass", f"{k} of {n} blocks"


GENERATION_DIFFERS = "cached greedy generation differs from uncached"


def _check_skip_one(reference, k: int, ids, new_tokens: int) -> tuple[str, str]:
    """(status, detail) for a non-prefix selection: the first k + 1 blocks with block j left out, j = k-1 first.

    A selection that transformers' `generate` cannot run at all (no attention block left among linear-attention
    ones) is exchanged for one that leaves out an earlier block; a wrong result is never exchanged.
    """
    first_error = ""
    for skipped in range(k - 1, -1, -1):
        layers = [i for i in range(k + 1) if i != skipped]
        status, detail = _check_selection(reference, layers, skipped, ids, new_tokens)
        if status != "retry":
            return status, detail
        first_error = first_error or detail
    return "fail", first_error


def _check_selection(reference, layers: list[int], shared: int, ids, new_tokens: int) -> tuple[str, str]:
    """(status, detail) for `layers`, whose first `shared` blocks are the reference's first `shared`."""
    try:
        target = inherit(reference, layers=layers).eval()
    except ConfigSliceError as err:
        return "pass", f"non-prefix {layers} refused by the layer pattern: {_short(err, 100)}"
    source_blocks = find_decoder_layers(reference).layers
    for position, block in enumerate(find_decoder_layers(target).layers):
        source = dict(source_blocks[layers[position]].named_modules())
        for name, module in block.named_modules():
            index, was = getattr(module, "layer_idx", None), getattr(source.get(name), "layer_idx", None)
            # a module that held its block's position must hold the new one; others (a shared attention
            # built with layer_idx=-1 and told its index at call time) keep what they had
            want = position if was == layers[position] else was
            if isinstance(index, int) and index != want:
                return "fail", f"non-prefix {layers}: block {position} ({name or 'block'}) has layer_idx {index}"
    want, got = block_outputs(reference, ids), block_outputs(target, ids)
    for i in range(shared):
        if not torch.equal(got[i], want[i]):
            return "fail", f"non-prefix {layers}: output of block {i} differs"
    why = _generation_differs(target, ids[:1, :4], new_tokens)
    if why == GENERATION_DIFFERS:
        return "fail", f"non-prefix {layers}: {why}"
    if why:
        return "retry", f"non-prefix {layers}: {why}"
    return "pass", f"non-prefix {layers} exact"


def check_architecture(
    model_type: str,
    seed: int = 0,
    seq_len: int = 12,
    new_tokens: int = 6,
    progress: Callable[[str], None] | None = None,
) -> ArchitectureCheck:
    """Build a tiny `model_type`, slice it, and check exactness, round trip, generation and a non-prefix slice.

    The prefix slice keeps the first k blocks for a k with L/2 <= k < L that the architecture's layer pattern
    allows (`valid_num_layers`; some config classes insist, say, that the last block attends fully), cutting
    inside the per-layer patterns where it can (`slice_points`); the result names k. `progress` is told the
    phase: "reference" while the tiny reference is built and run on its own, then "slice k=..".
    """
    report = progress or (lambda phase: None)
    report("reference")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, "")
    try:
        default = AutoConfig.for_model(model_type)
        if getattr(default, "is_encoder_decoder", False):
            return ArchitectureCheck(model_type, "skip", "encoder-decoder model type", model_class)
        if getattr(default, "is_decoder", None) is False and hasattr(default, "add_cross_attention"):
            return ArchitectureCheck(model_type, "skip", "encoder-only (bidirectional unless is_decoder)", model_class)
        reference = _build_tiny(model_type, seed)
        vocab = min(reference.get_input_embeddings().weight.shape[0], MIN_VOCAB)
        ids = torch.randint(3, vocab, (2, seq_len), generator=torch.Generator().manual_seed(seed))
        # A depth cut can leave a hybrid pattern without the block kind transformers' `generate` needs (an
        # attention block among linear-attention ones): a deeper tiny reference keeps one where the default has it.
        for depth in [d for d in TINY_DEPTHS if d > len(find_decoder_layers(reference))]:
            if not _generation_differs(reference, ids[:1, :4], new_tokens):
                break
            reference = _build_tiny(model_type, seed, min_depth=depth)
        ref_out = _forward(reference, ids)
        perturbed = ids.clone()
        perturbed[:, -1] = (perturbed[:, -1] + 1) % vocab
        # A tolerance, not equality: MoE layers batch tokens by expert, so changing one token can move the
        # float round-off of others without any information flowing backwards.
        if not torch.allclose(_forward(reference, perturbed).logits[:, :-1], ref_out.logits[:, :-1], atol=1e-4):
            return ArchitectureCheck(model_type, "skip", "not causal: earlier logits see later tokens", model_class)
    except Exception as err:  # the architecture itself cannot build or run tiny: not ours to pass or fail
        return ArchitectureCheck(model_type, "skip", f"cannot build/run tiny: {_short(err)}", model_class)

    first_failure = None
    while True:
        try:
            n = len(find_decoder_layers(reference))
            points = slice_points(reference.config)
        except Exception as err:
            return ArchitectureCheck(model_type, "fail", f"block stack: {_short(err)}", model_class)
        first_failure = first_failure or (None if points else f"no valid k in {n // 2}..{n - 1}")
        for k in points:
            report(f"slice k={k} of {n}")
            try:
                status, reason = _check_slice(reference, k, n, ids, ref_out, new_tokens)
                if status == "pass":
                    status, detail = _check_skip_one(reference, k, ids, new_tokens)
                    reason = f"{reason}; {detail}" if status == "pass" else detail
            except ConfigSliceError as err:
                status, reason = "retry", _short(err)
            except Exception as err:
                reason = _short(err) + "\n" + traceback.format_exc(limit=-2)
                return ArchitectureCheck(model_type, "fail", reason, model_class)
            if status != "retry":
                return ArchitectureCheck(model_type, status, reason, model_class)
            first_failure = first_failure or reason
        deeper = [d for d in TINY_DEPTHS if d > n]
        if not deeper:  # no depth offers a k with L/2 <= k < L that the layer pattern allows
            return ArchitectureCheck(model_type, "fail", f"no k >= L/2 slices cleanly: {first_failure}", model_class)
        report("reference")
        try:
            reference = _build_tiny(model_type, seed, min_depth=deeper[0])
            ref_out = _forward(reference, ids)
        except Exception as err:
            return ArchitectureCheck(
                model_type, "fail", f"no k >= L/2 slices cleanly: {first_failure}; deeper: {_short(err)}", model_class
            )


def _short(err: BaseException, limit: int = 160) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."
