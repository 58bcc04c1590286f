"""attention_rank and attention_mass on constructed matrices with known answers (paper, section 3)."""

import math

import numpy as np
import pytest
import torch

from inheritune_hf import InherituneError, attention_mass, attention_rank

T = 20


def sink(t: int = T) -> torch.Tensor:
    """Every row on the first column."""
    a = torch.zeros(t, t)
    a[:, 0] = 1.0
    return a


def uniform_causal(t: int = T) -> torch.Tensor:
    """Row i spreads evenly over columns 0..i."""
    return torch.tril(torch.ones(t, t)) / torch.arange(1, t + 1).unsqueeze(1)


def rank_two(t: int = T) -> torch.Tensor:
    """Even rows on column 0, odd rows on column 1: two equal singular values."""
    a = torch.zeros(t, t)
    a[0::2, 0] = 1.0
    a[1::2, 1] = 1.0
    return a


def random_causal(n: int, t: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, t, t, generator=generator) * 3
    return torch.softmax(scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf")), dim=-1)


def numpy_rank(a: np.ndarray, tau: float) -> int:
    energy = np.linalg.svd(a.astype(np.float64), compute_uv=False) ** 2
    return int(np.argmax(np.cumsum(energy) >= tau * energy.sum() * (1 - 1e-9)) + 1)


def numpy_mass(a: np.ndarray, eta: float) -> int:
    shares = np.sort((a.astype(np.float64) ** 2).sum(axis=0))[::-1]
    return int(np.argmax(np.cumsum(shares) >= eta * shares.sum() * (1 - 1e-9)) + 1)


def test_sink_has_rank_one_and_mass_one():
    assert attention_rank(sink()).item() == 1
    assert attention_mass(sink()).item() == 1


@pytest.mark.parametrize("t", [10, 20, 37, 100])
def test_identity_needs_ceil_of_tau_times_T(t):
    eye = torch.eye(t)
    assert attention_rank(eye).item() == math.ceil(0.9 * t)
    assert attention_mass(eye).item() == math.ceil(0.9 * t)


def test_uniform_causal_matches_its_spectrum():
    a = uniform_causal()
    assert attention_rank(a).item() == numpy_rank(a.numpy(), 0.9)
    assert attention_mass(a).item() == numpy_mass(a.numpy(), 0.9)
    # column j holds sum_{i>=j} 1/(i+1)^2: the first column dominates but not up to 90 %
    assert 1 < attention_mass(a).item() < T


def test_rank_two_mixture():
    assert attention_rank(rank_two()).item() == 2
    assert attention_mass(rank_two()).item() == 2
    # 90 % of the energy is in one column when that column holds 9 of every 10 rows
    lopsided = sink()
    lopsided[1, 0], lopsided[1, 1] = 0.0, 1.0
    assert attention_rank(lopsided, tau=0.9).item() == 1
    assert attention_rank(lopsided, tau=0.99).item() == 2


def test_batch_of_mixed_patterns_keeps_shape_and_answers():
    batch = torch.stack([sink(), torch.eye(T), uniform_causal(), rank_two()]).reshape(2, 2, T, T)
    expected_rank = torch.tensor([[1, 18], [attention_rank(uniform_causal()).item(), 2]])
    expected_mass = torch.tensor([[1, 18], [attention_mass(uniform_causal()).item(), 2]])
    assert torch.equal(attention_rank(batch), expected_rank)
    assert torch.equal(attention_mass(batch), expected_mass)


def test_random_row_stochastic_matrices_agree_with_numpy_svd():
    a = random_causal(64, 24)
    ranks, masses = attention_rank(a), attention_mass(a)
    for i in range(a.shape[0]):
        assert ranks[i].item() == numpy_rank(a[i].numpy(), 0.9)
        assert masses[i].item() == numpy_mass(a[i].numpy(), 0.9)
    for tau in (0.5, 0.75, 0.99):
        assert [numpy_rank(m.numpy(), tau) for m in a[:16]] == attention_rank(a[:16], tau).tolist()


def test_large_batches_split_across_threads_give_the_same_answer():
    a = random_causal(40, 16, seed=1)
    one_by_one = torch.stack([attention_rank(m) for m in a])
    assert torch.equal(attention_rank(a), one_by_one)


def test_bf16_and_fp64_inputs_are_computed_in_fp32():
    a = random_causal(8, 16, seed=2)
    for dtype in (torch.bfloat16, torch.float64):
        converted = a.to(dtype)
        reference = converted.float()
        assert torch.equal(attention_rank(converted), attention_rank(reference))
        assert torch.equal(attention_mass(converted), attention_mass(reference))
    assert attention_rank(sink().bfloat16()).item() == 1


def test_tau_one_counts_every_nonzero_singular_value():
    assert attention_rank(rank_two(), tau=1.0).item() == 2
    assert attention_rank(torch.eye(8), tau=1.0).item() == 8


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_zero_one_is_refused(bad):
    with pytest.raises(InherituneError, match="tau"):
        attention_rank(sink(), tau=bad)
    with pytest.raises(InherituneError, match="eta"):
        attention_mass(sink(), eta=bad)


def test_rank_one_matrices_are_certified_without_the_eigensolver(monkeypatch):
    import inheritune_hf.analyze.stats as analyze

    def fail(gram, tau):
        raise AssertionError("the eigensolver should not run for provably rank-1 matrices")

    monkeypatch.setattr(analyze, "_ranks_by_eigensolver", fail)
    noisy_sink = 0.97 * sink() + 0.03 * uniform_causal()
    assert attention_rank(torch.stack([sink(), noisy_sink, sink(40)[:T, :T]])).tolist() == [1, 1, 1]


def test_mixtures_of_sink_and_uniform_agree_with_numpy_across_the_threshold():
    for alpha in torch.linspace(0, 1, 41).tolist():
        a = (1 - alpha) * sink() + alpha * uniform_causal()
        for tau in (0.5, 0.9, 0.99):
            assert attention_rank(a, tau).item() == numpy_rank(a.numpy(), tau), (alpha, tau)


# The Krylov certificate (`_certified_ranks`) replaces the eigensolver for most matrices of realistic size; every
# k* it proves must be the eigensolver's, and a near-tie must be left to the eigensolver.


def attention_like(t: int, seed: int, scales: tuple[float, ...] = (0.3, 1.0, 3.0, 8.0)) -> torch.Tensor:
    """Causal softmax attention of T=t: flat (small scale, low rank) to peaky (each row on a few random keys,
    high rank), half of each leaning on a sink column, and a local head (a sliding window of 4, high rank)."""
    generator = torch.Generator().manual_seed(seed)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for scale in scales:
        scores = torch.randn(6, t, t, generator=generator) * scale
        scores[:3, :, 0] += 4.0
        heads.append(torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1))
    band = torch.ones(t, t).tril() - torch.ones(t, t).tril(-4)
    heads.append((band / band.sum(dim=-1, keepdim=True)).unsqueeze(0))
    return torch.cat(heads)


