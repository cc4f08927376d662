"""How fast facegan trains, generates and evaluates on this machine, against plain baselines measured in the same run.

    python benchmarks/throughput.py --data ../shared/datasets/celeba          # a few minutes
    python benchmarks/throughput.py --data ../shared/datasets/celeba --quick  # CI-sized, seconds

Writes benchmarks/results/throughput.json (--out) and prints a Markdown summary. Sections:

* peak: matmul GFLOP/s in fp32 and bf16, the yardstick for every "fraction of peak";
* training: img/s of facegan's own `train_step` on a `TrainingState` (the real path: data batch
  from the uint8 cache, D step, G step, EMA), for each architecture, size, batch and precision,
  as the median of timed steps after warm-up; FLOPs per step from torch.utils.flop_counter;
* optimisations: the DCGAN-64 step with each of facegan's speed choices switched off in turn;
* reference: the DCGAN step of pytorch/examples written plainly here (eager fp32, contiguous,
  default Adam), and the seed report's Keras model (benchmarks/keras_seed.py, when TensorFlow is
  installed: `pip install "facegan[keras]"`);
* data: img/s of the training batches alone; generation: img/s at 64 px for batches 1/64/256 and
  one face's latency; inception: FID feature extraction img/s; memory: peak RSS of training and
  generation, each in a fresh process;
* files: `facegan generate`'s PNG files: faces/s of the shipped 64 px generator alone and of
  `write_faces` (encoding and writing overlapped with generation) in the same run, their ratio, the
  plain one-file-after-another loop it replaced, and each PNG compression level's speed and file size.

    python benchmarks/throughput.py --data ../shared/datasets/celeba --only files  # that section alone
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facegan.data import PrepareConfig, PreparedDataset, prepare
from facegan.files import write_atomically
from facegan.generate.generator import FaceGenerator
from facegan.data.images import png_bytes
from facegan.generate.writer import COMPRESS_LEVELS, DEFAULT_COMPRESS_LEVEL, write_faces, write_png
from facegan.models import ARCHITECTURES, build_generator, build_loss, get_architecture
from facegan.models.layout import to_channels_last
from facegan.models.precision import native_bf16
from facegan.settings import usable_cpus
from facegan.training.config import TrainConfig
from facegan.training.loop import real_batch, train_step
from facegan.training.state import TrainingState, create_state, model_config

HERE = Path(__file__).resolve().parent
INCEPTION_GFLOP = 5.7  # per 299 px image, forward only
CPU = torch.device("cpu")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SECTIONS = ("training", "reference", "optimisations", "profile", "keras", "data", "emulated_bf16", "generation",
            "files", "inception", "memory")
NEEDS_DATA = set(SECTIONS) - {"generation", "files"}
FILES_TARGET = 1000  # faces/s that `facegan generate -n 10000 --out DIR` should write on 2 cores


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="face photos (prepared once per size, then reused)")
    parser.add_argument("--out", default=None, help="the JSON results (default: results/throughput.json, or "
                                                     "results/throughput-SECTION.json with --only)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for CI: 32 px, batch 8, 2 timed steps")
    parser.add_argument("--archs", default=",".join(sorted(ARCHITECTURES)))
    parser.add_argument("--skip", default="", help="comma list of sections to leave out: keras, inception, memory, "
                                                      "optimisations, reference, generation, files, data")
    parser.add_argument("--only", default="", help="comma list of the sections to run, e.g. files (the others "
                                                   "are skipped)")
    parser.add_argument("--inception", default=None, help="FID Inception weights (else $FACEGAN_INCEPTION or the cache)")
    parser.add_argument("--grid", default=None, help="SIZExBATCH pairs to train, e.g. 64x128,32x128 (default: "
                                                     "64x64,64x128,32x128,128x64)")
    parser.add_argument("--keras-python", default=sys.executable,
                        help="a Python with TensorFlow for the Keras seed model (default: this one)")
    parser.add_argument("--compile", action="store_true", help="also time the DCGAN-64 step under torch.compile")
    parser.add_argument("--rss-of", choices=("train", "generate"), help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def settings(quick: bool) -> dict:
    """What to measure: (size, batch) pairs, precisions, warm-up and timed steps."""
    if quick:
        return {"grid": [(32, 8)], "precisions": ["fp32"], "warmup": 0, "steps": 1, "reference_batch": 8,
                "keras_batch": 8, "generation_batches": [1, 8], "optimisation_size": 32, "inception_images": 8, "data_batches": 5,
                "peak_n": 256, "files_n": 48, "files_batch": 16, "files_levels": [0, DEFAULT_COMPRESS_LEVEL, 6],
                "files_repeats": 1}
    return {"grid": [(64, 64), (64, 128), (32, 128), (128, 64)], "precisions": ["fp32", "bf16"], "warmup": 1,
            "steps": 5, "reference_batch": 128, "keras_batch": 128, "generation_batches": [1, 64, 256], "optimisation_size": 64,
            "inception_images": 32, "data_batches": 50, "peak_n": 2048, "files_n": 4096, "files_batch": 256,
            "files_levels": list(COMPRESS_LEVELS), "files_repeats": 2}


# ---------------------------------------------------------------------------------------------------------------
# measuring


def median_seconds(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def count_flops(step) -> int:
    """Matmul and convolution FLOPs (forward and backward) of one call, as torch.utils.flop_counter counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int) -> float:
    """GFLOP/s of an n x n matmul: the most this CPU does with this dtype, the yardstick for every fraction of peak."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    seconds = []
    for _ in range(7):
        started = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - started)
    return 2 * n**3 / min(seconds) / 1e9  # the best repeat: a peak, not a typical speed


def environment() -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), cpu)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__, "cpu": cpu, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "bf16_supported": native_bf16(CPU), "load_average_start": list(os.getloadavg())}


# ---------------------------------------------------------------------------------------------------------------
# facegan's training step


def training_state(dataset: PreparedDataset, arch: str, batch: int, precision: str) -> tuple[TrainingState, object]:
    config = TrainConfig.create(str(dataset.root), arch=arch, size=dataset.size, batch=batch, precision=precision,
                                progress=False)
    model = model_config(config)
    state = create_state(config, model, dataset.split_indices("all"), CPU)
    torch.manual_seed(1)
    return state, build_loss(model, config.augment)


def facegan_step(state: TrainingState, loss, dataset: PreparedDataset):
    return lambda: train_step(state, loss, real_batch(state, dataset, CPU), CPU)


def measure_step(step, batch: int, peak: float, warmup: int, steps: int) -> dict:
    """Median time and FLOPs of a training step. The first step runs uncounted: it is where lazy regularisers
    (resnet's R1, every 16 steps) fire, whose double backward the FLOP counter cannot follow."""
    step()
    flops = count_flops(step)
    seconds = median_seconds(step, warmup, steps)
    achieved = flops / seconds / 1e9
    return {"seconds_per_step": seconds, "img_per_s": batch / seconds, "gflop_per_image": flops / batch / 1e9,
            "gflop_per_s": achieved, "fraction_of_peak": achieved / peak}


def benchmark_training(datasets: dict[int, PreparedDataset], archs: list[str], s: dict, peaks: dict) -> list[dict]:
    rows = []
    for size, batch in s["grid"]:
        for arch in archs:
            for precision in s["precisions"]:
                state, loss = training_state(datasets[size], arch, batch, precision)
                step = facegan_step(state, loss, datasets[size])
                row = {"arch": arch, "size": size, "batch": batch, "precision": precision,
                       **measure_step(step, batch, peaks[precision], s["warmup"], s["steps"])}
                print(f"train {arch} {size}px batch {batch} {precision}: {row['img_per_s']:.1f} img/s "
                      f"({row['fraction_of_peak']:.0%} of {precision} peak)", file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def without_channels_last(state: TrainingState) -> None:
    for network in (state.G, state.D, state.G_ema):
        network.to(memory_format=torch.contiguous_format)


def with_multi_tensor_adam(state: TrainingState) -> None:
    """Adam's multi-tensor ("foreach") implementation instead of the for-loop one torch.optim picks on CPU.

    (The fused CPU kernel is not tried: it assumes the optimiser state has the parameters' memory
    layout, which a resumed channels-last run breaks, since checkpoints store state contiguous.)
    """
    for name, network in (("opt_g", state.G), ("opt_d", state.D)):
        old = getattr(state, name)
        settings = {k: v for k, v in old.defaults.items() if k in ("lr", "betas", "eps", "weight_decay")}
        setattr(state, name, torch.optim.Adam(network.parameters(), **settings, foreach=True))


def compiled(state: TrainingState) -> None:
    state.G_train = state.G = torch.compile(state.G)
    state.D_train = state.D = torch.compile(state.D)


def benchmark_optimisations(dataset: PreparedDataset, batch: int, s: dict, peaks: dict, try_compile: bool) -> list[dict]:
    """facegan's DCGAN step as shipped, then with each speed choice undone or a candidate added: what each is worth."""
    variants = [("as shipped", "fp32", []), ("no channels_last", "fp32", [without_channels_last]),
                ("+ multi-tensor Adam", "fp32", [with_multi_tensor_adam])]
    if "bf16" in s["precisions"]:
        variants += [("as shipped", "bf16", []), ("no channels_last", "bf16", [without_channels_last]),
                     ("+ multi-tensor Adam", "bf16", [with_multi_tensor_adam])]
    if try_compile:
        variants += [("torch.compile", p, [compiled]) for p in s["precisions"]]
    rows = []
    for name, precision, changes in variants:
        state, loss = training_state(dataset, "dcgan", batch, precision)
        row = {"variant": name, "precision": precision, "batch": batch}
        try:
            for change in changes:
                change(state)
            row.update(measure_step(facegan_step(state, loss, dataset), batch, peaks[precision], s["warmup"], s["steps"]))
        except Exception as error:  # torch.compile needs a working C++ toolchain; record why it fell through
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        print(f"optimisation {name} {precision}: {row.get('img_per_s', float('nan')):.1f} img/s", file=sys.stderr,
              flush=True)
        rows.append(row)
    return rows


def benchmark_profile(dataset: PreparedDataset, batch: int, precision: str, top: int = 12) -> dict:
    """Where the DCGAN step's time goes: operators by self CPU time over 2 steps (torch.profiler)."""
    state, loss = training_state(dataset, "dcgan", batch, precision)
    step = facegan_step(state, loss, dataset)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        step()
        step()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return {"arch": "dcgan", "size": dataset.size, "batch": batch, "precision": precision, "steps": 2,
            "top_ops": [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1000,
                         "share": e.self_cpu_time_total / total} for e in events[:top]]}


# ---------------------------------------------------------------------------------------------------------------
# the plain reference: the DCGAN step of pytorch/examples (dcgan/main.py), eager fp32 with default settings


class PlainGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class PlainDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def plain_reference_step(dataset: PreparedDataset, batch: int):
    """One iteration of the pytorch/examples DCGAN loop, on batches from the same uint8 cache."""
    torch.manual_seed(0)
    netG, netD = PlainGenerator(), PlainDiscriminator()
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)

    def step():
        real = dataset.load_batch(np.sort(rng.choice(len(dataset), batch, replace=False)))
        netD.zero_grad()
        label = torch.full((batch,), 1.0)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        fake = netG(torch.randn(batch, 100, 1, 1))
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        optimizerG.step()

    return step


