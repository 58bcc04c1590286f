"""The config of a model made of chosen source blocks, and the depths a config allows.

The one home of config slicing, used by both the in-memory `inherit` and the on-disk `inherit_checkpoint`:

- which config fields depend on the layers (`per_layer_fields`: per-layer lists and strings, lists and maps of
  block indices, counts of leading or trailing blocks), discovered by value, length, type and config-class
  probes, never from a per-model table;
- `inherit_config`: the config of a model made of chosen source blocks, rebuilt through its class (transformers 5
  validates per-layer lists against the depth), with depth-dependent scales kept exact;
- `valid_num_layers` / `nearest_valid_num_layers`: the depths a config class's layer pattern allows;
- `resolve_layers`: a number of leading blocks or a list of block indices, checked, as source block indices.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from collections.abc import Iterable, Sequence

from transformers import PretrainedConfig

from ..architecture import (
    LayerStack,
    block_lists,
    block_signature,
    decoder_config,
    depth_keys,
    find_decoder_layers,
    is_count,
    meta_model,
    named_like_depth,
    num_layers_of,
)
from ..errors import ConfigSliceError, InvalidLayersError

logger = logging.getLogger(__name__)


# Name fragments of integer config fields that describe a repeating pattern (every n-th layer is ...).
# A pattern stays valid for a prefix of the stack; for any other selection the per-block structure check
# in `inherit` catches a mismatch and names these fields.
PERIODIC_FIELD_HINTS = ("period", "interval", "step", "freq", "offset", "pattern", "every")


# Depth difference at which a config class is probed to tell per-layer lists from fixed-length ones.
PROBE_EXTRA = 3


def _is_per_layer(key: str, value, n: int, probe: dict) -> bool:
    """A per-layer list has one entry per block, also when the config class is built at another depth."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return False
    probed = probe.get(key)
    # Built at depth n + PROBE_EXTRA, a per-layer field follows the depth; a fixed-length field (say two
    # multipliers) keeps its own length and is not per-layer even if it happens to match here.
    return not isinstance(probed, (list, tuple)) or len(probed) == n + PROBE_EXTRA


def _probe_config(config: PretrainedConfig, n: int) -> dict:
    """The config class's defaults built at a different depth, used to tell per-layer lists apart."""
    try:
        probe = type(config)(**dict.fromkeys(depth_keys(config), n + PROBE_EXTRA))
    except Exception:  # a config class that cannot build from defaults: trust lengths alone
        return {}
    if getattr(probe, "num_hidden_layers", None) != n + PROBE_EXTRA:
        return {}  # the depth is derived from a per-layer list, so the probe tells nothing
    return probe.to_dict()


def per_layer_fields(config: PretrainedConfig) -> dict[str, str]:
    """Classify the layer-dependent fields of a decoder config.

    Returns ``{field: kind}`` where kind is ``"per_layer"`` (one entry per block), ``"index_list"`` (a list
    of block indices), ``"index_map"`` (a mapping keyed by block index) or ``"threshold"`` (an integer
    count of leading blocks, such as ``max_window_layers`` or ``first_k_dense_replace``). Discovered by
    value, length and type; fields of the generic base config are never layer-dependent.
    """
    n = num_layers_of(config)
    base = set(PretrainedConfig().to_dict())
    count_keys = set(depth_keys(config))
    values = config.to_dict()
    probe = None
    fields: dict[str, str] = {}
    for key, value in values.items():
        if key in base or key in count_keys or isinstance(value, (float, bool)) or value is None:
            continue
        if isinstance(value, str):
            # A string with one character per block (a hybrid pattern such as "M-M*") is per-layer when the
            # config class builds it at another depth with that depth's length.
            if len(value) == n and n > 1:
                if probe is None:
                    probe = _probe_config(config, n)
                probed = probe.get(key)
                if isinstance(probed, str) and len(probed) == n + PROBE_EXTRA:
                    fields[key] = "per_layer"
            continue
        if isinstance(value, (list, tuple)):
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            if ints and list(value) == list(range(n)) and n > 2:
                fields[key] = "index_list"
                continue
            if len(value) == n:
                if probe is None:
                    probe = _probe_config(config, n)
                if _is_per_layer(key, value, n, probe):
                    fields[key] = "per_layer"
                    continue
            named_like_layers = "layer" in key or "idx" in key or "index" in key
            if ints and named_like_layers and len(set(value)) == len(value) and all(0 <= v < n for v in value):
                fields[key] = "index_list"
        elif isinstance(value, dict) and value and ("layer" in key or "per_layer" in key):
            if all(str(k).lstrip("-").isdigit() for k in value):
                fields[key] = "index_map"
        elif (
            isinstance(value, int)
            and (key.endswith("_layers") or key.startswith("first_"))
            and not key.startswith("num_")
        ):
            if not any(hint in key for hint in PERIODIC_FIELD_HINTS) and value >= 0:
                fields[key] = "threshold"
        elif is_count(value) and named_like_depth(key) and 0 < value < n:
            # `num_kv_shared_layers` counts the *last* blocks (they reuse an earlier block's KV cache),
            # `num_dense_layers` the first ones; only the blocks the model builds tell which.
            side = _counted_side(config, key)
            if side is not None:
                fields[key] = side
    return fields