@pytest.mark.parametrize("tau", [0.5, 0.75, 0.9, 0.99])
def test_every_rank_the_krylov_certificate_proves_is_the_eigensolvers(tau):
    import inheritune_hf.analyze.stats as analyze

    a = torch.cat([attention_like(256, seed=4), torch.stack([sink(256), rank_two(256), uniform_causal(256)])])
    gram = analyze._gram(a)
    ranks, proved = analyze._certified_ranks(gram, tau)
    reference = analyze._ranks_by_eigensolver(gram, tau)
    assert torch.equal(ranks[proved], reference[proved])
    assert torch.equal(attention_rank(a, tau), reference)


def test_low_rank_attention_is_proved_without_the_eigensolver():
    # the heads of an untrained model and lazy heads: k* well below p = 24 Ritz values
    import inheritune_hf.analyze.stats as analyze

    flat = attention_like(256, seed=8, scales=(0.3,))[:-1]  # without the local head
    a = torch.cat([flat, torch.stack([sink(256), rank_two(256), 0.97 * sink(256) + 0.03 * uniform_causal(256)])])
    _, proved = analyze._certified_ranks(analyze._gram(a), 0.9)
    assert proved.all()


def test_krylov_ranks_agree_with_numpy_svd_at_realistic_size():
    a = attention_like(128, seed=5)
    assert attention_rank(a).tolist() == [numpy_rank(m.numpy(), 0.9) for m in a]


def test_a_tie_at_the_threshold_is_left_to_the_eigensolver(monkeypatch):
    import inheritune_hf.analyze.stats as analyze

    # sigma^2 = 0.5, 0.4, 0.1 (a diagonal matrix is causal): the top two hold exactly 90 %
    a = torch.zeros(100, 100)
    a[0, 0], a[1, 1], a[2, 2] = 0.5**0.5, 0.4**0.5, 0.1**0.5
    _, proved = analyze._certified_ranks(analyze._gram(a.unsqueeze(0)), 0.9)
    assert not proved.item()
    calls = []
    original = analyze._ranks_by_eigensolver
    monkeypatch.setattr(analyze, "_ranks_by_eigensolver", lambda gram, tau: calls.append(1) or original(gram, tau))
    assert attention_rank(a).item() == 2  # the eigensolver's answer, slack included
    assert calls


