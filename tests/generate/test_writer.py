"""write_faces: the PNGs of `facegan generate`, encoded and written while the next batch is generated."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.generate import FaceGenerator
from facegan.generate import writer
from facegan.generate.writer import DEFAULT_COMPRESS_LEVEL, write_faces
from facegan.models import build_generator, get_architecture

HANG = 60  # seconds: a write_faces call that has not returned by then is hanging


@pytest.fixture(scope="module")
def generator() -> FaceGenerator:
    """A small random dcgan at 32 px: the weights do not matter here, only that faces differ by seed."""
    model = get_architecture("dcgan").config(32, width=8)
    torch.manual_seed(0)
    return FaceGenerator(build_generator(model).eval().requires_grad_(False), model)


def plain_loop(generator, seeds: range, out: Path, truncation: float, batch_size: int) -> list[Path]:
    """What `facegan generate` did before write_faces."""
    out.mkdir()
    paths = []
    for seed, image in zip(seeds, generator.generate(len(seeds), seeds.start, truncation, batch_size)):
        paths.append(out / f"seed{seed:04d}.png")
        image.save(paths[-1])
    return paths


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def call_or_fail(function, *args, **kwargs):
    """function(...) in a thread: its result, or its exception re-raised here; a failed test if it hangs."""
    outcome = {}

    def target():
        try:
            outcome["result"] = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"write_faces still running after {HANG} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_same_files_and_pixels_as_the_plain_loop(generator, tmp_path):
    seeds = range(7, 30)  # 23 faces: the last batch of 8 is short
    before = plain_loop(generator, seeds, tmp_path / "before", truncation=0.7, batch_size=8)
    default = write_faces(generator, seeds, tmp_path / "default", truncation=0.7, batch_size=8)
    assert [p.name for p in default] == [p.name for p in before] == [f"seed{s:04d}.png" for s in seeds]
    assert sorted(os.listdir(tmp_path / "default")) == sorted(os.listdir(tmp_path / "before"))
    for old, new in zip(before, default):
        assert np.array_equal(pixels(new), pixels(old))
    # at Pillow's default level the files are byte for byte those of the plain loop
    level6 = write_faces(generator, seeds, tmp_path / "level6", truncation=0.7, batch_size=8, compress_level=6)
    assert [p.read_bytes() for p in level6] == [p.read_bytes() for p in before]


def test_compress_level_changes_the_bytes_not_the_pixels(generator, tmp_path):
    written = {level: write_faces(generator, range(6), tmp_path / f"level{level}", batch_size=4, compress_level=level)
               for level in (0, DEFAULT_COMPRESS_LEVEL, 9)}
    for stored, fast, small in zip(written[0], written[DEFAULT_COMPRESS_LEVEL], written[9]):
        assert np.array_equal(pixels(stored), pixels(fast)) and np.array_equal(pixels(fast), pixels(small))
        assert stored.stat().st_size > fast.stat().st_size >= small.stat().st_size
        assert fast.read_bytes() != stored.read_bytes()
    with pytest.raises(ValueError, match="0..9"):
        write_faces(generator, range(2), tmp_path / "bad", compress_level=10)
    with pytest.raises(ValueError, match="seeds must be within"):  # before any face is written
        write_faces(generator, range(2**32 - 3, 2**32 + 1), tmp_path / "bad", batch_size=2)
    assert not (tmp_path / "bad").exists()


def test_paths_come_back_in_the_order_of_the_seeds(generator, tmp_path):
    seeds = [42, 3, 17, 3000, 5, 99, 0, 12345, 8, 64, 1]
    paths = call_or_fail(write_faces, generator, seeds, tmp_path, batch_size=2, workers=3, pending=1)
    assert [p.name for p in paths] == [f"seed{s:04d}.png" for s in seeds]
    assert "seed12345.png" in os.listdir(tmp_path)  # four digits at least, not at most
    faces = generator.faces(seeds, batch_size=2)
    for path, face in zip(paths, faces):
        assert np.array_equal(pixels(path), face)
    assert write_faces(generator, [], tmp_path / "none") == []


def test_a_file_that_cannot_be_created_raises_its_oserror(generator, tmp_path):
    (tmp_path / "seed0010.png").mkdir()  # in the way of face 10, even for root
    with pytest.raises(IsADirectoryError) as raised:
        call_or_fail(write_faces, generator, range(200), tmp_path, batch_size=4, workers=2)
    assert raised.value.filename == str(tmp_path / "seed0010.png")
    assert len(list(tmp_path.glob("*.png"))) < 100  # generation stopped soon after the failure


def test_a_full_disk_raises_enospc_with_the_path(generator, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here to fill the disk")
    (tmp_path / "seed0005.png").symlink_to("/dev/full")  # every write to it fails with ENOSPC
    threads = threading.active_count()
    with pytest.raises(OSError) as raised:
        call_or_fail(write_faces, generator, range(200), tmp_path, batch_size=4, workers=2)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(tmp_path / "seed0005.png") and "seed0005.png" in str(raised.value)
    assert not (tmp_path / "seed0005.png").exists()  # no truncated PNG is left behind
    assert threading.active_count() == threads  # the writer threads have ended


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_folder_raises_permission_error(generator, tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as raised:
            call_or_fail(write_faces, generator, range(8), tmp_path, batch_size=4)
    finally:
        tmp_path.chmod(0o700)
    assert raised.value.filename == str(tmp_path / "seed0000.png")


def test_generation_runs_at_most_pending_batches_ahead_of_the_writes(generator, tmp_path, monkeypatch):
    """Memory stays flat for any n: before batch k is generated, batch k - pending has been written."""
    written, lock, behind = [0], threading.Lock(), []
    original = writer.write_png

    def slow_write(path, face, compress_level):
        threading.Event().wait(0.002)
        original(path, face, compress_level)
        with lock:
            written[0] += 1

    class Counting:
        def __init__(self):
            self.batches = 0

        def faces(self, seeds, truncation, batch_size, edits=None):
            with lock:
                behind.append(self.batches * batch_size - written[0])
            self.batches += 1
            return generator.faces(seeds, truncation, batch_size, edits)

    monkeypatch.setattr(writer, "write_png", slow_write)
    paths = write_faces(Counting(), range(60), tmp_path, batch_size=4, workers=2, pending=2)
    assert len(paths) == 60 and written[0] == 60
    assert 0 < max(behind) <= 2 * 4  # the writes overlapped generation, `pending` batches behind at most
