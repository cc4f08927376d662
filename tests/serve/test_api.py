"""The JSON/PNG API of `facegan serve`, through FastAPI's test client."""
import asyncio
import dataclasses
import io
import re
import threading

import numpy as np
import pytest
from PIL import Image

import facegan
from facegan.models import MAX_SEED

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (pip install -e '.[test]')")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from facegan.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def generator(trained_run):
    return facegan.load(trained_run)


@pytest.fixture(scope="module")
def client(generator):
    return TestClient(create_app(generator))


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_face_png_is_the_generators_face(client, generator):
    response = client.get("/api/face.png", params={"seed": 123, "truncation": 0.7})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert np.array_equal(decode(response.content), generator.faces([123], 0.7)[0])


def test_same_seed_same_bytes_other_seed_other_face(client):
    first = client.get("/api/face.png?seed=42").content
    assert client.get("/api/face.png?seed=42").content == first
    assert not np.array_equal(decode(client.get("/api/face.png?seed=43").content), decode(first))


def test_seeds_span_the_whole_uint32_range(client, generator):
    response = client.get(f"/api/face.png?seed={MAX_SEED}")
    assert response.status_code == 200
    assert np.array_equal(decode(response.content), generator.faces([MAX_SEED])[0])


@pytest.mark.parametrize("n,ncols,rows,cols", [(16, 4, 4, 4), (5, None, 2, 3), (64, None, 8, 8), (3, 1, 3, 1)])
def test_grid_png_tiles_consecutive_seeds(client, generator, n, ncols, rows, cols):
    params = {"seed": 1000, "n": n, "truncation": 0.5} | ({"ncols": ncols} if ncols else {})
    response = client.get("/api/grid.png", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    grid, size = decode(response.content), generator.size
    assert grid.shape == (rows * (size + 2) + 2, cols * (size + 2) + 2, 3)
    last_row, last_col = divmod(n - 1, cols)
    top, left = 2 + last_row * (size + 2), 2 + last_col * (size + 2)
    assert np.array_equal(grid[top : top + size, left : left + size], generator.faces([1000 + n - 1], 0.5)[0])


@pytest.mark.parametrize("frames,loop", [(7, False), (12, True)])
def test_morph_gif_has_the_requested_frames(client, frames, loop):
    response = client.get("/api/morph.gif", params={"start": 3, "end": 9, "frames": frames, "loop": loop, "fps": 10})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(response.content))
    assert gif.n_frames == frames
    assert gif.info["duration"] == 100


def test_model_info_comes_from_the_model_config_and_card(client, generator):
    info = client.get("/api/info").json()
    assert (info["arch"], info["size"], info["z_dim"]) == ("dcgan", generator.size, generator.z_dim)
    assert "DCGAN" in info["summary"]
    assert info["card"]["checkpoint"].endswith(".safetensors") and "/" not in info["card"]["checkpoint"]
    assert info["limits"] == {"max_seed": MAX_SEED, "max_grid": 64, "max_frames": 120, "max_fps": 50.0,
                              "max_pixels": 8 * 1024 * 1024, "max_photo_bytes": 10 * 1024 * 1024,
                              "max_photo_pixels": 40_000_000, "max_latent_bytes": 1024 * 1024}


def test_model_card_shows_the_facts_the_generator_carries(generator):
    card = {"data": "CelebA train split", "fid_10k": 31.5, "hardware": "2 CPU cores"}
    app = create_app(dataclasses.replace(generator, info=card))
    info = TestClient(app).get("/api/info").json()
    assert info["card"] == card


@pytest.mark.parametrize(
    "url,parameter",
    [
        ("/api/face.png?seed=-1", "seed"),
        (f"/api/face.png?seed={MAX_SEED + 1}", "seed"),
        ("/api/face.png?seed=abc", "seed"),
        ("/api/face.png?seed=1.5", "seed"),
        ("/api/face.png?truncation=2.01", "truncation"),
        ("/api/face.png?truncation=-0.1", "truncation"),
        ("/api/face.png?truncation=nan", "truncation"),
        ("/api/grid.png?n=0", "n"),
        ("/api/grid.png?n=65", "n"),
        ("/api/grid.png?ncols=0", "ncols"),
        (f"/api/grid.png?seed={MAX_SEED - 2}&n=16", "seed"),
        ("/api/morph.gif?frames=1", "frames"),
        ("/api/morph.gif?frames=121", "frames"),
        ("/api/morph.gif?fps=0", "fps"),
        ("/api/morph.gif?start=-5", "start"),
        (f"/api/morph.gif?end={2**40}", "end"),
        ("/api/morph.gif?loop=maybe", "loop"),
        ("/api/face.png?scale=3", "scale"),
        ("/api/face.png?scale=0", "scale"),
        ("/api/face.png?scale=8", "scale"),
        ("/api/face.png?scale=abc", "scale"),
        ("/api/grid.png?scale=1.5", "scale"),
        ("/api/morph.gif?scale=-2", "scale"),
    ],
)
def test_bad_values_get_422_with_a_readable_message(client, url, parameter):
    response = client.get(url)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", parameter]
    assert isinstance(error["msg"], str) and len(error["msg"]) > 10


