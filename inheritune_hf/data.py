"""Data for training and growing: causal-LM train/validation sets packed into blocks of `block_size`.

Sources, all ending as a `datasets.DatasetDict` with a `train` and a `validation` split of raw text:

- a Hub dataset name (`"Skylion007/openwebtext"`, `"HuggingFaceFW/fineweb-edu"`), optionally streamed,
  since web-scale corpora do not fit on a laptop disk;
- local text / JSON / JSON-lines files;
- a `datasets.Dataset` or `DatasetDict` the user already has;
- the **embedded corpora**, offline, so the demo and the tests need no download: `python-docs` (the default), the
  Python 3.11 documentation shipped in the package and checked by sha256, the same bytes on every machine; and
  `stdlib`, the running Python's standard library sources, which differ between Python builds.

`pack_dataset` tokenizes with `datasets.map` and concatenates documents with EOS between them, then cuts
the stream into blocks of `block_size` tokens (the `group_texts` recipe of transformers' `run_clm.py`).
Every block is a full training sample; the tail shorter than one block is dropped. With `bos_token_id` every
block starts with that token (as GPT-2 and Llama are trained), which gives attention a fixed first position.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import DataError
from .settings import EMBEDDED_CORPORA, EMBEDDED_CORPUS, STDLIB_CORPUS

if TYPE_CHECKING:
    from .settings import DataArguments

EOS_TOKEN = "<|endoftext|>"
_TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "text", ".json": "json", ".jsonl": "json"}


@contextmanager
def no_download_counts() -> Iterator[None]:
    """Keep loads of local files off the network.

    `datasets.load_dataset("json", data_files=...)` pings an S3 download counter even for local files unless
    told not to; lm-eval's local tasks go through the same path. Scoped, and restored afterwards.
    """
    previous = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = previous


# ---------------------------------------------------------------------------------------------------------------
# The embedded corpus
# ---------------------------------------------------------------------------------------------------------------


def _stable_unit(key: str) -> float:
    """A number in [0, 1) that depends only on `key` (sha1), the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64


#: The default offline corpus (`dataset_name: python-docs`): the reStructuredText sources of the Python 3.11
#: documentation from Debian 12's python3.11-doc 3.11.2-6+deb12u9 (497 documents, 12 MB of prose with code
#: examples; PSF license, examples also 0BSD; see corpora/NOTICE.md). `scripts/build_corpus.py` rebuilds it.
PYTHON_DOCS_CORPUS_FILE = Path(__file__).resolve().parent / "corpora" / "python-docs-3.11.jsonl.gz"
#: sha256 of the uncompressed JSON lines (independent of the zlib that compressed them).
PYTHON_DOCS_CORPUS_SHA256 = "080eff940f95b383aad080b61b6957e55a39edf7c4d003003ae1912bf523a292"


@lru_cache(maxsize=1)
def _python_docs() -> tuple[tuple[str, str], ...]:
    """(path, text) of the shipped documentation corpus, after checking the file's sha256."""
    try:
        blob = PYTHON_DOCS_CORPUS_FILE.read_bytes()
    except OSError as err:
        raise DataError(
            f"The embedded corpus file {PYTHON_DOCS_CORPUS_FILE} cannot be read ({err.strerror}); reinstall "
            "inheritune-hf, or pass --dataset_name with your own text."
        ) from err
    try:
        lines = gzip.decompress(blob)
    except (OSError, EOFError) as err:
        raise DataError(
            f"The embedded corpus file {PYTHON_DOCS_CORPUS_FILE} is not valid gzip ({err}): it was changed or "
            "damaged; restore it (git checkout, or reinstall)."
        ) from err
    digest = hashlib.sha256(lines).hexdigest()
    if digest != PYTHON_DOCS_CORPUS_SHA256:
        raise DataError(
            f"The embedded corpus file {PYTHON_DOCS_CORPUS_FILE} holds text of sha256 {digest}, expected "
            f"{PYTHON_DOCS_CORPUS_SHA256}: it was changed or damaged; restore it (git checkout, or reinstall)."
        )
    rows = (json.loads(line) for line in lines.decode("utf-8").splitlines())
    return tuple((row["path"], row["text"]) for row in rows)


