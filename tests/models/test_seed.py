"""The `seed` architecture: the seed report's Keras DCGAN, rewritten in PyTorch."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan.models import build_discriminator, build_generator, get_architecture
from facegan.models.seed import generator_strides


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_layers_are_the_reports():
    config = get_architecture("seed").config(32)
    G, D = build_generator(config), build_discriminator(config)
    transposed = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.kernel_size for m in transposed] == [(3, 3)] * 5
    assert [m.stride[0] for m in transposed] == [1, 2, 2, 1, 1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 4
    assert G.dense.out_features == 8 * 8 * 3 and config.z_dim == 100
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride) for m in convs] == [((3, 3), (2, 2))] * 4
    dropouts = [m.p for m in D.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.2] * 4


def test_larger_sizes_upsample_in_more_layers():
    assert generator_strides(64) == [1, 2, 2, 2, 1]
    assert generator_strides(128) == [2, 2, 2, 2, 1]


def test_dropout_makes_training_scores_random_and_eval_scores_fixed():
    D = build_discriminator(get_architecture("seed").config(32))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    assert not torch.equal(D(x), D(x))
    D.eval()
    assert torch.equal(D(x), D(x))


@pytest.mark.parametrize("size", [32, 64])
def test_same_parameter_counts_and_shapes_as_the_keras_original(size):
    pytest.importorskip("tensorflow", reason="the Keras original needs TensorFlow (pip install 'facegan[keras]')")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import keras_seed
    finally:
        sys.path.pop(0)
    keras_g, keras_d = keras_seed.build_generator(size), keras_seed.build_discriminator(size)
    config = get_architecture("seed").config(size)
    assert keras_seed.trainable_parameters(keras_g) == count(build_generator(config))
    assert keras_seed.trainable_parameters(keras_d) == count(build_discriminator(config))
    assert tuple(keras_g.output_shape) == (None, size, size, 3)
