"""`inheritune recipe RECIPE.yaml [--smoke | --plan] [--budget NAME] [--FLAG VALUE ...]`: the paper's whole pipeline.

Train (or load) the reference, diagnose its attention, run Inheritune with growth and the random-init baseline,
score them with lm-eval, and write a Hub-ready model and report.md, all configured by one YAML file (`recipes/`)
whose keys are the flags: `RecipeArguments`, `InherituneArguments`, `DataArguments` and `TrainingArguments`, parsed
by the one `InherituneParser`. `smoke`, `plan` and `budget` are settings too, given in the YAML or as flags. The
same run: `python -m inheritune_hf.recipe RECIPE.yaml`, or `accelerate launch recipes/NAME.py` (DDP, FSDP, DeepSpeed).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """`inheritune recipe ...`: parse the recipe's settings, then print its plan or run it."""
    from ..recipe import launch

    return launch(argv)
