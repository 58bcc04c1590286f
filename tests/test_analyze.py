"""analyze_attention on tiny random models: it agrees with the naive output_attentions path, finds forced lazy
layers, is the same under eager and sdpa, and refuses bad input with clear errors."""

import datasets
import pytest
import torch
from legacy_attention_model import LegacyConfig, LegacyForCausalLM
from tiny_models import tiny_model
from transformers import (
    AutoModelForCausalLM,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MambaConfig,
    MambaForCausalLM,
)

from inheritune_hf import AttentionReport, InherituneError, analyze_attention, attention_mass, attention_rank
from inheritune_hf.data import train_tokenizer
from inheritune_hf.errors import DataError, UnsupportedModelError

VOCAB = 300
TEXT = " ".join(
    f"The {w} of layer {i % 13} attends to token {i * 7 % 31} while head {i % 4} looks back."
    for i, w in enumerate(["rank", "mass", "sink", "head", "block", "query", "key", "value"] * 40)
)


def gpt2(n_layer: int = 4, attn: str = "sdpa", init: float = 0.02) -> GPT2LMHeadModel:
    """A tiny GPT-2; a large `init` makes attention peaky so that ranks differ between heads and layers."""
    model = tiny_model("gpt2", n_layer, n_embd=64, vocab_size=VOCAB, initializer_range=init)
    model.set_attn_implementation(attn)
    return model


def llama(kv_heads: int) -> LlamaForCausalLM:
    return tiny_model(
        "llama",
        3,
        hidden_size=64,
        intermediate_size=128,
        num_key_value_heads=kv_heads,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )


