"""The one-line summaries of a prepare run that the manifest keeps and the command prints."""
from __future__ import annotations

from facegan.data.decoders import NO_FACE, ONLY_SMALL_FACES


def summary_line(count: int, skipped_counts: dict[str, int]) -> str:
    """E.g. ``"12034 images, 3 skipped: 2 truncated, 1 not an image"``."""
    total_skipped = sum(skipped_counts.values())
    line = f"{count} images, {total_skipped} skipped"
    if total_skipped:
        line += ": " + _reason_counts(skipped_counts)
    return line


def aligned_summary_line(photos: int, faces: int, faces_too_small: int, skipped_counts: dict[str, int]) -> str:
    """E.g. ``"1,204 photos -> 1,377 faces; 61 photos without a face; 15 faces too small"``."""
    counts = dict(skipped_counts)
    without_face = counts.pop(NO_FACE, 0) + counts.pop(ONLY_SMALL_FACES, 0)
    line = (f"{_count(photos, 'photo')} -> {_count(faces, 'face')}; {_count(without_face, 'photo')} without a face; "
            f"{_count(faces_too_small, 'face')} too small")
    if counts:
        line += f"; {skipped_phrase(counts)}"
    return line


def skipped_phrase(skipped_counts: dict[str, int]) -> str:
    """E.g. ``"3 skipped (2 truncated, 1 not an image)"``."""
    return f"{sum(skipped_counts.values())} skipped ({_reason_counts(skipped_counts)})"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _reason_counts(skipped_counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in skipped_counts.items())
