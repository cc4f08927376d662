"""Running a decoder over many entries, in order: in this process, or in a process pool when that pays off."""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import numpy as np

from facegan.data.decoders import AlignedPhoto, EntryDecoder
from facegan.settings import usable_cpus

POOL_MIN_IMAGES = 64  # up to this many entries are decoded in this process
POOL_CHUNKSIZE = 32  # entries handed to a worker at a time; also the fewest per worker

Decoded = np.ndarray | AlignedPhoto | str


def decode_in_order(decoder: EntryDecoder, names: list[str], workers: int) -> Iterator[Decoded]:
    """``decoder(name)`` for each of ``names``, in their order; ``workers``: processes (0: one per usable CPU)."""
    workers = min(worker_count(workers), max(1, len(names) // POOL_CHUNKSIZE))
    if workers <= 1 or len(names) <= POOL_MIN_IMAGES:
        try:
            yield from map(decoder, names)
        finally:
            decoder.reader.close()
        return
    with multiprocessing.get_context().Pool(workers, initializer=_start_worker, initargs=(decoder,)) as pool:
        yield from pool.imap(_decode_in_worker, names, chunksize=POOL_CHUNKSIZE)


def worker_count(requested: int) -> int:
    """``requested`` processes, or one per usable CPU for 0."""
    return requested if requested > 0 else usable_cpus()


_worker_decoder: EntryDecoder | None = None


def _start_worker(decoder: EntryDecoder) -> None:
    global _worker_decoder
    _worker_decoder = decoder


def _decode_in_worker(name: str) -> Decoded:
    assert _worker_decoder is not None, "pool worker was not initialised"
    return _worker_decoder(name)
