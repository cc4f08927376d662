"""Quality per image seen: train each candidate recipe to the same kimg, FID/KID every --every-kimg.

    python benchmarks/quality.py --data ../shared/datasets/celeba --kimg 1000 --every-kimg 100 \\
        --candidates dcgan=dcgan,dcgan-ttur=dcgan:lr_d=4e-4:lr_g=1e-4,resnet=resnet,resnet-bf16=resnet:precision=bf16

How much each image teaches does not depend on the machine; how many images a second it trains does. So
budgets and curve points are in thousands of images seen (kimg), and each point records the img/s of the
chunk of training before it and the machine that trained it. An equal-time comparison for any machine
measured then follows from one curve: in T minutes a candidate reaches rate x T x 60 / 1000 kimg, and its
FID there is read off its curve (quality.json's `equal_minutes`, for 10, 30, 60 and 120 minutes).

A candidate is NAME=ARCH[:option=value...], with any `facegan train` option of TrainConfig (lr_d, lr_g,
batch, width, ema_kimg, ema_rampup, augment, ada_target, precision, seed, ...); a value may hold commas
(augment=color,translation). Each candidate trains in a run folder of its own (--runs/NAME). The older
form --archs dcgan,resnet+bf16 still works: an entry ARCH trains in fp32, ARCH+bf16 in bf16, in the same
folders as before.

Candidates take turns, chunk by chunk: each trains to its next multiple of --every-kimg, then its newest
checkpoint is evaluated with --fakes generated faces against the test split. With --drop-behind F, a
candidate whose newest FID is above F times the best FID any candidate has at that kimg or less stops
training ("dropped at K kimg"). At the end of its --kimg budget each candidate is evaluated once more with
--final-fakes faces. The floor no generator can beat, --fakes real train photos against the same test
split, is computed once and printed with every table.

Everything is appended to curve.jsonl in --runs, so the command can be stopped and run again: it continues
where it left off (training resumes exactly from the last checkpoint) and keeps the finished points; a new
candidate can be added to the list later, and a larger --kimg trains everyone further. Results: quality.json
and quality.png in --out, and Markdown tables on stdout.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

# benchmarks/ is on the path when this runs as a script
from throughput import environment

import facegan
from facegan import checkpoint
from facegan.metrics.evaluate import EvalConfig, GeneratedFaces, batches_of
from facegan.metrics.evaluate import evaluate as evaluate_faces
from facegan.models import ARCHITECTURES
from facegan.models.device import resolve_device
from facegan.runs import list_checkpoints
from facegan.training import loop
from facegan.training.config import TrainConfig

DEFAULT_CANDIDATES = "dcgan=dcgan,resnet=resnet,resnet-fast=resnet-fast"
CURVE = "curve.jsonl"
REAL_PHOTOS = "real photos"  # the floor's record in the curve file
EQUAL_MINUTES = (10, 30, 60, 120)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# What the benchmark decides for every candidate alike; a candidate may set any other TrainConfig option.
SET_BY_BENCHMARK = ("data", "out", "arch", "size", "split", "init", "steps", "kimg", "minutes", "device", "progress")
METRICS = ("fid", "kid_mean", "kid_std", "n_fake", "n_real")


class Candidate(NamedTuple):  # not a dataclass: the tests load this script without registering it as a module
    name: str
    arch: str
    options: dict


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="CelebA folder (its train split trains, its test split evaluates)")
    parser.add_argument("--candidates", default=None,
                        help=f"comma-separated NAME=ARCH[:option=value...] (default {DEFAULT_CANDIDATES})")
    parser.add_argument("--archs", default=None, help="the older form: comma-separated ARCH or ARCH+bf16")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="batch size of every candidate that sets none itself "
                                                                "(default: each architecture's own)")
    parser.add_argument("--kimg", type=float, default=1000.0, help="thousand images seen per candidate")
    parser.add_argument("--every-kimg", type=float, default=100.0, help="thousand images between curve points")
    parser.add_argument("--drop-behind", type=float, default=None, metavar="F",
                        help="stop a candidate whose FID is above F times the best at its kimg or less (default: off)")
    parser.add_argument("--fakes", type=int, default=2000, help="generated faces (and real photos for the floor) per point")
    parser.add_argument("--final-fakes", type=int, default=10_000, help="generated faces for the final numbers")
    parser.add_argument("--runs", default=str(Path.home() / "facegan-runs" / "quality"), help="run directories")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="where JSON and plot go")
    parser.add_argument("--inception", default=None, help="FID Inception weights (else $FACEGAN_INCEPTION, cache)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", action="store_true", help="train nothing: write the results and tables of the "
                        "curve so far (a search that continues over several sessions)")
    args = parser.parse_args(argv)
    if args.candidates and args.archs:
        parser.error("give --candidates or --archs, not both")
    if not (args.kimg > 0 and args.every_kimg > 0 and round(args.every_kimg * 1000) >= 1):
        parser.error("--kimg and --every-kimg must be positive (--every-kimg at least 0.001, one image)")
    if args.drop_behind is not None and not args.drop_behind >= 1:
        parser.error(f"--drop-behind must be at least 1 (below 1 even the best candidate is behind), got {args.drop_behind}")
    return args


# ---------------------------------------------------------------------------------------------------------------
# Candidates


def candidates_of(args) -> list[Candidate]:
    if args.archs:
        return [candidate_from_entry(entry) for entry in args.archs.split(",")]
    return [parse_candidate(entry) for entry in split_entries(args.candidates or DEFAULT_CANDIDATES)]


def split_entries(text: str) -> list[str]:
    """Commas separate candidates and may also sit in a value: a piece starts a candidate when its first `=` comes
    before any `:` (NAME=ARCH...); any other piece belongs to the value before it."""
    entries: list[str] = []
    for piece in text.split(","):
        head, equals, _ = piece.partition("=")
        if entries and not (equals and ":" not in head):
            entries[-1] += "," + piece
        else:
            entries.append(piece)
    return entries


def parse_candidate(entry: str) -> Candidate:
    """"dcgan-ttur=dcgan:lr_d=4e-4:lr_g=1e-4" -> Candidate("dcgan-ttur", "dcgan", {"lr_d": 4e-4, "lr_g": 1e-4})."""
    name, _, spec = entry.partition("=")
    arch, *settings = spec.split(":")
    if not NAME.fullmatch(name) or not arch:
        raise SystemExit(f"--candidates entry {entry!r}: NAME=ARCH[:option=value...], a NAME of letters, digits, . _ + -")
    options = {}
    for setting in settings:
        option, equals, value = setting.partition("=")
        if not (option and equals):
            raise SystemExit(f"--candidates entry {entry!r}: {setting!r} is not option=value")
        options[option] = parse_value(value)
    return Candidate(name, arch, options)


def parse_value(text: str):
    try:
        return json.loads(text)  # numbers, true/false, null
    except ValueError:
        return text


def parse_entry(entry: str) -> tuple[str, str]:
    """An --archs entry: "resnet+bf16" -> ("resnet", "bf16"); a plain name trains in fp32."""
    arch, _, precision = entry.partition("+")
    if precision not in ("", "bf16"):
        raise SystemExit(f"--archs entry {entry!r}: the only suffix is +bf16")
    return arch, precision or "fp32"


def candidate_from_entry(entry: str) -> Candidate:
    arch, precision = parse_entry(entry)
    return Candidate(entry, arch, {"precision": precision})


def training_options(args, candidate: Candidate) -> dict:
    """The TrainConfig options of a candidate's new run: the benchmark's own, then the candidate's."""
    return {"arch": candidate.arch, "size": args.size, "device": args.device, "batch": args.batch, "sample_every": 250,
            "checkpoint_every": 250, "keep": 2, "progress": False, **candidate.options}


