"""Run folders: a new run never mixes with another, one process at a time, resume on changed photos, refusals.

Each test here reproduces a way a run folder used to be mixed up or destroyed (or an error that was a raw
traceback or errno) and checks the one-line refusal or the safe behaviour that replaced it.
"""
import errno
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

import facegan
from facegan import checkpoint
from facegan.cli import main as cli_main
from facegan.data import DataError
from facegan.runs import LOCK_NAME, RunLock, checkpoint_path, list_checkpoints
from facegan.training import TrainConfig, loop, reporting
from facegan.training.reporting import read_log

from ..conftest import TINY_TRAIN, write_faces
from .faults import start_training

MLP = {**TINY_TRAIN, "arch": "mlp", "checkpoint_every": 1, "keep": 2}


def flags(**options) -> list[str]:
    """Command-line flags for `options` as facegan.train takes them."""
    args = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            args += [flag, str(value)]
    return args


def one_line_error(capsys, args: list[str]) -> str:
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("facegan train: error: ") and "Traceback" not in err, err
    assert "[Errno" not in last, last
    return last


def steps_of(run: Path) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in list_checkpoints(run)]


# 1. A new run into a folder that holds another run.

def test_a_new_run_refuses_a_folder_that_holds_a_run_and_touches_nothing(tmp_path, face_folder, capsys):
    run = tmp_path / "run"
    facegan.train(face_folder, out=str(run), steps=6, **MLP)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = ["train", "--data", str(face_folder), "--out", str(run),
            *flags(**{**TINY_TRAIN, "arch": "dcgan", "steps": 2, "checkpoint_every": 1})]
    line = one_line_error(capsys, args)
    assert f"{run} already holds a run" in line
    assert f"--resume {run}" in line and "--out" in line and "--overwrite" in line
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before, "the earlier run is untouched"


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(tmp_path, face_folder, capsys):
    run = tmp_path / "run"
    facegan.train(face_folder, out=str(run), steps=4, **MLP)
    old_log = (run / "log.jsonl").read_text()
    capsys.readouterr()
    result = facegan.train(face_folder, out=str(run), steps=2, overwrite=True, **{**TINY_TRAIN, "checkpoint_every": 1})
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert f"moved the earlier run in {run} to {aside}" in capsys.readouterr().err
    assert steps_of(aside) == [4, 3] and (aside / "log.jsonl").read_text() == old_log
    assert steps_of(run) == [2, 1] and result.step == 2
    assert checkpoint.load(list_checkpoints(run)[0], ["config"])["config"]["arch"] == "dcgan"
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2]


def test_without_out_each_run_gets_a_fresh_numbered_folder(tmp_path, face_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = facegan.train(face_folder, steps=1, **MLP)
    second = facegan.train(face_folder, steps=1, **TINY_TRAIN)
    assert first.run_dir == Path("runs/00000-mlp-32px") and second.run_dir == Path("runs/00001-dcgan-32px")
    (tmp_path / "runs" / "00041-kept-by-hand").mkdir()
    assert facegan.train(face_folder, steps=1, **MLP).run_dir == Path("runs/00042-mlp-32px")
    assert steps_of(first.run_dir) == [1] and steps_of(second.run_dir) == [1]
    saved = checkpoint.load(list_checkpoints(first.run_dir)[0], ["config"])["config"]
    assert saved["out"] == "runs/00000-mlp-32px"


def test_an_empty_existing_folder_is_used(tmp_path, face_folder):
    run = tmp_path / "run"
    run.mkdir()
    assert facegan.train(face_folder, out=str(run), steps=1, **MLP).step == 1
    assert not (run / LOCK_NAME).exists(), "the lock file goes when the run ends"


# 2. Two processes on one run folder.

def _hold_lock(run: str, ready) -> None:
    RunLock(Path(run)).acquire()
    ready.set()
    time.sleep(600)


@pytest.fixture
def locked(tmp_path):
    """A run folder locked by another process (which the test may kill)."""
    run = tmp_path / "run"
    run.mkdir()
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(run), ready))
    holder.start()
    assert ready.wait(30)
    yield run, holder
    if holder.is_alive():
        holder.kill()
        holder.join()


def test_a_second_process_is_refused_while_a_run_trains_there(tmp_path, prepared_faces, capsys):
    run = tmp_path / "run"
    child = start_training(prepared_faces, run, steps=100_000, keep=2)
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(run) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list_checkpoints(run), "the first run wrote no checkpoint"
        base = ["--data", str(prepared_faces), *flags(**{**MLP, "steps": 3})]
        line = one_line_error(capsys, ["train", *base, "--out", str(run)])
        assert f"{run} is in use by process {child.pid}" in line
        line = one_line_error(capsys, ["train", *base, "--out", str(run), "--overwrite"])
        assert f"in use by process {child.pid}" in line
        line = one_line_error(capsys, ["train", "--resume", str(run), "--no-progress"])
        assert f"in use by process {child.pid}" in line
        assert child.is_alive()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    # kill -9 leaves no stale lock: the run resumes at once
    newest = steps_of(run)[0]
    result = facegan.train(resume=run, steps=newest + 2, progress=False)
    assert result.step == newest + 2


