"""Architecture knowledge, derived from the model and its config rather than from a per-model table.

Everything else in the package asks this module where the block stack lives, which config holds the
decoder's layer count, and which config fields are per-layer. Nothing here names a model family.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .errors import LayerStackNotFoundError, UnsupportedModelError

# Name fragments of integer config fields that describe a repeating pattern (every n-th layer is ...).
# A pattern stays valid for a prefix of the stack; for any other selection the per-block structure check
# in `inherit` catches a mismatch and names these fields.
PERIODIC_FIELD_HINTS = ("period", "interval", "step", "freq", "offset", "pattern", "every")

# Depth difference at which a config class is probed to tell per-layer lists from fixed-length ones.
PROBE_EXTRA = 3


@dataclass
class LayerStack:
    """The stack of transformer blocks of a model.

    `path` is the dotted module name (e.g. ``"model.layers"`` or ``"transformer.h"``); the weights of
    block ``i`` are the state-dict entries under ``f"{path}.{i}."``.
    """

    path: str
    layers: nn.ModuleList

    def __len__(self) -> int:
        return len(self.layers)


def decoder_config(config: PretrainedConfig) -> PretrainedConfig:
    """The (sub-)config that holds the decoder's layer count: the config itself or its text config."""
    text = config.get_text_config(decoder=True)
    return text if getattr(text, "num_hidden_layers", None) is not None else config


def num_layers_of(config: PretrainedConfig) -> int:
    """Number of transformer blocks in the decoder described by `config`."""
    n = getattr(decoder_config(config), "num_hidden_layers", None)
    if not isinstance(n, int) or isinstance(n, bool):
        raise LayerStackNotFoundError(
            f"{type(config).__name__} has no integer `num_hidden_layers` (or an attribute mapped to it), "
            "so its decoder depth is unknown. inheritune_hf needs a decoder-only transformer config."
        )
    return n


def layer_count_key(config: PretrainedConfig) -> str:
    """The `to_dict()` key that stores the layer count (``n_layer`` for GPT-2, ``num_hidden_layers`` usually)."""
    return getattr(config, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")


def check_causal_lm(model: PreTrainedModel) -> None:
    """Raise `UnsupportedModelError` unless `model` is a decoder-only causal LM."""
    if not isinstance(model, PreTrainedModel):
        raise UnsupportedModelError(
            f"Expected a transformers PreTrainedModel (e.g. from AutoModelForCausalLM), got {type(model).__name__}."
        )
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"{type(model).__name__} is an encoder-decoder model; Inheritune slices decoder-only causal LMs "
            "(load one with AutoModelForCausalLM)."
        )
    # BERT-family configs switch between encoder and decoder with `is_decoder` (and can add cross-attention);
    # with it off they attend both ways. Other configs may carry a stale `is_decoder=False` (GPT-NeoX does)
    # while being causal, so the flag alone is not trusted.
    if getattr(config, "is_decoder", None) is False and hasattr(config, "add_cross_attention"):
        raise UnsupportedModelError(
            f"{type(model).__name__} ({config.model_type}) is configured as a bidirectional encoder "
            "(is_decoder=False); Inheritune needs a causal LM. Use a decoder-only model, or load it with "
            "is_decoder=True if you really mean to use it as a causal decoder."
        )
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    names = {cls.__name__ for cls in type(model).__mro__}
    if not names & causal_classes and not type(model).__name__.endswith(("ForCausalLM", "LMHeadModel")):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a causal LM class (it is not in transformers' "
            "MODEL_FOR_CAUSAL_LM_MAPPING). Load the checkpoint with AutoModelForCausalLM."
        )


