"""Weights of the chosen blocks under their new names: block weights renamed from source to target positions, and
per-layer weights that live outside the block stack (packed along one dimension) cut to the chosen blocks."""

from __future__ import annotations

import torch


def remap_state_dict(state: dict[str, torch.Tensor], prefix: str, layers: list[int]) -> dict[str, torch.Tensor]:
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
