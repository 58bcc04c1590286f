"""Launcher of the recipe in the YAML file beside this script (same name, .yaml), for `accelerate launch`.

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
