"""Upload a `save_pretrained` folder, its card, figures and results to the Hub as one commit.

`upload_plan` decides exactly which files go up (safetensors weights, config, tokenizer, README.md, figures,
results JSON; never pickles nor Trainer state). `push_to_hub` either writes that plan into a folder (`dry_run`) or
sends it as a single `create_commit`, with remote files matching `delete_patterns` (by default the weight formats,
so shards the new folder no longer has) deleted in that same commit.

Why `create_commit` rather than `HfApi.upload_folder`: with `hf_xet` installed, `upload_folder` streams through a
pipeline that may split a large or slow upload into several commits (deletions ride the first), and a published
model must move from one complete state to the next. `create_commit` is atomic, and `delete_patterns` are matched
against the remote files with `huggingface_hub.utils.filter_repo_objects`, as `upload_folder` matches them.

The token comes from the argument or the usual huggingface_hub places (`HF_TOKEN`, `hf auth login`); it is never
printed, logged or written into any uploaded file.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import is_pickle
from ..errors import CheckpointError, HubError
from ..io import atomic_output_dir, json_text
from .card import REPO_ID, model_card

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import CommitInfo, ModelCard
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..evaluate import DownstreamResults

__all__ = ["STALE_WEIGHT_PATTERNS", "check_repo_id", "push_to_hub", "resolve_endpoint", "resolve_token", "upload_plan"]

logger = logging.getLogger(__name__)

# Weight formats that are pickles: never uploaded (loading them can run arbitrary code).
# Trainer state that belongs to a run, not to a published model.
_TRAINER_FILES = re.compile(r"^(optimizer|scheduler|rng_state|scaler|training_args|trainer_state)\b")
#: `push_to_hub`'s default `delete_patterns`: remote weight files (and shard indexes) the new upload does not have
#: are stale, e.g. the shards of an earlier, differently sharded push, or pickles uploaded by someone else.
STALE_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.index.json")


# ---------------------------------------------------------------------------------------------- upload plan


def upload_plan(
    folder: str | os.PathLike,
    *,
    card: ModelCard | str | None = None,
    results: DownstreamResults | None = None,
    extra_files: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
) -> dict[str, Path | bytes]:
    """Path in the repo -> local file or bytes: exactly what `push_to_hub` uploads (and `--dry-run` writes).

    From `folder` it takes the top-level files of a `save_pretrained` checkpoint (config, safetensors weights and
    index, tokenizer, generation config, figures, results JSON), and leaves out hidden files, pickles (`.bin`,
    `.pt`...) and Trainer state. It refuses a folder without config.json or without safetensors weights.
    """
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a save_pretrained folder (no config.json).")
    plan: dict[str, Path | bytes] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if is_pickle(path.name) or _TRAINER_FILES.match(path.name):
            skipped.append(path.name)
            continue
        plan[path.name] = path
    if not any(name.endswith(".safetensors") for name in plan):
        pickles = [name for name in skipped if is_pickle(name)]
        raise CheckpointError(
            f"{folder} has no .safetensors weights"
            + (f" (only pickles: {pickles})" if pickles else "")
            + ". Re-save it with model.save_pretrained(folder) (safetensors is the default) before publishing."
        )
    if skipped:
        logger.info("Not uploading pickles / Trainer state: %s", ", ".join(skipped))
    if results is not None:
        from ..evaluate import RAW_RESULTS_FILENAME, RESULTS_FILENAME

        plan[RESULTS_FILENAME] = json_text(results.to_dict()).encode()  # the bytes `results.save` writes
        plan[RAW_RESULTS_FILENAME] = json_text(results.raw).encode()
    items = extra_files.items() if isinstance(extra_files, Mapping) else ((Path(p).name, p) for p in extra_files)
    for path_in_repo, local in items:
        local = Path(local)
        if not local.is_file():
            raise CheckpointError(f"Extra file {local} does not exist.")
        if is_pickle(local.name):
            raise CheckpointError(f"Refusing to upload the pickle {local}; save it as safetensors or JSON.")
        plan[str(path_in_repo)] = local
    if card is not None:
        plan["README.md"] = (card if isinstance(card, str) else str(card)).encode()
    elif "README.md" not in plan:
        plan["README.md"] = str(model_card(folder)).encode()
    return plan


def _write_plan(plan: Mapping[str, Path | bytes], out: str | os.PathLike, overwrite: bool) -> Path:
    """The dry run: the plan's files, byte for byte, in a folder that appears whole or not at all."""
    with atomic_output_dir(out, overwrite) as tmp:
        for path_in_repo, source in plan.items():
            target = tmp / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)  # streamed: weights can be larger than memory
    return Path(out)


