"""Rebuild (or check) the shipped corpus `inheritune_hf/corpora/python-docs-3.11.jsonl.gz` from its source package.

The corpus is the reStructuredText sources of the Python 3.11 documentation as Debian 12 ships them in
`python3.11-doc` (3.11.2-6+deb12u9): prose with code examples, the kind of text the method is for, under the PSF
license (code examples also 0BSD), and the same bytes on every machine because the file ships in the repository.
This script documents where the bytes came from; the loader checks their sha256, not this script.

    apt-get download python3.11-doc      # any machine with Debian 12 sources; offline: copy the .deb
    python scripts/build_corpus.py python3.11-doc_3.11.2-6+deb12u9_all.deb --check

The output is deterministic: documents sorted by path, one JSON object per line (`path`, `text`), gzip with
mtime 0. The sha256 is of the uncompressed lines, so `--check` holds whatever zlib compressed the shipped file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inheritune_hf.data import PYTHON_DOCS_CORPUS_FILE, PYTHON_DOCS_CORPUS_SHA256  # noqa: E402

PREFIX = "./usr/share/doc/python3.11/html/_sources/"
SUFFIX = ".rst.txt"


def _data_tar(deb: Path) -> bytes:
    """The `data.tar.xz` member of a .deb (an `ar` archive: 8-byte magic, then 60-byte headers)."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb} is not a .deb (ar) archive.")
    pos = 8
    while pos < len(blob):
        header = blob[pos : pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            return lzma.decompress(body) if name.endswith(".xz") else body
        pos += 60 + size + (size % 2)
    raise SystemExit(f"{deb} has no data.tar member.")


def build(deb: Path) -> bytes:
    """The corpus's JSON lines (uncompressed) from the documentation package."""
    docs: list[tuple[str, str]] = []
    with tarfile.open(fileobj=io.BytesIO(_data_tar(deb))) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(PREFIX) and member.name.endswith(SUFFIX):
                text = tar.extractfile(member).read().decode("utf-8")
                docs.append((member.name[len(PREFIX) : -len(SUFFIX)] + ".rst", text))
    if not docs:
        raise SystemExit(f"{deb} holds no documentation sources under {PREFIX}.")
    docs.sort()
    lines = "".join(json.dumps({"path": path, "text": text}, ensure_ascii=False) + "\n" for path, text in docs)
    return lines.encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deb", type=Path, help="python3.11-doc_3.11.2-6+deb12u9_all.deb")
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args(argv)
    lines = build(args.deb)
    digest = hashlib.sha256(lines).hexdigest()
    if args.check:
        shipped = gzip.decompress(PYTHON_DOCS_CORPUS_FILE.read_bytes()) if PYTHON_DOCS_CORPUS_FILE.exists() else b""
        same = shipped == lines
        verdict = "identical to" if same else "DIFFERS from"
        print(f"rebuilt {len(lines):,} bytes of text, sha256 {digest}: {verdict} the shipped file's text")
        return 0 if same and digest == PYTHON_DOCS_CORPUS_SHA256 else 1
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(lines)
    PYTHON_DOCS_CORPUS_FILE.parent.mkdir(parents=True, exist_ok=True)
    PYTHON_DOCS_CORPUS_FILE.write_bytes(out.getvalue())
    size = len(out.getvalue())
    print(
        f"wrote {PYTHON_DOCS_CORPUS_FILE.relative_to(ROOT)}: {size:,} bytes ({len(lines):,} of text, sha256 {digest})"
    )
    if digest != PYTHON_DOCS_CORPUS_SHA256:
        print("the sha256 differs from PYTHON_DOCS_CORPUS_SHA256 in inheritune_hf/data.py: update it on purpose")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
