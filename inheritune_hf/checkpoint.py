"""Step 2 for references larger than memory: inherit straight from a safetensors folder or a Hub id.

In-memory `inherit` needs the reference loaded. Here the same target is built from the files alone, the
way mergekit plans a merge and then executes it over tensors, but without ever holding a tensor:

1. read `config.json` and rebuild it for the chosen blocks with `inherit_config`;
2. learn where the block stack lives from a meta-device model (`find_decoder_layers`; no memory used);
3. map each checkpoint tensor name to the model's name the way `from_pretrained` does, keep the
   embeddings, final norm and LM head, rename the chosen blocks to their new positions, and drop what the
   target cannot use (blocks past `num_hidden_layers` such as MTP layers, unknown extras) with a note;
4. copy the byte ranges of the kept tensors from the source shards into new safetensors shards (kernel
   `copy_file_range`, or bounded chunks when casting to another dtype), then write the index, the
   config and the tokenizer / generation files, all into a temporary folder renamed at the end.

The output loads with `AutoModelForCausalLM.from_pretrained` to exactly the tensors that in-memory
`inherit` gives on the same reference, and its config carries the same `inheritune` lineage. A Hub id is
resolved through `huggingface_hub`, downloading the config, the index and only the shards that hold
needed tensors.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download, list_repo_files, try_to_load_from_cache
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from .architecture import check_causal_lm, decoder_config, find_decoder_layers, on_meta_device
from .errors import CheckpointError, UnsupportedModelError
from .io import atomic_output_dir, check_output_dir, write_json
from .slicing import Lineage, inherit_config, resolve_layers
from .slicing.blocks import check_blocks_match
from .slicing.reinit import check_reinit, reinitialize_parts
from .sources import check_source

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
SHARD_NAME = "model-{index:05d}-of-{total:05d}.safetensors"

#: Pickle weight files: never opened, because unpickling runs arbitrary code.
PICKLE_PATTERNS = ("*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def is_pickle(name: str) -> bool:
    """A pickled weight file (or the index of pickled shards): never read, never uploaded; loading one can run code."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in PICKLE_PATTERNS)


#: Files that travel with the weights unchanged: tokenizer, chat template, generation settings.
COMPANION_PATTERNS = (
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "spiece.model",
    "*.tiktoken",
    "chat_template*",
)

#: Default cap per output shard: the size the Hub serves comfortably. Memory use does not depend on it.
DEFAULT_MAX_SHARD_SIZE = "5GB"

# Bytes per element of the safetensors dtypes (packed sub-byte types count as 1: only used for alignment).
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
_FLOAT_CODES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_CODE_OF = {dtype: code for code, dtype in _FLOAT_CODES.items()}
_CHUNK_BYTES = 64 * 2**20  # bounded buffer for dtype casts and for the copy fallback


@dataclass(frozen=True)
class TensorSource:
    """Where one tensor's bytes lie in a safetensors file (absolute offsets)."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the output: its name there, where its bytes come from, and its output dtype."""

    name: str
    source_name: str
    source: TensorSource
    dtype: str

    @property
    def nbytes(self) -> int:
        if self.dtype == self.source.dtype:
            return self.source.end - self.source.start
        numel = 1
        for size in self.source.shape:
            numel *= size
        return numel * _ITEMSIZE[self.dtype]


