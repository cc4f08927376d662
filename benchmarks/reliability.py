"""Reliability figures: kill -9 trials, damaged checkpoints, fuzzed inputs, `facegan serve` under load and flood.

    python benchmarks/reliability.py [--kills 40] [--corruptions 300] [--fuzz-scale 5] [--requests 2000 --concurrency 16]
    python benchmarks/reliability.py --only flood [--flood-rounds 5]    # just the server flood, under a minute
    python benchmarks/reliability.py --only two-processes old-folder crafted    # run folders and crafted files

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


PARTS = {"kills": "kill_9", "corrupt": "corrupt_checkpoints", "fuzz": "fuzz", "serve": "serve", "flood": "server_flood",
         "two-processes": "two_processes", "old-folder": "new_run_into_old_folder", "crafted": "crafted_checkpoints"}


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
    parser.add_argument("--pairs", type=int, default=10, help="two processes started at once on one run folder, times")
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


# --- run folders: two processes at once, a new run into an old run's folder ------------------------------------

TWO_PROCESS_RUN = ["--arch", "mlp", "--size", "32", "--width", "8", "--batch", "8", "--steps", "10",
                   "--checkpoint-every", "1", "--keep", "3", "--log-every", "1", "--sample-every", "1000000",
                   "--workers", "1", "--min-size", "16", "--no-progress"]


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "facegan", "train", "--data", str(data), "--out", str(out), *TWO_PROCESS_RUN, *extra]


def run_is_whole(run: Path, seed: int) -> bool:
    """Every checkpoint of `run` is the run with `seed`, and its log counts steps once each, in order."""
    from facegan import checkpoint
    from facegan.runs import list_checkpoints
    from facegan.training.reporting import read_log

    found = list_checkpoints(run)
    seeds = {checkpoint.load(path, ["config"])["config"]["seed"] for path in found}
    steps = [line["step"] for line in read_log(run / "log.jsonl")]
    return bool(found) and seeds == {seed} and steps == sorted(set(steps)) and steps[-1] == 10


def two_processes(data: Path, work: Path, pairs: int) -> dict:
    """`pairs` times, two `facegan train` processes (seeds 1 and 2) started together on one new run folder."""
    import subprocess

    outcomes = {"one_ran_one_refused": 0, "lost_runs": 0, "refusals_naming_the_holder": 0, "tracebacks": 0}
    started = time.monotonic()
    for trial in range(pairs):
        run = work / f"pair{trial:02d}"
        processes = [subprocess.Popen(train_command(data, run, "--seed", str(seed)), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
        results = [(process.wait(), process.stderr.read()) for process in processes]
        codes = [code for code, _ in results]
        outcomes["tracebacks"] += sum("Traceback" in err for _, err in results)
        winners = [seed for seed, (code, _) in zip((1, 2), results) if code == 0]
        if sorted(codes) == [0, 2]:
            outcomes["one_ran_one_refused"] += 1
            refused = next(err for code, err in results if code == 2)
            outcomes["refusals_naming_the_holder"] += "in use by process" in refused or "already holds a run" in refused
        if len(winners) != 1 or not run_is_whole(run, winners[0]):
            outcomes["lost_runs"] += 1
    return {"pairs": pairs, **outcomes, "seconds": round(time.monotonic() - started, 1)}


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def new_run_into_old_folder(data: Path, work: Path) -> dict:
    """A new run into a folder holding a run, with the same --out and with --overwrite: the old run's files must
    all survive, byte for byte (in place, or in the folder it was moved aside to); without --out each run gets a
    folder of its own."""
    import subprocess

    old_run = work / "old-folder" / "run"
    subprocess.run(train_command(data, old_run, "--seed", "1"), check=True, capture_output=True)
    before = files_of(old_run)
    cases, lost = {}, 0
    for case, extra in (("same --out", ()), ("--overwrite", ("--overwrite",))):
        done = subprocess.run(train_command(data, old_run, "--seed", "2", *extra), capture_output=True, text=True)
        asides = sorted(old_run.parent.glob(f"{old_run.name}.replaced-*"))
        kept = files_of(asides[-1]) if asides and case == "--overwrite" else files_of(old_run)
        missing = sum(kept.get(name) != content for name, content in before.items())
        lost += missing
        cases[case] = {"exit_code": done.returncode, "old_files_lost": missing,
                       "new_run_whole": done.returncode == 0 and run_is_whole(old_run, 2)}
    numbered = work / "old-folder" / "cwd"
    numbered.mkdir()
    for seed in (1, 2):
        command = [part for part in train_command(data, Path("unused"), "--seed", str(seed))]
        out_at = command.index("--out")
        del command[out_at:out_at + 2]
        subprocess.run(command, check=True, capture_output=True, cwd=numbered)
    folders = sorted(p.name for p in (numbered / "runs").iterdir())
    return {"old_files": len(before), "old_files_lost": lost, **cases, "default_folders": folders}


# --- crafted checkpoints: every loader against every crafted family, in a child process of its own ---------------

MEMORY_LIMIT_MIB = 512


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _load_crafted(path: str, queue) -> None:
    """Child: every loader on `path`; what each did, and the peak memory above the child's start."""
    from facegan import checkpoint
    from facegan.checkpoint import CheckpointError
    from facegan.generate import load_generator
    from facegan.metrics.score import load_discriminator
    from facegan.training.init import read_init
    from facegan.training.state import check_fits

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the memory in use now
    start = _memory_kib("VmRSS")
    loaders = {"load": checkpoint.load, "generator": load_generator, "discriminator": load_discriminator,
               "resume": lambda p: check_fits(Path(p), checkpoint.load(p)), "init": read_init}
    outcome = {}
    for name, loader in loaders.items():
        try:
            loader(path)
            outcome[name] = "loaded"
        except CheckpointError as error:
            outcome[name] = "refused" if path in str(error) and "\n" not in str(error) else f"unclear: {error}"
        except Exception as error:  # noqa: BLE001 - what this measures
            outcome[name] = f"traceback: {type(error).__name__}: {error}"
    queue.put((outcome, (_memory_kib("VmHWM") - start) / 1024))


