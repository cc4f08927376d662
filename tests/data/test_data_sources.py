"""Listing sources: folders, zips and the CelebA layout; the fingerprint that keys the cache."""

import os
import zipfile

import pytest

from facegan.data import DataError
from facegan.data.cache import source_fingerprint
from facegan.data.sources import find_source, is_unsafe_member_name, read_partition


def names(source) -> list[str]:
    return [entry.name for entry in source.entries]


def test_folder_is_searched_recursively_for_image_extensions_only(image_folder):
    source = find_source(image_folder)
    assert source.layout == "folder"
    assert names(source) == ["a.png", "b.JPG", "other/f.TIFF", "sub/c.jpeg", "sub/deeper/d.bmp", "sub/e.webp"]
    assert {entry.split for entry in source.entries} == {"train"}


def test_zip_members_listed_without_directories_or_junk(image_zip):
    source = find_source(image_zip)
    assert source.layout == "zip"
    assert names(source) == ["../evil.jpg", "one.png", "people/three.png", "people/two.jpg"]
    assert [entry.skip for entry in source.entries] == ["unsafe path", None, None, None]


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [("../evil.jpg", True), ("a/../../b.jpg", True), ("/etc/x.png", True), ("C:/x.png", True), ("a/b..c.png", False)],
)
def test_unsafe_member_names(name, unsafe):
    assert is_unsafe_member_name(name) is unsafe


def test_celeba_layout_reads_partition(celeba_dir):
    source = find_source(celeba_dir)
    assert source.layout == "celeba"
    assert source.image_root == celeba_dir / "img_align_celeba"
    splits = {entry.name: entry.split for entry in source.entries}
    assert splits["000001.jpg"] == "train" and splits["000007.jpg"] == "val" and splits["000010.jpg"] == "test"
    assert splits["000011.jpg"] == "train"  # present but not listed


def test_celeba_nested_download_layout(celeba_dir):
    outer = celeba_dir / "img_align_celeba"
    inner = outer / "img_align_celeba"
    inner.mkdir()
    for path in outer.glob("*.jpg"):
        path.rename(inner / path.name)
    source = find_source(celeba_dir)
    assert source.image_root == inner
    assert len(source.entries) == 11


def test_bad_partition_line_is_a_data_error(tmp_path):
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(DataError, match="line 2"):
        read_partition(partition)


def test_missing_path_and_non_zip_file_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        find_source(tmp_path / "nowhere")
    text = tmp_path / "faces.txt"
    text.write_text("hi")
    with pytest.raises(DataError, match="folder of images or a .zip"):
        find_source(text)


def fingerprint(path, size=64, min_size=32) -> str:
    return source_fingerprint(find_source(path), size, min_size)


def test_fingerprint_is_stable_and_tracks_changes(image_folder, make):
    first = fingerprint(image_folder)
    assert fingerprint(image_folder) == first
    assert fingerprint(image_folder, size=32) != first
    assert fingerprint(image_folder, min_size=16) != first

    stat = (image_folder / "a.png").stat()
    os.utime(image_folder / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = fingerprint(image_folder)
    assert touched != first

    make.write(image_folder / "new.png", make.encode(make.solid((5, 5, 5))))
    assert fingerprint(image_folder) != touched


def test_fingerprint_of_zip_tracks_member_content(tmp_path, make):
    path = tmp_path / "set.zip"
    for colour in [(1, 1, 1), (2, 2, 2)]:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.png", make.encode(make.solid(colour)))
        if colour == (1, 1, 1):
            first = fingerprint(path)
    assert fingerprint(path) != first


def test_fingerprint_tracks_partition_file(celeba_dir):
    first = fingerprint(celeba_dir)
    partition = celeba_dir / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace("000001.jpg 0", "000001.jpg 2"))
    assert fingerprint(celeba_dir) != first


# --- zip bombs: a budget per member and per zip ---------------------------------------------------------------

import functools  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from facegan.data import sources  # noqa: E402
from facegan.data.sources import ImageReader  # noqa: E402


@dataclass(frozen=True)
class Blob:
    """A member's bytes as stored in a zip (deflated or stored), with its CRC and inflated size."""

    data: bytes
    crc: int
    size: int
    method: int


