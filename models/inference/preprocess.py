"""Llama 4 image preprocessing, as Meta's reference processor does it.

This follows transformers' ``Llama4ImageProcessor`` step by step: pick the best-fit canvas of
square tiles (all grids of at most ``max_patches`` tiles), resize the image into it without
distortion (never upscaling past one tile side unless the image is smaller than a tile), pad
right and bottom with black, cut the canvas into tiles, and, when there is more than one tile,
append a global tile (the whole image resized to one tile). The prompt then holds, per image,
``<|image_start|>``, each tile's ``<|patch|>`` run with x/y separators, ``<|image|>``, the
global tile's run and ``<|image_end|>``: exactly as many ``<|patch|>`` tokens as the vision
tower yields features.

mlx-vlm 0.7.10's own Llama 4 processor stretches to a grid and drops the global tile, so the
app uses this module instead and hands ``input_ids``/``pixel_values`` to mlx-vlm's model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from models.inference.images import to_rgb


@dataclass(frozen=True)
class ProcessorConfig:
    """What the checkpoint's preprocessor/processor configs say."""

    tile: int = 336
    max_patches: int = 16
    patch_size: int = 14
    pixel_shuffle_ratio: float = 0.5
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: int = 2  # PIL/transformers BILINEAR

    @property
    def patches_per_tile(self) -> int:
        """Features the vision tower yields per tile (after pixel shuffle)."""
        per_side = self.tile // self.patch_size
        downsample = int(round(1.0 / (self.pixel_shuffle_ratio**2)))
        return per_side * per_side // downsample

    @classmethod
    def from_dicts(cls, preprocessor: dict, processor: dict | None = None) -> ProcessorConfig:
        size = preprocessor.get("size", 336)
        if isinstance(size, dict):
            height, width = size.get("height", 336), size.get("width", 336)
            if height != width:
                raise ValueError(f"tiles must be square, the preprocessor says {height}x{width}")
            size = height
        processor = processor or {}
        return cls(
            tile=int(size),
            max_patches=int(preprocessor.get("max_patches", 16)),
            patch_size=int(processor.get("patch_size", 14)),
            pixel_shuffle_ratio=float(processor.get("pixel_shuffle_ratio", 0.5)),
            image_mean=tuple(preprocessor.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(preprocessor.get("image_std", (0.5, 0.5, 0.5))),
            resample=int(preprocessor.get("resample", 2)),
        )


@dataclass(frozen=True)
class TilePlan:
    """How one image is cut: a rows x cols grid, plus a global tile when rows*cols > 1."""

    rows: int
    cols: int
    resized: tuple[int, int]  # (height, width) of the image inside the canvas
    canvas: tuple[int, int]  # (height, width) = (rows*tile, cols*tile)

    @property
    def has_global_tile(self) -> bool:
        return self.rows * self.cols > 1

    @property
    def tiles(self) -> int:
        return self.rows * self.cols + (1 if self.has_global_tile else 0)


@lru_cache(maxsize=8)
def supported_grids(max_patches: int) -> tuple[tuple[int, int], ...]:
    """All (rows, cols) grids with at most ``max_patches`` tiles, in the reference's order."""
    by_ratio: dict[float, list[tuple[int, int]]] = {}
    for n in range(max_patches, 0, -1):
        factors = sorted({d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)})
        for rows in factors:
            by_ratio.setdefault(rows / (n // rows), []).append((rows, n // rows))
    return tuple(grid for grids in by_ratio.values() for grid in grids)


def plan_tiles(width: int, height: int, config: ProcessorConfig) -> TilePlan:
    """Choose the canvas for a ``width`` x ``height`` image, as ``get_best_fit`` does."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    tile = config.tile
    scales = []
    for rows, cols in supported_grids(config.max_patches):
        # float32, as the reference computes these in torch's default dtype
        scale = min(np.float32(cols * tile) / np.float32(width), np.float32(rows * tile) / np.float32(height))
        scales.append((scale, rows, cols))
    upscales = [s for s, _, _ in scales if s >= 1]
    best_scale = min(upscales) if upscales else max(s for s, _, _ in scales)
    best = [(r, c) for s, r, c in scales if s == best_scale]
    rows, cols = min(best, key=lambda rc: rc[0] * rc[1])  # least padding; first on ties
    canvas_h, canvas_w = rows * tile, cols * tile
    # Never upsample past one tile side (unless the image is smaller than a tile).
    limit_h = min(max(height, tile), canvas_h)
    limit_w = min(max(width, tile), canvas_w)
    # The reference does this arithmetic in float32 where a limit is the canvas side (a torch
    # tensor: min() returns it only when it is strictly smaller) and in float64 otherwise.
    h_is_tensor = canvas_h < max(height, tile)
    w_is_tensor = canvas_w < max(width, tile)
    scale_w = np.float32(limit_w) / np.float32(width) if w_is_tensor else limit_w / width
    scale_h = np.float32(limit_h) / np.float32(height) if h_is_tensor else limit_h / height

    def scaled(side: int, scale) -> int:
        product = np.float32(side) * scale if isinstance(scale, np.floating) else side * scale
        return math.floor(product)

    if scale_w < scale_h:
        new_w, new_h = limit_w, min(scaled(height, scale_w), limit_h)
    else:
        new_h, new_w = limit_h, min(scaled(width, scale_h), limit_w)
    return TilePlan(rows, cols, (max(new_h, 1), max(new_w, 1)), (canvas_h, canvas_w))


def _normalize(image: Image.Image, config: ProcessorConfig) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(config.image_mean, np.float32)
    std = np.asarray(config.image_std, np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)  # CHW


def preprocess_image(image: Image.Image, config: ProcessorConfig) -> tuple[np.ndarray, TilePlan]:
    """Return ``(pixel_values, plan)``; pixel_values is float32 (tiles, 3, tile, tile)."""
    if image.mode != "RGB":
        image = to_rgb(image)  # scales 16-bit and float images; Pillow's convert clips them
    plan = plan_tiles(image.width, image.height, config)
    tile = config.tile
    new_h, new_w = plan.resized
    resized = image if (new_w, new_h) == image.size else image.resize((new_w, new_h), config.resample)
    canvas = Image.new("RGB", (plan.canvas[1], plan.canvas[0]), (0, 0, 0))
    canvas.paste(resized, (0, 0))
    full = _normalize(canvas, config)
    tiles = (
        full.reshape(3, plan.rows, tile, plan.cols, tile)
        .transpose(1, 3, 0, 2, 4)
        .reshape(plan.rows * plan.cols, 3, tile, tile)
    )
    if plan.has_global_tile:
        global_tile = _normalize(image.resize((tile, tile), config.resample), config)
        tiles = np.concatenate([tiles, global_tile[None]], axis=0)
    return np.ascontiguousarray(tiles), plan


def image_token_string(plan: TilePlan, patches_per_tile: int) -> str:
    """The prompt text that stands for one image (the reference's ``_prompt_split_image``)."""
    run = "<|patch|>" * patches_per_tile
    parts = ["<|image_start|>"]
    if plan.has_global_tile:
        for _ in range(plan.rows):
            parts.append("<|tile_x_separator|>".join([run] * plan.cols))
            parts.append("<|tile_y_separator|>")
    parts += ["<|image|>", run, "<|image_end|>"]
    return "".join(parts)
