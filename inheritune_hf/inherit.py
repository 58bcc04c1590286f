"""Step 2 of the method: build a smaller model that inherits the first blocks of a reference.

Algorithm 1 of the paper (arXiv 2404.08634): the target model takes the reference's token embeddings, LM
head and its **first l** transformer blocks (l = L/2 to start), then is retrained. Here the same
machinery also serves the ablations: any explicit list of source blocks (duplicates allowed, for
stacking), re-initialising chosen parts with the architecture's own `_init_weights`, and the same-size
random-init baseline.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence

from transformers import PreTrainedModel

from .architecture import check_causal_lm, find_decoder_layers, num_layers_of
from .checkpoint import inherit_checkpoint
from .errors import ConfigSliceError, InherituneError, TrainingError
from .settings import GROWTH_STRATEGIES, NANOGPT_REINIT, REINIT_PARTS
from .slicing import Lineage, inherit_config, nearest_valid_num_layers, resolve_layers, valid_num_layers
from .slicing.blocks import check_blocks_match, check_prefix_by_forward, extra_parameters
from .slicing.reinit import check_reinit, reinitialize_parts
from .slicing.weights import remap_state_dict, slice_packed_tensor

__all__ = [
    "NANOGPT_REINIT",
    "REINIT_PARTS",
    "grow",
    "inherit",
    "inherit_config",
    "nearest_valid_num_layers",
    "resolve_layers",
    "valid_num_layers",
]


def _source_name(model: PreTrainedModel) -> str:
    return getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "") or type(model).__name__


def _check_weights_in_memory(model: PreTrainedModel) -> None:
    """Refuse a reference whose weights are not plain tensors in memory, before any work.

    Slicing copies the reference's state dict: a model built on the meta device or offloaded to disk has no values
    to copy (the target would be "sliced" into empty tensors, or fail deep inside `load_state_dict`), a model
    spread over devices by a `device_map` would be rebuilt on one of them, and a quantized one holds packed
    weights a fresh model of the same class cannot take. Slicing from the files needs none of them in memory.
    """
    way_out = 'Slice it from its files instead, without loading it: inherit("path/or/hub-id", num_layers=k, out=...).'
    name = _source_name(model)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        raise InherituneError(f"The reference {name} is quantized; its weights cannot be sliced in memory. {way_out}")
    placement = {str(device) for device in (getattr(model, "hf_device_map", None) or {}).values()}
    if placement & {"disk", "meta"}:
        raise InherituneError(
            f"The reference {name} was loaded with a device_map that offloaded weights to disk. {way_out}"
        )
    if len(placement) > 1:
        raise InherituneError(
            f"The reference {name} is spread over several devices by a device_map ({', '.join(sorted(placement))})."
            f" {way_out}"
        )
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        raise InherituneError(f"The reference {name} has weights on the meta device (no values to copy). {way_out}")


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
    _check_weights_in_memory(model)
    stack = find_decoder_layers(model)
    source_layers = resolve_layers(len(stack), num_layers, layers)
    reinit, reinit_layers = check_reinit(reinit, reinit_layers, len(source_layers), model)
    lineage = Lineage(_source_name(model), model.config.model_type, len(stack), source_layers, bool(random_init))
    config = inherit_config(
        model.config, source_layers, lineage=lineage.to_dict(), source_stack=stack, model_class=type(model)
    )
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
    flags_differ = check_blocks_match(model, stack, target_stack, source_layers, flags_checked_by_forward=is_prefix)
    state = remap_state_dict(model.state_dict(), stack.path, source_layers)
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
            for name in extra_parameters(stack.layers[source], target_stack.layers[new])
        }
        missing = [name for name in missing if name not in fresh]
    # Non-persistent buffers are rebuilt from the config; anything else missing means the slice is wrong.
    if missing or unexpected:
        raise ConfigSliceError(
            f"The sliced weights do not fit the rebuilt model: missing {missing[:5]}, unexpected {unexpected[:5]}. "
            "The config describes the blocks in a way this slice could not follow; please report the model type."
        )
    if flags_differ:
        check_prefix_by_forward(model, target, len(source_layers))

    lineage.reinitialized = reinitialize_parts(target, reinit, reinit_layers)
    config.inheritune = lineage.to_dict()
    return target


def grow(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    num_new: int = 2,
    strategy: str = "restart",
    *,
    reinit: Iterable[str] = (),
) -> PreTrainedModel:
    """A model with `num_new` more blocks than `model` (which has l), made from `reference`.

    - ``"restart"`` (the paper's rule): a fresh `inherit` of the reference's first l + num_new blocks; the
      trained `model` is only used for its depth.
    - ``"continue"``: the trained model's l blocks, embeddings, final norm and head are kept exactly, and the
      reference's next blocks l .. l+num_new-1 are appended, so the earlier round's work is not thrown away.

    Both are built by `inherit`, so the config is rebuilt for the new depth, each block's `layer_idx` is its
    position, and tied embeddings stay tied. `reinit` is passed to `inherit` (it matters for "restart").
    """
    if strategy not in GROWTH_STRATEGIES:
        raise TrainingError(f"strategy must be one of {GROWTH_STRATEGIES}, got {strategy!r}.")
    if num_new < 1:
        raise TrainingError(f"num_new must be at least 1, got {num_new}.")
    have, depth = num_layers_of(model.config), num_layers_of(reference.config)
    if have + num_new > depth:
        raise TrainingError(
            f"Cannot grow {have} blocks by {num_new}: the reference has only {depth}. "
            f"Lower num_new / grow_by or max_layers (at most {depth})."
        )
    grown = inherit(reference, have + num_new, reinit=reinit)
    if strategy == "restart":
        return grown

    trained = model.state_dict()
    stack = find_decoder_layers(grown).path
    new_blocks = tuple(f"{stack}.{i}." for i in range(have, have + num_new))
    try:
        missing, unexpected = grown.load_state_dict(trained, strict=False)
    except RuntimeError as err:
        raise TrainingError(f"The trained model does not fit the reference's architecture: {err}") from err
    stray = [k for k in missing if not k.startswith(new_blocks)]
    if unexpected or stray:
        raise TrainingError(
            "The trained model does not match the reference's architecture "
            f"(unexpected: {list(unexpected)[:5]}, missing: {stray[:5]}); 'continue' needs the same model class."
        )
    lineage = dict(getattr(grown.config, "inheritune", None) or {})
    lineage["grown_from"] = {
        "strategy": "continue",
        "kept_layers": have,
        "new_source_layers": list(range(have, have + num_new)),
    }
    grown.config.inheritune = lineage
    return grown
