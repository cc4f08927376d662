"""What a run leaves for people to look at: loss log, loss plot, TensorBoard, sample grids, GIF."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from ..data.images import make_grid, save_png

LOG_NAME = "log.jsonl"
PLOT_NAME = "losses.png"
GIF_NAME = "progress.gif"
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"


class LossLog:
    """Append-only JSON-lines log; on resume, lines after the resumed step are dropped."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = run_dir / LOG_NAME
        if resume_step is not None and self.path.exists():
            kept = [line for line in read_log(self.path) if line["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(line) + "\n" for line in kept))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return lines


def plot_losses(run_dir: Path) -> Path | None:
    """Plot D and G losses from the log against thousands of images; None when nothing is logged."""
    records = read_log(run_dir / LOG_NAME) if (run_dir / LOG_NAME).exists() else []
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = [r["kimg"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        ax.plot(kimg, [r.get(key, np.nan) for r in records], label=label, linewidth=1)
    ax.set_xlabel("thousand real images shown")
    ax.set_ylabel("loss")
    ax.set_title("facegan training losses")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    if any("augment_p" in r for r in records):  # adaptive augmentation's probability, on a 0..1 axis of its own
        right = ax.twinx()
        right.plot(kimg, [r.get("augment_p", np.nan) for r in records], color="tab:green", linewidth=1)
        right.set_ylabel("augmentation probability p")
        right.set_ylim(0, 1)
        lines, labels = lines + right.get_lines(), labels + ["augmentation p"]
    ax.legend(lines, labels)
    fig.tight_layout()
    path = run_dir / PLOT_NAME
    fig.savefig(path)
    plt.close(fig)
    return path


def sample_path(run_dir: Path, step: int) -> Path:
    return run_dir / SAMPLES_DIR / f"step-{step:08d}.png"


def save_sample_grid(run_dir: Path, step: int, faces: np.ndarray) -> tuple[Path, np.ndarray]:
    grid = make_grid(faces)
    return save_png(grid, sample_path(run_dir, step)), grid


def make_progress_gif(run_dir: Path, max_frames: int = 100, seconds_per_frame: float = 0.25) -> Path | None:
    """An animated GIF of the sample grids over training (at most `max_frames`, evenly spaced)."""
    import imageio.v3 as iio
    from PIL import Image

    paths = sorted((run_dir / SAMPLES_DIR).glob("step-*.png"))
    if not paths:
        return None
    picks = np.unique(np.linspace(0, len(paths) - 1, min(max_frames, len(paths))).round().astype(int))
    frames = [np.asarray(Image.open(paths[i]).convert("RGB")) for i in picks]
    path = run_dir / GIF_NAME
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)
    return path


class TensorBoard:
    """TensorBoard scalars and images; silently absent when tensorboard is not installed.

    TensorBoard writes from a thread of its own, which on a failed write (a full disk, a deleted run
    folder) prints a traceback and keeps the error for the next call here: while the writer is open
    that thread's traceback is left out, and the error comes as an OSError from `scalars`, `image` or
    `close`, which the training loop turns into one line.
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)
        self._previous_hook = threading.excepthook
        threading.excepthook = self._thread_failed

    def _thread_failed(self, args) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError)):
            self._previous_hook(args)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        if self.writer:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            finally:
                if threading.excepthook == self._thread_failed:
                    threading.excepthook = self._previous_hook

    def close_quietly(self) -> None:
        """`close` on a run that already failed: its error, if any, is the one to report."""
        try:
            self.close()
        except OSError:
            pass
