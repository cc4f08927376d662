"""Throughput of DistributedDataParallel training: 1 process against N processes on this machine.

    python benchmarks/ddp.py --data ../shared/datasets/celeba --nproc 2 --device cpu

Each setting trains the same run (global batch --batch, --steps steps) with `facegan train`
(`--nproc N` for N processes, each with --threads CPU threads) and reads images per second from
the run's log, leaving out the first --warmup steps. Scaling efficiency is the N-process rate
divided by N times the 1-process rate with the same threads per process. The load average is
recorded before and after, since anything else running on the machine skews the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from facegan.training.reporting import read_log


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="photos or a prepared cache")
    parser.add_argument("--archs", default="resnet,dcgan")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the rate")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ddp.json"))
    return parser.parse_args(argv)


def images_per_second(args, arch: str, nproc: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        command = [sys.executable, "-m", "facegan", "train", "--data", args.data, "--out", run_dir, "--arch", arch,
                   "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--device", args.device, "--log-every", "1", "--sample-every", "100000",
                   "--checkpoint-every", "100000", "--no-progress", "--nproc", str(nproc)]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rates = [r["img_per_s"] for r in read_log(Path(run_dir) / "log.jsonl") if r["step"] > args.warmup]
    return statistics.median(rates)


def main(argv=None) -> None:
    args = parse_args(argv)
    load_before = os.getloadavg()
    started = time.time()
    settings = [(1, args.threads), (args.nproc, args.threads)]
    if args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()):
        settings.insert(1, (1, args.threads * args.nproc))  # one process using all the cores the N processes use
    results = []
    for arch in args.archs.split(","):
        base = None
        for nproc, threads in settings:
            rate = images_per_second(args, arch, nproc, threads)
            base = rate if (nproc, threads) == settings[0] else base
            row = {"arch": arch, "processes": nproc, "threads_per_process": threads, "img_per_s": round(rate, 2),
                   "img_per_s_per_process": round(rate / nproc, 2),
                   "scaling_efficiency": round(rate / (nproc * base), 3) if threads == args.threads else None}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    report = {
        "command": "python benchmarks/ddp.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "device": torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available()
        else f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "size": args.size, "global_batch": args.batch, "steps": args.steps, "warmup_steps": args.warmup,
        "load_average_1_5_15_min": {"before": [round(v, 2) for v in load_before],
                                    "after": [round(v, 2) for v in os.getloadavg()]},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
