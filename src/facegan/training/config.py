"""The typed configuration of `facegan train`, stored inside every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..config import option
from ..data.align import FACE_CHOICES, TEMPLATE_NAMES, TURNED_CHOICES
from ..models import ARCHITECTURES
from ..models.augment import parse_policy

DEFAULT_KIMG = 2000.0


@dataclass
class TrainConfig:
    data: str = option("", "folder of face photos, a .zip, a CelebA folder, or a prepared cache")
    out: str = option("runs/facegan", "run directory for checkpoints, samples, logs")
    arch: str = option("dcgan", "architecture (`facegan archs` describes them)", choices=tuple(sorted(ARCHITECTURES)))
    size: int = option(64, "image size in pixels", choices=(32, 64, 128))
    z_dim: int | None = option(None, "latent size (architecture default when unset)")
    width: int | None = option(None, "base channel/unit count (architecture default when unset)")
    batch: int | None = option(None, "batch size (architecture default when unset)")
    lr_g: float | None = option(None, "generator learning rate (architecture default when unset)")
    lr_d: float | None = option(None, "discriminator learning rate (architecture default when unset)")
    steps: int | None = option(None, "stop after this many steps in total")
    kimg: float | None = option(None, f"stop after this many thousand real images in total ({DEFAULT_KIMG:g} when no budget is set)")
    minutes: float | None = option(None, "stop after this many minutes of this invocation")
    seed: int = option(0, "seed for weights, data order and noise")
    split: str = option("train", "dataset split to train on", choices=("train", "val", "test", "all"))
    mirror: bool = option(True, "randomly flip training faces left-right")
    ema_kimg: float = option(10.0, "half-life of the generator's moving average, in thousand images")
    ema_rampup: float = option(0.05, "early in training the EMA half-life is at most this fraction of images seen (0: off)")
    augment: str = option("auto", "DiffAugment policy for the discriminator: auto (architecture default), none, "
                          "or a comma list of color, translation, cutout")
    amp: str = option("off", "mixed precision for the forward passes; bf16 needs hardware that runs it natively "
                      "(CPUs with AVX-512 BF16 or AMX, GPUs from Ampere on)", choices=("off", "bf16"))
    device: str = option("auto", "cpu, cuda, cuda:N, or auto")
    sample_every: int = option(500, "write a sample grid every N steps")
    checkpoint_every: int = option(1000, "write a checkpoint every N steps")
    log_every: int = option(50, "log losses every N steps")
    keep: int = option(3, "keep the last K checkpoints")
    min_size: int = option(32, "when preparing raw photos: skip images smaller than this")
    workers: int = option(0, "when preparing raw photos: decoding processes (0: one per core)")
    align: bool = option(False, "when preparing raw photos: find and align the faces (see `facegan prepare --help`)")
    template: str = option("celeba", "with --align: celeba or ffhq face crop", choices=TEMPLATE_NAMES)
    min_face: int = option(48, "with --align: skip faces narrower than this many pixels in the photo")
    faces: str = option("largest", "with --align: keep the largest face of each photo, or all", choices=FACE_CHOICES)
    margin: float = option(0.0, "with --align: widen the crop by this fraction of its side on each side")
    turned: str = option("auto", "with --align, for tilted faces: auto (a CNN detector checks the upright search's "
                         "best near misses), always (also whole turned copies), never", choices=TURNED_CHOICES)
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> None:
        if not self.data:
            raise ValueError("--data is required: a folder of face photos, a .zip, a CelebA folder or a prepared cache")
        positive = {"batch": self.batch, "steps": self.steps, "kimg": self.kimg, "minutes": self.minutes,
                    "z_dim": self.z_dim, "width": self.width, "lr_g": self.lr_g, "lr_d": self.lr_d}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("sample_every", "checkpoint_every", "log_every", "keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.augment != "auto":
            parse_policy(self.augment)
        if self.ema_kimg <= 0 or self.ema_rampup < 0:
            raise ValueError("--ema-kimg must be positive and --ema-rampup not negative")

    def budget_kimg(self) -> float | None:
        """The kimg budget in force: the default only when no budget at all was given."""
        if self.steps is None and self.kimg is None and self.minutes is None:
            return DEFAULT_KIMG
        return self.kimg

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
