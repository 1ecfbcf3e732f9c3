"""Where checkpoints live on disk: downloading, listing, deleting and resolving Hub models.

A model is named by a local folder path or, once downloaded, by its Hub repo id
(``mlx-community/...``). Downloads go into huggingface_hub's standard cache (``HF_HUB_CACHE``,
by default ``$HF_HOME/hub``), in its own layout (``blobs/<etag>``, ``snapshots/<commit>/<file>``
links, ``refs/main``), so mlx-lm, mlx-vlm and ``huggingface_hub`` share what Llama Desk fetched
and the other way round. Resolving a repo id uses ``local_files_only=True``: once a model is
downloaded nothing touches the network.

Public API (no Qt; safe to call from a worker thread; one thread per download):

- ``fetch_plan(repo_id)`` -> ``RepoPlan``: the commit and the files Llama Desk needs (safetensors,
  JSON configs, tokenizer files, chat template, license/model card), with sizes and checksums,
  from ``HfApi().model_info(files_metadata=True)``. ``remaining_bytes(plan)`` is what is left;
  ``check_disk_space(plan)`` raises DiskFullError; ``probe_access(plan)`` raises GatedRepoError
  when the token cannot fetch a gated repo's files.
- ``download_model(repo_id, progress=..., cancel=...)`` -> snapshot ``Path``. Reports frozen
  ``DownloadProgress`` values through ``progress``, called on the downloading thread (a GUI
  forwards them with a queued signal), at most every ``progress_interval_s`` and at each file's
  start and end. ``refs/main`` is written last, so a partial download never resolves.
  ``cancel`` is a ``threading.Event`` checked at every received chunk (on a stalled connection,
  at the read timeout ``HF_HUB_DOWNLOAD_TIMEOUT``) and during back-off. Network errors (dropped
  connection, timeouts, 408/429/5xx) are retried with exponential back-off (``RetryPolicy``;
  ``sleep`` is injectable for tests). Each file is verified against the Hub's sha256 (LFS
  files) or git blob id (small files); a mismatch deletes the bytes and fetches the file once
  more, then fails with ``ChecksumError``.
- ``list_downloaded()`` / ``downloaded_model(repo_id)`` -> ``DownloadedModel`` (size on disk,
  complete or partial, snapshot path); ``delete_model(repo_id)`` -> bytes freed;
  ``resolve_model(spec)`` -> checkpoint folder.
- ``set_token`` / ``get_token`` / ``clear_token``: the Hugging Face access token in the OS
  keychain (``keyring``), never in a plain file. Without a token in the keychain,
  huggingface_hub's own lookup applies (``HF_TOKEN``, or a ``hf auth login`` token).

Why not ``hf_hub_download`` for the bytes: in huggingface_hub 1.x it writes each file to a
process-unique temporary file and deletes it when the transfer fails, so an interrupted 5 GB
shard starts from zero. Here a file is fetched into ``blobs/<etag>.incomplete`` (the name
``scan_cache_dir`` reports as an incomplete download) and resumed with an HTTP ``Range``
request, by the next attempt or the next pull. Only safetensors weights are fetched; no code
from a repo is ever downloaded or run.

The server is not trusted with the disk: every value of its listing that becomes part of a
path must look like what the Hub sends (a 40-hex commit, a 64-hex sha256, a 40-hex git blob id; file
names without ``..``, empty parts or control characters), sizes must be whole numbers up to
``MAX_FILE_BYTES``, a file without a checksum is refused, and every blob, ``.incomplete`` file,
snapshot link and ref must resolve (following links already in the cache) inside the repo's cache
folder. Anything else raises ``UnsafeDownloadError`` before a byte is written there.

Every failure is a ``StoreError`` whose message is one user-facing line: ``GatedRepoError``,
``RepoNotFound``, ``NetworkError``, ``DiskFullError``, ``ChecksumError``, ``DownloadCancelled``,
``UnsafeDownloadError``, ``TokenStoreError``; ``ModelNotFound`` when a name is neither a folder nor
downloaded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

# Files a checkpoint needs, and those never fetched (pickled weights can run code; *.py is
# remote code; other formats are not for MLX).
ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "tokenizer.model",
    "*.tiktoken",
    "*.txt",
    "README.md",
    "LICENSE*",
    "USE_POLICY.md",
)
IGNORE_PATTERNS = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*.py",
    "*.gguf",
    "*.msgpack",
    "*.h5",
    "*.onnx",
    "original/*",
    "*/original/*",
)

KEYRING_SERVICE = "Llama Desk"
KEYRING_USER = "huggingface-token"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

# What the Hub's listing can hold where it becomes a path part (matched whole, with re.fullmatch).
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_OID = re.compile(r"[0-9a-f]{40}")
MAX_FILE_BYTES = 1 << 40  # 1 TiB: far above any shard (~5 GB), far below what breaks arithmetic
_MAX_NAME_CHARS = 1000

_T = TypeVar("_T")


# -- errors ---------------------------------------------------------------------------------------


class StoreError(Exception):
    """A model-store failure; ``str(exc)`` is one line to show to a person."""


class GatedRepoError(StoreError):
    """401/403: the repo is gated (license not accepted on the Hub) or the token was refused."""


class RepoNotFound(StoreError):
    """404: no such repo, revision or file on the Hub."""


class NetworkError(StoreError):
    """No network, the server is unreachable or kept failing (after the retries)."""


class DiskFullError(StoreError):
    """Not enough free space for the download, or the disk filled up while writing."""


class ChecksumError(StoreError):
    """A downloaded file did not match the Hub's checksum, twice."""


