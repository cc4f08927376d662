"""The default model shipped inside the package: usable with no data, no download, no checkpoint."""
import numpy as np
import pytest

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


def test_generate_command_uses_the_shipped_model(tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["generate", "-n", "4", "--grid", str(grid)]) == 0
    from PIL import Image

    assert Image.open(grid).size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    assert main(["generate", "-n", "2", "--seed", "5", "--out", str(tmp_path / "faces")]) == 0
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["seed0005.png", "seed0006.png"]
