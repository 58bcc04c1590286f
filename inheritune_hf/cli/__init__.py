"""The `inheritune` console script: thin subcommands that parse arguments and call the library.

Each subcommand lives in its own module `inheritune_hf.cli.<name>` exposing `register(subparsers)`, `parser()`
and `parse(argv)`: its settings are a dataclass of `inheritune_hf.settings`, parsed by the one `InherituneParser`
(`inheritune_hf.cli.parser`) from flags in either spelling or a YAML file (`--config FILE`). Library errors
(`InherituneError`), unknown flags and unparsable values are printed as one clear line with exit code 2.

`inheritune --help` lists the subcommands from `COMMANDS` without importing them (each pulls in torch and
transformers); a subcommand's module is imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InherituneError, unknown_flags
from ..narration import print_narration

#: Each subcommand and its line in `inheritune --help` (the same line its module registers; a test holds them equal).
COMMANDS = {
    "analyze": "Measure attention rank and mass per layer and head; find the lazy layers.",
    "inherit": "Slice the first K blocks (or chosen blocks) of a causal LM into a new checkpoint folder.",
    "run": "train and grow: the Inheritune loop (flags or a YAML recipe; see --help)",
    "evaluate": "Score a checkpoint on lm-eval tasks (default: the paper's downstream suite).",
    "push": "Upload a checkpoint (safetensors), its model card, figures and results to the Hub in one commit.",
}


def _run_subcommand(name: str, argv: list[str]) -> int:
    """Import subcommand `name` and hand it its arguments, through the parser its module registers."""
    module = importlib.import_module(f".{name}", __name__)
    parser = argparse.ArgumentParser(prog="inheritune")
    module.register(parser.add_subparsers(dest="command", required=True))
    args, _ = parser.parse_known_args([name, *argv])
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inheritune",
        description="Inheritune for Hugging Face causal LMs: analyze, inherit, run (train + grow), evaluate, push.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help in COMMANDS.items():
        subparsers.add_parser(name, help=help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    print_narration()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the subcommand's name is parsed here; everything after it goes to the subcommand's own parser, which
    # names the closest valid flag for a mistyped one. What comes before it can only be a flag of `inheritune`.
    parser = build_parser()
    position = next((i for i, arg in enumerate(argv) if arg in COMMANDS), len(argv))
    args, rest = parser.parse_known_args(argv[: position + 1])
    try:
        if rest:
            raise unknown_flags(rest, parser)
        return _run_subcommand(args.command, argv[position + 1 :])
    except InherituneError as err:
        print(f"inheritune {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
