"""``facegan prepare``: decode a source once into a cached, memory-mappable array of square images.

A prepared folder holds exactly two files:

- ``images.npy``: uint8 array (N, size, size, 3), written under a temporary name and renamed;
- ``manifest.json``: how it was made (see :mod:`facegan.data.manifest`), written last and atomically.

An interrupted prepare therefore never leaves a manifest next to a partial array. The pieces:
:mod:`~facegan.data.cache` (fingerprint, output folder, reuse), :mod:`~facegan.data.decoders` and
:mod:`~facegan.data.pool` (decoding), :mod:`~facegan.data.growable_array` (the array file),
:mod:`~facegan.data.manifest` and :mod:`~facegan.data.summary` (what is recorded and said).
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from facegan.data.align import (
    FACE_CHOICES,
    INSTALL_HINT,
    TEMPLATE_NAMES,
    TURNED_CHOICES,
    AlignOptions,
    backend_available,
)
from facegan.data.cache import (
    check_output_dir,
    default_output_dir,
    partial_images_path,
    remove_abandoned_partials,
    reusable,
    source_fingerprint,
)
from facegan.data.dataset import IMAGES_NAME, MANIFEST_NAME, PreparedDataset, is_prepared_dir, open_prepared
from facegan.data.decoders import AlignedPhoto, entry_decoder
from facegan.data.growable_array import GrowableArray
from facegan.data.manifest import DecodeResult, build_manifest, write_manifest
from facegan.data.pool import decode_in_order
from facegan.data.sources import IMAGE_EXTENSIONS, DataError, ImageSource, find_source
from facegan.data.summary import skipped_phrase
from facegan.settings import SIZES, check_size


@dataclass
class PrepareConfig:
    """Options of ``facegan prepare``."""

    data: str = field(
        metadata={
            "help": "images to prepare: a folder (searched recursively), a .zip, a CelebA folder "
            "(with img_align_celeba/ and optionally list_eval_partition.txt), or an already prepared folder"
        }
    )
    size: int = field(default=64, metadata={"help": "side of the square output images in pixels", "choices": SIZES})
    out: str | None = field(
        default=None,
        metadata={"help": "output folder (default: a folder in the facegan cache named after the source's fingerprint)"},
    )
    min_size: int = field(default=32, metadata={"help": "skip images whose shorter side is smaller than this"})
    workers: int = field(default=0, metadata={"help": "decoding processes (0: one per CPU core, 1: no subprocesses)"})
    align: bool = field(default=False, metadata={
        "help": "find the faces in each photo and warp each into the template crop (needs facegan[align])"})
    template: str = field(default="celeba", metadata={
        "help": "with --align: where eyes and mouth go: celeba (CelebA's face crop) or ffhq (tighter)",
        "choices": TEMPLATE_NAMES})
    min_face: int = field(default=48, metadata={
        "help": "with --align: skip faces narrower than this many pixels in the photo"})
    faces: str = field(default="largest", metadata={
        "help": "with --align: keep the largest face of each photo, or all of them", "choices": FACE_CHOICES})
    margin: float = field(default=0.0, metadata={
        "help": "with --align: widen the template crop by this fraction of its side on each side"})
    turned: str = field(default="auto", metadata={
        "help": "with --align, for tilted faces: auto (a CNN detector checks the upright search's best near "
        "misses), always (also search whole copies turned by +-20 degrees; slower), never", "choices": TURNED_CHOICES})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise DataError for option values prepare cannot use."""
        try:
            check_size(self.size)
        except ValueError as error:
            raise DataError(str(error)) from None
        if self.min_size < 1:
            raise DataError(f"min_size must be at least 1, got {self.min_size}")
        if self.workers < 0:
            raise DataError(f"workers must be 0 (one per CPU core) or more, got {self.workers}")
        self.align_options()

    def align_options(self) -> AlignOptions | None:
        """The alignment settings when --align is on (validated), else None."""
        if not self.align:
            return None
        return AlignOptions(template=self.template, size=self.size, margin=self.margin, min_face=self.min_face,
                            faces=self.faces, turned=self.turned)

    def align_key(self) -> dict | None:
        """What of the alignment settings the cached result depends on."""
        options = self.align_options()
        if options is None:
            return None
        return {"template": options.template, "margin": options.margin, "min_face": options.min_face,
                "faces": options.faces, "turned": options.turned, "detector": options.detector,
                "landmarks": options.landmarks}


