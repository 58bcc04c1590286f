"""Re-initialising parts of an inherited model (`REINIT_PARTS`, chosen target blocks) with the architecture's own
`_init_weights`, after checking the request before any work."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from transformers import PreTrainedModel

from ..architecture import (
    decoder_config,
    find_decoder_layers,
    model_parts,
)
from ..errors import InvalidLayersError
from ..settings import REINIT_PARTS

logger = logging.getLogger(__name__)


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


def check_reinit(
    reinit: Iterable[str], reinit_layers: Iterable[int], num_layers: int, reference: PreTrainedModel
) -> tuple[list[str], list[int]]:
    """The re-initialisation request, checked before any work: known parts, target positions, no tied head.

    Returns the parts without duplicates (in the order given) and the target block positions, sorted.
    """
    reinit = list(dict.fromkeys(reinit))
    unknown = [part for part in reinit if part not in REINIT_PARTS]
    if unknown:
        raise InvalidLayersError(f"Unknown reinit part(s) {unknown}; choose from {list(REINIT_PARTS)}.")
    reinit_layers = sorted(set(reinit_layers))
    bad = [i for i in reinit_layers if not isinstance(i, int) or not 0 <= i < num_layers]
    if bad:
        raise InvalidLayersError(
            f"reinit_layers {bad} are not target block positions; the target has {num_layers} blocks "
            f"(0..{num_layers - 1})."
        )
    config = reference.config
    tied = bool(
        getattr(decoder_config(config), "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False)
    )
    if "lm_head" in reinit and tied and reference.get_output_embeddings() is not None:
        raise InvalidLayersError(
            "reinit=['lm_head'] on a model with tied word embeddings would also reset the token embeddings. "
            "Load the reference with tie_word_embeddings=False (or set it in its config.json) first if you want "
            "an untied fresh head."
        )
    return reinit, reinit_layers


def reinitialize_parts(model: PreTrainedModel, reinit: Sequence[str], reinit_layers: Sequence[int]) -> list[str]:
    """Re-initialise `reinit` parts (`REINIT_PARTS`) and target blocks `reinit_layers` of `model` in place.

    Parts are found from the forward pass (`model_parts`), not by attribute names, and reset by the architecture's
    own `_init_weights`; a part the architecture does not have (position embeddings with RoPE) is skipped. Returns
    the module names that were reset, as the lineage records them.
    """
    stack = find_decoder_layers(model)
    names: list[str] = []
    parts = model_parts(model, stack) if set(reinit) - {"blocks", "lm_head"} else {}
    for part in reinit:
        if part == "blocks":
            found = [f"{stack.path}.{i}" for i in range(len(stack))]
        elif part == "lm_head":
            found = [n for n, m in model.named_modules() if m is model.get_output_embeddings()]
        else:
            found = parts[part]
        if not found:
            logger.info("inherit: %s has no %s; nothing to re-initialise.", type(model).__name__, part)
        names += found
    names += [f"{stack.path}.{i}" for i in reinit_layers]
    names = list(dict.fromkeys(names))
    if names:
        _reinitialize(model, names)
        model.tie_weights()
    return names