def check_candidates(args, candidates: list[Candidate]) -> None:
    """Refuse a bad candidate before any training, in one line naming it."""
    names = [candidate.name for candidate in candidates]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SystemExit(f"candidate {twice[0]!r} is given twice")
    device = resolve_device(args.device)
    for candidate in candidates:
        try:
            check_candidate(args, candidate, device)
        except (ValueError, TypeError) as error:
            raise SystemExit(f"candidate {candidate.name!r}: {error}") from None


def check_candidate(args, candidate: Candidate, device: torch.device) -> None:
    if candidate.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {candidate.arch!r}; choose from {', '.join(sorted(ARCHITECTURES))}")
    known = TrainConfig().flat()
    for option in candidate.options:
        if option not in known:
            settable = sorted(set(known) - set(SET_BY_BENCHMARK))
            raise ValueError(f"training has no option {option!r}; a candidate may set {', '.join(settable)}")
        if option in SET_BY_BENCHMARK:
            raise ValueError(f"{option} is set by the benchmark, alike for every candidate")
    config = TrainConfig.create(args.data, **training_options(args, candidate))
    config.validate()
    run_dir = Path(args.runs) / candidate.name
    if list_checkpoints(run_dir):
        check_same_recipe(candidate, run_dir)
    else:
        loop.runnable_precision(config, device, resuming=False)  # bf16 where it would be emulated is refused here


