"""Adaptive augmentation's transforms: identity at p = 0, differentiable, whole-pixel geometry, per-image choices."""
import pytest
import torch

from facegan.models.augment import (ADA_TRANSFORMS, AdaptiveAugment, integer_translation, parse_policy, rotate90,
                                    xflip)


def images(n: int = 6, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, size, size) * 2 - 1


def test_at_p_zero_images_pass_unchanged_and_no_random_numbers_are_drawn():
    x = images()
    state = torch.get_rng_state()
    assert AdaptiveAugment(0.0)(x) is x
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("transform", ADA_TRANSFORMS, ids=lambda t: t.__name__)
def test_every_transform_keeps_the_shape_and_passes_gradients(transform):
    x = images().requires_grad_(True)
    y = transform(x)
    assert y.shape == x.shape
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_at_p_one_every_image_changes_and_gradients_reach_the_input():
    x = images(8).requires_grad_(True)
    torch.manual_seed(1)
    y = AdaptiveAugment(1.0)(x)
    assert all(not torch.allclose(y[i], x[i]) for i in range(8))
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0


def test_the_probability_is_per_image():
    x = images(400, 8)
    torch.manual_seed(2)
    y = AdaptiveAugment(0.1)(x)
    untouched = sum(torch.equal(y[i], x[i]) for i in range(400)) / 400
    assert untouched == pytest.approx(0.9 ** len(ADA_TRANSFORMS), abs=0.08)


def test_geometric_transforms_only_move_whole_pixels():
    x = images(4)
    for transform in (xflip, rotate90, integer_translation):
        y = transform(x)
        for i in range(4):
            assert set(y[i].flatten().tolist()) <= set(x[i].flatten().tolist()), transform.__name__
    assert torch.equal(xflip(x), x.flip(3))


def test_translation_reflects_at_the_border():
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8).contiguous()
    torch.manual_seed(0)
    for _ in range(20):
        y = integer_translation(x, ratio=0.25)
        row = y[0, 0, 0].tolist()
        shift = row.index(0.0) if 0.0 in row else None
        assert all(abs(a - b) == 1 for a, b in zip(row, row[1:])), f"a reflected ramp stays a ramp: {row}"
        assert shift is None or 0 <= shift < 8


def test_ada_is_given_alone():
    assert parse_policy("ada") == ["ada"]
    with pytest.raises(ValueError, match="alone"):
        parse_policy("ada,color")