def test_a_killed_lock_holder_leaves_no_stale_lock(locked, face_folder):
    run, holder = locked
    with pytest.raises(RuntimeError, match=f"in use by process {holder.pid}"):
        facegan.train(face_folder, out=str(run), steps=1, **MLP)
    assert list(run.iterdir()) == [run / LOCK_NAME], "nothing written by the refused run"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert facegan.train(face_folder, out=str(run), steps=1, **MLP).step == 1


def test_nproc_refuses_a_locked_folder_before_starting_processes(locked, face_folder, monkeypatch):
    from facegan import api

    run, holder = locked
    monkeypatch.setattr(api, "launch", lambda *args: pytest.fail("processes were started"))
    config = TrainConfig.create(str(face_folder), out=str(run), steps=1, **MLP)
    with pytest.raises(RuntimeError, match=f"in use by process {holder.pid}"):
        api.train_on_processes(2, config)


def test_nproc_resolves_the_default_folder_and_refuses_a_held_run_before_starting(tmp_path, face_folder, monkeypatch):
    from facegan import api

    monkeypatch.chdir(tmp_path)
    launched = []
    monkeypatch.setattr(api, "launch", lambda nproc, function, *args: launched.append(args))
    api.train_on_processes(2, TrainConfig.create(str(face_folder), steps=1, **MLP))
    (config, resume, overwrite, allow_changed_data), = launched
    assert config.out == "runs/00000-mlp-32px" and resume is None and not overwrite and not allow_changed_data
    run = tmp_path / "held"
    facegan.train(face_folder, out=str(run), steps=1, **MLP)
    with pytest.raises(ValueError, match="already holds a run"):
        api.train_on_processes(2, TrainConfig.create(str(face_folder), out=str(run), steps=1, **MLP))


# 4. Resume on changed photos; a relative --data.

@pytest.fixture
def photos(tmp_path) -> Path:
    return write_faces(tmp_path / "photos", 24, seed=1)


def test_resume_on_changed_photos_says_so_and_needs_a_flag(tmp_path, photos, capsys):
    run = tmp_path / "run"
    facegan.train(photos, out=str(run), steps=4, **MLP)
    saved = checkpoint.load(list_checkpoints(run)[0])
    assert saved["data"]["content_hash"] and saved["config"]["prepare"]["data"] == str(photos)
    write_faces(photos / "more", 8, seed=2)
    line = one_line_error(capsys, ["train", "--resume", str(run), "--steps", "6", "--no-progress"])
    assert "changed since" in line and "--allow-changed-data" in line
    assert steps_of(run) == [4, 3], "nothing trained"
    result = facegan.train(resume=run, steps=6, progress=False, allow_changed_data=True)
    assert result.step == 6
    assert checkpoint.load(result.checkpoint)["data"]["content_hash"] != saved["data"]["content_hash"]


def test_resume_after_photos_were_removed_continues_with_the_flag(tmp_path, photos):
    run = tmp_path / "run"
    facegan.train(photos, out=str(run), steps=2, **{**MLP, "batch": 8})  # position 16 of 24
    for path in sorted(photos.rglob("*.*"))[:12]:
        path.unlink()
    with pytest.raises(ValueError, match="changed since"):
        facegan.train(resume=run, steps=4, progress=False)
    assert facegan.train(resume=run, steps=4, progress=False, allow_changed_data=True).step == 4


