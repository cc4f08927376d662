"""The layout of a run folder: where its checkpoints are written and how they are found again.

    RUN_DIR/checkpoints/ckpt-00001000.safetensors   one per --checkpoint-every, the newest --keep kept
    RUN_DIR/samples/, log.jsonl, losses.png, ...     what training/reporting.py writes for people
"""
from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = "ckpt-*.safetensors"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step:08d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints of a run, newest first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob(CHECKPOINT_PATTERN), reverse=True)


def unfinished_checkpoints(run_dir: Path) -> list[Path]:
    """Temporary files of checkpoint writes that a kill interrupted."""
    return list((Path(run_dir) / CHECKPOINT_DIR).glob(".ckpt-*.partial"))  # files.write_atomically's names


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file belongs to; None for a file kept elsewhere (a shipped model, an export)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None
