"""The one name a model goes by, from its folder: shown in the window and stored as an answer's author.

A folder in huggingface_hub's cache (``…/models--<owner>--<name>/snapshots/<commit>``) is named
by its repo: the catalog's display name when the repo is in the shipped catalog, else the repo
id; any other folder by its own name. A snapshot's commit hash is never a name.
``shown_model_name`` turns a name stored before this rule (a 40-hex commit) back into the name
of the repo the cache holds it under, and leaves any other name as it is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def repo_id_of_snapshot(path: str | Path) -> str | None:
    """The repo id whose cached snapshot ``path`` is (``…/models--o--n/snapshots/<commit>``), or None."""
    folder = Path(path).expanduser()
    if folder.parent.name != "snapshots":
        return None
    parts = folder.parent.parent.name.split("--")
    if len(parts) < 3 or parts[0] != "models":
        return None
    return "/".join(parts[1:])


@lru_cache(maxsize=32)
def _catalog_name(repo_id: str) -> str:
    from models.hub.catalog import load_catalog

    wanted = repo_id.lower()
    return next((e.display_name for e in load_catalog() if (e.repo_id or "").lower() == wanted), repo_id)


def model_name(path: str | Path) -> str:
    """The model's name: catalog name or repo id for a cached snapshot, else the folder's name."""
    repo_id = repo_id_of_snapshot(path)
    if repo_id is not None:
        return _catalog_name(repo_id)
    return Path(path).expanduser().name


def shown_model_name(stored: str) -> str:
    """A stored model name as it is shown: a commit hash becomes its repo's name when the hub
    cache still holds that snapshot; anything else is returned unchanged."""
    if not _COMMIT.match(stored):
        return stored
    from models.hub.hub_paths import hub_cache_dir

    return _snapshot_name(str(hub_cache_dir()), stored) or stored


@lru_cache(maxsize=64)
def _snapshot_name(cache: str, commit: str) -> str | None:
    try:
        found = next(Path(cache).glob(f"models--*/snapshots/{commit}"), None)
    except OSError:
        return None
    return model_name(found) if found is not None else None
