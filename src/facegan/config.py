"""Shared helpers for the typed per-command configs: a dataclass field with its --help text."""
from __future__ import annotations

from dataclasses import field

from .models.precision import PRECISION_HELP, PRECISIONS


def option(default, help: str, **extra):
    """A config field; `help` (and optional `choices`, `flags`) become the command-line option."""
    return field(default=default, metadata={"help": help, **extra})


def precision_option(default: str = "fp32"):
    """The --precision field of every command that runs a network."""
    return option(default, PRECISION_HELP, choices=PRECISIONS)

