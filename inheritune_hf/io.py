"""The one home of writing: every file and folder the package writes goes through here.

Runs are killed (SIGKILL, preemption, Ctrl-C) at arbitrary moments and then resumed or read by the next step, so
a reader must find either the previous complete file or the new complete one, never half of it. Each writer
therefore builds its output under a temporary name in the same directory (so the final `os.replace` is a rename on
one file system, not a copy) and renames it into place; on an error the temporary is removed. No fsync: this
guards against a killed process, not a lost disk cache.

JSON is written one way: `jsonable` is the one conversion (anything `json` cannot encode, such as numpy or torch
scalars, Paths or a model's repr, becomes its `str`), and `write_json` writes it indented with a final newline.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputExistsError

__all__ = [
    "atomic_output_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "json_text",
    "jsonable",
    "read_json",
    "replace_dir",
    "write_json",
]


# ---------------------------------------------------------------------------------------------------- folders


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a non-empty output directory unless `overwrite`; call it before starting any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output path {out} exists and is a file. Choose a directory path.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"Output directory {out} is not empty. Pass --overwrite (library: overwrite=True) to replace it, "
            "or choose another directory."
        )
    return out


def replace_dir(new: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Move the finished folder `new` to `out`, replacing any folder there.

    The old folder is first moved aside (not deleted in place), so `out` is at every moment absent, the whole old
    folder or the whole new one, never a half-deleted mix. `new` must be on the same file system as `out`.
    """
    new, out = Path(new), Path(out)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
    return out


@contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success it replaces `out`, on error it is removed.

    The temporary directory lives in the same parent so the final `os.replace` is a rename on one file
    system, not a copy.
    """
    out = check_output_dir(out, overwrite).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


# ---------------------------------------------------------------------------------------------------- files


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer to create; on success it replaces `path`.

    For writers that want a file name rather than text (matplotlib's `savefig`, `csv` with its own `open`): the
    temporary keeps `path`'s suffix, so a writer that picks its format from the name picks the same one. It is a
    hidden file with a random part, so two writers never share one and a folder listing skips a leftover. On any
    error, the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}-tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`Path.write_bytes`, atomically: `path` holds either its previous content or all of `data`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str | None = None) -> Path:
    """`Path.write_text`, atomically: `path` holds either its previous content or all of `text`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


# ---------------------------------------------------------------------------------------------------- JSON


def json_text(value: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """`value` as the JSON text `write_json` writes: the `jsonable` conversion, indented, one final newline."""
    return json.dumps(value, indent=indent, sort_keys=sort_keys, default=str) + "\n"


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, str, numbers): what reading back `write_json`'s file gives.

    Whatever `json` cannot encode (numpy and torch scalars, Paths, enums, a model's repr) becomes its `str`; tuples
    become lists and dict keys strings. Fingerprints compare these values, so saved and fresh ones compare alike.
    """
    return json.loads(json_text(value, indent=None))


def write_json(path: str | os.PathLike, value: Any, sort_keys: bool = False) -> Path:
    """Write `value` (through `jsonable`) as indented JSON to `path`, atomically."""
    return atomic_write_text(path, json_text(value, sort_keys=sort_keys))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in `path` (what `write_json` wrote); raises `OSError` or `json.JSONDecodeError`."""
    return json.loads(Path(path).read_text())
