"""Inputs that must never train silently: each is refused before any file is written, with one line that says
what to do. Tiny models are built from configs into temporary folders; nothing touches the network."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from tiny_models import tiny_model
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertLMHeadModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    T5Config,
    T5ForConditionalGeneration,
    TrainingArguments,
)

from inheritune_hf.analyze import analyze_attention
from inheritune_hf.cli import main
from inheritune_hf.data import embedded_corpus, pack_dataset, train_tokenizer
from inheritune_hf.errors import (
    CheckpointError,
    DataError,
    TrainingError,
    UnknownArgumentError,
    UnsupportedModelError,
)
from inheritune_hf.loading import check_block_size, context_length, load_causal_lm
from inheritune_hf.recipe import main as recipe_main
from inheritune_hf.recipe import parse_recipe_args
from inheritune_hf.rounds import run_inheritune
from inheritune_hf.settings import InherituneArguments

VOCAB = 300
CONTEXT = 64
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def gpt2(vocab_size: int = VOCAB) -> GPT2LMHeadModel:
    return tiny_model("gpt2", 2, n_head=2, vocab_size=vocab_size, n_positions=CONTEXT)


def bert_encoder() -> BertLMHeadModel:
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return BertLMHeadModel(config)  # is_decoder=False: a bidirectional encoder with an LM head


def t5() -> T5ForConditionalGeneration:
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    return T5ForConditionalGeneration(config)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Checkpoint folders: a GPT-2 without tokenizer files, the same with only pickle weights, a BERT encoder, a
    T5 encoder-decoder, and a BPE tokenizer of VOCAB tokens trained on a slice of the embedded corpus."""
    root = tmp_path_factory.mktemp("checkpoints")
    found = {name: root / name for name in ("no_tokenizer", "pickle_only", "encoder", "encoder_decoder", "tokenizer")}
    gpt2().save_pretrained(found["no_tokenizer"])
    model = gpt2()
    model.config.save_pretrained(found["pickle_only"])
    torch.save(model.state_dict(), found["pickle_only"] / "pytorch_model.bin")
    bert_encoder().save_pretrained(found["encoder"])
    t5().save_pretrained(found["encoder_decoder"])
    corpus = embedded_corpus(max_bytes=40_000, validation_fraction=0.2)
    tokenizer = train_tokenizer(corpus["train"], vocab_size=VOCAB)
    tokenizer.save_pretrained(found["tokenizer"])
    tokenizer.save_pretrained(found["pickle_only"])  # so that only the weights' format is wrong there
    return found


@pytest.fixture
def out(tmp_path) -> Path:
    """Where a refused command was told to write; the test checks it never appears."""
    return tmp_path / "out"


def run_flags(reference: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--reference_model", str(reference), "--output_dir", str(out), "--corpus_max_bytes", "40000",
        "--validation_fraction", "0.2", "--block_size", "32", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--save_strategy", "no", "--use_cpu", "--report_to", "none", "--no_plot", *extra,
    ]  # fmt: skip


