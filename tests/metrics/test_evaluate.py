"""`facegan eval` plumbing, with a tiny TorchScript stand-in for the Inception network."""
import hashlib
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import facegan
from facegan.cli import main
from facegan.metrics import evaluate as evaluate_module
from facegan.metrics import fid_from_features, registry
from facegan.data import DataError
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


@pytest.fixture(autouse=True)
def trust_tiny_inception(tiny_inception, monkeypatch):
    """The stand-in is no known Inception file: trust its digest, as a user trusts a file they vouch for."""
    monkeypatch.setenv("FACEGAN_INCEPTION_SHA256", hashlib.sha256(tiny_inception.read_bytes()).hexdigest())


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


# ----------------------------------------------------------------------------------------
# The metric registry and --metrics, through the evaluation
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fakes")
    for i in range(6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def folder_config(face_folder, fake_folder, tiny_inception, **overrides) -> EvalConfig:
    options = dict(real=str(face_folder), fake=str(fake_folder), n=100, split="train", kid_subset_size=6,
                   kid_subsets=3, inception=str(tiny_inception), progress=False)
    return EvalConfig(**{**options, **overrides})


def test_a_new_metric_is_one_decorated_function(face_folder, fake_folder, tiny_inception, restore_registry):
    seen = []

    @registry.register_metric
    def mean_gap(context: registry.MetricContext) -> dict:
        seen.append((context.real.shape, context.fake.shape, context.config.split))
        gap = float(np.abs(context.real.mean(axis=0) - context.fake.mean(axis=0)).mean())
        return {"mean_gap": gap, "mean_gap_max": gap * 2}

    assert "mean_gap" in registry.metric_names()
    config = folder_config(face_folder, fake_folder, tiny_inception, metrics="mean_gap,kid")  # kid: cheaper than fid
    result = evaluate_module.evaluate(config)
    assert seen == [((24, 2048), (6, 2048), "train")]
    assert result["metrics"] == ["mean_gap", "kid"]
    assert result["mean_gap_max"] == pytest.approx(2 * result["mean_gap"]) and result["mean_gap"] > 0
    assert "fid" not in result and np.isfinite(result["kid_mean"])
    line = evaluate_module.result_line(result)
    assert line.startswith(f"mean_gap {result['mean_gap']:.6g}  mean_gap_max ") and "  KID " in line
    assert line.endswith("(6 generated vs 24 real, train split)")

    # the command line accepts it too, with nothing else changed
    from facegan.cli import build_parser, config_from_args

    args = build_parser().parse_args(["eval", "--real", "r", "--metrics", "fid,mean_gap"])
    assert config_from_args(EvalConfig, args).metric_list() == ("fid", "mean_gap")

    registry.unregister_metric("mean_gap")
    with pytest.raises(ValueError, match="mean_gap"):
        config.validate()


def test_metrics_option_is_validated_against_the_registry(tmp_path, capsys):
    assert EvalConfig(real="r").metric_list() == ("fid", "kid")
    assert EvalConfig(real="r", metrics=" kid , fid,kid").metric_list() == ("kid", "fid")
    for bad in ("fid,nope", "", " , "):
        with pytest.raises(ValueError, match="choose from: fid, kid"):
            EvalConfig(real="r", metrics=bad).validate()
    assert main(["eval", "--real", str(tmp_path), "--fake", str(tmp_path), "--metrics", "fid,is"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'is'" in err and "choose from: fid, kid" in err


def test_fid_alone_gives_no_kid_numbers(face_folder, fake_folder, tiny_inception, tmp_path):
    alone = evaluate_module.evaluate(folder_config(face_folder, fake_folder, tiny_inception, metrics="fid",
                                                   out=str(tmp_path / "fid.json")))
    assert alone["metrics"] == ["fid"] and alone["fid"] > 0
    assert not [key for key in alone if key.startswith("kid")]
    assert (alone["n_real"], alone["n_fake"]) == (24, 6)
    assert json.loads((tmp_path / "fid.json").read_text())["metrics"] == ["fid"]
    assert "KID" not in evaluate_module.result_line(alone)
    kid = evaluate_module.evaluate(folder_config(face_folder, fake_folder, tiny_inception, metrics="kid"))
    assert "fid" not in kid and list(kid)[:4] == ["kid_mean", "kid_std", "n_real", "n_fake"]


def test_eval_cli_prints_the_metrics_it_ran(face_folder, fake_folder, tiny_inception, capsys):
    common = ["eval", "--real", str(face_folder), "--fake", str(fake_folder), "--split", "train", "--kid-subsets", "3",
              "--kid-subset-size", "6", "--inception", str(tiny_inception), "--no-progress"]
    assert main(common + ["--metrics", "kid"]) == 0  # kid alone: fid's 2048 x 2048 eigenvalues take seconds
    line = capsys.readouterr().out.strip()
    assert line.startswith("KID ") and "FID" not in line and line.endswith("(6 generated vs 24 real, train split)")


def test_result_line_keeps_the_fid_kid_format():
    result = {"fid": 12.34567, "kid_mean": 0.0123456, "kid_std": 0.00123456, "n_real": 24, "n_fake": 12,
              "metrics": ["fid", "kid"], "split": "test"}
    expected = (f"FID {result['fid']:.3f}  KID {result['kid_mean'] * 1000:.3f} ± {result['kid_std'] * 1000:.3f} (x1000)"
                f"  ({result['n_fake']} generated vs {result['n_real']} real, {result['split']} split)")
    assert evaluate_module.result_line(result) == expected
    del result["metrics"]  # a result recorded before --metrics existed
    assert evaluate_module.result_line(result) == expected


def test_generated_faces_are_evaluated_without_a_generator_import(face_folder, tiny_inception, tmp_path):
    asked = []

    def faces(seeds, truncation, batch_size):
        asked.append((list(seeds), truncation, batch_size))
        return np.stack([np.full((32, 32, 3), 7 * seed, np.uint8) for seed in seeds])

    config = EvalConfig(real=str(face_folder), n=5, seed=3, truncation=0.5, split="train", kid_subset_size=5,
                        kid_subsets=2, inception=str(tiny_inception), batch_size=2, metrics="kid", progress=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = evaluate_module.evaluate(config, evaluate_module.GeneratedFaces.from_seeds(faces, config, 32, run_dir))
    assert asked == [([3, 4], 0.5, 2), ([5, 6], 0.5, 2), ([7], 0.5, 2)]
    assert result["n_fake"] == 5 and result["precision"] == "fp32"
    assert json.loads((run_dir / "metrics.jsonl").read_text())["kid_mean"] == result["kid_mean"]
    with pytest.raises(ValueError, match="not both"):
        evaluate_module.evaluate(EvalConfig(real="r", fake="f"), evaluate_module.GeneratedFaces(lambda b: iter(()), 2, 32))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_module.evaluate(EvalConfig(real="r"))


def test_a_folder_without_a_partition_is_evaluated_whole(face_folder, fake_folder, tiny_inception):
    assert EvalConfig(real="r").split == "auto"
    result = evaluate_module.evaluate(folder_config(face_folder, fake_folder, tiny_inception, split="auto"))
    assert result["split"] == "all" and result["n_real"] == 24
    assert "(6 generated vs 24 real, all split)" in evaluate_module.result_line(result)


def test_bad_real_photos_or_split_are_refused_before_any_inception_work(face_folder, fake_folder, tmp_path):
    no_network = tmp_path / "no-inception.pt"  # loading it would fail: these errors must come first
    with pytest.raises(DataError, match=r"no 'test' images .* available splits: train \(24\)"):
        evaluate_module.evaluate(folder_config(face_folder, fake_folder, no_network, split="test"))
    with pytest.raises(DataError, match="not found"):
        evaluate_module.evaluate(folder_config(tmp_path / "missing", fake_folder, no_network))


def test_the_real_feature_cache_follows_the_inception_file(face_folder, fake_folder, tiny_inception, tmp_path,
                                                            monkeypatch):
    network = tmp_path / "inception-copy.pt"
    network.write_bytes(tiny_inception.read_bytes())
    config = folder_config(face_folder, fake_folder, network)
    evaluate_module.evaluate(config)
    extracted = []
    original = evaluate_module.InceptionFeatures.extract
    monkeypatch.setattr(evaluate_module.InceptionFeatures, "extract",
                        lambda self, batches, total=None, progress=True: extracted.append(total) or
                        original(self, batches, total, progress))
    evaluate_module.evaluate(config)
    assert extracted == [6], "same file: the real features come from the cache"
    network.write_bytes(tiny_inception.read_bytes())  # rewritten in place, as a new download would be
    os.utime(network, ns=(network.stat().st_atime_ns, network.stat().st_mtime_ns + 10**9))
    evaluate_module.evaluate(config)
    assert extracted == [6, 6, 24], "a rewritten network file recomputes the real features"
