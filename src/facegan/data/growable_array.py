"""A uint8 .npy file written row by row that grows (doubling its rows) when more rows come than expected."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

COPY_ROWS = 1024  # rows copied at a time when the file is resized


class GrowableArray:
    """Rows appended to a memory-mapped .npy at ``path``, made with room for ``capacity`` rows of ``row_shape``.

    ``close()`` trims the file to the rows appended (and removes it when there are none). With a
    capacity of 0 no file is made and nothing can be appended.
    """

    def __init__(self, path: Path, capacity: int, row_shape: tuple[int, ...]) -> None:
        self.path = path
        self.capacity = capacity
        self.count = 0
        self._rows = (np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(capacity, *row_shape))
                      if capacity else None)

    def append(self, row: np.ndarray) -> None:
        if self.count == self.capacity:
            self._grow()
        self._rows[self.count] = row
        self.count += 1

    def close(self) -> None:
        """Flush, and keep only the rows appended."""
        if self._rows is None:
            return
        self._unmap()
        if self.count < self.capacity:
            resize_rows(self.path, self.count, self.count)
            self.capacity = self.count

    def _grow(self) -> None:
        self._unmap()
        self.capacity *= 2
        resize_rows(self.path, self.count, self.capacity)
        self._rows = np.load(self.path, mmap_mode="r+")

    def _unmap(self) -> None:
        self._rows.flush()
        self._rows = None


def resize_rows(path: Path, count: int, capacity: int) -> None:
    """Keep the first ``count`` rows of the .npy at ``path`` in one of ``capacity`` rows (a copy, then a rename)."""
    if capacity == 0:
        path.unlink()
        return
    full = np.load(path, mmap_mode="r")
    resized_path = path.with_name(path.name + ".resize.partial")
    try:
        resized = np.lib.format.open_memmap(resized_path, mode="w+", dtype=np.uint8, shape=(capacity, *full.shape[1:]))
        for start in range(0, count, COPY_ROWS):
            resized[start : min(start + COPY_ROWS, count)] = full[start : min(start + COPY_ROWS, count)]
        resized.flush()
        del resized, full
        os.replace(resized_path, path)
    finally:
        resized_path.unlink(missing_ok=True)