# ---------------------------------------------------------------------------------------------- push


def push_to_hub(
    folder_or_model: str | os.PathLike | PreTrainedModel,
    repo_id: str,
    *,
    card: ModelCard | str | None = None,
    private: bool = True,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    results: DownstreamResults | None = None,
    extra_files: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
    endpoint: str | None = None,
    dry_run: str | os.PathLike | None = None,
    overwrite: bool = False,
    delete_patterns: str | Sequence[str] = STALE_WEIGHT_PATTERNS,
) -> CommitInfo | Path:
    """Upload a checkpoint, its card, figures and results to `repo_id` as one commit.

    `create_repo(exist_ok=True)` then a single `create_commit` holding every file of `upload_plan` (weights as
    safetensors, config, tokenizer, README.md, figures, results JSON; never pickles), so a failure leaves the repo
    at its previous commit and running it again is safe: unchanged files are skipped (no new commit when nothing
    changed), changed ones make a new commit, and remote files matching `delete_patterns` that the upload does not
    have (by default weight files, e.g. old shards) are deleted in that same commit.

    Args:
        folder_or_model: a `save_pretrained` folder, or a model in memory (saved to a temporary folder first,
            with `tokenizer` when given).
        repo_id: "namespace/name", or "name" for the token owner's namespace.
        card: the README; default: the folder's README.md, or `model_card(folder)`.
        private: visibility when the repo is created (an existing repo keeps its visibility).
        revision: branch to commit to (created from main when missing); default main.
        token: a write token; default: `HF_TOKEN` or the token saved by `hf auth login`. Never printed or logged.
        results: downstream scores, uploaded as downstream_results.json and lm_eval_results.json.
        extra_files: more files to upload (figures...): paths (uploaded by name) or {path_in_repo: path}.
        endpoint: the Hub URL (default: `HF_ENDPOINT` as huggingface_hub read it at import).
        dry_run: instead of uploading, write the exact files that would be uploaded into this folder (no token or
            network needed) and return its path.
        overwrite: let `dry_run` replace a non-empty folder.
        delete_patterns: glob patterns (as `HfApi.upload_folder` takes them) of remote files to delete when the
            upload does not replace them; `()` deletes nothing. `.gitattributes` is always kept.

    Returns the `CommitInfo` of the commit (or the dry-run folder). Raises `HubError` for a malformed repo id, a
    missing or rejected token, or an unreachable endpoint; nothing local is changed in any case.
    """
    check_repo_id(repo_id)
    endpoint = resolve_endpoint(endpoint)
    if dry_run is None:
        token = resolve_token(token, endpoint)
    if isinstance(delete_patterns, str):
        delete_patterns = [delete_patterns]
    with _staged(folder_or_model, tokenizer) as folder:
        plan = upload_plan(folder, card=card, results=results, extra_files=extra_files)
        if dry_run is not None:
            written = _write_plan(plan, dry_run, overwrite)
            # DEBUG: the caller says what was written (the CLI and the recipe print one line per action)
            logger.debug("Dry run: wrote the %d files that would be pushed to %s into %s", len(plan), repo_id, written)
            return written
        _refuse_token_in_files(plan, token)
        return _push_plan(plan, repo_id, endpoint, token, private, revision, commit_message, delete_patterns, folder)


