"""A compact modern GAN for faces: residual generator and discriminator without BatchNorm,
non-saturating loss with lazy R1, minibatch standard deviation, and optional DiffAugment.

Every resolution has one residual block; channels halve as the resolution doubles, so each
block costs about the same. Without BatchNorm the moving-average generator samples exactly what
it was trained as, and one face never depends on the others in its batch.

`resnet-fast` replaces the discriminator's full-resolution block with one strided 4x4
convolution: on a CPU it trains about 1.6 times as many images per second, as fast as DCGAN,
and in equal time it leads DCGAN's FID for the first 30 minutes (benchmarks/README.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import LossSettings
from .registry import Architecture, ModelConfig, OptimizerSettings, register


def _channels(size: int, resolution: int, width: int) -> int:
    """`width` channels at full resolution, doubling per halving, capped at 16 x width."""
    return width * min(16, size // resolution)


def _kaiming(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class UpBlock(nn.Module):
    """Nearest-neighbour 2x upsampling with two 3x3 convolutions, plus a 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        y = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return (self.shortcut(x) + y) / math.sqrt(2)


class DownBlock(nn.Module):
    """Two 3x3 convolutions then 2x average pooling, plus a 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return (F.avg_pool2d(self.shortcut(x), 2) + F.avg_pool2d(y, 2)) / math.sqrt(2)


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.z_dim = config.z_dim
        resolutions = [2**k for k in range(2, int(math.log2(config.size)) + 1)]
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        self.c0 = channels[0]
        self.input = nn.Linear(config.z_dim, 16 * channels[0])
        self.blocks = nn.Sequential(*[UpBlock(a, b) for a, b in zip(channels, channels[1:])])
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)
        self.apply(_kaiming)

    def forward(self, z: Tensor) -> Tensor:
        x = self.input(z.view(z.shape[0], -1)).view(-1, self.c0, 4, 4)
        x = self.blocks(x)
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))


def minibatch_spread(x: Tensor, group: int = 4) -> Tensor:
    """Each image's average feature spread across its small group of images (Karras et al. 2018), shape (n,)."""
    n, c, h, w = x.shape
    g = math.gcd(group, n)
    groups = x.float().reshape(g, -1, c, h, w)
    # Written out because torch.var over the first dimension of a channels-last tensor is 20x slower.
    variance = (groups - groups.mean(dim=0)).square().mean(dim=0)
    spread = variance.add(1e-8).sqrt().mean(dim=[1, 2, 3])
    return spread.to(x.dtype).repeat(g)


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """Append `minibatch_spread` as one more channel."""
    n, c, h, w = x.shape
    spread = minibatch_spread(x, group).view(-1, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, spread], dim=1)


class Discriminator(nn.Module):
    """Residual blocks down to 4x4, minibatch stddev, then one logit per image.

    With `strided_stem` the full-resolution block is replaced by one strided 4x4 convolution
    (DCGAN's first layer): thin 3x3 convolutions at full resolution use a CPU's cores poorly.
    """

    def __init__(self, config: ModelConfig, strided_stem: bool = False):
        super().__init__()
        top = int(math.log2(config.size)) - strided_stem
        resolutions = [2**k for k in range(top, 1, -1)]
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        self.from_rgb = nn.Conv2d(3, channels[0], 4, 2, 1) if strided_stem else nn.Conv2d(3, channels[0], 3, padding=1)
        self.stem_activation = nn.LeakyReLU(0.2) if strided_stem else nn.Identity()
        self.blocks = nn.Sequential(*[DownBlock(a, b) for a, b in zip(channels, channels[1:])])
        self.final_conv = nn.Conv2d(channels[-1] + 1, channels[-1], 3, padding=1)
        self.output = nn.Linear(16 * channels[-1], 1)
        self.apply(_kaiming)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem_activation(self.from_rgb(x)))
        x = F.leaky_relu(self.final_conv(minibatch_stddev(x)), 0.2)
        return self.output(x.flatten(1)).view(-1)


register(
    Architecture(
        name="resnet",
        summary="modern: residual G/D without BatchNorm, non-saturating loss + lazy R1, minibatch stddev",
        build_generator=Generator,
        build_discriminator=Discriminator,
        loss=LossSettings("non-saturating", r1_gamma=0.05, r1_every=16),
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.0, 0.99)),
        z_dim=128,
        width=16,
        batch_size=64,
    )
)

register(
    Architecture(
        name="resnet-fast",
        summary="modern, fast on CPU: resnet, but D starts with a strided 4x4 conv instead of a full-resolution residual block",
        build_generator=Generator,
        build_discriminator=lambda config: Discriminator(config, strided_stem=True),
        loss=LossSettings("non-saturating", r1_gamma=0.05, r1_every=16),
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.0, 0.99)),
        z_dim=128,
        width=16,
        batch_size=64,
    )
)
