"""The README's notebook snippet runs exactly as printed, offline, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet(after: str) -> str:
    """The first python code block of the README after the line `after`."""
    text = README.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after) :], re.S).group(1)


def notebook_snippet() -> str:
    return snippet("In a notebook, on a model you already hold")


def test_the_notebook_snippet_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(notebook_snippet(), str(README), "exec"), namespace)
    assert (tmp_path / "small" / "config.json").is_file() and (tmp_path / "tasks").is_dir()
    assert namespace["small"].config.num_hidden_layers == 4
    assert {row.task for row in namespace["scores"].rows} == {"heldout_ppl", "heldout_mc"}
    assert "| heldout_mc" in capsys.readouterr().out


def tracking_snippet() -> str:
    return snippet("### Watch attention collapse during training")


def test_the_tracking_snippet_runs_as_printed(tmp_path, monkeypatch, capsys):
    from _train_setup import corpus, tiny_config, tokenizer, training_args
    from transformers import GPT2LMHeadModel

    from inheritune_hf.data import pack_dataset

    monkeypatch.chdir(tmp_path)
    config = tiny_config(2)
    config.n_positions = 128  # room for the snippet's 100-token windows
    raw = corpus()
    namespace: dict = {
        "model": GPT2LMHeadModel(config),
        "args": training_args(tmp_path / "out", max_steps=3, eval_strategy="no", save_strategy="no"),
        "train_blocks": pack_dataset(raw["train"], tokenizer(), 128),
        "eval_blocks": pack_dataset(raw["validation"], tokenizer(), 128),
    }
    exec(compile(tracking_snippet(), str(README), "exec"), namespace)
    assert [step for step, _ in namespace["tracker"].history] == [0, 3]
    assert (tmp_path / "attention_history.png").stat().st_size > 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 [")
