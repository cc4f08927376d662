"""Shared helper for the typed per-command configs: a dataclass field with its --help text."""
from __future__ import annotations

from dataclasses import field, fields


def option(default, help: str, **extra):
    """A config field; `help` (and optional `choices`, `flags`) become the command-line option."""
    return field(default=default, metadata={"help": help, **extra})


def command_line(config) -> list[str]:
    """The command-line options that rebuild `config` (the inverse of cli.add_config_options); unset options are left out."""
    args = []
    for f in fields(config):
        value = getattr(config, f.name)
        flag = f.metadata.get("flags", (f"--{f.name.replace('_', '-')}",))[0]
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            args += [flag, str(value)]
    return args
