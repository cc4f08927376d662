"""GAN losses. A loss owns what each training phase computes; the loop only runs the phases.

Discriminators return raw logits; the sigmoid lives inside the loss for numerical stability.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NonSaturatingLoss:
    """The original GAN loss with the non-saturating generator objective (Goodfellow et al. 2014), as BCE on logits."""

    def discriminator_loss(self, D: nn.Module, real: Tensor, fake: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        real_logits = D(real)
        fake_logits = D(fake)
        loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        loss = loss_real + loss_fake
        stats = {
            "loss_d": loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }
        return loss, stats

    def generator_loss(self, D: nn.Module, fake: Tensor, real: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        logits = D(fake)
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return loss, {"loss_g": loss.detach()}
