"""A model's source is told apart before anything loads: a mistyped path is refused as a path at once, and a Hub
repo id is tried once when the Hub cannot be reached (no minute of retries)."""

from __future__ import annotations

import socket
import time

import huggingface_hub
import pytest
from huggingface_hub import constants

from inheritune_hf import sources
from inheritune_hf.cli import main
from inheritune_hf.errors import CheckpointError
from inheritune_hf.sources import check_source, hub_reachable, looks_like_path


@pytest.mark.parametrize(
    ("name", "is_path"),
    [
        ("./reference", True),
        ("../reference", True),
        ("/models/reference", True),
        ("~/reference", True),
        ("runs/out/model", True),  # two slashes: no repo id has them
        ("reference/", True),
        ("my models/ref", True),  # a space: no repo id has one
        ("openai-community/gpt2", False),
        ("gpt2", False),
        ("EleutherAI/pythia-70m", False),
    ],
)
def test_what_looks_like_a_path(name, is_path):
    assert looks_like_path(name) is is_path


def test_org_name_under_an_existing_folder_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_like_path("runs/reference")
    (tmp_path / "runs").mkdir()
    assert looks_like_path("runs/reference")  # runs/ is here: the user meant a folder in it


def test_a_missing_path_is_refused_with_the_closest_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reference").mkdir()
    with pytest.raises(
        CheckpointError, match=r"^--reference_model ./refrence: no such file or folder; did you mean ./reference\?$"
    ):
        check_source("./refrence", "--reference_model")
    with pytest.raises(CheckpointError, match=r"nor is there a folder /no/such"):
        check_source("/no/such/model", "--reference_model")
    assert check_source("reference") == "local"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the block ends: a connection is refused at once


def test_an_unreachable_hub_is_asked_once_and_refused_in_one_line(closed_port, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    start = time.perf_counter()
    with pytest.raises(
        CheckpointError, match=r"^SRC someone/model: no such local folder, and the Hub .* cannot be reached"
    ):
        check_source("someone/model", "SRC")
    assert time.perf_counter() - start < 2 * sources.HUB_PROBE_TIMEOUT


def test_a_cached_repo_is_read_offline_when_the_hub_cannot_be_reached(closed_port, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    cached = tmp_path / "config.json"
    cached.write_text("{}")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, filename, **k: str(cached))
    assert check_source("someone/model") == "hub"
    assert constants.HF_HUB_OFFLINE is True  # later loads go to the cache without retrying the Hub


def test_hub_reachable_sees_a_listening_server():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_reachable(f"http://127.0.0.1:{server.getsockname()[1]}")


def test_inherit_refuses_a_mistyped_folder_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert main(["inherit", "runs/reference", "out", "--num_layers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "inheritune inherit: error: SRC runs/reference: no such file or folder. Check the path."
    assert not (tmp_path / "out").exists()
