"""FID and KID from features: closed forms and brute-force re-implementations."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from facegan.metrics import (
    feature_statistics,
    fid_from_features,
    fid_from_statistics,
    kid_from_features,
    load_statistics,
    save_statistics,
)
from facegan.metrics import fid as fid_module


def relu_features(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, Inception-like feature vectors."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(0.3 + shift, 0.4, size=(n, d)), 0).astype(np.float32)


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------

def test_feature_statistics_mean_and_unbiased_covariance():
    f = relu_features(0, 50, 8)
    mu, sigma = feature_statistics(f)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0))
    centred = f.astype(np.float64) - mu
    np.testing.assert_allclose(sigma, centred.T @ centred / (len(f) - 1))
    # torch tensors work too
    mu_t, sigma_t = feature_statistics(torch.from_numpy(f))
    np.testing.assert_allclose(mu_t, mu)
    np.testing.assert_allclose(sigma_t, sigma)


def test_fid_of_a_set_with_itself_is_zero():
    f = relu_features(1, 500, 64)
    assert abs(fid_from_features(f, f)) < 1e-6


def test_fid_of_rank_deficient_covariances_is_finite():
    # Fewer samples than dimensions (like 1,000 samples of 2,048-d Inception features).
    a, b = relu_features(2, 40, 96), relu_features(3, 40, 96, shift=0.1)
    value = fid_from_features(a, b)
    assert np.isfinite(value) and value > 0
    assert abs(fid_from_features(a, a)) < 1e-6


def test_fid_closed_form_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert fid_from_statistics(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_fid_closed_form_scaled_covariance():
    rng = np.random.default_rng(4)
    s = random_spd(rng, 20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    c = 2.25  # Tr(sqrt(S * cS)) = sqrt(c) Tr(S)
    expected = np.sum((mu1 - mu2) ** 2) + (1 + c - 2 * np.sqrt(c)) * np.trace(s)
    assert fid_from_statistics(mu1, s, mu2, c * s) == pytest.approx(expected, rel=1e-9)


def test_fid_general_gaussians_match_sqrtm_formula():
    rng = np.random.default_rng(5)
    s1, s2 = random_spd(rng, 30), random_spd(rng, 30)
    mu1, mu2 = rng.normal(size=30), rng.normal(size=30)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    value = fid_from_statistics(mu1, s1, mu2, s2)
    assert value == pytest.approx(expected, rel=1e-9)
    assert fid_from_statistics(mu2, s2, mu1, s1) == pytest.approx(value, rel=1e-9)


def test_fid_from_features_equals_statistics_route():
    a, b = relu_features(6, 200, 32), relu_features(7, 300, 32, shift=0.05)
    assert fid_from_features(a, b) == pytest.approx(
        fid_from_statistics(*feature_statistics(a), *feature_statistics(b)), rel=1e-12)


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        feature_statistics(np.zeros((1, 5)))


def test_statistics_round_trip(tmp_path):
    mu, sigma = feature_statistics(relu_features(8, 20, 5))
    save_statistics(tmp_path / "stats.npz", mu, sigma, count=20)
    mu2, sigma2 = load_statistics(tmp_path / "stats.npz")
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)


# ----------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------

def brute_force_kid(f1, f2, subsets, subset_size, degree=3, gamma=None, coef0=1, seed=2020):
    """KID written out loop by loop, drawing subsets the way torch-fidelity does."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    gamma = 1.0 / f1.shape[1] if gamma is None else gamma

    def k(a, b):
        return (gamma * float(np.dot(a, b)) + coef0) ** degree

    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]  # first set first ...
        y = f2[rng.choice(len(f2), m, replace=False)]  # ... then the second
        xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
        yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        values.append(xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m))
    return float(np.mean(values)), float(np.std(values))


