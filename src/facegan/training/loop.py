"""One training loop for every architecture: the loss decides what each phase computes."""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in Jupyter ("IProgress not found")

from ..data import PreparedDataset, prepare
from ..data.images import to_uint8
from ..models import ModelConfig, build_loss, latents_from_seeds
from ..models.device import resolve_device
from ..models.precision import EmulatedBF16Error, autocast, emulation_reason, resolve_precision
from . import distributed, guard, reporting
from .config import TrainConfig
from ..runs import checkpoint_path
from .state import TrainingState, create_state, load_latest, model_config

SAMPLE_SEEDS = range(64)


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    step: int
    images_seen: int
    train_seconds: float
    stopped_by: str


def load_dataset(config: TrainConfig) -> PreparedDataset:
    """A prepared cache as is, or raw photos prepared on the fly (reusing a matching cache)."""
    dataset = prepare(config.prepare, progress=config.progress)
    if dataset.size != config.size:
        raise ValueError(f"{config.data} is prepared at {dataset.size} px but --size is {config.size}")
    return dataset


def resume_config(run_dir: Path, overrides: TrainConfig | None) -> tuple[TrainConfig, dict]:
    """The saved config of `run_dir`, with budgets (and progress display) taken from `overrides` when given."""
    path, saved = load_latest(run_dir, resuming=True)
    print(f"resuming from {path}", file=sys.stderr)
    config = TrainConfig.from_dict(saved["config"])
    config.out = str(run_dir)
    if overrides is not None:
        budgets = {k: getattr(overrides, k) for k in ("steps", "kimg", "minutes")}
        if any(v is not None for v in budgets.values()):
            config = replace(config, **budgets)
        config.progress = overrides.progress
    return config, saved


def runnable_precision(config: TrainConfig, device: torch.device, resuming: bool) -> TrainConfig:
    """`config` with its precision resolved to fp32 or bf16 for `device`, which the checkpoints then record.

    bf16 where the device would only emulate it (many times slower than fp32) refuses a new run; a resumed
    bf16 run goes on in fp32.
    """
    try:
        return replace(config, precision=resolve_precision(config.precision, device))
    except EmulatedBF16Error:
        if not resuming:
            raise
    if distributed.is_main():
        print(f"warning: this run trained with --precision bf16, but {emulation_reason(device)}; "
              "continuing in fp32", file=sys.stderr)
    return replace(config, precision="fp32")


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def ema_beta(config: TrainConfig, batch: int, images_seen: int) -> float:
    half_life = config.ema_kimg * 1000
    if config.ema_rampup > 0:
        half_life = min(half_life, images_seen * config.ema_rampup)
    return 0.5 ** (batch / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(state: TrainingState) -> None:
    beta = ema_beta(state.config, state.batch, state.images_seen)
    ema_params = list(state.G_ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in state.G.parameters()], 1.0 - beta)
    for b_ema, b in zip(state.G_ema.buffers(), state.G.buffers()):
        b_ema.copy_(b)


def real_batch(state: TrainingState, dataset: PreparedDataset, device: torch.device) -> torch.Tensor:
    real = dataset.load_batch(distributed.local_part(state.order.next_batch())).to(device, non_blocking=True)
    if state.config.mirror:
        flip = distributed.local_part(torch.rand(state.batch, device=device)) < 0.5
        real = torch.where(flip.view(-1, 1, 1, 1), real.flip(3), real)
    return real