@dataclass
class InheritPlan:
    """Everything `inherit_checkpoint` will write, computed and validated before a byte is written.

    `config` is the target's rebuilt config with its `inheritune` lineage; `tensors` are the output tensors
    in order; `dropped` maps a reason to the checkpoint tensor names left out; `companions` are files
    copied unchanged (tokenizer, generation config, custom code).
    """

    source: str
    config: PretrainedConfig
    tensors: list[PlannedTensor]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    companions: dict[str, Path] = field(default_factory=dict)
    reinit: list[str] = field(default_factory=list)
    reinit_layers: list[int] = field(default_factory=list)
    random_init: bool = False
    dtype: torch.dtype | None = None
    trust_remote_code: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data the output will hold."""
        return sum(tensor.nbytes for tensor in self.tensors)


# ----------------------------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """A checkpoint as a list of file names and a way to get a local path for one of them."""

    name: str
    files: list[str]
    fetch: Callable[[str], Path]


def _local_source(folder: Path) -> _Source:
    def fetch(name: str) -> Path:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: the checkpoint in {folder} is incomplete (a shard named by "
                f"{SAFE_INDEX} is not there). Copy or download the missing file again."
            )
        return path

    files = sorted(path.name for path in folder.iterdir() if path.is_file())
    return _Source(str(folder), files, fetch)


def _hub_source(repo_id: str, revision: str | None, token: str | bool | None) -> _Source:
    try:
        files = list_repo_files(repo_id, revision=revision, token=token)
    except Exception as err:  # network, auth, not found: all mean "cannot read this repo"
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
        if isinstance(cached, str):  # offline, but downloaded before: use the cached snapshot
            logger.warning("inherit: cannot reach the Hub (%s); using the cached snapshot of %s.", err, repo_id)
            return _local_source(Path(cached).parent)
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and reading it as a Hub repo id failed: {err}. "
            "Check the path or the repo id, your network and your token (HF_TOKEN)."
        ) from err

    def fetch(name: str) -> Path:
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision, token=token))
        except Exception as err:
            raise CheckpointError(f"Downloading {name} from {repo_id} failed: {err}") from err

    return _Source(repo_id, sorted(files), fetch)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _open_source(source: str | os.PathLike, revision: str | None, token: str | bool | None) -> _Source:
    """A local folder if one exists at `source`, else a Hub repo id."""
    check_source(source)
    path = Path(source)
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} applies to Hub repos only; {path} is a local folder.")
        return _local_source(path)
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint folder that holds config.json.")
    text = os.fspath(source)
    if isinstance(source, os.PathLike) or not _REPO_ID.match(text) or text.count("/") > 1:
        raise CheckpointError(f"No checkpoint folder at {text}, and it is not a Hub repo id (owner/name).")
    return _hub_source(text, revision, token)


# ------------------------------------------------------------------------------------------ safetensors


def read_safetensors_header(path: str | os.PathLike) -> dict[str, TensorSource]:
    """The tensors of one safetensors file and their byte ranges; raises `CheckpointError` if it is corrupt.

    The `safetensors` library validates the file first (header, offsets, data fully present, so a truncated
    download is caught); the header is then read for the absolute byte offsets, which `safe_open` does not
    expose.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(path, framework="pt") as handle:
            handle.keys()
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except Exception as err:  # SafetensorError, OSError, JSON errors: all mean the file cannot be used
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({err}). It is probably truncated or corrupt: download or "
            "copy it again."
        ) from err
    base = 8 + length
    header.pop("__metadata__", None)
    return {
        name: TensorSource(
            path, info["dtype"], tuple(info["shape"]), base + info["data_offsets"][0], base + info["data_offsets"][1]
        )
        for name, info in header.items()
    }


def _weight_map(source: _Source) -> dict[str, str]:
    """Checkpoint tensor name -> file name, from the index or the single weights file."""
    if SAFE_INDEX in source.files:
        path = source.fetch(SAFE_INDEX)
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path} is not a valid safetensors index (no readable weight_map): {err}") from err
        return dict(weight_map)
    if SAFE_WEIGHTS in source.files:
        return dict.fromkeys(read_safetensors_header(source.fetch(SAFE_WEIGHTS)), SAFE_WEIGHTS)
    pickles = [name for name in source.files if is_pickle(name)]
    if pickles:
        raise CheckpointError(
            f"{source.name} holds only pickle weights ({', '.join(pickles[:3])}). inheritune never unpickles files, "
            "because loading a pickle can run arbitrary code. Convert the checkpoint to safetensors once, in an "
            "environment you trust: `AutoModelForCausalLM.from_pretrained(SRC).save_pretrained(DST)` writes "
            "safetensors (or use the Hub's https://huggingface.co/spaces/safetensors/convert), then pass DST."
        )
    others = [name for name in source.files if name.endswith(".safetensors")]
    raise CheckpointError(
        f"{source.name} has neither {SAFE_WEIGHTS} nor {SAFE_INDEX}"
        + (f" (found {', '.join(others[:3])}, which is not the transformers layout)" if others else "")
        + ". Pass a folder written by save_pretrained."
    )


def checkpoint_weight_map(
    source: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
) -> dict[str, str]:
    """Safetensors tensor name -> file name of a checkpoint folder or Hub repo, read from its index or header.

    Raises `CheckpointError` for a checkpoint with only pickle weights, with the one conversion to run: every
    loader of this package refuses them with this message.
    """
    return _weight_map(_open_source(source, revision, token))


# ------------------------------------------------------------------------------------------ name mapping


