"""Step 1 of the method: which layers are lazy? (paper, section 3), and which blocks to keep.

- `stats`: the two statistics of an attention matrix, rank k* (`attention_rank`) and mass m* (`attention_mass`);
- `samples`: the windows of tokens the diagnosis reads (`sample_source` for packed training blocks);
- `capture`: reducing every layer's attention inside the forward pass, with Block Influence and angular distances;
- `run`: `analyze_attention`, the driver, which returns an `AttentionReport` (`report`);
- `selection`: `select_layers`, the k blocks to keep by the paper's rule or a peer's.
"""

from .report import AttentionReport, LayerSuggestion
from .run import analyze_attention
from .samples import sample_source
from .selection import SELECTION_CRITERIA, LayerSelection, select_layers
from .stats import attention_mass, attention_rank

__all__ = [
    "SELECTION_CRITERIA",
    "AttentionReport",
    "LayerSelection",
    "LayerSuggestion",
    "analyze_attention",
    "attention_mass",
    "attention_rank",
    "sample_source",
    "select_layers",
]
