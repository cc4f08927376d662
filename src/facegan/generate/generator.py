"""A trained generator, ready to make faces: loaded from a checkpoint, driven by seeds."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping, Sequence

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
from .directions import (
    SLIDER_RANGE,
    Directions,
    directions_path,
    generator_fingerprint,
    held_attributes,
    hold_named,
    load_directions,
    sefa,
)
from .display import Animation, Faces
from .latents import Latents, shifted_first_layer


@dataclass
class FaceGenerator:
    """Faces from seeds. `generate(n, seed)` draws seeds seed, seed+1, ..., so face i never depends on n."""

    network: torch.nn.Module
    model: ModelConfig
    info: dict = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    directions_file: Path | None = None  # the model's saved edit directions, when it has them
    # faces -> {"age": years, "female": probability}; with it, an edit of a named attribute holds the others
    attribute_predictor: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    hold: bool = True  # False: named edits move along their directions only
    _directions: Directions | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.model.size

    @property
    def z_dim(self) -> int:
        return self.model.z_dim

    @property
    def fingerprint(self) -> str:
        """A digest of the generator's weights: the identity that directions and latent files are checked against."""
        if self._fingerprint is None:
            self._fingerprint = generator_fingerprint(self.network)
        return self._fingerprint

    @property
    def directions(self) -> Directions:
        """The edit directions: the saved file's (named ones such as age, and dir1..) or, without one, SeFa's."""
        if self._directions is None:
            found = load_directions(self.directions_file) if self.directions_file else sefa(self.network)
            if found.fingerprint != self.fingerprint:
                raise ValueError(f"{self.directions_file}: these directions belong to another model; "
                                 "recompute them with `facegan directions`")
            self._directions = found
        return self._directions

    def use_directions(self, directions: Directions) -> None:
        """Edit with `directions` from now on (e.g. loaded from another file); they must belong to this model."""
        if directions.fingerprint != self.fingerprint:
            raise ValueError("these directions belong to another model (their fingerprint differs)")
        self._directions = directions

    def edited(self, z: torch.Tensor, edits: Mapping[str, float] | None, offset: torch.Tensor | None = None) -> torch.Tensor:
        """`z` moved along the named directions by the given units: {"age": 2, "dir3": -1.5}.

        An edit of age or gender also holds the other where it was (three correction steps measured by the
        attribute predictor, when there is one and `hold` is on); `offset` is the latents' first-layer offset.
        """
        if not edits:
            return z
        moved = z + self.directions.offset(edits).to(z.dtype)
        held = held_attributes(self.directions, edits) if self.hold and self.attribute_predictor else []
        if not held:
            return moved
        return hold_named(z, moved, held, self.directions, self.attribute_predictor,
                          lambda latents: self.images_from_latents(latents, offset=offset))

    @torch.inference_mode()
    def images_from_latents(self, z: torch.Tensor, batch_size: int = 64, offset: torch.Tensor | None = None) -> np.ndarray:
        """N x H x W x 3 uint8 faces for the latents `z` (plus first-layer `offset`s), `batch_size` at a time."""
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        offsets = offset.split(batch_size) if offset is not None else [None] * len(z.split(batch_size))
        chunks = []
        with autocast(self.device, self.precision):
            for part, shift in zip(z.split(batch_size), offsets):
                with shifted_first_layer(self.network, None if shift is None else shift.to(self.device)):
                    chunks.append(to_uint8(self.network(part.to(self.device)).float().cpu()))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.size, self.size, 3), np.uint8)

    def faces(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64,
              edits: Mapping[str, float] | None = None) -> np.ndarray:
        return self.images_from_latents(self.edited(latents_from_seeds(seeds, self.z_dim, truncation), edits), batch_size)

    def latent_faces(self, latents: Latents, edits: Mapping[str, float] | None = None, batch_size: int = 64) -> np.ndarray:
        """The faces of saved latent codes (projected photos), optionally edited."""
        if latents.fingerprint != self.fingerprint:
            raise ValueError("these latents belong to another model (their fingerprint differs)")
        return self.images_from_latents(self.edited(latents.z, edits, latents.offset), batch_size, latents.offset)

    def generate(self, n: int = 1, seed: int = 0, truncation: float = 1.0, batch_size: int = 64,
                 edits: Mapping[str, float] | None = None) -> Faces:
        """`n` faces as a list of PIL images (shown as thumbnails in Jupyter), for seeds seed .. seed+n-1.

        `edits` moves every face along named directions, e.g. {"age": 2} (see `directions.names`).
        """
        seeds = range(seed, seed + n)
        return Faces([Image.fromarray(face) for face in self.faces(seeds, truncation, batch_size, edits)], seeds)

    def grid(self, n: int = 16, seed: int = 0, truncation: float = 1.0, ncols: int | None = None,
             seeds: Sequence[int] | None = None, edits: Mapping[str, float] | None = None) -> Image.Image:
        """One image of the faces of seeds seed .. seed+n-1 (or of `seeds`), in rows of `ncols` (square when unset)."""
        seeds = range(seed, seed + n) if seeds is None else seeds
        return Image.fromarray(make_grid(self.faces(seeds, truncation, edits=edits), ncols=ncols))

    def interpolate(self, seeds: Sequence[int], frames: int = 60, truncation: float = 1.0, loop: bool = False,
                    batch_size: int = 64) -> Animation:
        """`frames` faces walking through the latents of `seeds` along great circles (slerp); plays in Jupyter."""
        from .interpolate import latent_walk

        keys = latents_from_seeds(seeds, self.z_dim, truncation)
        return Animation(self.images_from_latents(latent_walk(keys, frames, loop), batch_size))

    def walk_direction(self, seeds: Sequence[int], direction: str, frames: int = 60, span: float = SLIDER_RANGE,
                       truncation: float = 1.0, batch_size: int = 64) -> Animation:
        """The faces of `seeds` moving along one direction from -span to +span units and back (a seamless loop);
        several seeds play side by side in each frame."""
        if frames < 2:
            raise ValueError("a walk needs at least two frames")
        self.directions.vector(direction)  # an unknown name fails before any work
        keys = latents_from_seeds(seeds, self.z_dim, truncation)
        amounts = span * torch.cos(torch.linspace(0, 2 * torch.pi, frames + 1)[:frames])  # +span, down, and back
        z = torch.cat([self.edited(keys, {direction: float(amount)}) for amount in amounts])
        faces = self.images_from_latents(z, batch_size).reshape(frames, len(keys), self.size, self.size, 3)
        return Animation(np.stack([frame[0] if len(keys) == 1 else make_grid(frame) for frame in faces]))


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
    directions = directions_path(path)
    return FaceGenerator(network, model, info, device, precision, directions if directions.is_file() else None)


def save_generator(source: str | os.PathLike, out: str | os.PathLike, info: dict | None = None,
                   discriminator: bool = False) -> Path:
    """Write only the moving-average generator of a checkpoint (plus its config and `info`) to `out`.

    This is the small file to share or ship: it generates faces but cannot resume training. With
    `discriminator` the checkpoint's discriminator goes in too, as float16 (the shipped model's form: what
    `train --init` and `score` need, at half the bytes).
    """
    path = resolve_checkpoint(source)
    saved = checkpoint.load(path, sections=["model", "G_ema", *(["D"] if discriminator else [])])
    state = {"model": saved["model"], "G_ema": saved["G_ema"], "info": info or {}}
    if discriminator:
        state["D"] = float16_weights(saved["D"])
    return checkpoint.save(out, state, kind="generator")


def float16_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A discriminator's weights as the shipped form stores them: floating-point tensors in float16."""
    return {key: value.half() if value.is_floating_point() else value for key, value in state_dict.items()}