def check_same_recipe(candidate: Candidate, run_dir: Path) -> None:
    """A candidate's run folder must hold the run of its recipe, or a rerun would silently continue another one.

    Precision and `auto` values are resolved when a run starts (and a bf16 run resumed where bf16 is emulated goes
    on in fp32), so they are not compared."""
    saved = TrainConfig.from_dict(newest(run_dir)["config"]).flat()
    for option, value in {"arch": candidate.arch, **candidate.options}.items():
        if option != "precision" and value != "auto" and saved[option] != value:
            raise ValueError(f"its run {run_dir} trains with {option}={saved[option]}, not {value}; "
                             "give this recipe a name of its own")


# ---------------------------------------------------------------------------------------------------------------
# The curve file


def read_curve(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def load_curve(path: Path) -> list[dict]:
    return upgraded(read_curve(path))


def append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), file=sys.stderr, flush=True)


def upgraded(curve: list[dict]) -> list[dict]:
    """The records of the benchmark's minutes-based version (`arch` entries, `minutes`) in today's form."""
    records, previous = [], {}
    for record in curve:
        if "candidate" not in record:
            record = old_record(record, None if record["final"] else previous.get(record["arch"]))
        if is_point(record):
            previous[record["candidate"]] = record
        records.append(record)
    return records


def old_record(record: dict, previous: dict | None) -> dict:
    arch, precision = parse_entry(record["arch"])
    new = {**record, "candidate": record["arch"], "arch": arch, "options": {"precision": precision},
           "point_kimg": record["kimg"], "train_seconds": record["minutes"] * 60, "machine": "not recorded", "cpu": None}
    new["img_per_s"] = None if record["final"] else chunk_rate(new, previous)
    return new


def is_point(record: dict) -> bool:
    return record["candidate"] != REAL_PHOTOS and not record["final"]


def points_of(curve: list[dict], name: str) -> list[dict]:
    """A candidate's curve points (not its final numbers), by images seen."""
    return sorted((r for r in curve if r["candidate"] == name and is_point(r)), key=lambda r: r["kimg"])


def candidate_names(curve: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["candidate"] for r in curve if r["candidate"] != REAL_PHOTOS))


def chunk_rate(record: dict, previous: dict | None) -> float | None:
    """img/s of the training between the previous point (or the start) and this one."""
    images = record["kimg"] * 1000 - (previous["kimg"] * 1000 if previous else 0)
    seconds = record["train_seconds"] - (previous["train_seconds"] if previous else 0)
    return images / seconds if seconds > 0 else None


# ---------------------------------------------------------------------------------------------------------------
# The schedule


def images(kimg: float) -> int:
    return round(kimg * 1000)


def point_images(args) -> list[int]:
    """Images seen at each curve point: the multiples of --every-kimg below --kimg, then --kimg."""
    every, budget = images(args.every_kimg), images(args.kimg)
    return [*range(every, budget, every), budget]


def next_point(args, points: list[dict]) -> int | None:
    """The images seen at a candidate's next curve point; None when its budget is done."""
    reached = max((images(r["kimg"]) for r in points), default=0)
    return next((p for p in point_images(args) if p > reached), None)


