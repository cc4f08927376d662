"""One client cannot stall `facegan serve`: a bounded queue of image work, 503 + Retry-After beyond it.

Before the bound, 45 concurrent 120-frame morphs kept every image request waiting for minutes (the last of
195 flood requests was answered after 128 s). Now the render thread's queue holds at most QUEUE_WORK units
of work; more is refused at once, /api/info never waits for the render thread, and the memory comes back.
The same flood at a larger scale: `python benchmarks/reliability.py --only flood`.
"""
import asyncio
import base64
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import process_status

import facegan

httpx = pytest.importorskip("httpx", reason="needs httpx (pip install -e '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

from facegan.serve import app as serve_app  # noqa: E402
from facegan.serve import create_app  # noqa: E402
from facegan.serve.app import QUEUE_WORK, SMALL_ROOM, request_work  # noqa: E402

MORPH = "/api/morph.gif?frames=120&start={i}"


@pytest.fixture(scope="module")
def generator(trained_run):
    return facegan.load(trained_run)


class Blocked:
    """The generator, but its work waits until `release()`: the render thread stays busy as long as a test likes."""

    def __init__(self, generator):
        self.generator = generator
        self.started = threading.Event()
        self.go = threading.Event()

    def release(self):
        self.go.set()

    def _wait(self):
        self.started.set()
        assert self.go.wait(timeout=60), "never released"

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def faces(self, *args, **kwargs):
        self._wait()
        return self.generator.faces(*args, **kwargs)

    def grid(self, *args, **kwargs):
        self._wait()
        return self.generator.grid(*args, **kwargs)

    def interpolate(self, *args, **kwargs):
        self._wait()
        return self.generator.interpolate(*args, **kwargs)


async def until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def timed_get(client, url: str):
    started = time.perf_counter()
    response = await client.get(url)
    return response, time.perf_counter() - started


def test_a_full_queue_refuses_at_once_and_light_endpoints_never_wait(generator):
    blocked = Blocked(generator)
    app = create_app(blocked)
    morph_work = request_work(120, generator.size, gif=True)
    admitted = int(QUEUE_WORK // morph_work)  # the first morph runs (blocked), the others wait behind it
    flood = 3 * admitted

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facegan", timeout=60) as client:
            requests = [asyncio.create_task(timed_get(client, MORPH.format(i=i))) for i in range(flood)]
            await until(lambda: sum(task.done() for task in requests) == flood - admitted)
            refused = [task.result() for task in requests if task.done()]
            # The render thread is still held: every answer so far came without waiting for it.
            assert blocked.started.is_set() and not blocked.go.is_set()
            for response, seconds in refused:
                assert response.status_code == 503, response.text
                assert int(response.headers["retry-after"]) >= 1
                assert "busy" in response.json()["detail"]
                assert seconds < 5
            light = [await timed_get(client, url) for url in ("/api/info", "/", "/openapi.json")]
            assert all(response.status_code == 200 and seconds < 1 for response, seconds in light), light
            # A face still gets in: small requests have room of their own beyond the large ones' share.
            face = asyncio.create_task(client.get("/api/face.png?seed=5"))
            await asyncio.sleep(0.2)
            assert not face.done()
            blocked.release()
            served = [response for response, _ in await asyncio.gather(*requests) if response.status_code == 200]
            assert len(served) == admitted and (await face).status_code == 200
            # Everything finished gives its place back: the same flood is admitted as far again.
            again = await asyncio.gather(*(client.get(MORPH.format(i=i)) for i in range(admitted)))
            assert all(response.status_code == 200 for response in again)

    asyncio.run(scenario())


def test_small_requests_keep_room_a_flood_of_large_ones_cannot_take(generator):
    renderer = serve_app.FaceRenderer(generator)
    large, small = request_work(64, 64), request_work(1, 64)
    renderer._queued = QUEUE_WORK - 1  # as if the large requests had filled their share
    assert not renderer.admits(large) and renderer.admits(small)
    renderer._queued = QUEUE_WORK + SMALL_ROOM
    assert not renderer.admits(small)
    renderer._queued = 0
    assert renderer.admits(10 * QUEUE_WORK)  # an empty queue takes anything the per-request caps allow
    renderer.close()


def test_a_request_of_too_many_pixels_is_refused_with_422(generator, monkeypatch):
    monkeypatch.setattr(serve_app, "MAX_PIXELS", 100_000)
    client = TestClient(create_app(generator))
    side = generator.size * 4
    response = client.get("/api/morph.gif", params={"frames": 120, "scale": 4})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "frames"] and f"120 frames of {side} x {side}" in error["msg"]
    assert client.get("/api/grid.png", params={"n": 64, "scale": 4}).json()["detail"][0]["loc"] == ["query", "n"]
    assert client.get("/api/morph.gif", params={"frames": 4, "scale": 4}).status_code == 200


def test_a_422_does_not_echo_a_huge_query_back(generator):
    client = TestClient(create_app(generator))
    response = client.get("/api/face.png", params={"seed": "9" * 60_000, "truncation": "x" * 60})
    assert response.status_code == 422 and len(response.content) < 1_000
    errors = {error["loc"][1]: error for error in response.json()["detail"]}
    assert errors["seed"]["input"].startswith("9999") and errors["seed"]["input"].endswith("(60,000 characters)")
    assert errors["truncation"]["msg"]
    assert client.get("/api/face.png?seed=-1").json()["detail"][0]["input"] == "-1"  # short values stay whole


def test_every_response_says_nosniff_and_the_page_allows_only_its_own_script_and_style(generator):
    client = TestClient(create_app(generator))
    for url in ("/", "/api/info", "/api/face.png", "/openapi.json", "/api/face.png?seed=-1", "/nowhere"):
        assert client.get(url).headers["x-content-type-options"] == "nosniff", url
    page = client.get("/")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", page.text, flags=re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert not re.search(r"<[^>]*\sstyle=", page.text)  # inline style attributes would need 'unsafe-inline'
    assert "content-security-policy" not in client.get("/api/face.png").headers


def test_503_is_a_documented_response_of_every_image_route(generator):
    schema = TestClient(create_app(generator)).get("/openapi.json").json()
    for path in ("/api/face.png", "/api/grid.png", "/api/morph.gif"):
        busy = schema["paths"][path]["get"]["responses"]["503"]
        assert "Retry-After" in busy["headers"] and "application/json" in busy["content"]
    assert "503" not in schema["paths"]["/api/info"]["get"]["responses"]


# A real server in its own process, flooded over HTTP as in the issue.

def rss_mib(pid: int) -> float:
    return process_status(pid)["rss_mib"]


# The flooding client runs in a process of its own, so that its work (195 requests at once) does not delay the
# measuring client: the figures are the server's.
FLOOD_CLIENT = """
import asyncio, json, sys, time, httpx

async def flood(url, paths):
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def one(path):
            response = await client.get(path)
            return response.status_code, response.headers.get("retry-after")
        return await asyncio.gather(*(one(path) for path in paths))

print(json.dumps(asyncio.run(flood(sys.argv[1], json.loads(sys.argv[2])))))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_flood_of_heavy_requests_gets_503s_fast_while_info_stays_fast(server):
    pid, url = server
    heavy = [MORPH.format(i=i) for i in range(45)] + [f"/api/grid.png?n=64&seed={64 * i}" for i in range(150)]
    with httpx.Client(base_url=url, timeout=120) as client:
        for path in (heavy[0], heavy[-1]):  # the render thread, OpenMP and the codecs start here
            client.get(path).raise_for_status()
        idle = rss_mib(pid)
        flood = subprocess.Popen([sys.executable, "-c", FLOOD_CLIENT, url, json.dumps(heavy)], stdout=subprocess.PIPE)
        info, visitor = [], []
        while flood.poll() is None:  # as another visitor: the model card, then a 120-frame morph, in turn
            started = time.perf_counter()
            client.get("/api/info").raise_for_status()
            info.append(time.perf_counter() - started)
            started = time.perf_counter()
            visitor.append((client.get(MORPH.format(i=1000)), time.perf_counter() - started))
        answers = json.loads(flood.communicate(timeout=300)[0])
    statuses = [status for status, _ in answers]
    assert set(statuses) == {200, 503} and statuses.count(503) >= 45, statuses
    assert all(int(retry_after) >= 1 for status, retry_after in answers if status == 503)
    assert info and max(info) < 1, sorted(info)[-5:]  # about 30 ms even on a busy 2-core machine
    refused = [seconds for response, seconds in visitor if response.status_code == 503]
    assert all(response.status_code in (200, 503) for response, _ in visitor)
    assert all(seconds < 1 for seconds in refused), refused
    time.sleep(0.5)
    assert rss_mib(pid) < idle + 100
