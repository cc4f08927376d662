"""Finding the images of a data source: a folder, a .zip, or the CelebA layout.

A source is listed once, sorted by relative path, so everything built from it is
deterministic. Listing reads only names and file metadata; image bytes are read
later through an :class:`ImageReader`, one file at a time.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Photo formats people have (phones: HEIC; cameras: raw) that Pillow cannot decode: listed as skipped, not ignored.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".jxl", ".dng", ".cr2", ".nef", ".arw"})
SPLITS = ("train", "val", "test")
CELEBA_IMAGE_DIR = "img_align_celeba"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
_CELEBA_PARTITION_CODES = {"0": "train", "1": "val", "2": "test"}
_ZIP_JUNK_PREFIXES = ("__MACOSX/",)
MAX_FILE_BYTES = 256 * 2**20  # no photo is this big; a zip bomb or a disk image named .jpg is
# Zip bombs spread over many members stay under MAX_FILE_BYTES each, so a zip also has a budget: a member (above
# 1 MiB) may inflate to at most MAX_COMPRESSION_RATIO times its compressed size (photos barely compress: JPEG and
# PNG about 1:1, an uncompressed BMP a few times; zeros deflate about 1000:1), and all the members of one zip, in
# name order, to at most MAX_COMPRESSION_RATIO times the zip's own size and MAX_ZIP_TOTAL_BYTES in all (members that
# overlap in the file, as in a "non-recursive" zip bomb, are caught by the first). Members past it are skipped
# as "too large" without being inflated; zipfile never inflates past a member's declared size.
MAX_COMPRESSION_RATIO = 100
MAX_ZIP_TOTAL_BYTES = 64 * 2**30
_RATIO_FLOOR = 2**20  # smaller members cost nothing to inflate, whatever their ratio


class DataError(Exception):
    """A problem with the user's data or options, with a one-line message meant for the user."""


@dataclass(frozen=True)
class SourceEntry:
    """One candidate image: its path relative to the image root, its split, and what identifies its version.

    ``stamp`` is the modification time in nanoseconds for files and the CRC-32 for zip members.
    ``skip`` is a skip reason known before decoding (``"unsafe path"``, ``"unreadable"``, ``"too large"``), else None.
    """

    name: str
    split: str
    size: int
    stamp: int
    skip: str | None = None


@dataclass
class ImageSource:
    """The listed images of one data source."""

    layout: str  # "folder", "zip" or "celeba"
    path: Path  # what the user named, made absolute
    image_root: Path  # the folder that is scanned, or the zip file
    entries: list[SourceEntry]
    partition_digest: str | None = None  # sha256 of the CelebA partition file's bytes, if present

    def reader(self) -> ImageReader:
        return ImageReader(self.image_root, is_zip=self.layout == "zip")


class ImageReader:
    """Reads the bytes of one entry; a zip is opened on first use and kept open (one handle per process)."""

    def __init__(self, root: Path, is_zip: bool) -> None:
        self.root = root
        self.is_zip = is_zip
        self._zip: zipfile.ZipFile | None = None

    def read(self, name: str) -> bytes:
        """The entry's bytes; OSError for anything but a readable regular file (or zip member) of sane size."""
        if not self.is_zip:
            return read_regular_file(self.root / name)
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.root)
        try:
            if _member_size_skip(self._zip.getinfo(name)):  # zipfile never inflates past the declared size
                raise OSError(f"{name} in {self.root} is larger than {MAX_FILE_BYTES} bytes or compressed "
                              f"more than {MAX_COMPRESSION_RATIO}:1")
            return self._zip.read(name)
        except (zipfile.BadZipFile, zlib.error, KeyError, RuntimeError, NotImplementedError, EOFError) as error:
            raise OSError(f"cannot read {name} from {self.root}: {error}") from error

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self) -> dict:
        return {"root": self.root, "is_zip": self.is_zip, "_zip": None}


