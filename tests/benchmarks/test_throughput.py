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
    check_files_section(result)


def check_files_section(result):
    """The PNG-files section: generator alone and with files, measured in the same run, with the CPU it ran on."""
    files = result["files"]
    assert files["n"] == 48 and files["batch"] == 16 and files["compress_level"] == 1 and files["workers"] >= 1
    assert files["cpu"] and files["cores"] >= 1 and files["target_faces_per_s"] == 1000
    assert len(files["load_average_start"]) == 3 and len(files["load_average_end"]) == 3
    assert files["model"].startswith("shipped")
    [row] = files["rows"]  # --quick measures fp32 only
    assert row["precision"] == "fp32" and row["size"] == 64
    [turn] = row["repeats"]
    assert turn["generator"]["faces_per_s"] == row["generator_faces_per_s"] > 0
    assert turn["files"]["faces_per_s"] == row["files_faces_per_s"] > 0
    assert row["files_vs_generator"] == turn["files_vs_generator"]
    assert row["files_vs_generator"] == row["files_faces_per_s"] / row["generator_faces_per_s"]
    assert row["generator_cpu_ms_per_face"] > 0 and row["files_cpu_ms_per_face"] > 0 and turn["files"]["load_1min"] >= 0
    assert files["plain_loop"]["faces_per_s"] > 0 and files["plain_loop"]["compress_level"] == 6
    assert files["files_vs_plain_loop"] == row["files_faces_per_s"] / files["plain_loop"]["faces_per_s"]
    assert files["meets_target"] == (row["files_faces_per_s"] >= 1000)
    levels = {r["compress_level"]: r for r in files["levels"]}
    assert sorted(levels) == [0, 1, 6]
    for r in levels.values():
        assert min(r["faces_per_s"], r["cpu_ms_per_face"], r["encode_ms_per_face"], r["write_ms_per_face"]) > 0
    # level 0 stores the pixels: 64 rows of 1 + 64 x 3 bytes, and 68 bytes of signature, chunks and zlib framing
    assert levels[0]["bytes_per_face"] == 64 * 193 + 68
    assert levels[6]["bytes_per_face"] <= levels[1]["bytes_per_face"] < levels[0]["bytes_per_face"]
    assert levels[6]["bytes_per_face"] == files["plain_loop"]["bytes_per_face"]  # Pillow's default level: same bytes
    assert result["summary"]["files_faces_per_s"] == {"fp32": row["files_faces_per_s"]}
    assert result["summary"]["files_vs_generator"] == {"fp32": row["files_vs_generator"]}
    assert "with files faces/s" in load_script().markdown(result)


def test_only_runs_the_named_sections_and_needs_no_prepared_data(tmp_path):
    out = tmp_path / "files.json"
    load_script().main(["--data", str(tmp_path / "no-photos-here"), "--quick", "--only", "files", "--out", str(out)])
    result = json.loads(out.read_text())
    check_files_section(result)
    assert result["training"] == [] and result["generation"] == []
    assert all(result[name] == {"skipped": f"--skip {name}"} for name in ("reference", "data", "inception", "memory"))


def test_plain_reference_is_the_pytorch_examples_dcgan():
    """Same layer shapes as facegan's dcgan at 64 px, so the speed ratio compares like with like."""
    module = load_script()
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(module.PlainGenerator()) == 3_576_704
    assert count(module.PlainDiscriminator()) == 2_765_568
