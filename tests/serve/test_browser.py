"""End to end: `facegan serve` in its own process, driven by Debian's Chromium through Playwright."""
import io
import json
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
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 960}, accept_downloads=True)
    context.set_default_timeout(90_000)  # generous: CI machines may be busy
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(server, context):
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("#face[data-shown]")
    return page


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


def shown_size(page, selector: str) -> dict:
    return page.locator(selector).evaluate("""image => {
        const box = image.getBoundingClientRect();
        return {natural: [image.naturalWidth, image.naturalHeight], shown: [box.width, box.height],
                rendering: getComputedStyle(image).imageRendering};
    }""")


def test_pictures_are_enlarged_a_whole_number_of_times_with_sharp_pixels(page):
    page.wait_for_selector("#grid[data-shown]")
    page.wait_for_selector("#morph[data-shown]")
    for selector in ("#face", "#grid", "#morph"):
        size = shown_size(page, selector)
        (width, height), (shown_width, shown_height) = size["natural"], size["shown"]
        factor = shown_width / width
        assert size["rendering"] == "pixelated", selector
        assert factor == int(factor) and shown_height == height * factor, (selector, size)
        if selector == "#face":
            assert factor >= 2 and shown_width <= 256  # a 32 px test model: 8 x, at most 256 CSS pixels
    face = shown_size(page, "#face")
    factor = face["shown"][0] // face["natural"][0]
    assert f"{face['natural'][0]} px, shown {factor:.0f}× with sharp pixels" in page.text_content("#face-size")
    actual = page.locator("#face-actual").evaluate("image => [image.clientWidth, image.clientHeight]")
    assert actual == face["natural"]  # and once at its real size


def test_2x_and_4x_downloads_are_the_face_enlarged_by_the_server(server, page):
    page.fill("#seed", "4242")
    page.press("#seed", "Enter")
    page.wait_for_selector('#face[data-shown^="seed=4242&"]')
    one = np.asarray(Image.open(io.BytesIO(httpx.get(f"{server}api/face.png", params={"seed": 4242}).content)))
    size = one.shape[0]
    for scale in (2, 4):
        link = f"#download-face-{scale}x"
        assert page.text_content(link) == f"{scale}× · {size * scale} px"
        with page.expect_download() as download:
            page.click(link)
        assert download.value.suggested_filename == f"face-seed4242-t1-{scale}x.png"
        png = Path(download.value.path()).read_bytes()
        assert png == httpx.get(f"{server}api/face.png", params={"seed": 4242, "truncation": 1, "scale": scale}).content
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), one.repeat(scale, 0).repeat(scale, 1))
    assert page.text_content("#download-face") == f"1× · {size} px"
    assert "scale=4" in page.get_attribute("#download-grid-4x", "href")
    assert "scale=2" in page.get_attribute("#download-morph-2x", "href")


def test_the_model_card_is_a_table_with_readable_labels(server, context):
    info = httpx.get(f"{server}api/info").json()
    info["card"] |= {"fid": 40.255870787115896, "kid_mean": 0.026813195771959883, "kid_std": 0.0008855140262868711,
                     "kid_mean_x1000": 26.813195771959883, "n_fake": 10000, "last_seed": 9999, "hours": 1.26,
                     "lpips_score_x1000": 12.5, "notes": "a fact the page has no label for"}
    page = context.new_page()
    page.route("**/api/info", lambda route: route.fulfill(status=200, content_type="application/json",
                                                          body=json.dumps(info)))
    page.goto(server)
    page.wait_for_selector("#model-card tr[data-key]")
    rows = page.locator("#model-card tr[data-key]").evaluate_all(
        "rows => rows.map(row => [row.dataset.key, row.querySelector('th[scope=row]').textContent, "
        "row.querySelector('td').textContent])")
    table = {key: (label, value) for key, label, value in rows}
    assert page.locator("table#model-card th[scope=rowgroup]").all_text_contents()[:1] == ["Model"]
    assert table["fid"] == ("FID", "40.26")
    assert table["kid_mean"] == ("KID", "0.0268 ± 0.0009")
    assert table["n_fake"] == ("Generated faces", "10,000 (seeds 0 – 9,999)")
    assert table["hours"] == ("Training time", "1 h 16 min")
    assert table["size"] == ("Resolution", f"{info['size']} × {info['size']} px")
    assert table["arch"][0] == "Architecture" and table["arch"][1].startswith("dcgan")
    assert table["lpips_score_x1000"] == ("LPIPS score (× 1,000)", "12.5")  # an unknown key, still shown
    assert table["notes"] == ("Notes", "a fact the page has no label for")
    assert not {"kid_std", "kid_mean_x1000", "last_seed", "summary"} & set(table)  # folded into other rows
    assert all("_" not in label for label, _ in table.values())


