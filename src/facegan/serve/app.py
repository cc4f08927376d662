"""The web page and the JSON/PNG API it uses, built around one FaceGenerator.

Every parameter is checked by FastAPI (bad values: HTTP 422 with a readable message) and bounded, so one
request costs at most MAX_GRID faces or MAX_FRAMES frames, at most 4x upscaled, and at most MAX_PIXELS pixels.
Generation and encoding run on one dedicated thread per app, never on the event loop, one request at a time: a
pool of worker threads would give each thread its own OpenMP team and its own malloc arena, and the server's
memory would grow with the number of requests in flight (see `FaceRenderer`).

The render thread's queue is bounded by the work it holds (`QUEUE_WORK`): a request that would overfill it is
refused at once with 503 and a Retry-After header, so one client cannot make every other request wait for
minutes. /, /api/info and /openapi.json never touch the render thread and answer while it is busy.

Steering: /api/directions lists the edit directions, and `edit=age=2,dir3=-1.5` moves a face along them. A face's
latent travels as a small file (GET /api/latent, POST /api/latent); an uploaded photo is projected into the latent
space (POST /api/project) on a thread of its own, one photo at a time, so faces are still made meanwhile. Uploaded
and projected latents are kept by token in memory only (the newest KEPT_LATENTS); no uploaded photo touches disk.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import ctypes
import dataclasses
import hashlib
import io
import math
import os
import re
import secrets
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from enum import IntEnum
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, Field

from ..api import (
    MAX_SEED,
    SLIDER_RANGE,
    USER_ERRORS,
    FaceGenerator,
    Latents,
    ProjectConfig,
    align,
    align_backend_available,
    architecture_summary,
    load_discriminator_features,
    load_latents,
    parse_edits,
    crop_and_resize,
    latents_from_seeds,
    png_bytes,
    project_photos,
    save_latents,
    to_rgb,
)


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

# Steering. Uploads are bounded before they are read whole: a latent file by MAX_LATENT_BYTES, a photo by
# MAX_PHOTO_BYTES and, from its header before any pixel is decoded, by MAX_PHOTO_PIXELS (40 MP: 120 MB as RGB, once,
# since one photo is projected at a time). A multipart upload may be MULTIPART_ROOM bytes longer than its file (the
# boundaries and part headers). The server keeps the newest KEPT_LATENTS uploaded or projected latents (each a few
# tens of KB with its photo) in memory, by token; older ones are forgotten.
KEPT_LATENTS = 32
MAX_LATENT_BYTES = 1024 * 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_PHOTO_PIXELS = 40_000_000
MULTIPART_ROOM = 64 * 1024
MAX_EDIT_CHARS = 1000
LATENT_FILENAME = "face-latent.safetensors"
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow's names; nothing else is even parsed
FIRST_PROJECTION_GUESS = 10.0  # seconds, for Retry-After until a projection has been timed

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"seed of the face, 0..{MAX_SEED}; same seed, same face")]
Truncation = Annotated[float, Query(ge=0, le=2, description="pull the latent toward the mean face: 1 = none, 0 = the mean face")]
Edit = Annotated[str | None, Query(max_length=MAX_EDIT_CHARS, description=(
    "move the face along edit directions: NAME=AMOUNT pairs separated by commas, e.g. age=2,dir3=-1.5; names from "
    f"/api/directions, amounts from -{SLIDER_RANGE:g} to +{SLIDER_RANGE:g}; none or 0: the face unedited"))]
TOKEN = {"min_length": 1, "max_length": 64, "pattern": r"^[A-Za-z0-9_-]+$"}  # what LatentStore hands out, and more
Token = Annotated[str, Query(**TOKEN, description="what POST /api/latent or POST /api/project answered: an uploaded "
                                                  "latent or a projected photo, kept in memory (the newest few)")]


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


class Problem(BaseModel):
    detail: str = Field(description="what is wrong, and what to do instead")


class InvalidItem(BaseModel):
    loc: list[str | int] = Field(description="where: body or query, then the field")
    msg: str = Field(description="what is wrong")
    type: str
    input: Any = None


class Invalid(BaseModel):
    detail: list[InvalidItem]


FORGOTTEN_RESPONSE = {404: {"model": Problem, "description": "no such token: the server keeps only the newest "
                                                            f"{KEPT_LATENTS} uploaded or projected latents"}}
UPLOAD_RESPONSES = {413: {"model": Problem, "description": "the upload is larger than its limit"},
                    422: {"model": Invalid, "description": "the upload was read but cannot be used (the message says why)"}}
PHOTO_RESPONSES = {**UPLOAD_RESPONSES,
                   415: {"model": Problem, "description": "not a JPEG, PNG or WebP image"},
                   503: {"model": Busy, "description": "another photo is being projected: ask again after Retry-After "
                                                       "seconds", "headers": BUSY_RESPONSE[503]["headers"]}}
LATENT_FILE_RESPONSE = {200: {"content": {"application/octet-stream": {}},
                              "description": f"a facegan latent file ({LATENT_FILENAME}), as an attachment"},
                        **BUSY_RESPONSE, **FORGOTTEN_RESPONSE}


def upload_body(field: str, media: str, description: str) -> dict:
    """The OpenAPI description of an upload: a multipart form with one file `field`, or the file as the body."""
    binary = {"type": "string", "format": "binary", "description": description}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": {field: binary}}},
        media: {"schema": binary}}}}


class Limits(BaseModel):
    max_seed: int = MAX_SEED
    max_grid: int = MAX_GRID
    max_frames: int = MAX_FRAMES
    max_fps: float = MAX_FPS
    max_pixels: int = MAX_PIXELS
    max_photo_bytes: int = Field(MAX_PHOTO_BYTES, description="the largest photo upload (/api/project)")
    max_photo_pixels: int = Field(MAX_PHOTO_PIXELS, description="the most pixels an uploaded photo may have")
    max_latent_bytes: int = Field(MAX_LATENT_BYTES, description="the largest latent file upload (/api/latent)")


class ModelInfo(BaseModel):
    arch: str = Field(description="architecture name in the registry")
    summary: str = Field(description="what the architecture is")
    size: int = Field(description="width and height of a face in pixels")
    z_dim: int = Field(description="length of the latent vector")
    width: int = Field(description="base channel width of the networks")
    card: dict[str, Any] = Field(description="model-card facts stored with the generator (data, FID, steps ...)")
    limits: Limits = Field(default_factory=Limits)


class Direction(BaseModel):
    name: str = Field(description="what an edit calls it: age=2, dir3=-1.5")
    min: float = Field(description="the slider's lowest amount")
    max: float = Field(description="the slider's highest amount")
    method: str = Field(description="how it was found: sefa (unsupervised) or a fit to an attribute classifier")
    change_per_unit: float | None = Field(None, description="for a named direction: how much its attribute changes "
                                                            "per unit (in what `notes.follows` says)")
    notes: dict[str, Any] = Field(description="everything recorded about the direction")


class DirectionList(BaseModel):
    directions: list[Direction] = Field(description="in the model's order: named ones first, then dir1, dir2, ...")


class UploadedLatent(BaseModel):
    token: str = Field(description="the latent's token for /api/latent-face.png and /api/latent")
    name: str = Field(description="the name the file gives the latent")
    count: int = Field(description="latents in the file; the first is used")


class ProjectedPhoto(BaseModel):
    token: str = Field(description="the latent's token for /api/latent-face.png, /api/photo-compare.png, /api/latent")
    psnr: float = Field(description="how closely the reconstruction matches the photo, in dB (higher: closer)")
    seconds: float = Field(description="how long the projection took")
    steps: int = Field(description="optimisation steps")
    aligned: bool = Field(description="true: the largest face was found and aligned; false: the photo's centre square")


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
    """The render thread's queue is full (or, with `message`, another worker is busy); ask again in `retry_after` s."""

    def __init__(self, retry_after: int, message: str | None = None):
        super().__init__(message or f"the server is busy making other images: ask again in {retry_after} s")
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

    def face_png(self, seed: int, truncation: float, scale: int = 1, edits: dict[str, float] | None = None) -> bytes:
        with self._lock, torch.inference_mode():
            face = self.generator.faces([seed], truncation, edits=edits or None)[0]
            return png_bytes(upscale(face, scale))

    def grid_png(self, seed: int, n: int, truncation: float, ncols: int | None, scale: int = 1,
                 edits: dict[str, float] | None = None) -> bytes:
        with self._lock, torch.inference_mode():
            grid = self.generator.grid(n, seed, truncation, ncols, edits=edits or None)
            return png_bytes(upscale(np.asarray(grid), scale))

    def latent_face_png(self, latents: Latents, edits: dict[str, float] | None = None, scale: int = 1) -> bytes:
        with self._lock, torch.inference_mode():
            face = self.generator.latent_faces(latents, edits or None)[0]
            return png_bytes(upscale(face, scale))

    def compare_png(self, latents: Latents, photo: np.ndarray, scale: int = 1) -> bytes:
        """The photo and the face of its projected latent, side by side."""
        with self._lock, torch.inference_mode():
            face = self.generator.latent_faces(latents)[0]
            return png_bytes(upscale(np.concatenate([photo, face], axis=1), scale))

    def latent_file(self, latents: Latents, edits: dict[str, float] | None = None) -> bytes:
        """A latent file of `latents` with the edits applied: it makes the edited face as it is."""
        with self._lock, torch.inference_mode():
            edited = Latents(self.generator.edited(latents.z, edits or None, latents.offset), latents.fingerprint, latents.offset,
                             latents.names)
        return latent_file_bytes(edited)

    def seed_latent_file(self, seed: int, truncation: float, edits: dict[str, float] | None = None) -> bytes:
        z = latents_from_seeds([seed], self.generator.z_dim, truncation)
        return self.latent_file(Latents(z, self.generator.fingerprint, None, [f"seed{seed}"]), edits)

    def read_latent_file(self, data: bytes) -> tuple[Latents, int]:
        """The first latent of an uploaded latent file and how many it holds, once it is known to make a face with
        this model; a 422 saying why not."""
        latents = latents_from_bytes(data)
        if latents.fingerprint != self.generator.fingerprint:
            raise invalid_upload("latent", f"this latent belongs to another model (its fingerprint is "
                                           f"{latents.fingerprint!r}, this server's model is {self.generator.fingerprint!r})"
                                           ": make it again with this model, from one of its faces or a photo")
        if len(latents) == 0:
            raise invalid_upload("latent", "the file holds no latent")
        first = latents.select(0)  # its values are finite: the file's loader refuses NaN and infinities
        with self._lock, torch.inference_mode():
            try:
                self.generator.latent_faces(first)
            except (RuntimeError, ValueError):  # shapes that do not fit the network
                shapes = [tuple(value.shape) for value in (first.z, first.offset) if value is not None]
                raise invalid_upload("latent", f"the latent does not fit this model (shapes {shapes})") from None
        return first, len(latents)

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


