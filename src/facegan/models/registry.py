"""Architectures by name: each entry says how to build its networks and names its loss and optimiser settings.

Adding an architecture means registering one `Architecture`; the training loop never changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn

from ..settings import check_size
from .augment import parse_policy
from .losses import GANLoss, LossSettings

# The largest models facegan builds; a checkpoint declaring more is refused before anything is allocated.
MAX_WIDTH = 1024
MAX_Z_DIM = 4096


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a generator/discriminator pair; stored in every checkpoint."""

    arch: str
    size: int = 64
    z_dim: int = 100
    width: int = 64


@dataclass(frozen=True)
class OptimizerSettings:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str
    build_generator: Callable[[ModelConfig], nn.Module]
    build_discriminator: Callable[[ModelConfig], nn.Module]
    loss: LossSettings = field(default_factory=LossSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    z_dim: int = 100
    width: int = 64
    batch_size: int = 128
    augment: str = "none"

    def config(self, size: int = 64, z_dim: int | None = None, width: int | None = None) -> ModelConfig:
        """A validated ModelConfig for this architecture, filling unset fields with its defaults."""
        config = ModelConfig(self.name, check_size(size), z_dim or self.z_dim, width or self.width)
        if not (1 <= config.z_dim <= MAX_Z_DIM and 1 <= config.width <= MAX_WIDTH):
            raise ValueError(f"z_dim must be within 1..{MAX_Z_DIM} and width within 1..{MAX_WIDTH}, "
                             f"got {config.z_dim} and {config.width}")
        return config


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    if arch.name in ARCHITECTURES:
        raise ValueError(f"architecture {arch.name!r} is registered twice")
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        choices = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {name!r}; choose one of: {choices}") from None


def build_generator(config: ModelConfig) -> nn.Module:
    return get_architecture(config.arch).build_generator(config)


def build_discriminator(config: ModelConfig) -> nn.Module:
    return get_architecture(config.arch).build_discriminator(config)


def build_loss(config: ModelConfig, augment: str = "auto", objective: str | None = None,
               r1_gamma: float | None = None) -> GANLoss:
    """The architecture's loss; `augment` is a DiffAugment policy ("color,translation"), "none", or "auto" for its
    default; `objective` and `r1_gamma`, when given, replace the architecture's."""
    arch = get_architecture(config.arch)
    settings = arch.loss
    if objective is not None:
        settings = replace(settings, objective=objective)
    if r1_gamma is not None:
        settings = replace(settings, r1_gamma=r1_gamma)
    return GANLoss(settings, parse_policy(arch.augment if augment == "auto" else augment))