def test_relative_data_is_stored_absolute_and_data_overrides_it_on_resume(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    run = tmp_path / "run"
    facegan.train("photos", out=str(run), steps=2, **MLP)
    assert checkpoint.load(list_checkpoints(run)[0], ["config"])["config"]["prepare"]["data"] == str(photos)
    monkeypatch.chdir(run)  # another working directory
    assert facegan.train(resume=run, steps=3, progress=False).step == 3
    moved = shutil.move(str(photos), str(tmp_path / "moved"))
    with pytest.raises(DataError, match=f"this run's data {photos} is not found.*--data"):
        facegan.train(resume=run, steps=4, progress=False)
    assert facegan.train(moved, resume=run, steps=4, progress=False).step == 4
    assert checkpoint.load(list_checkpoints(run)[0], ["config"])["config"]["prepare"]["data"] == moved


def test_checkpoints_without_a_data_hash_still_resume(tmp_path, photos):
    run = tmp_path / "run"
    facegan.train(photos, out=str(run), steps=2, **MLP)
    newest = list_checkpoints(run)[0]
    saved = checkpoint.load(newest)
    del saved["data"]
    checkpoint.save(newest, {k: v for k, v in saved.items() if k != "kind"}, kind="training")
    write_faces(photos / "more", 4, seed=3)  # no hash to compare with: nothing to refuse
    assert facegan.train(resume=run, steps=3, progress=False).step == 3


# 11. Options that would train forever or are silently ignored.

@pytest.mark.parametrize("option", ["--kimg", "--minutes", "--ema-kimg", "--ema-rampup", "--lr-g", "--lr-d"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_and_inf_options_are_refused(option, value, tmp_path, face_folder, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, ["train", "--data", str(face_folder), "--steps", "1", option, value])
    assert option in line and "finite" in line
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_options_it_would_ignore(tmp_path, face_folder, capsys):
    run = tmp_path / "run"
    facegan.train(face_folder, out=str(run), steps=2, **MLP)
    line = one_line_error(capsys, ["train", "--resume", str(run), "--arch", "resnet", "--batch", "16", "--size", "128",
                                   "--lr-g", "0.01", "--no-mirror", "--steps", "4"])
    refused = line.split(", so ")[1].split(" cannot change")[0]
    assert refused == "--size 128, --arch resnet, --batch 16, --lr-g 0.01, --no-mirror", line
    assert steps_of(run) == [2, 1]
    assert facegan.train(resume=run, steps=3, progress=False, device="cpu", workers=1).step == 3


# 12. Refused runs leave nothing; failed writes and a deleted folder are one clear line.

@pytest.mark.parametrize("options", [["--batch", "100000"], ["--lr-g", "nan"], ["--device", "cuda:99"],
                                     ["--data", "/no/such/photos"]])
def test_refused_runs_leave_no_folder(options, tmp_path, face_folder, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", str(face_folder), *flags(**{**MLP, "steps": 1})]
    one_line_error(capsys, [*base, "--out", str(tmp_path / "deep" / "run"), *options])
    one_line_error(capsys, [*base, *options])  # the default folder under runs/
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_one_line(tmp_path, face_folder, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = one_line_error(capsys, ["train", "--data", str(face_folder), "--out", str(target), "--steps", "1"])
    assert f"--out {target} is a file" in line
    assert target.read_text() == "mine"


def test_failed_sample_write_says_the_last_checkpoint_is_intact(tmp_path, face_folder, monkeypatch, capsys):
    run = tmp_path / "run"
    real = reporting.save_sample_grid

    def save_sample_grid(run_dir, step, faces):
        if step >= 3:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(run_dir, step, faces)

    monkeypatch.setattr(reporting, "save_sample_grid", save_sample_grid)
    args = ["train", "--data", str(face_folder), "--out", str(run), *flags(**{**MLP, "steps": 4, "sample_every": 1})]
    assert cli_main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"facegan train: error: cannot write sample grid {run / 'samples' / 'step-00000003.png'} "
                           "at step 3 (Read-only file system)")
    assert f"the last checkpoint {checkpoint_path(run, 2)} is intact" in line and f"--resume {run}" in line


def test_deleting_the_run_folder_mid_run_is_one_line(tmp_path, face_folder, monkeypatch, capfd):
    run = tmp_path / "run"
    real_step = loop.train_step

    def train_step(state, *args):
        stats = real_step(state, *args)
        if state.step == 3:
            shutil.rmtree(run)
            time.sleep(0.5)  # TensorBoard's writer thread meets the missing folder first
        return stats

    monkeypatch.setattr(loop, "train_step", train_step)
    args = ["train", "--data", str(face_folder), "--out", str(run), *flags(**{**MLP, "steps": 6, "log_every": 1})]
    assert cli_main(args) == 2
    err = capfd.readouterr().err.strip()
    assert err.splitlines()[-1] == (f"facegan train: error: the run folder {run} was deleted or moved during training; "
                                    "stopped at step 3, nothing more was written")
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert not run.exists(), "the folder is not silently made again"


def test_a_failed_tensorboard_write_is_an_oserror_here_not_a_thread_traceback(tmp_path, capfd):
    run = tmp_path / "run"
    previous_hook = threading.excepthook
    board = reporting.TensorBoard(run)
    if board.writer is None:
        pytest.skip("tensorboard is not installed")
    board.scalars(1, {"a": 1.0})
    board.writer.flush()
    shutil.rmtree(run)
    board.scalars(2, {"a": 2.0})  # TensorBoard's writer thread fails on this one
    deadline = time.monotonic() + 10
    with pytest.raises(OSError):
        while time.monotonic() < deadline:
            board.scalars(3, {"a": 3.0})
            time.sleep(0.05)
    board.close_quietly()
    assert "Exception in thread" not in capfd.readouterr().err
    assert threading.excepthook is previous_hook, "the hook is the run's only"
