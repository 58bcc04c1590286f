"""`inherit` on a model in memory refuses, before any work, a reference whose weights it cannot copy.

Meta-device weights, weights offloaded to disk or spread over devices by a `device_map`, and quantized weights
are each refused with one line that names the way out: slicing from the files, `inherit("path", out=...)`.
"""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
from tiny_models import gpt2_config, tiny_model
from transformers import GPT2LMHeadModel

from inheritune_hf import inherit
from inheritune_hf.errors import InherituneError

gpt2 = functools.partial(tiny_model, "gpt2")

WAY_OUT = 'inherit("path/or/hub-id", num_layers=k, out=...)'


def refused(model, match: str) -> str:
    with pytest.raises(InherituneError, match=match) as caught:
        inherit(model, 2)
    message = str(caught.value)
    assert WAY_OUT in message and "\n" not in message
    return message


def test_a_reference_built_on_the_meta_device_is_refused():
    with torch.device("meta"):
        model = GPT2LMHeadModel(gpt2_config(4))
    refused(model, "meta device")


def test_a_reference_with_weights_offloaded_to_disk_is_refused(tmp_path):
    gpt2().save_pretrained(tmp_path / "reference")
    device_map = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.ln_f": "cpu", "lm_head": "cpu"}
    device_map |= {f"transformer.h.{i}": "cpu" if i < 2 else "disk" for i in range(4)}
    model = GPT2LMHeadModel.from_pretrained(
        tmp_path / "reference", device_map=device_map, offload_folder=str(tmp_path / "offload")
    )
    assert "disk" in set(model.hf_device_map.values())  # really offloaded: the case the check must catch
    refused(model, "offloaded weights to disk")


def test_a_reference_spread_over_devices_is_refused():
    # No second device on a CPU machine: the map as accelerate's dispatch would leave it on two GPUs.
    model = gpt2()
    model.hf_device_map = {"transformer.wte": 0, "transformer.h": 1, "lm_head": 0}
    assert "0, 1" in refused(model, "spread over several devices")


def test_a_reference_on_one_device_by_a_device_map_is_sliced():
    model = gpt2()
    model.hf_device_map = {"": "cpu"}
    assert inherit(model, 2).config.num_hidden_layers == 2


@pytest.mark.parametrize("attribute", ["hf_quantizer", "is_quantized"])
def test_a_quantized_reference_is_refused(attribute):
    # No quantization backend installs offline on CPU; transformers marks a quantized model with these two.
    model = gpt2()
    setattr(model, attribute, object() if attribute == "hf_quantizer" else True)
    refused(model, "quantized")


def test_refusal_comes_before_any_work(monkeypatch):
    module = importlib.import_module("inheritune_hf.inherit")  # the module: the package's `inherit` is the function

    def must_not_run(*args, **kwargs):
        raise AssertionError("inherit did work before refusing")

    monkeypatch.setattr(module, "find_decoder_layers", must_not_run)
    model = gpt2()
    model.is_quantized = True
    refused(model, "quantized")
