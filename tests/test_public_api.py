"""The public API names the method (about 25 names, the rest one level down), and loads nothing until it is used."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import inheritune_hf

SUBCOMMAND_MODULES = ("analyze", "inherit", "run", "evaluate", "push", "recipe")


def run_fresh(code: str) -> str:
    """stdout of `code` in a new interpreter, where no module of the package is imported yet."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_public_api_is_about_twenty_five_names_and_each_resolves_to_its_step():
    names = inheritune_hf.__all__
    assert 20 <= len(names) <= 30 and len(set(names)) == len(names)
    assert sorted(names) == sorted(inheritune_hf._MODULE_OF)  # the written-out list is the lazy table's
    for name in names:
        value = getattr(inheritune_hf, name)
        assert not isinstance(value, ModuleType), name
        if callable(value):
            assert value.__module__.startswith("inheritune_hf."), (name, value.__module__)
    for step in ("analyze_attention", "inherit", "grow", "train", "run_inheritune", "evaluate_downstream"):
        assert step in names


def test_an_unknown_name_is_an_attribute_error():
    try:
        inheritune_hf.not_a_name  # noqa: B018
    except AttributeError as err:
        assert "not_a_name" in str(err)
    else:
        raise AssertionError("an unknown name resolved")


def test_import_loads_no_submodule_and_neither_torch_nor_transformers():
    out = run_fresh(
        "import sys, inheritune_hf\n"
        "print(sorted(m for m in sys.modules if m.startswith(('inheritune_hf.', 'torch', 'transformers'))))"
    )
    assert out.strip() == "[]"


def test_inherit_and_train_stay_the_functions_after_their_modules_are_imported():
    # The modules `inherit` and `train` share their names with the steps; importing them must not hide the steps.
    out = run_fresh(
        "import inheritune_hf.rounds, inheritune_hf.inherit, inheritune_hf.train\n"
        "from inheritune_hf import inherit, train\n"
        "import inheritune_hf\n"
        "print(inherit.__name__, train.__name__, inheritune_hf.inherit is inherit, inheritune_hf.train is train)"
    )
    assert out.split() == ["inherit", "train", "True", "True"]


def test_help_lists_every_subcommand_without_importing_one():
    out = run_fresh(
        "import contextlib, io, sys\n"
        "from inheritune_hf.cli import main\n"
        "text = io.StringIO()\n"
        "with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('inheritune_hf.cli.', 'torch', 'transformers'))))\n"
        "print(text.getvalue())"
    )
    loaded, _, help_text = out.partition("\n")
    assert loaded == "[]"
    for name in SUBCOMMAND_MODULES:
        assert f"\n  {name} " in help_text, name


def test_every_listed_subcommand_is_a_module_with_a_main():
    import importlib

    from inheritune_hf.cli import COMMANDS

    assert tuple(COMMANDS) == SUBCOMMAND_MODULES
    for name in COMMANDS:
        assert callable(importlib.import_module(f"inheritune_hf.cli.{name}").main), name
