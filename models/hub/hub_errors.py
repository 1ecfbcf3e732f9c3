"""The download failures a person can meet, each a ``StoreError`` with a one-line message, and
how huggingface_hub, httpx and OS errors become them (``translate_error``); ``call_with_retries``
retries what may pass (dropped connections, timeouts, 408/429/5xx) with ``RetryPolicy``."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from models.hub.hub_paths import hub_cache_dir, hub_page

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


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing request is retried: ``attempts`` retries, delays doubling from ``base``."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()


class Truncated(Exception):
    """The server ended a response before the whole file arrived (treated like a dropped connection)."""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException, connect_errors: bool = True) -> bool:
    """Whether retrying may help. ``connect_errors=False`` fails fast when the server is unreachable."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled | httpx.ProxyError | httpx.UnsupportedProtocol):
        return False
    if not connect_errors and isinstance(exc, httpx.ConnectError):
        return False
    if isinstance(exc, httpx.TransportError | Truncated):
        return True
    return isinstance(exc, HfHubHTTPError) and _status(exc) in (408, 429, 500, 502, 503, 504)


def translate_error(exc: BaseException, repo_id: str, file: str | None = None) -> StoreError:
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
    if isinstance(exc, httpx.TransportError | Truncated):
        return NetworkError(f"The connection kept dropping while downloading {where}; pull again to resume.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk is full (writing {where} to {hub_cache_dir()}); free up space and "
            "pull again to resume."
        )
    if isinstance(exc, OSError):
        return StoreError(f"Cannot write {where} to {hub_cache_dir()}: {exc.strerror or exc}.")
    return StoreError(f"Downloading {where} failed: {exc}")


def call_with_retries(
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
            if not is_transient(exc, connect_errors=False):
                raise translate_error(exc, repo_id) from None
            attempt += 1
            if attempt > retry.attempts:
                raise translate_error(exc, repo_id) from None
            sleep(retry.delay(attempt))
