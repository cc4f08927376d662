"""The age/gender classifier: UTKFace names, learning on synthetic faces, its file, and the shipped classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from facegan import checkpoint
from facegan.data.images import to_model_input
from facegan.metrics.attributes import (
    FACE_BOX,
    SHIPPED_FILE,
    AttributeClassifier,
    AttributeNet,
    fit_attribute_classifier,
    load_attribute_classifier,
    save_attribute_classifier,
    utkface_labels,
)

from ..benchmarks import load_benchmark
from ..conftest import SHARED

UTKFACE_PHOTOS = SHARED / "datasets" / "utkface" / "photos"
FIT = {"epochs": 8, "batch_size": 32, "lr": 3e-3, "seed": 0}


def synthetic_faces(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy 64 px squares whose brightness says the age (0-80 years) and whose tint the gender (red: female)."""
    rng = np.random.default_rng(seed)
    ages = rng.uniform(0, 80, count).astype(np.float32)
    females = rng.integers(0, 2, count).astype(np.float32)
    grey = 40 + 2 * ages[:, None, None, None]
    tint = np.where(females[:, None, None, None] == 1, [[[[30, 0, -30]]]], [[[[-30, 0, 30]]]])
    pixels = grey + tint + rng.normal(0, 12, (count, 64, 64, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), ages, females


@pytest.fixture(scope="module")
def synthetic_classifier() -> AttributeClassifier:
    images, ages, females = synthetic_faces(128, seed=1)
    return fit_attribute_classifier(images, ages, females, **FIT)


@pytest.mark.parametrize("name, labels", [
    ("26_1_0_20170116233224017.jpg", (26.0, 1.0)),
    ("1_0_2_20161219140530307.jpg.chip.jpg", (1.0, 0.0)),
    ("116_1_0_20170120134921760.jpg", (116.0, 1.0)),
    ("photos/85_0_4_20170110183726390.jpg", (85.0, 0.0)),
])
def test_utkface_labels_read_age_and_gender_from_the_name(name, labels):
    assert utkface_labels(name) == labels


@pytest.mark.parametrize("name", [
    "39_1_20170116174525125.jpg.chip.jpg",  # no race field (such names are in the real data set)
    "61_3_0_20170109150557335.jpg",  # gender 3
    "117_0_0_20170110183726390.jpg",  # older than anyone in UTKFace
    "x_0_0_20170110183726390.jpg", "26_1_0.jpg", "face.jpg", "", "-5_0_0_20170110183726390.jpg",
])
def test_utkface_labels_refuse_malformed_names(name):
    assert utkface_labels(name) is None


def test_the_network_maps_64_px_faces_to_age_and_a_logit_reading_only_the_face_box():
    network = AttributeNet().eval()
    faces = torch.rand(3, 3, 64, 64) * 2 - 1
    left, top, right, bottom = FACE_BOX
    outside = torch.zeros_like(faces)  # the faces with everything outside the box blanked
    outside[:, :, top:bottom, left:right] = faces[:, :, top:bottom, left:right]
    with torch.no_grad():
        assert network(faces).shape == (3, 2)
        assert torch.equal(network(faces), network(outside))
    assert sum(p.numel() for p in network.parameters()) * 4 < 2.5e6  # a small file in float32


def test_fitting_learns_synthetic_age_and_gender(synthetic_classifier):
    images, ages, females = synthetic_faces(64, seed=2)
    predicted = synthetic_classifier.predict(images)
    mae = np.abs(predicted["age"] - ages).mean()
    baseline_mae = np.abs(np.median(ages) - ages).mean()
    accuracy = ((predicted["female"] >= 0.5) == (females == 1)).mean()
    assert mae < 0.5 * baseline_mae, (mae, baseline_mae)
    assert accuracy >= 0.9
    assert predicted["age"].dtype == predicted["female"].dtype == np.float32
    assert synthetic_classifier.info["train_images"] == 128


def test_fitting_is_deterministic_for_a_seed():
    images, ages, females = synthetic_faces(24, seed=3)
    settings = {"epochs": 1, "batch_size": 8, "lr": 1e-3}
    first, second, other = (fit_attribute_classifier(images, ages, females, seed=seed, **settings) for seed in (5, 5, 6))
    weights = [c.network.state_dict()["head.weight"] for c in (first, second, other)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_fitting_refuses_labels_that_do_not_fit():
    images, ages, females = synthetic_faces(4, seed=0)
    with pytest.raises(ValueError, match="4 faces but 3 labels"):
        fit_attribute_classifier(images, ages[:3], females[:3], epochs=1)
    with pytest.raises(ValueError, match="females between 0 and 1"):
        fit_attribute_classifier(images, ages, females * 2, epochs=1)
    with pytest.raises(ValueError, match="64 x 64 x 3 uint8"):
        fit_attribute_classifier(images[:, :32, :32], ages, females, epochs=1)


def test_save_and_load_give_the_same_predictions_bit_for_bit(synthetic_classifier, tmp_path):
    path = save_attribute_classifier(synthetic_classifier, tmp_path / "attributes.safetensors", {"note": "test"})
    loaded = load_attribute_classifier(path)
    images, _, _ = synthetic_faces(16, seed=4)
    before, after = synthetic_classifier.predict(images), loaded.predict(images)
    assert np.array_equal(before["age"], after["age"]) and np.array_equal(before["female"], after["female"])
    assert loaded.info == {"note": "test"} and loaded.size == 64
    assert not loaded.network.training


@pytest.mark.parametrize("side", [32, 64, 128])
def test_predict_reads_any_side_as_predict_tensor_does(synthetic_classifier, side):
    images, _, _ = synthetic_faces(5, seed=5)
    resized = np.stack([np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC)) for image in images])
    predicted = synthetic_classifier.predict(resized, batch_size=2)
    assert predicted["age"].shape == predicted["female"].shape == (5,)
    assert np.all((predicted["female"] >= 0) & (predicted["female"] <= 1))
    from_tensor = synthetic_classifier.predict_tensor(to_model_input(resized))
    assert from_tensor.shape == (5, 2)
    np.testing.assert_allclose(predicted["age"], from_tensor[:, 0].numpy(), atol=1.5)  # Pillow vs torch resize