def _model_key_of(reference: PreTrainedModel) -> Callable[[str], str]:
    """Checkpoint key -> model parameter name, renamed the way `from_pretrained` renames it.

    transformers 5 renames legacy keys (`gamma`/`beta`, moved sub-modules, fused experts) and adds or strips
    the base-model prefix (GPT-2's original files say `h.0...`, the model `transformer.h.0...`). Its own
    renaming code is used where available, so keys are classified exactly as the loader would.
    """
    meta_state = reference.state_dict()
    prefix = reference.base_model_prefix
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        mapping = get_model_conversion_mapping(reference)
        renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
        converters = [m for m in mapping if isinstance(m, WeightConverter)]
    except Exception:  # another transformers version: fall back to the base-model prefix rule alone
        rename_source_key = None

    def model_key(key: str) -> str:
        if rename_source_key is not None:
            renamed, _ = rename_source_key(key, renamings, converters, prefix, meta_state)
            return key if renamed not in meta_state and key in meta_state else renamed
        if key in meta_state or not prefix:
            return key
        if key.startswith(prefix + ".") and key[len(prefix) + 1 :] in meta_state:
            return key[len(prefix) + 1 :]
        return f"{prefix}.{key}" if f"{prefix}.{key}" in meta_state else key

    return model_key


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _map_tensors(
    names: Iterable[str],
    reference: PreTrainedModel,
    stack_path: str,
    num_source_layers: int,
    source_layers: list[int],
    target: PreTrainedModel,
) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """[(output name, checkpoint name)] in output order, and the dropped checkpoint names by reason.

    Block tensors keep the checkpoint's own naming with the block index replaced, so the output loads through
    the same renaming as the source; every block tensor of a kept block travels (quantization scales too).
    Outside the stack a tensor is kept when the loader would use it.
    """
    model_key = _model_key_of(reference)
    meta_state = reference.state_dict()
    head = stack_path + "."
    targets: dict[int, list[int]] = {}
    for new, source in enumerate(source_layers):
        targets.setdefault(source, []).append(new)
    copies: list[tuple[str, str, str]] = []  # (output name, checkpoint name, model name in the target)
    past, unknown = [], []
    for key in names:
        renamed = model_key(key)
        index_text, _, rest = renamed[len(head) :].partition(".") if renamed.startswith(head) else ("", "", "")
        if index_text.isdigit():
            index = int(index_text)
            if index >= num_source_layers:
                past.append(key)
                continue
            parts = key.split(".")
            position = next((i for i, part in enumerate(parts) if part.isdigit()), None)
            if position is None or int(parts[position]) != index:
                raise CheckpointError(
                    f"Cannot tell which number in the checkpoint tensor name {key!r} is its block index "
                    f"(the model calls it {renamed!r}); this checkpoint's naming is not supported."
                )
            for new in targets.get(index, ()):
                out = ".".join([*parts[:position], str(new), *parts[position + 1 :]])
                copies.append((out, key, f"{head}{new}.{rest}"))
        elif renamed in meta_state:
            copies.append((key, key, renamed))
        else:
            unknown.append(key)

    provided = {model_name for _, _, model_name in copies}
    by_tensor: dict[int, list[str]] = {}
    for name, tensor in target.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), []).append(name)
    missing = [names_[0] for names_ in by_tensor.values() if not any(name in provided for name in names_)]
    if missing:
        raise CheckpointError(
            f"The checkpoint has no tensor for {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)} missing) although its config.json describes a model that has them. The weights and "
            "the config do not describe the same model (or the index is incomplete), so they cannot be mapped."
        )
    dropped = {}
    if past:
        dropped[f"blocks past num_hidden_layers={num_source_layers} (e.g. multi-token-prediction layers)"] = past
    if unknown:
        dropped["tensors the model does not use (from_pretrained would ignore them too)"] = unknown
    ordered = sorted(copies, key=lambda item: _natural_key(item[0]))
    return [(out, key) for out, key, _ in ordered], dropped


# ----------------------------------------------------------------------------------------------- planning


def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype) and dtype in _CODE_OF:
        return dtype
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp64": "float64"}
    name = aliases.get(str(dtype).lower(), str(dtype).lower().removeprefix("torch."))
    resolved = getattr(torch, name, None)
    if resolved not in _CODE_OF:
        raise CheckpointError(f"dtype={dtype!r} is not a floating dtype; choose float32, float16 or bfloat16.")
    return resolved