def dropped(args, curve: list[dict]) -> dict[str, float]:
    """Unfinished candidates whose newest FID is above --drop-behind times the best FID any candidate has at that
    kimg or less: name -> the kimg of that point."""
    if args.drop_behind is None:
        return {}
    points = [r for r in curve if is_point(r)]
    behind = {}
    for name in candidate_names(curve):
        own = points_of(curve, name)
        if not own or next_point(args, own) is None:
            continue
        newest_point = own[-1]
        best = min(r["fid"] for r in points if r["point_kimg"] <= newest_point["point_kimg"])
        if newest_point["fid"] > args.drop_behind * best:
            behind[name] = newest_point["point_kimg"]
    return behind


def run(args, candidates: list[Candidate]) -> list[dict]:
    runs = Path(args.runs)
    check_candidates(args, candidates)
    runs.mkdir(parents=True, exist_ok=True)
    curve_path = runs / CURVE
    real_photos_floor(args, curve_path)
    while pending := unfinished(args, candidates, load_curve(curve_path)):
        for candidate in pending:
            take_turn(args, candidate, curve_path)
    curve = load_curve(curve_path)
    for candidate in candidates:
        if candidate.name not in dropped(args, curve) and not final_done(args, curve, candidate.name):
            append(curve_path, record_of(args, candidate, evaluate(args, runs / candidate.name, args.final_fakes),
                                         images(args.kimg), previous=None, final=True))
    return load_curve(curve_path)


def unfinished(args, candidates: list[Candidate], curve: list[dict]) -> list[Candidate]:
    """The candidates that train in the next round of turns: not dropped, budget not done."""
    behind = dropped(args, curve)
    return [c for c in candidates if c.name not in behind and next_point(args, points_of(curve, c.name)) is not None]


def final_done(args, curve: list[dict], name: str) -> bool:
    return any(r["candidate"] == name and r["final"] and images(r["point_kimg"]) == images(args.kimg) for r in curve)


def take_turn(args, candidate: Candidate, curve_path: Path) -> None:
    """Train a candidate to its next point, evaluate it there and append the point."""
    points = points_of(load_curve(curve_path), candidate.name)
    target = next_point(args, points)
    run_dir = Path(args.runs) / candidate.name
    train_to(args, candidate, run_dir, target)
    result = evaluate(args, run_dir, args.fakes)
    append(curve_path, record_of(args, candidate, result, target, points[-1] if points else None, final=False))


def train_to(args, candidate: Candidate, run_dir: Path, target: int) -> None:
    """Train until `target` images seen in all (a resume's kimg budget counts from the start of the run)."""
    found = list_checkpoints(run_dir)
    if found and newest(run_dir)["progress"]["images_seen"] >= target:
        return  # trained there before an interruption; only its point is missing
    if found:
        result = facegan.train(resume=run_dir, kimg=target / 1000, device=args.device, progress=False)
    else:
        result = facegan.train(args.data, out=str(run_dir), kimg=target / 1000, **training_options(args, candidate))
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        raise SystemExit(f"stopped by {result.stopped_by}; run the same command again to continue")


def newest(run_dir: Path) -> dict:
    return checkpoint.load(list_checkpoints(run_dir)[0], ["config", "progress"])


def evaluate(args, run_dir: Path, fakes: int) -> dict:
    return facegan.api.evaluate(eval_config(args, fakes, run_dir))


def eval_config(args, n: int, run_dir: Path | None = None) -> EvalConfig:
    return EvalConfig(real=args.data, checkpoint=str(run_dir) if run_dir else None, n=n, split="test",
                      inception=args.inception, device=args.device, progress=False)


def record_of(args, candidate: Candidate, result: dict, target: int, previous: dict | None, final: bool) -> dict:
    saved = newest(Path(args.runs) / candidate.name)
    progress = saved["progress"]
    record = {"candidate": candidate.name, "arch": candidate.arch, "options": candidate.options, "final": final,
              "point_kimg": target / 1000, "kimg": progress["images_seen"] / 1000, "step": progress["step"],
              "train_seconds": progress["train_seconds"], "precision": saved["config"]["precision"],
              **machine(args.device), **{key: result[key] for key in METRICS}}
    record["img_per_s"] = None if final else chunk_rate(record, previous)
    return record


