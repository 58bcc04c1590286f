"""The README's notebook snippet runs exactly as printed, offline, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def notebook_snippet() -> str:
    text = README.read_text()
    start = text.index("In a notebook, on a model you already hold")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_notebook_snippet_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(notebook_snippet(), str(README), "exec"), namespace)
    assert (tmp_path / "small" / "config.json").is_file() and (tmp_path / "tasks").is_dir()
    assert namespace["small"].config.num_hidden_layers == 4
    assert {row.task for row in namespace["scores"].rows} == {"heldout_ppl", "heldout_mc"}
    assert "| heldout_mc" in capsys.readouterr().out
