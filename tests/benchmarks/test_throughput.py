"""benchmarks/throughput.py in --quick mode on synthetic faces: it runs and writes complete JSON (no timing checks)."""
import json

import torch

from facegan.models import ARCHITECTURES
from facegan.models.precision import native_bf16

from . import load_benchmark


def load_script():
    return load_benchmark("throughput")


def test_quick_run_writes_every_section(face_folder, tmp_path):
    out = tmp_path / "throughput.json"
    load_script().main(["--data", str(face_folder), "--quick", "--out", str(out), "--skip", "keras,inception,memory"])
    result = json.loads(out.read_text())
    assert set(result["peak_gflop_per_s"]) == {"fp32"} and result["peak_gflop_per_s"]["fp32"] > 0
    assert {row["arch"] for row in result["training"]} == set(ARCHITECTURES)
    for row in result["training"]:
        assert row["img_per_s"] > 0 and row["gflop_per_image"] > 0 and row["fraction_of_peak"] > 0
    assert result["reference"]["img_per_s"] > 0 and result["reference"]["size"] == 64
    variants = {(row["variant"], row["precision"]) for row in result["optimisations"]}
    assert ("as shipped", "fp32") in variants and ("no channels_last", "fp32") in variants
    assert result["data"]["img_per_s"] > 0
    generation = [(row["layout"], row["batch"]) for row in result["generation"]]
    assert generation == [("channels_last", 1), ("channels_last", 8), ("contiguous", 1), ("contiguous", 8)]
    assert result["generation"][0]["latency_ms"] > 0
    assert result["keras"]["skipped"]
    if native_bf16(torch.device("cpu")):
        assert "emulated_bf16" not in result
    else:
        assert result["emulated_bf16"]["bf16_slowdown"] > 0 and result["emulated_bf16"]["img_per_s"]["bf16"] > 0
    assert len(result["environment"]["load_average_start"]) == 3
    assert result["summary"]["data_vs_fastest_training"] > 0


def test_plain_reference_is_the_pytorch_examples_dcgan():
    """Same layer shapes as facegan's dcgan at 64 px, so the speed ratio compares like with like."""
    module = load_script()
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(module.PlainGenerator()) == 3_576_704
    assert count(module.PlainDiscriminator()) == 2_765_568
