"""Typed configurations of `facegan generate` and `facegan interpolate`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import checkpoint_option, device_option, option, precision_option, truncation_option
from ..models import SEEDS_HELP, parse_seeds
from .directions import DEFAULT_UNSUPERVISED, MAX_UNSUPERVISED, MIN_FIT_SAMPLES, SLIDER_RANGE, parse_edits
from .project import SPACES, ProjectOptions
from .interpolate import MIN_FPS
from .writer import COMPRESS_LEVELS, DEFAULT_COMPRESS_LEVEL

GRID_FORMATS = (".png", ".jpg", ".jpeg", ".webp")
EDIT_HELP = ("move the faces along edit directions, units of one standard deviation: e.g. age=+2,dir3=-1.5 "
             "(`facegan directions` lists them)")
MAX_SPAN = 10.0


def directions_option():
    return option(None, "edit directions file (default: the model's own, saved beside it by `facegan directions`, "
                        "else its unsupervised directions dir1..dir10, computed on the spot)")


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
    edit: str | None = option(None, EDIT_HELP)
    directions: str | None = directions_option()
    latent: str | None = option(None, "make the faces of this latent file (written by `facegan project`) "
                                      "instead of seeds")
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
        parse_edits(self.edit)


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
    along: str | None = option(None, "instead of walking between seeds, move each seed's face along this edit "
                                     "direction (e.g. age) from -span to +span and back")
    span: float = option(SLIDER_RANGE, "how far --along goes each way, in units of the direction")
    directions: str | None = directions_option()
    device: str = device_option()
    precision: str = precision_option()

    def seed_list(self) -> list[int]:
        seeds = parse_seeds(self.seeds)
        if len(seeds) < 2 and not self.along:
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
        if not 0 < self.span <= MAX_SPAN:
            raise ValueError(f"--span must be within 0..{MAX_SPAN:g}, got {self.span}")


@dataclass
class DirectionsConfig:
    checkpoint: str | None = checkpoint_option()
    out: str | None = option(None, "directions file to write (default: beside the model, where generate finds it)")
    count: int = option(DEFAULT_UNSUPERVISED, "unsupervised directions (dir1..dirN, strongest first)")
    named: bool = option(True, "also fit the named directions (age, gender) with the attribute classifier")
    samples: int = option(5000, "generated faces the named directions are fitted on")
    seed: int = option(0, "seed of those faces' latents")
    device: str = device_option()

    def validate(self) -> None:
        if not 1 <= self.count <= MAX_UNSUPERVISED:
            raise ValueError(f"--count must be within 1..{MAX_UNSUPERVISED}, got {self.count}")
        if self.named and self.samples < MIN_FIT_SAMPLES:
            raise ValueError(f"--samples must be at least {MIN_FIT_SAMPLES} to fit a direction, got {self.samples}")


@dataclass
class ProjectConfig:
    photos: tuple[str, ...] = option((), "photos, folders (searched recursively) or .zip files")
    checkpoint: str | None = checkpoint_option()
    out: str = option("projected", "folder for the latent file, the reconstructions and the side-by-side images")
    steps: int = option(ProjectOptions.steps, "optimisation steps per photo")
    space: str = option(ProjectOptions.space, "extended: z plus an offset to the first layer (closer likeness); "
                                              "z: the latent alone", choices=SPACES)
    feature_weight: float = option(ProjectOptions.feature_weight, "weight of the discriminator-feature loss "
                                                                  "beside the pixel loss (0: pixels only)")
    align: bool | None = option(None, "find and align each face first (needs facegan[align]); "
                                      "default: align when the backend is installed, else centre-crop")
    seed: int = option(0, "seed of the random starting latents")
    device: str = device_option()

    def options(self) -> ProjectOptions:
        return ProjectOptions(steps=self.steps, space=self.space, feature_weight=self.feature_weight, seed=self.seed)

    def validate(self) -> None:
        if not self.photos:
            raise ValueError("no photos to project: pass image files, folders or .zip files")
        self.options().validate()
