"""Recipes: the paper's whole pipeline as one library call, configured by a YAML file and flags.

The subpackage reads as the paper's stages, each file importing only the ones above it:

- `plan`: what a run will build and cost before it starts (shapes on the meta device, tokens per step, 6ND,
  the gradient accumulation for the process count): `plan_recipe`, `format_plan`, `accumulation_for`,
  `check_recipe`, `reference_config`.
- `report`: `report.md`, the comparison table and the attention diagnosis (`format_report`).
- `stages`: one function per stage, each taking and returning real objects: `prepare_inputs`,
  `train_or_load_reference`, `diagnose`, `inheritune_rounds`, `compared_models`, `eval_tasks`,
  `evaluation_folders`, `evaluate_models`, `publish_model`, `push_model`.
- `run`: `parse_recipe_args` (YAML, budget, smoke, flags), `run_recipe` (the stages in order), `launch` (parse,
  then plan or run: `inheritune recipe RECIPE.yaml`) and `main`, the entry point of every `recipes/*.py` launcher
  and of `python -m inheritune_hf.recipe RECIPE.yaml`.
"""

from .plan import accumulation_for, check_recipe, format_plan, plan_recipe, reference_config
from .report import format_report
from .run import PARSED_TYPES, SMOKE_SETTINGS, RecipeResult, launch, main, parse_recipe_args, run_recipe
from .stages import (
    RecipeInputs,
    compared_models,
    diagnose,
    eval_tasks,
    evaluate_models,
    evaluation_folders,
    inheritune_rounds,
    prepare_inputs,
    publish_model,
    push_model,
    train_or_load_reference,
)

__all__ = [
    "PARSED_TYPES",
    "SMOKE_SETTINGS",
    "RecipeInputs",
    "RecipeResult",
    "accumulation_for",
    "check_recipe",
    "compared_models",
    "diagnose",
    "eval_tasks",
    "evaluate_models",
    "evaluation_folders",
    "format_plan",
    "format_report",
    "inheritune_rounds",
    "launch",
    "main",
    "parse_recipe_args",
    "plan_recipe",
    "prepare_inputs",
    "publish_model",
    "push_model",
    "reference_config",
    "run_recipe",
    "train_or_load_reference",
]
