"""Which model a saved KV cache belongs to: the checkpoint's folder and a content hash.

The hash covers ``config.json`` and the weight index (``model.safetensors.index.json``, or the
names and sizes of the weight files when there is no index), so a re-downloaded or re-quantized
model with the same folder name does not accept another model's cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelIdentity:
    name: str  # the checkpoint folder, resolved
    digest: str  # sha256 of config.json and the weight index


def model_identity(path: str | Path) -> ModelIdentity:
    """The identity of the checkpoint folder ``path``."""
    folder = Path(path).expanduser().resolve()
    digest = hashlib.sha256()
    digest.update((folder / "config.json").read_bytes())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        digest.update(index.read_bytes())
    else:
        for weights in sorted(folder.glob("*.safetensors")):
            digest.update(f"{weights.name}:{weights.stat().st_size}\n".encode())
    return ModelIdentity(str(folder), digest.hexdigest())
