"""DCGAN's networks with a spectrally normalised discriminator (Miyato et al. 2018).

The generator is DCGAN's: on a CPU, a few wide 4x4 transposed convolutions run far closer to
peak speed than many thin 3x3 layers, so it sees more images per minute than `resnet`. The
discriminator swaps BatchNorm, which lets it judge a whole batch rather than each image, for
spectral normalisation of every layer, which bounds how sharply it can change its mind and so
keeps its gradients useful to the generator; without BatchNorm it also runs faster.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .dcgan import Generator, _channels, _resolutions
from .losses import NonSaturatingLoss
from .registry import Architecture, ModelConfig, OptimizerSettings, register


class Discriminator(nn.Module):
    """DCGAN's strided 4x4 convolutions, each spectrally normalised, with LeakyReLU(0.2) and no BatchNorm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        resolutions = _resolutions(config.size)[::-1]
        channels = [_channels(config.size, r, config.width) for r in resolutions]
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, channels[0], 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        layers += [spectral_norm(nn.Conv2d(channels[-1], 1, 4, 1, 0))]
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1)


register(
    Architecture(
        name="dcgan-sn",
        summary="DCGAN's generator with a spectrally normalised, BatchNorm-free discriminator; non-saturating loss",
        build_generator=Generator,
        build_discriminator=Discriminator,
        build_loss=lambda config, augment: NonSaturatingLoss(augment),
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999)),
        z_dim=100,
        width=64,
        batch_size=128,
    )
)
