"""model_card, push_to_hub, publish_run and `inheritune push`, against a Hub-protocol server on 127.0.0.1.

Everything goes through the real `huggingface_hub` client with `endpoint=` (HF_ENDPOINT is read at import, so it
cannot be pointed at the test server afterwards). Loading back uses `snapshot_download(endpoint=...)` into a
folder, then `AutoModelForCausalLM.from_pretrained(folder)` and `ModelCard.load(folder / "README.md")`; the
slow-marked test also loads by repo id in a subprocess started with HF_ENDPOINT set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import HubServer
from huggingface_hub import ModelCard, snapshot_download
from local_tasks import random_model, shared_task_dir, tokenizer
from transformers import AutoModelForCausalLM

from inheritune_hf.errors import CheckpointError, HubError
from inheritune_hf.evaluate import DownstreamResults, evaluate_downstream
from inheritune_hf.publish import (
    CITATION,
    TEMPLATE_PATH,
    final_model_dir,
    model_card,
    publish_run,
    push_to_hub,
    upload_plan,
)

TOKEN = "hf_test_secret_0123456789"
USER = "alice"
LINEAGE = {
    "method": "inheritune",
    "paper": "arXiv:2404.08634",
    "source": "openai-community/gpt2-medium",
    "source_model_type": "gpt2",
    "source_num_layers": 24,
    "source_layers": [0, 1],
    "num_layers": 2,
    "random_init": False,
    "reinitialized": ["transformer.ln_f"],
}
ROUNDS = [
    {"kind": "inheritune", "round": 1, "layers": 12, "strategy": "inherit", "steps": 100, "tokens": 51200,
     "cumulative_tokens": 51200, "val_loss": 3.1, "reference_val_loss": 2.9, "matched": False},
    {"kind": "inheritune", "round": 2, "layers": 14, "strategy": "restart", "steps": 100, "tokens": 51200,
     "cumulative_tokens": 102400, "val_loss": 2.85, "reference_val_loss": 2.9, "matched": True},
    {"kind": "random_baseline", "round": None, "layers": 14, "strategy": "random_init", "steps": 100,
     "tokens": 51200, "cumulative_tokens": 51200, "val_loss": 3.4, "reference_val_loss": 2.9, "matched": False},
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch, tmp_path):
    """No token from the environment or a login file: each test says which token it uses."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={TOKEN: USER}) as server:
        yield server


@pytest.fixture(scope="module")
def model():
    m = random_model(seed=3)
    m.config.inheritune = dict(LINEAGE)  # what `inherit` records, set by hand so this test needs only publish
    return m


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-inheritune")
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    (folder / "attention_rank.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    return folder


@pytest.fixture(scope="module")
def results(model):
    return evaluate_downstream(model, tokenizer(), ["toy_ppl", "toy_mc"], include_path=shared_task_dir())


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def download(hub: HubServer, repo_id: str, dest: Path, revision: str | None = None) -> Path:
    return Path(snapshot_download(repo_id, endpoint=hub.url, token=TOKEN, local_dir=dest, revision=revision))


def logits(model, text: str = "the tall cat fish . the shy dog bones .") -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokenizer()(text).input_ids])).logits


# ------------------------------------------------------------------------------------------- model card


def test_card_carries_lineage_rounds_recipe_losses_scores_figures_and_citation(model, results):
    card = model_card(
        model,
        repo_id="alice/tiny",
        rounds=ROUNDS,
        training={"dataset": "Skylion007/openwebtext", "learning_rate": 3e-4, "max_steps": 100},
        results=results,
        figures={"Attention rank per layer": "somewhere/attention_rank.png"},
        license="mit",
    )
    data, text = card.data, card.text
    assert data.base_model == "openai-community/gpt2-medium"
    assert data.license == "mit" and data.datasets == ["Skylion007/openwebtext"]
    assert {"inheritune", "arxiv:2404.08634"} <= set(data.tags) and data.library_name == "transformers"
    assert "| Inherited reference blocks | 0-1 |" in text
    assert "| Reference depth | 24 blocks |" in text and "| Re-initialised | transformer.ln_f |" in text
    assert "| 2 | 14 | restart | 100 | 51,200 | 2.8500 | 2.9000 | yes |" in text
    assert "| Inheritune (14 layers) | 2.8500 |" in text and "| reference | 2.9000 |" in text
    assert "| random init (14 layers, same budget) | 3.4000 |" in text
    assert "| learning_rate | 0.0003 |" in text
    assert results.to_markdown() in text
    assert "![Attention rank per layer](attention_rank.png)" in text
    assert CITATION in text


