"""The `inheritune` console script: thin subcommands that parse arguments and call the library.

Each subcommand lives in its own module `inheritune_hf.cli.<name>` exposing `register(subparsers)`,
which adds its parser and sets `func` to a callable taking the parsed namespace and returning an exit
code. Library errors (`InherituneError`) are printed as one clear line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InherituneError, unknown_flags

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


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Unknown flags come back instead of ending in argparse's usage dump, so that each gets one line naming the
    # closest valid flag (`run` hands its flags to HfArgumentParser, which reports its own the same way).
    args, rest = parser.parse_known_args(argv)
    try:
        if rest:
            raise unknown_flags(rest, _subparser(parser, args.command))
        return int(args.func(args) or 0)
    except InherituneError as err:
        print(f"inheritune {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