def find_decoder_layers(model: nn.Module) -> LayerStack:
    """Find the stack of transformer blocks of any causal LM.

    The stack is the `nn.ModuleList` whose length is the config's layer count and whose element class is
    one that the model declares unsplittable (`_no_split_modules`, i.e. a whole transformer block). When
    the model has a decoder sub-module (`get_decoder()`), the search is confined to it so that a vision
    tower of equal depth is never picked. Works on meta-device models too.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise LayerStackNotFoundError(f"{type(model).__name__} has no `config`; expected a transformers model.")
    n = num_layers_of(config)
    no_split = set(getattr(model, "_no_split_modules", None) or [])

    scope_prefix, scope = "", model
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            decoder = get_decoder()
        except Exception:  # some heads raise when they have no decoder; fall back to the whole model
            decoder = None
        if isinstance(decoder, nn.Module) and decoder is not model:
            for name, module in model.named_modules():
                if module is decoder:
                    scope_prefix, scope = name, decoder
                    break

    def lists_in(root: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in root.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n > 0]

    candidates = lists_in(scope)
    if not candidates and scope is not model:  # `get_decoder()` can name an LM head called "decoder"
        scope_prefix, scope = "", model
        candidates = lists_in(model)
    blocks = [(name, m) for name, m in candidates if type(m[0]).__name__ in no_split]
    chosen = blocks or candidates
    if not chosen:
        raise LayerStackNotFoundError(
            f"Could not find the transformer blocks of {type(model).__name__}: no nn.ModuleList of length "
            f"{n} (the config's num_hidden_layers). Models that keep their blocks elsewhere are not supported."
        )
    # The outermost candidate is the stack itself; inner ones (e.g. a per-block expert list of equal length)
    # are nested inside it.
    name, layers = min(chosen, key=lambda item: item[0].count("."))
    others = [other for other, _ in chosen if other != name and not other.startswith(name + ".")]
    if others:
        raise LayerStackNotFoundError(
            f"{type(model).__name__} has several candidate block stacks of length {n}: "
            f"{[name] + others}. Cannot tell which is the decoder."
        )
    path = f"{scope_prefix}.{name}" if scope_prefix else name
    return LayerStack(path=path, layers=layers)


def model_parts(model: PreTrainedModel, stack: LayerStack) -> dict[str, list[str]]:
    """Names of the modules outside the block stack, grouped by the role they play in the forward pass.

    Roles are found by running a two-token forward pass and watching the order in which modules with
    parameters run: before the first block they are embeddings (token embeddings, learned position
    embeddings, embedding norms); after the last block they are the final norm and the LM head. This is
    how "position embeddings" and "final norm" are found without naming any attribute.
    """
    input_embeddings = model.get_input_embeddings()
    output_embeddings = model.get_output_embeddings()
    names = {id(module): name for name, module in model.named_modules()}
    stack_ids = {id(module) for module in stack.layers.modules()}
    events: list[tuple[str, nn.Module]] = []
    hooks = []

    def record(kind: str):
        def hook(module, *args):
            events.append((kind, module))

        return hook

    for module in model.modules():
        if id(module) in stack_ids or module is model:
            continue
        if any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(record("param")))
    hooks.append(stack.layers[0].register_forward_pre_hook(record("first_block")))
    hooks.append(stack.layers[-1].register_forward_hook(record("last_block")))
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()

    before, after, phase = [], [], "before"
    for kind, module in events:
        if kind == "first_block":
            phase = "blocks"
        elif kind == "last_block":
            phase = "after"
        elif phase == "before" and module is not input_embeddings:
            before.append(module)
        elif phase == "after" and module is not output_embeddings:
            after.append(module)

    def unique_names(modules):
        return list(dict.fromkeys(names[id(m)] for m in modules))

    return {
        "position_embeddings": unique_names(m for m in before if isinstance(m, nn.Embedding)),
        "embedding_norm": unique_names(m for m in before if not isinstance(m, nn.Embedding)),
        "final_norm": unique_names(after),
    }


def _is_per_layer(key: str, value, n: int, probe: dict) -> bool:
    """A per-layer list has one entry per block, also when the config class is built at another depth."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return False
    probed = probe.get(key)
    # Built at depth n + PROBE_EXTRA, a per-layer field follows the depth; a fixed-length field (say two
    # multipliers) keeps its own length and is not per-layer even if it happens to match here.
    return not isinstance(probed, (list, tuple)) or len(probed) == n + PROBE_EXTRA


def _probe_config(config: PretrainedConfig, n: int) -> dict:
    """The config class's defaults built at a different depth, used to tell per-layer lists apart."""
    key = layer_count_key(config)
    try:
        probe = type(config)(**{key: n + PROBE_EXTRA})
    except Exception:  # a config class that cannot build from defaults: trust lengths alone
        return {}
    if getattr(probe, "num_hidden_layers", None) != n + PROBE_EXTRA:
        return {}  # the depth is derived from a per-layer list, so the probe tells nothing
    return probe.to_dict()


def per_layer_fields(config: PretrainedConfig) -> dict[str, str]:
    """Classify the layer-dependent fields of a decoder config.

    Returns ``{field: kind}`` where kind is ``"per_layer"`` (one entry per block), ``"index_list"`` (a list
    of block indices), ``"index_map"`` (a mapping keyed by block index) or ``"threshold"`` (an integer
    count of leading blocks, such as ``max_window_layers`` or ``first_k_dense_replace``). Discovered by
    value, length and type; fields of the generic base config are never layer-dependent.
    """
    n = num_layers_of(config)
    base = set(PretrainedConfig().to_dict())
    count_key = layer_count_key(config)
    values = config.to_dict()
    probe = None
    fields: dict[str, str] = {}
    for key, value in values.items():
        if key in base or key == count_key or isinstance(value, (float, bool)) or value is None:
            continue
        if isinstance(value, str):
            # A string with one character per block (a hybrid pattern such as "M-M*") is per-layer when the
            # config class builds it at another depth with that depth's length.
            if len(value) == n and n > 1:
                if probe is None:
                    probe = _probe_config(config, n)
                probed = probe.get(key)
                if isinstance(probed, str) and len(probed) == n + PROBE_EXTRA:
                    fields[key] = "per_layer"
            continue
        if isinstance(value, (list, tuple)):
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            if ints and list(value) == list(range(n)) and n > 2:
                fields[key] = "index_list"
                continue
            if len(value) == n:
                if probe is None:
                    probe = _probe_config(config, n)
                if _is_per_layer(key, value, n, probe):
                    fields[key] = "per_layer"
                    continue
            named_like_layers = "layer" in key or "idx" in key or "index" in key
            if ints and named_like_layers and len(set(value)) == len(value) and all(0 <= v < n for v in value):
                fields[key] = "index_list"
        elif isinstance(value, dict) and value and ("layer" in key or "per_layer" in key):
            if all(str(k).lstrip("-").isdigit() for k in value):
                fields[key] = "index_map"
        elif (
            isinstance(value, int)
            and (key.endswith("_layers") or key.startswith("first_"))
            and not key.startswith("num_")
        ):
            if not any(hint in key for hint in PERIODIC_FIELD_HINTS) and value >= 0:
                fields[key] = "threshold"
    return fields


def periodic_fields(config: PretrainedConfig) -> list[str]:
    """Integer fields that describe a repeating layer pattern; named in errors when a slice breaks one."""
    return [
        key
        for key, value in config.to_dict().items()
        if isinstance(value, int)
        and not isinstance(value, bool)
        and any(hint in key for hint in PERIODIC_FIELD_HINTS)
        and ("layer" in key or "attn" in key or "expert" in key or "sparse" in key)
    ]


def clone_config(config: PretrainedConfig) -> PretrainedConfig:
    """A deep copy that keeps private runtime settings such as the attention implementation."""
    return copy.deepcopy(config)
