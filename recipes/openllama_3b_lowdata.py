"""Low-data regime: the first 13 of OpenLLaMA-3B's 26 layers, 1B RedPajama tokens for 8 epochs.

    accelerate launch [--config_file recipes/accelerate_configs/multi_gpu.yaml] recipes/openllama_3b_lowdata.py \
        [--config recipes/openllama_3b_lowdata.yaml] [--reference PATH_OR_HUB_ID] [--push-to-hub REPO_ID]
        [--smoke | --plan] [--flag value ...]

All settings are in openllama_3b_lowdata.yaml (the paper's hyperparameters); any flag overrides them. The logic is
`inheritune_hf.recipe`: train or load the reference, diagnose its attention, Inheritune with growth, the
same-size random-init baseline, the paper's lm-eval suite, and a Hub-ready model folder (pushed when asked).
`--smoke` runs the same code path on tiny shapes and the embedded corpus in a few CPU steps; `--plan` prints
the shapes, tokens and compute of the full run (no training).
"""

import sys
from pathlib import Path

from inheritune_hf.recipe import main

if __name__ == "__main__":
    sys.exit(main(default_config=Path(__file__).with_suffix(".yaml")))
