"""The paper's two statistics of an attention matrix, on plain tensors: rank k* and single-column mass m*.

For a causal attention matrix A (T x T, the probabilities after masking and softmax):

- **rank** k*: the smallest k such that the top-k squared singular values of A hold at least `tau` (0.9)
  of sum_i sigma_i^2;
- **mass** m*: the smallest number of columns, largest first, whose shares ||A[:, j]||^2 / ||A||_F^2 sum
  to at least `eta` (0.9). A sink pattern (every row on one column) gives 1.

k* needs the top of the spectrum of every A A^T. On CPU a block Krylov certificate (`_certified_ranks`) proves k*
for most attention matrices at a fraction of an eigensolver's cost, and `eigvalsh` settles the rest; the answer is
the eigensolver's either way. `map_on_threads` spreads the many small matrices over the CPU threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..errors import InherituneError

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


def check_fraction(name: str, value: float) -> None:
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


def map_on_threads(function: Callable[[Any], Any], items: Sequence[Any], cpu: bool = True) -> list[Any]:
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
    check_fraction("tau", tau)
    _check_square_stack(attn)
    batch_shape = attn.shape[:-2]
    if attn.numel() == 0:
        return torch.zeros(batch_shape, dtype=torch.long, device=attn.device)
    matrices = attn.reshape(-1, *attn.shape[-2:])
    if matrices.device.type != "cpu":
        # One batched call on the device: the certificate's products, QRs and 24 x 24 eigenproblems are batched
        # kernels there, while `eigvalsh` on T x T matrices (T > 32) runs one solver call per matrix on CUDA
        # (cuSOLVER batches only n <= 32), which made the paper's 100 x 100 diagnosis take minutes on an H200.
        # Only the few matrices the certificate leaves undecided go to `eigvalsh`.
        return _ranks_of_chunk(matrices, tau).reshape(batch_shape)
    chunks = matrices.split(_CHUNK_MATRICES)
    return torch.cat(map_on_threads(lambda chunk: _ranks_of_chunk(chunk, tau), chunks)).reshape(batch_shape)


def attention_mass(attn: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """Mass m* of each attention matrix: the fewest columns holding `eta` of the squared Frobenius norm.

    Column j's share is ||A[:, j]||^2 / ||A||_F^2; shares are taken largest first. A single-column (sink)
    pattern gives 1, the identity gives ceil(eta * T). Shape ``[..., T, S]`` in, integer ``[...]`` out; fp32.
    """
    check_fraction("eta", eta)
    _check_square_stack(attn)
    batch_shape = attn.shape[:-2]
    if attn.numel() == 0:
        return torch.zeros(batch_shape, dtype=torch.long, device=attn.device)
    column_energy = attn.float().square().sum(dim=-2)
    descending = column_energy.sort(dim=-1, descending=True).values
    return _count_to_fraction(descending, eta)
