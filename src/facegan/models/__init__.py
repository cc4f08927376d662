"""Networks and losses, chosen by name from one registry. Importing this package registers them all."""
from . import dcgan, mlp, resnet, seed  # noqa: F401  (registers the architectures)
from .latent import MAX_SEED, SEEDS_HELP, latents_from_seeds, parse_seeds
from .registry import (
    ARCHITECTURES,
    Architecture,
    ModelConfig,
    OptimizerSettings,
    build_discriminator,
    build_generator,
    build_loss,
    get_architecture,
    register,
)

__all__ = [
    "ARCHITECTURES",
    "MAX_SEED",
    "Architecture",
    "ModelConfig",
    "OptimizerSettings",
    "build_discriminator",
    "build_generator",
    "build_loss",
    "get_architecture",
    "latents_from_seeds",
    "parse_seeds",
    "SEEDS_HELP",
    "register",
]
