"""Shared helpers for the typed per-command configs: a dataclass field with its --help text."""
from __future__ import annotations

from dataclasses import field

from .models.device import DEVICE_HELP
from .models.precision import PRECISION_HELP, PRECISIONS


def option(default, help: str, **extra):
    """A config field; `help` (and optional `choices`, `flags`) become the command-line option."""
    return field(default=default, metadata={"help": help, **extra})


def checkpoint_option():
    """The --checkpoint field of every command that loads a generator (--network as in StyleGAN's scripts)."""
    return option(None, "checkpoint file or run directory (the shipped model when unset)",
                  flags=("--checkpoint", "--network"))


def truncation_option(help: str = "pull latents toward the mean face: 1 = none, 0 = the mean face"):
    """The --truncation field of every command that makes faces (--trunc as in StyleGAN's scripts)."""
    return option(1.0, help, flags=("--truncation", "--trunc"))


def device_option():
    """The --device field of every command that runs a network."""
    return option("auto", DEVICE_HELP)


def precision_option(default: str = "fp32"):
    """The --precision field of every command that runs a network."""
    return option(default, PRECISION_HELP, choices=PRECISIONS)

