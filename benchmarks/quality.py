"""Quality per unit of compute: train each architecture for the same time, FID/KID along the way.

    python benchmarks/quality.py --data ../shared/datasets/celeba --minutes 60

Architectures take turns in chunks of --interval minutes of training time, so that anything else
the machine does slows them alike. An entry ARCH+bf16 trains ARCH with bf16 mixed precision
(`--precision bf16`) in a run of its own. After each chunk the chunk's checkpoint is evaluated with
--fakes generated faces against the test split; when every budget is spent, each final
checkpoint is evaluated with --final-fakes faces. Everything is appended to curve.jsonl in the
runs folder, so the command can be stopped and run again: it continues where it left off
(training resumes exactly from the last checkpoint). Results: JSON and a plot in --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import facegan
from facegan import checkpoint
from facegan.metrics.evaluate import EvalConfig
from facegan.models.device import resolve_device
from facegan.training import loop
from facegan.training.config import TrainConfig
from facegan.runs import list_checkpoints


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="CelebA folder (its train split trains, its test split evaluates)")
    parser.add_argument("--archs", default="dcgan,resnet,resnet-fast", help="comma-separated architectures; ARCH+bf16 trains in bf16")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="batch size of every architecture (default: each its own)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training minutes per architecture")
    parser.add_argument("--interval", type=float, default=10.0, help="minutes between curve points")
    parser.add_argument("--fakes", type=int, default=2000, help="generated faces per curve point")
    parser.add_argument("--final-fakes", type=int, default=10_000, help="generated faces for the final numbers")
    parser.add_argument("--runs", default=str(Path.home() / "facegan-runs" / "quality"), help="run directories")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="where JSON and plot go")
    parser.add_argument("--inception", default=None, help="FID Inception weights (else $FACEGAN_INCEPTION, cache)")
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def read_curve(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), file=sys.stderr)


def trained_seconds(run_dir: Path) -> float:
    found = list_checkpoints(run_dir)
    return checkpoint.load(found[0], ["progress"])["progress"]["train_seconds"] if found else 0.0


def parse_entry(entry: str) -> tuple[str, str]:
    """"resnet+bf16" -> ("resnet", "bf16"); a plain name trains in fp32."""
    arch, _, precision = entry.partition("+")
    if precision not in ("", "bf16"):
        raise SystemExit(f"--archs entry {entry!r}: the only suffix is +bf16")
    return arch, precision or "fp32"


def check_entries(args, archs: list[str]) -> None:
    """Refuse a bad entry, or a +bf16 entry on hardware without native bfloat16, before any training."""
    device = resolve_device(args.device)
    for entry in archs:
        arch, precision = parse_entry(entry)
        try:
            loop.runnable_precision(TrainConfig.create(args.data, arch=arch, precision=precision), device, resuming=False)
        except ValueError as error:
            raise SystemExit(f"--archs entry {entry!r}: {error}") from None


def train_chunk(args, entry: str, run_dir: Path, minutes: float) -> None:
    if list_checkpoints(run_dir):
        facegan.train(resume=run_dir, minutes=minutes, progress=False)
    else:
        arch, precision = parse_entry(entry)
        facegan.train(args.data, arch=arch, precision=precision, size=args.size, batch=args.batch, out=str(run_dir), minutes=minutes,
                      device=args.device, sample_every=250, checkpoint_every=250, keep=2, progress=False)


def evaluate(args, run_dir: Path, fakes: int) -> dict:
    config = EvalConfig(real=args.data, checkpoint=str(run_dir), n=fakes, split="test", inception=args.inception,
                        device="cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu", progress=False)
    return facegan.api.evaluate(config)


def point(arch: str, run_dir: Path, result: dict, final: bool) -> dict:
    progress = checkpoint.load(list_checkpoints(run_dir)[0], ["progress"])["progress"]
    return {"arch": arch, "final": final, "minutes": progress["train_seconds"] / 60, "step": progress["step"],
            "kimg": progress["images_seen"] / 1000, "fid": result["fid"], "kid_mean": result["kid_mean"],
            "kid_std": result["kid_std"], "n_fake": result["n_fake"], "n_real": result["n_real"]}


def run(args) -> list[dict]:
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    curve_path = runs / "curve.jsonl"
    archs = args.archs.split(",")
    check_entries(args, archs)
    budget = args.minutes * 60
    slack = 0.05 * args.interval * 60  # a chunk may stop a few seconds early: no extra chunk and curve point for that
    while True:
        pending = [a for a in archs if trained_seconds(runs / a) < budget - slack]
        if not pending:
            break
        for arch in pending:
            remaining = budget - trained_seconds(runs / arch)
            train_chunk(args, arch, runs / arch, min(args.interval * 60, remaining) / 60)
            append(curve_path, point(arch, runs / arch, evaluate(args, runs / arch, args.fakes), final=False))
    done = {r["arch"] for r in read_curve(curve_path) if r["final"]}
    for arch in archs:
        if arch not in done:
            append(curve_path, point(arch, runs / arch, evaluate(args, runs / arch, args.final_fakes), final=True))
    return read_curve(curve_path)


def plot(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for arch in sorted({r["arch"] for r in curve}):
        points = [r for r in curve if r["arch"] == arch and not r["final"]]
        for ax, key, scale in ((axes[0], "fid", 1), (axes[1], "kid_mean", 1000)):
            ax.plot([r["minutes"] for r in points], [r[key] * scale for r in points], marker="o", label=arch)
    axes[0].set_ylabel("FID (2k fakes vs test split)")
    axes[1].set_ylabel("KID x 1000")
    for ax in axes:
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("facegan: quality per training minute, CelebA 64 px")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    curve = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "minutes_per_arch": args.minutes,
        "final": {r["arch"]: r for r in curve if r["final"]},
        "curve": [r for r in curve if not r["final"]],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "quality.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(curve, out / "quality.png")
    print(json.dumps(summary["final"], indent=1))


if __name__ == "__main__":
    main()
