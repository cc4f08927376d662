"""Give the shipped generator a discriminator: train one against it, then write both into one shipped file.

The shipped celeba64 model was published as its moving-average generator alone, and the training run that
made it (with its discriminator) is gone. Fine-tuning (`facegan train --init celeba64`) and `facegan score`
need a discriminator that already knows faces and this generator's faces, so this trains the
discriminator alone, with the generator frozen exactly as shipped, on the CelebA train split, and writes
a new file holding the unchanged generator weights plus the discriminator (stored as float16 to keep the
file small; loading casts it back).

    python benchmarks/shipped_discriminator.py --data ../shared/datasets/celeba --kimg 60 \
        --out benchmarks/results/celeba64-with-d.safetensors

`benchmarks/finetune.py --d-source FILE` then measures whether fine-tuning from it beats a fresh discriminator.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from facegan import checkpoint
from facegan.generate.generator import float16_weights
from facegan.data import BatchOrder, PrepareConfig, prepare
from facegan.models import build_discriminator, build_generator, build_loss
from facegan.models.precision import autocast, resolve_precision
from facegan.settings import DEFAULT_MODEL, shipped_model
from throughput import environment  # benchmarks/ is on the path when this runs as a script


def train_discriminator(data: str, kimg: float, batch: int = 128, seed: int = 0, lr: float = 2e-4):
    source = shipped_model(DEFAULT_MODEL)
    saved = checkpoint.load(source, sections=["model", "G_ema", "info"])
    G, model = checkpoint.rebuild_network(source, saved, "G_ema", build_generator, "generator")
    G.eval().requires_grad_(False)  # the faces users get: BatchNorm with its running statistics
    dataset = prepare(PrepareConfig(data=data, size=model.size))
    order = BatchOrder(dataset.split_indices("train"), batch, seed)
    torch.manual_seed(seed)
    D = build_discriminator(model).train()
    optimizer = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    loss = build_loss(model, "none")
    device, precision = torch.device("cpu"), resolve_precision("auto", torch.device("cpu"))
    history, started, seen, step = [], time.monotonic(), 0, 0
    while seen < kimg * 1000:
        real = dataset.load_batch(order.next_batch())
        real = torch.where(torch.rand(batch, 1, 1, 1) < 0.5, real.flip(3), real)
        with torch.no_grad(), autocast(device, precision):
            fake = G(torch.randn(batch, model.z_dim)).float()
        with autocast(device, precision):
            value, stats = loss.discriminator_loss(D, real, fake, step)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        seen, step = seen + batch, step + 1
        if step % 50 == 0:
            history.append({"kimg": seen / 1000, **{k: round(float(v), 4) for k, v in stats.items()}})
            print(history[-1], flush=True)
    return saved, D, {"steps": step, "kimg": seen / 1000, "seconds": time.monotonic() - started,
                      "precision": precision, "history": history}


def write_shipped_file(saved: dict, D: torch.nn.Module, out: Path, how: dict) -> Path:
    info = dict(saved["info"])
    info["discriminator"] = (f"trained afterwards against this frozen generator for {how['kimg']:.0f} kimg on the "
                             "CelebA train split (benchmarks/shipped_discriminator.py), stored as float16")
    return checkpoint.save(out, {"model": saved["model"], "G_ema": saved["G_ema"], "D": float16_weights(D.state_dict()),
                                 "info": info},
                           kind="generator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CelebA folder (its train split is used)")
    parser.add_argument("--kimg", type=float, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/celeba64-with-d.safetensors"))
    args = parser.parse_args()
    saved, D, how = train_discriminator(args.data, args.kimg)
    path = write_shipped_file(saved, D, args.out, how)
    report = {"environment": environment(), "file": str(path),
              "bytes": path.stat().st_size, **how}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) after {how['kimg']:.0f} kimg in {how['seconds']:.0f} s")


if __name__ == "__main__":
    main()
