"""`facegan export`: ONNX and TorchScript generators give PyTorch's faces for any batch size."""
import json
import sys
import warnings

import numpy as np
import pytest
import torch

import facegan
from facegan.cli import main
from facegan.generate.export import ExportConfig
from facegan.models import latents_from_seeds

SEED_BATCHES = [[0], [5, 17, 123456], list(range(40, 48))]  # batch sizes 1, 3 and 8


def run_exported(path, fmt: str, z: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime

        return onnxruntime.InferenceSession(str(path)).run(None, {"z": z})[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        return torch.jit.load(str(path))(torch.from_numpy(z)).numpy()


def expected(generator, seeds, output: str) -> np.ndarray:
    if output == "uint8":
        return generator.faces(seeds)
    with torch.no_grad():
        images = generator.network(latents_from_seeds(seeds, generator.z_dim))
    return images.add(1).mul(0.5).clamp(0, 1).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("run,output", [("trained_run", "float"), ("trained_run", "uint8"), ("resnet_run", "float")])
def test_exported_generator_matches_pytorch(fmt, run, output, request, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export is tested with the export extra installed")
    run_dir = request.getfixturevalue(run)
    path = facegan.export(ExportConfig(checkpoint=str(run_dir), format=fmt, out=str(tmp_path / f"g.{fmt}"),
                                       output=output))
    generator = facegan.load(run_dir)
    for seeds in SEED_BATCHES:
        z = latents_from_seeds(seeds, generator.z_dim).numpy()
        got, want = run_exported(path, fmt, z), expected(generator, seeds, output)
        assert got.shape == want.shape and got.dtype == want.dtype
        if output == "float":
            assert np.abs(got - want).max() < 1e-4
        else:  # a last-bit difference before rounding may flip a pixel by one level, no more
            difference = np.abs(got.astype(int) - want.astype(int))
            assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_files_carry_what_a_user_needs(trained_run, tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX export is tested with the export extra installed")
    path = facegan.export(ExportConfig(checkpoint=str(trained_run), out=str(tmp_path / "g.onnx"), output="uint8"))
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["z_dim"] == "100" and props["size"] == "32" and props["arch"] == "dcgan"
    assert props["layout"] == "NHWC uint8 0..255"
    files = {"facegan.json": ""}
    ts = facegan.export(ExportConfig(checkpoint=str(trained_run), format="torchscript", out=str(tmp_path / "g.pt")))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        torch.jit.load(str(ts), _extra_files=files)
    assert json.loads(files["facegan.json"])["layout"] == "NCHW float32 0..1"


def test_onnx_without_the_extra_says_how_to_install(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(RuntimeError, match=r'pip install "facegan\[export\]"'):
        facegan.export(ExportConfig(checkpoint=str(trained_run), out=str(tmp_path / "g.onnx")))
    assert not (tmp_path / "g.onnx").exists()


def test_cli_export(trained_run, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["export", "--checkpoint", str(trained_run), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 0
    assert main(["export", "--checkpoint", str(trained_run), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out is required" in err and len(err.splitlines()) == 1