@functools.lru_cache(maxsize=64)
def _counted_side_cached(config_json: str, config_class: type, key: str) -> str | None:
    values = json.loads(config_json)
    builds = []
    for count in (values[key], 0):
        model = meta_model(config_class.from_dict({**values, key: count}))
        lists = block_lists(model) if model is not None else []
        if not lists:
            return None
        builds.append([block_signature(block) for block in lists[0][1]])
    if len(builds[0]) != len(builds[1]):
        return None
    n, count = len(builds[0]), values[key]
    differ = {i for i, (a, b) in enumerate(zip(*builds, strict=True)) if a != b}
    if set(range(n - count, n)) <= differ and 0 not in differ:
        return "trailing"
    if set(range(count)) <= differ and n - 1 not in differ:
        return "threshold"
    return None


def _counted_side(config: PretrainedConfig, key: str) -> str | None:
    """``"trailing"`` if integer field `key` counts the last blocks, ``"threshold"`` if the first ones, else None.

    Found by building the model on the meta device with the field at its value and at 0 and seeing which
    blocks change; the answer is cached per config.
    """
    try:
        return _counted_side_cached(config.to_json_string(use_diff=False), type(config), key)
    except Exception:  # the class rejects a count of 0, or the config does not round-trip: leave the field alone
        return None


def periodic_fields(config: PretrainedConfig) -> list[str]:
    """Integer fields that describe a repeating layer pattern; named in errors when a slice breaks one."""
    return [
        key
        for key, value in config.to_dict().items()
        if isinstance(value, int)
        and not isinstance(value, bool)
        and any(hint in key for hint in PERIODIC_FIELD_HINTS)
        and ("layer" in key or "attn" in key or "expert" in key or "sparse" in key)
    ]


def resolve_layers(
    num_source_layers: int, num_layers: int | None = None, layers: Sequence[int] | None = None
) -> list[int]:
    """The source block indices to inherit: the first `num_layers` (default L/2, the paper's start) or `layers`."""
    n = num_source_layers
    if num_layers is not None and layers is not None:
        raise InvalidLayersError("Pass either num_layers (the first k blocks) or layers (explicit indices), not both.")
    if layers is None:
        k = n // 2 if num_layers is None else num_layers
        if not isinstance(k, int) or isinstance(k, bool):
            raise InvalidLayersError(f"num_layers must be an integer, got {num_layers!r}.")
        if not 1 <= k <= n:
            raise InvalidLayersError(
                f"num_layers={k} is out of range: the reference has {n} blocks, so choose 1 <= num_layers <= {n}."
            )
        return list(range(k))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise InvalidLayersError(f"layers must be a list of block indices, got {layers!r}.")
    resolved = list(layers)
    if not resolved:
        raise InvalidLayersError("layers is empty: give at least one source block index.")
    for index in resolved:
        if not isinstance(index, int) or isinstance(index, bool):
            raise InvalidLayersError(f"Layer index {index!r} is not an integer.")
        if not 0 <= index < n:
            raise InvalidLayersError(
                f"Layer index {index} is out of range: the reference has {n} blocks, indices 0..{n - 1}."
            )
    return resolved


