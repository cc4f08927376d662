"""DCGAN (Radford, Metz & Chintala 2016), as in pytorch/examples, for 32, 64 and 128 px.

Generator: a latent vector becomes a 4x4 map, then each 4x4 stride-2 transposed convolution
doubles the resolution (BatchNorm + ReLU), and the last one outputs RGB through tanh.
Discriminator: the mirror image, strided 4x4 convolutions with LeakyReLU(0.2) (BatchNorm on all
but the first), ending in one logit per image.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .registry import Architecture, ModelConfig, OptimizerSettings, register


def _channels(size: int, resolution: int, width: int) -> int:
    """Feature maps at `resolution`: width at size/2, doubling per halving, capped at 8 x width."""
    return width * min(8, size // (2 * resolution))


def _resolutions(size: int) -> list[int]:
    """4, 8, ..., size/2: the inner feature-map sizes of both networks."""
    return [2**k for k in range(2, int(math.log2(size)))]


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.z_dim = config.z_dim
        resolutions = _resolutions(config.size)
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.z_dim, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        resolutions = _resolutions(config.size)[::-1]
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1)


register(
    Architecture(
        name="dcgan",
        summary="DCGAN as in the paper and pytorch/examples: transposed convs + BatchNorm, BCE loss",
        build_generator=Generator,
        build_discriminator=Discriminator,
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999)),
        z_dim=100,
        width=64,
        batch_size=128,
    )
)
