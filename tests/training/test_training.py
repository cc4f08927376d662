import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import facegan
from facegan import checkpoint
from facegan.checkpoint import CheckpointError
from facegan.models import precision
from facegan.training.reporting import read_log
from facegan.runs import list_checkpoints
from facegan.training.state import load_latest

from ..conftest import TINY_TRAIN, wait_for_log_lines


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def test_short_run_writes_everything(trained_run):
    assert [p.name for p in list_checkpoints(trained_run)] == ["ckpt-00000004.safetensors", "ckpt-00000002.safetensors"]
    samples = sorted(p.name for p in (trained_run / "samples").glob("*.png"))
    assert samples == ["step-00000001.png", "step-00000002.png", "step-00000004.png"]  # the first step, then every 2
    for name in ("progress.gif", "losses.png", "log.jsonl"):
        assert (trained_run / name).stat().st_size > 0, name
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    log = read_log(trained_run / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["loss_d"] > 0 and r["loss_g"] > 0 and r["img_per_s"] > 0 for r in log)
    assert log[-1]["kimg"] == pytest.approx(4 * 8 / 1000)


def test_checkpoint_holds_config_models_optimizers_and_state(trained_run):
    saved = checkpoint.load(list_checkpoints(trained_run)[0])
    assert saved["kind"] == "training"
    assert saved["config"]["arch"] == "dcgan" and saved["model"] == {"arch": "dcgan", "size": 32, "z_dim": 100, "width": 8}
    assert saved["progress"]["step"] == 4 and saved["progress"]["images_seen"] == 32
    assert saved["opt_g"]["param_groups"][0]["betas"] == [0.5, 0.999]
    assert set(saved["opt_d"]["state"]) == set(range(len(saved["opt_d"]["param_groups"][0]["params"])))
    assert saved["rng"]["torch"].dtype == torch.uint8
    assert not torch.equal(saved["G"]["main.0.weight"], saved["G_ema"]["main.0.weight"])