def test_card_round_trips_through_modelcard_load_with_eval_results(model, results, tmp_path):
    card = model_card(model, repo_id="alice/tiny", results=results, license="apache-2.0")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.model_name == "tiny" and loaded.data.license == "apache-2.0"
    assert [(e.dataset_name, e.metric_type, e.metric_value) for e in loaded.data.eval_results] == [
        (r.task, r.metric, r.value) for r in results.rows
    ]
    assert loaded.text == card.text


def test_license_is_inherited_from_a_local_base_models_card(tmp_path):
    base = tmp_path / "reference"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: bigscience-openrail-m\n---\n# ref\n")
    config = random_model().config
    config.inheritune = {**LINEAGE, "source": str(base)}
    card = model_card(config)
    assert card.data.license == "bigscience-openrail-m"
    assert card.data.base_model is None  # a local path is not a Hub id, so it is named in the text only
    assert f"`{base}`" in card.text


def test_the_default_template_ships_inside_the_package():
    from importlib.resources import files

    shipped = files("inheritune_hf.publish").joinpath("templates", "modelcard_template.md")
    assert shipped.is_file() and Path(str(shipped)) == TEMPLATE_PATH
    assert "{{ card_data }}" in shipped.read_text()


def test_a_custom_template_path_renders_the_same_variables_and_metadata(model, results, tmp_path):
    template = tmp_path / "my_card.md"
    template.write_text(
        "---\n{{ card_data }}\n---\n\n# {{ model_name }}, our way\n\n"
        "From {{ source_link }}: blocks {{ inherited_blocks }}, grown through "
        "{% for row in rounds_table %}{{ row[1] }}{% if not loop.last %} -> {% endif %}{% endfor %} layers.\n"
        "{% for model, loss in validation_table %}- {{ model }}: {{ loss }}\n{% endfor %}"
    )
    card = model_card(
        model, repo_id="alice/tiny", rounds=ROUNDS, results=results, license="mit", template_path=template
    )
    assert card.text == (
        "\n# tiny, our way\n\n"
        "From [openai-community/gpt2-medium](https://huggingface.co/openai-community/gpt2-medium): blocks 0-1, "
        "grown through 12 -> 14 layers.\n"
        "- Inheritune (14 layers): 2.8500\n- reference: 2.9000\n- random init (14 layers, same budget): 3.4000\n"
    )
    default = model_card(model, repo_id="alice/tiny", rounds=ROUNDS, results=results, license="mit")
    assert card.data.to_dict() == default.data.to_dict()  # the metadata does not depend on the template
    assert card.data.eval_results == results.to_eval_results()


def test_card_of_a_model_without_lineage_is_still_valid():
    card = model_card(random_model(), license="mit")
    assert card.data.base_model is None and "## Lineage" not in card.text
    assert card.data.eval_results is None


# ------------------------------------------------------------------------------------------- push and load back


