"""Every `--help` a user is sent to exits 0 and prints usage: each subcommand and each recipe's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from inheritune_hf.cli import COMMANDS, main
from inheritune_hf.recipe import parse_recipe_args

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_help_exits_zero(recipe, capsys):
    assert len(RECIPES) >= 5
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe_args(["--help"], recipe)
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
