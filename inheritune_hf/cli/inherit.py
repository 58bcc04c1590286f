"""`inheritune inherit SRC OUT --num_layers K`: slice a checkpoint folder or Hub repo into a new folder.

The reference is never loaded: tensors are streamed from SRC's safetensors files (see
`inheritune_hf.checkpoint`), so a model larger than memory can be sliced. Settings: `InheritArguments`, from flags
or `--config FILE` (where SRC and OUT are `reference_model` and `output_dir`).
"""

from __future__ import annotations

import argparse
import json

from ..settings import InheritArguments
from .parser import InherituneParser, add_command

HELP = "Slice the first K blocks (or chosen blocks) of a causal LM into a new checkpoint folder."


def parser() -> InherituneParser:
    return InherituneParser(
        [InheritArguments],
        prog="inheritune inherit",
        description="Build the Inheritune target: embeddings, the first K blocks, final norm and LM head of SRC. "
        "Only the needed tensors are read, so SRC may be larger than memory.",
        positionals=("reference_model", "output_dir"),
    )


def parse(argv: list[str]) -> InheritArguments:
    (args,) = parser().parse(argv)
    return args


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "inherit", HELP, lambda argv: run(parse(argv)))


def run(args: InheritArguments) -> int:
    from ..checkpoint import inherit_checkpoint

    shard = {} if args.max_shard_size is None else {"max_shard_size": args.max_shard_size}
    out = inherit_checkpoint(
        args.reference_model,
        args.output_dir,
        args.num_layers,
        layers=args.layers,
        reinit=args.reinit,
        random_init=args.random_init,
        dtype=args.dtype,
        overwrite=args.overwrite,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        **shard,
    )
    lineage = json.loads((out / "config.json").read_text())["inheritune"]
    size = sum(path.stat().st_size for path in out.glob("*.safetensors"))
    print(
        f"inherited {lineage['num_layers']} of {lineage['source_num_layers']} blocks "
        f"(source layers {lineage['source_layers']}) from {args.reference_model} -> {out} ({size / 1e9:.2f} GB)"
    )
    return 0