def _slice_decoder_dict(config: PretrainedConfig, layers: list[int], fields: dict[str, str]) -> dict:
    """`config.to_dict()` with the layer count set and every layer-dependent field in `fields` sliced to `layers`."""
    values = config.to_dict()
    n = num_layers_of(config)
    for key in depth_keys(config):
        values[key] = len(layers)
    for key, kind in fields.items():
        value = values[key]
        if kind == "per_layer" and isinstance(value, str):
            values[key] = "".join(value[source] for source in layers)
        elif kind == "per_layer":
            values[key] = [value[source] for source in layers]
        elif kind == "index_list":
            chosen = set(value)
            values[key] = [new for new, source in enumerate(layers) if source in chosen]
        elif kind == "index_map":
            by_index = {int(k): k for k in value}
            values[key] = {
                (str(new) if isinstance(by_index[source], str) else new): copy.deepcopy(value[by_index[source]])
                for new, source in enumerate(layers)
                if source in by_index
            }
        elif kind == "threshold":
            below = [source < value for source in layers]
            if below != sorted(below, reverse=True):
                raise ConfigSliceError(
                    f"Config field `{key}`={value} marks the first {value} blocks as different from the rest, but "
                    f"the chosen layers {layers} mix blocks from both sides in an order it cannot express. "
                    "Choose layers that keep the blocks below it first."
                )
            values[key] = sum(below)
        elif kind == "trailing":
            first = n - value  # the first of the last `value` blocks, which depend on the blocks before them
            above = [source >= first for source in layers]
            if above != sorted(above) or (any(above) and [s for s in layers if s < first] != list(range(first))):
                raise ConfigSliceError(
                    f"Config field `{key}`={value} makes the last {value} blocks ({first}..{n - 1}) depend on the "
                    f"blocks before them (e.g. reuse their KV cache), and the chosen layers {layers} keep some of "
                    f"them without blocks 0..{first - 1} before them in order. Choose a prefix (num_layers=k) or "
                    f"leave blocks {first}..{n - 1} out."
                )
            values[key] = sum(above)
    return values


def _rebuild_config(
    config: PretrainedConfig, layers: list[int], fields: dict[str, str] | None = None
) -> PretrainedConfig:
    """The config for source blocks `layers`, rebuilt through its class; refuses a class that rewrites the slice."""
    decoder = decoder_config(config)
    fields = per_layer_fields(decoder) if fields is None else fields
    sliced = _slice_decoder_dict(decoder, layers, fields)

    if decoder is config:
        values, build = sliced, type(config)
    else:
        values = config.to_dict()
        holder = next(
            (name for name in getattr(config, "sub_configs", {}) or {} if getattr(config, name, None) is decoder),
            None,
        )
        if holder is None:
            raise ConfigSliceError(
                f"{type(config).__name__} keeps its decoder config in a place that cannot be located "
                "(no entry of `sub_configs` holds it); cannot rebuild the config."
            )
        values[holder] = sliced
        build = type(config)
    try:
        new_config = build.from_dict(copy.deepcopy(values))  # some config classes edit their lists in place
    except Exception as err:  # transformers' own validation: report which fields it rejected
        raise ConfigSliceError(
            f"Rebuilding {build.__name__} for layers {layers} failed: {err}. "
            "A layer-dependent config field could not be sliced; please report the model type."
        ) from err

    rebuilt = decoder_config(new_config).to_dict()
    for key, kind in fields.items():
        want, got = sliced.get(key), rebuilt.get(key)
        if kind == "per_layer" and isinstance(want, (list, tuple, str)) and list(got or []) != list(want):
            # The config class enforces a layer pattern of its own (e.g. "the last layer attends fully").
            raise _PatternRewritten(
                f"{type(decoder).__name__} rewrote `{key}` for layers {layers}: sliced {list(want)}, but the config "
                f"class made it {got}"
            )
    return new_config


class _PatternRewritten(ConfigSliceError):
    """The config class rewrote a sliced per-layer pattern; `inherit_config` adds the valid k to the message."""


