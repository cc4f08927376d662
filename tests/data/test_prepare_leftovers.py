"""A killed prepare's full-size temporary array is removed by the next prepare of that cache, and only then."""
import os
import subprocess
import sys

import facegan


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_prepare_removes_what_a_killed_one_left(face_folder, tmp_path, capsys):
    out = tmp_path / "prepared"
    facegan.prepare(face_folder, size=32, out=out, workers=1, progress=False)
    gone = dead_pid()
    leftovers = [out / f".images.npy.{gone}.partial", out / f".images.npy.{gone}.partial.resize.partial",
                 out / f".manifest.json.{gone}.0a1b2c3d.partial"]
    running = out / f".images.npy.{os.getpid()}.partial"  # a prepare still at work on this folder keeps its file
    for path in [*leftovers, running]:
        path.write_bytes(b"\0" * 1024)
    capsys.readouterr()
    again = facegan.prepare(face_folder, size=32, out=out, workers=1, progress=False)
    assert len(again) == 24
    assert not any(path.exists() for path in leftovers) and running.exists()
    err = capsys.readouterr().err
    assert err.count("left in") == 3 and f".images.npy.{gone}.partial" in err
