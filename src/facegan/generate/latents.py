"""Latent codes as values a user keeps: a face's z, optionally extended by an offset to the first layer.

A projected photo rarely lies exactly on the generator's output manifold reachable from z alone.
The extended code adds a learned offset to the generator's first layer's output (the 4x4 map of a
DCGAN), which reproduces a photo far more closely while edit directions, which move z, still act
on it. The file is a facegan checkpoint of kind "latent" holding the codes and the fingerprint of
the model they belong to, so that a code is never silently applied to another model.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import checkpoint
from ..checkpoint import CheckpointError

KIND = "latent"


@dataclass
class Latents:
    """N latent codes of one model: z (N x z_dim) and, for extended codes, a first-layer offset per code."""

    z: Tensor
    fingerprint: str
    offset: Tensor | None = None
    names: list[str] = field(default_factory=list)  # where each code came from, e.g. the photo's file name

    def __post_init__(self) -> None:
        if self.z.ndim != 2:
            raise ValueError(f"latent z must be N x z_dim, got shape {tuple(self.z.shape)}")
        if self.offset is not None and self.offset.shape[0] != self.z.shape[0]:
            raise ValueError(f"{self.z.shape[0]} latents but {self.offset.shape[0]} first-layer offsets")
        if not self.names:
            self.names = [f"latent{i}" for i in range(len(self))]
        if len(self.names) != len(self):
            raise ValueError(f"{len(self.names)} names for {len(self)} latents")

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def select(self, index: int) -> Latents:
        offset = None if self.offset is None else self.offset[index : index + 1]
        return Latents(self.z[index : index + 1], self.fingerprint, offset, [self.names[index]])


def first_layer(network: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The generator's first linear layer (Linear or ConvTranspose2d) and the BatchNorm right after it, if any."""
    modules = [module for module in network.modules() if not list(module.children())]
    for index, module in enumerate(modules):
        if isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
            following = modules[index + 1] if index + 1 < len(modules) else None
            return module, following if isinstance(following, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    raise ValueError("this generator has no linear first layer")


def first_layer_output(network: nn.Module) -> nn.Module:
    """The module whose output an extended latent shifts: the first linear layer, or its BatchNorm."""
    linear, norm = first_layer(network)
    return norm or linear


@contextlib.contextmanager
def shifted_first_layer(network: nn.Module, offset: Tensor | None) -> Iterator[None]:
    """Within the block, the generator's first layer outputs its usual value plus `offset` (nothing when None)."""
    if offset is None:
        yield
        return
    handle = first_layer_output(network).register_forward_hook(lambda module, inputs, output: output + offset)
    try:
        yield
    finally:
        handle.remove()


def first_layer_shape(network: nn.Module, z_dim: int) -> tuple[int, ...]:
    """The shape of one code's first-layer output (what an extended latent's offset holds)."""
    shapes = []
    handle = first_layer_output(network).register_forward_hook(lambda module, inputs, output: shapes.append(output.shape))
    try:
        with torch.no_grad():
            network(torch.zeros(1, z_dim, device=next(network.parameters()).device))
    finally:
        handle.remove()
    return tuple(shapes[0][1:])


def save_latents(latents: Latents, path: str | os.PathLike) -> Path:
    section = {"z": latents.z.detach().float().cpu().contiguous(), "fingerprint": latents.fingerprint,
               "names": latents.names}
    if latents.offset is not None:
        section["offset"] = latents.offset.detach().float().cpu().contiguous()
    return checkpoint.save(path, {"latent": section}, kind=KIND)


def load_latents(path: str | os.PathLike, fingerprint: str | None = None) -> Latents:
    """Codes saved by `save_latents`; with `fingerprint`, CheckpointError unless they belong to that model."""
    section = checkpoint.load_section(path, KIND, "latent file")
    try:
        latents = Latents(section["z"].float(), str(section["fingerprint"]),
                          section["offset"].float() if "offset" in section else None, list(section.get("names", [])))
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged latent file ({error})") from None
    if fingerprint is not None and latents.fingerprint != fingerprint:
        raise CheckpointError(f"{path}: these latents belong to another model (fingerprint {latents.fingerprint}, "
                              f"this model's is {fingerprint}); project the photos again with this model")
    return latents
