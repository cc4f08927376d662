"""The default model shipped inside the package: usable with no data, no download, no checkpoint."""
import hashlib

import numpy as np
import torch

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
    from PIL import Image

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
    from PIL import Image

    assert Image.open(grid).size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    assert main(["generate", "-n", "2", "--seed", "5", "--out", str(tmp_path / "faces")]) == 0
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["seed0005.png", "seed0006.png"]


# sha256 of the shipped model's fp32 faces for seeds 0-63 (a 64 x 64 x 64 x 3 uint8 array), one per set of
# kernels PyTorch and oneDNN choose. Recorded before the "one home for each fact" refactor on an AVX-512 EPYC;
# the AVX2 and DEFAULT values come from the same machine restricted with ATEN_CPU_CAPABILITY and
# ONEDNN_MAX_CPU_ISA. Between them about 4 of the 786,432 values differ by one grey level. The choice is not
# the capability PyTorch reports alone: a Sapphire Rapids Xeon (AVX512, with AMX) gives the AVX2 value. So
# faces equal to any of them are the shipped faces; a changed model or generation path matches none.
SHIPPED_FACES_SHA256 = {
    "AVX512 (AMD EPYC)": "77b777e647ca3b4c6b2b475294f02f3610786d0c69afa63fcedcc4833b77dce8",
    "AVX2, and AVX512 on a Sapphire Rapids Xeon": "aa114b3093701e117c6dcb3a98c1eb1013b6e1421f2e5eacab43cacbdd1b3f7b",
    "DEFAULT": "15144613e2a0e2e7d2c8027e4bc502f8b3f092600c4f8b409077b71bfaa5f978",
}


def test_shipped_model_faces_are_pixel_identical_to_the_recorded_ones():
    digest = hashlib.sha256(facegan.load().faces(range(64)).tobytes()).hexdigest()
    capability = torch.backends.cpu.get_cpu_capability()
    assert digest in SHIPPED_FACES_SHA256.values(), (
        f"faces of seeds 0-63 hash to {digest} on this {capability} CPU, none of the recorded renderings")
