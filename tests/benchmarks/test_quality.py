"""benchmarks/quality.py on synthetic faces: candidates trained to equal kimg, taken in turns, then final numbers.

FID itself is tested in tests/metrics; here the evaluations are replaced by a record of what was asked, so the
tests check the schedule, the resume, the floor, the early stop and the outputs (no timing checks)."""
import json

import numpy as np
import pytest

from facegan import checkpoint
from facegan.models import precision
from facegan.runs import list_checkpoints

from ..conftest import write_faces
from . import BENCHMARKS, load_benchmark

TINY = ["--size", "32", "--batch", "8", "--kimg", "0.032", "--every-kimg", "0.016", "--fakes", "20", "--final-fakes", "50"]
FLOOR = {"fid": 5.0, "kid_mean": 0.001, "kid_std": 0.0005, "n_fake": 20, "n_real": 24}


def load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when it runs as a script: it imports throughput.py
    return load_benchmark("quality")


def fake_evaluations(monkeypatch, module, fids=None):
    """Record each evaluation; FID from `fids` (candidate -> value), else falling as evaluations go on."""
    calls = {"points": [], "floor": 0}

    def evaluate(args, run_dir, fakes):
        calls["points"].append((run_dir.name, fakes))
        fid = fids[run_dir.name] if fids else 100.0 - len(calls["points"])
        return {"fid": fid, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": fakes, "n_real": 24}

    def evaluate_real_photos(args):
        calls["floor"] += 1
        return FLOOR

    monkeypatch.setattr(module, "evaluate", evaluate)
    monkeypatch.setattr(module, "evaluate_real_photos", evaluate_real_photos)
    return calls


def command(face_folder, tmp_path, *options):
    return ["--data", str(face_folder), *TINY, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *options]


def curve_of(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "runs" / "curve.jsonl").read_text().splitlines()]


def saved_config(tmp_path, name: str) -> dict:
    return checkpoint.load(list_checkpoints(tmp_path / "runs" / name)[0], ["config"])["config"]


