"""`inherit` and `inherit_config`: the slice is exact, round-trips, generates, and refuses bad input."""

from __future__ import annotations

import functools

import pytest
import torch
from harness import check_architecture, shrink_sizes, slice_points, tiny_config
from tiny_models import tiny_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)

from inheritune_hf import find_decoder_layers, inherit, inherit_config, valid_num_layers
from inheritune_hf.architecture import block_outputs, depth_keys, meta_model, num_layers_of, on_meta_device
from inheritune_hf.errors import ConfigSliceError, InvalidLayersError, LayerStackNotFoundError, UnsupportedModelError
from inheritune_hf.inherit import NANOGPT_REINIT
from inheritune_hf.slicing import nearest_valid_num_layers, per_layer_fields

gpt2 = functools.partial(tiny_model, "gpt2")
llama = functools.partial(tiny_model, "llama")

MODELS = {"gpt2": gpt2, "llama": llama}
IDS = torch.randint(1, 97, (2, 11), generator=torch.Generator().manual_seed(1))


def run(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, use_cache=False)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_first_k_blocks_reproduce_hidden_states_bit_for_bit(name, k):
    reference = MODELS[name]()
    target = inherit(reference, k).eval()
    ref, out = run(reference), run(target)
    assert target.config.num_hidden_layers == k
    for i in range(k):
        assert torch.equal(out.hidden_states[i], ref.hidden_states[i]), f"hidden state {i}"


@pytest.mark.parametrize("name", MODELS)
def test_full_slice_reproduces_logits_bit_for_bit(name):
    reference = MODELS[name]()
    target = inherit(reference, 4).eval()
    assert torch.equal(run(target).logits, run(reference).logits)


def test_default_is_half_the_reference():
    target = inherit(gpt2(4))
    assert target.config.n_layer == 2
    assert target.config.inheritune["source_layers"] == [0, 1]


def test_reference_is_left_untouched():
    reference = gpt2()
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    inherit(reference, 2, reinit=["blocks", "final_norm"])
    assert reference.config.n_layer == 4
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())


@pytest.mark.parametrize("name", MODELS)
def test_save_and_reload_gives_the_same_logits(name, tmp_path):
    target = inherit(MODELS[name](), 2).eval()
    target.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(run(loaded).logits, run(target).logits)
    assert loaded.config.inheritune == target.config.inheritune


@pytest.mark.parametrize("name", MODELS)
def test_cached_generation_equals_uncached_greedy_decoding(name):
    target = inherit(MODELS[name](), 2).eval()
    prompt = IDS[:1, :3]
    cached = target.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0
    )
    ids = prompt
    for _ in range(8):
        with torch.no_grad():
            next_id = target(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=-1)
    assert torch.equal(cached, ids)


def test_explicit_layers_allow_duplicates_and_renumber_layer_idx():
    reference = llama(4)
    target = inherit(reference, layers=[0, 1, 0, 1])
    blocks = find_decoder_layers(target).layers
    assert [block.self_attn.layer_idx for block in blocks] == [0, 1, 2, 3]
    source = find_decoder_layers(reference).layers
    for new, old in enumerate([0, 1, 0, 1]):
        for (name, got), want in zip(blocks[new].state_dict().items(), source[old].state_dict().values(), strict=True):
            assert torch.equal(got, want), name
    # copies, not shared storage: training one duplicate must not move the other
    assert blocks[0].mlp.up_proj.weight.data_ptr() != blocks[2].mlp.up_proj.weight.data_ptr()


def test_tied_embeddings_stay_tied():
    target = inherit(llama(4, tie_word_embeddings=True), 2)
    assert target.lm_head.weight is target.model.embed_tokens.weight
    target = inherit(gpt2(), 2)
    assert target.lm_head.weight is target.transformer.wte.weight