def stream(n: int = 3000, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def naive_report(model, samples: torch.Tensor, tau: float = 0.9, eta: float = 0.9):
    """The paper notebook's way: all attentions at once from an eager forward, then per-sample statistics."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = [a for a in model(samples, output_attentions=True).attentions if a is not None]
    ranks = [attention_rank(a, tau).double().mean(0).tolist() for a in attentions]
    masses = [attention_mass(a, eta).double().mean(0).tolist() for a in attentions]
    return ranks, masses


def force_sink(model: GPT2LMHeadModel, layers: list[int]) -> None:
    """Make every query of `layers` attend only to position 0: position 0 carries a large marker in the last
    residual dimension, queries are constant, and keys read that marker, so score(i, 0) dwarfs the rest."""
    d = model.config.n_embd
    with torch.no_grad():
        model.transformer.wte.weight[:, -1] = 0.0
        model.transformer.wpe.weight[:, -1] = 0.0
        model.transformer.wpe.weight[0, -1] = 20.0
        for layer in layers:
            c_attn = model.transformer.h[layer].attn.c_attn  # Conv1D: x @ W + b, W is [d, 3d] = [q | k | v]
            c_attn.weight[:, :d] = 0.0
            c_attn.bias[:d] = 1.0
            c_attn.weight[:, d : 2 * d] = 0.0
            c_attn.weight[-1, d : 2 * d] = 10.0
            c_attn.bias[d : 2 * d] = 0.0


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([TEXT], vocab_size=VOCAB)


def test_matches_the_naive_output_attentions_path():
    model = gpt2(init=0.3)
    samples = stream().unfold(0, 32, 97)[:10]  # 10 rows of 32 tokens, used as given
    report = analyze_attention(model, input_ids=samples, num_samples=10, seq_len=32, batch_size=4, progress=False)
    ranks, masses = naive_report(model, samples)
    assert report.settings["capture"] == "attention_interface"
    assert len(report.rank) == 4
    for i in range(4):
        assert report.rank[i] == pytest.approx(ranks[i], abs=1e-9)
        assert report.mass[i] == pytest.approx(masses[i], abs=1e-9)


def test_flags_exactly_the_layers_forced_into_a_sink():
    model = gpt2(n_layer=6)
    force_sink(model, [2, 4, 5])
    report = analyze_attention(model, input_ids=stream(), num_samples=12, seq_len=32, progress=False)
    assert report.lazy_layers == [2, 4, 5]
    for layer in (2, 4, 5):
        assert report.max_rank[layer] == 1.0
        assert report.avg_mass[layer] == 1.0
    assert min(report.max_rank[layer] for layer in (0, 1, 3)) > 2


def test_eager_and_sdpa_models_give_the_same_report_and_are_restored():
    reports = {}
    for attn in ("eager", "sdpa"):
        model = gpt2(attn=attn, init=0.3).train()
        reports[attn] = analyze_attention(model, input_ids=stream(), num_samples=8, seq_len=24, progress=False)
        assert model.config._attn_implementation == attn
        assert model.training
    torch.testing.assert_close(torch.tensor(reports["eager"].rank), torch.tensor(reports["sdpa"].rank))
    torch.testing.assert_close(torch.tensor(reports["eager"].mass), torch.tensor(reports["sdpa"].mass))


def test_model_is_restored_when_the_forward_fails():
    model = gpt2().train()

    def fail(*args):
        raise RuntimeError("boom")

    model.transformer.h[2].register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        analyze_attention(model, input_ids=stream(), num_samples=2, seq_len=16, progress=False)
    assert model.config._attn_implementation == "sdpa"
    assert model.training


def test_loaded_checkpoint_keeps_its_attention_setting(tmp_path):
    gpt2().save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")
    analyze_attention(model, input_ids=stream(), num_samples=4, seq_len=16, progress=False)
    assert model.config._attn_implementation == "sdpa"
    assert not model.training


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["gqa", "mqa"])
def test_grouped_query_attention_reports_one_row_per_query_head(kv_heads):
    model = llama(kv_heads)
    samples = stream().unfold(0, 20, 50)[:6]
    report = analyze_attention(model, input_ids=samples, num_samples=6, seq_len=20, progress=False)
    ranks, masses = naive_report(model, samples)
    assert [len(heads) for heads in report.rank] == [4, 4, 4]
    assert report.layer_names == [f"model.layers.{i}.self_attn" for i in range(3)]
    for i in range(3):
        assert report.rank[i] == pytest.approx(ranks[i], abs=1e-9)
        assert report.mass[i] == pytest.approx(masses[i], abs=1e-9)


ARCHITECTURES = {
    # sliding window + GQA
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        dict(
            num_hidden_layers=2,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=8,
        ),
    ),
    # logit softcapping, alternating sliding / global layers
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(
            num_hidden_layers=2,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            sliding_window=8,
        ),
    ),
    # attention sinks (learned per-head logits that take probability mass but no column)
    "gpt_oss": (
        "GptOssConfig",
        "GptOssForCausalLM",
        dict(
            num_hidden_layers=2,
            hidden_size=64,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=8,
        ),
    ),
    "gpt_neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4),
    ),
    "opt": (
        "OPTConfig",
        "OPTForCausalLM",
        dict(num_hidden_layers=2, hidden_size=64, ffn_dim=128, num_attention_heads=4, word_embed_proj_dim=64),
    ),
    # legacy attention outside the interface: forward hooks
    "falcon_alibi": (
        "FalconConfig",
        "FalconForCausalLM",
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, alibi=True),
    ),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(n_layer=2, hidden_size=64, n_head=4)),
    "gpt_neo": (
        "GPTNeoConfig",
        "GPTNeoForCausalLM",
        dict(num_layers=2, hidden_size=64, num_heads=4, attention_types=[[["global", "local"], 1]], window_size=8),
    ),
    # hybrid: attention in blocks 1 and 3 only, Mamba elsewhere
    "jamba": (
        "JambaConfig",
        "JambaForCausalLM",
        dict(
            num_hidden_layers=4,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            num_experts=2,
            mamba_d_state=4,
            use_mamba_kernels=False,
        ),
    ),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_matches_the_naive_path_across_architectures(arch):
    model = build_architecture(arch)
    samples = stream().unfold(0, 24, 60)[:4]
    report = analyze_attention(model, input_ids=samples, num_samples=4, seq_len=24, progress=False)
    ranks, masses = naive_report(model, samples)
    assert report.layers == ([1, 3] if arch == "jamba" else [0, 1])
    torch.testing.assert_close(torch.tensor(report.rank), torch.tensor(ranks))
    torch.testing.assert_close(torch.tensor(report.mass), torch.tensor(masses))


def test_model_outside_the_attention_interface_falls_back_to_hooks():
    torch.manual_seed(0)
    model = LegacyForCausalLM(LegacyConfig(num_hidden_layers=3, vocab_size=VOCAB)).eval()
    samples = stream().unfold(0, 16, 40)[:4]
    report = analyze_attention(model, input_ids=samples, num_samples=4, seq_len=16, progress=False)
    with torch.no_grad():
        attentions = model(samples, output_attentions=True).attentions
    assert report.settings["capture"] == "forward_hooks"
    assert report.layers == [0, 1, 2]
    for layer, probs in enumerate(attentions):
        assert report.rank[layer] == pytest.approx(attention_rank(probs).double().mean(0).tolist(), abs=1e-9)
        assert report.mass[layer] == pytest.approx(attention_mass(probs).double().mean(0).tolist(), abs=1e-9)


def build_architecture(arch: str):
    import transformers

    config_class, model_class, kwargs = ARCHITECTURES[arch]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(vocab_size=VOCAB, **kwargs)
    return getattr(transformers, model_class)(config).eval()


@pytest.mark.parametrize("arch", ["gpt_oss", "opt", "mistral", "gemma2", "llama_gqa"])
def test_attention_taken_a_few_samples_at_a_time_gives_the_same_report(arch, monkeypatch):
    # Per-sample tensors (the masks, OPT's position ids) are cut with the batch; the rest passes whole.
    import inheritune_hf.analyze.capture as capture

    model = llama(2) if arch == "llama_gqa" else build_architecture(arch)
    samples = stream().unfold(0, 24, 60)[:4]
    kwargs = dict(input_ids=samples, num_samples=4, seq_len=24, progress=False)
    whole = analyze_attention(model, **kwargs)
    monkeypatch.setattr(capture, "_PROBS_CHUNK_BYTES", 1)  # one sample per slice, slices on separate threads
    sliced = analyze_attention(model, **kwargs)
    assert sliced.rank == whole.rank and sliced.mass == whole.mass
    assert sliced.block_influence == pytest.approx(whole.block_influence, abs=1e-6)
    assert torch.tensor(sliced.angular).allclose(torch.tensor(whole.angular), atol=1e-6)


def test_only_per_sample_tensors_are_cut_with_the_batch():
    from inheritune_hf.analyze.capture import _batch_slice

    rows, batch = slice(1, 3), 4
    mask, positions = torch.zeros(4, 1, 5, 5), torch.arange(20).view(4, 5)
    assert _batch_slice(mask, rows, batch).shape == (2, 1, 5, 5)
    assert torch.equal(_batch_slice(positions, rows, batch), positions[1:3])
    sinks = torch.ones(4)  # one per head, and there happen to be as many heads as samples
    broadcast = torch.zeros(1, 1, 5, 5)
    assert _batch_slice(sinks, rows, batch) is sinks and _batch_slice(broadcast, rows, batch) is broadcast
    assert _batch_slice(0.125, rows, batch) == 0.125


def test_the_report_does_not_depend_on_the_number_of_threads():
    model = gpt2(init=0.3)
    threads = torch.get_num_threads()
    reports = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            reports.append(analyze_attention(model, input_ids=stream(), num_samples=8, seq_len=32, progress=False))
            assert torch.get_num_threads() == count  # restored after the statistics' own threads
    finally:
        torch.set_num_threads(threads)
    assert reports[0].rank == reports[1].rank and reports[0].mass == reports[1].mass


def test_texts_and_datasets_are_sampled_the_same_seeded_way(tokenizer):
    model = gpt2()
    kwargs = dict(num_samples=6, seq_len=16, progress=False)
    from_texts = analyze_attention(model, tokenizer, texts=[TEXT], seed=3, **kwargs)
    again = analyze_attention(model, tokenizer, texts=TEXT, seed=3, **kwargs)
    from_dataset = analyze_attention(
        model, tokenizer, dataset=datasets.Dataset.from_dict({"text": [TEXT]}), seed=3, **kwargs
    )
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    from_ids = analyze_attention(model, input_ids=ids, seed=3, **kwargs)
    tokenized = analyze_attention(model, dataset=datasets.Dataset.from_dict({"input_ids": [ids]}), seed=3, **kwargs)
    for other in (again, from_dataset, from_ids, tokenized):
        assert other.rank == from_texts.rank
    assert from_texts.settings["source"] == "texts" and from_dataset.settings["source"] == "dataset"


def test_report_carries_settings_and_model_name():
    report = analyze_attention(gpt2(), input_ids=stream(), num_samples=4, seq_len=16, tau=0.8, eta=0.7, progress=False)
    assert isinstance(report, AttentionReport)
    assert report.num_layers == 4
    assert report.settings["tau"] == 0.8 and report.settings["eta"] == 0.7
    assert report.settings["num_samples"] == 4 and report.settings["seq_len"] == 16
    assert report.model_name == "GPT2LMHeadModel"


# -- bad input --------------------------------------------------------------------------------------------------


def test_seq_len_longer_than_the_context_is_refused():
    with pytest.raises(DataError, match="context of 64"):
        analyze_attention(gpt2(), input_ids=stream(), num_samples=2, seq_len=65, progress=False)


def test_text_shorter_than_one_sample_is_refused(tokenizer):
    with pytest.raises(DataError, match="too short"):
        analyze_attention(gpt2(), tokenizer, texts="rank mass", num_samples=2, seq_len=32, progress=False)
    with pytest.raises(DataError, match="too short"):
        analyze_attention(gpt2(), input_ids=stream(10), num_samples=2, seq_len=32, progress=False)


def test_empty_sources_are_refused(tokenizer):
    with pytest.raises(DataError, match="empty"):
        analyze_attention(
            gpt2(), tokenizer, dataset=datasets.Dataset.from_dict({"text": []}), seq_len=16, progress=False
        )
    with pytest.raises(DataError, match="empty"):
        analyze_attention(gpt2(), tokenizer, texts=[], seq_len=16, progress=False)
    with pytest.raises(DataError, match="one, e.g."):
        splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [TEXT]})})
        analyze_attention(gpt2(), tokenizer, dataset=splits, seq_len=16, progress=False)
    with pytest.raises(DataError, match="which column"):
        analyze_attention(gpt2(), tokenizer, dataset=datasets.Dataset.from_dict({"a": ["x"], "b": ["y"]}), seq_len=16)


def test_source_must_be_exactly_one_and_texts_need_a_tokenizer():
    with pytest.raises(DataError, match="exactly one"):
        analyze_attention(gpt2(), seq_len=16, progress=False)
    with pytest.raises(DataError, match="exactly one"):
        analyze_attention(gpt2(), texts=TEXT, input_ids=stream(), seq_len=16, progress=False)
    with pytest.raises(DataError, match="tokenizer"):
        analyze_attention(gpt2(), texts=TEXT, seq_len=16, progress=False)


def test_too_few_given_rows_are_refused():
    with pytest.raises(DataError, match="num_samples=3"):
        analyze_attention(gpt2(), input_ids=stream(48).reshape(3, 16), num_samples=5, seq_len=16, progress=False)


@pytest.mark.parametrize("setting", [{"tau": 0.0}, {"tau": 1.01}, {"eta": -0.5}, {"eta": 2.0}, {"num_samples": 0}])
def test_settings_outside_their_range_are_refused(setting):
    with pytest.raises(InherituneError):
        analyze_attention(gpt2(), input_ids=stream(), seq_len=16, progress=False, **setting)


def test_model_without_attention_is_unsupported():
    model = MambaForCausalLM(MambaConfig(num_hidden_layers=2, hidden_size=32, state_size=4, vocab_size=VOCAB))
    with pytest.raises(UnsupportedModelError, match="no attention"):
        analyze_attention(model, input_ids=stream(), num_samples=2, seq_len=16, progress=False)


def test_blocks_that_start_with_bos_give_samples_that_start_with_it():
    from inheritune_hf.analyze import sample_source
    from inheritune_hf.analyze.samples import draw_samples
    from inheritune_hf.tracking import attention_samples

    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(1, 50, (12, 16), generator=generator)
    plain = sample_source(blocks)
    assert plain.dim() == 1 and torch.equal(plain, blocks.reshape(-1))  # plain text: the stream, windows anywhere

    blocks[:, 0] = 0  # every training window began with BOS = 0
    rows = sample_source(blocks)
    samples = draw_samples(rows, num_samples=5, seq_len=8, seed=3)
    assert samples.shape == (5, 8) and (samples[:, 0] == 0).all()
    prefixes = {tuple(row[:8].tolist()) for row in blocks}
    assert all(tuple(sample.tolist()) in prefixes for sample in samples)  # a block's first tokens, not a window

    dataset = datasets.Dataset.from_dict({"input_ids": blocks.tolist()})
    assert torch.equal(attention_samples(dataset, num_samples=5, seq_len=8, seed=3), samples)


# -- memory ------------------------------------------------------------------------------------------------------

PEAK_MEMORY_SCRIPT = """
import gc, json, sys
from pathlib import Path

import torch
from tiny_models import tiny_model

from inheritune_hf import analyze_attention


def kib(key):
    return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith(key + ":"))


