"""Latent vectors from integer seeds: one seed, one face, whatever the batch it is drawn in."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

MAX_SEED = 2**32 - 1


def latents_from_seeds(seeds: Iterable[int], z_dim: int, truncation: float = 1.0) -> Tensor:
    """Standard-normal latents, one per seed, scaled toward the mean latent (0) by `truncation`."""
    rows = []
    for seed in seeds:
        if not 0 <= int(seed) <= MAX_SEED:
            raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}")
        generator = torch.Generator().manual_seed(int(seed))
        rows.append(torch.randn(z_dim, generator=generator))
    return torch.stack(rows) * truncation


MAX_SEEDS_LISTED = 1_000_000  # a guard against "0-4294967295": a list of seeds that size is a typo, not a request
SEEDS_HELP = "seeds as a comma list with ranges, e.g. 0-35,42 (StyleGAN's --seeds)"


def parse_seeds(text: str) -> list[int]:
    """`"0-3,7"` -> [0, 1, 2, 3, 7]: the seeds in the order given, ranges inclusive (StyleGAN's `--seeds`)."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            start, end = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(f"--seeds {text!r}: {part!r} is not a seed or a range like 0-35") from None
        if not 0 <= start <= end <= MAX_SEED:
            raise ValueError(f"--seeds {text!r}: {part!r} must be seeds within 0..{MAX_SEED}, the first not after the last")
        if len(seeds) + end - start + 1 > MAX_SEEDS_LISTED:
            raise ValueError(f"--seeds {text!r}: more than {MAX_SEEDS_LISTED:,} seeds")
        seeds.extend(range(start, end + 1))
    if not seeds:
        raise ValueError(f"--seeds {text!r} names no seed; e.g. --seeds 0-35,42")
    return seeds
