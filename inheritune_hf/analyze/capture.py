"""Collecting the statistics inside the forward pass, one layer at a time.

Attention calls are routed through an eager attention registered in transformers' `AttentionInterface`
(`attention_interface_capture`) that reduces each layer's probabilities to per-(sample, head) k* and m* on the spot
and drops them; models outside the interface fall back to forward hooks on their attention modules
(`hook_capture`). Hooks on the block stack (`BlockStates`) measure what the peers choose blocks by, at each
block's input x_l and output y_l (before any final norm):

- **Block Influence** (ShortGPT, Men et al. 2024): BI_l = 1 - mean over all tokens of cos(x_l, y_l); a block
  that barely turns the residual stream has BI near 0 and is the first to drop;
- **angular distance** (Gromov et al. 2024, PruneMe): d(x_l, x_{l+n}) = arccos(cos(x_l, x_{l+n})) / pi of the
  last token, averaged over samples. The report keeps the mean over samples of this distance for every pair of
  block boundaries (an (L+1) x (L+1) matrix), so a span of any n is answered without another pass.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..architecture import find_decoder_layers
from ..errors import LayerStackNotFoundError, UnsupportedModelError
from .stats import attention_mass, attention_rank, map_on_threads

# Name under which the statistics-collecting attention function is registered in transformers'
# AttentionInterface (and the eager mask under the same name in the AttentionMaskInterface).
STATS_ATTENTION = "inheritune_attention_stats"

# Eager attention runs on slices of the batch holding at most this many bytes of probabilities (one sample of
# GPT-2 medium at T=256 is 4 MiB): small enough to stay in cache while it is reduced.
_PROBS_CHUNK_BYTES = 4 << 20


class Accumulator:
    """Running sums of per-sample rank and mass, one entry per attention call in the order of the forward.

    Attention calls are numbered within each forward pass, so a layer is whatever the model calls in that
    position (this also covers models that reuse one attention module at several depths).
    """

    def __init__(self, model: nn.Module, tau: float, eta: float) -> None:
        self.tau, self.eta = tau, eta
        self.module_names = {id(module): name for name, module in model.named_modules()}
        self.names: list[str] = []
        self.layers: list[int] = []
        self.rank_sums: list[torch.Tensor] = []
        self.mass_sums: list[torch.Tensor] = []
        self.counts: list[int] = []
        self.position = 0
        self.forwards = 0

    def start_forward(self) -> None:
        self.position = 0
        self.forwards += 1

    def finish_forward(self) -> None:
        if self.forwards > 1 and self.position != len(self.names):
            raise UnsupportedModelError(
                f"The model made {self.position} attention calls in one forward pass and {len(self.names)} in "
                "another; cannot tell which call belongs to which layer."
            )

    @torch.no_grad()
    def reduce(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per-head sums over the batch of k* and m* for probabilities [batch, heads, T, S], and the batch size.

        The sums stay on the model's device: on an accelerator a copy to the host per layer and batch would wait
        for the forward pass each time; they are read once, at the end of the analysis."""
        rank = attention_rank(probs, self.tau).sum(dim=0).double()
        mass = attention_mass(probs, self.eta).sum(dim=0).double()
        return rank, mass, probs.shape[0]

    def add(self, module: nn.Module, probs: torch.Tensor) -> None:
        """Reduce one attention call's probabilities [batch, heads, T, S] to sums over the batch, then let them go."""
        self.record(module, [self.reduce(probs)])

    def record(self, module: nn.Module, parts: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        """Add one attention call's sums (given in parts, one per slice of the batch) to its layer's running sums."""
        position, self.position = self.position, self.position + 1
        rank = torch.stack([part[0] for part in parts]).sum(dim=0)
        mass = torch.stack([part[1] for part in parts]).sum(dim=0)
        count = sum(part[2] for part in parts)
        if position == len(self.names):
            layer_idx = getattr(module, "layer_idx", None)
            self.names.append(self.module_names.get(id(module), type(module).__name__))
            self.layers.append(layer_idx if isinstance(layer_idx, int) else position)
            self.rank_sums.append(rank)
            self.mass_sums.append(mass)
            self.counts.append(count)
        else:
            self.rank_sums[position] += rank
            self.mass_sums[position] += mass
            self.counts[position] += count


def _cosines(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(x, y) along the last dim, as `torch.nn.functional.cosine_similarity` (norms floored at 1e-8) but from
    three reductions, without normalised copies of x and y: the block hooks run once per block on every token."""
    norms = torch.linalg.vector_norm(x, dim=-1).clamp_min(1e-8) * torch.linalg.vector_norm(y, dim=-1).clamp_min(1e-8)
    return torch.linalg.vecdot(x, y) / norms


class BlockStates:
    """Running sums of Block Influence and of the pairwise last-token angular distances between block boundaries.

    Boundary l is the input of block l (x_l) and boundary L the output of the last block, so the span of blocks
    l..l+n-1 maps boundary l to boundary l+n. Only the last token of each boundary is kept, and only until the end
    of the forward pass: memory is one (batch, L+1, d) tensor, flat in the sequence length.
    """

    def __init__(self, blocks: nn.ModuleList) -> None:
        self.blocks = blocks
        n = len(blocks)
        self.bi_sums = torch.zeros(n, dtype=torch.float64)
        self.bi_tokens = torch.zeros(n, dtype=torch.float64)
        self.angular_sums = torch.zeros(n + 1, n + 1, dtype=torch.float64)
        self.samples = 0
        self.inputs: dict[int, torch.Tensor] = {}
        self.last: list[torch.Tensor | None] = [None] * (n + 1)

    @staticmethod
    def _hidden(value: Any) -> torch.Tensor | None:
        first = value[0] if isinstance(value, (tuple, list)) and value else value
        return first if isinstance(first, torch.Tensor) and first.dim() == 3 else None

    def _before(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = self._hidden(args[0] if args else kwargs.get("hidden_states"))
            if x is not None:
                self.inputs[index] = x
                self.last[index] = x[:, -1].detach().double()  # on the device: no host sync per block

        return hook

    def _after(self, index: int):
        @torch.no_grad()
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            x, y = self.inputs.pop(index, None), self._hidden(output)
            if x is None or y is None or x.shape != y.shape:
                return
            # fp32 at least: a bf16 cosine near 1 would round a small BI to 0.
            dtype = torch.promote_types(x.dtype, torch.float32)
            self.bi_sums = self.bi_sums.to(x.device)  # the sums live where the model runs, read once at the end
            self.bi_sums[index] += _cosines(x.to(dtype), y.to(dtype)).sum().double()
            self.bi_tokens[index] += x.shape[:-1].numel()
            if index == len(self.blocks) - 1:
                self.last[index + 1] = y[:, -1].detach().double()

        return hook

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        handles = []
        for index, block in enumerate(self.blocks):
            handles.append(block.register_forward_pre_hook(self._before(index), with_kwargs=True))
            handles.append(block.register_forward_hook(self._after(index), with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def finish_forward(self) -> None:
        """Add this batch's pairwise angular distances (fp64: arccos is steep near cos = 1) and clear the states."""
        states, self.last = self.last, [None] * (len(self.blocks) + 1)
        self.inputs.clear()
        if any(state is None for state in states):
            return
        unit = torch.nn.functional.normalize(torch.stack(states, dim=1), dim=-1)  # [batch, L+1, d]
        cos = (unit @ unit.mT).clamp(-1.0, 1.0)
        self.angular_sums = self.angular_sums.to(unit.device)
        self.angular_sums += (torch.arccos(cos) / math.pi).sum(dim=0)
        self.samples += unit.shape[0]

    def block_influence(self) -> list[float] | None:
        if not self.bi_tokens.all():
            return None
        return (1.0 - self.bi_sums.cpu() / self.bi_tokens).tolist()

    def angular(self) -> list[list[float]] | None:
        return (self.angular_sums.cpu() / self.samples).tolist() if self.samples else None


def block_states(model: nn.Module) -> BlockStates | None:
    """Hooks on the decoder's block stack, or None for a model whose stack cannot be found (no BI then)."""
    try:
        return BlockStates(find_decoder_layers(model).layers)
    except (LayerStackNotFoundError, UnsupportedModelError, AttributeError):
        return None


_ACTIVE: contextvars.ContextVar[Accumulator | None] = contextvars.ContextVar(
    "inheritune_attention_stats", default=None
)
_EAGER_CACHE: dict[type, Any] = {}


def _eager_attention_for(module: nn.Module) -> Any:
    """The model's own `eager_attention_forward` (it knows its softcapping, sinks, GQA); Llama's otherwise."""
    function = _EAGER_CACHE.get(type(module))
    if function is None:
        function = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if function is None:
            from transformers.models.llama.modeling_llama import eager_attention_forward as function
        _EAGER_CACHE[type(module)] = function
    return function


def _batch_slice(value: Any, rows: slice, batch: int) -> Any:
    """`value` for the samples `rows` of a batch: tensors with one row per sample are sliced, the rest (scalars,
    per-head parameters such as attention sinks, masks and position ids broadcast over the batch) pass as they are."""
    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == batch:
        return value[rows]
    return value


def _stats_attention_forward(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """Eager attention that reduces its probabilities to rank and mass on the spot and returns no weights.

    The model's eager attention runs on a few samples at a time (`_PROBS_CHUNK_BYTES` of probabilities), and each
    slice is reduced while it is still in cache: one batch-sized probability tensor per op costs several passes
    over memory and fresh pages, which made eager attention about 3x slower than sdpa on CPU; per slice it is
    about 1.5x. The slices run on separate CPU threads (`map_on_threads`). Samples do not interact in
    attention, so the output is the same.
    """
    eager = _eager_attention_for(module)
    accumulator = _ACTIVE.get()
    if accumulator is None:
        return eager(module, query, key, value, attention_mask, **kwargs)[0], None
    batch, cpu = query.shape[0], query.device.type == "cpu"
    per_sample = query.shape[1] * query.shape[2] * key.shape[2] * query.element_size()
    step = max(1, _PROBS_CHUNK_BYTES // max(per_sample, 1)) if cpu else batch

    def attend_and_reduce(rows: slice) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, int] | None]:
        output, weights = eager(
            module,
            query[rows],
            key[rows],
            value[rows],
            _batch_slice(attention_mask, rows, batch),
            **{name: _batch_slice(item, rows, batch) for name, item in kwargs.items()},
        )
        return output, (accumulator.reduce(weights) if weights is not None else None)

    slices = [slice(start, min(start + step, batch)) for start in range(0, batch, step)]
    results = map_on_threads(attend_and_reduce, slices, cpu)
    parts = [part for _, part in results if part is not None]
    if parts:
        accumulator.record(module, parts)
    outputs = [output for output, _ in results]
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)), None