def crafted_checkpoints(data: Path, work: Path) -> dict:
    import multiprocessing

    import facegan
    from facegan.generate import save_generator
    from facegan.runs import list_checkpoints

    from tests.reliability.faults import KILL_RUN
    from tests.reliability.test_hostile_files import GENERATOR_CASES, TRAINING_CASES, craft

    run = work / "crafted-run"
    facegan.train(str(data), out=str(run), steps=4, **{**KILL_RUN, "arch": "dcgan"})
    sources = {"training": (list_checkpoints(run)[0], TRAINING_CASES)}
    sources["generator"] = (save_generator(sources["training"][0], work / "g.safetensors", info={"note": "x"}),
                            GENERATOR_CASES)
    # spawn, not fork: a child forked after training's OpenMP threads ran can hang in its first parallel op
    context = multiprocessing.get_context("spawn")
    tracebacks, unclear, over_limit, peak, tried = [], [], [], 0.0, 0
    started = time.monotonic()
    for family, (source, cases) in sources.items():
        for case, (edit, _) in cases.items():
            path = craft(source, work / f"crafted-{family}-{len(os.listdir(work))}.safetensors", edit)
            queue = context.Queue()
            child = context.Process(target=_load_crafted, args=(str(path), queue))
            child.start()
            outcome, peak_mib = queue.get(timeout=300)
            child.join()
            tried += 1
            peak = max(peak, peak_mib)
            label = f"{family}: {case}"
            tracebacks += [f"{label} ({name}): {what}" for name, what in outcome.items() if what.startswith("traceback")]
            unclear += [f"{label} ({name}): {what}" for name, what in outcome.items() if what.startswith("unclear")]
            if peak_mib > MEMORY_LIMIT_MIB:
                over_limit.append(f"{label}: {peak_mib:.0f} MiB")
    return {"files": tried, "loaders_per_file": 5, "tracebacks": len(tracebacks), "unclear_refusals": len(unclear),
            f"loaders_over_{MEMORY_LIMIT_MIB}_mib": len(over_limit), "peak_extra_mib": round(peak, 1),
            "examples": (tracebacks + unclear + over_limit)[:10], "seconds": round(time.monotonic() - started, 1)}


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
        for part, measure in (("two_processes", lambda: two_processes(data, work, args.pairs)),
                              ("new_run_into_old_folder", lambda: new_run_into_old_folder(data, work)),
                              ("crafted_checkpoints", lambda: crafted_checkpoints(data, work))):
            if part in parts:
                results[part] = measure()
                print(f"{part}:", results[part], file=sys.stderr)
                save(out, results)  # each part's figures are kept even if a later part fails
        if "fuzz" in parts:
            results["fuzz"] = fuzz_cases(args.fuzz_scale, work)
            print("fuzz:", results["fuzz"], file=sys.stderr)
        if "serve" in parts and args.requests:
            results["serve"] = serve_under_load(data, work, args.requests, args.concurrency)
            print("serve:", results["serve"], file=sys.stderr)
        if "server_flood" in parts and args.flood_rounds:
            results["server_flood"] = server_flood(args.flood_checkpoint, args.flood_rounds)
            print("server flood:", results["server_flood"], file=sys.stderr)
    save(out, results)
    print(out)


def save(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
