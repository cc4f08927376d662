"""``facegan prepare``: decode a source once into a cached, memory-mappable array of square images.

A prepared folder holds exactly two files:

- ``images.npy``: uint8 array (N, size, size, 3), written under a temporary name and renamed;
- ``manifest.json``: how it was made, written last and atomically. Its keys: ``kind``,
  ``format_version``, ``source`` (absolute path), ``layout``, ``fingerprint``, ``size``,
  ``min_size``, ``crop``, ``resize``, ``count``, ``content_hash`` (sha256 of the array bytes),
  ``splits`` ({split: count}), ``files`` ([{"source": relpath, "split": ...}] in array order),
  ``skipped`` ([{"source": relpath, "reason": ...}]), ``skipped_counts`` and ``summary``.

An interrupted prepare therefore never leaves a manifest next to a partial array.
"""

import hashlib
import json
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facegan.data.dataset import (
    FORMAT_VERSION,
    IMAGES_NAME,
    MANIFEST_NAME,
    PREPARED_KIND,
    PreparedDataset,
    is_prepared_dir,
    open_prepared,
)
from facegan.data.align import (
    FACE_CHOICES,
    INSTALL_HINT,
    TEMPLATE_NAMES,
    TEMPLATES,
    TURNED_CHOICES,
    AlignOptions,
    FaceAligner,
    backend_available,
)
from facegan.data.decode import SkippedImage, decode_image, open_rgb
from facegan.files import write_atomically
from facegan.data.sources import IMAGE_EXTENSIONS, DataError, ImageReader, ImageSource, SourceEntry, find_source

SIZES = (32, 64, 128)
POOL_MIN_IMAGES = 64
POOL_CHUNKSIZE = 32
_COPY_ROWS = 1024


@dataclass
class PrepareConfig:
    """Options of ``facegan prepare``."""

    data: str = field(
        metadata={
            "help": "images to prepare: a folder (searched recursively), a .zip, a CelebA folder "
            "(with img_align_celeba/ and optionally list_eval_partition.txt), or an already prepared folder"
        }
    )
    size: int = field(default=64, metadata={"help": "side of the square output images in pixels: 32, 64 or 128"})
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
        if self.size not in SIZES:
            raise DataError(f"size must be one of {', '.join(map(str, SIZES))}, got {self.size}")
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


def cache_root() -> Path:
    """``$FACEGAN_CACHE`` if set, else ``~/.cache/facegan``; prepared sets live in its ``prepared/`` folder."""
    configured = os.environ.get("FACEGAN_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "facegan"


def source_fingerprint(source: ImageSource, size: int, min_size: int, align: dict | None = None) -> str:
    """sha256 over FORMAT_VERSION, the options, each entry's (path, byte size, mtime_ns or CRC), the partition file."""
    digest = hashlib.sha256()
    header = {"format_version": FORMAT_VERSION, "layout": source.layout, "size": size, "min_size": min_size}
    if align is not None:
        header["align"] = align
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    digest.update(f"partition {source.partition_digest}\n".encode())
    for entry in source.entries:
        digest.update(json.dumps([entry.name, entry.size, entry.stamp]).encode() + b"\n")
    return digest.hexdigest()


def default_output_dir(fingerprint: str, size: int, template: str | None = None) -> Path:
    suffix = f"-aligned-{template}" if template else ""
    return cache_root() / "prepared" / f"{fingerprint[:16]}-{size}px{suffix}"


def prepare(config: PrepareConfig, progress: bool = True) -> PreparedDataset:
    """Prepare ``config.data`` (or reuse a matching earlier result) and open it.

    Prints one line: the summary of what was kept and skipped, or which cache was reused.
    """
    config.validate()
    data_path = Path(config.data).expanduser()
    if data_path.is_dir() and is_prepared_dir(data_path):
        return _open_given_prepared(data_path, config.size)
    source = find_source(data_path)
    if not source.entries:
        extensions = " ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no image files in {source.path} (looked for {extensions})")
    if config.align and not backend_available():
        raise DataError(INSTALL_HINT)
    fingerprint = source_fingerprint(source, config.size, config.min_size, config.align_key())
    template = config.template if config.align else None
    out = Path(config.out).expanduser().absolute() if config.out else default_output_dir(fingerprint, config.size, template)
    reusable = _reusable(out, fingerprint, config)
    if reusable is not None:
        _say(f"reusing prepared cache {out} ({reusable.manifest['summary']})")
        return reusable
    return _build(source, out, fingerprint, config, progress)


