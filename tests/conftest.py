"""Fixtures shared by the whole suite: tiny synthetic face-like photos and a tiny trained run."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CELEBA = SHARED / "datasets" / "celeba"

TINY_TRAIN = dict(arch="dcgan", size=32, width=8, batch=8, sample_every=2, checkpoint_every=2,
                  log_every=1, workers=1, progress=False, min_size=16)


def wait_for_log_lines(process, log: Path, lines: int, timeout: float = 300) -> None:
    """Block until the training `process` has logged `lines` steps; fail (with its stderr) if it exits first.

    The timeout only bounds a hang: the wait ends on the event, not on the clock.
    """
    from facegan.training.reporting import read_log

    deadline = time.monotonic() + timeout
    while not (log.exists() and len(read_log(log)) >= lines):
        if process.poll() is not None:
            pytest.fail(f"training exited ({process.returncode}) before logging {lines} steps:\n{process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training logged fewer than {lines} steps in {timeout:.0f} s:\n{process.communicate()[1]}")
        time.sleep(0.1)


def require_shared() -> Path:
    if not CELEBA.is_dir():
        pytest.skip(f"real CelebA data not found at {CELEBA} (present on developer machines and in CI)")
    return SHARED


def draw_face(rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A crude face: skin-coloured ellipse with two eyes and a mouth on a random background."""
    background = tuple(int(v) for v in rng.integers(0, 255, 3))
    image = Image.new("RGB", (size, size + 8), background)
    draw = ImageDraw.Draw(image)
    skin = tuple(int(v) for v in rng.integers(120, 255, 3))
    jitter = int(rng.integers(-3, 4))
    draw.ellipse([8 + jitter, 8, size - 8 + jitter, size], fill=skin)
    for x in (size // 3, 2 * size // 3):
        draw.ellipse([x - 3 + jitter, 22, x + 3 + jitter, 27], fill=(20, 20, 20))
    draw.line([size // 3 + jitter, 40, 2 * size // 3 + jitter, 40], fill=(150, 30, 30), width=2)
    return image


def write_faces(folder: Path, count: int, seed: int = 0, nested: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = folder / (f"person{i % 3}" if nested else "")
        sub.mkdir(parents=True, exist_ok=True)
        draw_face(rng).save(sub / f"face{i:03d}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep prepared caches and downloads out of the user's home directory."""
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path_factory.getbasetemp() / "facegan-cache"))


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory) -> Path:
    return write_faces(tmp_path_factory.mktemp("faces"), 24)


def _tiny_run(tmp_path_factory, face_folder, **overrides) -> Path:
    import facegan

    run_dir = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.getbasetemp() / "facegan-cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEGAN_CACHE", str(cache))
    try:
        facegan.train(face_folder, out=str(run_dir), steps=4, **{**TINY_TRAIN, **overrides})
    finally:
        mp.undo()
    return run_dir


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, face_folder) -> Path:
    """A 4-step dcgan run at 32 px, shared by the generation tests."""
    return _tiny_run(tmp_path_factory, face_folder)


@pytest.fixture(scope="session")
def resnet_run(tmp_path_factory, face_folder) -> Path:
    """A 4-step resnet run at 32 px (no BatchNorm; its discriminator mixes images through minibatch stddev)."""
    return _tiny_run(tmp_path_factory, face_folder, arch="resnet")