@pytest.fixture(params=["full-kernel", "per-subset"])
def kid_path(request, monkeypatch):
    """Run KID tests through both code paths (precomputed kernels and per-subset kernels)."""
    if request.param == "per-subset":
        monkeypatch.setattr(fid_module, "_FULL_KERNEL_MAX_ELEMENTS", 0)
    return request.param


@pytest.mark.parametrize("n1,n2,subset_size,subsets", [(12, 15, 6, 7), (9, 9, 9, 3), (20, 11, 5, 10)])
def test_kid_matches_brute_force(kid_path, n1, n2, subset_size, subsets):
    a, b = relu_features(10, n1, 16), relu_features(11, n2, 16, shift=0.2)
    got = kid_from_features(a, b, subsets=subsets, subset_size=subset_size)
    expected = brute_force_kid(a, b, subsets, subset_size)
    assert got[0] == pytest.approx(expected[0], rel=1e-9, abs=1e-12)
    assert got[1] == pytest.approx(expected[1], rel=1e-9, abs=1e-12)


def test_kid_kernel_parameters_and_seed(kid_path):
    a, b = relu_features(12, 14, 8), relu_features(13, 16, 8, shift=0.3)
    kwargs = dict(subsets=5, subset_size=7, degree=2, gamma=0.3, coef0=0.5, seed=7)
    got = kid_from_features(a, b, **kwargs)
    assert got == pytest.approx(brute_force_kid(a, b, **kwargs), rel=1e-9)
    assert kid_from_features(a, b, subsets=5, subset_size=7, seed=8)[0] != pytest.approx(
        kid_from_features(a, b, subsets=5, subset_size=7, seed=7)[0], rel=1e-6)


def test_kid_draw_order_first_set_then_second():
    # Swapping which set is drawn first changes the subsets; the brute force pins the order.
    a, b = relu_features(14, 10, 8), relu_features(15, 10, 8, shift=0.3)
    ours = kid_from_features(a, b, subsets=4, subset_size=5)
    rng = np.random.RandomState(2020)
    swapped = []
    for _ in range(4):
        iy = rng.choice(10, 5, replace=False)
        ix = rng.choice(10, 5, replace=False)
        swapped.append(brute_force_kid(a[ix], b[iy], 1, 5)[0])  # one subset: the whole set
    assert ours[0] != pytest.approx(float(np.mean(swapped)), rel=1e-6)


def test_kid_subset_size_is_capped(kid_path):
    a, b = relu_features(16, 12, 8), relu_features(17, 20, 8, shift=0.1)
    assert kid_from_features(a, b, subsets=3, subset_size=1000) == pytest.approx(
        kid_from_features(a, b, subsets=3, subset_size=12), rel=1e-12)


def test_kid_of_identical_features_is_about_zero(kid_path):
    a = relu_features(18, 300, 64)
    b = relu_features(19, 300, 64, shift=0.2)
    same, same_std = kid_from_features(a, a, subsets=10, subset_size=300)
    different, _ = kid_from_features(a, b, subsets=10, subset_size=300)
    assert different > 0.01
    assert abs(same) < 0.05 * different
    # With every subset the whole set, the unbiased estimate for X against itself is exactly
    # 2 (mean of K - mean of diag K) / (m - 1): zero up to the O(1/m) self-similarity term.
    k = (a.astype(np.float64) @ a.T.astype(np.float64) / 64 + 1) ** 3
    m = len(a)
    assert same == pytest.approx(2 * (k.mean() - np.diagonal(k).mean()) / (m - 1), rel=1e-9)
    assert same_std < 1e-12


def test_kid_float32_and_torch_inputs():
    a, b = relu_features(20, 30, 8), relu_features(21, 30, 8, shift=0.1)
    expected = kid_from_features(a.astype(np.float64), b.astype(np.float64), subsets=4, subset_size=10)
    assert kid_from_features(torch.from_numpy(a), torch.from_numpy(b), subsets=4,
                             subset_size=10) == pytest.approx(expected, rel=1e-12)


def test_kid_rejects_bad_input():
    with pytest.raises(ValueError):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
