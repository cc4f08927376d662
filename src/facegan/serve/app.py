"""The web page and the JSON/PNG API it uses, built around one FaceGenerator.

Every parameter is checked by FastAPI (bad values: HTTP 422 with a readable message) and bounded, so one
request costs at most MAX_GRID faces or MAX_FRAMES frames, at most 4x upscaled, and at most MAX_PIXELS pixels.
Generation and encoding run on one dedicated thread per app, never on the event loop, one request at a time: a
pool of worker threads would give each thread its own OpenMP team and its own malloc arena, and the server's
memory would grow with the number of requests in flight (see `FaceRenderer`).

The render thread's queue is bounded by the work it holds (`QUEUE_WORK`): a request that would overfill it is
refused at once with 503 and a Retry-After header, so one client cannot make every other request wait for
minutes. /, /api/info and /openapi.json never touch the render thread and answer while it is busy.
"""
from __future__ import annotations

import asyncio
import base64
import ctypes
import hashlib
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from enum import IntEnum
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ..api import MAX_SEED, FaceGenerator, architecture_summary, png_bytes

MAX_GRID = 64
MAX_FRAMES = 120
MAX_FPS = 50.0
MIN_FPS = 0.5  # slower overflows the GIF format: Pillow merges identical frames into one 16-bit duration
# Per request: the pixels of all its frames together (8 Mi, 24 MiB as RGB). Everything the shipped 64 px model
# can make fits (the largest: a 120-frame morph at 4x, 120 x 256 x 256); a 128 px model's 4x morph stops at
# 32 frames and its 4x grid at 25 faces.
MAX_PIXELS = 8 * 1024 * 1024

# The render thread's queue, measured in work: one unit is one 64 px face generated and encoded (10-15 ms on a
# busy 2-core CPU, a few ms idle); a GIF frame counts twice (quantising and LZW cost about as much as generating),
# a 128 px face four times, and each request one more for its own overhead. The largest request of the shipped
# model, a 120-frame morph (241 units), takes about 2 s on 2 busy cores. The queue holds two of them (480 units:
# the one running and one waiting), so the thread never idles while refused clients come back, and a request it
# admits waits for at most 480 units, a few seconds on a busy 2-core CPU, instead of minutes. A request that
# would overfill it gets 503 at once. Small requests (a face, the page's 4 x 4 grid) may use SMALL_ROOM units
# more, so a flood of large ones still leaves room for visitors of the page.
REFERENCE_SIZE = 64
GIF_FRAME_WORK = 2
QUEUE_WORK = 480
SMALL_WORK = 20
SMALL_ROOM = 80

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"seed of the face, 0..{MAX_SEED}; same seed, same face")]
Truncation = Annotated[float, Query(ge=0, le=2, description="pull the latent toward the mean face: 1 = none, 0 = the mean face")]


class Scale(IntEnum):
    """How many times larger than the generator's resolution an image comes back (nearest neighbour)."""

    x1 = 1
    x2 = 2
    x4 = 4


ScaleQuery = Annotated[Scale, Query(description="upscale 1, 2 or 4 times, nearest neighbour: each pixel becomes a "
                                                "sharp scale x scale block, nothing is invented")]


class Busy(BaseModel):
    detail: str = Field(description="why, and when to ask again")


BUSY_RESPONSE = {503: {"model": Busy, "description": "the queue of images is full: ask again after Retry-After seconds",
                       "headers": {"Retry-After": {"description": "seconds to wait before asking again",
                                                   "schema": {"type": "integer", "minimum": 1}}}}}
PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "a PNG image"}, **BUSY_RESPONSE}
GIF_RESPONSE = {200: {"content": {"image/gif": {}}, "description": "a looping animated GIF"}, **BUSY_RESPONSE}


class Limits(BaseModel):
    max_seed: int = MAX_SEED
    max_grid: int = MAX_GRID
    max_frames: int = MAX_FRAMES
    max_fps: float = MAX_FPS
    max_pixels: int = MAX_PIXELS


class ModelInfo(BaseModel):
    arch: str = Field(description="architecture name in the registry")
    summary: str = Field(description="what the architecture is")
    size: int = Field(description="width and height of a face in pixels")
    z_dim: int = Field(description="length of the latent vector")
    width: int = Field(description="base channel width of the networks")
    card: dict[str, Any] = Field(description="model-card facts stored with the generator (data, FID, steps ...)")
    limits: Limits = Field(default_factory=Limits)


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


