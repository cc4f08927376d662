"""`facegan eval`: metrics (FID and KID by default) of generated faces against real photos.

:func:`evaluate` does the whole evaluation: Inception features of the fakes (a folder of images,
or :class:`GeneratedFaces` from a generator), of the real photos (prepared at the fakes' size),
the metrics of :mod:`facegan.metrics.registry` that ``--metrics`` names, and the record.

Real-image features are cached on disk, keyed by the prepared dataset's content hash, the
image size, the split, the number of images and the Inception weights, so repeated evaluations
only pay for the fakes.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from ..config import checkpoint_option, device_option, option, precision_option, truncation_option
from ..data import DataError, PrepareConfig, PreparedDataset, prepare
from ..data.sources import has_image_extension
from ..models import SEEDS_HELP, parse_seeds
from ..settings import SIZES, cache_root
from .inception import InceptionFeatures
from .registry import MetricContext, compute_metrics, metric_line, metric_names, parse_metrics

DEFAULT_METRICS = "fid,kid"


@dataclass
class EvalConfig:
    real: str = option("", "real photos: anything `prepare` accepts, or a prepared cache")
    checkpoint: str | None = checkpoint_option()
    fake: str | None = option(None, "evaluate this folder of images instead of a generator")
    n: int = option(10_000, "number of generated faces (or at most this many from --fake)", flags=("-n",))
    split: str = option("auto", "split of the real photos; auto: test where the photos have a partition (CelebA's), "
                                "else all of them", choices=("auto", "train", "val", "test", "all"))
    max_real: int | None = option(None, "use at most this many real photos (all of the split when unset)")
    seed: int = option(0, "first seed of the generated faces")
    seeds: str | None = option(None, f"{SEEDS_HELP}; instead of --seed and -n")
    truncation: float = truncation_option("truncation of the generated faces (FID is defined at 1)")
    kid_subsets: int = option(100, "KID: number of random subsets")
    kid_subset_size: int = option(1000, "KID: images per subset (capped at the smaller set)")
    batch_size: int | None = option(None, "images per Inception forward pass (8 on CPU, 64 on GPU when unset)")
    inception: str | None = option(None, "path to the FID Inception weights (else $FACEGAN_INCEPTION, cache, download)")
    out: str | None = option(None, "write the result JSON here (also appended to the run's metrics.jsonl)")
    device: str = device_option()
    precision: str = precision_option()
    progress: bool = option(True, "show progress bars")
    metrics: str = option(DEFAULT_METRICS, f"comma-separated metrics to compute, of: {', '.join(metric_names())}")

    def validate(self) -> None:
        if not self.real:
            raise ValueError("--real is required: the real photos to compare with")
        if self.n < 2:
            raise ValueError(f"-n must be at least 2, got {self.n}")
        if self.max_real is not None and self.max_real < 2:
            raise ValueError("--max-real must be at least 2")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError("--kid-subsets must be at least 1 and --kid-subset-size at least 2")
        parse_metrics(self.metrics)
        self.seed_list()

    def seed_list(self) -> list[int]:
        """The seeds of the generated faces: --seeds when given, else --seed .. --seed + n - 1."""
        return parse_seeds(self.seeds) if self.seeds else list(range(self.seed, self.seed + self.n))

    def metric_list(self) -> tuple[str, ...]:
        """The metrics to compute, in the order given (ValueError naming the choices for an unknown one)."""
        return parse_metrics(self.metrics)


@dataclass
class GeneratedFaces:
    """Faces from a generator, for :func:`evaluate` (which must not know how generators are loaded)."""

    batches: Callable[[int], Iterator[np.ndarray]]  # batch size -> uint8 N x H x W x 3 batches, `count` faces in all
    count: int
    size: int  # their side in pixels: the real photos are prepared at this size
    run_dir: Path | None = None  # the training run whose metrics.jsonl gets the result

    @classmethod
    def from_seeds(cls, faces: Callable[[range, float, int], np.ndarray], config: EvalConfig, size: int,
                   run_dir: Path | None = None) -> GeneratedFaces:
        """The faces of ``config.seed_list()`` at ``config.truncation``.

        `faces(seeds, truncation, batch_size)` returns their uint8 images (``FaceGenerator.faces``).
        """
        seeds = config.seed_list()

        def batches(batch_size: int) -> Iterator[np.ndarray]:
            for start in range(0, len(seeds), batch_size):
                yield faces(seeds[start:start + batch_size], config.truncation, batch_size)

        return cls(batches, len(seeds), size, run_dir)


def evaluate(config: EvalConfig, generated: GeneratedFaces | None = None) -> dict:
    """The metrics of `generated` (or of the folder ``config.fake``) against ``config.real``, recorded.

    The result has each metric's numbers (``fid``; ``kid_mean``, ``kid_std``), ``n_real``,
    ``n_fake``, ``metrics`` (the names computed) and the evaluation's context (see :func:`record`).
    """
    config.validate()
    if config.fake and generated is not None:
        raise ValueError("evaluate takes one source of fakes: the folder --fake or generated faces, not both")
    if not config.fake and generated is None:
        raise ValueError("nothing to evaluate: pass --fake (a folder of images) or generated faces")
    files = image_files(config.fake, config.n) if config.fake else None
    size, run_dir = (folder_image_size(files[0]), None) if files else (generated.size, generated.run_dir)
    # Everything that can be refused is checked before the slow part (Inception features of the fakes).
    dataset = prepare(PrepareConfig(data=config.real, size=size), progress=config.progress)
    split = resolve_split(dataset, config.split)
    net = InceptionFeatures(config.inception, config.device, config.batch_size)
    if files:
        fake = net.extract(file_batches(files, net.batch_size), total=len(files), progress=config.progress)
    else:
        fake = net.extract(generated.batches(net.batch_size), total=generated.count, progress=config.progress)
    real = real_features(dataset, split, config.max_real, net, config.progress)
    return record(compare(real, fake, config), replace(config, split=split), run_dir)


def resolve_split(dataset: PreparedDataset, split: str) -> str:
    """`auto` is the test split where the photos have one, else all of them; any split is checked to exist."""
    if split == "auto":
        split = "test" if "test" in dataset.split_counts() else "all"
    dataset.split_indices(split)  # DataError naming the available splits
    return split


def result_line(result: dict) -> str:
    """The line `facegan eval` prints: each metric computed, then what was compared."""
    names = result.get("metrics") or parse_metrics(DEFAULT_METRICS)
    parts = [metric_line(name, result) for name in names]
    return "  ".join(parts) + (f"  ({result['n_fake']} generated vs {result['n_real']} real, "
                               f"{result['split']} split)")


def folder_image_size(first: Path) -> int:
    """The size to prepare the real photos at for a folder of fakes: its first image's width if supported."""
    with Image.open(first) as image:
        width = image.width
    return width if width in SIZES else max(SIZES)


