"""Fine-tuning on a small set of photos of another kind: from scratch or from the shipped model, with or without ADA.

UTKFace (tight crops, many children and old people) stands for a user's own photos. A fixed, seeded part of
it is held out for scoring; the rest gives training sets of 100, 500 and 2,000 photos. Each job trains one
condition on one set in chunks of CPU time and, after each chunk, scores the newest checkpoint with KID
(unbiased, so fair at a few hundred photos) and FID against the held-out photos, and saves a sample grid.

    python benchmarks/finetune.py --photos ../shared/datasets/utkface/photos \\
        --jobs 500:init+ada@10,500:scratch@40,100:scratch@40,100:scratch+ada@40

A job is COUNT:CONDITION@MINUTES; its curve points are the --points (minutes) up to MINUTES. Budgets are images
shown: a minute is --rate images per second times 60 (the rate of this step measured on an idle machine), so other
work on the machine slows a job down without changing what it learns by each point. Conditions:
scratch, scratch+ada, init, init+ada (from --init-source, default the shipped celeba64), and
init-fresh-d+ada (the same generator, but a discriminator from random weights). Everything is resumable:
run the same command again and finished points are kept (curve.jsonl in --work).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import facegan
from facegan import checkpoint
from facegan.generate import save_generator
from facegan.metrics.evaluate import EvalConfig
from facegan.runs import list_checkpoints
from facegan.settings import DEFAULT_MODEL
from quality import read_curve  # benchmarks/ is on the path when this runs as a script
from throughput import environment

HELD_OUT = 375  # photos never trained on: 2,375 - 375 leaves 2,000 for the largest training set
CONDITIONS = {
    "scratch": {"augment": "none"},
    "scratch+ada": {"augment": "ada"},
    "init": {"augment": "none", "init": "source"},
    "init+ada": {"augment": "ada", "init": "source"},
    "init-fresh-d+ada": {"augment": "ada", "init": "generator-only"},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="folder of UTKFace photos")
    parser.add_argument("--jobs", default="500:init+ada@10,500:scratch@40,100:scratch@40,100:scratch+ada@40")
    parser.add_argument("--points", default="5,10,20,40", help="minutes of training at which to score")
    parser.add_argument("--init-source", default=DEFAULT_MODEL, help="the model the init conditions start from")
    parser.add_argument("--rate", type=float, required=True,
                        help="images per second of a training step on this machine, measured idle (`facegan train` "
                             "logs img_per_s): turns the minutes of --points into images shown")
    parser.add_argument("--fakes", type=int, default=500, help="generated faces per score")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a training option for every job, e.g. --set lr_g=5e-5 (repeatable)")
    parser.add_argument("--work", default=str(Path.home() / "facegan-runs" / "finetune"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--inception", default=None, help="FID Inception weights (else $FACEGAN_INCEPTION, cache)")
    return parser.parse_args(argv)


def parse_job(job: str) -> tuple[int, str, float]:
    count, _, rest = job.partition(":")
    condition, _, minutes = rest.partition("@")
    if condition not in CONDITIONS or not count.isdigit() or not minutes:
        raise SystemExit(f"--jobs entry {job!r}: COUNT:CONDITION@MINUTES with CONDITION one of {', '.join(CONDITIONS)}")
    return int(count), condition, float(minutes)


def split_photos(photos: Path, work: Path, counts: list[int]) -> tuple[Path, dict[int, Path]]:
    """A held-out folder and one training folder per count (nested prefixes of one seeded order), as symlinks."""
    names = sorted(p.name for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    order = np.random.default_rng(0).permutation(len(names))
    held_out, rest = [names[i] for i in order[:HELD_OUT]], [names[i] for i in order[HELD_OUT:]]
    folders = {"held-out": held_out, **{f"train-{n}": rest[:n] for n in counts}}
    for folder, chosen in folders.items():
        target = work / folder
        if not target.exists():
            target.mkdir(parents=True)
            for name in chosen:
                (target / name).symlink_to(photos.resolve() / name)
    return work / "held-out", {n: work / f"train-{n}" for n in counts}


def init_path(args, work: Path, kind: str) -> str:
    if kind == "source":
        return args.init_source
    generator_only = work / "generator-only.safetensors"  # the source without its discriminator
    if not generator_only.exists():
        save_generator(args.init_source, generator_only, info={"note": "generator only, for the fresh-D condition"})
    return str(generator_only)


def extra_options(args) -> dict:
    options = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            options[name] = json.loads(value)  # numbers, true/false, null
        except ValueError:
            options[name] = value
    return options


def train_until(args, work: Path, data: Path, condition: str, run_dir: Path, minutes: float) -> None:
    kimg = minutes * 60 * args.rate / 1000
    if list_checkpoints(run_dir):
        stopped(facegan.train(resume=run_dir, kimg=kimg, progress=False))
        return
    options = {**CONDITIONS[condition], **extra_options(args)}
    if "init" in options:
        options["init"] = init_path(args, work, options["init"])
    else:
        options.update(arch="dcgan", size=64)
    stopped(facegan.train(data, out=str(run_dir), kimg=kimg, checkpoint_every=10**6, sample_every=10**6,
                          keep=2, progress=False, **options))


def stopped(result) -> None:
    """Ctrl-C or SIGTERM stops the whole benchmark (training saved a checkpoint; a rerun continues from it)."""
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        raise SystemExit(f"stopped by {result.stopped_by}; run the same command again to continue")


def score(args, run_dir: Path, held_out: Path) -> dict:
    config = EvalConfig(real=str(held_out), checkpoint=str(run_dir), n=args.fakes, inception=args.inception,
                        device="cpu", progress=False, kid_subset_size=min(args.fakes, HELD_OUT))
    return facegan.api.evaluate(config)


def record_point(args, job: str, run_dir: Path, held_out: Path, grids: Path, minutes: float) -> dict:
    result = score(args, run_dir, held_out)
    progress = checkpoint.load(list_checkpoints(run_dir)[0], ["progress"])["progress"]
    grid = grids / f"{job.replace(':', '-').replace('+', '-')}-{minutes:g}min.png"
    facegan.load(run_dir).grid(n=36, seed=0).save(grid)
    return {"job": job, "minutes": minutes, "train_minutes": progress["train_seconds"] / 60,
            "kimg": progress["images_seen"] / 1000, "kid": result["kid_mean"], "kid_std": result["kid_std"],
            "fid": result["fid"], "n_fake": result["n_fake"], "n_real": result["n_real"], "grid": grid.name,
            "cpu": environment()["cpu"]}


def run(args) -> list[dict]:
    work = Path(args.work)
    jobs = [parse_job(job) for job in args.jobs.split(",")]
    points = [float(m) for m in args.points.split(",")]
    held_out, training_sets = split_photos(Path(args.photos), work, sorted({count for count, _, _ in jobs}))
    grids = Path(args.out) / "finetune"
    grids.mkdir(parents=True, exist_ok=True)
    curve_path = work / "curve.jsonl"
    done = {(r["job"], r["minutes"]) for r in read_curve(curve_path)}
    for count, condition, budget in jobs:
        job = f"{count}:{condition}"
        run_dir = work / "runs" / f"{count}-{condition}"
        for minutes in [m for m in points if m <= budget]:
            if (job, minutes) in done:
                continue
            train_until(args, work, training_sets[count], condition, run_dir, minutes)
            point = record_point(args, job, run_dir, held_out, grids, minutes)
            with curve_path.open("a") as f:
                f.write(json.dumps(point) + "\n")
            print(json.dumps(point), file=sys.stderr, flush=True)
    return read_curve(curve_path)


def table(curve: list[dict]) -> str:
    jobs = list(dict.fromkeys(r["job"] for r in curve))
    minutes = sorted({r["minutes"] for r in curve})
    lines = ["| photos: condition | " + " | ".join(f"{m:g} min" for m in minutes) + " |",
             "| --- |" + " --- |" * len(minutes)]
    for job in jobs:
        cells = []
        for m in minutes:
            hit = [r for r in curve if r["job"] == job and r["minutes"] == m]
            cells.append(f"{hit[0]['kid'] * 1000:.1f} ({hit[0]['fid']:.0f}; {hit[0]['kimg']:.0f} kimg)" if hit else "")
        lines.append(f"| {job} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for job in dict.fromkeys(r["job"] for r in curve):
        points = [r for r in curve if r["job"] == job]
        axes[0].plot([r["minutes"] for r in points], [r["kid"] * 1000 for r in points], marker="o", label=job)
        axes[1].plot([r["kimg"] for r in points], [r["kid"] * 1000 for r in points], marker="o", label=job)
    axes[0].set_xlabel("training minutes (2 CPU cores, at the measured idle rate)")
    axes[1].set_xlabel("thousand images shown")
    for ax in axes:
        ax.set_ylabel("KID x 1000 vs held-out UTKFace")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("facegan: fine-tuning on UTKFace, 64 px")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.time()
    curve = run(args)
    out = Path(args.out)
    summary = {"command": " ".join(sys.argv), "environment": environment(), "held_out": HELD_OUT, "rate": args.rate,
               "fakes_per_point": args.fakes, "init_source": args.init_source, "curve": curve,
               "seconds": time.time() - started}
    (out / "finetune.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(curve, out / "finetune.png")
    print(table(curve))


if __name__ == "__main__":
    main()
