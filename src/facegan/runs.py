"""The layout of a run folder: where its checkpoints are written and how they are found again, and who owns it.

    RUN_DIR/checkpoints/ckpt-00001000.safetensors   one per --checkpoint-every, the newest --keep kept
    RUN_DIR/samples/, log.jsonl, losses.png, ...     what training/reporting.py writes for people
    RUN_DIR/.lock                                    while a run trains there: an advisory lock holding its PID
    runs/00000-dcgan-64px/                           the folder a new run gets when no --out is given

One run per folder, one process per run: a new run takes only a new or empty folder (or one whose
earlier run never wrote a checkpoint), and whoever trains in a folder holds `fcntl.flock` on its
lock file, which the operating system releases when the process ends, however it ends.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not protected from a second process
    fcntl = None

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = "ckpt-*.safetensors"
LOCK_NAME = ".lock"
DEFAULT_RUNS_ROOT = Path("runs")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step:08d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints of a run, newest first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob(CHECKPOINT_PATTERN), reverse=True)


def unfinished_checkpoints(run_dir: Path) -> list[Path]:
    """Temporary files of checkpoint writes that a kill interrupted."""
    return list((Path(run_dir) / CHECKPOINT_DIR).glob(".ckpt-*.partial"))  # files.write_atomically's names


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file belongs to; None for a file kept elsewhere (a shipped model, an export)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None


def holds_run(run_dir: Path) -> bool:
    """True if `run_dir` holds a run: a checkpoint, or one set aside as `*.unusable` (temporary files do not count)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    return folder.is_dir() and any(path.name.startswith("ckpt-") for path in folder.iterdir())


def next_run_dir(label: str, root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """`root/NNNNN-label`, NNNNN one more than the highest number that starts a name in `root` (as StyleGAN's runs)."""
    root = Path(root)
    numbers = [int(match.group(1)) for name in (os.listdir(root) if root.is_dir() else ())
               if (match := re.match(r"(\d+)-", name))]
    return root / f"{max(numbers, default=-1) + 1:05d}-{label}"


def set_aside_name(run_dir: Path) -> Path:
    """A free name beside `run_dir` for an old run moved aside: `NAME.replaced-YYYYmmdd-HHMMSS[-N]`."""
    run_dir = Path(run_dir)
    base = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = base, 1
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""

    def __init__(self, run_dir: Path, pid: int | None):
        self.run_dir, self.pid = Path(run_dir), pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{run_dir} is in use by {holder} (a facegan run is training there)")

    def __reduce__(self):  # sent between training processes like any error
        return type(self), (self.run_dir, self.pid)


class RunLock:
    """An advisory lock on RUN_DIR/.lock (`fcntl.flock`), the file holding the holder's PID.

    The operating system drops the lock when the holding process ends, even by `kill -9`, so a lock is
    never stale; a file left by such a process is simply locked again. `release` removes the file.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def acquire(self) -> None:
        """Take the lock; RunFolderBusy when another process has it."""
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise RunFolderBusy(self.run_dir, pid) from None
            identity = _identity(os.fstat(fd))
            try:
                current = _identity(os.stat(self.path))
            except FileNotFoundError:
                current = None
            if current == identity:  # not a file its last holder removed after we opened it
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self._identity = fd, identity

    @property
    def held(self) -> bool:
        return self._fd is not None

    def intact(self) -> bool:
        """False once the folder was deleted or moved (the lock file at its path is no longer ours)."""
        if self._fd is None:
            return self.run_dir.is_dir()
        try:
            return _identity(os.stat(self.path)) == self._identity
        except OSError:
            return False

    def release(self, path: Path | None = None) -> None:
        """Drop the lock and remove the lock file (at `path` if the folder was renamed meanwhile)."""
        if self._fd is None:
            return
        path = Path(path) if path is not None else self.path
        try:
            if _identity(os.stat(path)) == self._identity:
                path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = self._identity = None


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


class RunFolder:
    """A run folder this process trains in: made if need be (remembering what it made) and locked."""

    def __init__(self, path: Path, lock: RunLock, made: list[Path]):
        self.path, self.lock, self.made = Path(path), lock, made

    @classmethod
    def claim(cls, path: Path, exclusive: bool = False) -> "RunFolder":
        """Make `path` (FileExistsError if `exclusive` and it exists) and lock it (RunFolderBusy if taken)."""
        path = Path(path)
        made, missing = [], path
        while not missing.exists() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        path.mkdir(parents=True, exist_ok=not exclusive)
        folder = cls(path, RunLock(path), made)
        try:
            folder.lock.acquire()
        except BaseException:
            folder.discard_if_empty()
            raise
        return folder

    def intact(self) -> bool:
        return self.lock.intact()

    def is_empty(self) -> bool:
        return all(name == LOCK_NAME for name in os.listdir(self.path))

    def set_aside(self) -> Path:
        """Rename the folder (the run in it) to a free `NAME.replaced-…` beside it, then claim a new empty one."""
        aside = set_aside_name(self.path)
        os.rename(self.path, aside)
        self.lock.release(aside / LOCK_NAME)
        self.path.mkdir()
        self.made = [self.path]
        self.lock = RunLock(self.path)
        self.lock.acquire()
        return aside

    def release(self) -> None:
        self.lock.release()

    def discard_if_empty(self) -> None:
        """Remove the folders `claim` made, if nothing was written in them (a run refused before it began)."""
        if not self.made or not self.path.is_dir() or not self.is_empty():
            return
        self.lock.release()
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        for folder in self.made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
