"""Converting between model tensors and uint8 images, tiling images into a grid, saving PNGs."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegan.files import write_atomically


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W floats in [-1, 1] -> N x H x W x 3 uint8, as ``(x + 1) * 127.5`` rounded and clamped.

    A single 3 x H x W image gives H x W x 3. The inverse of ``to_model_input``.
    """
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected N x 3 x H x W (or 3 x H x W) images, got shape {tuple(images.shape)}")
    pixels = images.detach().to("cpu", torch.float32).add(1.0).mul_(127.5).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).movedim(-3, -1).contiguous().numpy()


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 -> float32 N x 3 x H x W in [-1, 1] (``x / 127.5 - 1``): how networks see images.

    The inverse of ``to_uint8`` (up to rounding).
    """
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 images, got shape {pixels.shape}")
    channels_first = np.ascontiguousarray(np.asarray(pixels).transpose(0, 3, 1, 2))
    return torch.from_numpy(channels_first).to(torch.float32).div_(127.5).sub_(1.0)


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile N x H x W x 3 uint8 images row by row into one image, with ``padding`` black pixels around each.

    ``ncols`` defaults to ``ceil(sqrt(N))``; the result is ``rows * (H + padding) + padding`` high and
    ``ncols * (W + padding) + padding`` wide, and unused cells of the last row stay black.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty N x H x W x 3 array, got shape {images.shape}")
    count, height, width, _ = images.shape
    ncols = min(ncols or math.ceil(math.sqrt(count)), count)
    if ncols < 1 or padding < 0:
        raise ValueError(f"ncols must be positive and padding not negative, got {ncols} and {padding}")
    nrows = math.ceil(count / ncols)
    grid = np.zeros(
        (nrows * (height + padding) + padding, ncols * (width + padding) + padding, 3), dtype=np.uint8
    )
    for index, image in enumerate(images):
        row, col = divmod(index, ncols)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def png_bytes(pixels: np.ndarray, compress_level: int = -1) -> bytes:
    """An H x W x 3 uint8 image as PNG bytes; `compress_level` is zlib's 0-9 (-1: Pillow's default, level 6)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an H x W x 3 (or H x W) uint8 array as a PNG, creating parent folders; atomic (temp file, then rename)."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected an H x W x 3 uint8 array, got {array.dtype} with shape {array.shape}")
    image = Image.fromarray(np.ascontiguousarray(array))
    return write_atomically(path, lambda handle: image.save(handle, format="PNG"))
