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

The work is split by job, and this module gathers their public names, so ``models.hub.store``
stays the one import for callers: ``hub_paths`` (cache folders, repo ids), ``hub_errors`` (the
``StoreError`` family, translating and retrying), ``hub_token`` (the keychain), ``repo_plan``
(listing, checking, disk space), ``downloader`` (the bytes) and ``hub_cache`` (what is on disk).

Every failure is a ``StoreError`` whose message is one user-facing line: ``GatedRepoError``,
``RepoNotFound``, ``NetworkError``, ``DiskFullError``, ``ChecksumError``, ``DownloadCancelled``,
``UnsafeDownloadError``, ``TokenStoreError``; ``ModelNotFound`` when a name is neither a folder nor
downloaded.
"""

from models.hub.downloader import DownloadProgress, download_model
from models.hub.hub_cache import (
    DownloadedModel,
    delete_model,
    downloaded_model,
    list_downloaded,
    resolve_model,
)
from models.hub.hub_errors import (
    DEFAULT_RETRY,
    ChecksumError,
    DiskFullError,
    DownloadCancelled,
    GatedRepoError,
    ModelNotFound,
    NetworkError,
    RepoNotFound,
    RetryPolicy,
    StoreError,
    TokenStoreError,
    UnsafeDownloadError,
)
from models.hub.hub_paths import hub_cache_dir, hub_page, is_repo_id, repo_cache_dir
from models.hub.hub_token import KEYRING_SERVICE, KEYRING_USER, clear_token, get_token, set_token
from models.hub.repo_plan import (
    ALLOW_PATTERNS,
    IGNORE_PATTERNS,
    MAX_FILE_BYTES,
    RemoteFile,
    RepoPlan,
    check_disk_space,
    check_plan,
    fetch_plan,
    probe_access,
    remaining_bytes,
)

__all__ = [
    "ALLOW_PATTERNS",
    "DEFAULT_RETRY",
    "IGNORE_PATTERNS",
    "KEYRING_SERVICE",
    "KEYRING_USER",
    "MAX_FILE_BYTES",
    "ChecksumError",
    "DiskFullError",
    "DownloadCancelled",
    "DownloadProgress",
    "DownloadedModel",
    "GatedRepoError",
    "ModelNotFound",
    "NetworkError",
    "RemoteFile",
    "RepoNotFound",
    "RepoPlan",
    "RetryPolicy",
    "StoreError",
    "TokenStoreError",
    "UnsafeDownloadError",
    "check_disk_space",
    "check_plan",
    "clear_token",
    "delete_model",
    "download_model",
    "downloaded_model",
    "fetch_plan",
    "get_token",
    "hub_cache_dir",
    "hub_page",
    "is_repo_id",
    "list_downloaded",
    "probe_access",
    "remaining_bytes",
    "repo_cache_dir",
    "resolve_model",
    "set_token",
]
