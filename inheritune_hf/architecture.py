"""Architecture knowledge, derived from the model and its config rather than from a per-model table.

Everything else in the package asks this module where the block stack lives, which config holds the
decoder's layer count, and which config fields are per-layer. Nothing here names a model family.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .errors import LayerStackNotFoundError, UnsupportedModelError


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


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def named_like_depth(key: str) -> bool:
    """`num_blocks`, `n_layers`, `num_layers_per_stack`...: a count of blocks, not a threshold like `max_window_layers`."""
    return key.startswith(("num_", "n_")) and ("layer" in key or "block" in key)


@contextmanager
def on_meta_device() -> Iterator[None]:
    """Build modules on the meta device, with torch's in-place init functions returning their tensor untouched.

    On the meta device an init computes nothing, yet each call still goes through torch's device mode and its
    reference implementation, about a millisecond: GPT-2 XL's 6,000 module-level inits (`Conv1D`, `nn.Linear`)
    were 1.6 s of its 1.6 s build, and a plan builds a model per round and per depth check. The model-level
    `init_weights` still runs (on meta, transformers skips its initialisation there and only ties the
    embeddings), so what is built, tied parameters included, is what `from_config` builds. The patch is
    process-wide while it lasts (as transformers' own `no_init_weights`): build real models outside it.
    """
    from transformers.initialization import TORCH_INIT_FUNCTIONS, TORCH_MODULES_TO_PATCH

    def untouched(tensor, *args, **kwargs):
        return tensor

    originals = []
    try:
        for module in (sys.modules[name] for name in TORCH_MODULES_TO_PATCH if name in sys.modules):
            for name in TORCH_INIT_FUNCTIONS:
                if hasattr(module, name):
                    originals.append((module, name, getattr(module, name)))
                    setattr(module, name, untouched)
        with torch.device("meta"):
            yield
    finally:
        for module, name, function in reversed(originals):
            setattr(module, name, function)


def meta_model(config: PretrainedConfig, model_class: type | None = None) -> PreTrainedModel | None:
    """The causal LM of `config` built on the meta device (no memory, no weights), or None if it cannot be built.

    Used to read what a config builds (block count, per-block settings, parameter count) without instantiating
    weights: GPT-2 XL builds in about 30 ms.
    """
    try:
        with on_meta_device():
            if model_class is not None:
                return model_class._from_config(config)
            return AutoModelForCausalLM.from_config(config)
    except Exception:  # an unmapped config class, custom code, a config the model class rejects
        return None


def block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """ModuleLists of whole transformer blocks (classes the model declares unsplittable), outermost first."""
    no_split = set(getattr(model, "_no_split_modules", None) or [])
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) and type(m[0]).__name__ in no_split
    ]
    return sorted(found, key=lambda item: item[0].count("."))


@functools.lru_cache(maxsize=64)
def _built_stack_length(config_json: str, config_class: type) -> int | None:
    config = config_class.from_dict(json.loads(config_json))
    model = meta_model(config)
    lists = block_lists(model) if model is not None else []
    return len(lists[0][1]) if lists else None


def depth_keys(config: PretrainedConfig) -> list[str]:
    """The `to_dict()` keys of the decoder config that set the number of blocks the model builds.

    Usually just the key behind `num_hidden_layers` (``n_layer`` for GPT-2). Some configs build their stack
    from another field (xLSTM builds `num_blocks` blocks; LongCat-Flash builds `num_layers` blocks and derives
    `num_hidden_layers` = 2 * `num_layers` as a read-only property). When the config holds other block counts
    besides `num_hidden_layers`, or does not store `num_hidden_layers` at all, the model is built once on the
    meta device and the keys whose value equals the built stack's length are the depth keys.
    """
    decoder = decoder_config(config)
    values = decoder.to_dict()
    count_key = getattr(decoder, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")
    others = [k for k, v in values.items() if k != count_key and is_count(v) and v > 0 and named_like_depth(k)]
    if count_key in values and not others:
        return [count_key]
    try:
        built = _built_stack_length(decoder.to_json_string(use_diff=False), type(decoder))
    except Exception:  # a config that does not round-trip through JSON: keep the declared depth
        built = None
    if built is None:
        return [count_key]
    keys = [k for k in [count_key, *others] if values.get(k) == built]
    return keys or [count_key]


def num_layers_of(config: PretrainedConfig) -> int:
    """Number of transformer blocks in the decoder described by `config` (the length of its block stack)."""
    decoder = decoder_config(config)
    n = decoder.to_dict().get(depth_keys(config)[0], getattr(decoder, "num_hidden_layers", None))
    if not is_count(n):
        raise LayerStackNotFoundError(
            f"{type(config).__name__} has no integer `num_hidden_layers` (or an attribute mapped to it), "
            "so its decoder depth is unknown. inheritune_hf needs a decoder-only transformer config."
        )
    return n


def layer_count_key(config: PretrainedConfig) -> str:
    """The `to_dict()` key that stores the layer count (``n_layer`` for GPT-2, ``num_hidden_layers`` usually).

    The first of `depth_keys`; slicing sets all of them.
    """
    return depth_keys(config)[0]


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


def block_outputs(model: PreTrainedModel, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """The output of each call of a block of the stack, in call order, on one uncached forward pass.

    Read with hooks rather than from `output_hidden_states`, whose layout varies by architecture: most models
    list the embeddings and then each block's output (the last one often after the final norm), Mamba lists
    each block's output and then the final norm, so index i is not the same thing everywhere.
    """
    outputs: list[torch.Tensor] = []

    def record(module, args, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(first, torch.Tensor):
            outputs.append(first.detach().clone())

    hooks = [block.register_forward_hook(record) for block in find_decoder_layers(model).layers]
    try:
        with torch.no_grad():
            model(input_ids=input_ids, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


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


def block_signature(block: nn.Module) -> list[tuple]:
    """What a block computes: submodule classes, parameter shapes and scalar settings (sliding window, ...)."""
    signature = []
    for name, module in block.named_modules():
        scalars = {
            key: value
            for key, value in vars(module).items()
            if not key.startswith("_") and key != "training" and isinstance(value, (int, float, str, bool, type(None)))
        }
        params = tuple((key, tuple(p.shape)) for key, p in module.named_parameters(recurse=False))
        signature.append((name, type(module).__name__, params, scalars))
    return signature
