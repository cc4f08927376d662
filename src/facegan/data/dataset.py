"""Reading a prepared dataset, and the resumable shuffled batch order used for training."""

from __future__ import annotations

import json
import numbers
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from facegan.data.images import to_model_input
from facegan.data.sources import SPLITS, DataError

FORMAT_VERSION = 1
PREPARED_KIND = "facegan-prepared-dataset"
MANIFEST_NAME = "manifest.json"
IMAGES_NAME = "images.npy"
SPLIT_CHOICES = (*SPLITS, "all")


class PreparedDataset:
    """A prepared image set: ``images`` is a read-only memory map of shape (N, size, size, 3), uint8.

    ``manifest`` holds how it was made (see ``facegan.data.manifest``); ``manifest["files"][i]`` names
    the source file and split of ``images[i]``.
    """

    def __init__(self, root: Path, manifest: dict, images: np.ndarray) -> None:
        self.root = root
        self.manifest = manifest
        self.images = images
        self.size = int(manifest["size"])
        self.content_hash = str(manifest["content_hash"])
        self._splits = np.array([entry["split"] for entry in manifest["files"]])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.root)!r}, {len(self)} images, {self.size}px)"

    def split_counts(self) -> dict[str, int]:
        counts = Counter(self._splits.tolist())
        return {split: counts[split] for split in SPLITS if counts[split]}

    def split_indices(self, split: str = "train") -> np.ndarray:
        """Ascending int64 indices of the images in ``split`` ("train", "val", "test" or "all")."""
        if split not in SPLIT_CHOICES:
            raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
        if split == "all":
            return np.arange(len(self), dtype=np.int64)
        indices = np.flatnonzero(self._splits == split).astype(np.int64)
        if indices.size == 0:
            available = ", ".join(f"{name} ({count})" for name, count in self.split_counts().items())
            raise DataError(f"no {split!r} images in {self.root}; available splits: {available}")
        return indices

    def load_batch(self, indices) -> torch.Tensor:
        """The images at ``indices`` as a float32 N x 3 x H x W tensor in [-1, 1] (``x / 127.5 - 1``)."""
        index_array = np.asarray(indices, dtype=np.int64).reshape(-1)
        return to_model_input(np.asarray(self.images[index_array]))


def is_prepared_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a manifest written by ``prepare``."""
    manifest = _read_manifest(Path(path))
    return manifest is not None and manifest.get("kind") == PREPARED_KIND


def open_prepared(path: str | os.PathLike) -> PreparedDataset:
    """Open a folder written by ``prepare``; DataError if it is not one, or is incomplete."""
    root = Path(path).expanduser().absolute()
    manifest = _read_manifest(root)
    if manifest is None or manifest.get("kind") != PREPARED_KIND:
        raise DataError(f"not a prepared dataset (no facegan {MANIFEST_NAME}): {root}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{root} was prepared with data format {manifest.get('format_version')}, "
            f"this facegan reads format {FORMAT_VERSION}; run prepare again"
        )
    images = _load_images(root, manifest)
    return PreparedDataset(root, manifest, images)


def _read_manifest(root: Path) -> dict | None:
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _load_images(root: Path, manifest: dict) -> np.ndarray:
    damaged = DataError(f"prepared dataset {root} is incomplete or damaged; delete it and run prepare again")
    try:
        images = np.load(root / IMAGES_NAME, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise damaged from error
    size = manifest.get("size")
    expected_shape = (manifest.get("count"), size, size, 3)
    if images.dtype != np.uint8 or images.shape != expected_shape or len(manifest.get("files", ())) != images.shape[0]:
        raise damaged
    return images


class BatchOrder:
    """Endless shuffled batches over ``indices``; each epoch is a fresh permutation and its incomplete tail is dropped.

    Epoch ``e`` uses ``torch.randperm(len(indices))`` seeded with ``seed * 1_000_003 + e`` (mod 2**63), so
    the whole order follows from ``seed`` and the state ``{"epoch", "position"}``: a run restored from
    ``state_dict()`` draws exactly the batches the original run would have drawn.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if batch_size > len(self.indices):
            raise DataError(f"batch size {batch_size} is larger than the {len(self.indices)} images available")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._permutation_epoch = -1
        self._permutation = np.empty(0, dtype=np.int64)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.indices) // self.batch_size

    def next_batch(self) -> np.ndarray:
        """The next ``batch_size`` indices (int64); starts the next epoch when this one has no full batch left."""
        if self.position + self.batch_size > len(self.indices):
            self.epoch += 1
            self.position = 0
        permutation = self._epoch_permutation(self.epoch)
        batch = self.indices[permutation[self.position : self.position + self.batch_size]]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = state.get("epoch"), state.get("position")
        if not (isinstance(epoch, numbers.Integral) and isinstance(position, numbers.Integral)):
            raise DataError(f"batch order state needs integer 'epoch' and 'position', got {state!r}")
        if epoch < 0 or not 0 <= position <= len(self.indices):
            raise DataError(f"batch order state {state!r} does not fit {len(self.indices)} indices")
        self.epoch, self.position = int(epoch), int(position)

    def _epoch_permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._permutation_epoch:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._permutation = torch.randperm(len(self.indices), generator=generator).numpy()
            self._permutation_epoch = epoch
        return self._permutation
