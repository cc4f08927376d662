"""Values every layer shares, each defined here once: image sizes, the cache folder, the usable CPUs."""
from __future__ import annotations

import os
from pathlib import Path

SIZES = (32, 64, 128)  # the square image sizes that data, models and commands support
CACHE_ENV = "FACEGAN_CACHE"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"  # the models shipped inside the package
DEFAULT_MODEL = "celeba64"  # the shipped model `generate`, `serve` and `score` use when given none


def check_size(size: int) -> int:
    """`size` when supported; ValueError naming the choices otherwise."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))}, got {size}")
    return size


def shipped_model(name: str) -> Path | None:
    """The file of the shipped model called `name` (`celeba64`), or None when no shipped model has that name."""
    path = PRETRAINED_DIR / f"{name}.safetensors"
    return path if "/" not in name and path.is_file() else None


def cache_root() -> Path:
    """``$FACEGAN_CACHE`` if set, else ``~/.cache/facegan``: prepared data, feature statistics, downloads."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "facegan"


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
