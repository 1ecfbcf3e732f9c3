"""Where checkpoints live on disk, and how a name given by a person becomes a folder.

A model is named by a local folder path or, once downloaded, by its Hub repo id
(``mlx-community/...``); repo ids resolve through huggingface_hub's standard cache with
``local_files_only=True``, so resolving never touches the network.
"""

from __future__ import annotations

from pathlib import Path


class ModelNotFound(LookupError):
    """A model name that is neither a folder nor a downloaded repo; the message says so."""


def resolve_model(spec: str) -> Path:
    """Return the checkpoint folder that ``spec`` (a path or a downloaded repo id) names."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
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
