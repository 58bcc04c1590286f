"""One argument style for every entry point: each subcommand and the recipes read a YAML file and flags in both
spellings through the same `InherituneParser`, list flags the same way, and refuse unknown names in one line.

The parse tests check the dataclasses a command would run with, without running it; one test runs `inherit` end
to end from a YAML file on a tiny GPT-2 built from its config (no network)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from inheritune_hf import settings
from inheritune_hf.cli import analyze, evaluate, inherit, main, push, run
from inheritune_hf.errors import InvalidArgumentError, UnknownArgumentError
from inheritune_hf.recipe import parse_recipe_args

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_error_line(argv: list[str], capsys) -> str:
    """Run the CLI, assert it exits 2 with exactly one line on stderr, and return that line."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("inheritune ")]
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Every subcommand: a YAML file, positionals, and both flag spellings give the same settings
# ---------------------------------------------------------------------------------------------------------------


def test_analyze_reads_yaml_and_both_spellings(tmp_path):
    config = write_yaml(tmp_path / "a.yaml", "model: ckpt\ntext_file: val.txt\noutput_dir: out\nnum_samples: 4\n")
    from_yaml = analyze.parse(["--config", str(config)])
    underscores = analyze.parse(["ckpt", "--text_file", "val.txt", "--output_dir", "out", "--num_samples", "4"])
    dashes = analyze.parse(["ckpt", "--text-file", "val.txt", "--output-dir", "out", "--num-samples", "4"])
    assert from_yaml == underscores == dashes
    assert (from_yaml.model, from_yaml.num_samples, from_yaml.seq_len) == ("ckpt", 4, 100)
    assert analyze.parse(["--config", str(config), "--num-samples", "8", "--no-plot"]).num_samples == 8  # flags win


def test_inherit_reads_yaml_and_both_spellings(tmp_path):
    config = write_yaml(
        tmp_path / "i.yaml", "reference_model: src\noutput_dir: dst\nnum_layers: 2\nreinit: [final_norm]\n"
    )
    from_yaml = inherit.parse([f"--config={config}"])
    positional = inherit.parse(["src", "dst", "--num_layers", "2", "--reinit", "final_norm"])
    flags = inherit.parse(
        ["--reference-model", "src", "--output-dir", "dst", "--num-layers", "2", "--reinit=final_norm"]
    )
    assert from_yaml == positional == flags
    assert inherit.parse(["--config", str(config), "other"]).reference_model == "other"  # a positional overrides


def test_run_reads_yaml_first_or_with_config_and_both_spellings(tmp_path):
    config = write_yaml(tmp_path / "r.yaml", "output_dir: out\nstart_layers: 2\nblock_size: 32\nuse_cpu: true\n")
    first = run.parse([str(config)])
    flagged = run.parse(["--config", str(config)])
    underscores = run.parse(["--output_dir", "out", "--start_layers", "2", "--block_size", "32", "--use_cpu"])
    dashes = run.parse(["--output-dir", "out", "--start-layers", "2", "--block-size", "32", "--use-cpu", "true"])
    for parsed in (flagged, underscores, dashes):
        assert parsed[:2] == first[:2]
        assert (parsed[2].output_dir, parsed[2].use_cpu) == ("out", True)
    assert run.parse([str(config), "--start-layers", "4"])[0].start_layers == 4


def test_evaluate_reads_yaml_and_both_spellings(tmp_path):
    config = write_yaml(
        tmp_path / "e.yaml", "model: ckpt\ntasks: [piqa, sciq]\ninclude_path: [a, b]\noutput_dir: out\n"
    )
    from_yaml = evaluate.parse(["--config", str(config)])
    spaces = evaluate.parse(["ckpt", "--tasks", "piqa", "sciq", "--include_path", "a", "b", "--output_dir", "out"])
    # comma-separated tasks and a repeated --include-path
    commas = evaluate.parse(
        ["ckpt", "--tasks", "piqa,sciq", "--include-path", "a", "--include-path", "b", "--output-dir", "out"]
    )
    assert from_yaml == spaces == commas
    assert from_yaml.tasks == ["piqa", "sciq"] and from_yaml.include_path == ["a", "b"]


def test_push_reads_yaml_and_both_spellings(tmp_path):
    config = write_yaml(tmp_path / "p.yaml", "model: run\nrepo_id: me/tiny\nprivate: false\ndry_run: true\n")
    from_yaml = push.parse(["--config", str(config)])
    assert from_yaml == push.parse(["run", "me/tiny", "--public", "--dry-run"])
    assert from_yaml == push.parse(["run", "me/tiny", "--no_private", "--dry_run"])
    assert from_yaml == push.parse(["run", "me/tiny", "--private", "false", "--dry-run", "true"])
    repeated = push.parse(["run", "me/tiny", "--dataset_name", "a/b", "--dataset-name", "c/d"])
    assert repeated.dataset_name == ["a/b", "c/d"] and repeated.private