def test_nanogpt_reinit_resets_position_embeddings_and_final_norm_only():
    reference = gpt2()
    with torch.no_grad():
        reference.transformer.ln_f.weight.fill_(3.0)
    torch.manual_seed(5)
    target = inherit(reference, 2, reinit=NANOGPT_REINIT)
    assert target.config.inheritune["reinitialized"] == ["transformer.wpe", "transformer.ln_f"]
    assert torch.equal(target.transformer.ln_f.weight, torch.ones(32))  # GPT-2's own init for a LayerNorm
    assert not torch.equal(target.transformer.wpe.weight, reference.transformer.wpe.weight)
    assert torch.equal(target.transformer.wte.weight, reference.transformer.wte.weight)
    assert torch.equal(target.transformer.h[1].attn.c_attn.weight, reference.transformer.h[1].attn.c_attn.weight)


def test_reinit_of_a_part_the_model_lacks_is_skipped():
    target = inherit(llama(), 2, reinit=["position_embeddings"])  # RoPE: nothing to reset
    assert target.config.inheritune["reinitialized"] == []


def test_reinit_layers_resets_only_those_blocks():
    reference = llama()
    target = inherit(reference, 2, reinit_layers=[1])
    assert torch.equal(target.model.layers[0].mlp.up_proj.weight, reference.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(target.model.layers[1].mlp.up_proj.weight, reference.model.layers[1].mlp.up_proj.weight)


def test_random_init_baseline_copies_nothing():
    reference = llama()
    target = inherit(reference, 2, random_init=True)
    assert target.config.num_hidden_layers == 2
    assert target.config.inheritune["random_init"] is True
    ref_state = reference.state_dict()
    for name, tensor in target.state_dict().items():
        if tensor.numel() > 1 and tensor.std() > 0:  # norms start at ones in both
            assert not torch.equal(tensor, ref_state[name]), name


def test_lineage_records_source_and_choices():
    reference = gpt2()
    reference.config._name_or_path = "org/reference"
    lineage = inherit(reference, layers=[0, 2]).config.inheritune
    assert lineage["source"] == "org/reference"
    assert lineage["source_layers"] == [0, 2]
    assert lineage["source_num_layers"] == 4
    assert lineage["num_layers"] == 2


# ---- inherit_config: rebuilt, never patched; per-layer fields found by shape -------------------------------


def test_inherit_config_slices_layer_types_and_does_not_touch_the_original():
    config = tiny_config("gemma3_text", num_layers=4)
    config = type(config).from_dict({**config.to_dict(), "layer_types": ["sliding_attention", "full_attention"] * 2})
    new = inherit_config(config, [1, 2])
    assert new.num_hidden_layers == 2
    assert new.layer_types == ["full_attention", "sliding_attention"]
    assert config.num_hidden_layers == 4 and len(config.layer_types) == 4


def test_inherit_config_slices_no_rope_layers():
    config = tiny_config("smollm3", num_layers=4)
    config = type(config).from_dict({**config.to_dict(), "no_rope_layers": [1, 0, 1, 1]})
    assert inherit_config(config, [1, 3]).no_rope_layers == [0, 1]


def test_inherit_config_clamps_leading_block_counts():
    config = AutoConfig.for_model("qwen2", num_hidden_layers=8, max_window_layers=6)
    assert inherit_config(config, 4).max_window_layers == 4
    config = AutoConfig.for_model("deepseek_v3", num_hidden_layers=8, first_k_dense_replace=3)
    assert inherit_config(config, 2).first_k_dense_replace == 2
    assert inherit_config(config, 5).first_k_dense_replace == 3


def test_inherit_config_remaps_lists_of_block_indices():
    config = AutoConfig.for_model("qwen2_moe", num_hidden_layers=8, mlp_only_layers=[1, 5])
    assert inherit_config(config, [0, 1, 5]).mlp_only_layers == [1, 2]


def test_inherit_config_refuses_an_order_a_threshold_cannot_express():
    config = AutoConfig.for_model("deepseek_v3", num_hidden_layers=8, first_k_dense_replace=3)
    with pytest.raises(ConfigSliceError, match="first_k_dense_replace"):
        inherit_config(config, [5, 0])


def test_inherit_config_rebuilds_the_text_config_of_a_composite_config():
    config = AutoConfig.for_model("gemma3")
    new = inherit_config(config, 3)
    assert new.text_config.num_hidden_layers == 3 and len(new.text_config.layer_types) == 3
    assert new.vision_config.num_hidden_layers == config.vision_config.num_hidden_layers


def test_a_rewritten_layer_pattern_is_refused_with_the_k_that_slice():
    config = tiny_config("gemma4_text", num_layers=12)  # 5 sliding + 1 full, twice; the class forces the last full
    assert valid_num_layers(config) == [6, 12]
    with pytest.raises(ConfigSliceError, match=r"k in \[6, 12\]; the nearest to 4 is 6"):
        inherit_config(config, 4)
    assert [nearest_valid_num_layers(config, k) for k in (1, 6, 8, 9, 10, 12)] == [6, 6, 6, 12, 12, 12]


def test_valid_num_layers_is_every_k_for_an_unconstrained_pattern():
    assert valid_num_layers(tiny_config("gemma3_text", num_layers=6)) == [1, 2, 3, 4, 5, 6]
    assert nearest_valid_num_layers(tiny_config("llama", num_layers=6), 4) == 4


def test_a_count_of_trailing_blocks_shrinks_with_the_cut_tail():
    config = tiny_config("gemma3n_text", num_layers=12)  # blocks 10 and 11 reuse earlier blocks' KV caches
    assert config.num_kv_shared_layers == 2
    assert per_layer_fields(config)["num_kv_shared_layers"] == "trailing"
    assert [inherit_config(config, k).num_kv_shared_layers for k in (12, 11, 10, 6)] == [2, 1, 0, 0]
    assert inherit_config(config, [*range(10), 11]).num_kv_shared_layers == 1
    with pytest.raises(ConfigSliceError, match="num_kv_shared_layers"):
        inherit_config(config, [*range(9), 10])  # keeps shared block 10 without block 9 before it


def test_a_trailing_cut_keeps_the_kept_shared_block_exact():
    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(tiny_config("gemma3n_text", num_layers=12)).eval()
    target = inherit(reference, 11).eval()
    assert target.config.num_kv_shared_layers == 1
    outputs = []
    for model in (reference, target):  # block 10 reads the KV cache of an earlier block; its output is pre-norm
        find_decoder_layers(model).layers[10].register_forward_hook(lambda m, args, out: outputs.append(out))
    ref, out = run(reference), run(target)
    for i in range(11):
        assert torch.equal(out.hidden_states[i], ref.hidden_states[i]), f"hidden state {i}"
    want, got = (o[0] if isinstance(o, tuple) else o for o in outputs)
    assert torch.equal(got, want)


def test_the_depth_field_is_the_one_the_block_stack_is_built_from():
    xlstm = AutoConfig.for_model("xlstm")  # builds `num_blocks` blocks; also stores num_hidden_layers
    assert depth_keys(xlstm) == ["num_hidden_layers", "num_blocks"]
    sliced = inherit_config(xlstm, 3)
    assert (sliced.num_blocks, sliced.num_hidden_layers) == (3, 3)
    longcat = AutoConfig.for_model("longcat_flash")  # num_hidden_layers is a read-only 2 * num_layers
    assert depth_keys(longcat) == ["num_layers"] and num_layers_of(longcat) == 28
    assert inherit_config(longcat, 4).num_layers == 4


def test_a_depth_dependent_residual_scale_is_rescaled_so_the_blocks_stay_bit_exact():
    # MiniCPM3 scales each residual branch by scale_depth / sqrt(num_hidden_layers).
    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(tiny_config("minicpm3", num_layers=6)).eval()
    target = inherit(reference, 3).eval()
    assert target.config.scale_depth != reference.config.scale_depth
    ref_blocks, blocks = find_decoder_layers(reference).layers, find_decoder_layers(target).layers
    assert [b.residual_scale for b in blocks] == [b.residual_scale for b in ref_blocks[:3]]  # equal to the bit
    ref, out = run(reference), run(target)
    for i in range(3):  # the last hidden state is taken after the final norm
        assert torch.equal(out.hidden_states[i], ref.hidden_states[i]), f"hidden state {i}"


def test_slice_points_cut_inside_the_per_layer_patterns():
    # 12 blocks of gemma3n: layer_types repeats every 5 blocks, the last 2 share KV caches: 11 cuts inside both.
    assert slice_points(tiny_config("gemma3n_text", num_layers=12))[0] == 11


# ---- bad input: a clear error before any work -----------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 5])
def test_layer_count_out_of_range(k):
    with pytest.raises(InvalidLayersError, match="out of range"):
        inherit(gpt2(4), k)


def test_layer_count_must_be_an_integer():
    with pytest.raises(InvalidLayersError, match="integer"):
        inherit(gpt2(4), 2.0)


@pytest.mark.parametrize("layers", [[0, 4], [-1], []])
def test_layer_index_out_of_range(layers):
    with pytest.raises(InvalidLayersError):
        inherit(gpt2(4), layers=layers)


def test_num_layers_and_layers_together_is_ambiguous():
    with pytest.raises(InvalidLayersError, match="not both"):
        inherit(gpt2(4), 2, layers=[0, 1])


def test_unknown_reinit_part():
    with pytest.raises(InvalidLayersError, match="Unknown reinit"):
        inherit(gpt2(4), 2, reinit=["attention"])


def test_reinit_of_a_tied_head_is_refused():
    with pytest.raises(InvalidLayersError, match="tied"):
        inherit(gpt2(4), 2, reinit=["lm_head"])


def test_encoder_decoder_is_refused():
    model = BartForConditionalGeneration(
        BartConfig(
            d_model=16, encoder_layers=2, decoder_layers=2, vocab_size=50, encoder_ffn_dim=16, decoder_ffn_dim=16
        )
    )
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        inherit(model, 1)


def test_encoder_only_is_refused():
    model = BertForMaskedLM(
        BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, vocab_size=50)
    )
    with pytest.raises(UnsupportedModelError):
        inherit(model, 1)


