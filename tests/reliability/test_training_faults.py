"""Write failures and divergence: the run stops with a message that names what failed, the last good checkpoint stays."""
import errno

import pytest
import torch

import facegan
import facegan.files
from facegan import checkpoint
from facegan.checkpoint import CheckpointError
from facegan.cli import main as cli_main
from facegan.training import loop
from facegan.training.guard import DivergenceError
from facegan.runs import list_checkpoints

from ..conftest import TINY_TRAIN

EVERY_STEP = {**TINY_TRAIN, "checkpoint_every": 1, "keep": 10}


def failing_writes_from(monkeypatch, step: int, error: OSError, half_written: bool) -> None:
    """Checkpoint writes from `step` on fail with `error`: half-way through the data, or when opening the file."""
    real_write = checkpoint.write_atomically
    real_open = open

    def write(path, writer, durable=False):
        if int(path.stem.split("-")[1]) < step:
            return real_write(path, writer, durable)
        if half_written:
            def half(handle):
                handle.write(b"\0" * 1000)
                raise error
            return real_write(path, half, durable)
        monkeypatch.setattr(facegan.files, "open", lambda *a, **k: (_ for _ in ()).throw(error), raising=False)
        try:
            return real_write(path, writer, durable)
        finally:
            monkeypatch.setattr(facegan.files, "open", real_open, raising=False)

    monkeypatch.setattr(checkpoint, "write_atomically", write)


@pytest.mark.parametrize("error, half_written", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (PermissionError(errno.EACCES, "Permission denied"), False),
])
def test_failed_checkpoint_write_stops_with_a_clear_error_and_loses_nothing(tmp_path, face_folder, monkeypatch,
                                                                            error, half_written):
    run = tmp_path / "run"
    failing_writes_from(monkeypatch, 4, error, half_written)
    with pytest.raises(CheckpointError) as caught:
        facegan.train(face_folder, out=str(run), steps=6, **{**TINY_TRAIN, "keep": 1})
    message = str(caught.value)
    assert f"cannot write checkpoint {run / 'checkpoints' / 'ckpt-00000004.safetensors'} at step 4" in message
    assert error.strerror in message
    assert f"the last checkpoint {run / 'checkpoints' / 'ckpt-00000002.safetensors'} is intact" in message
    assert f"--resume {run}" in message
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt-00000002.safetensors"]  # no temporary left
    assert checkpoint.load(list_checkpoints(run)[0])["progress"]["step"] == 2

    monkeypatch.undo()  # the disk is fixed: the run continues from step 2
    result = facegan.train(resume=run, steps=6, progress=False)
    assert result.step == 6


def test_write_failure_before_any_checkpoint_says_so(tmp_path, face_folder, monkeypatch, capsys):
    failing_writes_from(monkeypatch, 0, OSError(errno.EROFS, "Read-only file system"), half_written=False)
    args = ["train", "--data", str(face_folder), "--out", str(tmp_path / "run"), "--size", "32", "--width", "8",
            "--batch", "8", "--steps", "3", "--checkpoint-every", "2", "--min-size", "16", "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("facegan train: error: cannot write checkpoint") and "Read-only file system" in err
    assert "no checkpoint had been written yet" in err


def poison_after(monkeypatch, step: int, poison) -> None:
    """Let `poison(state, stats)` corrupt the state or the losses right after training step `step`."""
    real_step = loop.train_step

    def train_step(state, *args):
        stats = real_step(state, *args)
        if state.step == step:
            poison(state, stats)
        return stats

    monkeypatch.setattr(loop, "train_step", train_step)


def nan_loss(state, stats):
    stats["loss_d"] = stats["loss_d"] * float("nan")


def inf_loss(state, stats):
    stats["loss_g"] = stats["loss_g"] + float("inf")


def nan_weight(state, stats):
    with torch.no_grad():
        next(state.G.parameters())[0].fill_(float("nan"))


def inf_weight(state, stats):
    with torch.no_grad():
        weight = next(state.D.parameters())
        weight[(0,) * weight.dim()] = float("inf")


@pytest.mark.parametrize("poison, what", [
    (nan_loss, "loss_d is nan"), (inf_loss, "loss_g is inf"),
    (nan_weight, "NaN or Inf in G."), (inf_weight, "NaN or Inf in D."),
])
def test_divergence_stops_at_that_step_and_keeps_the_last_good_checkpoint(tmp_path, face_folder, monkeypatch,
                                                                          poison, what):
    run = tmp_path / "run"
    poison_after(monkeypatch, 3, poison)
    with pytest.raises(DivergenceError) as caught:
        facegan.train(face_folder, out=str(run), steps=6, **EVERY_STEP)
    message = str(caught.value)
    assert message.startswith("training diverged at step 3: ") and what in message
    assert f"the last checkpoint {run / 'checkpoints' / 'ckpt-00000002.safetensors'} is intact" in message
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000002.safetensors", "ckpt-00000001.safetensors"]
    saved = checkpoint.load(list_checkpoints(run)[0])
    assert all(torch.isfinite(t).all() for net in ("G", "G_ema", "D") for t in saved[net].values() if t.is_floating_point())


def test_divergence_in_the_cli_is_one_line_with_exit_code_2(tmp_path, face_folder, monkeypatch, capsys):
    poison_after(monkeypatch, 2, nan_loss)
    args = ["train", "--data", str(face_folder), "--out", str(tmp_path / "run"), "--size", "32", "--width", "8",
            "--batch", "8", "--steps", "4", "--min-size", "16", "--no-progress"]
    assert cli_main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("facegan train: error: training diverged at step 2: loss_d is nan")
    assert "no checkpoint had been written yet" in last
