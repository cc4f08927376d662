"""One device rule for every command: auto, cpu, cuda[:N]; a missing GPU is one clear line."""
import pytest
import torch

from facegan.cli import main
from facegan.models.device import resolve_device


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_bad_device_names_are_refused():
    with pytest.raises(ValueError, match="'cuda:x' is not a device"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [["generate", "-n", "1"], ["interpolate", "--frames", "2"], ["serve"],
                                     ["eval", "--real", "x", "-n", "2"], ["train", "--data", "x", "--steps", "1"]])
def test_cuda_without_a_gpu_is_one_line_for_every_command(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda:" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "nothing is written before the refusal"


def test_every_command_that_runs_a_network_defaults_to_auto():
    from facegan.cli import build_parser

    parser = build_parser()
    for command in (["generate"], ["interpolate"], ["eval", "--real", "x"], ["serve"], ["export", "--out", "x"],
                    ["score", "x"], ["train"]):
        args = parser.parse_args(command)
        assert getattr(args, "device", "auto") == "auto", command