class _NoStackConfig(PretrainedConfig):
    model_type = "no_stack_test"

    def __init__(self, num_hidden_layers: int = 2, **kwargs):
        self.num_hidden_layers = num_hidden_layers
        super().__init__(**kwargs)


class NoStackForCausalLM(PreTrainedModel):
    config_class = _NoStackConfig

    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))  # not a ModuleList of blocks
        self.post_init()


def test_model_without_a_findable_block_stack():
    with pytest.raises(LayerStackNotFoundError, match="nn.ModuleList of length 2"):
        inherit(NoStackForCausalLM(_NoStackConfig()), 1)


def test_not_a_transformers_model():
    with pytest.raises(UnsupportedModelError, match="PreTrainedModel"):
        inherit(nn.Linear(2, 2), 1)


# ---- the registry: a representative set in CI, all of it in `make sweep` -----------------------------------

CI_ARCHITECTURES = [
    "gpt2",
    "gpt_neox",
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "qwen3_moe",
    "gemma2",
    "gemma3_text",
    "gemma4_text",
    "phi3",
    "olmo2",
    "smollm3",
    "deepseek_v3",
    "falcon",
    "opt",
    "bloom",
    "minicpm3",
]


@pytest.mark.parametrize("model_type", CI_ARCHITECTURES)
def test_architecture_slices_exactly_round_trips_and_generates(model_type):
    result = check_architecture(model_type)
    assert result.status == "pass", result.reason


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma3_text"])
def test_meta_builds_skip_inits_yet_build_what_from_config_builds(model_type):
    config = tiny_config(model_type)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config)
    fast = meta_model(config)
    shapes = {name: p.shape for name, p in plain.named_parameters()}
    assert {name: p.shape for name, p in fast.named_parameters()} == shapes  # tied parameters once in both
    tied = plain.get_input_embeddings().weight is plain.get_output_embeddings().weight
    assert (fast.get_input_embeddings().weight is fast.get_output_embeddings().weight) == tied
    normal = torch.nn.init.normal_
    with pytest.raises(RuntimeError), on_meta_device():
        assert torch.nn.init.normal_ is not normal
        raise RuntimeError("a build that fails")
    assert torch.nn.init.normal_ is normal  # restored, also after a failure
    weight = torch.nn.init.normal_(torch.zeros(64), std=1.0)
    assert weight.abs().sum() > 0  # real initialisation works again outside


