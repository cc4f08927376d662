"""Listing sources: folders, zips and the CelebA layout; the fingerprint that keys the cache."""

import os
import zipfile

import pytest

from facegan.data import DataError
from facegan.data.cache import source_fingerprint
from facegan.data.sources import find_source, is_unsafe_member_name, read_partition


def names(source) -> list[str]:
    return [entry.name for entry in source.entries]


def test_folder_is_searched_recursively_for_image_extensions_only(image_folder):
    source = find_source(image_folder)
    assert source.layout == "folder"
    assert names(source) == ["a.png", "b.JPG", "other/f.TIFF", "sub/c.jpeg", "sub/deeper/d.bmp", "sub/e.webp"]
    assert {entry.split for entry in source.entries} == {"train"}


def test_zip_members_listed_without_directories_or_junk(image_zip):
    source = find_source(image_zip)
    assert source.layout == "zip"
    assert names(source) == ["../evil.jpg", "one.png", "people/three.png", "people/two.jpg"]
    assert [entry.skip for entry in source.entries] == ["unsafe path", None, None, None]


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [("../evil.jpg", True), ("a/../../b.jpg", True), ("/etc/x.png", True), ("C:/x.png", True), ("a/b..c.png", False)],
)
def test_unsafe_member_names(name, unsafe):
    assert is_unsafe_member_name(name) is unsafe


def test_celeba_layout_reads_partition(celeba_dir):
    source = find_source(celeba_dir)
    assert source.layout == "celeba"
    assert source.image_root == celeba_dir / "img_align_celeba"
    splits = {entry.name: entry.split for entry in source.entries}
    assert splits["000001.jpg"] == "train" and splits["000007.jpg"] == "val" and splits["000010.jpg"] == "test"
    assert splits["000011.jpg"] == "train"  # present but not listed


def test_celeba_nested_download_layout(celeba_dir):
    outer = celeba_dir / "img_align_celeba"
    inner = outer / "img_align_celeba"
    inner.mkdir()
    for path in outer.glob("*.jpg"):
        path.rename(inner / path.name)
    source = find_source(celeba_dir)
    assert source.image_root == inner
    assert len(source.entries) == 11


def test_bad_partition_line_is_a_data_error(tmp_path):
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(DataError, match="line 2"):
        read_partition(partition)


def test_missing_path_and_non_zip_file_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        find_source(tmp_path / "nowhere")
    text = tmp_path / "faces.txt"
    text.write_text("hi")
    with pytest.raises(DataError, match="folder of images or a .zip"):
        find_source(text)


def fingerprint(path, size=64, min_size=32) -> str:
    return source_fingerprint(find_source(path), size, min_size)


def test_fingerprint_is_stable_and_tracks_changes(image_folder, make):
    first = fingerprint(image_folder)
    assert fingerprint(image_folder) == first
    assert fingerprint(image_folder, size=32) != first
    assert fingerprint(image_folder, min_size=16) != first

    stat = (image_folder / "a.png").stat()
    os.utime(image_folder / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = fingerprint(image_folder)
    assert touched != first

    make.write(image_folder / "new.png", make.encode(make.solid((5, 5, 5))))
    assert fingerprint(image_folder) != touched


def test_fingerprint_of_zip_tracks_member_content(tmp_path, make):
    path = tmp_path / "set.zip"
    for colour in [(1, 1, 1), (2, 2, 2)]:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.png", make.encode(make.solid(colour)))
        if colour == (1, 1, 1):
            first = fingerprint(path)
    assert fingerprint(path) != first


def test_fingerprint_tracks_partition_file(celeba_dir):
    first = fingerprint(celeba_dir)
    partition = celeba_dir / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace("000001.jpg 0", "000001.jpg 2"))
    assert fingerprint(celeba_dir) != first
