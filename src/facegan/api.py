"""The Python API: what the CLI, the web page and a notebook all call.

Every command of `facegan` is one entry of COMMANDS: its typed config, the function here that runs it,
and the lines it reports. The CLI builds its options from the config and calls the function; the web
page (`facegan.serve`, which sits above this module and adds its own entry) calls the same functions.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .checkpoint import CheckpointError
from .config import option
from .data import DataError, PrepareConfig, PreparedDataset
from .data import prepare as _prepare
from .data.align import AlignedFace, AlignOptions
from .data.align import align as _align
from .data.align import backend_available as align_backend_available
from .data.decoders import decoded_images
from .data.images import make_grid, png_bytes
from .generate import FaceGenerator, load_generator, save_animation
from .generate.config import DirectionsConfig, GenerateConfig, InterpolateConfig, ProjectConfig
from .generate.directions import Directions, directions_path, fit_named, load_directions, parse_edits, save_directions, sefa
from .generate.latents import Latents, load_latents
from .generate.project import Projection, load_discriminator_features, unique_stems, write_projection
from .generate.project import project as project_photos
from .generate.export import ExportConfig, export_generator
from .generate.writer import write_faces, write_png
from .metrics.attributes import load_attribute_classifier
from .metrics.evaluate import EvalConfig, GeneratedFaces, result_line
from .metrics.evaluate import evaluate as _evaluate
from .metrics.score import ScoreConfig, ScoreResult, score_images
from .models import ARCHITECTURES, MAX_SEED
from .runs import run_dir_of
from .settings import DEFAULT_MODEL, PRETRAINED_DIR, shipped_model
from .training import TrainConfig, TrainResult
from .training import train as _train
from .training.distributed import launch
from .training.loop import check_before_launch

# What the web page needs beyond the commands; serve/ imports only this module (ARCHITECTURE.md).
from .data.decode import crop_and_resize, to_rgb  # noqa: F401, E402
from .generate.directions import SLIDER_RANGE  # noqa: F401, E402
from .generate.latents import save_latents  # noqa: F401, E402
from .models import latents_from_seeds  # noqa: F401, E402


def _installed_version() -> str:
    try:
        return metadata.version("facegan")  # pyproject.toml's version: its one home
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = _installed_version()
# What a command can fail with that is the user's to fix: the CLI prints these as one line, not a traceback.
USER_ERRORS = (ValueError, DataError, CheckpointError, OSError, RuntimeError)

__all__ = [
    "ARCHITECTURES", "COMMANDS", "MAX_SEED", "USER_ERRORS", "VERSION", "CheckpointError", "Command", "DataError",
    "Directions", "DirectionsConfig", "EvalConfig", "ExportConfig", "FaceGenerator", "GenerateConfig", "InterpolateConfig",
    "Latents", "PrepareConfig", "ProjectConfig", "Projection", "ScoreConfig", "TrainCommand", "TrainConfig", "align",
    "directions", "evaluate", "export", "generate", "interpolate", "load", "load_directions", "load_latents",
    "png_bytes", "prepare", "project", "register_command", "score", "train", "train_on_processes",
]


def default_model_path() -> Path:
    """The model shipped inside the package."""
    path = shipped_model(DEFAULT_MODEL)
    if path is None:
        raise FileNotFoundError(f"this facegan install ships no default model ({PRETRAINED_DIR / DEFAULT_MODEL}"
                                ".safetensors is missing); pass a checkpoint or run directory")
    return path


def load(path: str | os.PathLike | None = None, device: str = "auto", precision: str = "fp32") -> FaceGenerator:
    """A face generator from a checkpoint file or run directory; the shipped model when `path` is None.

    >>> faces = facegan.load("runs/celeba").generate(16, seed=0)   # 16 PIL images
    `device`: auto (the GPU when there is one), cpu, cuda or cuda:N; `precision`: fp32, bf16 (faster where the
    hardware supports it) or auto.
    """
    generator = load_generator(default_model_path() if path is None else path, device, precision)
    generator.attribute_predictor = predict_attributes
    return generator


def predict_attributes(faces: np.ndarray) -> dict[str, np.ndarray]:
    """{"age": years, "female": probability} of N x H x W x 3 uint8 faces, by the shipped attribute classifier."""
    return _shipped_attribute_classifier().predict(faces)


@functools.cache
def _shipped_attribute_classifier():
    return load_attribute_classifier()


def prepare(data: str | os.PathLike | PrepareConfig, size: int = 64, out: str | os.PathLike | None = None,
            progress: bool = True, **options) -> PreparedDataset:
    """Decode, crop and resize the photos at `data` into a uint8 cache (reused when it already matches)."""
    if isinstance(data, PrepareConfig):
        return _prepare(data, progress=progress)
    config = PrepareConfig(data=str(data), size=size, out=None if out is None else str(out), **options)
    return _prepare(config, progress=progress)


def align(image, size: int = 64, **options) -> list[AlignedFace]:
    """The faces in `image` (a path, PIL image or H x W x 3 uint8 array), largest first, each warped to the template.

    >>> faces = facegan.align("party.jpg", size=128, template="ffhq")
    >>> faces[0].image, faces[0].landmarks["eye_left"], faces[0].score, faces[0].filled
    Options as in `facegan.data.align.AlignOptions`; needs `pip install "facegan[align]"`.
    """
    return _align(image, size, **options)


def train(data: str | os.PathLike | None = None, *, resume: str | os.PathLike | None = None,
          config: TrainConfig | None = None, overwrite: bool = False, allow_changed_data: bool = False,
          **options) -> TrainResult:
    """Train on `data` with `options` as in TrainConfig (or a whole `config`), or continue the run at `resume`.

    A new run goes to `out` (a new or empty folder; `overwrite` moves a run already there aside first) or, without
    it, to a new numbered folder in runs/. When resuming, only the budgets (steps, kimg, minutes), `data` (where the
    photos are now), `device`, `workers` and `progress` may be given; the data must be unchanged unless
    `allow_changed_data`.
    """
    if config is None and (data is not None or options):
        config = TrainConfig.create(str(data or ""), **options)
    if resume is not None:
        return _train(config, resume=resume, overwrite=overwrite, allow_changed_data=allow_changed_data)
    if config is None:
        raise ValueError("train needs data (a folder of face photos) or resume (a run directory)")
    return _train(config, overwrite=overwrite)


def train_on_processes(nproc: int, config: TrainConfig, resume: str | os.PathLike | None = None,
                       overwrite: bool = False, allow_changed_data: bool = False) -> TrainResult | None:
    """Train as `train` does, in `nproc` DistributedDataParallel processes on this machine (torchrun's launcher).

    Returns rank 0's result; None when a signal stopped the run (each rank saved a checkpoint first).
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    config = check_before_launch(config, resume, overwrite)  # one line, before any process starts
    return launch(nproc, _train, config, resume, overwrite, allow_changed_data)


def generate(config: GenerateConfig) -> list[Path]:
    """Write faces as PNG files (or one grid) as `facegan generate` does; returns the written paths."""
    config.validate()
    generator = load(config.checkpoint, config.device, config.precision)
    if config.directions:
        generator.use_directions(load_directions(config.directions))
    edits = parse_edits(config.edit)
    if config.latent:
        return _write_latent_faces(generator, load_latents(config.latent, generator.fingerprint), edits, config)
    seeds = config.seed_list()
    if config.grid:
        return [_save_image(generator.grid(truncation=config.truncation, ncols=config.ncols, seeds=seeds, edits=edits),
                            config.grid)]
    return write_faces(generator, seeds, config.out or "faces", config.truncation, config.batch_size,
                       config.compress_level, edits=edits)


def _save_image(image, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _write_latent_faces(generator: FaceGenerator, latents: Latents, edits: dict, config: GenerateConfig) -> list[Path]:
    faces = generator.latent_faces(latents, edits, config.batch_size)
    if config.grid:
        return [_save_image(Image.fromarray(make_grid(faces, ncols=config.ncols)), config.grid)]
    out = Path(config.out or "faces")
    out.mkdir(parents=True, exist_ok=True)
    return [write_png(out / f"{name}.png", face, config.compress_level) for name, face in zip(unique_stems(latents.names), faces)]


def interpolate(config: InterpolateConfig) -> Path:
    """Write a latent walk through `config.seeds` (or along a direction) as a GIF or MP4."""
    config.validate()
    generator = load(config.checkpoint, config.device, config.precision)
    if config.directions:
        generator.use_directions(load_directions(config.directions))
    if config.along:
        frames = generator.walk_direction(config.seed_list(), config.along, config.frames, config.span, config.truncation)
    else:
        frames = generator.interpolate(config.seed_list(), config.frames, config.truncation, config.loop)
    return save_animation(frames, config.out, config.fps)


def directions(config: DirectionsConfig) -> tuple[Path, Directions]:
    """Compute a model's edit directions (unsupervised, and named ones with the attribute classifier) and save them
    where `load` finds them (or to `config.out`), as `facegan directions` does."""
    config.validate()
    generator = load(config.checkpoint, config.device)
    found = sefa(generator.network, config.count)
    if config.named:
        named = fit_named(generator.network, generator.images_from_latents, predict_attributes, config.samples,
                          config.seed, generator.z_dim)
        found = named.merged(found)
    path = Path(config.out) if config.out else directions_path(generator.info["checkpoint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_directions(found, path), found


def project(photos=(), *, config: ProjectConfig | None = None, **options) -> Projection:
    """Find latent codes for photos, as `facegan project` does: writes OUT/latents.safetensors (for
    `generate --latent` and `load(...).latent_faces`), each reconstruction and a photo | reconstruction image.

    >>> result = facegan.project(["me.jpg"], out="projected")      # options as in ProjectConfig
    >>> result.psnr, result.latents, result.reconstructions
    """
    if config is None:
        paths = [photos] if isinstance(photos, (str, os.PathLike)) else photos
        config = ProjectConfig(photos=tuple(map(str, paths)), **options)
    config.validate()
    generator = load(config.checkpoint, config.device)
    align = align_backend_available() if config.align is None else config.align
    align_options = AlignOptions(size=generator.size) if align else None
    names, photos, skipped = [], [], []
    for name, decoded in decoded_images(config.photos, generator.size, align_options):
        if isinstance(decoded, str):
            skipped.append(f"skipped {name}: {decoded}")
        else:
            names.append(name)
            photos.append(decoded)
    if not photos:
        raise ValueError("no photo could be used: " + "; ".join(skipped) if skipped else "no photos found")
    features = load_discriminator_features(generator.info["checkpoint"])
    result = project_photos(generator, np.stack(photos), config.options(), features, unique_stems(names))
    result.skipped = skipped
    write_projection(result, config.out)
    return result


def score(checkpoint: str | os.PathLike | None = None, images=(), *, config: ScoreConfig | None = None,
          **options) -> ScoreResult:
    """P(real photo) per image from the discriminator of a training checkpoint (the shipped model's when None),
    as `facegan score` does.

    >>> result = facegan.score("runs/mine", ["photos/", "faces/seed0001.png"])
    >>> result.mean, result.above_threshold, result.scores[0].probability
    """
    if config is None:
        paths = [images] if isinstance(images, (str, os.PathLike)) else images
        config = ScoreConfig(checkpoint=str(checkpoint or DEFAULT_MODEL), images=tuple(map(str, paths)), **options)
    return score_images(config)


def export(config: ExportConfig) -> Path:
    """Write the moving-average generator as ONNX or TorchScript (latents -> images, any batch size)."""
    config.validate()
    return export_generator(load(config.checkpoint), config)


def evaluate(config: EvalConfig) -> dict:
    """The metrics of a generator (or of a folder of images) against real photos, as `facegan eval` does."""
    config.validate()
    if config.fake:
        return _evaluate(config)
    generator = load(config.checkpoint, config.device, config.precision)
    return _evaluate(config, GeneratedFaces.from_seeds(generator.faces, config, generator.size,
                                                       run_dir_of(generator.info["checkpoint"])))


def architecture_summary(name: str) -> str:
    """One line on what the architecture is; empty for a name this install does not know."""
    arch = ARCHITECTURES.get(name)
    return arch.summary if arch else ""


# The commands of `facegan`.

@dataclass
class TrainCommand:
    """`facegan train`'s options: a training config, and how to run it."""

    config: TrainConfig = field(default_factory=TrainConfig, metadata={"nested": True})
    resume: str | None = option(None, "continue the run in this folder exactly where its last checkpoint left off; "
                                      "only --steps, --kimg, --minutes, --data, --device, --workers may be given")
    overwrite: bool = option(False, "a new run into an --out that holds a run: move that run aside to "
                                    "OUT.replaced-DATE-TIME first (nothing is deleted)")
    allow_changed_data: bool = option(False, "--resume on prepared data that changed since the checkpoint "
                                             "(photos added or removed): no longer an exact continuation")
    nproc: int = option(1, "train in N DistributedDataParallel processes on this machine (one per GPU); "
                           "--batch is then the global batch", flags=("--nproc", "--gpus"))


def run_train_command(command: TrainCommand) -> TrainResult | None:
    if command.nproc != 1:
        return train_on_processes(command.nproc, command.config, command.resume, command.overwrite,
                                  command.allow_changed_data)
    return train(config=command.config, resume=command.resume, overwrite=command.overwrite,
                 allow_changed_data=command.allow_changed_data)


@dataclass(frozen=True)
class Command:
    """One `facegan` command: its options (a config dataclass, or None), what runs it, what it prints."""

    name: str
    help: str
    config: type | None
    run: Callable[[Any], Any]
    report: Callable[[Any], list[str]] = lambda result: []
    positional: tuple[str, ...] = ()  # config fields given without a flag, one or more values each


COMMANDS: dict[str, Command] = {}


def register_command(command: Command) -> Command:
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is registered twice")
    COMMANDS[command.name] = command
    return command


def _score_lines(result: ScoreResult) -> list[str]:
    lines = [f"{item.probability:.3f}  {item.source}" for item in result.scores]
    return lines + [f"skipped  {source}: {reason}" for source, reason in result.skipped] + [result.summary()]


def _written_lines(paths: list[Path]) -> list[str]:
    return [str(paths[0]) if len(paths) == 1 else f"wrote {len(paths)} faces to {paths[0].parent}"]


def _direction_lines(result: tuple[Path, Directions]) -> list[str]:
    path, found = result
    lines = [f"{name:8s} {found.notes.get(name, {}).get('method', '')}"
             + (f", {found.notes[name]['change per unit']:+.2f} {found.notes[name]['follows']} per unit"
                if "change per unit" in found.notes.get(name, {}) else "") for name in found.names]
    return lines + [f"wrote {len(found.names)} directions to {path}"]


def _projection_lines(result: Projection) -> list[str]:
    per_photo = result.seconds / max(1, len(result.latents))
    return [*result.skipped, *[f"{value:5.1f} dB  {name}" for name, value in zip(result.latents.names, result.psnr)],
            f"projected {len(result.latents)} photos, mean PSNR {result.psnr.mean():.1f} dB, {per_photo:.1f} s per photo"]


def _trained_lines(result: TrainResult | None) -> list[str]:
    return [] if result is None else [f"run directory: {result.run_dir}", f"checkpoint: {result.checkpoint}"]


for _command in (
    Command("prepare", "crop and resize photos into a uint8 cache", PrepareConfig, prepare,
            lambda dataset: [f"prepared {len(dataset)} images at {dataset.size} px in {dataset.root}"]),
    Command("train", "train a GAN (or --resume RUN_DIR)", TrainCommand, run_train_command, _trained_lines),
    Command("generate", "write faces as PNGs or a grid", GenerateConfig, generate, _written_lines),
    Command("interpolate", "latent walk through seeds, as GIF or MP4", InterpolateConfig, interpolate,
            lambda path: [str(path)]),
    Command("directions", "compute and save a model's edit directions (age, gender, dir1..)", DirectionsConfig, directions,
            _direction_lines),
    Command("project", "find the latent codes of photos, to regenerate and edit them", ProjectConfig,
            lambda config: project(config=config),
            _projection_lines, positional=("photos",)),
    Command("eval", "FID and KID against real photos", EvalConfig, evaluate, lambda result: [result_line(result)]),
    Command("score", "P(real photo) of images by a training checkpoint's discriminator", ScoreConfig,
            lambda config: score(config=config), _score_lines, positional=("images",)),
    Command("export", "the generator as an ONNX or TorchScript file", ExportConfig, export, lambda path: [str(path)]),
    Command("archs", "list the architectures", None, lambda _: sorted(ARCHITECTURES.items()),
            lambda archs: [f"{name:10s} {arch.summary}" for name, arch in archs]),
):
    register_command(_command)
