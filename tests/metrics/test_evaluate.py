"""`facegan eval` plumbing, with a tiny TorchScript stand-in for the Inception network."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import facegan
from facegan.cli import main
from facegan.metrics import fid_from_features
from facegan.metrics.evaluate import EvalConfig


class TinyLayers(torch.nn.Module):
    """Maps N x 3 x 299 x 299 to N x 2048 deterministic features (not Inception: plumbing only)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2048, 8, stride=8)

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1).flatten(1)


class TinyFeatures(torch.nn.Module):
    """Laid out like the FID network's TorchScript file: the feature network is `layers`."""

    def __init__(self):
        super().__init__()
        self.layers = TinyLayers()

    def forward(self, x):
        return self.layers(x)


@pytest.fixture(scope="module")
def tiny_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(TinyFeatures()).save(str(path))
    return path


def test_eval_of_a_checkpoint_writes_json_and_the_run_log(trained_run, face_folder, tiny_inception, tmp_path):
    config = EvalConfig(real=str(face_folder), checkpoint=str(trained_run), n=12, split="train",
                        kid_subset_size=10, kid_subsets=5, inception=str(tiny_inception), out=str(tmp_path / "r.json"),
                        progress=False)
    result = facegan.api.evaluate(config)
    assert result["n_fake"] == 12 and result["n_real"] == 24
    assert result["fid"] > 0 and np.isfinite(result["kid_mean"])
    assert json.loads((tmp_path / "r.json").read_text())["fid"] == result["fid"]
    logged = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["fid"] == result["fid"]
    again = facegan.api.evaluate(config)
    assert again["fid"] == pytest.approx(result["fid"], rel=1e-9)


def test_real_features_are_cached(face_folder, tiny_inception, tmp_path, monkeypatch):
    from facegan.metrics import evaluate as evaluate_module

    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    for i in range(6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(fake_dir / f"{i}.png")
    config = EvalConfig(real=str(face_folder), fake=str(fake_dir), n=100, split="train", kid_subset_size=6,
                        kid_subsets=3, inception=str(tiny_inception), progress=False)
    first = facegan.api.evaluate(config)
    calls = []
    original = evaluate_module.InceptionFeatures.extract
    monkeypatch.setattr(evaluate_module.InceptionFeatures, "extract",
                        lambda self, batches, total=None, progress=True: calls.append(total) or original(self, batches, total, progress))
    second = facegan.api.evaluate(config)
    assert calls == [6], "only the fakes are extracted the second time"
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-9) and second["n_fake"] == 6


def test_same_images_give_fid_near_zero(face_folder, tiny_inception):
    from facegan.metrics.evaluate import image_files, file_batches
    from facegan.metrics import InceptionFeatures

    net = InceptionFeatures(tiny_inception)
    files = image_files(face_folder, 100)
    features = net.extract(file_batches(files, 8), progress=False)
    assert features.shape == (24, 2048)
    assert abs(fid_from_features(features, features)) < 1e-3  # 24 points in 2048-d: singular covariances


def test_eval_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["eval", "--real", str(tmp_path), "--fake", str(tmp_path), "--inception", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
