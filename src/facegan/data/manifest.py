"""What a prepare run records: the files kept and skipped with their content hash, and ``manifest.json``.

The manifest's keys: ``kind``, ``format_version``, ``source`` (absolute path), ``layout``,
``fingerprint``, ``size``, ``min_size``, ``crop``, ``resize`` (with --align also ``align`` and
``faces_too_small``), ``count``, ``content_hash`` (sha256 of the array bytes), ``splits``
({split: count}), ``files`` ([{"source": relpath, "split": ...}] in array order), ``skipped``
([{"source": relpath, "reason": ...}]), ``skipped_counts`` and ``summary``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facegan.data.dataset import FORMAT_VERSION, PREPARED_KIND
from facegan.data.geometry import TEMPLATES
from facegan.data.sources import ImageSource
from facegan.data.summary import aligned_summary_line, summary_line
from facegan.files import write_atomically

if TYPE_CHECKING:
    from facegan.data.prepare import PrepareConfig


@dataclass
class DecodeResult:
    """The rows of the prepared array (``files``, in array order), the entries skipped, and the array's hash."""

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


def build_manifest(
    source: ImageSource, fingerprint: str, config: PrepareConfig, result: DecodeResult, summary: str
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


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` to ``path`` atomically (a reader never sees a partial manifest)."""
    write_atomically(path, lambda handle: handle.write(json.dumps(manifest, indent=1).encode() + b"\n"))
