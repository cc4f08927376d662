"""Hostile photos, zips and folders: every file becomes a correct image or is skipped with a reason.

Nothing may crash, hang, or write outside the output folder. The property tests run 100 Hypothesis
examples each by default; `benchmarks/reliability.py` runs them with more and counts the cases.
"""
import io
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegan.data import PrepareConfig, prepare
from facegan.data.decode import SKIP_REASONS, SkippedImage, decode_image
from facegan.data.sources import IMAGE_EXTENSIONS, MAX_FILE_BYTES, has_image_extension

from .faults import FUZZ_CASES

SIZE = 32
SCALE = float(os.environ.get("FACEGAN_FUZZ_SCALE", "1"))  # benchmarks/reliability.py runs more examples


def fuzz(examples: int):
    return settings(max_examples=max(1, round(examples * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def decoded_or_reason(data: bytes, min_size: int = 1) -> np.ndarray | str:
    """The decoded image, or the skip reason; any other exception fails the test."""
    FUZZ_CASES["decode"] += 1
    try:
        image = decode_image(data, SIZE, min_size)
    except SkippedImage as skipped:
        assert skipped.reason in SKIP_REASONS
        return skipped.reason
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    return image


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


@fuzz(200)
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data):
    decoded_or_reason(data)


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 "]


@fuzz(200)
@given(st.sampled_from(MAGIC), st.binary(max_size=2048))
def test_random_bytes_behind_an_image_signature_never_crash(magic, tail):
    decoded_or_reason(magic + tail)


def sample_image(format: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if format == "GIF":
        return encoded(image.quantize(16), format, save_all=True, append_images=[image.quantize(8)])
    return encoded(image, format)


@fuzz(150)
@given(st.sampled_from(sorted(FORMATS)), st.integers(0, 3), st.data())
def test_truncated_and_bit_flipped_images_never_crash(format, seed, data):
    good = sample_image(format, seed)
    cut = data.draw(st.integers(0, len(good)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 7)), max_size=4), label="flips")
    damaged = bytearray(good[:cut] if data.draw(st.booleans(), label="truncate") else good)
    for position, bit in flips:
        if position < len(damaged):
            damaged[position] ^= 1 << bit
    decoded_or_reason(bytes(damaged))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny real PNG whose header claims `width` x `height` (the CRC is fixed, so only the size lies)."""
    good = encoded(Image.new("RGB", (1, 1)), "PNG")
    body = b"IHDR" + struct.pack(">II", width, height) + good[24:29]
    return good[:12] + body + struct.pack(">I", zlib.crc32(body)) + good[33:]


@fuzz(50)
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_decompression_bombs_are_too_large(width, height):
    if width * height <= Image.MAX_IMAGE_PIXELS:
        width = Image.MAX_IMAGE_PIXELS // height + 1
    assert decoded_or_reason(png_declaring(width, height)) == "too large"


COLOR_MODES = ["RGB", "L", "P", "RGBA", "LA", "CMYK", "I;16", "1"]


def uniform_image(mode: str, rgb: tuple[int, int, int], size: tuple[int, int]) -> tuple[Image.Image, tuple]:
    """A one-colour image in `mode` and the RGB colour it must decode to."""
    grey = round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    if mode == "RGB":
        return Image.new(mode, size, rgb), rgb
    if mode == "P":
        return Image.new("RGB", size, rgb).quantize(4), rgb
    if mode == "RGBA":
        return Image.new(mode, size, (*rgb, 255)), rgb
    if mode == "CMYK":
        return Image.new(mode, size, (255 - rgb[0], 255 - rgb[1], 255 - rgb[2], 0)), rgb
    if mode == "I;16":
        return Image.fromarray(np.full(size[::-1], grey * 257, dtype=np.uint16)), (grey,) * 3
    if mode == "1":
        return Image.new(mode, size, int(grey >= 128)), (255 * int(grey >= 128),) * 3
    return Image.new(mode, size, (grey, 255) if mode == "LA" else grey), (grey,) * 3


SAVES = {"RGB": ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"], "L": ["PNG", "JPEG", "TIFF", "GIF"], "P": ["PNG", "GIF", "BMP"],
         "RGBA": ["PNG", "TIFF", "WEBP"], "LA": ["PNG"], "CMYK": ["JPEG", "TIFF"], "I;16": ["PNG", "TIFF"], "1": ["PNG", "BMP", "TIFF"]}
PNG_MODES = [mode for mode, formats in SAVES.items() if "PNG" in formats]
LOSSY = {"JPEG": 6, "WEBP": 6, "GIF": 0}


@fuzz(100)
@given(st.sampled_from(COLOR_MODES), st.tuples(*[st.integers(0, 255)] * 3), st.integers(1, 300), st.integers(1, 300),
       st.integers(1, 8), st.data())
def test_any_mode_size_and_orientation_of_a_flat_photo_decodes_to_its_colour(mode, rgb, width, height, orientation, data):
    image, expected = uniform_image(mode, rgb, (width, height))
    format = data.draw(st.sampled_from(SAVES[mode]), label="format")
    options = {}
    if format == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = orientation
        options = {"quality": 95, "exif": exif.tobytes()}
    result = decoded_or_reason(encoded(image, format, **options))
    assert not isinstance(result, str), result
    tolerance = LOSSY.get(format, 0) + (3 if mode == "P" and format != "PNG" else 0) + (2 if mode == "P" else 0)
    assert np.abs(result.astype(int) - np.array(expected)).max() <= tolerance


def test_one_pixel_and_ten_thousand_by_one_images():
    red = encoded(Image.new("RGB", (1, 1), (200, 0, 0)), "PNG")
    assert (decoded_or_reason(red) == (200, 0, 0)).all()
    assert decoded_or_reason(red, min_size=2) == "too small"
    gradient = np.zeros((1, 10000, 3), dtype=np.uint8)
    gradient[0, :, 1] = np.arange(10000) % 256
    strip = encoded(Image.fromarray(gradient), "PNG")
    assert (decoded_or_reason(strip) == gradient[0, 4999]).all()  # the centred 1x1 square
    assert decoded_or_reason(strip, min_size=32) == "too small"


# --- prepare on hostile folders and zips -------------------------------------------------------------------


def files_outside(root: Path, out: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if out not in p.parents and p != out}


def run_prepare(data: Path, out: Path):
    FUZZ_CASES["prepare"] += 1
    return prepare(PrepareConfig(data=str(data), size=SIZE, out=str(out), min_size=1, workers=1), progress=False)


def test_hostile_folder_is_prepared_without_hanging_or_crashing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = encoded(Image.new("RGB", (40, 40), (10, 200, 30)), "PNG")
    (folder / "good.png").write_bytes(good)
    os.mkfifo(folder / "fifo.jpg")  # reading a FIFO would block forever
    os.symlink("loop.jpg", folder / "loop.jpg")  # a symlink to itself
    os.symlink(".", folder / "here")  # a directory loop
    (folder / "folder.jpg").mkdir()  # a directory named like a photo ...
    (folder / "folder.jpg" / "inner.png").write_bytes(good)  # ... is searched like any folder
    os.symlink(folder, folder / "folder.jpg" / "up")
    (folder / "new\nline.png").write_bytes(good)
    with open(os.fsencode(folder) + b"/latin1-\xe9t\xe9.png", "wb") as handle:  # not valid UTF-8
        handle.write(good)
    (folder / "empty.jpg").write_bytes(b"")
    before = files_outside(tmp_path, tmp_path / "out")

    dataset = run_prepare(folder, tmp_path / "out")
    kept = sorted(item["source"] for item in dataset.manifest["files"])
    assert kept == ["folder.jpg/inner.png", "good.png", "latin1-\udce9t\udce9.png", "new\nline.png"]
    assert (dataset.images == (10, 200, 30)).all()
    skipped = {item["source"]: item["reason"] for item in dataset.manifest["skipped"]}
    assert skipped == {"fifo.jpg": "unreadable", "loop.jpg": "unreadable", "empty.jpg": "empty"}
    assert files_outside(tmp_path, tmp_path / "out") == before


def unreadable_by_root(monkeypatch, names: set[str]) -> None:
    """chmod 000 does not stop root, so refuse the open itself for these file names."""
    import facegan.data.sources as sources

    real_open = os.open

    def guarded_open(path, flags, *args, **kwargs):
        if os.path.basename(os.fsdecode(path)) in names:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(sources.os, "open", guarded_open)


def test_unreadable_files_are_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "secret.png"):
        (folder / name).write_bytes(encoded(Image.new("RGB", (40, 40), (1, 2, 3)), "PNG"))
    os.chmod(folder / "secret.png", 0)
    unreadable_by_root(monkeypatch, {"secret.png"})
    dataset = run_prepare(folder, tmp_path / "out")
    assert len(dataset) == 2
    assert dataset.manifest["skipped"] == [{"source": "secret.png", "reason": "unreadable"}]


def zip_with(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            if isinstance(data, zipfile.ZipInfo):
                archive.writestr(data, name.encode())
            else:
                archive.writestr(name, data)
    return path


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_zip_bomb_is_skipped_without_inflating_it(tmp_path):
    path = tmp_path / "bomb.zip"
    good = encoded(Image.new("RGB", (40, 40), (9, 9, 9)), "PNG")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.png", good)
        info = zipfile.ZipInfo("bomb.png")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:  # 272 MiB of zeros in about 270 KB
            chunk = bytes(1 << 24)
            for _ in range(MAX_FILE_BYTES // len(chunk) + 1):
                member.write(chunk)
    assert path.stat().st_size < 2**20
    dataset = run_prepare(path, tmp_path / "out")
    assert len(dataset) == 1
    assert dataset.manifest["skipped"] == [{"source": "bomb.png", "reason": "too large"}]


UNSAFE_NAMES = ["../escape.png", "../../etc/evil.jpg", "/abs/olute.png", "a/../../b.png", "C:/windows.png",
                "..\\back.png", "ok/../../out.png"]


@fuzz(20)
@given(st.lists(st.sampled_from(UNSAFE_NAMES) | st.text(st.sampled_from("ab./\\\n:é"), min_size=1, max_size=12),
                min_size=1, max_size=6, unique=True),
       st.lists(st.booleans(), min_size=6, max_size=6))
def test_zip_member_names_never_write_outside_and_unsafe_ones_are_skipped(names, as_symlink):
    good = encoded(Image.new("RGB", (40, 40), (50, 60, 70)), "PNG")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        members = {"inside/fine.png": good}
        for name, link in zip(names, as_symlink):
            name = name if has_image_extension(name) else name + ".png"
            members[name] = symlink_member(name) if link else good
        zip_with(root / "in.zip", members)
        before = files_outside(root, root / "out")
        dataset = run_prepare(root / "in.zip", root / "out")
        assert files_outside(root, root / "out") == before
        assert sorted(p.name for p in (root / "out").iterdir()) == ["images.npy", "manifest.json"]
        assert (dataset.images == (50, 60, 70)).all()
        skipped = {item["source"]: item["reason"] for item in dataset.manifest["skipped"]}
        for name, data in members.items():
            if has_image_extension(name) and (isinstance(data, zipfile.ZipInfo) or name in UNSAFE_NAMES):
                assert skipped.get(name) == "unsafe path", name


@fuzz(20)
@given(st.lists(st.one_of(st.binary(max_size=300), st.tuples(st.sampled_from(PNG_MODES), st.integers(1, 60))),
                min_size=1, max_size=8),
       st.lists(st.sampled_from(sorted(IMAGE_EXTENSIONS)), min_size=8, max_size=8))
def test_prepare_accounts_for_every_file_of_a_random_folder(contents, extensions):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        folder.mkdir()
        expected = {}
        for number, (content, extension) in enumerate(zip(contents, extensions)):
            name = f"f{number}{extension}"
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
                continue
            image, colour = uniform_image(content[0], (120, 30, 220), (content[1], content[1] + 3))  # PNG-able modes
            (folder / f"f{number}.png").write_bytes(encoded(image, "PNG"))
            expected[f"f{number}.png"] = colour
        try:
            dataset = run_prepare(folder, Path(scratch) / "out")
        except Exception as error:  # only "nothing usable at all" may end prepare
            assert "no usable images" in str(error) and not expected
            return
        kept = [item["source"] for item in dataset.manifest["files"]]
        skipped = [item["source"] for item in dataset.manifest["skipped"]]
        assert sorted(kept + skipped) == sorted(p.name for p in folder.iterdir())
        assert set(expected) <= set(kept)
        for index, name in enumerate(kept):
            if name in expected:
                assert np.abs(dataset.images[index].astype(int) - np.array(expected[name])).max() <= 2
