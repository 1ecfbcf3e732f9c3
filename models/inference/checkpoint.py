"""What a local Llama 4 checkpoint folder holds, checked before anything loads.

A folder is usable when it has a ``config.json`` for a Llama 4 model with a vision tower,
weights as safetensors only (pickled ``.bin``/``.pth`` weights are refused: they can run code),
a tokenizer with its config, and the preprocessor config the image tiling reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.inference.folder_files import (
    FILE_LIMITS,
    FolderFileError,
    check_chat_templates,
    check_folder_files,
    read_folder_json,
)
from models.inference.preprocess import ProcessorConfig
from models.inference.weight_check import WeightsMismatch, check_config_against_weights, read_tensor_shapes
from models.regular_files import InputFileError, check_regular_file

MAX_CONFIG_BYTES = FILE_LIMITS["config.json"]


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
        return read_folder_json(path)
    except FolderFileError as exc:
        raise CheckpointError(str(exc)) from None


def _require_regular_files(files: list[Path]) -> None:
    """Refuse a weight or tokenizer file that is a device or a FIFO (symlinks are followed)."""
    for file in files:
        try:
            check_regular_file(file, f"{file.parent.name}/{file.name}")
        except InputFileError as exc:
            raise CheckpointError(str(exc)) from None


def _weight_files(path: Path) -> list[Path]:
    """The weight files mlx-vlm reads: the index's shards (each a file of the folder), or every
    ``.safetensors`` file but ``consolidated.safetensors`` when the index names none."""
    index = path / "model.safetensors.index.json"
    every = [p for p in sorted(path.glob("*.safetensors")) if p.name != "consolidated.safetensors"]
    if not index.exists():
        return every
    weight_map = _read_json(index).get("weight_map", {})
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) for s in weight_map.values()):
        raise CheckpointError(f"{path.name}'s model.safetensors.index.json has no valid weight_map.")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if Path(shard).name != shard or shard in ("", ".", "..") or not shard.endswith(".safetensors"):
            raise CheckpointError(
                f"{path.name}'s model.safetensors.index.json names weight file {shard!r}, which is "
                "not a file in the model folder."
            )
    missing = [s for s in shards if not (path / s).exists()]
    if missing:
        raise CheckpointError(f"{path.name} is missing weight file {missing[0]}.")
    return [path / s for s in shards] or every


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Validate ``path`` as an MLX Llama 4 checkpoint; raise ``CheckpointError`` if it is not.

    Every file of the folder passes the regular-file rules with its limit first
    (``models.inference.folder_files``), and the config is checked against the weights'
    headers (``models.inference.weight_check``), so nothing built from it can run away."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist.")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder.")
    try:
        check_folder_files(path)
    except FolderFileError as exc:
        raise CheckpointError(str(exc)) from None
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
    shard_files = _weight_files(path)
    for required in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        if not (path / required).exists():
            raise CheckpointError(f"{path.name} is missing {required}.")
    _require_regular_files([path / "tokenizer.json", path / "tokenizer_config.json"])
    try:
        check_chat_templates(path, read_folder_json(path / "tokenizer_config.json"))
        check_config_against_weights(config, read_tensor_shapes(shard_files))
    except (FolderFileError, WeightsMismatch) as exc:
        message = str(exc)
        if not message.startswith(path.name):
            message = f"{path.name}'s {message}"
        raise CheckpointError(message) from None
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
