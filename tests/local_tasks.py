"""Offline material for the evaluate and publish tests: a toy corpus, a tokenizer, tiny models, local lm-eval tasks.

Nothing here touches the network. The corpus is a small grammar, "the <adjective> <animal> <food> .",
in which each animal is always followed by the same food (a bigram: a tiny model learns it in a few dozen steps). Training sentences use some adjectives, held-out sentences
use the others, so the local tasks are built from text the model never saw:

- `toy_ppl`, a perplexity task (`loglikelihood_rolling`) over held-out paragraphs;
- `toy_mc`, a multiple-choice task: "the <held-out adjective> <animal>" -> which of the 4 foods?
  Every food is the answer equally often, so a model that ignores the animal scores exactly chance (1/4).

A model trained for a few seconds on the training sentences learns animal -> food; a random-init one cannot.
"""

from __future__ import annotations

import functools
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from tiny_models import gpt2_config
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

FOODS = {"cat": "fish", "dog": "bones", "bird": "seeds", "cow": "grass"}
TRAIN_ADJECTIVES = ["red", "big", "old", "small", "happy", "quiet", "brown", "young"]
HELDOUT_ADJECTIVES = ["tall", "calm", "lazy", "brave", "shy", "wise"]
MC_CHANCE = 1 / len(FOODS)
EOS = "<|endoftext|>"


def sentence(adjective: str, animal: str) -> str:
    return f"the {adjective} {animal} {FOODS[animal]} ."


def train_sentences() -> list[str]:
    return [sentence(adj, animal) for adj in TRAIN_ADJECTIVES for animal in FOODS]


def heldout_sentences() -> list[str]:
    return [sentence(adj, animal) for adj in HELDOUT_ADJECTIVES for animal in FOODS]


@functools.lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the training sentences in well under a second (no download)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(train_sentences() * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)


def tiny_config(**overrides: Any) -> GPT2Config:
    """`tiny_models.gpt2_config` at width 64, 2 blocks, over this module's tokenizer."""
    tok = tokenizer()
    values = dict(n_embd=64, n_positions=128, vocab_size=len(tok), bos_token_id=tok.eos_token_id)
    values |= dict(eos_token_id=tok.eos_token_id) | overrides
    return gpt2_config(values.pop("n_layer", 2), **values)


def random_model(seed: int = 0, **overrides: Any) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(tiny_config(**overrides)).eval()


@functools.lru_cache(maxsize=1)
def trained_model(steps: int = 50, seed: int = 0) -> GPT2LMHeadModel:
    """The random model of `seed`, trained on shuffled training sentences (a few seconds on 2 CPU cores)."""
    tok = tokenizer()
    model = random_model(seed)
    model.train()
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses from threads when the CPU is shared
    try:
        for _ in range(steps):
            texts = [" ".join(rng.sample(train_sentences(), 6)) for _ in range(16)]
            ids = torch.tensor([tok(text).input_ids[:32] for text in texts])
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def mc_docs() -> list[dict[str, Any]]:
    foods = list(FOODS.values())
    return [
        {"query": f"the {adj} {animal}", "choices": [f"{food} ." for food in foods], "gold": foods.index(food)}
        for adj in HELDOUT_ADJECTIVES
        for animal, food in FOODS.items()
    ]


def ppl_docs() -> list[dict[str, str]]:
    held = heldout_sentences()
    return [{"text": " ".join(held[i : i + 4])} for i in range(0, len(held), 4)]


def mc_task_config(data_file: str | Path, name: str = "toy_mc") -> dict[str, Any]:
    """The multiple-choice task as an lm-eval config dict (data_files must be absolute: lm-eval runs anywhere)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).absolute())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


PPL_YAML = """\
task: toy_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
metadata:
  version: 1.0
"""


def write_local_tasks(directory: str | Path) -> Path:
    """Write `toy_ppl` and `toy_mc` as YAML + JSONL (absolute data_files) into `directory`; return it."""
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    for name, docs in (("toy_ppl", ppl_docs()), ("toy_mc", mc_docs())):
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (directory / "toy_ppl.yaml").write_text(PPL_YAML.format(data_file=directory / "toy_ppl.jsonl"))
    import yaml

    (directory / "toy_mc.yaml").write_text(yaml.safe_dump(mc_task_config(directory / "toy_mc.jsonl")))
    return directory


@functools.lru_cache(maxsize=1)
def shared_task_dir() -> Path:
    """One task folder per test session (the files are read-only inputs, so sharing them is safe)."""
    return write_local_tasks(Path(tempfile.mkdtemp(prefix="inheritune-tasks-")))