def test_recipes_read_another_yaml_with_config_and_both_spellings(tmp_path):
    recipe, inheritune_args, data_args, training_args = parse_recipe_args(
        ["--config", str(RECIPES / "gpt2_medium.yaml"), "--plan", "--block-size", "64", "--output-dir", str(tmp_path)],
        RECIPES / "tiny.yaml",
    )
    assert recipe.name == parse_recipe_args(["--plan"], RECIPES / "gpt2_medium.yaml")[0].name != "tiny-gpt2"
    assert (data_args.block_size, training_args.output_dir) == (64, str(tmp_path))
    underscored = parse_recipe_args(
        ["--plan", "--block_size", "64", "--output_dir", str(tmp_path)], RECIPES / "gpt2_medium.yaml"
    )
    assert underscored[:3] == (recipe, inheritune_args, data_args)


# ---------------------------------------------------------------------------------------------------------------
# One syntax for list flags
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given", [["--reinit", "position_embeddings", "final_norm"], ["--reinit", "position_embeddings,final_norm"]]
)
def test_reinit_is_the_same_list_in_inherit_run_and_yaml(given, tmp_path):
    wanted = ["position_embeddings", "final_norm"]
    assert inherit.parse(["src", "dst", *given]).reinit == wanted
    assert run.parse(["--output_dir", "out", *given])[0].reinit == wanted
    for value in ("[position_embeddings, final_norm]", "position_embeddings,final_norm"):
        config = write_yaml(tmp_path / "c.yaml", f"output_dir: out\nreinit: {value}\n")
        assert run.parse([str(config)])[0].reinit == wanted
        assert inherit.parse(["src", "dst", "--config", str(config)]).reinit == wanted


def test_integer_lists_and_a_bool_before_positionals(tmp_path):
    assert inherit.parse(["src", "dst", "--layers", "0", "1", "3"]).layers == [0, 1, 3]
    assert inherit.parse(["src", "dst", "--layers", "0,1,3"]).layers == [0, 1, 3]
    config = write_yaml(tmp_path / "l.yaml", "layers: 0,1,3\n")
    assert inherit.parse(["src", "dst", "--config", str(config)]).layers == [0, 1, 3]
    parsed = inherit.parse(["--overwrite", "src", "--num-layers", "2", "dst"])  # flags between positionals
    assert (parsed.reference_model, parsed.output_dir, parsed.num_layers, parsed.overwrite) == ("src", "dst", 2, True)


# ---------------------------------------------------------------------------------------------------------------
# --help shows the method's settings first
# ---------------------------------------------------------------------------------------------------------------


def both_spellings(flag: str) -> str:
    """`--a_b A_B, --a-b A_B` as argparse prints it; Python 3.13 prints the metavar once (`--a_b, --a-b A_B`)."""
    metavar = flag[2:].upper()
    return rf"{flag}( {metavar})?, {flag.replace('_', '-')} {metavar}"


def test_run_help_shows_the_method_and_points_to_help_all(capsys):
    with pytest.raises(SystemExit) as exit_:
        run.parse(["--help"])
    assert exit_.value.code == 0
    brief = capsys.readouterr().out
    assert re.search(both_spellings("--start_layers"), brief) and "--dataset_name" in brief
    assert "--learning_rate LEARNING_RATE" not in brief and "--help-all lists them" in brief
    assert len(brief.splitlines()) < 200

    with pytest.raises(SystemExit):
        run.parse(["--help-all"])
    full = capsys.readouterr().out
    assert full.index("--start_layers") < full.index("--dataset_name") < full.index("--learning_rate")


def test_recipe_help_shows_the_yaml_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_recipe_args(["--help"], RECIPES / "tiny.yaml")
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Reference depth L when trained from scratch. (default: 8)" in text  # tiny.yaml's, not the field's 24
    assert "within 10%." in text  # a literal % in a help text does not break --help


