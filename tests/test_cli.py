import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from facegan.cli import main
from facegan.models import ARCHITECTURES


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "facegan", *args], capture_output=True, text=True, timeout=300)


def test_help_shows_every_default():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for text in ("--arch", "default: dcgan", "--kimg", "--resume", "--no-mirror", "{" + ",".join(sorted(ARCHITECTURES)) + "}"):
        assert text in result.stdout


def test_archs_lists_the_registry(capsys):
    assert main(["archs"]) == 0
    out = capsys.readouterr().out
    assert "dcgan" in out and "mlp" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "nowhere", "--steps", "-3"], "--steps must be positive"),
        (["train", "--data", "/no/such/folder", "--steps", "2"], "/no/such/folder"),
        (["train", "--steps", "2"], "--data is required"),
        (["generate", "--checkpoint", "/no/such/ckpt", "-n", "2"], "no such checkpoint"),
        (["generate", "--checkpoint", "x", "-n", "0"], "-n must be at least 1"),
        (["interpolate", "--checkpoint", "x", "--seeds", "1"], "at least two seeds"),
    ],
)
def test_bad_arguments_give_one_line_errors(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [["train", "--size", "7"], ["prepare", "--data", "x", "--size", "7"], ["train", "--arch", "nope"]])
def test_out_of_range_choices_are_refused_by_the_parser(args):
    result = run_cli(*args)
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_prepare_train_generate_end_to_end(face_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["prepare", "--data", str(face_folder), "--size", "32", "--out", str(cache), "--workers", "1"]) == 0
    assert "prepared 24 images at 32 px" in capsys.readouterr().out
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(cache), "--size", "32", "--width", "8", "--batch", "8", "--steps", "2",
                 "--out", str(run_dir), "--no-progress"]) == 0
    assert main(["generate", "--checkpoint", str(run_dir), "-n", "3", "--seed", "5", "--out", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["seed0005.png", "seed0006.png", "seed0007.png"]
    assert main(["generate", "--checkpoint", str(run_dir), "-n", "4", "--grid", str(tmp_path / "grid.png")]) == 0
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 32 + 6, 2 * 32 + 6, 3) and grid.std() > 0
    assert main(["interpolate", "--checkpoint", str(run_dir), "--seeds", "1,2", "--frames", "4",
                 "--out", str(tmp_path / "walk.gif")]) == 0
    assert Image.open(tmp_path / "walk.gif").n_frames == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["prepare", "--data", "{faces}", "--min-size", "0"], "min_size must be at least 1"),
        (["prepare", "--data", "{faces}", "--workers", "-2"], "workers must be 0"),
        (["prepare", "--data", "/no/such/photos"], "data path not found: /no/such/photos"),
        (["train", "--data", "{faces}", "--batch", "0"], "--batch must be positive"),
        (["train", "--data", "{faces}", "--kimg", "-1"], "--kimg must be positive"),
        (["train", "--data", "{faces}", "--minutes", "-5"], "--minutes must be positive"),
        (["train", "--data", "{faces}", "--width", "-8"], "--width must be positive"),
        (["train", "--data", "{faces}", "--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["train", "--data", "{faces}", "--keep", "-1"], "--keep must be at least 1"),
        (["train", "--resume", "/no/such/run"], "no usable checkpoint in /no/such/run"),
        (["generate", "--checkpoint", "{garbage}", "-n", "1"], "not a checkpoint"),
    ],
)
def test_out_of_range_values_and_missing_paths_give_one_line_errors(capsys, tmp_path, face_folder, args, message):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 7)
    args = [arg.format(faces=face_folder, garbage=garbage) for arg in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith(f"facegan {args[0]}: error: ") and "Traceback" not in err


@pytest.mark.parametrize("args", [["train", "--steps", "abc"], ["prepare", "--size", "7.5", "--data", "x"],
                                  ["generate", "-n", "many"], ["train", "--no-such-option"]])
def test_unparseable_arguments_exit_2_without_traceback(capsys, args):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err.splitlines()[-1] and "Traceback" not in err


def test_amp_still_works_as_an_alias_of_precision(capsys):
    from facegan.api import TrainCommand
    from facegan.cli import apply_deprecated_options, build_parser, config_from_args

    for old, new in (("off", "fp32"), ("bf16", "bf16"), ("auto", "auto")):
        args = build_parser().parse_args(["train", "--data", "photos", "--amp", old])
        apply_deprecated_options("train", args)
        assert config_from_args(TrainCommand, args).config.precision == new
        assert f"--amp is deprecated; use --precision {new}" in capsys.readouterr().err
    args = build_parser().parse_args(["train", "--data", "photos", "--precision", "auto"])
    apply_deprecated_options("train", args)
    assert config_from_args(TrainCommand, args).config.precision == "auto" and capsys.readouterr().err == ""


def test_seeds_lists_and_ranges_for_every_command_that_makes_faces(trained_run, tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["generate", "--checkpoint", str(trained_run), "--seeds", "1,5-6,9", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0001.png", "seed0005.png", "seed0006.png", "seed0009.png"]
    by_seed = np.asarray(Image.open(out / "seed0005.png"))
    assert main(["generate", "--checkpoint", str(trained_run), "--seed", "5", "-n", "1", "--out", str(tmp_path / "one")]) == 0
    assert np.array_equal(by_seed, np.asarray(Image.open(tmp_path / "one" / "seed0005.png"))), "a seed is a seed"
    grid = tmp_path / "grid.png"
    assert main(["generate", "--checkpoint", str(trained_run), "--seeds", "0-2,7", "--grid", str(grid)]) == 0
    assert Image.open(grid).size == (2 * 32 + 6, 2 * 32 + 6)
    walk = tmp_path / "walk.gif"
    assert main(["interpolate", "--checkpoint", str(trained_run), "--seeds", "0-2", "--frames", "3", "--out", str(walk)]) == 0
    assert Image.open(walk).n_frames == 3
    assert main(["generate", "--checkpoint", str(trained_run), "--seeds", "4-2"]) == 2
    assert "'4-2' must be" in capsys.readouterr().err


def test_option_names_from_stylegan_and_lightweight_gan_are_accepted():
    from facegan.api import GenerateConfig, TrainCommand
    from facegan.cli import build_parser, config_from_args

    parser = build_parser()
    generate = config_from_args(GenerateConfig, parser.parse_args(
        ["generate", "--network", "run", "--trunc", "0.7", "--outdir", "out", "--seeds", "0-3"]))
    assert (generate.checkpoint, generate.truncation, generate.out, generate.seed_list()) == ("run", 0.7, "out", [0, 1, 2, 3])
    train = config_from_args(TrainCommand, parser.parse_args(["train", "--data", "d", "--batch-size", "16", "--gpus", "2"]))
    assert (train.config.batch, train.nproc) == (16, 2)


def test_version_and_help_texts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from facegan import __version__

    assert capsys.readouterr().out.strip() == f"facegan {__version__}" and __version__ != "0+unknown"
    for command in ("prepare", "train", "generate", "eval"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in help_text and "--n N" not in help_text
        if command == "prepare":
            assert "named after the source's fingerprint) --min-size" in help_text, "--out's own default, once"


@pytest.mark.parametrize("fps", ["0.001", "0", "nan", "-3"])
def test_interpolate_refuses_frame_rates_a_gif_cannot_hold(trained_run, tmp_path, capsys, fps):
    walk = tmp_path / "walk.gif"
    assert main(["interpolate", "--checkpoint", str(trained_run), "--frames", "2", "--fps", fps, "--out", str(walk)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--fps must be at least 0.5" in err and len(err.splitlines()) == 1 and not walk.exists()


def test_file_system_errors_name_the_path_without_errno_codes(trained_run, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["generate", "--checkpoint", str(trained_run), "-n", "1", "--grid", str(folder)]) == 2
    assert capsys.readouterr().err.strip() == (f"facegan generate: error: --grid {folder}: is a folder; give the image's "
                                               f"file name, e.g. {folder / 'faces.png'}")
    assert main(["export", "--checkpoint", str(trained_run), "--format", "torchscript", "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "[Errno" not in err and str(folder) in err and len(err.splitlines()) == 1
