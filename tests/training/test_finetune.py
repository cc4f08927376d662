"""Fine-tuning (`--init`), adaptive augmentation's state, and what a short run shows early."""
import pytest
import torch
from safetensors import safe_open

import facegan
from facegan import checkpoint
from facegan.cli import main
from facegan.generate import save_generator
from facegan.runs import list_checkpoints
from facegan.settings import DEFAULT_MODEL, shipped_model
from facegan.training import loop
from facegan.training.init import training_stages
from facegan.training.reporting import read_log

from ..conftest import TINY_TRAIN


def trained(key: str) -> bool:
    """A weight training sets directly (BatchNorm's running statistics follow the batches instead)."""
    return "num_batches" not in key and "running" not in key


def weights(path, prefix: str) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key[len(prefix) + 1:]: f.get_tensor(key).float() for key in f.keys() if key.startswith(prefix + ".")}


def fine_tune(face_folder, out, init, **options):
    settings = {**TINY_TRAIN, **options}
    for name in ("arch", "size", "width"):  # the source model decides these
        settings.pop(name)
    return facegan.train(face_folder, out=str(out), init=str(init), **settings)


def test_init_from_a_run_directory_copies_its_model_and_weights(trained_run, face_folder, tmp_path, capsys):
    source = list_checkpoints(trained_run)[0]
    result = fine_tune(face_folder, tmp_path / "tuned", trained_run, steps=1, lr_g=1e-9, lr_d=1e-9)
    saved = checkpoint.load(result.checkpoint, sections=["config", "model"])
    assert saved["model"] == checkpoint.load(source, sections=["model"])["model"]
    assert saved["config"]["init"] == str(source.absolute())
    assert saved["config"]["prepare"]["size"] == 32
    for network in ("G", "D"):
        before, after = weights(source, network), weights(result.checkpoint, network)
        assert before.keys() == after.keys()
        assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in before if trained(k)), network
    assert "starting from" in capsys.readouterr().err


def test_init_from_a_checkpoint_file_starts_fresh_optimisers_and_counters(trained_run, face_folder, tmp_path):
    source = list_checkpoints(trained_run)[0]
    result = fine_tune(face_folder, tmp_path / "tuned", source, steps=2)
    saved = checkpoint.load(result.checkpoint, sections=["progress", "opt_g"])
    assert saved["progress"]["step"] == 2 and saved["progress"]["images_seen"] == 16
    assert all(int(state["step"]) == 2 for state in saved["opt_g"]["state"].values()), "Adam starts again at step 0"


def test_a_chain_of_fine_tunings_records_every_stage_and_resume_keeps_them(trained_run, face_folder, tmp_path):
    source = list_checkpoints(trained_run)[-1]
    second = fine_tune(face_folder, tmp_path / "second", source, steps=2, lr_g=1e-3, augment="none")
    third = fine_tune(face_folder, tmp_path / "third", second.run_dir, steps=2, augment="ada")
    resumed = facegan.train(resume=third.run_dir, steps=4, progress=False)
    stages = training_stages(resumed.checkpoint, checkpoint.load(resumed.checkpoint))
    first = checkpoint.load(source, sections=["progress"])["progress"]
    assert [stage["source"] for stage in stages] == [str(source.absolute()), str(second.checkpoint.absolute()),
                                                     str(resumed.checkpoint)]
    assert [stage["steps"] for stage in stages] == [first["step"], 2, 4]
    assert [stage["images_seen"] for stage in stages] == [first["images_seen"], 16, 32]
    assert stages[0]["train_seconds"] == first["train_seconds"] > 0
    assert [stage["lr_g"] for stage in stages] == [2e-4, 1e-3, 2e-4]  # the dcgan default where none was given
    assert [stage["augment"] for stage in stages][1:] == ["none", "ada"]


