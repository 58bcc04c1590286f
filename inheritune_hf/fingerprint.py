"""Fingerprints: what a resumed or reused run must share with the run that wrote its folder.

A resumed Inheritune run (`rounds`) and a reused reference (`recipe`) are trusted only when they were made with the
same model config, training settings and data. Both compare the same fingerprints, built here as plain JSON data
(`io.jsonable`) so that a fingerprint read back from disk compares equal to a fresh one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import datasets
import torch
from transformers import PretrainedConfig, PreTrainedModel

from .io import jsonable

# TrainingArguments that change what a run computes; a resume must find them unchanged.
TRAINING_KEYS = (
    "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler_type", "lr_scheduler_kwargs",
    "warmup_steps", "max_grad_norm", "optim", "seed", "data_seed", "bf16", "fp16", "eval_strategy", "eval_steps",
)  # fmt: skip


def training_fingerprint(training_args: Any) -> dict[str, Any]:
    """The `TRAINING_KEYS` of a `TrainingArguments`: the settings that change what training computes."""
    return {key: getattr(training_args, key) for key in TRAINING_KEYS}


def config_fingerprint(config: PretrainedConfig) -> dict[str, Any]:
    """A config's settings without the keys that name or date it rather than shape the model."""
    settings = config.to_dict()
    for key in ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        settings.pop(key, None)
    return jsonable(settings)


def model_fingerprint(model: PreTrainedModel) -> dict[str, Any]:
    """Class, config and a cheap weight digest (the first 1024 values of every tensor) of `model`."""
    config = config_fingerprint(model.config)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().flatten()[:1024].float().cpu().numpy().tobytes())
    return {"class": type(model).__name__, "config": config, "weights_sha256": digest.hexdigest()}


def dataset_fingerprint(dataset: datasets.Dataset | datasets.IterableDataset) -> dict[str, Any]:
    """Size and a digest of the first and last blocks of a packed dataset (streams: their description)."""
    if isinstance(dataset, datasets.IterableDataset):
        return {"streaming": True, "description": str(dataset.info.dataset_name or dataset.info.description)}
    rows = len(dataset)
    digest = hashlib.sha256()
    for i in sorted({*range(min(8, rows)), *range(max(0, rows - 8), rows)}):
        digest.update(torch.as_tensor(dataset[i]["input_ids"]).to(torch.int64).numpy().tobytes())
    return {"blocks": rows, "sha256": digest.hexdigest()}


def settings_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Every leaf where two fingerprints differ, as `"a.b: old -> new"`, for an error message that says what changed."""
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += settings_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found
