"""facegan: train GANs on face photos and generate faces of people who do not exist.

    import facegan
    run = facegan.train("photos/", arch="dcgan", minutes=30, out="runs/mine")
    faces = facegan.load("runs/mine").generate(16, seed=0)
"""
from . import serve as _serve  # noqa: F401  (adds the `serve` command, which sits above the API)
from .api import VERSION as __version__
from .api import align, directions, export, generate, interpolate, load, prepare, project, score, train
from .generate import FaceGenerator

__all__ = ["FaceGenerator", "__version__", "align", "directions", "export", "generate", "interpolate", "load", "prepare",
           "project", "score", "train"]
