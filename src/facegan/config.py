"""Shared helper for the typed per-command configs: a dataclass field with its --help text."""
from __future__ import annotations

from dataclasses import field, fields

PRECISIONS = ("auto", "fp32", "bf16")  # of generating faces: auto is bf16 where the hardware runs it natively


def option(default, help: str, **extra):
    """A config field; `help` (and optional `choices`, `flags`) become the command-line option."""
    return field(default=default, metadata={"help": help, **extra})


def precision_option(default: str = "fp32"):
    """The --precision field of every command that runs a generator."""
    return option(default, "arithmetic of the generator: fp32, bf16 (faster on CPUs with AVX-512 BF16 and on recent "
                           "GPUs; faces differ from fp32 by about a grey level) or auto (bf16 where supported)",
                  choices=PRECISIONS)


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
