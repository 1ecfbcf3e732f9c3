"""Where huggingface_hub's cache keeps a repo, and what reads as a Hub repo id."""

from __future__ import annotations

import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


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