samples, heads, seq_len = 8, 16, 128  # one layer's probabilities: 8 MiB
ids = torch.randint(0, 300, (samples, seq_len), generator=torch.Generator().manual_seed(1))
peaks = {}
for layers in (2, 8):
    model = tiny_model("gpt2", layers, n_embd=32, n_head=heads, n_positions=seq_len, vocab_size=300)
    run = lambda: analyze_attention(model, input_ids=ids, num_samples=samples, seq_len=seq_len, progress=False)
    run()  # first-call allocations: thread pools, kernels
    peaks[layers] = 0.0
    for _ in range(3):  # the largest of three: the allocator's page-granular noise is a few MiB
        gc.collect()
        before = kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark VmHWM to the current RSS
        run()
        peaks[layers] = max(peaks[layers], (kib("VmHWM") - before) / 1024)
print(json.dumps(peaks))
"""


def test_peak_memory_does_not_grow_with_depth():
    # Each layer's probabilities are reduced and dropped inside the forward pass, and the block hooks keep only
    # last-token states: from 2 to 8 layers the peak may not grow by the probabilities of two layers (16 MiB),
    # where a path that kept them all would grow by six (48 MiB). Resident memory, in a fresh process.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the resident high-water mark")
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peaks = {int(layers): mib for layers, mib in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    assert peaks[8] - peaks[2] < 16.0, peaks