def _meta_model(config: PretrainedConfig, trust_remote_code: bool) -> PreTrainedModel:
    try:
        with on_meta_device():
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as err:  # an unmapped config class, missing custom code, a config the class rejects
        raise UnsupportedModelError(
            f"transformers cannot build a causal LM from this {type(config).__name__} ({config.model_type}): {err}. "
            "Inheritune slices decoder-only models that AutoModelForCausalLM can load."
        ) from err


def plan_inherit(
    source: str | os.PathLike,
    num_layers: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    reinit: Iterable[str] = (),
    reinit_layers: Iterable[int] = (),
    random_init: bool = False,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
) -> InheritPlan:
    """Validate the request and work out every output tensor, reading only config, index and shard headers.

    Arguments are those of `inherit_checkpoint`. For a Hub id, the shards that hold needed tensors are
    downloaded here (their headers give the byte ranges); the others never are.
    """
    dtype = _parse_dtype(dtype)
    checkpoint = _open_source(source, revision, token)
    if "config.json" not in checkpoint.files:
        raise CheckpointError(f"{checkpoint.name} has no config.json; pass a folder written by save_pretrained.")
    config_path = checkpoint.fetch("config.json")
    code_files = [name for name in checkpoint.files if name.endswith(".py") and "/" not in name]
    if trust_remote_code and code_files and "auto_map" in config_path.read_text():
        for name in code_files:  # the config class itself may live in the checkpoint's code
            checkpoint.fetch(name)
    try:
        config = AutoConfig.from_pretrained(config_path.parent, trust_remote_code=trust_remote_code)
    except Exception as err:  # unknown model_type, broken JSON, missing custom code
        raise CheckpointError(f"Cannot read the config of {checkpoint.name}: {err}") from err

    reference = _meta_model(config, trust_remote_code)
    check_causal_lm(reference)
    stack = find_decoder_layers(reference)
    source_layers = resolve_layers(len(stack), num_layers, layers)
    reinit, reinit_layers = check_reinit(reinit, reinit_layers, len(source_layers), reference)
    lineage = Lineage(str(source), config.model_type, len(stack), source_layers, bool(random_init))
    new_config = inherit_config(
        config, source_layers, lineage=lineage.to_dict(), source_stack=stack, model_class=type(reference)
    )
    if not getattr(new_config, "architectures", None):
        new_config.architectures = [type(reference).__name__]
    target = _meta_model(new_config, trust_remote_code)
    check_blocks_match(reference, stack, find_decoder_layers(target), source_layers)

    companions = {
        name: name
        for name in checkpoint.files
        if "/" not in name
        and (
            any(fnmatch.fnmatch(name, pattern) for pattern in COMPANION_PATTERNS)
            or (name.endswith(".py") and getattr(config, "auto_map", None))
        )
    }
    plan = InheritPlan(
        source=str(source),
        config=new_config,
        tensors=[],
        companions={name: checkpoint.fetch(name) for name in companions},
        reinit=reinit,
        reinit_layers=reinit_layers,
        random_init=bool(random_init),
        dtype=dtype,
        trust_remote_code=trust_remote_code,
    )
    if random_init:
        return plan

    weight_map = _weight_map(checkpoint)
    mapping, plan.dropped = _map_tensors(weight_map, reference, stack.path, len(stack), source_layers, target)
    headers: dict[str, dict[str, TensorSource]] = {}
    for file in dict.fromkeys(weight_map[key] for _, key in mapping):
        headers[file] = read_safetensors_header(checkpoint.fetch(file))
    for out, key in mapping:
        found = headers[weight_map[key]].get(key)
        if found is None:
            raise CheckpointError(
                f"{SAFE_INDEX} of {checkpoint.name} says {key!r} is in {weight_map[key]}, but that file does not hold "
                "it. The index and the shards are from different checkpoints; download the checkpoint again."
            )
        out_dtype = _CODE_OF[dtype] if dtype is not None and found.dtype in _FLOAT_CODES else found.dtype
        plan.tensors.append(PlannedTensor(out, key, found, out_dtype))

    # save_pretrained records the weights' dtype in the config; do the same for the dominant float dtype.
    float_bytes: dict[str, int] = {}
    for tensor in plan.tensors:
        if tensor.dtype in _FLOAT_CODES:
            float_bytes[tensor.dtype] = float_bytes.get(tensor.dtype, 0) + tensor.nbytes
    if float_bytes:
        decoder_config(new_config).dtype = new_config.dtype = _FLOAT_CODES[max(float_bytes, key=float_bytes.get)]
    for reason, names in plan.dropped.items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        logger.warning("inherit: dropped %d %s: %s", len(names), reason, shown)
    return plan


