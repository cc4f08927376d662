"""prepare(): the array and manifest it writes, skip accounting, errors, cache reuse and invalidation."""

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

from facegan.data import FORMAT_VERSION, DataError, PrepareConfig, cache_root, open_prepared, prepare
from facegan.data import decoders, pool
from facegan.data.sources import ImageReader


def run(data, capsys=None, **options):
    options.setdefault("workers", 1)
    dataset = prepare(PrepareConfig(data=str(data), **options), progress=False)
    message = capsys.readouterr().err.strip() if capsys else ""
    return dataset, message


def test_folder_is_prepared_into_the_cache(image_folder, capsys):
    dataset, message = run(image_folder, capsys, size=32)
    assert dataset.root.parent == cache_root() / "prepared"
    assert dataset.root.name.endswith("-32px") and len(dataset.root.name) == 16 + len("-32px")
    assert sorted(p.name for p in dataset.root.iterdir()) == ["images.npy", "manifest.json"]
    assert dataset.images.shape == (6, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert isinstance(dataset.images, np.memmap)
    assert message.splitlines() == [f"6 images, 0 skipped -> {dataset.root}"]
    # array order follows the sorted relative paths; a.png is red, b.JPG green
    assert [item["source"] for item in dataset.manifest["files"]][:3] == ["a.png", "b.JPG", "other/f.TIFF"]
    assert tuple(dataset.images[0, 5, 5]) == (255, 0, 0)
    assert tuple(dataset.images[2, 5, 5]) == (255, 0, 255)


def test_manifest_describes_the_array(image_folder):
    dataset, _ = run(image_folder, size=32)
    manifest = json.loads((dataset.root / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["source"] == str(image_folder)
    assert (manifest["size"], manifest["min_size"], manifest["count"]) == (32, 32, 6)
    assert manifest["crop"] == "center-square" and manifest["resize"] == "PIL bicubic, antialiased"
    assert manifest["content_hash"] == hashlib.sha256(np.load(dataset.root / "images.npy").tobytes()).hexdigest()
    assert manifest["content_hash"] == dataset.content_hash
    assert manifest["files"][0] == {"source": "a.png", "split": "train"}
    assert manifest["skipped"] == [] and manifest["skipped_counts"] == {}
    assert manifest["summary"] == "6 images, 0 skipped"


def test_bad_files_are_skipped_with_reasons(image_folder, make, capsys):
    for name, data in make.bad_file_bytes().items():
        make.write(image_folder / "bad" / name, data)
    dataset, message = run(image_folder, capsys)
    assert len(dataset) == 6
    reasons = {item["source"]: item["reason"] for item in dataset.manifest["skipped"]}
    assert reasons == {f"bad/{name}": reason for name, reason in make.BAD_FILES.items()}
    summary = "6 images, 5 skipped: 1 corrupt, 1 empty, 1 not an image, 1 too small, 1 truncated"
    assert dataset.manifest["summary"] == summary
    assert message == f"{summary} -> {dataset.root}"
    assert dataset.manifest["count"] == len(dataset.manifest["files"]) == dataset.images.shape[0]


def test_unreadable_file_is_skipped(image_folder, monkeypatch):
    original = ImageReader.read

    def failing_read(self, name):
        if name == "a.png":
            raise PermissionError("denied")
        return original(self, name)

    monkeypatch.setattr(ImageReader, "read", failing_read)
    dataset, _ = run(image_folder)
    assert dataset.manifest["skipped"] == [{"source": "a.png", "reason": "unreadable"}]
    assert len(dataset) == 5


def test_zip_is_read_in_place_and_unsafe_members_skipped(image_zip, tmp_path):
    dataset, _ = run(image_zip, out=tmp_path / "out")
    assert [item["source"] for item in dataset.manifest["files"]] == ["one.png", "people/three.png", "people/two.jpg"]
    assert dataset.manifest["skipped"] == [{"source": "../evil.jpg", "reason": "unsafe path"}]
    assert tuple(dataset.images[1, 3, 3]) == (0, 0, 255)
    assert not (tmp_path / "evil.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.zip", "out"]


def test_celeba_layout_gets_splits_and_the_face_crop(celeba_dir):
    dataset, _ = run(celeba_dir, size=32)
    assert dataset.manifest["layout"] == "celeba"
    assert dataset.manifest["splits"] == {"train": 7, "val": 2, "test": 2}
    assert dataset.split_indices("val").tolist() == [6, 7]
    # no trace of the red top band or the blue bottom band: only the middle colour of each photo
    for index in range(len(dataset)):
        colour = np.array([0, 10 * (index + 1), 255 - 10 * (index + 1)])
        assert np.abs(dataset.images[index].astype(int) - colour).max() <= 3


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^no image files in .*empty \(looked for .*\.jpg"):
        run(tmp_path / "empty")


def test_folder_of_bad_files_is_a_clear_error_and_leaves_nothing(bad_folder, tmp_path):
    out = tmp_path / "out"
    reasons = "1 corrupt, 1 empty, 1 not an image, 1 too small, 1 truncated"
    expected = f"no usable images in .*bad: 5 skipped \\({reasons}\\)$"
    with pytest.raises(DataError, match=expected):
        run(bad_folder, out=out)
    assert not out.exists()


def test_missing_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        run(tmp_path / "missing")


@pytest.mark.parametrize(("option", "value"), [("size", 48), ("min_size", 0), ("workers", -1)])
def test_invalid_options_are_data_errors(option, value):
    with pytest.raises(DataError, match=option):
        PrepareConfig(data="x", **{option: value})


def fail_if_decoding(*args, **kwargs):
    raise AssertionError("prepare decoded again although the cache was valid")


def test_second_prepare_reuses_the_cache(image_folder, monkeypatch, capsys):
    first, _ = run(image_folder, capsys)
    manifest_mtime = (first.root / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(decoders, "decode_image", fail_if_decoding)
    second, message = run(image_folder, capsys)
    assert second.root == first.root and second.content_hash == first.content_hash
    assert message == f"reusing prepared cache {first.root} (6 images, 0 skipped)"
    assert (first.root / "manifest.json").stat().st_mtime_ns == manifest_mtime


def test_changed_file_invalidates_the_cache(image_folder, make):
    first, _ = run(image_folder, size=32)
    make.write(image_folder / "a.png", make.encode(make.solid((1, 2, 3))))
    stat = (image_folder / "a.png").stat()
    os.utime(image_folder / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second, _ = run(image_folder, size=32)
    assert second.root != first.root
    assert tuple(second.images[0, 0, 0]) == (1, 2, 3)


def test_added_file_and_new_size_invalidate_the_cache(image_folder, make):
    first, _ = run(image_folder, size=32)
    make.write(image_folder / "zz.png", make.encode(make.solid((7, 7, 7))))
    grown, _ = run(image_folder, size=32)
    assert len(grown) == 7 and grown.root != first.root
    resized, _ = run(image_folder, size=64)
    assert resized.images.shape == (7, 64, 64, 3) and resized.root.name.endswith("-64px")


def test_explicit_out_is_rebuilt_when_the_source_changes(image_folder, make, tmp_path):
    out = tmp_path / "prepared"
    run(image_folder, out=out)
    make.write(image_folder / "zz.png", make.encode(make.solid((7, 7, 7))))
    dataset, _ = run(image_folder, out=out)
    assert dataset.root == out and len(dataset) == 7
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "manifest.json"]


def test_out_folder_with_foreign_files_is_refused(image_folder, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="thesis.tex"):
        run(image_folder, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_prepared_dir_as_data_is_opened_directly(image_folder, monkeypatch, capsys):
    first, _ = run(image_folder, capsys)
    monkeypatch.setattr(decoders, "decode_image", fail_if_decoding)
    again, message = run(first.root, capsys)
    assert again.root == first.root and again.content_hash == first.content_hash
    assert message.startswith(f"using prepared dataset {first.root}")


def test_interrupted_prepare_leaves_no_manifest(image_folder, monkeypatch, tmp_path):
    out = tmp_path / "out"
    run(image_folder, out=out)
    calls = []

    def interrupt_on_third(data, size, min_size):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((size, size, 3), np.uint8)

    monkeypatch.setattr(decoders, "decode_image", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(image_folder, out=out, size=32)
    assert sorted(p.name for p in out.iterdir()) == ["images.npy"]
    with pytest.raises(DataError, match="not a prepared dataset"):
        open_prepared(out)
    monkeypatch.undo()
    dataset, _ = run(image_folder, out=out, size=32)
    assert len(dataset) == 6


def test_damaged_prepared_dir_is_reported(image_folder, tmp_path):
    out = tmp_path / "out"
    run(image_folder, out=out)
    np.save(out / "images.npy", np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="incomplete or damaged"):
        open_prepared(out)
    dataset, _ = run(image_folder, out=out)  # prepare repairs it
    assert len(dataset) == 6


def spy_on_pools(monkeypatch) -> list:
    contexts = []
    real_get_context = pool.multiprocessing.get_context

    def recording_get_context(*args):
        contexts.append(real_get_context(*args))
        return contexts[-1]

    monkeypatch.setattr(pool.multiprocessing, "get_context", recording_get_context)
    return contexts


def test_process_pool_gives_the_same_result(tmp_path, make, monkeypatch):
    """More than 64 images and 2 workers: decoded in a pool, same array as in-process."""
    pools = spy_on_pools(monkeypatch)
    folder = tmp_path / "many"
    for index in range(70):
        make.write(folder / f"{index:03d}.png", make.encode(make.solid((index, 255 - index, 3 * index), 32, 32)))
    make.write(folder / "099_bad.png", b"nope")
    make.write(folder / "many.zip", b"")
    pooled, _ = run(folder, size=32, workers=2, out=tmp_path / "pooled")
    assert len(pools) == 1
    single, _ = run(folder, size=32, workers=1, out=tmp_path / "single")
    assert len(pools) == 1
    assert len(pooled) == 70 and pooled.content_hash == single.content_hash
    assert pooled.manifest["skipped_counts"] == {"not an image": 1}
    assert tuple(pooled.images[69, 0, 0]) == (69, 186, 207)


def test_zip_in_a_process_pool(tmp_path, make, monkeypatch):
    pools = spy_on_pools(monkeypatch)
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(70):
            archive.writestr(f"{index:03d}.png", make.encode(make.solid((index, 0, 0), 32, 32)))
    dataset, _ = run(path, size=32, workers=2)
    assert len(pools) == 1 and len(dataset) == 70
    assert dataset.images[:, 0, 0, 0].tolist() == list(range(70))