def test_a_fine_tuned_run_keeps_its_sources_batch_unless_given_one(trained_run, face_folder, tmp_path):
    source = list_checkpoints(trained_run)[-1]
    source_batch = checkpoint.load(source, sections=["config"])["config"]["batch"]
    kept = fine_tune(face_folder, tmp_path / "kept", source, steps=1, batch=None)
    given = fine_tune(face_folder, tmp_path / "given", source, steps=1, batch=4)
    progress = {name: checkpoint.load(run.checkpoint, sections=["progress"])["progress"] for name, run in
                (("kept", kept), ("given", given))}
    assert source_batch == 8 and progress["kept"]["images_seen"] == 8
    assert progress["given"]["images_seen"] == 4


@pytest.mark.skipif(shipped_model(DEFAULT_MODEL) is None, reason="this install ships no default model")
def test_init_from_the_shipped_name_starts_from_its_generator_and_discriminator(face_folder, tmp_path):
    shipped = shipped_model(DEFAULT_MODEL)
    result = fine_tune(face_folder, tmp_path / "tuned", DEFAULT_MODEL, steps=1, batch=4, lr_g=1e-9, lr_d=1e-9)
    saved = checkpoint.load(result.checkpoint, sections=["config", "model"])
    assert saved["config"]["init"] == DEFAULT_MODEL
    assert saved["model"] == {"arch": "dcgan", "size": 64, "z_dim": 100, "width": 64}
    for network, source in (("G_ema", "G_ema"), ("G", "G_ema"), ("D", "D")):
        before, after = weights(shipped, source), weights(result.checkpoint, network)
        assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before if trained(k)), network
    card = facegan.load(result.run_dir).info
    assert card["started from"] == DEFAULT_MODEL


def test_a_generator_only_source_starts_a_fresh_discriminator_and_says_so(trained_run, face_folder, tmp_path, capsys):
    exported = save_generator(trained_run, tmp_path / "g.safetensors")
    result = fine_tune(face_folder, tmp_path / "tuned", exported, steps=1, lr_g=1e-9, lr_d=1e-9)
    err = capsys.readouterr().err
    assert "holds no discriminator, so the discriminator starts from random weights" in err
    before, after = weights(exported, "G_ema"), weights(result.checkpoint, "G_ema")
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in before if trained(k))


@pytest.mark.parametrize("given,flag", [(["--width", "16"], "--width 16"), (["--size", "128"], "--size 128"),
                                        (["--arch", "resnet"], "--arch resnet"), (["--z-dim", "50"], "--z-dim 50")])
def test_options_that_conflict_with_the_source_are_refused_in_one_line(trained_run, face_folder, tmp_path, capsys,
                                                                         given, flag):
    out = tmp_path / "tuned"
    code = main(["train", "--data", str(face_folder), "--init", str(trained_run), "--out", str(out), "--steps", "1",
                 "--no-progress", *given])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err and "cannot apply" in err
    assert not out.exists(), "a refused run leaves no run folder"


@pytest.mark.parametrize("kind,message", [("missing", "no such checkpoint file or run directory"),
                                          ("not a model", "not-a-model.png"),
                                          ("empty folder", "run directory holds no checkpoint")])