def _stdlib_files() -> Iterator[tuple[str, Callable[[], str], int]]:
    """(relative path, reader, size on disk) of the running Python's standard library .py files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in root.rglob("*.py"):
        if "site-packages" not in path.parts and "dist-packages" not in path.parts and path.is_file():
            yield (
                path.relative_to(root).as_posix(),
                partial(path.read_text, encoding="utf-8", errors="replace"),
                path.stat().st_size,
            )


def _corpus_documents(name: str) -> list[tuple[str, Callable[[], str], int]]:
    """(path, reader, approximate size) of every document of the offline corpus `name`."""
    if name == EMBEDDED_CORPUS:
        return [(path, partial(str, text), len(text)) for path, text in _python_docs()]
    if name == STDLIB_CORPUS:
        return list(_stdlib_files())
    raise DataError(f"Unknown embedded corpus {name!r}; choose one of {', '.join(EMBEDDED_CORPORA)}.")


def embedded_corpus(
    max_files: int | None = None,
    max_bytes: int | None = None,
    validation_fraction: float = 0.05,
    name: str = EMBEDDED_CORPUS,
) -> datasets.DatasetDict:
    """An offline corpus as a `DatasetDict` (`train`, `validation`; columns `path`, `text`).

    `name` is `"python-docs"` (the default: the Python 3.11 documentation shipped in the package and checked by
    sha256, so every machine trains on the same bytes) or `"stdlib"` (the running Python's standard library
    sources, found through `sysconfig`; a different corpus on every Python build).

    A document goes to `validation` when the sha1 of its path falls below `validation_fraction`, so the split does
    not depend on the file system's order or on which other documents exist. Documents are taken in a stable
    shuffled order (by hash of the path) until the caps are reached; the caps `max_files` / `max_bytes` are shared
    between the splits by `validation_fraction`, so a small cap still leaves a proportionate validation split.
    `corpus_fingerprint` gives the document count, bytes and sha256 to record.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    fractions = {"train": 1.0 - validation_fraction, "validation": validation_fraction}
    file_caps = {s: None if max_files is None else max(1, math.ceil(f * max_files)) for s, f in fractions.items()}
    byte_caps = {s: None if max_bytes is None else f * max_bytes for s, f in fractions.items()}
    rows: dict[str, dict[str, list[str]]] = {"train": {"path": [], "text": []}, "validation": {"path": [], "text": []}}
    totals = {"train": 0, "validation": 0}
    documents = sorted(_corpus_documents(name), key=lambda doc: (_stable_unit("order:" + doc[0]), doc[0]))
    for rel, read, size_hint in documents:
        split = "validation" if _stable_unit("split:" + rel) < validation_fraction else "train"
        files_cap, bytes_cap = file_caps[split], byte_caps[split]
        if files_cap is not None and len(rows[split]["path"]) >= files_cap:
            continue
        if bytes_cap is not None and totals[split] + size_hint > bytes_cap + 1024:
            continue  # cheap pre-filter on the approximate size; the exact cap is on the UTF-8 text below
        text = read()
        size = len(text.encode("utf-8"))
        if not text.strip() or (bytes_cap is not None and totals[split] + size > bytes_cap):
            continue
        rows[split]["path"].append(rel)
        rows[split]["text"].append(text)
        totals[split] += size
    for split, columns in rows.items():
        if not columns["text"]:
            raise DataError(
                f"The embedded corpus {name!r} has no {split} documents with max_files={max_files}, "
                f"max_bytes={max_bytes}, validation_fraction={validation_fraction}. Allow more files or bytes."
            )
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(columns) for split, columns in rows.items()})


def corpus_fingerprint(corpus: datasets.Dataset | datasets.DatasetDict, text_column: str = "text") -> dict[str, Any]:
    """File (document) count, UTF-8 bytes and sha256 of a raw-text corpus, per split; recorded in run metadata.

    Two machines with a different Python build get different fingerprints, which is how a result on the
    embedded corpus says which corpus it was measured on.
    """
    if isinstance(corpus, datasets.DatasetDict):
        return {split: corpus_fingerprint(ds, text_column) for split, ds in corpus.items()}
    digest, count, size = hashlib.sha256(), 0, 0
    has_path = "path" in corpus.column_names
    for row in corpus:
        data = row[text_column].encode("utf-8")
        if has_path:
            digest.update(row["path"].encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "big") + data)
        count += 1
        size += len(data)
    return {"documents": count, "bytes": size, "sha256": digest.hexdigest()}


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------


