"""Llama 4 tiling against the reference algorithm (transformers' Llama4ImageProcessor)."""

import numpy as np
import pytest
from PIL import Image

from models.inference.preprocess import (
    ProcessorConfig,
    image_token_string,
    plan_tiles,
    preprocess_image,
    supported_grids,
)

REAL = ProcessorConfig(tile=336, max_patches=16)


@pytest.mark.parametrize(
    "size, grid, tiles",
    [
        ((640, 480), (2, 2), 5),
        ((1024, 768), (3, 4), 13),
        ((1920, 1080), (3, 5), 16),
        ((4032, 3024), (3, 4), 13),
        ((800, 200), (1, 3), 4),
        ((300, 900), (3, 1), 4),
        ((336, 336), (1, 1), 1),
        ((100, 100), (1, 1), 1),
    ],
)
def test_reference_grids(size, grid, tiles):
    """The figures Meta's processor gives with 336-px tiles and max_patches 16."""
    plan = plan_tiles(*size, REAL)
    assert (plan.rows, plan.cols) == grid
    assert plan.tiles == tiles
    assert plan.has_global_tile == (tiles > 1)


def test_supported_grids_are_every_grid_up_to_max_patches():
    grids = set(supported_grids(16))
    assert grids == {(r, c) for r in range(1, 17) for c in range(1, 17) if r * c <= 16}
    assert len(supported_grids(16)) == len(grids)


def reference_best_fit(width, height, tile, max_patches):
    """An independent transcription of get_best_fit: smallest upscale, else least downscale."""
    options = []
    for rows in range(1, max_patches + 1):
        for cols in range(1, max_patches // rows + 1):
            scale = min(
                np.float32(cols * tile) / np.float32(width), np.float32(rows * tile) / np.float32(height)
            )
            options.append((scale, rows * cols, rows, cols))
    ups = [o for o in options if o[0] >= 1]
    pick = min(o[0] for o in ups) if ups else max(o[0] for o in options)
    best = [o for o in options if o[0] == pick]
    return min(best, key=lambda o: o[1])[2:]


@pytest.mark.parametrize("size", [(57, 1300), (2000, 90), (999, 1001), (1, 1), (5000, 5000), (337, 335)])
def test_best_fit_matches_reference_rule(size):
    plan = plan_tiles(*size, REAL)
    assert (plan.rows, plan.cols) == reference_best_fit(*size, 336, 16)


def test_aspect_ratio_kept_by_padding_not_stretching():
    config = ProcessorConfig(tile=56, max_patches=16)
    # A white 112x56 image on a 56x168 canvas would be stretched by a grid resize; here it is
    # resized without distortion and padded with black (-1 after normalisation).
    image = Image.new("RGB", (100, 40), (255, 255, 255))
    pixels, plan = preprocess_image(image, config)
    assert (plan.rows, plan.cols) == (1, 2)
    height, width = plan.resized
    assert abs(width / height - 100 / 40) < 0.05
    grid = pixels[:2]
    assert np.allclose(grid[0, :, :height, :], 1.0)  # image area: white
    assert np.allclose(grid[0, :, height:, :], -1.0)  # padding below: black
    assert pixels.shape == (3, 3, 56, 56)  # 2 tiles + the global tile


def test_global_tile_is_whole_image():
    config = ProcessorConfig(tile=56, max_patches=16)
    image = Image.new("RGB", (112, 56), (0, 0, 0))
    image.paste((255, 255, 255), (56, 0, 112, 56))  # right half white
    pixels, plan = preprocess_image(image, config)
    assert plan.tiles == 3
    left, right, global_tile = pixels
    assert np.allclose(left, -1.0) and np.allclose(right, 1.0)
    assert global_tile[:, :, :20].mean() < -0.9 and global_tile[:, :, -20:].mean() > 0.9


@pytest.mark.parametrize(
    "size, expected_patches",
    [((56, 56), 4), ((112, 56), 12), ((56, 112), 12), ((20, 20), 4), ((4000, 3000), 13 * 4)],
)
def test_patch_token_count_equals_features(size, expected_patches):
    config = ProcessorConfig(tile=56, max_patches=16)
    pixels, plan = preprocess_image(Image.new("RGB", size), config)
    text = image_token_string(plan, config.patches_per_tile)
    assert text.count("<|patch|>") == expected_patches == pixels.shape[0] * config.patches_per_tile
    assert text.startswith("<|image_start|>") and text.endswith("<|image_end|>")
    assert text.count("<|image|>") == 1
    if plan.has_global_tile:
        assert text.count("<|tile_y_separator|>") == plan.rows
        assert text.count("<|tile_x_separator|>") == plan.rows * (plan.cols - 1)


def test_real_tile_has_144_patches():
    assert REAL.patches_per_tile == 144


def test_config_from_checkpoint_dicts():
    config = ProcessorConfig.from_dicts(
        {"size": {"height": 56, "width": 56}, "max_patches": 4}, {"patch_size": 14}
    )
    assert config.tile == 56 and config.max_patches == 4 and config.patches_per_tile == 4
    with pytest.raises(ValueError):
        ProcessorConfig.from_dicts({"size": {"height": 56, "width": 28}})


def test_resize_rounds_like_the_reference():
    """transformers computes this size in float32 (the canvas side is a tensor): 1512, not 1511."""
    assert plan_tiles(4908, 3272, REAL).resized == (1008, 1512)
