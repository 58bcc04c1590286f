"""inheritune_hf.data: the embedded corpus, the tokenizer, loading text from any source, packing into blocks."""

from __future__ import annotations

import json

import datasets
import pytest
from _train_setup import BLOCK, CORPUS_BYTES, VOCAB, blocks, corpus, tokenizer
from transformers import HfArgumentParser, TrainingArguments

from inheritune_hf.data import (
    causal_lm_datasets,
    corpus_fingerprint,
    embedded_corpus,
    load_text_dataset,
    pack_dataset,
)
from inheritune_hf.errors import DataError
from inheritune_hf.settings import EMBEDDED_CORPORA, EMBEDDED_CORPUS, STDLIB_CORPUS, DataArguments

#: sha256 of the default corpus's train split as `corpus_fingerprint` computes it (paths and texts, in order).
PINNED_TRAIN_SHA256 = "475d0f340071192d981f3e6a23b4eec63f62cd6acbb216cf12afbcbae36939ca"


def test_embedded_corpus_is_the_python_docs_split_by_path():
    raw = corpus()
    assert set(raw) == {"train", "validation"}
    assert raw["train"].num_rows > 0 and raw["validation"].num_rows > 0
    assert not set(raw["train"]["path"]) & set(raw["validation"]["path"])
    assert all(path.endswith(".rst") for path in raw["train"]["path"])
    assert sum(len(t.encode()) for split in raw.values() for t in split["text"]) <= CORPUS_BYTES


def test_embedded_corpus_split_does_not_depend_on_which_files_are_included():
    for name in EMBEDDED_CORPORA:
        small = embedded_corpus(max_files=20, validation_fraction=0.3, name=name)
        large = embedded_corpus(max_files=60, validation_fraction=0.3, name=name)
        assert set(small["validation"]["path"]) <= set(large["validation"]["path"])
        assert set(small["train"]["path"]) <= set(large["train"]["path"])


def test_a_small_cap_keeps_a_proportionate_validation_split():
    # On a machine whose stdlib had 574 files, an 800 KB cap once left validation almost empty: the caps are now
    # shared between the splits by validation_fraction.
    raw = embedded_corpus(max_bytes=800_000, validation_fraction=0.05)
    sizes = {split: sum(len(t.encode()) for t in ds["text"]) for split, ds in raw.items()}
    assert 0.03 * 800_000 <= sizes["validation"] <= 0.05 * 800_000
    assert sizes["train"] <= 0.95 * 800_000


def test_embedded_corpus_bytes_are_pinned():
    # The whole corpus: the same documents and bytes on every machine and Python (the fingerprint run.json records).
    fingerprint = corpus_fingerprint(embedded_corpus(validation_fraction=0.05))
    assert {split: (fp["documents"], fp["bytes"]) for split, fp in fingerprint.items()} == {
        "train": (470, 10_315_913),
        "validation": (27, 732_362),
    }
    assert fingerprint["train"]["sha256"] == PINNED_TRAIN_SHA256


def test_a_damaged_corpus_file_is_refused_by_its_sha256(tmp_path, monkeypatch):
    import gzip

    from inheritune_hf import data

    damaged = tmp_path / "python-docs-3.11.jsonl.gz"
    text = gzip.decompress(data.PYTHON_DOCS_CORPUS_FILE.read_bytes())
    damaged.write_bytes(gzip.compress(text.replace(b"Python", b"Pithon", 1)))
    monkeypatch.setattr(data, "PYTHON_DOCS_CORPUS_FILE", damaged)
    data._python_docs.cache_clear()
    try:
        with pytest.raises(DataError, match="expected 080eff94.*restore it") as err:
            embedded_corpus(max_files=4)
        assert "\n" not in str(err.value)
        damaged.write_bytes(b"not gzip")
        data._python_docs.cache_clear()
        with pytest.raises(DataError, match="not valid gzip"):
            embedded_corpus(max_files=4)
    finally:
        data._python_docs.cache_clear()


def test_the_stdlib_corpus_stays_available_by_name():
    raw = load_text_dataset(STDLIB_CORPUS, corpus_max_files=30, validation_fraction=0.2)
    assert all(path.endswith(".py") for path in raw["train"]["path"])
    with pytest.raises(DataError, match="Unknown embedded corpus 'nope'"):
        embedded_corpus(max_files=3, name="nope")


