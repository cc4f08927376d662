"""DCGAN's networks trained the modern way: the fastest path to good faces on a CPU.

The generator is DCGAN's (wide 4x4 transposed convolutions + BatchNorm): on a CPU, few wide
layers run far closer to peak speed than many thin 3x3 layers, so it sees more images per minute
than `resnet`. The discriminator drops BatchNorm (which lets it judge a batch rather than an
image) for a minibatch-stddev channel, and the loss is non-saturating with a lazy R1 penalty.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .dcgan import Generator, _channels, _resolutions, init_weights
from .losses import R1Loss
from .registry import Architecture, ModelConfig, OptimizerSettings, register
from .resnet import minibatch_spread


class Discriminator(nn.Module):
    """DCGAN's strided 4x4 convolutions without BatchNorm or biases, then a 4x4 logit plus minibatch stddev."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        resolutions = _resolutions(config.size)[::-1]
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.output = nn.Conv2d(channels[-1], 1, 4, 1, 0)
        self.spread_weight = nn.Parameter(torch.zeros(()))
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        # The same as a 4x4 convolution over one more, constant channel holding the spread, but CPU
        # convolution kernels run much slower on an odd channel count (513) than on 512.
        x = self.features(x)
        return self.output(x).view(-1) + self.spread_weight * minibatch_spread(x)


register(
    Architecture(
        name="dcgan-r1",
        summary="DCGAN's fast networks, modern training: BatchNorm-free D with minibatch stddev, "
        "non-saturating loss + lazy R1",
        build_generator=Generator,
        build_discriminator=Discriminator,
        build_loss=lambda config, augment: R1Loss(r1_gamma=0.05, r1_every=16, augment=augment),
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999)),
        z_dim=100,
        width=64,
        batch_size=128,
    )
)
