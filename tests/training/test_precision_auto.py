"""Training's precision `auto` (the default): bf16 autocast only where the hardware runs bfloat16 natively, fp32
elsewhere; the checkpoints record the choice, and a bf16 run resumed where bf16 is emulated goes on in fp32.

`precision.native_bf16` is faked, so both answers are tested on any machine (bf16 on a CPU without it is emulated:
slow, but a few 32 px steps are quick)."""
import pytest

import facegan
from facegan import checkpoint
from facegan.models import precision
from facegan.runs import list_checkpoints
from facegan.training import loop
from facegan.training.config import TrainConfig

from ..conftest import TINY_TRAIN


@pytest.fixture
def autocasts(monkeypatch) -> list[str]:
    """The precision of each autocast region a training step enters, in order."""
    used = []
    real_autocast = loop.autocast

    def recording(device, resolved):
        used.append(resolved)
        return real_autocast(device, resolved)

    monkeypatch.setattr(loop, "autocast", recording)
    return used


def native(monkeypatch, answer: bool) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: answer)


def recorded_precision(run_dir) -> str:
    return checkpoint.load(list_checkpoints(run_dir)[0], ["config"])["config"]["precision"]


def test_auto_is_the_training_default():
    assert TrainConfig().precision == "auto"


@pytest.mark.parametrize("has_native_bf16, chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_chooses_bf16_only_where_it_is_native_and_the_checkpoint_records_the_choice(
        tmp_path, face_folder, monkeypatch, autocasts, has_native_bf16, chosen):
    native(monkeypatch, has_native_bf16)
    facegan.train(face_folder, out=str(tmp_path), steps=2, **TINY_TRAIN)
    assert autocasts == [chosen] * 4, "both phases of both steps"
    assert recorded_precision(tmp_path) == chosen, "the resolved choice, not auto"


def test_a_bf16_run_resumed_where_bf16_is_emulated_goes_on_in_fp32(tmp_path, face_folder, monkeypatch, autocasts, capsys):
    native(monkeypatch, True)
    facegan.train(face_folder, out=str(tmp_path), steps=2, **TINY_TRAIN)
    assert recorded_precision(tmp_path) == "bf16"

    native(monkeypatch, False)
    autocasts.clear()
    capsys.readouterr()
    result = facegan.train(resume=tmp_path, steps=4, progress=False)
    assert result.step == 4
    warning = capsys.readouterr().err
    assert "trained with --precision bf16" in warning and "continuing in fp32" in warning, "it says so"
    assert autocasts == ["fp32"] * 4
    assert recorded_precision(tmp_path) == "fp32", "the checkpoints say what the resumed steps used"


def test_a_resumed_run_keeps_its_recorded_precision_where_bf16_is_native(tmp_path, face_folder, monkeypatch, autocasts):
    """What a checkpoint records is the run's precision from then on: `auto` is not resolved again on resume, so an
    fp32 run (chosen where bf16 was not native, or after the fallback above) stays fp32 on hardware that has it."""
    native(monkeypatch, False)
    facegan.train(face_folder, out=str(tmp_path), steps=2, **TINY_TRAIN)
    native(monkeypatch, True)
    autocasts.clear()
    facegan.train(resume=tmp_path, steps=4, progress=False)
    assert autocasts == ["fp32"] * 4 and recorded_precision(tmp_path) == "fp32"


def test_a_new_bf16_run_is_refused_where_bf16_is_emulated_but_auto_is_not(tmp_path, face_folder, monkeypatch):
    native(monkeypatch, False)
    with pytest.raises(ValueError, match=r"no native bfloat16.*\(or auto\)"):
        facegan.train(face_folder, out=str(tmp_path / "bf16"), steps=1, precision="bf16", **TINY_TRAIN)
    assert not list_checkpoints(tmp_path / "bf16")
    facegan.train(face_folder, out=str(tmp_path / "auto"), steps=1, precision="auto", **TINY_TRAIN)
    assert recorded_precision(tmp_path / "auto") == "fp32"