def test_fingerprint_counts_files_bytes_and_hash_and_is_stable():
    raw = corpus()
    fingerprint = corpus_fingerprint(raw)
    assert fingerprint == corpus_fingerprint(embedded_corpus(max_bytes=CORPUS_BYTES, validation_fraction=0.2))
    train = fingerprint["train"]
    assert train["documents"] == raw["train"].num_rows
    assert train["bytes"] == sum(len(t.encode()) for t in raw["train"]["text"])
    assert len(train["sha256"]) == 64
    changed = raw["train"].map(lambda row: {"text": row["text"] + "#"})
    assert corpus_fingerprint(changed)["sha256"] != train["sha256"]


def test_trained_tokenizer_is_byte_level_bpe_with_eos():
    tok = tokenizer()
    assert len(tok) == VOCAB
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id is not None
    text = "def f(x):\n    return x ** 2  # é ✓\n"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte level: any text round-trips


def test_packed_blocks_are_full_and_separate_documents_with_eos():
    train, validation = blocks()
    assert len(train) > 0 and len(validation) > 0
    assert {len(ids) for ids in train["input_ids"][:50]} == {BLOCK}
    assert train[0]["labels"].tolist() == train[0]["input_ids"].tolist()
    docs = datasets.Dataset.from_dict({"text": ["a b c " * 20, "x y z " * 20]})
    packed = pack_dataset(docs, tokenizer(), 8)
    stream = [t for ids in packed["input_ids"] for t in ids.tolist()]
    assert tokenizer().eos_token_id in stream


def test_blocks_can_start_with_bos_and_carry_the_stream_on_in_the_other_positions():
    texts = ["a b c " * 20, "x y z " * 20]
    eos = tokenizer().eos_token_id
    stream = [t for ids in tokenizer()(texts, add_special_tokens=False)["input_ids"] for t in (*ids, eos)]
    bos = VOCAB - 1  # an id the text never gives, so a test of position 0 cannot pass by accident
    assert bos not in stream
    packed = pack_dataset(datasets.Dataset.from_dict({"text": texts}), tokenizer(), 8, bos_token_id=bos)
    rows = [ids.tolist() for ids in packed["input_ids"]]
    assert {len(row) for row in rows} == {8}
    assert [row[0] for row in rows] == [bos] * len(rows)
    rest = [t for row in rows for t in row[1:]]
    assert rest == stream[: len(stream) // 7 * 7]  # 7 stream tokens per block, none skipped or repeated
    assert packed[0]["labels"].tolist() == rows[0]


@pytest.mark.parametrize("bad", [-1, VOCAB, 1.5, True])
def test_a_bos_id_outside_the_embeddings_is_refused_before_packing(bad):
    docs = datasets.Dataset.from_dict({"text": ["a b c " * 20]})
    with pytest.raises(DataError, match="bos_token_id must be a token id"):
        pack_dataset(docs, tokenizer(), 8, vocab_size=VOCAB, bos_token_id=bad)


def test_start_blocks_with_bos_packs_every_split_with_the_tokenizers_bos(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'out'}\nblock_size: {BLOCK}\ncorpus_max_bytes: 50000\nvalidation_fraction: 0.3\n"
        "start_blocks_with_bos: true\n"
    )
    data_args, _ = HfArgumentParser((DataArguments, TrainingArguments)).parse_yaml_file(str(recipe))
    train, validation, metadata = causal_lm_datasets(data_args, tokenizer())
    bos = tokenizer().bos_token_id
    assert bos is not None and metadata["bos_token_id"] == bos
    for split in (train, validation):
        assert split[:]["input_ids"][:, 0].tolist() == [bos] * len(split)
    plain, _, _ = causal_lm_datasets(
        DataArguments(block_size=BLOCK, corpus_max_bytes=50000, validation_fraction=0.3), tokenizer()
    )
    assert plain[:]["input_ids"][:, 0].ne(bos).any()  # without the option position 0 is whatever the stream holds