def invalid_upload(field: str, message: str) -> RequestValidationError:
    """A 422 about an upload, shaped like FastAPI's own (`loc` names the form field)."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}])


def edits_from(text: str | None, names: list[str]) -> dict[str, float]:
    """The `edit` query as {name: amount} (zero amounts left out); a 422 naming what is wrong with it."""
    if not text:
        return {}
    try:
        edits = parse_edits(text)
    except ValueError as error:
        raise invalid_query("edit", text, str(error).removeprefix(f"--edit {text!r}: ")) from None
    for name, amount in edits.items():
        if name not in names:
            raise invalid_query("edit", text, f"unknown direction {name!r}: this model has {', '.join(names)}")
        if abs(amount) > SLIDER_RANGE:
            raise invalid_query("edit", text, f"{name}={amount:g} is beyond the sliders' range: amounts go from "
                                              f"-{SLIDER_RANGE:g} to +{SLIDER_RANGE:g}")
    return {name: amount for name, amount in edits.items() if amount != 0}


def direction_list(generator: FaceGenerator) -> DirectionList:
    directions = generator.directions
    items = []
    for name in directions.names:
        notes = dict(directions.notes.get(name, {}))
        change = notes.get("change per unit")
        items.append(Direction(name=name, min=-SLIDER_RANGE, max=SLIDER_RANGE, method=str(notes.get("method", "")),
                               change_per_unit=change if isinstance(change, (int, float)) else None, notes=notes))
    return DirectionList(directions=items)


def scratch_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for a latent file on its way in or out, in memory (/dev/shm) where there is one;
    it and the file are deleted when the `with` block ends."""
    shm = Path("/dev/shm")
    memory = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    return tempfile.TemporaryDirectory(prefix="facegan-latent-", dir=memory)