def test_resume_is_bit_exact(tmp_path, face_folder):
    straight, split = tmp_path / "straight", tmp_path / "split"
    facegan.train(face_folder, out=str(straight), steps=6, **TINY_TRAIN)
    facegan.train(face_folder, out=str(split), steps=3, **TINY_TRAIN)
    facegan.train(resume=split, steps=6, progress=False)
    a, b = tensors_of(list_checkpoints(straight)[0]), tensors_of(list_checkpoints(split)[0])
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert different == []
    assert [r["step"] for r in read_log(split / "log.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_resume_without_budget_keeps_the_saved_one(tmp_path, face_folder):
    facegan.train(face_folder, out=str(tmp_path), steps=2, **TINY_TRAIN)
    result = facegan.train(resume=tmp_path)
    assert result.step == 2 and result.stopped_by == "steps"


def test_bf16_is_refused_where_it_would_be_emulated(tmp_path, face_folder, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with pytest.raises(ValueError, match=r"no native bfloat16.*use --precision fp32"):
        facegan.train(face_folder, out=str(tmp_path), steps=1, precision="bf16", **TINY_TRAIN)
    assert not list_checkpoints(tmp_path), "nothing is trained before the refusal"


def test_bf16_run_resumed_without_native_bf16_goes_on_in_fp32(tmp_path, face_folder, monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    facegan.train(face_folder, out=str(tmp_path), steps=2, precision="bf16", **TINY_TRAIN)
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    capsys.readouterr()
    result = facegan.train(resume=tmp_path, steps=4, progress=False)
    assert "continuing in fp32" in capsys.readouterr().err
    assert result.step == 4
    assert checkpoint.load(list_checkpoints(tmp_path)[0], ["config"])["config"]["precision"] == "fp32"


def test_checkpoint_round_trips_nested_state(tmp_path):
    state = {"opt": {"state": {0: {"step": torch.tensor(3.0), "m": torch.arange(4.0)}},
                     "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0]}]},
             "counters": {"step": 7, "name": "x", "none": None}}  # "progress" has a schema of its own
    path = checkpoint.save(tmp_path / "c.safetensors", state, kind="test")
    back = checkpoint.load(path)
    assert back["counters"] == state["counters"]
    assert torch.equal(back["opt"]["state"][0]["m"], torch.arange(4.0))
    assert back["opt"]["param_groups"][0]["lr"] == 2e-4
    assert list(tmp_path.iterdir()) == [path]


def test_damaged_newest_checkpoint_falls_back_to_previous(tmp_path, face_folder):
    facegan.train(face_folder, out=str(tmp_path), steps=4, **TINY_TRAIN)
    newest, previous = list_checkpoints(tmp_path)
    newest.write_bytes(newest.read_bytes()[:1000])
    path, saved = load_latest(tmp_path)
    assert path == previous and saved["progress"]["step"] == 2
    with pytest.raises(CheckpointError, match=newest.name):
        checkpoint.load(newest)


def test_checkpoint_from_a_newer_format_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": checkpoint.FORMAT, "format_version": "99", "kind": "training"})
    with pytest.raises(CheckpointError, match="newer facegan"):
        checkpoint.load(path)


def test_sigterm_saves_a_loadable_checkpoint(tmp_path, face_folder):
    run_dir = tmp_path / "run"
    options = {**TINY_TRAIN, "checkpoint_every": 10_000, "sample_every": 10_000}
    args = [sys.executable, "-m", "facegan", "train", "--data", str(face_folder), "--out", str(run_dir), "--steps", "100000"]
    args += [f"--{k.replace('_', '-')}" if v is not False else f"--no-{k.replace('_', '-')}" for k, v in options.items() if isinstance(v, bool)]
    for key, value in options.items():
        if not isinstance(value, bool):
            args += [f"--{key.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env={**os.environ})
    log = run_dir / "log.jsonl"
    wait_for_log_lines(process, log, 3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped (SIGTERM)" in stderr
    path, saved = load_latest(run_dir)
    assert 3 <= saved["progress"]["step"] < 100000
    assert facegan.load(run_dir).generate(1)[0].size == (32, 32)


def test_configs_of_older_checkpoints_still_load():
    from facegan.data import PrepareConfig
    from facegan.training import TrainConfig

    flat = {"data": "photos", "out": "runs/x", "size": 32, "min_size": 16, "template": "ffhq", "arch": "dcgan",
            "amp": "bf16", "seed": 3, "retired_option": 1}
    config = TrainConfig.from_dict(flat)
    assert config.prepare == PrepareConfig(data="photos", size=32, min_size=16, template="ffhq")
    assert (config.out, config.arch, config.precision, config.seed) == ("runs/x", "dcgan", "bf16", 3)
    assert TrainConfig.from_dict({**flat, "amp": "off"}).precision == "fp32"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["prepare"]["size"] == 32 and "size" not in config.to_dict()


def test_loss_r1_and_beta1_options_train_and_resume_with_the_run(tmp_path, face_folder):
    chosen = dict(loss="hinge", r1_gamma=2.0, beta1=0.0)
    straight, split = tmp_path / "straight", tmp_path / "split"
    facegan.train(face_folder, out=str(straight), steps=4, **TINY_TRAIN, **chosen)
    saved = checkpoint.load(list_checkpoints(straight)[0])
    assert {name: saved["config"][name] for name in chosen} == chosen
    assert saved["opt_g"]["param_groups"][0]["betas"] == [0.0, 0.999] == saved["opt_d"]["param_groups"][0]["betas"]
    log = read_log(straight / "log.jsonl")
    assert [r["step"] for r in log if "r1" in r] == [1]  # lazy R1 at step 0 of 16, logged after step 1
    facegan.train(face_folder, out=str(split), steps=2, **TINY_TRAIN, **chosen)
    facegan.train(resume=split, steps=4, progress=False)  # the options come back from the checkpoint
    a, b = tensors_of(list_checkpoints(straight)[0]), tensors_of(list_checkpoints(split)[0])
    assert [key for key in a if not torch.equal(a[key], b[key])] == []
