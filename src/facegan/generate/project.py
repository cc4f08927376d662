"""Projection: the latent codes whose generated faces match given photos, so that photos can be edited.

Each photo starts from the best of a few hundred random latents (the closest face in pixels), then
Adam moves its code to lower a loss built from the pixels and, when the model file carries its
discriminator, from the discriminator's own feature maps (a perceptual distance that needs no
external network). In the "extended" space the code also holds an offset to the generator's first
layer (see `latents.py`): faces then match photos far more closely, and edit directions still act.
Photos in one batch are independent: both networks run in eval mode, and only the discriminator's
per-image convolutions give features.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .. import checkpoint
from ..checkpoint import resolve_checkpoint
from ..data.images import save_png, to_model_input
from ..models import build_discriminator
from .generator import FaceGenerator
from .latents import Latents, first_layer_shape, save_latents, shifted_first_layer

SPACES = ("extended", "z")


@dataclass(frozen=True)
class ProjectOptions:
    steps: int = 200
    space: str = "extended"
    feature_weight: float = 0.1  # the discriminator-feature term, relative to the pixels' mean squared error
    candidates: int = 256  # random latents tried as starting points
    lr_z: float = 0.05
    lr_offset: float = 0.02
    seed: int = 0

    def validate(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"--space must be one of {', '.join(SPACES)}, got {self.space!r}")
        if self.steps < 0:
            raise ValueError(f"--steps must be at least 0, got {self.steps}")
        if self.candidates < 1:
            raise ValueError(f"--candidates must be at least 1, got {self.candidates}")
        if not self.feature_weight >= 0:
            raise ValueError(f"--feature-weight must be at least 0, got {self.feature_weight}")


@dataclass
class Projection:
    """Projected photos: their codes, the faces those codes make, and how closely (PSNR in dB, per photo)."""

    latents: Latents
    targets: np.ndarray
    reconstructions: np.ndarray
    psnr: np.ndarray
    seconds: float
    skipped: list[str] = field(default_factory=list)  # photos that could not be used, with the reason

    def side_by_side(self, index: int) -> np.ndarray:
        return np.concatenate([self.targets[index], self.reconstructions[index]], axis=1)


class DiscriminatorFeatures:
    """The feature maps of a discriminator's convolutions, all but the last (which see the whole batch or
    give the logit): a distance between two images' maps says how differently D sees them."""

    def __init__(self, network: nn.Module):
        self.network = network.eval().requires_grad_(False)
        self._maps: list[Tensor] = []
        for layer in [module for module in network.modules() if isinstance(module, nn.Conv2d)][:-1]:
            layer.register_forward_hook(lambda module, inputs, output: self._maps.append(output))

    def __call__(self, images: Tensor) -> list[Tensor]:
        self._maps = []
        self.network(images)
        return self._maps


