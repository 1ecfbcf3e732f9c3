"""The models a person can pick: the shipped Llama 4 catalog, the ones they added, and their status.

``catalog.json`` (shipped beside this module) lists the mlx-community conversions of Llama 4
Scout (109B total / 17B active parameters, 16 experts) and Maverick (400B / 17B, 128 experts)
at several bit widths, with download sizes that are estimates until ``check_online`` asks the
Hub. A person can add any local checkpoint folder (validated with
``models.inference.checkpoint.read_checkpoint``) or any Hub repo id; those are kept in
``user_models.json`` in the data folder (``models.app_folders.data_dir()``).

Public API (no Qt):

- ``load_catalog()`` / ``user_models()`` / ``all_models()`` -> ``CatalogEntry`` lists;
  ``describe_repo(repo_id)`` (the catalog's entry, or a guess from the name);
  ``add_user_model(spec)`` / ``remove_user_model(key)``.
- ``check_online(entry)`` -> ``OnlineStatus`` (state ``available``, ``gated``, ``unavailable``,
  ``offline``), never raising: the real size from ``model_info(files_metadata=True)``.
- ``list_models(online=False)`` -> ``ModelListing`` rows merging the catalog, the user's entries
  and the Llama 4 repos already in the shared cache, each with a ``status``:
  ``downloaded``, ``partial`` (an interrupted download, resumable), ``available`` (can be
  pulled; verified only with ``online=True``), ``gated``, ``unavailable``, ``offline`` (the
  online check could not reach the Hub), ``local`` (a valid folder) or ``invalid``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from models.app_folders import UserDataError, read_json, write_json
from models.hub import store
from models.hub.model_names import model_name

USER_MODELS_FILE = "user_models.json"

Family = Literal["scout", "maverick", "other"]
OnlineState = Literal["available", "gated", "unavailable", "offline"]
Status = Literal["downloaded", "partial", "available", "gated", "unavailable", "offline", "local", "invalid"]


class CatalogError(ValueError):
    """A model that cannot be added (not a checkpoint folder, not a repo id); the message says why."""


@dataclass(frozen=True)
class CatalogEntry:
    """One pickable model: a Hub repo (``repo_id``) or a local folder (``path``); ``key`` is either."""

    key: str
    display_name: str
    family: Family
    repo_id: str | None = None
    path: Path | None = None
    total_params: int | None = None
    active_params: int | None = None
    experts: int | None = None
    bits: int | None = None
    expected_bytes: int | None = None
    expected_bytes_estimated: bool = True
    source: Literal["catalog", "user", "cache"] = "catalog"


@dataclass(frozen=True)
class OnlineStatus:
    """What the Hub says about a repo: ``state``, its download size and commit, a one-line message."""

    state: OnlineState
    size_bytes: int | None = None
    commit: str | None = None
    message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "available"


@dataclass(frozen=True)
class ModelListing:
    """One row of the model manager."""

    entry: CatalogEntry
    status: Status
    size_bytes: int | None  # the download's size: on disk when downloaded, else real or estimated
    size_estimated: bool
    bytes_on_disk: int  # finished files plus partial ones
    path: Path | None  # what Engine.load takes, when downloaded or local
    message: str = ""

    @property
    def key(self) -> str:
        return self.entry.key


_SCOUT = {"family": "scout", "total_params": 109_000_000_000, "active_params": 17_000_000_000, "experts": 16}
_MAVERICK = {
    "family": "maverick",
    "total_params": 400_000_000_000,
    "active_params": 17_000_000_000,
    "experts": 128,
}


def load_catalog() -> list[CatalogEntry]:
    """The shipped Llama 4 variants, in catalog order."""
    text = resources.files("models.hub").joinpath("catalog.json").read_text(encoding="utf-8")
    entries = []
    for item in json.loads(text)["models"]:
        entries.append(
            CatalogEntry(
                key=item["repo_id"],
                display_name=item["display_name"],
                family=item["family"],
                repo_id=item["repo_id"],
                total_params=item.get("total_params"),
                active_params=item.get("active_params"),
                experts=item.get("experts"),
                bits=item.get("bits"),
                expected_bytes=item.get("expected_bytes"),
                expected_bytes_estimated=bool(item.get("expected_bytes_estimated", True)),
                source="catalog",
            )
        )
    return entries


def _guess_from_name(repo_id: str) -> dict:
    """Family, sizes and bits guessed from a repo name like ``...Scout-17B-16E...-4bit``."""
    lowered = repo_id.lower()
    guess: dict = (
        dict(_SCOUT)
        if "scout" in lowered
        else dict(_MAVERICK)
        if "maverick" in lowered
        else {"family": "other"}
    )
    bits = re.search(r"(\d+)[-_]?bit", lowered)
    if bits:
        guess["bits"] = int(bits.group(1))
    return guess


def _entry_for_folder(path: Path, display_name: str | None = None) -> CatalogEntry:
    """Validate ``path`` as a checkpoint and describe it (raises CatalogError with the reason)."""
    from models.inference.checkpoint import CheckpointError, read_checkpoint

    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as exc:
        raise CatalogError(f"{path} cannot be added: {exc}") from None
    text = checkpoint.config.get("text_config", {})
    experts = text.get("num_local_experts")
    family: dict = {16: _SCOUT, 128: _MAVERICK}.get(experts, {"family": "other", "experts": experts})
    quantization = checkpoint.quantization or {}
    size = sum(p.stat().st_size for p in checkpoint.path.iterdir() if p.is_file())
    return CatalogEntry(
        key=str(checkpoint.path),
        display_name=display_name or checkpoint.name,  # a snapshot is named by its repo
        path=checkpoint.path,
        bits=quantization.get("bits"),
        expected_bytes=size,
        expected_bytes_estimated=False,
        source="user",
        **family,
    )


def describe_repo(repo_id: str) -> CatalogEntry:
    """What is known of ``repo_id``: its catalog entry (family, bit width, sizes), or for a repo
    not in the catalog an entry whose family and bits are guessed from its name."""
    wanted = repo_id.lower()
    known = (entry for entry in load_catalog() if (entry.repo_id or "").lower() == wanted)
    return next(known, None) or _entry_for_repo(repo_id)


def _entry_for_repo(repo_id: str, display_name: str | None = None) -> CatalogEntry:
    return CatalogEntry(
        key=repo_id,
        display_name=display_name or repo_id.rsplit("/", 1)[-1],
        repo_id=repo_id,
        expected_bytes=None,
        source="user",
        **_guess_from_name(repo_id),
    )


def _read_user_records() -> list[dict]:
    try:
        records = read_json(USER_MODELS_FILE, {"models": []}).get("models", [])
    except UserDataError as exc:
        raise CatalogError(str(exc)) from None
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def user_models() -> list[CatalogEntry]:
    """The models the person added, in the order added (raises CatalogError if the file is unreadable).

    A folder that went away is still listed (``list_models`` shows it as ``invalid``).
    """
    entries = []
    for record in _read_user_records():
        name = record.get("display_name")
        if record.get("repo_id"):
            entries.append(_entry_for_repo(record["repo_id"], name))
        elif record.get("path"):
            path = Path(record["path"])
            try:
                entries.append(_entry_for_folder(path, name))
            except CatalogError:
                entries.append(
                    CatalogEntry(
                        key=str(path),
                        display_name=name or model_name(path),
                        family="other",
                        path=path,
                        expected_bytes=None,
                        source="user",
                    )
                )
    return entries


def all_models() -> list[CatalogEntry]:
    """The catalog, then the person's additions (an addition that repeats a catalog repo is dropped)."""
    catalog = load_catalog()
    known = {e.key for e in catalog}
    return catalog + [e for e in user_models() if e.key not in known]