def test_the_content_security_policy_blocks_nothing_the_page_does(server, context):
    page = context.new_page()
    page.add_init_script("window.violations = []; document.addEventListener('securitypolicyviolation', "
                         "event => window.violations.push(event.violatedDirective + ' ' + event.blockedURI));")
    refusals = []
    page.on("console", lambda message: refusals.append(message.text) if "Content Security Policy" in message.text
            else None)
    response = page.goto(server)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    for view in ("face", "grid", "morph"):
        page.wait_for_selector(f"#{view}[data-shown]")
    page.wait_for_selector("#model-card tr[data-key]")
    assert page.evaluate("window.violations") == [] and refusals == []
    assert page.evaluate("getComputedStyle(document.querySelector('.toolbar')).maxWidth") == "1140px"


def test_a_busy_server_is_asked_again_after_retry_after(server, context):
    page = context.new_page()
    refused = []

    def busy_once(route):
        if not refused:
            refused.append(route.request.url)
            route.fulfill(status=503, headers={"Retry-After": "1"}, content_type="application/json",
                          body=json.dumps({"detail": "the server is busy making other images: ask again in 1 s"}))
        else:
            route.continue_()

    page.route("**/api/face.png?*", busy_once)
    page.goto(f"{server}#seed=77")
    # A function, not an expression: the page's CSP forbids eval, which Playwright polls a bare expression with.
    page.wait_for_function("() => document.getElementById('face-status').textContent.includes('busy')")
    page.wait_for_selector('#face[data-shown^="seed=77&"]')
    assert len(refused) == 1 and page.text_content("#face-status") == ""


# Steering: sliders, latent files and an uploaded photo.

def api_pixels(server: str, path: str, **params) -> np.ndarray:
    """The API's image as the page reads it back from a canvas: RGBA, flattened."""
    png = httpx.get(f"{server}api/{path}", params=params, timeout=60).content
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).ravel()


def wait_shown(page, view: str, shown: str) -> None:
    """Until the view shows the picture of this exact query (its data-shown)."""
    page.wait_for_function("([view, shown]) => document.getElementById(view).dataset.shown === shown",
                           arg=[view, shown])


