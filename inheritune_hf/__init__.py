"""inheritune-hf: the Inheritune recipe (arXiv 2404.08634) for any Hugging Face causal LM.

The package reads as the method, one module per step:

    analyze (which layers are lazy?) -> inherit (slice a smaller model) -> train / grow (until it matches
    the reference) -> evaluate (lm-eval) -> publish (card + Hub)

Public names are imported lazily so that `import inheritune_hf` stays cheap and an optional extra
(lm-eval, matplotlib) is only needed by the step that uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "InherituneError": "errors",
    "UnsupportedModelError": "errors",
    "LayerStackNotFoundError": "errors",
    "InvalidLayersError": "errors",
    "ConfigSliceError": "errors",
    "OutputExistsError": "errors",
    "DataError": "errors",
    "TrainingError": "errors",
    "EvaluationError": "errors",
    "HubError": "errors",
    "CheckpointError": "errors",
    # architecture knowledge, derived from the model and config
    "find_decoder_layers": "architecture",
    "LayerStack": "architecture",
    # 1. analyze
    "attention_rank": "analyze",
    "attention_mass": "analyze",
    "analyze_attention": "analyze",
    "AttentionReport": "analyze",
    # 2. inherit
    "inherit": "inherit",
    "inherit_config": "inherit",
    # 3. train / grow
    "InherituneArguments": "train",
    "train": "train",
    "grow": "train",
    "run_inheritune": "train",
    # 4. evaluate
    "evaluate_downstream": "evaluate",
    "PAPER_TASKS": "evaluate",
    "DownstreamResults": "evaluate",
    # 5. publish
    "model_card": "publish",
    "push_to_hub": "publish",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .analyze import AttentionReport, analyze_attention, attention_mass, attention_rank
    from .architecture import LayerStack, find_decoder_layers
    from .errors import (
        CheckpointError,
        ConfigSliceError,
        DataError,
        EvaluationError,
        HubError,
        InherituneError,
        InvalidLayersError,
        LayerStackNotFoundError,
        OutputExistsError,
        TrainingError,
        UnsupportedModelError,
    )
    from .evaluate import PAPER_TASKS, DownstreamResults, evaluate_downstream
    from .inherit import inherit, inherit_config
    from .publish import model_card, push_to_hub
    from .train import InherituneArguments, grow, run_inheritune, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inheritune_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
