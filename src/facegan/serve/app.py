"""The web page and the JSON/PNG API it uses, built around one FaceGenerator.

Every parameter is checked by FastAPI (bad values: HTTP 422 with a readable message) and bounded, so one
request costs at most MAX_GRID faces or MAX_FRAMES frames, at most 4x upscaled. Generation and encoding run
on one dedicated thread per app, never on the event loop, one request at a time: a pool of worker threads
would give each thread its own OpenMP team and its own malloc arena, and the server's memory would grow
with the number of requests in flight (see `FaceRenderer`).
"""
from __future__ import annotations

import asyncio
import ctypes
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from enum import IntEnum
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from ..api import MAX_SEED, FaceGenerator, architecture_summary

MAX_GRID = 64
MAX_FRAMES = 120
MAX_FPS = 50.0
MIN_FPS = 0.5  # slower overflows the GIF format: Pillow merges identical frames into one 16-bit duration

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"seed of the face, 0..{MAX_SEED}; same seed, same face")]
Truncation = Annotated[float, Query(ge=0, le=2, description="pull the latent toward the mean face: 1 = none, 0 = the mean face")]


class Scale(IntEnum):
    """How many times larger than the generator's resolution an image comes back (nearest neighbour)."""

    x1 = 1
    x2 = 2
    x4 = 4


ScaleQuery = Annotated[Scale, Query(description="upscale 1, 2 or 4 times, nearest neighbour: each pixel becomes a "
                                                "sharp scale x scale block, nothing is invented")]

PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}
GIF_RESPONSE = {200: {"content": {"image/gif": {}}, "description": "a looping animated GIF"}}


class Limits(BaseModel):
    max_seed: int = MAX_SEED
    max_grid: int = MAX_GRID
    max_frames: int = MAX_FRAMES
    max_fps: float = MAX_FPS


