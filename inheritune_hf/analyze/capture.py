"""Step 1 of the method: which layers are lazy? Attention rank and single-column mass (paper, section 3).

For every layer l, head h and sample n the model's causal attention matrix A (T x T, the probabilities
after masking and softmax that the model really multiplies with the values) is reduced to two numbers:

- **rank** k*: the smallest k such that the top-k squared singular values of A hold at least `tau` (0.9)
  of sum_i sigma_i^2;
- **mass** m*: the smallest number of columns, largest first, whose shares ||A[:, j]||^2 / ||A||_F^2 sum
  to at least `eta` (0.9). A sink pattern (every row on one column) gives 1.

Rank(h, l) and mass(h, l) are means over samples of these per-sample numbers (never the rank of a mean
matrix). MaxRank(l) = max over heads, AvgMass(l) = mean over heads, and a layer is *lazy* when MaxRank(l)
rounds to 1. `analyze_attention` computes all of this inside one forward pass per batch, one layer at a
time, and returns an `AttentionReport`.

The same pass also measures what the peers choose blocks by, at each block's input x_l and output y_l (read by
hooks on the block stack, so before any final norm):

- **Block Influence** (ShortGPT, Men et al. 2024): BI_l = 1 - mean over all tokens of cos(x_l, y_l); a block
  that barely turns the residual stream has BI near 0 and is the first to drop;
- **angular distance** (Gromov et al. 2024, PruneMe): d(x_l, x_{l+n}) = arccos(cos(x_l, x_{l+n})) / pi of the
  last token, averaged over samples. The report keeps the mean over samples of this distance for every pair of
  block boundaries (an (L+1) x (L+1) matrix), so a span of any n is answered without another pass.

What the report costs beside the plain forward pass (the floor) goes to k*, which needs the top of the spectrum of
every A A^T. On CPU a block Krylov certificate (`_certified_ranks`) proves k* for most attention matrices at a
fraction of an eigensolver's cost, and `eigvalsh` settles the rest; the answer is the eigensolver's either way.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .architecture import check_causal_lm, find_decoder_layers
from .errors import DataError, InherituneError, LayerStackNotFoundError, UnsupportedModelError
from .loading import context_length
from .report import AttentionReport, LayerSuggestion

__all__ = ["attention_rank", "attention_mass", "analyze_attention", "AttentionReport", "LayerSuggestion"]

# Name under which the statistics-collecting attention function is registered in transformers'
# AttentionInterface (and the eager mask under the same name in the AttentionMaskInterface).
STATS_ATTENTION = "inheritune_attention_stats"

# Relative slack on the tau / eta threshold so that float round-off in a cumulative sum never costs one extra
# singular value or column (the identity must give exactly ceil(0.9 T)).
_THRESHOLD_SLACK = 1e-5

# The Krylov certificate for k* (see `_certified_ranks`): p Ritz vectors from blocks of b columns, matrices taken a
# few at a time so that each one stays in cache, and the margin (a fraction of the trace) by which both bounds must
# clear the threshold before the eigensolver is skipped.
_KRYLOV_DIM = 24
_KRYLOV_BLOCK = 4
_CHUNK_MATRICES = 16
_CERTIFY_TOLERANCE = 1e-4
# Causal matrices at least this large get their Gram from the blocks of their lower triangle (half the flops).
_SPLIT_GRAM_MIN = 64
_DELTA_SPLITS = torch.tensor([0.25, 1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64)

# Eager attention runs on slices of the batch holding at most this many bytes of probabilities (one sample of
# GPT-2 medium at T=256 is 4 MiB): small enough to stay in cache while it is reduced.
_PROBS_CHUNK_BYTES = 4 << 20


# ---------------------------------------------------------------------------------------------------------------
# The two statistics, on plain tensors
# ---------------------------------------------------------------------------------------------------------------


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < float(value) <= 1.0:
        raise InherituneError(f"{name} must be a fraction in (0, 1] (the paper uses 0.9), got {value!r}.")


def _check_square_stack(attn: torch.Tensor) -> None:
    if not isinstance(attn, torch.Tensor) or attn.dim() < 2:
        raise InherituneError(
            f"Expected attention matrices as a tensor of shape [..., T, S], got "
            f"{type(attn).__name__} {tuple(getattr(attn, 'shape', ()))}."
        )


def _count_to_fraction(descending: torch.Tensor, fraction: float) -> torch.Tensor:
    """Smallest k with sum(descending[..., :k]) >= fraction * sum(descending), per row of the last dim."""
    cumulative = descending.cumsum(dim=-1)
    total = cumulative[..., -1:]
    short = cumulative < total * (fraction * (1.0 - _THRESHOLD_SLACK))
    return (short.sum(dim=-1) + 1).clamp(max=descending.shape[-1])


def _gram(matrices: torch.Tensor) -> torch.Tensor:
    """A A^T (or A^T A, the smaller) in fp32: its eigenvalues are the sigma_i^2 of A.

    A symmetric eigensolver on the Gram matrix is 2-3x cheaper than an SVD of A. Squaring the condition number
    only perturbs the smallest sigma_i^2 by about eps * sigma_1^2, far below what can move a 90 % threshold.
    """
    a = matrices.float()
    rows, columns = a.shape[-2:]
    half = rows // 2
    if rows == columns and rows >= _SPLIT_GRAM_MIN and not a[..., :half, half:].any():
        return _causal_gram(a, half)
    return a @ a.mT if rows <= columns else a.mT @ a


def _causal_gram(a: torch.Tensor, half: int) -> torch.Tensor:
    """A A^T for lower block-triangular A = [[A11, 0], [A21, A22]] (causal attention) at half the cost:
    [[A11 A11^T, (A21 A11^T)^T], [A21 A11^T, A21 A21^T + A22 A22^T]]."""
    shape, a = a.shape, a.reshape(-1, *a.shape[-2:])
    a11, a21, a22 = a[:, :half, :half], a[:, half:, :half], a[:, half:, half:]
    gram = a.new_empty(a.shape)
    gram[:, :half, :half] = a11 @ a11.mT
    gram[:, half:, :half] = a21 @ a11.mT
    gram[:, :half, half:] = gram[:, half:, :half].mT
    gram[:, half:, half:] = torch.baddbmm(a22 @ a22.mT, a21, a21.mT)
    return gram.reshape(shape)


_START_BLOCKS: dict[tuple[int, int], torch.Tensor] = {}


def _start_block(n: int, block: int, seed: int = 0) -> torch.Tensor:
    """A fixed orthonormal n x block matrix (fp64) of seeded random columns; the start (seed 0) has the all-ones
    vector first, close to the top eigenvector of a nonnegative Gram (Perron-Frobenius). Fixed, so that the same
    matrix always gets the same certificate."""
    key = (n, block, seed)
    if key not in _START_BLOCKS:
        start = torch.randn(n, block, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        if seed == 0:
            start[:, 0] = 1.0
        _START_BLOCKS[key] = torch.linalg.qr(start).Q
    return _START_BLOCKS[key]


def _krylov_basis(gram: torch.Tensor, dim: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An orthonormal basis K (to the working precision) of the block Krylov space span{X, G X, G^2 X, ...}
    (`dim` vectors) and its image K G, both as rows [batch, dim, n]: row-vector products Q^T G run several times
    faster on CPU than G Q.

    Block Lanczos with full reorthogonalisation (classical Gram-Schmidt twice): for the top eigenvalues it
    converges far faster than subspace iteration for the same number of products with G.
    """
    batch, n, _ = gram.shape
    q = _start_block(n, block).to(device=gram.device, dtype=gram.dtype).mT.expand(batch, block, n)
    # When the space stops growing (a rank-1 sink's Gram maps everything onto the ones vector), what is left after
    # the projection is zero or round-off; this nudge, small beside anything that moves a bound, then gives new
    # directions instead of a QR of nothing. Any subspace gives valid bounds; a poor one only costs a fallback.
    scale = gram.diagonal(dim1=-2, dim2=-1).sum(dim=-1).view(batch, 1, 1) * 1e-6
    nudge = _start_block(n, block, seed=1).to(device=gram.device, dtype=gram.dtype).mT * scale
    leak_limit = 1e3 * torch.finfo(gram.dtype).eps
    basis, image = gram.new_empty(batch, dim, n), gram.new_empty(batch, dim, n)
    for j in range(0, dim, block):
        width = min(block, dim - j)
        q = q[:, :width]
        basis[:, j : j + width] = q
        w = q @ gram
        image[:, j : j + width] = w
        if j + width == dim:
            break
        done = basis[:, : j + width]
        w = w + nudge
        w = torch.baddbmm(w, w @ done.mT, done, alpha=-1)
        w = torch.baddbmm(w, w @ done.mT, done, alpha=-1)
        q = torch.linalg.qr(w.mT).Q.mT
        for _ in range(2):  # after a breakdown the new directions come from tiny vectors: project once more
            leak = q @ done.mT
            if leak.abs().amax() <= leak_limit:
                break
            q = torch.linalg.qr(torch.baddbmm(q, leak, done, alpha=-1).mT).Q.mT
    return basis, image


