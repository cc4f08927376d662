"""Writing files so that a crash at any instant leaves the old file or the complete new one."""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object], durable: bool = False) -> Path:
    """Call `write` on a new temporary file next to `path`, then rename it over `path`.

    With `durable`, the data and the rename are fsynced, so they survive a power cut too.
    """
    path = Path(path)
    if path.is_dir():  # else the error would name the temporary file that cannot replace it
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(temporary, "xb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path