def test_predict_handles_no_images_and_refuses_other_arrays(synthetic_classifier):
    empty = synthetic_classifier.predict(np.zeros((0, 64, 64, 3), np.uint8))
    assert empty["age"].shape == empty["female"].shape == (0,)
    assert synthetic_classifier.predict_tensor(torch.zeros(0, 3, 128, 128)).shape == (0, 2)
    with pytest.raises(ValueError, match="uint8"):
        synthetic_classifier.predict(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        synthetic_classifier.predict_tensor(torch.zeros(3, 64, 64))


def test_loading_what_is_not_a_classifier_names_the_file(synthetic_classifier, tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="missing.safetensors: no such attribute classifier file"):
        load_attribute_classifier(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a classifier" * 50)
    with pytest.raises(ValueError, match="garbage.safetensors"):
        load_attribute_classifier(garbage)
    other_kind = checkpoint.save(tmp_path / "generator.safetensors", {"info": {"a": 1}}, kind="generator")
    with pytest.raises(ValueError, match="generator.safetensors: not an attribute classifier"):
        load_attribute_classifier(other_kind)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="plain.safetensors: not a facegan checkpoint"):
        load_attribute_classifier(plain)


def test_loading_a_damaged_or_crafted_classifier_names_the_file(synthetic_classifier, tmp_path):
    path = save_attribute_classifier(synthetic_classifier, tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.safetensors: truncated"):
        load_attribute_classifier(cut)
    network = synthetic_classifier.network
    huge = {"attributes": {"size": 64, "widths": [32, 64, 128, 100_000]}, "weights": network.state_dict(), "info": {}}
    crafted = checkpoint.save(tmp_path / "huge.safetensors", huge, kind="attributes")
    with pytest.raises(ValueError, match="huge.safetensors: unusable attribute classifier"):
        load_attribute_classifier(crafted)
    wrong = {"attributes": {"size": 64, "widths": [16, 64, 128, 256]}, "weights": network.state_dict(), "info": {}}
    mismatched = checkpoint.save(tmp_path / "wrong.safetensors", wrong, kind="attributes")
    with pytest.raises(ValueError, match="wrong.safetensors: its attribute classifier weights do not fit"):
        load_attribute_classifier(mismatched)


@pytest.mark.skipif(not SHIPPED_FILE.is_file(), reason=f"no shipped classifier at {SHIPPED_FILE}")
def test_the_shipped_classifier_predicts_sane_values():
    classifier = load_attribute_classifier()
    assert classifier.info["held_out_gender_accuracy"] >= 0.8
    assert SHIPPED_FILE.stat().st_size < 2.5e6
    images, _, _ = synthetic_faces(6, seed=6)
    predicted = classifier.predict(images)
    assert np.all((predicted["age"] >= 0) & (predicted["age"] <= 100))
    assert np.all((predicted["female"] >= 0) & (predicted["female"] <= 1))


@pytest.mark.shared
@pytest.mark.skipif(not SHIPPED_FILE.is_file(), reason=f"no shipped classifier at {SHIPPED_FILE}")
def test_the_shipped_classifier_tells_gender_on_held_out_utkface_adults():
    if not UTKFACE_PHOTOS.is_dir():
        pytest.skip(f"UTKFace photos not found at {UTKFACE_PHOTOS} (present on developer machines and in CI)")
    from facegan.data.align import AlignOptions, FaceAligner, backend_available

    if not backend_available():
        pytest.skip("face alignment (dlib) is not installed")
    is_held_out = load_benchmark("attributes").is_held_out
    photos = [path for path in sorted(UTKFACE_PHOTOS.glob("*.jpg"))
              if is_held_out(path.name) and (utkface_labels(path.name) or (0, 0))[0] >= 16][:100]
    aligner = FaceAligner(AlignOptions(size=64, template="celeba"))  # as the benchmark's prepare --align
    faces, labels = [], []
    for path in photos:
        found = aligner(Image.open(path).convert("RGB")).faces
        if found:
            faces.append(found[0].image)
            labels.append(utkface_labels(path.name))
    labels = np.array(labels)
    predicted = load_attribute_classifier().predict(np.stack(faces))
    accuracy = ((predicted["female"] >= 0.5) == (labels[:, 1] == 1)).mean()
    assert len(faces) >= 90
    assert accuracy >= 0.8, accuracy
    assert np.abs(predicted["age"] - labels[:, 0]).mean() <= 12