def test_push_then_load_gives_identical_logits_and_eval_results(hub, model, model_dir, results, tmp_path):
    card = model_card(model_dir, repo_id=f"{USER}/tiny", results=results, license="mit")
    info = push_to_hub(model_dir, f"{USER}/tiny", card=card, results=results, token=TOKEN, endpoint=hub.url)

    repo = hub.repos[f"{USER}/tiny"]
    assert repo.private  # private by default
    assert info.oid == repo.branches["main"] and len(repo.history()) == 2  # the Hub's initial commit + ours
    assert sorted(repo.files()) == [
        ".gitattributes",
        "README.md",
        "attention_rank.png",
        "config.json",
        "downstream_results.json",
        "generation_config.json",
        "lm_eval_results.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]

    local = download(hub, f"{USER}/tiny", tmp_path / "download")
    loaded = AutoModelForCausalLM.from_pretrained(local)
    assert torch.equal(logits(loaded), logits(model))  # bit for bit
    assert loaded.config.inheritune == LINEAGE
    loaded_card = ModelCard.load(local / "README.md")
    assert loaded_card.data.eval_results == results.to_eval_results()
    assert DownstreamResults.load(local).rows == results.rows


def test_rerun_is_safe_unchanged_files_are_skipped_and_a_new_card_is_one_new_commit(hub, model_dir, tmp_path):
    repo_id = f"{USER}/rerun"
    first = push_to_hub(model_dir, repo_id, token=TOKEN, endpoint=hub.url)
    again = push_to_hub(model_dir, repo_id, token=TOKEN, endpoint=hub.url)
    repo = hub.repos[repo_id]
    assert again.oid == first.oid and len(repo.history()) == 2  # nothing changed, nothing committed

    before = repo.files()
    third = push_to_hub(model_dir, repo_id, card="---\nlicense: mit\n---\n# v2\n", token=TOKEN, endpoint=hub.url)
    after = repo.files()
    assert third.oid != first.oid and len(repo.history()) == 3
    assert {p for p in after if after[p] != before.get(p)} == {"README.md"}
    assert after["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


def test_failed_commit_leaves_the_repo_and_the_folder_unchanged_and_a_retry_works(hub, model_dir):
    repo_id = f"{USER}/interrupted"
    push_to_hub(model_dir, repo_id, card="---\nlicense: mit\n---\n# v1\n", token=TOKEN, endpoint=hub.url)
    repo = hub.repos[repo_id]
    head, local = repo.branches["main"], folder_digest(model_dir)

    hub.fail_next("commit", 500)
    with pytest.raises(HubError, match=r"HTTP 500.*previous commit; running the push again is safe"):
        push_to_hub(model_dir, repo_id, card="---\nlicense: mit\n---\n# v2\n", token=TOKEN, endpoint=hub.url)
    assert repo.branches["main"] == head and repo.files()["README.md"].endswith(b"# v1\n")
    assert folder_digest(model_dir) == local

    push_to_hub(model_dir, repo_id, card="---\nlicense: mit\n---\n# v2\n", token=TOKEN, endpoint=hub.url)
    assert repo.files()["README.md"].endswith(b"# v2\n") and len(repo.history()) == 3


@pytest.mark.parametrize("client", ["httpx", "httpx2"])
def test_a_connection_error_of_either_http_client_is_a_clear_error(client, monkeypatch, tmp_path):
    # huggingface_hub 1.x raises httpx's errors, 2.x its fork httpx2's; both may be installed side by side (seen
    # with hub 1.33 beside a leftover httpx2), so whichever is in use must become the one clear HubError.
    import types

    from inheritune_hf.publish.push import _hub_errors

    class TransportError(Exception):
        pass

    class ConnectError(TransportError):
        pass

    monkeypatch.setitem(sys.modules, client, types.SimpleNamespace(TransportError=TransportError))
    with pytest.raises(HubError, match=r"Could not reach the Hub at http://hub\.test while trying to upload"):
        with _hub_errors("http://hub.test", TOKEN, "Upload", tmp_path):
            raise ConnectError("[Errno 111] Connection refused")


def test_unreachable_endpoint_is_a_clear_error_and_a_retry_works(model_dir):
    server = HubServer(tokens={TOKEN: USER}).start()
    server.stop()  # the port is now closed: the endpoint is down
    local = folder_digest(model_dir)
    with pytest.raises(HubError, match=r"Could not reach the Hub at http://127\.0\.0\.1:\d+ .*run the push again"):
        push_to_hub(model_dir, f"{USER}/later", token=TOKEN, endpoint=server.url)
    assert folder_digest(model_dir) == local

    server.start()  # same port, back up
    try:
        push_to_hub(model_dir, f"{USER}/later", token=TOKEN, endpoint=server.url)
        assert "model.safetensors" in server.repos[f"{USER}/later"].files()
    finally:
        server.stop()


def test_push_without_a_token_is_refused_before_any_request(hub, model_dir):
    sent = len(hub.requests)
    with pytest.raises(HubError, match=r"needs a write token.*HF_TOKEN.*hf auth login"):
        push_to_hub(model_dir, f"{USER}/no-token", endpoint=hub.url)
    assert len(hub.requests) == sent and f"{USER}/no-token" not in hub.repos


def test_a_rejected_token_is_a_clear_error_and_creates_nothing(hub, model_dir):
    with pytest.raises(HubError, match=r"HTTP 401.*rejected the token") as err:
        push_to_hub(model_dir, f"{USER}/bad-token", token="hf_not_a_real_token", endpoint=hub.url)
    assert "hf_not_a_real_token" not in str(err.value)
    assert f"{USER}/bad-token" not in hub.repos


def test_the_token_comes_from_hf_token_when_not_passed(hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_to_hub(model_dir, f"{USER}/env-token", endpoint=hub.url)
    assert f"{USER}/env-token" in hub.repos


@pytest.mark.parametrize(
    "repo_id", ["", "alice/", "/tiny", "a/b/c", "alice/tiny model", "-alice/tiny", "alice/ti--ny", "alice/tiny..x"]
)
def test_malformed_repo_ids_are_refused_before_any_request(hub, model_dir, repo_id):
    sent = len(hub.requests)
    with pytest.raises(HubError, match="Malformed repo id"):
        push_to_hub(model_dir, repo_id, token=TOKEN, endpoint=hub.url)
    assert len(hub.requests) == sent


def test_a_name_without_namespace_goes_to_the_token_owner(hub, model_dir):
    info = push_to_hub(model_dir, "no-namespace", token=TOKEN, endpoint=hub.url)
    assert f"{USER}/no-namespace" in hub.repos and f"/{USER}/no-namespace/commit/" in info.commit_url


def test_the_token_is_never_printed_logged_or_uploaded(hub, model, model_dir, results, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    card = model_card(model_dir, repo_id=f"{USER}/secret", results=results, license="mit")
    push_to_hub(model_dir, f"{USER}/secret", card=card, results=results, token=TOKEN, endpoint=hub.url)
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in captured.out and TOKEN not in captured.err
    for commit in hub.repos[f"{USER}/secret"].commits.values():
        assert all(TOKEN.encode() not in content for content in commit.files.values())
    assert hub.seen_headers[-1]["authorization"] == f"Bearer {TOKEN}"  # it was used, only in the header


def test_a_card_containing_the_token_is_refused(hub, model_dir):
    with pytest.raises(HubError, match="README.md contains your Hub token"):
        push_to_hub(model_dir, f"{USER}/leak", card=f"# oops {TOKEN}\n", token=TOKEN, endpoint=hub.url)
    assert f"{USER}/leak" not in hub.repos


def test_a_card_with_metadata_the_hub_rejects_is_a_clear_error_before_upload(hub, model_dir):
    repo_id = f"{USER}/bad-card"
    with pytest.raises(HubError, match=r"was refused: Invalid metadata in README.md"):
        push_to_hub(model_dir, repo_id, card="---\nlicense: [unclosed\n---\n# x\n", token=TOKEN, endpoint=hub.url)
    assert sorted(hub.repos[repo_id].files()) == [".gitattributes"]  # created, but nothing half-uploaded


# ------------------------------------------------------------------------------------------- what is uploaded


def test_pickles_and_trainer_state_are_never_uploaded(model_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in model_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    for name in ("pytorch_model.bin", "optimizer.pt", "training_args.bin", "rng_state.pth", "trainer_state.json"):
        (folder / name).write_bytes(b"pickle")
    (folder / ".hidden").write_text("x")
    plan = upload_plan(folder)
    assert not [p for p in plan if p.endswith((".bin", ".pt", ".pth")) or p.startswith((".", "trainer_state"))]
    assert "model.safetensors" in plan and "README.md" in plan

    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no \.safetensors weights \(only pickles: .*pytorch_model\.bin"):
        upload_plan(folder)


def test_weight_files_the_new_folder_no_longer_has_are_deleted_in_the_same_commit(hub, model_dir, tmp_path):
    repo_id = f"{USER}/reshard"
    old = tmp_path / "old.safetensors"
    old.write_bytes((model_dir / "model.safetensors").read_bytes())
    push_to_hub(model_dir, repo_id, extra_files=[old], token=TOKEN, endpoint=hub.url)
    assert "old.safetensors" in hub.repos[repo_id].files()
    push_to_hub(model_dir, repo_id, token=TOKEN, endpoint=hub.url)
    assert "old.safetensors" not in hub.repos[repo_id].files() and len(hub.repos[repo_id].history()) == 3


def test_resharding_deletes_the_old_shards_and_index_through_delete_patterns_in_one_commit(hub, model_dir, tmp_path):
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for path in model_dir.iterdir():
        if path.name != "model.safetensors":
            (sharded / path.name).write_bytes(path.read_bytes())
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (sharded / name).write_bytes((model_dir / "model.safetensors").read_bytes())
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    notes = tmp_path / "NOTES.md"
    notes.write_text("kept: not a weight file\n")
    repo_id = f"{USER}/resharded"
    push_to_hub(sharded, repo_id, extra_files=[notes], token=TOKEN, endpoint=hub.url)
    repo = hub.repos[repo_id]
    before = repo.files()
    assert {"model-00001-of-00002.safetensors", "model.safetensors.index.json", "NOTES.md"} <= set(before)

    push_to_hub(model_dir, repo_id, token=TOKEN, endpoint=hub.url)
    after = repo.files()
    assert len(repo.history()) == 3  # the initial commit, the sharded push, and one commit that swaps the weights
    assert set(before) - set(after) == {
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    }
    assert after["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert after["NOTES.md"] == before["NOTES.md"] and ".gitattributes" in after


def test_delete_patterns_can_be_widened_or_turned_off(hub, model_dir, tmp_path):
    repo_id = f"{USER}/patterns"
    old = tmp_path / "old.safetensors"
    old.write_bytes(b"stale")
    push_to_hub(model_dir, repo_id, extra_files=[old], token=TOKEN, endpoint=hub.url)
    push_to_hub(model_dir, repo_id, delete_patterns=(), token=TOKEN, endpoint=hub.url)
    assert "old.safetensors" in hub.repos[repo_id].files()  # nothing to delete, nothing changed: no new commit
    assert len(hub.repos[repo_id].history()) == 2

    figure_free = tmp_path / "no-figure"
    figure_free.mkdir()
    for path in model_dir.iterdir():
        if path.suffix != ".png":
            (figure_free / path.name).write_bytes(path.read_bytes())
    push_to_hub(figure_free, repo_id, delete_patterns=["*.png", "*.safetensors"], token=TOKEN, endpoint=hub.url)
    files = hub.repos[repo_id].files()
    assert "attention_rank.png" not in files and "old.safetensors" not in files and "model.safetensors" in files


def test_a_model_in_memory_is_saved_as_safetensors_with_its_tokenizer(hub, model, tmp_path):
    push_to_hub(model, f"{USER}/in-memory", tokenizer=tokenizer(), token=TOKEN, endpoint=hub.url)
    files = hub.repos[f"{USER}/in-memory"].files()
    assert {"model.safetensors", "tokenizer.json", "config.json", "README.md"} <= set(files)
    assert not [p for p in files if p.endswith(".bin")]
    assert b"base_model: openai-community/gpt2-medium" in files["README.md"]  # generated from config.inheritune
    loaded = AutoModelForCausalLM.from_pretrained(download(hub, f"{USER}/in-memory", tmp_path / "dl"))
    assert torch.equal(logits(loaded), logits(model))


def test_revision_pushes_to_a_branch_and_leaves_main(hub, model_dir, tmp_path):
    repo_id = f"{USER}/branched"
    push_to_hub(model_dir, repo_id, card="---\nlicense: mit\n---\n# main\n", token=TOKEN, endpoint=hub.url)
    push_to_hub(
        model_dir, repo_id, card="---\nlicense: mit\n---\n# v1\n", revision="v1", token=TOKEN, endpoint=hub.url
    )
    repo = hub.repos[repo_id]
    assert repo.files("main")["README.md"].endswith(b"# main\n") and repo.files("v1")["README.md"].endswith(b"# v1\n")
    local = download(hub, repo_id, tmp_path / "v1", revision="v1")
    assert (local / "README.md").read_text().endswith("# v1\n")


def test_dry_run_writes_exactly_what_is_then_pushed(hub, model, model_dir, results, tmp_path):
    card = model_card(model_dir, repo_id=f"{USER}/dry", results=results, license="mit")
    sent = len(hub.requests)
    out = push_to_hub(model_dir, f"{USER}/dry", card=card, results=results, endpoint=hub.url, dry_run=tmp_path / "dry")
    assert len(hub.requests) == sent  # no token needed, nothing sent
    push_to_hub(model_dir, f"{USER}/dry", card=card, results=results, token=TOKEN, endpoint=hub.url)
    pushed = {p: c for p, c in hub.repos[f"{USER}/dry"].files().items() if p != ".gitattributes"}
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.iterdir()} == pushed


# ------------------------------------------------------------------------------------------- a run, and the CLI


@pytest.fixture
def run_dir(model_dir, tmp_path):
    run = tmp_path / "run"
    final = run / "round-2-14L" / "model"
    final.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.name != "attention_rank.png":
            (final / path.name).write_bytes(path.read_bytes())
    rows = [dict(r, checkpoint=f"round-{r['round']}-{r['layers']}L/model") for r in ROUNDS if r["round"]]
    rows.append(dict(ROUNDS[2], checkpoint="baseline-14L/model"))
    (run / "rounds.json").write_text(json.dumps(rows))
    training = {"learning_rate": 3e-4, "max_steps": 100, "warmup_steps": 10, "weight_decay": 0.1, "seed": 0}
    (run / "run.json").write_text(json.dumps({"config": {"training": training}, "reference_loss": 2.9}))
    (run / "loss_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 16)
    return run


def test_publish_run_publishes_the_final_round_with_the_scores_it_is_given(hub, run_dir, model, tmp_path):
    model_dir = final_model_dir(run_dir)
    assert model_dir == run_dir / "round-2-14L" / "model"
    final = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    scores = evaluate_downstream(final, tokenizer(), ["toy_mc"], include_path=shared_task_dir())
    out = publish_run(
        run_dir,
        f"{USER}/run",
        results=scores,
        license="mit",
        endpoint=hub.url,
        dry_run=tmp_path / "dry",
    )
    names = sorted(p.name for p in out.iterdir())
    assert {"loss_curves.png", "rounds.json", "model.safetensors", "downstream_results.json", "README.md"} <= set(
        names
    )
    card = ModelCard.load(out / "README.md")
    assert [e.metric_type for e in card.data.eval_results] == ["acc", "acc_norm"]
    assert card.data.base_model == "openai-community/gpt2-medium"
    assert "| random init (14 layers, same budget) | 3.4000 |" in card.text
    assert "![Validation loss against training tokens" in card.text and "| warmup_steps | 10 |" in card.text

    assert DownstreamResults.load(out).rows == scores.rows

    info = publish_run(run_dir, f"{USER}/run", license="mit", token=TOKEN, endpoint=hub.url)
    assert "rounds.json" in hub.repos[f"{USER}/run"].files() and info.oid == hub.repos[f"{USER}/run"].branches["main"]


def test_publish_run_takes_scores_and_never_runs_lm_eval_itself(run_dir, tmp_path, monkeypatch):
    import inheritune_hf.evaluate

    def fail(*args, **kwargs):
        raise AssertionError("publish_run must not evaluate")

    monkeypatch.setattr(inheritune_hf.evaluate, "evaluate_downstream", fail)
    with pytest.raises(TypeError, match="tasks"):
        publish_run(run_dir, f"{USER}/run", tasks=["toy_mc"], dry_run=tmp_path / "dry")  # evaluate first instead
    out = publish_run(run_dir, f"{USER}/run", license="mit", dry_run=tmp_path / "dry")
    assert (
        ModelCard.load(out / "README.md").data.eval_results is None and not (out / "downstream_results.json").exists()
    )


def test_cli_push_dry_run_then_push(hub, model_dir, tmp_path, monkeypatch, capsys):
    from inheritune_hf.cli import main

    out = tmp_path / "cli-dry"
    args = ["push", str(model_dir), f"{USER}/cli", "--dry-run", "--output_dir", str(out), "--license", "mit"]
    assert main(args + ["--endpoint", hub.url]) == 0
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()
    # one action, one line: the library's own record of the write stays at DEBUG under the CLI's narration
    written = [line for line in capsys.readouterr().out.splitlines() if "wrote" in line]
    files = sum(1 for path in out.rglob("*") if path.is_file())
    assert written == [f"dry run: wrote the {files} files that would be pushed to {USER}/cli into {out}"]

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(model_dir), f"{USER}/cli", "--public", "--license", "mit", "--endpoint", hub.url]) == 0
    assert not hub.repos[f"{USER}/cli"].private
    pushed = [line for line in capsys.readouterr().out.splitlines() if "commit" in line or "pushed" in line]
    assert len(pushed) == 1 and pushed[0].startswith(f"pushed to {USER}/cli: {hub.url}/{USER}/cli/commit/")
    assert TOKEN not in capsys.readouterr().out


def test_cli_push_inherits_the_license_of_the_base_model_on_the_hub(hub, model, tmp_path, monkeypatch):
    from inheritune_hf.cli import main

    reference = tmp_path / "reference"
    random_model().save_pretrained(reference)
    (reference / "README.md").write_text("---\nlicense: apache-2.0\n---\n# the reference\n")
    push_to_hub(reference, f"{USER}/reference", token=TOKEN, endpoint=hub.url)

    derived = tmp_path / "derived"
    m = random_model()
    m.config.inheritune = {**LINEAGE, "source": f"{USER}/reference"}
    m.save_pretrained(derived)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(derived), f"{USER}/derived", "--endpoint", hub.url]) == 0
    readme = hub.repos[f"{USER}/derived"].files()["README.md"].decode()
    assert "license: apache-2.0" in readme and f"base_model: {USER}/reference" in readme


def test_cli_push_run_dir_with_tasks_evaluates_the_final_round_then_pushes(hub, run_dir, monkeypatch, capsys):
    from inheritune_hf.cli import main

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = ["push", str(run_dir), f"{USER}/cli-run", "--tasks", "toy_mc", "--include-path", str(shared_task_dir())]
    assert main(args + ["--license", "mit", "--endpoint", hub.url]) == 0
    files = hub.repos[f"{USER}/cli-run"].files()
    card = ModelCard(files["README.md"].decode())
    assert [(e.dataset_name, e.metric_type) for e in card.data.eval_results] == [
        ("toy_mc", "acc"),
        ("toy_mc", "acc_norm"),
    ]
    assert json.loads(files["downstream_results.json"])["rows"][0]["task"] == "toy_mc"
    assert {"rounds.json", "loss_curves.png", "model.safetensors"} <= set(files)
    assert f"pushed to {USER}/cli-run" in capsys.readouterr().out


def test_cli_push_run_dir_takes_the_scores_evaluate_wrote(run_dir, tmp_path, capsys):
    from inheritune_hf.cli import main

    scores = tmp_path / "scores"
    args = ["evaluate", str(run_dir), "--tasks", "toy_mc", "--include-path", str(shared_task_dir())]
    assert main(args + ["--output_dir", str(scores)]) == 0
    out = tmp_path / "dry"
    args = ["push", str(run_dir), f"{USER}/run", "--results", str(scores), "--dry-run", "--output_dir", str(out)]
    assert main(args + ["--license", "mit"]) == 0
    card = ModelCard.load(out / "README.md")
    assert [(e.dataset_name, e.metric_type) for e in card.data.eval_results] == [
        ("toy_mc", "acc"),
        ("toy_mc", "acc_norm"),
    ]
    assert json.loads((out / "downstream_results.json").read_text()) == json.loads(
        (scores / "downstream_results.json").read_text()
    )
    assert {"rounds.json", "loss_curves.png"} <= {path.name for path in out.iterdir()}

    both = ["push", str(run_dir), f"{USER}/run", "--results", str(scores), "--tasks", "toy_mc", "--dry-run"]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, token, message",
    [
        (["--tasks", "toy_mc"], None, "needs a write token"),
        (["--tasks", "no_such_task"], TOKEN, "no_such_task"),
        (["--tasks", "toy_mc"], TOKEN, "Malformed repo id"),
    ],
)
def test_cli_push_with_tasks_checks_every_input_before_evaluating(
    hub, run_dir, monkeypatch, capsys, extra, token, message
):
    import inheritune_hf.evaluate
    from inheritune_hf.cli import main

    def fail(*args, **kwargs):
        raise AssertionError("evaluated before the inputs were checked")

    monkeypatch.setattr(inheritune_hf.evaluate, "evaluate_downstream", fail)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    repo_id = "alice/bad name" if message == "Malformed repo id" else f"{USER}/never"
    args = ["push", str(run_dir), repo_id, *extra, "--include-path", str(shared_task_dir()), "--endpoint", hub.url]
    sent = len(hub.requests)
    assert main(args) == 2
    assert message in capsys.readouterr().err and len(hub.requests) == sent


def test_cli_push_bad_input_exits_2_with_one_clear_line(hub, model_dir, tmp_path, capsys):
    from inheritune_hf.cli import main

    assert main(["push", str(model_dir), "alice/bad name", "--endpoint", hub.url]) == 2
    assert "Malformed repo id" in capsys.readouterr().err
    assert main(["push", str(tmp_path), f"{USER}/x", "--endpoint", hub.url]) == 2
    assert "not a save_pretrained folder" in capsys.readouterr().err
    assert main(["push", str(model_dir), f"{USER}/x", "--endpoint", hub.url]) == 2
    assert "needs a write token" in capsys.readouterr().err


@pytest.mark.slow
def test_from_pretrained_by_repo_id_with_hf_endpoint_in_a_fresh_process(hub, model, model_dir, tmp_path):
    push_to_hub(model_dir, f"{USER}/by-id", token=TOKEN, endpoint=hub.url)
    torch.save(logits(model), tmp_path / "expected.pt")
    code = (
        "import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
        "from huggingface_hub import ModelCard; "
        f"m = AutoModelForCausalLM.from_pretrained('{USER}/by-id'); t = AutoTokenizer.from_pretrained('{USER}/by-id'); "
        "ids = torch.tensor([t('the tall cat fish . the shy dog bones .').input_ids]); "
        f"ok = torch.equal(m(ids).logits, torch.load(r'{tmp_path / 'expected.pt'}')); "
        f"card = ModelCard.load('{USER}/by-id'); sys.exit(0 if ok and card.data.base_model else 1)"
    )
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=300).returncode == 0


def test_the_card_states_its_verdict_and_only_true_sentences(model):
    rows = [
        {"kind": "inheritune", "round": 1, "layers": 2, "val_loss": 3.25, "reference_val_loss": 3.0, "matched": False},
        {
            "kind": "inheritune",
            "round": 2,
            "layers": 4,
            "val_loss": 3.125,
            "reference_val_loss": 3.0,
            "matched": False,
        },
    ]
    text = str(model_card(model, rounds=rows, license="mit", training={"learning_rate": 1.5e-4, "adam_epsilon": 1e-8}))
    assert (
        "**Did not match** the reference's validation loss: the last round (round 2, 4 layers) reached 3.1250" in text
    )
    assert "(+0.1250)" in text and "**Matched**" not in text
    assert "is then trained on the reference's data" in text
    assert "Table 1 compares the same three models" not in text  # no random-init baseline in these rounds
    assert "| learning_rate | 0.00015 |" in text and "| adam_epsilon | 1e-08 |" in text

    matched = [
        {**rows[0], "matched": True, "val_loss": 2.9},
        {"kind": "random_baseline", "layers": 2, "val_loss": 3.4},
    ]
    text = str(model_card(model, rounds=matched, license="mit"))
    assert "**Matched** the reference's validation loss (round 1, 2 layers): 2.9000 against 3.0000." in text
    assert "Table 1 compares the same three models" in text

    sliced_only = str(model_card(model, license="mit"))
    assert "is then trained" not in sliced_only and "Matched" not in sliced_only
