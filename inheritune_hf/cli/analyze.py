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
    from ..data import load_text_dataset

    if args.text_file is not None:
        text = Path(args.text_file).read_text(encoding="utf-8", errors="replace")
        return {"texts": text}
    name, split = _split_dataset_name(args.dataset_name) if args.dataset_name else (None, "validation")
    splits = load_text_dataset(
        name, config_name=args.dataset_config_name, revision=args.dataset_revision, text_column=args.text_column
    )
    if split not in splits:
        raise DataError(f"Dataset {name!r} has no split {split!r} (splits: {list(splits)}).")
    dataset = splits[split]
    if args.text_column != "text":
        dataset = dataset.rename_column(args.text_column, "text")
    return {"dataset": dataset}


def _load_tokenizer(args: AnalyzeArguments):
    """The tokenizer `inheritune run` would use: --tokenizer_name, or the model folder's own, with run's message."""
    from transformers import AutoTokenizer

    name = args.tokenizer_name or args.model
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as err:
        raise DataError(
            f"Cannot load a tokenizer from {name!r} ({err}). Pass --tokenizer_name, or save the tokenizer beside "
            "the model (save_pretrained)."
        ) from err


def run(args: AnalyzeArguments) -> int:
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"{model_dir} is not a checkpoint folder (no config.json). Pass a save_pretrained folder."
        )
    check_output_dir(args.output_dir, args.overwrite)
    from ..data import check_text_source
    from ..loading import load_causal_lm, load_causal_lm_config
    from ..sources import check_source

    load_causal_lm_config(model_dir, trust_remote_code=args.trust_remote_code)  # a causal LM, before reading data
    if args.text_file is not None:
        check_text_source(args.text_file, "--text_file")
    else:
        check_text_source(_split_dataset_name(args.dataset_name)[0] if args.dataset_name else None)
    if args.tokenizer_name:
        check_source(args.tokenizer_name, "--tokenizer_name", filename="tokenizer_config.json")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise InherituneError(
                "Plotting needs matplotlib: pip install 'inheritune-hf[plot]', or pass --no_plot."
            ) from err
    source = _load_texts(args)

    import torch

    from ..analyze import analyze_attention
    from ..data import check_tokenizer, text_sample

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = _load_tokenizer(args)
    sample = [source["texts"][:100_000]] if "texts" in source else text_sample(source["dataset"], "text")
    check_tokenizer(tokenizer, sample)  # a folder without tokenizer files loads as a tokenizer of one token
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
            from ..figures import plot_attention

            plot_attention(report, tmp / "attention_rank.png")

    print(report.table())
    for key, suggestion in report.suggest_num_layers(model.config).items():
        print(f"suggested layers ({key}): {suggestion.num_layers} - {suggestion.reason}")
    written = "" if not args.plot else ", attention_rank.png"
    print(f"wrote {Path(args.output_dir) / 'report.json'}, report.csv{written}")
    return 0
