"""FID and KID from Inception features, computed the way torch-fidelity computes them.

* FID (Heusel et al. 2017): ``|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))`` with
  ``S`` the ddof=1 covariance.  Like torch-fidelity (and TTUR's original ``fid.py``) the trace
  of the matrix square root is taken as the sum of the square roots of the eigenvalues of
  ``S1 @ S2``, keeping the real part.
* KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the polynomial kernel
  ``k(x, y) = (gamma * x.y + coef0) ** degree`` (default ``gamma = 1 / dim``), averaged over
  random subsets drawn with ``numpy.random.RandomState(seed)``: per subset, indices for the
  first set and then for the second, ``choice(n, size, replace=False)``.  The reported std
  is the population std (``np.std``) over subsets.

Our KID works in float64 (torch-fidelity uses the features' float32); the two agree to ~1e-7,
far below KID's subset noise.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "feature_statistics",
    "fid_from_statistics",
    "fid_from_features",
    "kid_from_features",
    "save_statistics",
    "load_statistics",
]

# KID: precompute the full kernel matrices when they hold at most this many entries in all
# (float64: 8 bytes each).  Each subset's sums are then two matrix-vector products.
_FULL_KERNEL_MAX_ELEMENTS = 30_000_000


def _as_2d_float64(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples x features) array, got shape {a.shape}")
    return a


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof=1) of ``features`` (N x D), both float64."""
    f = _as_2d_float64(features, "features")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"mean vectors must both have shape ({d},), got {mu1.shape}, {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must both be {d}x{d}, got {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    # Tr(sqrt(S1 S2)) = sum of sqrt(eigenvalues of S1 S2).  The product of two PSD matrices
    # has real non-negative eigenvalues in exact arithmetic; numerically the near-zero ones
    # come out slightly negative or as complex pairs, so take complex square roots and keep
    # the real part (as torch-fidelity does).
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    tr_covmean = np.sqrt(eigenvalues).real.sum()
    fid = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    if not np.isfinite(fid):
        raise FloatingPointError("FID is not finite: check the features for NaN/inf")
    return fid


def fid_from_features(f1, f2) -> float:
    """FID between two sets of features (N1 x D and N2 x D)."""
    return fid_from_statistics(*feature_statistics(f1), *feature_statistics(f2))


def save_statistics(path: str | os.PathLike[str], mu: np.ndarray, sigma: np.ndarray,
                    **meta) -> None:
    """Save FID statistics to an ``.npz`` file (``mu``, ``sigma`` and optional extra arrays)."""
    np.savez(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             **{k: np.asarray(v) for k, v in meta.items()})


def load_statistics(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(mu, sigma)`` saved by :func:`save_statistics`."""
    with np.load(path) as data:
        return data["mu"].astype(np.float64), data["sigma"].astype(np.float64)


def _polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int, gamma: float,
                       coef0: float) -> np.ndarray:
    return (a @ b.T * gamma + coef0) ** degree


def _unbiased_mmd2(sum_xx: float, trace_xx: float, sum_yy: float, trace_yy: float,
                   sum_xy: float, m: int) -> float:
    """Unbiased MMD^2 from kernel sums: off-diagonal means of K_XX, K_YY minus 2 mean K_XY."""
    return (sum_xx - trace_xx + sum_yy - trace_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)


def kid_from_features(f1, f2, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                      gamma: float | None = None, coef0: float = 1,
                      seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance: ``(mean, std)`` of the unbiased MMD^2 over random subsets.

    ``subset_size`` is capped at ``min(len(f1), len(f2))`` (torch-fidelity refuses instead).
    With the same features, ``seed`` and settings this reproduces torch-fidelity's subsets.
    """
    x = _as_2d_float64(f1, "f1")
    y = _as_2d_float64(f2, "f2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    n1, n2 = x.shape[0], y.shape[0]
    m = min(int(subset_size), n1, n2)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per subset (got sets of {n1} and {n2})")
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    if gamma is None:
        gamma = 1.0 / x.shape[1]

    rng = np.random.RandomState(seed)
    draws = [(rng.choice(n1, m, replace=False), rng.choice(n2, m, replace=False))
             for _ in range(subsets)]

    mmds = np.empty(subsets)
    full_size = n1 * n1 + n2 * n2 + n1 * n2
    if full_size <= _FULL_KERNEL_MAX_ELEMENTS and full_size <= 3 * subsets * m * m:
        # Kernels over all pairs once; a subset without repeats sums K over its index set,
        # i.e. w^T K w with w its 0/1 indicator vector.
        k_xx = _polynomial_kernel(x, x, degree, gamma, coef0)
        k_yy = _polynomial_kernel(y, y, degree, gamma, coef0)
        k_xy = _polynomial_kernel(x, y, degree, gamma, coef0)
        diag_xx, diag_yy = np.diagonal(k_xx), np.diagonal(k_yy)
        for i, (ix, iy) in enumerate(draws):
            wx = np.zeros(n1)
            wx[ix] = 1.0
            wy = np.zeros(n2)
            wy[iy] = 1.0
            mmds[i] = _unbiased_mmd2(wx @ k_xx @ wx, diag_xx[ix].sum(),
                                     wy @ k_yy @ wy, diag_yy[iy].sum(),
                                     wx @ k_xy @ wy, m)
    else:
        for i, (ix, iy) in enumerate(draws):
            a, b = x[ix], y[iy]
            k_xx = _polynomial_kernel(a, a, degree, gamma, coef0)
            k_yy = _polynomial_kernel(b, b, degree, gamma, coef0)
            k_xy = _polynomial_kernel(a, b, degree, gamma, coef0)
            mmds[i] = _unbiased_mmd2(k_xx.sum(), np.trace(k_xx), k_yy.sum(), np.trace(k_yy),
                                     k_xy.sum(), m)
    return float(mmds.mean()), float(mmds.std())
