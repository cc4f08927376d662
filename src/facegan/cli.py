"""`facegan` on the command line: a thin layer over the Python API, options built from the typed configs."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from . import api
from .checkpoint import CheckpointError
from .data import DataError, PrepareConfig
from .generate.config import GenerateConfig, InterpolateConfig
from .generate.export import ExportConfig
from .metrics.evaluate import EvalConfig
from .metrics.score import ScoreConfig
from .models import ARCHITECTURES
from .serve import ServeConfig
from .training import TrainConfig


def _value_type(hint):
    """`int | None` -> int; plain types unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def add_config_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --option per dataclass field, with its help text, type, choices and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flags = f.metadata.get("flags", (f"--{f.name.replace('_', '-')}",))
        kind = _value_type(hints[f.name])
        kwargs = {"dest": f.name, "help": f.metadata.get("help", "")}
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            choices = f.metadata.get("choices")
            metavar = None if choices else f.name.upper()
            parser.add_argument(*flags, type=kind, choices=choices, metavar=metavar, **kwargs)


def config_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegan", description="Train GANs on face photos and generate faces.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.ArgumentDefaultsHelpFormatter

    prepare = commands.add_parser("prepare", help="crop and resize photos into a uint8 cache", formatter_class=formatter)
    add_config_options(prepare, PrepareConfig)

    train = commands.add_parser("train", help="train a GAN (or --resume RUN_DIR)", formatter_class=formatter)
    add_config_options(train, TrainConfig)
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue this run exactly where its last checkpoint left off; only budgets may change")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train in N DistributedDataParallel processes on this machine (one per GPU); "
                            "--batch is then the global batch")

    generate = commands.add_parser("generate", help="write faces as PNGs or a grid", formatter_class=formatter)
    add_config_options(generate, GenerateConfig)

    interpolate = commands.add_parser("interpolate", help="latent walk through seeds, as GIF or MP4",
                                      formatter_class=formatter)
    add_config_options(interpolate, InterpolateConfig)

    evaluate = commands.add_parser("eval", help="FID and KID against real photos", formatter_class=formatter)
    add_config_options(evaluate, EvalConfig)

    score = commands.add_parser("score", help="P(real photo) of images by a training checkpoint's discriminator",
                                formatter_class=formatter)
    add_config_options(score, ScoreConfig, skip=("images",))
    score.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (searched recursively) or .zip files")

    export = commands.add_parser("export", help="the generator as an ONNX or TorchScript file", formatter_class=formatter)
    add_config_options(export, ExportConfig)

    serve = commands.add_parser("serve", help="a web page that makes faces, and its JSON/PNG API",
                                formatter_class=formatter)
    add_config_options(serve, ServeConfig)

    commands.add_parser("archs", help="list the architectures")
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == "prepare":
        dataset = api.prepare(**dataclasses.asdict(config_from_args(PrepareConfig, args)))
        print(f"prepared {len(dataset)} images at {dataset.size} px in {dataset.root}")
    elif args.command == "train" and args.nproc != 1:
        api.train_on_processes(args.nproc, config_from_args(TrainConfig, args), args.resume)
    elif args.command == "train":
        result = api.train(config=config_from_args(TrainConfig, args), resume=args.resume)
        print(f"run directory: {result.run_dir}\ncheckpoint: {result.checkpoint}")
    elif args.command == "generate":
        paths = api.generate(config_from_args(GenerateConfig, args))
        print(paths[0] if len(paths) == 1 else f"wrote {len(paths)} faces to {paths[0].parent}")
    elif args.command == "interpolate":
        print(api.interpolate(config_from_args(InterpolateConfig, args)))
    elif args.command == "eval":
        result = api.evaluate(config_from_args(EvalConfig, args))
        print(f"FID {result['fid']:.3f}  KID {result['kid_mean'] * 1000:.3f} ± {result['kid_std'] * 1000:.3f} (x1000)"
              f"  ({result['n_fake']} generated vs {result['n_real']} real, {result['split']} split)")
    elif args.command == "score":
        result = api.score(config=config_from_args(ScoreConfig, args))
        for item in result.scores:
            print(f"{item.probability:.3f}  {item.source}")
        for source, reason in result.skipped:
            print(f"skipped  {source}: {reason}")
        print(result.summary())
    elif args.command == "export":
        print(api.export(config_from_args(ExportConfig, args)))
    elif args.command == "serve":
        api.serve(config_from_args(ServeConfig, args))
    elif args.command == "archs":
        for name, arch in sorted(ARCHITECTURES.items()):
            print(f"{name:10s} {arch.summary}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, DataError, CheckpointError, OSError, RuntimeError) as error:
        print(f"facegan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
