"""`facegan` on the command line: a thin layer over the Python API, options built from the typed configs."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from . import api

# Old option names still accepted, per command: flag -> (the field it sets, old value -> new value); using one
# prints a line saying what to use instead.
DEPRECATED_OPTIONS = {"train": {"--amp": ("precision", {"off": "fp32", "bf16": "bf16", "auto": "auto"})}}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (unset, empty) or the help already says it."""

    def _get_help_string(self, action):
        if (action.default is None or action.default == "") and action.option_strings:
            return action.help
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _value_type(hint):
    """`int | None` -> int; plain types unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def config_fields(cls, defaults=None, skip: tuple[str, ...] = ()):
    """(field, its type, its default) for every option of `cls`, nested configs flattened in place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else f.default
        if f.metadata.get("nested"):
            nested = default if defaults is not None else f.default_factory()
            yield from config_fields(hints[f.name], nested, f.metadata.get("skip", ()))
        else:
            yield f, _value_type(hints[f.name]), default


def add_config_options(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = (),
                       deprecated: dict | None = None) -> None:
    """One --option per dataclass field, with its help text, type, choices and default."""
    for f, kind, default in config_fields(cls):
        flags = (f.name,) if f.name in positional else f.metadata.get("flags", (f"--{f.name.replace('_', '-')}",))
        kwargs = {"help": f.metadata.get("help", "")}
        if f.name in positional:
            kwargs.update(nargs="+", metavar=f.name.upper())
        elif default is dataclasses.MISSING:
            kwargs.update(dest=f.name, required=True)
        else:
            kwargs.update(dest=f.name, default=default)
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.name in positional:
            parser.add_argument(*flags, **kwargs)
        else:
            choices = f.metadata.get("choices")
            kwargs.setdefault("metavar", None if choices else f.name.upper())
            parser.add_argument(*flags, type=kind, choices=choices, **kwargs)
    for flag, (name, values) in (deprecated or {}).items():
        parser.add_argument(flag, choices=tuple(values), default=None, help=f"deprecated: use --{name}")


def config_from_args(cls, args: argparse.Namespace, skip: tuple[str, ...] = ()):
    """The config of `cls` (nested ones included) from parsed arguments."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            values[f.name] = config_from_args(hints[f.name], args, f.metadata.get("skip", ()))
        elif hasattr(args, f.name) and f.name not in skip:
            values[f.name] = getattr(args, f.name)
    return cls(**values)


def apply_deprecated_options(command: str, args: argparse.Namespace) -> None:
    for flag, (name, values) in DEPRECATED_OPTIONS.get(command, {}).items():
        old = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if old is not None:
            setattr(args, name, values[old])
            print(f"facegan {command}: {flag} is deprecated; use --{name} {values[old]}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegan", description="Train GANs on face photos and generate faces.")
    parser.add_argument("--version", action="version", version=f"facegan {api.VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in api.COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, formatter_class=DefaultsHelpFormatter)
        if command.config is not None:
            add_config_options(sub, command.config, command.positional, DEPRECATED_OPTIONS.get(command.name))
    return parser


def error_message(error: Exception) -> str:
    """The error as one line for people: "PATH: is a directory" rather than "[Errno 21] Is a directory: 'PATH'"."""
    if isinstance(error, OSError) and error.strerror:
        subject = error.filename if error.filename is not None else None
        reason = error.strerror[0].lower() + error.strerror[1:]
        return f"{subject}: {reason}" if subject is not None else reason
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = api.COMMANDS[args.command]
    try:
        apply_deprecated_options(args.command, args)
        result = command.run(None if command.config is None else config_from_args(command.config, args))
        for line in command.report(result):
            print(line)
    except api.USER_ERRORS as error:
        print(f"facegan {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
