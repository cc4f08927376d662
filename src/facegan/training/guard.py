"""Keeping a run's checkpoints trustworthy: nothing is saved from a diverged state, a failed write says what failed.

Policy (documented in the README, "Reliability"):

- divergence: NaN or Inf in a loss stops the run at that step; before every checkpoint the weights
  are checked too, so no checkpoint is ever written from a non-finite state and the last good one
  stays the newest;
- write failures (disk full, permission denied, I/O error) of a checkpoint, a sample grid, the log or
  TensorBoard: the run stops at once with an error naming the file, the step and the cause. The
  atomic writer leaves the earlier checkpoints untouched, so `facegan train --resume RUN_DIR`
  continues from the last one once the disk is fixed;
- a run folder deleted or moved while training: the run stops at the next write and says so, rather
  than making the folder again (which would leave a run with a hole in it).
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from ..runs import RunFolder, checkpoint_path, list_checkpoints
from .state import TrainingState, save_checkpoint


class DivergenceError(RuntimeError):
    """Training produced NaN or Inf; the message names the step and the last good checkpoint."""


class RunWriteError(RuntimeError):
    """A file of the run (not a checkpoint) could not be written; the message says how to go on."""


class RunFolderGone(RuntimeError):
    """The run folder was deleted or moved while the run trained in it."""


def check_folder(folder: RunFolder | None, step: int) -> None:
    """Raise RunFolderGone if `folder` (None on ranks that write nothing) is no longer where the run began."""
    if folder is not None and not folder.intact():
        raise RunFolderGone(f"the run folder {folder.path} was deleted or moved during training; "
                            f"stopped at step {step}, nothing more was written")


@contextlib.contextmanager
def writing(what: str, folder: RunFolder | None, step: int):
    """Around a write of the run's files: a vanished folder or a failed write becomes one clear error."""
    check_folder(folder, step)
    try:
        yield
    except OSError as error:
        check_folder(folder, step)
        run_dir = folder.path if folder is not None else None
        cause = error.strerror or str(error)
        raise RunWriteError(f"cannot write {what} at step {step} ({cause}); training stopped, {last_good(run_dir)}: "
                            f"fix the problem, then `facegan train --resume {run_dir}`") from error


def check_losses(stats: dict[str, torch.Tensor], step: int, run_dir: Path) -> None:
    """Raise DivergenceError if any loss statistic of this step is NaN or Inf (one host sync)."""
    values = torch.stack([value.detach().float().reshape(()) for value in stats.values()])
    if bool(torch.isfinite(values).all()):
        return
    bad = ", ".join(f"{name} is {float(value)}" for name, value in stats.items() if not math.isfinite(float(value)))
    raise DivergenceError(f"training diverged at step {step}: {bad}; no checkpoint was written from it, {last_good(run_dir)}")


def non_finite_weights(state: TrainingState) -> list[str]:
    """Names of the floating-point tensors of G, G_ema and D that hold a NaN or Inf."""
    named = [(f"{net}.{key}", value) for net in ("G", "G_ema", "D")
             for key, value in getattr(state, net).state_dict().items() if value.is_floating_point()]
    finite = torch.stack([torch.isfinite(value).all() for _, value in named]).cpu()
    return [name for (name, _), ok in zip(named, finite) if not ok]


def save(state: TrainingState, run_dir: Path, keep: int, folder: RunFolder | None = None) -> Path:
    """`save_checkpoint`, refusing a non-finite state and turning a failed write into a clear CheckpointError."""
    check_folder(folder, state.step)
    bad = non_finite_weights(state)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DivergenceError(f"training diverged at step {state.step}: NaN or Inf in {bad[0]}{more}; "
                              f"no checkpoint was written from it, {last_good(run_dir)}")
    try:
        return save_checkpoint(state, run_dir, keep)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {checkpoint_path(run_dir, state.step)} at step {state.step} ({error}); "
            f"training stopped, {last_good(run_dir)}: fix the problem, then `facegan train --resume {run_dir}`"
        ) from error


def last_good(run_dir: Path) -> str:
    found = list_checkpoints(run_dir)
    return f"the last checkpoint {found[0]} is intact" if found else "no checkpoint had been written yet"
