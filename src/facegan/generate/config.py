"""Typed configurations of `facegan generate` and `facegan interpolate`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import checkpoint_option, device_option, option, precision_option, truncation_option
from ..models import SEEDS_HELP, parse_seeds
from .interpolate import MIN_FPS
from .writer import COMPRESS_LEVELS, DEFAULT_COMPRESS_LEVEL

GRID_FORMATS = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class GenerateConfig:
    checkpoint: str | None = checkpoint_option()
    n: int = option(16, "number of faces", flags=("-n",))
    seed: int = option(0, "first seed; face i uses seed+i, so the same seed always gives the same face")
    seeds: str | None = option(None, f"{SEEDS_HELP}; instead of --seed and -n")
    truncation: float = truncation_option()
    batch_size: int = option(64, "faces computed at once")
    out: str | None = option("faces", "folder for one PNG per face (seedNNNN.png)", flags=("--out", "--outdir"))
    grid: str | None = option(None, "write one grid PNG here instead of single files")
    compress_level: int = option(DEFAULT_COMPRESS_LEVEL, "PNG compression, zlib's 0 (stored, fastest) to 9; 1 "
                                 "encodes about 1.4x faster than Pillow's default 6 for files 6% larger",
                                 choices=COMPRESS_LEVELS)
    ncols: int | None = option(None, "columns of the grid (square when unset)")
    device: str = device_option()
    precision: str = precision_option()

    def seed_list(self) -> list[int]:
        """The seeds to draw: --seeds when given, else --seed .. --seed + n - 1."""
        return parse_seeds(self.seeds) if self.seeds else list(range(self.seed, self.seed + self.n))

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"-n must be at least 1, got {self.n}")
        self.seed_list()
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.truncation <= 2:
            raise ValueError(f"--truncation must be within 0..2, got {self.truncation}")
        if self.grid:
            check_image_path(Path(self.grid), "--grid")


def check_image_path(path: Path, option: str) -> None:
    """An image file to write: not a folder, and a name whose extension says the format."""
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give the image's file name, e.g. {path / 'faces.png'}")
    if path.suffix.lower() not in GRID_FORMATS:
        raise ValueError(f"{option} {path}: the file name must end in {', '.join(GRID_FORMATS)}")


@dataclass
class InterpolateConfig:
    checkpoint: str | None = checkpoint_option()
    seeds: str = option("0,1,2,3", f"the seeds the walk passes through: {SEEDS_HELP}")
    frames: int = option(60, "number of frames in the whole walk")
    fps: float = option(20.0, "frames per second of the animation")
    truncation: float = truncation_option()
    loop: bool = option(False, "return to the first seed at the end, for a seamless loop")
    out: str = option("walk.gif", "output animation: .gif or .mp4")
    device: str = device_option()
    precision: str = precision_option()

    def seed_list(self) -> list[int]:
        seeds = parse_seeds(self.seeds)
        if len(seeds) < 2:
            raise ValueError("--seeds needs at least two seeds, e.g. --seeds 1,7,42")
        return seeds

    def validate(self) -> None:
        self.seed_list()
        if self.frames < 2:
            raise ValueError(f"--frames must be at least 2, got {self.frames}")
        if not self.fps >= MIN_FPS:  # also refuses nan
            raise ValueError(f"--fps must be at least {MIN_FPS:g} frames per second, got {self.fps}")
        if not 0 <= self.truncation <= 2:
            raise ValueError(f"--truncation must be within 0..2, got {self.truncation}")