def add_user_model(spec: str, display_name: str | None = None) -> CatalogEntry:
    """Add a local checkpoint folder or a Hub repo id; return its entry (raises CatalogError)."""
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.exists():
        entry = _entry_for_folder(path.absolute(), display_name)
        record = {"path": str(entry.path)}
    elif store.is_repo_id(spec):
        entry = _entry_for_repo(spec, display_name)
        record = {"repo_id": spec}
    else:
        raise CatalogError(f"{spec} is neither a checkpoint folder nor a Hub repo id (owner/name).")
    if display_name:
        record["display_name"] = display_name
    records = [r for r in _read_user_records() if (r.get("repo_id") or r.get("path")) != entry.key]
    records.append(record)
    try:
        write_json(USER_MODELS_FILE, {"models": records})
    except UserDataError as exc:
        raise CatalogError(str(exc)) from None
    return entry


def remove_user_model(key: str) -> bool:
    """Forget a model the person added (files are never deleted); return whether it was listed."""
    wanted = {key, str(Path(key).expanduser().absolute())}
    records = _read_user_records()
    kept = [r for r in records if (r.get("repo_id") or r.get("path")) not in wanted]
    if len(kept) == len(records):
        return False
    try:
        write_json(USER_MODELS_FILE, {"models": kept})
    except UserDataError as exc:
        raise CatalogError(str(exc)) from None
    return True