def batches_of(array: np.ndarray, indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), batch_size):
        yield np.asarray(array[indices[start : start + batch_size]])


def real_features(dataset: PreparedDataset, split: str, limit: int | None, net: InceptionFeatures,
                  progress: bool = True) -> np.ndarray:
    """Inception features of the first `limit` images of `split`, from the on-disk cache when present."""
    indices = dataset.split_indices(split)
    if limit is not None:
        indices = indices[:limit]
    network = net.path.stat()  # another Inception file, or the same path rewritten, must not reuse old features
    key = json.dumps([dataset.content_hash, dataset.size, split, len(indices), str(net.path.resolve()), network.st_size,
                      network.st_mtime_ns])
    path = cache_root() / "stats" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["features"]
    features = net.extract(batches_of(dataset.images, indices, net.batch_size), total=len(indices), progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=features, key=key)
    return features


def image_files(folder: str | Path, limit: int) -> list[Path]:
    """The image files of a folder, searched recursively and sorted, at most `limit`."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and has_image_extension(p.name))[:limit]
    if not files:
        raise DataError(f"no images in {folder}")
    return files


def file_batches(files: Iterable[Path], batch_size: int) -> Iterator[np.ndarray]:
    """N x H x W x 3 uint8 batches of at most `batch_size` files; a change of image size starts a new batch."""
    batch: list[np.ndarray] = []
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
            yield np.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield np.stack(batch)


def compare(real: np.ndarray, fake: np.ndarray, config: EvalConfig) -> dict:
    """The metrics ``config.metrics`` names, then ``n_real``, ``n_fake`` and ``metrics`` (those names)."""
    names = config.metric_list()
    result = compute_metrics(names, MetricContext(real, fake, config))
    return {**result, "n_real": len(real), "n_fake": len(fake), "metrics": list(names)}


def record(result: dict, config: EvalConfig, run_dir: Path | None) -> dict:
    """Add context to `result`, write it to --out and append it to the run's metrics log."""
    result = {**result, "real": config.real, "split": config.split, "checkpoint": config.checkpoint,
              "fake": config.fake, "truncation": config.truncation,
              "precision": None if config.fake else config.precision, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if config.out:
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        Path(config.out).write_text(json.dumps(result, indent=1) + "\n")
    if run_dir is not None and run_dir.is_dir():
        with (run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")
    return result