def test_the_accelerator_path_certifies_the_whole_batch_in_one_call(monkeypatch):
    # On CUDA, attention_rank runs `_ranks_of_chunk` once over every matrix of the call (no thread pool): the same
    # ranks as numpy's SVD, and only the matrices the certificate leaves undecided reach the eigensolver (which
    # CUDA runs one matrix at a time for T > 32).
    import inheritune_hf.analyze.stats as analyze

    a = attention_like(128, seed=5)
    sent = []
    original = analyze._ranks_by_eigensolver
    monkeypatch.setattr(
        analyze, "_ranks_by_eigensolver", lambda gram, tau: sent.append(len(gram)) or original(gram, tau)
    )
    assert analyze._ranks_of_chunk(a, 0.9).tolist() == [numpy_rank(m.numpy(), 0.9) for m in a]
    _, proved = analyze._certified_ranks(analyze._gram(a), 0.9)
    assert sent == [int((~proved).sum())] and proved.any()  # one batched call, with only the undecided ones


def test_ranks_do_not_depend_on_threads_or_chunking(monkeypatch):
    import inheritune_hf.analyze.stats as analyze

    a = attention_like(96, seed=6)
    threads = torch.get_num_threads()
    reference = attention_rank(a)
    monkeypatch.setattr(analyze, "_CHUNK_MATRICES", 5)
    try:
        torch.set_num_threads(1)
        one_thread = attention_rank(a)
        torch.set_num_threads(2)
        two_threads = attention_rank(a)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one_thread, reference) and torch.equal(two_threads, reference)
    assert torch.get_num_threads() == threads


def test_the_causal_gram_is_the_plain_product():
    import inheritune_hf.analyze.stats as analyze

    a = attention_like(80, seed=7)
    torch.testing.assert_close(analyze._gram(a), a @ a.mT, rtol=1e-6, atol=1e-7)
    full = torch.rand(3, 80, 80)  # not causal: the plain product
    assert torch.equal(analyze._gram(full), full @ full.mT)


def certify_with_basis(monkeypatch, eigenvalues: list[float], rows: torch.Tensor, tau: float):
    """`_certified_ranks` on G = diag(eigenvalues) when the Krylov space is `rows` (a subspace chosen to be poor)."""
    import inheritune_hf.analyze.stats as analyze

    gram = torch.diag(torch.tensor(eigenvalues)).unsqueeze(0)
    monkeypatch.setattr(analyze, "_krylov_basis", lambda g, dim, block: (rows.unsqueeze(0), rows.unsqueeze(0) @ g))
    ranks, proved = analyze._certified_ranks(gram, tau)
    return ranks.item(), proved.item(), analyze._ranks_by_eigensolver(gram, tau).item()


def test_a_subspace_that_misses_the_top_eigenvalue_proves_nothing(monkeypatch):
    # G = diag(20, 1, ..., 1): at tau = 0.28, k* = 5. A basis of 24 of the unit eigenvalues reaches the target at
    # k = 24; only the bound on what lies outside the subspace (lambda = 20) keeps it from proving 24.
    eigenvalues = [20.0] + [1.0] * 63
    rows = torch.eye(64)[1:25]
    k, proved, reference = certify_with_basis(monkeypatch, eigenvalues, rows, 0.28)
    assert reference == 5
    assert not proved or k == reference


def test_a_tilted_subspace_proves_nothing_wrong(monkeypatch):
    # G = diag(1, 1, 0.001, ...): the top two eigenvectors tilted by 0.1 rad into small directions give Ritz values
    # 0.99 < t = 0.995 < 1, so the Ritz values say k = 2 where k* = 1; only the residual term refuses it.
    eigenvalues = [1.0, 1.0] + [0.001] * 62
    c, s = math.cos(0.1), math.sin(0.1)
    rows = torch.eye(64)[[0, 1] + list(range(4, 26))]
    rows[0, 0], rows[0, 2], rows[1, 1], rows[1, 3] = c, s, c, s
    tau = 0.995 / sum(eigenvalues)
    k, proved, reference = certify_with_basis(monkeypatch, eigenvalues, rows, tau)
    assert reference == 1
    assert not proved or k == reference
