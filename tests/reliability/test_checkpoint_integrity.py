"""Damaged checkpoints are refused by name, and resume falls back to the newest good one."""
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import facegan
from facegan import checkpoint
from facegan.checkpoint import CheckpointError
from facegan.generate import load_generator
from facegan.models import build_discriminator, build_generator, get_architecture
from facegan.runs import list_checkpoints
from facegan.training.state import load_latest

from .faults import corruptions, same_tensors


@pytest.fixture
def run_copy(tmp_path, trained_run):
    """A private copy of the 4-step dcgan run (checkpoints at steps 2 and 4)."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_checkpoints_carry_a_checksum(trained_run):
    metadata = checkpoint.read_metadata(list_checkpoints(trained_run)[0])
    assert metadata["format_version"] == str(checkpoint.FORMAT_VERSION) == "2"
    assert metadata[checkpoint.CHECKSUM_KEY].startswith("sha256:") and len(metadata[checkpoint.CHECKSUM_KEY]) == 71


def test_every_damaged_copy_is_refused_naming_file_and_problem(tmp_path, trained_run):
    good = list_checkpoints(trained_run)[0].read_bytes()
    damaged = corruptions(good, count=60, seed=1)
    assert len(damaged) == 60
    for number, (how, data) in enumerate(damaged.items()):
        path = tmp_path / f"damaged-{number}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as caught:
            checkpoint.load(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and len(message) > len(str(path)) + 10, how
        assert "\n" not in message


@pytest.mark.parametrize("damage, problem", [
    ("truncate", "truncated"), ("flip", "checksum mismatch"), ("empty", "empty file"),
    ("other architecture", "weights do not fit"), ("future format", "newer facegan"),
])
def test_resume_skips_a_damaged_newest_checkpoint(run_copy, capsys, damage, problem):
    newest, previous = list_checkpoints(run_copy)
    damage_checkpoint(newest, damage)
    with pytest.raises(CheckpointError, match=problem) as caught:
        checkpoint_then_fit(newest)
    assert str(newest) in str(caught.value)

    path, saved = load_latest(run_copy, resuming=True)
    assert path == previous and saved["progress"]["step"] == 2
    assert f"skipping checkpoint: {newest}" in capsys.readouterr().err
    assert not newest.exists() and newest.with_name(newest.name + ".unusable").exists()


def checkpoint_then_fit(path):
    from facegan.training.state import check_fits

    check_fits(path, checkpoint.load(path))


def damage_checkpoint(path, damage: str) -> None:
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "flip":
        flipped = bytearray(data)
        flipped[len(data) - 100] ^= 0x10
        path.write_bytes(bytes(flipped))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other architecture":  # the run's config and model, the tensors of a 32 px mlp
        saved = checkpoint.load(path)
        mlp = get_architecture("mlp").config(32, None, 8)
        saved["G"] = saved["G_ema"] = build_generator(mlp).state_dict()
        saved["D"] = build_discriminator(mlp).state_dict()
        checkpoint.save(path, {k: v for k, v in saved.items() if k != "kind"}, kind="training")
    elif damage == "future format":
        save_file({"x": torch.zeros(1)}, str(path), metadata={"format": checkpoint.FORMAT, "format_version": "99"})


def test_other_architecture_is_refused_by_generate_too(run_copy):
    newest = list_checkpoints(run_copy)[0]
    damage_checkpoint(newest, "other architecture")
    with pytest.raises(CheckpointError, match=f"{newest}: generator weights do not fit"):
        load_generator(newest)


def test_resume_after_a_damaged_checkpoint_continues_exactly(tmp_path, face_folder, trained_run, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    newest, previous = list_checkpoints(run)
    damage_checkpoint(newest, "flip")
    result = facegan.train(resume=run, steps=4, progress=False)
    err = capsys.readouterr().err
    assert f"resuming from {previous}" in err and "checksum mismatch" in err
    assert result.step == 4
    assert same_tensors(list_checkpoints(run)[0], list_checkpoints(trained_run)[0])


def test_format_1_checkpoints_without_checksum_still_load(tmp_path, trained_run):
    source = list_checkpoints(trained_run)[0]
    with safe_open(str(source), framework="pt") as f:
        metadata, tensors = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}
    del metadata[checkpoint.CHECKSUM_KEY]
    old = tmp_path / "checkpoints" / "ckpt-00000004.safetensors"
    old.parent.mkdir()
    save_file(tensors, str(old), metadata={**metadata, "format_version": "1"})
    assert checkpoint.load(old)["progress"]["step"] == 4
    assert load_latest(tmp_path)[0] == old
    save_file(tensors, str(old), metadata={**metadata, "format_version": "2"})
    with pytest.raises(CheckpointError, match="checksum is missing"):
        checkpoint.load(old)


def test_leftovers_of_a_killed_write_are_removed_on_resume(run_copy):
    leftover = run_copy / "checkpoints" / ".ckpt-00000006.safetensors.123.abcd1234.partial"
    leftover.write_bytes(b"half a checkpoint")
    assert load_latest(run_copy, resuming=True)[0].name == "ckpt-00000004.safetensors"
    assert not leftover.exists()


def test_a_version_digit_flipped_to_1_does_not_skip_the_checksum(tmp_path, trained_run):
    with safe_open(str(list_checkpoints(trained_run)[0]), framework="pt") as f:
        metadata, tensors = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}
    path = tmp_path / "flipped.safetensors"
    save_file(tensors, str(path), metadata={**metadata, "format_version": "0"})
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load(path)
