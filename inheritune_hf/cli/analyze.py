"""`inheritune analyze MODEL_DIR --text_file F | --dataset_name NAME[:split] --output_dir DIR`: which layers are lazy?

Writes `report.json`, `report.csv` and `attention_rank.png` into DIR and prints a per-layer table. Settings:
`AnalyzeArguments`, from flags or `--config FILE`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DataError, InherituneError
from ..io import atomic_output_dir, check_output_dir
from ..parser import InherituneParser
from ..settings import AnalyzeArguments


def parser() -> InherituneParser:
    return InherituneParser(
        [AnalyzeArguments],
        prog="inheritune analyze",
        description="The paper's attention diagnostics: N random windows of T tokens, per-(layer, head) mean rank "
        "k* (tau of the squared spectrum) and mass m* (eta of the squared Frobenius norm).",
        positionals=("model",),
    )


def parse(argv: list[str]) -> AnalyzeArguments:
    (args,) = parser().parse(argv)
    return args


def main(argv: list[str]) -> int:
    """`inheritune analyze ...`: parse the settings, then run."""
    return run(parse(argv))


def _split_dataset_name(spec: str) -> tuple[str, str]:
    name, sep, split = spec.rpartition(":")
    if sep and split and "/" not in split and name:
        return name, split
    return spec, "validation"


def _load_texts(args: AnalyzeArguments) -> dict:
    if args.text_file is not None:
        path = Path(args.text_file)
        if not path.is_file():
            raise DataError(f"--text_file {path} does not exist.")
        return {"texts": path.read_text(encoding="utf-8", errors="replace")}
    from ..data import load_text_dataset

    name, split = _split_dataset_name(args.dataset_name)
    splits = load_text_dataset(name, text_column=args.text_column)
    if split not in splits:
        raise DataError(f"Dataset {name!r} has no split {split!r} (splits: {list(splits)}).")
    dataset = splits[split]
    if args.text_column != "text":
        dataset = dataset.rename_column(args.text_column, "text")
    return {"dataset": dataset}


def run(args: AnalyzeArguments) -> int:
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"{model_dir} is not a checkpoint folder (no config.json). Pass a save_pretrained folder."
        )
    check_output_dir(args.output_dir, args.overwrite)
    from ..loading import load_causal_lm, load_causal_lm_config

    load_causal_lm_config(model_dir, trust_remote_code=args.trust_remote_code)  # a causal LM, before reading data
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise InherituneError(
                "Plotting needs matplotlib: pip install 'inheritune-hf[plot]', or pass --no_plot."
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
    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        report.to_json(tmp / "report.json")
        report.to_csv(tmp / "report.csv")
        if args.plot:
            report.plot(tmp / "attention_rank.png")

    print(report.table())
    for key, suggestion in report.suggest_num_layers(model.config).items():
        print(f"suggested layers ({key}): {suggestion.num_layers} - {suggestion.reason}")
    written = "" if not args.plot else ", attention_rank.png"
    print(f"wrote {Path(args.output_dir) / 'report.json'}, report.csv{written}")
    return 0
