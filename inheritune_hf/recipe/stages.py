"""The recipe's stages, one function each, in the paper's order; `run_recipe` calls them one after another.

0. `prepare_inputs`: the tokenizer, the packed train and validation blocks and a given reference, all checked
   before anything is written.
1. `train_or_load_reference`: the reference, trained from scratch as the paper did (reused from the output
   folder only when its fingerprints match) or the one given.
2. `diagnose`: attention rank and single-column mass of the reference (`analyze_attention`).
3. `inheritune_rounds`: Algorithm 1 (`run_inheritune`) with the same-size random-init baseline, then
   `compared_models`: the reference, the final Inheritune model and the baseline, side by side.
4. `eval_tasks` and `evaluate_models`: lm-eval downstream scores of the compared models.
5. `publish_model` and `push_model`: the Hub-ready folder with its card, and the push.

Each takes and returns real objects (a tokenizer, `datasets.Dataset`, `PreTrainedModel`, `AttentionReport`,
`InherituneResult`, `DownstreamResults`), so a notebook user can run any one of them alone.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, TrainingArguments, set_seed

from ..analyze import analyze_attention, sample_source
from ..data import EMBEDDED_CORPUS, causal_lm_datasets, load_text_dataset, train_tokenizer
from ..errors import InherituneError, InvalidArgumentError
from ..evaluate import PAPER_TASKS, DownstreamResults, evaluate_downstream, write_heldout_tasks
from ..figures import plot_attention
from ..fingerprint import config_fingerprint, dataset_fingerprint, settings_differences, training_fingerprint
from ..io import atomic_write_bytes, jsonable, read_json, write_json
from ..loading import check_block_size, load_causal_lm, load_causal_lm_config
from ..publish import publish_run
from ..rounds import InherituneResult, run_inheritune, save_trained_model
from ..tracking import ATTENTION_HISTORY_FILE, AttentionTracking
from ..train import train
from .plan import meta_parameter_count, parameter_count, reference_config

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import CommitInfo
    from transformers import PreTrainedTokenizerBase

    from ..analyze import AttentionReport
    from ..settings import DataArguments, InherituneArguments, RecipeArguments


# ------------------------------------------------------------------------------------------- 0. inputs


@dataclass
class RecipeInputs:
    """What every stage reads: the tokenizer, the packed blocks, where they came from, and a given reference."""

    tokenizer: PreTrainedTokenizerBase
    train_set: datasets.Dataset | datasets.IterableDataset
    eval_set: datasets.Dataset
    data_info: dict[str, Any]
    given_reference: PreTrainedModel | None = None


def load_tokenizer(
    recipe: RecipeArguments, data_args: DataArguments
) -> tuple[PreTrainedTokenizerBase, datasets.DatasetDict | None]:
    """The tokenizer: named, the reference's own, or a byte-level BPE trained on the corpus (seconds).

    Returns the tokenizer and, when it had to read the corpus to train one, the loaded text, so the blocks are
    cut from that same text instead of reading and splitting the corpus a second time.
    """
    if data_args.tokenizer_name:
        return AutoTokenizer.from_pretrained(data_args.tokenizer_name), None
    if recipe.reference:
        return AutoTokenizer.from_pretrained(recipe.reference), None
    raw = load_text_dataset(
        data_args.dataset_name,
        config_name=data_args.dataset_config_name,
        revision=data_args.dataset_revision,
        text_column=data_args.text_column,
        validation_fraction=data_args.validation_fraction,
        corpus_max_files=data_args.corpus_max_files,
        corpus_max_bytes=data_args.corpus_max_bytes,
        seed=data_args.split_seed,
    )
    tokenizer = train_tokenizer(
        raw["train"], vocab_size=recipe.tokenizer_vocab_size, text_column=data_args.text_column
    )
    return tokenizer, raw


def prepare_inputs(recipe: RecipeArguments, data_args: DataArguments) -> RecipeInputs:
    """The tokenizer and the train and validation blocks; a given reference, loaded and checked, writing nothing.

    A given reference is checked first from its config (its kind and context against `block_size`), then its
    weights load (safetensors only), then the tokenizer is checked on a sample of the data against its embeddings.
    """
    given, vocab_size = None, None
    if recipe.reference:
        check_block_size(load_causal_lm_config(recipe.reference), data_args.block_size)
    tokenizer, text = load_tokenizer(recipe, data_args)
    if recipe.reference:
        given = load_causal_lm(recipe.reference)
        vocab_size = given.get_input_embeddings().num_embeddings
    train_set, eval_set, data_info = causal_lm_datasets(data_args, tokenizer, source=text, vocab_size=vocab_size)
    if text is not None:
        data_info["source"] = data_args.dataset_name or EMBEDDED_CORPUS
    return RecipeInputs(tokenizer, train_set, eval_set, data_info, given)


# ------------------------------------------------------------------------------------------- 1. reference


def train_or_load_reference(
    recipe: RecipeArguments,
    tokenizer: PreTrainedTokenizerBase,
    train_set: datasets.Dataset | datasets.IterableDataset,
    eval_set: datasets.Dataset,
    data_args: DataArguments,
    training_args: TrainingArguments,
    out: Path,
    *,
    overwrite: bool = False,
    given: PreTrainedModel | None = None,
    tracking: AttentionTracking | None = None,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """The reference M_ref and its record (`reference.json`): the given one (`given`, or loaded from
    `recipe.reference`), or one trained from scratch under `out/reference/`.

    A reference this folder already holds is reused only when it was trained with the same config, training
    settings and data (a resumed or repeated run); otherwise it is retrained with `overwrite`, or refused. With
    `tracking`, a reference trained here is watched by its callback; its history is the "reference" stage (also
    written to `out/reference/attention_history.json`, and read back from there when the reference is reused).
    """
    from accelerate import PartialState

    if recipe.reference:
        return given if given is not None else load_causal_lm(recipe.reference), {"source": recipe.reference}
    folder = out / "reference"
    final = folder / "model"
    config = reference_config(recipe, tokenizer, data_args.block_size)
    steps = recipe.reference_max_steps or training_args.max_steps
    args = dataclasses.replace(training_args, output_dir=str(folder), max_steps=steps)
    settings = jsonable(
        {
            "config": config_fingerprint(config),
            "training": training_fingerprint(args),
            "train_data": dataset_fingerprint(train_set),
            "eval_data": dataset_fingerprint(eval_set),
        }
    )
    if (final / "config.json").is_file():
        record = folder / "reference.json"  # written last: without it the reference is unfinished
        info = read_json(record) if record.is_file() else {}
        changed = settings_differences(info.get("settings", {}), settings)
        if not changed:
            if tracking is not None:
                tracking.load(folder / ATTENTION_HISTORY_FILE)
            model = load_causal_lm(final)
            model.config._name_or_path = f"{recipe.name}-reference-{recipe.num_layers}L"  # as when it was trained
            return model, info
        if not overwrite:
            raise InherituneError(
                f"{folder} holds a reference trained with other settings ({'; '.join(changed[:4])}). Pass "
                "--overwrite true to retrain it, or choose another --output_dir."
            )
        state = PartialState()
        if state.is_main_process:
            shutil.rmtree(folder)
        state.wait_for_everyone()
    set_seed(args.seed)  # the reference's initial weights, like every round's, follow --seed: a run is repeatable
    model = AutoModelForCausalLM.from_config(config)
    callbacks = [tracking.callback()] if tracking is not None else []
    # eval_on_start: its curve starts at step 0, as every round's does (not a setting: the fingerprint omits it)
    args_from_step_0 = dataclasses.replace(args, eval_on_start=True)
    result = train(model, train_set, eval_set, args_from_step_0, tokenizer=tokenizer, callbacks=callbacks)
    model.config._name_or_path = f"{recipe.name}-reference-{recipe.num_layers}L"
    # Trainer.save_model, as every round is saved: the full state dict gathered under FSDP / ZeRO-3, the files
    # (weights and tokenizer) written once, by the main process, and renamed into place.
    state = PartialState()
    save_trained_model(result, final, state)
    info = {
        "source": "trained from scratch",
        "layers": recipe.num_layers,
        "steps": result.steps,
        "tokens": result.tokens,
        "final_loss": result.final_loss,
        "eval_curve": result.eval_curve,
        "settings": settings,
    }
    if tracking is not None:
        tracking.record("reference", result.trainer)
        tracking.write(folder)
    if state.is_main_process:
        write_json(folder / "reference.json", info)
    state.wait_for_everyone()  # no process reads the folder before its record is written
    return model, info


# ------------------------------------------------------------------------------------------- 2. diagnosis


def diagnose(
    recipe: RecipeArguments, reference: PreTrainedModel, eval_set: datasets.Dataset, out: Path, seed: int
) -> AttentionReport:
    """Which of the reference's layers are lazy (attention rank, single-column mass), written under `out/analysis/`:
    `report.json`, `report.csv` and `attention_rank.png`."""
    folder = out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    seq_len = min(recipe.analyze_seq_len, len(eval_set[0]["input_ids"]))
    report = analyze_attention(
        reference,
        input_ids=sample_source(eval_set[:]["input_ids"]),
        num_samples=recipe.analyze_samples,
        seq_len=seq_len,
        seed=seed,
    )
    report.to_json(folder / "report.json")
    report.to_csv(folder / "report.csv")
    plot_attention(report, folder / "attention_rank.png")
    return report


# ------------------------------------------------------------------------------------------- 3. Inheritune


def inheritune_rounds(
    reference: PreTrainedModel,
    train_set: datasets.Dataset | datasets.IterableDataset,
    eval_set: datasets.Dataset,
    inheritune_args: InherituneArguments,
    training_args: TrainingArguments,
    run_dir: Path,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    metadata: dict[str, Any] | None = None,
    figure: Path | None = None,
    tracking: AttentionTracking | None = None,
    reference_curve: Sequence[dict[str, Any]] | None = None,
) -> InherituneResult:
    """Algorithm 1 under `run_dir` (`run_inheritune`: inherit L/2 blocks, train, grow by 2 until matched, and
    the random-init baseline when asked). `figure` (the diagnosis's attention-rank plot) is copied beside the
    rounds, by the main process, so the model card shows it. `tracking` (with the reference's stage) watches every
    round; the run's `attention_history.json` and `.png` are written in `run_dir`. `reference_curve` (the
    reference's own training, when the recipe trained it) is drawn in loss_curves.png."""
    from accelerate import PartialState

    result = run_inheritune(
        reference,
        train_set,
        eval_set,
        inheritune_args,
        dataclasses.replace(training_args, output_dir=str(run_dir)),
        tokenizer=tokenizer,
        metadata=metadata,
        tracking=tracking,
        reference_curve=reference_curve,
    )
    if figure is not None and PartialState().is_main_process:
        atomic_write_bytes(run_dir / figure.name, figure.read_bytes())
    return result


def compared_models(
    reference: PreTrainedModel,
    reference_info: Mapping[str, Any],
    result: InherituneResult,
    *,
    load_models: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, PreTrainedModel]]:
    """The paper's comparison: the reference, the final Inheritune model and the same-size random-init baseline.

    Returns the table rows (`model`, `layers`, `params`, `val_loss`, `tokens`, `kind` as in rounds.json and
    `matched`; Inheritune's tokens count every round) and the models by row name, read back from the run folder. Parameters are counted from each saved
    config on the meta device, so `load_models=False` (the processes that do not evaluate, under `accelerate
    launch`) gets the same rows without holding two more models in memory.
    """
    depth = reference.config.get_text_config().num_hidden_layers
    rows = [
        {
            "model": f"reference ({depth}L)",
            "layers": depth,
            "params": parameter_count(reference),
            "val_loss": result.reference_loss,
            "tokens": reference_info.get("tokens"),
            "kind": "reference",
        }
    ]
    models = {rows[0]["model"]: reference}
    compared = [("inheritune", result.rounds[-1])] + ([("baseline", result.baseline)] if result.baseline else [])
    for kind, row in compared:
        folder = result.output_dir / row.checkpoint
        label = "Inheritune" if kind == "inheritune" else "random init, same size"
        rows.append(
            {
                "model": f"{label} ({row.layers}L)",
                "layers": row.layers,
                "params": meta_parameter_count(load_causal_lm_config(folder)),
                "val_loss": row.val_loss,
                "tokens": row.cumulative_tokens,
                "kind": row.kind,
                "matched": row.matched,
            }
        )
        if load_models:
            models[rows[-1]["model"]] = load_causal_lm(folder)
    return rows, models


# ------------------------------------------------------------------------------------------- 4. evaluation


def eval_tasks(
    recipe: RecipeArguments, tokenizer: PreTrainedTokenizerBase, eval_set: datasets.Dataset, out: Path
) -> tuple[Any, str | None]:
    """The tasks to score and lm-eval's include path: the paper's suite, named lm-eval tasks, or offline tasks
    built from held-out text (written under `out/evaluation/tasks/`). `(None, None)` for `eval_tasks: none`."""
    choice = recipe.eval_tasks.strip()
    if choice == "none":
        return None, None
    if choice == "paper":
        return PAPER_TASKS, None
    if choice == "heldout":
        texts = tokenizer.batch_decode(eval_set[:400]["input_ids"], skip_special_tokens=True)
        folder = write_heldout_tasks(texts, out / "evaluation" / "tasks")
        return ["heldout_ppl", "heldout_mc"], str(folder)
    return [name.strip() for name in choice.split(",") if name.strip()], None


#: The evaluation subfolder of each compared row, by its `kind` (as `compared_models` and rounds.json name it).
EVALUATION_FOLDERS = {"reference": "reference", "inheritune": "inheritune", "random_baseline": "random_init"}


def evaluation_folders(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each compared model's evaluation subfolder by its row name, from the row's kind (not from its label)."""
    return {row["model"]: EVALUATION_FOLDERS[row["kind"]] for row in rows}


def evaluate_models(
    models: Mapping[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    tasks: Any,
    folder: Path,
    *,
    subfolders: Mapping[str, str],
    include_path: str | None = None,
    batch_size: int | str = 16,
    limit: int | float | None = None,
) -> dict[str, DownstreamResults]:
    """lm-eval scores of each model by its name, each saved under `folder / subfolders[name]`.

    The subfolders are given, not derived from the names: a name is a display label ("random init, same size
    (4L)") that may change with the report's wording, while the folders are what a reader's scripts open.
    """
    import logging

    missing = sorted(set(models) - set(subfolders))
    if missing:
        raise InvalidArgumentError(
            f"evaluate_models: no subfolder given for {missing}; pass subfolders={{name: folder}}."
        )

    # lm-eval warns once per request when a context is truncated to the model's window; one summary is enough.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results_by_name = {}
    for name, model in models.items():
        results = evaluate_downstream(
            model, tokenizer, tasks, batch_size=batch_size, limit=limit, include_path=include_path
        )
        results.save(folder / subfolders[name])
        results_by_name[name] = results
    return results_by_name


# ------------------------------------------------------------------------------------------- 5. the model


def publish_model(
    recipe: RecipeArguments,
    data_args: DataArguments,
    run_dir: Path,
    folder: Path,
    results: DownstreamResults | None = None,
) -> Path:
    """The final model as a Hub-ready folder (`save_pretrained` files, card with lineage and scores) in `folder`."""
    return publish_run(
        run_dir,
        recipe.hub_repo_id or f"local/{recipe.name}-inheritune",
        results=results,
        dry_run=folder,
        overwrite=True,
        base_model=recipe.reference,
        datasets=data_args.dataset_name,
        usage_id=None if recipe.hub_repo_id else str(folder),  # unpushed: the snippet loads the folder it is in
    )


def push_model(
    recipe: RecipeArguments, data_args: DataArguments, run_dir: Path, results: DownstreamResults | None = None
) -> CommitInfo:
    """The same folder pushed to `recipe.hub_repo_id` as one commit."""
    return publish_run(
        run_dir,
        recipe.hub_repo_id,
        results=results,
        private=recipe.private,
        base_model=recipe.reference,
        datasets=data_args.dataset_name,
    )


__all__ = [
    "RecipeInputs",
    "compared_models",
    "diagnose",
    "eval_tasks",
    "evaluate_models",
    "evaluation_folders",
    "inheritune_rounds",
    "load_tokenizer",
    "prepare_inputs",
    "publish_model",
    "push_model",
    "train_or_load_reference",
]