# ------------------------------------------------------------------------------------------------ writing


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _copy_bytes(src: int, dst: int, start: int, count: int) -> None:
    """Append `count` bytes of `src` from `start` to `dst`, in the kernel where the file system allows."""
    offset, end = start, start + count
    try:
        while offset < end:
            copied = os.copy_file_range(src, dst, end - offset, offset)
            if copied == 0:
                raise CheckpointError(f"Unexpected end of file while copying tensor data (fd {src}).")
            offset += copied
        return
    except (AttributeError, OSError):  # no copy_file_range here (other OS, file system): copy through a buffer
        pass
    while offset < end:
        chunk = os.pread(src, min(_CHUNK_BYTES, end - offset), offset)
        if not chunk:
            raise CheckpointError(f"Unexpected end of file while copying tensor data (fd {src}).")
        _write_all(dst, chunk)
        offset += len(chunk)


def _cast_bytes(src: int, dst: int, tensor: PlannedTensor) -> None:
    """Append `tensor` cast to its output dtype, a bounded chunk at a time (casts are element-wise)."""
    source_dtype, target_dtype = _FLOAT_CODES[tensor.source.dtype], _FLOAT_CODES[tensor.dtype]
    itemsize = _ITEMSIZE[tensor.source.dtype]
    buffer = bytearray(_CHUNK_BYTES - _CHUNK_BYTES % itemsize)
    offset, end = tensor.source.start, tensor.source.end
    while offset < end:
        size = min(len(buffer), end - offset)
        if os.preadv(src, [memoryview(buffer)[:size]], offset) != size:
            raise CheckpointError(
                f"Unexpected end of file while reading {tensor.source_name} from {tensor.source.file}."
            )
        values = torch.frombuffer(buffer, dtype=source_dtype, count=size // itemsize).to(target_dtype)
        _write_all(dst, values.view(torch.uint8).numpy())
        offset += size


def _write_shard(path: Path, tensors: list[PlannedTensor], sources: dict[Path, int]) -> None:
    # The safetensors writer's layout: widest dtypes first so every tensor stays aligned, header padded to 8.
    layout = sorted(tensors, key=lambda t: (-_ITEMSIZE.get(t.dtype, 1), t.name))
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in layout:
        header[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.source.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, struct.pack("<Q", len(blob)) + blob)
        for tensor in layout:
            src = sources[tensor.source.file]
            if tensor.dtype == tensor.source.dtype:
                _copy_bytes(src, fd, tensor.source.start, tensor.nbytes)
            else:
                _cast_bytes(src, fd, tensor)
    finally:
        os.close(fd)


def _write_weights(plan: InheritPlan, folder: Path, max_shard_size: int) -> None:
    """Pack the planned tensors, in order, into shards of at most `max_shard_size` bytes, plus the index."""
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for tensor in plan.tensors:
        if shards[-1] and size + tensor.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    names = (
        [SAFE_WEIGHTS]
        if len(shards) == 1
        else [SHARD_NAME.format(index=i + 1, total=len(shards)) for i in range(len(shards))]
    )
    sources = {}
    try:
        for tensor in plan.tensors:
            if tensor.source.file not in sources:
                sources[tensor.source.file] = os.open(tensor.source.file, os.O_RDONLY)
        for name, shard in zip(names, shards, strict=True):
            _write_shard(folder / name, shard, sources)
    finally:
        for fd in sources.values():
            os.close(fd)
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": plan.nbytes},
            "weight_map": {tensor.name: name for name, shard in zip(names, shards, strict=True) for tensor in shard},
        }
        write_json(folder / SAFE_INDEX, index, sort_keys=True)


def _apply_reinit(model: PreTrainedModel, plan: InheritPlan) -> PreTrainedModel:
    """Re-initialise the requested parts of the loaded target, as in-memory `inherit` does."""
    if not plan.reinit and not plan.reinit_layers:
        return model
    lineage = Lineage.from_dict(plan.config.inheritune)
    lineage.reinitialized = reinitialize_parts(model, plan.reinit, plan.reinit_layers)
    model.config.inheritune = lineage.to_dict()
    return model