def test_runtime_flags_on_the_reference_do_not_block_slicing():
    reference = gpt2()
    reference.activation_checkpointing_enable()
    target = inherit(reference, 2).eval()
    assert torch.equal(run(target).hidden_states[1], run(reference.eval()).hidden_states[1])


# ---- regressions of the sweep's generic fixes --------------------------------------------------------------------


def _tiny(model_type: str) -> PreTrainedModel:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()


def test_block_outputs_compare_a_non_prefix_selection_whatever_the_hidden_state_layout():
    # Mamba lists each block's *output* as hidden state i (no embeddings first), so hidden state k-1 of
    # layers=[0, .., k-2, k] is block k's output and differs by construction; the block outputs do not.
    reference = _tiny("mamba")
    target = inherit(reference, layers=[0, 1, 3]).eval()
    ids = IDS.remainder(reference.config.vocab_size)
    want, got = block_outputs(reference, ids), block_outputs(target, ids)
    assert [torch.equal(got[i], want[i]) for i in range(2)] == [True, True]
    assert not torch.equal(run(target, ids).hidden_states[2], run(reference, ids).hidden_states[2])


def test_tiny_config_rederives_values_the_class_derives_from_shrunk_fields():
    # bailing_hybrid copies head_dim and num_attention_heads into linear_head_dim / linear_num_heads; passed
    # back from the default config they stayed 128 and 32, and one forward pass took 13 s instead of 0.1 s.
    config = tiny_config("bailing_hybrid")
    assert (config.linear_head_dim, config.linear_num_heads) == (config.head_dim, config.num_attention_heads) == (8, 4)