@functools.cache
def machine(device: str) -> dict:
    """What trains: the GPU by name, else the CPU model; and the CPU model alone."""
    cpu = environment()["cpu"]
    on_gpu = resolve_device(device).type == "cuda"
    return {"machine": torch.cuda.get_device_name() if on_gpu else cpu, "cpu": cpu}


# ---------------------------------------------------------------------------------------------------------------
# The floor: real photos under the same protocol


def real_photos_floor(args, curve_path: Path) -> dict:
    """The floor's record in the curve file, computed the first time it is needed there."""
    found = floor_of(args, load_curve(curve_path))
    if found is None:
        found = {"candidate": REAL_PHOTOS, "final": False, "size": args.size, "fakes": args.fakes,
                 **{key: value for key, value in evaluate_real_photos(args).items() if key in METRICS}}
        append(curve_path, found)
    return found


def floor_of(args, curve: list[dict]) -> dict | None:
    return next((r for r in curve if r["candidate"] == REAL_PHOTOS and (r["size"], r["fakes"]) == (args.size, args.fakes)),
                None)


def evaluate_real_photos(args) -> dict:
    """FID/KID of --fakes train photos (a seeded choice) in place of generated faces, against the test split."""
    dataset = facegan.prepare(args.data, size=args.size, progress=False)
    chosen = train_photos(dataset.split_indices("train"), args.fakes)
    photos = GeneratedFaces(lambda batch_size: batches_of(dataset.images, chosen, batch_size), len(chosen), dataset.size)
    return evaluate_faces(eval_config(args, len(chosen)), photos)


def train_photos(indices: np.ndarray, count: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(indices, size=min(count, len(indices)), replace=False))


# ---------------------------------------------------------------------------------------------------------------
# Results


def rates(curve: list[dict]) -> dict[str, dict[str, float]]:
    """machine -> candidate -> img/s: the median of its chunks' rates there (robust to a chunk slowed by other work)."""
    measured: dict[str, dict[str, list[float]]] = {}
    for record in curve:
        if is_point(record) and record["img_per_s"]:
            measured.setdefault(record["machine"], {}).setdefault(record["candidate"], []).append(record["img_per_s"])
    return {m: {name: statistics.median(values) for name, values in per.items()} for m, per in measured.items()}


def fid_at(points: list[dict], kimg: float) -> float | None:
    """FID interpolated along a curve at `kimg`; None outside it (before its first point or beyond its last)."""
    seen = [r["kimg"] for r in points]
    if not seen or not seen[0] <= kimg <= seen[-1]:
        return None
    return float(np.interp(kimg, seen, [r["fid"] for r in points]))


def equal_minutes(curve: list[dict]) -> list[dict]:
    """For each machine measured and each candidate's rate on it: kimg reached and FID after T training minutes."""
    rows = []
    for machine_name, per_candidate in rates(curve).items():
        for name, rate in per_candidate.items():
            for minutes in EQUAL_MINUTES:
                kimg = rate * minutes * 60 / 1000
                rows.append({"machine": machine_name, "candidate": name, "img_per_s": rate, "minutes": minutes,
                             "kimg": kimg, "fid": fid_at(points_of(curve, name), kimg)})
    return rows


