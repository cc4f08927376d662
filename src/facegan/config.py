"""Shared helper for the typed per-command configs: a dataclass field with its --help text."""
from __future__ import annotations

from dataclasses import field


def option(default, help: str, **extra):
    """A config field; `help` (and optional `choices`, `flags`) become the command-line option."""
    return field(default=default, metadata={"help": help, **extra})
