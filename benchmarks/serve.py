"""Latency and throughput of `facegan serve`, measured over HTTP on 127.0.0.1.

    python benchmarks/serve.py --checkpoint runs/mine        # the shipped model when --checkpoint is unset

Starts `facegan serve` in its own process on a free loopback port, then measures
  * p50/p95 latency of one face (/api/face.png) and of a 4x4 grid (/api/grid.png), one request at a time;
  * throughput of --requests face requests with --concurrency in flight at once (httpx, asyncio);
  * the server's memory (RSS, Linux only) idle, then after --memory-requests mixed requests (a face, a
    grid of 64, a 120-frame morph, in turn) sent --concurrency at a time, and its peak:

    python benchmarks/serve.py --memory-only     # just the memory figures, in about half a minute

Every request asks for a different seed, so nothing can be cached. Results go to --out as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="checkpoint or run directory (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=100, help="sequential requests per latency figure")
    parser.add_argument("--requests", type=int, default=500, help="requests in the load test")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once in the load test")
    parser.add_argument("--memory-requests", type=int, default=40, help="mixed requests before measuring memory")
    parser.add_argument("--memory-only", action="store_true", help="measure memory only (no latency or load test)")
    parser.add_argument("--out", default=None, help="JSON results (default: results/serve.json, "
                                                    "results/serve-memory.json with --memory-only)")
    return parser.parse_args(argv)


def start_server(args) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "facegan", "serve", "--host", "127.0.0.1", "--port", "0", "--device", args.device]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if match := re.search(r"http://\S+", line):
            return process, match.group(0)
    sys.exit(f"facegan serve exited ({process.wait()}) without printing its address")


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "mean_ms": round(float(ms.mean()), 2)}


def sequential_latency(client: httpx.Client, path: str, params: dict, repeats: int) -> dict:
    seconds = []
    for seed in range(repeats):
        start = time.perf_counter()
        response = client.get(path, params={**params, "seed": 1000 + seed * 16})
        seconds.append(time.perf_counter() - start)
        response.raise_for_status()
    return percentiles(seconds)


async def load_test(base_url: str, requests: int, concurrency: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    seconds, failures = [], 0

    async def one(client: httpx.AsyncClient, seed: int) -> None:
        nonlocal failures
        async with gate:
            start = time.perf_counter()
            response = await client.get("/api/face.png", params={"seed": seed})
            seconds.append(time.perf_counter() - start)
            failures += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, 50_000 + i) for i in range(requests)))
        wall = time.perf_counter() - start
    return {"requests": requests, "concurrency": concurrency, "failures": failures, "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 1), "latency": percentiles(seconds)}


def memory_mib(pid: int) -> dict:
    """Resident memory of process `pid` now and at its peak, in MiB (from /proc: Linux only)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    mib = {key: round(int(fields[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
    return {"rss_mib": mib["VmRSS"], "peak_rss_mib": mib["VmHWM"], "anon_mib": mib["RssAnon"],
            "file_mib": mib["RssFile"], "threads": int(fields["Threads"])}


MIXED = [("/api/face.png", {}), ("/api/grid.png", {"n": 64}), ("/api/morph.gif", {"frames": 120})]


async def mixed_requests(base_url: str, requests: int, concurrency: int) -> None:
    """`requests` requests cycling through MIXED (a face, a grid of 64, a 120-frame morph), `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        path, params = MIXED[i % len(MIXED)]
        seeds = {"start": 70_000 + i, "end": 80_000 + i} if "morph" in path else {"seed": 70_000 + i * 64}
        async with gate:
            (await client.get(path, params={**params, **seeds})).raise_for_status()

    async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=concurrency),
                                 timeout=600) as client:
        await asyncio.gather(*(one(client, i) for i in range(requests)))


def memory_figures(url: str, pid: int, requests: int, concurrency: int) -> dict | None:
    if not Path(f"/proc/{pid}/status").exists():
        return None  # not Linux
    time.sleep(1)  # let the server settle after printing its address
    idle = memory_mib(pid)
    asyncio.run(mixed_requests(url, requests, concurrency))
    return {"requests": requests, "concurrency": concurrency, "mix": "face, grid n=64, morph frames=120",
            "idle": idle, "after": memory_mib(pid)}


def main(argv=None) -> None:
    args = parse_args(argv)
    load_average = os.getloadavg()  # other work on the machine slows every figure; say how much there was
    process, url = start_server(args)
    if args.memory_only:
        try:
            memory = memory_figures(url, process.pid, args.memory_requests, args.concurrency)
        finally:
            process.terminate()
            process.wait(timeout=30)
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "checkpoint": args.checkpoint or "shipped default model", "device": args.device,
                  "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_average],
                  "memory": memory}
        write_result(result, args.out or str(Path(__file__).parent / "results" / "serve-memory.json"))
        return
    try:
        memory = memory_figures(url, process.pid, args.memory_requests, args.concurrency)
        with httpx.Client(base_url=url, timeout=120) as client:
            info = client.get("/api/info").json()
            for _ in range(5):  # warm-up: first calls pay for lazy initialisation
                client.get("/api/face.png").raise_for_status()
                client.get("/api/grid.png", params={"n": 16}).raise_for_status()
            face = sequential_latency(client, "/api/face.png", {}, args.repeats)
            grid = sequential_latency(client, "/api/grid.png", {"n": 16, "ncols": 4}, args.repeats)
        load = asyncio.run(load_test(url, args.requests, args.concurrency))
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": args.checkpoint or "shipped default model",
        "model": {key: info[key] for key in ("arch", "size", "z_dim", "width")},
        "device": args.device, "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_average],
        "machine": platform.machine(),
        "python": platform.python_version(),
        f"face_{info['size']}px": face,
        "grid_4x4": grid,
        "load": load,
        "memory": memory,
    }
    write_result(result, args.out or str(Path(__file__).parent / "results" / "serve.json"))


def write_result(result: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
