"""`inheritune inherit SRC OUT`: a thin front end over the lazy checkpoint slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model
from transformers import AutoModelForCausalLM

from inheritune_hf import checkpoint as checkpoint_module
from inheritune_hf import sources
from inheritune_hf.cli import main
from inheritune_hf.inherit import inherit


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    tiny_model("llama").save_pretrained(folder, max_shard_size="10KB")
    return folder


def test_slices_a_folder_and_prints_a_summary(src, tmp_path, capsys):
    assert main(["inherit", str(src), str(tmp_path / "out"), "--num-layers", "2"]) == 0
    assert "inherited 2 of 4 blocks (source layers [0, 1])" in capsys.readouterr().out
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out").state_dict()
    want = inherit(AutoModelForCausalLM.from_pretrained(src), 2).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_dtype_and_shard_size_flags(src, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["inherit", str(src), str(out), "--layers", "0,1,3", "--dtype", "bfloat16", "--max-shard-size", "8KB"])
        == 0
    )
    assert (out / "model.safetensors.index.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and model.config.inheritune["source_layers"] == [0, 1, 3]


def test_hub_id_goes_through_huggingface_hub(src, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "hub_reachable", lambda endpoint: True)  # the Hub is faked below
    monkeypatch.setattr(checkpoint_module, "list_repo_files", lambda repo_id, **kw: [p.name for p in src.iterdir()])
    monkeypatch.setattr(checkpoint_module, "hf_hub_download", lambda repo_id, name, **kw: str(src / name))
    assert main(["inherit", "someone/tiny", str(tmp_path / "out"), "--num-layers", "1"]) == 0
    lineage = json.loads((tmp_path / "out" / "config.json").read_text())["inheritune"]
    assert lineage["source"] == "someone/tiny" and lineage["num_layers"] == 1


def test_pickle_only_checkpoint_is_one_clear_error(src, tmp_path, capsys):
    for path in src.glob("*.safetensors*"):
        path.unlink()
    (src / "pytorch_model.bin").write_bytes(b"not unpickled")
    assert main(["inherit", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inheritune inherit: error:") and "safetensors" in err
    assert not (tmp_path / "out").exists()


def test_layer_count_is_validated_before_any_weights_are_read(src, tmp_path, capsys):
    for path in src.glob("*.safetensors"):
        path.write_bytes(b"garbage")
    assert main(["inherit", str(src), str(tmp_path / "out"), "--num-layers", "9"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_non_empty_output_needs_overwrite(src, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    assert main(["inherit", str(src), str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["inherit", str(src), str(out), "--overwrite"]) == 0
    assert not (out / "x").exists()


def test_bad_layers_flag(src, tmp_path, capsys):
    assert main(["inherit", str(src), str(tmp_path / "out"), "--layers", "0,x"]) == 2
    # --layers is a list flag like every other (space-separated; commas still split): one line names the bad value
    assert capsys.readouterr().err == "inheritune inherit: error: argument --layers: invalid int value: 'x'\n"
    assert not (tmp_path / "out").exists()
