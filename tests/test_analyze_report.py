"""AttentionReport: the paper's per-layer summaries, the layer suggestions, exports, and the CLI."""

import json

import pytest
import torch
from harness import tiny_config
from transformers import GPT2Config, GPT2LMHeadModel

from inheritune_hf import AttentionReport, InherituneError
from inheritune_hf.cli import main
from inheritune_hf.data import train_tokenizer
from inheritune_hf.figures import plot_attention

# MaxRank per layer: 5 4 3 2 1 1 2 1 (the last head of each layer holds the max)
MAX_RANKS = [5.0, 4.0, 3.0, 2.0, 1.0, 1.2, 2.0, 1.0]


def constructed_report() -> AttentionReport:
    return AttentionReport(
        rank=[[1.0, 1.0, value] for value in MAX_RANKS],
        mass=[[1.0, 2.0, 3.0] for _ in MAX_RANKS],
        layers=list(range(8)),
        layer_names=[f"model.layers.{i}.self_attn" for i in range(8)],
        num_layers=8,
        model_name="tiny",
        settings={"tau": 0.9, "eta": 0.9, "num_samples": 100, "seq_len": 100},
    )


def test_per_layer_summaries_follow_the_paper():
    report = constructed_report()
    assert report.max_rank == MAX_RANKS
    assert report.avg_mass == [2.0] * 8
    assert report.lazy_layers == [4, 5, 7]  # MaxRank rounds to 1
    assert report.rank_one_fraction == pytest.approx((2 * 8 + 3) / 24)


def test_block_rule_floors_the_mean_max_rank():
    report = constructed_report()
    assert report.is_lazy_block(4)  # mean(1, 1.2, 2, 1) = 1.3
    assert report.is_lazy_block(2)  # mean(3, 2, 1, 1.2, 2, 1) = 1.7
    assert not report.is_lazy_block(1)  # mean = 2.03
    assert not report.is_lazy_block(0, 4)


def test_suggestions_give_half_and_the_start_of_the_lazy_tail_with_reasons():
    suggestions = constructed_report().suggest_num_layers()
    assert suggestions["paper"].num_layers == 4
    assert suggestions["rank_guided"].num_layers == 2
    assert "half" in suggestions["paper"].reason
    assert "Blocks 2..7" in suggestions["rank_guided"].reason


def test_suggestions_move_to_the_nearest_k_the_layer_pattern_allows():
    report = constructed_report()
    report.num_layers = 12
    config = tiny_config("gemma4_text", num_layers=12)  # slices only at 6 or 12 blocks
    suggestions = report.suggest_num_layers(config)
    assert suggestions["paper"].num_layers == 6 and "pattern" not in suggestions["paper"].reason
    assert suggestions["rank_guided"].num_layers == 6
    assert "does not slice at 2 blocks; 6 is the nearest" in suggestions["rank_guided"].reason


def test_no_lazy_tail_keeps_every_block():
    report = constructed_report()
    report.rank[-1][-1] = 3.0
    report.rank[-2][-1] = 3.0
    suggestion = report.suggest_num_layers()["rank_guided"]
    assert suggestion.num_layers == 8 and "no reason to drop" in suggestion.reason


def test_json_round_trip(tmp_path):
    report = constructed_report()
    text = report.to_json(tmp_path / "report.json")
    data = json.loads(text)
    assert data["lazy_layers"] == [4, 5, 7] and data["max_rank"] == MAX_RANKS
    assert data["suggested_num_layers"]["rank_guided"]["num_layers"] == 2
    assert AttentionReport.from_json(text) == report
    assert AttentionReport.from_json(tmp_path / "report.json") == report
    with pytest.raises(InherituneError):
        AttentionReport.from_json('{"rank": []}')


def test_csv_and_dataframe_have_one_row_per_layer_and_head(tmp_path):
    report = constructed_report()
    report.to_csv(tmp_path / "report.csv")
    lines = (tmp_path / "report.csv").read_text().strip().splitlines()
    assert lines[0].startswith("layer,layer_name,head,rank,mass")
    assert len(lines) == 1 + 8 * 3
    frame = report.to_dataframe()
    assert len(frame) == 24
    assert frame.groupby("layer")["rank"].max().tolist() == MAX_RANKS


def test_plot_writes_an_image(tmp_path):
    path = plot_attention(constructed_report(), tmp_path / "rank.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_table_lists_every_layer_and_the_lazy_ones():
    table = constructed_report().table()
    assert len(table.splitlines()) == 1 + 8 + 1
    assert "lazy layers (3 of 8): [4, 5, 7]" in table


def test_mismatched_lengths_are_refused():
    with pytest.raises(InherituneError, match="one entry per attention layer"):
        AttentionReport(rank=[[1.0]], mass=[], layers=[0], layer_names=["a"], num_layers=1)


# -- CLI ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    text = "\n".join(
        f"Line {i}: the rank of head {i % 4} in layer {i % 3} is low, the mass sits on one column." for i in range(300)
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=300, n_positions=64)).save_pretrained(folder)
    train_tokenizer([text], vocab_size=300).save_pretrained(folder)
    (folder.parent / "corpus.txt").write_text(text)
    return folder


def test_cli_writes_report_csv_and_plot_and_prints_the_table(checkpoint, tmp_path, capsys):
    out = tmp_path / "analysis"
    corpus = checkpoint.parent / "corpus.txt"
    args = ["analyze", str(checkpoint), "--text-file", str(corpus), "--output_dir", str(out), "--num-samples", "4"]
    assert main(args + ["--seq-len", "16"]) == 0
    assert {p.name for p in out.iterdir()} == {"report.json", "report.csv", "attention_rank.png"}
    report = AttentionReport.from_json(out / "report.json")
    assert len(report.rank) == 3 and report.settings["seq_len"] == 16
    printed = capsys.readouterr().out
    assert "MaxRank" in printed and "suggested layers (paper): 1" in printed

    assert main(args + ["--seq-len", "16"]) == 2  # the folder is not empty now
    assert "--overwrite" in capsys.readouterr().err


def test_cli_reads_a_dataset_split(checkpoint, tmp_path):
    corpus = checkpoint.parent / "corpus.txt"
    out = tmp_path / "analysis"
    args = ["analyze", str(checkpoint), "--dataset_name", f"{corpus}:train", "--output_dir", str(out), "--no-plot"]
    assert main(args + ["--num-samples", "2", "--seq-len", "16"]) == 0
    assert {p.name for p in out.iterdir()} == {"report.json", "report.csv"}


def test_cli_errors_are_one_line_with_exit_code_two(checkpoint, tmp_path, capsys):
    corpus = checkpoint.parent / "corpus.txt"
    args = ["analyze", str(checkpoint), "--text-file", str(corpus), "--output_dir", str(tmp_path / "x")]
    assert main(args + ["--seq-len", "65"]) == 2
    assert "context of 64" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["analyze", str(tmp_path), "--text-file", str(corpus), "--output_dir", str(tmp_path / "y")]) == 2