def _register_stats_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(STATS_ATTENTION, _stats_attention_forward)
    AttentionMaskInterface.register(STATS_ATTENTION, eager_mask)


def _attention_settings(model: nn.Module) -> list[tuple[Any, Any]]:
    """Every config reachable from the model, with its current attention implementation, to restore later."""
    seen: dict[int, tuple[Any, Any]] = {}
    pending = [module.config for module in model.modules() if hasattr(module, "config")]
    while pending:
        config = pending.pop()
        if id(config) in seen or not hasattr(config, "_attn_implementation_internal"):
            continue
        seen[id(config)] = (config, config._attn_implementation_internal)
        for key in getattr(config, "sub_configs", {}) or {}:
            sub = getattr(config, key, None)
            if sub is not None:
                pending.append(sub)
    return list(seen.values())


@contextlib.contextmanager
def attention_interface_capture(model: nn.Module, accumulator: Accumulator) -> Iterator[dict[str, Any]]:
    """Route every attention call through `_stats_attention_forward`, then put the model back as it was."""
    _register_stats_attention()
    saved = _attention_settings(model)
    token = _ACTIVE.set(accumulator)
    try:
        model.set_attn_implementation(STATS_ATTENTION)
        yield {}
    finally:
        _ACTIVE.reset(token)
        for config, implementation in saved:
            config._attn_implementation_internal = implementation


