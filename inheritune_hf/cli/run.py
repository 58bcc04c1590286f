"""`inheritune run`: the Inheritune loop (inherit L/2 blocks, train, grow by 2 until the reference is matched).

Arguments are `InherituneArguments`, `DataArguments` and `transformers.TrainingArguments`, parsed by
`InherituneParser` (an `HfArgumentParser`) from flags or from a YAML recipe (then flags override it), as in trl's
scripts; `--help` shows the method's settings, `--help-all` Trainer's too:

    inheritune run --reference_model ./gpt2-medium-100k --output_dir out --max_steps 100000 ...
    inheritune run recipe.yaml [--resume]             # or: inheritune run --config recipe.yaml
    accelerate launch -m inheritune_hf.cli.run recipe.yaml        # DDP / FSDP / DeepSpeed: the user's config
"""

from __future__ import annotations

import json
import sys

from ..errors import DataError, InvalidArgumentError, TrainingError
from ..io import check_output_dir
from ..parser import InherituneParser
from ..settings import DataArguments, InherituneArguments, check_training_arguments


def parser() -> InherituneParser:
    from transformers import TrainingArguments

    return InherituneParser(
        [InherituneArguments, DataArguments, TrainingArguments],
        prog="inheritune run",
        description=__doc__.split("\n\n")[0],
        yaml_positional=True,
        summarized=[TrainingArguments],
    )


def parse(argv: list[str]):
    """(InherituneArguments, DataArguments, TrainingArguments) from flags, or a YAML recipe followed by overrides.

    `inheritune run recipe.yaml --resume` (or `--config recipe.yaml`) reads the recipe, then applies the flags.
    Every value is range-checked here (our settings in their `__post_init__`, Trainer's by
    `check_training_arguments`), before anything is read or written.
    """
    run_parser = parser()
    path, _ = run_parser.config_file(argv)
    if path is not None:
        _refuse_a_recipe(path, run_parser.read_config(path))
    inheritune_args, data_args, training_args = run_parser.parse(argv)
    check_training_arguments(training_args)
    return inheritune_args, data_args, training_args


def _refuse_a_recipe(path: str, settings: dict) -> None:
    """A recipe's YAML (recipes/*.yaml: its budgets, its reference's shape) names the subcommand that runs it."""
    import dataclasses

    from ..settings import RecipeArguments

    own = {f.name for dtype in (InherituneArguments, DataArguments) for f in dataclasses.fields(dtype)}
    recipe_keys = sorted(({f.name for f in dataclasses.fields(RecipeArguments)} - own) & set(settings))
    recipe_keys += ["budgets"] if "budgets" in settings else []
    if recipe_keys:
        raise InvalidArgumentError(
            f"{path} is a recipe (it sets {', '.join(recipe_keys[:4])}): run it with `inheritune recipe {path}`."
        )


#: Checkpoints kept per round when --save_total_limit is not given: the last, and the best one Trainer tracks.
SAVE_TOTAL_LIMIT = 2


def _defaults_a_user_would_choose(argv: list[str], training_args):
    """Trainer's defaults where they would quietly spoil a long run: no run folder named (Trainer would write to
    ./trainer_output), `--eval_steps` without `--eval_strategy steps` (nothing would be evaluated, so the loss curve
    has one point), and every checkpoint kept with its optimizer state (a disk full of them over many rounds)."""
    import dataclasses

    from transformers.trainer_utils import IntervalStrategy

    named = {arg.split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")}
    if training_args.output_dir in (None, "trainer_output") and "--output_dir" not in named:
        raise TrainingError("Name the run's folder: --output_dir DIR (rounds, checkpoints and run.json go there).")
    changes = {}
    if training_args.eval_strategy == IntervalStrategy.NO and training_args.eval_steps is not None:
        changes["eval_strategy"] = "steps"
    if training_args.save_total_limit is None:
        changes["save_total_limit"] = SAVE_TOTAL_LIMIT
    return dataclasses.replace(training_args, **changes) if changes else training_args


def main(argv: list[str]) -> int:
    """`inheritune run ...`: parse the settings, check them, then run the loop."""
    from transformers import AutoTokenizer

    from ..data import causal_lm_datasets, check_text_source
    from ..loading import load_causal_lm, load_causal_lm_config
    from ..rounds import check_against_reference, check_resumable, run_inheritune
    from ..sources import check_source
    from ..verdict import weak_reference

    inheritune_args, data_args, training_args = parse(argv)
    if not inheritune_args.reference_model:
        raise TrainingError("Name the trained reference model: --reference_model NAME_OR_PATH.")
    training_args = _defaults_a_user_would_choose(argv, training_args)
    # Everything is checked before anything is written, cheapest first: the output folder (or the run to resume),
    # the reference's kind, depths and context (its config), the tokenizer, the weights' format (loading), then the tokenizer on a sample of
    # the data against the reference's embeddings (before the corpus is tokenized).
    if inheritune_args.resume:
        check_resumable(training_args.output_dir)
    else:
        check_output_dir(training_args.output_dir, overwrite=inheritune_args.overwrite)
    check_text_source(data_args.dataset_name)
    check_source(inheritune_args.reference_model, "--reference_model")
    if data_args.tokenizer_name:
        check_source(data_args.tokenizer_name, "--tokenizer_name", filename="tokenizer_config.json")
    check_against_reference(load_causal_lm_config(inheritune_args.reference_model), inheritune_args, data_args)
    tokenizer_name = data_args.tokenizer_name or inheritune_args.reference_model
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    except (OSError, ValueError) as err:
        raise DataError(
            f"Cannot load a tokenizer from {tokenizer_name!r} ({err}). The reference must be trained with the "
            "tokenizer used here: pass --tokenizer_name, or save it beside the reference (save_pretrained)."
        ) from err
    reference = load_causal_lm(inheritune_args.reference_model)
    vocab_size = reference.get_input_embeddings().num_embeddings
    with training_args.main_process_first(desc="tokenizing and packing"):
        train_dataset, eval_dataset, data_metadata = causal_lm_datasets(data_args, tokenizer, vocab_size=vocab_size)
    result = run_inheritune(
        reference,
        train_dataset,
        eval_dataset,
        inheritune_args,
        training_args,
        tokenizer=tokenizer,
        metadata={"data": data_metadata, "reference_model": inheritune_args.reference_model},
    )
    if training_args.process_index == 0:
        for row in result.rounds:
            print(
                f"round {row.round}: {row.layers} layers, {row.steps} steps, val loss {row.val_loss:.4f} "
                f"(target {row.target_loss:.4f}) {'matched' if row.matched else 'not matched'}"
            )
        if result.baseline:
            print(f"random-init baseline: {result.baseline.layers} layers, val loss {result.baseline.val_loss:.4f}")
        caveat = weak_reference(result.rows())
        if result.matched and caveat:
            print(caveat)
        print(json.dumps({"output_dir": str(result.output_dir), "matched": result.matched}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main as inheritune

    sys.exit(inheritune(["run", *sys.argv[1:]]))
