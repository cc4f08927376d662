"""Decoders: read one source entry by name and turn it into pixels (centre crop, or aligned faces) or a skip reason.

They are picklable (the reader and the aligner pickle without open files or models), so a process
pool can run them; ``prepare`` and ``facegan score`` use the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegan.data.align import AlignOptions, FaceAligner
from facegan.data.decode import SkippedImage, decode_image, open_rgb
from facegan.data.sources import ImageReader

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
