"""Text sources behave alike in every command: `run` and `analyze` read the same flags with the same defaults, and
an empty, unreadable or missing input gets the same clean line from both, before any model or tokenizer loads."""

from __future__ import annotations

import pytest
from tiny_models import tiny_model

from inheritune_hf.cli import main
from inheritune_hf.data import check_text_source
from inheritune_hf.errors import DataError
from inheritune_hf.settings import AnalyzeArguments, DataArguments


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A model folder with no tokenizer files: a tokenizer must come from --tokenizer_name."""
    folder = tmp_path_factory.mktemp("reference")
    tiny_model("gpt2", 2, vocab_size=300).save_pretrained(folder)
    return folder


def commands(reference, source_flag, source, out):
    return {
        "run": ["run", "--reference_model", str(reference), "--output_dir", str(out), "--dataset_name", source],
        "analyze": ["analyze", str(reference), "--output_dir", str(out), source_flag, source],
    }


@pytest.mark.parametrize("command", ["run", "analyze"])
def test_an_empty_file_gets_one_clean_line_from_every_command(command, reference, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    out = tmp_path / "out"
    flag = "--dataset_name"
    assert main(commands(reference, flag, str(empty), out)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"inheritune {command}: error: {flag} {empty} is empty: there is no text to read."
    assert not out.exists()


def test_analyze_text_file_gets_the_same_line(reference, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["analyze", str(reference), "--output_dir", str(tmp_path / "out"), "--text_file", str(empty)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--text_file {empty} is empty: there is no text to read.")


def test_missing_and_textless_sources(tmp_path):
    with pytest.raises(DataError, match=r"^--dataset_name ./no/such.txt: no such file or folder\.$"):
        check_text_source("./no/such.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="no .txt, .text, .md, .json, .jsonl files in this folder"):
        check_text_source(str(tmp_path / "folder"))
    check_text_source("someone/dataset")  # a Hub name: load_text_dataset says why it cannot be loaded
    check_text_source(None)  # the embedded corpus


def test_run_and_analyze_share_their_text_flags_and_defaults():
    analyze = {name: getattr(AnalyzeArguments(model="m", output_dir="o"), name) for name in SHARED}
    data = {name: getattr(DataArguments(), name) for name in SHARED}
    assert analyze == data


SHARED = ("dataset_name", "dataset_config_name", "dataset_revision", "text_column", "tokenizer_name")


def test_analyze_explains_a_folder_without_a_tokenizer(reference, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 200)
    assert main(["analyze", str(reference), "--text_file", str(text), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--tokenizer_name" in err and "no tokens" not in err
    assert not (tmp_path / "out").exists()


def test_analyze_takes_tokenizer_name(reference, tmp_path):
    from inheritune_hf.data import embedded_corpus, train_tokenizer

    tokenizer = train_tokenizer(embedded_corpus(max_bytes=30_000)["train"], vocab_size=300)
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    text = tmp_path / "text.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 200)
    out = tmp_path / "out"
    argv = ["analyze", str(reference), "--text_file", str(text), "--output_dir", str(out), "--no_plot"]
    assert main([*argv, "--tokenizer_name", str(tmp_path / "tokenizer"), "--num_samples", "2", "--seq_len", "8"]) == 0
    assert (out / "report.json").is_file()
