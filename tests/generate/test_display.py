"""What the generator returns shows itself inline in Jupyter and stays a plain list / array."""
import base64
import io
import re

import imageio.v3 as iio
import numpy as np
from PIL import Image

import facegan


def embedded(html: str, mime: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(rf'src="data:{mime};base64,([^"]+)"', html)]


def test_faces_show_as_thumbnails_titled_with_their_seeds(trained_run):
    generator = facegan.load(trained_run)
    faces = generator.generate(3, seed=7)
    assert isinstance(faces, list) and all(isinstance(face, Image.Image) for face in faces)
    html = faces._repr_html_()
    shown = [np.asarray(Image.open(io.BytesIO(png))) for png in embedded(html, "image/png")]
    assert len(shown) == 3 and np.array_equal(np.stack(shown), generator.faces([7, 8, 9]))
    assert 'title="seed 9"' in html


def test_a_walk_plays_as_a_gif_and_stays_an_array(trained_run):
    generator = facegan.load(trained_run)
    walk = generator.interpolate([1, 7], frames=5)
    assert np.array_equal(walk[0], generator.faces([1])[0]) and walk.shape == (5, 32, 32, 3)
    [gif] = embedded(walk._repr_html_(), "image/gif")
    assert iio.imread(gif, index=None).shape[:3] == (5, 32, 32)
    assert walk[0]._repr_html_() is None  # one frame is no animation: Jupyter falls back to the array


def test_a_grid_is_a_pil_image_which_jupyter_shows_as_png(trained_run):
    grid = facegan.load(trained_run).grid(4)
    assert grid._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
