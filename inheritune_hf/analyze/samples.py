"""Samples: random windows of seq_len tokens from a token stream (nanoGPT's get_batch, as in the paper).

The stream is made from exactly one source (texts tokenized and joined with EOS, a `datasets.Dataset`, or
input_ids); `draw_samples` takes seeded windows from it, and `sample_source` tells packed training blocks that all
start with one token (a BOS) from plain packed text. `AttentionCollapseCallback` draws its samples the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ..errors import DataError


def _texts_of_dataset(dataset: Any) -> tuple[str, Iterable[Any]]:
    """('input_ids', rows) when the dataset is already tokenized, else ('text', strings)."""
    column_names = getattr(dataset, "column_names", None)
    if isinstance(column_names, dict):  # a DatasetDict: column names per split
        raise DataError(
            f"Got several splits ({list(column_names)}); pass one, e.g. dataset['validation'] as in the paper."
        )
    columns = list(column_names or [])
    try:
        empty = len(dataset) == 0
    except TypeError:  # an IterableDataset has no length
        empty = False
    if empty:
        raise DataError("The dataset is empty: there is no text to draw attention samples from.")
    if "input_ids" in columns:
        return "input_ids", (row["input_ids"] for row in dataset)
    if "text" in columns:
        return "text", (row["text"] for row in dataset)
    features = getattr(dataset, "features", None) or {}
    strings = [
        name for name, feature in features.items() if getattr(feature, "dtype", None) in ("string", "large_string")
    ]
    if len(strings) == 1:
        return "text", (row[strings[0]] for row in dataset)
    raise DataError(
        f"Cannot tell which column of the dataset holds the text (columns: {columns}). "
        "Rename it to 'text', or tokenize it yourself and pass input_ids."
    )


def token_stream(
    tokenizer: Any,
    texts: str | Sequence[str] | None,
    dataset: Any,
    input_ids: Any,
    max_tokens: int,
) -> tuple[str, torch.Tensor]:
    """The source's name and its tokens: a 1-D stream, or 2-D rows that are samples already."""
    given = [
        name for name, value in (("texts", texts), ("dataset", dataset), ("input_ids", input_ids)) if value is not None
    ]
    if len(given) != 1:
        raise DataError(f"Pass exactly one of texts=, dataset= or input_ids= (got {given or 'none'}).")
    source = given[0]

    if input_ids is not None:
        ids = torch.as_tensor(input_ids)
        if ids.dtype.is_floating_point or ids.dim() not in (1, 2):
            raise DataError(
                f"input_ids must be integer token ids of shape [tokens] or [rows, T], got {tuple(ids.shape)}."
            )
        if ids.numel() == 0:
            raise DataError("input_ids is empty: there are no tokens to draw attention samples from.")
        return source, ids.long()

    if texts is not None:
        kind, rows = "text", [texts] if isinstance(texts, str) else list(texts)
        if not rows:
            raise DataError("texts is empty: there is no text to draw attention samples from.")
    else:
        kind, rows = _texts_of_dataset(dataset)
    if kind == "text" and tokenizer is None:
        raise DataError("A tokenizer is needed to turn texts into tokens (or pass input_ids instead).")

    # Documents are joined with EOS between them, as in nanoGPT / run_clm packing; no BOS is added because the
    # windows start at random offsets anyway.
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    stream: list[int] = []
    for row in rows:
        ids = tokenizer(row, add_special_tokens=False)["input_ids"] if kind == "text" else list(row)
        if not ids:
            continue
        if stream and eos is not None:
            stream.append(eos)
        stream.extend(ids)
        if len(stream) >= max_tokens:
            break
    if not stream:
        raise DataError(f"The {source} gave no tokens: there is no text to draw attention samples from.")
    return source, torch.tensor(stream, dtype=torch.long)


def _start_with_one_token(rows: torch.Tensor) -> bool:
    """Whether every row of packed blocks begins with the same token: a BOS the model was trained to see at
    position 0 (`pack_dataset(..., bos_token_id=...)`); two blocks of plain packed text never all agree."""
    return rows.dim() == 2 and rows.shape[0] >= 2 and bool((rows[:, 0] == rows[0, 0]).all())


def sample_source(blocks: Any) -> torch.Tensor:
    """Packed blocks [n, B] as `analyze_attention(input_ids=...)` should draw its samples from them.

    The stream (windows at random offsets, the paper's way), unless every block starts with the same token: then
    the blocks themselves, so that each sample is a block's first `seq_len` tokens and starts with that token as
    every training window did. Attention sinks form on such a fixed first token; windows at random offsets would
    hide them.
    """
    rows = torch.as_tensor(blocks).long()
    return rows if _start_with_one_token(rows) else rows.reshape(-1)


def draw_samples(tokens: torch.Tensor, num_samples: int, seq_len: int, seed: int) -> torch.Tensor:
    """`num_samples` windows of `seq_len` tokens at random offsets (with replacement, seeded) -> [N, T].

    2-D rows of `seq_len` tokens are samples already; longer rows that all start with one token (see
    `sample_source`) give their first `seq_len` tokens."""
    generator = torch.Generator().manual_seed(seed)
    if tokens.dim() == 2 and tokens.shape[1] > seq_len and _start_with_one_token(tokens):
        tokens = tokens[:, :seq_len]
    if tokens.dim() == 2 and tokens.shape[1] == seq_len:
        if tokens.shape[0] < num_samples:
            raise DataError(
                f"input_ids has {tokens.shape[0]} rows of {seq_len} tokens but num_samples={num_samples}; "
                f"pass num_samples={tokens.shape[0]} or more rows."
            )
        if tokens.shape[0] == num_samples:
            return tokens
        return tokens[torch.randperm(tokens.shape[0], generator=generator)[:num_samples]]
    stream = tokens.reshape(-1)
    if stream.numel() < seq_len:
        raise DataError(
            f"The text is too short: {stream.numel()} tokens, fewer than seq_len={seq_len} needed for even one "
            "sample. Give more text or a smaller seq_len."
        )
    starts = torch.randint(0, stream.numel() - seq_len + 1, (num_samples,), generator=generator)
    return torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
