"""inheritune-hf: the Inheritune recipe (arXiv 2404.08634) for any Hugging Face causal LM.

The package reads as the method, one subpackage or module per step:

    analyze (which layers are lazy?) -> inherit (slice a smaller model) -> train / grow (until it matches
    the reference) -> evaluate (lm-eval) -> publish (card + Hub)

The names below are the method; everything else lives one level down (`inheritune_hf.errors`,
`inheritune_hf.tracking`, `inheritune_hf.figures`, ...). `import inheritune_hf` loads no submodule: each name is
imported on first use, as transformers does, so a notebook or `inheritune --help` does not pay for torch,
Trainer and lm-eval until it needs them. Optional extras (lm-eval for `evaluate_downstream`, matplotlib for
figures) are imported only by the step that needs them.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public API, by the submodule that defines each name (transformers' `_import_structure`).
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "analyze": ["AttentionReport", "analyze_attention", "attention_mass", "attention_rank", "select_layers"],
    "architecture": ["find_decoder_layers"],
    "checkpoint": ["inherit_checkpoint"],
    "inherit": ["grow", "inherit"],
    "slicing": ["Lineage", "inherit_config", "valid_num_layers"],
    "settings": ["DataArguments", "InherituneArguments", "RecipeArguments"],
    "train": ["train"],
    "distill": ["DistillationTrainer"],
    "rounds": ["run_inheritune"],
    "tracking": ["AttentionCollapseCallback"],
    "evaluate": ["PAPER_TASKS", "evaluate_downstream", "write_heldout_tasks"],
    "publish": ["model_card", "publish_run", "push_to_hub"],
    "recipe": ["run_recipe"],
    "errors": ["InherituneError"],
}
_MODULE_OF = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

# Written out for readers and type checkers; a test holds it equal to the names of `_IMPORT_STRUCTURE`.
__all__ = [
    "AttentionCollapseCallback",
    "AttentionReport",
    "DataArguments",
    "DistillationTrainer",
    "InherituneArguments",
    "InherituneError",
    "Lineage",
    "PAPER_TASKS",
    "RecipeArguments",
    "analyze_attention",
    "attention_mass",
    "attention_rank",
    "evaluate_downstream",
    "find_decoder_layers",
    "grow",
    "inherit",
    "inherit_checkpoint",
    "inherit_config",
    "model_card",
    "publish_run",
    "push_to_hub",
    "run_inheritune",
    "run_recipe",
    "select_layers",
    "train",
    "valid_num_layers",
    "write_heldout_tasks",
]

if TYPE_CHECKING:
    from .analyze import AttentionReport, analyze_attention, attention_mass, attention_rank, select_layers
    from .architecture import find_decoder_layers
    from .checkpoint import inherit_checkpoint
    from .distill import DistillationTrainer
    from .errors import InherituneError
    from .evaluate import PAPER_TASKS, evaluate_downstream, write_heldout_tasks
    from .inherit import grow, inherit
    from .publish import model_card, publish_run, push_to_hub
    from .recipe import run_recipe
    from .rounds import run_inheritune
    from .settings import DataArguments, InherituneArguments, RecipeArguments
    from .slicing import Lineage, inherit_config, valid_num_layers
    from .tracking import AttentionCollapseCallback
    from .train import train


class _LazyPackage(ModuleType):
    """This package, with each public name imported from its submodule on first use.

    Two steps share their names with the modules that define them (`inherit`, `train`). Importing a submodule sets
    it as an attribute of its package, which would hide the function of the same name; so a submodule is not
    stored under a public name (it stays in `sys.modules`, and `from inheritune_hf.train import ...` works as ever).
    """

    def __getattr__(self, name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", self.__name__), name)
        ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MODULE_OF and isinstance(value, ModuleType) and _MODULE_OF[name] == name:
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _LazyPackage
