"""`inheritune analyze MODEL_DIR --text-file F | --dataset NAME[:split] --out DIR`: which layers are lazy?

Writes `report.json`, `report.csv` and `attention_rank.png` into DIR and prints a per-layer table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError, DataError, InherituneError
from ..output import atomic_output_dir, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="Measure attention rank and mass per layer and head; find the lazy layers.",
        description="The paper's attention diagnostics: N random windows of T tokens, per-(layer, head) mean rank "
        "k* (tau of the squared spectrum) and mass m* (eta of the squared Frobenius norm).",
    )
    parser.add_argument("model", help="Checkpoint folder (save_pretrained layout) with its tokenizer.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text-file", help="A plain-text file to draw the windows from.")
    source.add_argument(
        "--dataset",
        help="A Hub dataset name or local text/JSON file or folder, optionally NAME:split (default: the "
        "validation split, as in the paper). 'stdlib' is the embedded offline corpus.",
    )
    parser.add_argument("--text-column", default="text", help="Dataset column holding the text (default: text).")
    parser.add_argument("--out", required=True, help="Output folder; must be empty or absent unless --overwrite.")
    parser.add_argument("--num-samples", type=int, default=100, help="Random windows N (paper: 100).")
    parser.add_argument("--seq-len", type=int, default=100, help="Tokens per window T (paper: 100).")
    parser.add_argument("--tau", type=float, default=0.9, help="Spectral energy fraction for the rank (paper: 0.9).")
    parser.add_argument("--eta", type=float, default=0.9, help="Frobenius mass fraction for the mass (paper: 0.9).")
    parser.add_argument("--batch-size", type=int, default=8, help="Windows per forward pass.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the window offsets.")
    parser.add_argument("--device", default=None, help="Device to run on (default: cuda if available, else cpu).")
    parser.add_argument("--no-plot", action="store_true", help="Skip attention_rank.png (no matplotlib needed).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    parser.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code from MODEL.")
    parser.set_defaults(func=run)


def _split_dataset_name(spec: str) -> tuple[str, str]:
    name, sep, split = spec.rpartition(":")
    if sep and split and "/" not in split and name:
        return name, split
    return spec, "validation"


def _load_texts(args: argparse.Namespace) -> dict:
    if args.text_file is not None:
        path = Path(args.text_file)
        if not path.is_file():
            raise DataError(f"--text-file {path} does not exist.")
        return {"texts": path.read_text(encoding="utf-8", errors="replace")}
    from ..data import load_text_dataset

    name, split = _split_dataset_name(args.dataset)
    splits = load_text_dataset(name, text_column=args.text_column)
    if split not in splits:
        raise DataError(f"Dataset {name!r} has no split {split!r} (splits: {list(splits)}).")
    dataset = splits[split]
    if args.text_column != "text":
        dataset = dataset.rename_column(args.text_column, "text")
    return {"dataset": dataset}


def run(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"{model_dir} is not a checkpoint folder (no config.json). Pass a save_pretrained folder."
        )
    check_output_dir(args.out, args.overwrite)
    from ..loading import load_causal_lm, load_causal_lm_config

    load_causal_lm_config(model_dir, trust_remote_code=args.trust_remote_code)  # a causal LM, before reading data
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise InherituneError(
                "Plotting needs matplotlib: pip install 'inheritune-hf[plot]', or pass --no-plot."
            ) from err
    source = _load_texts(args)

    import torch
    from transformers import AutoTokenizer

    from ..analyze import analyze_attention

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(model_dir, trust_remote_code=args.trust_remote_code).to(device)
    report = analyze_attention(
        model,
        tokenizer,
        num_samples=args.num_samples,
        seq_len=args.seq_len,
        tau=args.tau,
        eta=args.eta,
        batch_size=args.batch_size,
        seed=args.seed,
        **source,
    )
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        report.to_json(tmp / "report.json")
        report.to_csv(tmp / "report.csv")
        if not args.no_plot:
            report.plot(tmp / "attention_rank.png")

    print(report.table())
    for key, suggestion in report.suggest_num_layers(model.config).items():
        print(f"suggested layers ({key}): {suggestion.num_layers} - {suggestion.reason}")
    print(f"wrote {Path(args.out) / 'report.json'}, report.csv" + ("" if args.no_plot else ", attention_rank.png"))
    return 0
