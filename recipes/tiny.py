"""The embedded-default demo: the paper's story in miniature, offline, on a 2-core CPU in minutes.

    python recipes/tiny.py [--budget small|default|paper] [--seed N] [--push-to-hub REPO_ID]

Trains an 8-layer GPT-2-style reference on the embedded corpus (the Python 3.11 documentation), diagnoses its attention,
runs Inheritune from 4 layers with growth until it matches, trains the same-size random-init baseline, scores
all three with lm-eval on held-out tasks, and writes outputs/demo/ (report.md, figures, a Hub-ready model).
All settings are in tiny.yaml; the logic is `inheritune_hf.recipe`.
"""

import sys
from pathlib import Path

from inheritune_hf.recipe import main

if __name__ == "__main__":
    sys.exit(main(default_config=Path(__file__).with_suffix(".yaml")))
