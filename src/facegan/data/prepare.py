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
from facegan.data.decode import SkippedImage, decode_image
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


def cache_root() -> Path:
    """``$FACEGAN_CACHE`` if set, else ``~/.cache/facegan``; prepared sets live in its ``prepared/`` folder."""
    configured = os.environ.get("FACEGAN_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "facegan"


def source_fingerprint(source: ImageSource, size: int, min_size: int) -> str:
    """sha256 over FORMAT_VERSION, the options, each entry's (path, byte size, mtime_ns or CRC), the partition file."""
    digest = hashlib.sha256()
    header = {"format_version": FORMAT_VERSION, "layout": source.layout, "size": size, "min_size": min_size}
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    digest.update(f"partition {source.partition_digest}\n".encode())
    for entry in source.entries:
        digest.update(json.dumps([entry.name, entry.size, entry.stamp]).encode() + b"\n")
    return digest.hexdigest()


def default_output_dir(fingerprint: str, size: int) -> Path:
    return cache_root() / "prepared" / f"{fingerprint[:16]}-{size}px"


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
    fingerprint = source_fingerprint(source, config.size, config.min_size)
    out = Path(config.out).expanduser().absolute() if config.out else default_output_dir(fingerprint, config.size)
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
        summary = summary_line(len(result.files), result.skipped_counts())
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

    def skipped_counts(self) -> dict[str, int]:
        counts = Counter(item["reason"] for item in self.skipped)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _decode_to_array(source: ImageSource, path: Path, config: PrepareConfig, progress: bool) -> _DecodeResult:
    """Decode every entry in order into ``path`` (.npy), keeping the decoded ones and recording the skipped."""
    candidates = [entry for entry in source.entries if entry.skip is None]
    skipped = [{"source": entry.name, "reason": entry.skip} for entry in source.entries if entry.skip is not None]
    files: list[dict] = []
    digest = hashlib.sha256()
    shape = (len(candidates), config.size, config.size, 3)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape) if candidates else None
    decoded_entries = _decode_all(source, candidates, config)
    bar = tqdm(total=len(candidates), disable=not progress, unit="img", desc="preparing", leave=False)
    with closing(decoded_entries), bar:
        for entry, decoded in zip(candidates, decoded_entries):
            bar.update()
            if isinstance(decoded, str):
                skipped.append({"source": entry.name, "reason": decoded})
                continue
            images[len(files)] = decoded
            digest.update(decoded.tobytes())
            files.append({"source": entry.name, "split": entry.split})
    if images is not None:
        images.flush()
        del images
        if len(files) < len(candidates):
            _shrink_rows(path, len(files))
    skipped.sort(key=lambda item: item["source"])
    return _DecodeResult(files, skipped, digest.hexdigest())


def _shrink_rows(path: Path, count: int) -> None:
    """Keep only the first ``count`` rows of the .npy at ``path`` (a copy, then a rename)."""
    if count == 0:
        path.unlink()
        return
    full = np.load(path, mmap_mode="r")
    shrunk_path = path.with_name(path.name + ".shrink.partial")
    try:
        shrunk = np.lib.format.open_memmap(shrunk_path, mode="w+", dtype=np.uint8, shape=(count, *full.shape[1:]))
        for start in range(0, count, _COPY_ROWS):
            shrunk[start : start + _COPY_ROWS] = full[start : min(start + _COPY_ROWS, count)]
        shrunk.flush()
        del shrunk, full
        os.replace(shrunk_path, path)
    finally:
        shrunk_path.unlink(missing_ok=True)


def _decode_all(source: ImageSource, entries: list[SourceEntry], config: PrepareConfig) -> Iterator[np.ndarray | str]:
    """Decoded arrays or skip reasons, in the order of ``entries``; in a process pool when that pays off."""
    decoder = EntryDecoder(source.reader(), config.size, config.min_size)
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


_worker_decoder: EntryDecoder | None = None


def _start_worker(decoder: EntryDecoder) -> None:
    global _worker_decoder
    _worker_decoder = decoder


def _decode_in_worker(name: str) -> np.ndarray | str:
    assert _worker_decoder is not None, "pool worker was not initialised"
    return _worker_decoder(name)


def _manifest(
    source: ImageSource, fingerprint: str, config: PrepareConfig, result: _DecodeResult, summary: str
) -> dict:
    split_counts = Counter(item["split"] for item in result.files)
    return {
        "kind": PREPARED_KIND,
        "format_version": FORMAT_VERSION,
        "source": str(source.path),
        "layout": source.layout,
        "fingerprint": fingerprint,
        "size": config.size,
        "min_size": config.min_size,
        "crop": "center-square",
        "resize": "PIL bicubic, antialiased",
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
