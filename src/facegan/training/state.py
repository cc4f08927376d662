"""Everything a run needs to continue exactly: networks, optimisers, counters, data order, RNG."""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint
from ..checkpoint import CheckpointError
from ..data import BatchOrder, DataError
from ..models import ModelConfig, build_discriminator, build_generator, get_architecture
from ..models.layout import to_channels_last
from ..runs import CHECKPOINT_DIR, checkpoint_path, list_checkpoints, unfinished_checkpoints
from .ada import AdaController
from .config import TrainConfig
from .init import recorded_stages


@dataclass
class TrainingState:
    config: TrainConfig
    model: ModelConfig
    G: nn.Module
    G_ema: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    order: BatchOrder
    step: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    # The prepared data trained on ({"content_hash", "images"}); checkpoints record it so a resume can tell it changed.
    data: dict | None = None
    # What the training step runs: G and D themselves, or under torchrun their DistributedDataParallel wrappers.
    G_train: nn.Module | None = None
    D_train: nn.Module | None = None
    # Adaptive augmentation's controller when the run uses `--augment ada`: its probability is part of the state.
    ada: AdaController | None = None
    # A fine-tuned run's history: the training stages its `--init` source came from (see init.training_stages).
    earlier: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.G_train = self.G if self.G_train is None else self.G_train
        self.D_train = self.D if self.D_train is None else self.D_train

    @property
    def batch(self) -> int:
        """The global batch: images per step over all processes."""
        return self.order.batch_size

    def to_checkpoint(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "model": self.model.__dict__,
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "progress": {"step": self.step, "images_seen": self.images_seen, "train_seconds": self.train_seconds,
                         "order": self.order.state_dict(), **({"earlier": self.earlier} if self.earlier else {})},
            "rng": rng_state(),
            **({"data": self.data} if self.data is not None else {}),
            **({"augment": self.ada.state_dict()} if self.ada is not None else {}),
        }

    def load_checkpoint(self, saved: dict, data_changed: bool = False) -> None:
        """Continue from `saved`; with `data_changed` (a resume the user allowed on other photos), a data position
        past the end of the new photos starts the next epoch."""
        for name in ("G", "G_ema", "D"):
            getattr(self, name).load_state_dict(saved[name])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        progress = saved["progress"]
        self.step, self.images_seen = progress["step"], progress["images_seen"]
        self.train_seconds = progress.get("train_seconds", 0.0)
        self.earlier = recorded_stages(progress.get("earlier"))
        order = progress["order"]
        if data_changed and isinstance(order.get("position"), int):
            order = {**order, "position": min(order["position"], len(self.order.indices))}
        self.order.load_state_dict(order)
        if self.ada is not None and "augment" in saved:  # a checkpoint from before ada was added starts at p = 0
            try:
                self.ada.load_state_dict(saved["augment"])
            except ValueError as error:
                raise CheckpointError(f"unusable checkpoint ({error})") from None
        set_rng_state(saved["rng"])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_config(config: TrainConfig) -> ModelConfig:
    return get_architecture(config.arch).config(config.size, config.z_dim, config.width)


def create_state(config: TrainConfig, model: ModelConfig, indices, device: torch.device) -> TrainingState:
    """Fresh networks and optimisers; weights depend only on `config.seed`."""
    arch = get_architecture(model.arch)
    torch.manual_seed(config.seed)
    G = to_channels_last(build_generator(model).to(device))  # speed choices: see benchmarks/README.md
    D = to_channels_last(build_discriminator(model).to(device))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    settings = arch.optimizer
    betas = settings.betas if config.beta1 is None else (config.beta1, settings.betas[1])
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g or settings.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d or settings.lr_d, betas=betas)
    order = BatchOrder(indices, config.batch or default_batch(arch.batch_size, len(indices)), config.seed)
    return TrainingState(config, model, G, G_ema, D, opt_g, opt_d, order)


def default_batch(architecture_batch: int, images: int) -> int:
    """The architecture's batch size, or for fewer photos than that the largest power of two they fill."""
    if images >= architecture_batch or images < 1:
        return architecture_batch
    return 1 << (images.bit_length() - 1)


def save_checkpoint(state: TrainingState, run_dir: Path, keep: int) -> Path:
    path = checkpoint.save(checkpoint_path(run_dir, state.step), state.to_checkpoint(), kind="training")
    for old in [p for p in list_checkpoints(run_dir) if p != path][keep - 1:]:  # never the one just written
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path, resuming: bool = False) -> tuple[Path, dict]:
    """The newest checkpoint of `run_dir` that reads back whole and fits its model; others are reported and skipped.

    With `resuming`, skipped files are renamed to `*.unusable` (kept for inspection, but never again
    taken for the newest checkpoint or counted by `--keep`) and temporary files left by a killed
    write are removed.
    """
    if resuming:
        for leftover in unfinished_checkpoints(run_dir):
            leftover.unlink(missing_ok=True)
    problems = []
    for path in list_checkpoints(run_dir):
        try:
            saved = checkpoint.load(path)
            check_fits(path, saved)
            return path, saved
        except CheckpointError as error:
            problems.append(str(error))
            print(f"skipping checkpoint: {error}", file=sys.stderr)
            if resuming:
                _set_aside(path)
    detail = "; ".join(problems) if problems else "none found"
    raise CheckpointError(f"no usable checkpoint in {run_dir / CHECKPOINT_DIR}: {detail}")


TRAINING_SECTIONS = ("config", "model", "G", "G_ema", "D", "opt_g", "opt_d", "progress", "rng")


def check_fits(path: Path, saved: dict) -> None:
    """Raise CheckpointError unless `saved` is a whole training checkpoint whose config this facegan can use.

    `checkpoint.load` has already checked every section's JSON types, the weights' and Adam moments' dtypes and
    shapes against the model the file names (built on the meta device), and that the tensors are finite.
    """
    if saved.get("kind") != "training":
        raise CheckpointError(f"{path}: a {saved.get('kind')!r} checkpoint, not a training checkpoint; cannot resume from it")
    missing = [name for name in TRAINING_SECTIONS if name not in saved]
    if missing:
        raise CheckpointError(f"{path}: a training checkpoint without {', '.join(missing)}; cannot resume from it")
    try:
        TrainConfig.from_dict(saved["config"]).validate()
    except (TypeError, ValueError, KeyError, AttributeError, DataError) as error:
        raise CheckpointError(f"{path}: unusable training config ({error})") from None


def _set_aside(path: Path) -> None:
    try:
        path.rename(path.with_name(path.name + ".unusable"))
    except OSError:  # a read-only run directory: leave it, it is skipped again next time
        pass