def refused(argv: list[str], capsys) -> str:
    """Run the CLI, assert it exits 2 with exactly one line on stderr, and return that line."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("inheritune ")]
    assert len(lines) == 1, lines
    return lines[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no atomic-write leftovers


# ---------------------------------------------------------------------------------------------------------------
# 1. A tokenizer that encodes the data to nothing, or to ids past the model's vocabulary
# ---------------------------------------------------------------------------------------------------------------


def test_reference_without_tokenizer_files_is_refused_with_pass_tokenizer_name(folders, out, capsys):
    empty = AutoTokenizer.from_pretrained(folders["no_tokenizer"])
    assert empty("def f(): return 1")["input_ids"] == []  # transformers 5's empty tokenizer: the premise
    line = refused(run_flags(folders["no_tokenizer"], out), capsys)
    assert "encodes" in line and "--tokenizer_name" in line
    assert_nothing_written(out)


def test_blocks_of_only_eos_are_refused_by_the_library_loop(folders, out):
    # A library user who packed with the empty tokenizer anyway (no check at packing) gets the same refusal.
    blocks = torch.zeros(8, 32, dtype=torch.long)  # what packing with an empty tokenizer gives: EOS only
    packed = datasets.Dataset.from_dict({"input_ids": blocks.tolist(), "labels": blocks.tolist()}).with_format("torch")
    args = TrainingArguments(output_dir=str(out), max_steps=1, use_cpu=True, report_to="none")
    with pytest.raises(DataError, match="tokenizer_name"):
        run_inheritune(gpt2(), packed, packed, InherituneArguments(), args)
    assert_nothing_written(out)


def test_tokenizer_whose_ids_exceed_the_vocabulary_is_refused(folders, out, capsys):
    small = gpt2(vocab_size=64)
    small.save_pretrained(out.parent / "small_vocab")
    line = refused(run_flags(out.parent / "small_vocab", out, "--tokenizer_name", str(folders["tokenizer"])), capsys)
    assert "outside the model's 64 embeddings" in line and "--tokenizer_name" in line
    assert_nothing_written(out)


def test_packing_checks_the_tokenizer_on_a_sample_before_the_corpus():
    corpus = embedded_corpus(max_bytes=20_000, validation_fraction=0.2)["train"]
    tokenizer = train_tokenizer(corpus, vocab_size=VOCAB)
    with pytest.raises(DataError, match="outside the model's 100 embeddings"):
        pack_dataset(corpus, tokenizer, 32, vocab_size=100)
    assert len(pack_dataset(corpus, tokenizer, 32, vocab_size=VOCAB)) > 0


# ---------------------------------------------------------------------------------------------------------------
# 2. block_size longer than the model's context
# ---------------------------------------------------------------------------------------------------------------


def test_block_size_longer_than_the_context_is_refused(folders, out, capsys):
    argv = run_flags(folders["no_tokenizer"], out, "--tokenizer_name", str(folders["tokenizer"]))
    argv[argv.index("--block_size") + 1] = str(CONTEXT + 1)
    line = refused(argv, capsys)
    assert f"context of {CONTEXT} tokens" in line and f"--block_size to at most {CONTEXT}" in line
    assert_nothing_written(out)


def test_context_is_read_generically_and_large_or_absent_limits_pass():
    assert context_length(GPT2Config(n_positions=CONTEXT)) == CONTEXT  # n_positions, via the attribute map
    long_rope = LlamaConfig(max_position_embeddings=131072)
    assert context_length(long_rope) == 131072
    check_block_size(long_rope, 8192)  # a RoPE model with a large limit: fine
    with pytest.raises(DataError, match="at most 131072"):
        check_block_size(long_rope, 131073)


# ---------------------------------------------------------------------------------------------------------------
# 3. analyze on encoder-only and encoder-decoder models
# ---------------------------------------------------------------------------------------------------------------


def test_analyze_attention_refuses_an_encoder():
    with pytest.raises(UnsupportedModelError, match="bidirectional encoder"):
        analyze_attention(bert_encoder(), input_ids=torch.arange(200) % VOCAB, num_samples=2, seq_len=16)


@pytest.mark.parametrize("kind", ["encoder", "encoder_decoder"])
def test_inheritune_analyze_refuses_encoder_models_before_reading_data(kind, folders, out, capsys):
    missing_text = out.parent / "never-read.txt"  # the model is refused before the text is looked for
    argv = ["analyze", str(folders[kind]), "--text-file", str(missing_text), "--output_dir", str(out), "--no-plot"]
    line = refused(argv, capsys)
    assert "causal LM" in line
    assert_nothing_written(out)


# ---------------------------------------------------------------------------------------------------------------
# 4. run checks the reference before it writes run.json
# ---------------------------------------------------------------------------------------------------------------


def test_run_inheritune_checks_the_reference_before_writing(out):
    ids = torch.randint(1, VOCAB, (8, 16))
    packed = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()}).with_format("torch")
    args = TrainingArguments(output_dir=str(out), max_steps=1, use_cpu=True, report_to="none")
    with pytest.raises(UnsupportedModelError, match="causal LM"):
        run_inheritune(bert_encoder(), packed, packed, InherituneArguments(), args)
    assert_nothing_written(out)  # no run.json, no folder


def test_resume_with_nothing_to_resume_is_refused(out):
    ids = torch.randint(1, VOCAB, (8, 16))
    packed = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()}).with_format("torch")
    args = TrainingArguments(output_dir=str(out), max_steps=1, use_cpu=True, report_to="none")
    with pytest.raises(TrainingError, match="Nothing to resume .* Drop --resume"):
        run_inheritune(gpt2(), packed, packed, InherituneArguments(resume=True), args)
    assert_nothing_written(out)


def test_inheritune_run_refuses_an_encoder_reference_before_writing(folders, out, capsys):
    line = refused(run_flags(folders["encoder"], out, "--tokenizer_name", str(folders["tokenizer"])), capsys)
    assert "causal LM" in line
    assert_nothing_written(out)


# ---------------------------------------------------------------------------------------------------------------
# 5. Pickle weights are never loaded
# ---------------------------------------------------------------------------------------------------------------


def test_load_causal_lm_refuses_pickle_weights_and_names_the_conversion(folders):
    with pytest.raises(CheckpointError, match=r"from_pretrained\(SRC\)\.save_pretrained\(DST\)"):
        load_causal_lm(folders["pickle_only"])
    assert isinstance(load_causal_lm(folders["no_tokenizer"]), GPT2LMHeadModel)


@pytest.mark.parametrize("command", ["run", "analyze", "evaluate"])
def test_commands_refuse_pickle_weights(command, folders, out, capsys, tmp_path):
    pickle_only = str(folders["pickle_only"])
    if command == "run":
        argv = run_flags(folders["pickle_only"], out)
    elif command == "analyze":
        text = tmp_path / "text.txt"
        text.write_text("def f(x):\n    return x + 1\n" * 200)
        argv = ["analyze", pickle_only, "--text-file", str(text), "--output_dir", str(out), "--no-plot"]
    else:
        from local_tasks import shared_task_dir

        argv = ["evaluate", pickle_only, "--tasks", "toy_mc", "--include-path", str(shared_task_dir())]
        argv += ["--output_dir", str(out)]
    line = refused(argv, capsys)
    assert "pickle" in line and "from_pretrained(SRC).save_pretrained(DST)" in line
    assert_nothing_written(out)


# ---------------------------------------------------------------------------------------------------------------
# 6. Mistyped flags and settings name the closest valid one
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, typo, meant",
    [
        (["run", "--output_dir", "x", "--lerning_rate", "1e-4"], "--lerning_rate", "--learning_rate"),
        (
            ["analyze", "m", "--text_file", "t", "--output_dir", "x", "--num_sampels", "4"],
            "--num_sampels",
            "--num_samples",
        ),
        (
            ["analyze", "m", "--text-file", "t", "--output_dir", "x", "--num-sampels", "4"],
            "--num-sampels",
            "--num-samples",
        ),
        (["inherit", "src", "dst", "--num_layres", "2"], "--num_layres", "--num_layers"),
        (["evaluate", "m", "--output_dir", "x", "--num-fewshots", "5"], "--num-fewshots", "--num-fewshot"),
        (["push", "m", "me/repo", "--dryrun"], "--dryrun", "--dry_run"),
    ],
)
def test_a_mistyped_flag_names_the_closest_one(argv, typo, meant, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused(argv, capsys)
    assert line == f"inheritune {argv[0]}: error: unknown flag {typo}; did you mean {meant}?"
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_recipe_flag_names_the_closest_one(tmp_path, capsys):
    with pytest.raises(UnknownArgumentError, match="unknown flag --lerning_rate; did you mean --learning_rate"):
        parse_recipe_args(["--lerning_rate", "1e-4"], RECIPES / "tiny.yaml")
    out = tmp_path / "recipe"
    assert recipe_main(RECIPES / "tiny.yaml", ["--output_dir", str(out), "--smoek"]) == 2
    assert "did you mean --smoke?" in capsys.readouterr().err
    assert_nothing_written(out)


def test_a_mistyped_yaml_key_names_the_closest_one(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("lerning_rate: 1.0e-4\n")
    with pytest.raises(
        UnknownArgumentError, match=r"unknown setting lerning_rate in .*typo.yaml; did you mean learning_rate\?"
    ):
        parse_recipe_args([], config)
    line = refused(["run", str(config), "--output_dir", str(tmp_path / "out")], capsys)
    assert line.endswith("typo.yaml; did you mean learning_rate?") and "lerning_rate" in line
    assert_nothing_written(tmp_path / "out")
