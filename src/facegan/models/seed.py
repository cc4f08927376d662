"""The seed report's Keras DCGAN, rewritten faithfully in PyTorch: the baseline facegan must beat.

The report trained this model with Keras `train_on_batch` on 32 px faces:

* Generator: z (100) -> Dense(8*8*3) -> reshape 8x8x3 -> five 3x3 Conv2DTranspose layers
  ("same" padding), the first four followed by BatchNorm and LeakyReLU(0.2), the last one
  giving RGB through tanh. At 32 px two of them upsample (strides 1, 2, 2, 1, 1).
* Discriminator: four strided 3x3 Conv2D ("same" padding, stride 2) each followed by
  LeakyReLU(0.2) and Dropout(0.2), then Flatten and Dense(1) (sigmoid/BCE in the loss).
* Adam(2e-4, beta_1=0.5), binary cross-entropy.

Keras defaults are kept where they change the model: every layer has a bias, weights start
Glorot-uniform, BatchNorm uses momentum 0.99 (PyTorch momentum 0.01) and epsilon 1e-3.
`benchmarks/keras_seed.py` builds the same model in Keras; the tests check that both have the
same parameter counts.

32 px is the report's model. At 64 and 128 px one or two more of the transposed convolutions
upsample (strides 1, 2, 2, 2, 1 and 2, 2, 2, 2, 1) and the discriminator's flattened map grows
accordingly; nothing else changes.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .registry import Architecture, ModelConfig, OptimizerSettings, register

START = 8  # the Dense layer makes an 8 x 8 x 3 map
G_LAYERS = 5
LEAK = 0.2
DROPOUT = 0.2
KERAS_BN_MOMENTUM = 0.01  # Keras momentum=0.99 is PyTorch momentum=0.01
KERAS_BN_EPS = 1e-3


def generator_channels(width: int) -> list[int]:
    """Output channels of the five transposed convolutions: 4w, 2w, 2w, w, then RGB."""
    return [4 * width, 2 * width, 2 * width, width, 3]


def discriminator_channels(width: int) -> list[int]:
    return [width, 2 * width, 2 * width, 4 * width]


def generator_strides(size: int) -> list[int]:
    """Strides of the five transposed convolutions: the upsampling ones sit in the middle (1, 2, 2, 1, 1 at 32 px)."""
    ups = int(math.log2(size // START))
    strides = [1, 2, 2, 1, 1]
    for i in (3, 0)[: ups - 2]:
        strides[i] = 2
    return strides


def keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases (BatchNorm keeps PyTorch's ones/zeros, as Keras does)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def transposed_conv(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose2d:
    """A 3x3 Conv2DTranspose with Keras "same" padding: the output is exactly `stride` times the input."""
    return nn.ConvTranspose2d(c_in, c_out, 3, stride, padding=1, output_padding=stride - 1)


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.z_dim = config.z_dim
        self.dense = nn.Linear(config.z_dim, START * START * 3)
        channels = [3] + generator_channels(config.width)
        strides = generator_strides(config.size)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-2], channels[1:-1], strides):
            layers += [transposed_conv(c_in, c_out, stride), nn.BatchNorm2d(c_out, KERAS_BN_EPS, KERAS_BN_MOMENTUM),
                       nn.LeakyReLU(LEAK, True)]
        layers += [transposed_conv(channels[-2], channels[-1], strides[-1]), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(keras_init)

    def forward(self, z: Tensor) -> Tensor:
        # Keras reshapes to channels-last 8x8x3; the permute keeps the Dense units in that order.
        x = self.dense(z.view(z.shape[0], -1)).view(-1, START, START, 3).permute(0, 3, 1, 2)
        return self.main(x)


class Discriminator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = [3] + discriminator_channels(config.width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.LeakyReLU(LEAK, True), nn.Dropout(DROPOUT)]
        self.main = nn.Sequential(*layers)
        final = config.size // 2 ** len(channels[1:])
        self.classify = nn.Linear(channels[-1] * final * final, 1)
        self.apply(keras_init)

    def forward(self, x: Tensor) -> Tensor:
        # Flatten in Keras's channels-last order, so the Dense weights line up with the Keras model's.
        return self.classify(self.main(x).permute(0, 2, 3, 1).flatten(1)).view(-1)


register(
    Architecture(
        name="seed",
        summary="the seed report's Keras DCGAN (Dense->8x8x3, five 3x3 transposed convs, 4-conv D with dropout): "
                "the baseline, 32 px as reported",
        build_generator=Generator,
        build_discriminator=Discriminator,
        optimizer=OptimizerSettings(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999)),
        z_dim=100,
        width=64,
        batch_size=128,
    )
)
