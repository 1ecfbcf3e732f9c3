"""Where Llama Desk keeps its own small files (the model list a person added, license acceptance).

``data_dir()`` is ``$LLAMA_DESK_DATA_DIR`` when set (tests point it at a temporary folder),
otherwise ``platformdirs.user_data_dir("Llama Desk")`` (on macOS
``~/Library/Application Support/Llama Desk``). Model weights do not live here: they stay in
huggingface_hub's shared cache (see ``models.hub.store``). ``read_json``/``write_json`` read and
atomically replace one JSON document in that folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from models.atomic_files import replace_file

APP_NAME = "Llama Desk"
DATA_DIR_ENV = "LLAMA_DESK_DATA_DIR"


class UserDataError(OSError):
    """A file in the data folder could not be read or written; the message says which and why."""


def data_dir() -> Path:
    """The folder for Llama Desk's own files (not created here)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def read_json(name: str, default: dict) -> dict:
    """The JSON object stored as ``name`` in the data folder, or ``default`` when there is none."""
    path = data_dir() / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserDataError(f"{path} cannot be read ({exc}); fix or delete it.") from None
    if not isinstance(value, dict):
        raise UserDataError(f"{path} does not hold a JSON object; fix or delete it.")
    return value


def write_json(name: str, value: dict) -> Path:
    """Replace ``name`` in the data folder with ``value`` (written to a temporary file, then renamed)."""
    folder = data_dir()
    path = folder / name
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replace_file(path, text.encode("utf-8"))
    except OSError as exc:
        raise UserDataError(f"{path} cannot be written ({exc.strerror or exc}).") from None
    return path