def read_regular_file(path: Path) -> bytes:
    """Read a file, refusing FIFOs, devices and sockets (opened non-blocking, so a FIFO cannot hang us)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise OSError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return handle.read()


def has_image_extension(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def is_unsupported_photo(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS


def find_source(data: str | os.PathLike) -> ImageSource:
    """List the images of ``data``: a CelebA layout dir, any other folder (searched recursively), or a .zip."""
    path = Path(data).expanduser().absolute()
    if not path.exists():
        raise DataError(f"data path not found: {path}")
    if path.is_dir():
        image_dir = celeba_image_dir(path)
        if image_dir is not None:
            return _celeba_source(path, image_dir)
        return ImageSource("folder", path, path, _list_folder(path))
    if zipfile.is_zipfile(path):
        return ImageSource("zip", path, path, _list_zip(path))
    raise DataError(f"data must be a folder of images or a .zip file, not {path}")


def celeba_image_dir(path: Path) -> Path | None:
    """The CelebA image folder under ``path`` (also the nested ``img_align_celeba/img_align_celeba``), or None."""
    outer = path / CELEBA_IMAGE_DIR
    if not outer.is_dir():
        return None
    inner = outer / CELEBA_IMAGE_DIR
    if inner.is_dir() and not any(has_image_extension(p.name) for p in outer.iterdir() if p.is_file()):
        return inner
    return outer


def read_partition(path: Path) -> dict[str, str]:
    """Parse ``list_eval_partition.txt`` (``<file> <0|1|2>`` per line) into {file: split}."""
    splits: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in _CELEBA_PARTITION_CODES:
            raise DataError(f"{path}, line {number}: expected '<file> <0|1|2>', got {line.strip()!r}")
        splits[fields[0]] = _CELEBA_PARTITION_CODES[fields[1]]
    return splits


def _celeba_source(path: Path, image_dir: Path) -> ImageSource:
    entries = _list_folder(image_dir)
    partition_file = path / CELEBA_PARTITION_FILE
    if not partition_file.is_file():
        return ImageSource("celeba", path, image_dir, entries)
    splits = read_partition(partition_file)
    entries = [_with_split(entry, splits.get(entry.name, "train")) for entry in entries]
    digest = hashlib.sha256(partition_file.read_bytes()).hexdigest()
    return ImageSource("celeba", path, image_dir, entries, partition_digest=digest)


def _with_split(entry: SourceEntry, split: str) -> SourceEntry:
    return SourceEntry(entry.name, split, entry.size, entry.stamp, entry.skip)


def _list_folder(root: Path) -> list[SourceEntry]:
    entries = []
    for directory, _subdirs, files in os.walk(root):
        for file_name in files:
            file_path = Path(directory, file_name)
            name = file_path.relative_to(root).as_posix()
            if is_unsupported_photo(file_name):
                entries.append(SourceEntry(name, "train", -1, -1, skip="unsupported format"))
                continue
            if not has_image_extension(file_name):
                continue
            try:
                info = file_path.stat()  # follows symlinks; a symlink loop raises ELOOP
            except OSError:
                entries.append(SourceEntry(name, "train", -1, -1, skip="unreadable"))
                continue
            entries.append(SourceEntry(name, "train", info.st_size, info.st_mtime_ns, skip=_file_skip(info)))
    return sorted(entries, key=lambda entry: entry.name)


def _file_skip(info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):  # a FIFO, socket or device named like an image
        return "unreadable"
    return "too large" if info.st_size > MAX_FILE_BYTES else None


def _list_zip(path: Path) -> list[SourceEntry]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"cannot read zip file {path}: {error}") from error
    latest: dict[str, zipfile.ZipInfo] = {}
    for member in members:
        if member.is_dir() or member.filename.startswith(_ZIP_JUNK_PREFIXES):
            continue
        if not (has_image_extension(member.filename) or is_unsupported_photo(member.filename)):
            continue
        latest[member.filename] = member  # a name stored twice: the last one, as ZipFile.read takes
    budget = min(MAX_ZIP_TOTAL_BYTES, MAX_COMPRESSION_RATIO * max(path.stat().st_size, _RATIO_FLOOR))
    entries = []
    for name in sorted(latest):
        member = latest[name]
        skip = "unsupported format" if is_unsupported_photo(name) else _member_skip(member)
        if skip is None and member.file_size > budget:
            skip = "too large"  # the zip's whole budget is spent: a bomb spread over many members
        elif skip is None:
            budget -= member.file_size
        entries.append(SourceEntry(name, "train", member.file_size, member.CRC, skip=skip))
    return entries


def _member_skip(member: zipfile.ZipInfo) -> str | None:
    if is_unsafe_member_name(member.filename) or stat.S_ISLNK(member.external_attr >> 16):
        return "unsafe path"
    return "too large" if _member_size_skip(member) else None


def _member_size_skip(member: zipfile.ZipInfo) -> bool:
    """True for a member too big to inflate: over MAX_FILE_BYTES, or (above 1 MiB) compressed beyond the ratio cap."""
    if member.file_size > MAX_FILE_BYTES:
        return True
    return member.file_size > _RATIO_FLOOR and member.file_size > MAX_COMPRESSION_RATIO * member.compress_size


def is_unsafe_member_name(name: str) -> bool:
    """True for zip member names that are absolute or climb out with ``..`` (zip-slip)."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return ".." in normalized.split("/")