def _attention_modules_by_layer(model: nn.Module) -> list[nn.Module]:
    """For models outside the attention interface: the first `*Attention*` module inside each decoder block."""
    found = []
    for block in find_decoder_layers(model).layers:
        for module in block.modules():
            if "attention" in type(module).__name__.lower():
                found.append(module)
                break
    return found


@contextlib.contextmanager
def hook_capture(model: nn.Module, accumulator: Accumulator) -> Iterator[dict[str, Any]]:
    """Legacy attention modules return their probabilities when asked (`output_attentions=True`); a forward
    hook on each reduces them and drops them from the output, so no more than one layer's worth is alive."""
    modules = _attention_modules_by_layer(model)
    if not modules:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no attention modules in its decoder blocks; rank and mass are defined "
            "for attention layers only (a pure state-space model such as Mamba has none)."
        )

    def reduce_and_drop(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor):
            if output[1].dim() == 4:
                accumulator.add(module, output[1])
                return (output[0], None, *output[2:])
        return output

    handles = [module.register_forward_hook(reduce_and_drop) for module in modules]
    try:
        yield {"output_attentions": True}
    finally:
        for handle in handles:
            handle.remove()


def _has_attention(model: nn.Module) -> bool:
    return any("attention" in type(module).__name__.lower() for module in model.modules())