def train_step(state: TrainingState, loss, real: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """One discriminator update then one generator update on the same fakes, as in DCGAN."""
    z = distributed.local_part(torch.randn(state.batch, state.model.z_dim, device=device))
    with autocast(device, state.config.precision):
        fake = state.G_train(z)
        set_requires_grad(state.D, True)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d, stats_d = loss.discriminator_loss(state.D_train, real, fake.detach(), state.step)
    loss_d.backward()
    state.opt_d.step()

    set_requires_grad(state.D, False)
    state.opt_g.zero_grad(set_to_none=True)
    with autocast(device, state.config.precision):  # D is frozen here: the unwrapped D, no gradients of its own to sync
        loss_g, stats_g = loss.generator_loss(state.D, fake, real, state.step)
    loss_g.backward()
    state.opt_g.step()

    state.step += 1
    state.images_seen += state.batch
    update_ema(state)
    return {**stats_d, **stats_g}


@torch.inference_mode()
def sample_faces(G: torch.nn.Module, model: ModelConfig, device: torch.device, seeds=SAMPLE_SEEDS) -> "np.ndarray":
    z = latents_from_seeds(seeds, model.z_dim).to(device)
    return to_uint8(G(z).float().cpu())


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop can save a checkpoint before it stops."""

    def __init__(self):
        self.signal: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def budget_reason(config: TrainConfig, state: TrainingState, started: float) -> str | None:
    if config.steps is not None and state.step >= config.steps:
        return "steps"
    kimg = config.budget_kimg()
    if kimg is not None and state.images_seen >= kimg * 1000:
        return "kimg"
    if config.minutes is not None and time.monotonic() - started >= config.minutes * 60:
        return "minutes"
    return None


@distributed.in_process_group
def train(config: TrainConfig | None = None, resume: str | Path | None = None) -> TrainResult:
    """Train a GAN from `config`, or continue the run in `resume` (budgets from `config` if given)."""
    saved = None
    if resume is not None:
        config, saved = distributed.from_main(resume_config, Path(resume), config)
    config.validate()
    device = distributed.rank_device(resolve_device(config.device))
    config = runnable_precision(config, device, resuming=saved is not None)
    run_dir = Path(config.out)
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)

    with distributed.main_first():
        dataset = load_dataset(config)
    model = model_config(config)
    state = create_state(config, model, dataset.split_indices(config.split), device)
    if saved is not None:
        state.load_checkpoint(saved)
    else:
        torch.manual_seed(config.seed + 1)
    loss = distributed.parallelise(state, build_loss(model, config.augment), device)
    state.G.train()
    state.D.train()
    return run_loop(state, loss, dataset, run_dir, device, resumed=saved is not None)


def run_loop(state, loss, dataset, run_dir: Path, device, resumed: bool) -> TrainResult:
    config = state.config
    main = distributed.is_main()  # only rank 0 writes files
    log = reporting.LossLog(run_dir, resume_step=state.step if resumed else None) if main else None
    board = reporting.TensorBoard(run_dir, purge_step=state.step + 1 if resumed else None) if main else None
    started = time.monotonic()
    last_log_time, last_log_images = started, state.images_seen
    total = config.steps
    bar = tqdm(total=total, initial=state.step, disable=not (config.progress and main), unit="step", dynamic_ncols=True)
    stopped_by = None
    with StopFlag() as stop:
        while True:
            stopped_by = distributed.agree_on_stop(stop.signal or budget_reason(config, state, started), device)
            if stopped_by:
                break
            step_started = time.monotonic()
            stats = train_step(state, loss, real_batch(state, dataset, device), device)
            guard.check_losses(stats, state.step, run_dir)
            state.train_seconds += time.monotonic() - step_started
            bar.update(1)
            if state.step % config.log_every == 0:
                stats = distributed.mean_over_ranks(stats)
            if main and state.step % config.log_every == 0:
                now = time.monotonic()
                rate = (state.images_seen - last_log_images) / max(now - last_log_time, 1e-9)
                last_log_time, last_log_images = now, state.images_seen
                record = {"step": state.step, "kimg": state.images_seen / 1000, "img_per_s": rate,
                          **{k: float(v) for k, v in stats.items()}}
                log.append(record)
                board.scalars(state.step, {f"loss/{k}": v for k, v in record.items() if k.startswith("loss")})
                board.scalars(state.step, {"speed/img_per_s": rate})
                bar.set_postfix(img_s=f"{rate:.0f}", D=f"{record['loss_d']:.3f}", G=f"{record['loss_g']:.3f}")
            if main and state.step % config.sample_every == 0:
                write_samples(state, run_dir, board, device)
            if main and state.step % config.checkpoint_every == 0:
                guard.save(state, run_dir, config.keep)
    bar.close()
    path = finish_run(state, run_dir, board, device, stopped_by) if main else checkpoint_path(run_dir, state.step)
    distributed.barrier()
    return TrainResult(run_dir, path, state.step, state.images_seen, state.train_seconds, stopped_by)


def finish_run(state: TrainingState, run_dir: Path, board, device, stopped_by: str) -> Path:
    """The last samples and checkpoint, the loss plot and the progress GIF; returns the checkpoint."""
    if not reporting.sample_path(run_dir, state.step).exists():
        write_samples(state, run_dir, board, device)
    path = guard.save(state, run_dir, state.config.keep)
    board.close()
    reporting.plot_losses(run_dir)
    reporting.make_progress_gif(run_dir)
    print(f"stopped ({stopped_by}) at step {state.step}, {state.images_seen / 1000:.1f} kimg; checkpoint {path}",
          file=sys.stderr)
    return path


def write_samples(state: TrainingState, run_dir: Path, board, device) -> None:
    faces = sample_faces(state.G_ema, state.model, device)
    _, grid = reporting.save_sample_grid(run_dir, state.step, faces)
    board.image(state.step, "samples", grid)
