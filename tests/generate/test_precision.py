"""Generating in bfloat16: the same faces within a grey level or two, chosen explicitly or by `auto`."""
import numpy as np
import pytest
import torch

import facegan
from facegan.cli import main
from facegan.models import precision as precision_module
from facegan.models.precision import native_bf16, resolve_precision

needs_bf16 = pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="this CPU has no native bfloat16")


def test_auto_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: True)
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    assert resolve_precision("auto", cpu) == "fp32"


def test_bf16_without_hardware_support_or_unknown_precision_is_refused(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    with pytest.raises(ValueError, match=r"no native bfloat16.*use --precision fp32"):
        resolve_precision("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16", torch.device("cpu"))


@needs_bf16
def test_bf16_faces_match_fp32_faces_closely():
    seeds = range(16)
    exact = facegan.load(precision="fp32").faces(seeds)
    fast_generator = facegan.load(precision="bf16")
    fast = fast_generator.faces(seeds)
    assert fast_generator.precision == "bf16"
    assert fast.shape == exact.shape and fast.dtype == np.uint8
    difference = np.abs(fast.astype(int) - exact.astype(int))
    assert difference.mean() < 3, "bf16 changes a face by a few grey levels at most on average"
    assert difference.max() > 0, "bf16 must actually compute in bfloat16"
    assert np.array_equal(fast, fast_generator.faces(seeds)), "bf16 faces are still reproducible"


@needs_bf16
def test_generate_command_takes_a_precision(tmp_path):
    assert main(["generate", "-n", "2", "--precision", "bf16", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0000.png", "seed0001.png"]
