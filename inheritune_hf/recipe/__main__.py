"""`python -m inheritune_hf.recipe RECIPE.yaml [--smoke | --plan] [--budget NAME] [--FLAG VALUE ...]`.

The same entry point as `inheritune recipe` and the `recipes/*.py` launchers; under `accelerate launch -m
inheritune_hf.recipe RECIPE.yaml` it runs on every process the user's accelerate config starts.
"""

import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
