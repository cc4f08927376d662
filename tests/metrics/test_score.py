"""`facegan score`: a training checkpoint's discriminator scoring images prepared like training data."""
import json

import numpy as np
import pytest
import torch

import facegan
from facegan import checkpoint
from facegan.checkpoint import CheckpointError
from facegan.cli import main
from facegan.data import DataError
from facegan.data.images import to_model_input
from facegan.generate import resolve_checkpoint, save_generator
from facegan.metrics.score import ScoreConfig, load_discriminator
from facegan.models import ModelConfig, build_discriminator
from tests.conftest import CELEBA, require_shared


def discriminator_by_hand(run_dir) -> torch.nn.Module:
    saved = checkpoint.load(resolve_checkpoint(run_dir), sections=["model", "D"])
    network = build_discriminator(ModelConfig(**saved["model"]))
    network.load_state_dict(saved["D"])
    return network.eval()


@pytest.mark.parametrize("run", ["trained_run", "resnet_run"])
def test_scores_are_the_discriminator_on_the_training_pixels(run, face_folder, request):
    run_dir = request.getfixturevalue(run)
    result = facegan.score(run_dir, [face_folder])
    assert len(result.scores) == 24 and not result.skipped
    dataset = facegan.prepare(face_folder, size=32, min_size=16, progress=False, workers=1)
    network = discriminator_by_hand(run_dir)
    by_source = {item.source: item for item in result.scores}
    for index, entry in enumerate(dataset.manifest["files"]):
        with torch.no_grad():
            logit = float(network(dataset.load_batch([index]))[0])
        item = by_source[str(face_folder / entry["source"])]
        assert item.logit == pytest.approx(logit, abs=1e-5)
        assert item.probability == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)


@pytest.mark.parametrize("run", ["trained_run", "resnet_run"])
def test_an_images_score_does_not_depend_on_the_others(run, face_folder, request):
    run_dir = request.getfixturevalue(run)
    together = {item.source: item.probability for item in facegan.score(run_dir, face_folder).scores}
    one = sorted(face_folder.rglob("face007.*"))[0]
    alone = facegan.score(run_dir, [one]).scores[0]
    assert alone.source == str(one)
    assert alone.probability == pytest.approx(together[str(one)], abs=1e-7)


def test_summary_counts_and_json(trained_run, face_folder, tmp_path):
    out = tmp_path / "scores.json"
    result = facegan.score(config=ScoreConfig(checkpoint=str(trained_run), images=(str(face_folder),), out=str(out)))
    probabilities = np.array([item.probability for item in result.scores])
    assert ((probabilities > 0) & (probabilities < 1)).all()
    assert result.mean == pytest.approx(probabilities.mean())
    assert result.above_threshold == int((probabilities > 0.5).sum())
    saved = json.loads(out.read_text())
    assert saved["mean"] == pytest.approx(result.mean) and len(saved["scores"]) == 24
    assert saved["step"] == 4 and f"{len(result.scores)} images" in result.summary()
    assert "<table>" in result._repr_html_()


def test_damaged_images_are_skipped_with_their_reason(trained_run, face_folder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"these bytes are no image")
    good = sorted(face_folder.rglob("*.png"))[:2]
    result = facegan.score(trained_run, [*good, broken])
    assert [item.source for item in result.scores] == [str(p) for p in good]
    assert result.skipped == [(str(broken), "not an image")]
    with pytest.raises(DataError, match="no images to score"):
        facegan.score(trained_run, [broken])


def test_generator_only_files_have_no_discriminator(trained_run, tmp_path):
    small = save_generator(trained_run, tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="holds no discriminator"):
        load_discriminator(small)


def test_a_generator_file_saved_with_its_discriminator_scores_like_the_run(trained_run, face_folder, tmp_path):
    small = save_generator(trained_run, tmp_path / "g+d.safetensors", discriminator=True)
    stored = checkpoint.load(small, sections=["D"])["D"]
    assert {value.dtype for value in stored.values() if value.is_floating_point()} == {torch.float16}
    files = sorted(face_folder.rglob("*.png"))[:4]
    full, compact = facegan.score(trained_run, files).scores, facegan.score(small, files).scores
    assert [a.probability for a in compact] == pytest.approx([a.probability for a in full], abs=5e-3)


def test_cli_prints_each_score_and_a_summary(trained_run, face_folder, tmp_path, capsys):
    files = sorted(face_folder.rglob("*.png"))[:3]
    assert main(["score", "--checkpoint", str(trained_run), *map(str, files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("mean P(real)")
    expected = facegan.score(trained_run, files).scores
    for line, item in zip(lines, expected):
        assert line == f"{item.probability:.3f}  {item.source}"

    small = save_generator(trained_run, tmp_path / "g.safetensors")
    assert main(["score", "--checkpoint", str(small), str(files[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no discriminator" in err and len(err.splitlines()) == 1
    assert main(["score", "--checkpoint", "", str(files[0])]) == 2
    assert "--checkpoint must name" in capsys.readouterr().err


def test_align_follows_the_run_unless_told(trained_run):
    scorer = load_discriminator(trained_run)
    assert scorer.training["prepare"]["align"] is False and scorer.align_options() is None
    options = scorer.align_options(align=True)
    assert (options.size, options.template, options.faces) == (32, scorer.training["prepare"]["template"], "largest")


def test_aligned_scoring_scores_the_largest_aligned_face(trained_run):
    require_shared()
    pytest.importorskip("dlib", reason="face alignment needs the align extra")
    photo = CELEBA / "img_align_celeba" / "000017.jpg"  # dlib finds one face in it
    scored = facegan.score(trained_run, [photo], align=True).scores[0]
    face = facegan.align(str(photo), size=32)[0].image
    with torch.no_grad():
        logit = float(discriminator_by_hand(trained_run)(to_model_input(np.asarray(face)[None]))[0])
    assert scored.logit == pytest.approx(logit, abs=1e-5)
    plain = facegan.score(trained_run, [photo], align=False).scores[0]
    assert plain.logit != pytest.approx(logit, abs=1e-5)
