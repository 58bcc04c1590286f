"""The model card of an Inheritune model: metadata in `ModelCardData`, prose in a Jinja template.

A derived checkpoint is only useful to others when its card says where it came from (which blocks of which
reference were inherited, what was re-initialised, how it grew), how it was trained, how its validation loss
compares with the reference's and with a same-size random init (the paper's Table 1), and what it scores
downstream (the paper's Table 2, as `model-index` so the Hub shows it).

As in TRL and `Trainer`, the card is `ModelCard.from_template(card_data, template_path=...)`: the YAML header
comes from `ModelCardData`, the text from `templates/modelcard_template.md`, which a user can replace with their
own (`model_card(..., template_path=...)`). Every table cell is formatted here, by `cell`, so templates only lay
the cells out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..markdown import cell, setting
from ..verdict import weak_reference

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard
    from transformers import PretrainedConfig, PreTrainedModel

    from ..evaluate import DownstreamResults

__all__ = ["CITATION", "KNOWN_FIGURES", "TEMPLATE_PATH", "base_model_license", "hub_base_model", "model_card"]

logger = logging.getLogger(__name__)

PAPER_URL = "https://arxiv.org/abs/2404.08634"
CITATION = """\
@article{sanyal2024inheritune,
  title   = {When Attention Collapses: How Degenerate Layers in LLMs Enable Smaller, Stronger Models},
  author  = {Sanyal, Sunny and Shwartz-Ziv, Ravid and Dimakis, Alexandros G. and Sanghavi, Sujay},
  journal = {Transactions on Machine Learning Research},
  year    = {2024},
  url     = {https://arxiv.org/abs/2404.08634}
}"""

#: The card's default Jinja template, shipped as package data (setup.cfg `[options.package_data]`).
TEMPLATE_PATH = Path(__file__).parent / "templates" / "modelcard_template.md"

#: Figures `model_card` and `push_to_hub` pick up from a folder when present: file name -> caption.
KNOWN_FIGURES = {
    "attention_rank.png": "Attention rank per layer of the reference (lazy layers have rank 1)",
    "loss_curves.png": "Validation loss against training tokens: rounds, reference and random-init baseline",
    "attention_history.png": "Attention rank (MaxRank) per layer against training steps, each stage of the run",
}

#: What the Hub accepts as a repo id: "namespace/name" or "name" (`check_repo_id` adds the Hub's own rules).
REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")

# The growth-rounds table's columns, in order, from the rows of rounds.json ("matched" is rendered yes/no).
_ROUND_COLUMNS = ("round", "layers", "strategy", "steps", "tokens", "val_loss", "reference_val_loss")


def model_card(
    model: PreTrainedModel | PretrainedConfig | str | os.PathLike | None = None,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    rounds: Sequence[Mapping[str, Any]] | None = None,
    training: Mapping[str, Any] | None = None,
    validation: Mapping[str, float] | None = None,
    results: DownstreamResults | None = None,
    figures: Mapping[str, str | os.PathLike] | None = None,
    license: str | None = None,
    datasets: str | Sequence[str] | None = None,
    language: str | Sequence[str] | None = None,
    tags: Sequence[str] = (),
    model_name: str | None = None,
    template_path: str | os.PathLike | None = None,
    usage_id: str | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` for an Inheritune model: lineage, recipe, losses, downstream scores, citation.

    Args:
        model: the model, its config, or a `save_pretrained` folder. Its `config.inheritune` (written by `inherit`)
            gives the lineage; a folder also supplies `rounds.json`, `downstream_results.json` and known figures.
        repo_id: where the card will live (used for the title and the usage snippet).
        usage_id: what the usage snippet loads, when it is not `repo_id` (a local folder the model is in).
        base_model: the reference's Hub id (default: the lineage's `source` when it is a Hub id).
        lineage: overrides `config.inheritune`.
        rounds: growth rounds, as `run_inheritune` writes them to rounds.json (rows with kind, layers, steps,
            tokens, val_loss, reference_val_loss, matched); a row of kind "random_baseline" is the baseline.
        training: the recipe, e.g. {"dataset": ..., "tokens": ..., "steps": ..., "learning_rate": ...}.
        validation: validation losses by model, e.g. {"inheritune": 2.81, "reference": 2.81, "random_init": 2.86};
            derived from `rounds` when not given.
        results: downstream scores; they become the card's `model-index` (eval results).
        figures: caption -> image path; the card links the file name, which `push_to_hub` uploads beside it.
        license: SPDX id; default: the base model's, read from its local folder's card when it is one
            (`base_model_license` also asks the Hub).
        datasets, language, tags, model_name: card metadata.
        template_path: a Jinja template for the card's text instead of the shipped one (`TEMPLATE_PATH`); it gets
            the variables listed in `card_variables` and the metadata fields, as `ModelCard.from_template` passes.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder, config = _folder_and_config(model)
    lineage = dict(lineage if lineage is not None else (_lineage_of(config) or {}))
    if rounds is None and folder is not None and (folder / "rounds.json").is_file():
        rounds = json.loads((folder / "rounds.json").read_text())
    if results is None and folder is not None and (folder / "downstream_results.json").is_file():
        from ..evaluate import DownstreamResults

        results = DownstreamResults.load(folder)
    if figures is None and folder is not None:
        figures = {caption: folder / name for name, caption in KNOWN_FIGURES.items() if (folder / name).is_file()}
    rounds = [dict(row) for row in rounds or []]
    validation = dict(validation) if validation is not None else _validation_from_rounds(rounds)

    source = lineage.get("source")
    if base_model is None and isinstance(source, str) and is_hub_id(source):
        base_model = source
    if base_model is None and source:
        logger.warning(
            "model_card: the reference %s is not a Hub id, so the card has no base_model; pass base_model= "
            "(CLI: --base_model) with the reference's Hub id.",
            source,
        )
    if license is None:
        for candidate in (base_model, source):
            if isinstance(candidate, str) and Path(candidate).is_dir():
                license = base_model_license(candidate)
                if license:
                    break
    if license is None:
        logger.warning(
            "model_card: no license given and none found for the base model; pass license= (CLI: --license) "
            "with an SPDX id, normally the reference's."
        )
    name = model_name or (repo_id.split("/")[-1] if repo_id else None) or "inheritune-model"
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    if not datasets and training and isinstance(training.get("dataset"), str) and is_hub_id(training["dataset"]):
        datasets = [training["dataset"]]

    data = ModelCardData(
        model_name=name,
        base_model=base_model,
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        datasets=datasets or None,
        language=language,
        tags=list(dict.fromkeys(["inheritune", "arxiv:2404.08634", "text-generation", *tags])),
        eval_results=results.to_eval_results() if results is not None and results.rows else None,
    )
    variables = card_variables(
        name=name,
        repo_id=usage_id or repo_id,
        base_model=base_model,
        lineage=lineage,
        config=config,
        rounds=rounds,
        training=dict(training or {}),
        validation=validation,
        results=results,
        figures={caption: Path(path).name for caption, path in (figures or {}).items()},
    )
    card = ModelCard.from_template(data, template_path=str(template_path or TEMPLATE_PATH), **variables)
    if not card.content.endswith("\n"):  # Jinja drops the template's final newline; a text file ends with one
        card.content = card.content + "\n"
    return card


def card_variables(
    *,
    name: str,
    repo_id: str | None,
    base_model: str | None,
    lineage: Mapping[str, Any],
    config: Any,
    rounds: Sequence[Mapping[str, Any]],
    training: Mapping[str, Any],
    validation: Mapping[str, float],
    results: DownstreamResults | None,
    figures: Mapping[str, str],
) -> dict[str, Any]:
    """The template's variables: table cells already formatted (by `cell`), plus the raw values they came from.

    Formatted: `model_name`, `paper_url`, `citation`, `usage_id` (where the model is: the repo id or folder given),
    `source_link` (markdown), `layers`, `source_depth`, `inherited_blocks` ("0-2, 5"), `reinitialized` (None when
    nothing was), `grown_from`, `trained` (whether growth rounds are known), `verdict` (one line: matched or not, by
    how much; None without rounds), `has_baseline`, `rounds_table` (rows of cells), `training_table` and
    `validation_table` (pairs of cells), `downstream_table` (markdown, or None), `figures` (pairs of caption and
    file name), `grow_by` (blocks added per growth round, when the run recorded it), `aimed_at_reference` (False when
    the run set its own target loss).
    Raw, for templates that want their own layout: `lineage`, `rounds`, `training`, `validation`, `results`.
    """
    source = base_model or lineage.get("source") or "the reference model"
    grown = [row for row in rounds if row.get("kind", "inheritune") == "inheritune"]
    grown_matched = bool(grown and grown[-1].get("matched"))
    reinitialized = lineage.get("reinitialized") or []
    return {
        "model_name": name,
        "paper_url": PAPER_URL,
        "citation": CITATION,
        "usage_id": repo_id or "path/to/this/model",
        "source_link": f"[{source}](https://huggingface.co/{source})" if base_model else f"`{source}`",
        "layers": lineage.get("num_layers") or _config_value(config, "num_hidden_layers", "n_layer", "num_layers"),
        "source_depth": lineage.get("source_num_layers"),
        "inherited_blocks": (_ranges(lineage["source_layers"]) if lineage.get("source_layers") is not None else None),
        "reinitialized": ", ".join(cell(part) for part in reinitialized) if reinitialized else None,
        "grown_from": cell(lineage["grown_from"]) if lineage.get("grown_from") else None,
        "trained": bool(grown),
        "verdict": " ".join(filter(None, [_verdict(grown), weak_reference(rounds) if grown_matched else None]))
        or None,
        "has_baseline": any(row.get("kind") == "random_baseline" for row in rounds),
        "grow_by": training.get("grow_by"),
        "aimed_at_reference": _aimed_at_reference(grown),
        "rounds_table": [
            [cell(row.get(key, "-")) for key in _ROUND_COLUMNS] + ["yes" if row.get("matched") else "no"]
            for row in grown
        ],
        "training_table": [(cell(key), setting(value)) for key, value in _with_effect(training).items()],
        "validation_table": [(cell(key), cell(float(value))) for key, value in validation.items()],
        "downstream_table": results.to_markdown() if results is not None and results.rows else None,
        "figures": list(figures.items()),
        "lineage": dict(lineage),
        "rounds": list(rounds),
        "training": dict(training),
        "validation": dict(validation),
        "results": results,
    }


def _with_effect(training: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's settings without those that changed nothing: Trainer ignores num_train_epochs once max_steps is
    set, and a card listing it (as 3) would say the model trained for three epochs."""
    settings = dict(training)
    max_steps = settings.get("max_steps")
    if isinstance(max_steps, int | float) and max_steps > 0:
        settings.pop("num_train_epochs", None)
    return settings


def _aimed_at_reference(grown: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the rounds chased the reference's own loss (True) or a target the user set (`--target_loss`)."""
    last = grown[-1] if grown else {}
    if last.get("target_loss") is None or last.get("reference_val_loss") is None:
        return True
    return math.isclose(float(last["target_loss"]), float(last["reference_val_loss"]), rel_tol=0.0, abs_tol=1e-12)


def _verdict(grown: Sequence[Mapping[str, Any]]) -> str | None:
    """One line on whether the growth rounds matched, from rounds.json's rows, against what the run aimed at.

    A round matches when its loss is at most `target_loss` + the tolerance. The target is normally the reference's
    own loss; when the run set another (`--target_loss`), the line names the target, since "did not match the
    reference" would be false of a round that beat the reference but missed a lower target. Rows written before
    rounds.json recorded `target_loss` aimed at the reference.
    """
    if not grown or grown[-1].get("val_loss") is None or grown[-1].get("reference_val_loss") is None:
        return None
    last = grown[-1]
    loss, reference = float(last["val_loss"]), float(last["reference_val_loss"])
    target = float(last["target_loss"]) if last.get("target_loss") is not None else reference
    aimed_at_reference = _aimed_at_reference(grown)
    what = "the reference's validation loss" if aimed_at_reference else "the target validation loss"
    note = (
        "" if aimed_at_reference else f" The target was set by target_loss; the reference's own is {cell(reference)}."
    )
    where = f"round {last.get('round')}, {last.get('layers')} layers"
    gap = f"{'+' if loss >= target else '-'}{cell(abs(loss - target))}"
    if last.get("matched"):
        within = f" ({gap}, within the run's tolerance)" if loss > target else ""
        return f"**Matched** {what} ({where}): {cell(loss)} against {cell(target)}{within}.{note}"
    return (
        f"**Did not match** {what}: the last round ({where}) reached {cell(loss)} against {cell(target)} ({gap})."
        f"{note}"
    )


def base_model_license(
    base_model: str | os.PathLike, *, endpoint: str | None = None, token: str | bool | None = None
) -> str | None:
    """The license of `base_model`: from its card in a local folder, else from the Hub; None when unknown.

    Inheritune models are derived weights, so they carry the reference's license unless told otherwise.
    """
    from huggingface_hub import ModelCard

    path = Path(base_model)
    if path.is_dir():
        readme = path / "README.md"
        if not readme.is_file():
            return None
        try:
            return ModelCard.load(readme).data.license
        except Exception:  # noqa: BLE001 - an unreadable card only means the license is unknown
            return None
    if not is_hub_id(str(base_model)):
        return None
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(str(base_model))
    except Exception as err:  # noqa: BLE001 - offline or gated: the caller decides what to do without it
        logger.warning("Could not read the license of %s from the Hub: %s", base_model, type(err).__name__)
        return None
    card = info.card_data
    return getattr(card, "license", None) if card is not None else None


def hub_base_model(model: PreTrainedModel | PretrainedConfig | str | os.PathLike) -> str | None:
    """The Hub id of the reference recorded by `inherit` (`config.inheritune["source"]`), if it is one."""
    source = (_lineage_of(_folder_and_config(model)[1]) or {}).get("source")
    return source if isinstance(source, str) and is_hub_id(source) else None


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as "namespace/name" on the Hub and is not a local path (which would shadow it)."""
    return bool(REPO_ID.match(name)) and not Path(name).exists() and "/" in name


def _folder_and_config(model: Any) -> tuple[Path | None, Any]:
    if model is None:
        return None, None
    if isinstance(model, str | os.PathLike):
        folder = Path(model)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{folder} is not a save_pretrained folder (no config.json).")
        return folder, json.loads(config_file.read_text())
    config = getattr(model, "config", model)
    return None, config


def _lineage_of(config: Any) -> Mapping[str, Any] | None:
    if config is None:
        return None
    if isinstance(config, Mapping):
        return config.get("inheritune")
    return getattr(config, "inheritune", None)


def _config_value(config: Any, *names: str) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if value is not None:
            return value
    return None


def _validation_from_rounds(rounds: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    grown = [r for r in rounds if r.get("kind", "inheritune") == "inheritune" and r.get("val_loss") is not None]
    if grown:
        last = grown[-1]
        found[f"Inheritune ({last.get('layers')} layers)"] = last["val_loss"]
        if last.get("reference_val_loss") is not None:
            found["reference"] = last["reference_val_loss"]
    for row in rounds:
        if row.get("kind") == "random_baseline" and row.get("val_loss") is not None:
            found[f"random init ({row.get('layers')} layers, same budget)"] = row["val_loss"]
    return found


def _ranges(indices: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8': layer lists read better as ranges."""
    parts, start, prev = [], None, None
    for i in list(indices) + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    return ", ".join(parts)
