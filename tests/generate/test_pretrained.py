"""The default model shipped inside the package: usable with no data, no download, no checkpoint."""
from pathlib import Path

import numpy as np
from PIL import Image

import facegan
from facegan.api import PRETRAINED_DIR, default_model_path
from facegan.cli import main


def test_load_without_a_path_gives_the_shipped_model():
    generator = facegan.load()
    assert generator.size == 64
    assert generator.info["checkpoint"] == str(default_model_path())
    faces = generator.faces([0, 1, 2, 3])
    assert faces.shape == (4, 64, 64, 3)
    assert np.array_equal(faces, generator.faces([0, 1, 2, 3]))
    assert not np.array_equal(faces[0], faces[1])
    assert faces.std() > 20, "a trained generator makes varied, contrasted faces"


def test_shipped_file_is_small_and_carries_its_model_card():
    path = default_model_path()
    assert path.stat().st_size <= 25 * 1024 * 1024
    info = facegan.load().info
    for key in ("arch", "data", "steps", "kimg", "hardware", "hours", "fid", "kid_mean", "n_fake"):
        assert key in info, key
    assert info["n_fake"] == 10_000
    card = (PRETRAINED_DIR / path.with_suffix(".md").name).read_text()
    assert f"{info['fid']:.2f}" in card
    assert "non-commercial" in card


def test_shipped_file_carries_a_discriminator_that_scores_without_a_checkpoint(tmp_path, capsys):
    from facegan import checkpoint

    assert "D" in checkpoint.read_metadata(default_model_path())
    facegan.load().generate(1, seed=3)[0].save(tmp_path / "fake.png")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "grey.png")
    assert main(["score", str(tmp_path / "fake.png"), str(tmp_path / "grey.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("mean P(real)") and "celeba64.safetensors" in lines[-1]
    scores = {line.split()[1]: float(line.split()[0]) for line in lines[:-1]}
    assert all(0 <= value <= 1 for value in scores.values()) and len(scores) == 2


def test_generate_command_uses_the_shipped_model(tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["generate", "-n", "4", "--grid", str(grid)]) == 0
    assert Image.open(grid).size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    assert main(["generate", "-n", "2", "--seed", "5", "--out", str(tmp_path / "faces")]) == 0
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["seed0005.png", "seed0006.png"]


README_GRID = Path(__file__).resolve().parents[2] / "docs" / "faces-celeba64.png"


def test_shipped_model_draws_the_faces_of_the_readme_grid():
    """The README's grid is seeds 0-63 of the shipped model, rendered once on one machine. The kernels PyTorch and
    oneDNN choose for a CPU (AVX2, AVX-512 on AMD or on Intel with AMX, none) move a handful of its 842,700 values by
    one grey level; a changed model or generation path moves far more, and so does a grid left stale by a re-ship."""
    rendered = np.asarray(facegan.load().grid(64, ncols=8), dtype=np.int16)
    recorded = np.asarray(Image.open(README_GRID).convert("RGB"), dtype=np.int16)
    assert rendered.shape == recorded.shape
    difference = np.abs(rendered - recorded)
    assert difference.max() <= 1 and np.count_nonzero(difference) <= 100, (
        f"{np.count_nonzero(difference)} values differ, by up to {difference.max()} grey levels")
