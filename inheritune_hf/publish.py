"""Step 5 of the method: a model card with the lineage and the numbers, and one atomic push to the Hub.

A derived checkpoint is only useful to others when its card says where it came from (which blocks of which
reference were inherited, what was re-initialised, how it grew), how it was trained, how its validation loss
compares with the reference's and with a same-size random init (the paper's Table 1), and what it scores
downstream (the paper's Table 2, as `model-index` so the Hub shows it). `model_card` builds that card with
`huggingface_hub.ModelCardData`; `push_to_hub` uploads a `save_pretrained` folder (safetensors only) with the card,
figures and results JSON as a single commit; `publish_run` does both for a `run_inheritune` output folder.

The token comes from the argument or the usual huggingface_hub places (`HF_TOKEN`, `hf auth login`); it is
never printed, logged or written into any uploaded file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, HubError
from .output import atomic_output_dir

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import CommitInfo, ModelCard
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from .evaluate import DownstreamResults, Tasks

__all__ = [
    "CITATION",
    "base_model_license",
    "check_repo_id",
    "hub_base_model",
    "model_card",
    "publish_run",
    "push_to_hub",
    "upload_plan",
]

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

#: Figures `model_card` and `push_to_hub` pick up from a folder when present: file name -> caption.
KNOWN_FIGURES = {
    "attention_rank.png": "Attention rank per layer of the reference (lazy layers have rank 1)",
    "loss_curves.png": "Validation loss against training tokens: rounds, reference and random-init baseline",
}
# Weight formats that are pickles: never uploaded (loading them can run arbitrary code).
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Trainer state that belongs to a run, not to a published model.
_TRAINER_FILES = re.compile(r"^(optimizer|scheduler|rng_state|scaler|training_args|trainer_state)\b")
_WEIGHT_FILE = re.compile(r"(\.safetensors|\.bin|\.pt|\.pth|\.ckpt|\.index\.json)$")
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_LOCAL_BUILDERS = {"json", "csv", "text", "parquet", "arrow", "pandas"}


# ---------------------------------------------------------------------------------------------- model card


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
) -> ModelCard:
    """A `huggingface_hub.ModelCard` for an Inheritune model: lineage, recipe, losses, downstream scores, citation.

    Args:
        model: the model, its config, or a `save_pretrained` folder. Its `config.inheritune` (written by `inherit`)
            gives the lineage; a folder also supplies `rounds.json`, `downstream_results.json` and known figures.
        repo_id: where the card will live (used for the title and the usage snippet).
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
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder, config = _folder_and_config(model)
    lineage = dict(lineage if lineage is not None else (_lineage_of(config) or {}))
    if rounds is None and folder is not None and (folder / "rounds.json").is_file():
        rounds = json.loads((folder / "rounds.json").read_text())
    if results is None and folder is not None and (folder / "downstream_results.json").is_file():
        from .evaluate import DownstreamResults

        results = DownstreamResults.load(folder)
    if figures is None and folder is not None:
        figures = {caption: folder / name for name, caption in KNOWN_FIGURES.items() if (folder / name).is_file()}
    rounds = [dict(row) for row in rounds or []]
    validation = dict(validation) if validation is not None else _validation_from_rounds(rounds)

    source = lineage.get("source")
    if base_model is None and isinstance(source, str) and _is_hub_id(source):
        base_model = source
    if license is None:
        for candidate in (base_model, source):
            if isinstance(candidate, str) and Path(candidate).is_dir():
                license = base_model_license(candidate)
                if license:
                    break
    if license is None:
        logger.warning("model_card: no license given and none found for the base model; pass license=.")
    name = model_name or (repo_id.split("/")[-1] if repo_id else None) or "inheritune-model"
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    if not datasets and training and isinstance(training.get("dataset"), str) and _is_hub_id(training["dataset"]):
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
    body = _card_body(
        name=name,
        repo_id=repo_id,
        base_model=base_model,
        lineage=lineage,
        config=config,
        rounds=rounds,
        training=dict(training or {}),
        validation=validation,
        results=results,
        figures={caption: Path(path).name for caption, path in (figures or {}).items()},
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


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
    if not _is_hub_id(str(base_model)):
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
    return source if isinstance(source, str) and _is_hub_id(source) else None


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


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _card_body(
    *,
    name: str,
    repo_id: str | None,
    base_model: str | None,
    lineage: Mapping[str, Any],
    config: Any,
    rounds: list[dict[str, Any]],
    training: dict[str, Any],
    validation: Mapping[str, float],
    results: DownstreamResults | None,
    figures: Mapping[str, str],
) -> str:
    source = base_model or lineage.get("source") or "the reference model"
    source_link = f"[{source}](https://huggingface.co/{source})" if base_model else f"`{source}`"
    layers = lineage.get("num_layers") or _config_value(config, "num_hidden_layers", "n_layer", "num_layers")
    depth = lineage.get("source_num_layers")
    out = [f"# {name}", ""]
    paper = f"([Sanyal et al., *When Attention Collapses*]({PAPER_URL}))"
    of = f" of the reference's {depth}" if depth else ""
    if lineage and lineage.get("random_init"):
        out.append(
            f"A {layers}-layer language model with the architecture of {source_link}'s first {layers} blocks and "
            f"**random initial weights**: the same-size baseline that Inheritune {paper} is compared with."
        )
    elif lineage:
        out.append(
            f"A {layers}-layer language model derived from {source_link} with **Inheritune** {paper}: it starts "
            f"from the reference's token embeddings, language-model head and first {layers} transformer "
            f"blocks{of}, and is then trained on the reference's data. The later blocks of a deep model are often "
            "*lazy* (their attention collapses to rank one), so a shallower model that keeps the early blocks can "
            "match the deep one's validation loss."
        )
    else:
        out.append(f"A language model published with inheritune-hf ([Inheritune]({PAPER_URL})).")
    out.append("")

    if lineage:
        out += ["## Lineage", "", "| | |", "|---|---|", f"| Base model (reference) | {source_link} |"]
        if depth:
            out.append(f"| Reference depth | {depth} blocks |")
        if layers:
            out.append(f"| This model's depth | {layers} blocks |")
        if lineage.get("source_layers") is not None:
            out.append(f"| Inherited reference blocks | {_ranges(lineage['source_layers'])} |")
        reinit = lineage.get("reinitialized") or []
        out.append(
            f"| Re-initialised | {', '.join(map(str, reinit)) if reinit else 'nothing: every inherited weight kept'} |"
        )
        if lineage.get("random_init"):
            out.append("| Random init | yes: no weights inherited (the paper's same-size baseline) |")
        if lineage.get("grown_from"):
            out.append(f"| Grown from | {_cell(lineage['grown_from'])} |")
        out.append("")

    grown = [r for r in rounds if r.get("kind", "inheritune") == "inheritune"]
    if grown:
        out += [
            "### Growth rounds",
            "",
            "Algorithm 1 of the paper: train the inherited model; while its validation loss is worse than the "
            "reference's, inherit 2 more blocks and train again.",
            "",
            "| Round | Layers | Strategy | Steps | Tokens | Val loss | Reference val loss | Matched |",
            "|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for row in grown:
            out.append(
                "| "
                + " | ".join(
                    _cell(row.get(k, "-"))
                    for k in ("round", "layers", "strategy", "steps", "tokens", "val_loss", "reference_val_loss")
                )
                + f" | {'yes' if row.get('matched') else 'no'} |"
            )
        out.append("")

    if training:
        out += ["## Training recipe", "", "| Setting | Value |", "|---|---|"]
        out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in training.items()]
        out.append("")

    if validation:
        out += ["## Validation loss", "", "| Model | Validation loss |", "|---|---:|"]
        out += [f"| {_cell(k)} | {_cell(float(v))} |" for k, v in validation.items()]
        out += ["", "Lower is better; the paper's Table 1 compares the same three models.", ""]

    if results is not None and results.rows:
        out += [
            "## Downstream evaluation",
            "",
            "[lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness), as in the paper's "
            "Table 2 (accuracies in %; the average is over accuracies only).",
            "",
            results.to_markdown(),
            "",
        ]

    if figures:
        out += ["## Figures", ""]
        for caption, file_name in figures.items():
            out += [f"![{caption}]({file_name})", "", f"*{caption}*", ""]

    target = repo_id or "path/to/this/model"
    out += [
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{target}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{target}")',
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(out)


def _is_hub_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and not Path(name).exists() and "/" in name


# ---------------------------------------------------------------------------------------------- upload plan


def upload_plan(
    folder: str | os.PathLike,
    *,
    card: ModelCard | str | None = None,
    results: DownstreamResults | None = None,
    extra_files: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
) -> dict[str, Path | bytes]:
    """Path in the repo -> local file or bytes: exactly what `push_to_hub` uploads (and `--dry-run` writes).

    From `folder` it takes the top-level files of a `save_pretrained` checkpoint (config, safetensors weights and
    index, tokenizer, generation config, figures, results JSON), and leaves out hidden files, pickles (`.bin`,
    `.pt`...) and Trainer state. It refuses a folder without config.json or without safetensors weights.
    """
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a save_pretrained folder (no config.json).")
    plan: dict[str, Path | bytes] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith(_PICKLE_SUFFIXES) or _TRAINER_FILES.match(path.name):
            skipped.append(path.name)
            continue
        plan[path.name] = path
    if not any(name.endswith(".safetensors") for name in plan):
        pickles = [name for name in skipped if name.endswith(_PICKLE_SUFFIXES)]
        raise CheckpointError(
            f"{folder} has no .safetensors weights"
            + (f" (only pickles: {pickles})" if pickles else "")
            + ". Re-save it with model.save_pretrained(folder) (safetensors is the default) before publishing."
        )
    if skipped:
        logger.info("Not uploading pickles / Trainer state: %s", ", ".join(skipped))
    if results is not None:
        from .evaluate import RAW_RESULTS_FILENAME, RESULTS_FILENAME

        plan[RESULTS_FILENAME] = (json.dumps(results.to_dict(), indent=2) + "\n").encode()
        plan[RAW_RESULTS_FILENAME] = (json.dumps(results.raw, indent=2, default=str) + "\n").encode()
    items = extra_files.items() if isinstance(extra_files, Mapping) else ((Path(p).name, p) for p in extra_files)
    for path_in_repo, local in items:
        local = Path(local)
        if not local.is_file():
            raise CheckpointError(f"Extra file {local} does not exist.")
        if local.name.endswith(_PICKLE_SUFFIXES):
            raise CheckpointError(f"Refusing to upload the pickle {local}; save it as safetensors or JSON.")
        plan[str(path_in_repo)] = local
    if card is not None:
        plan["README.md"] = (card if isinstance(card, str) else str(card)).encode()
    elif "README.md" not in plan:
        plan["README.md"] = str(model_card(folder)).encode()
    return plan


def _write_plan(plan: Mapping[str, Path | bytes], out: str | os.PathLike, overwrite: bool) -> Path:
    with atomic_output_dir(out, overwrite) as tmp:
        for path_in_repo, source in plan.items():
            target = tmp / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
    return Path(out)


# ---------------------------------------------------------------------------------------------- push


def push_to_hub(
    folder_or_model: str | os.PathLike | PreTrainedModel,
    repo_id: str,
    *,
    card: ModelCard | str | None = None,
    private: bool = True,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    results: DownstreamResults | None = None,
    extra_files: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
    endpoint: str | None = None,
    dry_run: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> CommitInfo | Path:
    """Upload a checkpoint, its card, figures and results to `repo_id` as one commit.

    `create_repo(exist_ok=True)` then a single `create_commit` holding every file (weights as safetensors,
    config, tokenizer, README.md, figures, results JSON; never pickles), so a failure leaves the repo at its
    previous commit and running it again is safe: unchanged files are skipped, changed ones make a new commit,
    and weight files the new folder no longer has (e.g. old shards) are deleted in that same commit.

    Args:
        folder_or_model: a `save_pretrained` folder, or a model in memory (saved to a temporary folder first,
            with `tokenizer` when given).
        repo_id: "namespace/name", or "name" for the token owner's namespace.
        card: the README; default: the folder's README.md, or `model_card(folder)`.
        private: visibility when the repo is created (an existing repo keeps its visibility).
        revision: branch to commit to (created from main when missing); default main.
        token: a write token; default: `HF_TOKEN` or the token saved by `hf auth login`. Never printed or logged.
        results: downstream scores, uploaded as downstream_results.json and lm_eval_results.json.
        extra_files: more files to upload (figures...): paths (uploaded by name) or {path_in_repo: path}.
        endpoint: the Hub URL (default: `HF_ENDPOINT` as huggingface_hub read it at import).
        dry_run: instead of uploading, write the exact files that would be uploaded into this folder (no token or
            network needed) and return its path.
        overwrite: let `dry_run` replace a non-empty folder.

    Returns the `CommitInfo` of the commit (or the dry-run folder). Raises `HubError` for a malformed repo id, a
    missing or rejected token, or an unreachable endpoint; nothing local is changed in any case.
    """
    from huggingface_hub import constants

    check_repo_id(repo_id)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if dry_run is None:
        token = _resolve_token(token, endpoint)
    with _staged(folder_or_model, tokenizer) as folder:
        plan = upload_plan(folder, card=card, results=results, extra_files=extra_files)
        if dry_run is not None:
            written = _write_plan(plan, dry_run, overwrite)
            logger.info("Dry run: wrote the %d files that would be pushed to %s into %s", len(plan), repo_id, written)
            return written
        _refuse_token_in_files(plan, token)
        return _push_plan(plan, repo_id, endpoint, token, private, revision, commit_message, folder)


def check_repo_id(repo_id: str) -> None:
    """Raise `HubError` for a repo id the Hub would refuse, before anything is built or sent."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise HubError(
            f"Malformed repo id {repo_id!r}: expected 'namespace/name' (or 'name'), letters, digits, '-', '_' "
            "and '.', starting with a letter or digit."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"Malformed repo id {repo_id!r}: {err}") from None


def _resolve_token(token: str | None, endpoint: str) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError(
            f"Pushing to {endpoint} needs a write token and none was found. Pass token=..., set HF_TOKEN, or run "
            "`hf auth login`. Nothing was uploaded."
        )
    return token


def _refuse_token_in_files(plan: Mapping[str, Path | bytes], token: str) -> None:
    """Defence in depth: the token must never be published, so look for it in every small text file."""
    needle = token.encode()
    for path_in_repo, source in plan.items():
        if isinstance(source, Path):
            if source.stat().st_size > 16 * 2**20 or source.suffix == ".safetensors":
                continue
            source = source.read_bytes()
        if needle in source:
            raise HubError(f"{path_in_repo} contains your Hub token; refusing to upload it. Remove it and retry.")


@contextmanager
def _staged(folder_or_model: Any, tokenizer: Any) -> Iterator[Path]:
    if isinstance(folder_or_model, str | os.PathLike):
        if tokenizer is not None:
            raise HubError("tokenizer= is only for a model in memory; a folder is uploaded as it is.")
        yield Path(folder_or_model)
        return
    if not hasattr(folder_or_model, "save_pretrained"):
        raise HubError(
            f"Expected a save_pretrained folder or a PreTrainedModel, got {type(folder_or_model).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="inheritune-push-") as tmp:
        folder_or_model.save_pretrained(tmp)  # safetensors by default in transformers 5
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        yield Path(tmp)


@contextmanager
def _hub_errors(endpoint: str, token: str, what: str, folder: Path) -> Iterator[None]:
    """Turn client and HTTP failures into one `HubError` that says what happened and that retrying is safe."""
    from huggingface_hub.errors import HfHubHTTPError

    try:  # huggingface_hub 2 ships its own fork of httpx; 1.x uses httpx itself
        from httpx2 import TransportError
    except ImportError:  # pragma: no cover - depends on the huggingface_hub major version
        from httpx import TransportError

    def scrub(text: str) -> str:
        return text.replace(token, "***") if token else text

    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        server = scrub(err.server_message or (str(err).splitlines() or [type(err).__name__])[0])
        if status == 401:
            hint = "The endpoint rejected the token: check it is valid and has write access."
        elif status == 403:
            hint = "The token may not write to this namespace: check the repo id and the token's permissions."
        else:
            hint = "The repo was left at its previous commit; running the push again is safe."
        raise HubError(f"{what} failed on {endpoint} (HTTP {status}): {server}. {hint}") from None
    except HubError:
        raise
    except ValueError as err:  # the client refuses before sending, e.g. README metadata the Hub would reject
        raise HubError(f"{what} was refused: {scrub(str(err))}") from None
    except (TransportError, ConnectionError) as err:
        raise HubError(
            f"Could not reach the Hub at {endpoint} while trying to {what.lower()} ({type(err).__name__}: "
            f"{scrub(str(err))}). Nothing was changed in {folder}; check the endpoint and your connection, then "
            "run the push again."
        ) from None


def _push_plan(
    plan: Mapping[str, Path | bytes],
    repo_id: str,
    endpoint: str,
    token: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    folder: Path,
) -> CommitInfo:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(endpoint, token, "Checking the token", folder):
        user = api.whoami()["name"]  # cheap: fails fast on a bad token or endpoint, before any write
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"
    with _hub_errors(endpoint, token, f"Creating {repo_id}", folder):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    with _hub_errors(endpoint, token, f"Listing {repo_id}", folder):
        remote = api.list_repo_files(repo_id, revision=revision)
    stale = [p for p in remote if _WEIGHT_FILE.search(p) and p not in plan]
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in plan.items()]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    message = commit_message or "Upload Inheritune model (inheritune-hf)"
    with _hub_errors(endpoint, token, f"Committing to {repo_id}", folder):
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    logger.info("%s/%s is at commit %s (%d files uploaded or unchanged)", endpoint, repo_id, info.oid, len(plan))
    return info


# ---------------------------------------------------------------------------------------------- a whole run


def publish_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    tasks: Tasks | None = None,
    include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    batch_size: int | str = 16,
    limit: int | float | None = None,
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
    results: DownstreamResults | None = None,
) -> CommitInfo | Path:
    """Evaluate and publish the final round of a `run_inheritune` output folder (`--push-to-hub REPO_ID`).

    Reads run.json and rounds.json, takes the last round's model, scores it on `tasks` when given (e.g.
    `PAPER_TASKS`), builds the card (lineage, growth rounds, recipe, validation loss against the reference and the
    random-init baseline, downstream scores, loss figure) and pushes it with `push_to_hub`. Scores already computed
    can be passed as `results` instead of `tasks`. Every input (repo id,
    token, tasks) is checked before the evaluation starts.
    """
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / "run.json").read_text())
        rows = json.loads((run_dir / "rounds.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{run_dir} is not a finished run_inheritune folder ({err}).") from err
    grown = [r for r in rows if r.get("kind", "inheritune") == "inheritune"]
    if not grown:
        raise CheckpointError(f"{run_dir}/rounds.json has no finished round to publish.")
    model_dir = run_dir / grown[-1]["checkpoint"]

    from huggingface_hub import constants

    check_repo_id(repo_id)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if dry_run is None:
        token = _resolve_token(token, endpoint)
    if tasks is not None:
        from .evaluate import check_tasks

        check_tasks(tasks, include_path=include_path)

    if tasks is not None and results is None:
        from transformers import AutoTokenizer

        from .evaluate import evaluate_downstream
        from .loading import load_causal_lm

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
        model = load_causal_lm(model_dir)
        results = evaluate_downstream(
            model, tokenizer, tasks, batch_size=batch_size, limit=limit, include_path=include_path
        )

    config = run.get("config", {})
    training = {k: v for k, v in config.get("training", {}).items() if v is not None}
    training.update(
        {
            k: v
            for k, v in config.get("inheritune", {}).items()
            if isinstance(v, str | int | float | bool) and k not in training
        }
    )
    last = grown[-1]
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