class DownloadCancelled(StoreError):
    """The cancel event was set; the bytes already fetched stay in the cache for a resume."""


class UnsafeDownloadError(StoreError):
    """The server's listing or the cache would put a file outside the repo's cache folder, or a file
    could not be verified; nothing more is downloaded."""


class TokenStoreError(StoreError):
    """The OS keychain is unavailable (no keyring backend) or refused the operation."""


class ModelNotFound(StoreError, LookupError):
    """A model name that is neither a folder nor a downloaded repo; the message says so."""


# -- plain data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repo: its path, size and checksum (sha256 for LFS, else the git blob id)."""

    name: str
    size: int | None
    sha256: str | None = None
    blob_id: str | None = None

    @property
    def etag(self) -> str | None:
        """The name huggingface_hub's cache gives this file's blob (what the Hub sends as ETag)."""
        return self.sha256 or self.blob_id


@dataclass(frozen=True)
class RepoPlan:
    """What downloading ``repo_id`` at ``revision`` involves: its commit and the needed files."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    gated: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of a download. ``eta_s`` is None until a speed is known."""

    repo_id: str
    file: str
    file_bytes_done: int
    file_bytes_total: int | None
    bytes_done: int
    bytes_total: int
    speed_bps: float
    eta_s: float | None
    files_done: int = 0
    files_total: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing request is retried: ``attempts`` retries, delays doubling from ``base``."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class DownloadedModel:
    """A repo in the cache: complete (``path`` is a loadable snapshot) or partially downloaded."""

    repo_id: str
    path: Path | None  # the snapshot refs/main points to, when there is one
    commit: str | None
    size_on_disk: int  # finished files
    partial_bytes: int  # bytes of interrupted files kept for a resume
    nb_files: int
    complete: bool
    model_type: str | None  # config.json's model_type ("llama4"), when present
    last_modified: float | None


# -- paths ----------------------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder (``HF_HUB_CACHE`` or ``$HF_HOME/hub``), read at call time."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def repo_cache_dir(repo_id: str) -> Path:
    """The cache folder of a model repo: ``<cache>/models--<owner>--<name>``."""
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def is_repo_id(spec: str) -> bool:
    """Whether ``spec`` reads as a Hub repo id (``owner/name``) rather than a path."""
    return bool(_REPO_ID.match(spec)) and not spec.startswith((".", "/", "~"))


def hub_page(repo_id: str) -> str:
    """The repo's page on the configured Hub endpoint (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/{repo_id}"


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- token ----------------------------------------------------------------------------------------

_NO_KEYCHAIN = (
    "No system keychain is available to store the Hugging Face token ({reason}); "
    "set the HF_TOKEN environment variable instead."
)


def set_token(token: str) -> None:
    """Store the Hugging Face access token in the OS keychain."""
    import keyring
    from keyring.errors import KeyringError

    token = token.strip()
    if not token:
        raise TokenStoreError("The token is empty.")
    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
    except KeyringError as exc:
        raise TokenStoreError(_NO_KEYCHAIN.format(reason=str(exc) or type(exc).__name__)) from None


def get_token() -> str | None:
    """The token stored in the OS keychain, or None (also when there is no keychain)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:  # pragma: no cover - keyring is a dependency
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
    except KeyringError:
        return None


