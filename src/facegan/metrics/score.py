"""`facegan score`: a trained discriminator used as a real/fake scorer.

Images are decoded, cropped and resized exactly as `prepare` does for training, then each one
goes through the discriminator of a training checkpoint on its own (so its score never depends
on which other images are scored with it). The sigmoid of D's logit is the probability D gives
to "real photo". That number only means something relative to the generator D was trained
against: see the README's "Scoring" section before reading anything into it.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from .. import checkpoint
from ..checkpoint import CheckpointError, resolve_checkpoint
from ..config import device_option, option
from ..data import DataError, PrepareConfig
from ..data.align import AlignOptions
from ..data.decoders import decoded_images
from ..data.images import to_model_input
from ..files import write_atomically
from ..models import ModelConfig, build_discriminator
from ..models.device import resolve_device
from ..settings import DEFAULT_MODEL

THRESHOLD = 0.5


@dataclass
class ScoreConfig:
    checkpoint: str = option(DEFAULT_MODEL, "training checkpoint, run directory or shipped model; its discriminator "
                                            "does the scoring")
    images: tuple[str, ...] = option((), "image files, folders (searched recursively) or .zip files")
    align: bool | None = option(None, "find and align each face as `prepare --align` does; "
                                      "None: as the checkpoint's training run did")
    out: str | None = option(None, "also write every score and the summary here as JSON")
    device: str = device_option()

    def validate(self) -> None:
        if not self.checkpoint:
            raise ValueError("--checkpoint must name a training checkpoint, run directory or shipped model")
        if not self.images:
            raise ValueError("no images to score: pass image files, folders or .zip files")


@dataclass(frozen=True)
class ImageScore:
    source: str
    probability: float  # sigmoid(logit): D's probability that the image is a real photo
    logit: float


@dataclass
class ScoreResult:
    scores: list[ImageScore]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    checkpoint: str = ""
    step: int | None = None

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([s.probability for s in self.scores], dtype=np.float64)

    @property
    def mean(self) -> float:
        return float(self.probabilities.mean()) if self.scores else float("nan")

    @property
    def above_threshold(self) -> int:
        return int((self.probabilities > THRESHOLD).sum())

    def summary(self) -> str:
        line = (f"mean P(real) {self.mean:.3f} over {len(self.scores)} images; "
                f"{self.above_threshold} above {THRESHOLD}")
        if self.skipped:
            line += f"; {len(self.skipped)} skipped"
        return line + f" (discriminator of {self.checkpoint}, step {self.step})"

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "step": self.step, "mean": self.mean, "threshold": THRESHOLD,
                "above_threshold": self.above_threshold, "scores": [asdict(s) for s in self.scores],
                "skipped": [{"source": source, "reason": reason} for source, reason in self.skipped]}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{s.probability:.3f}</td><td>{html.escape(s.source)}</td></tr>" for s in self.scores[:50])
        more = f"<tr><td colspan=2>… {len(self.scores) - 50} more</td></tr>" if len(self.scores) > 50 else ""
        return (f"<p>{html.escape(self.summary())}</p><table><tr><th>P(real)</th><th>image</th></tr>"
                f"{rows}{more}</table>")


@dataclass
class RealFakeScorer:
    """The discriminator of a training checkpoint, in eval mode."""

    network: nn.Module
    model: ModelConfig
    checkpoint: Path
    step: int | None = None
    device: torch.device = torch.device("cpu")
    training: dict = field(default_factory=dict)  # the run's TrainConfig, as stored in the checkpoint

    def align_options(self, align: bool | None = None) -> AlignOptions | None:
        """How the run's photos were aligned (None: centre crop); `align` overrides whether to align."""
        photos = self.training.get("prepare", self.training)  # older checkpoints keep these options flat
        if not (photos.get("align", False) if align is None else align):
            return None
        stored = {key: photos[key] for key in ("template", "min_face", "margin") if key in photos}
        return PrepareConfig(data="", size=self.size, align=True, faces="largest", **stored).align_options()

    @property
    def size(self) -> int:
        return self.model.size

    @torch.inference_mode()
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """D's raw outputs for N x size x size x 3 uint8 images, one forward pass per image."""
        if pixels.shape[1:3] != (self.size, self.size):
            raise ValueError(f"images must be {self.size}x{self.size} for this discriminator, got {pixels.shape}")
        batch = to_model_input(pixels).to(self.device)
        return np.array([float(self.network(image[None])[0]) for image in batch], dtype=np.float64)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """P(real photo) per image: the sigmoid of `logits`."""
        return expit(self.logits(pixels))


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "auto") -> RealFakeScorer:
    """The discriminator of a training checkpoint (or the newest one of a run directory, or a shipped model)."""
    path = resolve_checkpoint(path)
    metadata = checkpoint.read_metadata(path, verify=False)  # header only; load() below verifies the file
    if "D" not in metadata:
        raise CheckpointError(f"{path}: holds no discriminator (a generator-only file); "
                              "scoring needs a training checkpoint, a run directory or the shipped model")
    saved = checkpoint.load(path, sections=["model", "D", *[name for name in ("progress", "config") if name in metadata]])
    network, model = checkpoint.rebuild_network(path, saved, "D", build_discriminator, "discriminator")
    device = resolve_device(device)
    scorer = RealFakeScorer(network.to(device).eval().requires_grad_(False), model, path,
                            saved.get("progress", {}).get("step"), device, saved.get("config", {}))
    try:  # the run's photo options, checked now rather than half-way through scoring
        scorer.align_options(align=True)
    except (TypeError, ValueError, DataError) as error:
        raise CheckpointError(f"{path}: unusable photo options in its training config ({error})") from None
    return scorer


def score_images(config: ScoreConfig) -> ScoreResult:
    """Score every image of `config.images` with the discriminator of `config.checkpoint`."""
    config.validate()
    scorer = load_discriminator(config.checkpoint, config.device)
    names, images, skipped = [], [], []
    for name, decoded in decoded_images(config.images, scorer.size, scorer.align_options(config.align)):
        if isinstance(decoded, str):
            skipped.append((name, decoded))
        else:
            names.append(name)
            images.append(decoded)
    if not images:
        detail = f" ({len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"no images to score in {', '.join(map(str, config.images))}{detail}")
    logits = scorer.logits(np.stack(images))
    probabilities = expit(logits)
    scores = [ImageScore(name, float(p), float(logit)) for name, p, logit in zip(names, probabilities, logits)]
    result = ScoreResult(scores, skipped, str(scorer.checkpoint), scorer.step)
    if config.out:
        payload = json.dumps(result.to_dict(), indent=1).encode() + b"\n"
        write_atomically(config.out, lambda handle: handle.write(payload))
    return result
