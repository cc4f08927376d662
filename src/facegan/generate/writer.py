"""Faces written as PNG files while the next batch is being generated.

`write_faces` runs the generator batch by batch in the calling thread and hands each batch to a
pool of threads that encode and write its PNGs. Pillow's PNG encoder (filtering and zlib) runs
without the GIL, so the encoding overlaps the network instead of following it. At most `pending`
batches wait to be written, so memory stays flat however many faces are asked for.
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from ..models import MAX_SEED
from ..data.images import png_bytes
from ..settings import usable_cpus
from .generator import FaceGenerator

# zlib's level for the PNGs. For the shipped 64 px faces, one thread's CPU time per face to encode and write
# (benchmarks/throughput.py's `files` section) and the file size: level 0 (stored) 0.33 ms, 12.4 KB;
# level 1 0.59 ms, 8.5 KB; Pillow's default 6 0.73 ms, 8.0 KB; 9 is no smaller than 6. Level 1 keeps the
# files within 6 % of the smallest at 0.8x the CPU of level 6; level 0 saves more CPU but writes 46 % more.
DEFAULT_COMPRESS_LEVEL = 1
COMPRESS_LEVELS = tuple(range(10))


def face_path(out: Path, seed: int) -> Path:
    """Where face `seed` goes: seedNNNN.png (at least four digits, as `facegan generate` has always named them)."""
    return out / f"seed{seed:04d}.png"


def write_png(path: Path, face: np.ndarray, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> Path:
    """Write one face to `path`. A failed write raises its OSError naming `path` and leaves no partial file."""
    data = memoryview(png_bytes(face, compress_level))
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            while data:
                data = data[os.write(handle, data):]
        finally:
            os.close(handle)  # where the data reach the disk only now (NFS), this too can fail
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a truncated PNG would pass for a face that was written
        if error.filename is None:  # write() and close() name no file; open() does
            error.filename = str(path)
        raise
    return path


def _write_batch(paths: Sequence[Path], faces: np.ndarray, compress_level: int) -> None:
    for path, face in zip(paths, faces):
        write_png(path, face, compress_level)


def _wait(batch: list[Future]) -> None:
    for future in batch:
        future.result()


def _raise_failure(batch: list[Future]) -> None:
    for future in batch:
        if future.done() and future.exception() is not None:
            future.result()


def write_faces(generator: FaceGenerator, seeds: Sequence[int], out: str | os.PathLike, truncation: float = 1.0,
                batch_size: int = 64, compress_level: int = DEFAULT_COMPRESS_LEVEL, workers: int | None = None,
                pending: int | None = None, edits: Mapping[str, float] | None = None) -> list[Path]:
    """Write the face of each seed to `out`/seedNNNN.png, encoding and writing while later batches are generated.

    The faces and names are those of `generator.faces(seeds, truncation, batch_size, edits)` saved one by one with
    `Image.save`: batches of `batch_size` seeds go through the network exactly as there, so every pixel is
    the same; the PNG bytes differ only where `compress_level` (zlib's 0-9; Pillow's default is 6) does.
    `workers` threads encode and write (the usable CPUs when None). While a batch is generated, at most
    `pending` earlier ones (2 when None) wait to be written, so memory holds `pending` + 1 batches of faces
    for any number of seeds. Returns the paths in the order of `seeds`. The first failed write stops generation
    and raises its OSError (naming the file) once the writes already under way have ended.
    """
    if compress_level not in COMPRESS_LEVELS:
        raise ValueError(f"--compress-level must be within 0..9, got {compress_level}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    workers = workers or usable_cpus()
    pending = max(1, pending or 2)
    seeds = list(seeds)
    if seeds and not 0 <= min(seeds) <= max(seeds) <= MAX_SEED:  # before any file is written, as before
        raise ValueError(f"seeds must be within 0..{MAX_SEED}, got {min(seeds)}..{max(seeds)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [face_path(out, seed) for seed in seeds]
    batches: deque[list[Future]] = deque()  # the batches generated and not yet known written, oldest first
    with ThreadPoolExecutor(workers, thread_name_prefix="facegan-png") as pool:
        try:
            for start in range(0, len(seeds), batch_size):
                while len(batches) > pending:
                    _wait(batches.popleft())
                for batch in batches:  # a failed write stops generation now, not `pending` batches later
                    _raise_failure(batch)
                faces = generator.faces(seeds[start:start + batch_size], truncation, batch_size, edits)
                # one part per thread, so that every thread has work while the next batch is computed
                parts = np.array_split(np.arange(len(faces)), min(workers, len(faces)))
                batches.append([pool.submit(_write_batch, paths[start + part[0]:start + part[-1] + 1],
                                            faces[part[0]:part[-1] + 1], compress_level) for part in parts])
            while batches:
                _wait(batches.popleft())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the writes under way end; no other starts
            raise
    return paths
