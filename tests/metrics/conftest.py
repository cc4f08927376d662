"""Fixtures for the metrics tests: the shared reference data and a per-session feature cache."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
INCEPTION_FILE = SHARED / "models" / "inception-2015-12-05-fid.pt"
REFERENCE_FILE = SHARED / "reference" / "fid_reference.json"
CELEBA_IMAGES = SHARED / "datasets" / "celeba" / "img_align_celeba"

# The 64 px recipe of shared/reference/README.md: centre 178x178 crop, PIL bicubic to 64.
CROP_BOX_64 = (0, 20, 178, 198)
SIZE_64 = 64
BATCH = 32


def require_shared() -> None:
    missing = [p for p in (INCEPTION_FILE, REFERENCE_FILE, CELEBA_IMAGES) if not p.exists()]
    if missing:
        pytest.skip(f"shared reference data not found ({', '.join(map(str, missing))}); "
                    "it is present at ../shared on developer machines and in CI")


def load_image(file_name: str, small: bool) -> np.ndarray:
    """One image of a reference set as uint8 H x W x 3, built exactly as the recipe says."""
    with Image.open(CELEBA_IMAGES / file_name) as im:
        image = im.convert("RGB")
    if small:
        image = image.crop(CROP_BOX_64).resize((SIZE_64, SIZE_64), Image.BICUBIC)
    return np.asarray(image)


def set_source_files(reference: dict, name: str) -> tuple[list[str], bool]:
    """The JPEG file names a reference set is built from, and whether it is a 64 px set."""
    entry = reference["sets"][name]
    source = entry.get("same_files_as")
    if source is None:
        return list(entry["files"]), False
    jpegs = list(reference["sets"][source]["files"])
    pngs = list(entry["files"])
    assert [Path(f).stem for f in jpegs] == [Path(f).stem for f in pngs], name
    return jpegs, True


def image_batches(files: list[str], small: bool, batch: int = BATCH) -> Iterator[np.ndarray]:
    for start in range(0, len(files), batch):
        yield np.stack([load_image(f, small) for f in files[start:start + batch]])


@pytest.fixture(scope="session")
def reference() -> dict:
    require_shared()
    return json.loads(REFERENCE_FILE.read_text())


@pytest.fixture(scope="session")
def inception():
    require_shared()
    from facegan.metrics import InceptionFeatures

    return InceptionFeatures(INCEPTION_FILE)


class FeatureCache:
    """Features of each reference set, extracted at most once per test session."""

    def __init__(self, reference: dict, inception) -> None:
        self.reference = reference
        self.inception = inception
        self._features: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._features:
            files, small = set_source_files(self.reference, name)
            self._features[name] = self.inception.extract(
                image_batches(files, small), total=len(files), progress=False)
        return self._features[name]


@pytest.fixture(scope="session")
def set_features(reference, inception) -> FeatureCache:
    return FeatureCache(reference, inception)


@pytest.fixture
def restore_registry():
    """Metrics a test registers are gone after it, and the built-in ones are untouched."""
    from facegan.metrics import registry

    before = registry.metric_names()
    yield
    for name in registry.metric_names():
        if name not in before:
            registry.unregister_metric(name)
    assert registry.metric_names() == before
