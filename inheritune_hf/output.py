"""Write output folders atomically: build in a temporary sibling directory, then rename.

An interrupted run therefore never leaves a half-written folder where the user asked for one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a non-empty output directory unless `overwrite`; call it before starting any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output path {out} exists and is a file. Choose a directory path.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"Output directory {out} is not empty. Pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another directory."
        )
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
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
