"""A trained generator, ready to make faces: loaded from a checkpoint, driven by seeds."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .. import checkpoint
from ..checkpoint import resolve_checkpoint
from ..data.images import make_grid, to_uint8
from ..models import ModelConfig, build_generator, latents_from_seeds
from ..models.layout import to_channels_last
from ..models.device import resolve_device
from ..models.precision import autocast, resolve_precision
from .display import Animation, Faces


@dataclass
class FaceGenerator:
    """Faces from seeds. `generate(n, seed)` draws seeds seed, seed+1, ..., so face i never depends on n."""

    network: torch.nn.Module
    model: ModelConfig
    info: dict = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    @property
    def size(self) -> int:
        return self.model.size

    @property
    def z_dim(self) -> int:
        return self.model.z_dim

    @torch.inference_mode()
    def images_from_latents(self, z: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """N x H x W x 3 uint8 faces for the latents `z`, computed `batch_size` at a time."""
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        with autocast(self.device, self.precision):
            chunks = [to_uint8(self.network(part.to(self.device)).float().cpu()) for part in z.split(batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.size, self.size, 3), np.uint8)

    def faces(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        return self.images_from_latents(latents_from_seeds(seeds, self.z_dim, truncation), batch_size)

    def generate(self, n: int = 1, seed: int = 0, truncation: float = 1.0, batch_size: int = 64) -> Faces:
        """`n` faces as a list of PIL images (shown as thumbnails in Jupyter), for seeds seed .. seed+n-1."""
        seeds = range(seed, seed + n)
        return Faces([Image.fromarray(face) for face in self.faces(seeds, truncation, batch_size)], seeds)

    def grid(self, n: int = 16, seed: int = 0, truncation: float = 1.0, ncols: int | None = None,
             seeds: Sequence[int] | None = None) -> Image.Image:
        """One image of the faces of seeds seed .. seed+n-1 (or of `seeds`), in rows of `ncols` (square when unset)."""
        seeds = range(seed, seed + n) if seeds is None else seeds
        return Image.fromarray(make_grid(self.faces(seeds, truncation), ncols=ncols))

    def interpolate(self, seeds: Sequence[int], frames: int = 60, truncation: float = 1.0, loop: bool = False,
                    batch_size: int = 64) -> Animation:
        """`frames` faces walking through the latents of `seeds` along great circles (slerp); plays in Jupyter."""
        from .interpolate import latent_walk

        keys = latents_from_seeds(seeds, self.z_dim, truncation)
        return Animation(self.images_from_latents(latent_walk(keys, frames, loop), batch_size))


def load_generator(path: str | os.PathLike, device: str | torch.device = "auto", precision: str = "fp32") -> FaceGenerator:
    """The EMA generator of a training checkpoint or run directory, or of an exported generator file.

    `precision` "bf16" computes under bfloat16 autocast (1.8x the faces per second at batch 256 on 2 cores with
    AVX-512 BF16; faces differ from fp32 by half a grey level on average), "auto" picks it where supported.
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    path = resolve_checkpoint(path)
    metadata = checkpoint.read_metadata(path, verify=False)  # header only; load() verifies the file once
    saved = checkpoint.load(path, sections=["model", "G_ema", *[name for name in ("info", "config") if name in metadata]])
    network, model = checkpoint.rebuild_network(path, saved, "G_ema", build_generator, "generator")
    info = {**saved.get("info", {}), "checkpoint": str(path)}  # the file it came from, whatever its card says
    started_from = saved.get("config", {}).get("init")
    if started_from and isinstance(started_from, str):  # a fine-tuned run: the model it started from
        info["started from"] = started_from
    network = to_channels_last(network.to(device).eval().requires_grad_(False))
    return FaceGenerator(network, model, info, device, precision)


def save_generator(source: str | os.PathLike, out: str | os.PathLike, info: dict | None = None) -> Path:
    """Write only the moving-average generator of a checkpoint (plus its config and `info`) to `out`.

    This is the small file to share or ship: it generates faces but cannot resume training.
    """
    path = resolve_checkpoint(source)
    saved = checkpoint.load(path, sections=["model", "G_ema"])
    return checkpoint.save(out, {"model": saved["model"], "G_ema": saved["G_ema"], "info": info or {}}, kind="generator")