def _iter_texts(texts: Iterable[str] | datasets.Dataset, text_column: str, batch: int = 256) -> Iterator[list[str]]:
    if isinstance(texts, datasets.Dataset):
        for start in range(0, len(texts), batch):
            yield texts[start : start + batch][text_column]
        return
    buffer = []
    for text in texts:
        buffer.append(text)
        if len(buffer) == batch:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def train_tokenizer(
    texts: Iterable[str] | datasets.Dataset, vocab_size: int = 4096, text_column: str = "text"
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (the GPT-2 scheme) on `texts` with `tokenizers`; seconds on the embedded corpus.

    The result is a `PreTrainedTokenizerFast` whose EOS (`<|endoftext|>`, id 0) separates documents when
    packing. It serves when the user brings no tokenizer; save it with `save_pretrained` beside the model.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise DataError(f"vocab_size must be at least 257 (256 bytes + EOS), got {vocab_size}.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_iter_texts(texts, text_column), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, unk_token=EOS_TOKEN
    )


#: Characters of the data a tokenizer is tried on before packing: enough to judge it, cheap to encode.
TOKENIZER_SAMPLE_CHARS = 100_000

#: A tokenizer is refused when it gives fewer tokens than one per this many characters (real tokenizers give
#: one per 1-5 characters; an empty one, as transformers builds from a folder without tokenizer files, gives 0).
MAX_CHARS_PER_TOKEN = 100

#: ... or when a sample of at least MIN_JUDGED_CHARS characters maps to this many distinct ids or fewer
#: (everything unknown, or everything one token).
MIN_DISTINCT_IDS = 2
MIN_JUDGED_CHARS = 1000

NO_TOKENIZER_HINT = (
    "Pass the tokenizer the model was trained with: --tokenizer_name NAME_OR_PATH (library: tokenizer=...), or "
    "save it beside the model (tokenizer.save_pretrained); a model folder without tokenizer files loads as an "
    "empty tokenizer."
)


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], vocab_size: int | None = None) -> None:
    """Refuse a tokenizer that cannot turn this text into ids this model can embed, before anything is packed.

    Two silent failures are caught on a sample of the data: a tokenizer that encodes it to (almost) nothing
    (fewer than one token per `MAX_CHARS_PER_TOKEN` characters, or at most `MIN_DISTINCT_IDS` distinct ids), which
    would train on blocks of EOS; and one whose ids reach past `vocab_size`, the model's embedding rows.
    """
    characters = sum(len(text) for text in texts)
    if characters == 0:
        return  # nothing to judge; an empty corpus is refused where the blocks are cut
    ids = [token for text in texts for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
    name = f"{type(tokenizer).__name__} with {len(tokenizer)} tokens"
    distinct = len(set(ids))
    one_kind = characters >= MIN_JUDGED_CHARS and distinct <= MIN_DISTINCT_IDS
    if len(ids) * MAX_CHARS_PER_TOKEN < characters or one_kind:
        raise DataError(
            f"The tokenizer ({name}) encodes {characters:,} characters of the data to {len(ids):,} tokens "
            f"({distinct} distinct): training would see (almost) nothing but EOS. {NO_TOKENIZER_HINT}"
        )
    if vocab_size is not None and ids and max(ids) >= vocab_size:
        raise DataError(
            f"The tokenizer ({name}) gives token id {max(ids)}, outside the model's {vocab_size} embeddings: it is "
            f"not the tokenizer the model was trained with. {NO_TOKENIZER_HINT}"
        )


def text_sample(dataset: datasets.Dataset | datasets.IterableDataset, text_column: str) -> list[str]:
    """The first documents of `dataset`, up to `TOKENIZER_SAMPLE_CHARS` characters (the last one cut)."""
    if dataset.column_names is not None and text_column not in dataset.column_names:
        return []  # packing names the missing column
    rows = dataset.take(1000) if isinstance(dataset, datasets.IterableDataset) else dataset.select_columns(text_column)
    texts, total = [], 0
    for row in rows:
        text = row.get(text_column)
        if not isinstance(text, str):
            continue
        texts.append(text[: TOKENIZER_SAMPLE_CHARS - total])
        total += len(texts[-1])
        if total >= TOKENIZER_SAMPLE_CHARS:
            break
    return texts


# ---------------------------------------------------------------------------------------------------------------
# Raw text from any source
# ---------------------------------------------------------------------------------------------------------------


def _split_validation(dataset: datasets.Dataset, validation_fraction: float, seed: int) -> datasets.DatasetDict:
    if len(dataset) < 2:
        raise DataError(f"Need at least 2 documents to hold out a validation split, got {len(dataset)}.")
    parts = dataset.train_test_split(test_size=validation_fraction, seed=seed, shuffle=True)
    return datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})