def photo_of_a_face() -> bytes:
    """A face the shipped 64 px model made, enlarged to 256 px and saved as a JPEG, as a phone photo would be:
    dlib finds and aligns it, so the server's default path (align when the backend is installed) is the one tested."""
    import facegan

    face = Image.fromarray(facegan.load().faces([3], 0.7)[0]).resize((256, 256), Image.BICUBIC)
    buffer = io.BytesIO()
    face.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_the_sliders_edit_the_face_and_reset_brings_it_back(server, page):
    page.fill("#seed", "4242")
    page.press("#seed", "Enter")
    wait_shown(page, "face", "seed=4242&truncation=1")
    plain = displayed_pixels(page)
    sliders = page.locator("#sliders input[type=range]")
    directions = httpx.get(f"{server}api/directions").json()["directions"]
    expected = [d["name"] for d in directions if d["method"] != "sefa"] + \
               [d["name"] for d in directions if d["method"] == "sefa"][:5]  # every named one, dir1..dir5
    assert sliders.evaluate_all("all => all.map(s => [s.dataset.direction, s.min, s.max, s.value])") == \
        [[name, "-3", "3", "0"] for name in expected]
    assert page.text_content("label[for=edit-dir1]") == "Direction 1"

    page.fill("#edit-dir1", "2")
    page.fill("#edit-dir3", "-1.5")
    wait_shown(page, "face", "seed=4242&truncation=1&edit=dir1%3D2%2Cdir3%3D-1.5")
    edited = displayed_pixels(page)
    assert not np.array_equal(edited, plain)
    assert np.array_equal(edited, api_pixels(server, "face.png", seed=4242, truncation=1, edit="dir1=2,dir3=-1.5"))
    assert page.text_content("output[for=edit-dir1]") == "2.0"
    assert "edit=dir1=2,dir3=-1.5" in page.evaluate("location.hash")

    page.fill("#edit-dir1", "0")  # a slider back at 0 leaves the edit
    wait_shown(page, "face", "seed=4242&truncation=1&edit=dir3%3D-1.5")
    page.click("#reset-sliders")
    wait_shown(page, "face", "seed=4242&truncation=1")
    assert np.array_equal(displayed_pixels(page), plain)
    assert sliders.evaluate_all("all => all.map(s => s.value)") == ["0"] * len(expected)


def test_an_edit_in_the_address_is_restored_on_its_sliders(server, context):
    page = context.new_page()
    page.goto(f"{server}#seed=77&truncation=0.5&edit=dir2=-1.2")
    wait_shown(page, "face", "seed=77&truncation=0.5&edit=dir2%3D-1.2")
    assert page.input_value("#edit-dir2") == "-1.2"
    assert np.array_equal(displayed_pixels(page), api_pixels(server, "face.png", seed=77, truncation=0.5, edit="dir2=-1.2"))


def test_a_downloaded_latent_loads_back_as_the_same_face(server, page, tmp_path):
    page.fill("#seed", "31")
    page.press("#seed", "Enter")
    page.fill("#edit-dir2", "-1.5")
    wait_shown(page, "face", "seed=31&truncation=1&edit=dir2%3D-1.5")
    edited = displayed_pixels(page)
    with page.expect_download() as download:
        page.click("#download-latent")
    assert download.value.suggested_filename == "face-latent.safetensors"
    latent = tmp_path / "face-latent.safetensors"
    download.value.save_as(latent)
    assert latent.stat().st_size < 4096

    page.click("#reset-sliders")
    wait_shown(page, "face", "seed=31&truncation=1")
    page.set_input_files("#latent-file", latent)
    page.wait_for_selector('#face[data-shown^="token="]')
    assert page.text_content("#subject-kind") == "latent" and page.text_content("#seed-shown") == "seed31"
    assert np.array_equal(displayed_pixels(page), edited)  # the edit travels inside the file
    assert page.input_value("#edit-dir2") == "0"
    page.fill("#edit-dir1", "1")  # and the sliders edit the loaded face
    page.wait_for_selector('#face[data-shown$="&edit=dir1%3D1"]')
    token = page.get_attribute("#face", "data-shown").split("&")[0].removeprefix("token=")
    assert np.array_equal(displayed_pixels(page), api_pixels(server, "latent-face.png", token=token, edit="dir1=1"))


