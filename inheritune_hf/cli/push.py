"""`inheritune push MODEL_DIR REPO_ID [--public] [--dry_run]`: publish a checkpoint with its card.

MODEL_DIR is a `save_pretrained` folder, or a `run_inheritune` output folder (then its final round is published
with the growth rounds, validation losses and loss figure in the card). The card also carries downstream scores
from `--results DIR` (what `inheritune evaluate` wrote), or evaluates first with `--tasks`. `--dry_run` writes the
exact files that would be uploaded (README.md included) into `--output_dir` and uploads nothing. Settings:
`PushArguments`, from flags or `--config FILE`.

The token is read from `HF_TOKEN` or `hf auth login`, never from the command line (it would end up in the shell
history and the process list).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..parser import InherituneParser
from ..settings import PushArguments


def parser() -> InherituneParser:
    return InherituneParser(
        [PushArguments],
        prog="inheritune push",
        description="Publish to the Hub: create the repo if needed, then one commit with weights (safetensors), "
        "config, tokenizer, README.md (lineage, recipe, losses, lm-eval scores as model-index), figures and "
        "results JSON. Re-running is safe. The token comes from HF_TOKEN or `hf auth login`.",
        positionals=("model", "repo_id"),
    )


def parse(argv: list[str]) -> PushArguments:
    (args,) = parser().parse(argv)
    return args


def main(argv: list[str]) -> int:
    """`inheritune push ...`: parse the settings, then run."""
    return run(parse(argv))


def run(args: PushArguments) -> int:
    from ..evaluate import DownstreamResults
    from ..publish import base_model_license, check_repo_id, hub_base_model, model_card, publish_run, push_to_hub
    from ..publish.push import resolve_endpoint, resolve_token

    check_repo_id(args.repo_id)
    folder = Path(args.model)
    out = Path(args.output_dir) if args.output_dir else Path.cwd() / f"{args.repo_id.split('/')[-1]}-dry-run"
    dry_run = out if args.dry_run else None
    if (folder / "rounds.json").is_file() and (folder / "run.json").is_file():
        if args.figure:
            raise CheckpointError("--figure is for a checkpoint folder; a run folder brings its own figures.")
        if args.results and args.tasks:
            raise CheckpointError(
                "Pass --results (scores `inheritune evaluate` wrote) or --tasks (evaluate now), not both."
            )
        results = DownstreamResults.load(args.results) if args.results else None
        if args.tasks:
            if not args.dry_run:  # every input is checked before the evaluation, which can take long
                resolve_token(None, resolve_endpoint(args.endpoint))
            results = _evaluate_final_round(folder, args.tasks, args.include_path)
        result = publish_run(
            folder,
            args.repo_id,
            results=results,
            base_model=args.base_model,
            license=args.license,
            datasets=args.dataset_name,
            private=args.private,
            revision=args.revision,
            endpoint=args.endpoint,
            commit_message=args.commit_message,
            dry_run=dry_run,
            overwrite=args.overwrite,
        )
    else:
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder} is not a save_pretrained folder (no config.json) nor a run folder.")
        if args.tasks:
            raise CheckpointError("--tasks is for a run folder; run `inheritune evaluate` and pass --results.")
        results = DownstreamResults.load(args.results) if args.results else None
        figures = {Path(f).stem.replace("_", " "): Path(f) for f in args.figure}
        license = args.license
        base = args.base_model or hub_base_model(folder)
        if license is None and base and not args.dry_run:
            license = base_model_license(base, endpoint=args.endpoint)
        card = model_card(
            folder,
            repo_id=args.repo_id if "/" in args.repo_id else None,
            base_model=args.base_model,
            results=results,
            figures=figures or None,
            license=license,
            datasets=args.dataset_name,
        )
        result = push_to_hub(
            folder,
            args.repo_id,
            card=card,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            results=results,
            extra_files=list(figures.values()),
            endpoint=args.endpoint,
            dry_run=dry_run,
            overwrite=args.overwrite,
        )
    if args.dry_run:
        count = sum(1 for path in Path(result).rglob("*") if path.is_file())
        print(f"dry run: wrote the {count} files that would be pushed to {args.repo_id} into {result}")
    else:
        print(f"pushed to {args.repo_id}: {result.commit_url}")
    return 0


def _evaluate_final_round(run_dir: Path, tasks: list[str], include_path: list[str] | None):
    """Score a run's final model on `tasks` before publishing it (publish_run takes scores, it does not compute them)."""
    from transformers import AutoTokenizer

    from ..evaluate import check_tasks, evaluate_downstream
    from ..loading import load_causal_lm
    from ..publish import final_model_dir

    model_dir = final_model_dir(run_dir)
    check_tasks(tasks, include_path=include_path)
    model = load_causal_lm(model_dir)  # safetensors only, as every load in the package
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return evaluate_downstream(model, tokenizer, tasks, include_path=include_path)
