"""Latent walks: smooth paths through the latents of several seeds, saved as GIF or MP4."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent vectors a and b at fractions t (shape T)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    t = t.view(-1, 1)
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def latent_walk(keys: torch.Tensor, frames: int, loop: bool = False) -> torch.Tensor:
    """`frames` latents passing through each key latent in order (and back to the first when `loop`)."""
    if len(keys) < 2:
        raise ValueError("an interpolation needs at least two seeds")
    if frames < 2:
        raise ValueError("an interpolation needs at least two frames")
    if loop:
        keys = torch.cat([keys, keys[:1]])
    segments = len(keys) - 1
    position = torch.linspace(0, segments, frames + 1 if loop else frames)[: frames]
    index = position.floor().long().clamp(max=segments - 1)
    t = position - index
    return torch.stack([slerp(keys[i], keys[i + 1], t[j : j + 1])[0] for j, i in enumerate(index.tolist())])


# A GIF frame lasts a whole number of 1/100 s, at most 655.35 s, and Pillow merges equal frames into one
# duration: below 0.5 fps that overflows. Above 50 fps browsers slow a GIF down (the page's limit).
MIN_FPS = 0.5
MAX_FPS = 50.0


def gif_bytes(frames: np.ndarray, fps: float = 20) -> bytes:
    """T x H x W x 3 uint8 frames as the bytes of a looping animated GIF."""
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", frames, extension=".gif", duration=int(1000 / fps), loop=0)


def save_animation(frames: np.ndarray, path: str | Path, fps: float = 20) -> Path:
    """Write T x H x W x 3 uint8 frames as an animated GIF (looping) or an MP4 (needs imageio-ffmpeg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
    elif suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise RuntimeError("MP4 output needs imageio-ffmpeg: pip install 'facegan[video]'") from None
        import imageio.v2 as imageio

        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1, quality=8)
    else:
        raise ValueError(f"{path}: animation format must be .gif or .mp4")
    return path
