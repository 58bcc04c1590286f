"""`inheritune evaluate MODEL_DIR --tasks a b c [--include_path DIR] --output_dir DIR`: lm-eval downstream scores.

Writes `downstream_results.json` (one row per task and metric, and the paper's average), lm-eval's raw
`lm_eval_results.json` and `results.md` (the Markdown table) into DIR, and prints the table. Tasks and the output
folder are checked before the model is loaded. Settings: `EvaluateArguments`, from flags or `--config FILE`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..io import atomic_output_dir, check_output_dir
from ..parser import InherituneParser
from ..settings import EvaluateArguments


def parser() -> InherituneParser:
    return InherituneParser(
        [EvaluateArguments],
        prog="inheritune evaluate",
        description="Zero-shot lm-evaluation-harness scores, as in the paper's Table 2: ARC-Easy, PIQA, SciQ, "
        "HellaSwag (acc_norm), LAMBADA, WinoGrande, BoolQ, plus Wikitext and LAMBADA perplexity.",
        positionals=("model",),
    )


def parse(argv: list[str]) -> EvaluateArguments:
    (args,) = parser().parse(argv)
    return args


def main(argv: list[str]) -> int:
    """`inheritune evaluate ...`: parse the settings, then run."""
    return run(parse(argv))


def run(args: EvaluateArguments) -> int:
    from ..evaluate import PAPER_TASKS, check_tasks, evaluate_downstream

    model_dir = Path(args.model)
    if (model_dir / "run.json").is_file():  # an `inheritune run` folder: its final round, as `push` publishes it
        from ..publish import final_model_dir

        model_dir = final_model_dir(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"{model_dir} is not a checkpoint folder (no config.json). Pass a save_pretrained folder or the "
            "output_dir of `inheritune run`."
        )
    check_output_dir(args.output_dir, args.overwrite)
    tasks = args.tasks if args.tasks is not None else PAPER_TASKS
    check_tasks(tasks, include_path=args.include_path)
    batch_size = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit

    import torch
    from transformers import AutoTokenizer

    from ..loading import load_causal_lm

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(model_dir, trust_remote_code=args.trust_remote_code).to(device)
    results = evaluate_downstream(
        model,
        tokenizer,
        tasks,
        num_fewshot=args.num_fewshot,
        batch_size=batch_size,
        limit=limit,
        include_path=args.include_path,
    )
    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        results.save(tmp)
        (tmp / "results.md").write_text(results.to_markdown() + "\n")
    print(results.to_markdown())
    print(f"wrote {Path(args.output_dir) / 'downstream_results.json'}, lm_eval_results.json, results.md")
    return 0