def summary_line(count: int, skipped_counts: dict[str, int]) -> str:
    """E.g. ``"12034 images, 3 skipped: 2 truncated, 1 not an image"``."""
    total_skipped = sum(skipped_counts.values())
    line = f"{count} images, {total_skipped} skipped"
    if total_skipped:
        line += ": " + _reason_counts(skipped_counts)
    return line


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _skipped_phrase(skipped_counts: dict[str, int]) -> str:
    return f"{sum(skipped_counts.values())} skipped ({_reason_counts(skipped_counts)})"


def _reason_counts(skipped_counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in skipped_counts.items())


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _open_given_prepared(path: Path, size: int) -> PreparedDataset:
    dataset = open_prepared(path)
    note = f"; size {size} ignored" if dataset.size != size else ""
    _say(f"using prepared dataset {dataset.root} ({dataset.manifest['summary']}, {dataset.size}px{note})")
    return dataset


def _reusable(out: Path, fingerprint: str, config: PrepareConfig) -> PreparedDataset | None:
    try:
        dataset = open_prepared(out)
    except DataError:
        return None
    manifest = dataset.manifest
    if (manifest.get("fingerprint"), manifest.get("size"), manifest.get("min_size")) != (
        fingerprint,
        config.size,
        config.min_size,
    ):
        return None
    return dataset


def _build(source: ImageSource, out: Path, fingerprint: str, config: PrepareConfig, progress: bool) -> PreparedDataset:
    created_out = not out.exists()
    _check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    partial = out / f".{IMAGES_NAME}.{os.getpid()}.partial"
    try:
        result = _decode_to_array(source, partial, config, progress)
        summary = result.summary()
        if not result.files:
            raise DataError(f"no usable images in {source.path}: {_skipped_phrase(result.skipped_counts())}")
        os.replace(partial, out / IMAGES_NAME)
        manifest = _manifest(source, fingerprint, config, result, summary)
        _write_json_atomically(out / MANIFEST_NAME, manifest)
    except BaseException:
        partial.unlink(missing_ok=True)
        if created_out and not any(out.iterdir()):
            out.rmdir()
        raise
    _say(f"{summary} -> {out}")
    return open_prepared(out)


