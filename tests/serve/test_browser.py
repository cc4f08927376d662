"""End to end: `facegan serve` in its own process, driven by Debian's Chromium through Playwright."""
import io
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install -e '.[test]')")
httpx = pytest.importorskip("httpx", reason="needs httpx (pip install -e '.[test]')")

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
READ_PIXELS = """image => {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def wait_for_url(process: subprocess.Popen, timeout: float = 120) -> str:
    """The page address that `facegan serve` prints once it listens."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=1):
                line = process.stdout.readline()
                if not line:
                    break
                if match := re.search(r"http://\S+", line):
                    return match.group(0)
    process.kill()
    pytest.fail(f"facegan serve printed no address: {process.stderr.read()}")


@pytest.fixture(scope="module")
def server(trained_run):
    process = subprocess.Popen([sys.executable, "-m", "facegan", "serve", "--checkpoint", str(trained_run), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_url(process)
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 960}, accept_downloads=True)
    try:
        page = context.new_page()
        page.set_default_timeout(90_000)  # generous: CI machines may be busy
        page.goto(server)
        page.wait_for_selector("#face[data-shown]")
        yield page
    finally:
        context.close()


def displayed_pixels(page) -> np.ndarray:
    face = page.locator("#face")
    return np.array(face.evaluate(READ_PIXELS), dtype=np.uint8)


def test_the_page_makes_faces_and_shows_exactly_the_api_image(server, page, tmp_path):
    first_seed, first = page.input_value("#seed"), displayed_pixels(page)
    first_shown = page.get_attribute("#face", "data-shown")

    page.click("text=New face")
    page.wait_for_function("shown => document.getElementById('face').dataset.shown !== shown", arg=first_shown)
    assert page.input_value("#seed") != first_seed
    assert not np.array_equal(displayed_pixels(page), first)

    page.fill("#seed", "4242")
    page.press("#seed", "Enter")
    page.wait_for_selector('#face[data-shown^="seed=4242&"]')
    assert page.text_content("#seed-shown") == "4242"
    api_png = httpx.get(f"{server}api/face.png", params={"seed": 4242, "truncation": 1}).content
    api_pixels = np.asarray(Image.open(io.BytesIO(api_png)).convert("RGBA")).ravel()
    assert np.array_equal(displayed_pixels(page), api_pixels)

    with page.expect_download() as download:
        page.click("#download-face")
    assert download.value.suggested_filename == "face-seed4242-t1.png"
    assert Path(download.value.path()).read_bytes() == api_png

    page.wait_for_selector("#grid[data-shown]")
    page.wait_for_selector("#morph[data-shown]")
    assert "dcgan" in page.text_content("#model-card")
    screenshot = page.screenshot(path=tmp_path / "page.png", full_page=True)
    assert Image.open(io.BytesIO(screenshot)).width == 1280


def test_a_bad_seed_is_explained_on_the_page(page):
    page.fill("#seed", "99999999999")
    page.press("#seed", "Enter")
    assert "0 to 4294967295" in page.text_content("#face-status")