def latent_file_bytes(latents: Latents) -> bytes:
    """The bytes of the latent file `save_latents` writes (loadable by `facegan generate --latent`)."""
    with scratch_folder() as folder:
        return save_latents(latents, Path(folder) / LATENT_FILENAME).read_bytes()


def latents_from_bytes(data: bytes) -> Latents:
    """The latents of an uploaded latent file; a 422 saying what is wrong with the file."""
    with scratch_folder() as folder:
        path = Path(folder) / "upload.safetensors"
        path.write_bytes(data)
        try:
            return load_latents(path)
        except USER_ERRORS as error:
            raise invalid_upload("latent", str(error).replace(str(path), "the uploaded file")) from None


class LatentStore:
    """The latents of uploaded files and projected photos, by token: the newest `capacity`, in memory only."""

    def __init__(self, capacity: int = KEPT_LATENTS):
        self.capacity = capacity
        self._kept: OrderedDict[str, tuple[Latents, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, latents: Latents, photo: np.ndarray | None = None) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._kept[token] = (latents, photo)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
        return token

    def get(self, token: str) -> tuple[Latents, np.ndarray | None]:
        """The latent (and photo, None for an uploaded file) of `token`; 404 when the server does not keep it."""
        with self._lock:
            if token not in self._kept:
                raise HTTPException(404, f"no latent {token!r} here: the server keeps only the newest {self.capacity} "
                                         "uploaded latents and photos in memory, and forgets them when it restarts; "
                                         "upload the latent file or the photo again")
            self._kept.move_to_end(token)
            return self._kept[token]


def megabytes(count: int) -> str:
    return f"{count / 1024 / 1024:g} MB"


async def read_upload(request: Request, file_limit: int, what: str) -> bytes:
    """The body of an upload of one file of at most `file_limit` bytes (MULTIPART_ROOM more for a form), refused
    with 413 once it is longer: at once when its Content-Length says so, else as soon as it has read past the limit.
    An oversized upload is never held whole."""
    limit = file_limit + MULTIPART_ROOM
    refusal = HTTPException(413, f"the upload is larger than {megabytes(file_limit)}: {what} may be at most "
                                 f"{megabytes(file_limit)}")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise refusal
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise refusal
    return bytes(body)


HEADER_PARAMETER = r';\s*{name}="([^"]*)"|;\s*{name}=([^;\s]+)'


def header_parameter(header: str, name: str) -> str | None:
    match = re.search(HEADER_PARAMETER.format(name=name), header, flags=re.IGNORECASE)
    return None if match is None else match.group(1) if match.group(1) is not None else match.group(2)


def uploaded_file(body: bytes, content_type: str, field: str) -> bytes:
    """The file in an upload: in a multipart/form-data body, the part named `field` (else the first file part);
    in any other body, the body itself. Parsed in memory: nothing is spooled to disk."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return body
    boundary = header_parameter(content_type, "boundary")
    if not boundary:
        raise invalid_upload(field, "a multipart/form-data upload without its boundary")
    files = []
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, found, content = part.partition(b"\r\n\r\n")
        if not found:
            raise invalid_upload(field, "a multipart/form-data part without the blank line after its headers")
        headers = dict(line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line)
        disposition = next((value for key, value in headers.items() if key.strip().lower() == "content-disposition"), "")
        name, filename = header_parameter(disposition, "name"), header_parameter(disposition, "filename")
        if name == field:
            return content
        if filename is not None:
            files.append(content)
    if not files:
        raise invalid_upload(field, f"no {field} in the upload: send the file as the form field {field!r}")
    return files[0]


FILE_SIGNATURES = [(b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "a zip archive"), (b"\x1f\x8b", "a gzip archive"),
                   (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"),
                   (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"), (b"\x00\x00\x01\x00", "an icon")]


def upload_kind(data: bytes) -> str:
    """What an upload that is no JPEG, PNG or WebP image looks like, for the message that refuses it."""
    for signature, kind in FILE_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[4:8] == b"ftyp":
        return "a HEIC/AVIF photo or a video (convert it to JPEG)"
    head = data[:4096]
    if head and not any(byte < 32 and byte not in b"\t\n\r\f" for byte in head):
        return "a text file"
    return "a file that is not an image"


def open_photo(data: bytes) -> Image.Image:
    """An uploaded photo as an upright RGB image, once its format (JPEG, PNG or WebP, from its content) and its
    pixel count (from its header, before any pixel is decoded) are allowed; else 415 or 422 saying why."""
    if not data:
        raise invalid_upload("photo", "the upload is empty: choose a JPEG, PNG or WebP photo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged metadata, and Pillow's bomb warning: the pixels are counted below
        try:
            image = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
        except Image.DecompressionBombError as error:
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            count = f"{int(pixels.group(1)) / 1e6:,.0f} megapixels" if pixels else "too many pixels"
            raise invalid_upload("photo", f"the photo has {count}: at most {MAX_PHOTO_PIXELS / 1e6:g} megapixels, "
                                          "please") from None
        except UnidentifiedImageError:
            raise HTTPException(415, f"{upload_kind(data)}, not a photo: upload a JPEG, PNG or WebP image") from None
        except Exception:  # noqa: BLE001  (Pillow's plugins raise many types on a damaged header)
            raise invalid_upload("photo", "the photo's header is damaged: it cannot be read") from None
        with image:
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS:
                raise invalid_upload("photo", f"the photo is {width:,} x {height:,} pixels ({width * height / 1e6:,.0f} "
                                              f"megapixels): at most {MAX_PHOTO_PIXELS / 1e6:g} megapixels, please")
            try:
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
            except Exception:  # noqa: BLE001  (truncated or damaged: OSError, EOFError, SyntaxError, ...)
                raise invalid_upload("photo", f"the {image.format} photo is truncated or damaged: its pixels cannot "
                                              "be decoded") from None


class PhotoProjector:
    """Projects uploaded photos into the model's latent space: one at a time, on a thread of its own.

    A projection runs hundreds of optimisation steps (seconds), so it never holds the render thread: faces are
    still made meanwhile. It works on a copy of the generator on the CPU, because projecting hooks an offset into
    the network's first layer, which would shift every face the render thread made meanwhile. A photo is aligned
    first (its largest face) when the dlib backend is installed, else its centre square is used, as `prepare` does.
    """

    def __init__(self, generator: FaceGenerator, steps: int | None = None, align_photos: bool | None = None):
        config = ProjectConfig(photos=("upload",))
        config = config if steps is None else dataclasses.replace(config, steps=steps)
        config.validate()
        self.generator = generator
        self.options = config.options()
        self.align_photos = align_backend_available() if align_photos is None else align_photos
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facegan-project")
        self._lock = threading.Lock()
        self._started: float | None = None  # when the projection in progress began; None: free
        self._seconds = FIRST_PROJECTION_GUESS  # how long the last one took
        self._networks: tuple[FaceGenerator, Any] | None = None

    def _busy(self) -> QueueFull:
        wait = max(1, math.ceil(self._seconds - (time.perf_counter() - (self._started or 0.0))))
        return QueueFull(wait, f"busy: a photo is being projected, try again in {wait} s")

    def check_free(self) -> None:
        """QueueFull when a projection is running (so an upload is refused before it is read)."""
        with self._lock:
            if self._started is not None:
                raise self._busy()

    async def project(self, data: bytes) -> tuple[Latents, np.ndarray, float, bool]:
        """(latent, photo as the model sees it, PSNR in dB, aligned?) for the photo file `data`; QueueFull while
        another photo is projected, 415/422 for a file that is no usable photo."""
        with self._lock:
            if self._started is not None:
                raise self._busy()
            self._started = time.perf_counter()
        try:
            future = self._thread.submit(self._project, data)
        except RuntimeError:  # shut down
            self._finish()
            raise
        future.add_done_callback(lambda _: self._finish())  # a client that leaves does not stop a started projection
        return await asyncio.wrap_future(future)

    def _finish(self) -> None:
        with self._lock:
            self._started = None

    def _project(self, data: bytes) -> tuple[Latents, np.ndarray, float, bool]:
        started = time.perf_counter()
        try:
            photo = self._photo_pixels(open_photo(data))
            generator, features = self._projection_networks()
            result = project_photos(generator, photo[None], self.options, features, ["photo"])
            self._seconds = time.perf_counter() - started
            return result.latents, photo, float(result.psnr[0]), self.align_photos
        finally:
            release_freed_memory()

    def _photo_pixels(self, image: Image.Image) -> np.ndarray:
        size = self.generator.size
        if not self.align_photos:
            return np.asarray(crop_and_resize(image, size), dtype=np.uint8)
        faces = align(np.asarray(image), size=size, faces="largest")
        if not faces:
            raise invalid_upload("photo", "no face found in the photo: upload one where a face is seen from the front "
                                          "and at least 48 pixels wide")
        return faces[0].image

    def _projection_networks(self) -> tuple[FaceGenerator, Any]:
        """The generator's copy that projection hooks into, and the discriminator's features (None without one)."""
        if self._networks is None:
            network = copy.deepcopy(self.generator.network).to("cpu")
            generator = dataclasses.replace(self.generator, network=network, device=torch.device("cpu"), precision="fp32")
            model_file = self.generator.info.get("checkpoint")
            try:
                features = load_discriminator_features(model_file) if model_file else None
            except USER_ERRORS:  # the file moved or holds no usable discriminator: pixels alone guide projection
                features = None
            self._networks = generator, features
        return self._networks

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


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


def create_app(generator: FaceGenerator, queue_work: float = QUEUE_WORK, project_steps: int | None = None,
               align_photos: bool | None = None, kept_latents: int = KEPT_LATENTS) -> FastAPI:
    """The FastAPI app: the page at /, the API under /api, its schema at /openapi.json.

    `queue_work` bounds the work waiting for the render thread (QUEUE_WORK units by default); beyond it,
    image requests get 503 with Retry-After. An uploaded photo is projected in `project_steps` steps (`facegan
    project`'s default when None), aligned first when `align_photos` (None: when the dlib backend is installed);
    the newest `kept_latents` uploaded or projected latents are kept.
    """
    renderer = FaceRenderer(generator, queue_work)
    projector = PhotoProjector(generator, project_steps, align_photos)
    store = LatentStore(kept_latents)
    info = model_info(generator)
    directions = direction_list(generator)  # a stale directions file (another model's) stops the server here
    names = [direction.name for direction in directions.directions]
    size = generator.size
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        renderer.close()
        projector.close()

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
    async def get_face(seed: Seed = 0, truncation: Truncation = 1.0, scale: ScaleQuery = Scale.x1,
                       edit: Edit = None) -> Response:
        edits = edits_from(edit, names)
        png = await renderer.submit(request_work(1, size), renderer.face_png, seed, truncation, int(scale), edits)
        return Response(png, media_type="image/png")

    @app.get("/api/grid.png", response_class=Response, responses=PNG_RESPONSE,
             summary="A grid of the faces of seeds seed .. seed+n-1, as a PNG")
    async def get_grid(
        seed: Annotated[int, Query(ge=0, le=MAX_SEED, description="seed of the first face")] = 0,
        n: Annotated[int, Query(ge=1, le=MAX_GRID, description="number of faces")] = 16,
        truncation: Truncation = 1.0,
        ncols: Annotated[int | None, Query(ge=1, le=MAX_GRID, description="columns (square when unset)")] = None,
        scale: ScaleQuery = Scale.x1,
        edit: Edit = None,
    ) -> Response:
        edits = edits_from(edit, names)
        if seed + n - 1 > MAX_SEED:
            raise invalid_query("seed", seed, f"the grid's last seed (seed + n - 1) must be at most {MAX_SEED}")
        columns = min(ncols or math.ceil(math.sqrt(n)), n)  # as make_grid lays them out, 2 px apart
        height, width = (math.ceil(n / columns) * (size + 2) + 2) * scale, (columns * (size + 2) + 2) * scale
        check_pixels("n", n, height * width, f"a grid of {n} faces at {int(scale)}x ({width} x {height})")
        png = await renderer.submit(request_work(n, size), renderer.grid_png, seed, n, truncation, ncols, int(scale),
                                    edits)
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

    @app.get("/api/directions", response_model=DirectionList,
             summary="The edit directions: their names (for `edit`), slider ranges and how each was found")
    async def get_directions() -> DirectionList:
        return directions

    @app.get("/api/latent", response_class=Response, responses=LATENT_FILE_RESPONSE,
             summary="The latent of a face (a seed's, or an uploaded latent's or photo's), edits applied, as a file")
    async def get_latent(
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="the face of this seed")] = None,
        token: Annotated[str | None, Query(**TOKEN, description="or the uploaded latent or projected photo of this "
                                                                "token")] = None,
        truncation: Truncation = 1.0,
        edit: Edit = None,
    ) -> Response:
        if (seed is None) == (token is None):
            raise invalid_query("seed", seed, "give either seed (a generated face) or token (an uploaded latent or "
                                              "photo), one of them")
        edits = edits_from(edit, names)
        if token is None:
            data = await renderer.submit(request_work(1, size), renderer.seed_latent_file, seed, truncation, edits)
        else:
            latents, _ = store.get(token)
            data = await renderer.submit(request_work(1, size), renderer.latent_file, latents, edits)
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f"attachment; filename={LATENT_FILENAME}"})

    @app.post("/api/latent", response_model=UploadedLatent, responses={**UPLOAD_RESPONSES, **BUSY_RESPONSE},
              openapi_extra=upload_body("latent", "application/octet-stream",
                                        f"a facegan latent file of this model, at most {megabytes(MAX_LATENT_BYTES)}"),
              summary="Upload a latent file: it is checked against this model and kept, by token, in memory")
    async def post_latent(request: Request) -> UploadedLatent:
        body = await read_upload(request, MAX_LATENT_BYTES, "a latent file")
        data = uploaded_file(body, request.headers.get("content-type", ""), "latent")
        if len(data) > MAX_LATENT_BYTES:
            raise HTTPException(413, f"the latent file is larger than {megabytes(MAX_LATENT_BYTES)}: it cannot be one")
        latents, count = await renderer.submit(request_work(1, size), renderer.read_latent_file, data)
        return UploadedLatent(token=store.add(latents), name=short_input(latents.names[0]), count=count)

    @app.get("/api/latent-face.png", response_class=Response, responses={**PNG_RESPONSE, **FORGOTTEN_RESPONSE},
             summary="The face of an uploaded latent or a projected photo, optionally edited, as a PNG")
    async def get_latent_face(token: Token, edit: Edit = None, scale: ScaleQuery = Scale.x1) -> Response:
        edits = edits_from(edit, names)
        latents, _ = store.get(token)
        png = await renderer.submit(request_work(1, size), renderer.latent_face_png, latents, edits, int(scale))
        return Response(png, media_type="image/png")

    @app.post("/api/project", response_model=ProjectedPhoto, responses=PHOTO_RESPONSES,
              openapi_extra=upload_body("photo", "image/jpeg", f"a JPEG, PNG or WebP photo, at most "
                                        f"{megabytes(MAX_PHOTO_BYTES)} and {MAX_PHOTO_PIXELS / 1e6:g} megapixels"),
              summary="Upload a photo: its face is projected into the model's latent space and kept, by token")
    async def post_project(request: Request) -> ProjectedPhoto:
        projector.check_free()  # before the upload is read
        body = await read_upload(request, MAX_PHOTO_BYTES, "a photo")
        data = uploaded_file(body, request.headers.get("content-type", ""), "photo")
        del body
        if len(data) > MAX_PHOTO_BYTES:
            raise HTTPException(413, f"the photo is larger than {megabytes(MAX_PHOTO_BYTES)}: a photo may be at most "
                                     f"{megabytes(MAX_PHOTO_BYTES)}")
        started = time.perf_counter()
        latents, photo, psnr, aligned = await projector.project(data)
        return ProjectedPhoto(token=store.add(latents, photo), psnr=round(psnr, 2),
                              seconds=round(time.perf_counter() - started, 2), steps=projector.options.steps,
                              aligned=aligned)

    @app.get("/api/photo-compare.png", response_class=Response, responses={**PNG_RESPONSE, **FORGOTTEN_RESPONSE},
             summary="A projected photo and the face of its latent, side by side, as a PNG")
    async def get_photo_compare(token: Token, scale: ScaleQuery = Scale.x1) -> Response:
        latents, photo = store.get(token)
        if photo is None:
            raise HTTPException(404, "this token is an uploaded latent file's, which comes without a photo")
        png = await renderer.submit(request_work(2, size), renderer.compare_png, latents, photo, int(scale))
        return Response(png, media_type="image/png")

    return app