def test_an_init_that_is_not_a_model_is_one_line_and_exit_code_2(face_folder, tmp_path, capsys, kind, message):
    source = {"missing": tmp_path / "nothing-here", "not a model": tmp_path / "not-a-model.png",
              "empty folder": tmp_path / "empty"}[kind]
    if kind == "not a model":
        source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    if kind == "empty folder":
        source.mkdir()
    out = tmp_path / "tuned"
    code = main(["train", "--data", str(face_folder), "--init", str(source), "--out", str(out), "--steps", "1",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_resume_refuses_init(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--init", str(trained_run)]) == 2
    assert "--init" in capsys.readouterr().err


def test_a_small_photo_set_gets_a_fine_tuning_hint_unless_init_is_given(face_folder, trained_run, tmp_path, capsys):
    facegan.train(face_folder, out=str(tmp_path / "scratch"), steps=1, **TINY_TRAIN)
    err = capsys.readouterr().err
    assert "--init celeba64" in err and "24 photos" in err
    assert "augment: ada" in err, "a small set gets adaptive augmentation by default"
    fine_tune(face_folder, tmp_path / "tuned", trained_run, steps=1)
    assert "--init celeba64" not in capsys.readouterr().err


def test_ada_probability_moves_is_logged_and_resumes_bit_exactly(face_folder, tmp_path):
    options = {**TINY_TRAIN, "augment": "ada", "ada_target": 0.01, "ada_kimg": 0.1, "checkpoint_every": 4}
    whole = facegan.train(face_folder, out=str(tmp_path / "whole"), steps=12, **options)
    part = facegan.train(face_folder, out=str(tmp_path / "part"), steps=8, **options)
    resumed = facegan.train(resume=part.run_dir, steps=12)
    expected = checkpoint.load(whole.checkpoint)
    got = checkpoint.load(resumed.checkpoint)
    assert 0 < expected["augment"]["p"] <= 1, "D is sure of real photos above the tiny target, so p rises"
    assert got["augment"] == expected["augment"]
    for network in ("G", "D"):
        assert all(torch.equal(got[network][k], expected[network][k]) for k in expected[network]), network
    log = read_log(whole.run_dir / "log.jsonl")
    assert all("augment_p" in record and "r_t" in record for record in log)
    assert log[-1]["augment_p"] == expected["augment"]["p"]


def test_a_damaged_augmentation_state_is_refused_on_resume(face_folder, tmp_path, capsys):
    run = facegan.train(face_folder, out=str(tmp_path / "run"), steps=2, **{**TINY_TRAIN, "augment": "ada"})
    saved = checkpoint.load(run.checkpoint)
    saved["augment"]["p"] = 3.0
    checkpoint.save(run.checkpoint, {k: v for k, v in saved.items() if k != "kind"}, kind="training")
    assert main(["train", "--resume", str(run.run_dir), "--steps", "3"]) == 2
    assert "augmentation state" in capsys.readouterr().err


def test_a_short_run_shows_progress_early(face_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOG_SECONDS", 0.0)
    options = {**TINY_TRAIN, "sample_every": 1000, "log_every": 1000, "checkpoint_every": 1000, "sample_minutes": 1e-9}
    run = facegan.train(face_folder, out=str(tmp_path / "run"), steps=3, **options)
    grids = sorted(p.name for p in (run.run_dir / "samples").glob("*.png"))
    assert grids == [f"step-0000000{i}.png" for i in (1, 2, 3)], "grids on a time cadence, not only every 1,000 steps"
    assert [r["step"] for r in read_log(run.run_dir / "log.jsonl")] == [1, 2, 3]
    assert list((run.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_the_first_step_always_leaves_a_grid_and_a_log_line(face_folder, tmp_path):
    options = {**TINY_TRAIN, "sample_every": 1000, "log_every": 1000, "checkpoint_every": 1000}
    run = facegan.train(face_folder, out=str(tmp_path / "run"), steps=2, **options)
    assert (run.run_dir / "samples" / "step-00000001.png").exists()
    assert [r["step"] for r in read_log(run.run_dir / "log.jsonl")] == [1]


def test_auto_augmentation_is_recorded_resolved_and_an_older_auto_keeps_its_meaning(face_folder, tmp_path):
    run = facegan.train(face_folder, out=str(tmp_path / "run"), steps=2, **TINY_TRAIN)
    saved = checkpoint.load(run.checkpoint)
    assert saved["config"]["augment"] == "ada" and "augment" in saved, "24 photos: auto means ada, and it is kept"
    saved["config"]["augment"] = "auto"  # as a checkpoint written before auto could mean ada
    del saved["augment"]
    checkpoint.save(run.checkpoint, {k: v for k, v in saved.items() if k != "kind"}, kind="training")
    resumed = checkpoint.load(facegan.train(resume=run.run_dir, steps=3).checkpoint)
    assert resumed["config"]["augment"] == "none" and "augment" not in resumed, "it meant dcgan's default then"
