"""benchmarks/gpu_run.py: the photos packed small enough to travel, and a run's model returned in parts."""
import zipfile

import numpy as np
import pytest
from PIL import Image

import facegan
from facegan import checkpoint
from facegan.data import PrepareConfig, prepare

from . import BENCHMARKS, load_benchmark


@pytest.fixture()
def gpu_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_benchmark("gpu_run")


def test_pack_writes_every_train_photo_as_a_close_webp(gpu_run, face_folder, tmp_path):
    packed = gpu_run.main(["pack", "--data", str(face_folder), "--size", "32", "--out", str(tmp_path / "p.zip")])
    assert packed == 0
    prepared = prepare(PrepareConfig(data=str(face_folder), size=32), progress=False)
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        names = sorted(archive.namelist())
        assert len(names) == len(prepared) and all(name.endswith(".webp") for name in names)
        first = np.asarray(Image.open(archive.open(names[0])).convert("RGB"), dtype=np.float64)
    error = np.mean((first - prepared.images[0].astype(np.float64)) ** 2)
    assert 10 * np.log10(255**2 / error) > 25


def test_train_returns_the_model_with_its_discriminator_in_parts_that_join(gpu_run, face_folder, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(gpu_run, "PART_BYTES", 200_000)
    out, run = tmp_path / "out", tmp_path / "run"
    code = gpu_run.main(["train", "--data", str(face_folder), "--minutes", "0.02", "--out", str(out), "--run", str(run),
                         "--", "--arch", "dcgan", "--size", "32", "--width", "8", "--batch", "8"])
    assert code == 0
    parts = sorted(out.glob("model.safetensors.part-*"))
    assert len(parts) > 1 and all(part.stat().st_size <= 200_000 for part in parts)
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    assert joined.read_bytes() == (run / "model.safetensors").read_bytes()
    assert "D" in checkpoint.read_metadata(joined) and (out / "log.jsonl").is_file()
    assert facegan.load(joined).info["trained by"] == "benchmarks/gpu_run.py"
    assert len(facegan.score(joined, sorted(face_folder.rglob("*.png"))[:2]).scores) == 2