def test_too_short_text_is_rejected_before_training():
    short = datasets.Dataset.from_dict({"text": ["tiny"]})
    with pytest.raises(DataError, match="fewer tokens than one block"):
        pack_dataset(short, tokenizer(), 1024)


def test_empty_dataset_is_rejected():
    with pytest.raises(DataError, match="empty"):
        pack_dataset(datasets.Dataset.from_dict({"text": []}), tokenizer(), 16)


def test_tokenizer_without_eos_is_rejected():
    tok = tokenizer()
    bare = type(tok)(tokenizer_object=tok.backend_tokenizer)
    with pytest.raises(DataError, match="EOS"):
        pack_dataset(datasets.Dataset.from_dict({"text": ["a b c"]}), bare, 4)


def test_local_text_and_json_files_load_with_a_deterministic_validation_split(tmp_path):
    lines = [f"document number {i} " * 5 for i in range(40)]
    (tmp_path / "a.txt").write_text("\n".join(lines))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"content": line}) for line in lines))
    text = load_text_dataset(str(tmp_path / "a.txt"), validation_fraction=0.25)
    again = load_text_dataset(str(tmp_path / "a.txt"), validation_fraction=0.25)
    assert text["validation"]["text"] == again["validation"]["text"]
    assert text["validation"].num_rows == 10 and text["train"].num_rows == 30
    as_json = load_text_dataset(str(tmp_path / "b.jsonl"), text_column="content", validation_fraction=0.25)
    assert as_json["validation"].num_rows == 10
    with pytest.raises(DataError, match="no column 'text'"):
        load_text_dataset(str(tmp_path / "b.jsonl"))


def test_an_in_memory_dataset_keeps_its_own_validation_split():
    given = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["one", "two", "three"]}),
            "validation": datasets.Dataset.from_dict({"text": ["held out"]}),
        }
    )
    assert load_text_dataset(given)["validation"]["text"] == ["held out"]


def test_data_arguments_parse_beside_training_arguments(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'out'}\nblock_size: {BLOCK}\ncorpus_max_bytes: 50000\nvalidation_fraction: 0.3\n"
    )
    data_args, training_args = HfArgumentParser((DataArguments, TrainingArguments)).parse_yaml_file(str(recipe))
    assert data_args.block_size == BLOCK and data_args.dataset_name is None
    train, validation, metadata = causal_lm_datasets(data_args, tokenizer())
    assert len(train) > 0 and len(validation) > 0
    assert metadata["source"] == EMBEDDED_CORPUS and metadata["fingerprint"]["train"]["bytes"] > 0


def test_a_streamed_source_holds_out_its_first_documents_and_packs_lazily(tmp_path):
    texts = corpus()["train"]["text"][:12]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    data_args = DataArguments(
        dataset_name=str(tmp_path / "docs.jsonl"), streaming=True, streaming_validation_documents=3, block_size=BLOCK
    )
    train, validation, metadata = causal_lm_datasets(data_args, tokenizer())
    assert isinstance(train, datasets.IterableDataset)
    assert isinstance(validation, datasets.Dataset) and len(validation) > 0  # materialized: the same every eval
    first = next(iter(train))
    assert len(first["input_ids"]) == BLOCK
    held_out = pack_dataset(datasets.Dataset.from_dict({"text": texts[:3]}), tokenizer(), BLOCK)
    assert validation[0]["input_ids"].tolist() == held_out[0]["input_ids"].tolist()
    assert "fingerprint" not in metadata


def test_a_script_dataset_error_names_the_parquet_revision(monkeypatch):
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append(kwargs.get("revision"))
        if kwargs.get("revision") is None:  # what datasets >= 4 raises for a script-only Hub dataset
            raise RuntimeError("Dataset scripts are no longer supported, but found openwebtext.py")
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a b c"] * 40})})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError, match="refs/convert/parquet"):
        load_text_dataset("Skylion007/openwebtext")
    args = DataArguments(dataset_name="Skylion007/openwebtext", dataset_revision="refs/convert/parquet")
    raw = load_text_dataset(args.dataset_name, revision=args.dataset_revision)
    assert calls == [None, "refs/convert/parquet"] and len(raw["train"]) + len(raw["validation"]) == 40
