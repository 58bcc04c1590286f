"""Write `recipes/NAME.py`, the launcher of `recipes/NAME.yaml`, for every recipe YAML: one text, the same for all.

A recipe is its YAML file (what it trains, with its budgets and the paper's settings in its header comment); the
launcher exists only because `accelerate launch` starts a script. `--check` writes nothing and exits 1 when a
launcher is missing or differs from `LAUNCHER` (tests/test_recipes.py asserts the same).

    python scripts/write_recipe_launchers.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

LAUNCHER = '''"""Launcher of the recipe in the YAML file beside this script (same name, .yaml), for `accelerate launch`.

    python recipes/NAME.py [--smoke | --plan] [--budget NAME] [--push-to-hub REPO_ID] [--FLAG VALUE ...]
    accelerate launch [--config_file recipes/accelerate_configs/multi_gpu.yaml] recipes/NAME.py [...]

The same as `inheritune recipe recipes/NAME.yaml [...]`: the YAML holds the settings (its header says what the
recipe reproduces), any flag overrides them, and `inheritune_hf.recipe` holds the logic. Written by
scripts/write_recipe_launchers.py, identical for every recipe; edit it there.
"""

import sys
from pathlib import Path

from inheritune_hf.recipe import main

if __name__ == "__main__":
    sys.exit(main(default_config=Path(__file__).with_suffix(".yaml")))
'''


def stale_launchers(folder: Path = RECIPES) -> list[Path]:
    """The launchers that are missing, differ from `LAUNCHER`, or have no YAML beside them."""
    wanted = {path.with_suffix(".py") for path in folder.glob("*.yaml")}
    present = set(folder.glob("*.py"))
    differing = {path for path in wanted & present if path.read_text(encoding="utf-8") != LAUNCHER}
    return sorted((wanted - present) | (present - wanted) | differing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a launcher is stale")
    options = parser.parse_args(argv)
    stale = stale_launchers()
    if options.check:
        for path in stale:
            print(f"stale launcher: {path.relative_to(RECIPES.parent)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        if path.with_suffix(".yaml").exists():
            path.write_text(LAUNCHER, encoding="utf-8")
            print(f"wrote {path.relative_to(RECIPES.parent)}")
        else:
            print(f"{path.relative_to(RECIPES.parent)} has no YAML beside it; remove it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
