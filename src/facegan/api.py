"""The Python API: what the CLI, the web page and a notebook all call."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .data import PrepareConfig, PreparedDataset
from .data import prepare as _prepare
from .data.align import AlignedFace
from .data.align import align as _align
from .config import command_line
from .models import SIZES
from .generate import FaceGenerator, load_generator, save_animation
from .generate.config import GenerateConfig, InterpolateConfig
from .generate.export import ExportConfig, export_generator
from .metrics.evaluate import EvalConfig, compare, file_batches, image_files, real_features, record
from .metrics.inception import InceptionFeatures
from .metrics.score import ScoreConfig, ScoreResult, score_images
from .serve import ServeConfig
from .training import TrainConfig, TrainResult
from .training import train as _train
from .training.distributed import launch

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "celeba64.safetensors"


def default_model_path() -> Path:
    """The generator shipped inside the package."""
    path = PRETRAINED_DIR / DEFAULT_MODEL
    if not path.exists():
        raise FileNotFoundError(
            f"this facegan install ships no default model ({path} is missing); pass a checkpoint or run directory"
        )
    return path


def load(path: str | os.PathLike | None = None, device: str = "cpu", precision: str = "fp32") -> FaceGenerator:
    """A face generator from a checkpoint file or run directory; the shipped model when `path` is None.

    >>> faces = facegan.load("runs/celeba").generate(16, seed=0)   # 16 PIL images
    `precision`: fp32, bf16 (faster where the hardware supports it) or auto.
    """
    return load_generator(default_model_path() if path is None else path, device, precision)


def prepare(data: str | os.PathLike, size: int = 64, out: str | os.PathLike | None = None,
            progress: bool = True, **options) -> PreparedDataset:
    """Decode, crop and resize the photos at `data` into a uint8 cache (reused when it already matches)."""
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
          config: TrainConfig | None = None, **options) -> TrainResult:
    """Train on `data` with `options` as in TrainConfig (or a whole `config`), or continue the run at `resume`.

    When resuming, only the budgets (steps, kimg, minutes) and `progress` of `config`/`options` are used.
    """
    if config is None and (data is not None or options):
        config = TrainConfig(data=str(data or ""), **options)
    if resume is not None:
        return _train(config, resume=resume)
    if config is None:
        raise ValueError("train needs data (a folder of face photos) or resume (a run directory)")
    return _train(config)


def train_on_processes(nproc: int, config: TrainConfig, resume: str | os.PathLike | None = None) -> None:
    """Train as `train` does, in `nproc` DistributedDataParallel processes on this machine (torchrun's launcher)."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    args = ["train", *command_line(config), *(["--resume", str(resume)] if resume is not None else [])]
    launch(nproc, args)


def generate(config: GenerateConfig) -> list[Path]:
    """Write faces as PNG files (or one grid) as `facegan generate` does; returns the written paths."""
    config.validate()
    generator = load(config.checkpoint, config.device, config.precision)
    seeds = range(config.seed, config.seed + config.n)
    if config.grid:
        image = generator.grid(config.n, config.seed, config.truncation, config.ncols)
        path = Path(config.grid)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return [path]
    out = Path(config.out or "faces")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, image in zip(seeds, generator.generate(config.n, config.seed, config.truncation, config.batch_size)):
        paths.append(out / f"seed{seed:04d}.png")
        image.save(paths[-1])
    return paths


def interpolate(config: InterpolateConfig) -> Path:
    """Write a latent walk through `config.seeds` as a GIF or MP4."""
    config.validate()
    generator = load(config.checkpoint, config.device, config.precision)
    frames = generator.interpolate(config.seed_list(), config.frames, config.truncation, config.loop)
    return save_animation(frames, config.out, config.fps)


def score(checkpoint: str | os.PathLike | None = None, images=(), *, config: ScoreConfig | None = None,
          **options) -> ScoreResult:
    """P(real photo) per image from the discriminator of a training checkpoint, as `facegan score` does.

    >>> result = facegan.score("runs/mine", ["photos/", "faces/seed0001.png"])
    >>> result.mean, result.above_threshold, result.scores[0].probability
    """
    if config is None:
        paths = [images] if isinstance(images, (str, os.PathLike)) else images
        config = ScoreConfig(checkpoint=str(checkpoint or ""), images=tuple(map(str, paths)), **options)
    return score_images(config)


def export(config: ExportConfig) -> Path:
    """Write the moving-average generator as ONNX or TorchScript (latents -> images, any batch size)."""
    config.validate()
    return export_generator(load(config.checkpoint), config)


def serve(config: ServeConfig) -> None:
    """Serve the face page and its API for `config.checkpoint` (the shipped model when unset) until Ctrl-C."""
    from .serve import run_server

    config.validate()
    run_server(load(config.checkpoint, config.device, config.precision), config)


def _generated_batches(generator: FaceGenerator, config: EvalConfig, batch_size: int):
    end = config.seed + config.n
    for start in range(config.seed, end, batch_size):
        yield generator.faces(range(start, min(start + batch_size, end)), config.truncation, batch_size)


def evaluate(config: EvalConfig) -> dict:
    """FID and KID of a generator (or of a folder of images) against real photos, as `facegan eval` does."""
    config.validate()
    net = InceptionFeatures(config.inception, config.device, config.batch_size)
    run_dir = None
    if config.fake:
        files = image_files(config.fake, config.n)
        fake = net.extract(file_batches(files, net.batch_size), total=len(files), progress=config.progress)
        width = Image.open(files[0]).width
        size = width if width in SIZES else max(SIZES)
    else:
        generator = load(config.checkpoint, config.device, config.precision)
        fake = net.extract(_generated_batches(generator, config, net.batch_size), total=config.n, progress=config.progress)
        size = generator.size
        checkpoint = Path(generator.info["checkpoint"])
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None
    dataset = _prepare(PrepareConfig(data=config.real, size=size), progress=config.progress)
    real = real_features(dataset, config.split, config.max_real, net, config.progress)
    return record(compare(real, fake, config), config, run_dir)
