"""Fault injection shared by the reliability tests and `benchmarks/reliability.py`.

Kill trials: a tiny training run (32 px mlp, width 8, a checkpoint after every step, so writes are
frequent) is forked into a child process and SIGKILLed at a random instant; the run is then resumed
with `facegan train --resume` and its final weights are compared bit for bit with those of an
uninterrupted run. Corruptions: damaged copies of a good checkpoint, each of which must be refused.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

import facegan
from facegan.checkpoint import CheckpointError
from facegan.cli import main as cli_main
from facegan.runs import CHECKPOINT_DIR, checkpoint_path, list_checkpoints, unfinished_checkpoints

KILL_RUN = dict(arch="mlp", size=32, width=8, batch=8, checkpoint_every=1, sample_every=1_000_000, log_every=3,
                progress=False, workers=1, min_size=16)


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def same_tensors(a: Path, b: Path) -> bool:
    left, right = tensors_of(a), tensors_of(b)
    return left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


def _train_in_child(data: str, run_dir: str, steps: int, keep: int) -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the child's messages would only clutter the output
    torch.set_num_threads(1)
    facegan.train(data, out=run_dir, steps=steps, keep=keep, **KILL_RUN)


def start_training(data: Path, run_dir: Path, steps: int, keep: int = 2) -> multiprocessing.Process:
    """A training run in a forked child: no interpreter start-up, and SIGKILL hits a real separate process."""
    child = multiprocessing.get_context("fork").Process(target=_train_in_child, args=(str(data), str(run_dir), steps, keep))
    child.start()
    return child


@dataclass
class Reference:
    run_dir: Path
    steps: int
    seconds: float  # how long the uninterrupted child ran

    def checkpoint(self, step: int) -> Path:
        return checkpoint_path(self.run_dir, step)


def reference_run(data: Path, run_dir: Path, steps: int) -> Reference:
    """An uninterrupted run that keeps every checkpoint, timed, to compare the killed runs against.

    A one-step run in this process first imports everything a run uses (TensorBoard, matplotlib...),
    so the forked children start warm and the timing stands for every trial.
    """
    facegan.train(data, out=str(run_dir.with_name(run_dir.name + "-warmup")), steps=1, **KILL_RUN)
    started = time.monotonic()
    child = start_training(data, run_dir, steps, keep=steps + 1)
    child.join(timeout=600)
    if child.is_alive():  # never hang the suite
        child.kill()
    assert child.exitcode == 0, f"reference run failed with exit code {child.exitcode}"
    return Reference(run_dir, steps, time.monotonic() - started)


@dataclass
class KillTrial:
    delay: float
    killed: bool  # False if the run had already finished
    during_write: bool  # a checkpoint's temporary file was on disk at the kill
    resumed_from: int | None  # step of the checkpoint --resume continued from; None: killed before the first one
    newest_on_disk: int | None
    resumed_checkpoint_matches: bool  # the checkpoint resumed from is bit-identical to the uninterrupted run's
    final_matches: bool  # the resumed run ends bit-identical to the uninterrupted run

    @property
    def survived(self) -> bool:
        if self.resumed_from is None:  # nothing to resume from: only correct if no checkpoint was ever completed
            return self.newest_on_disk is None and self.final_matches
        return self.resumed_from == self.newest_on_disk and self.resumed_checkpoint_matches and self.final_matches


def kill_trial(data: Path, run_dir: Path, reference: Reference, delay: float, mid_write: bool = False) -> KillTrial:
    """Start the run, SIGKILL it after `delay` seconds, resume it with the CLI, compare with `reference`.

    With `mid_write`, the kill comes instead as soon as a checkpoint's temporary file appears (or after `delay`).
    """
    child = start_training(data, run_dir, reference.steps)
    if mid_write:
        wait_for_a_checkpoint_write(child, run_dir, delay)
    else:
        child.join(timeout=delay)
    killed = child.is_alive()
    if killed:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    during_write = any(unfinished_checkpoints(run_dir))
    on_disk = list_checkpoints(run_dir)
    newest = int(on_disk[0].stem.split("-")[1]) if on_disk else None
    resumed_from, resumed_matches = None, False
    if newest is not None:
        resumed_matches = same_tensors(on_disk[0], reference.checkpoint(newest))
        resumed_from = resume_with_cli(run_dir)
    else:  # killed before the first checkpoint: --resume must say so, and a fresh start is the way on
        try:
            facegan.train(resume=run_dir)
        except CheckpointError:
            facegan.train(data, out=str(run_dir), steps=reference.steps, keep=2, **KILL_RUN)
    final = checkpoint_path(run_dir, reference.steps)
    final_matches = final.exists() and same_tensors(final, reference.checkpoint(reference.steps))
    return KillTrial(delay, killed, during_write, resumed_from, newest, resumed_matches, final_matches)


def wait_for_a_checkpoint_write(child: multiprocessing.Process, run_dir: Path, longest: float) -> None:
    """Return when a checkpoint is being written (its temporary file exists), the child ended, or after `longest`."""
    checkpoints = run_dir / CHECKPOINT_DIR
    deadline = time.monotonic() + longest
    while child.is_alive() and time.monotonic() < deadline:
        if checkpoints.is_dir() and any(name.endswith(".partial") for name in os.listdir(checkpoints)):
            return
        time.sleep(0.0002)


def resume_with_cli(run_dir: Path) -> int:
    """Run `facegan train --resume RUN_DIR`; returns the step of the checkpoint it said it resumed from."""
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        code = cli_main(["train", "--resume", str(run_dir), "--no-progress"])
    assert code == 0, messages.getvalue()
    used = re.search(r"resuming from (\S+)", messages.getvalue())
    assert used, messages.getvalue()
    return int(Path(used.group(1)).stem.split("-")[1])


def kill_delays(count: int, longest: float, seed: int) -> list[float]:
    """Random instants over the whole run, from start-up to the last step."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, longest) for _ in range(count)]


def corruptions(good: bytes, count: int, seed: int = 0) -> dict[str, bytes]:
    """Damaged versions of a checkpoint file's bytes: empty, truncated at several points, single bit flips.

    Bit flips hit the length prefix, the JSON header and the tensor data; `count` is roughly the number made.
    """
    rng = random.Random(seed)
    header_end = 8 + int.from_bytes(good[:8], "little")
    damaged = {"empty": b""}
    cuts = [1, 7, 8, 100, header_end - 1, header_end, header_end + 1, len(good) - 1] + \
           [rng.randrange(1, len(good)) for _ in range(max(count // 4 - 8, 0))]
    for cut in cuts:
        damaged[f"truncated at byte {cut}"] = good[:cut]
    while len(damaged) < count:
        region = rng.choice(["prefix", "header", "data"])
        position = {"prefix": lambda: rng.randrange(0, 8), "header": lambda: rng.randrange(8, header_end),
                    "data": lambda: rng.randrange(header_end, len(good))}[region]()
        bit = rng.randrange(8)
        flipped = bytearray(good)
        flipped[position] ^= 1 << bit
        damaged[f"bit {bit} of byte {position} flipped ({region})"] = bytes(flipped)
    return damaged


FUZZ_CASES: Counter = Counter()  # inputs checked by the bad-input tests, by kind; read by benchmarks/reliability.py