class QueueFull(Exception):
    """The render thread's queue is full; ask again in `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy making other images: ask again in {retry_after} s")
        self.retry_after = retry_after


def request_work(images: int, size: int, gif: bool = False) -> float:
    """What a request of `images` faces or frames of a `size` px model costs the render thread (see QUEUE_WORK)."""
    return 1 + images * (size / REFERENCE_SIZE) ** 2 * (GIF_FRAME_WORK if gif else 1)


class FaceRenderer:
    """Turns requests into image bytes, one at a time: requests from many threads stay safe.

    `submit` runs a method on the renderer's one thread, then releases the memory it freed. Keeping all the
    work on one thread is what keeps the memory flat: torch's OpenMP runtime gives every thread that calls
    it a team of its own, and glibc gives such threads malloc arenas that keep the freed buffers of the
    largest request they served. On Starlette's pool of up to 40 worker threads, 40 mixed requests (a face,
    a grid of 64, a 120-frame morph) took the server from 278 MiB idle to 515 MiB sent 8 at a time and to
    825 MiB (84 threads) sent 40 at a time; on one thread it ends at 302 MiB however they are sent.

    The thread's queue holds at most `queue_work` units of work (see QUEUE_WORK); `submit` refuses more with
    `QueueFull`. An empty queue admits any request, however large.
    """

    def __init__(self, generator: FaceGenerator, queue_work: float = QUEUE_WORK):
        self.generator = generator
        self.queue_work = queue_work
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facegan-render")
        self._queue_lock = threading.Lock()
        self._queued = 0.0  # work admitted and not finished (or cancelled)
        self._seconds_per_work = 0.01  # measured as requests finish; it only sets Retry-After

    def _room(self, work: float) -> float:
        return self.queue_work + (SMALL_ROOM if work <= SMALL_WORK else 0)

    def admits(self, work: float) -> bool:
        return self._queued == 0 or self._queued + work <= self._room(work)

    def retry_after(self, work: float) -> int:
        """Seconds until the queue has room for `work`, at the pace measured so far: 1 to 60."""
        excess = self._queued + work - self._room(work)
        return max(1, min(60, math.ceil(excess * self._seconds_per_work)))

    async def submit(self, work: float, method: Callable[..., bytes], *args) -> bytes:
        """`method(*args)` on the renderer's thread, awaited without blocking the event loop; QueueFull when full."""
        with self._queue_lock:
            if not self.admits(work):
                raise QueueFull(self.retry_after(work))
            self._queued += work
        try:
            future = self._thread.submit(self._run, work, method, *args)
        except RuntimeError:  # shut down
            self._release(work)
            raise
        future.add_done_callback(lambda _: self._release(work))  # also when a disconnect cancels it unstarted
        return await asyncio.wrap_future(future)

    def _release(self, work: float) -> None:
        with self._queue_lock:
            self._queued = max(0.0, self._queued - work)

    def _run(self, work: float, method: Callable[..., bytes], *args) -> bytes:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            release_freed_memory()
            pace = (time.perf_counter() - started) / work
            self._seconds_per_work = 0.8 * self._seconds_per_work + 0.2 * pace

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


ECHO_CHARS = 40  # of a refused value in a 422: enough to recognise it, never the whole of a 70 KB query
NOSNIFF = (b"x-content-type-options", b"nosniff")


def short_input(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]}… ({len(value):,} characters)"
    return value


def page_policy(page: str) -> str:
    """The page's Content-Security-Policy: its own inline script and style sheet (by hash), fetches and images
    from this server (and the blob: URLs the script makes of them), nothing else: no other origin, no framing."""
    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                        for body in bodies)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware: X-Content-Type-Options: nosniff on every response, and `policy` as the page's CSP."""

    def __init__(self, app, page_path: str, policy: str):
        self.app, self.page_path, self.policy = app, page_path, (b"content-security-policy", policy.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = [NOSNIFF, self.policy] if scope["path"] == self.page_path else [NOSNIFF]

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(generator: FaceGenerator, queue_work: float = QUEUE_WORK) -> FastAPI:
    """The FastAPI app: the page at /, the API under /api, its schema at /openapi.json.

    `queue_work` bounds the work waiting for the render thread (QUEUE_WORK units by default); beyond it,
    image requests get 503 with Retry-After.
    """
    renderer = FaceRenderer(generator, queue_work)
    info = model_info(generator)
    size = generator.size
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        renderer.close()

    # FastAPI's /docs and /redoc pages load scripts from a CDN; the schema itself needs nothing external.
    app = FastAPI(title="facegan", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Faces of people who do not exist, from a trained GAN generator. "
                              "Every image depends only on its parameters: the same query gives the same bytes. "
                              "Images are made one at a time; when too many wait, a request gets 503 with "
                              "Retry-After.")
    app.add_middleware(SecurityHeaders, page_path="/", policy=page_policy(page))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 body, with each refused value shortened (it would echo a 70 KB query back whole).
        detail = [{**item, "input": short_input(item["input"])} if "input" in item else item for item in error.errors()]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    def check_pixels(name: str, value: int, pixels: int, what: str) -> None:
        if pixels > MAX_PIXELS:
            raise invalid_query(name, value, f"{what} would have {pixels:,} pixels, more than the {MAX_PIXELS:,} "
                                             "one request may make: ask for fewer, or a smaller scale")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/api/info", response_model=ModelInfo, summary="The model card: architecture, resolution, training facts")
    async def get_info() -> ModelInfo:
        return info

    @app.get("/api/face.png", response_class=Response, responses=PNG_RESPONSE, summary="One face as a PNG")
    async def get_face(seed: Seed = 0, truncation: Truncation = 1.0, scale: ScaleQuery = Scale.x1) -> Response:
        png = await renderer.submit(request_work(1, size), renderer.face_png, seed, truncation, int(scale))
        return Response(png, media_type="image/png")

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
        columns = min(ncols or math.ceil(math.sqrt(n)), n)  # as make_grid lays them out, 2 px apart
        height, width = (math.ceil(n / columns) * (size + 2) + 2) * scale, (columns * (size + 2) + 2) * scale
        check_pixels("n", n, height * width, f"a grid of {n} faces at {int(scale)}x ({width} x {height})")
        png = await renderer.submit(request_work(n, size), renderer.grid_png, seed, n, truncation, ncols, int(scale))
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
        side = size * scale
        check_pixels("frames", frames, frames * side * side, f"{frames} frames of {side} x {side}")
        gif = await renderer.submit(request_work(frames, size, gif=True), renderer.morph_gif, start, end, frames,
                                    truncation, fps, loop, int(scale))
        return Response(gif, media_type="image/gif")

    return app