def check_online(entry: CatalogEntry, token: str | None = None) -> OnlineStatus:
    """Ask the Hub whether ``entry`` can be downloaded and how big it really is; never raises.

    A local folder is checked on disk instead. A gated repo is ``gated`` when this machine's
    token (if any) cannot fetch its files yet.
    """
    if entry.repo_id is None:
        try:
            _entry_for_folder(entry.path or Path(entry.key))
        except CatalogError as exc:
            return OnlineStatus("unavailable", message=str(exc))
        return OnlineStatus("available", size_bytes=entry.expected_bytes)
    try:
        plan = store.fetch_plan(entry.repo_id, token=token, retry=store.RetryPolicy(attempts=1))
        if plan.gated:
            store.probe_access(plan, token=token)
    except store.GatedRepoError as exc:
        return OnlineStatus("gated", message=str(exc))
    except store.NetworkError as exc:
        return OnlineStatus("offline", message=str(exc))
    except store.StoreError as exc:
        return OnlineStatus("unavailable", message=str(exc))
    return OnlineStatus("available", size_bytes=plan.total_bytes, commit=plan.commit)


def _estimated_size(entry: CatalogEntry) -> int | None:
    """A repo's size before it is downloaded: the memory planner's estimate of its weights where
    it has one (one size in the menus, ``models list`` and ``models fit``), else the catalog's."""
    if entry.expected_bytes_estimated and entry.repo_id is not None:
        from models.memory.catalog_configs import estimated_download_bytes

        return estimated_download_bytes(entry.repo_id) or entry.expected_bytes
    return entry.expected_bytes


def _listing_for(entry: CatalogEntry, online: bool, token: str | None) -> ModelListing:
    if entry.repo_id is None:
        path = entry.path or Path(entry.key)
        try:
            _entry_for_folder(path)
        except CatalogError as exc:
            return ModelListing(entry, "invalid", entry.expected_bytes, False, 0, None, str(exc))
        return ModelListing(entry, "local", entry.expected_bytes, False, entry.expected_bytes or 0, path)
    cached = store.downloaded_model(entry.repo_id)
    on_disk = cached.size_on_disk + cached.partial_bytes if cached else 0
    if cached is not None and cached.complete:
        return ModelListing(entry, "downloaded", cached.size_on_disk, False, on_disk, cached.path)
    status: Status = "partial" if on_disk else "available"
    size, estimated, message = _estimated_size(entry), entry.expected_bytes_estimated, ""
    if online:
        checked = check_online(entry, token)
        size = checked.size_bytes if checked.size_bytes is not None else size
        estimated = estimated and checked.size_bytes is None
        message = checked.message
        if checked.state != "available":
            status = checked.state
    return ModelListing(entry, status, size, estimated, on_disk, None, message)


def list_models(online: bool = False, token: str | None = None) -> list[ModelListing]:
    """Every model to show: catalog, additions, then other Llama 4 repos found in the shared cache."""
    rows = [_listing_for(entry, online, token) for entry in all_models()]
    known = {row.key for row in rows}
    for cached in store.list_downloaded():
        if cached.repo_id in known or cached.model_type != "llama4":
            continue
        entry = replace(
            _entry_for_repo(cached.repo_id),
            source="cache",
            expected_bytes=cached.size_on_disk,
            expected_bytes_estimated=False,
        )
        rows.append(_listing_for(entry, False, token))
    return rows