def test_openapi_schema_documents_every_route(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/face.png", "/api/grid.png", "/api/morph.gif", "/api/info"} <= set(schema["paths"])
    face = schema["paths"]["/api/face.png"]["get"]
    seed = next(p for p in face["parameters"] if p["name"] == "seed")
    assert (seed["schema"]["minimum"], seed["schema"]["maximum"]) == (0, MAX_SEED)
    assert "image/png" in face["responses"]["200"]["content"]
    grid = schema["paths"]["/api/grid.png"]["get"]
    assert next(p for p in grid["parameters"] if p["name"] == "n")["schema"]["maximum"] == 64
    for path in ("/api/face.png", "/api/grid.png", "/api/morph.gif"):
        scale = next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "scale")
        assert scale["schema"]["default"] == 1 and "nearest" in scale["description"]
    assert schema["components"]["schemas"]["Scale"]["enum"] == [1, 2, 4]


def test_page_is_one_self_contained_file(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for element in ('id="new-face"', 'id="seed"', 'id="truncation"', 'id="grid"', 'id="play-morph"',
                    'id="download-face"', 'id="download-face-2x"', 'id="download-face-4x"', 'id="download-grid-4x"',
                    'id="download-morph-2x"', '<table id="model-card"', "image-rendering: pixelated"):
        assert element in page
    assert "http://" not in page and "https://" not in page and "@import" not in page
    links = re.findall(r"""(?:src|href)=["']([^"']*)""", page)
    assert links and all(link == "data:," or (link.startswith("/") and not link.startswith("//")) for link in links)


def test_concurrent_requests_give_the_same_images_as_one_at_a_time(client, generator):
    urls = [f"/api/face.png?seed={seed}&truncation=0.8" for seed in range(10)] + \
           [f"/api/grid.png?seed={seed}&n=9" for seed in range(4)]
    one_at_a_time = [client.get(url).content for url in urls]

    async def all_at_once():
        transport = httpx.ASGITransport(app=create_app(generator))
        async with httpx.AsyncClient(transport=transport, base_url="http://facegan") as concurrent:
            responses = await asyncio.gather(*(concurrent.get(url) for url in urls))
        return [r.content for r in responses]

    assert asyncio.run(all_at_once()) == one_at_a_time


def nearest_neighbour(pixels: np.ndarray, scale: int) -> np.ndarray:
    return pixels.repeat(scale, axis=-3).repeat(scale, axis=-2)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_scale_enlarges_the_face_and_grid_with_sharp_pixels(client, generator, scale):
    face = client.get("/api/face.png", params={"seed": 7, "truncation": 0.9, "scale": scale})
    assert face.status_code == 200 and face.headers["content-type"] == "image/png"
    assert np.array_equal(decode(face.content), nearest_neighbour(generator.faces([7], 0.9)[0], scale))
    assert client.get("/api/face.png", params={"seed": 7, "truncation": 0.9, "scale": scale}).content == face.content
    one = decode(client.get("/api/grid.png", params={"seed": 5, "n": 6}).content)
    grid = client.get("/api/grid.png", params={"seed": 5, "n": 6, "scale": scale})
    assert np.array_equal(decode(grid.content), nearest_neighbour(one, scale))


def test_scale_one_is_the_default_and_gives_the_same_bytes(client):
    assert client.get("/api/face.png?seed=11&scale=1").content == client.get("/api/face.png?seed=11").content


def test_scale_enlarges_every_frame_of_the_morph(client):
    params = {"start": 2, "end": 5, "frames": 4, "loop": False, "fps": 10}
    plain = Image.open(io.BytesIO(client.get("/api/morph.gif", params=params).content))
    big = Image.open(io.BytesIO(client.get("/api/morph.gif", params={**params, "scale": 4}).content))
    assert big.n_frames == plain.n_frames == 4
    assert big.size == (plain.size[0] * 4, plain.size[1] * 4) and big.info["duration"] == 100


def test_generation_runs_on_one_thread_however_many_requests_are_in_flight(generator):
    """The memory fix: one render thread, not a pool, so one OpenMP team and one malloc arena hold buffers."""
    threads = set()

    class Recording:
        def __getattr__(self, name):
            return getattr(generator, name)

        def faces(self, *args, **kwargs):
            threads.add(threading.get_ident())
            return generator.faces(*args, **kwargs)

        def grid(self, *args, **kwargs):
            threads.add(threading.get_ident())
            return generator.grid(*args, **kwargs)

    app = create_app(Recording())

    async def all_at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facegan") as concurrent:
            urls = [f"/api/face.png?seed={seed}" for seed in range(12)] + \
                   [f"/api/grid.png?n=4&seed={seed}" for seed in range(4)]
            return await asyncio.gather(*(concurrent.get(url) for url in urls))

    assert all(response.status_code == 200 for response in asyncio.run(all_at_once()))
    assert len(threads) == 1 and threading.get_ident() not in threads