def prepare(config: PrepareConfig, progress: bool = True) -> PreparedDataset:
    """Prepare ``config.data`` (or reuse a matching earlier result) and open it.

    Prints one line: the summary of what was kept and skipped, or which cache was reused.
    """
    config.validate()
    data_path = Path(config.data).expanduser()
    if data_path.is_dir() and is_prepared_dir(data_path):
        return _open_given_prepared(data_path, config.size)
    source = _find_images(data_path)
    if config.align and not backend_available():
        raise DataError(INSTALL_HINT)
    fingerprint = source_fingerprint(source, config.size, config.min_size, config.align_key())
    template = config.template if config.align else None
    out = Path(config.out).expanduser().absolute() if config.out else default_output_dir(fingerprint, config.size, template)
    for leftover in remove_abandoned_partials(out):
        _say(f"removed {leftover.name}, left in {out} by an interrupted prepare")
    earlier = reusable(out, fingerprint, config.size, config.min_size)
    if earlier is not None:
        _say(f"reusing prepared cache {out} ({earlier.manifest['summary']})")
        return earlier
    return _build(source, out, fingerprint, config, progress)


def _find_images(path: Path) -> ImageSource:
    """The source at ``path``; DataError when it holds no image files."""
    source = find_source(path)
    if not source.entries:
        extensions = " ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no image files in {source.path} (looked for {extensions})")
    return source


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _open_given_prepared(path: Path, size: int) -> PreparedDataset:
    dataset = open_prepared(path)
    note = f"; size {size} ignored" if dataset.size != size else ""
    _say(f"using prepared dataset {dataset.root} ({dataset.manifest['summary']}, {dataset.size}px{note})")
    return dataset


def _build(source: ImageSource, out: Path, fingerprint: str, config: PrepareConfig, progress: bool) -> PreparedDataset:
    created_out = not out.exists()
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    partial = partial_images_path(out)
    try:
        result = _decode_to_array(source, partial, config, progress)
        summary = result.summary()
        if not result.files:
            raise DataError(f"no usable images in {source.path}: {skipped_phrase(result.skipped_counts())}")
        os.replace(partial, out / IMAGES_NAME)
        write_manifest(out / MANIFEST_NAME, build_manifest(source, fingerprint, config, result, summary))
    except BaseException:
        partial.unlink(missing_ok=True)
        if created_out and not any(out.iterdir()):
            out.rmdir()
        raise
    _say(f"{summary} -> {out}")
    return open_prepared(out)


def _decode_to_array(source: ImageSource, path: Path, config: PrepareConfig, progress: bool) -> DecodeResult:
    """Decode every entry in order into ``path`` (.npy), keeping the decoded ones and recording the skipped."""
    candidates = [entry for entry in source.entries if entry.skip is None]
    skipped = [{"source": entry.name, "reason": entry.skip} for entry in source.entries if entry.skip is not None]
    files: list[dict] = []
    digest = hashlib.sha256()
    images = GrowableArray(path, len(candidates), (config.size, config.size, 3))
    faces_too_small = 0
    decoder = entry_decoder(source.reader(), config.size, config.min_size, config.align_options())
    decoded_entries = decode_in_order(decoder, [entry.name for entry in candidates], config.workers)
    bar = tqdm(total=len(candidates), disable=not progress, unit="img", desc="preparing", leave=False)
    with closing(decoded_entries), bar:
        for entry, decoded in zip(candidates, decoded_entries):
            bar.update()
            if isinstance(decoded, AlignedPhoto):
                faces_too_small += decoded.too_small
                decoded = decoded.rows() or decoded.skip_reason()
            if isinstance(decoded, str):
                skipped.append({"source": entry.name, "reason": decoded})
                continue
            for pixels, record in decoded if isinstance(decoded, list) else [(decoded, {})]:
                images.append(pixels)  # grows when a photo gives several faces
                digest.update(pixels.tobytes())
                files.append({"source": entry.name, "split": entry.split, **record})
    images.close()
    skipped.sort(key=lambda item: item["source"])
    return DecodeResult(files, skipped, digest.hexdigest(), config.align, faces_too_small)
