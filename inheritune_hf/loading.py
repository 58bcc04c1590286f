"""Load a causal LM the one safe way, and read the context it accepts, before any work starts.

Every step that loads a model (analyze, run, evaluate, the recipes, publishing) goes through `load_causal_lm`:

- **safetensors only.** A `pytorch_model.bin` is a pickle, and unpickling runs arbitrary code; the README promises
  that this package never opens one. A folder or Hub repo with only pickle weights is refused with the conversion
  to run once, in an environment the user trusts (the same message `inherit` gives).
- **decoder-only causal LMs only.** The config is checked on a weightless (meta) model first, so an encoder-only
  or encoder-decoder checkpoint is refused before its weights are read.

`context_length` and `check_block_size` read the longest sequence a config accepts, so a block size the model
cannot position is refused before any text is tokenized.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from .architecture import check_causal_lm, decoder_config, on_meta_device
from .errors import CheckpointError, DataError, UnsupportedModelError
from .sources import check_source

# Config fields that bound the sequence length, in the order transformers' model families use them
# (`max_position_embeddings` is also what GPT-2's `n_positions` is mapped to).
CONTEXT_FIELDS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "max_seq_len",
    "seq_length",
    "n_ctx",
    "context_length",
)


def _config_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("revision", "token", "trust_remote_code", "cache_dir") if k in kwargs}


def _refuse_pickle_weights(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> None:
    """Raise the pickle-only `CheckpointError` of `inherit_checkpoint` when that is why loading failed.

    The source's file list is read only on this error path, through `checkpoint`'s own reader, so the message
    (and the conversion it names) is written in one place.
    """
    from .checkpoint import checkpoint_weight_map

    # raises the pickle-only (or no-weights) error; returns when safetensors are there
    checkpoint_weight_map(name_or_path, kwargs.get("revision"), kwargs.get("token"))


def load_causal_lm_config(name_or_path: str | os.PathLike, **kwargs: Any) -> PretrainedConfig:
    """The config of a checkpoint, refused with `UnsupportedModelError` unless it builds a decoder-only causal LM.

    Cheap (one JSON file, a weightless model): the checks that need only the config run before any weights load.
    `kwargs` are `from_pretrained`'s; the ones a config needs (revision, token, trust_remote_code) are used.
    """
    check_source(name_or_path)  # a mistyped path at once, an unreachable Hub once (not after a minute of retries)
    try:
        config = AutoConfig.from_pretrained(name_or_path, **_config_kwargs(kwargs))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Cannot read the config of {str(name_or_path)!r}: {err}") from err
    check_causal_config(config, kwargs.get("trust_remote_code", False))
    return config


def load_causal_lm(name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True, **kwargs)`, refusing what must not load.

    Raises `UnsupportedModelError` for a checkpoint that is not a decoder-only causal LM (checked on the config
    before the weights are read) and `CheckpointError` for one with only pickle weights (with the conversion to
    safetensors) or one that cannot be read at all.
    """
    load_causal_lm_config(name_or_path, **kwargs)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True, **kwargs)
    except OSError as err:
        if "safetensors" in str(err):
            _refuse_pickle_weights(name_or_path, kwargs)
        raise CheckpointError(f"Cannot load the model {str(name_or_path)!r}: {err}") from err
    check_causal_lm(model)
    return model


def check_causal_config(config: PretrainedConfig, trust_remote_code: bool = False) -> None:
    """`architecture.check_causal_lm` on the model `config` builds, instantiated on the meta device (no weights).

    Catches an encoder-only or encoder-decoder checkpoint before anything is loaded or written. A config with no
    causal-LM class in transformers (T5, BERT-style encoders without an LM head) is refused the same way.
    """
    try:
        with on_meta_device():
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        kind = "an encoder-decoder" if getattr(config, "is_encoder_decoder", False) else "not a causal-LM"
        raise UnsupportedModelError(
            f"{type(config).__name__} ({config.model_type}) is {kind} model with no AutoModelForCausalLM class; "
            "Inheritune needs a decoder-only causal LM."
        ) from None
    check_causal_lm(model)


def context_length(config: PretrainedConfig) -> int | None:
    """The longest sequence the decoder of `config` accepts, or None when its config sets no limit.

    Read from the first of `CONTEXT_FIELDS` the (text) config carries as a positive integer, so any model family
    is covered without a per-model table.
    """
    configs = [decoder_config(config), config]
    for key in CONTEXT_FIELDS:
        for candidate in configs:
            value = getattr(candidate, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_block_size(config: PretrainedConfig, block_size: int) -> None:
    """Refuse `block_size` longer than the model's context: positions past it have no embedding (or were never
    trained), so training would crash mid-run or learn from positions the reference never saw."""
    context = context_length(config)
    if context is not None and block_size > context:
        raise DataError(
            f"block_size={block_size} is longer than the model's context of {context} tokens "
            f"({type(config).__name__}); lower --block_size to at most {context}."
        )
