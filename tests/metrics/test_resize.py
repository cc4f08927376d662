"""resize_tf1_bilinear: TensorFlow 1 resize_bilinear (align_corners=False, no half-pixel)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan.metrics import resize_tf1_bilinear


def tf1_resize_reference(image: np.ndarray, out_h: int, out_w: int,
                         float32_positions: bool = False) -> np.ndarray:
    """Straight from TF1's definition, one output pixel at a time, in float64.

    With ``float32_positions`` the sample positions ``i * in / out`` are rounded to float32
    first, as TF1 and torch-fidelity do; the interpolation itself stays in float64.
    """
    in_h, in_w = image.shape

    def position(i: int, in_size: int, out_size: int) -> float:
        if float32_positions:
            return float(np.float32(i) * np.float32(in_size / out_size))
        return i * in_size / out_size

    out = np.empty((out_h, out_w))
    for i in range(out_h):
        y = position(i, in_h, out_h)
        y0 = int(np.floor(y))
        y1 = min(y0 + 1, in_h - 1)
        dy = y - y0
        for j in range(out_w):
            x = position(j, in_w, out_w)
            x0 = int(np.floor(x))
            x1 = min(x0 + 1, in_w - 1)
            dx = x - x0
            top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
            bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return out


@pytest.mark.parametrize("in_hw,out", [((218, 178), 299), ((64, 64), 299), ((5, 3), (7, 11)),
                                       ((400, 350), 299), ((299, 299), 299)])
def test_constant_image_stays_constant(in_hw, out):
    x = torch.full((2, 3, *in_hw), 117.0)
    y = resize_tf1_bilinear(x, out)
    expected_hw = (out, out) if isinstance(out, int) else out
    assert y.shape == (2, 3, *expected_hw)
    assert torch.all(y == 117.0)


def test_upscale_2x2_to_4x4_by_hand():
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    # Sample positions 0, 0.5, 1, 1.5; beyond the last pixel the border value is repeated.
    expected = torch.tensor([[0.0, 2.0, 4.0, 4.0],
                             [4.0, 6.0, 8.0, 8.0],
                             [8.0, 10.0, 12.0, 12.0],
                             [8.0, 10.0, 12.0, 12.0]])
    assert torch.equal(resize_tf1_bilinear(x, 4)[0, 0], expected)


def test_downscale_samples_without_antialiasing():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Positions 0 and 2 in both axes: pixels (0,0), (0,2), (2,0), (2,2).
    assert torch.equal(resize_tf1_bilinear(x, 2)[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))


def test_differs_from_half_pixel_bilinear():
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    half_pixel = torch.nn.functional.interpolate(x, size=4, mode="bilinear", align_corners=False)
    assert not torch.allclose(resize_tf1_bilinear(x, 4), half_pixel)


@pytest.mark.parametrize("in_hw,out_hw", [((5, 7), (11, 13)), ((13, 11), (4, 6)), ((9, 9), (9, 20))])
def test_matches_tf1_definition(in_hw, out_hw):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, in_hw).astype(np.float64)
    x = torch.from_numpy(image).float().view(1, 1, *in_hw).repeat(2, 3, 1, 1)
    y = resize_tf1_bilinear(x, out_hw)
    expected = tf1_resize_reference(image, *out_hw)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c].numpy(), expected, atol=1e-3)


def test_non_square_input_is_stretched():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (218, 178)).astype(np.float64)
    y = resize_tf1_bilinear(torch.from_numpy(image).float().view(1, 1, 218, 178), 299)[0, 0]
    # Positions are float32, as in TF1 and torch-fidelity: exact positions differ by up to
    # ~2e-5 pixel, i.e. a few 1e-3 in value; with float32 positions only float rounding is left.
    np.testing.assert_allclose(y.numpy(), tf1_resize_reference(image, 299, 299), atol=1e-2)
    np.testing.assert_allclose(
        y.numpy(), tf1_resize_reference(image, 299, 299, float32_positions=True), atol=1e-4)


def test_same_size_is_identity_and_3d_input_accepted():
    x = torch.rand(3, 299, 299) * 255
    assert torch.equal(resize_tf1_bilinear(x, 299), x)
    assert resize_tf1_bilinear(torch.rand(3, 10, 10), 20).shape == (3, 20, 20)


def test_values_are_not_rounded():
    x = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2)
    assert resize_tf1_bilinear(x, (1, 4))[0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]


def test_rejects_integer_tensors():
    with pytest.raises(TypeError):
        resize_tf1_bilinear(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 16)
