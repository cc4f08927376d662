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


def test_ships_the_runs_generator_and_discriminator_with_a_card_of_its_facts(ship_model, trained_run, tmp_path):
    evaluation = {"fid": 123.456, "kid_mean": 0.0789, "kid_std": 0.0012, "n_fake": 10_000, "n_real": 2025}
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    ship_model.main(["--run", str(trained_run), "--eval", str(tmp_path / "eval.json"), "--hardware", "2 test cores",
                     "--name", "tiny32"])
    shipped = tmp_path / "pretrained" / "tiny32.safetensors"
    assert {"G_ema", "D", "info"} <= set(checkpoint.read_metadata(shipped))
    generator = facegan.load(shipped)
    assert generator.info["fid"] == 123.456 and generator.info["hardware"] == "2 test cores"
    assert generator.info["steps"] == 4 and generator.faces([0]).shape == (1, 32, 32, 3)
    card = (tmp_path / "pretrained" / "tiny32.md").read_text()
    assert "**123.46**" in card and "`facegan train --init tiny32`" in card and "tiny32.directions.safetensors" in card
