"""The files of a model folder, checked before anything reads them: regular files only, and
each kind of file no larger than a real checkpoint's could plausibly be.

mlx-vlm, mlx-lm, transformers and tokenizers open some of these files themselves (the
generation config, the tokenizer files, the chat templates), with no bound and following any
link: a ``generation_config.json`` linked to ``/dev/zero`` is read until memory runs out, a FIFO
blocks the load for ever, a 1 GB ``tokenizer.json`` aborts the process. So every entry of the
folder is checked here, by the regular-file rules, before the folder is handed to them: no
devices, FIFOs or sockets (nor links to them) anywhere in it, and the files that are read capped
by kind (``FILE_LIMITS``; Llama 4's own ``tokenizer.json`` is about 27 MB). Weights are not
capped here (their headers are, where they are read). Chat templates are also capped in
characters (``MAX_TEMPLATE_CHARS``), wherever the folder keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.regular_files import InputFileError, check_regular_file, read_regular_file

MB = 1024 * 1024

FILE_LIMITS = {
    "config.json": 4 * MB,
    "generation_config.json": 1 * MB,
    "tokenizer.json": 64 * MB,  # Llama 4's is about 27 MB
    "tokenizer_config.json": 16 * MB,
    "special_tokens_map.json": 1 * MB,
    "added_tokens.json": 16 * MB,
    "chat_template.json": 2 * MB,
    "chat_template.jinja": 1 * MB,
    "preprocessor_config.json": 1 * MB,
    "processor_config.json": 1 * MB,
    "model.safetensors.index.json": 64 * MB,
    "hf_quant_config.json": 1 * MB,
    "vocab.json": 64 * MB,
    "merges.txt": 64 * MB,
    "tokenizer.model": 64 * MB,
}
TEMPLATE_FOLDER = "additional_chat_templates"  # transformers reads every .jinja in it
MAX_TEMPLATE_CHARS = 1_000_000  # Llama 4's template is under 5,000


class FolderFileError(ValueError):
    """A file of the model folder that is refused, with a one-line reason."""


def check_folder_files(folder: Path) -> None:
    """Refuse ``folder`` when any entry in it (or in its template folder) is a device, a FIFO or
    a socket, or a link to one, or a file of a known kind is over its limit. Nothing is read."""
    try:
        entries = sorted(folder.iterdir())
        templates = folder / TEMPLATE_FOLDER
        if templates.is_dir():
            entries += sorted(templates.iterdir())
    except OSError as exc:
        raise FolderFileError(f"{folder.name} cannot be listed ({exc.strerror or exc}).") from None
    for entry in entries:
        limit = file_limit(entry)
        if limit is None and (entry.is_dir() or not entry.exists()):
            continue  # a folder (or a link to one), or a dangling link, that nothing reads
        label = entry.name if entry.parent == folder else f"{TEMPLATE_FOLDER}/{entry.name}"
        try:
            info = check_regular_file(entry, label)
        except InputFileError as exc:
            raise FolderFileError(str(exc)) from None
        if limit is not None and info.st_size > limit:
            raise FolderFileError(f"{label} is larger than {limit // MB} MB.")


def file_limit(path: Path) -> int | None:
    """The most bytes a file of this name may hold, or None for a file nothing reads whole."""
    if path.parent.name == TEMPLATE_FOLDER:
        return FILE_LIMITS["chat_template.jinja"] if path.suffix == ".jinja" else None
    return FILE_LIMITS.get(path.name)


def read_folder_file(path: Path) -> bytes:
    """The content of the model-folder file ``path``, under its limit (``FolderFileError``)."""
    try:
        return read_regular_file(path, file_limit(path) or 1 * MB, path.name)
    except InputFileError as exc:
        raise FolderFileError(str(exc)) from None


def read_folder_json(path: Path) -> dict:
    """A model-folder JSON file holding an object (``FolderFileError`` with the reason)."""
    try:
        value = json.loads(read_folder_file(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FolderFileError(f"{path.name} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise FolderFileError(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    except RecursionError:
        raise FolderFileError(f"{path.name} is nested too deeply.") from None
    if not isinstance(value, dict):
        raise FolderFileError(f"{path.name} does not hold a JSON object.")
    return value


def _templates_in(value: object) -> list[str]:
    """The template texts of a ``chat_template`` value: a string, or a list of named ones."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t["template"] for t in value if isinstance(t, dict) and isinstance(t.get("template"), str)]
    if isinstance(value, dict):
        return [t for t in value.values() if isinstance(t, str)]
    return []


def check_chat_templates(folder: Path, tokenizer_config: dict) -> None:
    """Refuse a chat template longer than ``MAX_TEMPLATE_CHARS``, wherever the folder keeps it."""
    found: list[tuple[str, list[str]]] = [
        ("tokenizer_config.json", _templates_in(tokenizer_config.get("chat_template")))
    ]
    for name in ("chat_template.json", "processor_config.json"):
        if (folder / name).is_file():
            found.append((name, _templates_in(read_folder_json(folder / name).get("chat_template"))))
    jinja = [folder / "chat_template.jinja"]
    if (folder / TEMPLATE_FOLDER).is_dir():
        jinja += sorted((folder / TEMPLATE_FOLDER).glob("*.jinja"))
    for path in jinja:
        if path.is_file():
            found.append((path.name, [read_folder_file(path).decode("utf-8", errors="replace")]))
    for name, templates in found:
        if any(len(template) > MAX_TEMPLATE_CHARS for template in templates):
            raise FolderFileError(
                f"{folder.name}'s chat template in {name} is longer than {MAX_TEMPLATE_CHARS:,} "
                "characters; it is refused."
            )
