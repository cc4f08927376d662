"""Face alignment: the geometry (no backend needed), then detection and `prepare --align` on real CelebA faces."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from PIL import Image

from facegan.cli import main
from facegan.data import DataError, PrepareConfig, prepare
from facegan.data.align import INSTALL_HINT, AlignOptions, backend_available
from facegan.data.geometry import (
    TEMPLATES,
    Detection,
    Similarity,
    ffhq_layout,
    filled_fraction,
    fit_similarity,
    suppress_duplicates,
    unrotation,
    warp_reflected,
)
from facegan.data.summary import aligned_summary_line

prepare_module = importlib.import_module("facegan.data.prepare")  # `facegan.data.prepare` is the function
from tests.conftest import CELEBA, require_shared

FACE_FILES = ("000017.jpg", "000034.jpg", "000054.jpg")  # CelebA photos whose faces HOG finds


# --- geometry --------------------------------------------------------------------------------------------------


def test_similarity_fit_recovers_a_known_transform_from_noisy_points():
    rng = np.random.default_rng(0)
    truth = Similarity.from_params(1.7, -23.0, 40.0, -12.5)
    src = rng.uniform(0, 100, (12, 2))
    dst = truth.apply(src) + rng.normal(0, 0.05, src.shape)
    fitted = fit_similarity(src, dst)
    assert fitted.scale == pytest.approx(1.7, rel=1e-3)
    assert fitted.angle_deg == pytest.approx(-23.0, abs=0.05)
    np.testing.assert_allclose(fitted.matrix[:, 2], [40.0, -12.5], atol=0.2)
    np.testing.assert_allclose(fitted.inverse().apply(fitted.apply(src)), src, atol=1e-9)


def test_similarity_fit_never_shears_or_mirrors():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    mirrored = src * [-1, 1]
    linear = fit_similarity(src, mirrored).matrix[:, :2]
    assert np.linalg.det(linear) > 0  # a rotation and a scale, not a reflection
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * (linear[0, 0] ** 2 + linear[1, 0] ** 2), atol=1e-12)


def test_template_margin_and_ffhq_geometry():
    celeba = TEMPLATES["celeba"]
    names = ("eye_left", "eye_right")
    plain = celeba.positions(names, 100)
    wide = celeba.positions(names, 100, margin=0.25)
    np.testing.assert_allclose(wide, (plain + 25) / 1.5)  # a quarter of the template crop added on each side
    ffhq = ffhq_layout(celeba.points)
    eye_distance = ffhq["eye_right"][0] - ffhq["eye_left"][0]
    assert eye_distance == pytest.approx(0.25, abs=1e-3)  # FFHQ: crop side = 4 x the eye distance here
    assert ffhq["eye_left"][1] == pytest.approx(ffhq["eye_right"][1], abs=2e-3)
    assert TEMPLATES["ffhq"].points == ffhq


def test_warp_matches_a_plain_crop_when_the_transform_is_a_shift():
    pixels = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    crop, filled = warp_reflected(pixels, Similarity.from_params(1.0, 0.0, -10.0, -20.0), 32)
    np.testing.assert_array_equal(crop, pixels[20:52, 10:42])
    assert filled == 0.0


def test_parts_outside_the_photo_are_filled_by_reflection_and_counted():
    pixels = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    shift_left_half_outside = Similarity.from_params(1.0, 0.0, 10.0, 0.0)  # crop x 0..9 lie left of the photo
    crop, filled = warp_reflected(pixels, shift_left_half_outside, 20)
    assert filled == pytest.approx(0.5)
    np.testing.assert_array_equal(crop[:, 10:], pixels[:20, :10])
    np.testing.assert_array_equal(crop[:, :10], pixels[:20, :10][:, ::-1])  # mirrored at the edge
    assert filled_fraction(Similarity.from_params(1.0, 0.0, 0.0, 0.0), 20, 40, 40) == 0.0


def test_downscaling_warp_is_antialiased():
    stripes = np.zeros((400, 400, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: a plain point sample would give black or white
    crop, _ = warp_reflected(stripes, Similarity.from_params(0.1, 0.0, 0.0, 0.0), 40)
    assert abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 10


def test_rotated_search_maps_back_and_duplicates_are_merged():
    image = Image.new("L", (300, 200), 0)
    image.putpixel((50, 40), 255)
    turned = image.rotate(30, resample=Image.NEAREST, expand=True)
    found = np.argwhere(np.asarray(turned) > 0)[0][::-1] + 0.5
    np.testing.assert_allclose(unrotation(30, turned.size, image.size).apply(found), [50.5, 40.5], atol=1.0)
    boxes = [Detection((0, 0, 100, 100), 1.0, 0.0), Detection((10, 5, 110, 105), 2.0, 25.0),
             Detection((300, 0, 400, 100), 0.5, 0.0)]
    assert suppress_duplicates(boxes) == [boxes[1], boxes[2]]


def test_invalid_align_options_are_data_errors():
    with pytest.raises(DataError, match="template"):
        AlignOptions(template="mona-lisa")
    with pytest.raises(DataError, match="faces"):
        PrepareConfig(data="x", align=True, faces="some")
    with pytest.raises(DataError, match="margin"):
        PrepareConfig(data="x", align=True, margin=-0.1)
    with pytest.raises(DataError, match="turned"):
        AlignOptions(turned="sideways")


def test_missing_backend_names_the_extra(face_folder, monkeypatch):
    monkeypatch.setattr(prepare_module, "backend_available", lambda: False)
    with pytest.raises(DataError, match=r'pip install "facegan\[align\]"'):
        prepare(PrepareConfig(data=str(face_folder), align=True, workers=1), progress=False)
    assert 'pip install "facegan[align]"' in INSTALL_HINT


def test_summary_line_counts_photos_faces_and_misses():
    line = aligned_summary_line(1204, 1377, 15, {"no face": 40, "only faces too small": 21, "truncated": 2})
    assert line == "1,204 photos -> 1,377 faces; 61 photos without a face; 15 faces too small; 2 skipped (2 truncated)"


# --- with the dlib backend and real faces ----------------------------------------------------------------------


def needs_backend():
    pytest.importorskip("dlib", reason='the alignment backend is optional: pip install "facegan[align]"')
    if not backend_available():
        pytest.skip('face-recognition-models is not installed: pip install "facegan[align]"')


def celeba_photo(name: str) -> Image.Image:
    require_shared()
    return Image.open(CELEBA / "img_align_celeba" / name).convert("RGB")


def paste(canvas: Image.Image, photo: Image.Image, transform: Similarity) -> Image.Image:
    layer = photo.convert("RGBA").transform(canvas.size, Image.AFFINE, tuple(transform.inverse().matrix.ravel()),
                                            resample=Image.BICUBIC)
    return Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB")


def noise_canvas(size=(520, 400), seed=0) -> Image.Image:
    small = np.random.default_rng(seed).integers(0, 256, (size[1] // 20, size[0] // 20, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


@pytest.fixture(scope="module")
def reference_face():
    """A real CelebA face and where the aligner puts it when given the photo as it is."""
    needs_backend()
    import facegan

    photo = celeba_photo(FACE_FILES[0])
    (face,) = facegan.align(np.asarray(photo))
    return photo, face


def test_tilted_scaled_face_is_recovered(reference_face):
    import facegan

    photo, reference = reference_face
    placed = Similarity.from_params(1.6, 20.0, 230.0, 90.0)
    canvas = paste(noise_canvas((640, 560)), photo, placed)
    (face,) = facegan.align(canvas)
    expected = Similarity(reference.transform.matrix @ np.vstack([placed.inverse().matrix, [0, 0, 1]]))
    assert face.transform.scale == pytest.approx(expected.scale, rel=0.05)
    assert face.transform.angle_deg == pytest.approx(expected.angle_deg, abs=2.5)
    eyes = placed.apply(np.stack([reference.landmarks["eye_left"], reference.landmarks["eye_right"]]))
    error = np.linalg.norm(face.transform.apply(eyes) - expected.apply(eyes), axis=1).max() / 64
    assert error < 0.03  # eye positions in the crop within 3% of its width
    assert face.image.shape == (64, 64, 3) and face.filled == 0.0
    assert set(face.landmarks) >= {"eye_left", "eye_right", "nose_tip", "mouth_left", "mouth_right"}


@pytest.mark.parametrize("turned", ["auto", "always"])
def test_strongly_tilted_face_is_found_by_the_turned_search(reference_face, turned):
    import facegan

    photo, reference = reference_face
    placed = Similarity.from_params(1.4, -50.0, 150.0, 170.0)  # beyond what upright HOG finds
    canvas = paste(noise_canvas((640, 560)), photo, placed)
    assert facegan.align(canvas, turned="never") == [], "upright HOG alone misses this face"
    (face,) = facegan.align(canvas, turned=turned)
    assert face.transform.angle_deg == pytest.approx(reference.transform.angle_deg + 50.0, abs=3)
    left, right = face.transform.apply(np.stack([face.landmarks["eye_left"], face.landmarks["eye_right"]]))
    assert abs(left[1] - right[1]) < 1.5


def test_min_face_keeps_a_face_whose_box_is_a_pyramid_step_too_narrow(reference_face, monkeypatch):
    from facegan.data.align import FaceAligner

    photo, _ = reference_face
    canvas = paste(noise_canvas((400, 400)), photo, Similarity.from_params(0.8, 0.0, 100.0, 80.0))
    (face,) = FaceAligner(AlignOptions())(canvas).faces
    centre, half = np.add(face.box[:2], face.box[2:]) / 2, 0.85 * face.width / 2  # the next box size down
    narrow_box = (*(centre - half), *(centre + half))
    monkeypatch.setattr(FaceAligner, "detect", lambda self, pixels: [Detection(narrow_box, 1.0, 0.0)])
    eye_width = FaceAligner(AlignOptions())(canvas).faces[0].eye_width()
    assert 2 * half < eye_width < 2 * half / 0.8
    kept = FaceAligner(AlignOptions(min_face=int(eye_width)))(canvas)
    assert len(kept.faces) == 1 and kept.too_small == 0
    dropped = FaceAligner(AlignOptions(min_face=int(eye_width) + 1))(canvas)
    assert dropped.faces == [] and dropped.too_small == 1


def test_images_without_faces_give_no_faces(reference_face):
    import facegan

    gradient = np.linspace(0, 255, 320 * 240 * 3).reshape(240, 320, 3).astype(np.uint8)
    assert facegan.align(gradient) == []
    assert facegan.align(noise_canvas((320, 240), seed=3)) == []


def test_face_at_the_border_is_filled_and_flagged(reference_face):
    import facegan

    photo, _ = reference_face
    canvas = paste(noise_canvas((400, 300)), photo, Similarity.from_params(1.2, 0.0, -40.0, 20.0))
    (face,) = facegan.align(canvas, template="celeba", margin=0.2)
    assert 0.02 < face.filled < 0.5
    assert face.record()["filled"] == round(face.filled, 4)


def test_exif_rotated_photo_is_aligned_upright(reference_face, tmp_path):
    import facegan

    photo, reference = reference_face
    canvas = paste(noise_canvas((360, 300)), photo, Similarity.from_params(1.0, 0.0, 90.0, 40.0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view": the pixels are stored turned a quarter counter-clockwise
    canvas.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", quality=95, exif=exif)
    (face,) = facegan.align(tmp_path / "turned.jpg")
    assert abs(face.transform.angle_deg) < 3
    left, right = face.transform.apply(np.stack([face.landmarks["eye_left"], face.landmarks["eye_right"]]))
    assert abs(left[1] - right[1]) < 1.5 and right[0] - left[0] > 10
    np.testing.assert_allclose(face.image.astype(float).mean(), reference.image.astype(float).mean(), atol=12)


@pytest.fixture
def photo_folder(tmp_path):
    """Four photos: one face; two faces; no face; one face too small for --min-face 60."""
    needs_backend()
    folder = tmp_path / "photos"
    folder.mkdir()
    faces = [celeba_photo(name) for name in FACE_FILES]
    paste(noise_canvas(seed=1), faces[0], Similarity.from_params(1.5, 10.0, 60.0, 40.0)).save(folder / "one.jpg")
    two = paste(noise_canvas((700, 420), seed=2), faces[1], Similarity.from_params(1.4, 0.0, 20.0, 50.0))
    paste(two, faces[2], Similarity.from_params(1.0, -8.0, 420.0, 90.0)).save(folder / "two.png")
    noise_canvas(seed=4).save(folder / "none.png")
    paste(noise_canvas(seed=5), faces[0], Similarity.from_params(0.45, 0.0, 200.0, 150.0)).save(folder / "small.jpg")
    return folder


def test_prepare_align_cli_summary_and_manifest(photo_folder, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["prepare", "--data", str(photo_folder), "--align", "--faces", "all", "--min-face", "60",
                 "--size", "32", "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "4 photos -> 3 faces; 2 photos without a face; 1 face too small" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(f["source"], f["face"]) for f in manifest["files"]] == [("one.jpg", 0), ("two.png", 0), ("two.png", 1)]
    first = manifest["files"][0]
    assert set(first) >= {"source", "split", "face", "score", "box", "landmarks", "transform", "filled"}
    assert first["transform"]["rotation_deg"] == pytest.approx(-10.0, abs=3)
    assert manifest["align"]["template"] == "celeba" and manifest["faces_too_small"] == 1
    assert {s["source"]: s["reason"] for s in manifest["skipped"]} == {"none.png": "no face",
                                                                         "small.jpg": "only faces too small"}
    assert np.load(out / "images.npy").shape == (3, 32, 32, 3)


def test_largest_face_only_and_cache_key_includes_alignment(photo_folder, capsys):
    options = dict(data=str(photo_folder), size=32, align=True, min_face=60, workers=1)
    largest = prepare(PrepareConfig(**options), progress=False)
    assert [(f["source"], f["face"]) for f in largest.manifest["files"]] == [("one.jpg", 0), ("two.png", 0)]
    assert prepare(PrepareConfig(**options), progress=False).root == largest.root
    assert "reusing prepared cache" in capsys.readouterr().err
    ffhq = prepare(PrepareConfig(**options, template="ffhq"), progress=False)
    plain = prepare(PrepareConfig(data=str(photo_folder), size=32, workers=1), progress=False)
    assert len({largest.root, ffhq.root, plain.root}) == 3
    assert ffhq.manifest["align"]["template"] == "ffhq" and len(plain) == 4
    assert not np.array_equal(ffhq.images[0], largest.images[0])


def test_train_passes_alignment_options(photo_folder):
    from facegan.training import TrainConfig
    from facegan.training.loop import load_dataset

    dataset = load_dataset(TrainConfig.create(str(photo_folder), size=32, align=True, faces="all", min_face=60,
                                       workers=1, progress=False))
    assert len(dataset) == 3 and dataset.manifest["align"]["faces"] == "all"


def test_repeated_align_calls_load_the_models_once(reference_face):
    import facegan
    from facegan.data.align import shared_aligner

    photo, reference = reference_face
    before = shared_aligner.cache_info()
    (again,) = facegan.align(np.asarray(photo))
    assert shared_aligner.cache_info().hits == before.hits + 1  # the same aligner, its models already loaded
    assert np.array_equal(again.image, reference.image)
    (other,) = facegan.align(np.asarray(photo), size=32)  # other options: an aligner of their own
    assert other.image.shape == (32, 32, 3)