def clear_token() -> None:
    """Remove the stored token (nothing happens when there is none)."""
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
    except PasswordDeleteError:
        return
    except KeyringError as exc:
        raise TokenStoreError(_NO_KEYCHAIN.format(reason=str(exc) or type(exc).__name__)) from None


def _token(token: str | None) -> str | None:
    """The token for Hub calls: the given one, the keychain's, else None (huggingface_hub's lookup)."""
    return token or get_token()


# -- error translation ----------------------------------------------------------------------------


class _Truncated(Exception):
    """The server ended a response before the whole file arrived (treated like a dropped connection)."""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(exc: BaseException, connect_errors: bool = True) -> bool:
    """Whether retrying may help. ``connect_errors=False`` fails fast when the server is unreachable."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled | httpx.ProxyError | httpx.UnsupportedProtocol):
        return False
    if not connect_errors and isinstance(exc, httpx.ConnectError):
        return False
    if isinstance(exc, httpx.TransportError | _Truncated):
        return True
    return isinstance(exc, HfHubHTTPError) and _status(exc) in (408, 429, 500, 502, 503, 504)


def _translate(exc: BaseException, repo_id: str, file: str | None = None) -> StoreError:
    """Turn a huggingface_hub / httpx / OS error into a StoreError with a one-line message."""
    import httpx
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    if isinstance(exc, StoreError):
        return exc
    where = f"{file} of {repo_id}" if file else repo_id
    status = _status(exc)
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return NetworkError(
            f"Cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE); unset it to download."
        )
    if isinstance(exc, hf.GatedRepoError) or (isinstance(exc, hf.HfHubHTTPError) and status in (401, 403)):
        response = getattr(exc, "response", None)
        server_says = response.headers.get("X-Error-Message", "") if response is not None else ""
        if status == 401 and "Invalid credentials" in server_says:
            return GatedRepoError(
                f"The Hub refused the access token for {repo_id} (401 invalid "
                "credentials); sign in again with a valid Hugging Face token."
            )
        return GatedRepoError(
            f"{repo_id} is gated ({status or 'access denied'}): accept the Llama 4 license on the repo's Hub "
            f"page ({hub_page(repo_id)}) and sign in with a Hugging Face access token that has access."
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return RepoNotFound(f"{repo_id} has no revision by that name on the Hub (404).")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return RepoNotFound(f"{where} was not found on the Hub (404).")
    if isinstance(exc, hf.RepositoryNotFoundError) or status == 404:
        return RepoNotFound(
            f"{repo_id} was not found on the Hub (404): check the name; a private repo needs "
            "a token with access."
        )
    if isinstance(exc, hf.HfHubHTTPError) and status is not None:
        if status >= 500 or status in (408, 429):
            return NetworkError(
                f"The Hub kept failing while downloading {where} (HTTP {status}); try again later."
            )
        return StoreError(f"The Hub refused the request for {where} (HTTP {status}).")
    if isinstance(exc, httpx.ProxyError):
        return NetworkError(f"Cannot download {repo_id}: the proxy failed ({exc}).")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return NetworkError(
            f"Cannot reach the Hub at {constants.ENDPOINT}: no network connection or the server is down."
        )
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(f"The Hub stopped answering while downloading {where} (timed out); try again.")
    if isinstance(exc, httpx.TransportError | _Truncated):
        return NetworkError(f"The connection kept dropping while downloading {where}; pull again to resume.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk is full (writing {where} to {hub_cache_dir()}); free up space and "
            "pull again to resume."
        )
    if isinstance(exc, OSError):
        return StoreError(f"Cannot write {where} to {hub_cache_dir()}: {exc.strerror or exc}.")
    return StoreError(f"Downloading {where} failed: {exc}")


def _call_with_retries(
    fn: Callable[[], _T],
    repo_id: str,
    retry: RetryPolicy,
    sleep: Callable[[float], object],
    cancel: threading.Event,
) -> _T:
    """Call ``fn`` (one metadata request), retrying transient failures; an unreachable server fails fast."""
    attempt = 0
    while True:
        if cancel.is_set():
            raise DownloadCancelled(f"Download of {repo_id} cancelled.")
        try:
            return fn()
        except Exception as exc:
            if not _is_transient(exc, connect_errors=False):
                raise _translate(exc, repo_id) from None
            attempt += 1
            if attempt > retry.attempts:
                raise _translate(exc, repo_id) from None
            sleep(retry.delay(attempt))


# -- plan -----------------------------------------------------------------------------------------


def _request_timeout() -> float:
    from huggingface_hub import constants

    return float(max(constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT))


def fetch_plan(
    repo_id: str,
    *,
    revision: str = "main",
    token: str | None = None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], object] | None = None,
    cancel: threading.Event | None = None,
) -> RepoPlan:
    """Ask the Hub for ``repo_id``'s commit and the files Llama Desk needs (network; raises StoreError)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    if not is_repo_id(repo_id):
        raise RepoNotFound(f"{repo_id!r} is not a Hub repo id (owner/name).")
    cancel = cancel or threading.Event()
    sleep = sleep or cancel.wait

    def listing():
        try:
            return HfApi().model_info(
                repo_id,
                revision=revision,
                files_metadata=True,
                token=_token(token),
                timeout=_request_timeout(),
            )
        except (KeyError, TypeError, AttributeError) as exc:  # huggingface_hub parsing a malformed answer
            raise _malformed(repo_id) from exc

    info = _call_with_retries(listing, repo_id, retry, sleep, cancel)
    siblings = info.siblings or []
    if not isinstance(siblings, list) or not all(isinstance(s.rfilename, str) for s in siblings):
        raise _malformed(repo_id)
    siblings = list(
        filter_repo_objects(
            siblings,
            allow_patterns=list(ALLOW_PATTERNS),
            ignore_patterns=list(IGNORE_PATTERNS),
            key=lambda s: s.rfilename,
        )
    )
    files = []
    for s in siblings:
        if s.lfs is not None and not _is_hex(s.lfs.sha256, _SHA256):
            raise UnsafeDownloadError(_refused_value("an invalid sha256", s.rfilename, repo_id))
        files.append(
            RemoteFile(
                name=s.rfilename,
                size=s.lfs.size if s.lfs is not None else s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
        )
    if not info.sha:
        raise StoreError(f"The Hub did not say which commit {repo_id} is at; try again.")
    plan = RepoPlan(
        repo_id=repo_id, revision=revision, commit=info.sha, files=tuple(files), gated=bool(info.gated)
    )
    check_plan(plan)
    if not any(f.name.endswith(".safetensors") for f in files):
        raise StoreError(f"{repo_id} has no .safetensors weights; Llama Desk loads safetensors only.")
    return plan


def _malformed(repo_id: str) -> UnsafeDownloadError:
    return UnsafeDownloadError(f"The server sent a malformed file listing for {repo_id}; download refused.")


def _refused_value(what: str, name: str, repo_id: str) -> str:
    return f"The server sent {what} for {name} of {repo_id}; download refused."


def _is_hex(value: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _name_problem(name: object) -> str | None:
    """Why a listed file name cannot be a path inside the snapshot ("outside", "invalid"), or None."""
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
        return "invalid"
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
        return "outside"
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or any(p in ("", ".") for p in name.split("/")):
        return "invalid"
    return None


def check_plan(plan: RepoPlan) -> None:
    """Raise UnsafeDownloadError unless every server value in ``plan`` is one the Hub can send: a
    40-hex commit, safe file names, sizes from 0 to MAX_FILE_BYTES, and per file a 64-hex sha256
    or a 40-hex git blob id (a file with neither cannot be verified and is refused)."""
    repo_id = plan.repo_id
    if not _is_hex(plan.commit, _COMMIT):
        raise UnsafeDownloadError(f"The server sent an invalid commit id for {repo_id}; download refused.")
    for f in plan.files:
        problem = _name_problem(f.name)
        if problem == "outside":
            raise UnsafeDownloadError(
                f"{repo_id} lists a file outside the repo ({f.name!r:.80}); refusing to download it."
            )
        if problem:
            raise UnsafeDownloadError(
                f"{repo_id} lists a file with an invalid name ({f.name!r:.80}); download refused."
            )
        if not isinstance(f.size, int) or isinstance(f.size, bool) or not 0 <= f.size <= MAX_FILE_BYTES:
            raise UnsafeDownloadError(_refused_value("an invalid size", f.name, repo_id))
        if f.sha256 is not None and not _is_hex(f.sha256, _SHA256):
            raise UnsafeDownloadError(_refused_value("an invalid sha256", f.name, repo_id))
        if f.blob_id is not None and not _is_hex(f.blob_id, _GIT_OID):
            raise UnsafeDownloadError(_refused_value("an invalid blob id", f.name, repo_id))
        if f.sha256 is None and f.blob_id is None:
            raise UnsafeDownloadError(
                f"The server sent no checksum for {f.name} of {repo_id}, so it cannot "
                "be verified; download refused."
            )


def probe_access(plan: RepoPlan, token: str | None = None) -> None:
    """Raise GatedRepoError when this machine's token cannot fetch the repo's files (one HEAD request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    name = "config.json" if any(f.name == "config.json" for f in plan.files) else plan.files[0].name
    try:
        get_hf_file_metadata(
            hf_hub_url(plan.repo_id, name, revision=plan.commit),
            token=_token(token),
            timeout=_request_timeout(),
        )
    except Exception as exc:
        raise _translate(exc, plan.repo_id, name) from None


def _partial_path(blob: Path) -> Path:
    return blob.with_name(blob.name + ".incomplete")


def _bytes_present(plan: RepoPlan, remote: RemoteFile) -> int:
    """Bytes of ``remote`` already in the cache: all of it, a resumable part, or none."""
    repo_dir = repo_cache_dir(plan.repo_id)
    pointer = repo_dir / "snapshots" / plan.commit / remote.name
    size = remote.size or 0
    if pointer.exists():
        return size
    if remote.etag:
        blob = repo_dir / "blobs" / remote.etag
        if blob.exists():
            return size
        try:
            return min(size, _partial_path(blob).stat().st_size)
        except OSError:
            return 0
    return 0


def remaining_bytes(plan: RepoPlan) -> int:
    """Bytes still to download for ``plan`` (finished files and partial ones count as present)."""
    return sum(max(0, (f.size or 0) - _bytes_present(plan, f)) for f in plan.files)


def _free_space(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def check_disk_space(plan: RepoPlan) -> None:
    """Raise DiskFullError when the cache's disk has less free space than the bytes still to fetch."""
    needed = remaining_bytes(plan)
    free = _free_space(repo_cache_dir(plan.repo_id))
    if needed > free:
        raise DiskFullError(
            f"Not enough disk space for {plan.repo_id}: {_format_bytes(needed)} still to download, "
            f"{_format_bytes(free)} free in {hub_cache_dir()}. Free up space or set HF_HUB_CACHE to another "
            "disk."
        )


# -- download -------------------------------------------------------------------------------------


def _open_partial(path: Path) -> BinaryIO:
    """Open a ``.incomplete`` file for appending (a seam for tests that simulate a full disk)."""
    return open(path, "ab")  # noqa: SIM115 - the caller closes it


class _ProgressReporter:
    """Turns byte counts into throttled DownloadProgress callbacks with speed and ETA."""

    _WINDOW_S = 5.0

    def __init__(
        self,
        repo_id: str,
        callback: Callable[[DownloadProgress], None] | None,
        bytes_total: int,
        bytes_done: int,
        files_total: int,
        interval_s: float,
    ):
        self.repo_id = repo_id
        self.callback = callback
        self.bytes_total = bytes_total
        self.bytes_done = bytes_done
        self.files_total = files_total
        self.files_done = 0
        self.interval_s = interval_s
        self.file = ""
        self.file_done = 0
        self.file_total: int | None = None
        self._transferred = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._last_emit = float("-inf")

    def start_file(self, name: str, done: int, total: int | None) -> None:
        self.file, self.file_done, self.file_total = name, done, total
        self.emit(force=True)

    def restart_file(self) -> None:
        """The file's bytes were discarded (server ignored Range, or a checksum mismatch)."""
        self.bytes_done -= self.file_done
        self.file_done = 0
        self.emit(force=True)

    def advance(self, n: int) -> None:
        self.file_done += n
        self.bytes_done += n
        self._transferred += n
        self.emit()

    def finish_file(self, counted: int) -> None:
        """The file is in place; ``counted`` of its bytes were already in ``bytes_done``."""
        if self.file_total is not None:
            self.bytes_done += self.file_total - counted
            self.file_done = self.file_total
        self.files_done += 1
        self.emit(force=True)

    def speed(self, now: float) -> float:
        """Bytes per second over the last few seconds (one sample per 50 ms at most)."""
        if not self._samples or now - self._samples[-1][0] >= 0.05:
            self._samples.append((now, self._transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._WINDOW_S:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        return (self._transferred - b0) / (now - t0) if now - t0 > 1e-3 else 0.0

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        speed = self.speed(now)
        if self.callback is None or (not force and now - self._last_emit < self.interval_s):
            return
        self._last_emit = now
        remaining = max(0, self.bytes_total - self.bytes_done)
        eta = remaining / speed if speed > 0 else (0.0 if remaining == 0 else None)
        self.callback(
            DownloadProgress(
                repo_id=self.repo_id,
                file=self.file,
                file_bytes_done=self.file_done,
                file_bytes_total=self.file_total,
                bytes_done=self.bytes_done,
                bytes_total=self.bytes_total,
                speed_bps=speed,
                eta_s=eta,
                files_done=self.files_done,
                files_total=self.files_total,
            )
        )


class _Hasher:
    """sha256 of the content (LFS files) or git's blob sha1 (small files), fed as bytes arrive."""

    def __init__(self, remote: RemoteFile):
        self.remote = remote
        self.reset()

    def reset(self) -> None:
        if self.remote.sha256:
            self._hash = hashlib.sha256()
        elif self.remote.blob_id and self.remote.size is not None:
            self._hash = hashlib.sha1(f"blob {self.remote.size}\0".encode(), usedforsecurity=False)
        else:  # check_plan refuses such files first; never keep bytes that cannot be verified
            raise UnsafeDownloadError(
                f"{self.remote.name} has no checksum to verify it by; download refused."
            )

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def matches(self) -> bool:
        return self._hash.hexdigest() == self.remote.etag


class _Downloader:
    """Fetches the files of one RepoPlan into the cache; state for one ``download_model`` call."""

    def __init__(
        self,
        plan: RepoPlan,
        token: str | None,
        retry: RetryPolicy,
        sleep: Callable[[float], object],
        cancel: threading.Event,
        reporter: _ProgressReporter,
    ):
        from huggingface_hub.utils import build_hf_headers

        self.plan = plan
        self.repo_dir = repo_cache_dir(plan.repo_id)
        self.repo_root = self.repo_dir.resolve()
        self.retry = retry
        self.sleep = sleep
        self.cancel = cancel
        self.reporter = reporter
        self.headers = build_hf_headers(token=token, library_name="llama-desk", library_version="0.1")
        self.headers["Accept-Encoding"] = "identity"  # byte ranges must address the stored bytes

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            r = self.reporter
            raise DownloadCancelled(
                f"Download of {self.plan.repo_id} cancelled at {_format_bytes(r.bytes_done)} of "
                f"{_format_bytes(r.bytes_total)}; pull again to resume."
            )

    def inside(self, path: Path, what: str) -> Path:
        """``path``, once it resolves (following any link already there) inside the repo's cache folder."""
        if not path.resolve().is_relative_to(self.repo_root):
            raise UnsafeDownloadError(
                f"The cache path for {what} of {self.plan.repo_id} leads outside {self.repo_dir}; download "
                "refused (a link in the cache points elsewhere: remove it and pull again)."
            )
        return path

    def run(self) -> Path:
        snapshot = self.inside(self.repo_dir / "snapshots" / self.plan.commit, "the snapshot")
        for remote in self.plan.files:
            self.check_cancel()
            self.fetch(remote, snapshot / remote.name)
        if self.plan.revision != self.plan.commit:
            ref = self.inside(self.repo_dir / "refs" / self.plan.revision, f"refs/{self.plan.revision}")
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(self.plan.commit)
        return snapshot

    def fetch(self, remote: RemoteFile, pointer: Path) -> None:
        etag = remote.etag
        if etag is None:  # check_plan refuses such files first
            raise UnsafeDownloadError(f"{remote.name} has no checksum to verify it by; download refused.")
        self.inside(pointer, remote.name)
        blob = self.inside(self.repo_dir / "blobs" / etag, remote.name)
        self.inside(_partial_path(blob), remote.name)
        present = _bytes_present(self.plan, remote)
        self.reporter.start_file(remote.name, present, remote.size)
        if pointer.exists():
            self.reporter.finish_file(present)
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            with self.locked(etag):
                if not blob.exists():
                    self.fetch_blob(remote, blob)
        self.link(blob, pointer)
        self.reporter.finish_file(self.reporter.file_done)

    @contextmanager
    def locked(self, etag: str) -> Iterator[None]:
        """huggingface_hub's lock for this blob, so two downloads never append to one file."""
        from filelock import Timeout
        from huggingface_hub.utils import WeakFileLock

        lock_path = hub_cache_dir() / ".locks" / self.repo_dir.name / f"{etag}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            self.check_cancel()
            try:
                with WeakFileLock(lock_path, timeout=0.5):
                    yield
                    return
            except Timeout:
                continue

    def fetch_blob(self, remote: RemoteFile, blob: Path) -> None:
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(self.plan.repo_id, remote.name, revision=self.plan.commit)
        partial = _partial_path(blob)
        for attempt in (1, 2):
            hasher = self.transfer(remote, url, partial)
            if hasher.matches():
                os.replace(partial, blob)
                return
            partial.unlink(missing_ok=True)
            self.reporter.restart_file()
            if attempt == 2:
                raise ChecksumError(
                    f"{remote.name} of {self.plan.repo_id} did not match the Hub's checksum twice; the bytes "
                    "were deleted. Try again later."
                )

    def resume_state(self, remote: RemoteFile, partial: Path) -> tuple[_Hasher, int]:
        """Hash the bytes a previous attempt left, so the checksum covers the whole file."""
        hasher = _Hasher(remote)
        try:
            have = partial.stat().st_size
        except FileNotFoundError:
            partial.touch()  # an empty file gets no bytes but must still be moved into place
            return hasher, 0
        if remote.size is not None and have > remote.size:
            partial.write_bytes(b"")
            self.reporter.restart_file()
            return hasher, 0
        with open(partial, "rb") as handle:
            while block := handle.read(8 * 1024 * 1024):
                self.check_cancel()
                hasher.update(block)
        return hasher, have

    def transfer(self, remote: RemoteFile, url: str, partial: Path) -> _Hasher:
        """Fill ``partial`` up to the file's size, resuming and retrying; return its hasher."""
        hasher, have = self.resume_state(remote, partial)
        attempt = 0
        while remote.size is None or have < remote.size:
            self.check_cancel()
            before = have
            try:
                have = self.stream(url, partial, hasher, have, remote)
                if remote.size is None:
                    break
                if have < remote.size:
                    raise _Truncated
            except Exception as exc:
                if isinstance(exc, StoreError) or not _is_transient(exc):
                    raise _translate(exc, self.plan.repo_id, remote.name) from None
                have = partial.stat().st_size if partial.exists() else 0
                if have > before:
                    attempt = 0  # bytes arrived: this is a new failure, not the same one again
                attempt += 1
                if attempt > self.retry.attempts:
                    raise _translate(exc, self.plan.repo_id, remote.name) from None
                self.sleep(self.retry.delay(attempt))
        return hasher

    def stream(self, url: str, partial: Path, hasher: _Hasher, have: int, remote: RemoteFile) -> int:
        """One GET (a Range request when resuming); returns the bytes now in ``partial``."""
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session, hf_raise_for_status

        headers = dict(self.headers)
        if have:
            headers["Range"] = f"bytes={have}-"
        with get_session().stream(
            "GET",
            url,
            headers=headers,
            follow_redirects=True,
            timeout=float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
        ) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if have and response.status_code != 206:  # the server ignored the Range: start over
                partial.unlink(missing_ok=True)
                hasher.reset()
                self.reporter.restart_file()
                have = 0
            handle = _open_partial(partial)
            try:
                for chunk in response.iter_bytes():  # as the bytes arrive: none lost on a cut
                    self.check_cancel()
                    if remote.size is not None and have + len(chunk) > remote.size:
                        chunk = chunk[: remote.size - have]
                    handle.write(chunk)
                    hasher.update(chunk)
                    have += len(chunk)
                    self.reporter.advance(len(chunk))
            finally:
                handle.close()
        return have

    def link(self, blob: Path, pointer: Path) -> None:
        """Point ``snapshots/<commit>/<file>`` at the blob, as huggingface_hub does."""
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:  # no symlinks (Windows without developer mode): keep a copy
            shutil.copyfile(blob, pointer)


def download_model(
    repo_id: str,
    *,
    revision: str = "main",
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    token: str | None = None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], object] | None = None,
    progress_interval_s: float = 0.1,
    plan: RepoPlan | None = None,
) -> Path:
    """Download (or finish downloading) ``repo_id`` into the cache and return its snapshot folder.

    Raises a ``StoreError`` subclass with a one-line message on any failure; whatever was fetched
    stays in the cache, so calling again resumes. ``sleep`` waits between retries (default:
    ``cancel.wait``, so cancelling also cuts a back-off short).
    """
    cancel = cancel or threading.Event()
    sleep = sleep or cancel.wait
    if plan is None:
        plan = fetch_plan(repo_id, revision=revision, token=token, retry=retry, sleep=sleep, cancel=cancel)
    check_plan(plan)
    check_disk_space(plan)
    present = sum(_bytes_present(plan, f) for f in plan.files)
    reporter = _ProgressReporter(
        plan.repo_id, progress, plan.total_bytes, present, len(plan.files), progress_interval_s
    )
    downloader = _Downloader(plan, _token(token), retry, sleep, cancel, reporter)
    try:
        return downloader.run()
    except StoreError:
        raise
    except Exception as exc:  # OSError from the cache folder (ENOSPC, permissions), unexpected HTTP
        raise _translate(exc, plan.repo_id, reporter.file or None) from None


# -- the cache ------------------------------------------------------------------------------------


def _repo_id_from_folder(name: str) -> str | None:
    parts = name.split("--")
    if len(parts) < 3 or parts[0] != "models":
        return None
    return "/".join(parts[1:])


def _snapshot_complete(snapshot: Path) -> bool:
    """Whether a snapshot has a config and all its weight shards (cheap: the weights are not read)."""
    import json

    if not (snapshot / "config.json").exists():
        return False
    index = snapshot / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        return bool(shards) and all((snapshot / s).exists() for s in shards)
    return any(snapshot.glob("*.safetensors"))


def _model_type(snapshot: Path | None) -> str | None:
    import json

    if snapshot is None:
        return None
    try:
        value = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value.get("model_type") if isinstance(value, dict) else None


def _inspect_repo(repo_id: str, repo_dir: Path) -> DownloadedModel:
    size = partial = files = 0
    latest: float | None = None
    blobs = repo_dir / "blobs"
    if blobs.is_dir():
        for entry in blobs.iterdir():
            try:
                stat = entry.stat()
            except OSError:
                continue
            if entry.name.endswith(".incomplete"):
                partial += stat.st_size
                continue
            size += stat.st_size
            files += 1
            latest = stat.st_mtime if latest is None else max(latest, stat.st_mtime)
    commit = None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text().strip() or None
    snapshot = repo_dir / "snapshots" / commit if commit else None
    if snapshot is not None and not snapshot.is_dir():
        snapshot = None
    complete = snapshot is not None and _snapshot_complete(snapshot)
    return DownloadedModel(
        repo_id=repo_id,
        path=snapshot,
        commit=commit,
        size_on_disk=size,
        partial_bytes=partial,
        nb_files=files,
        complete=complete,
        model_type=_model_type(snapshot),
        last_modified=latest,
    )


def downloaded_model(repo_id: str) -> DownloadedModel | None:
    """What the cache holds of ``repo_id`` (complete or partial), or None when nothing."""
    repo_dir = repo_cache_dir(repo_id)
    if not repo_dir.is_dir():
        return None
    return _inspect_repo(repo_id, repo_dir)


def list_downloaded() -> list[DownloadedModel]:
    """Every model repo in the shared cache (any tool's), sorted by repo id; filter on ``model_type``."""
    cache = hub_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for folder in sorted(cache.glob("models--*")):
        repo_id = _repo_id_from_folder(folder.name)
        if repo_id and folder.is_dir():
            found.append(_inspect_repo(repo_id, folder))
    return found


def delete_model(repo_id: str) -> int:
    """Delete ``repo_id`` from the cache (all revisions and partial files); return the bytes freed."""
    model = downloaded_model(repo_id)
    if model is None:
        raise ModelNotFound(f"{repo_id} is not downloaded.")
    try:
        shutil.rmtree(repo_cache_dir(repo_id))
    except OSError as exc:
        raise StoreError(f"Cannot delete {repo_id} from {hub_cache_dir()}: {exc.strerror or exc}.") from None
    shutil.rmtree(hub_cache_dir() / ".locks" / repo_cache_dir(repo_id).name, ignore_errors=True)
    return model.size_on_disk + model.partial_bytes


def resolve_model(spec: str) -> Path:
    """Return the checkpoint folder that ``spec`` (a path or a downloaded repo id) names."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if is_repo_id(spec):
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError

            return Path(snapshot_download(spec, local_files_only=True))
        except LocalEntryNotFoundError:
            raise ModelNotFound(
                f"{spec} is not downloaded; run `llama-desk models pull {spec}` first."
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelNotFound(f"{spec} cannot be found in the model cache ({exc}).") from None
    raise ModelNotFound(f"{spec} does not exist.")
