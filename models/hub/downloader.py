"""Downloading a ``RepoPlan`` into huggingface_hub's cache: resumable ``.incomplete`` blobs,
checksums, retries with back-off, cancelling, throttled ``DownloadProgress`` reports.

Long because resuming, verifying and retrying a file are one state machine (``_Downloader``),
best read in one place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from models.byte_sizes import format_bytes
from models.hub.hub_errors import (
    DEFAULT_RETRY,
    ChecksumError,
    DownloadCancelled,
    RetryPolicy,
    StoreError,
    Truncated,
    UnsafeDownloadError,
    is_transient,
    translate_error,
)
from models.hub.hub_paths import hub_cache_dir, repo_cache_dir
from models.hub.hub_token import request_token
from models.hub.repo_plan import (
    RemoteFile,
    RepoPlan,
    bytes_present,
    check_disk_space,
    check_plan,
    fetch_plan,
    partial_path,
)


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

    def describe(self) -> str:
        """'12.3 GB of 61.1 GB · 48.0 MB/s · 20 min left', for the window."""
        from models.byte_sizes import format_bytes

        parts = [f"{format_bytes(self.bytes_done)} of {format_bytes(self.bytes_total)}"]
        if self.speed_bps:
            parts.append(f"{format_bytes(self.speed_bps)}/s")
        if self.eta_s is not None and self.speed_bps:
            minutes = self.eta_s / 60
            parts.append(f"{minutes:.0f} min left" if minutes >= 1 else "less than a minute left")
        return " · ".join(parts)


def open_partial(path: Path) -> BinaryIO:
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
                f"Download of {self.plan.repo_id} cancelled at {format_bytes(r.bytes_done)} of "
                f"{format_bytes(r.bytes_total)}; pull again to resume."
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
        self.inside(partial_path(blob), remote.name)
        present = bytes_present(self.plan, remote)
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
        partial = partial_path(blob)
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
                    raise Truncated
            except Exception as exc:
                if isinstance(exc, StoreError) or not is_transient(exc):
                    raise translate_error(exc, self.plan.repo_id, remote.name) from None
                have = partial.stat().st_size if partial.exists() else 0
                if have > before:
                    attempt = 0  # bytes arrived: this is a new failure, not the same one again
                attempt += 1
                if attempt > self.retry.attempts:
                    raise translate_error(exc, self.plan.repo_id, remote.name) from None
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
            handle = open_partial(partial)
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
    retry: RetryPolicy = DEFAULT_RETRY,
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
    present = sum(bytes_present(plan, f) for f in plan.files)
    reporter = _ProgressReporter(
        plan.repo_id, progress, plan.total_bytes, present, len(plan.files), progress_interval_s
    )
    downloader = _Downloader(plan, request_token(token), retry, sleep, cancel, reporter)
    try:
        return downloader.run()
    except StoreError:
        raise
    except Exception as exc:  # OSError from the cache folder (ENOSPC, permissions), unexpected HTTP
        raise translate_error(exc, plan.repo_id, reporter.file or None) from None
