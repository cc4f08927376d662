"""What the generator returns, made to show itself inline in Jupyter: a row of faces, a playing walk.

Both stay what they were (a list of PIL images, a numpy array); they only add `_repr_html_`.
A grid is a PIL image, which Jupyter already shows through Pillow's own `_repr_png_`.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
from PIL import Image

MAX_SHOWN = 64


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Faces(list):
    """A list of PIL face images, shown in Jupyter as a row of thumbnails titled with their seeds."""

    def __init__(self, images: Sequence[Image.Image], seeds: Sequence[int] = ()):
        super().__init__(images)
        self.seeds = list(seeds)

    def _repr_html_(self) -> str:
        titles = self.seeds or range(len(self))
        cells = [f'<img src="{data_uri(png_bytes(image), "image/png")}" title="seed {title}" style="margin:1px">'
                 for image, title in zip(self[:MAX_SHOWN], titles)]
        more = f"<p>… and {len(self) - MAX_SHOWN} more</p>" if len(self) > MAX_SHOWN else ""
        return "<div>" + "".join(cells) + "</div>" + more


class Animation(np.ndarray):
    """T x H x W x 3 uint8 frames (an ordinary numpy array) that plays in Jupyter as a looping GIF."""

    def __new__(cls, frames: np.ndarray, fps: float = 20.0) -> Animation:
        animation = np.asarray(frames).view(cls)
        animation.fps = fps
        return animation

    def __array_finalize__(self, source) -> None:
        self.fps = getattr(source, "fps", 20.0)

    def gif(self, fps: float | None = None) -> bytes:
        """The frames as a looping GIF, at `fps` (default: the animation's own)."""
        from .interpolate import gif_bytes

        return gif_bytes(np.asarray(self), self.fps if fps is None else fps)

    def _repr_html_(self) -> str | None:
        if self.ndim != 4 or self.shape[-1] != 3 or self.dtype != np.uint8 or len(self) == 0:
            return None  # a slice that is no longer an animation shows as a plain array
        return f'<img src="{data_uri(self.gif(), "image/gif")}">'
