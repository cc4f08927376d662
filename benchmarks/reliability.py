"""Reliability figures: kill -9 trials, damaged checkpoints, fuzzed inputs, and `facegan serve` under load.

    python benchmarks/reliability.py [--kills 40] [--corruptions 300] [--fuzz-scale 5] [--requests 2000 --concurrency 16]

Runs the same fault injection as tests/reliability/ at a larger scale and writes
benchmarks/results/reliability.json (documented in benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=40, help="kill -9 trials")
    parser.add_argument("--steps", type=int, default=8, help="steps of each killed run (a checkpoint after every step)")
    parser.add_argument("--corruptions", type=int, default=300, help="damaged copies of a checkpoint to load")
    parser.add_argument("--fuzz-scale", type=float, default=5, help="times the Hypothesis examples of the test suite")
    parser.add_argument("--requests", type=int, default=2000, help="requests to facegan serve (0: skip)")
    parser.add_argument("--concurrency", type=int, default=16)
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


def main(argv=None) -> None:
    args = parse_args(argv)
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
               "cpus": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="facegan-reliability-") as scratch:
        work = Path(scratch)
        data = prepared_faces(work)
        results["kill_9"] = kill_trials(data, work / "kills", args.kills, args.steps)
        print("kill -9:", results["kill_9"], file=sys.stderr)
        results["corrupt_checkpoints"] = corrupt_checkpoints(data, work, args.corruptions)
        print("corrupt checkpoints:", results["corrupt_checkpoints"], file=sys.stderr)
        results["fuzz"] = fuzz_cases(args.fuzz_scale, work)
        print("fuzz:", results["fuzz"], file=sys.stderr)
        if args.requests:
            results["serve"] = serve_under_load(data, work, args.requests, args.concurrency)
            print("serve:", results["serve"], file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