def _check_output_dir(out: Path) -> None:
    """Refuse to write into a folder that holds anything but an earlier prepared dataset (or its leftovers)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"output path exists and is not a folder: {out}")
    ours = {MANIFEST_NAME, IMAGES_NAME}
    foreign = [p.name for p in out.iterdir() if p.name not in ours and not _is_leftover(p.name)]
    if foreign:
        raise DataError(
            f"output folder {out} already holds other files (e.g. {foreign[0]}); choose an empty or new folder"
        )


def _is_leftover(name: str) -> bool:
    return name.startswith((f".{IMAGES_NAME}.", f".{MANIFEST_NAME}.")) and name.endswith(".partial")


@dataclass
class _DecodeResult:
    files: list[dict]
    skipped: list[dict]
    content_hash: str
    aligned: bool = False
    faces_too_small: int = 0

    def skipped_counts(self) -> dict[str, int]:
        counts = Counter(item["reason"] for item in self.skipped)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def summary(self) -> str:
        if not self.aligned:
            return summary_line(len(self.files), self.skipped_counts())
        photos = len({item["source"] for item in self.files}) + len(self.skipped)
        return aligned_summary_line(photos, len(self.files), self.faces_too_small, self.skipped_counts())


def aligned_summary_line(photos: int, faces: int, faces_too_small: int, skipped_counts: dict[str, int]) -> str:
    """E.g. ``"1,204 photos -> 1,377 faces; 61 photos without a face; 15 faces too small"``."""
    counts = dict(skipped_counts)
    without_face = counts.pop(NO_FACE, 0) + counts.pop(ONLY_SMALL_FACES, 0)
    line = (f"{_count(photos, 'photo')} -> {_count(faces, 'face')}; {_count(without_face, 'photo')} without a face; "
            f"{_count(faces_too_small, 'face')} too small")
    if counts:
        line += f"; {_skipped_phrase(counts)}"
    return line


def _decode_to_array(source: ImageSource, path: Path, config: PrepareConfig, progress: bool) -> _DecodeResult:
    """Decode every entry in order into ``path`` (.npy), keeping the decoded ones and recording the skipped."""
    candidates = [entry for entry in source.entries if entry.skip is None]
    skipped = [{"source": entry.name, "reason": entry.skip} for entry in source.entries if entry.skip is not None]
    files: list[dict] = []
    digest = hashlib.sha256()
    capacity = len(candidates)
    shape = (capacity, config.size, config.size, 3)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape) if candidates else None
    faces_too_small = 0
    decoded_entries = _decode_all(source, candidates, config)
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
                if len(files) == capacity:  # several faces in one photo: make room
                    images.flush()
                    del images
                    capacity *= 2
                    _resize_rows(path, len(files), capacity)
                    images = np.load(path, mmap_mode="r+")
                images[len(files)] = pixels
                digest.update(pixels.tobytes())
                files.append({"source": entry.name, "split": entry.split, **record})
    if images is not None:
        images.flush()
        del images
        if len(files) < capacity:
            _resize_rows(path, len(files), len(files))
    skipped.sort(key=lambda item: item["source"])
    return _DecodeResult(files, skipped, digest.hexdigest(), config.align, faces_too_small)


def _resize_rows(path: Path, count: int, capacity: int) -> None:
    """Keep the first ``count`` rows of the .npy at ``path`` in one of ``capacity`` rows (a copy, then a rename)."""
    if capacity == 0:
        path.unlink()
        return
    full = np.load(path, mmap_mode="r")
    resized_path = path.with_name(path.name + ".resize.partial")
    try:
        resized = np.lib.format.open_memmap(resized_path, mode="w+", dtype=np.uint8, shape=(capacity, *full.shape[1:]))
        for start in range(0, count, _COPY_ROWS):
            resized[start : min(start + _COPY_ROWS, count)] = full[start : min(start + _COPY_ROWS, count)]
        resized.flush()
        del resized, full
        os.replace(resized_path, path)
    finally:
        resized_path.unlink(missing_ok=True)


def _decode_all(source: ImageSource, entries: list[SourceEntry], config: PrepareConfig) -> Iterator[np.ndarray | str]:
    """Decoded arrays or skip reasons, in the order of ``entries``; in a process pool when that pays off."""
    decoder = (AlignedEntryDecoder(source.reader(), config.min_size, config.align_options()) if config.align
               else EntryDecoder(source.reader(), config.size, config.min_size))
    names = [entry.name for entry in entries]
    workers = min(_worker_count(config.workers), max(1, len(names) // POOL_CHUNKSIZE))
    if workers <= 1 or len(names) <= POOL_MIN_IMAGES:
        try:
            yield from map(decoder, names)
        finally:
            decoder.reader.close()
        return
    with multiprocessing.get_context().Pool(workers, initializer=_start_worker, initargs=(decoder,)) as pool:
        yield from pool.imap(_decode_in_worker, names, chunksize=POOL_CHUNKSIZE)


def _worker_count(requested: int) -> int:
    if requested > 0:
        return requested
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


NO_FACE = "no face"
ONLY_SMALL_FACES = "only faces too small"


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


_worker_decoder: EntryDecoder | None = None


def _start_worker(decoder: EntryDecoder) -> None:
    global _worker_decoder
    _worker_decoder = decoder


def _decode_in_worker(name: str) -> np.ndarray | AlignedPhoto | str:
    assert _worker_decoder is not None, "pool worker was not initialised"
    return _worker_decoder(name)


def _manifest(
    source: ImageSource, fingerprint: str, config: PrepareConfig, result: _DecodeResult, summary: str
) -> dict:
    split_counts = Counter(item["split"] for item in result.files)
    options = config.align_options()
    alignment = {} if options is None else {
        "align": {**config.align_key(), "template_points": TEMPLATES[options.template].points,
                  "backend": f"dlib {options.detector} detector, {options.landmarks}-point landmarks",
                  "fill": "reflection (numpy symmetric padding); 'filled' is the fraction of the crop filled"},
        "faces_too_small": result.faces_too_small,
    }
    return {
        "kind": PREPARED_KIND,
        "format_version": FORMAT_VERSION,
        "source": str(source.path),
        "layout": source.layout,
        "fingerprint": fingerprint,
        "size": config.size,
        "min_size": config.min_size,
        "crop": "center-square" if options is None else f"aligned to the {options.template} template",
        "resize": "PIL bicubic, antialiased" if options is None else "similarity warp, PIL bicubic",
        **alignment,
        "count": len(result.files),
        "content_hash": result.content_hash,
        "splits": {split: split_counts[split] for split in ("train", "val", "test") if split_counts[split]},
        "files": result.files,
        "skipped": result.skipped,
        "skipped_counts": result.skipped_counts(),
        "summary": summary,
    }


def _write_json_atomically(path: Path, payload: dict) -> None:
    write_atomically(path, lambda handle: handle.write(json.dumps(payload, indent=1).encode() + b"\n"))
