"""to_uint8, make_grid and save_png."""

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.data import make_grid, save_png, to_uint8


def test_to_uint8_rounds_and_clamps():
    values = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.004, 1.0, 3.0])
    images = values.view(1, 1, 1, 7).expand(1, 3, 1, 7)
    result = to_uint8(images)
    assert result.shape == (1, 1, 7, 3) and result.dtype == np.uint8
    # (x + 1) * 127.5: 63.75 -> 64, 127.5 -> 128 (round half to even), 128.01 -> 128
    assert result[0, 0, :, 0].tolist() == [0, 0, 64, 128, 128, 255, 255]


def test_to_uint8_puts_channels_last_and_inverts_load_batch_scaling():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    tensors = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.array_equal(to_uint8(tensors.requires_grad_()), pixels)
    assert np.array_equal(to_uint8(tensors[0]), pixels[0])


def test_to_uint8_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        to_uint8(torch.zeros(2, 4, 8, 8))


def numbered(count: int, height: int = 4, width: int = 5) -> np.ndarray:
    """Images filled with 10, 20, 30, ..."""
    return np.stack([np.full((height, width, 3), 10 * (i + 1), np.uint8) for i in range(count)])


def test_make_grid_layout_and_padding():
    grid = make_grid(numbered(5), padding=2)  # ncols = ceil(sqrt(5)) = 3, so 2 rows
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (5 + 2) + 2, 3)
    assert grid[2, 2, 0] == 10 and grid[2, 9, 0] == 20 and grid[8, 2, 0] == 40 and grid[8, 9, 0] == 50
    assert grid[8 + 3, 9 + 4, 0] == 50  # bottom-right pixel of image 5
    assert (grid[8:12, 16:21] == 0).all()  # unused sixth cell stays black
    assert (grid[:2] == 0).all() and (grid[:, :2] == 0).all() and (grid[6:8] == 0).all()
    assert grid.dtype == np.uint8


def test_make_grid_with_explicit_columns_and_no_padding():
    grid = make_grid(numbered(4), ncols=4, padding=0)
    assert grid.shape == (4, 20, 3)
    assert grid[0, ::5, 0].tolist() == [10, 20, 30, 40]


def test_save_png_creates_folders_and_round_trips(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = save_png(pixels, tmp_path / "a" / "b" / "grid.png")
    assert path == tmp_path / "a" / "b" / "grid.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and np.array_equal(np.asarray(image), pixels)
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]


def test_save_png_failure_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError):
        save_png(np.zeros((4, 4, 3), np.float32), tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty image"):  # raised by Pillow while writing
        save_png(np.zeros((0, 4, 3), np.uint8), tmp_path / "empty.png")
    assert list(tmp_path.iterdir()) == []
