"""inheritune-hf: the Inheritune recipe (arXiv 2404.08634) for any Hugging Face causal LM.

The package reads as the method, one module per step:

    analyze (which layers are lazy?) -> inherit (slice a smaller model) -> train / grow (until it matches
    the reference) -> evaluate (lm-eval) -> publish (card + Hub)

Optional extras (lm-eval for `evaluate_downstream`, matplotlib for figures) are imported only by the
step that needs them, so `import inheritune_hf` works without them.
"""

# Imported eagerly, not lazily: the modules `inherit` and `train` share their names with the functions
# they define, and a lazy package attribute would be shadowed by the submodule once it is imported.
from .analyze import (
    SELECTION_CRITERIA,
    AttentionReport,
    LayerSelection,
    analyze_attention,
    attention_mass,
    attention_rank,
    select_layers,
)
from .architecture import LayerStack, find_decoder_layers
from .checkpoint import InheritPlan, inherit_checkpoint, plan_inherit
from .distill import DistillationTrainer, distillation_kl
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
from .evaluate import PAPER_TASKS, DownstreamResults, check_tasks, evaluate_downstream, write_heldout_tasks
from .figures import attention_figure, loss_figure
from .inherit import NANOGPT_REINIT, REINIT_PARTS, grow, inherit
from .publish import model_card, publish_run, push_to_hub
from .recipe import run_recipe
from .rounds import InherituneResult, round_depths, run_inheritune
from .settings import DataArguments, InherituneArguments, RecipeArguments
from .slicing import Lineage, inherit_config, nearest_valid_num_layers, valid_num_layers
from .tracking import (
    AttentionCollapseCallback,
    AttentionTracking,
    attention_metrics,
    attention_samples,
    history_from_json,
    history_to_json,
    plot_attention_history,
    read_attention_history,
    write_attention_history,
)
from .train import train

__version__ = "0.1.0"

__all__ = [
    "NANOGPT_REINIT",
    "PAPER_TASKS",
    "REINIT_PARTS",
    "SELECTION_CRITERIA",
    "AttentionCollapseCallback",
    "AttentionReport",
    "AttentionTracking",
    "CheckpointError",
    "ConfigSliceError",
    "DataArguments",
    "DataError",
    "DistillationTrainer",
    "DownstreamResults",
    "EvaluationError",
    "HubError",
    "InheritPlan",
    "InherituneArguments",
    "InherituneError",
    "InherituneResult",
    "InvalidLayersError",
    "LayerSelection",
    "LayerStack",
    "LayerStackNotFoundError",
    "Lineage",
    "OutputExistsError",
    "RecipeArguments",
    "TrainingError",
    "UnsupportedModelError",
    "analyze_attention",
    "attention_figure",
    "attention_mass",
    "attention_metrics",
    "attention_rank",
    "attention_samples",
    "check_tasks",
    "distillation_kl",
    "evaluate_downstream",
    "find_decoder_layers",
    "grow",
    "history_from_json",
    "history_to_json",
    "inherit",
    "inherit_checkpoint",
    "inherit_config",
    "loss_figure",
    "model_card",
    "nearest_valid_num_layers",
    "plan_inherit",
    "plot_attention_history",
    "publish_run",
    "push_to_hub",
    "read_attention_history",
    "round_depths",
    "run_inheritune",
    "run_recipe",
    "select_layers",
    "train",
    "valid_num_layers",
    "write_attention_history",
    "write_heldout_tasks",
]
