"""Fixtures for the data-layer tests: tiny synthetic image sets written with Pillow."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

try:
    import facegan.data  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"

CELEBA_WIDTH, CELEBA_HEIGHT = 178, 218


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own FACEGAN_CACHE, so nothing is written to the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEGAN_CACHE", str(cache))
    return cache


def solid(color, width: int = 48, height: int = 48) -> np.ndarray:
    """An H x W x 3 uint8 array of one colour."""
    return np.full((height, width, 3), color, dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, format: str = "PNG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def jpeg_bytes(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A noisy JPEG, large enough that cutting it in half truncates the scan data."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(pixels, "JPEG", quality=90)


def banded_celeba_photo(index: int) -> np.ndarray:
    """A 178x218 photo: rows 0-19 red, 20-197 a colour unique to ``index``, 198-217 blue."""
    pixels = np.zeros((CELEBA_HEIGHT, CELEBA_WIDTH, 3), dtype=np.uint8)
    pixels[:20] = (255, 0, 0)
    pixels[20:198] = (0, 10 * index, 255 - 10 * index)
    pixels[198:] = (0, 0, 255)
    return pixels


BAD_FILES = {
    "corrupt.jpg": "corrupt",
    "truncated.jpg": "truncated",
    "empty.png": "empty",
    "notes.png": "not an image",
    "tiny.png": "too small",
}


def bad_file_bytes() -> dict[str, bytes]:
    """One file per skip reason that a folder can produce, named as in BAD_FILES."""
    jpeg = jpeg_bytes()
    scrambled = bytearray(jpeg)
    scrambled[200:-2] = bytes(0xFF if i % 2 else 0x00 for i in range(len(scrambled) - 202))
    return {
        "corrupt.jpg": bytes(scrambled),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.png": b"",
        "notes.png": b"just some text, renamed to .png\n",
        "tiny.png": encode(solid((9, 9, 9), 8, 8)),
    }


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Six good images in nested folders (mixed extensions and case) plus files that must be ignored."""
    root = tmp_path / "faces"
    write(root / "a.png", encode(solid((255, 0, 0))))
    write(root / "b.JPG", encode(solid((0, 255, 0)), "JPEG", quality=95))
    write(root / "sub" / "c.jpeg", encode(solid((0, 0, 255)), "JPEG", quality=95))
    write(root / "sub" / "deeper" / "d.bmp", encode(solid((255, 255, 0)), "BMP"))
    write(root / "sub" / "e.webp", encode(solid((0, 255, 255)), "WEBP", lossless=True))
    write(root / "other" / "f.TIFF", encode(solid((255, 0, 255)), "TIFF"))
    write(root / "readme.txt", b"not an image")
    write(root / "sub" / "g.png.bak", encode(solid((1, 2, 3))))
    return root


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """Only files that must be skipped, one per reason in BAD_FILES."""
    root = tmp_path / "bad"
    for name, data in bad_file_bytes().items():
        write(root / name, data)
    return root


@pytest.fixture
def image_zip(tmp_path) -> Path:
    """A zip with three good images (one in a folder), a directory entry, a ../ member, junk and a text file."""
    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("one.png", encode(solid((255, 0, 0))))
        archive.writestr("people/", b"")
        archive.writestr("people/two.jpg", encode(solid((0, 255, 0)), "JPEG", quality=95))
        archive.writestr("people/three.png", encode(solid((0, 0, 255))))
        archive.writestr("../evil.jpg", encode(solid((1, 1, 1)), "JPEG"))
        archive.writestr("__MACOSX/people/._two.jpg", b"resource fork")
        archive.writestr("notes.txt", b"hello")
    return path


@pytest.fixture
def celeba_dir(tmp_path) -> Path:
    """A CelebA layout: ten banded 178x218 JPEGs (000001-000010) and a partition 6 train / 2 val / 2 test.

    000011.jpg exists but is not in the partition file, so it counts as train.
    """
    root = tmp_path / "celeba"
    images = root / "img_align_celeba"
    for index in range(1, 12):
        write(images / f"{index:06d}.jpg", encode(banded_celeba_photo(index), "JPEG", quality=100, subsampling=0))
    codes = [0] * 6 + [1] * 2 + [2] * 2
    lines = [f"{index:06d}.jpg {code}" for index, code in enumerate(codes, start=1)]
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def make() -> SimpleNamespace:
    """The image helpers of this file, for tests that build their own files."""
    return SimpleNamespace(
        solid=solid,
        encode=encode,
        write=write,
        jpeg_bytes=jpeg_bytes,
        banded_celeba_photo=banded_celeba_photo,
        bad_file_bytes=bad_file_bytes,
        BAD_FILES=BAD_FILES,
        SHARED_DIR=SHARED_DIR,
    )
