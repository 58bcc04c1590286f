"""The `inheritune` console script: thin subcommands that parse arguments and call the library.

Each subcommand is a module `inheritune_hf.cli.<name>` with `main(argv) -> int`, listed once in `COMMANDS` and
imported only when it runs, so `inheritune --help` loads none of them. Its settings are a dataclass of
`inheritune_hf.settings`, parsed by the one `InherituneParser` (`inheritune_hf.parser`) from flags in either spelling
or a YAML file (`--config FILE`). Library errors (`InherituneError`), unknown flags and unparsable values are printed
as one clear line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InherituneError, for_the_command_line, unknown_flags
from ..narration import print_narration

#: Every subcommand and its one-line help, in the method's order: the module `inheritune_hf.cli.<name>` runs it.
COMMANDS: dict[str, str] = {
    "analyze": "Measure attention rank and mass per layer and head; find the lazy layers.",
    "inherit": "Slice the first K blocks (or chosen blocks) of a causal LM into a new checkpoint folder.",
    "run": "Train and grow: the Inheritune loop (flags or a YAML file of its settings; see --help).",
    "evaluate": "Score a checkpoint on lm-eval tasks (default: the paper's downstream suite).",
    "push": "Upload a checkpoint (safetensors), its model card, figures and results to the Hub in one commit.",
    "recipe": "The paper's whole pipeline from a recipe YAML (recipes/*.yaml): reference, diagnosis, Inheritune, "
    "evaluation, Hub-ready model.",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: it only names the subcommand, whose own `main` parses everything after it."""
    parser = argparse.ArgumentParser(
        prog="inheritune",
        usage="inheritune COMMAND [--help] [...]",
        description="Inheritune for Hugging Face causal LMs: analyze, inherit, run (train + grow), evaluate, push, "
        "recipe.",
        epilog="commands:\n" + "\n".join(f"  {name:<10}{text}" for name, text in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch `inheritune COMMAND ...` to `inheritune_hf.cli.COMMAND.main(...)`; errors as one line, exit 2."""
    print_narration()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        print(f"inheritune: error: {unknown_flags(argv[:1], parser)}", file=sys.stderr)
        return 2
    command = parser.parse_args(argv[:1]).command  # --help, a missing or an unknown command: argparse's exit
    try:
        return int(importlib.import_module(f".{command}", __name__).main(argv[1:]) or 0)
    except InherituneError as err:
        print(f"inheritune {command}: error: {for_the_command_line(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
