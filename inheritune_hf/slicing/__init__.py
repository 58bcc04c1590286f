"""Slicing a model's blocks: the knowledge `inherit` (in memory) and `inherit_checkpoint` (from disk) share.

- `config`: the config of a model made of chosen source blocks (`inherit_config`), the fields that depend on the
  layers (`per_layer_fields`), and the depths a config allows (`valid_num_layers`, `nearest_valid_num_layers`);
- `weights`: block weights renamed to their new positions, per-layer weights outside the stack cut to the blocks;
- `blocks`: checks that the rebuilt blocks compute what their sources did;
- `reinit`: re-initialising parts of an inherited model;
- `lineage`: `Lineage`, the record a sliced config carries.
"""

from .config import inherit_config, nearest_valid_num_layers, per_layer_fields, resolve_layers, valid_num_layers
from .lineage import Lineage

__all__ = [
    "Lineage",
    "inherit_config",
    "nearest_valid_num_layers",
    "per_layer_fields",
    "resolve_layers",
    "valid_num_layers",
]
