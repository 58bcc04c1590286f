"""`inheritune inherit SRC OUT --num-layers K`: write a `save_pretrained` folder of the inherited model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError
from ..inherit import REINIT_PARTS, resolve_layers
from ..output import atomic_output_dir, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inherit",
        help="Slice the first K blocks (or chosen blocks) of a causal LM into a new checkpoint folder.",
        description="Build the Inheritune target: embeddings, the first K blocks, final norm and LM head of SRC.",
    )
    parser.add_argument("src", help="Reference checkpoint folder (save_pretrained layout).")
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
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..architecture import num_layers_of
    from ..inherit import inherit

    src = Path(args.src)
    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src} is not a checkpoint folder (no config.json). Pass a save_pretrained folder.")
    check_output_dir(args.out, args.overwrite)
    layers = _parse_layers(args.layers)
    reinit = [part.strip() for part in args.reinit.split(",") if part.strip()]
    # Validate the layer choice from the config alone, before any weights are read.
    config = AutoConfig.from_pretrained(src, trust_remote_code=args.trust_remote_code)
    resolve_layers(num_layers_of(config), args.num_layers, layers)

    model = AutoModelForCausalLM.from_pretrained(src, trust_remote_code=args.trust_remote_code)
    target = inherit(model, args.num_layers, layers=layers, reinit=reinit, random_init=args.random_init)
    target.config.inheritune["source"] = str(src)
    has_tokenizer = any((src / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        target.save_pretrained(tmp)  # safetensors
        if has_tokenizer:
            AutoTokenizer.from_pretrained(src, trust_remote_code=args.trust_remote_code).save_pretrained(tmp)
    lineage = target.config.inheritune
    print(
        f"inherited {lineage['num_layers']} of {lineage['source_num_layers']} blocks "
        f"(source layers {lineage['source_layers']}) from {src} -> {args.out}"
    )
    return 0
