"""Typed configurations of `facegan generate` and `facegan interpolate`."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import option, precision_option


@dataclass
class GenerateConfig:
    checkpoint: str | None = option(None, "checkpoint file or run directory (the shipped model when unset)")
    n: int = option(16, "number of faces", flags=("-n", "--n"))
    seed: int = option(0, "first seed; face i uses seed+i, so the same seed always gives the same face")
    truncation: float = option(1.0, "pull latents toward the mean face: 1 = none, 0 = the mean face")
    batch_size: int = option(64, "faces computed at once")
    out: str | None = option("faces", "folder for one PNG per face (seedNNNN.png)")
    grid: str | None = option(None, "write one grid PNG here instead of single files")
    ncols: int | None = option(None, "columns of the grid (square when unset)")
    device: str = option("cpu", "cpu, cuda or cuda:N")
    precision: str = precision_option()

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"-n must be at least 1, got {self.n}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.truncation <= 2:
            raise ValueError(f"--truncation must be within 0..2, got {self.truncation}")


@dataclass
class InterpolateConfig:
    checkpoint: str | None = option(None, "checkpoint file or run directory (the shipped model when unset)")
    seeds: str = option("0,1,2,3", "comma-separated seeds the walk passes through")
    frames: int = option(60, "number of frames in the whole walk")
    fps: float = option(20.0, "frames per second of the animation")
    truncation: float = option(1.0, "pull latents toward the mean face (1 = none)")
    loop: bool = option(False, "return to the first seed at the end, for a seamless loop")
    out: str = option("walk.gif", "output animation: .gif or .mp4")
    device: str = option("cpu", "cpu, cuda or cuda:N")
    precision: str = precision_option()

    def seed_list(self) -> list[int]:
        try:
            seeds = [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {self.seeds!r}") from None
        if len(seeds) < 2:
            raise ValueError("--seeds needs at least two seeds, e.g. --seeds 1,7,42")
        return seeds

    def validate(self) -> None:
        self.seed_list()
        if self.frames < 2:
            raise ValueError(f"--frames must be at least 2, got {self.frames}")
        if self.fps <= 0:
            raise ValueError("--fps must be positive")
        if not 0 <= self.truncation <= 2:
            raise ValueError(f"--truncation must be within 0..2, got {self.truncation}")
