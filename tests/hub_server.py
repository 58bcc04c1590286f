"""A small Hub-protocol server on 127.0.0.1 for push/load tests through the real `huggingface_hub` client.

It speaks just enough of the Hub's HTTP API for `HfApi(endpoint=...)`: `whoami-v2`, `repos/create`,
`validate-yaml`, `preupload` (every file is "regular", so contents travel base64 inside the commit), the NDJSON
`commit`, `branch`, repo info (`/api/models/<id>` and `/revision/<rev>`), `tree` listing, and `resolve` (HEAD and
GET) for downloads. Repos are kept in memory as a chain of commits, each a full snapshot of the files, so a test
can look at any revision. Writes need `Authorization: Bearer <token>` for a known token whose user owns the
namespace; private repos are hidden from anonymous readers, as on the Hub.

    with HubServer(tokens={"hf_secret": "alice"}) as hub:
        HfApi(endpoint=hub.url, token="hf_secret").create_repo("alice/tiny")

`fail_next(kind, status)` makes the next request of a kind ("commit", "preupload", ...) fail, to test
interrupted pushes; `stop()` and `start()` (same port, same repos) simulate an endpoint that is down.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file, which the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    repo_type: str = "model"
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)

    def history(self, branch: str = "main") -> list[Commit]:
        """Commits of `branch`, newest first."""
        out, oid = [], self.branches.get(branch)
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out

    def files(self, revision: str = "main") -> dict[str, bytes]:
        commit = self.resolve(revision)
        return dict(commit.files) if commit else {}


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


class HubServer:
    """The server; `url` is its endpoint, `repos` its state, `requests` a log of (method, path, had_token)."""

    def __init__(self, tokens: dict[str, str] | None = None, port: int = 0):
        self.tokens = dict(tokens if tokens is not None else {"hf_test_token": "tester"})
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, bool]] = []
        self.seen_headers: list[dict[str, str]] = []
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, kind: str, status: int = 500) -> None:
        """Answer the next request of `kind` (commit, preupload, create, resolve, ...) with `status`."""
        with self._lock:
            self._failures.setdefault(kind, []).append(status)

    # ------------------------------------------------------------------ state changes
    def _user(self, headers: dict[str, str], required: bool) -> str | None:
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        if token is None:
            if required:
                raise _HttpError(401, "Invalid username or password: a token is required to write.")
            return None
        user = self.tokens.get(token)
        if user is None:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, repo_id: str, headers: dict[str, str], write: bool = False) -> Repo:
        user = self._user(headers, required=write)
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise _HttpError(401 if user is None else 404, f"Repository {repo_id} not found", "RepoNotFound")
        if write and user != repo_id.split("/")[0]:
            raise _HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], summary: str, description: str) -> Commit:
        parent = repo.branches.get(branch)
        digest = hashlib.sha1(f"{parent}\n{summary}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha1(files[path]).encode())
        commit = Commit(digest.hexdigest(), parent, summary, description, files)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None):
        self._send(status, json.dumps(value).encode(), headers)

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)  # groups are unquoted by the handlers
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._body() if method == "POST" else b""
        with hub._lock:
            hub.requests.append((method, self.path, "authorization" in headers))
            hub.seen_headers.append(headers)
        try:
            for pattern, kind, handler in _ROUTES:
                match = re.fullmatch(pattern, path)
                if match and (method in kind[1]):
                    with hub._lock:
                        failures = hub._failures.get(kind[0])
                        if failures:
                            status = failures.pop(0)
                            raise _HttpError(status, f"Injected failure of {kind[0]}")
                        return handler(self, method, match, query, headers, body)
            raise _HttpError(404, f"No route for {method} {path}")
        except _HttpError as err:
            extra = {"X-Error-Code": err.code} if err.code else {}
            extra["X-Error-Message"] = err.message
            body = json.dumps({"error": err.message, **err.extra}).encode()
            self._send(err.status, body, extra, head=method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ------------------------------------------------------------------ endpoints
    def whoami(self, method, match, query, headers, body):
        user = self.hub._user(headers, required=True)
        self._json(200, {"type": "user", "name": user, "auth": {"accessToken": {"role": "write"}}, "orgs": []})

    def create_repo(self, method, match, query, headers, body):
        user = self.hub._user(headers, required=True)
        payload = json.loads(body or b"{}")
        namespace = payload.get("organization") or user
        name = payload.get("name", "")
        if namespace != user:
            raise _HttpError(403, f"You don't have the rights to create a repo in {namespace}")
        if not re.fullmatch(r"[\w.-]+", name):
            raise _HttpError(400, f"Invalid repo name {name!r}")
        repo_id = f"{namespace}/{name}"
        if repo_id in self.hub.repos:
            raise _HttpError(409, "You already created this model repo", extra={"url": f"{self.hub.url}/{repo_id}"})
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        repo = Repo(repo_id, private=private, repo_type=payload.get("type") or "model")
        self.hub._commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit", "")
        self.hub.repos[repo_id] = repo
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def validate_yaml(self, method, match, query, headers, body):
        import yaml

        content = json.loads(body)["content"]
        front = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        try:
            data = yaml.safe_load(front.group(1)) if front else {}
        except yaml.YAMLError as err:
            self._json(400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []})
            return
        warnings = [] if data else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json(200, {"errors": [], "warnings": warnings})

    def preupload(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers, write=True)
        current = repo.files(unquote(match["rev"]))
        files = json.loads(body)["files"]
        answer = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha1(current[f["path"]]) if f["path"] in current else None,
            }
            for f in files
        ]
        self._json(200, {"files": answer, "commitOid": repo.branches.get(unquote(match["rev"]))})

    def commit(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers, write=True)
        branch = unquote(match["rev"])
        if branch not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        files = repo.files(branch)
        header: dict[str, Any] = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise _HttpError(400, "file content must be base64")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    del files[path]
            else:  # lfsFile, copyFile: this server only ever answers "regular" to preupload
                raise _HttpError(422, f"Unsupported commit operation {key!r} on the test server")
        if header.get("parentCommit") and header["parentCommit"] != repo.branches[branch]:
            raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
        commit = self.hub._commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
            },
        )

    def create_branch(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers, write=True)
        branch = unquote(match["branch"])
        if branch in repo.branches:
            raise _HttpError(409, f"Reference already exists: {branch}")
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        commit = repo.resolve(start)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {start}", "RevisionNotFound")
        repo.branches[branch] = commit.oid
        self._json(200, {})

    def repo_info(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers)
        revision = unquote(match["rev"] or "main")
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        info = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": commit.oid,
            "private": repo.private,
            "tags": [],
            "siblings": [{"rfilename": p, "size": len(c)} for p, c in sorted(commit.files.items())],
        }
        front = re.match(rb"^---\n(.*?)\n---", commit.files.get("README.md", b""), re.DOTALL)
        if front:
            import yaml

            info["cardData"] = yaml.safe_load(front.group(1)) or {}
        self._json(200, info)

    def tree(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers)
        revision = unquote(match["rev"])
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        base = unquote(match["path"] or "").strip("/")
        prefix = f"{base}/" if base else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, content in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path})
        if base and not entries and not folders:
            raise _HttpError(404, f"{base} does not exist", "EntryNotFound")
        entries += [
            {"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        self._json(200, entries)

    def resolve(self, method, match, query, headers, body):
        repo = self.hub._repo(match["repo"], headers)
        revision, path = unquote(match["rev"]), unquote(match["path"])
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if path not in commit.files:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        content = commit.files[path]
        self._send(
            200,
            content,
            {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{git_blob_sha1(content)}"',
                "X-Repo-Commit": commit.oid,
            },
            head=method == "HEAD",
        )


_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_ROUTES = [
    (r"/api/whoami-v2", ("whoami", {"GET"}), _Handler.whoami),
    (r"/api/repos/create", ("create", {"POST"}), _Handler.create_repo),
    (r"/api/validate-yaml", ("validate-yaml", {"POST"}), _Handler.validate_yaml),
    (rf"/api/models/{_REPO}/preupload/(?P<rev>.+)", ("preupload", {"POST"}), _Handler.preupload),
    (rf"/api/models/{_REPO}/commit/(?P<rev>.+)", ("commit", {"POST"}), _Handler.commit),
    (rf"/api/models/{_REPO}/branch/(?P<branch>.+)", ("branch", {"POST"}), _Handler.create_branch),
    (rf"/api/models/{_REPO}(?:/revision/(?P<rev>.+))?", ("info", {"GET"}), _Handler.repo_info),
    (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?", ("tree", {"GET"}), _Handler.tree),
    (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", ("resolve", {"GET", "HEAD"}), _Handler.resolve),
]