@functools.lru_cache(maxsize=4)
def deflated_zeros(size: int) -> Blob:
    """`size` zero bytes deflated (about 1000:1), made once: 250 MiB take 1.6 s."""
    compressor, chunk, parts, crc = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(1 << 22), [], 0
    for start in range(0, size, len(chunk)):
        piece = chunk[: min(len(chunk), size - start)]
        parts.append(compressor.compress(piece))
        crc = zlib.crc32(piece, crc)
    parts.append(compressor.flush())
    return Blob(b"".join(parts), crc, size, zipfile.ZIP_DEFLATED)


def stored(data: bytes) -> Blob:
    return Blob(data, zlib.crc32(data), len(data), zipfile.ZIP_STORED)


def raw_zip(path, members: list[tuple[str, Blob]], overlap: bool = False):
    """A zip written by hand; with `overlap`, members of the same Blob share one copy of its bytes (a
    "non-recursive" zip bomb: many directory entries pointing at one compressed stream)."""
    body, directory, offsets = bytearray(), bytearray(), {}
    for name, blob in members:
        encoded = name.encode()
        if not (overlap and id(blob) in offsets):
            offsets[id(blob)] = len(body)
            body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, blob.method, 0, 0x21, blob.crc, len(blob.data),
                                blob.size, len(encoded), 0) + encoded + blob.data
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, blob.method, 0, 0x21, blob.crc,
                                 len(blob.data), blob.size, len(encoded), 0, 0, 0, 0, 0, offsets[id(blob)]) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def skips(path) -> dict[str, str | None]:
    return {entry.name: entry.skip for entry in find_source(path).entries}


def test_a_member_compressed_beyond_the_ratio_cap_is_too_large_and_never_inflated(tmp_path):
    small_flat = deflated_zeros(512 * 1024)  # 500:1, but under 1 MiB: harmless, kept (a flat BMP can do this)
    path = raw_zip(tmp_path / "ratio.zip", [("bomb.bmp", deflated_zeros(8 * 2**20)), ("flat.bmp", small_flat),
                                            ("photo.png", stored(os.urandom(3 * 2**20)))])
    assert skips(path) == {"bomb.bmp": "too large", "flat.bmp": None, "photo.png": None}
    reader = ImageReader(path, is_zip=True)
    with pytest.raises(OSError, match="compressed more than 100:1"):
        reader.read("bomb.bmp")
    assert len(reader.read("flat.bmp")) == 512 * 1024
    reader.close()


def test_members_past_the_zips_total_budget_are_too_large_in_name_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_ZIP_TOTAL_BYTES", 5 * 2**20)
    blob = stored(os.urandom(2 * 2**20))  # 1:1, as photos are
    path = raw_zip(tmp_path / "many.zip", [(f"m{i}.jpg", blob) for i in (3, 0, 2, 1)])
    assert skips(path) == {"m0.jpg": None, "m1.jpg": None, "m2.jpg": "too large", "m3.jpg": "too large"}


def test_overlapping_members_are_held_to_a_hundred_times_the_zips_size(tmp_path):
    blob = stored(os.urandom(2 * 2**20))
    path = raw_zip(tmp_path / "overlap.zip", [(f"m{i:03d}.jpg", blob) for i in range(300)], overlap=True)
    size = path.stat().st_size
    assert size < 3 * 2**20  # 300 members of 2 MiB each, 600 MiB declared
    found = skips(path)
    kept = [name for name, skip in found.items() if skip is None]
    assert len(kept) == 100 * size // blob.size == 100
    assert kept == sorted(found)[:100] and set(found.values()) == {None, "too large"}


def test_photo_formats_pillow_cannot_read_are_listed_as_skipped(tmp_path):
    import zipfile

    import facegan
    from tests.conftest import write_faces

    folder = write_faces(tmp_path / "photos", 6, nested=False)
    (folder / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "notes.txt").write_text("not a photo")
    dataset = facegan.prepare(folder, size=32, out=tmp_path / "prepared", workers=1, progress=False)
    assert len(dataset) == 6
    assert dataset.manifest["skipped"] == [{"source": "IMG_0001.HEIC", "reason": "unsupported format"}]
    assert dataset.manifest["summary"] == "6 images, 1 skipped: 1 unsupported format"
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "face000.jpg", "face000.jpg")
        zipped.writestr("holiday/IMG_2.heif", b"\0" * 32)
    from facegan.data.sources import find_source

    skips = {entry.name: entry.skip for entry in find_source(archive).entries}
    assert skips == {"face000.jpg": None, "holiday/IMG_2.heif": "unsupported format"}
