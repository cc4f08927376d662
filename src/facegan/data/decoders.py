"""Decoders: read one source entry by name and turn it into pixels (centre crop, or aligned faces) or a skip reason.

They are picklable (the reader and the aligner pickle without open files or models), so a process
pool can run them; ``prepare`` and ``facegan score`` use the same ones.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.data.align import AlignOptions, FaceAligner
from facegan.data.decode import SkippedImage, decode_image, open_rgb
from facegan.data.sources import ImageReader, find_source

NO_FACE = "no face"
ONLY_SMALL_FACES = "only faces too small"


class EntryDecoder:
    """Reads and decodes one entry by name; returns the array or the skip reason. Picklable, for pool workers."""

    def __init__(self, reader: ImageReader, size: int, min_size: int) -> None:
        self.reader = reader
        self.size = size
        self.min_size = min_size

    def __call__(self, name: str) -> np.ndarray | str:
        try:
            data = self.reader.read(name)
        except OSError:
            return "unreadable"
        try:
            return decode_image(data, self.size, self.min_size)
        except SkippedImage as skipped:
            return skipped.reason


@dataclass
class AlignedPhoto:
    """The faces aligned from one photo: (pixels, manifest record) each, and how many were too small."""

    faces: list[tuple[np.ndarray, dict]]
    too_small: int

    def rows(self) -> list[tuple[np.ndarray, dict]]:
        return self.faces

    def skip_reason(self) -> str:
        return ONLY_SMALL_FACES if self.too_small else NO_FACE


class AlignedEntryDecoder(EntryDecoder):
    """Reads one entry, finds its faces and aligns them; returns an AlignedPhoto or the skip reason."""

    def __init__(self, reader: ImageReader, min_size: int, options: AlignOptions) -> None:
        super().__init__(reader, options.size, min_size)
        self.aligner = FaceAligner(options)

    def __call__(self, name: str) -> AlignedPhoto | str:
        try:
            data = self.reader.read(name)
        except OSError:
            return "unreadable"
        if not data:
            return "empty"
        try:
            image = open_rgb(data, self.min_size)
        except SkippedImage as skipped:
            return skipped.reason
        result = self.aligner(image)
        return AlignedPhoto([(face.image, face.record()) for face in result.faces], result.too_small)


def entry_decoder(reader: ImageReader, size: int, min_size: int, align: AlignOptions | None) -> EntryDecoder:
    """The centre-crop decoder, or with ``align`` (whose size is ``size``) the face-aligning one."""
    return EntryDecoder(reader, size, min_size) if align is None else AlignedEntryDecoder(reader, min_size, align)


def decoded_images(paths: Iterable[str | os.PathLike], size: int, align: AlignOptions | None = None,
                   min_size: int = 1) -> Iterator[tuple[str, np.ndarray | str]]:
    """(name, size x size x 3 uint8 image or skip reason) for each image file, folder or .zip in `paths`.

    With `align`, each image becomes its largest face, aligned as `prepare --align` does. Any decodable image
    is used, however small, unless `min_size` says otherwise.
    """
    for given in paths:
        path = Path(given).expanduser()
        if path.is_file() and not zipfile.is_zipfile(path):
            yield str(path), _largest_face(entry_decoder(ImageReader(path.parent, is_zip=False), size, min_size, align),
                                           path.name)
            continue
        source = find_source(path)
        decoder = entry_decoder(source.reader(), size, min_size, align)
        try:
            for entry in source.entries:
                yield str(path / entry.name), entry.skip or _largest_face(decoder, entry.name)
        finally:
            decoder.reader.close()


def _largest_face(decoder: EntryDecoder, name: str) -> np.ndarray | str:
    decoded = decoder(name)
    if isinstance(decoded, AlignedPhoto):
        return decoded.rows()[0][0] if decoded.rows() else decoded.skip_reason()
    return decoded
