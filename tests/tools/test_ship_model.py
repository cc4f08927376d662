"""tools/ship_model.py: a finished run becomes the shipped file (generator + discriminator) and its model card."""
import json
from pathlib import Path

import pytest

import facegan
from facegan import checkpoint

from ..benchmarks import load_script

SHIP_MODEL = Path(__file__).resolve().parents[2] / "tools" / "ship_model.py"


@pytest.fixture()
def ship_model(tmp_path, monkeypatch):
    module = load_script(SHIP_MODEL)
    monkeypatch.setattr(module, "PRETRAINED", tmp_path / "pretrained")
    (tmp_path / "pretrained").mkdir()
    return module


EVALUATION = {"fid": 50.0, "kid_mean": 0.03, "kid_std": 0.001, "n_fake": 10_000, "n_real": 2025}


def ship(module, run, tmp_path, name: str, *options: str, evaluation: dict = EVALUATION) -> Path:
    """Ship `run` as `name` with `evaluation` as its eval JSON; the shipped file's path."""
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    module.main(["--run", str(run), "--eval", str(tmp_path / "eval.json"), "--hardware", "2 test cores",
                 "--name", name, *options])
    return tmp_path / "pretrained" / f"{name}.safetensors"


def test_ships_the_runs_generator_and_discriminator_with_a_card_of_its_facts(ship_model, trained_run, tmp_path):
    evaluation = {"fid": 123.456, "kid_mean": 0.0789, "kid_std": 0.0012, "n_fake": 10_000, "n_real": 2025}
    shipped = ship(ship_model, trained_run, tmp_path, "tiny32", evaluation=evaluation)
    assert {"G_ema", "D", "info"} <= set(checkpoint.read_metadata(shipped))
    generator = facegan.load(shipped)
    assert generator.info["fid"] == 123.456 and generator.info["hardware"] == "2 test cores"
    assert generator.info["steps"] == 4 and generator.faces([0]).shape == (1, 32, 32, 3)
    card = (tmp_path / "pretrained" / "tiny32.md").read_text()
    assert "4 steps of batch 8 = " in card
    assert "**123.46**" in card and "`facegan train --init tiny32`" in card and "tiny32.directions.safetensors" in card


def test_a_model_trained_in_stages_has_them_summed_and_listed_on_its_card(ship_model, trained_run, face_folder, tmp_path):
    tuned = facegan.train(face_folder, out=str(tmp_path / "tuned"), init=str(trained_run), steps=2, batch=8,
                          lr_g=1e-3, augment="none", workers=1, progress=False, min_size=16)
    info = facegan.load(ship(ship_model, tuned.run_dir, tmp_path, "staged")).info
    assert [stage["steps"] for stage in info["stages"]] == [4, 2] and info["steps"] == 6
    assert [stage["source"] for stage in info["stages"]] == ["ckpt-00000004.safetensors", "ckpt-00000002.safetensors"]
    card = (tmp_path / "pretrained" / "staged.md").read_text()
    assert "6 steps" in card and "in 2 stages" in card and "| stage 2 | 2 steps of batch 8" in card
    assert "lr G 0.001" in card


def test_earlier_stages_can_be_given_for_a_run_that_predates_stage_records(ship_model, trained_run, tmp_path):
    earlier = [{"source": "/old/ckpt-00014400.safetensors", "steps": 14400, "images_seen": 921_600,
                "train_seconds": 7200.0, "batch": 64, "lr_g": 4e-4, "lr_d": 4e-4, "augment": "none", "ema_kimg": 10.0}]
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    info = facegan.load(ship(ship_model, trained_run, tmp_path, "old", "--earlier", str(tmp_path / "earlier.json"))).info
    assert info["steps"] == 14404 and info["stages"][0]["source"] == "ckpt-00014400.safetensors"
    assert info["hours"] > 2.0
