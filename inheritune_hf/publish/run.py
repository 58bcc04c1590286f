"""Publish a `run_inheritune` output folder: its final round, with the growth rounds and losses in the card.

The downstream scores come in as `results` (from `inheritune_hf.evaluate.evaluate_downstream`, or
`DownstreamResults.load`): evaluating is step 4 of the method and publishing step 5, so this module never runs
lm-eval itself and the caller decides which model, tasks and batch size are scored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError
from .card import KNOWN_FIGURES, base_model_license, hub_base_model, model_card
from .push import check_repo_id, push_to_hub, resolve_endpoint, resolve_token

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import CommitInfo

    from ..evaluate import DownstreamResults

__all__ = ["final_model_dir", "publish_run"]


def final_model_dir(run_dir: str | os.PathLike) -> Path:
    """The `save_pretrained` folder of a finished run's last Inheritune round (what `publish_run` publishes).

    A caller that evaluates before publishing loads the model from here. Raises `CheckpointError` for a folder
    that is not a finished run.
    """
    run_dir = Path(run_dir)
    _, rows = _read_run(run_dir)
    return run_dir / _final_round(run_dir, rows)["checkpoint"]


def publish_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    results: DownstreamResults | None = None,
    base_model: str | None = None,
    license: str | None = None,
    datasets: str | Sequence[str] | None = None,
    private: bool = True,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
    overwrite: bool = False,
    usage_id: str | None = None,
) -> CommitInfo | Path:
    """Publish the final round of a `run_inheritune` output folder (`--push-to-hub REPO_ID`).

    Reads run.json and rounds.json, takes the last round's model, builds the card (lineage, growth rounds, recipe,
    validation loss against the reference and the random-init baseline, the downstream `results` when given, loss
    figure) and pushes it with `push_to_hub` (or writes it into `dry_run`). Every input (run folder, repo id, token)
    is checked before the card is built or anything is sent.

    Scores are an argument, not computed here: evaluate first with `evaluate_downstream` on the model in
    `final_model_dir(run_dir)` (what `inheritune push RUN_DIR --tasks ...` does). `usage_id` is what the card's
    usage snippet loads when the model will not be at `repo_id` (a local folder).
    """
    run_dir = Path(run_dir)
    run, rows = _read_run(run_dir)
    last = _final_round(run_dir, rows)
    model_dir = run_dir / last["checkpoint"]

    check_repo_id(repo_id)
    endpoint = resolve_endpoint(endpoint)
    if dry_run is None:
        token = resolve_token(token, endpoint)

    config = run.get("config", {})
    training = {k: v for k, v in config.get("training", {}).items() if v is not None}
    training.update(
        {
            k: v
            for k, v in config.get("inheritune", {}).items()
            if isinstance(v, str | int | float | bool) and k not in training
        }
    )
    training.update(
        {
            "final round steps": last.get("steps"),
            "final round tokens": last.get("tokens"),
            "tokens over all rounds": last.get("cumulative_tokens"),
        }
    )
    metadata = run.get("metadata") or {}
    if metadata.get("dataset"):
        training = {"dataset": metadata["dataset"], **training}
    figures = {caption: run_dir / name for name, caption in KNOWN_FIGURES.items() if (run_dir / name).is_file()}
    figures.update(
        {caption: model_dir / name for name, caption in KNOWN_FIGURES.items() if (model_dir / name).is_file()}
    )
    base = base_model or hub_base_model(model_dir)
    if license is None and base is not None:
        license = base_model_license(base, endpoint=endpoint, token=token or None)
    card = model_card(
        model_dir,
        repo_id=repo_id if "/" in repo_id else None,
        base_model=base,
        rounds=rows,
        training=training,
        results=results,
        figures=figures,
        license=license,
        datasets=datasets,
        usage_id=usage_id,
    )
    extra = {path.name: path for path in figures.values()}
    extra["rounds.json"] = run_dir / "rounds.json"
    return push_to_hub(
        model_dir,
        repo_id,
        card=card,
        results=results,
        extra_files=extra,
        private=private,
        revision=revision,
        token=token,
        commit_message=commit_message,
        endpoint=endpoint,
        dry_run=dry_run,
        overwrite=overwrite,
    )


def _read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    try:
        run = json.loads((run_dir / "run.json").read_text())
        rows = json.loads((run_dir / "rounds.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{run_dir} is not a finished run_inheritune folder ({err}).") from err
    return run, rows


def _final_round(run_dir: Path, rows: list[dict]) -> dict:
    grown = [r for r in rows if r.get("kind", "inheritune") == "inheritune"]
    if not grown:
        raise CheckpointError(f"{run_dir}/rounds.json has no finished round to publish.")
    return grown[-1]
