import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import facegan
from facegan.checkpoint import CheckpointError
from facegan.generate import GenerateConfig, InterpolateConfig, latent_walk, slerp


def test_same_seed_same_face_in_any_batch(trained_run):
    generator = facegan.load(trained_run)
    batch = generator.faces(range(10, 18))
    again = facegan.load(trained_run).faces([13], batch_size=1)
    assert np.array_equal(batch[3], again[0])
    assert not np.array_equal(batch[0], batch[1])
    images = generator.generate(4, seed=10)
    assert [im.size for im in images] == [(32, 32)] * 4
    assert np.array_equal(np.asarray(images[2]), batch[2])


def test_truncation_zero_gives_the_mean_face(trained_run):
    faces = facegan.load(trained_run).faces([1, 2, 3], truncation=0.0)
    assert np.array_equal(faces[0], faces[1]) and np.array_equal(faces[0], faces[2])
    assert not np.array_equal(facegan.load(trained_run).faces([1])[0], faces[0])


def test_generate_writes_pngs_and_grids(trained_run, tmp_path):
    paths = facegan.generate(GenerateConfig(checkpoint=str(trained_run), n=5, seed=7, out=str(tmp_path / "faces")))
    assert [p.name for p in paths] == [f"seed{s:04d}.png" for s in range(7, 12)]
    expected = facegan.load(trained_run).faces([9])[0]
    assert np.array_equal(np.asarray(Image.open(paths[2])), expected)
    [grid] = facegan.generate(GenerateConfig(checkpoint=str(trained_run), n=6, ncols=3, grid=str(tmp_path / "g.png")))
    assert Image.open(grid).size == (3 * 32 + 4 * 2, 2 * 32 + 3 * 2)


def test_interpolation_gif_and_mp4(trained_run, tmp_path):
    gif = facegan.interpolate(InterpolateConfig(checkpoint=str(trained_run), seeds="1,7,42", frames=9, out=str(tmp_path / "w.gif")))
    frames = iio.imread(gif, index=None)
    assert frames.shape[:3] == (9, 32, 32)
    generator = facegan.load(trained_run)
    walk = generator.interpolate([1, 7, 42], frames=9)
    assert np.array_equal(walk[0], generator.faces([1])[0])
    assert np.array_equal(walk[4], generator.faces([7])[0])
    assert np.array_equal(walk[-1], generator.faces([42])[0])
    pytest.importorskip("imageio_ffmpeg")
    mp4 = facegan.interpolate(InterpolateConfig(checkpoint=str(trained_run), seeds="1,7", frames=8, out=str(tmp_path / "w.mp4")))
    video = iio.imread(mp4, index=None, extension=".mp4")
    assert video.shape == (8, 32, 32, 3), "8 frames of 32 px faces"


def test_latent_walk_passes_through_keys_and_loops():
    keys = torch.randn(3, 16)
    walk = latent_walk(keys, 5)
    assert torch.allclose(walk[0], keys[0]) and torch.allclose(walk[2], keys[1]) and torch.allclose(walk[4], keys[2])
    looped = latent_walk(keys, 6, loop=True)
    assert len(looped) == 6 and torch.allclose(looped[0], keys[0]) and torch.allclose(looped[2], keys[1])
    middle = slerp(keys[0], keys[1], torch.tensor([0.5]))[0]
    assert middle.norm() == pytest.approx(float((keys[0].norm() + keys[1].norm()) / 2), rel=0.2)


def test_bad_requests_fail_clearly(trained_run, tmp_path):
    with pytest.raises(ValueError, match="at least two seeds"):
        InterpolateConfig(seeds="3").validate()
    with pytest.raises(ValueError, match="truncation"):
        GenerateConfig(truncation=5).validate()
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        facegan.load(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        facegan.load(tmp_path)
    with pytest.raises(ValueError, match=".gif or .mp4"):
        facegan.interpolate(InterpolateConfig(checkpoint=str(trained_run), seeds="1,2", out=str(tmp_path / "w.avi")))


def test_generator_only_file_makes_the_same_faces(trained_run, tmp_path):
    from facegan.generate import save_generator

    path = save_generator(trained_run, tmp_path / "g.safetensors", info={"fid": 1.5})
    small, full = facegan.load(path), facegan.load(trained_run)
    assert np.array_equal(small.faces([3, 4]), full.faces([3, 4]))
    assert small.info["fid"] == 1.5
    assert path.stat().st_size < sum(p.stat().st_size for p in (trained_run / "checkpoints").glob("*")) / 2
