"""Lazy `inherit` from a checkpoint folder or Hub id: equal to in-memory `inherit`, streams, refuses bad input."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from harness import tiny_config
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import tiny_model
from transformers import AutoModelForCausalLM, T5Config

from inheritune_hf import checkpoint as checkpoint_module
from inheritune_hf import sources
from inheritune_hf.checkpoint import inherit_checkpoint, plan_inherit, read_safetensors_header
from inheritune_hf.errors import CheckpointError, InvalidLayersError, OutputExistsError, UnsupportedModelError
from inheritune_hf.inherit import NANOGPT_REINIT, inherit

gpt2 = functools.partial(tiny_model, "gpt2")
llama = functools.partial(tiny_model, "llama")


def save(model, folder: Path, max_shard_size: str | int = "50GB") -> Path:
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    return folder


@pytest.fixture
def sharded_llama(tmp_path) -> Path:
    """A 4-block llama saved in shards of ~10 KB, so each block spans its own files."""
    return save(llama(), tmp_path / "llama", max_shard_size="10KB")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name


def in_memory(folder: Path, *args, **kwargs):
    return inherit(AutoModelForCausalLM.from_pretrained(folder), *args, **kwargs)


def tensor_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def assert_nothing_left(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---- the slice equals in-memory inherit ------------------------------------------------------------------


def test_sharded_llama_slice_equals_in_memory_inherit_bit_for_bit(sharded_llama, tmp_path):
    assert len(tensor_files(sharded_llama)) > 4
    out = inherit(sharded_llama, 2, out=tmp_path / "out")
    assert out == tmp_path / "out"
    assert_same_weights(weights(out), in_memory(sharded_llama, 2).state_dict())


def test_tied_gpt2_slice_equals_in_memory_inherit_and_stays_tied(tmp_path):
    src = save(gpt2(), tmp_path / "gpt2")
    assert not any("lm_head" in name for name in load_file(src / "model.safetensors"))
    out = inherit(src, 2, out=tmp_path / "out")
    assert not any("lm_head" in name for name in load_file(out / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert_same_weights(model.state_dict(), in_memory(src, 2).state_dict())


def test_explicit_layers_with_duplicates_equal_in_memory_inherit(sharded_llama, tmp_path):
    out = inherit(sharded_llama, layers=[0, 3, 3], out=tmp_path / "out")
    assert_same_weights(weights(out), in_memory(sharded_llama, layers=[0, 3, 3]).state_dict())


def test_lineage_is_the_in_memory_lineage_with_the_path_as_source(sharded_llama, tmp_path):
    out = inherit(sharded_llama, layers=[0, 2], out=tmp_path / "out")
    lazy = json.loads((out / "config.json").read_text())["inheritune"]
    memory = in_memory(sharded_llama, layers=[0, 2]).config.inheritune
    assert lazy == {**memory, "source": str(sharded_llama)}
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def test_without_out_the_target_is_returned_loaded(sharded_llama):
    model = inherit(sharded_llama, 3)
    assert model.config.num_hidden_layers == 3
    assert_same_weights(model.state_dict(), in_memory(sharded_llama, 3).state_dict())


@pytest.mark.parametrize("model_type", ["mixtral", "gemma3_text", "deepseek_v3"])
def test_other_architectures_slice_exactly(model_type, tmp_path):
    torch.manual_seed(0)
    src = save(AutoModelForCausalLM.from_config(tiny_config(model_type)), tmp_path / "src", max_shard_size="200KB")
    out = inherit(src, 2, out=tmp_path / "out")
    assert_same_weights(weights(out), in_memory(src, 2).state_dict())


def test_a_depth_dependent_scale_is_rescaled_from_disk_too(tmp_path):
    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(tiny_config("minicpm3", num_layers=6)).eval()
    src = save(reference, tmp_path / "src")
    target = AutoModelForCausalLM.from_pretrained(inherit(src, 3, out=tmp_path / "out")).eval()
    assert target.config.scale_depth == in_memory(src, 3).config.scale_depth != reference.config.scale_depth
    ids = torch.randint(0, 100, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(input_ids=ids, output_hidden_states=True).hidden_states
        got = target(input_ids=ids, output_hidden_states=True).hidden_states
    assert all(torch.equal(got[i], want[i]) for i in range(3))  # the last is after the final norm


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_type", ["gpt_neox", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "phi3", "olmo2"]
)
def test_more_architectures_slice_exactly(model_type, tmp_path):
    test_other_architectures_slice_exactly(model_type, tmp_path)


# ---- dtype, shards, companions ---------------------------------------------------------------------------


def test_dtype_is_kept_by_default(tmp_path):
    src = save(llama().to(torch.bfloat16), tmp_path / "src")
    out = inherit(src, 2, out=tmp_path / "out")
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_dtype_cast_equals_loading_the_reference_in_that_dtype(sharded_llama, tmp_path):
    out = inherit(sharded_llama, 2, out=tmp_path / "out", dtype="bfloat16")
    reference = AutoModelForCausalLM.from_pretrained(sharded_llama, dtype=torch.bfloat16)
    assert_same_weights(weights(out), inherit(reference, 2).state_dict())
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_output_shards_respect_the_cap_and_the_index_lists_every_tensor(sharded_llama, tmp_path):
    cap = 12_000
    out = inherit(sharded_llama, 2, out=tmp_path / "out", max_shard_size=cap)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = tensor_files(out)
    assert len(shards) > 1 and set(index["weight_map"].values()) == {p.name for p in shards}
    total = 0
    for shard in shards:
        tensors = load_file(shard)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert nbytes <= cap or len(tensors) == 1
        assert all(index["weight_map"][name] == shard.name for name in tensors)
        total += nbytes
    assert index["metadata"]["total_size"] == total


def test_a_small_target_gets_a_single_file_and_no_index(sharded_llama, tmp_path):
    out = inherit(sharded_llama, 1, out=tmp_path / "out")
    assert [p.name for p in tensor_files(out)] == ["model.safetensors"]
    assert not (out / "model.safetensors.index.json").exists()


def test_written_files_follow_the_safetensors_layout(sharded_llama, tmp_path):
    out = inherit(sharded_llama, 2, out=tmp_path / "out")
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
    header = read_safetensors_header(out / "model.safetensors")
    assert (min(t.start for t in header.values()) % 8) == 0


def test_tokenizer_and_generation_files_travel_but_the_readme_does_not(sharded_llama, tmp_path):
    (sharded_llama / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    (sharded_llama / "special_tokens_map.json").write_text("{}")
    (sharded_llama / "README.md").write_text("# the reference's card")
    out = inherit(sharded_llama, 2, out=tmp_path / "out")
    for name in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        assert (out / name).read_bytes() == (sharded_llama / name).read_bytes()
    assert not (out / "README.md").exists()


# ---- what is read and what is dropped --------------------------------------------------------------------


def test_shards_holding_only_unused_blocks_are_never_opened(sharded_llama, tmp_path):
    index = json.loads((sharded_llama / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {file for name, file in index.items() if ".layers." not in name or ".layers.0." in name}
    for file in set(index.values()) - needed:
        (sharded_llama / file).unlink()
    out = inherit(sharded_llama, 1, out=tmp_path / "out")
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1


def test_blocks_past_num_hidden_layers_and_unknown_tensors_are_dropped_with_a_note(tmp_path, caplog):
    src = save(llama(), tmp_path / "src")
    tensors = load_file(src / "model.safetensors")
    tensors["model.layers.4.eh_proj.weight"] = torch.ones(4, 4)  # a multi-token-prediction block
    tensors["mtp.head.weight"] = torch.ones(2)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="inheritune_hf.checkpoint"):
        out = inherit(src, 2, out=tmp_path / "out")
    names = set(load_file(out / "model.safetensors"))
    assert "mtp.head.weight" not in names and not any("eh_proj" in name for name in names)
    assert "model.layers.4.eh_proj.weight" in caplog.text and "mtp.head.weight" in caplog.text
    assert_same_weights(weights(out), in_memory(src, 2).state_dict())


def test_hub_id_downloads_config_index_and_only_the_needed_shards(sharded_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda endpoint: True)  # the Hub is faked below
    requested = []

    def list_repo_files(repo_id, revision=None, token=None):
        assert repo_id == "someone/tiny-llama"
        return sorted(p.name for p in sharded_llama.iterdir())

    def hf_hub_download(repo_id, filename, revision=None, token=None):
        requested.append(filename)
        return str(sharded_llama / filename)

    monkeypatch.setattr(checkpoint_module, "list_repo_files", list_repo_files)
    monkeypatch.setattr(checkpoint_module, "hf_hub_download", hf_hub_download)
    out = inherit("someone/tiny-llama", 1, out=tmp_path / "out")
    index = json.loads((sharded_llama / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {file for name, file in index.items() if ".layers." not in name or ".layers.0." in name}
    shards = {name for name in requested if name.endswith(".safetensors")}
    assert shards == needed and len(needed) < len(set(index.values()))
    assert "config.json" in requested and "model.safetensors.index.json" in requested
    assert json.loads((out / "config.json").read_text())["inheritune"]["source"] == "someone/tiny-llama"
    assert_same_weights(weights(out), in_memory(sharded_llama, 1).state_dict())


def test_offline_hub_id_uses_the_cached_snapshot(sharded_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda endpoint: True)  # the Hub is faked below

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(checkpoint_module, "list_repo_files", unreachable)
    monkeypatch.setattr(checkpoint_module, "hf_hub_download", unreachable)
    monkeypatch.setattr(
        checkpoint_module, "try_to_load_from_cache", lambda repo_id, name, revision=None: str(sharded_llama / name)
    )
    out = inherit("someone/tiny-llama", 2, out=tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["inheritune"]["source"] == "someone/tiny-llama"


def test_unreachable_hub_id_without_a_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda endpoint: True)  # the Hub is faked below

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(checkpoint_module, "list_repo_files", unreachable)
    monkeypatch.setattr(checkpoint_module, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(CheckpointError, match="not a local folder.*network is unreachable"):
        inherit("someone/tiny-llama", 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_plan_reports_the_output_size_before_writing(sharded_llama):
    plan = plan_inherit(sharded_llama, 2)
    expected = in_memory(sharded_llama, 2).state_dict()
    assert plan.nbytes == sum(t.numel() * t.element_size() for t in expected.values())
    assert not (Path.cwd() / "out").exists()


# ---- re-initialisation and the random baseline -----------------------------------------------------------


def test_nanogpt_reinit_matches_in_memory_lineage_and_keeps_the_blocks(tmp_path):
    src = save(gpt2(), tmp_path / "src")
    out = inherit(src, 2, reinit=NANOGPT_REINIT, out=tmp_path / "out")
    memory = in_memory(src, 2, reinit=NANOGPT_REINIT)
    lazy = AutoModelForCausalLM.from_pretrained(out)
    assert lazy.config.inheritune == {**memory.config.inheritune, "source": str(src)}
    plain = in_memory(src, 2).state_dict()
    state = lazy.state_dict()
    assert torch.equal(state["transformer.h.1.attn.c_attn.weight"], plain["transformer.h.1.attn.c_attn.weight"])
    assert not torch.equal(state["transformer.wpe.weight"], plain["transformer.wpe.weight"])


def test_random_init_reads_no_weights(sharded_llama, tmp_path):
    for shard in tensor_files(sharded_llama):
        shard.unlink()
    out = inherit(sharded_llama, 2, random_init=True, out=tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and model.config.inheritune["reinitialized"] == ["all"]


def test_random_init_keeps_the_reference_dtype(tmp_path):
    src = save(llama().to(torch.bfloat16), tmp_path / "src")
    out = inherit(src, 2, random_init=True, out=tmp_path / "out")
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16


# ---- bad input: a clear error and no partial output ------------------------------------------------------


def test_missing_shard(sharded_llama, tmp_path):
    index = json.loads((sharded_llama / "model.safetensors.index.json").read_text())["weight_map"]
    (sharded_llama / index["model.layers.0.mlp.up_proj.weight"]).unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        inherit(sharded_llama, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_truncated_shard(sharded_llama, tmp_path):
    index = json.loads((sharded_llama / "model.safetensors.index.json").read_text())["weight_map"]
    shard = sharded_llama / index["model.layers.1.self_attn.o_proj.weight"]
    os.truncate(shard, shard.stat().st_size - 100)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        inherit(sharded_llama, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_corrupt_header(tmp_path):
    src = save(llama(), tmp_path / "src")
    with open(src / "model.safetensors", "r+b") as f:
        f.seek(8)
        f.write(b"not json at all")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        inherit(src, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_index_that_names_a_tensor_its_shard_lacks(sharded_llama, tmp_path):
    path = sharded_llama / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    name = "model.layers.0.self_attn.q_proj.weight"
    index["weight_map"][name] = next(f for f in index["weight_map"].values() if f != index["weight_map"][name])
    path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not hold"):
        inherit(sharded_llama, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_pickle_only_checkpoint_is_refused_without_unpickling(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    llama().config.save_pretrained(src)
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04 this would run code if unpickled")
    with pytest.raises(CheckpointError, match=r"never unpickles.*save_pretrained"):
        inherit(src, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_unknown_model_type(tmp_path):
    src = save(llama(), tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "not-a-model"}))
    with pytest.raises(CheckpointError, match="Cannot read the config"):
        inherit(src, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_encoder_decoder_config_is_refused(tmp_path):
    src = tmp_path / "src"
    T5Config(num_layers=2, d_model=16, d_ff=32, num_heads=2, d_kv=8, vocab_size=32).save_pretrained(src)
    save_file({"x": torch.zeros(1)}, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnsupportedModelError):
        inherit(src, 1, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_weights_that_do_not_match_the_config_cannot_be_mapped(tmp_path):
    src = save(gpt2(), tmp_path / "src")
    llama().config.save_pretrained(src)  # a llama config over GPT-2 weights
    with pytest.raises(CheckpointError, match="cannot be mapped"):
        inherit(src, 2, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_a_path_that_is_neither_a_folder_nor_a_repo_id(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such file or folder \(nor is there a folder .*/no/such\)"):
        inherit(str(tmp_path / "no" / "such" / "folder"), 2, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_invalid_layer_count_fails_before_any_weights_are_read(sharded_llama, tmp_path):
    for shard in tensor_files(sharded_llama):
        shard.write_bytes(b"garbage")
    with pytest.raises(InvalidLayersError, match="out of range"):
        inherit(sharded_llama, 9, out=tmp_path / "out")
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_non_empty_output_is_refused_before_any_work(sharded_llama, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    monkeypatch.setattr(checkpoint_module, "plan_inherit", lambda *a, **k: pytest.fail("planned"))
    with pytest.raises(OutputExistsError):
        inherit(sharded_llama, 2, out=out)
    assert (out / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_the_output(sharded_llama, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    inherit(sharded_llama, 2, out=out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "config.json").exists()


def test_not_enough_disk_space(sharded_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
    with pytest.raises(CheckpointError, match="free"):
        inherit_checkpoint(sharded_llama, tmp_path / "out", 2)
    assert_nothing_left(tmp_path, tmp_path / "out")


def test_reinit_of_a_tied_head_is_refused_before_reading(tmp_path):
    src = save(gpt2(), tmp_path / "src")
    (src / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InvalidLayersError, match="tied"):
        inherit(src, 2, reinit=["lm_head"], out=tmp_path / "out")


def test_out_is_only_for_checkpoint_sources():
    with pytest.raises(TypeError, match="checkpoint path"):
        inherit(llama(), 2, out="somewhere")
