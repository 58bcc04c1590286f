"""Where a model or a tokenizer comes from, told apart before anything loads: a local folder or a Hub repo id.

`from_pretrained` takes either and guesses: a mistyped folder (`./refrence`) becomes a Hub repo id, and with no
network `huggingface_hub` retries it for half a minute before saying what went wrong. `check_source` decides at
once, so every command that loads by name (`run`, `analyze`, `inherit`, `evaluate`, the recipes) says the same
thing in one line:

- a name that exists on disk is a local source;
- a name that looks like a path and does not exist is refused as a path: it starts with `./`, `../`, `/` or `~`,
  has more than one `/` or ends with one, holds characters a repo id cannot (`my models/ref`), or its parent folder
  exists (`out/reference` where `out/` is there: a folder that was meant, not a repo `out/reference`);
- anything else (`org/name`, `gpt2`) is a Hub repo id, tried once: when the Hub cannot be reached, a repo in the
  local cache is read from the cache (offline mode, for the rest of the process) and one that is not is refused.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CheckpointError

logger = logging.getLogger(__name__)

#: A Hub repo id: `name` or `namespace/name`, letters, digits, `-`, `_` and `.` (not leading), at most 96 each.
HUB_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
#: Seconds to wait for the Hub's address to answer: one try, not the minute of retries a download would make.
HUB_PROBE_TIMEOUT = 3.0


def looks_like_path(name: str | os.PathLike) -> bool:
    """Whether `name` can only mean a place on disk (see the module docstring), whether or not it exists."""
    if isinstance(name, os.PathLike):
        return True
    text = str(name)
    if text in (".", "..") or text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or "\\" in text:
        return True
    if text.count("/") > 1 or text.endswith("/") or not HUB_REPO_ID.match(text):
        return True
    return "/" in text and Path(text).parent.is_dir()


def is_local(name: str | os.PathLike) -> bool:
    """Whether `name` is a local file or folder."""
    return Path(name).expanduser().exists()


def check_source(name: str | os.PathLike, flag: str | None = None, *, filename: str = "config.json") -> str:
    """'local' or 'hub' for `name`, or a `CheckpointError` at once: a path that does not exist, or a Hub repo id
    the Hub cannot be asked about and the local cache does not hold (`filename` is the file looked for there).

    `flag` names where the user gave it (`--reference_model`), so the line says what to fix.
    """
    given = f"{flag} {name}" if flag else repr(os.fspath(name))
    if is_local(name):
        return "local"
    if looks_like_path(name):
        raise CheckpointError(f"{given}: no such file or folder{_nearby(Path(name).expanduser())}")
    return _check_hub_repo(str(name), given, filename)


def _nearby(path: Path) -> str:
    """The end of the refusal: the closest name in the parent folder (difflib), or that the parent is missing too."""
    import difflib

    if not path.parent.is_dir():
        return f" (nor is there a folder {path.parent}). Check the path."
    close = difflib.get_close_matches(path.name, [entry.name for entry in path.parent.iterdir()], n=1, cutoff=0.6)
    return f"; did you mean {os.path.join(path.parent, close[0])}?" if close else ". Check the path."


def _check_hub_repo(repo_id: str, given: str, filename: str) -> str:
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or hub_reachable(constants.ENDPOINT):
        return "hub"
    if isinstance(try_to_load_from_cache(repo_id, filename), str):
        # Every later call would retry the unreachable Hub before falling back to this cache: go offline once.
        logger.warning("The Hub (%s) cannot be reached; reading %s from the local cache.", constants.ENDPOINT, repo_id)
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        return "hub"
    raise CheckpointError(
        f"{given}: no such local folder, and the Hub ({constants.ENDPOINT}) cannot be reached to read it "
        "as a repo id (it is not in the local cache either). Check the path, or the network (HF_ENDPOINT)."
    )


@functools.cache
def hub_reachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to `endpoint`'s host opens within `timeout` seconds (asked once per process)."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


__all__ = ["HUB_REPO_ID", "check_source", "hub_reachable", "is_local", "looks_like_path"]
