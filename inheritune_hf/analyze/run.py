"""Step 1 of the method: which layers are lazy? `analyze_attention`, the paper's diagnosis (section 3).

For every layer l, head h and sample n the model's causal attention matrix is reduced to its rank k* and mass m*
(`stats`). Rank(h, l) and mass(h, l) are means over samples of these per-sample numbers (never the rank of a mean
matrix). MaxRank(l) = max over heads, AvgMass(l) = mean over heads, and a layer is *lazy* when MaxRank(l) rounds
to 1. `analyze_attention` draws the samples (`samples`), computes all of this inside one forward pass per batch
(`capture`), together with Block Influence and the angular distances between block boundaries, and returns an
`AttentionReport` (`report`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from ..architecture import check_causal_lm, num_layers_of
from ..errors import DataError, UnsupportedModelError
from ..loading import context_length
from ..settings import POSITIVE_INT, AnalyzeArguments, check_arguments
from .capture import Accumulator, attention_interface_capture, block_states, hook_capture
from .report import AttentionReport
from .samples import draw_samples, token_stream


def _context_length(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return context_length(config) if isinstance(config, PretrainedConfig) else None


def _has_attention(model: nn.Module) -> bool:
    return any("attention" in type(module).__name__.lower() for module in model.modules())


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    return str(name) or type(model).__name__


def _num_layers(model: nn.Module, rows: int) -> int:
    try:
        return num_layers_of(model.config)
    except Exception:  # not a transformers config, or no layer count: the attention rows are the layers
        return rows


def analyze_attention(
    model: nn.Module,
    tokenizer: Any = None,
    *,
    texts: str | Sequence[str] | None = None,
    dataset: Any = None,
    input_ids: Any = None,
    num_samples: int = 100,
    seq_len: int = 100,
    tau: float = 0.9,
    eta: float = 0.9,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    max_tokens: int | None = None,
) -> AttentionReport:
    """Measure attention rank and mass of every (layer, head) of a causal LM, the paper's way.

    Samples are `num_samples` windows of `seq_len` tokens at random offsets (seeded by `seed`) of the token
    stream made from exactly one of `texts` (a string or a list of documents, tokenized with `tokenizer`,
    joined with EOS), `dataset` (a `datasets.Dataset` with a `text` or `input_ids` column) or `input_ids` (a
    1-D stream, or a 2-D tensor whose rows of `seq_len` tokens are taken as the samples). The paper uses
    100 windows of 100 tokens from the validation split.

    The model runs once per batch of `batch_size` samples. Its attention calls are routed through an eager
    attention registered in transformers' `AttentionInterface` that reduces each layer's probabilities
    (after masking, RoPE and GQA expansion, exactly what the model uses) to per-(sample, head) k* and m*
    and drops them, so memory stays at one layer's attention whatever the depth. Models that load with
    `sdpa` or flash attention are switched to this path and restored afterwards; models outside the
    interface fall back to forward hooks on their attention modules. Only the backbone runs (no LM head).
    Tokenizing stops after `max_tokens` tokens (default: 100 x num_samples x seq_len). Hooks on the block stack
    add Block Influence and the pairwise angular distances between block boundaries (see the module docstring)
    from the same pass; they are None for a model whose block stack cannot be found.

    Raises `DataError` for a source that cannot give the samples, `UnsupportedModelError` for a model with
    no attention layers or one that is not a decoder-only causal LM (encoder-only, encoder-decoder),
    `InvalidArgumentError` for a setting outside the range `inheritune analyze` allows for its flag.
    """
    check_arguments(
        {
            "num_samples": num_samples,
            "seq_len": seq_len,
            "tau": tau,
            "eta": eta,
            "batch_size": batch_size,
            "seed": seed,
            "max_tokens": max_tokens,
        },
        {**AnalyzeArguments.RANGES, "max_tokens": POSITIVE_INT},
    )
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"Expected a transformers model (nn.Module), got {type(model).__name__}.")
    if isinstance(model, PreTrainedModel):
        # The paper's statistics are defined on causal attention: an encoder's bidirectional matrices (or an
        # encoder-decoder's cross-attention) would be reduced all the same and report meaningless ranks.
        check_causal_lm(model)
    if not _has_attention(model):
        raise UnsupportedModelError(
            f"{type(model).__name__} has no attention layers; rank and mass are defined for attention only "
            "(a pure state-space model such as Mamba has none)."
        )
    context = _context_length(model)
    if context is not None and seq_len > context:
        raise DataError(f"seq_len={seq_len} is longer than the model's context of {context} tokens; lower it.")

    source, tokens = token_stream(tokenizer, texts, dataset, input_ids, max_tokens or 100 * num_samples * seq_len)
    samples = draw_samples(tokens, num_samples, seq_len, seed)

    accumulator = Accumulator(model, tau, eta)
    states = block_states(model)
    hooked = states.hooked() if states is not None else contextlib.nullcontext()
    use_interface = type(model)._can_set_attn_implementation() if hasattr(model, "set_attn_implementation") else False
    capture = attention_interface_capture if use_interface else hook_capture
    backbone = getattr(model, "base_model", model)  # the LM head's logits are not needed
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        batches = samples.split(batch_size)
        with capture(model, accumulator) as forward_kwargs, hooked, torch.inference_mode():
            for batch in tqdm(batches, desc="attention rank", unit="batch", disable=not progress):
                accumulator.start_forward()
                backbone(input_ids=batch.to(device), use_cache=False, **forward_kwargs)
                accumulator.finish_forward()
                if states is not None:
                    states.finish_forward()
                if not accumulator.names:
                    raise UnsupportedModelError(
                        f"{type(model).__name__} ran without calling any attention layer; rank and mass are "
                        "defined for attention only (a pure state-space model such as Mamba has none)."
                    )
    finally:
        model.train(was_training)

    rank = [(sums / count).tolist() for sums, count in zip(accumulator.rank_sums, accumulator.counts, strict=True)]
    mass = [(sums / count).tolist() for sums, count in zip(accumulator.mass_sums, accumulator.counts, strict=True)]
    return AttentionReport(
        rank=rank,
        mass=mass,
        layers=accumulator.layers,
        layer_names=accumulator.names,
        num_layers=_num_layers(model, len(rank)),
        model_name=_model_name(model),
        block_influence=states.block_influence() if states is not None else None,
        angular=states.angular() if states is not None else None,
        settings={
            "tau": tau,
            "eta": eta,
            "num_samples": int(samples.shape[0]),
            "seq_len": seq_len,
            "seed": seed,
            "batch_size": batch_size,
            "source": source,
            "capture": "attention_interface" if use_interface else "forward_hooks",
        },
    )
