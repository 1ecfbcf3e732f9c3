"""The repos already in huggingface_hub's cache: listing, inspecting, deleting, resolving a name."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from models.hub.hub_errors import ModelNotFound, StoreError
from models.hub.hub_paths import hub_cache_dir, is_repo_id, repo_cache_dir


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
