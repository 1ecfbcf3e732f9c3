"""What downloading a repo involves (``RepoPlan``): the files Llama Desk needs with sizes and
checksums, checked so that the server's listing cannot reach outside the repo's cache folder,
what is already present, and whether the disk can take the rest."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.byte_sizes import format_bytes
from models.hub.hub_errors import (
    DEFAULT_RETRY,
    DiskFullError,
    RepoNotFound,
    RetryPolicy,
    StoreError,
    UnsafeDownloadError,
    call_with_retries,
    translate_error,
)
from models.hub.hub_paths import hub_cache_dir, is_repo_id, repo_cache_dir
from models.hub.hub_token import request_token

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

# What the Hub's listing can hold where it becomes a path part (matched whole, with re.fullmatch).
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_OID = re.compile(r"[0-9a-f]{40}")
MAX_FILE_BYTES = 1 << 40  # 1 TiB: far above any shard (~5 GB), far below what breaks arithmetic
_MAX_NAME_CHARS = 1000


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


def _request_timeout() -> float:
    from huggingface_hub import constants

    return float(max(constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT))


def fetch_plan(
    repo_id: str,
    *,
    revision: str = "main",
    token: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
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
                token=request_token(token),
                timeout=_request_timeout(),
            )
        except (KeyError, TypeError, AttributeError) as exc:  # huggingface_hub parsing a malformed answer
            raise _malformed(repo_id) from exc

    info = call_with_retries(listing, repo_id, retry, sleep, cancel)
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
            token=request_token(token),
            timeout=_request_timeout(),
        )
    except Exception as exc:
        raise translate_error(exc, plan.repo_id, name) from None


def partial_path(blob: Path) -> Path:
    return blob.with_name(blob.name + ".incomplete")


def bytes_present(plan: RepoPlan, remote: RemoteFile) -> int:
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
            return min(size, partial_path(blob).stat().st_size)
        except OSError:
            return 0
    return 0


def remaining_bytes(plan: RepoPlan) -> int:
    """Bytes still to download for ``plan`` (finished files and partial ones count as present)."""
    return sum(max(0, (f.size or 0) - bytes_present(plan, f)) for f in plan.files)


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
            f"Not enough disk space for {plan.repo_id}: {format_bytes(needed)} still to download, "
            f"{format_bytes(free)} free in {hub_cache_dir()}. Free up space or set HF_HUB_CACHE to another "
            "disk."
        )