def _local_files(source: str) -> tuple[str, list[str]]:
    path = Path(source)
    files = sorted(str(p) for p in path.rglob("*") if p.suffix in _TEXT_SUFFIXES) if path.is_dir() else [str(path)]
    builders = {_TEXT_SUFFIXES.get(Path(f).suffix, "text") for f in files}
    if not files:
        raise DataError(f"No .txt/.json/.jsonl files under {source}.")
    if len(builders) > 1:
        raise DataError(f"{source} mixes text and JSON files; point at one kind.")
    return builders.pop(), files


def check_text_source(source: str | None, flag: str = "--dataset_name") -> None:
    """Refuse a local text source that holds nothing to read, in one line, before any tokenizer or model loads.

    Every command that reads text (`run`, `analyze`, the recipes) calls this first, so a missing path that looks
    like one, a folder without text files, a file that cannot be read and an empty (or blank) file get the same
    line everywhere, instead of a datasets traceback from one command and a clean line from another. A name that
    does not look like a path is left to the Hub (`load_text_dataset` says why it cannot be loaded).
    """
    from .sources import looks_like_path

    if source is None or source in EMBEDDED_CORPORA:
        return
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_path(source):
            raise DataError(f"{flag} {source}: no such file or folder.")
        return
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _TEXT_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{flag} {source}: no {', '.join(_TEXT_SUFFIXES)} files in this folder.")
    else:
        files = [path]
    for file in files:
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 16):
                    if chunk.strip():
                        return  # some text to read
        except OSError as err:
            raise DataError(f"{flag} {source}: cannot read {file}: {err.strerror or err}.") from err
    what = "is empty" if len(files) == 1 else f"holds {len(files)} files, all empty"
    raise DataError(f"{flag} {source} {what}: there is no text to read.")


