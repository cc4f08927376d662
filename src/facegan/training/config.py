"""The typed configuration of `facegan train`, stored inside every checkpoint."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..config import device_option, option, precision_option
from ..data import PrepareConfig
from ..models import ARCHITECTURES
from ..models.augment import parse_policy
from ..models.losses import OBJECTIVES

DEFAULT_KIMG = 2000.0
# What `--resume` takes from the command line; every other option is the run's own and cannot change.
RESUME_OPTIONS = ("steps", "kimg", "minutes", "data", "device", "workers", "progress")
LEGACY_AMP = {"off": "fp32", "bf16": "bf16"}  # checkpoints written before --precision replaced --amp


def _no_photos() -> PrepareConfig:
    return PrepareConfig(data="")


@dataclass
class TrainConfig:
    # How raw photos become the training images (`facegan prepare`'s options, but not its --out: training
    # always uses the cache).
    prepare: PrepareConfig = field(default_factory=_no_photos, metadata={"nested": True, "skip": ("out",)})
    out: str | None = option(None, "run folder for checkpoints, samples, logs: a new or empty one (default: a new "
                                   "numbered folder runs/NNNNN-ARCH-SIZEpx)")
    init: str | None = option(None, "fine-tune: start from this trained model's weights (a shipped model such as "
                                    "celeba64, a run directory or a checkpoint file); it decides the architecture, "
                                    "size, latent size and width")
    arch: str = option("dcgan", "architecture (`facegan archs` describes them)", choices=tuple(sorted(ARCHITECTURES)))
    z_dim: int | None = option(None, "latent size (architecture default when unset)")
    width: int | None = option(None, "base channel/unit count (architecture default when unset)")
    batch: int | None = option(None, "batch size (when unset: the --init source's, else the architecture's default)",
                               flags=("--batch", "--batch-size"))
    lr_g: float | None = option(None, "generator learning rate (architecture default when unset)")
    lr_d: float | None = option(None, "discriminator learning rate (architecture default when unset)")
    loss: str | None = option(None, "the GAN objective (architecture default when unset)", choices=tuple(OBJECTIVES))
    r1_gamma: float | None = option(None, "strength of the R1 penalty on D's gradient at real images, 0 for none "
                                          "(architecture default when unset: resnet 0.05, others 0)")
    beta1: float | None = option(None, "Adam's beta1 for both networks (architecture default when unset: dcgan 0.5, "
                                       "resnet 0)")
    steps: int | None = option(None, "stop after this many steps in total")
    kimg: float | None = option(None, f"stop after this many thousand real images in total ({DEFAULT_KIMG:g} when no budget is set)")
    minutes: float | None = option(None, "stop after this many minutes of this invocation")
    seed: int = option(0, "seed for weights, data order and noise")
    split: str = option("train", "dataset split to train on", choices=("train", "val", "test", "all"))
    mirror: bool = option(True, "randomly flip training faces left-right")
    ema_kimg: float = option(10.0, "half-life of the generator's moving average, in thousand images")
    ema_rampup: float = option(0.05, "early in training the EMA half-life is at most this fraction of images seen (0: off)")
    augment: str = option("auto", "augmentation of what the discriminator sees: ada (adaptive), none, a fixed "
                          "DiffAugment list of color, translation, cutout, or auto: ada for fewer than 5,000 photos, "
                          "else the architecture's default")
    ada_target: float = option(0.6, "ada raises its probability while the mean sign of D on real photos is above this")
    ada_kimg: float = option(100.0, "ada's probability can move from 0 to 1 in this many thousand images")
    precision: str = precision_option("auto")
    device: str = device_option()
    sample_every: int = option(500, "write a sample grid every N steps (and after the first)")
    sample_minutes: float = option(2.0, "also write a sample grid when this many minutes passed since the last one")
    checkpoint_every: int = option(1000, "write a checkpoint every N steps")
    log_every: int = option(50, "log losses every N steps (and after the first, and at least every 30 seconds)")
    keep: int = option(3, "keep the last K checkpoints")
    progress: bool = option(True, "show a progress bar")

    @classmethod
    def create(cls, data: str = "", **options) -> "TrainConfig":
        """A config from flat options, as the Python API and the command line give them: `prepare`'s go there."""
        photos = {name: options.pop(name) for name in _prepare_options() if name in options}
        return cls(prepare=PrepareConfig(data=str(data), **photos), **options)

    @property
    def data(self) -> str:
        return self.prepare.data

    @property
    def size(self) -> int:
        return self.prepare.size

    def validate(self) -> None:
        if not self.data:
            raise ValueError("--data is required: a folder of face photos, a .zip, a CelebA folder or a prepared cache")
        positive = {"batch": self.batch, "steps": self.steps, "kimg": self.kimg, "minutes": self.minutes,
                    "z_dim": self.z_dim, "width": self.width, "lr_g": self.lr_g, "lr_d": self.lr_d}
        for name, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):  # nan fails every comparison
                raise ValueError(f"--{name.replace('_', '-')} must be positive and finite, got {value}")
        for name in ("sample_every", "checkpoint_every", "log_every", "keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.augment != "auto":
            parse_policy(self.augment)
        for name in ("ada_kimg", "sample_minutes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive and finite, got {value}")
        if self.r1_gamma is not None and not (math.isfinite(self.r1_gamma) and self.r1_gamma >= 0):
            raise ValueError(f"--r1-gamma must be finite and not negative, got {self.r1_gamma}")
        if self.beta1 is not None and not 0 <= self.beta1 < 1:
            raise ValueError(f"--beta1 must be at least 0 and below 1, got {self.beta1}")
        if not 0 < self.ada_target < 1:
            raise ValueError(f"--ada-target must be between 0 and 1, got {self.ada_target}")
        if not (math.isfinite(self.ema_kimg) and self.ema_kimg > 0):
            raise ValueError(f"--ema-kimg must be positive and finite, got {self.ema_kimg}")
        if not (math.isfinite(self.ema_rampup) and self.ema_rampup >= 0):
            raise ValueError(f"--ema-rampup must be finite and not negative, got {self.ema_rampup}")

    def budget_kimg(self) -> float | None:
        """The kimg budget in force: the default only when no budget at all was given."""
        if self.steps is None and self.kimg is None and self.minutes is None:
            return DEFAULT_KIMG
        return self.kimg

    def to_dict(self) -> dict:
        return asdict(self)

    def flat(self) -> dict:
        """Every option by its flat name (`size`, `min_size`, ... beside `arch`), as the command line has them."""
        values = {name: getattr(self.prepare, name) for name in _prepare_options()}
        return {**values, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "prepare"}}

    def given_options(self) -> dict:
        """The options whose values differ from the defaults: those a user gave (a default given again is not seen)."""
        defaults = TrainConfig().flat()
        return {name: value for name, value in self.flat().items() if value != defaults[name]}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config a checkpoint stores; also reads older checkpoints, whose photo options sat beside the others
        and whose precision was `amp`."""
        values = dict(values)
        if "amp" in values:
            values.setdefault("precision", LEGACY_AMP.get(values.pop("amp"), "fp32"))
        photos = values.pop("prepare", None) or values
        photos = {name: photos[name] for name in _prepare_options() if name in photos}
        known = {f.name for f in fields(cls)} - {"prepare"}
        return cls.create(**photos, **{k: v for k, v in values.items() if k in known})


def _prepare_options() -> list[str]:
    skipped = next(f for f in fields(TrainConfig) if f.name == "prepare").metadata["skip"]
    return [f.name for f in fields(PrepareConfig) if f.name not in skipped]
