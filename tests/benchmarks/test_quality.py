"""benchmarks/quality.py on synthetic faces: equal training time per architecture, taken in turns, then final numbers.

FID itself is tested in tests/metrics; here the evaluation is replaced by a record of what was asked, so the
test checks the schedule, the resume and the outputs (no timing checks)."""
import json

import pytest

from facegan import checkpoint
from facegan.models import precision
from facegan.runs import list_checkpoints

from . import load_benchmark


def load_script():
    return load_benchmark("quality")


def fake_evaluate(calls):
    def evaluate(args, run_dir, fakes):
        calls.append((run_dir.name, fakes))
        return {"fid": 100.0 - len(calls), "kid_mean": 0.1, "kid_std": 0.01, "n_fake": fakes, "n_real": 24}
    return evaluate


def test_architectures_take_turns_until_each_budget_is_spent(face_folder, tmp_path, monkeypatch):
    module = load_script()
    calls = []
    monkeypatch.setattr(module, "evaluate", fake_evaluate(calls))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)  # the +bf16 plumbing, on any CPU (emulated: slower)
    argv = ["--data", str(face_folder), "--size", "32", "--batch", "8", "--minutes", "0.06", "--interval", "0.03", "--fakes", "20",
            "--final-fakes", "50", "--archs", "dcgan,resnet+bf16", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    module.main(argv)

    curve = [r for r in map(json.loads, (tmp_path / "runs" / "curve.jsonl").read_text().splitlines())]
    points = [(r["arch"], r["final"]) for r in curve]
    chunks = [arch for arch, final in points if not final]
    assert chunks[:2] == ["dcgan", "resnet+bf16"], "the architectures take turns"
    assert points[len(chunks):] == [("dcgan", True), ("resnet+bf16", True)], "final numbers come after every chunk"
    assert [fakes for _, fakes in calls] == [20] * len(chunks) + [50, 50]
    for record in curve:  # a chunk may overrun by a step
        assert record["minutes"] > 0 and record["step"] > 0
    for record in curve[len(chunks):]:
        assert record["minutes"] >= 0.06 - 1 / 60, "the final numbers come after the whole budget"
    configs = {name: checkpoint.load(list_checkpoints(tmp_path / "runs" / name)[0], ["config"])["config"]
               for name in ("dcgan", "resnet+bf16")}
    assert (configs["dcgan"]["arch"], configs["dcgan"]["precision"]) == ("dcgan", "fp32")
    assert (configs["resnet+bf16"]["arch"], configs["resnet+bf16"]["precision"]) == ("resnet", "bf16")
    summary = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert set(summary["final"]) == {"dcgan", "resnet+bf16"} and len(summary["curve"]) == len(chunks)
    assert (tmp_path / "out" / "quality.png").stat().st_size > 0

    module.main(argv)  # everything is done: a second run adds nothing and only rewrites the summary
    assert len(calls) == len(curve)
    assert len((tmp_path / "runs" / "curve.jsonl").read_text().splitlines()) == len(curve)


def test_an_unknown_suffix_is_refused():
    with pytest.raises(SystemExit, match=r"\+bf16"):
        load_script().parse_entry("resnet+fp16")


def test_bf16_entry_is_refused_before_training_where_bf16_is_emulated(face_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    argv = ["--data", str(face_folder), "--archs", "dcgan,resnet+bf16", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"'resnet\+bf16'.*no native bfloat16"):
        load_script().main(argv)
    assert not (tmp_path / "runs" / "dcgan").exists(), "no architecture trains before the refusal"