def test_tiny_config_keeps_zero_sizes_off_and_mamba2_heads_consistent():
    shrunk = shrink_sizes({"hidden_size": 4096, "hidden_size_per_layer_input": 0, "n_shared_experts": 0})
    assert shrunk == {"hidden_size": 64, "hidden_size_per_layer_input": 0, "n_shared_experts": 0}
    config = tiny_config("mamba2")
    assert config.num_heads * config.head_dim == config.expand * config.hidden_size == 64


def test_target_block_with_an_extra_fresh_parameter_is_exact_when_the_forward_pass_says_so():
    # GPT-NeoX-Japanese gives only its last block an output bias (zero at init): the prefix's last block has it
    # and the source block has not; the bias keeps its fresh init and every block output stays bit for bit equal.
    reference = _tiny("gpt_neox_japanese")
    target = inherit(reference, 3).eval()
    ids = IDS.remainder(reference.config.vocab_size)
    assert torch.count_nonzero(find_decoder_layers(target).layers[2].attention.dense_bias) == 0
    want, got = block_outputs(reference, ids), block_outputs(target, ids)
    assert all(torch.equal(got[i], want[i]) for i in range(3))


def test_an_extra_parameter_that_changes_the_output_is_refused(monkeypatch):
    from transformers.models.gpt_neox_japanese import modeling_gpt_neox_japanese as japanese

    reference = _tiny("gpt_neox_japanese")
    original = japanese.GPTNeoXJapanesePreTrainedModel._init_weights

    def nonzero_bias(self, module):
        original(self, module)
        if getattr(module, "dense_bias", None) is not None:
            module.dense_bias.data.fill_(0.5)

    monkeypatch.setattr(japanese.GPTNeoXJapanesePreTrainedModel, "_init_weights", nonzero_bias)
    with pytest.raises(ConfigSliceError, match="block 2 output"):
        inherit(reference, 3)