def _write_target(plan: InheritPlan, folder: Path, max_shard_size: int) -> None:
    if plan.random_init:
        try:  # like in-memory `inherit`, the baseline keeps the reference's dtype
            dtype = plan.dtype or _parse_dtype(getattr(plan.config, "dtype", None))
        except CheckpointError:
            dtype = None
        model = AutoModelForCausalLM.from_config(plan.config, dtype=dtype, trust_remote_code=plan.trust_remote_code)
        model.config.inheritune = plan.config.inheritune
        model.save_pretrained(folder, max_shard_size=max_shard_size)
    else:
        _write_weights(plan, folder, max_shard_size)
        plan.config.save_pretrained(folder)


def _copy_companions(plan: InheritPlan, folder: Path) -> None:
    for name, path in plan.companions.items():
        shutil.copyfile(path, folder / name)


def _shard_bytes(max_shard_size: int | str) -> int:
    from transformers.utils.hub import convert_file_size_to_int

    try:
        size = convert_file_size_to_int(max_shard_size)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"max_shard_size={max_shard_size!r} is not a size such as '5GB' or 2**30.") from err
    if size <= 0:
        raise CheckpointError(f"max_shard_size must be positive, got {max_shard_size!r}.")
    return size


def inherit_checkpoint(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    num_layers: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    reinit: Iterable[str] = (),
    reinit_layers: Iterable[int] = (),
    random_init: bool = False,
    dtype: torch.dtype | str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
) -> Path | PreTrainedModel:
    """Inherit the first blocks of a checkpoint without loading it: the Inheritune target, from the files.

    Same selection and lineage as in-memory `inherit` (Algorithm 1 of arXiv 2404.08634: embeddings, the
    first `num_layers` blocks, default L/2, final norm and LM head), read from a safetensors checkpoint
    folder (single file or sharded with `model.safetensors.index.json`) or a Hub repo id. Only the
    needed tensors are read, byte for byte, so memory stays flat whatever the model size and the result
    equals in-memory `inherit` bit for bit. Everything is validated before anything is written, and the
    output folder appears only when complete.

    Args:
        source: checkpoint folder, or Hub repo id (downloads config, index and only the needed shards).
        out: output folder. When None, the target is returned loaded in memory instead (the reference
            still never is).
        num_layers, layers, reinit, reinit_layers, random_init: as in `inherit`. Re-initialising parts
            loads the (small) target once to run the architecture's own init.
        dtype: cast floating tensors to this dtype (e.g. "bfloat16"); default keeps the checkpoint's.
        max_shard_size: cap per output shard ("5GB", or bytes); a single tensor larger than it gets its own.
        overwrite: replace a non-empty `out`.
        revision, token: for Hub ids.
        trust_remote_code: allow the checkpoint's own modeling code (needed to build its meta model).

    Returns:
        `Path(out)` when `out` is given (nothing is loaded); otherwise the target `PreTrainedModel`.

    Raises:
        CheckpointError: missing shard, corrupt or truncated file, pickle-only weights, names that do not
            map, or too little disk space. UnsupportedModelError, InvalidLayersError, ConfigSliceError,
            OutputExistsError as in-memory `inherit` and the output folder checks.
    """
    shard_bytes = _shard_bytes(max_shard_size)
    if out is not None:
        check_output_dir(out, overwrite)
    plan = plan_inherit(
        source,
        num_layers,
        layers=layers,
        reinit=reinit,
        reinit_layers=reinit_layers,
        random_init=random_init,
        dtype=dtype,
        revision=revision,
        token=token,
        trust_remote_code=trust_remote_code,
    )
    if out is None:
        with tempfile.TemporaryDirectory(prefix="inheritune-", ignore_cleanup_errors=True) as tmp:
            _write_target(plan, Path(tmp), shard_bytes)
            model = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=trust_remote_code)
        model.config._name_or_path = str(source)
        return _apply_reinit(model, plan)

    out = Path(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if plan.nbytes > free:
        raise CheckpointError(
            f"The target needs {plan.nbytes / 1e9:.2f} GB but only {free / 1e9:.2f} GB is free under {parent}. "
            "Free some space or choose another output folder."
        )
    with atomic_output_dir(out, overwrite) as tmp:
        _write_target(plan, tmp, shard_bytes)
        if plan.reinit or plan.reinit_layers:
            loaded = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=trust_remote_code)
            model = _apply_reinit(loaded, plan)
            del loaded
            for stale in tmp.glob("*.safetensors*"):
                stale.unlink()
            model.save_pretrained(tmp, max_shard_size=shard_bytes)
        _copy_companions(plan, tmp)
    logger.debug("inherit: wrote %s (%d bytes)", out, plan.nbytes)
    return out
