"""A long training run on a lent GPU machine, prepared here so that it takes one call there.

The device machine receives the working tree (64 MiB at most) and returns at most 8 files of 16 MiB.
So the CelebA train split travels as 64 px WebP photos in one zip (quality 90: 37 dB PSNR, 1.6 KB a photo), and the trained model comes back as the
shipped model's form (moving-average generator in float32, discriminator in float16) cut into parts:

    # here, once: the train photos, about 24 MiB, into a folder git ignores
    python benchmarks/gpu_run.py pack --data ../shared/datasets/celeba --out .gpu/celeba64-train.zip
    # there, in one device call (carry .gpu; about 8 minutes of training):
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_run.py train --data .gpu/celeba64-train.zip \\
        --minutes 8 --out $OUT -- --arch dcgan --lr-g 4e-4 --lr-d 4e-4
    # here again: join the parts, then measure and continue as with any model file
    cat model.safetensors.part-* > celeba64-gpu.safetensors
    facegan eval --checkpoint celeba64-gpu.safetensors --real ../shared/datasets/celeba --split test -n 10000
    facegan train --data ../shared/datasets/celeba --init celeba64-gpu.safetensors   # more, on the CPU

The options after `--` go to `facegan train` unchanged (the recipe: `benchmarks/README.md`, "Recipe
search"). Optimiser moments do not come back (they would triple the bytes), so a continuation here
starts them fresh through `--init` instead of resuming exactly.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image

from facegan.cli import main as facegan_main
from facegan.data import PrepareConfig, prepare
from facegan.generate import save_generator
from facegan.runs import list_checkpoints

PART_BYTES = 15 * 2**20  # under the device's 16 MiB per returned file
RETURNED_FILES = ("log.jsonl", "losses.png", "progress.gif")


def pack(data: str, out: Path, size: int, quality: int) -> Path:
    """The train split of `data`, prepared at `size` px, as WebP photos in one zip (a plain folder to facegan)."""
    dataset = prepare(PrepareConfig(data=data, size=size))
    indices = dataset.split_indices("train")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:  # WebP does not compress further
        for index in indices:
            buffer = io.BytesIO()
            Image.fromarray(dataset.images[index]).save(buffer, "WEBP", quality=quality)
            archive.writestr(f"train/{int(index):06d}.webp", buffer.getvalue())
    print(f"{len(indices)} train photos at {size} px, WebP quality {quality}: {out} "
          f"({out.stat().st_size / 2**20:.1f} MiB)")
    return out


def train(data: str, minutes: float, out: Path, train_options: list[str], run: Path) -> int:
    """`facegan train` for `minutes` in `run`, then the model (in parts) and the run's record into `out`."""
    started = time.monotonic()
    code = facegan_main(["train", "--data", data, "--minutes", str(minutes), "--out", str(run), "--overwrite",
                         "--no-progress", *train_options])
    checkpoints = list_checkpoints(run) if run.is_dir() else []
    if not checkpoints:
        print(f"facegan train ended with {code} and left no checkpoint", file=sys.stderr)
        return code or 1
    record = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    info = {"trained by": "benchmarks/gpu_run.py", "train options": " ".join(train_options),
            "kimg": record.get("kimg"), "step": record.get("step"), "device": _device_name(),
            "seconds": round(time.monotonic() - started), "checkpoint": checkpoints[0].name}
    out.mkdir(parents=True, exist_ok=True)
    model = save_generator(checkpoints[0], run / "model.safetensors", info=info, discriminator=True)
    parts = split_file(model, out)
    for name in RETURNED_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, out / name)
    print(json.dumps(info), f"-> {len(parts)} parts of {model.stat().st_size / 2**20:.1f} MiB in {out}")
    return code


def split_file(path: Path, out: Path) -> list[Path]:
    """`path` cut into PART_BYTES pieces named PATH.part-0, -1, ... in `out`; `cat` in name order joins them."""
    data, parts = path.read_bytes(), []
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        part = out / f"{path.name}.part-{number}"
        part.write_bytes(data[start:start + PART_BYTES])
        parts.append(part)
    return parts


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="the train photos into one small zip")
    packing.add_argument("--data", required=True, help="CelebA folder (its train split is packed)")
    packing.add_argument("--out", type=Path, default=Path(".gpu/celeba64-train.zip"))
    packing.add_argument("--size", type=int, default=64)
    packing.add_argument("--quality", type=int, default=90, help="WebP quality")
    training = commands.add_parser("train", help="train, then write the model in parts and the run's record")
    training.add_argument("--data", required=True, help="the packed zip")
    training.add_argument("--minutes", type=float, required=True)
    training.add_argument("--out", type=Path, required=True, help="$OUT on the device machine")
    training.add_argument("--run", type=Path, default=Path("/tmp/facegan-gpu-run"), help="the run folder (not returned)")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.size, args.quality)
        return 0
    return train(args.data, args.minutes, args.out, train_options, args.run)


if __name__ == "__main__":
    sys.exit(main())