def valid_num_layers(config: PretrainedConfig) -> list[int]:
    """Every k for which the first k blocks of `config`'s model slice to a config its class accepts unchanged.

    Some config classes impose a layer pattern of their own (Gemma 4 forces its last layer to attend fully),
    so a prefix that ends inside the reference's pattern would not compute what the reference's blocks did.
    Only configs are rebuilt (no model), so this is cheap enough to call for every k of a deep model.
    """
    decoder = decoder_config(config)
    n = num_layers_of(config)
    fields = per_layer_fields(decoder)
    valid = []
    for k in range(1, n + 1):
        try:
            _rebuild_config(config, list(range(k)), fields)
        except ConfigSliceError:
            continue
        valid.append(k)
    return valid


def nearest_valid_num_layers(config: PretrainedConfig, num_layers: int) -> int:
    """The k of `valid_num_layers(config)` closest to `num_layers`; on a tie the larger, which keeps more blocks.

    Use it to turn a wished depth (the paper's L/2, a rank-guided cut, a growth step) into one the
    architecture's layer pattern allows; it returns `num_layers` itself when that slices exactly.
    """
    valid = valid_num_layers(config)
    if not valid:
        raise ConfigSliceError(
            f"No number of leading blocks of this {type(config).__name__} slices to a config its class accepts; "
            "please report the model type."
        )
    return min(valid, key=lambda k: (abs(k - num_layers), -k))


def inherit_config(
    config: PretrainedConfig,
    layers: int | Sequence[int],
    *,
    lineage: dict | None = None,
    source_stack: LayerStack | None = None,
    model_class: type | None = None,
) -> PretrainedConfig:
    """Build the config of a model made of the given source blocks of `config`'s model.

    The new config is *rebuilt* through its class from `to_dict()`, never patched in place: transformers 5
    validates per-layer lists (`layer_types`, `mlp_layer_types`, `no_rope_layers`, ...) against the layer
    count when a config is constructed. Per-layer lists and maps are sliced, lists of block indices are
    remapped, counts of leading blocks (`max_window_layers`, `first_k_dense_replace`) are clamped and counts of
    trailing blocks (`num_kv_shared_layers`) shrink with the cut tail; they are discovered by value, length and
    type, not from a per-model table. Settings a block derives from the depth (MiniCPM3's residual scale
    `scale_depth / sqrt(num_hidden_layers)`) are kept exact by rescaling the config field behind them. For
    composite configs (vision + text) the text sub-config is rebuilt and put back in its parent.

    Args:
        config: the reference's config (not modified).
        layers: the number of leading blocks to keep, or an explicit list of source block indices.
        lineage: optional dict stored as the new config's `inheritune` attribute.
        source_stack, model_class: the reference's blocks and model class when the caller has them (`inherit`,
            `inherit_checkpoint`), reused by the check that depth-dependent scales stay exact.

    Raises:
        ConfigSliceError: when the config class would rewrite the sliced layer pattern; the message lists the
            numbers of leading blocks that do slice exactly (`valid_num_layers`).
    """
    n = num_layers_of(config)
    layers = resolve_layers(n, num_layers=layers) if isinstance(layers, int) else resolve_layers(n, layers=layers)
    try:
        new_config = _rebuild_config(config, layers)
    except _PatternRewritten as err:
        valid = valid_num_layers(config)
        wish = len(layers)
        nearest = f"; the nearest to {wish} is {min(valid, key=lambda k: (abs(k - wish), -k))}" if valid else ""
        raise ConfigSliceError(
            f"{err}. The architecture constrains which layer patterns a model may have: the first k blocks slice "
            f"exactly for k in {valid}{nearest} (inheritune_hf.slicing.nearest_valid_num_layers picks it)."
        ) from None
    new_config = _match_depth_scales(config, new_config, layers, source_stack, model_class)
    # Keep the attention kernels the reference runs with, per sub-config (a composite model may run its text
    # decoder with sdpa and its vision tower eagerly); the kernels differ in float round-off.
    for name in ["", *(getattr(config, "sub_configs", None) or {})]:
        source = getattr(config, name, None) if name else config
        target = getattr(new_config, name, None) if name else new_config
        implementation = getattr(source, "_attn_implementation_internal", None)
        if implementation is not None and target is not None:
            target._attn_implementation_internal = implementation
    if lineage is not None:
        new_config.inheritune = lineage
    return new_config


