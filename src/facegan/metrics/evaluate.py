"""`facegan eval`: FID and KID of generated faces against real photos.

Real-image features are cached on disk, keyed by the prepared dataset's content hash, the
image size, the split, the number of images and the Inception weights, so repeated evaluations
only pay for the fakes.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..config import option, precision_option
from ..data import DataError, PreparedDataset, cache_root
from ..data.sources import has_image_extension
from .fid import fid_from_features, kid_from_features
from .inception import InceptionFeatures


@dataclass
class EvalConfig:
    real: str = option("", "real photos: anything `prepare` accepts, or a prepared cache")
    checkpoint: str | None = option(None, "checkpoint or run directory to evaluate (the shipped model when unset)")
    fake: str | None = option(None, "evaluate this folder of images instead of a generator")
    n: int = option(10_000, "number of generated faces (or at most this many from --fake)", flags=("-n", "--n"))
    split: str = option("test", "split of the real photos", choices=("train", "val", "test", "all"))
    max_real: int | None = option(None, "use at most this many real photos (all of the split when unset)")
    seed: int = option(0, "first seed of the generated faces")
    truncation: float = option(1.0, "truncation of the generated faces (FID is defined at 1)")
    kid_subsets: int = option(100, "KID: number of random subsets")
    kid_subset_size: int = option(1000, "KID: images per subset (capped at the smaller set)")
    batch_size: int | None = option(None, "images per Inception forward pass (8 on CPU, 64 on GPU when unset)")
    inception: str | None = option(None, "path to the FID Inception weights (else $FACEGAN_INCEPTION, cache, download)")
    out: str | None = option(None, "write the result JSON here (also appended to the run's metrics.jsonl)")
    device: str = option("cpu", "cpu, cuda or cuda:N")
    precision: str = precision_option()
    progress: bool = option(True, "show progress bars")

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


def batches_of(array: np.ndarray, indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), batch_size):
        yield np.asarray(array[indices[start : start + batch_size]])


def real_features(dataset: PreparedDataset, split: str, limit: int | None, net: InceptionFeatures,
                  progress: bool = True) -> np.ndarray:
    """Inception features of the first `limit` images of `split`, from the on-disk cache when present."""
    indices = dataset.split_indices(split)
    if limit is not None:
        indices = indices[:limit]
    key = json.dumps([dataset.content_hash, dataset.size, split, len(indices), net.path.name, net.path.stat().st_size])
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


def file_batches(files: list[Path], batch_size: int) -> Iterator[np.ndarray]:
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
    kid_mean, kid_std = kid_from_features(real, fake, config.kid_subsets, config.kid_subset_size)
    return {"fid": fid_from_features(real, fake), "kid_mean": kid_mean, "kid_std": kid_std,
            "n_real": len(real), "n_fake": len(fake)}


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
