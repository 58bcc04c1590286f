"""`inheritune inherit SRC OUT --num_layers K [--select CRITERION --report DIR]`: slice a checkpoint into a folder.

With `--select`, the K blocks are chosen by `select_layers` from the report `inheritune analyze` wrote (attention
rank, Block Influence or angular distance) instead of being the first K.

The reference is never loaded: tensors are streamed from SRC's safetensors files (see
`inheritune_hf.checkpoint`), so a model larger than memory can be sliced. Settings: `InheritArguments`, from flags
or `--config FILE` (where SRC and OUT are `reference_model` and `output_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidLayersError
from ..parser import InherituneParser
from ..settings import InheritArguments


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


def main(argv: list[str]) -> int:
    """`inheritune inherit ...`: parse the settings, then run."""
    return run(parse(argv))


def _selected_layers(args: InheritArguments):
    """The blocks `--select` chooses from `--report`, checked against SRC's depth before anything is written."""
    from ..analyze import AttentionReport, select_layers
    from ..architecture import num_layers_of
    from ..loading import load_causal_lm_config

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise InvalidLayersError(f"--report {args.report}: no report.json there; write one with `inheritune analyze`.")
    report = AttentionReport.from_json(path)
    config = load_causal_lm_config(
        args.reference_model, revision=args.revision, trust_remote_code=args.trust_remote_code
    )
    depth = num_layers_of(config)
    if report.num_layers != depth:
        raise InvalidLayersError(
            f"--report {args.report} describes a model of {report.num_layers} blocks but {args.reference_model} has "
            f"{depth}; analyze this reference first."
        )
    return select_layers(report, args.num_layers if args.num_layers is not None else depth // 2, args.select)


def _size(num_bytes: int) -> str:
    """Bytes in the largest unit that keeps at least one digit before the point: a tiny model is not "0.00 GB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.3g} {unit}"
    return f"{num_bytes} bytes"


def run(args: InheritArguments) -> int:
    from ..checkpoint import inherit_checkpoint
    from ..sources import check_source

    check_source(args.reference_model, "SRC")
    num_layers, layers = args.num_layers, args.layers
    if args.select is not None:
        selection = _selected_layers(args) if args.report is not None else None
        if selection is not None:
            num_layers, layers = None, list(selection)
            print(f"selected blocks {layers} by {selection.criterion}: {selection.reason}")
    shard = {} if args.max_shard_size is None else {"max_shard_size": args.max_shard_size}
    out = inherit_checkpoint(
        args.reference_model,
        args.output_dir,
        num_layers,
        layers=layers,
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
        f"(source layers {lineage['source_layers']}) from {args.reference_model} -> {out} ({_size(size)})"
    )
    return 0
