"""Step 5 of the method: a model card with the lineage and the numbers, and one atomic push to the Hub.

- `card`: `model_card` builds a `huggingface_hub.ModelCard` from `ModelCardData` (metadata, `model-index`) and a
  Jinja template (the prose: lineage, growth rounds, recipe, validation loss, downstream scores, figures, usage,
  citation), the way TRL and `Trainer` write theirs; a user can pass their own `template_path`.
- `push`: `push_to_hub` uploads a `save_pretrained` folder (safetensors only) with the card, figures and results
  JSON as a single commit, deleting stale weight files in it; `dry_run` writes the same files into a folder.
- `run`: `publish_run` does both for a `run_inheritune` output folder, with downstream scores computed beforehand
  (`inheritune_hf.evaluate`).

This subpackage imports only downward (errors, output, evaluate), never the training or recipe modules.
"""

from .card import CITATION, KNOWN_FIGURES, TEMPLATE_PATH, base_model_license, hub_base_model, model_card
from .push import STALE_WEIGHT_PATTERNS, check_repo_id, push_to_hub, upload_plan
from .run import final_model_dir, publish_run

__all__ = [
    "CITATION",
    "KNOWN_FIGURES",
    "STALE_WEIGHT_PATTERNS",
    "TEMPLATE_PATH",
    "base_model_license",
    "check_repo_id",
    "final_model_dir",
    "hub_base_model",
    "model_card",
    "publish_run",
    "push_to_hub",
    "upload_plan",
]
