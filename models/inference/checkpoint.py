"""What a local Llama 4 checkpoint folder holds, checked before anything loads.

A folder is usable when it has a ``config.json`` for a Llama 4 model with a vision tower,
weights as safetensors only (pickled ``.bin``/``.pth`` weights are refused: they can run code),
a tokenizer with its config, and the preprocessor config the image tiling reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.inference.preprocess import ProcessorConfig
from models.regular_files import InputFileError, check_regular_file, read_regular_file

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # config.json, the index and the processor configs


class CheckpointError(ValueError):
    """A folder that is not a usable MLX Llama 4 checkpoint, with the reason."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    config: dict
    processor: ProcessorConfig

    @property
    def name(self) -> str:
        """The model's name (catalog name, repo id or folder name; never a snapshot's commit)."""
        from models.hub.model_names import model_name

        return model_name(self.path)

    @property
    def quantization(self) -> dict | None:
        return self.config.get("quantization") or self.config.get("quantization_config")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(read_regular_file(path, MAX_CONFIG_BYTES, path.name).decode("utf-8"))
    except InputFileError as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path.name} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path.name} does not hold a JSON object.")
    return value


def _require_regular_files(files: list[Path]) -> None:
    """Refuse a weight or tokenizer file that is a device or a FIFO (symlinks are followed)."""
    for file in files:
        try:
            check_regular_file(file, f"{file.parent.name}/{file.name}")
        except InputFileError as exc:
            raise CheckpointError(str(exc)) from None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Validate ``path`` as an MLX Llama 4 checkpoint; raise ``CheckpointError`` if it is not."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist.")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder.")
    config_path = path / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{path.name} has no config.json; it is not a model folder.")
    config = _read_json(config_path)
    if config.get("model_type") != "llama4":
        raise CheckpointError(f"{path.name} is a '{config.get('model_type', 'unknown')}' model, not Llama 4.")
    for key in ("model_file", "auto_map"):
        if key in config:
            raise CheckpointError(
                f"{path.name}'s config.json asks to run code from the model folder ({key}); "
                "Llama Desk never runs code that comes with a model."
            )
    if not isinstance(config.get("vision_config"), dict) or not isinstance(config.get("text_config"), dict):
        raise CheckpointError(f"{path.name}'s config.json lacks text_config or vision_config.")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pth", ".pt", ".ckpt")]
        if pickled:
            raise CheckpointError(
                f"{path.name} has only pickled weights ({pickled[0]}); Llama Desk loads safetensors only."
            )
        raise CheckpointError(f"{path.name} has no .safetensors weights.")
    _require_regular_files(weights)
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = set(_read_json(index).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (path / s).exists())
        if missing:
            raise CheckpointError(f"{path.name} is missing weight file {missing[0]}.")
    for required in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        if not (path / required).exists():
            raise CheckpointError(f"{path.name} is missing {required}.")
    _require_regular_files([path / "tokenizer.json", path / "tokenizer_config.json"])
    processor_json = path / "processor_config.json"
    processor = ProcessorConfig.from_dicts(
        _read_json(path / "preprocessor_config.json"),
        _read_json(processor_json) if processor_json.exists() else None,
    )
    vision = config["vision_config"]
    if vision.get("image_size") and int(vision["image_size"]) != processor.tile:
        raise CheckpointError(
            f"{path.name}: tile size {processor.tile} does not match the vision tower's "
            f"{vision['image_size']}."
        )
    return Checkpoint(path=path, config=config, processor=processor)