def test_candidates_take_turns_to_each_point_then_final_numbers(face_folder, tmp_path, monkeypatch, capsys):
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module)
    argv = command(face_folder, tmp_path, "--candidates", "small=dcgan:width=8,ttur=dcgan:width=8:lr_d=4e-4:lr_g=1e-4")
    module.main(argv)

    curve = curve_of(tmp_path)
    assert curve[0] == {"candidate": "real photos", "final": False, "size": 32, "fakes": 20, **FLOOR}, "the floor comes first"
    points = [(r["candidate"], r["point_kimg"], r["final"]) for r in curve[1:]]
    assert points == [("small", 0.016, False), ("ttur", 0.016, False), ("small", 0.032, False), ("ttur", 0.032, False),
                      ("small", 0.032, True), ("ttur", 0.032, True)], "turns, a point per 16 images, then final numbers"
    assert calls["points"] == [("small", 20), ("ttur", 20)] * 2 + [("small", 50), ("ttur", 50)]
    for record in curve[1:]:
        assert record["kimg"] == record["point_kimg"] and record["step"] == record["kimg"] * 1000 / 8
        assert record["train_seconds"] > 0 and record["cpu"] and record["machine"] == record["cpu"]
        assert record["precision"] in ("fp32", "bf16")
        assert (record["img_per_s"] is None) == record["final"]
    second = curve[3]
    assert second["img_per_s"] == pytest.approx(16 / (second["train_seconds"] - curve[1]["train_seconds"])), \
        "img/s of the chunk: its images over its training seconds"
    config = saved_config(tmp_path, "ttur")
    assert (config["arch"], config["width"], config["lr_d"], config["lr_g"], config["batch"]) == ("dcgan", 8, 4e-4, 1e-4, 8)

    summary = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert summary["real_photos"]["fid"] == FLOOR["fid"]
    ttur = summary["candidates"]["ttur"]
    assert ttur["status"] == "finished" and ttur["options"] == {"width": 8, "lr_d": 4e-4, "lr_g": 1e-4}
    assert [p["point_kimg"] for p in ttur["curve"]] == [0.016, 0.032] and ttur["final"]["n_fake"] == 50
    assert list(ttur["img_per_s"]) == [curve[1]["cpu"]]
    assert {row["candidate"] for row in summary["equal_minutes"]} == {"small", "ttur"}
    assert (tmp_path / "out" / "quality.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| candidate | 0.016 kimg | 0.032 kimg | final |" in printed and "| real photos (floor) | 5.0 | 5.0 |" in printed

    module.main(argv)  # everything is done: a second run adds nothing and only rewrites the summary
    assert curve_of(tmp_path) == curve and calls["floor"] == 1 and len(calls["points"]) == 6


def test_a_rerun_continues_keeps_its_points_and_takes_a_new_candidate(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module)
    first = command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8", "--kimg", "0.016")
    module.main(first)
    before = curve_of(tmp_path)
    assert [(r["candidate"], r["point_kimg"], r["final"]) for r in before[1:]] == [("a", 0.016, False), ("a", 0.016, True)]

    more = command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8,b=dcgan:width=8", "--kimg", "0.032")
    module.main(more)
    after = curve_of(tmp_path)
    assert after[:len(before)] == before, "finished points are kept"
    added = [(r["candidate"], r["point_kimg"], r["final"]) for r in after[len(before):]]
    assert added == [("a", 0.032, False), ("b", 0.016, False), ("b", 0.032, False), ("a", 0.032, True), ("b", 0.032, True)]
    assert calls["floor"] == 1, "the floor is computed once and read back"
    resumed = [r for r in after if r["candidate"] == "a" and not r["final"]]
    assert [r["step"] for r in resumed] == [2, 4], "a resumes where it stopped (the kimg budget counts from the start)"
    summary = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert list(summary["candidates"]) == ["a", "b"] and summary["candidates"]["a"]["final"]["kimg"] == 0.032


def test_report_writes_the_results_of_the_curve_so_far_and_trains_nothing(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module)
    module.main(command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8", "--kimg", "0.016"))
    before, evaluations = curve_of(tmp_path), len(calls["points"])
    (tmp_path / "out" / "quality.json").unlink()
    wider = command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8,b=dcgan:width=8", "--report")
    summary = module.main(wider)
    assert curve_of(tmp_path) == before and len(calls["points"]) == evaluations
    assert not (tmp_path / "runs" / "b").exists()
    assert json.loads((tmp_path / "out" / "quality.json").read_text())["candidates"]["a"]["curve"]
    assert summary["candidates"]["a"]["status"] == "stopped at 0.016 kimg"  # --kimg is 0.032 here
    assert summary["candidates"]["b"]["status"] == "not started"


def test_a_point_whose_evaluation_was_interrupted_is_evaluated_without_more_training(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module)
    evaluate = module.evaluate

    def interrupted(args, run_dir, fakes):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "evaluate", interrupted)
    argv = command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8")
    with pytest.raises(KeyboardInterrupt):
        module.main(argv)
    monkeypatch.setattr(module, "evaluate", evaluate)
    module.main(argv)
    points = [(r["point_kimg"], r["step"]) for r in curve_of(tmp_path)[1:] if not r["final"]]
    assert points == [(0.016, 2), (0.032, 4)] and len(calls["points"]) == 3


def test_a_candidate_behind_is_dropped(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module, fids={"good": 50.0, "close": 90.0, "bad": 200.0})
    argv = command(face_folder, tmp_path, "--candidates", "good=dcgan:width=8,close=dcgan:width=8,bad=dcgan:width=8",
                   "--drop-behind", "2")
    module.main(argv)

    points = [(r["candidate"], r["point_kimg"]) for r in curve_of(tmp_path)[1:] if not r["final"]]
    assert points == [("good", 0.016), ("close", 0.016), ("bad", 0.016), ("good", 0.032), ("close", 0.032)]
    assert checkpoint.load(list_checkpoints(tmp_path / "runs" / "bad")[0], ["progress"])["progress"]["step"] == 2
    assert ("bad", 50) not in calls["points"], "no final numbers for a dropped candidate"
    summary = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert summary["candidates"]["bad"]["status"] == "dropped at 0.016 kimg"
    assert summary["candidates"]["bad"]["dropped_at_kimg"] == 0.016
    assert summary["candidates"]["close"]["status"] == "finished"

    module.main(argv)  # the dropped candidate stays stopped
    assert len(calls["points"]) == 7


@pytest.mark.parametrize("entry, message", [
    ("b=dcgan:lr=1e-3", r"candidate 'b': training has no option 'lr'"),
    ("b=dcgan:kimg=5", r"candidate 'b': kimg is set by the benchmark"),
    ("b=stylegan9", r"candidate 'b': unknown architecture 'stylegan9'"),
    ("b=dcgan:lr_d=-1", r"candidate 'b': --lr-d must be positive"),
    ("b=dcgan:lr_d", r"'lr_d' is not option=value"),
    ("b/c=dcgan", r"NAME=ARCH"),
    ("a=resnet", r"candidate 'a' is given twice"),
])
def test_a_bad_candidate_is_refused_before_any_training(face_folder, tmp_path, monkeypatch, entry, message):
    module = load_script(monkeypatch)
    fake_evaluations(monkeypatch, module)
    with pytest.raises(SystemExit, match=message):
        module.main(command(face_folder, tmp_path, "--candidates", f"a=dcgan,{entry}"))
    assert not (tmp_path / "runs" / "a").exists(), "no candidate trains before the refusal"


def test_a_bf16_candidate_is_refused_before_training_where_bf16_is_emulated(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    for form in (["--candidates", "dcgan=dcgan,fast=resnet:precision=bf16"], ["--archs", "dcgan,resnet+bf16"]):
        with pytest.raises(SystemExit, match=r"'(fast|resnet\+bf16)'.*no native bfloat16"):
            module.main(command(face_folder, tmp_path, *form))
        assert not (tmp_path / "runs" / "dcgan").exists(), "no candidate trains before the refusal"


def test_a_changed_recipe_under_an_old_name_is_refused(face_folder, tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    fake_evaluations(monkeypatch, module)
    module.main(command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8", "--kimg", "0.016"))
    with pytest.raises(SystemExit, match=r"candidate 'a': its run .* trains with lr_d=None, not 0.001"):
        module.main(command(face_folder, tmp_path, "--candidates", "a=dcgan:width=8:lr_d=1e-3"))


def test_candidates_and_their_options_are_parsed(monkeypatch):
    module = load_script(monkeypatch)
    parsed = [module.parse_candidate(e) for e in module.split_entries(
        "plain=dcgan,aug=resnet:augment=color,translation:ema_kimg=20:mirror=false,bf=resnet:precision=bf16")]
    assert parsed == [module.Candidate("plain", "dcgan", {}),
                      module.Candidate("aug", "resnet", {"augment": "color,translation", "ema_kimg": 20, "mirror": False}),
                      module.Candidate("bf", "resnet", {"precision": "bf16"})]


def test_the_older_archs_form_maps_onto_candidates(monkeypatch):
    module = load_script(monkeypatch)
    args = module.parse_args(["--data", "x", "--archs", "dcgan,resnet+bf16"])
    assert module.candidates_of(args) == [module.Candidate("dcgan", "dcgan", {"precision": "fp32"}),
                                          module.Candidate("resnet+bf16", "resnet", {"precision": "bf16"})]
    with pytest.raises(SystemExit, match=r"\+bf16"):
        module.parse_entry("resnet+fp16")


def test_a_curve_file_of_the_minutes_version_is_continued(face_folder, tmp_path, monkeypatch):
    """Runs and curve.jsonl written by the benchmark when its budgets were minutes (`arch`, `minutes` records)."""
    module = load_script(monkeypatch)
    calls = fake_evaluations(monkeypatch, module)
    module.main(command(face_folder, tmp_path, "--archs", "dcgan", "--kimg", "0.016"))
    old = [{"arch": r["candidate"], "final": r["final"], "minutes": r["train_seconds"] / 60, "step": r["step"],
            "kimg": r["kimg"], **{k: r[k] for k in ("fid", "kid_mean", "kid_std", "n_fake", "n_real")}}
           for r in curve_of(tmp_path) if r["candidate"] != "real photos"]
    (tmp_path / "runs" / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))

    module.main(command(face_folder, tmp_path, "--archs", "dcgan"))
    curve = curve_of(tmp_path)
    assert curve[:2] == old, "the old records are kept as they are"
    new = [(r["candidate"], r.get("point_kimg"), r["final"]) for r in curve[2:]]
    assert new == [("real photos", None, False), ("dcgan", 0.032, False), ("dcgan", 0.032, True)]
    summary = json.loads((tmp_path / "out" / "quality.json").read_text())
    dcgan = summary["candidates"]["dcgan"]
    assert [p["kimg"] for p in dcgan["curve"]] == [0.016, 0.032] and dcgan["status"] == "finished"
    assert dcgan["img_per_s"]["not recorded"] > 0, "an old point's rate is derived from its minutes and kimg"
    assert dcgan["options"] == {"precision": "fp32"} and calls["floor"] == 2


def test_equal_minutes_come_from_each_machines_rate_and_one_curve(monkeypatch):
    module = load_script(monkeypatch)
    curve = [{"candidate": "x", "final": False, "point_kimg": k, "kimg": k, "fid": fid, "machine": "CPU A",
              "img_per_s": rate} for k, fid, rate in ((100, 80.0, 90.0), (200, 60.0, 100.0), (300, 50.0, 110.0))]
    curve.append({**curve[0], "machine": "CPU B", "img_per_s": 50.0})
    rows = {(r["machine"], r["minutes"]): (round(r["kimg"], 6), r["fid"]) for r in module.equal_minutes(curve)}
    assert rows[("CPU A", 10)] == (60, None), "before the first point: no FID"
    assert rows[("CPU A", 30)] == (180, pytest.approx(64.0)), "100 img/s x 30 min = 180 kimg, between 100 and 200"
    assert rows[("CPU A", 60)] == (360, None), "beyond the curve: no FID"
    assert rows[("CPU B", 60)] == (180, pytest.approx(64.0)), "the same curve at another machine's rate"
    assert rows[("CPU B", 120)] == (360, None)


def test_the_floor_is_train_photos_in_place_of_fakes_against_the_test_split(tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    celeba = tmp_path / "celeba"
    write_faces(celeba / "img_align_celeba", 12, nested=False)
    names = sorted(p.name for p in (celeba / "img_align_celeba").iterdir())
    codes = [0] * 8 + [1] * 2 + [2] * 2  # 8 train, 2 val, 2 test
    (celeba / "list_eval_partition.txt").write_text("".join(f"{n} {c}\n" for n, c in zip(names, codes)))
    seen = {}

    def evaluate_faces(config, photos):
        seen.update(config=config, images=np.concatenate(list(photos.batches(4))), count=photos.count, size=photos.size)
        return {**FLOOR, "metrics": ["fid", "kid"]}

    monkeypatch.setattr(module, "evaluate_faces", evaluate_faces)
    args = module.parse_args(["--data", str(celeba), "--size", "32", "--fakes", "5", "--runs", str(tmp_path / "runs")])
    assert module.evaluate_real_photos(args)["fid"] == FLOOR["fid"]
    assert (seen["config"].split, seen["config"].real, seen["count"], seen["size"]) == ("test", str(celeba), 5, 32)
    dataset = module.facegan.prepare(str(celeba), size=32, progress=False)
    train = np.asarray(dataset.images[dataset.split_indices("train")])
    assert all(any(np.array_equal(image, photo) for photo in train) for image in seen["images"]), "train photos only"
    assert len({image.tobytes() for image in seen["images"]}) == 5
