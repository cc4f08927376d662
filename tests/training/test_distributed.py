"""Training with DistributedDataParallel: 2 CPU processes (gloo) against 1 process, and the torchrun launcher."""
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import safe_open

import facegan
from facegan import checkpoint
from facegan.api import TrainCommand
from facegan.cli import build_parser, config_from_args
from facegan.data import open_prepared
from facegan.models import build_loss
from facegan.training import TrainConfig, distributed
from facegan.training.loop import real_batch, train_step
from facegan.training.reporting import read_log
from facegan.runs import checkpoint_path, list_checkpoints
from facegan.training.state import create_state, model_config

from ..conftest import wait_for_log_lines

WORLD = 2
CPU = torch.device("cpu")
# resnet has no BatchNorm; a global batch of 8 on 2 ranks keeps its minibatch-stddev groups (4) whole. fp32 and no
# adaptive augmentation (the default for so few photos) keep 2 processes comparable with 1 to float rounding.
DDP_TRAIN = dict(arch="resnet", size=32, width=8, batch=8, log_every=1, sample_every=1000, checkpoint_every=1,
                 keep=10, workers=1, progress=False, min_size=16, device="cpu", precision="fp32", augment="none")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_environment(rank: int, port: int) -> None:
    """The variables torchrun sets for each rank."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def lockstep_parameters(data: Path, arch: str, augment: str) -> dict[str, torch.Tensor]:
    """Three DDP training steps of `arch`; the parameters of G, D and G_ema afterwards."""
    config = TrainConfig.create(str(data), arch=arch, augment=augment,
                                **{k: v for k, v in DDP_TRAIN.items() if k not in ("arch", "augment")})
    dataset = open_prepared(data)
    model = model_config(config)
    state = create_state(config, model, dataset.split_indices(config.split), CPU)
    torch.manual_seed(config.seed + 1)
    loss = distributed.parallelise(state, build_loss(model, config.augment), CPU)
    for _ in range(3):
        train_step(state, loss, real_batch(state, dataset, CPU), CPU)
    return {f"{name}.{key}": p.detach().clone() for name in ("G", "D", "G_ema")
            for key, p in getattr(state, name).named_parameters()}


def collective_checks() -> dict:
    rank = dist.get_rank()
    try:
        distributed.check_batch(7)
        batch_error = None
    except ValueError as error:
        batch_error = str(error)
    return {
        "sigterm_on_one_rank": distributed.agree_on_stop("SIGTERM" if rank == 1 else None, CPU),
        "minutes_beats_steps": distributed.agree_on_stop("minutes" if rank == 0 else "steps", CPU),
        "no_stop": distributed.agree_on_stop(None, CPU),
        "mean": float(distributed.mean_over_ranks({"x": torch.tensor(float(rank))})["x"]),
        "part": distributed.local_part(torch.arange(8)).tolist(),
        "batch_error": batch_error,
    }


def worker(rank: int, data: Path, root: Path, ports: list[int]) -> None:
    """One rank: a run through facegan.train (out relative to a folder of its own), lockstep steps, a resume."""
    torch.set_num_threads(1)
    workdir = root / f"rank{rank}"
    workdir.mkdir()
    os.chdir(workdir)
    torchrun_environment(rank, ports[0])
    facegan.train(data, out="run", steps=3, **DDP_TRAIN)  # joins and leaves the process group itself

    torchrun_environment(rank, ports[1])
    dist.init_process_group("gloo")
    try:
        results = {"resnet": lockstep_parameters(data, "resnet", "color,translation"),
                   "dcgan": lockstep_parameters(data, "dcgan", "none"),
                   "checks": collective_checks()}
    finally:
        dist.destroy_process_group()
    torch.save(results, root / f"results-rank{rank}.pt")

    torchrun_environment(rank, ports[2])
    facegan.train(resume=root / "from-one-process", steps=5, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, face_folder) -> Path:
    return facegan.prepare(face_folder, size=32, min_size=16, workers=1, progress=False).root


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, data) -> Path:
    run_dir = tmp_path_factory.mktemp("one-process")
    facegan.train(data, out=str(run_dir), steps=5, **DDP_TRAIN)
    return run_dir


@pytest.fixture(scope="module")
def two_process_root(tmp_path_factory, data, one_process_run) -> Path:
    """Two spawned ranks; one of their runs resumes the 1-process run from its step-3 checkpoint."""
    root = tmp_path_factory.mktemp("two-processes")
    start = root / "from-one-process"
    shutil.copytree(one_process_run, start)
    for path in list_checkpoints(start):
        if path != checkpoint_path(start, 3):
            path.unlink()
    mp.spawn(worker, args=(data, root, [free_port() for _ in range(3)]), nprocs=WORLD, join=True)
    return root


def results(root: Path, rank: int) -> dict:
    return torch.load(root / f"results-rank{rank}.pt")


def assert_training_states_close(a: Path, b: Path) -> None:
    """Networks and Adam moments agree; the moments carry the gradients' scale, which Adam's steps do not."""
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys()
    compared = [key for key in ta if key.split(".")[0] in ("G", "G_ema", "D", "opt_g", "opt_d") and ta[key].is_floating_point()]
    assert len([key for key in compared if "exp_avg" in key]) > 30
    for key in compared:
        torch.testing.assert_close(ta[key], tb[key], rtol=1e-4, atol=1e-5, msg=key)


def test_parameters_are_identical_on_every_rank(two_process_root):
    rank0, rank1 = results(two_process_root, 0), results(two_process_root, 1)
    for arch in ("resnet", "dcgan"):
        assert rank0[arch].keys() == rank1[arch].keys()
        different = [key for key in rank0[arch] if not torch.equal(rank0[arch][key], rank1[arch][key])]
        assert different == [], arch


class StridedRanks(torch.nn.Module):
    """`module` applied to each rank's strided part of a batch on its own, outputs put back in batch order: what
    2 DDP ranks with per-rank BatchNorm (as on CPU) compute, in one process."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.module(x[rank::WORLD]) for rank in range(WORLD)]
        return torch.stack(parts, dim=1).flatten(0, 1)


