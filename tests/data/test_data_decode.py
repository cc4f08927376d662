"""decode_image: every mode becomes RGB, the crop and orientation are right, bad bytes get the right skip reason."""

import io

import numpy as np
import pytest
from PIL import Image

from facegan.data.decode import SKIP_REASONS, SkippedImage, decode_image


def decode(data: bytes, size: int = 32, min_size: int = 1) -> np.ndarray:
    return decode_image(data, size, min_size)


def skip_reason(data: bytes, **options) -> str:
    with pytest.raises(SkippedImage) as caught:
        decode(data, **options)
    return caught.value.reason


def test_rgb_png_is_resized_to_square_uint8(make):
    result = decode(make.encode(make.solid((10, 20, 30), 40, 40)), size=32)
    assert result.shape == (32, 32, 3) and result.dtype == np.uint8
    assert (result == (10, 20, 30)).all()


def test_celeba_photo_is_cropped_to_rows_20_to_197(make):
    """The red top band (rows 0-19) and blue bottom band (198-217) must be cut away completely."""
    photo = make.banded_celeba_photo(3)
    result = decode(make.encode(photo), size=178)
    assert np.array_equal(result, photo[20:198])


def test_wide_image_is_cropped_in_the_middle(make):
    pixels = np.zeros((40, 100, 3), dtype=np.uint8)
    pixels[:, 30:70] = (0, 200, 0)
    result = decode(make.encode(pixels), size=40)
    assert (result == (0, 200, 0)).all()


def test_matches_the_reference_recipe_crop_then_bicubic(make):
    """Same pixels as ``convert('RGB').crop(...).resize(..., BICUBIC)``, the recipe of the FID reference sets."""
    data = make.jpeg_bytes(178, 218, seed=4)
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(image.convert("RGB").crop((0, 20, 178, 198)).resize((64, 64), Image.BICUBIC))
    assert np.array_equal(decode(data, size=64), expected)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("F", 100.4, (100, 100, 100)),
        ("I", 65535, (255, 255, 255)),
    ],
)
def test_other_modes_become_rgb(make, mode, value, expected):
    image = Image.new(mode, (36, 36), value)
    result = decode(make.encode(image, "TIFF"))
    assert tuple(result[5, 5]) == expected


def test_16_bit_png_is_scaled_not_clipped(make):
    levels = np.full((36, 36), 32896, dtype=np.uint16)  # 128 * 257: mid grey in 16 bits
    image = Image.fromarray(levels)
    assert image.mode == "I;16"
    result = decode(make.encode(image, "PNG"))
    assert tuple(result[5, 5]) == (128, 128, 128)


def test_rgba_is_composited_on_white(make):
    pixels = np.zeros((36, 36, 4), dtype=np.uint8)
    pixels[..., 0] = 255  # red ...
    pixels[..., 3] = 0  # ... but fully transparent on the left half
    pixels[:, 18:, 3] = 255
    result = decode(make.encode(Image.fromarray(pixels, "RGBA")), size=36)
    assert tuple(result[10, 2]) == (255, 255, 255)
    assert tuple(result[10, 33]) == (255, 0, 0)


def test_grey_with_alpha_is_composited_on_white(make):
    image = Image.new("LA", (36, 36), (0, 128))
    value = decode(make.encode(image))[5, 5]
    assert all(126 <= channel <= 129 for channel in value)  # half-transparent black on white


def test_palette_image_with_transparent_index(make):
    image = Image.new("P", (36, 36), 1)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.paste(0, (0, 0, 18, 36))
    image.info["transparency"] = 0
    result = decode(make.encode(image, "PNG", transparency=0), size=36)
    assert tuple(result[10, 2]) == (255, 255, 255)
    assert tuple(result[10, 33]) == (0, 200, 0)


def test_animated_gif_uses_first_frame(make):
    frames = [Image.new("RGB", (36, 36), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = make.encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert tuple(decode(data)[5, 5]) == (255, 0, 0)


def test_exif_orientation_is_applied(make):
    """Stored 40 wide x 60 high with a red top; orientation 6 (rotate 90 cw to display) puts red on the right."""
    pixels = np.zeros((60, 40, 3), dtype=np.uint8)
    pixels[:20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    result = decode(make.encode(pixels, "JPEG", quality=95, exif=exif.tobytes()), size=40)
    assert result[20, 38, 0] > 200 and result[20, 38, 2] < 50
    assert result[20, 1, 0] < 50


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.jpg", "empty.png", "notes.png", "tiny.png"])
def test_bad_bytes_get_their_skip_reason(make, name):
    data = make.bad_file_bytes()[name]
    assert skip_reason(data, min_size=32) == make.BAD_FILES[name]


def test_decompression_bomb_is_too_large(make, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert skip_reason(make.encode(make.solid((0, 0, 0), 40, 40))) == "too large"
    assert skip_reason(make.encode(make.solid((0, 0, 0), 60, 60))) == "too large"


def test_every_reason_is_declared(make):
    assert set(make.BAD_FILES.values()) <= set(SKIP_REASONS)
