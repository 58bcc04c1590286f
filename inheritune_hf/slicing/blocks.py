"""Checks that the rebuilt blocks compute what their sources did: each target block is built like the source block it
copies (block signatures), and where only boolean flags differ, a forward pass shows the prefix is bit-exact."""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import PreTrainedModel

from ..architecture import (
    LayerStack,
    block_outputs,
    block_signature,
    decoder_config,
)
from ..errors import ConfigSliceError
from .config import periodic_fields

logger = logging.getLogger(__name__)


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


def extra_parameters(source: nn.Module, target: nn.Module) -> list[str]:
    """Names of the parameters of target block `target` that source block `source` does not have."""
    have = {name for name, _ in source.named_parameters()}
    return [name for name, _ in target.named_parameters() if name not in have]


def check_blocks_match(
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


def check_prefix_by_forward(reference: PreTrainedModel, target: PreTrainedModel, k: int) -> None:
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