def _float_differences(source: LayerStack, target: LayerStack, layers: list[int]) -> list[tuple[str, float, float]]:
    """(setting, source value, target value) of float settings a target block holds differently from its source."""
    differences = []
    for new, old in enumerate(layers):
        for want, got in zip(block_signature(source.layers[old]), block_signature(target.layers[new]), strict=False):
            if want[:2] != got[:2]:
                break
            for key, value in want[3].items():
                other = got[3].get(key)
                if isinstance(value, float) and isinstance(other, float) and value != other:
                    differences.append((f"block {new} {want[0] or 'block'}.{key}", value, other))
    return differences


def _ulp_neighbours(value: float, steps: int = 4) -> list[float]:
    """`value` and the floats up to `steps` units in the last place either side, nearest first."""
    out, up, down = [value], value, value
    for _ in range(steps):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        out += [up, down]
    return out


def _match_depth_scales(
    config: PretrainedConfig,
    new_config: PretrainedConfig,
    layers: list[int],
    source_stack: LayerStack | None,
    model_class: type | None,
) -> PretrainedConfig:
    """Rescale the float config field behind a depth-dependent block setting so the kept blocks stay exact.

    MiniCPM3 scales each residual branch by `scale_depth / sqrt(num_hidden_layers)`: with fewer blocks, the
    same `scale_depth` would make every kept block compute something else. The blocks are built on the meta
    device; for each float setting that changed, the float config fields are tried in turn, each set so the
    setting returns to its source value (assuming the setting is proportional, or inversely proportional, to
    the field), then nudged by a few units in the last place until it is equal to the bit. A setting no field
    restores is refused.
    """
    if source_stack is None:
        source_model = meta_model(config, model_class)
        if source_model is None:
            return new_config  # cannot build here; `inherit` checks the real blocks
        source_stack = find_decoder_layers(source_model)

    def differences(candidate: PretrainedConfig) -> list[tuple[str, float, float]] | None:
        model = meta_model(candidate, model_class)
        return None if model is None else _float_differences(source_stack, find_decoder_layers(model), layers)

    changed = differences(new_config)
    if not changed:
        return new_config
    decoder = decoder_config(config)
    base = set(PretrainedConfig().to_dict())
    candidates = [
        key for key, value in decoder.to_dict().items() if key not in base and isinstance(value, float) and value
    ]
    setting, want, got = changed[0]
    for key in candidates:
        value = getattr(decoder, key)
        for guess in (value * want / got, value * got / want):
            for trial_value in _ulp_neighbours(guess):
                trial = _with_decoder_field(new_config, key, trial_value)
                remaining = differences(trial)
                if remaining is None:
                    break
                if not remaining:
                    logger.info("inherit: %s rescaled %s -> %r to keep %s exact.", key, value, trial_value, setting)
                    return trial
                now = next((r for r in remaining if r[0] == setting), None)
                if now is not None and not math.isclose(now[2], want, rel_tol=1e-9):
                    break  # this field does not drive the setting (or not proportionally): try the next
    raise ConfigSliceError(
        f"The kept blocks compute with settings derived from the depth ({setting}: {want} in the reference, {got} "
        f"with {len(layers)} blocks) and no float config field restores them ({candidates}); the slice would not "
        "compute what the reference's blocks did. Keep all blocks, or report the model type."
    )


def _with_decoder_field(config: PretrainedConfig, key: str, value) -> PretrainedConfig:
    """A copy of `config` with field `key` of its decoder config set to `value`, rebuilt through its class."""
    new = copy.deepcopy(config)
    decoder = decoder_config(new)
    rebuilt = type(decoder).from_dict({**decoder.to_dict(), key: value})
    if decoder is new:
        return rebuilt
    holder = next(name for name in new.sub_configs if getattr(new, name, None) is decoder)
    setattr(new, holder, rebuilt)
    return new