def load_discriminator_features(model_file: str | os.PathLike) -> DiscriminatorFeatures | None:
    """The model file's discriminator as a feature extractor; None when the file holds a generator only."""
    path = resolve_checkpoint(model_file)
    if "D" not in checkpoint.read_metadata(path, verify=False):
        return None
    saved = checkpoint.load(path, sections=["model", "D"])
    network, _ = checkpoint.rebuild_network(path, saved, "D", build_discriminator, "discriminator")
    return DiscriminatorFeatures(network.float())


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB between N x H x W x 3 uint8 images, per image."""
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = np.maximum(error.reshape(len(a), -1).mean(axis=1), 1e-10)
    return 10 * np.log10(255.0**2 / mse)


def project(generator: FaceGenerator, photos: np.ndarray, options: ProjectOptions = ProjectOptions(),
            features: DiscriminatorFeatures | None = None, names: list[str] | None = None, batch_size: int = 16,
            progress: Callable[[int], None] | None = None) -> Projection:
    """Project N x size x size x 3 uint8 `photos` into `generator`'s latent space; `progress(n)` after each batch."""
    options.validate()
    if photos.ndim != 4 or photos.shape[1:] != (generator.size, generator.size, 3):
        raise ValueError(f"photos must be N x {generator.size} x {generator.size} x 3 for this model, got {photos.shape}")
    started = time.perf_counter()
    random = torch.Generator().manual_seed(options.seed)  # on the CPU, so a seed starts alike on every device
    if features is not None:
        features.network.to(generator.device)
    offset_shape = first_layer_shape(generator.network, generator.z_dim) if options.space == "extended" else None
    z_parts, offset_parts = [], []
    for first in range(0, len(photos), batch_size):
        target = to_model_input(photos[first : first + batch_size]).to(generator.device)
        z, offset = _project_batch(generator.network, target, generator.z_dim, options, features, random, offset_shape)
        z_parts.append(z.cpu())
        offset_parts.append(None if offset is None else offset.cpu())
        if progress:
            progress(len(target))
    z = torch.cat(z_parts) if z_parts else torch.zeros(0, generator.z_dim)
    offset = torch.cat(offset_parts) if offset_shape and offset_parts else None
    latents = Latents(z, generator.fingerprint, offset, names or [])
    reconstructions = generator.latent_faces(latents)
    return Projection(latents, photos, reconstructions, psnr(photos, reconstructions), time.perf_counter() - started)


def _project_batch(network: nn.Module, target: Tensor, z_dim: int, options: ProjectOptions,
                   features: DiscriminatorFeatures | None, random: torch.Generator,
                   offset_shape: tuple[int, ...] | None) -> tuple[Tensor, Tensor | None]:
    """Optimise z (and, given `offset_shape`, a first-layer offset per photo) for one batch of targets."""
    z = _closest_start(network, target, z_dim, options.candidates, random).requires_grad_(True)
    groups = [{"params": [z], "lr": options.lr_z}]
    offset = None
    if offset_shape is not None:
        offset = torch.zeros(len(target), *offset_shape, device=target.device, requires_grad=True)
        groups.append({"params": [offset], "lr": options.lr_offset})
    optimizer = torch.optim.Adam(groups)
    use_features = features is not None and options.feature_weight > 0
    with torch.no_grad():
        target_maps = features(target) if use_features else []
    with shifted_first_layer(network, offset):
        for _ in range(options.steps):
            images = network(z)
            loss = (images - target).square().mean(dim=[1, 2, 3]).sum()
            if use_features:
                maps = features(images)
                loss = loss + options.feature_weight * sum(
                    (a - b).square().mean(dim=list(range(1, a.ndim))).sum() for a, b in zip(maps, target_maps))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return z.detach(), None if offset is None else offset.detach()


@torch.no_grad()
def _closest_start(network: nn.Module, target: Tensor, z_dim: int, candidates: int, random: torch.Generator) -> Tensor:
    """For each target, the candidate latent whose face is closest in pixels."""
    z = torch.randn(candidates, z_dim, generator=random).to(target.device)
    faces = torch.cat([network(part) for part in z.split(64)])
    distance = torch.cdist(target.flatten(1), faces.flatten(1))
    return z[distance.argmin(dim=1)].clone()



LATENTS_NAME = "latents.safetensors"


def write_projection(result: Projection, out: str | os.PathLike) -> Path:
    """OUT/latents.safetensors, and per photo NAME.png (the reconstruction) and NAME-compare.png (photo | face)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(result.latents.names):
        save_png(result.reconstructions[index], out / f"{name}.png")
        save_png(result.side_by_side(index), out / f"{name}-compare.png")
    return save_latents(result.latents, out / LATENTS_NAME)


def unique_stems(names: list[str]) -> list[str]:
    """File stems for the photos' names; a stem seen before gets -2, -3, ... so no output overwrites another."""
    seen: dict[str, int] = {}
    stems = []
    for name in names:
        stem = Path(name).stem or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems
