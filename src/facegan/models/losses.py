"""GAN losses. A loss owns what each training phase computes; the loop only runs the phases.

Discriminators return raw logits; the sigmoid lives inside the loss for numerical stability.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import ADAPTIVE, AdaptiveAugment, diff_augment


def discriminator_stats(loss: Tensor, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """What the loop logs of a discriminator update; `r_t`, the mean sign of D on real images, is ADA's overfitting
    signal (near 1: D is sure of every training photo)."""
    real_logits, fake_logits = real_logits.detach(), fake_logits.detach()
    return {"loss_d": loss.detach(), "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(), "r_t": real_logits.float().sign().mean()}


class NonSaturatingLoss:
    """The original GAN loss with the non-saturating generator objective (Goodfellow et al. 2014), as BCE on logits.

    `augment` names DiffAugment transforms applied to everything the discriminator sees, or is ["ada"]: then
    `adaptive` is the ADA pipeline, whose probability the training loop adjusts.
    """

    def __init__(self, augment: list[str] | tuple[str, ...] = ()):
        self.augment = list(augment)
        self.adaptive = AdaptiveAugment() if self.augment == [ADAPTIVE] else None

    def _scores(self, D: nn.Module, images: Tensor) -> Tensor:
        if self.adaptive is not None:
            return D(self.adaptive(images))
        return D(diff_augment(images, self.augment)) if self.augment else D(images)

    def discriminator_loss(self, D: nn.Module, real: Tensor, fake: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        real_logits = self._scores(D, real)
        fake_logits = self._scores(D, fake)
        loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        loss = loss_real + loss_fake
        return loss, discriminator_stats(loss, real_logits, fake_logits)

    def generator_loss(self, D: nn.Module, fake: Tensor, real: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self._scores(D, fake)
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return loss, {"loss_g": loss.detach()}


class R1Loss(NonSaturatingLoss):
    """Non-saturating loss with a lazy R1 penalty on real images and optional DiffAugment.

    R1 (Mescheder et al. 2018) penalises the discriminator's gradient on real images; computing it
    every `r1_every` steps with its weight scaled by `r1_every` costs little and changes nothing
    on average (lazy regularisation, Karras et al. 2020).
    """

    def __init__(self, r1_gamma: float = 0.05, r1_every: int = 16, augment: list[str] | tuple[str, ...] = ()):
        super().__init__(augment)
        self.r1_gamma = r1_gamma
        self.r1_every = r1_every

    def discriminator_loss(self, D: nn.Module, real: Tensor, fake: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        regularize = self.r1_gamma > 0 and step % self.r1_every == 0
        real = real.detach().requires_grad_(regularize)
        real_logits = self._scores(D, real)
        fake_logits = self._scores(D, fake)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        stats = discriminator_stats(loss, real_logits, fake_logits)
        if regularize:
            (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
            penalty = grad.float().square().sum(dim=[1, 2, 3]).mean()
            loss = loss + penalty * (self.r1_gamma / 2 * self.r1_every)
            stats["r1"] = penalty.detach()
        return loss, stats

    def generator_loss(self, D: nn.Module, fake: Tensor, real: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        loss = F.softplus(-self._scores(D, fake)).mean()
        return loss, {"loss_g": loss.detach()}