def summarise(args, candidates: list[Candidate], curve: list[dict]) -> dict:
    declared = {c.name: c for c in candidates}
    names = list(dict.fromkeys(list(declared) + candidate_names(curve)))
    behind = dropped(args, curve)
    return {"command": " ".join(sys.argv), "environment": environment(),
            "protocol": {"size": args.size, "kimg": args.kimg, "every_kimg": args.every_kimg, "fakes": args.fakes,
                         "final_fakes": args.final_fakes, "drop_behind": args.drop_behind, "real": "test split"},
            "real_photos": floor_of(args, curve),
            "candidates": {name: candidate_summary(args, name, curve, behind, declared.get(name)) for name in names},
            "equal_minutes": equal_minutes(curve), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def candidate_summary(args, name: str, curve: list[dict], behind: dict[str, float], declared: Candidate | None) -> dict:
    points = points_of(curve, name)
    finals = sorted((r for r in curve if r["candidate"] == name and r["final"]), key=lambda r: r["kimg"])
    first = (points or finals)[0] if points or finals else {"arch": declared.arch, "options": declared.options}
    return {"arch": first["arch"], "options": first["options"], "status": status(args, points, behind.get(name)),
            "dropped_at_kimg": behind.get(name),
            "img_per_s": {m: per[name] for m, per in rates(curve).items() if name in per},
            "cpu": sorted({r["cpu"] for r in points if r["cpu"]}),
            "curve": [{k: v for k, v in r.items() if k not in ("candidate", "arch", "options", "final")} for r in points],
            "final": finals[-1] if finals else None}


def status(args, points: list[dict], dropped_at: float | None) -> str:
    if dropped_at is not None:
        return f"dropped at {dropped_at:g} kimg"
    if next_point(args, points) is None:
        return "finished"
    return f"stopped at {points[-1]['kimg']:g} kimg" if points else "not started"


def table(summary: dict) -> str:
    """Markdown: FID at each curve point per candidate, the final FID, img/s and status; the floor as a row."""
    candidates = summary["candidates"]
    columns = sorted({p["point_kimg"] for c in candidates.values() for p in c["curve"]})
    lines = ["| candidate | " + " | ".join(f"{k:g} kimg" for k in columns) + " | final | img/s | status |",
             "| --- |" + " --- |" * (len(columns) + 3)]
    for name, c in candidates.items():
        fids = {p["point_kimg"]: p["fid"] for p in c["curve"]}
        final = f"{c['final']['fid']:.1f} ({c['final']['n_fake']:,} fakes)" if c["final"] else ""
        speed = ", ".join(f"{rate:.0f}" for rate in c["img_per_s"].values())
        lines.append(f"| {name} | " + " | ".join(cell(fids.get(k)) for k in columns) + f" | {final} | {speed} | {c['status']} |")
    floor = summary["real_photos"]
    if floor:
        lines.append(f"| {REAL_PHOTOS} (floor) | " + " | ".join(cell(floor["fid"]) for _ in columns) + " | | | |")
        lines.append(f"\nFID of {summary['protocol']['fakes']:,} faces against the test split ({floor['n_real']:,} photos); "
                     f"the floor: {floor['n_fake']:,} train photos in their place, FID {floor['fid']:.2f}, "
                     f"KID x 1000 {floor['kid_mean'] * 1000:.2f}.")
    return "\n".join(lines)


def cell(fid: float | None) -> str:
    return "" if fid is None else f"{fid:.1f}"


def minutes_table(summary: dict) -> str:
    """Markdown: per machine and candidate, FID (kimg reached) after each number of training minutes."""
    rows = summary["equal_minutes"]
    lines = ["| machine | candidate | img/s | " + " | ".join(f"{m} min" for m in EQUAL_MINUTES) + " |",
             "| --- | --- | --- |" + " --- |" * len(EQUAL_MINUTES)]
    for machine_name, name in dict.fromkeys((r["machine"], r["candidate"]) for r in rows):
        own = [r for r in rows if (r["machine"], r["candidate"]) == (machine_name, name)]
        cells = [f"{cell(r['fid']) or '–'} ({r['kimg']:.0f} kimg)" for r in own]
        lines.append(f"| {machine_name} | {name} | {own[0]['img_per_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    floor = summary["real_photos"]
    for ax, key, scale in ((axes[0], "fid", 1), (axes[1], "kid_mean", 1000)):
        for name, c in summary["candidates"].items():
            ax.plot([p["kimg"] for p in c["curve"]], [p[key] * scale for p in c["curve"]], marker="o", label=name)
        if floor:
            ax.axhline(floor[key] * scale, color="grey", linestyle="--", label=f"{REAL_PHOTOS} (floor)")
        ax.set_xlabel("thousand images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"FID ({summary['protocol']['fakes']:,} faces vs test split)")
    axes[1].set_ylabel("KID x 1000")
    fig.suptitle(f"facegan: quality per image seen, CelebA {summary['protocol']['size']} px")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    candidates = candidates_of(args)
    curve = load_curve(Path(args.runs) / CURVE) if args.report else run(args, candidates)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(args, candidates, curve)
    (out / "quality.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, out / "quality.png")
    print(table(summary) + "\n\n" + minutes_table(summary))
    return summary


if __name__ == "__main__":
    main()