@pytest.mark.parametrize("command, flag", [("analyze", "--num_samples"), ("evaluate", "--num_fewshot")])
def test_subcommand_help_lists_both_spellings(command, flag, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert re.search(both_spellings(flag), capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------------------------
# Unknown and malformed input: one line, nothing written
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, text, typo, meant",
    [
        ("analyze", "model: m\nnum_sampels: 4\n", "num_sampels", "num_samples"),
        ("inherit", "num_layer: 2\n", "num_layer", "num_layers"),
        ("evaluate", "model: m\ntask: [piqa]\n", "task", "tasks"),
        ("push", "model: m\nrepo_id: me/x\nlicence: mit\n", "licence", "license"),
        ("run", "output_dir: out\ngrow_by_: 2\n", "grow_by_", "grow_by"),
    ],
)
def test_an_unknown_yaml_key_names_the_closest_setting(command, text, typo, meant, tmp_path, capsys):
    config = write_yaml(tmp_path / "typo.yaml", text)
    line = one_error_line([command, "--config", str(config)], capsys)
    assert line == f"inheritune {command}: error: unknown setting {typo} in {config}; did you mean {meant}?"
    assert list(tmp_path.iterdir()) == [config]


def test_a_recipe_yaml_key_typo_and_a_bad_value_are_refused(tmp_path):
    config = write_yaml(tmp_path / "typo.yaml", "budgets: {}\nanalyze_sample: 4\n")
    with pytest.raises(
        UnknownArgumentError, match=r"unknown setting analyze_sample in .*; did you mean analyze_samples"
    ):
        parse_recipe_args(["--config", str(config)], RECIPES / "tiny.yaml")
    with pytest.raises(InvalidArgumentError, match="argument --block_size/--block-size: invalid int value: 'big'"):
        parse_recipe_args(["--block-size", "big"], RECIPES / "tiny.yaml")


@pytest.mark.parametrize(
    "argv, line",
    [
        (["evaluate", "ckpt", "--out", "o"], "inheritune evaluate: error: unknown flag --out"),
        (["push", "run", "me/x", "--dataset", "a"], "inheritune push: error: unknown flag --dataset; did you mean "),
    ],
)
def test_spellings_of_unreleased_versions_are_unknown_flags(argv, line, tmp_path, capsys):
    assert one_error_line(argv, capsys).startswith(line)


def test_inheritune_run_names_the_subcommand_that_runs_a_recipe(capsys):
    line = one_error_line(["run", str(RECIPES / "tiny.yaml"), "--output_dir", "unused"], capsys)
    assert line.startswith(f"inheritune run: error: {RECIPES / 'tiny.yaml'} is a recipe (it sets ")
    assert line.endswith(f"run it with `inheritune recipe {RECIPES / 'tiny.yaml'}`.")


def test_values_that_do_not_parse_are_one_line(tmp_path, capsys):
    line = one_error_line(["analyze", "m", "--text_file", "t", "--output_dir", "o", "--num-samples", "many"], capsys)
    assert line == "inheritune analyze: error: argument --num_samples/--num-samples: invalid int value: 'many'"
    line = one_error_line(["inherit", "src", "dst", "--dtype", "float8"], capsys)
    assert "invalid choice: 'float8'" in line
    line = one_error_line(["inherit", "src", "dst", "--public"], capsys)  # push's alias only where it means something
    assert line == "inheritune inherit: error: unknown flag --public"
    line = one_error_line(["inherit", "src", "dst", "--output_dir", "other"], capsys)
    assert line == "inheritune inherit: error: OUTPUT_DIR given twice: by position and as --output_dir."
    line = one_error_line(["analyze", "m", "--output_dir", "o", "--text_file", "t", "--dataset_name", "d"], capsys)
    assert line.endswith("--text_file FILE or --dataset_name NAME[:split], not both.")
    line = one_error_line(["inherit", "src", "dst", "--num_layers", "2", "--layers", "0", "1"], capsys)
    assert line.endswith("Give --num_layers or --layers, not both.")
    bad = write_yaml(tmp_path / "bad.yaml", "- a list\n")
    line = one_error_line(["inherit", "--config", str(bad)], capsys)
    assert line.endswith("must be a mapping of setting: value.")


# ---------------------------------------------------------------------------------------------------------------
# End to end: inherit from a YAML file
# ---------------------------------------------------------------------------------------------------------------


def test_inherit_runs_from_a_yaml_file(tmp_path, capsys):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=4, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "src")
    recipe = write_yaml(
        tmp_path / "inherit.yaml",
        f"reference_model: {tmp_path / 'src'}\noutput_dir: {tmp_path / 'out'}\nlayers: [0, 2]\nreinit: final_norm\n",
    )
    assert main(["inherit", "--config", str(recipe)]) == 0
    lineage = json.loads((tmp_path / "out" / "config.json").read_text())["inheritune"]
    assert lineage["source_layers"] == [0, 2] and lineage["reinitialized"] == ["transformer.ln_f"]
    assert "inherited 2 of 4 blocks" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# Settings live in one low module
# ---------------------------------------------------------------------------------------------------------------


def test_settings_imports_only_errors():
    tree = ast.parse(Path(settings.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert imported == {"errors"}


def test_a_prefix_of_a_flag_is_refused_not_expanded(tmp_path, capsys):
    # argparse would read `--num_sampl 4` as `--num_samples 4`; a typo must not pass silently.
    line = one_error_line(
        ["analyze", "m", "--text_file", "t", "--output_dir", str(tmp_path / "o"), "--num_sampl", "4"], capsys
    )
    assert "--num_sampl" in line and "num_samples" in line
    assert not (tmp_path / "o").exists()
