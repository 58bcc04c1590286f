"""Step 2 of the method: build a smaller model that inherits the first blocks of a reference.

Algorithm 1 of the paper (arXiv 2404.08634): the target model takes the reference's token embeddings, LM
head and its **first l** transformer blocks (l = L/2 to start), then is retrained. Here the same
machinery also serves the ablations: any explicit list of source blocks (duplicates allowed, for
stacking), re-initialising chosen parts with the architecture's own `_init_weights`, and the same-size
random-init baseline.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .architecture import (
    LayerStack,
    block_outputs,
    block_signature,
    check_causal_lm,
    decoder_config,
    depth_keys,
    find_decoder_layers,
    meta_model,
    model_parts,
    num_layers_of,
    per_layer_fields,
    periodic_fields,
)
from .errors import ConfigSliceError, InvalidLayersError

logger = logging.getLogger(__name__)

#: Parts that `inherit(..., reinit=...)` can re-initialise instead of copying.
REINIT_PARTS = ("position_embeddings", "embedding_norm", "final_norm", "lm_head", "blocks")

#: What the authors' nanoGPT code left at fresh init: position embeddings and the final norm.
NANOGPT_REINIT = ("position_embeddings", "final_norm")


def resolve_layers(
    num_source_layers: int, num_layers: int | None = None, layers: Sequence[int] | None = None
) -> list[int]:
    """The source block indices to inherit: the first `num_layers` (default L/2, the paper's start) or `layers`."""
    n = num_source_layers
    if num_layers is not None and layers is not None:
        raise InvalidLayersError("Pass either num_layers (the first k blocks) or layers (explicit indices), not both.")
    if layers is None:
        k = n // 2 if num_layers is None else num_layers
        if not isinstance(k, int) or isinstance(k, bool):
            raise InvalidLayersError(f"num_layers must be an integer, got {num_layers!r}.")
        if not 1 <= k <= n:
            raise InvalidLayersError(
                f"num_layers={k} is out of range: the reference has {n} blocks, so choose 1 <= num_layers <= {n}."
            )
        return list(range(k))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise InvalidLayersError(f"layers must be a list of block indices, got {layers!r}.")
    resolved = list(layers)
    if not resolved:
        raise InvalidLayersError("layers is empty: give at least one source block index.")
    for index in resolved:
        if not isinstance(index, int) or isinstance(index, bool):
            raise InvalidLayersError(f"Layer index {index!r} is not an integer.")
        if not 0 <= index < n:
            raise InvalidLayersError(
                f"Layer index {index} is out of range: the reference has {n} blocks, indices 0..{n - 1}."
            )
    return resolved


def _slice_decoder_dict(config: PretrainedConfig, layers: list[int], fields: dict[str, str]) -> dict:
    """`config.to_dict()` with the layer count set and every layer-dependent field in `fields` sliced to `layers`."""
    values = config.to_dict()
    n = num_layers_of(config)
    for key in depth_keys(config):
        values[key] = len(layers)
    for key, kind in fields.items():
        value = values[key]
        if kind == "per_layer" and isinstance(value, str):
            values[key] = "".join(value[source] for source in layers)
        elif kind == "per_layer":
            values[key] = [value[source] for source in layers]
        elif kind == "index_list":
            chosen = set(value)
            values[key] = [new for new, source in enumerate(layers) if source in chosen]
        elif kind == "index_map":
            by_index = {int(k): k for k in value}
            values[key] = {
                (str(new) if isinstance(by_index[source], str) else new): copy.deepcopy(value[by_index[source]])
                for new, source in enumerate(layers)
                if source in by_index
            }
        elif kind == "threshold":
            below = [source < value for source in layers]
            if below != sorted(below, reverse=True):
                raise ConfigSliceError(
                    f"Config field `{key}`={value} marks the first {value} blocks as different from the rest, but "
                    f"the chosen layers {layers} mix blocks from both sides in an order it cannot express. "
                    "Choose layers that keep the blocks below it first."
                )
            values[key] = sum(below)
        elif kind == "trailing":
            first = n - value  # the first of the last `value` blocks, which depend on the blocks before them
            above = [source >= first for source in layers]
            if above != sorted(above) or (any(above) and [s for s in layers if s < first] != list(range(first))):
                raise ConfigSliceError(
                    f"Config field `{key}`={value} makes the last {value} blocks ({first}..{n - 1}) depend on the "
                    f"blocks before them (e.g. reuse their KV cache), and the chosen layers {layers} keep some of "
                    f"them without blocks 0..{first - 1} before them in order. Choose a prefix (num_layers=k) or "
                    f"leave blocks {first}..{n - 1} out."
                )
            values[key] = sum(above)
    return values


def _rebuild_config(
    config: PretrainedConfig, layers: list[int], fields: dict[str, str] | None = None
) -> PretrainedConfig:
    """The config for source blocks `layers`, rebuilt through its class; refuses a class that rewrites the slice."""
    decoder = decoder_config(config)
    fields = per_layer_fields(decoder) if fields is None else fields
    sliced = _slice_decoder_dict(decoder, layers, fields)

    if decoder is config:
        values, build = sliced, type(config)
    else:
        values = config.to_dict()
        holder = next(
            (name for name in getattr(config, "sub_configs", {}) or {} if getattr(config, name, None) is decoder),
            None,
        )
        if holder is None:
            raise ConfigSliceError(
                f"{type(config).__name__} keeps its decoder config in a place that cannot be located "
                "(no entry of `sub_configs` holds it); cannot rebuild the config."
            )
        values[holder] = sliced
        build = type(config)
    try:
        new_config = build.from_dict(copy.deepcopy(values))  # some config classes edit their lists in place
    except Exception as err:  # transformers' own validation: report which fields it rejected
        raise ConfigSliceError(
            f"Rebuilding {build.__name__} for layers {layers} failed: {err}. "
            "A layer-dependent config field could not be sliced; please report the model type."
        ) from err

    rebuilt = decoder_config(new_config).to_dict()
    for key, kind in fields.items():
        want, got = sliced.get(key), rebuilt.get(key)
        if kind == "per_layer" and isinstance(want, (list, tuple, str)) and list(got or []) != list(want):
            # The config class enforces a layer pattern of its own (e.g. "the last layer attends fully").
            raise _PatternRewritten(
                f"{type(decoder).__name__} rewrote `{key}` for layers {layers}: sliced {list(want)}, but the config "
                f"class made it {got}"
            )
    return new_config


class _PatternRewritten(ConfigSliceError):
    """The config class rewrote a sliced per-layer pattern; `inherit_config` adds the valid k to the message."""


def valid_num_layers(config: PretrainedConfig) -> list[int]:
    """Every k for which the first k blocks of `config`'s model slice to a config its class accepts unchanged.

    Some config classes impose a layer pattern of their own (Gemma 4 forces its last layer to attend fully),
    so a prefix that ends inside the reference's pattern would not compute what the reference's blocks did.
    Only configs are rebuilt (no model), so this is cheap enough to call for every k of a deep model.
    """
    decoder = decoder_config(config)
    n = num_layers_of(config)
    fields = per_layer_fields(decoder)
    valid = []
    for k in range(1, n + 1):
        try:
            _rebuild_config(config, list(range(k)), fields)
        except ConfigSliceError:
            continue
        valid.append(k)
    return valid


def nearest_valid_num_layers(config: PretrainedConfig, num_layers: int) -> int:
    """The k of `valid_num_layers(config)` closest to `num_layers`; on a tie the larger, which keeps more blocks.

    Use it to turn a wished depth (the paper's L/2, a rank-guided cut, a growth step) into one the
    architecture's layer pattern allows; it returns `num_layers` itself when that slices exactly.
    """
    valid = valid_num_layers(config)
    if not valid:
        raise ConfigSliceError(
            f"No number of leading blocks of this {type(config).__name__} slices to a config its class accepts; "
            "please report the model type."
        )
    return min(valid, key=lambda k: (abs(k - num_layers), -k))


def inherit_config(
    config: PretrainedConfig, layers: int | Sequence[int], *, lineage: dict | None = None
) -> PretrainedConfig:
    """Build the config of a model made of the given source blocks of `config`'s model.

    The new config is *rebuilt* through its class from `to_dict()`, never patched in place: transformers 5
    validates per-layer lists (`layer_types`, `mlp_layer_types`, `no_rope_layers`, ...) against the layer
    count when a config is constructed. Per-layer lists and maps are sliced, lists of block indices are
    remapped, counts of leading blocks (`max_window_layers`, `first_k_dense_replace`) are clamped and counts of
    trailing blocks (`num_kv_shared_layers`) shrink with the cut tail; they are discovered by value, length and
    type, not from a per-model table. Settings a block derives from the depth (MiniCPM3's residual scale
    `scale_depth / sqrt(num_hidden_layers)`) are kept exact by rescaling the config field behind them. For
    composite configs (vision + text) the text sub-config is rebuilt and put back in its parent.

    Args:
        config: the reference's config (not modified).
        layers: the number of leading blocks to keep, or an explicit list of source block indices.
        lineage: optional dict stored as the new config's `inheritune` attribute.

    Raises:
        ConfigSliceError: when the config class would rewrite the sliced layer pattern; the message lists the
            numbers of leading blocks that do slice exactly (`valid_num_layers`).
    """
    return _inherit_config(config, layers, lineage=lineage)


def _inherit_config(
    config: PretrainedConfig,
    layers: int | Sequence[int],
    *,
    lineage: dict | None = None,
    source_stack: LayerStack | None = None,
    model_class: type | None = None,
) -> PretrainedConfig:
    """`inherit_config`, reusing the caller's reference blocks and model class for the depth-scale check."""
    n = num_layers_of(config)
    layers = resolve_layers(n, num_layers=layers) if isinstance(layers, int) else resolve_layers(n, layers=layers)
    try:
        new_config = _rebuild_config(config, layers)
    except _PatternRewritten as err:
        valid = valid_num_layers(config)
        wish = len(layers)
        nearest = f"; the nearest to {wish} is {min(valid, key=lambda k: (abs(k - wish), -k))}" if valid else ""
        raise ConfigSliceError(
            f"{err}. The architecture constrains which layer patterns a model may have: the first k blocks slice "
            f"exactly for k in {valid}{nearest} (inheritune_hf.nearest_valid_num_layers picks it)."
        ) from None
    new_config = _match_depth_scales(config, new_config, layers, source_stack, model_class)
    # Keep the attention kernels the reference runs with, per sub-config (a composite model may run its text
    # decoder with sdpa and its vision tower eagerly); the kernels differ in float round-off.
    for name in ["", *(getattr(config, "sub_configs", None) or {})]:
        source = getattr(config, name, None) if name else config
        target = getattr(new_config, name, None) if name else new_config
        implementation = getattr(source, "_attn_implementation_internal", None)
        if implementation is not None and target is not None:
            target._attn_implementation_internal = implementation
    if lineage is not None:
        new_config.inheritune = lineage
    return new_config


def _float_differences(source: LayerStack, target: LayerStack, layers: list[int]) -> list[tuple[str, float, float]]:
    """(setting, source value, target value) of float settings a target block holds differently from its source."""
    differences = []
    for new, old in enumerate(layers):
        for want, got in zip(block_signature(source.layers[old]), block_signature(target.layers[new]), strict=False):
            if want[:2] != got[:2]:
                break
            for key, value in want[3].items():
                other = got[3].get(key)
                if isinstance(value, float) and isinstance(other, float) and value != other:
                    differences.append((f"block {new} {want[0] or 'block'}.{key}", value, other))
    return differences


def _ulp_neighbours(value: float, steps: int = 4) -> list[float]:
    """`value` and the floats up to `steps` units in the last place either side, nearest first."""
    out, up, down = [value], value, value
    for _ in range(steps):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        out += [up, down]
    return out


def _match_depth_scales(
    config: PretrainedConfig,
    new_config: PretrainedConfig,
    layers: list[int],
    source_stack: LayerStack | None,
    model_class: type | None,
) -> PretrainedConfig:
    """Rescale the float config field behind a depth-dependent block setting so the kept blocks stay exact.

    MiniCPM3 scales each residual branch by `scale_depth / sqrt(num_hidden_layers)`: with fewer blocks, the
    same `scale_depth` would make every kept block compute something else. The blocks are built on the meta
    device; for each float setting that changed, the float config fields are tried in turn, each set so the
    setting returns to its source value (assuming the setting is proportional, or inversely proportional, to
    the field), then nudged by a few units in the last place until it is equal to the bit. A setting no field
    restores is refused.
    """
    if source_stack is None:
        source_model = meta_model(config, model_class)
        if source_model is None:
            return new_config  # cannot build here; `inherit` checks the real blocks
        source_stack = find_decoder_layers(source_model)

    def differences(candidate: PretrainedConfig) -> list[tuple[str, float, float]] | None:
        model = meta_model(candidate, model_class)
        return None if model is None else _float_differences(source_stack, find_decoder_layers(model), layers)

    changed = differences(new_config)
    if not changed:
        return new_config
    decoder = decoder_config(config)
    base = set(PretrainedConfig().to_dict())
    candidates = [
        key for key, value in decoder.to_dict().items() if key not in base and isinstance(value, float) and value
    ]
    setting, want, got = changed[0]
    for key in candidates:
        value = getattr(decoder, key)
        for guess in (value * want / got, value * got / want):
            for trial_value in _ulp_neighbours(guess):
                trial = _with_decoder_field(new_config, key, trial_value)
                remaining = differences(trial)
                if remaining is None:
                    break
                if not remaining:
                    logger.info("inherit: %s rescaled %s -> %r to keep %s exact.", key, value, trial_value, setting)
                    return trial
                now = next((r for r in remaining if r[0] == setting), None)
                if now is not None and not math.isclose(now[2], want, rel_tol=1e-9):
                    break  # this field does not drive the setting (or not proportionally): try the next
    raise ConfigSliceError(
        f"The kept blocks compute with settings derived from the depth ({setting}: {want} in the reference, {got} "
        f"with {len(layers)} blocks) and no float config field restores them ({candidates}); the slice would not "
        "compute what the reference's blocks did. Keep all blocks, or report the model type."
    )


def _with_decoder_field(config: PretrainedConfig, key: str, value) -> PretrainedConfig:
    """A copy of `config` with field `key` of its decoder config set to `value`, rebuilt through its class."""
    new = copy.deepcopy(config)
    decoder = decoder_config(new)
    rebuilt = type(decoder).from_dict({**decoder.to_dict(), key: value})
    if decoder is new:
        return rebuilt
    holder = next(name for name in new.sub_configs if getattr(new, name, None) is decoder)
    setattr(new, holder, rebuilt)
    return new


def _remap_state_dict(state: dict[str, torch.Tensor], prefix: str, layers: list[int]) -> dict[str, torch.Tensor]:
    """Rename block weights from source to target positions; keep everything outside the stack as is."""
    head = prefix + "."
    targets: dict[int, list[int]] = {}
    for new, source in enumerate(layers):
        targets.setdefault(source, []).append(new)
    remapped = {}
    for name, tensor in state.items():
        if not name.startswith(head):
            remapped[name] = tensor
            continue
        index, _, rest = name[len(head) :].partition(".")
        for new in targets.get(int(index), ()):
            remapped[f"{head}{new}.{rest}"] = tensor
    return remapped


def slice_packed_tensor(tensor: torch.Tensor, target_shape: torch.Size, layers: list[int], num_source_layers: int):
    """Slice a tensor that packs one chunk per block along one dimension, or return None if it does not.

    Some architectures keep per-layer weights outside the block stack, concatenated along one dimension
    (Gemma 3n's per-layer token embeddings are [vocab, L * d]). When the target's shape differs from the
    source's in exactly one dimension as L * c versus k * c, that dimension is cut into L chunks of c and the
    chunks of the chosen blocks are kept, in target order.
    """
    if tensor.dim() != len(target_shape):
        return None
    differing = [d for d, (a, b) in enumerate(zip(tensor.shape, target_shape, strict=True)) if a != b]
    if len(differing) != 1:
        return None
    dim = differing[0]
    chunk, remainder = divmod(tensor.shape[dim], num_source_layers)
    if remainder or chunk * len(layers) != target_shape[dim]:
        return None
    shape = tensor.shape
    chunks = tensor.reshape(*shape[:dim], num_source_layers, chunk, *shape[dim + 1 :])
    picked = chunks.index_select(dim, torch.tensor(layers, device=tensor.device))
    return picked.reshape(target_shape)


def _same_block(want: tuple, got: tuple, position: tuple[int, int], depth: tuple[int, int]) -> bool:
    """Equal signatures, except scalars that hold the block's own position (`layer_idx`, `layer_id`, ...).

    Settings derived from the depth (the model's layer count, or a float scale such as 1/sqrt(depth)) are
    reported separately by `_depth_dependent`: they change by construction when the depth changes.
    """
    if want[:3] != got[:3]:
        return False
    # Only settings both blocks have: runtime flags set on the reference after it was built (such as
    # `gradient_checkpointing`) are not part of what the block computes.
    return all(
        value == got[3][key]
        or isinstance(value, float)
        or (not isinstance(value, bool) and (value, got[3][key]) in (position, depth))
        for key, value in want[3].items()
        if key in got[3]
    )


def _depth_dependent(want: list[tuple], got: list[tuple], depth: tuple[int, int]) -> list[str]:
    """Settings that differ only because the depth changed, e.g. a residual scale of 1/sqrt(depth)."""
    return [
        f"{w[0] or 'block'}.{key}: {value} -> {g[3][key]}"
        for w, g in zip(want, got, strict=True)
        for key, value in w[3].items()
        if key in g[3] and value != g[3][key] and (isinstance(value, float) or (value, g[3][key]) == depth)
    ]


def _only_flags_differ(want: tuple, got: tuple) -> bool:
    """Same classes; only boolean settings differ (such as Gemma 4's `store_full_length_kv`), and with them
    perhaps parameters the target block has in addition (GPT-NeoX-Japanese gives only its last block an
    output bias): those keep their fresh init, and the forward check shows whether that is exact."""
    params_kept = set(want[2]) <= set(got[2])
    return (
        want[:2] == got[:2]
        and params_kept
        and all(isinstance(value, bool) for key, value in want[3].items() if key in got[3] and value != got[3][key])
    )


def _extra_parameters(source: nn.Module, target: nn.Module) -> list[str]:
    """Names of the parameters of target block `target` that source block `source` does not have."""
    have = {name for name, _ in source.named_parameters()}
    return [name for name, _ in target.named_parameters() if name not in have]


def _check_blocks_match(
    reference: PreTrainedModel,
    stack: LayerStack,
    target_stack: LayerStack,
    layers: list[int],
    flags_checked_by_forward: bool = False,
) -> bool:
    """Each target block must be built exactly like the source block it copies (sliding window, MoE, ...).

    With `flags_checked_by_forward`, blocks that differ only in boolean settings are accepted and True is
    returned: the caller must then show with a forward pass that the prefix computes what the reference did.
    A flag can be inert for the slice (Gemma 4 marks the last block of each kind as the one that *stores* its
    KV cache for later blocks to reuse, also when no later block reuses it), which block settings cannot tell.
    """
    depth = (len(stack), len(layers))
    flags_differ = False
    for new, source in enumerate(layers):
        want = block_signature(stack.layers[source])
        got = block_signature(target_stack.layers[new])
        mismatch = next(
            ((w, g) for w, g in zip(want, got, strict=False) if not _same_block(w, g, (source, new), depth)),
            None if len(want) == len(got) else (want[-1], got[-1]),
        )
        if mismatch is not None and flags_checked_by_forward and len(want) == len(got):
            if all(
                _same_block(w, g, (source, new), depth) or _only_flags_differ(w, g)
                for w, g in zip(want, got, strict=True)
            ):
                flags_differ, mismatch = True, None
        if mismatch is not None:
            hints = periodic_fields(decoder_config(reference.config))
            raise ConfigSliceError(
                f"Target block {new} is not built like source block {source}; first difference: {mismatch[0]} vs "
                f"{mismatch[1]}. The config describes the layer pattern in a way this selection of layers breaks"
                + (f" (fields: {', '.join(hints)})" if hints else "")
                + ". Choose a prefix of the stack or layers that keep the pattern."
            )
        scaled = _depth_dependent(want, got, depth)
        if scaled:
            logger.warning(
                "inherit: block %d computes with depth-dependent settings that change with the new depth (%s); "
                "the inherited model is a faithful initialisation but not an exact copy of the source blocks.",
                new,
                "; ".join(scaled[:3]),
            )
    return flags_differ


def _check_prefix_by_forward(reference: PreTrainedModel, target: PreTrainedModel, k: int) -> None:
    """Hidden states 0..k of a k-block prefix must equal the reference's bit for bit on a short input."""
    vocab = target.get_input_embeddings().weight.shape[0]
    device = next(target.parameters()).device
    ids = torch.arange(1, 9, device=device).remainder(vocab).unsqueeze(0)
    modes = reference.training, target.training
    reference.eval(), target.eval()
    try:
        with torch.no_grad():
            want = reference(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
            got = target(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        # hidden states end at the last kept block's input (or its normed output): compare block outputs too
        outputs = block_outputs(reference, ids), block_outputs(target, ids)
    finally:
        reference.train(modes[0]), target.train(modes[1])
    differ: list = [i for i in range(k) if not torch.equal(want[i], got[i])]
    differ += [f"block {i} output" for i in range(k) if not torch.equal(outputs[0][i], outputs[1][i])]
    if differ:
        raise ConfigSliceError(
            f"The first {k} blocks are built with other settings than the reference's (boolean flags) and compute "
            f"other hidden states ({differ[:3]}); the config describes the layer pattern in a way this slice breaks. "
            "Choose another number of layers (inheritune_hf.valid_num_layers lists those that slice)."
        )


def _reinitialize(model: PreTrainedModel, module_names: Iterable[str]) -> None:
    """Re-run the architecture's own `_init_weights` on the named modules and everything inside them."""
    modules = dict(model.named_modules())
    for name in module_names:
        root = modules[name]
        for module in root.modules():
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                # transformers 5's init functions skip tensors flagged as already initialised.
                if getattr(tensor, "_is_hf_initialized", False):
                    tensor._is_hf_initialized = False
        for module in root.modules():
            model._init_weights(module)


def _source_name(model: PreTrainedModel) -> str:
    return getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "") or type(model).__name__


def inherit(
    model: PreTrainedModel | str | os.PathLike,
    num_layers: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    reinit: Iterable[str] = (),
    reinit_layers: Iterable[int] = (),
    random_init: bool = False,
    out: str | os.PathLike | None = None,
    **checkpoint_options,
) -> PreTrainedModel | os.PathLike:
    """Build the Inheritune target model from a reference causal LM held in memory.

    By default (the paper's Algorithm 1) the target gets the reference's first `num_layers` blocks
    (default L/2) plus token embeddings, position embeddings where the architecture has them, final norm
    and LM head, all copied. With k = L and defaults, its logits equal the reference's bit for bit.

    Args:
        model: any decoder-only `PreTrainedModel` for causal LM (not modified).
        num_layers: keep the first `num_layers` blocks. Default: half the reference's depth.
        layers: instead of `num_layers`, an explicit list of source block indices in target order.
            Duplicates are allowed (stacking baselines).
        reinit: parts to re-initialise with the architecture's own `_init_weights` instead of copying:
            any of `REINIT_PARTS`. `NANOGPT_REINIT` = ("position_embeddings", "final_norm") reproduces the
            authors' nanoGPT code, which left those at fresh init. A part the architecture does not have
            (e.g. position embeddings with RoPE) is skipped and not recorded.
        reinit_layers: target block positions to re-initialise (an ablation: inherit some blocks only).
        random_init: the same-size random-init baseline: the target's config, nothing copied.
        out, checkpoint_options: only when `model` is a checkpoint folder or Hub id instead of a model. The
            target is then sliced from the files without loading the reference (see
            `inheritune_hf.checkpoint.inherit_checkpoint` for the options: dtype, max_shard_size, overwrite,
            revision, ...): written to `out` and its `Path` returned, or returned loaded when `out` is None.

    Returns:
        A new model of the same class, with a rebuilt config whose `inheritune` attribute records the
        lineage (source, source layers, what was re-initialised). Each block's `layer_idx` is its new
        position, so the KV cache is right; tied embeddings stay tied.
    """
    if isinstance(model, (str, os.PathLike)):  # a checkpoint on disk or the Hub: sliced lazily, never loaded
        from .checkpoint import inherit_checkpoint

        return inherit_checkpoint(
            model,
            out,
            num_layers,
            layers=layers,
            reinit=reinit,
            reinit_layers=reinit_layers,
            random_init=random_init,
            **checkpoint_options,
        )
    if out is not None or checkpoint_options:
        raise TypeError("out= and checkpoint options apply only when `model` is a checkpoint path or Hub id.")
    check_causal_lm(model)
    stack = find_decoder_layers(model)
    source_layers = resolve_layers(len(stack), num_layers, layers)
    reinit = list(dict.fromkeys(reinit))
    unknown = [part for part in reinit if part not in REINIT_PARTS]
    if unknown:
        raise InvalidLayersError(f"Unknown reinit part(s) {unknown}; choose from {list(REINIT_PARTS)}.")
    reinit_layers = sorted(set(reinit_layers))
    bad = [i for i in reinit_layers if not isinstance(i, int) or not 0 <= i < len(source_layers)]
    if bad:
        raise InvalidLayersError(
            f"reinit_layers {bad} are not target block positions; the target has {len(source_layers)} blocks "
            f"(0..{len(source_layers) - 1})."
        )
    tied = bool(getattr(decoder_config(model.config), "tie_word_embeddings", False)) or bool(
        getattr(model.config, "tie_word_embeddings", False)
    )
    if "lm_head" in reinit and tied and model.get_output_embeddings() is not None:
        raise InvalidLayersError(
            "reinit=['lm_head'] on a model with tied word embeddings would also reset the token embeddings. "
            "Load the reference with tie_word_embeddings=False first if you want an untied fresh head."
        )

    lineage = {
        "method": "inheritune",
        "paper": "arXiv:2404.08634",
        "source": _source_name(model),
        "source_model_type": model.config.model_type,
        "source_num_layers": len(stack),
        "source_layers": source_layers,
        "num_layers": len(source_layers),
        "random_init": bool(random_init),
        "reinitialized": ["all"] if random_init else [],
    }
    config = _inherit_config(model.config, source_layers, lineage=lineage, source_stack=stack, model_class=type(model))
    parameter = next(model.parameters())
    target = type(model)._from_config(config, dtype=parameter.dtype)
    target.to(parameter.device)
    target.train(model.training)
    if getattr(model, "generation_config", None) is not None:
        target.generation_config = copy.deepcopy(model.generation_config)
    if random_init:
        return target

    target_stack = find_decoder_layers(target)
    is_prefix = source_layers == list(range(len(source_layers)))
    flags_differ = _check_blocks_match(model, stack, target_stack, source_layers, flags_checked_by_forward=is_prefix)
    state = _remap_state_dict(model.state_dict(), stack.path, source_layers)
    for name, want in target.state_dict().items():
        if name in state and state[name].shape != want.shape:
            packed = slice_packed_tensor(state[name], want.shape, source_layers, len(stack))
            if packed is None:
                raise ConfigSliceError(
                    f"Weight `{name}` has shape {tuple(state[name].shape)} in the reference but "
                    f"{tuple(want.shape)} in the rebuilt model, and is not a per-layer packing that can be sliced."
                )
            state[name] = packed
    missing, unexpected = target.load_state_dict(state, strict=False)
    if flags_differ:  # parameters only the target's blocks have keep their fresh init; the forward check decides
        fresh = {
            f"{target_stack.path}.{new}.{name}"
            for new, source in enumerate(source_layers)
            for name in _extra_parameters(stack.layers[source], target_stack.layers[new])
        }
        missing = [name for name in missing if name not in fresh]
    # Non-persistent buffers are rebuilt from the config; anything else missing means the slice is wrong.
    if missing or unexpected:
        raise ConfigSliceError(
            f"The sliced weights do not fit the rebuilt model: missing {missing[:5]}, unexpected {unexpected[:5]}. "
            "The config describes the blocks in a way this slice could not follow; please report the model type."
        )
    if flags_differ:
        _check_prefix_by_forward(model, target, len(source_layers))

    to_reset: list[str] = []
    if reinit:
        parts = model_parts(model, stack)
        for part in reinit:
            if part == "blocks":
                names = [f"{target_stack.path}.{i}" for i in range(len(source_layers))]
            elif part == "lm_head":
                names = [n for n, m in target.named_modules() if m is target.get_output_embeddings()]
            else:
                names = parts[part]
            if not names:
                logger.info("inherit: %s has no %s; nothing to re-initialise.", type(model).__name__, part)
            to_reset += names
    to_reset += [f"{target_stack.path}.{i}" for i in reinit_layers]
    to_reset = list(dict.fromkeys(to_reset))
    if to_reset:
        _reinitialize(target, to_reset)
        target.tie_weights()
    lineage["reinitialized"] = to_reset
    config.inheritune = lineage
    return target
