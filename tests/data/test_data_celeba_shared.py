"""prepare() on 200 real CelebA photos from ../shared (linked into a temporary CelebA layout, never copied)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.data import PrepareConfig, prepare

SHARED_CELEBA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "celeba"
PICK = {"train": 120, "val": 40, "test": 40}

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not SHARED_CELEBA.is_dir(), reason=f"shared CelebA data not found at {SHARED_CELEBA}"),
]


def first_files_per_split() -> dict[str, list[str]]:
    names = {"0": "train", "1": "val", "2": "test"}
    chosen: dict[str, list[str]] = {split: [] for split in PICK}
    for line in (SHARED_CELEBA / "list_eval_partition.txt").read_text().split("\n"):
        if line.strip():
            file_name, code = line.split()
            split = names[code]
            if len(chosen[split]) < PICK[split]:
                chosen[split].append(file_name)
    return chosen


@pytest.fixture
def linked_celeba(tmp_path) -> tuple[Path, dict[str, list[str]]]:
    chosen = first_files_per_split()
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for file_name in sum(chosen.values(), []):
        (images / file_name).symlink_to(SHARED_CELEBA / "img_align_celeba" / file_name)
    (tmp_path / "celeba" / "list_eval_partition.txt").symlink_to(SHARED_CELEBA / "list_eval_partition.txt")
    return tmp_path / "celeba", chosen


def test_prepare_real_celeba_subset(linked_celeba):
    root, chosen = linked_celeba
    dataset = prepare(PrepareConfig(data=str(root), size=64, workers=2), progress=False)
    assert dataset.images.shape == (200, 64, 64, 3)
    assert dataset.manifest["skipped"] == []
    assert dataset.manifest["splits"] == PICK
    for split, files in chosen.items():
        listed = [dataset.manifest["files"][i]["source"] for i in dataset.split_indices(split)]
        assert listed == sorted(files)

    # the same pixels as the 64 px recipe of the FID reference sets: RGB, crop (0, 20, 178, 198), PIL bicubic
    for index in (0, 199):
        file_name = dataset.manifest["files"][index]["source"]
        data = (root / "img_align_celeba" / file_name).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (178, 218)
            expected = image.convert("RGB").crop((0, 20, 178, 198)).resize((64, 64), Image.BICUBIC)
        assert np.array_equal(dataset.images[index], np.asarray(expected))
