"""Where a prepared dataset lives and when an earlier one can be reused: the source fingerprint, the output folder.

By default a prepared set lives in the ``prepared/`` folder of the facegan cache
(:func:`facegan.settings.cache_root`), named after its source's fingerprint and size.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from facegan.data.dataset import FORMAT_VERSION, IMAGES_NAME, MANIFEST_NAME, PreparedDataset, open_prepared
from facegan.data.sources import DataError, ImageSource
from facegan.settings import cache_root


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


def reusable(out: Path, fingerprint: str, size: int, min_size: int) -> PreparedDataset | None:
    """The dataset prepared earlier in ``out`` if it was made from the same fingerprint, size and min_size."""
    try:
        dataset = open_prepared(out)
    except DataError:
        return None
    manifest = dataset.manifest
    if (manifest.get("fingerprint"), manifest.get("size"), manifest.get("min_size")) != (fingerprint, size, min_size):
        return None
    return dataset


def partial_images_path(out: Path) -> Path:
    """Where this process writes the array before renaming it into ``out`` (a leftover if interrupted)."""
    return out / f".{IMAGES_NAME}.{os.getpid()}.partial"


def check_output_dir(out: Path) -> None:
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


def remove_abandoned_partials(out: Path) -> list[Path]:
    """Delete the temporary files a killed prepare left in ``out`` (their process is gone); returns them.

    Their names carry the writer's process id (``.images.npy.PID.partial``, ``.manifest.json.PID.….partial``),
    so a prepare still running on the same folder keeps its own.
    """
    if not out.is_dir():
        return []
    removed = []
    for path in out.iterdir():
        if _is_leftover(path.name) and not _process_alive(_writer_pid(path.name)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _writer_pid(name: str) -> int | None:
    parts = name.split(".")  # "", "images", "npy", PID, ...
    return int(parts[3]) if len(parts) > 4 and parts[3].isdigit() else None


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_leftover(name: str) -> bool:
    return name.startswith((f".{IMAGES_NAME}.", f".{MANIFEST_NAME}.")) and name.endswith(".partial")
