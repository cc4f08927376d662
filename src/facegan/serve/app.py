"""The web page and the JSON/PNG API it uses, built around one FaceGenerator.

Every parameter is checked by FastAPI (bad values: HTTP 422 with a readable message) and bounded, so one
request costs at most MAX_GRID faces or MAX_FRAMES frames. Generation runs in a worker thread, never on
the event loop, one request at a time.
"""
from __future__ import annotations

import io
import threading
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..api import MAX_SEED, FaceGenerator, architecture_summary

MAX_GRID = 64
MAX_FRAMES = 120
MAX_FPS = 50.0
MIN_FPS = 0.5  # slower overflows the GIF format: Pillow merges identical frames into one 16-bit duration

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"seed of the face, 0..{MAX_SEED}; same seed, same face")]
Truncation = Annotated[float, Query(ge=0, le=2, description="pull the latent toward the mean face: 1 = none, 0 = the mean face")]

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


class FaceRenderer:
    """Turns requests into image bytes. One generation at a time: requests from many threads stay safe."""

    def __init__(self, generator: FaceGenerator):
        self.generator = generator
        self._lock = threading.Lock()

    def face_png(self, seed: int, truncation: float) -> bytes:
        with self._lock, torch.inference_mode():
            face = self.generator.faces([seed], truncation)[0]
        return png_bytes(face)

    def grid_png(self, seed: int, n: int, truncation: float, ncols: int | None) -> bytes:
        with self._lock, torch.inference_mode():
            grid = self.generator.grid(n, seed, truncation, ncols)
        return png_bytes(np.asarray(grid))

    def morph_gif(self, start: int, end: int, frames: int, truncation: float, fps: float, loop: bool) -> bytes:
        with self._lock, torch.inference_mode():
            walk = self.generator.interpolate([start, end], frames, truncation, loop)
        return walk.gif(fps)


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
    # FastAPI's /docs and /redoc pages load scripts from a CDN; the schema itself needs nothing external.
    app = FastAPI(title="facegan", version=_version(), docs_url=None, redoc_url=None,
                  description="Faces of people who do not exist, from a trained GAN generator. "
                              "Every image depends only on its parameters: the same query gives the same bytes.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/info", response_model=ModelInfo, summary="The model card: architecture, resolution, training facts")
    def get_info() -> ModelInfo:
        return info

    @app.get("/api/face.png", response_class=Response, responses=PNG_RESPONSE, summary="One face as a PNG")
    async def get_face(seed: Seed = 0, truncation: Truncation = 1.0) -> Response:
        return Response(await run_in_threadpool(renderer.face_png, seed, truncation), media_type="image/png")

    @app.get("/api/grid.png", response_class=Response, responses=PNG_RESPONSE,
             summary="A grid of the faces of seeds seed .. seed+n-1, as a PNG")
    async def get_grid(
        seed: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the first face")] = 0,
        n: Annotated[int, Query(ge=1, le=MAX_GRID, description="number of faces")] = 16,
        truncation: Truncation = 1.0,
        ncols: Annotated[int | None, Query(ge=1, le=MAX_GRID, description="columns (square when unset)")] = None,
    ) -> Response:
        if seed + n - 1 > MAX_SEED:
            raise invalid_query("seed", seed, f"the grid's last seed (seed + n - 1) must be at most {MAX_SEED}")
        return Response(await run_in_threadpool(renderer.grid_png, seed, n, truncation, ncols), media_type="image/png")

    @app.get("/api/morph.gif", response_class=Response, responses=GIF_RESPONSE,
             summary="A smooth walk from the face of one seed to another, as an animated GIF")
    async def get_morph(
        start: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the first face")] = 0,
        end: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the last face")] = 1,
        frames: Annotated[int, Query(ge=2, le=MAX_FRAMES, description="number of frames")] = 30,
        truncation: Truncation = 1.0,
        fps: Annotated[float, Query(ge=MIN_FPS, le=MAX_FPS, description="frames per second")] = 15.0,
        loop: Annotated[bool, Query(description="walk back to the first face, for a seamless loop")] = True,
    ) -> Response:
        gif = await run_in_threadpool(renderer.morph_gif, start, end, frames, truncation, fps, loop)
        return Response(gif, media_type="image/gif")

    return app