def benchmark_reference(dataset: PreparedDataset, batch: int, s: dict, peaks: dict) -> dict:
    step = plain_reference_step(dataset, batch)
    row = {"what": "pytorch/examples DCGAN, eager fp32, contiguous, default Adam", "size": dataset.size,
           "batch": batch, **measure_step(step, batch, peaks["fp32"], s["warmup"], s["steps"])}
    print(f"plain reference: {row['img_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    return row


def has_tensorflow(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"
    return subprocess.run([python, "-c", probe]).returncode == 0


def benchmark_keras(dataset: PreparedDataset, batch: int, s: dict, python: str) -> dict:
    if not has_tensorflow(python):
        return {"skipped": f"TensorFlow is not installed for {python} (pip install \"facegan[keras]\", or pass "
                           "--keras-python); the Keras seed model was not run"}
    command = [python, str(HERE / "keras_seed.py"), "--images", str(dataset.root / "images.npy"),
               "--batch", str(batch), "--warmup", str(s["warmup"]), "--steps", str(s["steps"]),
               "--threads", str(torch.get_num_threads())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"skipped": f"benchmarks/keras_seed.py failed: {done.stderr.strip().splitlines()[-1:]}"}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"keras seed: {row['img_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    return row


# ---------------------------------------------------------------------------------------------------------------
# data, generation, inception, memory


def benchmark_data(dataset: PreparedDataset, batch: int, n_batches: int) -> dict:
    state, _ = training_state(dataset, "dcgan", batch, "fp32")
    seconds = median_seconds(lambda: real_batch(state, dataset, CPU), warmup=2, steps=n_batches)
    return {"size": dataset.size, "batch": batch, "img_per_s": batch / seconds,
            "what": "real_batch(): shuffled indices, memmap gather, uint8 -> float [-1, 1], random mirror"}


def face_generator(size: int, precision: str, channels_last: bool = True) -> FaceGenerator:
    """A dcgan generator as `facegan.load` builds it (random weights: speed does not depend on them)."""
    model = get_architecture("dcgan").config(size)
    torch.manual_seed(0)
    network = build_generator(model).eval().requires_grad_(False)
    return FaceGenerator(to_channels_last(network) if channels_last else network, model, precision=precision)


def benchmark_generation(size: int, batches: list[int], peaks: dict, precisions: list[str]) -> list[dict]:
    """Each precision as shipped (channels-last), and fp32 with contiguous weights to show what the layout buys."""
    rows = []
    for precision, layout in [(p, "channels_last") for p in precisions] + [("fp32", "contiguous")]:
        generator = face_generator(size, precision, channels_last=layout == "channels_last")
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            generator.network(torch.randn(1, generator.z_dim))
        flops_per_image = counter.get_total_flops()
        for batch in batches:
            seeds = range(batch)
            steps = 20 if batch == 1 else 5
            seconds = median_seconds(lambda: generator.faces(seeds, batch_size=batch), warmup=2, steps=steps)
            achieved = flops_per_image * batch / seconds / 1e9
            rows.append({"size": size, "batch": batch, "precision": precision, "layout": layout,
                         "img_per_s": batch / seconds, "latency_ms": seconds * 1000 if batch == 1 else None,
                         "gflop_per_image": flops_per_image / 1e9, "fraction_of_peak": achieved / peaks[precision]})
            print(f"generate {precision} {layout} batch {batch}: {batch / seconds:.0f} img/s", file=sys.stderr, flush=True)
    return rows


def shipped_or_random_generator(precision: str) -> tuple[FaceGenerator, str]:
    """The shipped 64 px generator (what `facegan generate` runs; its faces set the PNG sizes), or a random
    dcgan when this install ships none."""
    import facegan

    try:
        generator = facegan.load(precision=precision)
        return generator, f"shipped {Path(generator.info['checkpoint']).name}"
    except FileNotFoundError:
        return face_generator(64, precision), "dcgan 64 px, random weights (no shipped model)"


def rate_of(n: int, work) -> dict:
    """faces/s of `work` making n faces, and the CPU time it took per face (all threads; other programs
    on the machine lower the first, hardly the second), with the 1-minute load average when it started."""
    load, cpu, started = os.getloadavg()[0], time.process_time(), time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return {"faces_per_s": n / seconds, "cpu_ms_per_face": (time.process_time() - cpu) / n * 1000, "load_1min": load}


def plain_loop(generator: FaceGenerator, n: int, batch: int, folder: Path) -> None:
    """What `facegan generate` did before write_faces: all faces first, then one `Image.save` after another."""
    for seed, image in zip(range(n), generator.generate(n, 0, 1.0, batch)):
        image.save(folder / f"seed{seed:04d}.png")


def fresh_folder(root: Path, name: str) -> Path:
    folder = root / name
    if folder.exists():
        for path in folder.iterdir():
            path.unlink()
    folder.mkdir(exist_ok=True)
    return folder


def bytes_per_file(folder: Path) -> float:
    sizes = [path.stat().st_size for path in folder.iterdir()]
    return sum(sizes) / len(sizes)


def one_thread_ms(work, count: int) -> float:
    cpu = time.thread_time()
    work()
    return (time.thread_time() - cpu) / count * 1000


def benchmark_files(n: int, batch: int, levels: list[int], repeats: int, precisions: list[str]) -> dict:
    """faces/s of the generator alone and of `write_faces` (PNG files at the default level), measured in turns
    `repeats` times so that both meet the same load, each row's figures the best of its repeats; then the plain
    loop write_faces replaced, and for every level in `levels` faces/s through write_faces, the file size, and
    one thread's CPU time per face to encode, and to encode and write."""
    result = {"what": "facegan generate's PNG files: generator.faces alone vs write_faces (generation, PNG "
                      "encoding and writing overlapped), faces/s",
              "n": n, "batch": batch, "compress_level": DEFAULT_COMPRESS_LEVEL, "workers": usable_cpus(),
              "cpu": environment()["cpu"], "cores": usable_cpus(), "threads": torch.get_num_threads(),
              "target_faces_per_s": FILES_TARGET, "load_average_start": list(os.getloadavg()), "rows": []}
    with tempfile.TemporaryDirectory(prefix="facegan-files-") as tmp:
        root = Path(tmp)
        for precision in precisions:
            generator, result["model"] = shipped_or_random_generator(precision)
            generator.faces(range(batch), batch_size=batch)  # warm-up
            turns = []
            for _ in range(repeats):
                alone = rate_of(n, lambda: generator.faces(range(n), batch_size=batch))
                folder = fresh_folder(root, "faces")
                files = rate_of(n, lambda: write_faces(generator, range(n), folder, batch_size=batch))
                turns.append({"generator": alone, "files": files,
                              "files_vs_generator": files["faces_per_s"] / alone["faces_per_s"]})
            best = {what: max(turns, key=lambda turn: turn[what]["faces_per_s"])[what] for what in ("generator", "files")}
            row = {"precision": precision, "size": generator.size,
                   "generator_faces_per_s": best["generator"]["faces_per_s"],
                   "files_faces_per_s": best["files"]["faces_per_s"],
                   "files_vs_generator": best["files"]["faces_per_s"] / best["generator"]["faces_per_s"],
                   "generator_cpu_ms_per_face": min(t["generator"]["cpu_ms_per_face"] for t in turns),
                   "files_cpu_ms_per_face": min(t["files"]["cpu_ms_per_face"] for t in turns),
                   "repeats": turns}
            print(f"files {precision}: generator alone {row['generator_faces_per_s']:.0f} faces/s, with PNG files "
                  f"{row['files_faces_per_s']:.0f} ({row['files_vs_generator']:.0%}); load "
                  f"{[round(t['generator']['load_1min'], 1) for t in turns]}", file=sys.stderr, flush=True)
            result["rows"].append(row)
        generator, _ = shipped_or_random_generator("fp32")
        folder = fresh_folder(root, "plain")
        result["plain_loop"] = {**rate_of(n, lambda: plain_loop(generator, n, batch, folder)),
                                "compress_level": 6, "bytes_per_face": bytes_per_file(folder)}
        sample = generator.faces(range(min(n, 256)), batch_size=batch)
        scratch = fresh_folder(root, "scratch")
        result["levels"] = []
        for level in levels:
            folder = fresh_folder(root, "faces")
            row = {"compress_level": level,
                   **rate_of(n, lambda: write_faces(generator, range(n), folder, batch_size=batch, compress_level=level)),
                   "bytes_per_face": bytes_per_file(folder),
                   "encode_ms_per_face": one_thread_ms(lambda: [png_bytes(face, level) for face in sample], len(sample)),
                   "write_ms_per_face": one_thread_ms(lambda: [write_png(scratch / f"{i}.png", face, level)
                                                               for i, face in enumerate(sample)], len(sample))}
            print(f"files level {level}: {row['faces_per_s']:.0f} faces/s, {row['bytes_per_face']:.0f} B/face, "
                  f"encoding {row['encode_ms_per_face']:.2f} ms/face, and writing {row['write_ms_per_face']:.2f}",
                  file=sys.stderr, flush=True)
            result["levels"].append(row)
    fp32 = find(result["rows"], precision="fp32")
    result["files_vs_plain_loop"] = fp32["files_faces_per_s"] / result["plain_loop"]["faces_per_s"]
    result["meets_target"] = fp32["files_faces_per_s"] >= FILES_TARGET
    result["load_average_end"] = list(os.getloadavg())
    return result


def benchmark_emulated_bf16(dataset: PreparedDataset, batch: int) -> dict:
    """Where bfloat16 is only emulated: one DCGAN step under bf16 autocast against fp32 (why `train` refuses bf16 there)."""
    rates = {}
    for precision in ("fp32", "bf16"):
        state, loss = training_state(dataset, "dcgan", batch, precision)
        rates[precision] = batch / median_seconds(facegan_step(state, loss, dataset), warmup=1, steps=1)
    return {"arch": "dcgan", "size": dataset.size, "batch": batch, "img_per_s": rates,
            "bf16_slowdown": rates["fp32"] / rates["bf16"]}


def benchmark_inception(dataset: PreparedDataset, n: int, path: str | None, peaks: dict) -> dict:
    from facegan.metrics.inception import InceptionFeatures, InceptionNotFoundError, find_inception

    try:
        network = InceptionFeatures(find_inception(path, download=False))
    except InceptionNotFoundError as error:
        return {"skipped": str(error)}
    images = np.asarray(dataset.images[:n])
    network(images[: network.batch_size])  # warm-up
    started = time.perf_counter()
    network(images)
    rate = n / (time.perf_counter() - started)
    return {"images": n, "batch_size": network.batch_size, "img_per_s": rate,
            "fraction_of_fp32_peak": rate * INCEPTION_GFLOP / peaks["fp32"], "gflop_per_image": INCEPTION_GFLOP}


def peak_rss_child(args: argparse.Namespace) -> None:
    """Run in a fresh process: a few training steps or one batch of faces, then print the peak RSS (MiB)."""
    if args.rss_of == "train":
        dataset = prepare(PrepareConfig(data=args.data, size=args.size), progress=False)
        state, loss = training_state(dataset, "dcgan", args.batch, "fp32")
        for _ in range(3):
            facegan_step(state, loss, dataset)()
    else:
        face_generator(args.size, "fp32").faces(range(args.batch), batch_size=args.batch)
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, because ru_maxrss survives fork + exec and would
    report the parent's peak."""
    with contextlib.suppress(OSError, StopIteration):
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark_memory(data: str, size: int, train_batch: int, generate_batch: int) -> dict:
    result = {}
    for what, batch in (("train", train_batch), ("generate", generate_batch)):
        command = [sys.executable, __file__, "--data", data, "--rss-of", what, "--size", str(size), "--batch", str(batch)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rss = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        result[what] = {"arch": "dcgan", "size": size, "batch": batch, "peak_rss_mib": rss}
    return result


# ---------------------------------------------------------------------------------------------------------------
# summary


def find(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def ratio(a: dict | None, b: dict | None, key: str = "img_per_s") -> float | None:
    return a[key] / b[key] if a and b and key in a and key in b else None


def rescale_fractions(result: dict, peaks: dict) -> None:
    """Recompute every fraction of peak against the final `peaks`."""
    result["peak_gflop_per_s"] = dict(peaks)
    for name in ("training", "optimisations", "generation"):
        rows = result.get(name)
        for row in rows if isinstance(rows, list) else []:
            if "fraction_of_peak" in row:
                achieved = row["gflop_per_s"] if "gflop_per_s" in row else row["img_per_s"] * row["gflop_per_image"]
                row["fraction_of_peak"] = achieved / peaks[row["precision"]]
    reference, inception = result.get("reference", {}), result.get("inception", {})
    if "gflop_per_s" in reference:
        reference["fraction_of_peak"] = reference["gflop_per_s"] / peaks["fp32"]
    if "img_per_s" in inception:
        inception["fraction_of_fp32_peak"] = inception["img_per_s"] * INCEPTION_GFLOP / peaks["fp32"]


def summarise(result: dict) -> dict:
    train, s = result["training"], result["settings"]
    reference = result["reference"] if "img_per_s" in result["reference"] else None
    size64 = [b for size, b in s["grid"] if size == 64] or [s["grid"][0][1]]
    batch = max(size64)
    best = "bf16" if "bf16" in s["precisions"] else "fp32"
    dcgan = {p: find(train, arch="dcgan", size=64, batch=batch, precision=p)
             for p in s["precisions"]}
    seed_size = result["keras"].get("size")
    seed = {p: find(train, arch="seed", size=seed_size, batch=result["keras"].get("batch"), precision=p)
            for p in s["precisions"]}
    fastest = max((r["img_per_s"] for r in train), default=None)
    generation = [r for r in result.get("generation", []) if r.get("layout", "channels_last") == "channels_last"]
    files = result.get("files", {})
    return {
        "dcgan_vs_plain_reference": {p: ratio(dcgan[p], reference) for p in s["precisions"]},
        "seed_vs_keras": {p: ratio(seed[p], result["keras"]) for p in s["precisions"]},
        "fraction_of_peak_batch_%d" % batch: {f"{r['arch']} {r['size']}px {r['precision']}": r["fraction_of_peak"]
                                                for r in train if r["batch"] == batch},
        "data_vs_fastest_training": result["data"]["img_per_s"] / fastest if fastest and "img_per_s" in result.get("data", {}) else None,
        "generation_img_per_s_largest_batch": {r["precision"]: r["img_per_s"] for r in generation
                                               if r["batch"] == max(s["generation_batches"])},
        "single_face_latency_ms": {r["precision"]: r["latency_ms"] for r in generation if r["batch"] == 1},
        "optimisation_speedups": optimisation_speedups(result.get("optimisations", [])),
        "files_faces_per_s": {r["precision"]: r["files_faces_per_s"] for r in files.get("rows", [])},
        "files_vs_generator": {r["precision"]: r["files_vs_generator"] for r in files.get("rows", [])},
        "best_precision": best,
    }


def optimisation_speedups(rows: list) -> dict:
    """How much faster the shipped step is than each variant with a speed choice undone (>1: the choice pays)."""
    if not isinstance(rows, list):
        return {}
    shipped = {r["precision"]: r for r in rows if r["variant"] == "as shipped"}
    return {f"{r['variant']} {r['precision']}": ratio(shipped.get(r["precision"]), r)
            for r in rows if r["variant"] != "as shipped"}


def fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    """The tables of benchmarks/README.md, from one run's result."""
    peaks, train = result["peak_gflop_per_s"], result["training"]
    lines = [f"Matmul peak: {', '.join(f'{p} {v:.0f} GFLOP/s' for p, v in peaks.items())}; load average "
             f"{result['environment']['load_average_start'][0]:.1f} at the start, "
             f"{result['environment']['load_average_end'][0]:.1f} at the end.", "",
             "| arch | size | batch | GFLOP/img | " + " | ".join(f"{p} img/s | {p} % of peak" for p in peaks) + " |",
             "| --- | --- | --- | --- | " + " | ".join("--- | ---" for _ in peaks) + " |"]
    for arch, size, batch in dict.fromkeys((r["arch"], r["size"], r["batch"]) for r in train):
        cells = []
        for p in peaks:
            r = find(train, arch=arch, size=size, batch=batch, precision=p)
            cells.append(f"{fmt(r and r['img_per_s'])} | {fmt(r and 100 * r['fraction_of_peak'], '.0f')}")
        gflop = find(train, arch=arch, size=size, batch=batch)["gflop_per_image"]
        lines.append(f"| {arch} | {size} | {batch} | {gflop:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "| reference (same run) | img/s |", "| --- | --- |"]
    for name in ("reference", "keras"):
        r = result.get(name, {})
        lines.append(f"| {r.get('what', r.get('framework', name))} ({r.get('size')} px, batch {r.get('batch')}) | "
                     f"{fmt(r.get('img_per_s')) if 'img_per_s' in r else r.get('skipped', '')} |")
    if isinstance(result.get("optimisations"), list):
        lines += ["", "| DCGAN-64 step | precision | img/s |", "| --- | --- | --- |"]
        lines += [f"| {r['variant']} | {r['precision']} | {fmt(r.get('img_per_s')) if 'img_per_s' in r else r['error']} |"
                  for r in result["optimisations"]]
    if result.get("generation"):
        lines += ["", "| generation 64 px | layout | batch | img/s | latency | % of peak |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['precision']} | {r.get('layout', 'channels_last')} | {r['batch']} | {r['img_per_s']:.0f} | "
                  f"{fmt(r['latency_ms'], '.1f') + ' ms' if r['latency_ms'] else ''} | {100 * r['fraction_of_peak']:.0f} |"
                  for r in result["generation"]]
    files = result.get("files", {})
    if files.get("rows"):
        lines += ["", f"PNG files ({files['n']} faces, batch {files['batch']}, level {files['compress_level']}, "
                      f"{files['workers']} writer threads, {files['model']}):", "",
                  "| precision | generator alone faces/s | with files faces/s | ratio | CPU ms/face alone, with files |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['precision']} | {r['generator_faces_per_s']:.0f} | {r['files_faces_per_s']:.0f} | "
                  f"{r['files_vs_generator']:.2f} | {r['generator_cpu_ms_per_face']:.2f}, {r['files_cpu_ms_per_face']:.2f} |"
                  for r in files["rows"]]
        lines += ["", f"Load average {files['load_average_start'][0]:.1f} at the start, {files['load_average_end'][0]:.1f} "
                      f"at the end; {files['cpu']}, {files['cores']} cores."]
        plain = files["plain_loop"]
        lines += ["", f"The plain loop (Pillow's level 6, one file after another): {plain['faces_per_s']:.0f} faces/s, "
                      f"{plain['bytes_per_face']:.0f} B/face.", "",
                  "| compress level | faces/s | B/face | CPU ms/face to encode, and write (1 thread) |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['compress_level']} | {r['faces_per_s']:.0f} | {r['bytes_per_face']:.0f} | "
                  f"{r['encode_ms_per_face']:.2f}, {r['write_ms_per_face']:.2f} |" for r in files["levels"]]
    data, inception, memory = result.get("data", {}), result.get("inception", {}), result.get("memory", {})
    lines += ["", f"Data pipeline: {fmt(data.get('img_per_s'), '.0f')} img/s. "
              f"Inception features: {fmt(inception.get('img_per_s'))} img/s "
              f"({fmt(inception.get('fraction_of_fp32_peak') and 100 * inception['fraction_of_fp32_peak'], '.0f')}% of fp32 peak). "
              + " ".join(f"Peak RSS {k}: {v['peak_rss_mib']:.0f} MiB." for k, v in memory.items() if isinstance(v, dict)
                         and "peak_rss_mib" in v)]
    emulated = result.get("emulated_bf16", {})
    if "bf16_slowdown" in emulated:
        lines += ["", f"No native bfloat16: a DCGAN-{emulated['size']} step (batch {emulated['batch']}) under bf16 autocast "
                      f"runs at {emulated['img_per_s']['bf16']:.1f} img/s, {emulated['bf16_slowdown']:.0f}x slower than fp32."]
    if isinstance(result.get("profile"), dict) and "top_ops" in result["profile"]:
        prof = result["profile"]
        lines += ["", f"Profile of the DCGAN step ({prof['size']} px, batch {prof['batch']}, {prof['precision']}), "
                      "operators by self CPU time:", "", "| operator | calls | share |", "| --- | --- | --- |"]
        lines += [f"| `{r['op']}` | {r['calls']} | {100 * r['share']:.0f}% |" for r in prof["top_ops"][:8]]
    return "\n".join(lines) + "\n\nSummary: " + json.dumps(result["summary"], indent=1)


def prepared(data: str, size: int) -> PreparedDataset:
    return prepare(PrepareConfig(data=data, size=size), progress=False)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.rss_of:
        return peak_rss_child(args)
    s = settings(args.quick)
    if args.grid:
        s["grid"] = [tuple(int(v) for v in pair.split("x")) for pair in args.grid.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    only = [name for name in args.only.split(",") if name]
    if set(only) - set(SECTIONS):
        raise SystemExit(f"--only: no section {sorted(set(only) - set(SECTIONS))}; the sections: {', '.join(SECTIONS)}")
    if only:
        skip |= set(SECTIONS) - set(only)
    out = Path(args.out or HERE / "results" / (f"throughput-{'-'.join(only)}.json" if only else "throughput.json"))
    archs = [a for a in args.archs.split(",") if a]
    if not native_bf16(CPU):
        s["precisions"] = ["fp32"]
    result: dict = {"environment": environment(), "settings": s, "section_seconds": {}}

    def run(name: str, measure, skipped=None):
        if name in skip:
            result[name] = skipped if skipped is not None else {"skipped": f"--skip {name}"}
            return
        started = time.perf_counter()
        try:
            result[name] = measure()
        except Exception as error:  # one failing section must not lose the others' figures
            result[name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"{name} failed: {result[name]['error']}", file=sys.stderr, flush=True)
        result["section_seconds"][name] = time.perf_counter() - started

    peaks = {p: matmul_peak(DTYPES[p], s["peak_n"]) for p in s["precisions"]}
    result["peak_gflop_per_s"] = peaks
    print(f"matmul peak GFLOP/s: {peaks}", file=sys.stderr, flush=True)
    sizes = sorted({size for size, _ in s["grid"]} | {64}) if NEEDS_DATA - skip else []  # --only files needs none
    datasets = {size: prepared(args.data, size) for size in sizes}
    main_batch = max(b for size, b in s["grid"] if size == s["grid"][0][0])
    seed_size = 32 if 32 in datasets or not datasets else min(datasets)

    run("training", lambda: benchmark_training(datasets, archs, s, peaks), skipped=[])
    run("reference", lambda: benchmark_reference(datasets[64], s["reference_batch"], s, peaks))
    run("optimisations", lambda: benchmark_optimisations(datasets[s["optimisation_size"]], s["reference_batch"], s,
                                                         peaks, args.compile))
    run("profile", lambda: benchmark_profile(datasets[s["optimisation_size"]], s["reference_batch"],
                                             s["precisions"][-1]))
    run("keras", lambda: benchmark_keras(datasets[seed_size], s["keras_batch"], s, args.keras_python))
    result["keras"].setdefault("size", seed_size)
    result["keras"].setdefault("batch", s["keras_batch"])
    run("data", lambda: benchmark_data(datasets[64], main_batch, s["data_batches"]))
    if not native_bf16(CPU):
        run("emulated_bf16", lambda: benchmark_emulated_bf16(datasets[64], min(32, s["reference_batch"])))
    run("generation", lambda: benchmark_generation(64, s["generation_batches"], peaks, s["precisions"]), skipped=[])
    run("files", lambda: benchmark_files(s["files_n"], s["files_batch"], s["files_levels"], s["files_repeats"],
                                         s["precisions"]))
    run("inception", lambda: benchmark_inception(datasets[64], s["inception_images"], args.inception, peaks))
    run("memory", lambda: benchmark_memory(args.data, 64, main_batch, max(s["generation_batches"])))
    result["environment"]["load_average_end"] = list(os.getloadavg())
    for precision in peaks:  # measured again at the end: the higher of the two, in case other work slowed the first
        peaks[precision] = max(peaks[precision], matmul_peak(DTYPES[precision], s["peak_n"]))
    rescale_fractions(result, peaks)
    result["summary"] = summarise(result)
    text = json.dumps(result, indent=1) + "\n"
    write_atomically(out, lambda handle: handle.write(text.encode()))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
