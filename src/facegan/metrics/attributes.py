"""An age and gender classifier for 64 px faces in the CelebA crop: scores generated faces for named edit directions.

``AttributeNet`` is a small CNN (conv blocks of 32-64-128-256 channels with BatchNorm, global average
pooling, a linear head) that returns each face's age in years and a "female" logit.
``AttributeClassifier`` wraps a trained one for numpy or tensor images; ``fit_attribute_classifier``
trains one and ``save_attribute_classifier`` / ``load_attribute_classifier`` store it as a facegan
checkpoint of kind "attributes". ``benchmarks/attributes.py`` builds the shipped file,
``pretrained/attributes64.safetensors``, from UTKFace photos aligned to the CelebA crop.

UTKFace's photos are tight (eyebrows to chin), so aligned to CelebA's looser crop they fill only its
middle third; prepare fills the rest by reflecting the photo. A network that read the whole crop
learnt that those reflections are what a face's surroundings look like, and took CelebA's real hair
and backgrounds for signs of age (median predicted age of CelebA test faces: 49 years). So the
network reads only ``FACE_BOX``, the square that the aligned photos cover.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from .. import checkpoint
from ..checkpoint import CheckpointError
from ..data.images import to_model_input
from ..settings import PRETRAINED_DIR

SIZE = 64
WIDTHS = (32, 64, 128, 256)
KIND = "attributes"
SHIPPED_FILE = PRETRAINED_DIR / "attributes64.safetensors"
AGE_SCALE = 10.0  # the head predicts age in decades, so the age loss is of the order of the gender loss
GENDER_WEIGHT = 2.0  # on UTKFace, held-out gender accuracy 0.83 -> 0.86 for age MAE 7.1 -> 7.4 years
MAX_AGE = 116  # the oldest age UTKFace labels
MAX_WIDTH = 1024  # no classifier has wider layers; keeps a crafted file from building a huge network
UTKFACE_NAME = re.compile(r"(\d{1,3})_([01])_([0-4])_\d+\.")  # age_gender_race_datetime.jpg, gender 1: female
# UTKFace's photos, aligned to the CelebA template at 64 px, cover x 14.8-49.6 and y 23.4-58.2 (medians over
# 2,361 faces; 95 % of them cover this box): outside it their crops hold only reflections of the photo,
# where CelebA's hold hair and background. The classifier sees nothing it was not trained on.
FACE_BOX = (16, 25, 48, 57)  # left, top, right, bottom in the 64 px CelebA crop
SHIFT = 0.04  # augmentation: random shift, a fraction of the image side
ZOOM = 0.08  # augmentation: random scale change, either way
LIGHT = 0.1  # augmentation: random brightness and contrast change, either way


class AttributeNet(nn.Module):
    """N x 3 x 64 x 64 faces in the CelebA crop, in [-1, 1] -> N x 2: age in years, female logit.

    The network reads only ``FACE_BOX``, the 32 px square from eyebrows to chin that UTKFace's photos
    cover once aligned (see the module's docstring). Four blocks of 3x3
    convs follow, each but the first halving the side (32 -> 4); all but the widest add a second conv.
    """

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(widths)
        layers: list[nn.Module] = []
        channels = 3
        for i, width in enumerate(widths):
            layers += _conv_block(channels, width, stride=1 if i == 0 else 2)
            if i < len(widths) - 1:
                layers += _conv_block(width, width, stride=1)
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, top, right, bottom = FACE_BOX
        decades, female_logit = self.head(self.features(x[:, :, top:bottom, left:right])).unbind(1)
        return torch.stack([decades * AGE_SCALE, female_logit], dim=1)


def _conv_block(channels_in: int, channels_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True)]


@dataclass
class AttributeClassifier:
    """A trained ``AttributeNet`` (kept in eval mode), the side it reads, and what is known about its training."""

    network: AttributeNet
    size: int = SIZE
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.network.eval()

    def predict(self, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """{"age": years, "female": probability}, float32 arrays of length N, for N x H x W x 3 uint8 faces.

        Faces of another side are resized to 64 with Pillow's antialiased BILINEAR, which
        ``predict_tensor``'s ``F.interpolate(antialias=True)`` matches.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected N x H x W x 3 uint8 images, got shape {images.shape} {images.dtype}")
        outputs = [self.predict_tensor(to_model_input(self._resized(images[start:start + batch_size])))
                   for start in range(0, len(images), batch_size)]
        scores = torch.cat(outputs).float().cpu() if outputs else torch.zeros(0, 2)
        return {"age": scores[:, 0].numpy().astype(np.float32),
                "female": torch.sigmoid(scores[:, 1]).numpy().astype(np.float32)}

    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """N x 2 (age in years, female logit) for N x 3 x H x W faces in [-1, 1], on the network's device.

        Each row is the mean of the outputs for the face and its mirror image (a little more accurate).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W images, got shape {tuple(x.shape)}")
        parameter = next(self.network.parameters())
        with torch.inference_mode():
            x = x.to(parameter.device, parameter.dtype)
            if x.shape[-2:] != (self.size, self.size) and len(x):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            return (self.network(x) + self.network(x.flip(-1))) / 2

    def _resized(self, images: np.ndarray) -> np.ndarray:
        if images.shape[1:3] == (self.size, self.size):
            return images
        side = (self.size, self.size)
        return np.stack([np.asarray(Image.fromarray(image).resize(side, Image.BILINEAR)) for image in images])


def fit_attribute_classifier(images: np.ndarray, ages, females, *, epochs: int = 36, batch_size: int = 64,
                             lr: float = 2e-3, seed: int = 0, progress: bool = False) -> AttributeClassifier:
    """Train an ``AttributeNet`` on N x 64 x 64 x 3 uint8 faces labelled with ages (years) and females (0 or 1).

    The same inputs and seed give the same weights. Each batch is flipped, shifted, zoomed and lit
    at random; the loss is smooth L1 on age in decades plus twice the BCE on gender; AdamW with a one-cycle
    learning rate. The incomplete last batch of each epoch is dropped (BatchNorm needs several faces).
    """
    targets = _targets(images, ages, females)
    batch_size = min(batch_size, len(targets))
    if batch_size < 2:
        raise ValueError(f"training needs at least 2 faces, got {len(targets)}")
    with torch.random.fork_rng():  # the initial weights follow from the seed; the caller's random state is kept
        torch.manual_seed(seed)
        network = AttributeNet()
    order = torch.Generator().manual_seed(seed)  # batches and augmentation
    with torch.no_grad():  # start from the mean age: the first steps then learn faces, not the offset
        network.head.bias.copy_(torch.tensor([targets[:, 0].mean() / AGE_SCALE, 0.0]))
    pixels = to_model_input(np.asarray(images)).contiguous(memory_format=torch.channels_last)  # ~20 % faster on CPU
    loss = _train(network.to(memory_format=torch.channels_last), pixels, targets, epochs, batch_size, lr, order,
                  progress)
    network.to(memory_format=torch.contiguous_format)  # as loaded from a file: the same predictions, bit for bit
    info = {"train_images": len(targets), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "final_loss": round(loss, 4)}
    return AttributeClassifier(network, SIZE, info)


def _train(network: AttributeNet, pixels: torch.Tensor, targets: torch.Tensor, epochs: int, batch_size: int,
           lr: float, order: torch.Generator, progress: bool) -> float:
    """Train ``network`` in place; the loss of the last batch."""
    steps_per_epoch = len(targets) // batch_size
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch))
    network.train()
    loss = torch.zeros(())
    for _ in tqdm(range(epochs), disable=not progress, desc="attributes", unit="epoch", leave=False):
        for batch in torch.randperm(len(targets), generator=order)[: steps_per_epoch * batch_size].split(batch_size):
            loss = _loss(network(_augment(pixels[batch], order)), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    network.eval()
    return float(loss.detach())


def _targets(images: np.ndarray, ages, females) -> torch.Tensor:
    """N x 2 float32 (age in years, female 0..1), after checking that they fit the images."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected N x {SIZE} x {SIZE} x 3 uint8 faces, got shape {images.shape} {images.dtype}")
    targets = torch.from_numpy(np.stack([np.asarray(ages, np.float32), np.asarray(females, np.float32)], 1))
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} faces but {len(targets)} labels")
    if not bool(torch.isfinite(targets).all()) or bool((targets[:, 1] < 0).any() | (targets[:, 1] > 1).any()):
        raise ValueError("ages must be finite and females between 0 and 1")
    return targets


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    age = F.smooth_l1_loss(outputs[:, 0] / AGE_SCALE, targets[:, 0] / AGE_SCALE)
    return age + GENDER_WEIGHT * F.binary_cross_entropy_with_logits(outputs[:, 1], targets[:, 1])


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each face flipped half the time, shifted, zoomed and lit a little (edges filled by reflection)."""
    count = len(x)

    def uniform(spread: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * spread

    flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    scale = 1 + uniform(ZOOM)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = uniform(2 * SHIFT), uniform(2 * SHIFT)  # [-1, 1] coordinates: side 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    contrast, brightness = 1 + uniform(LIGHT), uniform(LIGHT)
    return (moved * contrast[:, None, None, None] + brightness[:, None, None, None]).clamp(-1, 1)


def save_attribute_classifier(classifier: AttributeClassifier, path: str | os.PathLike,
                              info: dict[str, Any] | None = None) -> Path:
    """Write ``classifier`` atomically as a facegan checkpoint of kind "attributes"; ``info`` (JSON) replaces its info."""
    network = classifier.network
    state = {"attributes": {"size": classifier.size, "widths": list(network.widths)},
             "weights": {key: value.float() if value.is_floating_point() else value
                         for key, value in network.state_dict().items()},
             "info": classifier.info if info is None else info}
    return checkpoint.save(path, state, kind=KIND)


def load_attribute_classifier(path: str | os.PathLike | None = None) -> AttributeClassifier:
    """The classifier stored at ``path`` (default: the shipped ``attributes64.safetensors``), on the CPU.

    FileNotFoundError when there is no such file; ValueError, naming the file, when it is not a
    whole attribute classifier.
    """
    path = Path(path) if path is not None else SHIPPED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such attribute classifier file")
    try:
        saved = checkpoint.load(path)
    except CheckpointError as error:
        raise ValueError(str(error)) from None
    if saved["kind"] != KIND or not {"attributes", "weights"} <= set(saved):
        raise ValueError(f"{path}: not an attribute classifier (its kind is {saved['kind']!r})")
    size, widths = _architecture(path, saved["attributes"])
    network = AttributeNet(widths)
    try:
        network.load_state_dict(saved["weights"])
    except (RuntimeError, TypeError, ValueError) as error:
        problem = " ".join(str(error).split())[:160]
        raise ValueError(f"{path}: its attribute classifier weights do not fit its network ({problem})") from None
    info = saved.get("info", {})
    return AttributeClassifier(network, size, info if isinstance(info, dict) else {})


def _architecture(path: Path, tree: Any) -> tuple[int, tuple[int, ...]]:
    """The side and layer widths an "attributes" section describes; ValueError unless this module builds them."""
    size = tree.get("size") if isinstance(tree, dict) else None
    widths = tree.get("widths") if isinstance(tree, dict) else None
    fits = (size == SIZE and isinstance(widths, list) and len(widths) == len(WIDTHS)
            and all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_WIDTH for w in widths))
    if not fits:
        raise ValueError(f"{path}: unusable attribute classifier (size {size!r}, widths {widths!r}; "
                         f"this facegan builds {SIZE} px classifiers of {len(WIDTHS)} blocks up to {MAX_WIDTH} wide)")
    return size, tuple(widths)


def utkface_labels(name: str | os.PathLike) -> tuple[float, float] | None:
    """(age in years, female 0.0 or 1.0) from a UTKFace file name ``AGE_GENDER_RACE_DATETIME.jpg``.

    None when the name does not have that form or its age is beyond UTKFace's 0..116.
    """
    match = UTKFACE_NAME.match(Path(name).name)
    if match is None or not 0 <= int(match[1]) <= MAX_AGE:
        return None
    return float(match[1]), float(match[2])

