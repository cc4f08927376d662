"""The fully-connected "vanilla" GAN of introductory reports (Goodfellow et al. 2014 style).

Generator: dense layers with LeakyReLU and BatchNorm, tanh output reshaped to an image.
Discriminator: dense layers with LeakyReLU and dropout, one logit (sigmoid/BCE in the loss).
`width` scales the hidden layers: G uses 4w, 8w, 16w units; D the reverse.
"""
from __future__ import annotations

from torch import Tensor, nn

from .dcgan import init_weights
from .registry import Architecture, ModelConfig, register


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.z_dim = config.z_dim
        self.size = config.size
        hidden = [4 * config.width, 8 * config.width, 16 * config.width]
        layers: list[nn.Module] = [nn.Linear(config.z_dim, hidden[0]), nn.LeakyReLU(0.2, True)]
        for h_in, h_out in zip(hidden, hidden[1:]):
            layers += [nn.Linear(h_in, h_out), nn.BatchNorm1d(h_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(hidden[-1], 3 * config.size * config.size), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z.view(z.shape[0], -1)).view(-1, 3, self.size, self.size)


class Discriminator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = [16 * config.width, 8 * config.width, 4 * config.width]
        layers: list[nn.Module] = [nn.Flatten()]
        for h_in, h_out in zip([3 * config.size * config.size] + hidden, hidden):
            layers += [nn.Linear(h_in, h_out), nn.LeakyReLU(0.2, True), nn.Dropout(0.3)]
        layers += [nn.Linear(hidden[-1], 1)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1)


register(
    Architecture(
        name="mlp",
        summary="fully-connected vanilla GAN (dense + LeakyReLU, BatchNorm in G, BCE loss): the tutorial baseline",
        build_generator=Generator,
        build_discriminator=Discriminator,
    )
)