class ModelInfo(BaseModel):
    arch: str = Field(description="architecture name in the registry")
    summary: str = Field(description="what the architecture is")
    size: int = Field(description="width and height of a face in pixels")
    z_dim: int = Field(description="length of the latent vector")
    width: int = Field(description="base channel width of the networks")
    card: dict[str, Any] = Field(description="model-card facts stored with the generator (data, FID, steps ...)")
    limits: Limits = Field(default_factory=Limits)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel of the ... x H x W x 3 image(s) as a scale x scale block (nearest neighbour; same type back)."""
    if scale == 1:
        return pixels
    return pixels.repeat(scale, axis=-3).repeat(scale, axis=-2)


def release_freed_memory() -> None:
    """Give the pages of freed buffers back to the system (glibc's malloc_trim; a no-op where there is none).

    Without it glibc keeps the buffers of the largest request served so far (a grid of 64, a morph of 120
    frames) for good; with it the memory returns to near the idle figure after every request, for ~1 ms.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (macOS, Windows, musl)
        return None


_malloc_trim = _find_malloc_trim()


class FaceRenderer:
    """Turns requests into image bytes, one at a time: requests from many threads stay safe.

    `submit` runs a method on the renderer's one thread, then releases the memory it freed. Keeping all the
    work on one thread is what keeps the memory flat: torch's OpenMP runtime gives every thread that calls
    it a team of its own, and glibc gives such threads malloc arenas that keep the freed buffers of the
    largest request they served. On Starlette's pool of up to 40 worker threads, 40 mixed requests (a face,
    a grid of 64, a 120-frame morph) took the server from 278 MiB idle to 515 MiB sent 8 at a time and to
    825 MiB (84 threads) sent 40 at a time; on one thread it ends at 302 MiB however they are sent.
    """

    def __init__(self, generator: FaceGenerator):
        self.generator = generator
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facegan-render")

    async def submit(self, method: Callable[..., bytes], *args) -> bytes:
        """`method(*args)` on the renderer's thread, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self._thread.submit(self._run, method, *args))

    @staticmethod
    def _run(method: Callable[..., bytes], *args) -> bytes:
        try:
            return method(*args)
        finally:
            release_freed_memory()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def face_png(self, seed: int, truncation: float, scale: int = 1) -> bytes:
        with self._lock, torch.inference_mode():
            face = self.generator.faces([seed], truncation)[0]
            return png_bytes(upscale(face, scale))

    def grid_png(self, seed: int, n: int, truncation: float, ncols: int | None, scale: int = 1) -> bytes:
        with self._lock, torch.inference_mode():
            grid = self.generator.grid(n, seed, truncation, ncols)
            return png_bytes(upscale(np.asarray(grid), scale))

    def morph_gif(self, start: int, end: int, frames: int, truncation: float, fps: float, loop: bool,
                  scale: int = 1) -> bytes:
        with self._lock, torch.inference_mode():
            walk = self.generator.interpolate([start, end], frames, truncation, loop)
            return upscale(walk, scale).gif(fps)  # an Animation stays one through ndarray.repeat


def model_info(generator: FaceGenerator) -> ModelInfo:
    card = dict(generator.info)
    if "checkpoint" in card:  # the file name is enough; the full path says nothing to a visitor
        card["checkpoint"] = Path(card["checkpoint"]).name
    model = generator.model
    return ModelInfo(arch=model.arch, summary=architecture_summary(model.arch), size=model.size,
                     z_dim=model.z_dim, width=model.width, card=card)


def invalid_query(name: str, value: Any, message: str) -> RequestValidationError:
    """A 422 shaped exactly like FastAPI's own, for checks that involve more than one parameter."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}])


def _version() -> str:
    try:
        return metadata.version("facegan")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(generator: FaceGenerator) -> FastAPI:
    """The FastAPI app: the page at /, the API under /api, its schema at /openapi.json."""
    renderer = FaceRenderer(generator)
    info = model_info(generator)
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        renderer.close()

    # FastAPI's /docs and /redoc pages load scripts from a CDN; the schema itself needs nothing external.
    app = FastAPI(title="facegan", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Faces of people who do not exist, from a trained GAN generator. "
                              "Every image depends only on its parameters: the same query gives the same bytes.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/api/info", response_model=ModelInfo, summary="The model card: architecture, resolution, training facts")
    async def get_info() -> ModelInfo:
        return info

    @app.get("/api/face.png", response_class=Response, responses=PNG_RESPONSE, summary="One face as a PNG")
    async def get_face(seed: Seed = 0, truncation: Truncation = 1.0, scale: ScaleQuery = Scale.x1) -> Response:
        return Response(await renderer.submit(renderer.face_png, seed, truncation, int(scale)), media_type="image/png")

    @app.get("/api/grid.png", response_class=Response, responses=PNG_RESPONSE,
             summary="A grid of the faces of seeds seed .. seed+n-1, as a PNG")
    async def get_grid(
        seed: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the first face")] = 0,
        n: Annotated[int, Query(ge=1, le=MAX_GRID, description="number of faces")] = 16,
        truncation: Truncation = 1.0,
        ncols: Annotated[int | None, Query(ge=1, le=MAX_GRID, description="columns (square when unset)")] = None,
        scale: ScaleQuery = Scale.x1,
    ) -> Response:
        if seed + n - 1 > MAX_SEED:
            raise invalid_query("seed", seed, f"the grid's last seed (seed + n - 1) must be at most {MAX_SEED}")
        png = await renderer.submit(renderer.grid_png, seed, n, truncation, ncols, int(scale))
        return Response(png, media_type="image/png")

    @app.get("/api/morph.gif", response_class=Response, responses=GIF_RESPONSE,
             summary="A smooth walk from the face of one seed to another, as an animated GIF")
    async def get_morph(
        start: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the first face")] = 0,
        end: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the last face")] = 1,
        frames: Annotated[int, Query(ge=2, le=MAX_FRAMES, description="number of frames")] = 30,
        truncation: Truncation = 1.0,
        fps: Annotated[float, Query(ge=MIN_FPS, le=MAX_FPS, description="frames per second")] = 15.0,
        loop: Annotated[bool, Query(description="walk back to the first face, for a seamless loop")] = True,
        scale: ScaleQuery = Scale.x1,
    ) -> Response:
        gif = await renderer.submit(renderer.morph_gif, start, end, frames, truncation, fps, loop, int(scale))
        return Response(gif, media_type="image/gif")

    return app
