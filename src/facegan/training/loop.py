"""One training loop for every architecture: the loss decides what each phase computes."""
from __future__ import annotations

import math
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in Jupyter ("IProgress not found")

from ..data import DataError, PreparedDataset, prepare
from ..data.images import to_uint8
from ..models import ModelConfig, build_loss, get_architecture, latents_from_seeds
from ..models.device import resolve_device
from ..models.precision import EmulatedBF16Error, autocast, emulation_reason, resolve_precision
from . import distributed, guard, reporting
from .ada import AdaController, augment_policy
from .config import RESUME_OPTIONS, TrainConfig
from .init import InitWeights, configure, init_notice, load_into, read_init, small_data_hint
from ..settings import shipped_model
from ..runs import RunFolder, RunFolderBusy, RunLock, checkpoint_path, holds_run, list_checkpoints, next_run_dir
from .state import TrainingState, create_state, load_latest, model_config

SAMPLE_SEEDS = range(64)
LOG_SECONDS = 30.0  # a log line at least this often, however slow the steps


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
    """The saved config of `run_dir`, with what a resume may change (RESUME_OPTIONS) taken from `overrides`.

    Any other option `overrides` gives (a value other than its default) is refused: resuming would ignore it.
    """
    if overrides is not None:
        refuse_fixed_options(run_dir, overrides)
    path, saved = load_latest(run_dir, resuming=True)
    print(f"resuming from {path}", file=sys.stderr)
    config = TrainConfig.from_dict(saved["config"])
    config.out = str(run_dir)
    if overrides is not None:
        budgets = {k: getattr(overrides, k) for k in ("steps", "kimg", "minutes")}
        if any(v is not None for v in budgets.values()):
            config = replace(config, **budgets)
        given = overrides.given_options()
        if "data" in given:
            config.prepare = replace(config.prepare, data=absolute_data(given["data"]))
        if "workers" in given:
            config.prepare = replace(config.prepare, workers=given["workers"])
        if "device" in given:
            config.device = given["device"]
        config.progress = overrides.progress
    return config, saved


def refuse_fixed_options(run_dir: Path, overrides: TrainConfig) -> None:
    fixed = {name: value for name, value in overrides.given_options().items() if name not in RESUME_OPTIONS}
    if fixed:
        allowed = ", ".join(f"--{name}" for name in RESUME_OPTIONS)
        raise ValueError(f"--resume continues {run_dir} with the options it was started with, so "
                         f"{', '.join(_as_flag(name, value) for name, value in fixed.items())} cannot change "
                         f"(a resume takes only {allowed}); to change them start a new run")


def _as_flag(name: str, value) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def absolute_data(data: str) -> str:
    """`--data` as the checkpoints record it: absolute, so a resume works from any working directory."""
    return str(Path(data).expanduser().absolute())


def check_data(saved: dict, dataset: PreparedDataset, allow_changed: bool) -> bool:
    """True if the prepared data differs from what the checkpoint trained on (allowed); ValueError if not allowed.

    Checkpoints written before the data was recorded have nothing to compare with, and resume as before.
    """
    recorded = saved.get("data")
    recorded = recorded if isinstance(recorded, dict) else {}
    if recorded.get("content_hash") in (None, dataset.content_hash):
        return False
    what = (f"the prepared data changed since this run's checkpoint: {dataset.root} holds {len(dataset)} images now, "
            f"{recorded.get('images', 'other')} when it was written")
    if not allow_changed:
        raise ValueError(f"{what}; a resume on it would no longer continue the run exactly: pass --allow-changed-data "
                         "to go on with the data as it is now, or give the original data with --data")
    if distributed.is_main():
        print(f"warning: {what}; continuing on it (--allow-changed-data)", file=sys.stderr)
    return True


def claim_run_folder(config: TrainConfig, overwrite: bool) -> tuple[TrainConfig, RunFolder]:
    """Make and lock the folder of a new run: `--out` (new, empty, or holding no checkpoint), or without it
    the next numbered folder under runs/. A folder holding a run is refused, or with `overwrite` moved aside."""
    if not config.out:
        for _ in range(1000):
            path = next_run_dir(run_label(config))
            try:
                return replace(config, out=str(path)), _claim(path, exclusive=True)
            except FileExistsError:  # another run took this number first
                continue
        raise RuntimeError(f"cannot find a free numbered run folder in {path.parent}")
    path = Path(config.out).expanduser()
    folder = _claim(path)
    try:
        if holds_run(path):
            if not overwrite:
                raise ValueError(holds_run_message(path))
            aside = folder.set_aside()
            print(f"moved the earlier run in {path} to {aside}", file=sys.stderr)
    except BaseException:
        folder.release()
        raise
    return replace(config, out=str(path)), folder