def test_an_uploaded_photo_is_shown_beside_its_reconstruction_and_edited(server, page, tmp_path):
    page.set_input_files("#photo-file", files=[{"name": "me.jpg", "mimeType": "image/jpeg", "buffer": photo_of_a_face()}])
    page.wait_for_selector("#compare[data-shown]")
    page.wait_for_selector('#face[data-shown^="token="]')
    assert page.is_visible("#compare") and page.text_content("#edit-status") == ""
    line = page.text_content("#psnr-line")
    assert re.search(r"PSNR \d+(\.\d)? dB", line) and ("aligned" in line or "centre square" in line), line
    assert (page.text_content("#subject-kind"), page.text_content("#seed-shown")) == ("your photo", "me.jpg")
    token = page.get_attribute("#face", "data-shown").removeprefix("token=")
    compare = page.locator("#compare").evaluate("image => [image.naturalWidth, image.naturalHeight]")
    size = page.locator("#face").evaluate("image => image.naturalWidth")
    assert compare == [2 * size, size]
    compare_pixels = np.array(page.locator("#compare").evaluate(READ_PIXELS), dtype=np.uint8)
    assert np.array_equal(compare_pixels, api_pixels(server, "photo-compare.png", token=token))

    page.fill("#edit-dir1", "-2")
    wait_shown(page, "face", f"token={token}&edit=dir1%3D-2")
    assert np.array_equal(displayed_pixels(page), api_pixels(server, "latent-face.png", token=token, edit="dir1=-2"))
    with page.expect_download() as download:
        page.click("#download-latent")
    latent = tmp_path / "photo-latent.safetensors"
    download.value.save_as(latent)
    from facegan.api import load_latents

    assert load_latents(latent).offset is not None  # the photo's extended latent, edit applied

    page.click("text=New face")  # back to generated faces: the photo's comparison goes away
    page.wait_for_selector('#face[data-shown^="seed="]')
    assert page.is_hidden("#compare-box")


def test_bad_uploads_and_a_busy_server_are_explained_on_the_page(server, context, tmp_path):
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("#face[data-shown]")
    page.set_input_files("#photo-file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                "buffer": b"not a photo at all\n"}])
    page.wait_for_selector("#edit-status.error")
    assert page.text_content("#edit-status") == \
        "upload a photo: a text file, not a photo: upload a JPEG, PNG or WebP image"

    page.set_input_files("#latent-file", files=[{"name": "face-latent.safetensors", "mimeType": "application/octet-stream",
                                                 "buffer": b"garbage"}])
    page.wait_for_function("() => document.getElementById('edit-status').textContent.startsWith('load latent: latent:')")

    big = tmp_path / "big.jpg"
    with big.open("wb") as handle:  # a sparse 11 MB file: refused by the page before it is sent
        handle.truncate(11 * 1024 * 1024)
    page.set_input_files("#photo-file", big)
    page.wait_for_function("() => document.getElementById('edit-status').textContent.includes('at most 10 MB')")

    page.route("**/api/project", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "4"}, content_type="application/json",
        body=json.dumps({"detail": "busy: a photo is being projected, try again in 4 s"})))
    page.set_input_files("#photo-file", files=[{"name": "me.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8"}])
    page.wait_for_function("() => document.getElementById('edit-status').textContent.includes('busy')")
    assert page.text_content("#edit-status") == "upload a photo: busy: a photo is being projected, try again in 4 s"
    assert page.locator("#edit-status").evaluate("line => line.classList.contains('error')")


def test_named_directions_get_the_first_sliders_with_what_one_step_changes(server, context):
    directions = httpx.get(f"{server}api/directions").json()
    fitted = {"method": "linear fit to the attribute classifier", "fitted on": "5000 faces, seed 0"}
    named = [{"name": "age", "min": -3, "max": 3, "method": fitted["method"], "change_per_unit": 6.5073,
              "notes": {**fitted, "follows": "years", "change per unit": 6.5073}},
             {"name": "gender", "min": -3, "max": 3, "method": fitted["method"], "change_per_unit": 3.3521,
              "notes": {**fitted, "follows": "logit of P(female)", "change per unit": 3.3521}}]
    directions["directions"] = named + directions["directions"]
    page = context.new_page()
    page.route("**/api/directions", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                body=json.dumps(directions)))
    page.goto(server)
    page.wait_for_selector("#edit-dir5")
    labels = page.locator("#sliders label").all_text_contents()
    assert labels == ["Age", "Gender"] + [f"Direction {k}" for k in range(1, 6)]
    assert page.locator("#sliders .note").all_text_contents() == \
        ["≈ +6.51 years per 1.0", "≈ +3.35 in the logit of P(female) per 1.0"]
    assert page.get_attribute("label[for=edit-dir1]", "title").startswith("found without labels (SeFa): ")
