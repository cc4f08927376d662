"""Steering through the API of `facegan serve`: edit directions, latent files, and photos projected into the model."""
import asyncio
import dataclasses
import io
import struct
import threading
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import facegan
from facegan.api import Directions, load_latents
from facegan.data.decode import decode_image
from facegan.generate.latents import Latents, save_latents

from ..conftest import draw_face

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (pip install -e '.[test]')")
import httpx
from fastapi.testclient import TestClient

from facegan.serve import app as serve_app
from facegan.serve import create_app
from facegan.serve.app import KEPT_LATENTS, MAX_PHOTO_BYTES

STEPS = 20  # projection steps: enough to move off the starting latent, a fraction of a second for the 32 px model


@pytest.fixture(scope="module")
def generator(trained_run):
    return facegan.load(trained_run)


@pytest.fixture(scope="module")
def client(generator):
    return TestClient(create_app(generator, project_steps=STEPS, align_photos=False))


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def latent_bytes(latents: Latents, tmp_path) -> bytes:
    return save_latents(latents, tmp_path / "latent.safetensors").read_bytes()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A face-like photo as a phone would send it: a 256 x 288 JPEG."""
    face = draw_face(np.random.default_rng(4)).resize((256, 288), Image.BICUBIC)
    return encoded(face, "JPEG", quality=90)


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG whose header says width x height: a 1 x 1 image with its IHDR (and its CRC) rewritten."""
    data = bytearray(encoded(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("face.jpg", b"not really")
    return buffer.getvalue()


# Edit directions

def test_directions_are_listed_in_order_with_their_range_and_how_they_were_found(client, generator):
    directions = client.get("/api/directions").json()["directions"]
    assert [d["name"] for d in directions] == generator.directions.names  # SeFa's dir1..dir10 for the test model
    assert all((d["min"], d["max"]) == (-3.0, 3.0) for d in directions)
    assert all(d["method"] == "sefa" and d["change_per_unit"] is None for d in directions)
    assert directions[0]["notes"]["variance share"] >= directions[1]["notes"]["variance share"]


def test_named_directions_come_first_with_their_change_per_unit(generator):
    notes = {"method": "linear fit to the attribute classifier", "follows": "years", "change per unit": 4.25}
    age = Directions(["age"], torch.nn.functional.normalize(torch.randn(1, generator.z_dim), dim=1),
                     generator.fingerprint, {"age": notes})
    named = dataclasses.replace(generator)
    named.use_directions(age.merged(generator.directions))
    client = TestClient(create_app(named))
    first = client.get("/api/directions").json()["directions"][0]
    assert (first["name"], first["change_per_unit"], first["notes"]["follows"]) == ("age", 4.25, "years")
    edited = client.get("/api/face.png", params={"seed": 3, "edit": "age=2"})
    assert np.array_equal(decode(edited.content), named.faces([3], edits={"age": 2.0})[0])


def test_an_edit_moves_the_face_as_the_generator_does(client, generator):
    plain = decode(client.get("/api/face.png", params={"seed": 5, "truncation": 0.8}).content)
    response = client.get("/api/face.png", params={"seed": 5, "truncation": 0.8, "edit": "dir1=2.5,dir3=-1"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    edited = decode(response.content)
    assert np.array_equal(edited, generator.faces([5], 0.8, edits={"dir1": 2.5, "dir3": -1.0})[0])
    assert not np.array_equal(edited, plain)


def test_an_edit_of_zero_is_the_plain_face_byte_for_byte(client):
    plain = client.get("/api/face.png", params={"seed": 9}).content
    for edit in ("", "dir1=0", "dir1=0,dir2=-0.0", " dir4 = 0 "):
        assert client.get("/api/face.png", params={"seed": 9, "edit": edit}).content == plain, edit


def test_the_grid_takes_an_edit_too(client, generator):
    response = client.get("/api/grid.png", params={"seed": 20, "n": 4, "edit": "dir2=-2"})
    grid, size = decode(response.content), generator.size
    assert np.array_equal(grid[2 : 2 + size, 2 : 2 + size], generator.faces([20], edits={"dir2": -2.0})[0])


@pytest.mark.parametrize("edit,words", [
    ("age=1", "unknown direction 'age': this model has dir1, dir2"),
    ("dir1", "'dir1' is not NAME=AMOUNT"),
    ("dir1=up", "'dir1=up' is not NAME=AMOUNT"),
    ("dir1=nan", "is not NAME=AMOUNT"),
    ("dir1=1,dir1=2", "'dir1' is given twice"),
    ("dir1=3.5", "dir1=3.5 is beyond the sliders' range: amounts go from -3 to +3"),
    ("x" * 1001, "at most 1000 characters"),
])
def test_a_bad_edit_gets_422_naming_the_problem(client, edit, words):
    for path in ("/api/face.png", "/api/grid.png", "/api/latent"):
        response = client.get(path, params={"seed": 1, "edit": edit})
        assert response.status_code == 422, path
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "edit"] and words in error["msg"], error


# Latents as files

def test_a_faces_latent_downloads_as_a_file_that_makes_the_same_face(client, generator, tmp_path):
    params = {"seed": 7, "truncation": 0.8, "edit": "dir2=-1.5"}
    response = client.get("/api/latent", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == "attachment; filename=face-latent.safetensors"
    assert len(response.content) < 4096
    (tmp_path / "face-latent.safetensors").write_bytes(response.content)
    latents = load_latents(tmp_path / "face-latent.safetensors", generator.fingerprint)  # what generate --latent reads
    face = client.get("/api/face.png", params=params).content
    assert np.array_equal(generator.latent_faces(latents)[0], decode(face))

    uploaded = client.post("/api/latent", files={"latent": ("face-latent.safetensors", response.content)})
    assert uploaded.status_code == 200
    assert uploaded.json()["name"] == "seed7" and uploaded.json()["count"] == 1
    token = uploaded.json()["token"]
    assert client.get("/api/latent-face.png", params={"token": token}).content == face
    edited = client.get("/api/latent-face.png", params={"token": token, "edit": "dir1=1", "scale": 2})
    expected = generator.latent_faces(latents, {"dir1": 1.0})[0].repeat(2, 0).repeat(2, 1)
    assert np.array_equal(decode(edited.content), expected)
    # The file itself as the body works as well as a form, and its latent downloads again unchanged (the same
    # values: safetensors does not keep the order of the header's metadata, so the bytes may differ).
    raw = client.post("/api/latent", content=response.content, headers={"content-type": "application/octet-stream"})
    again = client.get("/api/latent", params={"token": raw.json()["token"]})
    (tmp_path / "again.safetensors").write_bytes(again.content)
    assert torch.equal(load_latents(tmp_path / "again.safetensors").z, latents.z)


def test_a_latent_of_another_model_is_refused(client, generator, tmp_path):
    stranger = Latents(torch.randn(1, generator.z_dim), "0123456789abcdef")
    response = client.post("/api/latent", files={"latent": ("other.safetensors", latent_bytes(stranger, tmp_path))})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "latent"] and error["msg"].startswith("this latent belongs to another model")


@pytest.mark.parametrize("content,status,words", [
    (b"hello, I am a text file\n", 422, "the uploaded file"),
    (b"", 422, "the uploaded file"),
    (b"\0" * (1024 * 1024 + 1), 413, "1 MB"),
], ids=["text", "empty", "over 1 MB"])
def test_an_upload_that_is_no_latent_file_is_refused_clearly(client, content, status, words):
    response = client.post("/api/latent", files={"latent": ("face-latent.safetensors", content)})
    assert response.status_code == status
    message = response.text
    assert words in message and "/tmp" not in message and "/dev/shm" not in message, message


def test_a_latent_that_does_not_fit_the_model_is_refused(client, generator, tmp_path):
    wrong = Latents(torch.randn(1, generator.z_dim + 1), generator.fingerprint)
    response = client.post("/api/latent", files={"latent": ("face.safetensors", latent_bytes(wrong, tmp_path))})
    assert response.status_code == 422 and "does not fit this model" in response.json()["detail"][0]["msg"]
    broken = Latents(torch.full((1, generator.z_dim), float("nan")), generator.fingerprint)
    response = client.post("/api/latent", files={"latent": ("face.safetensors", latent_bytes(broken, tmp_path))})
    assert response.status_code == 422 and "NaN or infinite values" in response.json()["detail"][0]["msg"]


def test_the_server_keeps_only_the_newest_latents(client, generator):
    unknown = client.get("/api/latent-face.png", params={"token": "no-such-token"})
    assert unknown.status_code == 404 and f"keeps only the newest {KEPT_LATENTS} " in unknown.json()["detail"]
    client = TestClient(create_app(generator, kept_latents=2))
    data = client.get("/api/latent", params={"seed": 1}).content
    tokens = [client.post("/api/latent", files={"latent": ("f", data)}).json()["token"] for _ in range(3)]
    forgotten = client.get("/api/latent-face.png", params={"token": tokens[0]})
    assert forgotten.status_code == 404 and "keeps only the newest 2" in forgotten.json()["detail"]
    assert all(client.get("/api/latent-face.png", params={"token": t}).status_code == 200 for t in tokens[1:])
    assert client.get("/api/latent", params={"seed": 1, "token": tokens[1]}).status_code == 422  # one or the other
    assert client.get("/api/latent").status_code == 422


# Photos

def test_a_photo_is_projected_and_its_latent_edited_and_downloaded(client, generator, photo, tmp_path):
    response = client.post("/api/project", files={"photo": ("me.jpg", photo, "image/jpeg")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["steps"] == STEPS and result["aligned"] is False and result["psnr"] > 5
    token, size = result["token"], generator.size

    compare = decode(client.get("/api/photo-compare.png", params={"token": token}).content)
    face = decode(client.get("/api/latent-face.png", params={"token": token}).content)
    assert compare.shape == (size, 2 * size, 3)
    assert np.array_equal(compare[:, :size], decode_image(photo, size))  # the centre square, as prepare crops
    assert np.array_equal(compare[:, size:], face)
    photo_pixels, face_pixels = compare[:, :size].astype(float), face.astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((photo_pixels - face_pixels) ** 2))
    assert abs(psnr - result["psnr"]) < 0.01

    edited = client.get("/api/latent-face.png", params={"token": token, "edit": "dir1=-2"}).content
    assert not np.array_equal(decode(edited), face)
    latent = client.get("/api/latent", params={"token": token, "edit": "dir1=-2"})
    (tmp_path / "photo.safetensors").write_bytes(latent.content)
    latents = load_latents(tmp_path / "photo.safetensors", generator.fingerprint)
    assert latents.offset is not None  # the extended code: z and the first layer's offset
    again = client.post("/api/latent", files={"latent": ("photo.safetensors", latent.content)}).json()["token"]
    assert client.get("/api/latent-face.png", params={"token": again}).content == edited
    no_photo = client.get("/api/photo-compare.png", params={"token": again})
    assert no_photo.status_code == 404 and "without a photo" in no_photo.json()["detail"]


def test_the_same_photo_gives_the_same_latent(client, photo):
    faces = []
    for _ in range(2):
        token = client.post("/api/project", files={"photo": ("me.jpg", photo)}).json()["token"]
        faces.append(client.get("/api/latent-face.png", params={"token": token}).content)
    assert faces[0] == faces[1]


def test_png_and_webp_photos_and_a_raw_body_are_accepted(client, photo):
    image = Image.open(io.BytesIO(photo))
    for data in (encoded(image, "PNG"), encoded(image.convert("RGBA"), "WEBP")):
        assert client.post("/api/project", files={"photo": ("face", data)}).status_code == 200
    raw = client.post("/api/project", content=photo, headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200


BAD_PHOTOS = [
    ("notes.txt", b"Dear server,\nthis is not a photo.\n", 415, "a text file, not a photo: upload a JPEG, PNG or WebP"),
    ("faces.zip", zip_file(), 415, "a zip archive, not a photo"),
    ("face.gif", encoded(Image.new("RGB", (64, 64)), "GIF"), 415, "a GIF image, not a photo"),
    ("noise.bin", bytes(range(256)) * 8, 415, "a file that is not an image"),
    ("huge.png", huge_png(20_000, 20_000), 422, "400 megapixels: at most 40 megapixels"),
    ("large.png", huge_png(7_000, 7_000), 422, "7,000 x 7,000 pixels (49 megapixels): at most 40 megapixels"),
    ("cut.jpg", encoded(draw_face(np.random.default_rng(1), 300), "JPEG")[:1500], 422, "truncated or damaged"),
    ("empty.jpg", b"", 422, "the upload is empty"),
]


@pytest.mark.parametrize("name,content,status,words", BAD_PHOTOS, ids=[case[0] for case in BAD_PHOTOS])
def test_a_bad_photo_gets_a_clear_message(client, name, content, status, words):
    response = client.post("/api/project", files={"photo": (name, content, "image/jpeg")})
    assert response.status_code == status, response.text
    assert words in response.text, response.text


def test_a_photo_without_a_face_is_refused_when_photos_are_aligned(generator):
    if not facegan.api.align_backend_available():
        pytest.skip('needs the dlib backend: pip install "facegan[align]"')
    client = TestClient(create_app(generator, project_steps=1, align_photos=True))
    wall = encoded(Image.new("RGB", (256, 256), (180, 170, 160)), "JPEG")
    response = client.post("/api/project", files={"photo": ("wall.jpg", wall)})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("no face found in the photo")
    # A face the shipped model made, enlarged as a photo: found, aligned and projected.
    face = Image.fromarray(facegan.load().faces([3], 0.7)[0]).resize((256, 256), Image.BICUBIC)
    response = client.post("/api/project", files={"photo": ("face.jpg", encoded(face, "JPEG", quality=92))})
    assert response.status_code == 200 and response.json()["aligned"] is True


def count_chunks(total: int, chunk: int = 64 * 1024):
    """An upload body of `total` bytes, sent in chunks; `sent` counts the chunks the server asked for."""
    sent = []

    async def body():
        for _ in range(total // chunk):
            sent.append(chunk)
            yield b"\0" * chunk

    return body, sent


@pytest.mark.parametrize("declared", [True, False])
def test_a_50_mb_upload_gets_413_without_being_read_whole(generator, declared):
    app = create_app(generator, project_steps=STEPS, align_photos=False)
    total = 50 * 1024 * 1024
    body, sent = count_chunks(total)
    headers = {"content-type": "image/jpeg"} | ({"content-length": str(total)} if declared else {})

    async def upload():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facegan") as client:
            return await client.post("/api/project", content=body(), headers=headers)

    response = asyncio.run(upload())
    assert response.status_code == 413
    assert response.json()["detail"] == "the upload is larger than 10 MB: a photo may be at most 10 MB"
    read = sum(sent)
    assert read <= (MAX_PHOTO_BYTES + 256 * 1024 if not declared else 64 * 1024), read  # declared: refused unread


def test_one_photo_at_a_time_while_faces_are_still_made(generator, photo, monkeypatch):
    """A second photo is refused with 503 + Retry-After while one is projected, and faces are answered meanwhile."""
    started, go = threading.Event(), threading.Event()
    project = serve_app.project_photos

    def held(*args, **kwargs):
        started.set()
        assert go.wait(timeout=60), "never released"
        return project(*args, **kwargs)

    monkeypatch.setattr(serve_app, "project_photos", held)
    app = create_app(generator, project_steps=STEPS, align_photos=False)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facegan", timeout=60) as client:
            first = asyncio.create_task(client.post("/api/project", files={"photo": ("a.jpg", photo)}))
            while not started.is_set():
                await asyncio.sleep(0.01)
            second = await client.post("/api/project", files={"photo": ("b.jpg", photo)})
            assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
            detail = second.json()["detail"]
            assert detail.startswith("busy: a photo is being projected, try again in ") and detail.endswith(" s")
            face = await client.get("/api/face.png", params={"seed": 3, "edit": "dir1=1"})
            assert face.status_code == 200 and not first.done()
            assert (await client.get("/api/latent", params={"seed": 3})).status_code == 200
            go.set()
            assert (await first).status_code == 200
            third = await client.post("/api/project", files={"photo": ("c.jpg", photo)})
            assert third.status_code == 200  # free again

    try:
        asyncio.run(scenario())
    finally:
        go.set()


def test_the_schema_documents_the_new_routes(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/api/directions", "/api/latent", "/api/latent-face.png", "/api/project", "/api/photo-compare.png"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/latent"])
    project = paths["/api/project"]["post"]
    assert {"413", "415", "422", "503"} <= set(project["responses"])
    assert "multipart/form-data" in project["requestBody"]["content"]
    assert "photo" in project["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    face = paths["/api/face.png"]["get"]
    edit = next(p for p in face["parameters"] if p["name"] == "edit")
    assert "age=2,dir3=-1.5" in edit["description"]
