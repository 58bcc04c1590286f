"""`inheritune inherit SRC OUT --num-layers K`: slice a checkpoint folder or Hub repo into a new folder.

The reference is never loaded: tensors are streamed from SRC's safetensors files (see
`inheritune_hf.checkpoint`), so a model larger than memory can be sliced.
"""

from __future__ import annotations

import argparse
import json

from ..errors import CheckpointError
from ..inherit import REINIT_PARTS

DTYPES = ("float32", "float16", "bfloat16")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..checkpoint import DEFAULT_MAX_SHARD_SIZE

    parser = subparsers.add_parser(
        "inherit",
        help="Slice the first K blocks (or chosen blocks) of a causal LM into a new checkpoint folder.",
        description="Build the Inheritune target: embeddings, the first K blocks, final norm and LM head of SRC. "
        "Only the needed tensors are read, so SRC may be larger than memory.",
    )
    parser.add_argument("src", help="Reference: a save_pretrained folder with safetensors weights, or a Hub repo id.")
    parser.add_argument("out", help="Output folder; must be empty or absent unless --overwrite.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--num-layers", type=int, help="Keep the first K blocks (default: half of the reference).")
    which.add_argument("--layers", help="Explicit comma-separated source block indices, e.g. 0,1,2,5.")
    parser.add_argument(
        "--reinit",
        default="",
        help=f"Comma-separated parts to re-initialise instead of copying: {','.join(REINIT_PARTS)}. "
        "'position_embeddings,final_norm' matches the authors' nanoGPT code.",
    )
    parser.add_argument("--random-init", action="store_true", help="Same-size random-init baseline.")
    parser.add_argument("--dtype", choices=DTYPES, help="Cast floating weights (default: keep the checkpoint's).")
    parser.add_argument(
        "--max-shard-size",
        default=DEFAULT_MAX_SHARD_SIZE,
        help=f"Cap per output safetensors shard, e.g. 2GB (default {DEFAULT_MAX_SHARD_SIZE}).",
    )
    parser.add_argument("--revision", help="Branch, tag or commit when SRC is a Hub repo id.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    parser.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code from SRC.")
    parser.set_defaults(func=run)


def _parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise CheckpointError(f"--layers must be comma-separated integers, got {text!r}.") from err


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import inherit_checkpoint

    out = inherit_checkpoint(
        args.src,
        args.out,
        args.num_layers,
        layers=_parse_layers(args.layers),
        reinit=[part.strip() for part in args.reinit.split(",") if part.strip()],
        random_init=args.random_init,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        overwrite=args.overwrite,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )
    lineage = json.loads((out / "config.json").read_text())["inheritune"]
    size = sum(path.stat().st_size for path in out.glob("*.safetensors"))
    print(
        f"inherited {lineage['num_layers']} of {lineage['source_num_layers']} blocks "
        f"(source layers {lineage['source_layers']}) from {args.src} -> {out} ({size / 1e9:.2f} GB)"
    )
    return 0