def load_text_dataset(
    source: str | datasets.Dataset | datasets.DatasetDict | None = None,
    *,
    config_name: str | None = None,
    revision: str | None = None,
    text_column: str = "text",
    validation_fraction: float = 0.05,
    streaming: bool = False,
    streaming_validation_documents: int = 2000,
    max_train_documents: int | None = None,
    corpus_max_files: int | None = None,
    corpus_max_bytes: int | None = None,
    seed: int = 0,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Raw text with `train` and `validation` splits, from whatever the user has.

    `source` is `None` or `"python-docs"` (the embedded corpus), `"stdlib"` (this Python's sources), a local file or folder, a `Dataset` /
    `DatasetDict`, or a Hub dataset name. The validation split is the source's own when it has one
    (`validation`, else `test`); otherwise `validation_fraction` of the documents, drawn with `seed`, so the
    same call always holds out the same documents. Streamed sources hold out their first
    `streaming_validation_documents` documents instead.
    """
    if source is None or (isinstance(source, str) and source in EMBEDDED_CORPORA):
        raw = embedded_corpus(corpus_max_files, corpus_max_bytes, validation_fraction, name=source or EMBEDDED_CORPUS)
    elif isinstance(source, datasets.DatasetDict):
        raw = source
    elif isinstance(source, datasets.Dataset):
        raw = datasets.DatasetDict({"train": source})
    elif os.path.exists(source):
        check_text_source(source)
        builder, files = _local_files(source)
        with no_download_counts():
            raw = datasets.load_dataset(builder, data_files={"train": files}, streaming=streaming)
    else:
        try:
            raw = datasets.load_dataset(source, config_name, revision=revision, streaming=streaming)
        except Exception as err:  # the Hub raises many kinds; the user needs to know which source failed
            hint = ""
            if "scripts are no longer supported" in str(err) and revision is None:
                hint = (
                    " It is read by a loading script, which this datasets version refuses to run; try its parquet "
                    "conversion (--dataset_revision refs/convert/parquet) or another dataset."
                )
            reason = str(err).rstrip(".")
            raise DataError(
                f"Could not load dataset {source!r} (config {config_name!r}, revision {revision!r}): {reason}.{hint}"
            ) from err

    if "train" not in raw:
        raise DataError(f"Dataset {source!r} has no 'train' split (splits: {list(raw)}).")
    validation = raw.get("validation", raw.get("test"))
    if streaming or isinstance(raw["train"], datasets.IterableDataset):
        train = raw["train"]
        if validation is None:
            validation = train.take(streaming_validation_documents)
            train = train.skip(streaming_validation_documents)
        if max_train_documents is not None:
            train = train.take(max_train_documents)
        result = datasets.IterableDatasetDict({"train": train, "validation": validation})
    else:
        result = (
            _split_validation(raw["train"], validation_fraction, seed)
            if validation is None
            else datasets.DatasetDict({"train": raw["train"], "validation": validation})
        )
        if max_train_documents is not None:
            result["train"] = result["train"].select(range(min(max_train_documents, len(result["train"]))))
    for split, ds in result.items():
        if ds.column_names is not None and text_column not in ds.column_names:
            raise DataError(
                f"The {split} split has no column {text_column!r} (columns: {ds.column_names}). "
                "Pass --text_column (library: text_column=...)."
            )
    return result


# ---------------------------------------------------------------------------------------------------------------
# Tokenize and pack
# ---------------------------------------------------------------------------------------------------------------


def pack_dataset(
    dataset: datasets.Dataset | datasets.IterableDataset,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    *,
    text_column: str = "text",
    num_proc: int | None = None,
    max_blocks: int | None = None,
    vocab_size: int | None = None,
    bos_token_id: int | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Tokenize `dataset` and pack it into blocks of exactly `block_size` tokens (`input_ids`, `labels`).

    Documents are joined with the tokenizer's EOS between them, as GPT-2 was trained, then the stream is cut
    into blocks; the remainder shorter than one block is dropped. `labels` equal `input_ids` (the model
    shifts them), so the default collator needs no padding.

    With `bos_token_id`, each block is that token followed by the next `block_size - 1` tokens of the stream,
    so every training window has the same token at position 0, as GPT-2 and Llama see in training. That fixed
    first position is where attention sinks form (Gu et al. 2024, "When Attention Sink Emerges in Language
    Models"), and sinks are the single-column pattern the paper calls attention collapse.

    Raises `DataError` when the tokenizer has no EOS, `bos_token_id` is not an id of the model's embeddings,
    the tokenizer encodes a sample of the text to (almost) nothing or (given the model's `vocab_size`) to ids
    past it (`check_tokenizer`, before the whole text is tokenized), or the text gives fewer tokens than one
    block.
    """
    if block_size < 2:
        raise DataError(f"block_size must be at least 2, got {block_size}.")
    if bos_token_id is not None and (
        not isinstance(bos_token_id, int)
        or isinstance(bos_token_id, bool)
        or bos_token_id < 0
        or (vocab_size is not None and bos_token_id >= vocab_size)
    ):
        bound = f" below the model's vocab_size {vocab_size}" if vocab_size is not None else ""
        raise DataError(f"bos_token_id must be a token id (an integer >= 0{bound}), got {bos_token_id!r}.")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise DataError("The tokenizer has no EOS token to separate documents; set tokenizer.eos_token.")
    streaming = isinstance(dataset, datasets.IterableDataset)
    if not streaming and len(dataset) == 0:
        raise DataError("The dataset is empty: there is no text to train or evaluate on.")
    check_tokenizer(tokenizer, text_sample(dataset, text_column), vocab_size)

    def tokenize_and_pack(batch: dict[str, list]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        stream = [token for doc in ids for token in (*doc, eos_id)]
        prefix = [] if bos_token_id is None else [bos_token_id]
        step = block_size - len(prefix)  # stream tokens per block
        usable = len(stream) // step * step
        blocks = [prefix + stream[i : i + step] for i in range(0, usable, step)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    # Documents are packed per `datasets.map` batch (1000 documents), as run_clm.py does; only the last
    # partial block of each batch is lost.
    columns = dataset.column_names
    if columns is None:  # a stream whose features are not declared: read them off the first document
        columns = list(next(iter(dataset)).keys())
    map_kwargs: dict[str, Any] = {"batched": True, "remove_columns": columns}
    if not streaming:
        map_kwargs.update(num_proc=num_proc, desc=f"Tokenizing and packing into blocks of {block_size}")
    packed = dataset.map(tokenize_and_pack, **map_kwargs)
    if streaming:
        return packed.take(max_blocks) if max_blocks is not None else packed
    if len(packed) == 0:
        raise DataError(
            f"The text gives fewer tokens than one block of {block_size}: nothing to train or evaluate on. "
            "Use more text or a smaller block_size."
        )
    if max_blocks is not None:
        packed = packed.select(range(min(max_blocks, len(packed))))
    return packed.with_format("torch")


def causal_lm_datasets(
    data_args: DataArguments, tokenizer: PreTrainedTokenizerBase, source: Any = None, *, vocab_size: int | None = None
) -> tuple[datasets.Dataset, datasets.Dataset, dict[str, Any]]:
    """Train and validation blocks from `data_args` (or an explicit `source`), plus metadata to record.

    The metadata names the source and, for in-memory corpora, its fingerprint (documents, bytes, sha256).
    `vocab_size` (the model's embedding rows) lets the tokenizer be checked against the model before packing.
    With `data_args.start_blocks_with_bos` every block starts with the tokenizer's BOS (`pack_dataset`).
    """
    bos_token_id = None
    if data_args.start_blocks_with_bos:
        bos_token_id = tokenizer.bos_token_id
        if bos_token_id is None:
            raise DataError(
                "start_blocks_with_bos needs a tokenizer with a BOS token; set tokenizer.bos_token (GPT-2 uses "
                "<|endoftext|>) or turn start_blocks_with_bos off."
            )
    raw = load_text_dataset(
        source if source is not None else data_args.dataset_name,
        config_name=data_args.dataset_config_name,
        revision=data_args.dataset_revision,
        text_column=data_args.text_column,
        validation_fraction=data_args.validation_fraction,
        streaming=data_args.streaming,
        streaming_validation_documents=data_args.streaming_validation_documents,
        max_train_documents=data_args.max_train_documents,
        corpus_max_files=data_args.corpus_max_files,
        corpus_max_bytes=data_args.corpus_max_bytes,
        seed=data_args.split_seed,
    )
    name = data_args.dataset_name if source is None else type(source).__name__
    metadata: dict[str, Any] = {"source": name or EMBEDDED_CORPUS, "block_size": data_args.block_size}
    if bos_token_id is not None:
        metadata["bos_token_id"] = bos_token_id
    if isinstance(raw, datasets.DatasetDict):
        metadata["fingerprint"] = corpus_fingerprint(raw, data_args.text_column)
    packed = {}
    for split in ("train", "validation"):
        try:
            packed[split] = pack_dataset(
                raw[split],
                tokenizer,
                data_args.block_size,
                text_column=data_args.text_column,
                num_proc=data_args.preprocessing_num_workers,
                vocab_size=vocab_size,
                bos_token_id=bos_token_id,
            )
        except DataError as err:
            raise DataError(f"The {split} split: {err}") from err
    train, validation = packed["train"], packed["validation"]
    if isinstance(validation, datasets.IterableDataset):
        # The held-out documents of a stream are few: keep them as a plain Dataset, so every evaluation sees
        # exactly the same blocks and Trainer can shard them across processes.
        validation = datasets.Dataset.from_list(list(validation)).with_format("torch")
        if len(validation) == 0:
            raise DataError("The validation split gives fewer tokens than one block; hold out more documents.")
    return train, validation, metadata
