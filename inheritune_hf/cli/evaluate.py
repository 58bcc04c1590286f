"""`inheritune evaluate MODEL_DIR --tasks a,b,c [--include-path DIR] --out DIR`: lm-eval downstream scores.

Writes `downstream_results.json` (one row per task and metric, and the paper's average), lm-eval's raw
`lm_eval_results.json` and `results.md` (the Markdown table) into DIR, and prints the table. Tasks and the output
folder are checked before the model is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError
from ..output import atomic_output_dir, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a checkpoint on lm-eval tasks (default: the paper's downstream suite).",
        description="Zero-shot lm-evaluation-harness scores, as in the paper's Table 2: ARC-Easy, PIQA, SciQ, "
        "HellaSwag (acc_norm), LAMBADA, WinoGrande, BoolQ, plus Wikitext and LAMBADA perplexity.",
    )
    parser.add_argument("model", help="Checkpoint folder (save_pretrained layout) with its tokenizer.")
    parser.add_argument(
        "--tasks",
        default=None,
        help="Comma-separated lm-eval task names or YAML paths (default: the paper's suite, with its metrics).",
    )
    parser.add_argument(
        "--include-path",
        action="append",
        default=None,
        help="A folder of local lm-eval task YAMLs (repeatable). Built-in tasks are indexed only if needed.",
    )
    parser.add_argument("--out", required=True, help="Output folder; must be empty or absent unless --overwrite.")
    parser.add_argument("--num-fewshot", type=int, default=0, help="Few-shot examples per prompt (paper: 0).")
    parser.add_argument("--batch-size", default="16", help="lm-eval batch size, or 'auto'.")
    parser.add_argument("--limit", type=float, default=None, help="Only the first N documents per task (smoke test).")
    parser.add_argument("--device", default=None, help="Device (default: cuda if available, else cpu).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    parser.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code from MODEL.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import PAPER_TASKS, check_tasks, evaluate_downstream

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"{model_dir} is not a checkpoint folder (no config.json). Pass a save_pretrained folder."
        )
    check_output_dir(args.out, args.overwrite)
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
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        results.save(tmp)
        (tmp / "results.md").write_text(results.to_markdown() + "\n")
    print(results.to_markdown())
    print(f"wrote {Path(args.out) / 'downstream_results.json'}, lm_eval_results.json, results.md")
    return 0
