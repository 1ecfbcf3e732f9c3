"""A Hugging Face Hub look-alike for tests: stdlib HTTP on 127.0.0.1, checkpoint folders as repos.

It speaks what huggingface_hub 1.x asks of the Hub, with the same headers:

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=true`` adds file
  sizes, ``blobId`` and ``lfs: {sha256, size, pointerSize}``), ``GET /api/models/{repo}/tree/{rev}``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``ETag``, ``X-Repo-Commit``, ``Content-Length``
  and ``Accept-Ranges``; LFS files (``*.safetensors``, ``tokenizer.json``) answer ``302`` to a
  "CDN" on another host name (``localhost``) with ``X-Linked-Size``/``X-Linked-Etag``, as the Hub
  does; ``Range: bytes=N-`` gets ``206`` with ``Content-Range``;
- errors with ``X-Error-Code`` (``RepoNotFound``, ``GatedRepo``, ``EntryNotFound``), which
  huggingface_hub turns into its typed errors. A gated repo answers 401 without a token and 403
  with a token that is not in ``allowed_tokens``.

Fault knobs, each for one repo file: ``drop_connection`` (close the socket after N body bytes),
``corrupt`` (flip a byte), ``stall`` (stop after N bytes until released: a test can cancel
mid-file without sleeping), and ``fail`` (answer every request for a repo with a status).
``bytes_served(repo, file)`` counts body bytes sent, so a test can tell a resume from a restart.

Hostile-server knobs: ``lie_about_commit`` (the listing names another commit, which the server
then also answers to) and ``lie_about_file`` (replace or drop fields of a file's listing entry:
``blobId``, ``size``, ``lfs``; None leaves a field out), while the bytes served stay the real ones.

Long because it is one protocol: the listing, resolve, CDN redirect and fault paths share the
server's state and read best side by side.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_PATTERNS = ("*.safetensors", "tokenizer.json")
_CHUNK = 16 * 1024
_STALL_TIMEOUT_S = 60.0


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class ServedFile:
    name: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def lfs_pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        ).encode()

    @property
    def blob_id(self) -> str:
        """The git object id: of the LFS pointer for LFS files, as on the Hub."""
        return git_blob_id(self.lfs_pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class FakeRepo:
    repo_id: str
    commit: str
    files: dict[str, ServedFile]
    gated: bool = False
    allowed_tokens: frozenset[str] = frozenset()
    listed_commit: str | None = None  # the commit the listing claims (a hostile server), if not ``commit``
    listing_overrides: dict[str, dict] = field(default_factory=dict)  # file -> listing fields replaced


@dataclass
class Stall:
    """Serving of one file stops after ``after_bytes`` until ``release()``; ``reached`` is set then."""

    after_bytes: int
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (a cancelled download) are normal here, not errors to print."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HubServer:
    """The fake Hub. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, cdn_host: str | None = "localhost"):
        self.cdn_host = cdn_host
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[RequestRecord] = []
        self._served: dict[tuple[str, str], int] = {}
        self._drops: dict[tuple[str, str], list[int]] = {}
        self._corrupt: dict[tuple[str, str], int] = {}
        self._stalls: dict[tuple[str, str], Stall] = {}
        self._failures: dict[str, list] = {}
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HubServer:
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.hub = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection (a client's pooled keep-alive ones too)."""
        if self._httpd is None:
            return
        for stall in self._stalls.values():
            stall.release()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- content --------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        folder: Path | None = None,
        *,
        files: dict[str, bytes] | None = None,
        gated: bool = False,
        allowed_tokens: tuple[str, ...] = (),
        lfs_patterns: tuple[str, ...] = LFS_PATTERNS,
    ) -> FakeRepo:
        """Serve ``folder``'s files (and ``files``) as ``repo_id`` at a commit derived from their content."""
        attributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        contents: dict[str, bytes] = {".gitattributes": attributes}
        if folder is not None:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    contents[path.relative_to(folder).as_posix()] = path.read_bytes()
        contents.update(files or {})
        served = {
            name: ServedFile(name, data, any(fnmatch.fnmatch(name, p) for p in lfs_patterns))
            for name, data in contents.items()
        }
        digest = hashlib.sha1(repo_id.encode(), usedforsecurity=False)
        for name in sorted(served):
            digest.update(name.encode() + served[name].etag.encode())
        repo = FakeRepo(repo_id, digest.hexdigest(), served, gated, frozenset(allowed_tokens))
        self.repos[repo_id] = repo
        return repo

    # -- a hostile server -------------------------------------------------------------------------

    def lie_about_commit(self, repo_id: str, sha: object) -> None:
        """The listing's ``sha`` becomes ``sha``; file requests at that revision are served too."""
        self.repos[repo_id].listed_commit = sha

    def lie_about_file(self, repo_id: str, file: str, **fields: object) -> None:
        """Replace ``file``'s listing fields (``blobId=...``, ``size=...``, ``lfs={...}`` merged into
        the real one); a field (or an ``lfs`` key) set to None is left out of the listing."""
        self.repos[repo_id].listing_overrides[file] = fields

    # -- faults ---------------------------------------------------------------------------------

    def drop_connection(self, repo_id: str, file: str, after_bytes: int, times: int = 1) -> None:
        """The next ``times`` responses for ``file`` close the connection after ``after_bytes`` of body."""
        self._drops[(repo_id, file)] = [after_bytes] * times

    def corrupt(self, repo_id: str, file: str, times: int = 1) -> None:
        """The next ``times`` responses for ``file`` carry one flipped byte."""
        self._corrupt[(repo_id, file)] = times

    def stall(self, repo_id: str, file: str, after_bytes: int) -> Stall:
        """Stop sending ``file`` once ``after_bytes`` of it (file offset) went out, until released."""
        stall = Stall(after_bytes)
        self._stalls[(repo_id, file)] = stall
        return stall

    def fail(self, repo_id: str, status: int, times: int | None = None) -> None:
        """Answer requests about ``repo_id`` with ``status`` (``times`` times, or until cleared)."""
        self._failures[repo_id] = [status, times]

    def clear_faults(self) -> None:
        self._drops.clear()
        self._corrupt.clear()
        self._stalls.clear()
        self._failures.clear()

    # -- accounting -----------------------------------------------------------------------------

    def bytes_served(self, repo_id: str, file: str) -> int:
        with self._lock:
            return self._served.get((repo_id, file), 0)

    def total_bytes_served(self) -> int:
        with self._lock:
            return sum(self._served.values())

    def reset_counters(self) -> None:
        with self._lock:
            self._served.clear()
            self.requests.clear()

    # -- internals used by the handler ------------------------------------------------------------

    def _count(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self._served[key] = self._served.get(key, 0) + n

    def _take_failure(self, repo_id: str) -> int | None:
        with self._lock:
            failure = self._failures.get(repo_id)
            if failure is None:
                return None
            status, times = failure
            if times is not None:
                if times <= 0:
                    return None
                failure[1] = times - 1
            return status

    def _take_drop(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            pending = self._drops.get(key)
            return pending.pop(0) if pending else None

    def _take_corrupt(self, key: tuple[str, str]) -> bool:
        with self._lock:
            left = self._corrupt.get(key, 0)
            if left > 0:
                self._corrupt[key] = left - 1
                return True
            return False


def _repo_info(repo: FakeRepo, blobs: bool) -> dict:
    siblings = []
    for f in repo.files.values():
        sibling: dict = {"rfilename": f.name}
        if blobs:
            sibling.update(size=len(f.data), blobId=f.blob_id)
            if f.lfs:
                sibling["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(f.lfs_pointer)}
            for key, value in repo.listing_overrides.get(f.name, {}).items():
                if value is None:
                    sibling.pop(key, None)
                elif isinstance(value, dict) and isinstance(sibling.get(key), dict):
                    merged = {**sibling[key], **value}
                    sibling[key] = {k: v for k, v in merged.items() if v is not None}
                else:
                    sibling[key] = value
        siblings.append(sibling)
    owner = repo.repo_id.split("/")[0]
    return {
        "_id": repo.commit[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": owner,
        "sha": repo.commit if repo.listed_commit is None else repo.listed_commit,
        "lastModified": "2025-04-06T00:00:00.000Z",
        "createdAt": "2025-04-05T00:00:00.000Z",
        "private": False,
        "disabled": False,
        "gated": "manual" if repo.gated else False,
        "downloads": 0,
        "likes": 0,
        "library_name": "mlx",
        "tags": ["mlx", "safetensors", "llama4"],
        "pipeline_tag": "image-text-to-text",
        "siblings": siblings,
        "usedStorage": sum(len(f.data) for f in repo.files.values()),
    }


def _tree(repo: FakeRepo) -> list[dict]:
    entries = []
    for f in repo.files.values():
        entry: dict = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.name}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.lfs_pointer)}
        entries.append(entry)
    return entries


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        return None

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.hub._lock:
            self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.hub._lock:
            self.server.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_GET(self) -> None:
        self._route(send_body=True)

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    # -- responses --------------------------------------------------------------------------------

    def _record(self, status: int) -> None:
        self.hub.requests.append(
            RequestRecord(
                self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization"), status
            )
        )

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        send_body: bool = True,
        content_type: str = "application/json",
    ) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _json(self, value, send_body: bool) -> None:
        self._send(200, json.dumps(value).encode(), send_body=send_body)

    def _error(
        self, status: int, code: str | None, message: str, send_body: bool, commit: str | None = None
    ) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, send_body)

    def _repo_failure(self, repo_id: str, send_body: bool) -> bool:
        status = self.hub._take_failure(repo_id)
        if status is None:
            return False
        if status in (401, 403):
            self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted.", send_body)
        elif status == 404:
            self._error(404, "RepoNotFound", "Repository not found", send_body)
        else:
            self._error(status, None, "Internal Error", send_body)
        return True

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, send_body: bool) -> None:
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(parts[2] + "/" + parts[3], parts[4:], query, send_body)
            elif parts[:1] == ["cdn"] and len(parts) >= 5:
                self._cdn(parts[1] + "/" + parts[2], parts[3], "/".join(parts[4:]), send_body)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), send_body)
            else:
                self._error(404, None, "Not Found", send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _repo(self, repo_id: str, send_body: bool) -> FakeRepo | None:
        if self._repo_failure(repo_id, send_body):
            return None
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", send_body)
        return repo

    def _revision_ok(self, repo: FakeRepo, revision: str, send_body: bool) -> bool:
        if revision in ("main", repo.commit) or (
            repo.listed_commit is not None and revision == repo.listed_commit
        ):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", send_body)
        return False

    def _api(self, repo_id: str, rest: list[str], query: dict, send_body: bool) -> None:
        repo = self._repo(repo_id, send_body)
        if repo is None:
            return
        if not rest:
            self._json(_repo_info(repo, "blobs" in query), send_body)
        elif rest[0] == "revision" and len(rest) == 2:
            if self._revision_ok(repo, rest[1], send_body):
                self._json(_repo_info(repo, "blobs" in query), send_body)
        elif rest[0] == "tree" and len(rest) >= 2:
            if self._revision_ok(repo, rest[1], send_body):
                self._json(_tree(repo), send_body)
        else:
            self._error(404, None, "Not Found", send_body)

    def _gate(self, repo: FakeRepo, send_body: bool) -> bool:
        """Apply a gated repo's rule: 401 without a token, 403 with one that has no access."""
        if not repo.gated:
            return True
        auth = self.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip()
        if not token:
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have "
                "access to it and be authenticated to access it. Please log in.",
                send_body,
            )
            return False
        if token not in repo.allowed_tokens:
            self._error(
                403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list.",
                send_body,
            )
            return False
        return True

    def _resolve(self, repo_id: str, revision: str, name: str, send_body: bool) -> None:
        repo = self._repo(repo_id, send_body)
        if repo is None or not self._revision_ok(repo, revision, send_body):
            return
        if not self._gate(repo, send_body):
            return
        served = repo.files.get(name)
        if served is None:
            self._error(404, "EntryNotFound", f"{name} does not exist on main", send_body, repo.commit)
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{served.etag}"', "Accept-Ranges": "bytes"}
        if served.lfs:
            headers.update({"X-Linked-Size": str(len(served.data)), "X-Linked-Etag": f'"{served.sha256}"'})
            if self.hub.cdn_host:
                location = (
                    f"http://{self.hub.cdn_host}:{self.hub.port}/cdn/{repo.repo_id}/{repo.commit}/"
                    f"{quote(name)}"
                )
                headers["Location"] = location
                self._send(302, b"", headers, send_body)
                return
        self._file(repo, served, headers, send_body)

    def _cdn(self, repo_id: str, commit: str, name: str, send_body: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        served = repo.files.get(name) if repo is not None and repo.commit == commit else None
        if served is None:
            self._error(404, None, "NoSuchKey", send_body)
            return
        self._file(repo, served, {"ETag": f'"{served.sha256}"', "Accept-Ranges": "bytes"}, send_body)

    def _file(self, repo: FakeRepo, served: ServedFile, headers: dict, send_body: bool) -> None:
        key = (repo.repo_id, served.name)
        data = served.data
        size = len(data)
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and requested.startswith("bytes="):
            first, _, last = requested[len("bytes=") :].partition("-")
            start = int(first or 0)
            end = int(last) if last else size - 1
            if start >= size:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"}, send_body)
                return
            end = min(end, size - 1)
            data = data[start : end + 1]
            status = 206
            headers = dict(headers, **{"Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"})
        if send_body and self.hub._take_corrupt(key) and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not send_body:
            return
        drop_after = self.hub._take_drop(key)
        stall = self.hub._stalls.get(key)
        sent = 0
        while sent < len(data):
            limit = len(data)
            if drop_after is not None:
                limit = min(limit, drop_after)
            if stall is not None and not stall.released.is_set() and start < stall.after_bytes:
                limit = min(limit, stall.after_bytes - start)
            if sent >= limit:
                if drop_after is not None and sent >= drop_after:
                    self._cut()
                    return
                self.wfile.flush()
                stall.reached.set()
                stall.released.wait(_STALL_TIMEOUT_S)
                stall.released.set()
                continue
            piece = data[sent : min(limit, sent + _CHUNK)]
            self.wfile.write(piece)
            sent += len(piece)
            self.hub._count(key, len(piece))
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the connection mid-body, as a network failure would."""
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


class MemoryKeyring:
    """A keyring backend in a dict (``keyring.set_keyring(MemoryKeyring())``): tests never touch the
    machine's keychain. Built on first use so importing this module does not import keyring."""

    def __new__(cls):
        from keyring.backend import KeyringBackend
        from keyring.errors import PasswordDeleteError

        class _Memory(KeyringBackend):
            priority = 1

            def __init__(self):
                super().__init__()
                self.secrets: dict[tuple[str, str], str] = {}

            def get_password(self, service, username):
                return self.secrets.get((service, username))

            def set_password(self, service, username, password):
                self.secrets[(service, username)] = password

            def delete_password(self, service, username):
                if self.secrets.pop((service, username), None) is None:
                    raise PasswordDeleteError("no such password")

        return _Memory()


def point_huggingface_hub_at(monkeypatch, url: str, hf_home: Path) -> None:
    """Make this process's huggingface_hub talk to ``url`` and cache into ``hf_home/hub``.

    huggingface_hub reads its settings into ``huggingface_hub.constants`` at import, so they are
    patched there; the environment is set too, for child processes (see ``child_env``).
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def child_env(url: str, hf_home: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``llama-desk`` child process that uses the fake Hub at ``url``."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    }
    env.update(
        HF_ENDPOINT=url,
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        LLAMA_DESK_DATA_DIR=str(data_dir),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    env.update(extra)
    return env


@contextmanager
def running_hub(monkeypatch, hf_home: Path, repos: dict[str, Path]):
    """A started HubServer serving ``repos`` (repo id -> checkpoint folder), this process pointed
    at it, and an in-memory keychain; everything undone afterwards."""
    import keyring

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    server = HubServer()
    server.start()
    try:
        for repo_id, folder in repos.items():
            server.add_repo(repo_id, folder)
        point_huggingface_hub_at(monkeypatch, server.url, hf_home)
        yield server
    finally:
        server.stop()
        keyring.set_keyring(previous)
