"""Reliability figures: kill -9 trials, damaged checkpoints, fuzzed inputs, `facegan serve` under load and flood.

    python benchmarks/reliability.py [--kills 40] [--corruptions 300] [--fuzz-scale 5] [--requests 2000 --concurrency 16]
    python benchmarks/reliability.py --only flood [--flood-rounds 5]    # just the server flood, under a minute

Runs the same fault injection as tests/reliability/ at a larger scale and writes
benchmarks/results/reliability.json (documented in benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


PARTS = {"kills": "kill_9", "corrupt": "corrupt_checkpoints", "fuzz": "fuzz", "serve": "serve", "flood": "server_flood"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=40, help="kill -9 trials")
    parser.add_argument("--steps", type=int, default=8, help="steps of each killed run (a checkpoint after every step)")
    parser.add_argument("--corruptions", type=int, default=300, help="damaged copies of a checkpoint to load")
    parser.add_argument("--fuzz-scale", type=float, default=5, help="times the Hypothesis examples of the test suite")
    parser.add_argument("--requests", type=int, default=2000, help="requests to facegan serve (0: skip)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--flood-rounds", type=int, default=5,
                        help="server flood: rounds of 45 concurrent 120-frame morphs then 150 concurrent 64-face grids")
    parser.add_argument("--flood-checkpoint", default=None, help="server flood: the model (default: the shipped one)")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="measure only these parts; the others keep their figures in --out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    return parser.parse_args(argv)


def prepared_faces(work: Path) -> Path:
    from tests.conftest import write_faces

    from facegan.data import PrepareConfig, prepare

    out = work / "prepared"
    prepare(PrepareConfig(data=str(write_faces(work / "faces", 24)), size=32, out=str(out), min_size=16, workers=1),
            progress=False)
    return out


def kill_trials(data: Path, work: Path, count: int, steps: int) -> dict:
    import torch

    from tests.reliability.faults import kill_delays, kill_trial, reference_run

    torch.set_num_threads(1)
    reference = reference_run(data, work / "reference", steps)
    started = time.monotonic()
    trials = [kill_trial(data, work / f"trial{i:03d}", reference, delay)
              for i, delay in enumerate(kill_delays(count, reference.seconds, seed=2026))]
    killed = [t for t in trials if t.killed]
    return {
        "tried": len(trials), "killed": len(killed), "survived": sum(t.survived for t in trials),
        "killed_and_survived": sum(t.survived for t in killed),
        "killed_during_checkpoint_write": sum(t.during_write for t in killed),
        "killed_before_first_checkpoint": sum(t.resumed_from is None for t in killed),
        "resumed_bit_identical": sum(t.final_matches for t in trials),
        "steps_per_run": steps, "uninterrupted_run_s": round(reference.seconds, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


PROBLEMS = ["checksum mismatch", "checksum is missing", "empty file", "truncated", "header", "not a facegan checkpoint",
            "newer facegan", "format version", "do not fit"]


def corrupt_checkpoints(data: Path, work: Path, count: int) -> dict:
    import facegan
    from facegan import checkpoint
    from facegan.checkpoint import CheckpointError
    from facegan.runs import list_checkpoints
    from facegan.training.state import check_fits

    from tests.reliability.faults import KILL_RUN, corruptions
    from tests.reliability.test_checkpoint_integrity import damage_checkpoint

    run = work / "corrupt-run"
    facegan.train(str(data), out=str(run), steps=2, **{**KILL_RUN, "arch": "dcgan"})
    good = list_checkpoints(run)[0]
    variants = corruptions(good.read_bytes(), count, seed=7)
    kinds = {"other architecture": 0, "future format": 0}
    for kind in kinds:
        path = work / f"{kind.replace(' ', '-')}.safetensors"
        path.write_bytes(good.read_bytes())
        damage_checkpoint(path, kind)
        variants[kind] = path.read_bytes()
    detected, by_problem = 0, {}
    path = work / "damaged.safetensors"
    for how, data_bytes in variants.items():
        path.write_bytes(data_bytes)
        try:
            check_fits(path, checkpoint.load(path))
        except CheckpointError as error:
            detected += str(path) in str(error)
            problem = next((p for p in PROBLEMS if p in str(error)), "other")
            by_problem[problem] = by_problem.get(problem, 0) + 1
    return {"tried": len(variants), "detected": detected, "by_problem": dict(sorted(by_problem.items(), key=lambda kv: -kv[1]))}


def fuzz_cases(scale: float, work: Path) -> dict:
    os.environ["FACEGAN_FUZZ_SCALE"] = str(scale)
    import pytest

    from tests.reliability import test_bad_input as bad
    from tests.reliability.faults import FUZZ_CASES

    started = time.monotonic()
    tests = [bad.test_random_bytes_never_crash, bad.test_random_bytes_behind_an_image_signature_never_crash,
             bad.test_truncated_and_bit_flipped_images_never_crash, bad.test_decompression_bombs_are_too_large,
             bad.test_any_mode_size_and_orientation_of_a_flat_photo_decodes_to_its_colour,
             bad.test_one_pixel_and_ten_thousand_by_one_images,
             bad.test_zip_member_names_never_write_outside_and_unsafe_ones_are_skipped,
             bad.test_prepare_accounts_for_every_file_of_a_random_folder]
    for test in tests:
        test()
    for number, test in enumerate([bad.test_hostile_folder_is_prepared_without_hanging_or_crashing,
                                   bad.test_zip_bomb_is_skipped_without_inflating_it]):
        (work / f"fuzz{number}").mkdir()
        test(work / f"fuzz{number}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        (work / "fuzz-unreadable").mkdir()
        bad.test_unreadable_files_are_skipped(work / "fuzz-unreadable", monkeypatch)
    return {"decoded_inputs": FUZZ_CASES["decode"], "prepare_runs": FUZZ_CASES["prepare"], "failures": 0,
            "seconds": round(time.monotonic() - started, 1)}


def rss_kib(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


async def serve_load(base_url: str, pid: int, requests: int, concurrency: int) -> dict:
    """`requests` mixed requests, `concurrency` in flight; invalid ones among them must get 4xx, never 5xx."""
    import httpx

    rng = random.Random(0)
    queries = []
    for number in range(requests):
        kind = number % 10
        if kind < 6:
            queries.append(("/api/face.png", {"seed": rng.randrange(2**32), "truncation": round(rng.uniform(0, 2), 2)}))
        elif kind < 8:
            queries.append(("/api/grid.png", {"seed": rng.randrange(1000), "n": rng.choice([4, 9, 16])}))
        elif kind == 8:
            queries.append(("/api/info", {}))
        else:  # out of range on purpose
            queries.append(rng.choice([("/api/face.png", {"seed": -1}), ("/api/grid.png", {"n": 10**6}),
                                       ("/api/face.png", {"truncation": "nan"}), ("/api/morph.gif", {"frames": 0})]))
    statuses: dict[str, int] = {}
    memory = [rss_kib(pid)["VmRSS"]]
    pending = iter(queries)
    done = 0

    async def worker(client):
        nonlocal done
        for path, params in pending:
            try:
                status = str((await client.get(path, params=params)).status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
            if done % (requests // 10 or 1) == 0:
                memory.append(rss_kib(pid)["VmRSS"])

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.monotonic() - started
    ok = sum(n for status, n in statuses.items() if status.isdigit() and int(status) < 500)
    return {"requests": requests, "concurrency": concurrency, "statuses": statuses, "served_without_error": ok,
            "server_errors": requests - ok, "requests_per_s": round(requests / seconds, 1),
            "rss_mib_every_10_percent": [round(kib / 1024, 1) for kib in memory],
            "peak_rss_mib": round(rss_kib(pid)["VmHWM"] / 1024, 1)}


def serve_under_load(data: Path, work: Path, requests: int, concurrency: int) -> dict:
    import facegan
    from serve import start_server  # benchmarks/serve.py

    from tests.reliability.faults import KILL_RUN

    run = work / "serve-run"
    facegan.train(str(data), out=str(run), steps=2, **{**KILL_RUN, "arch": "dcgan"})
    process, url = start_server(argparse.Namespace(device="cpu", checkpoint=str(run)))
    try:
        result = asyncio.run(serve_load(url, process.pid, requests, concurrency))
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"model": "dcgan 32 px, width 8 (tests' tiny model)", **result}


# The two floods of the issue that asked for a bounded queue: each once made /api/info wait 33 s and 66 s.
FLOOD_WAVES = [("/api/morph.gif", {"frames": 120}, 45), ("/api/grid.png", {"n": 64}, 150)]


def percentiles_ms(seconds: list[float]) -> dict:
    ordered = sorted(seconds)

    def at(q: float) -> float | None:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None

    return {"n": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": at(1)}


def flood_client(base_url: str, rounds: int, results) -> None:
    """The flooding client, in a process of its own: FLOOD_WAVES `rounds` times, each wave sent all at once."""
    import httpx

    statuses: dict[str, int] = {}
    seconds: dict[str, list[float]] = {"503": [], "200": []}
    retry_after: set[str] = set()

    async def one(client, path: str, params: dict) -> None:
        started = time.perf_counter()
        try:
            response = await client.get(path, params=params)
            status = str(response.status_code)
        except httpx.HTTPError as error:
            response, status = None, type(error).__name__
        seconds.setdefault(status, []).append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        if status == "503":
            retry_after.add(response.headers.get("retry-after", "missing"))

    async def flood() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
            for number in range(rounds):
                for path, params, count in FLOOD_WAVES:
                    seeds = [{"start": i, "end": i + 1} if "morph" in path else {"seed": 64 * i}
                             for i in range(1000 * number, 1000 * number + count)]
                    await asyncio.gather(*(one(client, path, {**params, **seed}) for seed in seeds))

    started = time.monotonic()
    asyncio.run(flood())
    results.put({"flood_s": round(time.monotonic() - started, 1), "statuses": statuses,
                 "refused_503_ms": percentiles_ms(seconds["503"]), "served_200_ms": percentiles_ms(seconds["200"]),
                 "retry_after_s": sorted(retry_after, key=lambda value: (len(value), value))})


async def measure_during_flood(base_url: str, pid: int, flooding) -> tuple[list, list, dict]:
    """While `flooding()`: /api/info every 50 ms (one after another), and as visitors of the page a grid of 64
    every 100 ms and a face every 500 ms (each sent without waiting for the last); seconds per answer."""
    import httpx

    info, rss, visitor = [], [], {}
    pending = set()

    async def visit(client, kind: str, path: str, params: dict) -> None:
        started = time.perf_counter()
        status = (await client.get(path, params=params)).status_code
        visitor.setdefault(f"{kind}_{status}", []).append(time.perf_counter() - started)

    async def visitors(client) -> None:
        for number in itertools.count():
            if not flooding():
                return
            jobs = [("grid_n64", "/api/grid.png", {"n": 64, "seed": 64 * number})]
            if number % 5 == 0:
                jobs.append(("face", "/api/face.png", {"seed": number}))
            for job in jobs:
                task = asyncio.create_task(visit(client, *job))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(0.1)

    async def probe(client) -> None:
        while flooding():
            started = time.perf_counter()
            (await client.get("/api/info")).raise_for_status()
            info.append(time.perf_counter() - started)
            rss.append(rss_kib(pid)["VmRSS"])
            await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as prober, \
            httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as visiting:
        await asyncio.gather(probe(prober), visitors(visiting))
        await asyncio.gather(*pending)
    return info, rss, visitor


def flood_measurement(base_url: str, pid: int, rounds: int) -> dict:
    """The flood from a process of its own, measured from this one (see measure_during_flood); the server's RSS
    idle (after one request of each kind), during and after."""
    import multiprocessing

    import httpx

    with httpx.Client(base_url=base_url, timeout=600) as client:  # warm up: the render thread, OpenMP, the codecs
        for path, params, _ in FLOOD_WAVES:
            client.get(path, params=params).raise_for_status()
    time.sleep(1)
    idle = rss_kib(pid)["VmRSS"]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    flooder = context.Process(target=flood_client, args=(base_url, rounds, results))
    flooder.start()
    info, rss, visitor = asyncio.run(measure_during_flood(base_url, pid, flooder.is_alive))
    flood = results.get(timeout=600)  # queue.Empty if the flooding process died
    flooder.join()
    time.sleep(1)
    after = rss_kib(pid)
    info_ms = percentiles_ms(info)
    return {
        "waves": [f"{count} at once: {path}?" + "&".join(f"{k}={v}" for k, v in params.items())
                  for path, params, count in FLOOD_WAVES],
        "rounds": rounds, **flood, "info_ms": info_ms,
        "visitor_ms": {key: percentiles_ms(seconds) for key, seconds in sorted(visitor.items())},
        "rss_mib": {"idle": round(idle / 1024, 1), "peak_during": round(max(rss + [idle]) / 1024, 1),
                    "after": round(after["VmRSS"] / 1024, 1), "peak_ever": round(after["VmHWM"] / 1024, 1)},
        "targets_met": {"info_p99_at_most_1_s": info_ms["p99"] <= 1000,
                        "memory_after_at_most_idle_plus_100_mib": after["VmRSS"] - idle <= 100 * 1024},
    }


def server_flood(checkpoint: str | None, rounds: int) -> dict:
    from serve import start_server  # benchmarks/serve.py

    started = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "load_average_at_start": round(os.getloadavg()[0], 1)}
    process, url = start_server(argparse.Namespace(device="cpu", checkpoint=checkpoint))
    try:
        result = flood_measurement(url, process.pid, rounds)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"model": checkpoint or "the shipped model", **started, "load_average_at_end": round(os.getloadavg()[0], 1),
            **result}


def main(argv=None) -> None:
    args = parse_args(argv)
    parts = {PARTS[name] for name in args.only}
    out = Path(args.out)
    if parts != set(PARTS.values()) and out.exists():  # update those parts; the others keep their figures and date
        results = json.loads(out.read_text())
    else:
        results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
                   "cpus": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="facegan-reliability-") as scratch:
        work = Path(scratch)
        data = prepared_faces(work) if parts - {"server_flood"} else None
        if "kill_9" in parts:
            results["kill_9"] = kill_trials(data, work / "kills", args.kills, args.steps)
            print("kill -9:", results["kill_9"], file=sys.stderr)
        if "corrupt_checkpoints" in parts:
            results["corrupt_checkpoints"] = corrupt_checkpoints(data, work, args.corruptions)
            print("corrupt checkpoints:", results["corrupt_checkpoints"], file=sys.stderr)
        if "fuzz" in parts:
            results["fuzz"] = fuzz_cases(args.fuzz_scale, work)
            print("fuzz:", results["fuzz"], file=sys.stderr)
        if "serve" in parts and args.requests:
            results["serve"] = serve_under_load(data, work, args.requests, args.concurrency)
            print("serve:", results["serve"], file=sys.stderr)
        if "server_flood" in parts and args.flood_rounds:
            results["server_flood"] = server_flood(args.flood_checkpoint, args.flood_rounds)
            print("server flood:", results["server_flood"], file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
