"""Differentiable augmentation applied to every image the discriminator sees.

Two kinds: fixed DiffAugment policies (Zhao et al. 2020), each transform applied to every image, and
adaptive discriminator augmentation (ADA, Karras et al. 2020), where each transform is applied to each
image with a probability p that training adjusts. Real and fake images get the same random kinds of
transform, and gradients flow through them to the generator, so the discriminator cannot memorise a
small dataset while the generator still learns un-augmented faces. Images are N x 3 x H x W in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def color(x: Tensor) -> Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros (grey)."""
    n, _, h, w = x.shape
    shift_y, shift_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-shift_y, shift_y + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-shift_x, shift_x + 1, (n, 1, 1), device=x.device)
    grid_y, grid_x = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    rows = (grid_y.unsqueeze(0) + ty + 1).clamp(0, h + 1)
    cols = (grid_x.unsqueeze(0) + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one random square of `ratio` times the image size in each image."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device)
    grid_y, grid_x = torch.meshgrid(torch.arange(size_y, device=x.device), torch.arange(size_x, device=x.device), indexing="ij")
    rows = (grid_y.unsqueeze(0) + cy - size_y // 2).clamp(0, h - 1)
    cols = (grid_x.unsqueeze(0) + cx - size_x // 2).clamp(0, w - 1)
    mask = torch.ones(n, h, w, device=x.device, dtype=x.dtype)
    mask[torch.arange(n, device=x.device).view(n, 1, 1), rows, cols] = 0
    return x * mask.unsqueeze(1)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}
ADAPTIVE = "ada"


def parse_policy(policy: str) -> list[str]:
    names = [name.strip() for name in policy.split(",") if name.strip() and name.strip() != "none"]
    unknown = [name for name in names if name not in POLICIES and name != ADAPTIVE]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose ada, none, or from {', '.join(POLICIES)}")
    if ADAPTIVE in names and len(names) > 1:
        raise ValueError("ada chooses its own transforms; give --augment ada alone")
    return names


def diff_augment(x: Tensor, policy: list[str]) -> Tensor:
    for name in policy:
        x = POLICIES[name](x)
    return x


# ADA's transforms, each applied to an image with probability p. Geometric ones move whole pixels (no
# resampling blur); translation reflects at the border so no grey frame tells the discriminator a shift happened.

def xflip(x: Tensor) -> Tensor:
    return x.flip(3)


def rotate90(x: Tensor) -> Tensor:
    """A quarter, half or three-quarter turn, chosen per image."""
    turns = torch.randint(1, 4, (x.shape[0],), device=x.device)
    out = x
    for k in (1, 2, 3):
        out = torch.where((turns == k).view(-1, 1, 1, 1), x.rot90(k, dims=(2, 3)), out)
    return out


def _reflect(index: Tensor, size: int) -> Tensor:
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def integer_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by whole pixels, up to `ratio` of its size, reflecting at the border."""
    n, _, h, w = x.shape
    ty = torch.round((torch.rand(n, 1, 1, device=x.device) * 2 - 1) * ratio * h).long()
    tx = torch.round((torch.rand(n, 1, 1, device=x.device) * 2 - 1) * ratio * w).long()
    rows = _reflect(torch.arange(h, device=x.device).view(1, h, 1) - ty, h).expand(n, h, w)
    cols = _reflect(torch.arange(w, device=x.device).view(1, 1, w) - tx, w).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def brightness(x: Tensor, std: float = 0.2) -> Tensor:
    return x + torch.randn(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * std


def contrast(x: Tensor, std: float = 0.5) -> Tensor:
    """Scale around each image's mean by a log-normal factor (2 ** N(0, std))."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * torch.exp2(torch.randn(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * std) + mean


def saturation(x: Tensor, std: float = 1.0) -> Tensor:
    """Scale each pixel's distance from its grey value by a log-normal factor."""
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * torch.exp2(torch.randn(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * std) + grey


ADA_TRANSFORMS = (xflip, rotate90, integer_translation, brightness, contrast, saturation, cutout)


class AdaptiveAugment:
    """ADA's pipeline: every transform of ADA_TRANSFORMS applied to each image with probability `p`.

    `p` is set by the training loop from the discriminator's overfitting signal; at p = 0 images pass unchanged.
    """

    def __init__(self, p: float = 0.0):
        self.p = p

    def __call__(self, x: Tensor) -> Tensor:
        if self.p <= 0:
            return x
        for transform in ADA_TRANSFORMS:
            chosen = (torch.rand(x.shape[0], device=x.device) < self.p).nonzero().flatten()
            if len(chosen):  # only the chosen images are transformed: at small p that is nearly free
                x = x.index_copy(0, chosen, transform(x.index_select(0, chosen)))
        return x
