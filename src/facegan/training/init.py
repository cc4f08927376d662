"""`--init MODEL`: a new run that starts from a trained model's weights (fine-tuning) instead of random ones.

The source gives the architecture, size, latent size and width, the generator, its moving average and,
when it has one, the discriminator. Optimiser moments, counters and data order start fresh: this is a new
run, unlike `--resume`, which continues one exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import checkpoint
from ..checkpoint import CheckpointError, resolve_checkpoint
from ..models import ModelConfig, get_architecture
from .ada import SMALL_DATA
from .config import TrainConfig

MODEL_OPTIONS = ("arch", "size", "z_dim", "width")  # what the source model decides


@dataclass
class InitWeights:
    source: Path
    model: ModelConfig
    networks: dict  # "G", "G_ema" and, when the source has one, "D": state dicts
    stages: list[dict] = field(default_factory=list)  # the training that made the source, oldest stage first

    @property
    def has_discriminator(self) -> bool:
        return "D" in self.networks


def read_init(spec: str) -> InitWeights:
    """The weights `--init` names: a shipped model's name (`celeba64`), a run directory or a checkpoint file."""
    path = resolve_checkpoint(spec)
    metadata = checkpoint.read_metadata(path, verify=False)  # header only; load() below verifies the file
    generators = [name for name in ("G", "G_ema") if name in metadata]
    if not generators:
        raise CheckpointError(f"{path}: holds no generator weights, so --init cannot start from it "
                              "(give a training checkpoint, a run directory or a shipped model such as celeba64)")
    facts = [name for name in ("D", "progress", "config", "info") if name in metadata]
    saved = checkpoint.load(path, sections=["model", *generators, *facts])
    model = ModelConfig(**saved["model"])
    networks = {"G": saved.get("G", saved.get("G_ema")), "G_ema": saved.get("G_ema", saved.get("G"))}
    if "D" in saved:
        networks["D"] = saved["D"]
    return InitWeights(path, model, networks, training_stages(path, saved))


def training_stages(path: Path, saved: dict[str, Any]) -> list[dict]:
    """The training behind a checkpoint or shipped model, oldest stage first: the stages its own `--init` chain
    recorded, then the checkpoint's run itself. Each stage: source, steps, images_seen, train_seconds, and the
    batch, learning rates, augmentation and EMA half-life it trained with. A shipped model's card lists its stages."""
    progress, info = saved.get("progress"), saved.get("info") or {}
    if not isinstance(progress, dict):
        return recorded_stages(info.get("stages"))
    config, arch = saved.get("config") or {}, get_architecture(saved["model"]["arch"])
    own = {"source": str(path), "steps": progress["step"], "images_seen": progress["images_seen"],
           "train_seconds": progress.get("train_seconds", 0.0),
           "batch": config.get("batch") or arch.batch_size,
           "lr_g": config.get("lr_g") or arch.optimizer.lr_g, "lr_d": config.get("lr_d") or arch.optimizer.lr_d,
           "augment": config.get("augment"), "ema_kimg": config.get("ema_kimg")}
    return [*recorded_stages(progress.get("earlier")), own]


def recorded_stages(value: Any) -> list[dict]:
    """Stage records as a checkpoint holds them; anything malformed counts as no record (they are facts for the
    model card, never needed to train)."""
    if not isinstance(value, list) or not all(isinstance(stage, dict) for stage in value):
        return []
    return [dict(stage) for stage in value]


def configure(config: TrainConfig, init: InitWeights) -> TrainConfig:
    """`config` with the source model's architecture, size, latent size and width, and its last stage's batch size
    unless `--batch` is given; ValueError where the command line asked for another model.

    The batch follows the source because its discriminator and moving average were balanced at that batch: the
    shipped model (batch 64) fine-tuned at the architecture's 128 scored KID 24.7 after 72 kimg on 500 UTKFace
    photos, at its own 64 15.9 (benchmarks/README.md, "Fine-tuning"). Its learning rates do not follow: at the
    source's last 1e-4 the same run scored 24.7, at the architecture's 2e-4 16.7."""
    source = {"arch": init.model.arch, "size": init.model.size, "z_dim": init.model.z_dim, "width": init.model.width}
    given = config.given_options()
    conflicts = [f"--{name.replace('_', '-')} {given[name]}" for name in MODEL_OPTIONS
                 if name in given and given[name] != source[name]]
    if conflicts:
        model = f"{init.model.arch}, {init.model.size} px, z-dim {init.model.z_dim}, width {init.model.width}"
        raise ValueError(f"--init {config.init} is a {model} model, so {', '.join(conflicts)} cannot apply; "
                         "leave these options out (a fine-tuned run keeps its source's architecture)")
    return replace(config, arch=init.model.arch, z_dim=init.model.z_dim, width=init.model.width,
                   batch=config.batch or source_batch(init), prepare=replace(config.prepare, size=init.model.size))


def source_batch(init: InitWeights) -> int | None:
    """The batch size the source last trained at, where its stages record one."""
    batch = init.stages[-1].get("batch") if init.stages else None
    return batch if isinstance(batch, int) and batch > 0 else None


def load_into(state, init: InitWeights) -> None:
    """Copy the source's weights and training history into a fresh training state; a source without a
    discriminator keeps the fresh one."""
    for name, weights in init.networks.items():
        getattr(state, name).load_state_dict(weights)
    state.earlier = init.stages


def init_notice(init: InitWeights) -> str:
    started = f"starting from {init.source} ({init.model.arch}, {init.model.size} px)"
    if init.has_discriminator:
        return started
    return (f"{started}; it holds no discriminator, so the discriminator starts from random weights "
            "(a training checkpoint or run directory, or the shipped celeba64, carries one)")


def small_data_hint(images: int, config: TrainConfig) -> str | None:
    """One line suggesting fine-tuning when a new run from nothing has few photos (under SMALL_DATA, below which
    training from nothing rarely gives faces anyone keeps); None otherwise."""
    if config.init or images >= SMALL_DATA:
        return None
    return (f"note: {images} photos is a small set to train a GAN from nothing; `--init celeba64` starts from the "
            "shipped face model and gives faces of your kind within minutes (see README, 'Your own photos')")

