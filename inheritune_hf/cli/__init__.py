"""The `inheritune` console script: thin subcommands that parse arguments and call the library.

Each subcommand lives in its own module `inheritune_hf.cli.<name>` exposing `register(subparsers)`, `parser()`
and `parse(argv)`: its settings are a dataclass of `inheritune_hf.settings`, parsed by the one `InherituneParser`
(`inheritune_hf.cli.parser`) from flags in either spelling or a YAML file (`--config FILE`). Library errors
(`InherituneError`), unknown flags and unparsable values are printed as one clear line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InherituneError, for_the_command_line, unknown_flags
from ..narration import print_narration

COMMANDS = ("analyze", "inherit", "run", "evaluate", "push")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inheritune",
        description="Inheritune for Hugging Face causal LMs: analyze, inherit, run (train + grow), evaluate, push.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # subcommand not installed in this version
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    print_narration()
    parser = build_parser()
    # Everything after the subcommand's name goes to its own parser (see `parser.add_command`), which names the
    # closest valid flag for a mistyped one; what is left here can only be a flag before the subcommand.
    args, rest = parser.parse_known_args(argv)
    try:
        if rest:
            raise unknown_flags(rest, parser)
        return int(args.func(args) or 0)
    except InherituneError as err:
        print(f"inheritune {args.command}: error: {for_the_command_line(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
