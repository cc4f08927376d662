"""Parity with torch-fidelity 0.4.0 on real CelebA photos (shared/reference/fid_reference.json).

Rebuilds the reference sets (raw 178x218 JPEGs and the 64 px recipe) in memory, extracts
Inception features with facegan and compares feature snippets, FID and KID with the reference.
Each set's features are extracted once per session (see ``set_features`` in conftest.py);
extracting the four sets takes several minutes on a 2-core CPU.

(A, C) adds another 1,000-image extraction; it runs only with FACEGAN_PARITY_SET_C=1.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from facegan.metrics import fid_from_features, kid_from_features

from .conftest import load_image, require_shared

# Extracting 2,000-image sets takes about 4 minutes on a fast 2-core CPU and 12 on a slow one.
pytestmark = [pytest.mark.shared, pytest.mark.slow, pytest.mark.timeout(1800)]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def result_for(reference: dict, first: str, second: str) -> dict:
    for entry in reference["results"]:
        if (entry["input1"], entry["input2"]) == (first, second):
            return entry
    raise KeyError((first, second))


@pytest.mark.parametrize("set_name", ["SET_A", "SET_A64"])
def test_feature_snippets(reference, inception, set_name):
    snippets = reference["feature_snippets"][set_name]
    small = set_name.endswith("64")
    images = np.stack([load_image(s["file"].rsplit(".", 1)[0] + ".jpg", small) for s in snippets])
    for snippet, image in zip(snippets, images):
        assert list(image.shape[:2]) == snippet["input_size_hw"]
    features = inception(images).numpy()
    tol = reference["tolerances"]["snippet_abs"]
    for snippet, row in zip(snippets, features):
        np.testing.assert_allclose(row[:8], snippet["first8"], rtol=0, atol=tol,
                                   err_msg=snippet["file"])
        assert abs(float(row.mean()) - snippet["mean2048"]) <= tol, snippet["file"]


def test_channels_last_does_not_change_features(reference, inception):
    files = reference["sets"]["SET_B"]["files"][:2]
    images = np.stack([load_image(f, small=False) for f in files])
    saved = inception.channels_last
    try:
        inception.channels_last = True
        a = inception(images).numpy()
        inception.channels_last = False
        b = inception(images).numpy()
    finally:
        inception.channels_last = saved
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def check_pair(reference: dict, set_features, first: str, second: str) -> None:
    expected = result_for(reference, first, second)
    f1, f2 = set_features(first), set_features(second)
    assert f1.shape == f2.shape == (1000, 2048)

    fid = fid_from_features(f1, f2)
    rel = reference["tolerances"]["fid_relative"]
    assert fid == pytest.approx(expected["fid"], rel=rel), (fid, expected["fid"])

    kid_mean, kid_std = kid_from_features(f1, f2, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE)
    kid_tol = max(expected["kid_std"] / 10, 1e-6)
    assert abs(kid_mean - expected["kid_mean"]) <= kid_tol, (kid_mean, expected["kid_mean"])
    assert kid_std < 1e-6  # every subset is the whole set: only rounding noise

    # 500-image subsets depend on the random draws; they match only if ours are the same.
    small = expected["supplementary"]["kid_subset_size_500"]
    mean_500, std_500 = kid_from_features(f1, f2, subsets=small["kid_subsets"],
                                          subset_size=small["kid_subset_size"],
                                          seed=small["rng_seed"])
    assert abs(mean_500 - small["kid_mean"]) <= small["kid_std"] / 10, (mean_500, small)
    assert std_500 == pytest.approx(small["kid_std"], rel=0.01), (std_500, small)


def test_fid_kid_raw_jpegs(reference, set_features):
    check_pair(reference, set_features, "SET_A", "SET_B")


def test_fid_kid_64px(reference, set_features):
    check_pair(reference, set_features, "SET_A64", "SET_B64")


def test_fid_kid_train_partition(reference, set_features):
    require_shared()
    if os.environ.get("FACEGAN_PARITY_SET_C") != "1":
        pytest.skip("(A, C) costs another 1,000-image extraction; set FACEGAN_PARITY_SET_C=1")
    check_pair(reference, set_features, "SET_A", "SET_C")