def run_label(config: TrainConfig) -> str:
    """What a numbered default run folder is named after: `dcgan-64px` in runs/00003-dcgan-64px."""
    return f"{config.arch}-{config.size}px"


def holds_run_message(path: Path) -> str:
    found = list_checkpoints(path)
    newest = f" (newest checkpoint {found[0].name})" if found else ""
    return (f"{path} already holds a run{newest}; continue it with `facegan train --resume {path}`, start a new run "
            "with a fresh --out (or none, for a new numbered folder in runs/), or pass --overwrite to move the old "
            "run aside first")


def _check_out_path(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a run folder; choose a new folder")


def _claim(path: Path, exclusive: bool = False) -> RunFolder:
    _check_out_path(path)
    try:
        return RunFolder.claim(path, exclusive)
    except RunFolderBusy as busy:
        raise RuntimeError(f"{busy}; wait for it to end or stop it, or choose another --out") from None
    except FileExistsError:
        if exclusive:
            raise
        raise ValueError(f"cannot make run folder {path}: a file is in the way") from None
    except OSError as error:
        raise ValueError(f"cannot make run folder {path} ({error.strerror or error})") from None


def open_resumed(run_dir: Path, overrides: TrainConfig | None) -> tuple[TrainConfig, dict, RunFolder | None]:
    """Lock `run_dir` (before anything in it is touched), then read its config and newest checkpoint."""
    folder = None
    if run_dir.is_dir():
        try:
            folder = RunFolder.claim(run_dir)
        except RunFolderBusy as busy:
            raise RuntimeError(f"{busy}; `--resume {run_dir}` can continue it once that process has stopped") from None
    try:
        config, saved = resume_config(run_dir, overrides)
    except BaseException:
        if folder is not None:
            folder.release()
        raise
    return config, saved, folder


def check_before_launch(config: TrainConfig | None, resume: str | Path | None, overwrite: bool) -> TrainConfig | None:
    """What `train` refuses at once, checked by the process that starts `--nproc N` processes, so a refusal is one
    line before any process starts; a new run's default folder is chosen here, so every process gets the same one."""
    if resume is not None:
        run_dir = Path(resume)
        if overwrite:
            raise ValueError(OVERWRITE_ON_RESUME)
        if config is not None:
            refuse_fixed_options(run_dir, config)
        if run_dir.is_dir():
            _probe_lock(run_dir, f"`--resume {run_dir}` can continue it once that process has stopped")
        return config
    config.validate()
    if config.init:
        config, _ = with_init(config)
    if not config.out:
        return replace(config, out=str(next_run_dir(run_label(config))))
    path = Path(config.out).expanduser()
    _check_out_path(path)
    if path.is_dir():
        _probe_lock(path, "wait for it to end or stop it, or choose another --out")
        if holds_run(path) and not overwrite:
            raise ValueError(holds_run_message(path))
    return config


def with_init(config: TrainConfig) -> tuple[TrainConfig, InitWeights]:
    """`config` set up from the model `--init` names (its architecture, and the source recorded as a file path,
    or as the shipped model's name), and that model's weights."""
    init = read_init(config.init)
    recorded = config.init if shipped_model(config.init) == init.source else str(init.source.absolute())
    return replace(configure(config, init), init=recorded), init


def _probe_lock(run_dir: Path, advice: str) -> None:
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RunFolderBusy as busy:
        raise RuntimeError(f"{busy}; {advice}") from None
    lock.release()


OVERWRITE_ON_RESUME = "--overwrite is for a new run; --resume continues the run in its own folder"


def _start_on_main(function, *args):
    """`function(*args)`, which returns (*shared, folder), on rank 0: every rank gets `shared` (or rank 0's error,
    raised again on every rank, so none waits for the others), rank 0 alone the run folder it claimed."""
    if not distributed.is_distributed():
        return function(*args)
    outcome, folder = None, None
    if distributed.is_main():
        try:
            *shared, folder = function(*args)
            outcome = (None, shared)
        except Exception as error:
            try:
                pickle.dumps(error)
            except Exception:
                error = RuntimeError(str(error))
            outcome = (error, None)
    error, shared = distributed.share_from_main(outcome)
    if error is not None:
        raise error
    return (*shared, folder)


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
    if state.ada is not None:
        state.ada.observe(stats_d, state.step, state.batch)
    return {**stats_d, **stats_g}


@torch.inference_mode()
def sample_faces(G: torch.nn.Module, model: ModelConfig, device: torch.device, seeds=SAMPLE_SEEDS) -> np.ndarray:
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
def train(config: TrainConfig | None = None, resume: str | Path | None = None, overwrite: bool = False,
          allow_changed_data: bool = False) -> TrainResult:
    """Train a GAN from `config` in a new run folder, or continue the run in `resume` (budgets from `config` if given).

    A new run refuses a folder that holds another run (`overwrite` moves that run aside first); a resume
    refuses data that changed since its checkpoint unless `allow_changed_data`. Rank 0 locks the run folder.
    """
    folder = None  # rank 0's claim on the run folder
    try:
        saved = init = None
        if resume is not None:
            if overwrite:
                raise ValueError(OVERWRITE_ON_RESUME)
            config, saved, folder = _start_on_main(open_resumed, Path(resume), config)
        else:
            config.validate()
            config = replace(config, prepare=replace(config.prepare, data=absolute_data(config.data)))
            if config.init:
                config, init = with_init(config)
        config.validate()
        device = distributed.rank_device(resolve_device(config.device))
        config = runnable_precision(config, device, resuming=saved is not None)
        if saved is None:
            config, folder = _start_on_main(claim_run_folder, config, overwrite)
        elif not Path(config.data).expanduser().exists():
            raise DataError(f"this run's data {config.data} is not found (working directory {Path.cwd()}); "
                            "say where it is now with --data")
        run_dir = Path(config.out)

        with distributed.main_first():
            dataset = load_dataset(config)
        data_changed = saved is not None and check_data(saved, dataset, allow_changed_data)
        model = model_config(config)
        indices = dataset.split_indices(config.split)
        augment = resolved_augment(config, len(indices), resuming=saved is not None)
        augment_note = describe_augment(config, augment) if saved is None else None
        config = replace(config, augment=augment)
        state = create_state(config, model, indices, device)
        state.data = {"content_hash": dataset.content_hash, "images": len(dataset)}
        loss = build_loss(model, config.augment, config.loss, config.r1_gamma)
        if loss.adaptive is not None:
            state.ada = AdaController(loss.adaptive, config.ada_target, config.ada_kimg)
        if saved is not None:
            state.load_checkpoint(saved, data_changed)
        else:
            if init is not None:
                load_into(state, init)
            if distributed.is_main():
                for line in (init_notice(init) if init else None, small_data_hint(len(indices), config), augment_note):
                    if line:
                        print(line, file=sys.stderr)
            torch.manual_seed(config.seed + 1)
        loss = distributed.parallelise(state, loss, device)
        state.G.train()
        state.D.train()
        return run_loop(state, loss, dataset, run_dir, device, resumed=saved is not None, folder=folder)
    except BaseException:
        if folder is not None:
            folder.discard_if_empty()  # a run refused before it wrote anything leaves no folder behind
        raise
    finally:
        if folder is not None:
            folder.release()


def resolved_augment(config: TrainConfig, images: int, resuming: bool) -> str:
    """The augmentation a run uses, which its checkpoints record so a resume keeps it: `auto` resolved for a new
    run; in a checkpoint written before `auto` could mean ada it meant the architecture's default."""
    if config.augment != "auto":
        return config.augment
    return get_architecture(config.arch).augment if resuming else augment_policy(config.augment, config.arch, images)


def describe_augment(config: TrainConfig, resolved: str) -> str | None:
    """One line saying what `--augment auto` chose (`resolved`); None when the user chose."""
    if config.augment != "auto":
        return None
    if resolved == "ada":
        return "augment: ada (adaptive augmentation, the default for fewer than 5,000 photos)"
    return f"augment: {resolved} (the {config.arch} default)"


def run_loop(state, loss, dataset, run_dir: Path, device, resumed: bool, folder: RunFolder | None = None) -> TrainResult:
    config = state.config
    main = distributed.is_main()  # only rank 0 writes files
    log = board = None
    if main:
        with guard.writing(f"the loss log {run_dir / reporting.LOG_NAME}", folder, state.step):
            log = reporting.LossLog(run_dir, resume_step=state.step if resumed else None)
        with guard.writing(f"TensorBoard events in {run_dir / reporting.TENSORBOARD_DIR}", folder, state.step):
            board = reporting.TensorBoard(run_dir, purge_step=state.step + 1 if resumed else None)
    started = time.monotonic()
    last_log_time, last_log_images = started, state.images_seen
    last_sample_time = started
    bar = progress_bar(config, state, enabled=config.progress and main)
    stopped_by = None
    try:
        with StopFlag() as stop:
            while True:
                stopped_by = distributed.agree_on_stop(stop.signal or budget_reason(config, state, started), device)
                if stopped_by:
                    break
                step_started = time.monotonic()
                stats = train_step(state, loss, real_batch(state, dataset, device), device)
                guard.check_losses(stats, state.step, run_dir)
                state.train_seconds += time.monotonic() - step_started
                now = time.monotonic()
                bar.advance(now - started)
                on_schedule = state.step % config.log_every == 0
                if on_schedule:  # every rank takes part; logs between these (time-based) show rank 0's own values
                    stats = distributed.mean_over_ranks(stats)
                if main and (on_schedule or state.step == 1 or now - last_log_time >= LOG_SECONDS):
                    rate = (state.images_seen - last_log_images) / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_images = now, state.images_seen
                    record = log_record(state, stats, rate)
                    with guard.writing(f"the loss log {log.path}", folder, state.step):
                        log.append(record)
                    with guard.writing(f"TensorBoard events in {run_dir / reporting.TENSORBOARD_DIR}", folder, state.step):
                        board.scalars(state.step, {f"loss/{k}": v for k, v in record.items() if k.startswith("loss")})
                        board.scalars(state.step, {"speed/img_per_s": rate})
                        if "augment_p" in record:
                            board.scalars(state.step, {"augment/p": record["augment_p"], "augment/r_t": record["r_t"]})
                    bar.show(record)
                if main and (state.step % config.sample_every == 0 or state.step == 1
                             or now - last_sample_time >= config.sample_minutes * 60):
                    last_sample_time = now
                    write_samples(state, run_dir, board, device, folder)
                if main and state.step % config.checkpoint_every == 0:
                    guard.save(state, run_dir, config.keep, folder)
        bar.close()
        path = finish_run(state, run_dir, board, device, stopped_by, folder) if main else checkpoint_path(run_dir, state.step)
    except BaseException:
        bar.close()
        if board is not None:
            board.close_quietly()  # stops TensorBoard's thread; the error being raised is the one to report
        raise
    distributed.barrier()
    return TrainResult(run_dir, path, state.step, state.images_seen, state.train_seconds, stopped_by)


def log_record(state: TrainingState, stats: dict, rate: float) -> dict:
    record = {"step": state.step, "kimg": state.images_seen / 1000, "img_per_s": rate,
              **{k: float(v) for k, v in stats.items()}}
    if state.ada is not None:
        record["augment_p"] = state.ada.p
    return record


class ProgressBar:
    """tqdm over the run's budget: steps for --steps and --kimg (with an ETA), seconds for a --minutes budget."""

    def __init__(self, bar: tqdm, in_seconds: bool):
        self.bar, self.in_seconds = bar, in_seconds

    def advance(self, elapsed: float) -> None:
        self.bar.update(round(elapsed) - self.bar.n if self.in_seconds else 1)

    def show(self, record: dict) -> None:
        shown = {"img_s": f"{record['img_per_s']:.0f}", "D": f"{record['loss_d']:.3f}", "G": f"{record['loss_g']:.3f}"}
        if self.in_seconds:
            shown["step"] = record["step"]
        if "augment_p" in record:
            shown["p"] = f"{record['augment_p']:.2f}"
        self.bar.set_postfix(shown)

    def close(self) -> None:
        self.bar.close()


def progress_bar(config: TrainConfig, state: TrainingState, enabled: bool) -> ProgressBar:
    totals = [config.steps] if config.steps is not None else []
    kimg = config.budget_kimg()
    if kimg is not None:
        totals.append(math.ceil(kimg * 1000 / state.batch))
    common = {"disable": not enabled, "dynamic_ncols": True}
    if totals:
        return ProgressBar(tqdm(total=min(totals), initial=state.step, unit="step", **common), in_seconds=False)
    return ProgressBar(tqdm(total=round(config.minutes * 60), unit="s", **common), in_seconds=True)


def finish_run(state: TrainingState, run_dir: Path, board, device, stopped_by: str, folder: RunFolder | None = None) -> Path:
    """The last samples and checkpoint, the loss plot and the progress GIF; returns the checkpoint."""
    if not reporting.sample_path(run_dir, state.step).exists():
        write_samples(state, run_dir, board, device, folder)
    path = guard.save(state, run_dir, state.config.keep, folder)
    with guard.writing(f"TensorBoard events in {run_dir / reporting.TENSORBOARD_DIR}", folder, state.step):
        board.close()
    with guard.writing(f"the loss plot {run_dir / reporting.PLOT_NAME}", folder, state.step):
        reporting.plot_losses(run_dir)
    with guard.writing(f"the progress GIF {run_dir / reporting.GIF_NAME}", folder, state.step):
        reporting.make_progress_gif(run_dir)
    print(f"stopped ({stopped_by}) at step {state.step}, {state.images_seen / 1000:.1f} kimg; checkpoint {path}",
          file=sys.stderr)
    return path


def write_samples(state: TrainingState, run_dir: Path, board, device, folder: RunFolder | None = None) -> None:
    faces = sample_faces(state.G_ema, state.model, device)
    with guard.writing(f"sample grid {reporting.sample_path(run_dir, state.step)}", folder, state.step):
        _, grid = reporting.save_sample_grid(run_dir, state.step, faces)
    with guard.writing(f"TensorBoard events in {run_dir / reporting.TENSORBOARD_DIR}", folder, state.step):
        board.image(state.step, "samples", grid)