def test_dcgan_on_two_processes_matches_one_process_with_batchnorm_per_rank(two_process_root, data):
    """BatchNorm is the part of dcgan that DDP changes: each CPU rank normalises its own half. One process that
    normalises the same halves separately, with the same global batch, must reach the same weights."""
    config = TrainConfig.create(str(data), arch="dcgan", **{k: v for k, v in DDP_TRAIN.items() if k != "arch"})
    dataset = open_prepared(data)
    state = create_state(config, model_config(config), dataset.split_indices(config.split), CPU)
    torch.manual_seed(config.seed + 1)
    loss = build_loss(model_config(config), config.augment)
    G, D = state.G, state.D
    state.G = state.G_train = StridedRanks(G)
    state.D = state.D_train = StridedRanks(D)
    for _ in range(3):
        train_step(state, loss, real_batch(state, dataset, CPU), CPU)
    expected = results(two_process_root, 0)["dcgan"]
    for name, network in (("G", G), ("D", D), ("G_ema", state.G_ema)):
        for key, parameter in network.named_parameters():
            torch.testing.assert_close(parameter.detach(), expected[f"{name}.{key}"], rtol=1e-4, atol=1e-5,
                                       msg=f"{name}.{key}")
    assert any("running_mean" in key for key, _ in G.named_buffers()), "dcgan's BatchNorm is what this tests"


def test_ranks_agree_on_stopping_and_share_batches(two_process_root):
    for rank in range(WORLD):
        checks = results(two_process_root, rank)["checks"]
        assert checks["sigterm_on_one_rank"] == "SIGTERM"
        assert checks["minutes_beats_steps"] == "minutes"
        assert checks["no_stop"] is None
        assert checks["mean"] == pytest.approx(0.5)
        assert checks["part"] == list(range(rank, 8, WORLD))
        assert "must divide among 2 processes" in checks["batch_error"]


def test_only_rank_zero_writes_files(two_process_root):
    assert list((two_process_root / "rank1").iterdir()) == []
    run = two_process_root / "rank0" / "run"
    assert [p.name for p in list_checkpoints(run)] == [f"ckpt-{s:08d}.safetensors" for s in (3, 2, 1)]
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3]
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step-00000001.png", "step-00000003.png"]


def test_two_processes_match_one_process(two_process_root, one_process_run):
    two = two_process_root / "rank0" / "run"
    assert_training_states_close(checkpoint_path(two, 3), checkpoint_path(one_process_run, 3))
    progress = [checkpoint.load(checkpoint_path(run, 3))["progress"] for run in (two, one_process_run)]
    assert progress[0]["images_seen"] == progress[1]["images_seen"] == 24
    assert progress[0]["order"] == progress[1]["order"]
    for a, b in zip(read_log(two / "log.jsonl"), read_log(one_process_run / "log.jsonl")[:3]):
        assert a.keys() == b.keys()
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key


def test_two_process_checkpoint_resumes_in_one_process(two_process_root, one_process_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_process_root / "rank0" / "run", run)
    result = facegan.train(resume=run, steps=5, progress=False)
    assert result.step == 5
    assert_training_states_close(result.checkpoint, checkpoint_path(one_process_run, 5))


def test_one_process_checkpoint_resumes_in_two_processes(two_process_root, one_process_run):
    assert_training_states_close(checkpoint_path(two_process_root / "from-one-process", 5), checkpoint_path(one_process_run, 5))


def test_train_options_build_the_config_each_process_is_handed():
    args = build_parser().parse_args(["train", "--data", "photos", "--size", "32", "--arch", "resnet", "--batch", "32",
                                      "--minutes", "1.5", "--no-mirror", "--augment", "color", "--nproc", "2"])
    command = config_from_args(TrainCommand, args)
    assert command.nproc == 2 and command.resume is None
    assert command.config == TrainConfig.create("photos", size=32, arch="resnet", batch=32, minutes=1.5, mirror=False,
                                                augment="color")


def test_nproc_stops_every_rank_after_one_checkpoint_on_sigterm(tmp_path, data):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "facegan", "train", "--nproc", "2", "--data", str(data), "--out", str(run_dir),
            "--arch", "resnet", "--size", "32", "--width", "8", "--batch", "8", "--log-every", "1", "--sample-every",
            "1000", "--checkpoint-every", "100000", "--steps", "100000", "--workers", "1", "--no-progress",
            "--min-size", "16", "--device", "cpu"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = run_dir / "log.jsonl"
    wait_for_log_lines(process, log, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stderr.count("stopped (SIGTERM)") == 1, stderr
    (last,) = list_checkpoints(run_dir)
    step = checkpoint.load(last)["progress"]["step"]
    assert [r["step"] for r in read_log(log)] == list(range(1, step + 1))
