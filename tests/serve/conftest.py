"""A real `facegan serve` process for the tests that measure it from outside."""
import re
import subprocess
import sys
from pathlib import Path

import pytest


def process_status(pid: int) -> dict:
    """Threads and resident memory (MiB) of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"threads": int(fields["Threads"]), "rss_mib": int(fields["VmRSS"].split()[0]) / 1024}


@pytest.fixture(scope="module")
def server(trained_run):
    command = [sys.executable, "-m", "facegan", "serve", "--checkpoint", str(trained_run), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if match := re.search(r"http://\S+", line):
                yield process.pid, match.group(0)
                break
        else:
            pytest.fail("facegan serve printed no address")
    finally:
        process.terminate()
        process.wait(timeout=30)