def _certified_ranks(gram: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """k* of each Gram matrix where a Krylov subspace proves it, and a mask of the matrices it proves.

    With sigma_i^2 = lambda_i(G) and S_k the sum of the top k, k* = k exactly when S_k >= t and S_{k-1} < t
    (t = tau * trace, less the usual slack). Both sides are bounded from an orthonormal basis K (p vectors, here
    a block Krylov space) with Ritz values theta_i, Ritz vectors x_i and residuals r_i = G x_i - theta_i x_i:

    - below, by Ky Fan's maximum principle: S_k(G) >= theta_1 + ... + theta_k, whatever K is;
    - above, for any s >= k - 1 of the Ritz vectors X_s and any delta > 0, G <= diag(Theta_s + R_s^T R_s / delta,
      C_s + delta I) in the basis [X_s, X_s-perp] (a Schur-complement inequality), where C_s is G compressed to
      the complement: trace(C_s) = trace(G) - theta_1 - ... - theta_s, and ||C_s||_F^2 = ||D_s||_F^2 - 2 ||R_s||_F^2
      with D_s = G - X_s Theta_s X_s^T, ||D_s||_F^2 = ||D_p||_F^2 + theta_{s+1}^2 + ... + theta_p^2. Hence
      S_m(G) <= max over j of S_{m-j}(theta) + ||R_s||_F^2 / delta + min(sqrt(j) ||C_s||_F, trace(C_s)) + j delta.

    ||D_p||_F is computed from the matrix G - K^T H K itself, not as ||G||_F^2 - sum theta_i^2, which loses all
    its digits when the spectrum falls fast; so fp32 products are enough, and the p x p algebra is fp64. A matrix
    counts as proved only when both bounds clear t by `_CERTIFY_TOLERANCE` of the trace, two orders of magnitude
    above the fp32 round-off here and in the eigensolver it replaces, so a proved k* is the one `eigvalsh` gives;
    the rest (near-ties, slowly converging spectra, k* > p) go to the eigensolver. For attention matrices k* is
    usually small and the spectrum falls fast, so most are proved with p = 24 at a fraction of `eigvalsh`'s cost.
    """
    batch, n, _ = gram.shape
    dim = min(_KRYLOV_DIM, n)
    basis, image = _krylov_basis(gram, dim, min(_KRYLOV_BLOCK, dim))
    # Orthonormal in fp64 (Cholesky QR: K <- L^-1 K, and K G with it); fp32 Gram-Schmidt leaves ~1e-6 off.
    basis, image = basis.double(), image.double()
    eye = torch.eye(dim, dtype=torch.float64, device=gram.device)
    overlap = basis @ basis.mT
    factor, info = torch.linalg.cholesky_ex(overlap)
    orthonormal = (info == 0) & ((overlap - eye).abs().amax(dim=(-2, -1)) < 1e-2)
    factor = torch.where(orthonormal.view(batch, 1, 1), factor, eye)
    basis = torch.linalg.solve_triangular(factor, basis, upper=False)
    image = torch.linalg.solve_triangular(factor, image, upper=False)
    basis32 = basis.float()
    compressed = basis @ image.mT
    theta, vectors = torch.linalg.eigh((compressed + compressed.mT) / 2)
    theta, vectors = theta.flip(-1), vectors.flip(-1).mT  # rows of `vectors`: Ritz vectors in the basis
    residual_sq = (vectors @ image - theta.unsqueeze(-1) * (vectors @ basis)).square().sum(dim=-1)

    trace = gram.diagonal(dim1=-2, dim2=-1).sum(dim=-1, dtype=torch.float64)
    target = trace * (tau * (1.0 - _THRESHOLD_SLACK))
    margin = trace * _CERTIFY_TOLERANCE
    top_sums = torch.cat([theta.new_zeros(batch, 1), theta.cumsum(dim=-1)], dim=-1)  # [batch, k]: S_k(theta)
    reached = top_sums[:, 1:] >= (target + margin).unsqueeze(-1)
    ranks = reached.int().argmax(dim=-1) + 1
    m = ranks - 1
    proved = reached.any(dim=-1) & orthonormal
    if not (proved & (m > 0)).any():
        return ranks, proved

    # S_m(G) for m = k - 1, bounded for every split m = (m - j) + j, every s >= m and a few delta; the best counts.
    rest = torch.baddbmm(gram, basis32.mT, compressed.float() @ basis32, alpha=-1)  # D_p = G - K^T H K
    rest_sq = torch.linalg.vector_norm(rest, dim=(-2, -1)).double().square()
    residual_sq = residual_sq.cumsum(dim=-1)  # [batch, s]: ||R_s||_F^2
    outside_sq = theta.square().flip(-1).cumsum(dim=-1).flip(-1)  # theta_s^2 + ... + theta_p^2
    outside_sq = torch.cat([outside_sq[:, 1:], outside_sq.new_zeros(batch, 1)], dim=-1)  # ... from s + 1
    # fp32 round-off in G K and in D_p is about 1e-7 of ||G|| <= trace per entry; this allowance covers it
    allowance = 1e-5 * trace.unsqueeze(-1) * ((rest_sq.unsqueeze(-1) + outside_sq).sqrt() + residual_sq.sqrt())
    tail_frobenius = (rest_sq.unsqueeze(-1) + outside_sq - 2.0 * residual_sq + allowance).clamp(min=0.0).sqrt()
    tail_trace = (trace.unsqueeze(-1) - top_sums[:, 1:]).clamp(min=0.0)  # [batch, s]
    splits = int(m.max()) + 1
    j = torch.arange(splits, device=gram.device, dtype=torch.float64)  # eigenvalues taken from the complement
    kept = m.unsqueeze(-1) - j.long()  # [batch, j]: ... and from the Ritz block
    head = top_sums.gather(1, kept.clamp(min=0)).view(batch, 1, 1, splits)
    # delta = sqrt(||R_s||^2 / j) balances the coupling and the shift for a split j; try it for a few j
    floor = trace.view(batch, 1, 1) * 1e-12
    delta = (residual_sq.unsqueeze(-1) / _DELTA_SPLITS.to(gram.device)).sqrt().maximum(floor).unsqueeze(-1)
    coupling = (kept > 0).view(batch, 1, 1, splits) * residual_sq.view(batch, dim, 1, 1) / delta
    tail = torch.minimum(
        j.sqrt().view(1, 1, 1, splits) * tail_frobenius.view(batch, dim, 1, 1), tail_trace.view(batch, dim, 1, 1)
    )
    bound = (head + coupling + tail + j.view(1, 1, 1, splits) * delta).masked_fill(
        (kept < 0).view(batch, 1, 1, splits), -math.inf
    )
    bound = bound.amax(dim=-1).amin(dim=-1)  # [batch, s]: best delta for each s
    s = torch.arange(1, dim + 1, device=gram.device)
    bound = bound.masked_fill(s.unsqueeze(0) < m.unsqueeze(-1), math.inf).amin(dim=-1)
    proved &= (m == 0) | (bound <= target - margin)
    return ranks, proved


def _ranks_of_chunk(matrices: torch.Tensor, tau: float) -> torch.Tensor:
    """k* of a few matrices: proved by `_certified_ranks` where it can, the eigensolver for the rest."""
    gram = _gram(matrices)
    ranks, proved = _certified_ranks(gram, tau)
    if not proved.all():
        undecided = ~proved
        ranks[undecided] = _ranks_by_eigensolver(gram[undecided], tau)
    return ranks


def _ranks_by_eigensolver(gram: torch.Tensor, tau: float) -> torch.Tensor:
    """k* from the full spectrum of each Gram matrix (fp32 `eigvalsh`): the reference the certificate agrees with."""
    spectrum = torch.linalg.eigvalsh(gram).flip(-1).clamp(min=0.0)
    return _count_to_fraction(spectrum, tau)


def _map_on_threads(function: Callable[[Any], Any], items: Sequence[Any], cpu: bool = True) -> list[Any]:
    """`function` over `items`, spread over the CPU threads torch may use, each worker with one torch thread.

    The statistics are many small ops (products with a few columns, LAPACK on small matrices) that torch runs
    one matrix after another and that a second intra-op thread only slows down (it spins, and on a loaded machine
    it waits); independent slices on separate threads keep every core busy instead. Workers run in the caller's
    grad and inference mode. The result does not depend on the number of threads.
    """
    if not cpu:
        return [function(item) for item in items]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads < 2 or len(items) < 2:
            return [function(item) for item in items]
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def work(item: Any) -> Any:
            torch.set_num_threads(1)
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return function(item)

        return list(_worker_pool(threads).map(work, items))
    finally:
        torch.set_num_threads(threads)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _worker_pool(workers: int) -> ThreadPoolExecutor:
    """One pool per worker count, kept for the process: the same threads (and their allocator arenas) serve every
    layer, instead of new threads per attention call."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inheritune-stats")
    return _POOLS[workers]


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: it starts its own pools
    os.register_at_fork(after_in_child=_POOLS.clear)


def attention_rank(attn: torch.Tensor, tau: float = 0.9) -> torch.Tensor:
    """Rank k* of each attention matrix: the fewest singular values holding `tau` of the squared spectrum.

    `attn` has shape ``[..., T, S]`` (e.g. ``[batch, heads, T, T]``), any float dtype, any device; the Gram
    matrix is formed in fp32. Returns an integer tensor of shape ``[...]``. Paper (section 3): k* is the smallest
    k with sum_{i<=k} sigma_i^2 >= tau * sum_i sigma_i^2. Most matrices are settled by a Krylov certificate
    (`_certified_ranks`); the others by `eigvalsh`, and both give the same k*.
    """
    _check_fraction("tau", tau)
    _check_square_stack(attn)
    batch_shape = attn.shape[:-2]
    if attn.numel() == 0:
        return torch.zeros(batch_shape, dtype=torch.long, device=attn.device)
    matrices = attn.reshape(-1, *attn.shape[-2:])
    if matrices.device.type != "cpu":  # an accelerator's batched eigensolver beats many small Krylov steps
        return _ranks_by_eigensolver(_gram(matrices), tau).reshape(batch_shape)
    chunks = matrices.split(_CHUNK_MATRICES)
    return torch.cat(_map_on_threads(lambda chunk: _ranks_of_chunk(chunk, tau), chunks)).reshape(batch_shape)


def attention_mass(attn: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """Mass m* of each attention matrix: the fewest columns holding `eta` of the squared Frobenius norm.

    Column j's share is ||A[:, j]||^2 / ||A||_F^2; shares are taken largest first. A single-column (sink)
    pattern gives 1, the identity gives ceil(eta * T). Shape ``[..., T, S]`` in, integer ``[...]`` out; fp32.
    """
    _check_fraction("eta", eta)
    _check_square_stack(attn)
    batch_shape = attn.shape[:-2]
    if attn.numel() == 0:
        return torch.zeros(batch_shape, dtype=torch.long, device=attn.device)
    column_energy = attn.float().square().sum(dim=-2)
    descending = column_energy.sort(dim=-1, descending=True).values
    return _count_to_fraction(descending, eta)


# ---------------------------------------------------------------------------------------------------------------
# Samples: random windows of seq_len tokens from a token stream (nanoGPT's get_batch, as in the paper)
# ---------------------------------------------------------------------------------------------------------------


def _context_length(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return context_length(config) if isinstance(config, PretrainedConfig) else None


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


def _token_stream(
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


def _draw_samples(tokens: torch.Tensor, num_samples: int, seq_len: int, seed: int) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------------------------------
# Collecting the statistics inside the forward pass
# ---------------------------------------------------------------------------------------------------------------


class _Accumulator:
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
        """Per-head sums over the batch of k* and m* for probabilities [batch, heads, T, S], and the batch size."""
        rank = attention_rank(probs, self.tau).sum(dim=0).double().cpu()
        mass = attention_mass(probs, self.eta).sum(dim=0).double().cpu()
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


class _BlockStates:
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
                self.last[index] = x[:, -1].detach().double().cpu()

        return hook

    def _after(self, index: int):
        @torch.no_grad()
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            x, y = self.inputs.pop(index, None), self._hidden(output)
            if x is None or y is None or x.shape != y.shape:
                return
            # fp32 at least: a bf16 cosine near 1 would round a small BI to 0.
            dtype = torch.promote_types(x.dtype, torch.float32)
            self.bi_sums[index] += _cosines(x.to(dtype), y.to(dtype)).sum().double().cpu()
            self.bi_tokens[index] += x.shape[:-1].numel()
            if index == len(self.blocks) - 1:
                self.last[index + 1] = y[:, -1].detach().double().cpu()

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
        self.angular_sums += (torch.arccos(cos) / math.pi).sum(dim=0)
        self.samples += unit.shape[0]

    def block_influence(self) -> list[float] | None:
        if not self.bi_tokens.all():
            return None
        return (1.0 - self.bi_sums / self.bi_tokens).tolist()

    def angular(self) -> list[list[float]] | None:
        return (self.angular_sums / self.samples).tolist() if self.samples else None


def _block_states(model: nn.Module) -> _BlockStates | None:
    """Hooks on the decoder's block stack, or None for a model whose stack cannot be found (no BI then)."""
    try:
        return _BlockStates(find_decoder_layers(model).layers)
    except (LayerStackNotFoundError, UnsupportedModelError, AttributeError):
        return None


_ACTIVE: contextvars.ContextVar[_Accumulator | None] = contextvars.ContextVar(
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
    about 1.5x. The slices run on separate CPU threads (`_map_on_threads`). Samples do not interact in
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
    results = _map_on_threads(attend_and_reduce, slices, cpu)
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
def _attention_interface_capture(model: nn.Module, accumulator: _Accumulator) -> Iterator[dict[str, Any]]:
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
def _hook_capture(model: nn.Module, accumulator: _Accumulator) -> Iterator[dict[str, Any]]:
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


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    return str(name) or type(model).__name__


def _num_layers(model: nn.Module, rows: int) -> int:
    try:
        from .architecture import num_layers_of

        return num_layers_of(model.config)
    except Exception:  # not a transformers config, or no layer count: the attention rows are the layers
        return rows


# ---------------------------------------------------------------------------------------------------------------
# The diagnostic
# ---------------------------------------------------------------------------------------------------------------


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
    no attention layers or one that is not a decoder-only causal LM (encoder-only, encoder-decoder), `InherituneError` for tau / eta outside (0, 1].
    """
    _check_fraction("tau", tau)
    _check_fraction("eta", eta)
    for name, value in (("num_samples", num_samples), ("seq_len", seq_len), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InherituneError(f"{name} must be a positive integer, got {value!r}.")
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

    source, tokens = _token_stream(tokenizer, texts, dataset, input_ids, max_tokens or 100 * num_samples * seq_len)
    samples = _draw_samples(tokens, num_samples, seq_len, seed)

    accumulator = _Accumulator(model, tau, eta)
    states = _block_states(model)
    hooked = states.hooked() if states is not None else contextlib.nullcontext()
    use_interface = type(model)._can_set_attn_implementation() if hasattr(model, "set_attn_implementation") else False
    capture = _attention_interface_capture if use_interface else _hook_capture
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