def check_repo_id(repo_id: str) -> None:
    """Raise `HubError` for a repo id the Hub would refuse, before anything is built or sent."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id):
        raise HubError(
            f"Malformed repo id {repo_id!r}: expected 'namespace/name' (or 'name'), letters, digits, '-', '_' "
            "and '.', starting with a letter or digit."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"Malformed repo id {repo_id!r}: {err}") from None


def resolve_endpoint(endpoint: str | None) -> str:
    """The Hub URL to talk to: `endpoint`, else `HF_ENDPOINT` as huggingface_hub read it at import."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None, endpoint: str) -> str:
    """The write token (the argument, `HF_TOKEN` or `hf auth login`); `HubError` before any request when none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError(
            f"Pushing to {endpoint} needs a write token and none was found. Pass token=..., set HF_TOKEN, or run "
            "`hf auth login`. Nothing was uploaded."
        )
    return token


def _refuse_token_in_files(plan: Mapping[str, Path | bytes], token: str) -> None:
    """Defence in depth: the token must never be published, so look for it in every small text file."""
    needle = token.encode()
    for path_in_repo, source in plan.items():
        if isinstance(source, Path):
            if source.stat().st_size > 16 * 2**20 or source.suffix == ".safetensors":
                continue
            source = source.read_bytes()
        if needle in source:
            raise HubError(f"{path_in_repo} contains your Hub token; refusing to upload it. Remove it and retry.")


@contextmanager
def _staged(folder_or_model: Any, tokenizer: Any) -> Iterator[Path]:
    if isinstance(folder_or_model, str | os.PathLike):
        if tokenizer is not None:
            raise HubError("tokenizer= is only for a model in memory; a folder is uploaded as it is.")
        yield Path(folder_or_model)
        return
    if not hasattr(folder_or_model, "save_pretrained"):
        raise HubError(
            f"Expected a save_pretrained folder or a PreTrainedModel, got {type(folder_or_model).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="inheritune-push-") as tmp:
        folder_or_model.save_pretrained(tmp)  # safetensors by default in transformers 5
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        yield Path(tmp)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' connection errors: huggingface_hub 2 uses its fork `httpx2`, 1.x uses `httpx` itself.

    Both may be installed side by side (moving huggingface_hub between majors leaves the other behind), and the
    one present is not always the one in use, so every one present is caught.
    """
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@contextmanager
def _hub_errors(endpoint: str, token: str, what: str, folder: Path) -> Iterator[None]:
    """Turn client and HTTP failures into one `HubError` that says what happened and that retrying is safe."""
    from huggingface_hub.errors import HfHubHTTPError

    def scrub(text: str) -> str:
        return text.replace(token, "***") if token else text

    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        server = scrub(err.server_message or (str(err).splitlines() or [type(err).__name__])[0])
        if status == 401:
            hint = "The endpoint rejected the token: check it is valid and has write access."
        elif status == 403:
            hint = "The token may not write to this namespace: check the repo id and the token's permissions."
        else:
            hint = "The repo was left at its previous commit; running the push again is safe."
        raise HubError(f"{what} failed on {endpoint} (HTTP {status}): {server}. {hint}") from None
    except HubError:
        raise
    except ValueError as err:  # the client refuses before sending, e.g. README metadata the Hub would reject
        raise HubError(f"{what} was refused: {scrub(str(err))}") from None
    except (*_transport_errors(), ConnectionError) as err:
        raise HubError(
            f"Could not reach the Hub at {endpoint} while trying to {what.lower()} ({type(err).__name__}: "
            f"{scrub(str(err))}). Nothing was changed in {folder}; check the endpoint and your connection, then "
            "run the push again."
        ) from None


def _push_plan(
    plan: Mapping[str, Path | bytes],
    repo_id: str,
    endpoint: str,
    token: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    delete_patterns: Sequence[str],
    folder: Path,
) -> CommitInfo:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(endpoint, token, "Checking the token", folder):
        user = api.whoami()["name"]  # cheap: fails fast on a bad token or endpoint, before any write
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"
    with _hub_errors(endpoint, token, f"Creating {repo_id}", folder):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    stale: list[str] = []
    if delete_patterns:
        with _hub_errors(endpoint, token, f"Listing {repo_id}", folder):
            remote = api.list_repo_files(repo_id, revision=revision)
        # A path both deleted and added would defeat create_commit's skipping of unchanged files.
        matched = filter_repo_objects(remote, allow_patterns=list(delete_patterns))
        stale = [p for p in matched if p not in plan and p != ".gitattributes"]
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in plan.items()]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    message = commit_message or "Upload Inheritune model (inheritune-hf)"
    with _hub_errors(endpoint, token, f"Committing to {repo_id}", folder):
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    logger.debug("%s/%s is at commit %s (%d files uploaded or unchanged)", endpoint, repo_id, info.oid, len(plan))
    return info
