"""GAN losses. A loss owns what each training phase computes; the loop only runs the phases.

Discriminators return raw logits; each objective turns them into losses itself (BCE on logits for numerical
stability). An architecture names its objective and R1 strength in `LossSettings`; training may override both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import ADAPTIVE, AdaptiveAugment, diff_augment


@dataclass(frozen=True)
class Objective:
    """What D minimises given its logits on real and fake images, what G minimises given D's logits on fakes,
    and the logit that separates "real" from "fake" (where ADA's overfitting signal counts signs)."""

    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]
    midpoint: float = 0.0


OBJECTIVES: dict[str, Objective] = {
    # Goodfellow et al. 2014 with the non-saturating generator loss; softplus(-x) = BCE(x, real).
    "non-saturating": Objective(
        discriminator=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
        generator=lambda fake: F.softplus(-fake).mean()),
    # LSGAN (Mao et al. 2017), targets 1 for real and 0 for fake.
    "least-squares": Objective(
        discriminator=lambda real, fake: 0.5 * ((real - 1).square().mean() + fake.square().mean()),
        generator=lambda fake: 0.5 * (fake - 1).square().mean(),
        midpoint=0.5),
    # Hinge loss (Lim & Ye 2017; SNGAN, BigGAN).
    "hinge": Objective(
        discriminator=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
        generator=lambda fake: -fake.mean()),
}


@dataclass(frozen=True)
class LossSettings:
    objective: str = "non-saturating"
    r1_gamma: float = 0.0  # 0: no R1 penalty
    r1_every: int = 16


def check_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(OBJECTIVES)}") from None


def discriminator_stats(loss: Tensor, real_logits: Tensor, fake_logits: Tensor, midpoint: float = 0.0) -> dict[str, Tensor]:
    """What the loop logs of a discriminator update; `r_t`, the mean sign of D on real images, is ADA's overfitting
    signal (near 1: D is sure of every training photo)."""
    real_logits, fake_logits = real_logits.detach(), fake_logits.detach()
    return {"loss_d": loss.detach(), "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(), "r_t": (real_logits.float() - midpoint).sign().mean()}


class GANLoss:
    """An objective, an optional lazy R1 penalty on real images, and augmentation of what D sees.

    R1 (Mescheder et al. 2018) penalises the discriminator's gradient on real images; computing it
    every `r1_every` steps with its weight scaled by `r1_every` costs little and changes nothing
    on average (lazy regularisation, Karras et al. 2020).

    `augment` names DiffAugment transforms applied to everything the discriminator sees, or is ["ada"]: then
    `adaptive` is the ADA pipeline, whose probability the training loop adjusts.
    """

    def __init__(self, settings: LossSettings = LossSettings(), augment: list[str] | tuple[str, ...] = ()):
        self.objective = check_objective(settings.objective)
        self.r1_gamma = settings.r1_gamma
        self.r1_every = settings.r1_every
        self.augment = list(augment)
        self.adaptive = AdaptiveAugment() if self.augment == [ADAPTIVE] else None

    def _scores(self, D: nn.Module, images: Tensor) -> Tensor:
        if self.adaptive is not None:
            return D(self.adaptive(images))
        return D(diff_augment(images, self.augment)) if self.augment else D(images)

    def discriminator_loss(self, D: nn.Module, real: Tensor, fake: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        regularize = self.r1_gamma > 0 and step % self.r1_every == 0
        real = real.detach().requires_grad_(regularize)
        real_logits = self._scores(D, real)
        fake_logits = self._scores(D, fake)
        loss = self.objective.discriminator(real_logits.float(), fake_logits.float())
        stats = discriminator_stats(loss, real_logits, fake_logits, self.objective.midpoint)
        if regularize:
            (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
            penalty = grad.float().square().sum(dim=[1, 2, 3]).mean()
            loss = loss + penalty * (self.r1_gamma / 2 * self.r1_every)
            stats["r1"] = penalty.detach()
        return loss, stats

    def generator_loss(self, D: nn.Module, fake: Tensor, real: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.objective.generator(self._scores(D, fake).float())
        return loss, {"loss_g": loss.detach()}
