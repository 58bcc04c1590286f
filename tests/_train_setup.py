"""Shared tiny setting for the train / grow / data tests: a small slice of the embedded corpus, a 512-token BPE,
GPT-2-style models of width 64, and CPU TrainingArguments. Built once per process (cached)."""

from __future__ import annotations

import functools
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from tiny_models import gpt2_config  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments  # noqa: E402

from inheritune_hf.data import embedded_corpus, pack_dataset, train_tokenizer  # noqa: E402

VOCAB = 512
BLOCK = 32
CORPUS_BYTES = 160_000
REFERENCE_LAYERS = 4

# Tiny models train fastest on one thread, and the test machine's cores are shared.
torch.set_num_threads(1)


@functools.lru_cache(maxsize=1)
def corpus():
    return embedded_corpus(max_bytes=CORPUS_BYTES, validation_fraction=0.2)


@functools.lru_cache(maxsize=1)
def tokenizer():
    return train_tokenizer(corpus()["train"], vocab_size=VOCAB)


@functools.lru_cache(maxsize=1)
def blocks():
    """(train, validation) packed blocks of BLOCK tokens."""
    raw = corpus()
    return pack_dataset(raw["train"], tokenizer(), BLOCK), pack_dataset(raw["validation"], tokenizer(), BLOCK)


def tiny_config(n_layer: int = REFERENCE_LAYERS, vocab_size: int = VOCAB) -> GPT2Config:
    """The training tests' GPT-2: `tiny_models.gpt2_config` at width 64 over this tokenizer's blocks, no dropout."""
    return gpt2_config(
        n_layer, n_embd=64, vocab_size=vocab_size, n_positions=BLOCK, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )


def tiny_model(n_layer: int = REFERENCE_LAYERS, seed: int = 0, vocab_size: int = VOCAB) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(tiny_config(n_layer, vocab_size))


def training_args(output_dir, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=12,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        logging_steps=4,
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


@functools.lru_cache(maxsize=1)
def trained_reference() -> GPT2LMHeadModel:
    """A 4-block reference trained for 40 steps (so its early blocks carry something worth inheriting)."""
    import tempfile

    from inheritune_hf.train import train

    model = tiny_model(REFERENCE_LAYERS, seed=1)
    train_blocks, val_blocks = blocks()
    with tempfile.TemporaryDirectory() as tmp:
        train(model, train_blocks, val_blocks, training_args(tmp, max_steps=40, eval_strategy="no"))
    return model.eval()
