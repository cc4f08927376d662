"""Decoding one image file: bytes in, an RGB uint8 square array (or a skip reason) out.

The recipe, applied to every image:

1. open with Pillow and load the first frame (``Image.MAX_IMAGE_PIXELS`` is left at its
   default; images above it are skipped as "too large" instead of being decoded);
2. apply the EXIF orientation;
3. convert to 8-bit RGB; transparent pixels are composited on white, 16-bit values are
   scaled (not clipped) to 8 bits;
4. crop the centred square whose side is the shorter side. For CelebA's aligned 178x218
   photos this is the usual CelebA face crop: rows 20..197, all 178 columns;
5. resize to ``size`` x ``size`` with ``Image.BICUBIC`` (Pillow's resize is antialiased).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SKIP_REASONS = (
    "empty",
    "not an image",
    "truncated",
    "corrupt",
    "too small",
    "too large",
    "unsafe path",
    "unreadable",
    "unsupported format",
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class SkippedImage(Exception):
    """Raised for a file that cannot become a training image; ``reason`` is one of SKIP_REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(data: bytes, size: int, min_size: int = 1) -> np.ndarray:
    """Decode image bytes to a ``size x size x 3`` uint8 array; raise SkippedImage when that is impossible.

    Images whose shorter side is below ``min_size`` are skipped as "too small".
    """
    if not data:
        raise SkippedImage("empty")
    image = open_rgb(data, min_size)
    return np.asarray(crop_and_resize(image, size), dtype=np.uint8)


def crop_and_resize(image: Image.Image, size: int) -> Image.Image:
    """Crop the centred square (side = shorter side) and resize it to ``size`` with antialiased bicubic."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.BICUBIC)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white, 16-bit scaled to 8-bit)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(image)
    if image.mode == "F":
        values = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255)
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16-bit greyscale 0..65535 onto 0..255 (``I`` too: Pillow opens some 16-bit files as ``I``)."""
    values = np.asarray(image).astype(np.float64)
    scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L").convert("RGB")


def open_rgb(data: bytes, min_size: int = 1) -> Image.Image:
    """Steps 1-3 of the recipe: the upright RGB image, or SkippedImage with the reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about damaged metadata; the file is decoded or skipped anyway
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                if min(image.size) < min_size:
                    raise SkippedImage("too small")
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
        except SkippedImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise SkippedImage("too large") from None
        except UnidentifiedImageError:
            raise SkippedImage("not an image") from None
        except (OSError, EOFError) as error:
            raise SkippedImage("truncated" if _is_truncation(error) else "corrupt") from None
        except Exception:  # Pillow's plugins raise many types (SyntaxError, ValueError, struct.error...) on bad data
            raise SkippedImage("corrupt") from None


def _is_truncation(error: BaseException) -> bool:
    return isinstance(error, EOFError) or "truncated" in str(error).lower()
